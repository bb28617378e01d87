//! Crew and dispatcher actions on one journey document.
//!
//! Each action is validated against the document's current state and then written as
//! targeted operations (see `schema`). An invalid action returns an error before it
//! writes anything, and the caller's automerge transaction is rolled back, so the
//! document is unchanged.

use automerge::{ObjId, ROOT};
use autosurgeon::{Doc, bytes::ByteVec, reconcile_prop};
use serde::{Deserialize, Serialize};

use super::gps;
use super::schema::{
    ACTIVITIES, ActivityDoc, CHECKLIST, COUNTS, CREW, ENTRIES, GPS, GpsBatch, MEDIA, NOTES, STAGES,
    STEPS, is_set, map_at, put_new, read, read_optional, root_map,
};
use crate::error::{Error, Result};
use crate::ids::{ActivityId, EntryId, JourneyId, MediaId, UserId};
use crate::model::{
    ActivityKind, Approval, ChecklistItem, CrewAssignment, Entry, EntryKind, GpsPoint, MediaKind,
    MediaRef, NewEntry, Note, Role, Stage, Stamp, StepNumber, Timestamp,
};
use crate::policy::Touch;

/// Longest note, entry text or title accepted (a crew note, not a document).
pub const MAX_TEXT_LEN: usize = 10_000;

/// Everything that can be done to a journey. Ids of things an action creates are
/// chosen by the caller, so the action is deterministic and the caller knows the id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JourneyAction {
    AdvanceStage {
        to: Stage,
    },
    StartStep {
        step: StepNumber,
    },
    CompleteStep {
        step: StepNumber,
    },
    ApproveStep {
        step: StepNumber,
        comment: Option<String>,
    },
    AddChecklist {
        step: StepNumber,
        activity: ActivityId,
        title: String,
        items: Vec<String>,
    },
    SetChecklistItem {
        step: StepNumber,
        activity: ActivityId,
        item: String,
        checked: bool,
    },
    AddActivity {
        step: StepNumber,
        activity: ActivityId,
        kind: ActivityKind,
        title: Option<String>,
        text: Option<String>,
        media_id: Option<crate::ids::MediaId>,
    },
    AddNote {
        note: EntryId,
        text: String,
    },
    AssignCrew {
        user: UserId,
        role: Role,
    },
    UnassignCrew {
        user: UserId,
    },
    SetTruckNumber {
        truck_number: Option<String>,
    },
    SetTimes {
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    },
    AddEntry {
        id: EntryId,
        entry: NewEntry,
    },
    AddGpsBatch {
        batch: EntryId,
        points: Vec<GpsPoint>,
    },
    AddMediaRef {
        media: MediaRef,
    },
    /// A captured photo, video or signature (or a refusal to sign): its reference
    /// and its PHOTO/VIDEO/SIGNATURE entry, in one change, so both arrive together.
    RecordMedia {
        media: MediaRef,
        entry: EntryId,
        tag: Option<String>,
        text: Option<String>,
    },
    /// Tombstones a media reference: it is marked removed, never deleted, and its
    /// bytes are kept. Crews may do this only until the media's step is sealed
    /// (`document::evidence`); an ADMIN always.
    RemoveMedia {
        media: MediaId,
    },
}

