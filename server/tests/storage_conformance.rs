//! The `Storage` contract (see `server/src/storage/mod.rs`), written once and run
//! against every backend: `memory::*`, `sqlite::*` (a file in a temp dir) and
//! `postgres::*` (a fresh database on the testkit's throwaway cluster), plus the
//! durability tests each durable backend needs on its own: every acknowledged
//! append survives a crash.
// Helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used)]

use std::any::Any;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crewsync_core::audit::{self, AuditEntry, AuditRecord};
use crewsync_core::ids::{DeviceId, JourneyId, LocationId, UserId};
use crewsync_server::audit::ChangeAudit;
use crewsync_server::storage::{Appended, JourneyRecord, NewChange, Storage, StoredChange};

/// A backend under test and whatever must outlive it (temp dir, test database).
struct Backend {
    storage: Arc<dyn Storage>,
    _keep: Box<dyn Any + Send>,
}

mod backends {
    use std::sync::Arc;

    use crewsync_server::storage::memory::MemoryStorage;
    use crewsync_server::storage::postgres::PostgresStorage;
    use crewsync_server::storage::sqlite::SqliteStorage;

    use super::Backend;

    pub async fn memory() -> Backend {
        Backend {
            storage: Arc::new(MemoryStorage::new()),
            _keep: Box::new(()),
        }
    }

    pub async fn sqlite() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(&dir.path().join("log.sqlite3"))
            .await
            .unwrap();
        Backend {
            storage: Arc::new(storage),
            _keep: Box::new(dir),
        }
    }

    pub async fn postgres() -> Backend {
        let db = crewsync_testkit::postgres::shared_cluster()
            .unwrap()
            .fresh_database()
            .unwrap();
        let storage = PostgresStorage::connect(&db.url).await.unwrap();
        Backend {
            storage: Arc::new(storage),
            _keep: Box::new(db),
        }
    }
}

/// One test per case and backend: `memory::case`, `sqlite::case`, `postgres::case`.
macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {
        conformance!(@backend memory: $($case),+);
        conformance!(@backend sqlite: $($case),+);
        conformance!(@backend postgres: $($case),+);
    };
    (@backend $backend:ident: $($case:ident),+) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = super::backends::$backend().await;
                    super::cases::$case(backend.storage.clone()).await;
                }
            )+
        }
    };
}

conformance!(
    append_then_changes_since_in_log_order_with_limits,
    reappending_a_known_hash_is_a_no_op,
    tenants_are_isolated,
    concurrent_appends_are_numbered_in_commit_order,
    journey_returns_snapshot_and_unfolded_changes,
    head_and_ping,
    a_large_batch_is_stored_whole_and_in_order,
    compaction_folds_what_applies_and_keeps_the_rest,
    quarantine_keeps_refused_changes_per_tenant,
    every_new_change_has_one_audit_entry_and_resends_none,
    refusals_and_admin_actions_join_the_same_chain,
    a_journey_trail_verifies_on_its_own_and_tenants_chains_are_independent,
    concurrent_writers_never_fork_the_chain,
);

const TENANT: &str = "acme-movers";

/// A fake 32-byte change hash derived from a unique label.
fn hash(label: &str) -> Vec<u8> {
    assert!(label.len() <= 32, "label too long for a fake hash: {label}");
    let mut hash = label.as_bytes().to_vec();
    hash.resize(32, 0);
    hash
}

/// A fake change: distinct hash, actor and bytes for every label.
fn change(journey: JourneyId, label: &str) -> NewChange {
    NewChange {
        journey,
        hash: hash(label),
        actor: format!("actor of {label}").into_bytes(),
        device: DeviceId::from_uuid(sqlx::types::Uuid::from_u128(7)),
        bytes: format!("bytes of {label}").into_bytes(),
        audit: facts(label),
    }
}

/// Audit facts naming `label` in the diff, so entries can be matched to changes.
fn facts(label: &str) -> ChangeAudit {
    ChangeAudit {
        user: Some(UserId::from_uuid(sqlx::types::Uuid::from_u128(11))),
        device: None,
        location: Some(LocationId::from_uuid(sqlx::types::Uuid::from_u128(13))),
        diff: serde_json::json!({"label": label, "touched": ["entry added"], "weight": 1.25}),
        device_time: Some(1_700_000_000_000),
    }
}

/// The tenant's whole audit chain, verified against the stored head.
async fn verified_chain(storage: &dyn Storage, tenant: &str) -> Vec<AuditEntry> {
    let chain = storage.audit_since(tenant, 0, u32::MAX).await.unwrap();
    let head = storage.audit_head(tenant).await.unwrap();
    let verified = audit::verify_chain(chain.clone(), head).unwrap();
    assert_eq!(
        verified.head, head,
        "the stored head is the chain's last entry"
    );
    assert_eq!(verified.entries, chain.len() as u64);
    chain
}

