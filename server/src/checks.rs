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

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use automerge::{ActorId, Change, ChangeHash};
use crewsync_core::document::JourneyDocument;
use crewsync_core::document::touches::touches_between;
use crewsync_core::ids::JourneyId;
use crewsync_core::policy::{self, Denial, JourneyContext, PermissionTable};
use crewsync_core::{ChangeMessage, Error as CoreError};

use crate::auth::http::Principal;
use crate::storage::{Storage, StorageError};

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

/// A pushed change and its verdict.
#[derive(Debug, Clone)]
pub struct Checked {
    pub journey: JourneyId,
    pub change: Change,
    pub verdict: Verdict,
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
fn load(
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
    let mut accepted: Vec<Change> = Vec::new();
    let mut rejected: HashSet<ChangeHash> = HashSet::new();
    let mut out = Vec::with_capacity(changes.len());
    for change in changes {
        let hash = change.hash();
        let verdict = if doc.has_change(&hash) {
            // Already in the accepted journey (a re-send): acknowledge again.
            Verdict::Accepted
        } else if let Some(reason) = refused_before_applying(&change, principal, &rejected) {
            Verdict::Rejected(reason)
        } else {
            judge(journey, &mut doc, &change, principal, table)?
        };
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
        });
    }
    Ok(out)
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

/// Applies one change to `doc` and decides on it from what it touched.
fn judge(
    journey: JourneyId,
    doc: &mut JourneyDocument,
    change: &Change,
    principal: &Principal,
    table: &PermissionTable,
) -> Result<Verdict, CheckError> {
    let before = doc.heads();
    let creating = before.is_empty();
    let context = JourneyContext {
        creating,
        stage: if creating {
            None
        } else {
            Some(doc.stage().map_err(corrupt(journey))?)
        },
        on_crew: !creating && doc.is_on_crew(principal.user).map_err(corrupt(journey))?,
    };
    doc.apply_changes(vec![change.clone()])
        .map_err(corrupt(journey))?;
    if !doc.has_change(&change.hash()) {
        return Ok(Verdict::Deferred);
    }
    let touches = touches_between(doc.automerge(), &before, &doc.heads());
    if creating {
        // A journey is created inside the creator's own tenant, at one of its
        // locations' ids as the document names it.
        match doc.header() {
            Ok((client, _, _)) if client == principal.tenant => {}
            Ok((client, _, _)) => {
                return Ok(Verdict::Rejected(format!(
                    "the journey belongs to tenant {client}, not to the signed-in user's"
                )));
            }
            Err(e) => return Ok(Verdict::Rejected(format!("not a journey: {e}"))),
        }
    }
    Ok(
        match policy::check_all(principal.role, table, &context, &touches) {
            Ok(()) => Verdict::Accepted,
            Err(Denial::AfterAudit) => Verdict::AfterAudit,
            Err(denial) => Verdict::Rejected(denial.to_string()),
        },
    )
}
