//! The device side of one sync exchange: build a request, absorb its response.
//!
//! Safe under any delivery fault: a lost request or response costs a retry; a
//! duplicated or stale response is harmless (received changes are idempotent, acks of
//! unknown hashes are ignored, the cursor never moves back); an outbox row leaves
//! only when a response acknowledges its change as durable.

use std::collections::{BTreeMap, HashMap, HashSet};

use automerge::{Automerge, Change, ChangeHash, SaveOptions};

use super::wire::{self, DeviceReport, PROTOCOL_VERSION, SyncRequest, SyncResponse, WireChange};
use crate::error::{Error, Result};
use crate::ids::JourneyId;
use crate::store::{DeviceStore, OutboxEntry};

/// Limits for one exchange.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Local changes pushed per request.
    pub max_push: usize,
    /// Log entries asked for per response.
    pub max_pull: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_push: 5_000,
            max_pull: 5_000,
        }
    }
}

/// What one absorbed response did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeReport {
    pub pushed: usize,
    pub acknowledged: usize,
    /// Local changes that left the outbox because the server refused them (or
    /// they built on a refused one); see `DeviceStore::rejected_changes`.
    pub refused: usize,
    pub rejected: Vec<(String, String)>,
    pub received: usize,
    pub applied_new: usize,
    pub held: usize,
    pub cursor: u64,
    /// The server has more: exchange again right away.
    pub more: bool,
    /// Journeys dropped because they left the device's sync scope.
    pub left: usize,
    /// Local changes this sync could push still waiting for an acknowledgement
    /// (the signed-in user's; other users' wait for their own sign-in).
    pub pending: u64,
}

/// Builds the next request to `peer`: buffered GPS is folded first, then the oldest
/// unacknowledged changes are pushed along with the cursor, each in automerge's
/// compressed form. A journey whose every change is among them (the server has never
/// seen it: created offline) goes as one saved document when that is smaller.
pub fn prepare(store: &DeviceStore, peer: &str, limits: Limits) -> Result<SyncRequest> {
    for journey in store.journeys_with_buffered_gps()? {
        store.flush_gps(journey)?;
    }
    Ok(SyncRequest {
        version: PROTOCOL_VERSION,
        device_id: store.device_id(),
        actor: store.actor_bytes(),
        cursor: store.sync_cursor(peer)?,
        changes: push(
            store,
            store.outbox_of(store.pushing_author()?, limits.max_push)?,
        ),
        max_changes: limits.max_pull,
        held: Some(store.journey_ids()?),
        report: Some(DeviceReport {
            pending_changes: store.outbox_len()?,
            pending_media_bytes: store.media_progress()?.pending_bytes,
        }),
    })
}

/// An outbox entry on its way, decoded (`None` if it does not decode: it then goes
/// as stored and the server says why).
struct Outgoing {
    entry: OutboxEntry,
    change: Option<Change>,
}

/// The request's entries for an outbox page, in outbox order; a journey sent as a
/// document takes the place of its first change, other changes go compressed.
fn push(store: &DeviceStore, page: Vec<OutboxEntry>) -> Vec<WireChange> {
    let outgoing: Vec<Outgoing> = page
        .into_iter()
        .map(|entry| Outgoing {
            change: Change::from_bytes(entry.bytes.clone()).ok(),
            entry,
        })
        .collect();
    let mut by_journey: BTreeMap<JourneyId, Vec<&Outgoing>> = BTreeMap::new();
    for item in &outgoing {
        by_journey
            .entry(item.entry.journey_id)
            .or_default()
            .push(item);
    }
    let mut documents: HashMap<JourneyId, Option<Vec<u8>>> = by_journey
        .into_iter()
        .filter_map(|(journey, pending)| {
            whole_journey(store, journey, &pending).map(|doc| (journey, Some(doc)))
        })
        .collect();
    let mut changes = Vec::new();
    for item in outgoing {
        let journey = item.entry.journey_id;
        let bytes = match (documents.get_mut(&journey), item.change) {
            // The document goes once, where the journey's first change was.
            (Some(document), _) => match document.take() {
                Some(bytes) => bytes,
                None => continue,
            },
            (None, Some(mut change)) => change.bytes().into_owned(),
            (None, None) => item.entry.bytes,
        };
        changes.push(WireChange { journey, bytes });
    }
    changes
}