impl JourneyAction {
    /// A short stable name, recorded in each change's metadata.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AdvanceStage { .. } => "advance_stage",
            Self::StartStep { .. } => "start_step",
            Self::CompleteStep { .. } => "complete_step",
            Self::ApproveStep { .. } => "approve_step",
            Self::AddChecklist { .. } => "add_checklist",
            Self::SetChecklistItem { .. } => "set_checklist_item",
            Self::AddActivity { .. } => "add_activity",
            Self::AddNote { .. } => "add_note",
            Self::AssignCrew { .. } => "assign_crew",
            Self::UnassignCrew { .. } => "unassign_crew",
            Self::SetTruckNumber { .. } => "set_truck_number",
            Self::SetTimes { .. } => "set_times",
            Self::AddEntry { .. } => "add_entry",
            Self::AddGpsBatch { .. } => "add_gps_batch",
            Self::AddMediaRef { .. } => "add_media_ref",
            Self::RecordMedia { .. } => "record_media",
            Self::RemoveMedia { .. } => "remove_media",
        }
    }

    /// What the action's change does to the journey, as the policy sees it. The
    /// server derives the same from the change itself (`document::touches`); a test
    /// checks that the two agree for every action.
    pub fn touches(&self) -> Vec<Touch> {
        match self {
            Self::AdvanceStage { to } => vec![Touch::Stage(*to)],
            Self::StartStep { step } => vec![Touch::StepStart(*step)],
            Self::CompleteStep { step } => vec![Touch::StepComplete(*step)],
            Self::ApproveStep { step, .. } => vec![Touch::StepApprove(*step)],
            Self::AddChecklist { step, .. }
            | Self::SetChecklistItem { step, .. }
            | Self::AddActivity { step, .. } => vec![Touch::StepActivity(*step)],
            Self::AddNote { .. } => vec![Touch::Note, Touch::Counts],
            Self::AssignCrew { .. } | Self::UnassignCrew { .. } => vec![Touch::Crew],
            Self::SetTruckNumber { .. } => vec![Touch::TruckNumber],
            Self::SetTimes { .. } => vec![Touch::Times],
            Self::AddEntry { .. } => vec![Touch::Entry, Touch::Counts],
            Self::AddGpsBatch { .. } => vec![Touch::Gps, Touch::Counts],
            Self::AddMediaRef { .. } => vec![Touch::Media],
            Self::RecordMedia { .. } => vec![Touch::Entry, Touch::Media, Touch::Counts],
            // Whether the media is sealed depends on the document: the strictest
            // reading here; `JourneyDocument::touches_of` reads the document.
            Self::RemoveMedia { .. } => vec![Touch::RemoveMedia { sealed: true }],
        }
    }
}

