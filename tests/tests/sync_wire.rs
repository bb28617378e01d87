//! What travels on the sync wire: a journey the server has never seen goes as one
//! saved automerge document and is acknowledged by its heads; changes of journeys the
//! server knows go one by one in automerge's compressed form; a malformed document is
//! refused with a reason and stores nothing; and replicas fed either way converge.
//! Over loopback HTTP against an in-process server where the outcome is what counts,
//! and straight through `engine` and `server::sync::exchange` where the exact bytes
//! and acknowledgements are the point.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use automerge::{Automerge, Change, ChangeHash};
use chrono::NaiveDate;
use crewsync_core::ids::{ClientId, JourneyId, LocationId, UserId};
use crewsync_core::model::{ActiveUser, Location, NewEntry, NewJourney, Role, Stage};
use crewsync_core::sync::engine::{self, Limits};
use crewsync_core::sync::runtime::{HttpTransport, SyncClient};
use crewsync_core::sync::wire::{self, SyncRequest, WireChange};
use crewsync_core::{DeviceStore, StoreOptions};
use crewsync_server::storage::Storage;
use crewsync_server::storage::memory::MemoryStorage;
use crewsync_server::testing::{EmbeddedTestDb, TestTenant};

const PEER: &str = "wire-test";
const TENANT: &str = "wire-test";

struct Device {
    store: Arc<DeviceStore>,
    _dir: tempfile::TempDir,
}

fn open(options: StoreOptions, location: &Location) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let store = DeviceStore::open(dir.path().join("d.sqlite"), options).unwrap();
    store.upsert_location(location).unwrap();
    Device { store, _dir: dir }
}

/// A device signed in as `role`'s user of `tenant`.
async fn signed_in(tenant: &TestTenant, role: Role) -> Device {
    let device = open(StoreOptions::default(), &tenant.device_location());
    let tokens = tenant
        .sign_in(role, device.store.device_id())
        .await
        .unwrap();
    device.store.save_sign_in(&tokens, true).unwrap();
    device
}

/// A device that never meets an HTTP server: a local dispatcher acting.
fn local(options: StoreOptions) -> Device {
    let device = open(options, &local_location());
    device
        .store
        .set_active_user(Some(ActiveUser {
            user_id: UserId::new(),
            role: Role::Dispatcher,
        }))
        .unwrap();
    device
}

fn local_location() -> Location {
    Location {
        id: LocationId::parse("0192f1c4-0000-7000-8000-000000000003").unwrap(),
        client_id: ClientId::parse("0192f1c4-0000-7000-8000-0000000000c1").unwrap(),
        name: "HAMILTON".into(),
        timezone: "America/Toronto".into(),
    }
}

fn new_journey(location: &Location) -> NewJourney {
    NewJourney {
        id: None,
        client_id: location.client_id,
        location_id: location.id,
        date: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        truck_number: Some("T-7".into()),
        move_source_id: None,
        steps_requiring_approval: vec![],
    }
}

fn note(i: usize) -> NewEntry {
    NewEntry::note(format!(
        "Item {i}: dresser, small scratch on the left side, customer informed"
    ))
}

