//! A journey as one automerge document: creation, actions, remote changes, and the
//! views the app reads. Pure: no SQLite, no I/O — the store persists what this returns.
//!
//! Merge semantics (ARCHITECTURE.md, "Merge rules"), all by construction of the layout
//! in [`schema`]:
//! - entries, notes, GPS batches and media refs live in maps keyed by fresh UUIDs, so
//!   concurrent additions never touch the same key and never conflict;
//! - the stage is the maximum of a grow-only set of reached stages, so a merge never
//!   moves it backwards;
//! - a scalar or a whole object written concurrently keeps every value: automerge
//!   picks one deterministically and the others stay readable through `get_all`
//!   ([`JourneyDocument::values_at`]).

pub mod actions;
pub mod compare;
pub mod conflicts;
pub mod evidence;
pub mod gps;
pub mod history;
pub mod json;
pub mod origin;
pub mod schema;
pub mod touches;

use std::collections::BTreeMap;

use automerge::transaction::CommitOptions;
use automerge::{ActorId, Automerge, Change, ChangeHash, ObjId, ROOT, ReadDoc};
use chrono::NaiveDate;

use self::actions::JourneyAction;
use self::origin::ChangeOrigin;
use self::schema::{GPS, JourneyDoc, SCHEMA_VERSION, StepDoc};
use crate::error::{Error, Result};
use crate::ids::JourneyId;
use crate::model::{
    Activity, CrewMember, GpsPoint, Journey, NewJourney, Stage, StageReached, Stamp, Step,
    StepNumber, StepStatus, Timestamp,
};

/// One journey's automerge document, bound to this device's actor id.
#[derive(Debug)]
pub struct JourneyDocument {
    id: JourneyId,
    doc: Automerge,
}

/// The counts and fields the journey list shows, read without hydrating the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryFields {
    pub stage: Stage,
    pub truck_number: Option<String>,
    pub crew: Vec<(crate::ids::UserId, crate::model::Role)>,
    pub entry_count: u64,
    pub photo_count: u64,
    pub signature_count: u64,
    pub note_count: u64,
    pub gps_point_count: u64,
}

impl JourneyDocument {
    /// Creates a journey: its first change builds the whole layout, so every later
    /// change (on any device) writes into the same objects.
    pub fn create(
        new: &NewJourney,
        timezone: &str,
        origin: &ChangeOrigin,
        at: Timestamp,
        actor: ActorId,
    ) -> Result<(Self, Change)> {
        let id = new.id.unwrap_or_default();
        let created = Stamp {
            by: origin.user_id,
            at,
        };
        let steps = StepNumber::ALL
            .iter()
            .map(|number| {
                let step = StepDoc {
                    number: number.get(),
                    name: number.default_name().to_owned(),
                    requires_approval: new.steps_requiring_approval.contains(number),
                    started: None,
                    completed: None,
                    approval: None,
                    activities: BTreeMap::new(),
                };
                (number.to_string(), step)
            })
            .collect();
        let initial = JourneyDoc {
            schema: SCHEMA_VERSION,
            id,
            client_id: new.client_id,
            location_id: new.location_id,
            timezone: timezone.to_owned(),
            date: new.date.format("%Y-%m-%d").to_string(),
            truck_number: new.truck_number.clone(),
            move_source_id: new.move_source_id,
            start_time: None,
            end_time: None,
            created: created.clone(),
            stages: BTreeMap::from([(Stage::MorningPrep.to_string(), created)]),
            steps,
            crew: BTreeMap::new(),
            notes: BTreeMap::new(),
            entries: BTreeMap::new(),
            gps: BTreeMap::new(),
            media: BTreeMap::new(),
            counts: Default::default(),
        };
        let mut doc = Automerge::new().with_actor(actor);
        doc.transact_with(
            |_| origin.commit_options("create_journey", at),
            |tx| autosurgeon::reconcile(tx, &initial),
        )
        .map_err(|failure| Error::from(failure.error))?;
        let change = doc
            .get_last_local_change()
            .ok_or_else(|| Error::CorruptDocument {
                journey: id.to_string(),
                reason: "creation produced no change".into(),
            })?;
        Ok((Self { id, doc }, change))
    }

    /// Rebuilds a document from a snapshot (if any) and the changes stored after it.
    /// Changes whose dependencies are missing are held by automerge, not dropped.
    pub fn load(
        id: JourneyId,
        snapshot: Option<&[u8]>,
        changes: Vec<Change>,
        actor: ActorId,
    ) -> Result<Self> {
        let mut doc = match snapshot {
            Some(bytes) => Automerge::load(bytes).map_err(|e| Error::CorruptDocument {
                journey: id.to_string(),
                reason: format!("snapshot does not load: {e}"),
            })?,
            None => Automerge::new(),
        };
        doc.apply_changes(changes)?;
        doc.set_actor(actor);
        Ok(Self { id, doc })
    }

    pub fn id(&self) -> JourneyId {
        self.id
    }

    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    pub fn automerge(&self) -> &Automerge {
        &self.doc
    }