/// Applies `action` by `user` at device time `at` inside an open transaction.
pub(super) fn apply<T: Doc>(
    tx: &mut T,
    journey: JourneyId,
    action: &JourneyAction,
    user: UserId,
    at: Timestamp,
) -> Result<()> {
    let stamp = Stamp { by: user, at };
    match action {
        JourneyAction::AdvanceStage { to } => {
            let current = current_stage(tx, journey)?;
            if *to <= current {
                return Err(Error::StageNotForward {
                    from: current,
                    to: *to,
                });
            }
            let stages = root_map(tx, journey, STAGES)?;
            put_new(tx, &stages, &to.to_string(), &stamp)
        }
        JourneyAction::StartStep { step } => {
            let step_obj = step_map(tx, journey, *step)?;
            if is_set(tx, &step_obj, "started")? {
                return Err(Error::StepAlreadyStarted(*step));
            }
            put_new(tx, &step_obj, "started", &stamp)
        }
        JourneyAction::CompleteStep { step } => {
            let step_obj = step_map(tx, journey, *step)?;
            if is_set(tx, &step_obj, "completed")? {
                return Err(Error::StepAlreadyCompleted(*step));
            }
            if !is_set(tx, &step_obj, "started")? {
                return Err(Error::StepNotStarted(*step));
            }
            put_new(tx, &step_obj, "completed", &stamp)
        }
        JourneyAction::ApproveStep { step, comment } => {
            let step_obj = step_map(tx, journey, *step)?;
            if is_set(tx, &step_obj, "approval")? {
                return Err(Error::StepAlreadyApproved(*step));
            }
            if !is_set(tx, &step_obj, "completed")? {
                return Err(Error::StepNotCompleted(*step));
            }
            if let Some(comment) = comment {
                check_text("approval comment", comment)?;
            }
            let approval = Approval {
                approved: stamp,
                comment: comment.clone(),
            };
            put_new(tx, &step_obj, "approval", &approval)
        }
        JourneyAction::AddChecklist {
            step,
            activity,
            title,
            items,
        } => {
            check_text("checklist title", title)?;
            if items.is_empty() {
                return Err(Error::InvalidInput(
                    "a checklist needs at least one item".into(),
                ));
            }
            let mut checklist = std::collections::BTreeMap::new();
            for (position, label) in items.iter().enumerate() {
                check_text("checklist item", label)?;
                let item = ChecklistItem {
                    label: label.clone(),
                    position: position as u64,
                    checked: false,
                    changed: None,
                };
                if checklist.insert(label.clone(), item).is_some() {
                    return Err(Error::InvalidInput(format!(
                        "checklist item {label:?} appears twice"
                    )));
                }
            }
            let doc = ActivityDoc {
                id: *activity,
                kind: ActivityKind::Checklist,
                title: Some(title.clone()),
                created: stamp,
                checklist,
                media_id: None,
                text: None,
            };
            add_activity(tx, journey, *step, &doc)
        }
        JourneyAction::SetChecklistItem {
            step,
            activity,
            item,
            checked,
        } => {
            let activity_obj = activity_map(tx, journey, *step, *activity)?;
            let kind: ActivityKind = read(tx, journey, &activity_obj, "kind")?;
            if kind != ActivityKind::Checklist {
                return Err(Error::NotAChecklist(activity.to_string()));
            }
            let checklist = map_at(tx, journey, &activity_obj, CHECKLIST)?;
            let existing: Option<ChecklistItem> = read_optional(tx, journey, &checklist, item)?;
            let Some(existing) = existing else {
                return Err(Error::UnknownChecklistItem {
                    activity: activity.to_string(),
                    item: item.clone(),
                });
            };
            let ticked = ChecklistItem {
                checked: *checked,
                changed: Some(stamp),
                ..existing
            };
            put_new(tx, &checklist, item, &ticked)
        }
        JourneyAction::AddActivity {
            step,
            activity,
            kind,
            title,
            text,
            media_id,
        } => {
            if *kind == ActivityKind::Checklist {
                return Err(Error::InvalidInput(
                    "use AddChecklist to add a checklist activity".into(),
                ));
            }
            for value in title.iter().chain(text.iter()) {
                check_text("activity text", value)?;
            }
            let doc = ActivityDoc {
                id: *activity,
                kind: *kind,
                title: title.clone(),
                created: stamp,
                checklist: Default::default(),
                media_id: *media_id,
                text: text.clone(),
            };
            add_activity(tx, journey, *step, &doc)
        }
        JourneyAction::AddNote { note, text } => {
            check_text("note", text)?;
            let notes = root_map(tx, journey, NOTES)?;
            put_new_unique(
                tx,
                journey,
                &notes,
                &note.to_string(),
                &Note {
                    text: text.clone(),
                    written: stamp,
                },
            )?;
            count(tx, journey, "notes", 1)
        }
        JourneyAction::AssignCrew { user, role } => {
            let crew = root_map(tx, journey, CREW)?;
            let key = user.to_string();
            let existing: Option<CrewAssignment> = read_optional(tx, journey, &crew, &key)?;
            if existing.is_some_and(|e| e.role == *role) {
                return Ok(()); // already assigned in this role: nothing to change
            }
            put_new(
                tx,
                &crew,
                &key,
                &CrewAssignment {
                    role: *role,
                    assigned: stamp,
                },
            )
        }
        JourneyAction::UnassignCrew { user } => {
            let crew = root_map(tx, journey, CREW)?;
            let key = user.to_string();
            if !is_set(tx, &crew, &key)? {
                return Err(Error::NotAssigned(key));
            }
            tx.delete(&crew, key.as_str())?;
            Ok(())
        }
        JourneyAction::SetTruckNumber { truck_number } => {
            if let Some(truck) = truck_number {
                check_text("truck number", truck)?;
            }
            reconcile_prop(tx, ROOT, "truck_number", truck_number)?;
            Ok(())
        }
        JourneyAction::SetTimes { start, end } => {
            if let (Some(start), Some(end)) = (start, end)
                && end < start
            {
                return Err(Error::InvalidInput(format!(
                    "end time {end} is before start time {start}"
                )));
            }
            if let Some(start) = start {
                reconcile_prop(tx, ROOT, "start_time", start)?;
            }
            if let Some(end) = end {
                reconcile_prop(tx, ROOT, "end_time", end)?;
            }
            Ok(())
        }
        JourneyAction::AddEntry { id, entry } => {
            for value in entry.text.iter().chain(entry.tag.iter()) {
                check_text("entry text", value)?;
            }
            if let Some(location) = &entry.location {
                location.validate()?;
            }
            let stored = Entry {
                id: *id,
                kind: entry.kind,
                tag: entry.tag.clone(),
                author: user,
                device_time: at,
                text: entry.text.clone(),
                location: entry.location,
                stage: entry.stage,
                step: entry.step.map(StepNumber::get),
                media_id: entry.media_id,
            };
            let entries = root_map(tx, journey, ENTRIES)?;
            put_new_unique(tx, journey, &entries, &id.to_string(), &stored)?;
            count(tx, journey, "entries", 1)?;
            match entry.kind {
                EntryKind::Photo => count(tx, journey, "photos", 1),
                EntryKind::Signature => count(tx, journey, "signatures", 1),
                _ => Ok(()),
            }
        }
        JourneyAction::AddGpsBatch { batch, points } => {
            let (Some(first), Some(last)) = (points.first(), points.last()) else {
                return Err(Error::InvalidInput(
                    "a GPS batch needs at least one point".into(),
                ));
            };
            for point in points {
                point.validate()?;
            }
            let stored = GpsBatch {
                author: user,
                count: points.len() as u64,
                first_at: first.at,
                last_at: last.at,
                points: ByteVec::from(gps::encode(points)?),
            };
            let gps_map = root_map(tx, journey, GPS)?;
            put_new_unique(tx, journey, &gps_map, &batch.to_string(), &stored)?;
            count(tx, journey, "gps_points", points.len() as i64)
        }
        JourneyAction::AddMediaRef { media } => {
            let media_map = root_map(tx, journey, MEDIA)?;
            put_new_unique(tx, journey, &media_map, &media.id.to_string(), media)
        }
        JourneyAction::RecordMedia {
            media,
            entry,
            tag,
            text,
        } => {
            for value in text.iter().chain(tag.iter()) {
                check_text("entry text", value)?;
            }
            for point in media.gps.iter().chain(media.exif_gps.iter()) {
                point.validate()?;
            }
            if media.removed.is_some() {
                return Err(Error::InvalidInput(
                    "new media cannot be recorded as removed".into(),
                ));
            }
            let stored_media = MediaRef {
                entry: Some(*entry),
                ..media.clone()
            };
            let media_map = root_map(tx, journey, MEDIA)?;
            put_new_unique(
                tx,
                journey,
                &media_map,
                &media.id.to_string(),
                &stored_media,
            )?;
            let kind = match media.kind {
                MediaKind::Photo => EntryKind::Photo,
                MediaKind::Video => EntryKind::Video,
                MediaKind::Signature => EntryKind::Signature,
            };
            let stored = Entry {
                id: *entry,
                kind,
                tag: tag.clone(),
                author: user,
                // The capture's device time, so the entry and its media agree.
                device_time: media.captured.at,
                text: text.clone(),
                location: media.gps,
                stage: None,
                step: media.step,
                media_id: Some(media.id),
            };
            let entries = root_map(tx, journey, ENTRIES)?;
            put_new_unique(tx, journey, &entries, &entry.to_string(), &stored)?;
            count(tx, journey, "entries", 1)?;
            let refused = media
                .signature
                .as_ref()
                .is_some_and(|s| s.refused.is_some());
            match kind {
                EntryKind::Photo => count(tx, journey, "photos", 1),
                EntryKind::Signature if !refused => count(tx, journey, "signatures", 1),
                _ => Ok(()),
            }
        }
        JourneyAction::RemoveMedia { media } => {
            let media_map = root_map(tx, journey, MEDIA)?;
            let key = media.to_string();
            let item = map_at(tx, journey, &media_map, &key)
                .map_err(|_| Error::UnknownMedia(key.clone()))?;
            if is_set(tx, &item, "removed")? {
                return Err(Error::InvalidInput(format!(
                    "media {key} is already removed"
                )));
            }
            put_new(tx, &item, "removed", &stamp)
        }
    }
}