/// An in-process server on the embedded store with a tenant; its base URL.
async fn server() -> (EmbeddedTestDb, String) {
    let db = EmbeddedTestDb::create(ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = crewsync_server::app(crewsync_server::AppState {
        storage: Arc::clone(&db.storage),
        auth: Arc::clone(&db.tenant.auth),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (db, url)
}

/// Every change hash of a journey as the device holds it.
fn device_hashes(store: &DeviceStore, journey: JourneyId) -> BTreeSet<ChangeHash> {
    store
        .with_document(journey, |doc| {
            Ok(doc
                .automerge()
                .get_changes_meta(&[])
                .iter()
                .map(|c| c.hash)
                .collect())
        })
        .unwrap()
}

/// Every change hash of a journey in the server's log; each row's bytes must decode
/// to the hash it is logged under.
async fn log_hashes(
    storage: &Arc<dyn Storage>,
    tenant: &str,
    journey: JourneyId,
) -> Vec<ChangeHash> {
    storage
        .changes_since(tenant, 0, u32::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.journey == journey)
        .map(|row| {
            let hash = Change::from_bytes(row.bytes).unwrap().hash();
            assert_eq!(
                hash.as_ref(),
                row.hash.as_slice(),
                "row bytes match its hash"
            );
            hash
        })
        .collect()
}

/// The request's entries for `journey`.
fn entries(request: &SyncRequest, journey: JourneyId) -> Vec<&WireChange> {
    request
        .changes
        .iter()
        .filter(|c| c.journey == journey)
        .collect()
}

/// Every change of an offline-created journey goes in one document, far smaller
/// than the changes one by one; the server's log then holds exactly the device's
/// changes, and the acknowledgements clear the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_created_journey_goes_as_one_document_and_the_log_holds_exactly_its_changes() {
    let (db, url) = server().await;
    let tenant = &db.tenant;
    let office = signed_in(tenant, Role::Dispatcher).await;
    let journey = office
        .store
        .create_journey(&new_journey(&tenant.device_location()))
        .unwrap();
    for i in 0..40 {
        office.store.add_entry(journey, note(i)).unwrap();
    }
    let outbox = office.store.outbox(usize::MAX).unwrap();
    assert_eq!(outbox.len(), 41);

    let request = engine::prepare(&office.store, PEER, Limits::default()).unwrap();
    let sent = entries(&request, journey);
    assert_eq!(sent.len(), 1, "one entry for the whole journey");
    assert!(wire::is_document(&sent[0].bytes));
    let document = Automerge::load(&sent[0].bytes).unwrap();
    let in_document: BTreeSet<ChangeHash> = document
        .get_changes_meta(&[])
        .iter()
        .map(|c| c.hash)
        .collect();
    let in_outbox: BTreeSet<ChangeHash> = outbox.iter().map(|e| e.hash).collect();
    assert_eq!(in_document, in_outbox, "exactly the outbox's changes");
    let one_by_one: usize = outbox
        .iter()
        .map(|e| Change::from_bytes(e.bytes.clone()).unwrap().bytes().len())
        .sum();
    assert!(
        sent[0].bytes.len() * 3 < one_by_one,
        "document {} B vs changes {one_by_one} B",
        sent[0].bytes.len()
    );

    let client = SyncClient::new(Arc::clone(&office.store), &url).unwrap();
    let outcome = client.sync_now().await.unwrap();
    assert_eq!((outcome.pushed, outcome.pending), (41, 0));
    assert_eq!(office.store.outbox_len().unwrap(), 0);
    let logged = log_hashes(&db.storage, &tenant.tenant.to_string(), journey).await;
    assert_eq!(logged.len(), 41, "each change once");
    assert_eq!(
        logged.into_iter().collect::<BTreeSet<_>>(),
        device_hashes(&office.store, journey)
    );
}

/// Straight through the exchange: the document is acknowledged by its heads alone,
/// which clears the whole journey from the outbox; sent again (the response was
/// lost), it adds nothing to the log and is acknowledged the same way.
#[tokio::test]
async fn a_document_is_acknowledged_by_its_heads_and_a_resent_one_adds_nothing() {
    let device = local(StoreOptions::default());
    let journey = device
        .store
        .create_journey(&new_journey(&local_location()))
        .unwrap();
    for i in 0..10 {
        device.store.add_entry(journey, note(i)).unwrap();
    }
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let request = engine::prepare(&device.store, PEER, Limits::default()).unwrap();
    assert!(wire::is_document(&request.changes[0].bytes));

    let first =
        crewsync_server::sync::exchange(&storage, TENANT, request.clone(), &Default::default())
            .await
            .unwrap();
    assert_eq!(first.appended.new_changes, 11);
    let heads: Vec<Vec<u8>> = device
        .store
        .heads(journey)
        .unwrap()
        .iter()
        .map(|h| h.as_ref().to_vec())
        .collect();
    let acked: Vec<Vec<u8>> = first.response.acked.iter().map(|h| h.to_vec()).collect();
    assert_eq!(acked, heads, "acknowledged by its heads");
    assert!(first.response.rejected.is_empty());

    // The first response is lost; the device sends the same again.
    let again = engine::prepare(&device.store, PEER, Limits::default()).unwrap();
    assert_eq!(again.changes, request.changes);
    let second =
        crewsync_server::sync::exchange(&storage, TENANT, again.clone(), &Default::default())
            .await
            .unwrap();
    assert_eq!(second.appended.new_changes, 0, "nothing new");
    assert_eq!(second.response.acked, first.response.acked);
    let report = engine::absorb(&device.store, PEER, &again, second.response).unwrap();
    assert_eq!(
        (report.pushed, report.acknowledged, report.pending),
        (11, 11, 0)
    );
    assert_eq!(log_hashes(&storage, TENANT, journey).await.len(), 11);
}

/// A journey the server already has: its new changes go one by one, compressed, each
/// under its own hash, and are acknowledged one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_of_a_journey_the_server_knows_go_one_by_one_compressed() {
    let (db, url) = server().await;
    let tenant = &db.tenant;
    let office = signed_in(tenant, Role::Dispatcher).await;
    let journey = office
        .store
        .create_journey(&new_journey(&tenant.device_location()))
        .unwrap();
    let client = SyncClient::new(Arc::clone(&office.store), &url).unwrap();
    client.sync_now().await.unwrap();
    assert_eq!(office.store.outbox_len().unwrap(), 0);

    for i in 0..5 {
        office.store.add_entry(journey, note(i)).unwrap();
    }
    let outbox = office.store.outbox(usize::MAX).unwrap();
    let request = engine::prepare(&office.store, PEER, Limits::default()).unwrap();
    let sent = entries(&request, journey);
    assert_eq!(sent.len(), 5, "one entry per change");
    for (entry, queued) in sent.iter().zip(&outbox) {
        assert!(!wire::is_document(&entry.bytes));
        let change = Change::from_bytes(entry.bytes.clone()).unwrap();
        assert_eq!(change.hash(), queued.hash, "in outbox order");
        assert!(
            entry.bytes.len() < queued.bytes.len(),
            "compressed: {} B vs {} B raw",
            entry.bytes.len(),
            queued.bytes.len()
        );
    }

    let outcome = client.sync_now().await.unwrap();
    assert_eq!((outcome.pushed, outcome.pending), (5, 0));
    let logged = log_hashes(&db.storage, &tenant.tenant.to_string(), journey).await;
    assert_eq!(
        logged.into_iter().collect::<BTreeSet<_>>(),
        device_hashes(&office.store, journey)
    );
}

/// An older device pushes raw changes: accepted as before, logged compressed under
/// the same hashes, acknowledged one by one.
#[tokio::test]
async fn raw_changes_from_older_devices_are_accepted_and_logged_compressed() {
    let device = local(StoreOptions::default());
    let journey = device
        .store
        .create_journey(&new_journey(&local_location()))
        .unwrap();
    for i in 0..3 {
        device.store.add_entry(journey, note(i)).unwrap();
    }
    let outbox = device.store.outbox(usize::MAX).unwrap();
    let request = SyncRequest {
        changes: outbox
            .iter()
            .map(|e| WireChange {
                journey,
                bytes: e.bytes.clone(),
            })
            .collect(),
        ..engine::prepare(&device.store, PEER, Limits::default()).unwrap()
    };
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let exchanged = crewsync_server::sync::exchange(&storage, TENANT, request, &Default::default())
        .await
        .unwrap();
    let acked: Vec<Vec<u8>> = exchanged
        .response
        .acked
        .iter()
        .map(|h| h.to_vec())
        .collect();
    let queued: Vec<Vec<u8>> = outbox.iter().map(|e| e.hash.as_ref().to_vec()).collect();
    assert_eq!(acked, queued);
    let rows = storage.changes_since(TENANT, 0, 100).await.unwrap();
    assert_eq!(rows.len(), 4);
    for (row, queued) in rows.iter().zip(&outbox) {
        assert_eq!(row.hash, queued.hash.as_ref());
        assert!(row.bytes.len() < queued.bytes.len(), "stored compressed");
        assert_eq!(
            Change::from_bytes(row.bytes.clone()).unwrap().hash(),
            queued.hash
        );
    }
}

/// The whole-journey test reads the document, not the stored change rows: it holds
/// after local compaction folded them into a snapshot, and it fails (changes go
/// one by one) when the journey does not fit in one push page.
#[tokio::test]
async fn the_whole_journey_test_survives_compaction_and_respects_the_push_page() {
    let device = local(StoreOptions {
        compact_after_changes: 5,
        ..StoreOptions::default()
    });
    let journey = device
        .store
        .create_journey(&new_journey(&local_location()))
        .unwrap();
    for i in 0..12 {
        device.store.add_entry(journey, note(i)).unwrap();
    }
    assert_eq!(
        device.store.compact(journey).unwrap(),
        0,
        "no change rows left"
    );
    let request = engine::prepare(&device.store, PEER, Limits::default()).unwrap();
    assert_eq!(request.changes.len(), 1);
    assert!(wire::is_document(&request.changes[0].bytes));

    let paged = engine::prepare(
        &device.store,
        PEER,
        Limits {
            max_push: 5,
            max_pull: 100,
        },
    )
    .unwrap();
    assert_eq!(paged.changes.len(), 5);
    assert!(paged.changes.iter().all(|c| !wire::is_document(&c.bytes)));

    // Paged pushes still drain the outbox; the later pages go as changes.
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    for _ in 0..5 {
        let request = engine::prepare(
            &device.store,
            PEER,
            Limits {
                max_push: 5,
                max_pull: 100,
            },
        )
        .unwrap();
        let exchanged =
            crewsync_server::sync::exchange(&storage, TENANT, request.clone(), &Default::default())
                .await
                .unwrap();
        engine::absorb(&device.store, PEER, &request, exchanged.response).unwrap();
    }
    assert_eq!(device.store.outbox_len().unwrap(), 0);
    assert_eq!(log_hashes(&storage, TENANT, journey).await.len(), 13);
}

/// A document that does not load — a flipped byte, a truncation — is refused with
/// a reason naming it, nothing of it is stored, and the rest of the push goes in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_document_is_refused_and_stores_nothing() {
    let (db, url) = server().await;
    let tenant = &db.tenant;
    let office = signed_in(tenant, Role::Dispatcher).await;
    let journey = office
        .store
        .create_journey(&new_journey(&tenant.device_location()))
        .unwrap();
    for i in 0..10 {
        office.store.add_entry(journey, note(i)).unwrap();
    }
    let request = engine::prepare(&office.store, PEER, Limits::default()).unwrap();
    let document = request.changes[0].bytes.clone();
    assert!(wire::is_document(&document));
    let mut flipped = document.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    let truncated = document[..document.len() - 10].to_vec();
    let bad = |bytes: Vec<u8>| WireChange { journey, bytes };

    let transport = HttpTransport::new(&url).unwrap();
    let account = office
        .store
        .account(office.store.active_user().unwrap().unwrap().user_id)
        .unwrap()
        .unwrap();
    transport.set_tokens(Some(account.tokens().unwrap()));
    let response = transport
        .exchange(&SyncRequest {
            changes: vec![bad(flipped), bad(truncated)],
            ..request.clone()
        })
        .await
        .unwrap();
    assert!(response.acked.is_empty());
    assert_eq!(response.rejected.len(), 2);
    for rejection in &response.rejected {
        assert!(
            rejection.reason.contains("not an automerge document"),
            "{}",
            rejection.reason
        );
    }
    let key = tenant.tenant.to_string();
    assert_eq!(db.storage.head(&key).await.unwrap(), 0, "nothing stored");

    // The device's own push is untouched by that: it still goes through whole.
    let client = SyncClient::new(Arc::clone(&office.store), &url).unwrap();
    assert_eq!(client.sync_now().await.unwrap().pending, 0);
    assert_eq!(log_hashes(&db.storage, &key, journey).await.len(), 11);
}