    /// Applies one action as one change. Returns `None` when the action changed
    /// nothing (e.g. assigning a member already assigned in that role). On error the
    /// transaction is rolled back and the document is as before.
    pub fn apply(
        &mut self,
        action: &JourneyAction,
        origin: &ChangeOrigin,
        at: Timestamp,
    ) -> Result<Option<Change>> {
        let id = self.id;
        let success = self
            .doc
            .transact_with(
                |_| origin.commit_options(action.name(), at),
                |tx| actions::apply(tx, id, action, origin.user_id, at),
            )
            .map_err(|failure| failure.error)?;
        Ok(match success.hash {
            Some(hash) => {
                Some(
                    self.doc
                        .get_change_by_hash(&hash)
                        .ok_or_else(|| Error::CorruptDocument {
                            journey: id.to_string(),
                            reason: format!("committed change {hash} not found"),
                        })?,
                )
            }
            None => None,
        })
    }

    /// Applies changes from elsewhere in one batch (one call per change is ~26× slower).
    /// Re-delivered changes are no-ops; out-of-order ones wait for their dependencies.
    pub fn apply_changes(&mut self, changes: Vec<Change>) -> Result<()> {
        self.doc.apply_changes(changes)?;
        Ok(())
    }

    /// Changes this document has that a peer at `heads` lacks.
    pub fn changes_since(&self, heads: &[ChangeHash]) -> Vec<Change> {
        self.doc.get_changes(heads)
    }

    /// Whether automerge has applied the change (false for unknown or still-held ones).
    pub fn has_change(&self, hash: &ChangeHash) -> bool {
        // Metadata only: `get_change_by_hash` rebuilds the whole change (~50 µs).
        self.doc.get_change_meta_by_hash(hash).is_some()
    }

