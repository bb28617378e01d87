//! The device side of one sync exchange: build a request, absorb its response.
//!
//! Safe under any delivery fault: a lost request or response costs a retry; a
//! duplicated or stale response is harmless (received changes are idempotent, acks of
//! unknown hashes are ignored, the cursor never moves back); an outbox row leaves
//! only when a response acknowledges its change as durable.

use std::collections::BTreeMap;

use automerge::ChangeHash;

use super::wire::{PROTOCOL_VERSION, SyncRequest, SyncResponse, WireChange};
use crate::error::{Error, Result};
use crate::ids::JourneyId;
use crate::store::DeviceStore;

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
    pub rejected: Vec<(String, String)>,
    pub received: usize,
    pub applied_new: usize,
    pub held: usize,
    pub cursor: u64,
    /// The server has more: exchange again right away.
    pub more: bool,
    /// Local changes still waiting for an acknowledgement.
    pub pending: u64,
}

/// Builds the next request to `peer`: buffered GPS is folded first, then the oldest
/// unacknowledged changes are pushed along with the cursor.
pub fn prepare(store: &DeviceStore, peer: &str, limits: Limits) -> Result<SyncRequest> {
    for journey in store.journeys_with_buffered_gps()? {
        store.flush_gps(journey)?;
    }
    let changes = store
        .outbox(limits.max_push)?
        .into_iter()
        .map(|entry| WireChange {
            journey: entry.journey_id,
            bytes: entry.bytes,
        })
        .collect();
    Ok(SyncRequest {
        version: PROTOCOL_VERSION,
        device_id: store.device_id(),
        actor: store.actor_bytes(),
        cursor: store.sync_cursor(peer)?,
        changes,
        max_changes: limits.max_pull,
    })
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
    let received = response.changes.len();
    for change in response.changes {
        by_journey
            .entry(change.journey)
            .or_default()
            .push(change.bytes);
    }
    let acked = response
        .acked
        .iter()
        .map(|hash| {
            ChangeHash::try_from(hash.as_slice()).map_err(|e| {
                Error::InvalidInput(format!("server acknowledged a malformed hash: {e}"))
            })
        })
        .collect::<Result<Vec<_>>>()?;
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
    Ok(ExchangeReport {
        pushed: request.changes.len(),
        acknowledged,
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
        pending: store.outbox_len()?,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