/// A second device pulls a journey that arrived as a document and gets the same
/// journey; then both work offline on it and converge after syncing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_device_converges_with_a_journey_pushed_as_a_document() {
    let (db, url) = server().await;
    let tenant = &db.tenant;
    let office = signed_in(tenant, Role::Dispatcher).await;
    let other = signed_in(tenant, Role::Dispatcher).await;
    let journey = office
        .store
        .create_journey(&new_journey(&tenant.device_location()))
        .unwrap();
    for i in 0..20 {
        office.store.add_entry(journey, note(i)).unwrap();
    }
    office.store.advance_stage(journey, Stage::EnRoute).unwrap();
    let office_sync = SyncClient::new(Arc::clone(&office.store), &url).unwrap();
    let other_sync = SyncClient::new(Arc::clone(&other.store), &url).unwrap();
    office_sync.sync_now().await.unwrap();
    let pulled = other_sync.sync_now().await.unwrap();
    assert_eq!(pulled.received, 22);
    assert_eq!(
        other.store.heads(journey).unwrap(),
        office.store.heads(journey).unwrap()
    );
    assert_eq!(
        other.store.journey(journey).unwrap(),
        office.store.journey(journey).unwrap()
    );

    // Both sides diverge; the journey is known now, so changes go one by one.
    for i in 0..5 {
        office.store.add_entry(journey, note(100 + i)).unwrap();
        other.store.add_entry(journey, note(200 + i)).unwrap();
    }
    office_sync.sync_now().await.unwrap();
    other_sync.sync_now().await.unwrap();
    office_sync.sync_now().await.unwrap();
    assert_eq!(office.store.outbox_len().unwrap(), 0);
    assert_eq!(other.store.outbox_len().unwrap(), 0);
    assert_eq!(
        other.store.heads(journey).unwrap(),
        office.store.heads(journey).unwrap()
    );
    let view = office.store.journey(journey).unwrap();
    assert_eq!(view.entries.len(), 30);
    assert_eq!(other.store.journey(journey).unwrap(), view);
    let logged = log_hashes(&db.storage, &tenant.tenant.to_string(), journey).await;
    assert_eq!(
        logged.into_iter().collect::<BTreeSet<_>>(),
        device_hashes(&office.store, journey)
    );
}