    /// A compact snapshot of everything applied so far.
    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }

    /// Every value a key holds: one normally, several after concurrent writes. The
    /// first is the one automerge shows; the rest are the concurrent losers.
    pub fn values_at(&self, path: &[&str]) -> Result<Vec<automerge::Value<'static>>> {
        let (parent, key) = self.resolve(path)?;
        Ok(self
            .doc
            .get_all(&parent, key)?
            .into_iter()
            .rev() // automerge lists the winner last
            .map(|(value, _)| value.into_owned())
            .collect())
    }

    fn resolve<'p>(&self, path: &[&'p str]) -> Result<(ObjId, &'p str)> {
        let Some((key, parents)) = path.split_last() else {
            return Err(Error::InvalidInput("empty document path".into()));
        };
        let mut obj = ROOT;
        for part in parents {
            obj = schema::map_at(&self.doc, self.id, &obj, part)?;
        }
        Ok((obj, key))
    }

    /// The whole journey as the app reads it.
    pub fn view(&self) -> Result<Journey> {
        let doc: JourneyDoc = autosurgeon::hydrate(&self.doc).map_err(|e| self.corrupt(e))?;
        let date = self.date(&doc.date)?;
        let mut stage_history: Vec<StageReached> = doc
            .stages
            .iter()
            .filter_map(|(name, reached)| {
                name.parse::<Stage>().ok().map(|stage| StageReached {
                    stage,
                    reached: reached.clone(),
                })
            })
            .collect();
        stage_history.sort_by_key(|s| s.stage);
        let stage = stage_history.last().map_or(Stage::MorningPrep, |s| s.stage);
        let steps = doc
            .steps
            .into_values()
            .map(step_view)
            .collect::<Result<Vec<_>>>()?;
        let gps_point_count = doc.gps.values().map(|b| b.count).sum();
        let last_gps = match doc.gps.values().max_by_key(|b| b.last_at) {
            Some(batch) => gps::decode(self.id, &batch.points)?.last().copied(),
            None => None,
        };
        Ok(Journey {
            id: doc.id,
            client_id: doc.client_id,
            location_id: doc.location_id,
            timezone: doc.timezone,
            date,
            stage,
            stage_history,
            truck_number: doc.truck_number,
            move_source_id: doc.move_source_id,
            start_time: doc.start_time,
            end_time: doc.end_time,
            created: doc.created,
            steps,
            crew: doc
                .crew
                .into_iter()
                .filter_map(|(user, assignment)| {
                    Some(CrewMember {
                        user_id: user.parse().ok()?,
                        role: assignment.role,
                        assigned: assignment.assigned,
                    })
                })
                .collect(),
            notes: doc.notes.into_values().collect(),
            entries: doc.entries.into_values().collect(),
            gps_point_count,
            last_gps,
            media: doc.media.into_values().collect(),
        })
    }

    /// The whole GPS track in time order.
    pub fn gps_track(&self) -> Result<Vec<GpsPoint>> {
        let batches: BTreeMap<String, schema::GpsBatch> =
            schema::read(&self.doc, self.id, &ROOT, GPS)?;
        let mut points = Vec::new();
        for batch in batches.values() {
            points.extend(gps::decode(self.id, &batch.points)?);
        }
        points.sort_by_key(|p| p.at);
        Ok(points)
    }

    /// What the journey list needs, read from a few keys and the counters (no full
    /// hydration, nothing proportional to the journey's size), after every action and
    /// every merge.
    pub fn summary_fields(&self) -> Result<SummaryFields> {
        let doc = &self.doc;
        let stage = actions::current_stage(doc, self.id)?;
        let truck_number: Option<String> =
            schema::read_optional(doc, self.id, &ROOT, "truck_number")?;
        let crew_map: BTreeMap<String, crate::model::CrewAssignment> =
            schema::read(doc, self.id, &ROOT, schema::CREW)?;
        let crew = crew_map
            .into_iter()
            .filter_map(|(user, a)| Some((user.parse().ok()?, a.role)))
            .collect();
        let counts: schema::Counts = schema::read(doc, self.id, &ROOT, schema::COUNTS)?;
        let count = |c: &autosurgeon::Counter| c.value().max(0) as u64;
        Ok(SummaryFields {
            stage,
            truck_number,
            crew,
            entry_count: count(&counts.entries),
            photo_count: count(&counts.photos),
            signature_count: count(&counts.signatures),
            note_count: count(&counts.notes),
            gps_point_count: count(&counts.gps_points),
        })
    }

    /// What `action` would touch if applied now. Like `JourneyAction::touches`, but
    /// reads the document where the answer depends on it (whether a media
    /// reference is sealed evidence).
    pub fn touches_of(&self, action: &JourneyAction) -> Result<Vec<crate::policy::Touch>> {
        match action {
            JourneyAction::RemoveMedia { media } => {
                let doc: JourneyDoc =
                    autosurgeon::hydrate(&self.doc).map_err(|e| self.corrupt(e))?;
                Ok(vec![crate::policy::Touch::RemoveMedia {
                    sealed: evidence::sealed(&doc, &media.to_string()),
                }])
            }
            other => Ok(other.touches()),
        }
    }

    /// The journey location's IANA timezone (its day and EXIF times are read in it).
    pub fn timezone(&self) -> Result<String> {
        schema::read(&self.doc, self.id, &ROOT, "timezone")
    }

    /// The furthest stage reached.
    pub fn stage(&self) -> Result<Stage> {
        actions::current_stage(&self.doc, self.id)
    }

    /// Whether `user` is on the journey's crew.
    pub fn is_on_crew(&self, user: crate::ids::UserId) -> Result<bool> {
        let crew = schema::root_map(&self.doc, self.id, schema::CREW)?;
        Ok(self.doc.get(&crew, user.to_string())?.is_some())
    }

    /// The users on the journey's crew (who receives it on their devices).
    pub fn crew_ids(&self) -> Result<Vec<crate::ids::UserId>> {
        let crew = schema::root_map(&self.doc, self.id, schema::CREW)?;
        self.doc
            .keys(&crew)
            .map(|key| {
                key.parse().map_err(|_| Error::CorruptDocument {
                    journey: self.id.to_string(),
                    reason: format!("crew key {key:?} is not a user id"),
                })
            })
            .collect()
    }

    /// The journey's identity fields, needed to file it in the summary table.
    pub fn header(&self) -> Result<(crate::ids::ClientId, crate::ids::LocationId, NaiveDate)> {
        let client = schema::read(&self.doc, self.id, &ROOT, "client_id")?;
        let location = schema::read(&self.doc, self.id, &ROOT, "location_id")?;
        let date: String = schema::read(&self.doc, self.id, &ROOT, "date")?;
        Ok((client, location, self.date(&date)?))
    }

    fn date(&self, value: &str) -> Result<NaiveDate> {
        NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|e| Error::CorruptDocument {
            journey: self.id.to_string(),
            reason: format!("date {value:?}: {e}"),
        })
    }

    fn corrupt(&self, e: autosurgeon::HydrateError) -> Error {
        Error::CorruptDocument {
            journey: self.id.to_string(),
            reason: e.to_string(),
        }
    }
}

fn step_view(step: StepDoc) -> Result<Step> {
    let number = StepNumber::new(step.number)?;
    let status = match (&step.started, &step.completed) {
        (_, Some(_)) => StepStatus::Completed,
        (Some(_), None) => StepStatus::InProgress,
        (None, None) => StepStatus::Pending,
    };
    let mut activities: Vec<Activity> = step
        .activities
        .into_values()
        .map(|a| {
            let mut checklist: Vec<_> = a.checklist.into_iter().collect();
            checklist.sort_by_key(|(_, item)| item.position);
            Activity {
                id: a.id,
                kind: a.kind,
                title: a.title,
                created: a.created,
                checklist,
                media_id: a.media_id,
                text: a.text,
            }
        })
        .collect();
    activities.sort_by_key(|a| a.id);
    Ok(Step {
        number,
        name: step.name,
        status,
        requires_approval: step.requires_approval,
        started: step.started,
        completed: step.completed,
        approval: step.approval,
        activities,
    })
}

/// Commit options carrying who made a change; see [`origin`].
impl ChangeOrigin {
    fn commit_options(&self, action: &str, at: Timestamp) -> CommitOptions {
        CommitOptions::default()
            .with_message(self.message(action))
            .with_time(at.millis() / 1000)
    }
}
