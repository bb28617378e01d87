//! Devices and a server over real HTTP on loopback (reliability matrix B), every
//! device signed in to the tenant its journeys belong to. The server checks each
//! pushed change against its sender, so every actor here does only what its role
//! allows: the office (a dispatcher) creates journeys and puts crews on them, and
//! crews write only to journeys whose crew they are on.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crewsync_core::ids::{ClientId, JourneyId, LocationId};
use crewsync_core::model::{GpsPoint, NewEntry, NewJourney, Role, Stage, Timestamp};
use crewsync_core::sync::runtime::{Backoff, SyncClient};
use crewsync_core::{DeviceStore, Error, StoreOptions};
use crewsync_server::storage::Storage;
use crewsync_server::storage::memory::MemoryStorage;
use crewsync_server::testing::{EmbeddedTestDb, TEST_PASSWORD, TestTenant};

fn tenant_id() -> ClientId {
    ClientId::parse("0192f1c4-0000-7000-8000-0000000000c1").unwrap()
}

fn location_id() -> LocationId {
    LocationId::parse("0192f1c4-0000-7000-8000-000000000002").unwrap()
}

/// A change log and the tenant signed in against it. Sign-in lives in SQL: with
/// the memory log, the tenant sits in an embedded database in a temp dir beside it.
struct Backend {
    storage: Arc<dyn Storage>,
    tenant: TestTenant,
    _db: Option<EmbeddedTestDb>,
}

impl Backend {
    async fn memory() -> Self {
        let db = EmbeddedTestDb::create(tenant_id(), location_id())
            .await
            .unwrap();
        Self {
            storage: Arc::new(MemoryStorage::new()),
            tenant: db.tenant.clone(),
            _db: Some(db),
        }
    }

    /// The embedded SQLite store: the log and the tenant in one file.
    async fn embedded() -> Self {
        let db = EmbeddedTestDb::create(tenant_id(), location_id())
            .await
            .unwrap();
        Self {
            storage: Arc::clone(&db.storage),
            tenant: db.tenant.clone(),
            _db: Some(db),
        }
    }

    async fn postgres(url: &str) -> Self {
        let opened = crewsync_server::storage::open(Some(url), Path::new("."))
            .await
            .unwrap();
        let tenant = TestTenant::create(opened.db, tenant_id(), location_id())
            .await
            .unwrap();
        Self {
            storage: opened.storage,
            tenant,
            _db: None,
        }
    }

    /// The tenant's key in the change log.
    fn key(&self) -> String {
        self.tenant.tenant.to_string()
    }

    fn app(&self) -> axum::Router {
        crewsync_server::app(crewsync_server::AppState {
            storage: Arc::clone(&self.storage),
            auth: Arc::clone(&self.tenant.auth),
        })
    }
}

struct Device {
    store: Arc<DeviceStore>,
    _dir: tempfile::TempDir,
}

/// A device with the tenant's location and nobody signed in yet.
fn signed_out_device(tenant: &TestTenant) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let store = DeviceStore::open(dir.path().join("d.sqlite"), StoreOptions::default()).unwrap();
    store.upsert_location(&tenant.device_location()).unwrap();
    Device { store, _dir: dir }
}

/// A device with `role`'s user of `tenant` signed in and active: the store keeps
/// the tokens, so every `SyncClient` on it syncs as that user.
async fn device(tenant: &TestTenant, role: Role) -> Device {
    let device = signed_out_device(tenant);
    let tokens = tenant
        .sign_in(role, device.store.device_id())
        .await
        .unwrap();
    device.store.save_sign_in(&tokens, true).unwrap();
    device
}

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

async fn sync_server(backend: &Backend) -> String {
    let addr = serve(backend.app()).await;
    format!("http://{addr}")
}

/// Puts `role`'s user of `tenant` on `journey`'s crew (an office action).
fn assign(office: &Device, tenant: &TestTenant, journey: JourneyId, role: Role) {
    office
        .store
        .assign_crew(journey, tenant.user(role).id, role)
        .unwrap();
}

