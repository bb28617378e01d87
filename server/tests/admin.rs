//! The admin API over HTTP on loopback, on the embedded store and on Postgres:
//! every endpoint's happy path; the five other roles refused (403) on every route;
//! another tenant's ids answered 404 with no data and zero rows changed; bad input
//! refused with a clear 4xx and nothing changed; and deactivation ending a signed-in
//! device's access at its next contact (issue 4 points 1 and 2; reliability F1, F2).
//!
//! "Nothing changed" compares a snapshot of every directory and session row before
//! and after; each check has a control showing the snapshot (or the status) moves
//! when the request is allowed.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{post_sync, serve_services, sync_body};
use crewsync_core::ids::{ClientId, DeviceId, LocationId, UserId};
use crewsync_core::model::Role;
use crewsync_core::sync::auth::{Me, TokenResponse};
use crewsync_core::sync::wire::CONTENT_TYPE;
use crewsync_server::Services;
use crewsync_server::auth::sessions::SessionRow;
use crewsync_server::config::Config;
use crewsync_server::directory::{Db, Directory};
use crewsync_server::storage::{self, Storage};
use crewsync_server::testing::{TEST_PASSWORD, TestTenant};
use reqwest::Method;
use serde_json::{Value, json};
use strum::IntoEnumIterator;

struct Env {
    base: String,
    db: Db,
    a: TestTenant,
    b: TestTenant,
    /// Tenant A's admin, signed in.
    admin: String,
}