/// The furthest stage reached: the largest key of the grow-only `stages` set. A merge
/// can only add keys, so the stage can never move backwards through a merge.
pub(super) fn current_stage<D: autosurgeon::ReadDoc>(doc: &D, journey: JourneyId) -> Result<Stage> {
    let stages = root_map(doc, journey, STAGES)?;
    let stage = doc
        .map_range(&stages, ..)
        .filter_map(|item| item.key.parse::<Stage>().ok())
        .max()
        .unwrap_or(Stage::MorningPrep);
    Ok(stage)
}

fn step_map<D: autosurgeon::ReadDoc>(
    doc: &D,
    journey: JourneyId,
    step: StepNumber,
) -> Result<ObjId> {
    let steps = root_map(doc, journey, STEPS)?;
    map_at(doc, journey, &steps, &step.to_string())
}

fn activity_map<D: autosurgeon::ReadDoc>(
    doc: &D,
    journey: JourneyId,
    step: StepNumber,
    activity: ActivityId,
) -> Result<ObjId> {
    let step_obj = step_map(doc, journey, step)?;
    let activities = map_at(doc, journey, &step_obj, ACTIVITIES)?;
    map_at(doc, journey, &activities, &activity.to_string()).map_err(|_| Error::UnknownActivity {
        step,
        activity: activity.to_string(),
    })
}