fn new_journey(tenant: &TestTenant) -> NewJourney {
    NewJourney {
        id: None,
        client_id: tenant.tenant,
        location_id: tenant.location.id,
        date: chrono::Utc::now().date_naive(),
        truck_number: Some("T-3".into()),
        move_source_id: None,
        steps_requiring_approval: vec![],
    }
}

/// Offline work on three devices, then each reconnects: one sync each (≤ 2 round
/// trips) brings every replica to the same journey.
async fn offline_edits_converge_after_reconnect(backend: Backend) {
    let url = sync_server(&backend).await;
    let tenant = &backend.tenant;
    let office = device(tenant, Role::Dispatcher).await;
    let crews = [
        device(tenant, Role::Driver).await,
        device(tenant, Role::Mover).await,
    ];
    // The office creates the journey and puts both crews on it; the crews then
    // receive it (with their assignment) before going offline.
    let journey = office.store.create_journey(&new_journey(tenant)).unwrap();
    assign(&office, tenant, journey, Role::Driver);
    assign(&office, tenant, journey, Role::Mover);
    let office_sync = SyncClient::new(Arc::clone(&office.store), &url).unwrap();
    office_sync.sync_now().await.unwrap();
    let clients: Vec<_> = crews
        .iter()
        .map(|c| SyncClient::new(Arc::clone(&c.store), &url).unwrap())
        .collect();
    for client in &clients {
        client.sync_now().await.unwrap();
    }

    // Offline: everyone edits the same journey.
    for (i, crew) in crews.iter().enumerate() {
        for n in 0..30 {
            crew.store
                .add_entry(journey, NewEntry::note(format!("crew {i} #{n}")))
                .unwrap();
        }
        for n in 0..10 {
            crew.store
                .record_gps_point(
                    journey,
                    GpsPoint {
                        lat: 43.2,
                        lon: -79.8,
                        accuracy_m: None,
                        at: Timestamp(n),
                    },
                )
                .unwrap();
        }
        crew.store
            .advance_stage(journey, [Stage::EnRoute, Stage::Onsite][i])
            .unwrap();
    }
    office
        .store
        .set_truck_number(journey, Some("T-4".into()))
        .unwrap();
    office.store.add_note(journey, "gate code 4411").unwrap();

    // Reconnect, one after the other, then once more so everyone hears the others.
    let mut round_trips = Vec::new();
    for client in clients.iter().chain([&office_sync]) {
        round_trips.push(client.sync_now().await.unwrap().round_trips);
    }
    for client in clients.iter().chain([&office_sync]) {
        let outcome = client.sync_now().await.unwrap();
        assert_eq!(outcome.pending, 0);
    }
    assert!(
        round_trips.iter().all(|&n| n <= 2),
        "round trips per reconnect: {round_trips:?}"
    );
    let view = office.store.journey(journey).unwrap();
    assert_eq!(view.entries.len(), 60);
    assert_eq!(view.gps_point_count, 20);
    assert_eq!(view.stage, Stage::Onsite);
    for crew in &crews {
        assert_eq!(crew.store.journey(journey).unwrap(), view);
        assert_eq!(
            crew.store.heads(journey).unwrap(),
            office.store.heads(journey).unwrap()
        );
        assert_eq!(
            crew.store.outbox_len().unwrap(),
            0,
            "every change acknowledged"
        );
    }
    for store in crews.iter().chain([&office]).map(|d| &d.store) {
        assert_eq!(
            store.rejected_changes(journey).unwrap(),
            vec![],
            "every actor did only what its role allows"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_converge_after_reconnect_on_the_memory_backend() {
    offline_edits_converge_after_reconnect(Backend::memory().await).await;
}

/// A captive portal answers every request with an HTML login page and 200. The device
/// must call that "network unusable", keep its outbox, and mark nothing synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captive_portal_is_network_unusable_and_marks_nothing_synced() {
    let portal = axum::Router::new().fallback(|| async {
        axum::response::Html("<html><body>Sign in to HotelWiFi</body></html>")
    });
    let url = format!("http://{}", serve(portal).await);
    let backend = Backend::memory().await;
    // A dispatcher's device: creating a journey and adding to it is its to do.
    let office = device(&backend.tenant, Role::Dispatcher).await;
    let journey: JourneyId = office
        .store
        .create_journey(&new_journey(&backend.tenant))
        .unwrap();
    office
        .store
        .add_entry(journey, NewEntry::note("in the lobby"))
        .unwrap();
    let client = SyncClient::new(Arc::clone(&office.store), &url).unwrap();
    let err = client.sync_now().await.unwrap_err();
    assert!(matches!(err, Error::NetworkUnusable(_)), "{err}");
    assert_eq!(office.store.outbox_len().unwrap(), 2);
    assert_eq!(office.store.sync_cursor(&url).unwrap(), 0);
    let status = client.status().borrow().clone();
    assert!(!status.connected && status.last_success.is_none());
    assert!(status.last_error.unwrap().contains("captive portal"));
}

/// The background loop syncs by itself, backs off while the server is unreachable,
/// catches up when it returns, and stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_loop_retries_until_the_server_is_back() {
    // Reserve a port, then start the server there only later.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}");
    let backend = Backend::memory().await;
    // The office's device: it creates the journey and adds to it while the server is
    // away, as a dispatcher may.
    let office = device(&backend.tenant, Role::Dispatcher).await;
    let journey = office
        .store
        .create_journey(&new_journey(&backend.tenant))
        .unwrap();
    let client = SyncClient::new(Arc::clone(&office.store), &url).unwrap();
    let backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    client.start(Duration::from_secs(30), backoff);
    let mut status = client.status();
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.last_error.is_some()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        office.store.outbox_len().unwrap(),
        1,
        "nothing acknowledged while offline"
    );

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let router = backend.app();
    tokio::spawn(async move { axum::serve(listener, router).await });
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.connected && s.pending_changes == 0),
    )
    .await
    .unwrap()
    .unwrap();
    let (storage, key) = (&backend.storage, backend.key());
    assert_eq!(storage.head(&key).await.unwrap(), 1);

    office
        .store
        .add_entry(journey, NewEntry::note("after reconnect"))
        .unwrap();
    client.wake();
    tokio::time::timeout(Duration::from_secs(10), async {
        while storage.head(&key).await.unwrap() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    client.stop().await;
    assert_eq!(office.store.outbox_len().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_converge_after_reconnect_on_the_embedded_sqlite_backend() {
    offline_edits_converge_after_reconnect(Backend::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_converge_after_reconnect_on_postgres() {
    let db = crewsync_testkit::postgres::shared_cluster()
        .unwrap()
        .fresh_database()
        .unwrap();
    offline_edits_converge_after_reconnect(Backend::postgres(&db.url).await).await;
}

/// A device that is not polling hears of another device's change on the live channel
/// and pulls it: no waiting for the next interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_notice_makes_an_idle_device_pull_at_once() {
    let backend = Backend::memory().await;
    let url = sync_server(&backend).await;
    let office = device(&backend.tenant, Role::Dispatcher).await;
    // The crew signs in over HTTP, as the app does.
    let crew = signed_out_device(&backend.tenant);
    let journey = office
        .store
        .create_journey(&new_journey(&backend.tenant))
        .unwrap();
    assign(&office, &backend.tenant, journey, Role::Driver);
    let office_sync = SyncClient::new(Arc::clone(&office.store), &url).unwrap();
    office_sync.sync_now().await.unwrap();

    let crew_sync = SyncClient::new(Arc::clone(&crew.store), &url).unwrap();
    let driver = backend.tenant.user(Role::Driver);
    let tokens = crew_sync
        .sign_in(&driver.email, TEST_PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        (tokens.user.id, tokens.user.role),
        (driver.id, Role::Driver)
    );
    assert_eq!(
        crew.store.active_user().unwrap().unwrap().user_id,
        driver.id
    );
    let backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    crew_sync.start(Duration::from_secs(3600), backoff); // the interval never elapses here
    let mut status = crew_sync.status();
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.live && s.last_success.is_some()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        crew.store.journey(journey).unwrap().truck_number.as_deref(),
        Some("T-3")
    );

    office
        .store
        .set_truck_number(journey, Some("T-9".into()))
        .unwrap();
    office_sync.sync_now().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if crew.store.journey(journey).unwrap().truck_number.as_deref() == Some("T-9") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the live notice should have made the crew device sync");
    crew_sync.stop().await;
    assert!(!crew_sync.status().borrow().live);
}

/// The device's side of sign-in: a refused access token is refreshed once and the
/// exchange repeated, the rotated tokens kept in the store; a revoked session fails
/// the sync as "not signed in", keeps the queue and marks the account, and signing
/// in again sends what waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_refreshed_and_a_revoked_session_keeps_the_queue() {
    let backend = Backend::memory().await;
    let url = sync_server(&backend).await;
    let tenant = &backend.tenant;
    // A dispatcher's device creates the journey and adds to it: all its own to do.
    let office = device(tenant, Role::Dispatcher).await;
    let journey = office.store.create_journey(&new_journey(tenant)).unwrap();
    let client = SyncClient::new(Arc::clone(&office.store), &url).unwrap();
    let signed_in = client.tokens().expect("the saved sign-in is used");
    let user = signed_in.user.id;

    // An access token the server refuses (as an expired one): refreshed, then synced.
    let mut refused = signed_in.clone();
    refused.access_token = "not-a-token".into();
    client.use_tokens(refused).await.unwrap();
    let outcome = client.sync_now().await.unwrap();
    assert_eq!(outcome.pending, 0);
    assert_eq!(backend.storage.head(&backend.key()).await.unwrap(), 1);
    let refreshed = client.tokens().unwrap();
    assert_ne!(refreshed.access_token, "not-a-token");
    assert_ne!(refreshed.refresh_token, signed_in.refresh_token, "rotated");
    let saved = office.store.account(user).unwrap().unwrap();
    assert_eq!(
        saved.credentials.refresh_token, refreshed.refresh_token,
        "the rotated refresh token is saved: the old one is spent"
    );
    assert!(!saved.needs_sign_in);

    // The session is revoked on the server (sign-out elsewhere, an admin).
    assert!(
        tenant
            .auth
            .sessions
            .revoke(tenant.tenant, refreshed.session_id, "revoked by the test")
            .await
            .unwrap()
    );
    office
        .store
        .add_entry(journey, NewEntry::note("after the revocation"))
        .unwrap();
    let err = client.sync_now().await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized(_)), "{err}");
    assert_eq!(office.store.outbox_len().unwrap(), 1, "the queue is kept");
    assert!(office.store.account(user).unwrap().unwrap().needs_sign_in);
    assert_eq!(backend.storage.head(&backend.key()).await.unwrap(), 1);
    // A restarted app does not try the refused tokens again.
    assert!(
        SyncClient::new(Arc::clone(&office.store), &url)
            .unwrap()
            .tokens()
            .is_none()
    );

    // Signing in again sends what waited.
    client
        .sign_in(&tenant.user(Role::Dispatcher).email, TEST_PASSWORD)
        .await
        .unwrap();
    assert!(!office.store.account(user).unwrap().unwrap().needs_sign_in);
    let outcome = client.sync_now().await.unwrap();
    assert_eq!((outcome.pushed, outcome.pending), (1, 0));
    assert_eq!(backend.storage.head(&backend.key()).await.unwrap(), 2);
}
