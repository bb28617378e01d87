//! The server's side of a sync exchange, independent of HTTP: checks and durably
//! appends what a device pushed, then reads what it missed from the log.

use std::sync::Arc;

use automerge::{Automerge, Change, ChangeHash};
use crewsync_core::ids::{DeviceId, JourneyId};
use crewsync_core::sync::wire::{
    self, LoggedChange, PROTOCOL_VERSION, RejectedChange, SyncRequest, SyncResponse,
};

use crate::audit::ChangeFacts;
use crate::storage::{Appended, NewChange, Storage, StorageError};

/// The most log entries one response carries, whatever the device asks for.
pub const MAX_PULL: u32 = 10_000;

/// One request's result: the answer for the device, and what the append did (so
/// the caller tells live sockets only of real news).
#[derive(Debug)]
pub struct Exchanged {
    pub response: SyncResponse,
    pub appended: Appended,
    /// Changes now durable (new or already known), counted one by one: a pushed
    /// document is acknowledged by its heads but holds many changes.
    pub accepted: usize,
}

/// What one pushed entry holds: its changes (a document's in causal order), and
/// the hashes that acknowledge it: a change's own, a document's heads.
#[derive(Debug)]
pub struct Unpacked {
    pub changes: Vec<Change>,
    pub acknowledged_by: Vec<ChangeHash>,
}

/// Reads one pushed entry (a change, raw or compressed, or a saved document);
/// `Err` is the reason to give the device. Everything that judges pushed changes
/// goes through here, so a document's changes are seen exactly like pushed ones.
pub fn unpack(bytes: Vec<u8>) -> Result<Unpacked, String> {
    if wire::is_document(&bytes) {
        let doc = Automerge::load(&bytes).map_err(|e| format!("not an automerge document: {e}"))?;
        return Ok(Unpacked {
            changes: doc.get_changes(&[]),
            acknowledged_by: doc.get_heads(),
        });
    }
    let change = Change::from_bytes(bytes).map_err(|e| format!("not an automerge change: {e}"))?;
    Ok(Unpacked {
        acknowledged_by: vec![change.hash()],
        changes: vec![change],
    })
}

/// Handles one request for `tenant`. Malformed entries are rejected one by one with
/// a reason and nothing is stored for them; the rest are acknowledged only after the
/// append returned, i.e. once they are durable. A document's changes are appended
/// like pushed ones, in the same append, and the document is acknowledged by its
/// heads. Each appended change is audited with its `facts` from the write checks
/// (`checks::screen`); a change without them is audited as unscreened.
pub async fn exchange(
    storage: &Arc<dyn Storage>,
    tenant: &str,
    request: SyncRequest,
    facts: &ChangeFacts,
) -> Result<Exchanged, StorageError> {
    let mut accepted = Vec::with_capacity(request.changes.len());
    let mut acked = Vec::with_capacity(request.changes.len());
    let mut rejected = Vec::new();
    for change in request.changes {
        match unpack(change.bytes) {
            Ok(unpacked) => {
                accepted.extend(unpacked.changes.into_iter().map(|mut decoded| {
                    logged(change.journey, request.device_id, &mut decoded, facts)
                }));
                acked.extend(unpacked.acknowledged_by);
            }
            Err(reason) => rejected.push(RejectedChange {
                hash: Vec::new(),
                reason,
            }),
        }
    }
    let appended = storage.append(tenant, &accepted).await?;
    let accepted = accepted.len();

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
        acked: acked
            .into_iter()
            .map(|hash| serde_bytes::ByteBuf::from(hash.as_ref().to_vec()))
            .collect(),
        rejected,
        changes,
        cursor,
        more,
    };
    Ok(Exchanged {
        response,
        appended,
        accepted,
    })
}

/// A change as the log keeps it: compressed, the form it goes out in, so serving it
/// to every device costs no compression (free when it arrived compressed).
fn logged(
    journey: JourneyId,
    device: DeviceId,
    change: &mut Change,
    facts: &ChangeFacts,
) -> NewChange {
    NewChange {
        audit: facts.of(change),
        journey,
        hash: change.hash().as_ref().to_vec(),
        actor: change.actor_id().to_bytes().to_vec(),
        device,
        bytes: change.bytes().into_owned(),
    }
}