fn labels(chain: &[AuditEntry]) -> Vec<String> {
    chain
        .iter()
        .map(|e| e.diff["label"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn admin_record(label: &str) -> AuditRecord {
    AuditRecord {
        location: None,
        user: Some(UserId::new()),
        device: Some(DeviceId::new()),
        action: "user.deactivate".into(),
        entity: "user".into(),
        entity_id: format!("user-{label}"),
        diff: serde_json::json!({"label": label, "status": {"from": "ACTIVE", "to": "INACTIVE"}}),
        server_time: 1_700_000_000_123,
        device_time: None,
    }
}

fn hashes(log: &[StoredChange]) -> Vec<Vec<u8>> {
    log.iter().map(|c| c.hash.clone()).collect()
}

fn assert_strictly_increasing(log: &[StoredChange]) {
    for pair in log.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "seq {} before seq {}",
            pair[0].seq,
            pair[1].seq
        );
    }
    if let Some(first) = log.first() {
        assert!(
            first.seq >= 1,
            "sequence numbers start at 1, got {}",
            first.seq
        );
    }
}

/// Refused changes with audit facts.
fn refused(
    changes: &[crewsync_server::storage::Quarantined],
) -> Vec<crewsync_server::storage::Refused> {
    changes
        .iter()
        .map(|change| crewsync_server::storage::Refused {
            audit: ChangeAudit {
                user: Some(change.user),
                ..facts(
                    std::str::from_utf8(&change.hash)
                        .unwrap()
                        .trim_end_matches('\0'),
                )
            },
            change: change.clone(),
        })
        .collect()
}

async fn whole_log(storage: &dyn Storage, tenant: &str) -> Vec<StoredChange> {
    storage.changes_since(tenant, 0, u32::MAX).await.unwrap()
}

mod cases {
    use super::*;

    pub async fn append_then_changes_since_in_log_order_with_limits(storage: Arc<dyn Storage>) {
        let s = storage.as_ref();
        assert_eq!(s.head(TENANT).await.unwrap(), 0);
        assert!(s.changes_since(TENANT, 0, 100).await.unwrap().is_empty());
        s.append(TENANT, &[]).await.unwrap();
        assert_eq!(
            s.head(TENANT).await.unwrap(),
            0,
            "an empty append takes no number"
        );

        let (j1, j2) = (JourneyId::new(), JourneyId::new());
        let batches = [
            vec![change(j1, "a1"), change(j2, "a2"), change(j1, "a3")],
            vec![change(j2, "b1")],
            (1..=5).map(|i| change(j1, &format!("c{i}"))).collect(),
        ];
        for batch in &batches {
            s.append(TENANT, batch).await.unwrap();
        }
        let appended: Vec<&NewChange> = batches.iter().flatten().collect();

        let log = s.changes_since(TENANT, 0, 100).await.unwrap();
        assert_eq!(log.len(), appended.len());
        assert_strictly_increasing(&log);
        for (stored, sent) in log.iter().zip(&appended) {
            assert_eq!(stored.hash, sent.hash, "log order is append order");
            assert_eq!(stored.journey, sent.journey);
            assert_eq!(stored.actor, sent.actor);
            assert_eq!(stored.bytes, sent.bytes);
        }
        let head = s.head(TENANT).await.unwrap();
        assert_eq!(head, log.last().unwrap().seq);

        // Paging with a small limit walks the same log.
        let mut paged = Vec::new();
        let mut cursor = 0;
        loop {
            let page = s.changes_since(TENANT, cursor, 2).await.unwrap();
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            cursor = last.seq;
            paged.extend(page);
        }
        assert_eq!(paged, log);

        // A cursor in the middle, limits, and cursors at or past the end.
        assert_eq!(
            s.changes_since(TENANT, log[3].seq, 3).await.unwrap(),
            log[4..7]
        );
        assert_eq!(
            s.changes_since(TENANT, log[3].seq, 100).await.unwrap(),
            log[4..]
        );
        assert_eq!(s.changes_since(TENANT, 0, 1).await.unwrap(), log[..1]);
        assert!(s.changes_since(TENANT, 0, 0).await.unwrap().is_empty());
        assert!(s.changes_since(TENANT, head, 10).await.unwrap().is_empty());
        assert!(
            s.changes_since(TENANT, head + 1000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            s.changes_since(TENANT, u64::MAX, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn reappending_a_known_hash_is_a_no_op(storage: Arc<dyn Storage>) {
        let s = storage.as_ref();
        let j = JourneyId::new();
        let first = s
            .append(TENANT, &[change(j, "a"), change(j, "b")])
            .await
            .unwrap();
        let log = whole_log(s, TENANT).await;
        let head = s.head(TENANT).await.unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(
            first,
            Appended {
                head,
                new_changes: 2
            }
        );

        // The same change again (a device re-sending after a lost acknowledgement).
        assert_eq!(
            s.append(TENANT, &[change(j, "a")]).await.unwrap(),
            Appended {
                head,
                new_changes: 0
            },
            "a re-send reports nothing new and the unchanged head"
        );
        assert_eq!(
            s.head(TENANT).await.unwrap(),
            head,
            "a re-sent change takes no number"
        );
        assert_eq!(whole_log(s, TENANT).await, log);

        // Same hash, different bytes: the first stored copy stays.
        let mut imposter = change(j, "b");
        imposter.bytes = b"other bytes".to_vec();
        imposter.actor = b"other actor".to_vec();
        s.append(TENANT, &[imposter]).await.unwrap();
        assert_eq!(whole_log(s, TENANT).await, log);

        // Known and new mixed, with a duplicate inside the batch: only `c` is new.
        let mixed = s
            .append(
                TENANT,
                &[
                    change(j, "b"),
                    change(j, "c"),
                    change(j, "c"),
                    change(j, "a"),
                ],
            )
            .await
            .unwrap();
        let after = whole_log(s, TENANT).await;
        assert_eq!(
            mixed,
            Appended {
                head: after[2].seq,
                new_changes: 1
            }
        );
        assert_eq!(after.len(), 3);
        assert_eq!(after[..2], log[..]);
        assert_eq!(after[2].hash, hash("c"));
        assert!(after[2].seq > head);
        assert_eq!(s.head(TENANT).await.unwrap(), after[2].seq);
        assert_strictly_increasing(&after);
    }

    pub async fn tenants_are_isolated(storage: Arc<dyn Storage>) {
        let s = storage.as_ref();
        let (a, b) = ("tenant-a", "tenant-b");
        let ja = JourneyId::new();
        s.append(
            a,
            &[change(ja, "a1"), change(ja, "a2"), change(ja, "shared")],
        )
        .await
        .unwrap();
        let head_a = s.head(a).await.unwrap();
        assert_eq!(s.head(b).await.unwrap(), 0);
        assert!(s.changes_since(b, 0, 100).await.unwrap().is_empty());
        assert_eq!(s.journey(b, ja).await.unwrap(), JourneyRecord::default());

        // A hash tenant A has is still new to tenant B, and B numbers its log alone.
        let jb = JourneyId::new();
        s.append(b, &[change(jb, "b1"), change(jb, "shared")])
            .await
            .unwrap();
        let log_b = whole_log(s, b).await;
        assert_eq!(hashes(&log_b), vec![hash("b1"), hash("shared")]);
        assert_eq!(
            log_b.iter().map(|c| c.seq).collect::<Vec<_>>(),
            vec![1, 2],
            "B's numbering is independent of A's"
        );
        assert_eq!(s.head(a).await.unwrap(), head_a);
        assert_eq!(whole_log(s, a).await.len(), 3);

        // Snapshots are per tenant too.
        assert!(
            s.save_snapshot(b, ja, 0, b"b's idea of ja", &[hash("a1")])
                .await
                .unwrap()
        );
        let record_a = s.journey(a, ja).await.unwrap();
        assert_eq!(record_a.snapshot, None);
        assert_eq!(record_a.changes.len(), 3);

        s.append(a, &[change(ja, "a3")]).await.unwrap();
        assert_eq!(s.head(b).await.unwrap(), 2);
        assert_eq!(whole_log(s, b).await, log_b);
    }

    /// 8 tasks append 50 changes each in small batches (plus changes all of them
    /// send) while a reader follows the log with a cursor, as devices do. Numbers
    /// handed out in commit order mean the reader never skips a change: if seq N+1
    /// became visible before N committed, a reader past N+1 would never see N.
    pub async fn concurrent_appends_are_numbered_in_commit_order(storage: Arc<dyn Storage>) {
        const TASKS: usize = 8;
        const PER_TASK: usize = 50;
        const SHARED: usize = 5;
        let journeys: Vec<JourneyId> = (0..3).map(|_| JourneyId::new()).collect();
        let shared = |k: usize| change(journeys[0], &format!("shared-{k}"));
        let writers_done = Arc::new(AtomicBool::new(false));

        let reader = {
            let storage = storage.clone();
            let writers_done = writers_done.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut cursor = 0;
                loop {
                    // Read the flag first: a read that starts after the writers
                    // finished must see everything.
                    let done = writers_done.load(Ordering::SeqCst);
                    let page = storage.changes_since(TENANT, cursor, 7).await.unwrap();
                    for c in &page {
                        assert!(c.seq > cursor, "seq {} returned for cursor {cursor}", c.seq);
                        cursor = c.seq;
                        seen.push(c.hash.clone());
                    }
                    if page.is_empty() {
                        if done {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                }
                seen
            })
        };

        let mut writers = Vec::new();
        for task in 0..TASKS {
            let storage = storage.clone();
            let journeys = journeys.clone();
            writers.push(tokio::spawn(async move {
                let mut sent = 0;
                let mut round = 0;
                while sent < PER_TASK {
                    let size = (round % 6 + 1).min(PER_TASK - sent);
                    let mut batch: Vec<NewChange> = (sent..sent + size)
                        .map(|i| change(journeys[i % journeys.len()], &format!("t{task}-c{i}")))
                        .collect();
                    // Every task also sends the shared changes: same hashes, raced.
                    batch.push(change(journeys[0], &format!("shared-{}", round % SHARED)));
                    storage.append(TENANT, &batch).await.unwrap();
                    sent += size;
                    round += 1;
                }
            }));
        }
        for writer in writers {
            writer.await.unwrap();
        }
        writers_done.store(true, Ordering::SeqCst);
        let seen = tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .expect("the reader caught up")
            .unwrap();

        let mut expected: BTreeSet<Vec<u8>> = (0..TASKS)
            .flat_map(|t| (0..PER_TASK).map(move |i| hash(&format!("t{t}-c{i}"))))
            .collect();
        expected.extend((0..SHARED).map(|k| shared(k).hash));

        let log = whole_log(storage.as_ref(), TENANT).await;
        assert_strictly_increasing(&log);
        assert_eq!(
            log.len(),
            TASKS * PER_TASK + SHARED,
            "every change exactly once"
        );
        assert_eq!(hashes(&log).into_iter().collect::<BTreeSet<_>>(), expected);

        let seen_set: BTreeSet<Vec<u8>> = seen.iter().cloned().collect();
        assert_eq!(seen_set.len(), seen.len(), "the reader saw a change twice");
        let missed: Vec<String> = expected
            .difference(&seen_set)
            .map(|h| String::from_utf8_lossy(h).trim_end_matches('\0').to_owned())
            .collect();
        assert!(
            missed.is_empty(),
            "the cursor reader missed {} change(s): {missed:?}",
            missed.len()
        );
        assert_eq!(seen, hashes(&log), "the reader saw the log in log order");
        assert_eq!(storage.head(TENANT).await.unwrap(), log.last().unwrap().seq);
    }

    pub async fn journey_returns_snapshot_and_unfolded_changes(storage: Arc<dyn Storage>) {
        let s = storage.as_ref();
        let (j1, j2) = (JourneyId::new(), JourneyId::new());
        assert_eq!(
            s.journey(TENANT, j1).await.unwrap(),
            JourneyRecord::default()
        );

        s.append(TENANT, &[change(j1, "a"), change(j2, "x")])
            .await
            .unwrap();
        s.append(TENANT, &[change(j1, "b")]).await.unwrap();
        s.append(TENANT, &[change(j1, "c")]).await.unwrap();
        let bytes = |label: &str| change(j1, label).bytes;
        let record = |snapshot: Option<&[u8]>, generation, labels: &[&str]| JourneyRecord {
            snapshot: snapshot.map(<[u8]>::to_vec),
            generation,
            changes: labels.iter().map(|l| bytes(l)).collect(),
        };
        assert_eq!(
            s.journey(TENANT, j1).await.unwrap(),
            record(None, 0, &["a", "b", "c"])
        );
        assert_eq!(s.unfolded_count(TENANT, j1).await.unwrap(), 3);
        let record_j2 = record(None, 0, &["x"]);
        assert_eq!(s.journey(TENANT, j2).await.unwrap(), record_j2);
        let log = whole_log(s, TENANT).await;
        let head = s.head(TENANT).await.unwrap();

        // Compaction folds a and b into a snapshot; c stays a change of its own.
        assert!(
            s.save_snapshot(TENANT, j1, 0, b"snapshot 1", &[hash("a"), hash("b")])
                .await
                .unwrap()
        );
        assert_eq!(
            s.journey(TENANT, j1).await.unwrap(),
            record(Some(b"snapshot 1"), 1, &["c"])
        );
        assert_eq!(s.unfolded_count(TENANT, j1).await.unwrap(), 1);
        assert_eq!(
            s.journey(TENANT, j2).await.unwrap(),
            record_j2,
            "other journeys untouched"
        );
        assert_eq!(
            whole_log(s, TENANT).await,
            log,
            "the log keeps folded changes for cursors"
        );
        assert_eq!(s.head(TENANT).await.unwrap(), head);

        // New changes after the snapshot show up next to it.
        s.append(TENANT, &[change(j1, "d")]).await.unwrap();
        assert_eq!(
            s.journey(TENANT, j1).await.unwrap(),
            record(Some(b"snapshot 1"), 1, &["c", "d"])
        );

        // A compaction built from an older generation loses and writes nothing:
        // neither a second "first" snapshot nor a stale replacement.
        for stale in [0, 2] {
            assert!(
                !s.save_snapshot(TENANT, j1, stale, b"stale", &[hash("c")])
                    .await
                    .unwrap(),
                "generation {stale} is not the current one"
            );
        }
        assert_eq!(
            s.journey(TENANT, j1).await.unwrap(),
            record(Some(b"snapshot 1"), 1, &["c", "d"])
        );

        // A newer snapshot replaces the old one; folding twice is harmless.
        assert!(
            s.save_snapshot(
                TENANT,
                j1,
                1,
                b"snapshot 2",
                &[hash("a"), hash("b"), hash("c"), hash("d")],
            )
            .await
            .unwrap()
        );
        assert_eq!(
            s.journey(TENANT, j1).await.unwrap(),
            record(Some(b"snapshot 2"), 2, &[])
        );
        assert_eq!(s.unfolded_count(TENANT, j1).await.unwrap(), 0);

        // A snapshot that contains none of the logged changes.
        assert!(
            s.save_snapshot(TENANT, j2, 0, b"snapshot of j2", &[])
                .await
                .unwrap()
        );
        assert_eq!(
            s.journey(TENANT, j2).await.unwrap(),
            record(Some(b"snapshot of j2"), 1, &["x"])
        );
        assert_eq!(whole_log(s, TENANT).await.len(), 5);
    }

    /// Server-side compaction over the backend: real automerge changes, one held
    /// back so its successors miss a dependency.
    pub async fn compaction_folds_what_applies_and_keeps_the_rest(storage: Arc<dyn Storage>) {
        use automerge::transaction::Transactable;
        use automerge::{Automerge, ReadDoc};
        use crewsync_server::compaction::{Compacted, compact_journey};

        let journey = JourneyId::new();
        let mut doc = Automerge::new();
        let mut changes = Vec::new();
        for i in 0..12_i64 {
            let mut tx = doc.transaction();
            tx.put(automerge::ROOT, format!("k{}", i % 5), i).unwrap();
            tx.commit();
            let change = doc.get_last_local_change().unwrap();
            changes.push(NewChange {
                journey,
                hash: change.hash().as_ref().to_vec(),
                actor: change.actor_id().to_bytes().to_vec(),
                device: DeviceId::new(),
                bytes: change.raw_bytes().to_vec(),
                audit: facts("compaction"),
            });
        }
        let gap = 6;
        let (before, rest) = changes.split_at(gap);
        let (held, after) = rest.split_first().unwrap();
        storage.append(TENANT, before).await.unwrap();
        storage.append(TENANT, after).await.unwrap();
        assert_eq!(
            compact_journey(&storage, TENANT, journey).await.unwrap(),
            Compacted::Saved { folded: gap },
            "only the changes before the gap apply"
        );
        assert_eq!(
            storage.unfolded_count(TENANT, journey).await.unwrap(),
            (changes.len() - gap - 1) as u64,
            "changes missing a dependency stay in the record"
        );

        storage
            .append(TENANT, std::slice::from_ref(held))
            .await
            .unwrap();
        assert_eq!(
            compact_journey(&storage, TENANT, journey).await.unwrap(),
            Compacted::Saved {
                folded: changes.len() - gap
            }
        );
        assert_eq!(
            compact_journey(&storage, TENANT, journey).await.unwrap(),
            Compacted::Nothing
        );
        let record = storage.journey(TENANT, journey).await.unwrap();
        assert!(record.changes.is_empty());
        assert_eq!(record.generation, 2);
        let loaded = Automerge::load(record.snapshot.as_deref().unwrap()).unwrap();
        assert_eq!(loaded.get_heads(), doc.get_heads());
        assert_eq!(
            loaded
                .get(automerge::ROOT, "k1")
                .unwrap()
                .map(|(v, _)| v.to_string()),
            doc.get(automerge::ROOT, "k1")
                .unwrap()
                .map(|(v, _)| v.to_string())
        );
        assert_eq!(
            whole_log(storage.as_ref(), TENANT).await.len(),
            changes.len(),
            "the log keeps every change"
        );
    }

    pub async fn quarantine_keeps_refused_changes_per_tenant(storage: Arc<dyn Storage>) {
        use crewsync_server::storage::{QuarantineKind, Quarantined};
        let (j1, j2) = (JourneyId::new(), JourneyId::new());
        let item = |journey, label: &str, kind, at| Quarantined {
            journey,
            hash: hash(label),
            kind,
            reason: format!("because {label}"),
            user: crewsync_core::ids::UserId::new(),
            device: DeviceId::new(),
            bytes: label.as_bytes().to_vec(),
            received_at: at,
        };
        let first = item(j1, "q1", QuarantineKind::Rejected, 10);
        let second = item(j2, "q2", QuarantineKind::AfterAudit, 20);
        let third = item(j1, "q3", QuarantineKind::Rejected, 30);
        storage
            .quarantine(TENANT, &refused(&[first.clone(), second.clone()]))
            .await
            .unwrap();
        // A re-sent refused change is kept once.
        storage
            .quarantine(TENANT, &refused(&[first.clone(), third.clone()]))
            .await
            .unwrap();
        assert_eq!(
            storage.quarantined(TENANT, None).await.unwrap(),
            vec![first.clone(), second, third.clone()]
        );
        assert_eq!(
            storage.quarantined(TENANT, Some(j1)).await.unwrap(),
            vec![first, third]
        );
        assert!(storage.quarantined("other", None).await.unwrap().is_empty());
        assert_eq!(
            storage.head(TENANT).await.unwrap(),
            0,
            "nothing joined the log"
        );
    }

    pub async fn every_new_change_has_one_audit_entry_and_resends_none(storage: Arc<dyn Storage>) {
        let s = storage.as_ref();
        assert_eq!(s.audit_head(TENANT).await.unwrap(), None);
        assert!(verified_chain(s, TENANT).await.is_empty());
        let j = JourneyId::new();
        s.append(TENANT, &[change(j, "a1"), change(j, "a2"), change(j, "a1")])
            .await
            .unwrap();
        s.append(TENANT, &[change(j, "a2"), change(j, "a3")])
            .await
            .unwrap();
        s.append(TENANT, &[change(j, "a3")]).await.unwrap();
        let chain = verified_chain(s, TENANT).await;
        assert_eq!(labels(&chain), ["a1", "a2", "a3"]);
        assert_eq!(
            chain.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3],
            "seq numbers are consecutive from 1"
        );
        let first = &chain[0];
        let sent = change(j, "a1");
        assert_eq!(first.tenant, TENANT);
        assert_eq!(first.action, "change.accepted");
        assert_eq!(first.entity, "journey");
        assert_eq!(first.entity_id, j.to_string());
        assert_eq!(first.user, sent.audit.user);
        assert_eq!(first.location, sent.audit.location);
        assert_eq!(first.device, Some(sent.device));
        assert_eq!(first.device_time, sent.audit.device_time);
        assert_eq!(
            first.diff, sent.audit.diff,
            "the diff comes back as written"
        );
        assert!(first.server_time > 1_700_000_000_000);
        assert_eq!(first.prev_hash, audit::Digest::ZERO);
        assert_eq!(chain[1].prev_hash, chain[0].hash);
        assert_eq!(chain[2].entity_prev_hash, chain[1].hash);
    }

    pub async fn refusals_and_admin_actions_join_the_same_chain(storage: Arc<dyn Storage>) {
        use crewsync_server::storage::{QuarantineKind, Quarantined};
        let s = storage.as_ref();
        let j = JourneyId::new();
        s.append(TENANT, &[change(j, "ok1")]).await.unwrap();
        let refusal = |label: &str, kind| Quarantined {
            journey: j,
            hash: hash(label),
            kind,
            reason: format!("because {label}"),
            user: UserId::new(),
            device: DeviceId::new(),
            bytes: label.as_bytes().to_vec(),
            received_at: 1_700_000_000_500,
        };
        let no = refusal("no1", QuarantineKind::Rejected);
        let held = refusal("held1", QuarantineKind::AfterAudit);
        s.quarantine(TENANT, &refused(&[no.clone(), held.clone()]))
            .await
            .unwrap();
        // A re-sent refused change adds no entry.
        s.quarantine(TENANT, &refused(std::slice::from_ref(&no)))
            .await
            .unwrap();
        let sealed = s
            .record_audit(TENANT, &[admin_record("admin1"), admin_record("admin2")])
            .await
            .unwrap();
        s.append(TENANT, &[change(j, "ok2")]).await.unwrap();
        assert!(s.record_audit(TENANT, &[]).await.unwrap().is_empty());

        let chain = verified_chain(s, TENANT).await;
        assert_eq!(
            labels(&chain),
            ["ok1", "no1", "held1", "admin1", "admin2", "ok2"]
        );
        let actions: Vec<&str> = chain.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "change.accepted",
                "change.rejected",
                "change.after_audit",
                "user.deactivate",
                "user.deactivate",
                "change.accepted"
            ]
        );
        assert_eq!(chain[1].user, Some(no.user), "a refusal names its sender");
        assert_eq!(chain[1].device, Some(no.device));
        assert_eq!(chain[1].server_time, no.received_at);
        assert_eq!(
            sealed,
            chain[3..5].to_vec(),
            "record_audit returns what it stored"
        );
        // The journey's trail skips the admin entries but links across them.
        let trail = s
            .audit_trail(TENANT, "journey", &j.to_string())
            .await
            .unwrap();
        assert_eq!(labels(&trail), ["ok1", "no1", "held1", "ok2"]);
        assert_eq!(trail[3].entity_prev_hash, trail[2].hash);
        audit::verify_trail(trail.clone(), trail[3].head()).unwrap();
        assert_eq!(
            s.head(TENANT).await.unwrap(),
            2,
            "the change log holds only accepted changes"
        );
    }

    pub async fn a_journey_trail_verifies_on_its_own_and_tenants_chains_are_independent(
        storage: Arc<dyn Storage>,
    ) {
        let s = storage.as_ref();
        let (j1, j2) = (JourneyId::new(), JourneyId::new());
        s.append(TENANT, &[change(j1, "t1"), change(j2, "t2")])
            .await
            .unwrap();
        s.append("other-tenant", &[change(j1, "o1")]).await.unwrap();
        s.append(TENANT, &[change(j2, "t3"), change(j1, "t4")])
            .await
            .unwrap();
        let chain = verified_chain(s, TENANT).await;
        assert_eq!(labels(&chain), ["t1", "t2", "t3", "t4"]);
        let trail = s
            .audit_trail(TENANT, "journey", &j1.to_string())
            .await
            .unwrap();
        assert_eq!(labels(&trail), ["t1", "t4"]);
        assert_eq!(trail[1].entity_prev_hash, trail[0].hash);
        let verified = audit::verify_trail(trail.clone(), trail[1].head()).unwrap();
        assert_eq!(verified.entries, 2);
        // A trail cut short is caught against the head held from before.
        let broken = audit::verify_trail(trail[..1].to_vec(), trail[1].head()).unwrap_err();
        assert!(broken.reason.contains("truncated"), "{broken}");

        // Another tenant's chain starts at 1 and never sees this tenant's entries.
        let other = verified_chain(s, "other-tenant").await;
        assert_eq!(labels(&other), ["o1"]);
        assert_eq!(other[0].seq, 1);
        assert_eq!(other[0].prev_hash, audit::Digest::ZERO);
        assert_eq!(
            other[0].entity_prev_hash,
            audit::Digest::ZERO,
            "the same journey id in another tenant starts its own trail"
        );
        assert!(
            s.audit_trail("nobody", "journey", &j1.to_string())
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.audit_head("nobody").await.unwrap(), None);
        // Paging.
        let page = s.audit_since(TENANT, 1, 2).await.unwrap();
        assert_eq!(labels(&page), ["t2", "t3"]);
    }

    /// F12: appends, refusals and admin actions from 8 writers at once in one
    /// tenant, and a second tenant alongside: one chain per tenant, no fork.
    pub async fn concurrent_writers_never_fork_the_chain(storage: Arc<dyn Storage>) {
        use crewsync_server::storage::{QuarantineKind, Quarantined};
        const WRITERS: usize = 8;
        const ROUNDS: usize = 6;
        let mut tasks = Vec::new();
        for writer in 0..WRITERS + 2 {
            let storage = storage.clone();
            // Writers 8 and 9 write to the second tenant.
            let tenant = if writer < WRITERS {
                TENANT
            } else {
                "second-tenant"
            };
            tasks.push(tokio::spawn(async move {
                let journey = JourneyId::new();
                for round in 0..ROUNDS {
                    let label = format!("w{writer}-r{round}");
                    match round % 3 {
                        0 | 1 => {
                            let batch = [
                                change(journey, &format!("{label}-a")),
                                change(journey, &format!("{label}-b")),
                            ];
                            storage.append(tenant, &batch).await.unwrap();
                        }
                        _ => {
                            let refused_change = Quarantined {
                                journey,
                                hash: hash(&format!("{label}-q")),
                                kind: QuarantineKind::Rejected,
                                reason: "no".into(),
                                user: UserId::new(),
                                device: DeviceId::new(),
                                bytes: vec![1],
                                received_at: 1,
                            };
                            storage
                                .quarantine(tenant, &refused(&[refused_change]))
                                .await
                                .unwrap();
                            storage
                                .record_audit(tenant, &[admin_record(&label)])
                                .await
                                .unwrap();
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        // Per writer and round: 2 appended changes, or 1 refusal + 1 admin entry.
        let chain = verified_chain(storage.as_ref(), TENANT).await;
        assert_eq!(chain.len(), WRITERS * ROUNDS * 2);
        let second = verified_chain(storage.as_ref(), "second-tenant").await;
        assert_eq!(second.len(), 2 * ROUNDS * 2);
        assert!(second.iter().all(|e| e.tenant == "second-tenant"));
        let log = whole_log(storage.as_ref(), TENANT).await;
        // Two rounds in three append two changes each.
        assert_eq!(
            log.len(),
            WRITERS * (ROUNDS / 3 * 2) * 2,
            "accepted changes"
        );
    }

    pub async fn head_and_ping(storage: Arc<dyn Storage>) {
        let s = storage.as_ref();
        s.ping().await.unwrap();
        assert_eq!(s.head("nobody").await.unwrap(), 0);
        let j = JourneyId::new();
        s.append(TENANT, &[change(j, "h1"), change(j, "h2"), change(j, "h3")])
            .await
            .unwrap();
        let log = whole_log(s, TENANT).await;
        assert_eq!(s.head(TENANT).await.unwrap(), log.last().unwrap().seq);
        s.append(TENANT, &[change(j, "h2")]).await.unwrap();
        assert_eq!(s.head(TENANT).await.unwrap(), log.last().unwrap().seq);
        s.append(TENANT, &[change(j, "h4")]).await.unwrap();
        let after = whole_log(s, TENANT).await;
        assert_eq!(s.head(TENANT).await.unwrap(), after.last().unwrap().seq);
        assert!(after.last().unwrap().seq > log.last().unwrap().seq);
        s.ping().await.unwrap();
    }

    /// A first sync can push thousands of changes in one request.
    pub async fn a_large_batch_is_stored_whole_and_in_order(storage: Arc<dyn Storage>) {
        const N: usize = 3000;
        let s = storage.as_ref();
        let j = JourneyId::new();
        let batch: Vec<NewChange> = (0..N)
            .map(|i| {
                let mut c = change(j, &format!("big-{i}"));
                c.bytes = vec![(i % 251) as u8; 1024];
                c
            })
            .collect();
        s.append(TENANT, &batch).await.unwrap();
        let log = whole_log(s, TENANT).await;
        assert_eq!(log.len(), N);
        assert_strictly_increasing(&log);
        for (stored, sent) in log.iter().zip(&batch) {
            assert_eq!(stored.hash, sent.hash);
            assert_eq!(stored.bytes, sent.bytes);
        }
        assert_eq!(s.journey(TENANT, j).await.unwrap().changes.len(), N);

        // Re-sending it all with one new change appends just that one.
        let mut again = batch.clone();
        again.push(change(j, "big-new"));
        s.append(TENANT, &again).await.unwrap();
        let after = whole_log(s, TENANT).await;
        assert_eq!(after.len(), N + 1);
        assert_eq!(after.last().unwrap().hash, hash("big-new"));
        assert_eq!(s.head(TENANT).await.unwrap(), after.last().unwrap().seq);
    }
}

/// Every change in `log` once, in strictly increasing order, and `acked` all in it.
fn assert_acked_survived(log: &[StoredChange], acked: &[Vec<u8>]) {
    assert_strictly_increasing(log);
    let present: HashSet<&Vec<u8>> = log.iter().map(|c| &c.hash).collect();
    assert_eq!(present.len(), log.len(), "a change is in the log twice");
    let lost: Vec<String> = acked
        .iter()
        .filter(|h| !present.contains(h))
        .map(|h| String::from_utf8_lossy(h).trim_end_matches('\0').to_owned())
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged change(s) lost: {lost:?}",
        lost.len()
    );
}

mod postgres_durability {
    use crewsync_server::storage::postgres::PostgresStorage;
    use crewsync_testkit::postgres::PgCluster;

    use super::*;

    /// Writers append while the server is stopped like a crash (`pg_ctl stop -m
    /// immediate`: no checkpoint, crash recovery at the next start). Every append
    /// that returned Ok is there after the restart, batches are all-or-nothing,
    /// and the log goes on from its head.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_appends_survive_an_immediate_shutdown() {
        let mut cluster = tokio::task::spawn_blocking(PgCluster::start)
            .await
            .unwrap()
            .unwrap();
        let url = cluster.superuser_url();
        // A short acquire timeout: once the server is down, an append that needs a
        // new connection retries until then (10 s in production).
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(1))
            .connect(&url)
            .await
            .unwrap();
        let storage = Arc::new(PostgresStorage::from_pool(pool).await.unwrap());
        let journey = JourneyId::new();
        let stop = Arc::new(AtomicBool::new(false));

        let mut writers = Vec::new();
        for task in 0..4 {
            let storage = storage.clone();
            let stop = stop.clone();
            writers.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut failed = false;
                for round in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let batch: Vec<NewChange> = (0..3)
                        .map(|k| change(journey, &format!("t{task}-r{round}-k{k}")))
                        .collect();
                    match storage.append(TENANT, &batch).await {
                        Ok(_) => acked.push(batch),
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
                (acked, failed)
            }));
        }
        // Let the writers get going, then crash the server under them.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut cluster = tokio::task::spawn_blocking(move || {
            cluster.stop_immediate().unwrap();
            cluster
        })
        .await
        .unwrap();
        stop.store(true, Ordering::SeqCst);
        let mut acked_batches = Vec::new();
        for writer in writers {
            let (acked, _failed) = tokio::time::timeout(Duration::from_secs(30), writer)
                .await
                .expect("a writer hung after the crash")
                .unwrap();
            acked_batches.extend(acked);
        }
        assert!(
            acked_batches.len() >= 10,
            "only {} appends before the crash",
            acked_batches.len()
        );
        storage.pool().close().await;

        let mut cluster = tokio::task::spawn_blocking(move || {
            cluster.start_again().unwrap();
            cluster
        })
        .await
        .unwrap();
        let storage = PostgresStorage::connect(&url).await.unwrap();
        let log = whole_log(&storage, TENANT).await;
        let acked: Vec<Vec<u8>> = acked_batches
            .iter()
            .flatten()
            .map(|c| c.hash.clone())
            .collect();
        assert_acked_survived(&log, &acked);
        // All-or-nothing: every batch in the log is complete.
        let present: HashSet<Vec<u8>> = hashes(&log).into_iter().collect();
        for stored in &log {
            let label = String::from_utf8_lossy(&stored.hash)
                .trim_end_matches('\0')
                .to_owned();
            let batch_prefix = label.rsplit_once("-k").unwrap().0;
            for k in 0..3 {
                assert!(
                    present.contains(&hash(&format!("{batch_prefix}-k{k}"))),
                    "batch {batch_prefix} is in the log only in part"
                );
            }
        }
        let head = storage.head(TENANT).await.unwrap();
        assert_eq!(head, log.last().unwrap().seq);
        storage
            .append(TENANT, &[change(journey, "after restart")])
            .await
            .unwrap();
        let after = storage.changes_since(TENANT, head, 10).await.unwrap();
        assert_eq!(hashes(&after), vec![hash("after restart")]);
        storage.close().await;
        tokio::task::spawn_blocking(move || cluster.stop_immediate().unwrap())
            .await
            .unwrap();
    }
}

mod sqlite_durability {
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Command, Stdio};

    use crewsync_server::storage::sqlite::SqliteStorage;

    use super::*;

    /// Where the child process of the SIGKILL test writes.
    const CHILD_DB_ENV: &str = "CREWSYNC_TEST_SQLITE_CRASH_DB";
    const BATCH: usize = 3;

    fn batch(journey: JourneyId, round: u64) -> Vec<NewChange> {
        (0..BATCH)
            .map(|k| change(journey, &format!("r{round}-k{k}")))
            .collect()
    }

    /// Run by `acknowledged_appends_survive_sigkill` in a child process: appends
    /// batches forever and prints `ACK <round>` after each append returned Ok.
    #[tokio::test]
    #[ignore = "child process of sqlite_durability::acknowledged_appends_survive_sigkill"]
    async fn crash_child() {
        let path =
            std::env::var(CHILD_DB_ENV).expect("run by acknowledged_appends_survive_sigkill");
        let journey = JourneyId::from_uuid(sqlx::types::Uuid::from_u128(1));
        let storage = SqliteStorage::open(Path::new(&path)).await.unwrap();
        // Bounded, in case the parent died without killing this process.
        let started = std::time::Instant::now();
        for round in 0.. {
            if started.elapsed() > Duration::from_secs(60) {
                break;
            }
            storage
                .append(TENANT, &batch(journey, round))
                .await
                .unwrap();
            // A line of its own: with --nocapture libtest's "test … " may precede it.
            println!("\nACK {round}");
        }
    }

    /// A child process appends to the file and is SIGKILLed mid-stream: every
    /// acknowledged append is there when the file is opened again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_appends_survive_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crash.sqlite3");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sqlite_durability::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DB_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Read acknowledgements until enough appends are through, then kill.
        let (mut child, last_acked) = tokio::task::spawn_blocking(move || {
            let mut last_acked = None;
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                if let Some(round) = line.strip_prefix("ACK ") {
                    last_acked = Some(round.trim().parse::<u64>().unwrap());
                    if last_acked >= Some(150) {
                        break;
                    }
                }
            }
            child.kill().unwrap(); // SIGKILL
            (child, last_acked)
        })
        .await
        .unwrap();
        child.wait().unwrap();
        let last_acked =
            last_acked.expect("the child acknowledged no append (see its stderr above)");

        let storage = SqliteStorage::open(&path).await.unwrap();
        let journey = JourneyId::from_uuid(sqlx::types::Uuid::from_u128(1));
        let log = whole_log(&storage, TENANT).await;
        let acked: Vec<Vec<u8>> = (0..=last_acked)
            .flat_map(|round| batch(journey, round))
            .map(|c| c.hash)
            .collect();
        assert_acked_survived(&log, &acked);
        // The child appended one batch after another, so the log holds exactly the
        // batches of rounds 0..n, in order, for some n past the last acknowledgement
        // read (the child went on until killed): no partial batch, no hole.
        assert_eq!(log.len() % BATCH, 0, "a batch is in the log only in part");
        let rounds = (log.len() / BATCH) as u64;
        assert!(rounds > last_acked);
        let expected: Vec<Vec<u8>> = (0..rounds)
            .flat_map(|round| batch(journey, round))
            .map(|c| c.hash)
            .collect();
        assert_eq!(hashes(&log), expected);
        assert_eq!(storage.head(TENANT).await.unwrap(), log.last().unwrap().seq);
        storage.close().await;
    }

    /// Dropping the store without closing it loses nothing, and the reopened
    /// store (migrations run again) continues the log from its head.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopening_finds_everything_and_continues_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sqlite3");
        let journey = JourneyId::new();
        let storage = SqliteStorage::open(&path).await.unwrap();
        for round in 0..10 {
            storage
                .append(TENANT, &batch(journey, round))
                .await
                .unwrap();
        }
        storage
            .save_snapshot(TENANT, journey, 0, b"snapshot", &[hash("r0-k0")])
            .await
            .unwrap();
        let log = whole_log(&storage, TENANT).await;
        drop(storage);

        let storage = SqliteStorage::open(&path).await.unwrap();
        assert_eq!(whole_log(&storage, TENANT).await, log);
        let record = storage.journey(TENANT, journey).await.unwrap();
        assert_eq!(record.snapshot.as_deref(), Some(&b"snapshot"[..]));
        assert_eq!(record.changes.len(), log.len() - 1);
        let head = storage.head(TENANT).await.unwrap();
        storage
            .append(TENANT, &[change(journey, "after reopen")])
            .await
            .unwrap();
        let after = storage.changes_since(TENANT, head, 10).await.unwrap();
        assert_eq!(hashes(&after), vec![hash("after reopen")]);
        assert!(after[0].seq > head);
        storage.close().await;
    }

    /// Two stores on one file (as two server processes would be) append at the
    /// same time: no SQLITE_BUSY, one log, numbered in commit order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_handles_on_one_file_share_one_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sqlite3");
        let first = Arc::new(SqliteStorage::open(&path).await.unwrap());
        let second = Arc::new(SqliteStorage::open(&path).await.unwrap());
        let journey = JourneyId::new();
        let mut tasks = Vec::new();
        for task in 0..4u64 {
            let storage = if task % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tasks.push(tokio::spawn(async move {
                for round in 0..20 {
                    let labels = [format!("h{task}-r{round}-a"), format!("h{task}-r{round}-b")];
                    let batch: Vec<NewChange> = labels.iter().map(|l| change(journey, l)).collect();
                    storage.append(TENANT, &batch).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let log = whole_log(first.as_ref(), TENANT).await;
        assert_eq!(log.len(), 4 * 20 * 2);
        assert_eq!(whole_log(second.as_ref(), TENANT).await, log);
        assert_acked_survived(&log, &hashes(&log));
        assert_eq!(second.head(TENANT).await.unwrap(), log.last().unwrap().seq);
        first.close().await;
        second.close().await;
    }
}

mod factory {
    use crewsync_server::storage::connect;
    use crewsync_server::storage::sqlite::DEFAULT_FILE_NAME;

    use super::*;

    async fn appends_and_reads(storage: &dyn Storage) {
        storage.ping().await.unwrap();
        storage
            .append(TENANT, &[change(JourneyId::new(), "x")])
            .await
            .unwrap();
        assert_eq!(hashes(&whole_log(storage, TENANT).await), vec![hash("x")]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_url_means_an_sqlite_file_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("not").join("there").join("yet");
        let storage = connect(None, &data_dir).await.unwrap();
        appends_and_reads(storage.as_ref()).await;
        assert!(data_dir.join(DEFAULT_FILE_NAME).is_file());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_sqlite_url_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("custom.db");
        let url = format!("sqlite://{}", file.display());
        let storage = connect(Some(&url), &dir.path().join("unused"))
            .await
            .unwrap();
        appends_and_reads(storage.as_ref()).await;
        assert!(file.is_file());
        assert!(!dir.path().join("unused").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_postgres_url_connects_to_postgres() {
        let db = crewsync_testkit::postgres::shared_cluster()
            .unwrap()
            .fresh_database()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let storage = connect(Some(&db.url), dir.path()).await.unwrap();
        appends_and_reads(storage.as_ref()).await;
        let cluster = crewsync_testkit::postgres::shared_cluster().unwrap();
        let rows = cluster
            .psql(&db.name, "SELECT count(*) FROM change_log")
            .unwrap();
        assert_eq!(rows, "1");
        // Connecting again finds the schema in place (migrations are idempotent).
        let again = connect(Some(&db.url), dir.path()).await.unwrap();
        assert_eq!(again.head(TENANT).await.unwrap(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_without_synchronous_commit_is_refused() {
        let cluster = crewsync_testkit::postgres::shared_cluster().unwrap();
        let db = cluster.fresh_database().unwrap();
        let sql = format!(
            "ALTER DATABASE \"{}\" SET synchronous_commit = off",
            db.name
        );
        cluster.psql("postgres", &sql).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let e = connect(Some(&db.url), dir.path())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("synchronous_commit is off"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_urls_fail_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let message = |url: &'static str| {
            let dir = dir.path().to_path_buf();
            async move {
                match connect(Some(url), &dir).await {
                    Ok(_) => panic!("{url} was accepted"),
                    Err(e) => e.to_string(),
                }
            }
        };
        let e = message("mysql://localhost/crewsync").await;
        assert!(
            e.contains("unsupported storage URL scheme \"mysql\""),
            "{e}"
        );
        let e = message("sqlite::memory:").await;
        assert!(e.contains("in-memory"), "{e}");
        let e = message("sqlite://log.db?mode=ro").await;
        assert!(e.contains("URL parameters"), "{e}");
        let e = message("postgres://user@localhost:notaport/db").await;
        assert!(
            e.starts_with("database error: postgres: invalid connection URL"),
            "{e}"
        );
        let e = message("sqlite:///nonexistent-dir-for-crewsync-tests/log.db").await;
        assert!(
            e.contains("sqlite open /nonexistent-dir-for-crewsync-tests/log.db"),
            "{e}"
        );
    }
}
