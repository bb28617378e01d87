//! Every pushed change is checked against its sender before it is accepted.
//!
//! For each journey in a push, the server loads the journey as accepted so far and
//! applies the pushed changes one at a time: what a change did is read from its
//! effect (`document::touches`), and the sender's role, the tenant's permission
//! table and the journey's state decide (`core::policy`). A change is
//! - **accepted**: it joins the log;
//! - **rejected**: it is quarantined with its reason and the device is told — never
//!   silently dropped. Automerge chains every change of an actor on the previous
//!   one, so a later change that builds on a rejected one is rejected with it
//!   ("builds on a rejected change"); the device then returns the journey to the
//!   server's accepted state and continues with a fresh actor;
//! - **held for review**: the journey was audited; the change waits, quarantined as
//!   "after audit", and the record does not change;
//! - **deferred**: its dependencies have not arrived (a change of someone else that
//!   this one builds on); it is neither acknowledged nor rejected, so the device
//!   sends it again later.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use automerge::{ActorId, Change, ChangeHash};
use crewsync_core::document::JourneyDocument;
use crewsync_core::document::touches::touches_between;
use crewsync_core::ids::{JourneyId, LocationId};
use crewsync_core::policy::{self, Denial, JourneyContext, PermissionTable, Touch};
use crewsync_core::{ChangeMessage, Error as CoreError};

use crewsync_core::sync::wire::{RejectedChange, SyncRequest, WireChange};

use crate::audit::{ChangeAudit, ChangeFacts};
use crate::auth::http::Principal;
use crate::storage::{QuarantineKind, Quarantined, Refused, Storage, StorageError};

/// What happened to one pushed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Rejected(String),
    /// The journey is audited: kept for review, not merged.
    AfterAudit,
    /// Dependencies missing: the device sends it again later.
    Deferred,
}

/// A pushed change and its verdict, with what the audit trail records of it.
#[derive(Debug, Clone)]
pub struct Checked {
    pub journey: JourneyId,
    pub change: Change,
    pub verdict: Verdict,
    /// What it did, when it was applied (empty when refused before applying,
    /// deferred, or already accepted).
    pub touched: Vec<Touch>,
    /// The journey's location, as its document names it.
    pub location: Option<LocationId>,
    /// It may change who sees the journey: it creates it or changes its crew (or
    /// it is a re-send, whose effect was not looked at again). See `scope`.
    pub moves_scope: bool,
}

/// Whether what a change touched may change who sees its journey.
fn moves_scope(touches: &[Touch]) -> bool {
    touches
        .iter()
        .any(|t| matches!(t, Touch::Create | Touch::Crew))
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("journey {journey}: the stored document does not load: {reason}")]
    Corrupt { journey: JourneyId, reason: String },
}

/// Checks `changes` (in push order) for `principal`, journey by journey.
pub async fn check_push(
    storage: &Arc<dyn Storage>,
    tenant: &str,
    principal: &Principal,
    table: &PermissionTable,
    changes: Vec<(JourneyId, Change)>,
) -> Result<Vec<Checked>, CheckError> {
    let mut by_journey: BTreeMap<JourneyId, Vec<Change>> = BTreeMap::new();
    for (journey, change) in changes {
        by_journey.entry(journey).or_default().push(change);
    }
    let mut checked = Vec::new();
    for (journey, changes) in by_journey {
        let record = storage.journey(tenant, journey).await?;
        let principal = principal.clone();
        let table = table.clone();
        // Loading, applying and diffing documents is CPU work.
        let verdicts = tokio::task::spawn_blocking(move || {
            check_journey(journey, record, &principal, &table, changes)
        })
        .await
        .map_err(|e| CheckError::Corrupt {
            journey,
            reason: format!("check task failed: {e}"),
        })??;
        checked.extend(verdicts);
    }
    Ok(checked)
}

fn corrupt(journey: JourneyId) -> impl Fn(CoreError) -> CheckError {
    move |e| CheckError::Corrupt {
        journey,
        reason: e.to_string(),
    }
}

