//! The server's write checks end to end (reliability matrix F3): real devices over
//! loopback HTTP, a driver pushing what only the office may do. The refused change
//! and the one built on it come back as rejections, stay out of the log and every
//! replica, sit in quarantine with their reasons and stay visible on the device —
//! and the device's next honest change still syncs (a refusal does not wedge it).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use crewsync_core::ids::{ClientId, LocationId};
use crewsync_core::model::{NewEntry, NewJourney, Role};
use crewsync_core::sync::runtime::SyncClient;
use crewsync_core::{DeviceStore, Error, JourneyAction, StoreOptions};
use crewsync_server::storage::QuarantineKind;
use crewsync_server::testing::{EmbeddedTestDb, TestTenant};

struct Device {
    store: Arc<DeviceStore>,
    _dir: tempfile::TempDir,
}

async fn device(tenant: &TestTenant, role: Role) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let store = DeviceStore::open(dir.path().join("d.sqlite"), StoreOptions::default()).unwrap();
    store.upsert_location(&tenant.device_location()).unwrap();
    let tokens = tenant.sign_in(role, store.device_id()).await.unwrap();
    store.save_sign_in(&tokens, true).unwrap();
    Device { store, _dir: dir }
}

fn texts(store: &DeviceStore, journey: crewsync_core::ids::JourneyId) -> Vec<String> {
    let mut texts: Vec<String> = store
        .journey(journey)
        .unwrap()
        .entries
        .into_iter()
        .filter_map(|e| e.text)
        .collect();
    texts.sort();
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_is_reported_quarantined_and_kept_visible_without_wedging_sync() {
    let db = EmbeddedTestDb::create(ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let tenant = db.tenant.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = crewsync_server::app(crewsync_server::AppState {
        storage: Arc::clone(&db.storage),
        auth: Arc::clone(&tenant.auth),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The office creates the journey and puts the driver on its crew.
    let office = device(&tenant, Role::Dispatcher).await;
    let driver = device(&tenant, Role::Driver).await;
    let journey = office
        .store
        .create_journey(&NewJourney {
            id: None,
            client_id: tenant.tenant,
            location_id: tenant.location.id,
            date: chrono::Utc::now().date_naive(),
            truck_number: Some("T-1".into()),
            move_source_id: None,
            steps_requiring_approval: vec![],
        })
        .unwrap();
    office
        .store
        .assign_crew(journey, tenant.user(Role::Driver).id, Role::Driver)
        .unwrap();
    let office_sync = SyncClient::new(Arc::clone(&office.store), &url).unwrap();
    let driver_sync = SyncClient::new(Arc::clone(&driver.store), &url).unwrap();
    office_sync.sync_now().await.unwrap();
    driver_sync.sync_now().await.unwrap();

    // Offline, a driver's app that does not enforce the rules lets through what
    // only the office may do (an honest device refuses it: `device_policy`).
    driver
        .store
        .add_entry(journey, NewEntry::note("loaded the piano"))
        .unwrap();
    let steal = JourneyAction::SetTruckNumber {
        truck_number: Some("T-STOLEN".into()),
    };
    assert!(matches!(
        driver.store.apply(journey, &steal),
        Err(Error::NotAllowed(_))
    ));
    driver.store.apply_unchecked(journey, &steal).unwrap();
    driver
        .store
        .add_entry(journey, NewEntry::note("after the truck change"))
        .unwrap();
    let head_before = db.storage.head(&tenant.tenant.to_string()).await.unwrap();
    let outcome = driver_sync.sync_now().await.unwrap();
    assert_eq!(outcome.pending, 0, "nothing waits: accepted or refused");

    // On the device: the journey is back to the accepted state, the refusals stay
    // visible with their reasons.
    let view = driver.store.journey(journey).unwrap();
    assert_eq!(view.truck_number.as_deref(), Some("T-1"));
    assert_eq!(texts(&driver.store, journey), vec!["loaded the piano"]);
    let rejected = driver.store.rejected_changes(journey).unwrap();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(
        rejected
            .iter()
            .any(|r| r.reason.contains("may not change the truck"))
    );
    assert!(rejected.iter().any(|r| r.reason.contains("builds on")));

    // On the server: one change joined the log, two sit in quarantine.
    let key = tenant.tenant.to_string();
    assert_eq!(db.storage.head(&key).await.unwrap(), head_before + 1);
    let quarantined = db.storage.quarantined(&key, Some(journey)).await.unwrap();
    assert_eq!(quarantined.len(), 2);
    assert!(
        quarantined
            .iter()
            .all(|q| q.kind == QuarantineKind::Rejected && q.user == tenant.user(Role::Driver).id)
    );
    let hashes: Vec<_> = rejected.iter().map(|r| r.hash.as_ref().to_vec()).collect();
    assert!(quarantined.iter().all(|q| hashes.contains(&q.hash)));

    // Sync is not wedged: the driver's next honest change goes through, and the
    // office sees exactly the accepted work.
    driver
        .store
        .add_entry(journey, NewEntry::note("unloaded"))
        .unwrap();
    assert_eq!(driver_sync.sync_now().await.unwrap().pending, 0);
    office_sync.sync_now().await.unwrap();
    assert_eq!(
        texts(&office.store, journey),
        vec!["loaded the piano", "unloaded"]
    );
    assert_eq!(
        office
            .store
            .journey(journey)
            .unwrap()
            .truck_number
            .as_deref(),
        Some("T-1")
    );
    assert_eq!(
        office.store.heads(journey).unwrap(),
        driver.store.heads(journey).unwrap()
    );
}

/// A shared device: a second user signing in never pushes, refuses or
/// re-attributes the first user's unsynced work; each user's changes go under
/// their own credentials, and a change that builds on another user's unsynced one
/// waits for it instead of being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_shared_device_each_users_work_goes_under_their_own_sign_in() {
    let db = EmbeddedTestDb::create(ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let tenant = db.tenant.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = crewsync_server::app(crewsync_server::AppState {
        storage: Arc::clone(&db.storage),
        auth: Arc::clone(&tenant.auth),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The dispatcher works offline on the office tablet...
    let tablet = device(&tenant, Role::Dispatcher).await;
    let dispatcher_tokens = tablet
        .store
        .account(tenant.user(Role::Dispatcher).id)
        .unwrap()
        .unwrap();
    let journey = tablet
        .store
        .create_journey(&NewJourney {
            id: None,
            client_id: tenant.tenant,
            location_id: tenant.location.id,
            date: chrono::Utc::now().date_naive(),
            truck_number: Some("T-5".into()),
            move_source_id: None,
            steps_requiring_approval: vec![],
        })
        .unwrap();
    tablet
        .store
        .add_entry(journey, NewEntry::note("by the dispatcher"))
        .unwrap();
    // ...then the manager signs in on the same tablet and adds to the same journey.
    let manager = tenant
        .sign_in(Role::Manager, tablet.store.device_id())
        .await
        .unwrap();
    tablet.store.save_sign_in(&manager, true).unwrap();
    tablet
        .store
        .add_entry(journey, NewEntry::note("by the manager"))
        .unwrap();
    let sync = SyncClient::new(Arc::clone(&tablet.store), &url).unwrap();

    // As the manager: only the manager's change goes, and it waits for the
    // dispatcher's changes it builds on. Nothing is refused, nothing is lost.
    sync.sync_now().await.unwrap();
    assert!(tablet.store.rejected_changes(journey).unwrap().is_empty());
    assert_eq!(tablet.store.outbox_len().unwrap(), 3);
    assert_eq!(
        db.storage.head(&tenant.tenant.to_string()).await.unwrap(),
        0
    );

    // The dispatcher signs in again: their work goes under their name...
    let dispatcher = dispatcher_tokens.tokens().unwrap();
    sync.use_tokens(dispatcher).await.unwrap();
    sync.sync_now().await.unwrap();
    assert_eq!(
        tablet.store.outbox_len().unwrap(),
        1,
        "the manager's change still waits"
    );
    // ...and then the manager's.
    sync.use_tokens(manager).await.unwrap();
    assert_eq!(sync.sync_now().await.unwrap().pending, 0);
    assert!(tablet.store.rejected_changes(journey).unwrap().is_empty());
    assert_eq!(
        db.storage.head(&tenant.tenant.to_string()).await.unwrap(),
        3
    );

    // A fresh replica sees both, each under its author.
    let office = device(&tenant, Role::Dispatcher).await;
    SyncClient::new(Arc::clone(&office.store), &url)
        .unwrap()
        .sync_now()
        .await
        .unwrap();
    let entries = office.store.journey(journey).unwrap().entries;
    let author_of = |text: &str| {
        entries
            .iter()
            .find(|e| e.text.as_deref() == Some(text))
            .unwrap()
            .author
    };
    assert_eq!(
        author_of("by the dispatcher"),
        tenant.user(Role::Dispatcher).id
    );
    assert_eq!(author_of("by the manager"), tenant.user(Role::Manager).id);
}
