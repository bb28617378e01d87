//! The route table (reliability matrix F1, F2, F4), on Postgres: EVERY route the
//! server serves — read from its own `/openapi.json`, where `utoipa_axum::routes!`
//! puts each one — has an entry here, or this test fails. Each entry is tried with
//! no token, an expired one, `alg: none`, a wrong key, a wrong audience, another
//! tenant's ids, and each of the six roles: the status must be the expected one,
//! and whenever the answer is a refusal, not one row in the database changed.
#![allow(clippy::unwrap_used)]

mod common;
mod media_common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use crewsync_core::ids::{ClientId, DeviceId, JourneyId, LocationId};
use crewsync_core::model::Role;
use crewsync_core::sync::wire::{self, CONTENT_TYPE, PROTOCOL_VERSION, SyncRequest};
use crewsync_server::auth::tokens::{self, TokenKeys};
use crewsync_server::storage::Storage;
use crewsync_server::testing::{TEST_PASSWORD, TestTenant};
use serde_json::{Value, json};
use sqlx::PgPool;
use strum::IntoEnumIterator;

const OFFICE: [Role; 3] = [Role::Dispatcher, Role::Manager, Role::Admin];

/// The world every request runs in: tenant A (whose tokens call) with a journey
/// crewed by its driver and mover, and tenant B with ids of its own.
struct World {
    base: String,
    http: reqwest::Client,
    a: TestTenant,
    b: TestTenant,
    a_journey: JourneyId,
    b_journey: JourneyId,
    pool: PgPool,
    storage: Arc<dyn Storage>,
    /// The server's data dir (media staging and blobs).
    _data_dir: tempfile::TempDir,
}

/// Whose ids a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ids {
    Own,
    Other,
}

enum Body {
    None,
    Json(Value),
    Sync(Vec<u8>),
    /// An upload chunk at offset 0, with its digest.
    Chunk(Vec<u8>),
}

/// A request to make: path (with ids filled in) and body. Building it may set
/// things up first (through privileged calls), before the database is snapshot.
struct Request {
    path: String,
    body: Body,
}

type Build = for<'a> fn(&'a World, Ids) -> Pin<Box<dyn Future<Output = Request> + Send + 'a>>;

/// One route's entry.
struct Route {
    method: &'static str,
    path: &'static str,
    /// Served without a token (the token cases do not apply).
    public: bool,
    /// What each role gets (public routes: what anyone gets).
    expect: fn(Role) -> u16,
    /// What naming another tenant's ids (in the path or body) gets, for a role
    /// the route allows; `None` when the request names no ids.
    other: Option<u16>,
    build: Build,
}

fn all(status: u16) -> fn(Role) -> u16 {
    match status {
        200 => |_| 200,
        204 => |_| 204,
        400 => |_| 400,
        401 => |_| 401,
        _ => unreachable!("add a case"),
    }
}

fn office(allowed: u16) -> fn(Role) -> u16 {
    match allowed {
        200 => |role| if OFFICE.contains(&role) { 200 } else { 403 },
        201 => |role| if OFFICE.contains(&role) { 201 } else { 403 },
        _ => unreachable!("add a case"),
    }
}

/// The seed for a fresh test image.
fn rand_seed() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

fn the_dispatcher(allowed: u16) -> fn(Role) -> u16 {
    match allowed {
        200 => |role| if role == Role::Dispatcher { 200 } else { 404 },
        204 => |role| if role == Role::Dispatcher { 204 } else { 404 },
        _ => unreachable!("add a case"),
    }
}

fn media_writers(role: Role) -> u16 {
    if role == Role::Auditor { 403 } else { 201 }
}

fn hold_setters(role: Role) -> u16 {
    if matches!(role, Role::Admin | Role::Manager) {
        200
    } else {
        403
    }
}

fn office_readers(role: Role) -> u16 {
    if matches!(role, Role::Driver | Role::Mover) {
        403
    } else {
        200
    }
}

fn chain_readers(role: Role) -> u16 {
    if matches!(role, Role::Admin | Role::Auditor) {
        200
    } else {
        403
    }
}

