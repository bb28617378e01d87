//! Devices and a server over real HTTP on loopback (reliability matrix B).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use crewsync_core::ids::{ClientId, JourneyId, LocationId, UserId};
use crewsync_core::model::{
    ActiveUser, GpsPoint, Location, NewEntry, NewJourney, Role, Stage, Timestamp,
};
use crewsync_core::sync::runtime::{Backoff, SyncClient};
use crewsync_core::{DeviceStore, Error, StoreOptions};
use crewsync_server::storage::Storage;
use crewsync_server::storage::memory::MemoryStorage;

fn location() -> Location {
    Location {
        id: LocationId::parse("0192f1c4-0000-7000-8000-000000000002").unwrap(),
        client_id: ClientId::parse("0192f1c4-0000-7000-8000-0000000000c1").unwrap(),
        name: "HAMILTON".into(),
        timezone: "America/Toronto".into(),
    }
}

struct Device {
    store: Arc<DeviceStore>,
    _dir: tempfile::TempDir,
}

fn device(role: Role) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let store = DeviceStore::open(dir.path().join("d.sqlite"), StoreOptions::default()).unwrap();
    store.upsert_location(&location()).unwrap();
    store
        .set_active_user(Some(ActiveUser {
            user_id: UserId::new(),
            role,
        }))
        .unwrap();
    Device { store, _dir: dir }
}

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

async fn sync_server(storage: Arc<dyn Storage>) -> String {
    let addr = serve(crewsync_server::app(crewsync_server::AppState { storage })).await;
    format!("http://{addr}")
}

fn new_journey() -> NewJourney {
    NewJourney {
        id: None,
        client_id: location().client_id,
        location_id: location().id,
        date: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        truck_number: Some("T-3".into()),
        move_source_id: None,
        steps_requiring_approval: vec![],
    }
}

/// Offline work on three devices, then each reconnects: one sync each (≤ 2 round
/// trips) brings every replica to the same journey.
pub async fn offline_edits_converge_after_reconnect(storage: Arc<dyn Storage>) {
    let url = sync_server(storage).await;
    let office = device(Role::Dispatcher);
    let crews = [device(Role::Driver), device(Role::Mover)];
    let journey = office.store.create_journey(&new_journey()).unwrap();
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_converge_after_reconnect_on_the_memory_backend() {
    offline_edits_converge_after_reconnect(Arc::new(MemoryStorage::new())).await;
}

/// A captive portal answers every request with an HTML login page and 200. The device
/// must call that "network unusable", keep its outbox, and mark nothing synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captive_portal_is_network_unusable_and_marks_nothing_synced() {
    let portal = axum::Router::new().fallback(|| async {
        axum::response::Html("<html><body>Sign in to HotelWiFi</body></html>")
    });
    let url = format!("http://{}", serve(portal).await);
    let crew = device(Role::Driver);
    let journey: JourneyId = crew.store.create_journey(&new_journey()).unwrap();
    crew.store
        .add_entry(journey, NewEntry::note("in the lobby"))
        .unwrap();
    let client = SyncClient::new(Arc::clone(&crew.store), &url).unwrap();
    let err = client.sync_now().await.unwrap_err();
    assert!(matches!(err, Error::NetworkUnusable(_)), "{err}");
    assert_eq!(crew.store.outbox_len().unwrap(), 2);
    assert_eq!(crew.store.sync_cursor(&url).unwrap(), 0);
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
    let crew = device(Role::Driver);
    let journey = crew.store.create_journey(&new_journey()).unwrap();
    let client = SyncClient::new(Arc::clone(&crew.store), &url).unwrap();
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
        crew.store.outbox_len().unwrap(),
        1,
        "nothing acknowledged while offline"
    );

    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let router = crewsync_server::app(crewsync_server::AppState {
        storage: Arc::clone(&storage),
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.connected && s.pending_changes == 0),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(storage.head("default").await.unwrap(), 1);

    crew.store
        .add_entry(journey, NewEntry::note("after reconnect"))
        .unwrap();
    client.wake();
    tokio::time::timeout(Duration::from_secs(10), async {
        while storage.head("default").await.unwrap() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    client.stop().await;
    assert_eq!(crew.store.outbox_len().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_converge_after_reconnect_on_the_embedded_sqlite_backend() {
    let dir = tempfile::tempdir().unwrap();
    let storage = crewsync_server::storage::connect(None, dir.path())
        .await
        .unwrap();
    offline_edits_converge_after_reconnect(storage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_converge_after_reconnect_on_postgres() {
    let db = crewsync_testkit::postgres::shared_cluster()
        .unwrap()
        .fresh_database()
        .unwrap();
    let storage = crewsync_server::storage::connect(Some(&db.url), std::path::Path::new("."))
        .await
        .unwrap();
    offline_edits_converge_after_reconnect(storage).await;
}

/// A device that is not polling hears of another device's change on the live channel
/// and pulls it: no waiting for the next interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_notice_makes_an_idle_device_pull_at_once() {
    let url = sync_server(Arc::new(MemoryStorage::new())).await;
    let office = device(Role::Dispatcher);
    let crew = device(Role::Driver);
    let journey = office.store.create_journey(&new_journey()).unwrap();
    let office_sync = SyncClient::new(Arc::clone(&office.store), &url).unwrap();
    office_sync.sync_now().await.unwrap();

    let crew_sync = SyncClient::new(Arc::clone(&crew.store), &url).unwrap();
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