/// The server's accepted document of a journey.
pub(crate) fn load(
    journey: JourneyId,
    record: &crate::storage::JourneyRecord,
) -> Result<JourneyDocument, CheckError> {
    let changes = record
        .changes
        .iter()
        .map(|bytes| Change::from_bytes(bytes.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CheckError::Corrupt {
            journey,
            reason: e.to_string(),
        })?;
    JourneyDocument::load(
        journey,
        record.snapshot.as_deref(),
        changes,
        ActorId::random(),
    )
    .map_err(corrupt(journey))
}

fn check_journey(
    journey: JourneyId,
    record: crate::storage::JourneyRecord,
    principal: &Principal,
    table: &PermissionTable,
    changes: Vec<Change>,
) -> Result<Vec<Checked>, CheckError> {
    let mut doc = load(journey, &record)?;
    if let Some(all_accepted) = check_whole(journey, &mut doc, principal, table, &changes)? {
        return Ok(all_accepted);
    }
    // Something in the push is refused, deferred or audits the journey: judge the
    // changes one at a time from the accepted state.
    let mut doc = load(journey, &record)?;
    let mut accepted: Vec<Change> = Vec::new();
    let mut rejected: HashSet<ChangeHash> = HashSet::new();
    let mut out = Vec::with_capacity(changes.len());
    for change in changes {
        let hash = change.hash();
        let resent = doc.has_change(&hash);
        let (verdict, touched) = if resent {
            // Already in the accepted journey (a re-send): acknowledge again.
            (Verdict::Accepted, Vec::new())
        } else if let Some(reason) = refused_before_applying(&change, principal, &rejected) {
            (Verdict::Rejected(reason), Vec::new())
        } else {
            judge(journey, &mut doc, &change, principal, table)?
        };
        let location = location_of(&doc);
        match &verdict {
            Verdict::Accepted => accepted.push(change.clone()),
            Verdict::Rejected(_) | Verdict::AfterAudit => {
                rejected.insert(hash);
                if doc.has_change(&hash) {
                    // Take it back out: rebuild from the record and what was accepted.
                    doc = load(journey, &record)?;
                    doc.apply_changes(accepted.clone())
                        .map_err(corrupt(journey))?;
                }
            }
            Verdict::Deferred => {
                // Automerge queued it; drop the queue so that a later change cannot
                // release it unchecked.
                doc = load(journey, &record)?;
                doc.apply_changes(accepted.clone())
                    .map_err(corrupt(journey))?;
            }
        }
        out.push(Checked {
            journey,
            change,
            verdict,
            moves_scope: resent || moves_scope(&touched),
            touched,
            location,
        });
    }
    Ok(out)
}

/// The journey's location, if the document has its header yet.
fn location_of(doc: &JourneyDocument) -> Option<LocationId> {
    doc.header().ok().map(|(_, location, _)| location)
}

/// The common case in one step: the whole push of a journey applied as one batch
/// (automerge applies one change per call ~26x slower), then each change judged by
/// its own effect, read from history as the difference between its dependencies
/// and itself (`diff(deps, [hash])`: exactly what its author did, so nothing can
/// hide behind a later change of the same push undoing it). It decides only when
/// the answer is "all accepted" — every change applied, none refused before
/// applying or by its touches, and no move to AUDITED in the push (which changes
/// how the changes after it are judged); `None` sends the push to the
/// change-by-change path. The context (stage, crew) is the journey's before the
/// push: within a push only office roles change the crew, and they need no crew
/// membership, and the stage only grows.
fn check_whole(
    journey: JourneyId,
    doc: &mut JourneyDocument,
    principal: &Principal,
    table: &PermissionTable,
    changes: &[Change],
) -> Result<Option<Vec<Checked>>, CheckError> {
    let none_rejected = HashSet::new();
    if changes.iter().any(|c| {
        doc.has_change(&c.hash()) || refused_before_applying(c, principal, &none_rejected).is_some()
    }) {
        return Ok(None);
    }
    let context = context_of(journey, doc, principal)?;
    doc.apply_changes(changes.to_vec())
        .map_err(corrupt(journey))?;
    if changes.iter().any(|c| !doc.has_change(&c.hash())) {
        return Ok(None);
    }
    let location = location_of(doc);
    let mut out = Vec::with_capacity(changes.len());
    for change in changes {
        let creating = change.deps().is_empty();
        let touches = touches_between(doc.automerge(), change.deps(), &[change.hash()]);
        let change_context = JourneyContext {
            creating,
            ..context.clone()
        };
        if touches.contains(&policy::Touch::Stage(crewsync_core::model::Stage::Audited))
            || (creating && !created_in_tenant(doc, principal))
            || policy::check_all(principal.role, table, &change_context, &touches).is_err()
        {
            return Ok(None);
        }
        out.push(Checked {
            journey,
            change: change.clone(),
            verdict: Verdict::Accepted,
            moves_scope: moves_scope(&touches),
            touched: touches,
            location,
        });
    }
    Ok(Some(out))
}

/// The rules' view of the journey before a change.
fn context_of(
    journey: JourneyId,
    doc: &JourneyDocument,
    principal: &Principal,
) -> Result<JourneyContext, CheckError> {
    let creating = doc.heads().is_empty();
    Ok(JourneyContext {
        creating,
        stage: if creating {
            None
        } else {
            Some(doc.stage().map_err(corrupt(journey))?)
        },
        on_crew: !creating && doc.is_on_crew(principal.user).map_err(corrupt(journey))?,
    })
}

/// Whether a just-created journey names the creator's tenant.
fn created_in_tenant(doc: &JourneyDocument, principal: &Principal) -> bool {
    matches!(doc.header(), Ok((client, _, _)) if client == principal.tenant)
}

/// Reasons that need no document: a change attributed to someone else, or built on
/// a change rejected in this push.
fn refused_before_applying(
    change: &Change,
    principal: &Principal,
    rejected: &HashSet<ChangeHash>,
) -> Option<String> {
    if let Some(dep) = change.deps().iter().find(|dep| rejected.contains(dep)) {
        return Some(format!("builds on the rejected change {dep}"));
    }
    let origin = change.message().and_then(ChangeMessage::parse);
    match origin {
        None => Some("the change names no author (not written by a crewsync app)".into()),
        Some(message) if message.origin.user_id != principal.user => Some(format!(
            "the change is attributed to user {}, not to the signed-in user",
            message.origin.user_id
        )),
        Some(message) if message.origin.device_id != principal.device => Some(format!(
            "the change is attributed to device {}, not to the signed-in device",
            message.origin.device_id
        )),
        Some(_) => None,
    }
}

/// Applies one change to `doc` and decides on it from what it touched (returned
/// too, for the audit trail).
fn judge(
    journey: JourneyId,
    doc: &mut JourneyDocument,
    change: &Change,
    principal: &Principal,
    table: &PermissionTable,
) -> Result<(Verdict, Vec<Touch>), CheckError> {
    let before = doc.heads();
    let creating = before.is_empty();
    let context = context_of(journey, doc, principal)?;
    doc.apply_changes(vec![change.clone()])
        .map_err(corrupt(journey))?;
    if !doc.has_change(&change.hash()) {
        return Ok((Verdict::Deferred, Vec::new()));
    }
    // What the author did, from the change's own dependencies: the difference
    // on our copy can hide a write (one that loses a concurrent conflict shows
    // nothing), and a hidden write to an office field would slip through.
    let touches = touches_between(doc.automerge(), change.deps(), &[change.hash()]);
    if creating {
        // A journey is created inside the creator's own tenant, at one of its
        // locations' ids as the document names it.
        match doc.header() {
            Ok((client, _, _)) if client == principal.tenant => {}
            Ok((client, _, _)) => {
                let reason =
                    format!("the journey belongs to tenant {client}, not to the signed-in user's");
                return Ok((Verdict::Rejected(reason), touches));
            }
            Err(e) => return Ok((Verdict::Rejected(format!("not a journey: {e}")), touches)),
        }
    }
    let verdict = match policy::check_all(principal.role, table, &context, &touches) {
        Ok(()) => Verdict::Accepted,
        Err(Denial::AfterAudit) => Verdict::AfterAudit,
        Err(denial) => Verdict::Rejected(denial.to_string()),
    };
    Ok((verdict, touches))
}

/// Screens a sync request: its changes are checked; refused ones are quarantined
/// (durably, before the device is told) and returned as rejections; deferred ones
/// leave the request (not acknowledged: the device sends them again). What remains
/// — accepted changes, and entries that are not automerge at all, which the exchange
/// rejects with its own reason — goes on to the exchange. A pushed document is
/// unpacked like the exchange does (`sync::unpack`), so its changes are judged one
/// by one; it goes on whole only if every one of them is accepted, otherwise its
/// accepted changes go on one by one. Also returns the audit facts of the accepted
/// changes, for the exchange to append with them; refused ones are audited as
/// they are quarantined.
pub async fn screen(
    storage: &Arc<dyn Storage>,
    tenant: &str,
    principal: &Principal,
    table: &PermissionTable,
    mut request: SyncRequest,
) -> Result<Screened, CheckError> {
    /// A pushed entry and the hashes of the changes it holds.
    struct Entry {
        wire: WireChange,
        hashes: Vec<ChangeHash>,
    }
    let mut undecodable = Vec::new();
    let mut entries = Vec::new();
    let mut decoded = Vec::new();
    for change in std::mem::take(&mut request.changes) {
        match crate::sync::unpack(change.bytes.clone()) {
            Ok(unpacked) => {
                let hashes = unpacked.changes.iter().map(Change::hash).collect();
                decoded.extend(unpacked.changes.into_iter().map(|c| (change.journey, c)));
                entries.push(Entry {
                    wire: change,
                    hashes,
                });
            }
            Err(_) => undecodable.push(change),
        }
    }
    let checked = check_push(storage, tenant, principal, table, decoded).await?;
    let by_hash: HashMap<ChangeHash, &Checked> =
        checked.iter().map(|c| (c.change.hash(), c)).collect();
    let now = chrono::Utc::now().timestamp_millis();
    let mut quarantined = Vec::new();
    let mut rejected = Vec::new();
    let mut facts = ChangeFacts::default();
    for item in &checked {
        let audit = ChangeAudit::screened(&item.change, principal, item.location, &item.touched);
        let (kind, reason) = match &item.verdict {
            Verdict::Accepted => {
                facts.insert(item.change.hash(), audit);
                continue;
            }
            Verdict::Deferred => continue,
            Verdict::Rejected(reason) => (QuarantineKind::Rejected, reason.clone()),
            Verdict::AfterAudit => (
                QuarantineKind::AfterAudit,
                "the journey was audited: held for review".to_owned(),
            ),
        };
        let hash = item.change.hash().as_ref().to_vec();
        rejected.push(RejectedChange {
            hash: hash.clone(),
            reason: reason.clone(),
        });
        let mut audit = audit;
        if let Some(diff) = audit.diff.as_object_mut() {
            diff.insert(
                "reason".to_owned(),
                serde_json::Value::String(reason.clone()),
            );
        }
        quarantined.push(Refused {
            change: Quarantined {
                journey: item.journey,
                hash,
                kind,
                reason,
                user: principal.user,
                device: principal.device,
                bytes: item.change.raw_bytes().to_vec(),
                received_at: now,
            },
            audit,
        });
    }
    storage.quarantine(tenant, &quarantined).await?;

    request.changes = undecodable;
    for entry in entries {
        let accepted: Vec<&Checked> = entry
            .hashes
            .iter()
            .filter_map(|hash| by_hash.get(hash).copied())
            .filter(|c| c.verdict == Verdict::Accepted)
            .collect();
        if accepted.len() == entry.hashes.len() {
            request.changes.push(entry.wire);
        } else {
            request
                .changes
                .extend(accepted.into_iter().map(|c| WireChange {
                    journey: c.journey,
                    bytes: c.change.raw_bytes().to_vec(),
                }));
        }
    }
    let rescope = checked
        .iter()
        .filter(|c| c.verdict == Verdict::Accepted && c.moves_scope)
        .map(|c| c.journey)
        .collect();
    Ok(Screened {
        request,
        rejected,
        facts,
        rescope,
    })
}

/// A screened request: what goes on to the exchange, and what was refused.
#[derive(Debug)]
pub struct Screened {
    pub request: SyncRequest,
    pub rejected: Vec<RejectedChange>,
    /// The audit facts of the accepted changes, appended with them.
    pub facts: ChangeFacts,
    /// Journeys whose accepted changes may change who sees them: re-index them
    /// once the changes are durable (`scope::reindex`).
    pub rescope: BTreeSet<JourneyId>,
}
