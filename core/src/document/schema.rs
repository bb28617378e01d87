//! The layout of a journey document, and the two ways we write into it.
//!
//! ```text
//! ROOT
//! ├─ schema, id, client_id, location_id, timezone, date      set once at creation
//! ├─ truck_number, move_source_id, start_time, end_time      scalars (last writer wins, all kept)
//! ├─ created: Stamp
//! ├─ stages   { STAGE_NAME → Stamp }                          a grow-only set: stage = max key
//! ├─ steps    { "1".."4" → { number, name, requires_approval,
//! │                          started, completed, approval,    each a whole object, set once
//! │                          activities { id → Activity } } }
//! ├─ crew     { user id → CrewAssignment }                    put / delete per member
//! ├─ notes    { note id → Note }                              append-only
//! ├─ entries  { entry id → Entry }                            append-only
//! ├─ gps      { batch id → GpsBatch }                         append-only, points packed
//! └─ media    { media id → MediaRef }                         append-only
//! ```
//!
//! **Why writes are targeted.** Putting a value equal to the current winner of a
//! conflicted key makes automerge delete the losing values (it resolves the conflict).
//! Reconciling a whole hydrated journey back into the document would therefore erase
//! every conflict in fields the action never touched. So actions never reconcile the
//! whole document: they write exactly the keys they change, and anything that must
//! win or lose as a unit (a stamp, a checklist tick, an entry) is written as a fresh
//! map object with [`put_new`], so concurrent writers leave complete, competing values.

use std::collections::BTreeMap;

use automerge::{ObjId, ObjType, ROOT};
use autosurgeon::{Counter, Doc, Hydrate, ReadDoc, Reconcile, bytes::ByteVec};

use crate::error::{Error, Result};
use crate::ids::{ActivityId, ClientId, JourneyId, LocationId, MoveSourceId, UserId};
use crate::model::{
    ActivityKind, Approval, ChecklistItem, CrewAssignment, Entry, MediaRef, Note, Stamp, Timestamp,
};

/// Bumped when the document layout changes incompatibly.
pub const SCHEMA_VERSION: u64 = 1;

pub const STAGES: &str = "stages";
pub const STEPS: &str = "steps";
pub const CREW: &str = "crew";
pub const NOTES: &str = "notes";
pub const ENTRIES: &str = "entries";
pub const GPS: &str = "gps";
pub const MEDIA: &str = "media";
pub const ACTIVITIES: &str = "activities";
pub const CHECKLIST: &str = "checklist";
pub const COUNTS: &str = "counts";

/// The whole document, as autosurgeon hydrates it for reading.
#[derive(Debug, Clone, Reconcile, Hydrate)]
pub struct JourneyDoc {
    pub schema: u64,
    pub id: JourneyId,
    pub client_id: ClientId,
    pub location_id: LocationId,
    pub timezone: String,
    /// The journey's day in the location's timezone, `YYYY-MM-DD`.
    pub date: String,
    pub truck_number: Option<String>,
    pub move_source_id: Option<MoveSourceId>,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    pub created: Stamp,
    pub stages: BTreeMap<String, Stamp>,
    pub steps: BTreeMap<String, StepDoc>,
    pub crew: BTreeMap<String, CrewAssignment>,
    pub notes: BTreeMap<String, Note>,
    pub entries: BTreeMap<String, Entry>,
    pub gps: BTreeMap<String, GpsBatch>,
    pub media: BTreeMap<String, MediaRef>,
    pub counts: Counts,
}

/// Running totals, incremented in the same change as what they count.
#[derive(Debug, Clone, Default, Reconcile, Hydrate)]
pub struct Counts {
    pub entries: Counter,
    pub photos: Counter,
    pub signatures: Counter,
    pub notes: Counter,
    pub gps_points: Counter,
}

#[derive(Debug, Clone, Reconcile, Hydrate)]
pub struct StepDoc {
    pub number: u8,
    pub name: String,
    pub requires_approval: bool,
    pub started: Option<Stamp>,
    pub completed: Option<Stamp>,
    pub approval: Option<Approval>,
    pub activities: BTreeMap<String, ActivityDoc>,
}

#[derive(Debug, Clone, Reconcile, Hydrate)]
pub struct ActivityDoc {
    pub id: ActivityId,
    pub kind: ActivityKind,
    pub title: Option<String>,
    pub created: Stamp,
    pub checklist: BTreeMap<String, ChecklistItem>,
    pub media_id: Option<crate::ids::MediaId>,
    pub text: Option<String>,
}

/// A batch of GPS points: one map object per batch instead of one per point keeps a
/// day's track (≈4,300 points) from costing 4,300 changes (see `gps` and the bench).
#[derive(Debug, Clone, Reconcile, Hydrate)]
pub struct GpsBatch {
    pub author: UserId,
    pub count: u64,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
    /// MessagePack of `Vec<GpsPoint>` (see `gps::encode`).
    pub points: ByteVec,
}

/// The id of the map object at `parent[key]`, or a clear error naming the journey.
pub fn map_at<D: ReadDoc>(doc: &D, journey: JourneyId, parent: &ObjId, key: &str) -> Result<ObjId> {
    match doc.get(parent, key)? {
        Some((automerge::Value::Object(ObjType::Map), id)) => Ok(id),
        _ => Err(Error::CorruptDocument {
            journey: journey.to_string(),
            reason: format!("missing map {key:?}"),
        }),
    }
}

/// The map of the root collection `key` (entries, crew, …).
pub fn root_map<D: ReadDoc>(doc: &D, journey: JourneyId, key: &str) -> Result<ObjId> {
    map_at(doc, journey, &ROOT, key)
}

/// Writes `value` as a brand-new map object at `parent[key]`, replacing whatever was
/// there. Concurrent `put_new`s to one key conflict as whole objects.
pub fn put_new<T: Doc, R: Reconcile>(
    tx: &mut T,
    parent: &ObjId,
    key: &str,
    value: &R,
) -> Result<()> {
    tx.put_object(parent, key, ObjType::Map)?;
    autosurgeon::reconcile_prop(tx, parent, key, value)?;
    Ok(())
}

/// Whether `parent[key]` holds a value (a stored null counts as absent).
pub fn is_set<D: ReadDoc>(doc: &D, parent: &ObjId, key: &str) -> Result<bool> {
    Ok(match doc.get(parent, key)? {
        None => false,
        Some((automerge::Value::Scalar(value), _)) => {
            !matches!(value.as_ref(), automerge::ScalarValue::Null)
        }
        Some(_) => true,
    })
}

/// Hydrates `parent[key]` if it is set, `None` if it is absent or null.
pub fn read_optional<D: ReadDoc, H: Hydrate>(
    doc: &D,
    journey: JourneyId,
    parent: &ObjId,
    key: &str,
) -> Result<Option<H>> {
    if is_set(doc, parent, key)? {
        read(doc, journey, parent, key).map(Some)
    } else {
        Ok(None)
    }
}

/// Hydrates `parent[key]` as `H`, with a document error instead of a panic on a bad shape.
pub fn read<D, H>(doc: &D, journey: JourneyId, parent: &ObjId, key: &str) -> Result<H>
where
    D: ReadDoc,
    H: Hydrate,
{
    autosurgeon::hydrate_prop(doc, parent, key).map_err(|e| Error::CorruptDocument {
        journey: journey.to_string(),
        reason: format!("{key}: {e}"),
    })
}
