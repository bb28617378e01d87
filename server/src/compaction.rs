//! Server-side compaction: folds a journey's logged changes into a saved automerge
//! document, so loading a journey reads one snapshot plus a short tail instead of
//! its whole history. The log rows stay (device cursors read them); only the
//! journey's record gets shorter.
//!
//! Appends tell the [`Compactor`] which journeys they touched; one background task
//! compacts, one journey at a time, those whose unfolded tail reached the
//! threshold. It runs off the request path: an append is acknowledged before any
//! compaction starts, and a compaction that fails or is cut short by a crash
//! leaves the record as it was (the snapshot and the folding commit together).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

use automerge::{Automerge, Change, ChangeHash, ReadDoc};
use crewsync_core::ids::JourneyId;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::storage::{Storage, StorageError};

/// Unfolded changes a journey may collect before it is compacted, unless configured.
pub const DEFAULT_COMPACT_AFTER: u64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("journey {journey}: the stored document does not load: {reason}")]
    Corrupt { journey: JourneyId, reason: String },
    #[error("compaction task failed: {0}")]
    Task(String),
}

/// What one compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compacted {
    /// A new snapshot holds this many more changes.
    Saved { folded: usize },
    /// Another compaction saved first; this one wrote nothing.
    Lost,
    /// Nothing to fold.
    Nothing,
}

/// Folds every unfolded change of `journey` whose dependencies are present into a
/// new snapshot. Changes still missing a dependency stay unfolded.
pub async fn compact_journey(
    storage: &Arc<dyn Storage>,
    tenant: &str,
    journey: JourneyId,
) -> Result<Compacted, CompactionError> {
    let record = storage.journey(tenant, journey).await?;
    if record.changes.is_empty() {
        return Ok(Compacted::Nothing);
    }
    let generation = record.generation;
    // Loading and saving a document is CPU work: keep it off the async workers.
    let built = tokio::task::spawn_blocking(move || build_snapshot(journey, record))
        .await
        .map_err(|e| CompactionError::Task(e.to_string()))??;
    let Some(snapshot) = built else {
        return Ok(Compacted::Nothing);
    };
    let saved = storage
        .save_snapshot(
            tenant,
            journey,
            generation,
            &snapshot.bytes,
            &snapshot.folded,
        )
        .await?;
    Ok(if saved {
        Compacted::Saved {
            folded: snapshot.folded.len(),
        }
    } else {
        Compacted::Lost
    })
}

/// A saved document and the hashes of the logged changes it took in.
struct Snapshot {
    bytes: Vec<u8>,
    folded: Vec<Vec<u8>>,
}

/// The new snapshot; `None` when none of the tail could be applied yet.
fn build_snapshot(
    journey: JourneyId,
    record: crate::storage::JourneyRecord,
) -> Result<Option<Snapshot>, CompactionError> {
    let corrupt = |e: &dyn std::fmt::Display| CompactionError::Corrupt {
        journey,
        reason: e.to_string(),
    };
    let mut doc = match &record.snapshot {
        Some(bytes) => Automerge::load(bytes).map_err(|e| corrupt(&e))?,
        None => Automerge::new(),
    };
    let mut tail = Vec::with_capacity(record.changes.len());
    for bytes in record.changes {
        // The server decoded every change before logging it.
        let change = Change::from_bytes(bytes).map_err(|e| corrupt(&e))?;
        tail.push(change);
    }
    let hashes: Vec<ChangeHash> = tail.iter().map(Change::hash).collect();
    doc.apply_changes(tail).map_err(|e| corrupt(&e))?;
    // A change whose dependencies have not arrived waits in automerge's queue and
    // is not in the saved document: it must stay in the record.
    let folded: Vec<Vec<u8>> = hashes
        .into_iter()
        .filter(|hash| doc.get_change_by_hash(hash).is_some())
        .map(|hash| hash.as_ref().to_vec())
        .collect();
    if folded.is_empty() {
        return Ok(None);
    }
    Ok(Some(Snapshot {
        bytes: doc.save(),
        folded,
    }))
}

type Touched = BTreeSet<(String, JourneyId)>;

/// Compacts journeys in the background as appends touch them.
#[derive(Clone)]
pub struct Compactor {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
    threshold: u64,
    touched: Mutex<Touched>,
    wake: Notify,
    /// The worker, started by the first append (inside the server's runtime).
    worker: OnceLock<tokio::task::JoinHandle<()>>,
}

impl Compactor {
    /// Compacts a journey once `threshold` changes are outside its snapshot;
    /// `threshold == 0` turns compaction off.
    pub fn new(storage: Arc<dyn Storage>, metrics: Arc<Metrics>, threshold: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                storage,
                metrics,
                threshold,
                touched: Mutex::new(Touched::new()),
                wake: Notify::new(),
                worker: OnceLock::new(),
            }),
        }
    }

    /// Notes that an append added changes to these journeys.
    pub fn touched(&self, tenant: &str, journeys: &[JourneyId]) {
        if self.inner.threshold == 0 || journeys.is_empty() {
            return;
        }
        {
            let mut touched = self.lock_touched();
            for journey in journeys {
                touched.insert((tenant.to_owned(), *journey));
            }
        }
        self.inner.worker.get_or_init(|| {
            let inner = Arc::clone(&self.inner);
            tokio::spawn(async move { inner.run().await })
        });
        self.inner.wake.notify_one();
    }

    /// Stops the worker. A compaction cut short commits nothing.
    pub fn stop(&self) {
        if let Some(worker) = self.inner.worker.get() {
            worker.abort();
        }
    }

    fn lock_touched(&self) -> std::sync::MutexGuard<'_, Touched> {
        self.inner.lock_touched()
    }
}

impl Inner {
    fn lock_touched(&self) -> std::sync::MutexGuard<'_, Touched> {
        self.touched.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            loop {
                let next = self.lock_touched().pop_first();
                let Some((tenant, journey)) = next else {
                    break;
                };
                self.consider(&tenant, journey).await;
            }
        }
    }

    async fn consider(&self, tenant: &str, journey: JourneyId) {
        let due = match self.storage.unfolded_count(tenant, journey).await {
            Ok(count) => count >= self.threshold,
            Err(e) => {
                tracing::warn!(%journey, error = %e, "compaction: cannot count unfolded changes");
                false
            }
        };
        if !due {
            return;
        }
        match compact_journey(&self.storage, tenant, journey).await {
            Ok(outcome) => {
                let label = match outcome {
                    Compacted::Saved { folded } => {
                        tracing::debug!(%journey, folded, "journey compacted");
                        "saved"
                    }
                    Compacted::Lost => "lost_race",
                    Compacted::Nothing => "nothing",
                };
                self.metrics.compactions.with_label_values(&[label]).inc();
            }
            Err(e) => {
                self.metrics
                    .compactions
                    .with_label_values(&["failed"])
                    .inc();
                tracing::warn!(%journey, error = %e, "compaction failed; the record is unchanged");
            }
        }
    }
}