/// The journey as one saved document, if every change it holds is pending (so the
/// server has none of them) and the document is smaller than those changes (about a
/// tenth, in practice).
///
/// A journey the server already knows fails at once, without its document: some
/// pending change depends on one no longer pending. Otherwise the document's change
/// graph is read (metadata only: no change is rebuilt), so the test holds whatever
/// local compaction did to the stored change rows. Read and saved under one lock: a
/// change recorded meanwhile cannot slip in unsent.
fn whole_journey(
    store: &DeviceStore,
    journey: JourneyId,
    pending: &[&Outgoing],
) -> Option<Vec<u8>> {
    let hashes: HashSet<ChangeHash> = pending.iter().map(|p| p.entry.hash).collect();
    let closed = pending.iter().all(|p| {
        p.change
            .as_ref()
            .is_some_and(|change| change.deps().iter().all(|dep| hashes.contains(dep)))
    });
    if !closed {
        return None;
    }
    let changes_size: usize = pending.iter().map(|p| p.entry.bytes.len()).sum();
    let saved = store.with_document(journey, |doc| {
        let automerge = doc.automerge();
        let all = automerge.get_changes_meta(&[]);
        let whole = !all.is_empty() && all.iter().all(|change| hashes.contains(&change.hash));
        Ok(whole.then(|| {
            // Changes held back for missing dependencies are not ours to push.
            automerge.save_with_options(SaveOptions {
                deflate: true,
                retain_orphans: false,
            })
        }))
    });
    match saved {
        Ok(document) => document.filter(|bytes| bytes.len() < changes_size),
        Err(e) => {
            // The changes alone still sync; the document is only an optimization.
            tracing::warn!(%journey, error = %e, "cannot save the journey for a push; sending its changes");
            None
        }
    }
}

/// The heads and every change hash of a document this device pushed.
fn document_hashes(bytes: &[u8]) -> Option<(Vec<ChangeHash>, Vec<ChangeHash>)> {
    let doc = Automerge::load(bytes).ok()?;
    let all = doc.get_changes_meta(&[]).iter().map(|c| c.hash).collect();
    Some((doc.get_heads(), all))
}

/// Absorbs a response to `request`: received changes are applied in one batch per
/// journey, acknowledged changes leave the outbox, and the cursor moves forward, all
/// in one transaction, so a crash part-way leaves the exchange to be repeated.
pub fn absorb(
    store: &DeviceStore,
    peer: &str,
    request: &SyncRequest,
    response: SyncResponse,
) -> Result<ExchangeReport> {
    let mut by_journey: BTreeMap<JourneyId, Vec<Vec<u8>>> = BTreeMap::new();
    let mut received = response.changes.len();
    for change in response.changes {
        by_journey
            .entry(change.journey)
            .or_default()
            .push(change.bytes);
    }
    // A journey that entered the scope comes whole; it is absorbed like any
    // received changes, in the same transaction.
    for document in response.entered {
        let unpacked = wire::unpack(document.bytes).map_err(|reason| {
            Error::InvalidInput(format!(
                "the server sent journey {} as {reason}",
                document.journey
            ))
        })?;
        received += unpacked.changes.len();
        by_journey.entry(document.journey).or_default().extend(
            unpacked
                .changes
                .into_iter()
                .map(|change| change.raw_bytes().to_vec()),
        );
    }
    let mut acked = response
        .acked
        .iter()
        .map(|hash| {
            ChangeHash::try_from(hash.as_slice()).map_err(|e| {
                Error::InvalidInput(format!("server acknowledged a malformed hash: {e}"))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // A document is acknowledged by its heads: all of them acked, all of it durable.
    let mut pushed = 0;
    let acked_set: HashSet<ChangeHash> = acked.iter().copied().collect();
    for change in &request.changes {
        if !wire::is_document(&change.bytes) {
            pushed += 1;
            continue;
        }
        if let Some((heads, all)) = document_hashes(&change.bytes) {
            pushed += all.len();
            if !heads.is_empty() && heads.iter().all(|head| acked_set.contains(head)) {
                acked.extend(all);
            }
        }
    }
    // Cursors only grow, and this response covers the log from the request's cursor
    // (never ahead of ours), so taking the maximum leaves no gap. Everything lands
    // in one transaction: one fsync per exchange, not one per journey.
    let absorbed = store.absorb(
        by_journey.into_iter().collect(),
        &acked,
        Some((peer, response.cursor.max(request.cursor))),
    )?;
    let (applied_new, held, acknowledged) = (
        absorbed.applied.new,
        absorbed.applied.held,
        absorbed.acknowledged,
    );
    // Changes the server refused leave the outbox and the journey and stay visible
    // with the reason (a malformed change's rejection names no hash: nothing to do).
    let refused: Vec<(ChangeHash, String)> = response
        .rejected
        .iter()
        .filter_map(|r| {
            Some((
                ChangeHash::try_from(r.hash.as_slice()).ok()?,
                r.reason.clone(),
            ))
        })
        .collect();
    let dropped = store.reject_local_changes(&refused)?;
    // Journeys outside the scope go once nothing of them waits to be pushed (the
    // refusals above already left the outbox).
    let mut left = 0;
    for journey in &response.left {
        if store.forget_journey(*journey)? {
            left += 1;
        }
    }
    Ok(ExchangeReport {
        pushed,
        acknowledged,
        refused: dropped,
        rejected: response
            .rejected
            .into_iter()
            .map(|r| (hex(&r.hash), r.reason))
            .collect(),
        received,
        applied_new,
        held,
        cursor: store.sync_cursor(peer)?,
        more: response.more,
        left,
        pending: store.outbox_len_of(store.pushing_author()?)?,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
