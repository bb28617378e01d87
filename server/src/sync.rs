//! The server's side of a sync exchange, independent of HTTP: checks and durably
//! appends what a device pushed, then reads what it missed from the log.

use std::collections::BTreeSet;
use std::sync::Arc;

use automerge::{Change, ChangeHash};
use crewsync_core::ids::{DeviceId, JourneyId};
use crewsync_core::sync::wire::{
    LoggedChange, PROTOCOL_VERSION, RejectedChange, SyncRequest, SyncResponse, WireChange,
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

pub use crewsync_core::sync::wire::{Unpacked, unpack};

/// What the pushing half of an exchange did.
#[derive(Debug)]
pub struct Pushed {
    pub acked: Vec<ChangeHash>,
    /// Entries that are not automerge at all (nothing stored for them).
    pub rejected: Vec<RejectedChange>,
    pub appended: Appended,
    /// Changes now durable (new or already known), counted one by one.
    pub accepted: usize,
}

/// What a device may receive: the journeys in its scope, and the ones it holds.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// `None`: everything in the tenant's log (no scope applies).
    pub visible: Option<BTreeSet<JourneyId>>,
    /// The journeys the device says it holds (`None`: it did not say).
    pub held: Option<BTreeSet<JourneyId>>,
}

/// The most journeys one response brings whole (as documents) into a device's scope.
pub const MAX_ENTERED: usize = 50;

/// Handles one request for `tenant` with no scope (every journey is visible) and no
/// write checks (changes are audited as unscreened): for tests and benches.
pub async fn exchange(
    storage: &Arc<dyn Storage>,
    tenant: &str,
    mut request: SyncRequest,
) -> Result<Exchanged, StorageError> {
    let changes = std::mem::take(&mut request.changes);
    let pushed = push(
        storage,
        tenant,
        request.device_id,
        changes,
        &ChangeFacts::default(),
    )
    .await?;
    let response = pull(
        storage,
        tenant,
        &request,
        pushed.acked,
        pushed.rejected,
        &View::default(),
    )
    .await
    .map_err(|e| StorageError::Database(e.to_string()))?;
    Ok(Exchanged {
        response,
        appended: pushed.appended,
        accepted: pushed.accepted,
    })
}

/// Appends what a device pushed. Malformed entries are rejected one by one with a
/// reason and nothing is stored for them; the rest are acknowledged only after the
/// append returned, i.e. once they are durable. A document's changes are appended
/// like pushed ones, in the same append, and the document is acknowledged by its
/// heads. Each appended change is audited with its `facts` from the write checks
/// (`checks::screen`); a change without them is audited as unscreened.
pub async fn push(
    storage: &Arc<dyn Storage>,
    tenant: &str,
    device: DeviceId,
    changes: Vec<WireChange>,
    facts: &ChangeFacts,
) -> Result<Pushed, StorageError> {
    let mut accepted = Vec::with_capacity(changes.len());
    let mut acked = Vec::with_capacity(changes.len());
    let mut rejected = Vec::new();
    for change in changes {
        match unpack(change.bytes) {
            Ok(unpacked) => {
                accepted.extend(
                    unpacked
                        .changes
                        .into_iter()
                        .map(|mut decoded| logged(change.journey, device, &mut decoded, facts)),
                );
                acked.extend(unpacked.acknowledged_by);
            }
            Err(reason) => rejected.push(RejectedChange {
                hash: Vec::new(),
                reason,
            }),
        }
    }
    let appended = storage.append(tenant, &accepted).await?;
    Ok(Pushed {
        acked,
        rejected,
        appended,
        accepted: accepted.len(),
    })
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Check(#[from] crate::checks::CheckError),
}

/// Reads what the device missed since its cursor, within `view`: the log page
/// filtered to journeys it may see and already holds; journeys that entered its
/// scope whole, as documents loaded after the page was read (so they hold every
/// change the page left out); and the journeys it holds that left its scope.
pub async fn pull(
    storage: &Arc<dyn Storage>,
    tenant: &str,
    request: &SyncRequest,
    acked: Vec<ChangeHash>,
    rejected: Vec<RejectedChange>,
    view: &View,
) -> Result<SyncResponse, PullError> {
    let limit = request.max_changes.clamp(1, MAX_PULL);
    let rows = storage.changes_since(tenant, request.cursor, limit).await?;
    let more = rows.len() == limit as usize;
    let cursor = rows.last().map_or(request.cursor, |row| row.seq);
    let receives = |journey: &JourneyId| {
        view.visible.as_ref().is_none_or(|v| v.contains(journey))
            && view.held.as_ref().is_none_or(|h| h.contains(journey))
    };
    let changes = rows
        .into_iter()
        .filter(|row| row.actor != request.actor && receives(&row.journey))
        .map(|row| LoggedChange {
            seq: row.seq,
            journey: row.journey,
            bytes: row.bytes,
        })
        .collect();
    let (mut entered, mut left) = (Vec::new(), Vec::new());
    let mut more_entering = false;
    if let (Some(visible), Some(held)) = (&view.visible, &view.held) {
        left = held.difference(visible).copied().collect();
        let entering: Vec<JourneyId> = visible.difference(held).copied().collect();
        more_entering = entering.len() > MAX_ENTERED;
        for journey in entering.into_iter().take(MAX_ENTERED) {
            let record = storage.journey(tenant, journey).await?;
            let bytes = tokio::task::spawn_blocking(move || {
                crate::checks::load(journey, &record).map(|doc| doc.save())
            })
            .await
            .map_err(|e| crate::checks::CheckError::Corrupt {
                journey,
                reason: format!("save task failed: {e}"),
            })??;
            entered.push(WireChange { journey, bytes });
        }
    }
    Ok(SyncResponse {
        version: PROTOCOL_VERSION,
        acked: acked
            .into_iter()
            .map(|hash| serde_bytes::ByteBuf::from(hash.as_ref().to_vec()))
            .collect(),
        rejected,
        changes,
        cursor,
        more: more || more_entering,
        entered,
        left,
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
