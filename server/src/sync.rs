//! The server's side of a sync exchange, independent of HTTP: checks and durably
//! appends what a device pushed, then reads what it missed from the log.

use std::sync::Arc;

use crewsync_core::sync::wire::{
    LoggedChange, PROTOCOL_VERSION, RejectedChange, SyncRequest, SyncResponse,
};

use crate::storage::{Appended, NewChange, Storage, StorageError};

/// The most log entries one response carries, whatever the device asks for.
pub const MAX_PULL: u32 = 10_000;

/// One request's result: the answer for the device, and what the append did (so
/// the caller tells live sockets only of real news).
#[derive(Debug)]
pub struct Exchanged {
    pub response: SyncResponse,
    pub appended: Appended,
}

/// Handles one request for `tenant`. Malformed changes are rejected one by one with
/// a reason and nothing is stored for them; the rest are acknowledged only after the
/// append returned, i.e. once they are durable.
pub async fn exchange(
    storage: &Arc<dyn Storage>,
    tenant: &str,
    request: SyncRequest,
) -> Result<Exchanged, StorageError> {
    let mut accepted = Vec::with_capacity(request.changes.len());
    let mut rejected = Vec::new();
    for change in request.changes {
        match automerge::Change::from_bytes(change.bytes) {
            Ok(decoded) => accepted.push(NewChange {
                journey: change.journey,
                hash: decoded.hash().as_ref().to_vec(),
                actor: decoded.actor_id().to_bytes().to_vec(),
                device: request.device_id,
                bytes: decoded.raw_bytes().to_vec(),
            }),
            Err(e) => rejected.push(RejectedChange {
                hash: Vec::new(),
                reason: format!("not an automerge change: {e}"),
            }),
        }
    }
    let appended = storage.append(tenant, &accepted).await?;

    let limit = request.max_changes.clamp(1, MAX_PULL);
    let rows = storage.changes_since(tenant, request.cursor, limit).await?;
    let more = rows.len() == limit as usize;
    let cursor = rows.last().map_or(request.cursor, |row| row.seq);
    let changes = rows
        .into_iter()
        .filter(|row| row.actor != request.actor)
        .map(|row| LoggedChange {
            seq: row.seq,
            journey: row.journey,
            bytes: row.bytes,
        })
        .collect();
    let response = SyncResponse {
        version: PROTOCOL_VERSION,
        acked: accepted
            .into_iter()
            .map(|c| serde_bytes::ByteBuf::from(c.hash))
            .collect(),
        rejected,
        changes,
        cursor,
        more,
    };
    Ok(Exchanged { response, appended })
}