fn admin_only(allowed: u16) -> fn(Role) -> u16 {
    match allowed {
        200 => |role| if role == Role::Admin { 200 } else { 403 },
        201 => |role| if role == Role::Admin { 201 } else { 403 },
        204 => |role| if role == Role::Admin { 204 } else { 403 },
        _ => unreachable!("add a case"),
    }
}

macro_rules! build {
    (|$world:ident, $ids:ident| $body:expr) => {{
        fn build<'a>(
            $world: &'a World,
            $ids: Ids,
        ) -> Pin<Box<dyn Future<Output = Request> + Send + 'a>> {
            Box::pin(async move {
                let _ = (&$world, $ids);
                $body
            })
        }
        build as Build
    }};
}

fn plain(path: String) -> Request {
    Request {
        path,
        body: Body::None,
    }
}

fn json_at(path: String, body: Value) -> Request {
    Request {
        path,
        body: Body::Json(body),
    }
}

impl World {
    fn journey(&self, ids: Ids) -> JourneyId {
        match ids {
            Ids::Own => self.a_journey,
            Ids::Other => self.b_journey,
        }
    }

    fn tenant(&self, ids: Ids) -> &TestTenant {
        match ids {
            Ids::Own => &self.a,
            Ids::Other => &self.b,
        }
    }

    /// A fresh user of the tenant `ids` names (so non-idempotent routes have a
    /// subject of their own each time).
    async fn fresh_user(&self, ids: Ids, role: Role) -> crewsync_server::directory::UserRecord {
        let tenant = self.tenant(ids);
        tenant.add_user(role, &tenant.location).await.unwrap()
    }

    /// A fresh token of A's `role` user on a new device.
    async fn token(&self, role: Role) -> String {
        self.a
            .sign_in(role, DeviceId::new())
            .await
            .unwrap()
            .access_token
    }

