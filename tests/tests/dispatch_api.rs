//! The dispatcher API end to end (issue 4 point 8), on the embedded store and on
//! Postgres: a dispatcher creates a journey over JSON, puts a mover on it and
//! changes the truck; the mover's running device receives each edit live; the
//! edits are automerge changes in the dispatcher's own name; sync health shows
//! what the devices reported; roles, locations and other tenants' ids are refused;
//! `/openapi.json` describes every dispatcher route.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chrono::Utc;
use crewsync_core::ChangeMessage;
use crewsync_core::ids::{ClientId, JourneyId, LocationId};
use crewsync_core::model::Role;
use crewsync_core::sync::runtime::Backoff;
use crewsync_core::sync::wire::{self, CONTENT_TYPE, DeviceReport, PROTOCOL_VERSION, SyncRequest};
use crewsync_server::testing::TestTenant;
use serde_json::{Value, json};

use common::{Backend, Device, eventually};

/// A signed-in API caller.
struct Caller {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Caller {
    async fn of(tenant: &TestTenant, role: Role, base: &str) -> Self {
        let tokens = tenant
            .sign_in(role, crewsync_core::ids::DeviceId::new())
            .await
            .unwrap();
        Self::with_token(base, tokens.access_token)
    }

    fn with_token(base: &str, token: String) -> Self {
        Self {
            base: base.to_owned(),
            token,
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

async fn dispatcher_runs_a_day(backend: Backend) {
    let tenant = &backend.tenant;
    let base = backend.serve().await;
    let today = Utc::now().date_naive();
    let dispatcher = Caller::of(tenant, Role::Dispatcher, &base).await;
    let mover = Device::of(tenant, tenant.user(Role::Mover), &base).await;
    mover
        .sync
        .start(Duration::from_secs(3600), Backoff::default());
    tokio::time::sleep(Duration::from_millis(300)).await; // the live socket connects

    // Create: 201 with the journey as stored.
    let (status, created) = dispatcher
        .post(
            "/v1/journeys",
            json!({"date": today, "location_id": tenant.location.id, "truck_number": "T-12"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let journey: JourneyId = serde_json::from_value(created["id"].clone()).unwrap();
    assert_eq!(created["truck_number"], "T-12");
    let (status, listed) = dispatcher.get(&format!("/v1/journeys?date={today}")).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], created["id"]);

    // Assign: the mover's running device receives the journey live, whole.
    let (status, after) = dispatcher
        .post(
            &format!("/v1/journeys/{journey}/crew"),
            json!({"user_id": mover.user.id}),
        )
        .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["crew"][0]["role"], "MOVER");
    eventually("the mover's device receives its new journey", || {
        mover.holds().contains(&journey)
    })
    .await;

    // The truck changes; the device hears of it live.
    let (status, _) = dispatcher
        .send(
            reqwest::Method::PUT,
            &format!("/v1/journeys/{journey}/truck"),
            Some(json!({"truck_number": "T-40"})),
        )
        .await;
    assert_eq!(status, 200);
    eventually("the device sees the new truck", || {
        mover
            .store
            .journey(journey)
            .is_ok_and(|j| j.truck_number.as_deref() == Some("T-40"))
    })
    .await;

    // Every edit is an automerge change in the dispatcher's own name.
    let record = backend
        .storage
        .journey(&tenant.tenant.to_string(), journey)
        .await
        .unwrap();
    assert_eq!(record.changes.len(), 3, "create, assign, truck");
    for bytes in &record.changes {
        let change = automerge::Change::from_bytes(bytes.clone()).unwrap();
        let message = change.message().and_then(ChangeMessage::parse).unwrap();
        assert_eq!(message.origin.user_id, tenant.user(Role::Dispatcher).id);
        assert_eq!(message.origin.role, Role::Dispatcher);
    }

    // Sync health: what the mover's device reported at its last sync.
    let report = SyncRequest {
        version: PROTOCOL_VERSION,
        device_id: mover.store.device_id(),
        actor: mover.store.actor_bytes(),
        cursor: 0,
        changes: vec![],
        max_changes: 1,
        held: None,
        report: Some(DeviceReport {
            pending_changes: 7,
            pending_media_bytes: 123_456,
        }),
    };
    mover.sync.stop().await;
    let mover_token = mover.sync.tokens().unwrap().access_token;
    let status = reqwest::Client::new()
        .post(format!("{base}/v1/sync"))
        .bearer_auth(&mover_token)
        .header("content-type", CONTENT_TYPE)
        .body(wire::encode(&report))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let (status, health) = dispatcher
        .get(&format!("/v1/sync-health?date={today}"))
        .await;
    assert_eq!(status, 200, "{health}");
    let truck = &health[0];
    assert_eq!(truck["truck_number"], "T-40");
    let device = &truck["devices"][0];
    assert_eq!(device["device_id"], json!(mover.store.device_id()));
    assert_eq!(device["pending_changes"], 7);
    assert_eq!(device["pending_media_bytes"], 123_456);
    assert!(device["last_contact"].as_i64().unwrap() > 0);

    // Unassign: the device drops the journey at its next sync.
    let (status, _) = dispatcher
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/journeys/{journey}/crew/{}", mover.user.id),
            None,
        )
        .await;
    assert_eq!(status, 200);
    mover.sync.sync_now().await.unwrap();
    assert!(mover.holds().is_empty());

    // Refusals.
    let mover_api = Caller::with_token(&base, mover_token);
    let (status, body) = mover_api
        .post(
            "/v1/journeys",
            json!({"date": today, "location_id": tenant.location.id}),
        )
        .await;
    assert_eq!(status, 403, "a mover does not create journeys: {body}");
    let (status, _) = mover_api.get("/v1/sync-health").await;
    assert_eq!(status, 403);
    let (status, _) = mover_api.get(&format!("/v1/journeys/{journey}")).await;
    assert_eq!(status, 404, "off the crew: not the mover's to see");
    let away = tenant.add_location("BURLINGTON").await.unwrap();
    let (status, _) = dispatcher
        .post(
            "/v1/journeys",
            json!({"date": today, "location_id": away.id}),
        )
        .await;
    assert_eq!(
        status, 403,
        "another location's journeys are not this dispatcher's"
    );
    let (status, _) = dispatcher
        .post(
            &format!("/v1/journeys/{journey}/crew"),
            json!({"user_id": crewsync_core::ids::UserId::new()}),
        )
        .await;
    assert_eq!(status, 404, "unknown user");
    let (status, body) = dispatcher
        .post("/v1/journeys", json!({"date": "yesterday"}))
        .await;
    assert_eq!(status, 422, "malformed body: {body}");

    // Another tenant's dispatcher: 404 for this tenant's journey and location.
    let other = TestTenant::create(
        tenant.auth.directory.db().clone(),
        ClientId::new(),
        LocationId::new(),
    )
    .await
    .unwrap();
    let outsider = Caller::of(&other, Role::Admin, &base).await;
    let (status, body) = outsider.get(&format!("/v1/journeys/{journey}")).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = outsider
        .post(
            &format!("/v1/journeys/{journey}/crew"),
            json!({"user_id": other.user(Role::Mover).id}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = outsider
        .post(
            "/v1/journeys",
            json!({"date": today, "location_id": tenant.location.id}),
        )
        .await;
    assert_eq!(status, 404, "another tenant's location");
    let after = backend
        .storage
        .journey(&tenant.tenant.to_string(), journey)
        .await
        .unwrap();
    assert_eq!(after.changes.len(), 4, "only the unassignment was added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_runs_a_day_through_the_api_on_the_embedded_store() {
    dispatcher_runs_a_day(Backend::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_runs_a_day_through_the_api_on_postgres() {
    dispatcher_runs_a_day(Backend::fresh_postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_the_dispatcher_routes() {
    let backend = Backend::embedded().await;
    let base = backend.serve().await;
    let spec: Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/journeys", "post"),
        ("/v1/journeys", "get"),
        ("/v1/journeys/{journey}", "get"),
        ("/v1/journeys/{journey}/crew", "post"),
        ("/v1/journeys/{journey}/crew/{user}", "delete"),
        ("/v1/journeys/{journey}/truck", "put"),
        ("/v1/sync-health", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is described"
        );
    }
    assert!(spec["components"]["schemas"]["CreateJourney"].is_object());
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}