async fn env(storage: Arc<dyn Storage>, db: Db) -> Env {
    let a = TestTenant::create(db.clone(), ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let b = TestTenant::create(db.clone(), ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let services = Services::in_process(storage, Arc::clone(&a.auth), &Config::default()).unwrap();
    let admin = a
        .sign_in(Role::Admin, DeviceId::new())
        .await
        .unwrap()
        .access_token;
    Env {
        base: serve_services(&services).await,
        db,
        a,
        b,
        admin,
    }
}

/// Sends a request; the status and the body (JSON, or text as a JSON string).
async fn call(
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .timeout(common::WAIT);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn count(db: &Db, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    match db {
        Db::Postgres(pool) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .unwrap(),
        Db::Sqlite { writer, .. } => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(writer)
            .await
            .unwrap(),
    }
}

async fn sessions(db: &Db) -> Vec<SessionRow> {
    let sql = "SELECT id, tenant, user_id, device_id, location_id, created_at, last_active, \
               sync_status, pending_changes, pending_media_bytes, revoked_at, revoked_reason \
               FROM sessions ORDER BY id";
    match db {
        Db::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
        Db::Sqlite { writer, .. } => sqlx::query_as(sql).fetch_all(writer).await.unwrap(),
    }
}

/// Every directory and session row, as comparable JSON.
async fn snapshot(env: &Env) -> Value {
    let directory = Directory::new(env.db.clone());
    let mut tenants = Vec::new();
    for tenant in directory.tenants().await.unwrap() {
        let users: Vec<Value> = directory
            .users(tenant.id)
            .await
            .unwrap()
            .into_iter()
            .map(|u| json!({ "user": u, "hash": u.password_hash }))
            .collect();
        tenants.push(json!({
            "tenant": tenant,
            "locations": directory.locations(tenant.id).await.unwrap(),
            "users": users,
            "permissions": directory.permissions(tenant.id).await.unwrap().rows(),
            "move_sources": directory.move_sources(tenant.id).await.unwrap(),
        }));
    }
    let mut counts = serde_json::Map::new();
    for table in [
        "tenants",
        "locations",
        "users",
        "role_permissions",
        "move_sources",
        "sessions",
        "refresh_tokens",
    ] {
        counts.insert(table.into(), json!(count(&env.db, table).await));
    }
    let sessions: Vec<Value> = sessions(&env.db)
        .await
        .into_iter()
        .map(|s| json!([s.id, s.user_id, s.revoked_at, s.revoked_reason]))
        .collect();
    json!({ "tenants": tenants, "counts": counts, "sessions": sessions })
}

fn full_table(edit: impl Fn(&mut Value)) -> Value {
    let mut rows: Vec<Value> = crewsync_core::policy::PermissionTable::defaults()
        .rows()
        .into_iter()
        .map(|r| json!(r))
        .collect();
    for row in &mut rows {
        edit(row);
    }
    json!({ "rows": rows })
}

/// One request of every admin route, with a body that would succeed for an admin
/// of the tenant owning `user` and `location` (so a refusal is the guard's doing).
fn every_route(
    user: UserId,
    location: LocationId,
    n: usize,
) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/v1/admin/users".into(), None),
        (
            Method::POST,
            "/v1/admin/users".into(),
            Some(
                json!({ "name": "New", "email": format!("new{n}@test.example"),
                         "password": "long enough", "role": "MOVER", "location_id": location }),
            ),
        ),
        (Method::GET, format!("/v1/admin/users/{user}"), None),
        (
            Method::PATCH,
            format!("/v1/admin/users/{user}"),
            Some(json!({ "role": "MANAGER" })),
        ),
        (
            Method::POST,
            format!("/v1/admin/users/{user}/deactivate"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/admin/users/{user}/reactivate"),
            None,
        ),
        (Method::GET, "/v1/admin/locations".into(), None),
        (
            Method::POST,
            "/v1/admin/locations".into(),
            Some(json!({ "name": format!("NEW {n}"), "timezone": "America/Halifax" })),
        ),
        (Method::GET, format!("/v1/admin/locations/{location}"), None),
        (
            Method::PATCH,
            format!("/v1/admin/locations/{location}"),
            Some(json!({ "trucks": 9 })),
        ),
        (Method::GET, "/v1/admin/permissions".into(), None),
        (
            Method::PUT,
            "/v1/admin/permissions".into(),
            Some(full_table(|row| row["can_approve"] = json!(true))),
        ),
        (Method::GET, "/v1/admin/move-sources".into(), None),
        (
            Method::POST,
            "/v1/admin/move-sources".into(),
            Some(json!({ "name": format!("Referral {n}") })),
        ),
        (Method::GET, "/v1/admin/settings".into(), None),
        (
            Method::PATCH,
            "/v1/admin/settings".into(),
            Some(json!({ "name": "Renamed" })),
        ),
    ]
}

async fn every_endpoint_works_for_an_admin(env: &Env) {
    let (base, token) = (env.base.as_str(), Some(env.admin.as_str()));

    // Users: list, create, read, change.
    let (status, users) = call(base, Method::GET, "/v1/admin/users", token, None).await;
    assert_eq!(status, 200);
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 6, "tenant A's six users, none of B's");
    assert!(users.iter().all(|u| u["tenant"] == json!(env.a.tenant)));
    assert!(
        users.iter().all(|u| u.get("password_hash").is_none()),
        "no hash leaves the server"
    );

    let (status, created) = call(
        base,
        Method::POST,
        "/v1/admin/users",
        token,
        Some(&json!({ "name": " Nora New ", "email": "Nora@Test.example", "password": "correct horse",
                      "role": "MOVER", "location_id": env.a.location.id })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["email"], "nora@test.example");
    assert_eq!(created["name"], "Nora New");
    assert_eq!(created["status"], "ACTIVE");
    let nora: UserId = serde_json::from_value(created["id"].clone()).unwrap();
    // The password was hashed and works for sign-in.
    let (status, signed_in) = call(
        base,
        Method::POST,
        "/v1/auth/sign-in",
        None,
        Some(&json!({ "email": "nora@test.example", "password": "correct horse", "device_id": DeviceId::new() })),
    )
    .await;
    assert_eq!(status, 200, "{signed_in}");
    let nora_tokens: TokenResponse = serde_json::from_value(signed_in).unwrap();
    assert_eq!(nora_tokens.user.role, Role::Mover);

    let (status, read) = call(
        base,
        Method::GET,
        &format!("/v1/admin/users/{nora}"),
        token,
        None,
    )
    .await;
    assert_eq!((status, &read), (200, &created));

    // Locations: create, list, read, change.
    let (status, depot) = call(
        base,
        Method::POST,
        "/v1/admin/locations",
        token,
        Some(
            &json!({ "name": "OTTAWA", "timezone": "America/Toronto", "address": "1 Main St",
                      "storage_type": "LOCKER", "trucks": 4 }),
        ),
    )
    .await;
    assert_eq!(status, 201, "{depot}");
    let depot_id: LocationId = serde_json::from_value(depot["id"].clone()).unwrap();
    let (status, locations) = call(base, Method::GET, "/v1/admin/locations", token, None).await;
    assert_eq!(status, 200);
    assert_eq!(locations.as_array().unwrap().len(), 2);
    let (status, read) = call(
        base,
        Method::GET,
        &format!("/v1/admin/locations/{depot_id}"),
        token,
        None,
    )
    .await;
    assert_eq!((status, &read), (200, &depot));
    let (status, changed) = call(
        base,
        Method::PATCH,
        &format!("/v1/admin/locations/{depot_id}"),
        token,
        Some(&json!({ "timezone": "America/Vancouver", "address": null, "customer_care": true })),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["timezone"], "America/Vancouver");
    assert_eq!(changed["address"], Value::Null, "null clears");
    assert_eq!(changed["trucks"], 4, "absent fields stay");
    assert_eq!(changed["customer_care"], true);

    // A user's role and location change, and take effect at their next request.
    let (status, moved) = call(
        base,
        Method::PATCH,
        &format!("/v1/admin/users/{nora}"),
        token,
        Some(&json!({ "role": "MANAGER", "location_id": depot_id })),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["role"], "MANAGER");
    let (status, me) = call(
        base,
        Method::GET,
        "/v1/me",
        Some(&nora_tokens.access_token),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let me: Me = serde_json::from_value(me).unwrap();
    assert_eq!(
        (me.user.role, me.user.location_id),
        (Role::Manager, depot_id)
    );

    // The permission table: read, replace whole, seen by devices.
    let (status, table) = call(base, Method::GET, "/v1/admin/permissions", token, None).await;
    assert_eq!(status, 200);
    assert_eq!(table["rows"].as_array().unwrap().len(), 24);
    let replaced = full_table(|row| {
        if row["role"] == "MOVER" && row["step"] == 4 {
            row["can_edit"] = json!(true);
        }
    });
    let (status, answer) = call(
        base,
        Method::PUT,
        "/v1/admin/permissions",
        token,
        Some(&replaced),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (_, me) = call(
        base,
        Method::GET,
        "/v1/me",
        Some(&nora_tokens.access_token),
        None,
    )
    .await;
    let me: Me = serde_json::from_value(me).unwrap();
    let mover_4 = me
        .permissions
        .iter()
        .find(|p| p.role == Role::Mover && p.step.get() == 4)
        .unwrap();
    assert!(mover_4.can_edit, "the new table is the tenant's");

    // Move sources: list, create.
    let (status, sources) = call(base, Method::GET, "/v1/admin/move-sources", token, None).await;
    assert_eq!((status, sources), (200, json!([])));
    let (status, source) = call(
        base,
        Method::POST,
        "/v1/admin/move-sources",
        token,
        Some(&json!({ "name": "Website", "description": "the booking form" })),
    )
    .await;
    assert_eq!(status, 201, "{source}");
    assert_eq!(source["is_active"], true);
    let (_, sources) = call(base, Method::GET, "/v1/admin/move-sources", token, None).await;
    assert_eq!(sources, json!([source]));

    // Settings: read, change (slug fixed).
    let (status, settings) = call(base, Method::GET, "/v1/admin/settings", token, None).await;
    assert_eq!(status, 200);
    assert_eq!(settings["id"], json!(env.a.tenant));
    let (status, changed) = call(
        base,
        Method::PATCH,
        "/v1/admin/settings",
        token,
        Some(&json!({ "name": "Test Movers Ltd", "is_franchise": true, "settings": { "currency": "USD" } })),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["name"], "Test Movers Ltd");
    assert_eq!(changed["settings"], json!({ "currency": "USD" }));
    assert_eq!(changed["slug"], settings["slug"]);

    // Tenant B saw none of it.
    let directory = Directory::new(env.db.clone());
    assert_eq!(directory.users(env.b.tenant).await.unwrap().len(), 6);
    assert_eq!(directory.locations(env.b.tenant).await.unwrap().len(), 1);
    assert_eq!(
        directory.tenant(env.b.tenant).await.unwrap().name,
        "Test Movers"
    );
}

async fn other_roles_are_refused_everywhere(env: &Env) {
    let mover = env.a.user(Role::Mover).id;
    for role in Role::iter().filter(|r| *r != Role::Admin) {
        let token = env
            .a
            .sign_in(role, DeviceId::new())
            .await
            .unwrap()
            .access_token;
        let signed_in = snapshot(env).await;
        for (n, (method, path, body)) in every_route(mover, env.a.location.id, 0)
            .into_iter()
            .enumerate()
        {
            let (status, answer) = call(
                &env.base,
                method.clone(),
                &path,
                Some(&token),
                body.as_ref(),
            )
            .await;
            assert_eq!(status, 403, "{role} {method} {path} (#{n}): {answer}");
            assert_eq!(answer["error"], "the admin API is for the ADMIN role");
        }
        assert_eq!(snapshot(env).await, signed_in, "{role}: nothing changed");
    }
    // No token, a garbage token: 401 before anything else.
    for token in [None, Some("garbage")] {
        for (method, path, body) in every_route(mover, env.a.location.id, 0) {
            let (status, _) = call(&env.base, method.clone(), &path, token, body.as_ref()).await;
            assert_eq!(status, 401, "{token:?} {method} {path}");
        }
    }

    // Control: the same requests from the admin are served, and change rows.
    let unchanged = snapshot(env).await;
    for (method, path, body) in every_route(mover, env.a.location.id, 1) {
        let (status, answer) = call(
            &env.base,
            method.clone(),
            &path,
            Some(&env.admin),
            body.as_ref(),
        )
        .await;
        assert!(
            status == 200 || status == 201,
            "admin {method} {path}: {status} {answer}"
        );
    }
    assert_ne!(snapshot(env).await, unchanged, "the snapshot sees changes");
}

async fn another_tenants_ids_are_not_found(env: &Env) {
    let b_user = env.b.user(Role::Driver);
    let b_location = env.b.location.id;
    let before = snapshot(env).await;
    for (method, path, body) in
        every_route(b_user.id, b_location, 2)
            .into_iter()
            .filter(|(_, path, _)| {
                path.contains(&b_user.id.to_string()) || path.contains(&b_location.to_string())
            })
    {
        let (status, answer) = call(
            &env.base,
            method.clone(),
            &path,
            Some(&env.admin),
            body.as_ref(),
        )
        .await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
        let text = answer.to_string();
        assert!(
            !text.contains(&b_user.email) && !text.contains(&b_user.name),
            "{text}"
        );
    }
    // B's location in a body: refused as unknown (not "another tenant's").
    let (status, answer) = call(
        &env.base,
        Method::POST,
        "/v1/admin/users",
        Some(&env.admin),
        Some(
            &json!({ "name": "X", "email": "x@test.example", "password": "long enough",
                      "role": "DRIVER", "location_id": b_location }),
        ),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"], format!("unknown location {b_location}"));
    let (status, _) = call(
        &env.base,
        Method::PATCH,
        &format!("/v1/admin/users/{}", env.a.user(Role::Driver).id),
        Some(&env.admin),
        Some(&json!({ "location_id": b_location })),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(snapshot(env).await, before, "zero rows changed");

    // Control: the same requests with A's own ids are found, and change rows.
    let a_user = env.a.user(Role::Driver).id;
    for (method, path, body) in every_route(a_user, env.a.location.id, 3)
        .into_iter()
        .filter(|(_, path, _)| {
            path.contains(&a_user.to_string()) || path.contains(&env.a.location.id.to_string())
        })
    {
        let (status, answer) = call(
            &env.base,
            method.clone(),
            &path,
            Some(&env.admin),
            body.as_ref(),
        )
        .await;
        assert_eq!(status, 200, "{method} {path}: {answer}");
    }
    assert_ne!(snapshot(env).await, before);
}

async fn bad_input_is_refused_and_changes_nothing(env: &Env) {
    let driver = env.a.user(Role::Driver);
    let location = env.a.location.id;
    let user_path = format!("/v1/admin/users/{}", driver.id);
    let location_path = format!("/v1/admin/locations/{location}");
    let new_user = |patch: Value| {
        let mut body = json!({ "name": "Val", "email": "val@test.example", "password": "long enough",
                               "role": "DRIVER", "location_id": location });
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases: Vec<(Method, String, Value, u16, &str)> = vec![
        (
            Method::POST,
            "/v1/admin/users".into(),
            new_user(json!({ "role": "BOSS" })),
            422,
            "unknown variant `BOSS`",
        ),
        (
            Method::POST,
            "/v1/admin/users".into(),
            new_user(json!({ "location_id": LocationId::new() })),
            422,
            "unknown location",
        ),
        (
            Method::POST,
            "/v1/admin/users".into(),
            new_user(json!({ "email": driver.email.to_uppercase() })),
            409,
            "already exists",
        ),
        (
            Method::POST,
            "/v1/admin/users".into(),
            new_user(json!({ "email": "not-an-email" })),
            422,
            "is not an email address",
        ),
        (
            Method::POST,
            "/v1/admin/users".into(),
            new_user(json!({ "password": "short" })),
            422,
            "at least 8 characters",
        ),
        (
            Method::POST,
            "/v1/admin/users".into(),
            new_user(json!({ "name": "  " })),
            422,
            "name must not be empty",
        ),
        (
            Method::POST,
            "/v1/admin/users".into(),
            new_user(json!({ "admin": true })),
            422,
            "unknown field `admin`",
        ),
        (
            Method::PATCH,
            user_path.clone(),
            json!({ "role": "OWNER" }),
            422,
            "unknown variant `OWNER`",
        ),
        (
            Method::PATCH,
            user_path.clone(),
            json!({}),
            422,
            "nothing to change",
        ),
        (
            Method::PATCH,
            "/v1/admin/users/not-a-uuid".into(),
            json!({ "role": "DRIVER" }),
            400,
            "Invalid URL",
        ),
        (
            Method::POST,
            "/v1/admin/locations".into(),
            json!({ "name": "MARS", "timezone": "Mars/Olympus" }),
            422,
            "unknown timezone \"Mars/Olympus\"",
        ),
        (
            Method::POST,
            "/v1/admin/locations".into(),
            json!({ "name": "HAMILTON", "timezone": "America/Toronto" }),
            409,
            "a location named \"HAMILTON\" already exists",
        ),
        (
            Method::PATCH,
            location_path.clone(),
            json!({ "timezone": "EST5EDTX" }),
            422,
            "unknown timezone",
        ),
        (
            Method::PATCH,
            location_path.clone(),
            json!({ "trucks": -1 }),
            422,
            "trucks",
        ),
        (
            Method::PUT,
            "/v1/admin/permissions".into(),
            json!({ "rows": [] }),
            422,
            "missing: ADMIN step 1",
        ),
        (
            Method::PUT,
            "/v1/admin/permissions".into(),
            full_table(|row| {
                if row["role"] == "ADMIN" && row["step"] == 1 {
                    row["role"] = json!("MOVER");
                }
            }),
            422,
            "two rows for MOVER step 1",
        ),
        (
            Method::PUT,
            "/v1/admin/permissions".into(),
            full_table(|row| {
                if row["step"] == 4 {
                    row["step"] = json!(5);
                }
            }),
            422,
            "step number 5 is out of range",
        ),
        (
            Method::POST,
            "/v1/admin/move-sources".into(),
            json!({ "name": "" }),
            422,
            "name must not be empty",
        ),
        (
            Method::PATCH,
            "/v1/admin/settings".into(),
            json!({ "settings": [1, 2] }),
            422,
            "settings must be a JSON object",
        ),
        (
            Method::PATCH,
            "/v1/admin/settings".into(),
            json!({ "slug": "mine" }),
            422,
            "unknown field `slug`",
        ),
    ];
    let before = snapshot(env).await;
    for (method, path, body, expected, message) in cases {
        let (status, answer) = call(
            &env.base,
            method.clone(),
            &path,
            Some(&env.admin),
            Some(&body),
        )
        .await;
        assert_eq!(status, expected, "{method} {path} {body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(message),
            "{method} {path}: {error:?} lacks {message:?}"
        );
    }
    // Not JSON at all.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/admin/users", env.base))
        .bearer_auth(&env.admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // An admin cannot lock themselves out.
    let admin_id = env.a.user(Role::Admin).id;
    for (method, path, body) in [
        (
            Method::POST,
            format!("/v1/admin/users/{admin_id}/deactivate"),
            None,
        ),
        (
            Method::PATCH,
            format!("/v1/admin/users/{admin_id}"),
            Some(json!({ "role": "DRIVER" })),
        ),
    ] {
        let (status, answer) =
            call(&env.base, method, &path, Some(&env.admin), body.as_ref()).await;
        assert_eq!(status, 422, "{answer}");
    }
    assert_eq!(snapshot(env).await, before, "nothing changed");
}

/// A signed-in device (sign-in over HTTP, a sync, a live socket) of a user the
/// admin deactivates: its next sync and live upgrade are refused and its refresh
/// token is dead; reactivation lets the user sign in again, not the old session.
async fn deactivation_refuses_the_device_at_its_next_contact(env: &Env) {
    let mover = env.a.user(Role::Mover);
    let (status, answer) = call(
        &env.base,
        Method::POST,
        "/v1/auth/sign-in",
        None,
        Some(&json!({ "email": mover.email, "password": TEST_PASSWORD, "device_id": DeviceId::new() })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let tokens: TokenResponse = serde_json::from_value(answer).unwrap();
    // Control: before deactivation the device syncs.
    let (status, _) = post_sync(
        &env.base,
        &tokens.access_token,
        CONTENT_TYPE,
        sync_body(&[]),
    )
    .await;
    assert_eq!(status, 200);

    let (status, answer) = call(
        &env.base,
        Method::POST,
        &format!("/v1/admin/users/{}/deactivate", mover.id),
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["user"]["status"], "INACTIVE");
    assert_eq!(answer["sessions_revoked"], 1);

    let (status, _) = post_sync(
        &env.base,
        &tokens.access_token,
        CONTENT_TYPE,
        sync_body(&[]),
    )
    .await;
    assert!(
        status == 401 || status == 403,
        "sync after deactivation: {status}"
    );
    let live = reqwest::Client::new()
        .get(format!("{}/v1/live", env.base))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .unwrap();
    assert!(
        matches!(live.status().as_u16(), 401 | 403),
        "{}",
        live.status()
    );
    let (status, answer) = call(
        &env.base,
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(&json!({ "refresh_token": tokens.refresh_token })),
    )
    .await;
    assert!(status == 401 || status == 403, "refresh: {status} {answer}");
    let sign_in =
        json!({ "email": mover.email, "password": TEST_PASSWORD, "device_id": DeviceId::new() });
    let (status, _) = call(
        &env.base,
        Method::POST,
        "/v1/auth/sign-in",
        None,
        Some(&sign_in),
    )
    .await;
    assert_eq!(status, 403, "a deactivated user cannot sign in");

    // Reactivated: a fresh sign-in works; the old session stays ended (it was
    // revoked, not merely blocked by the status).
    let (status, answer) = call(
        &env.base,
        Method::POST,
        &format!("/v1/admin/users/{}/reactivate", mover.id),
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!((status, &answer["status"]), (200, &json!("ACTIVE")));
    let (status, _) = post_sync(
        &env.base,
        &tokens.access_token,
        CONTENT_TYPE,
        sync_body(&[]),
    )
    .await;
    assert_eq!(status, 401, "the old session was revoked");
    let (status, _) = call(
        &env.base,
        Method::POST,
        "/v1/auth/sign-in",
        None,
        Some(&sign_in),
    )
    .await;
    assert_eq!(status, 200);
}

async fn all(storage: Arc<dyn Storage>, db: Db) {
    let env = env(storage, db).await;
    every_endpoint_works_for_an_admin(&env).await;
    other_roles_are_refused_everywhere(&env).await;
    another_tenants_ids_are_not_found(&env).await;
    bad_input_is_refused_and_changes_nothing(&env).await;
    deactivation_refuses_the_device_at_its_next_contact(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let opened = storage::open(None, dir.path()).await.unwrap();
    all(opened.storage, opened.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_on_postgres() {
    let db = crewsync_testkit::postgres::shared_cluster()
        .unwrap()
        .fresh_database()
        .unwrap();
    let opened = storage::open(Some(&db.url), std::path::Path::new("."))
        .await
        .unwrap();
    all(opened.storage, opened.db).await;
}

/// `GET /openapi.json` describes every admin route (tag `admin`, bearer token)
/// and the four auth routes (tag `auth`), and every schema it refers to is in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_the_admin_and_auth_routes() {
    let services = common::memory_services(crewsync_server::MAX_BODY_BYTES).await;
    let base = serve_services(&services.services).await;
    let (status, doc) = call(&base, Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, 200, "{doc}");
    let paths = &doc["paths"];

    let (user, location) = (UserId::new(), LocationId::new());
    let routes = every_route(user, location, 0);
    assert_eq!(routes.len(), 16);
    for (method, path, body) in routes {
        let template = path
            .replace(&user.to_string(), "{id}")
            .replace(&location.to_string(), "{id}");
        let method = method.as_str().to_lowercase();
        let operation = &paths[&template][&method];
        assert!(
            operation.is_object(),
            "{method} {template} is not documented"
        );
        assert_eq!(operation["tags"], json!(["admin"]), "{method} {template}");
        assert_eq!(
            operation["security"],
            json!([{ "bearer": [] }]),
            "{method} {template}"
        );
        assert_eq!(
            operation["requestBody"].is_object(),
            body.is_some(),
            "{method} {template}: request body documented iff it takes one"
        );
        for status in ["401", "403"] {
            assert!(
                operation["responses"][status].is_object(),
                "{method} {template}: no {status}"
            );
        }
        if template.contains("{id}") {
            assert_eq!(operation["parameters"][0]["name"], "id", "{template}");
            assert_eq!(operation["parameters"][0]["in"], "path", "{template}");
            assert!(operation["responses"]["404"].is_object(), "{template}");
        }
    }

    for (method, path, bearer) in [
        ("post", "/v1/auth/sign-in", false),
        ("post", "/v1/auth/refresh", false),
        ("post", "/v1/auth/sign-out", true),
        ("get", "/v1/me", true),
    ] {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        assert_eq!(operation["tags"], json!(["auth"]), "{method} {path}");
        assert_eq!(operation["security"].is_array(), bearer, "{method} {path}");
    }
    assert!(paths["/v1/auth/sign-in"]["post"]["responses"]["429"].is_object());

    // Every `$ref` resolves within the document.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    out.push(target);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.contains(&"#/components/schemas/NewUser"), "{found:?}");
    for target in found {
        let name = target.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{target} is not in the document"
        );
    }
}

/// Runs the server binary's `user …` command on the embedded store in `dir`.
async fn user_command(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_crewsync-server"))
        .arg("user")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("DATABASE_URL")
        .env_remove("CREWSYNC_DATABASE_URL")
        .env("CREWSYNC_USER_PASSWORD", "operator-set")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_command_manages_users_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let opened = storage::open(None, dir.path()).await.unwrap();
    let a = TestTenant::create(opened.db.clone(), ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let b = TestTenant::create(opened.db.clone(), ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let slug = format!("test-{}", a.tenant);
    let directory = Directory::new(opened.db.clone());

    let (ok, out, err) = user_command(
        dir.path(),
        &[
            "add",
            "--tenant",
            &slug,
            "--email",
            "Op@Test.example",
            "--name",
            "Olive Op",
            "--role",
            "driver",
            "--location",
            "hamilton",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("added "), "{out}");
    let olive = directory
        .user_by_email("op@test.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((olive.tenant, olive.role), (a.tenant, Role::Driver));
    let hash = olive.password_hash.clone().unwrap();
    assert!(crewsync_server::auth::password::verify("operator-set", &hash).unwrap());

    // Bad input fails with a clear message and changes nothing.
    let before = directory.users(a.tenant).await.unwrap();
    for (args, message) in [
        (
            vec![
                "add",
                "--tenant",
                &slug,
                "--email",
                "x@test.example",
                "--name",
                "X",
                "--role",
                "driver",
                "--location",
                "NOWHERE",
            ],
            "location \"NOWHERE\" not found",
        ),
        (
            vec![
                "add",
                "--tenant",
                &slug,
                "--email",
                "op@test.example",
                "--name",
                "X",
                "--role",
                "driver",
                "--location",
                "HAMILTON",
            ],
            "already exists",
        ),
        (
            vec![
                "add",
                "--tenant",
                "no-such-tenant",
                "--email",
                "y@test.example",
                "--name",
                "Y",
                "--role",
                "driver",
                "--location",
                "HAMILTON",
            ],
            "tenant \"no-such-tenant\" not found",
        ),
        // Another tenant's user cannot be reached through this tenant.
        (
            vec![
                "deactivate",
                "--tenant",
                &slug,
                "--email",
                &b.user(Role::Driver).email,
            ],
            "not found",
        ),
    ] {
        let (ok, _, err) = user_command(dir.path(), &args).await;
        assert!(!ok, "{args:?}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    assert_eq!(directory.users(a.tenant).await.unwrap(), before);
    assert_eq!(
        directory
            .user(b.tenant, b.user(Role::Driver).id)
            .await
            .unwrap()
            .status,
        crewsync_server::directory::UserStatus::Active
    );

    // Deactivation ends the user's sessions.
    let sessions = crewsync_server::auth::sessions::Sessions::new(opened.db.clone());
    sessions
        .open(a.tenant, olive.id, DeviceId::new(), olive.location_id)
        .await
        .unwrap();
    let (ok, out, err) = user_command(
        dir.path(),
        &[
            "deactivate",
            "--tenant",
            &slug,
            "--email",
            "op@test.example",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("(1 sessions ended)"), "{out}");
    assert!(sessions.open_sessions(a.tenant).await.unwrap().is_empty());
    let (ok, out, _) = user_command(dir.path(), &["list", "--tenant", &a.tenant.to_string()]).await;
    assert!(ok);
    assert_eq!(out.lines().count(), 7, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("op@test.example") && l.contains("INACTIVE")),
        "{out}"
    );
    let (ok, _, err) = user_command(
        dir.path(),
        &[
            "reactivate",
            "--tenant",
            &slug,
            "--email",
            "op@test.example",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        directory.user(a.tenant, olive.id).await.unwrap().status,
        crewsync_server::directory::UserStatus::Active
    );
}