    /// As tenant A's dispatcher, through the API (set-up, not under test).
    async fn as_office(&self, method: &str, path: &str, body: Value) {
        let token = self.token(Role::Dispatcher).await;
        let status = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "set-up {method} {path}: {status}");
    }

    async fn send(&self, route: &Route, request: Request, token: Option<&str>) -> u16 {
        let mut call = self.http.request(
            route.method.to_uppercase().parse().unwrap(),
            format!("{}{}", self.base, request.path),
        );
        if let Some(token) = token {
            call = call.bearer_auth(token);
        }
        call = match request.body {
            Body::None => call,
            Body::Json(body) => call.json(&body),
            Body::Sync(bytes) => call.header("content-type", CONTENT_TYPE).body(bytes),
            Body::Chunk(bytes) => call
                .header("upload-offset", 0)
                .header("chunk-sha256", media_common::sha_hex(&bytes))
                .body(bytes),
        };
        call.send().await.unwrap().status().as_u16()
    }

    /// `GET path` as the bearer of `token`, read as JSON.
    async fn get_json(&self, path: &str, token: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A photo whose entry is on the journey `ids` names (pushed by that tenant's
    /// dispatcher); returns its id and bytes.
    async fn media_item(&self, ids: Ids) -> (crewsync_core::ids::MediaId, Vec<u8>) {
        let tenant = self.tenant(ids);
        let device = DeviceId::new();
        let user = tenant.user(Role::Dispatcher);
        let token = tenant
            .sign_in(Role::Dispatcher, device)
            .await
            .unwrap()
            .access_token;
        let origin = crewsync_core::ChangeOrigin {
            user_id: user.id,
            role: Role::Dispatcher,
            device_id: device,
        };
        let bytes = media_common::jpeg(48, 32, rand_seed());
        let media = crewsync_core::ids::MediaId::new();
        let change = media_common::media_ref_change(
            self.storage.as_ref(),
            &tenant.tenant.to_string(),
            self.journey(ids),
            &origin,
            media,
            "photo",
            &media_common::sha_hex(&bytes),
            bytes.len() as u64,
            None,
        )
        .await;
        common::push(&self.base, &token, &[(self.journey(ids), change)]).await;
        (media, bytes)
    }

    /// `media_item`'s upload, opened by the tenant's dispatcher; with `send`, all
    /// its bytes sent. Returns the upload id and the bytes.
    async fn open_upload(&self, ids: Ids, send: bool) -> (String, Vec<u8>) {
        let (media, bytes) = self.media_item(ids).await;
        let token = self.dispatcher_token(ids).await;
        let created: Value = self
            .http
            .post(format!("{}/v1/media/uploads", self.base))
            .bearer_auth(&token)
            .json(&json!({
                "media_id": media, "journey_id": self.journey(ids), "kind": "photo",
                "content_type": "image/jpeg", "size": bytes.len(),
                "sha256": media_common::sha_hex(&bytes),
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let upload = created["upload_id"].as_str().unwrap().to_owned();
        if send {
            let status = self
                .http
                .patch(format!("{}/v1/media/uploads/{upload}", self.base))
                .bearer_auth(&token)
                .header("upload-offset", 0)
                .header("chunk-sha256", media_common::sha_hex(&bytes))
                .body(bytes.clone())
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 204, "set-up chunk");
        }
        (upload, bytes)
    }

    /// A stored photo on the journey `ids` names.
    async fn stored_media(&self, ids: Ids) -> crewsync_core::ids::MediaId {
        let (upload, _) = self.open_upload(ids, true).await;
        let token = self.dispatcher_token(ids).await;
        let done: Value = self
            .http
            .post(format!("{}/v1/media/uploads/{upload}/complete", self.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        serde_json::from_value(done["media_id"].clone()).unwrap()
    }

    /// The dispatcher user of the tenant `ids` names, on a new device.
    async fn dispatcher_token(&self, ids: Ids) -> String {
        self.tenant(ids)
            .sign_in(Role::Dispatcher, DeviceId::new())
            .await
            .unwrap()
            .access_token
    }

    /// Every row of every table, hashed per table.
    async fn snapshot(&self) -> BTreeMap<String, String> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        let mut out = BTreeMap::new();
        for table in tables {
            let digest: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM \"{table}\" t"
            )))
            .fetch_one(&self.pool)
            .await
            .unwrap();
            out.insert(table, digest.unwrap_or_default());
        }
        out
    }
}

/// Every route, once. Keep in step with the router: the test below fails for a
/// route served but missing here, and for an entry no longer served.
fn table() -> Vec<Route> {
    vec![
        Route {
            method: "get",
            path: "/health",
            public: true,
            expect: all(200),
            other: None,
            build: build!(|w, ids| plain("/health".into())),
        },
        Route {
            method: "get",
            path: "/ready",
            public: true,
            expect: all(200),
            other: None,
            build: build!(|w, ids| plain("/ready".into())),
        },
        Route {
            method: "get",
            path: "/metrics",
            public: true,
            expect: all(200),
            other: None,
            build: build!(|w, ids| plain("/metrics".into())),
        },
        Route {
            method: "get",
            path: "/openapi.json",
            public: true,
            expect: all(200),
            other: None,
            build: build!(|w, ids| plain("/openapi.json".into())),
        },
        Route {
            method: "post",
            path: "/v1/auth/sign-in",
            public: true,
            // A wrong password: refused, and nothing written.
            expect: all(401),
            other: None,
            build: build!(|w, ids| json_at(
                "/v1/auth/sign-in".into(),
                json!({
                    "email": w.a.user(Role::Driver).email,
                    "password": format!("{TEST_PASSWORD}-wrong"),
                    "device_id": DeviceId::new(),
                })
            )),
        },
        Route {
            method: "post",
            path: "/v1/auth/refresh",
            public: true,
            expect: all(401),
            other: None,
            build: build!(|w, ids| json_at(
                "/v1/auth/refresh".into(),
                json!({"refresh_token": "not-a-token"})
            )),
        },
        Route {
            method: "post",
            path: "/v1/auth/sign-out",
            public: false,
            expect: all(204),
            other: None,
            build: build!(|w, ids| plain("/v1/auth/sign-out".into())),
        },
        Route {
            method: "get",
            path: "/v1/me",
            public: false,
            expect: all(200),
            other: None,
            build: build!(|w, ids| plain("/v1/me".into())),
        },
        Route {
            method: "post",
            path: "/v1/sync",
            public: false,
            expect: all(200),
            other: None,
            build: build!(|w, ids| Request {
                path: "/v1/sync".into(),
                body: Body::Sync(wire::encode(&SyncRequest {
                    version: PROTOCOL_VERSION,
                    device_id: DeviceId::new(),
                    actor: vec![1; 16],
                    cursor: 0,
                    changes: vec![],
                    max_changes: 10,
                    held: Some(vec![]),
                    report: None,
                })),
            }),
        },
        Route {
            method: "get",
            path: "/v1/live",
            public: false,
            // Authenticated, then refused as a plain GET (no WebSocket handshake).
            expect: all(400),
            other: None,
            build: build!(|w, ids| plain("/v1/live".into())),
        },
        Route {
            method: "get",
            path: "/v1/journeys",
            public: false,
            expect: all(200),
            other: None,
            build: build!(|w, ids| plain(format!("/v1/journeys?date={}", Utc::now().date_naive()))),
        },
        Route {
            method: "post",
            path: "/v1/journeys",
            public: false,
            expect: office(201),
            other: Some(404),
            build: build!(|w, ids| json_at(
                "/v1/journeys".into(),
                json!({
                    "date": Utc::now().date_naive(),
                    "location_id": w.tenant(ids).location.id,
                    "truck_number": "T-1",
                })
            )),
        },
        Route {
            method: "get",
            path: "/v1/journeys/{journey}",
            public: false,
            expect: all(200),
            other: Some(404),
            build: build!(|w, ids| plain(format!("/v1/journeys/{}", w.journey(ids)))),
        },
        Route {
            method: "get",
            path: "/v1/journeys/{journey}/document",
            public: false,
            expect: all(200),
            other: Some(404),
            build: build!(|w, ids| plain(format!("/v1/journeys/{}/document", w.journey(ids)))),
        },
        Route {
            method: "get",
            path: "/v1/journeys/{journey}/quarantine",
            public: false,
            expect: all(200),
            other: Some(404),
            build: build!(|w, ids| plain(format!("/v1/journeys/{}/quarantine", w.journey(ids)))),
        },
        Route {
            method: "get",
            path: "/v1/journeys/{journey}/media",
            public: false,
            expect: all(200),
            other: Some(404),
            build: build!(|w, ids| plain(format!("/v1/journeys/{}/media", w.journey(ids)))),
        },
        Route {
            method: "post",
            path: "/v1/journeys/{journey}/crew",
            public: false,
            expect: office(200),
            other: Some(404),
            build: build!(|w, ids| json_at(
                format!("/v1/journeys/{}/crew", w.journey(ids)),
                json!({"user_id": w.tenant(ids).user(Role::Mover).id})
            )),
        },
        Route {
            method: "delete",
            path: "/v1/journeys/{journey}/crew/{user}",
            public: false,
            expect: office(200),
            other: Some(404),
            build: build!(|w, ids| {
                let user = w.fresh_user(Ids::Own, Role::Mover).await;
                w.as_office(
                    "POST",
                    &format!("/v1/journeys/{}/crew", w.a_journey),
                    json!({"user_id": user.id}),
                )
                .await;
                plain(format!(
                    "/v1/journeys/{}/crew/{}",
                    w.journey(ids),
                    match ids {
                        Ids::Own => user.id,
                        Ids::Other => w.b.user(Role::Mover).id,
                    }
                ))
            }),
        },
        Route {
            method: "put",
            path: "/v1/journeys/{journey}/truck",
            public: false,
            expect: office(200),
            other: Some(404),
            build: build!(|w, ids| json_at(
                format!("/v1/journeys/{}/truck", w.journey(ids)),
                json!({"truck_number": "T-9"})
            )),
        },
        Route {
            method: "get",
            path: "/v1/sync-health",
            public: false,
            expect: office_readers,
            other: None,
            build: build!(|w, ids| plain("/v1/sync-health".into())),
        },
        Route {
            method: "get",
            path: "/v1/journeys/{journey}/audit",
            public: false,
            expect: all(200),
            other: Some(404),
            build: build!(|w, ids| plain(format!("/v1/journeys/{}/audit", w.journey(ids)))),
        },
        Route {
            method: "get",
            path: "/v1/audit",
            public: false,
            expect: chain_readers,
            other: None,
            build: build!(|w, ids| plain("/v1/audit".into())),
        },
        Route {
            method: "get",
            path: "/v1/audit/verify",
            public: false,
            expect: chain_readers,
            other: None,
            build: build!(|w, ids| plain("/v1/audit/verify".into())),
        },
        Route {
            method: "get",
            path: "/v1/admin/users",
            public: false,
            expect: admin_only(200),
            other: None,
            build: build!(|w, ids| plain("/v1/admin/users".into())),
        },
        Route {
            method: "post",
            path: "/v1/admin/users",
            public: false,
            expect: admin_only(201),
            other: Some(422),
            build: build!(|w, ids| json_at(
                "/v1/admin/users".into(),
                json!({
                    "name": "New Mover",
                    "email": format!("new.{}@test.example", uuid::Uuid::new_v4()),
                    "password": TEST_PASSWORD,
                    "role": "MOVER",
                    "location_id": w.tenant(ids).location.id,
                })
            )),
        },
        Route {
            method: "get",
            path: "/v1/admin/users/{id}",
            public: false,
            expect: admin_only(200),
            other: Some(404),
            build: build!(|w, ids| plain(format!(
                "/v1/admin/users/{}",
                w.tenant(ids).user(Role::Mover).id
            ))),
        },
        Route {
            method: "patch",
            path: "/v1/admin/users/{id}",
            public: false,
            expect: admin_only(200),
            other: Some(404),
            build: build!(|w, ids| json_at(
                format!(
                    "/v1/admin/users/{}",
                    w.fresh_user(ids, Role::Mover).await.id
                ),
                json!({"name": "Renamed Mover"})
            )),
        },
        Route {
            method: "post",
            path: "/v1/admin/users/{id}/deactivate",
            public: false,
            expect: admin_only(200),
            other: Some(404),
            build: build!(|w, ids| plain(format!(
                "/v1/admin/users/{}/deactivate",
                w.fresh_user(ids, Role::Mover).await.id
            ))),
        },
        Route {
            method: "post",
            path: "/v1/admin/users/{id}/reactivate",
            public: false,
            expect: admin_only(200),
            other: Some(404),
            build: build!(|w, ids| {
                let user = w.fresh_user(ids, Role::Mover).await;
                w.tenant(ids)
                    .auth
                    .directory
                    .set_user_status(
                        w.tenant(ids).tenant,
                        user.id,
                        crewsync_server::directory::UserStatus::Inactive,
                    )
                    .await
                    .unwrap();
                plain(format!("/v1/admin/users/{}/reactivate", user.id))
            }),
        },
        Route {
            method: "get",
            path: "/v1/admin/locations",
            public: false,
            expect: admin_only(200),
            other: None,
            build: build!(|w, ids| plain("/v1/admin/locations".into())),
        },
        Route {
            method: "post",
            path: "/v1/admin/locations",
            public: false,
            expect: admin_only(201),
            other: None,
            build: build!(|w, ids| json_at(
                "/v1/admin/locations".into(),
                json!({
                    "name": format!("DEPOT {}", uuid::Uuid::new_v4()),
                    "timezone": "America/Halifax",
                })
            )),
        },
        Route {
            method: "get",
            path: "/v1/admin/locations/{id}",
            public: false,
            expect: admin_only(200),
            other: Some(404),
            build: build!(|w, ids| plain(format!(
                "/v1/admin/locations/{}",
                w.tenant(ids).location.id
            ))),
        },
        Route {
            method: "patch",
            path: "/v1/admin/locations/{id}",
            public: false,
            expect: admin_only(200),
            other: Some(404),
            build: build!(|w, ids| json_at(
                format!("/v1/admin/locations/{}", w.tenant(ids).location.id),
                json!({"trucks": 4})
            )),
        },
        Route {
            method: "get",
            path: "/v1/admin/permissions",
            public: false,
            expect: admin_only(200),
            other: None,
            build: build!(|w, ids| plain("/v1/admin/permissions".into())),
        },
        Route {
            method: "put",
            path: "/v1/admin/permissions",
            public: false,
            expect: admin_only(200),
            other: None,
            build: build!(|w, ids| {
                let rows: Vec<Value> = Role::iter()
                    .flat_map(|role| {
                        (1..=4u8).map(move |step| {
                            json!({
                                "role": role.to_string(),
                                "step": step,
                                "can_view": true,
                                "can_edit": role != Role::Auditor,
                                "can_approve": role == Role::Manager,
                            })
                        })
                    })
                    .collect();
                json_at("/v1/admin/permissions".into(), json!({"rows": rows}))
            }),
        },
        Route {
            method: "get",
            path: "/v1/admin/move-sources",
            public: false,
            expect: admin_only(200),
            other: None,
            build: build!(|w, ids| plain("/v1/admin/move-sources".into())),
        },
        Route {
            method: "post",
            path: "/v1/admin/move-sources",
            public: false,
            expect: admin_only(201),
            other: None,
            build: build!(|w, ids| json_at(
                "/v1/admin/move-sources".into(),
                json!({"name": format!("Referral {}", uuid::Uuid::new_v4())})
            )),
        },
        Route {
            method: "get",
            path: "/v1/admin/settings",
            public: false,
            expect: admin_only(200),
            other: None,
            build: build!(|w, ids| plain("/v1/admin/settings".into())),
        },
        Route {
            method: "patch",
            path: "/v1/admin/settings",
            public: false,
            expect: admin_only(200),
            other: None,
            build: build!(|w, ids| json_at(
                "/v1/admin/settings".into(),
                json!({"settings": {"dispatch_cutoff": "17:00"}})
            )),
        },
        Route {
            method: "post",
            path: "/v1/media/uploads",
            public: false,
            expect: media_writers,
            // Another tenant's journey: not visible, so not found.
            other: Some(404),
            build: build!(|w, ids| {
                let (media, bytes) = w.media_item(Ids::Own).await;
                json_at(
                    "/v1/media/uploads".into(),
                    json!({
                        "media_id": media, "journey_id": w.journey(ids), "kind": "photo",
                        "content_type": "image/jpeg", "size": bytes.len(),
                        "sha256": media_common::sha_hex(&bytes),
                    }),
                )
            }),
        },
        Route {
            method: "head",
            path: "/v1/media/uploads/{upload_id}",
            public: false,
            // An upload is its uploader's: anyone else's id is not found.
            expect: the_dispatcher(200),
            other: Some(404),
            build: build!(|w, ids| plain(format!(
                "/v1/media/uploads/{}",
                w.open_upload(ids, false).await.0
            ))),
        },
        Route {
            method: "patch",
            path: "/v1/media/uploads/{upload_id}",
            public: false,
            expect: the_dispatcher(204),
            other: Some(404),
            build: build!(|w, ids| {
                let (upload, bytes) = w.open_upload(ids, false).await;
                Request {
                    path: format!("/v1/media/uploads/{upload}"),
                    body: Body::Chunk(bytes),
                }
            }),
        },
        Route {
            method: "post",
            path: "/v1/media/uploads/{upload_id}/complete",
            public: false,
            expect: the_dispatcher(200),
            other: Some(404),
            build: build!(|w, ids| plain(format!(
                "/v1/media/uploads/{}/complete",
                w.open_upload(ids, true).await.0
            ))),
        },
        Route {
            method: "get",
            path: "/v1/media/usage",
            public: false,
            expect: chain_readers,
            other: None,
            build: build!(|w, ids| plain("/v1/media/usage".into())),
        },
        Route {
            method: "get",
            path: "/v1/media/{media_id}",
            public: false,
            expect: all(200),
            other: Some(404),
            build: build!(|w, ids| plain(format!("/v1/media/{}", w.stored_media(ids).await))),
        },
        Route {
            method: "delete",
            path: "/v1/media/{media_id}",
            public: false,
            expect: admin_only(204),
            other: Some(404),
            build: build!(|w, ids| plain(format!("/v1/media/{}", w.stored_media(ids).await))),
        },
        Route {
            method: "get",
            path: "/v1/media/{media_id}/thumbnail",
            public: false,
            expect: all(200),
            other: Some(404),
            build: build!(|w, ids| plain(format!(
                "/v1/media/{}/thumbnail",
                w.stored_media(ids).await
            ))),
        },
        Route {
            method: "put",
            path: "/v1/journeys/{journey}/legal-hold",
            public: false,
            expect: hold_setters,
            other: Some(404),
            build: build!(|w, ids| json_at(
                format!("/v1/journeys/{}/legal-hold", w.journey(ids)),
                json!({"hold": true})
            )),
        },
    ]
}

/// Tokens no server should accept, each with the reason.
fn forged(world: &World) -> Vec<(&'static str, String)> {
    let user = world.a.user(Role::Admin);
    let claims = || {
        tokens::claims_for(
            user.id,
            world.a.tenant,
            Role::Admin,
            user.location_id,
            uuid::Uuid::new_v4(),
            DeviceId::new(),
        )
    };
    let keys = &world.a.auth.keys;
    let mut expired = claims();
    expired.iat -= 3_600;
    expired.exp = Utc::now().timestamp() - 120;
    let mut audience = claims();
    audience.aud = "someone-else".into();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
    vec![
        ("expired", keys.issue(&expired).unwrap()),
        ("alg none", format!("{header}.{body}.")),
        (
            "wrong key",
            TokenKeys::from_secret(b"another server's key, 32 bytes!!")
                .issue(&claims())
                .unwrap(),
        ),
        ("wrong audience", keys.issue(&audience).unwrap()),
    ]
}

async fn world() -> (World, crewsync_testkit::postgres::TestDatabase) {
    let db = tokio::task::spawn_blocking(|| {
        crewsync_testkit::postgres::shared_cluster()
            .unwrap()
            .fresh_database()
            .unwrap()
    })
    .await
    .unwrap();
    let opened = crewsync_server::storage::open(Some(&db.url), std::path::Path::new("."))
        .await
        .unwrap();
    let a = TestTenant::create(opened.db.clone(), ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let b = TestTenant::create(opened.db.clone(), ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let storage: Arc<dyn Storage> = opened.storage;
    // Media lands in a temp data dir, not the working directory.
    let data_dir = tempfile::tempdir().unwrap();
    let config = crewsync_server::config::Config {
        data_dir: data_dir.path().to_path_buf(),
        ..Default::default()
    };
    let services =
        crewsync_server::Services::in_process(Arc::clone(&storage), Arc::clone(&a.auth), &config)
            .unwrap();
    let base = common::serve_services(&services).await;
    let pool = PgPool::connect(&db.superuser_url).await.unwrap();
    let mut world = World {
        base,
        http: reqwest::Client::new(),
        a,
        b,
        a_journey: JourneyId::new(),
        b_journey: JourneyId::new(),
        pool,
        storage,
        _data_dir: data_dir,
    };
    for ids in [Ids::Own, Ids::Other] {
        let tenant = world.tenant(ids);
        let dispatcher = tenant
            .sign_in(Role::Dispatcher, DeviceId::new())
            .await
            .unwrap()
            .access_token;
        let created: Value = world
            .http
            .post(format!("{}/v1/journeys", world.base))
            .bearer_auth(&dispatcher)
            .json(&json!({"date": Utc::now().date_naive(), "location_id": tenant.location.id}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let journey: JourneyId = serde_json::from_value(created["id"].clone()).unwrap();
        for role in [Role::Driver, Role::Mover] {
            let status = world
                .http
                .post(format!("{}/v1/journeys/{journey}/crew", world.base))
                .bearer_auth(&dispatcher)
                .json(&json!({"user_id": tenant.user(role).id}))
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_success());
        }
        match ids {
            Ids::Own => world.a_journey = journey,
            Ids::Other => world.b_journey = journey,
        }
    }
    (world, db)
}

/// The tables whose rows differ between two snapshots.
fn changed_tables(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<String> {
    before
        .iter()
        .filter(|(table, digest)| after.get(*table) != Some(digest))
        .map(|(table, _)| table.clone())
        .collect()
}

/// Sends `request` with `token` and checks the status; a refusal must leave every
/// row as it was.
async fn check(
    world: &World,
    route: &Route,
    case: &str,
    ids: Ids,
    token: Option<&str>,
    expect: u16,
) {
    let request = (route.build)(world, ids).await;
    let before = world.snapshot().await;
    let status = world.send(route, request, token).await;
    assert_eq!(
        status, expect,
        "{} {} — {case}: expected {expect}, got {status}",
        route.method, route.path
    );
    if !(200..300).contains(&status) {
        let after = world.snapshot().await;
        let changed = changed_tables(&before, &after);
        assert!(
            changed.is_empty(),
            "{} {} — {case} answered {status} but changed {changed:?}",
            route.method,
            route.path
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_caller_as_the_table_says_and_refusals_change_nothing() {
    let (world, _db) = world().await;
    let table = table();

    // The table covers exactly what the server serves.
    let spec: Value = world
        .http
        .get(format!("{}/openapi.json", world.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let served: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    let listed: BTreeSet<(String, String)> = table
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(listed.len(), table.len(), "one entry per route");
    let missing: Vec<_> = served.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "routes without a table entry: {missing:?}"
    );
    let stale: Vec<_> = listed.difference(&served).collect();
    assert!(stale.is_empty(), "entries for routes not served: {stale:?}");

    let forged = forged(&world);
    let mut cells = 0;
    for route in &table {
        if route.public {
            check(
                &world,
                route,
                "anyone",
                Ids::Own,
                None,
                (route.expect)(Role::Admin),
            )
            .await;
            cells += 1;
            continue;
        }
        check(&world, route, "no token", Ids::Own, None, 401).await;
        for (case, token) in &forged {
            check(&world, route, case, Ids::Own, Some(token), 401).await;
        }
        cells += 1 + forged.len();
        if let Some(expect) = route.other {
            // A role this route allows, naming tenant B's ids: never B's data.
            let role = Role::iter()
                .find(|role| (route.expect)(*role) < 300)
                .unwrap();
            let token = world.token(role).await;
            check(
                &world,
                route,
                "another tenant's ids",
                Ids::Other,
                Some(&token),
                expect,
            )
            .await;
            cells += 1;
        }
        // Refused roles first: they must change nothing; then the allowed ones.
        let mut roles: Vec<Role> = Role::iter().collect();
        roles.sort_by_key(|role| (route.expect)(*role) < 300);
        for role in roles {
            let token = world.token(role).await;
            check(
                &world,
                route,
                &format!("as {role}"),
                Ids::Own,
                Some(&token),
                (route.expect)(role),
            )
            .await;
            cells += 1;
        }
    }
    eprintln!("{} routes, {cells} cells checked", table.len());

    // What the allowed calls did is in tenant A's audit trail, and it verifies.
    let admin = world.token(Role::Admin).await;
    let trail = world.get_json("/v1/audit?limit=10000", &admin).await;
    let actions: BTreeSet<&str> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .collect();
    for action in [
        "user.create",
        "user.deactivate",
        "location.create",
        "change.accepted",
    ] {
        assert!(actions.contains(action), "{action} in {actions:?}");
    }
    let verified = world.get_json("/v1/audit/verify", &admin).await;
    assert_eq!(verified["ok"], true, "{verified}");
}

/// Control: the "changed nothing" check sees a single edited row, and a refusal
/// that writes is caught (an API create refused by the rules used to be
/// quarantined like a device's offline change; this table found it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_the_snapshot_sees_one_changed_row() {
    let (world, _db) = world().await;
    let before = world.snapshot().await;
    sqlx::query("UPDATE users SET name = name || '.' WHERE id = $1")
        .bind(world.a.user(Role::Driver).id.as_uuid())
        .execute(&world.pool)
        .await
        .unwrap();
    let after = world.snapshot().await;
    let changed = changed_tables(&before, &after);
    assert_eq!(changed, vec!["users".to_owned()]);
}
