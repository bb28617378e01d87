//! Compaction in a running server: pushes over loopback HTTP fill a journey's
//! record, the background compactor folds it into a snapshot, and the journey
//! loads to exactly what the device wrote.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{Automerge, ReadDoc};
use common::{metrics_text, push, sample, serve_services};
use crewsync_core::ids::DeviceId;
use crewsync_core::ids::JourneyId;
use crewsync_core::model::Role;
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
    let token = tenant
        .sign_in(Role::Dispatcher, DeviceId::new())
        .await
        .unwrap()
        .access_token;
    let services =
        Services::in_process(Arc::clone(&storage), Arc::clone(&tenant.auth), &config).unwrap();
    let base = serve_services(&services).await;
    let tenant_key = tenant.tenant.to_string();

    let journey = JourneyId::new();
    let mut doc = Automerge::new();
    for batch in 0..3 {
        let mut changes = Vec::new();
        for i in 0..40_i64 {
            let mut tx = doc.transaction();
            tx.put(automerge::ROOT, format!("field{}", i % 7), batch * 100 + i)
                .unwrap();
            tx.commit();
            changes.push((
                journey,
                doc.get_last_local_change().unwrap().raw_bytes().to_vec(),
            ));
        }
        push(&base, &token, &changes).await;
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
    let mut loaded = Automerge::load(record.snapshot.as_deref().unwrap()).unwrap();
    let tail = record
        .changes
        .into_iter()
        .map(|bytes| automerge::Change::from_bytes(bytes).unwrap());
    loaded.apply_changes(tail).unwrap();
    assert_eq!(loaded.get_heads(), doc.get_heads());
    for i in 0..7 {
        let key = format!("field{i}");
        assert_eq!(
            loaded
                .get(automerge::ROOT, &key)
                .unwrap()
                .map(|(v, _)| v.to_string()),
            doc.get(automerge::ROOT, &key)
                .unwrap()
                .map(|(v, _)| v.to_string()),
        );
    }
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
