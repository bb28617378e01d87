//! Compaction in a running server: pushes over loopback HTTP fill a journey's
//! record, the background compactor folds it into a snapshot, and the journey
//! loads to exactly what the device wrote.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use automerge::{ActorId, Change};
use common::{Signer, journey_change, metrics_text, push, sample, serve_services};
use crewsync_core::JourneyAction;
use crewsync_core::document::JourneyDocument;
use crewsync_core::ids::EntryId;
use crewsync_core::model::{Role, Timestamp};
use crewsync_server::Services;
use crewsync_server::config::Config;
use crewsync_server::storage::Storage;
use crewsync_server::storage::sqlite::SqliteStorage;
use crewsync_server::testing::TestTenant;

const THRESHOLD: u64 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_journey_is_compacted_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStorage::open(&dir.path().join("log.sqlite3"))
        .await
        .unwrap();
    let storage_db = sqlite.db();
    let storage: Arc<dyn Storage> = Arc::new(sqlite);
    let config = Config {
        compact_after: THRESHOLD,
        ..Default::default()
    };
    let tenant = TestTenant::create(
        storage_db,
        crewsync_core::ids::ClientId::new(),
        crewsync_core::ids::LocationId::new(),
    )
    .await
    .unwrap();
    let signer = Signer::sign_in(&tenant, Role::Dispatcher).await;
    let token = signer.token.clone();
    let services =
        Services::in_process(Arc::clone(&storage), Arc::clone(&tenant.auth), &config).unwrap();
    let base = serve_services(&services).await;
    let tenant_key = tenant.tenant.to_string();

    // A dispatcher's journey: the creation, then 119 notes, pushed in three batches.
    let (journey, creation) = journey_change(&signer);
    let mut doc = JourneyDocument::load(
        journey,
        None,
        vec![Change::from_bytes(creation.clone()).unwrap()],
        ActorId::random(),
    )
    .unwrap();
    let mut changes = vec![(journey, creation)];
    for batch in 0..3 {
        while changes.len() < 40 {
            let note = JourneyAction::AddNote {
                note: EntryId::new(),
                text: format!("note {batch}/{}", changes.len()),
            };
            let change = doc
                .apply(&note, &signer.origin(), Timestamp::now())
                .unwrap()
                .unwrap();
            changes.push((journey, change.raw_bytes().to_vec()));
        }
        push(&base, &token, &changes).await;
        changes.clear();
    }

    // 120 changes went in; compaction runs after the pushes crossing 50.
    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        let record = storage.journey(&tenant_key, journey).await.unwrap();
        if record.snapshot.is_some() && (record.changes.len() as u64) < THRESHOLD {
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted: {} changes",
            record.changes.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let tail = record
        .changes
        .into_iter()
        .map(|bytes| Change::from_bytes(bytes).unwrap())
        .collect();
    let loaded =
        JourneyDocument::load(journey, record.snapshot.as_deref(), tail, ActorId::random())
            .unwrap();
    assert_eq!(loaded.heads(), doc.heads());
    assert_eq!(loaded.view().unwrap(), doc.view().unwrap());
    assert_eq!(loaded.view().unwrap().notes.len(), 119);
    let text = metrics_text(&base).await;
    let saved = sample(&text, "crewsync_compactions_total", &[("outcome", "saved")]);
    assert!(saved.unwrap_or(0.0) >= 1.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "crewsync_compactions_total",
            &[("outcome", "failed")]
        ),
        None
    );
}