fn add_activity<T: Doc>(
    tx: &mut T,
    journey: JourneyId,
    step: StepNumber,
    activity: &ActivityDoc,
) -> Result<()> {
    let step_obj = step_map(tx, journey, step)?;
    let activities = map_at(tx, journey, &step_obj, ACTIVITIES)?;
    put_new_unique(tx, journey, &activities, &activity.id.to_string(), activity)
}

/// `put_new` for append-only collections: an id that is already present is refused,
/// so a replayed action cannot overwrite what it wrote the first time.
fn put_new_unique<T: Doc, R: autosurgeon::Reconcile>(
    tx: &mut T,
    journey: JourneyId,
    parent: &ObjId,
    key: &str,
    value: &R,
) -> Result<()> {
    if is_set(tx, parent, key)? {
        return Err(Error::InvalidInput(format!(
            "journey {journey} already has an item with id {key}"
        )));
    }
    put_new(tx, parent, key, value)
}

/// Adds to one of the journey's counters, in the same change as what it counts.
fn count<T: Doc>(tx: &mut T, journey: JourneyId, counter: &str, by: i64) -> Result<()> {
    let counts = root_map(tx, journey, COUNTS)?;
    tx.increment(&counts, counter, by)?;
    Ok(())
}

fn check_text(what: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::InvalidInput(format!("{what} is empty")));
    }
    if value.len() > MAX_TEXT_LEN {
        return Err(Error::InvalidInput(format!(
            "{what} is {} bytes; the limit is {MAX_TEXT_LEN}",
            value.len()
        )));
    }
    Ok(())
}
