//! Which fields of a journey were written concurrently, by whom, and which value
//! won and why.
//!
//! Automerge keeps every concurrent value of a key (`get_all`) but names writers
//! only by operation ids. Each of our changes carries its origin in its message
//! ([`ChangeMessage`]), so the op id of every value leads to the change that wrote
//! it, and from there to a user, role, device and device time.

use std::collections::HashMap;

use automerge::{ActorId, Automerge, ObjId, ObjType, Prop, ROOT, ReadDoc, Value};
use serde::Serialize;

use super::JourneyDocument;
use super::json::to_json;
use super::origin::{ChangeMessage, ChangeOrigin};
use crate::error::Result;

/// A field holding more than one value after concurrent writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldConflict {
    /// Keys from the document root (list indexes as decimal text).
    pub path: Vec<String>,
    /// What our layout and rules promise for this field.
    pub policy: FieldPolicy,
    /// Every value, the current one first.
    pub values: Vec<WrittenValue>,
    /// Why the current value is current, in words.
    pub why: String,
}

/// One of a conflicted field's values and who wrote it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WrittenValue {
    pub value: serde_json::Value,
    /// Automerge's id of the write: `counter@actor`.
    pub op: String,
    /// The hex hash of the change that made the write (`None` if automerge no
    /// longer knows it, which does not happen for documents we load whole).
    pub change: Option<String>,
    /// Who wrote it, from the change message (`None` for changes not ours).
    pub writer: Option<ChangeOrigin>,
    /// The action the writer took (`set_truck`, `tick_checklist`, …).
    pub action: Option<String>,
    /// The device clock at the write, milliseconds since the epoch. A device's
    /// clock can be wrong; it never decides the winner.
    pub device_time_ms: Option<i64>,
    pub current: bool,
}

/// The merge rule a field follows, by its place in the layout
/// (ARCHITECTURE.md, "Merge rules"; domain notes §7 for the per-field policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::Display)]
#[serde(rename_all = "snake_case")]
pub enum FieldPolicy {
    /// Truck number, crew: only DISPATCHER, MANAGER and ADMIN may write them, so
    /// the values that compete are all the office's.
    #[strum(to_string = "dispatcher wins: only the office writes this field")]
    DispatcherWins,
    /// Start and end times: the crew's device records them.
    #[strum(to_string = "device wins: the crew's recorded time")]
    DeviceWins,
    /// A step's start, completion or approval stamp: set once.
    #[strum(to_string = "set once per step: a later concurrent stamp is kept, not shown")]
    SetOnce,
    /// A checklist tick or other activity field.
    #[strum(to_string = "last device write, every value kept in history")]
    LastWrite,
    /// The stage: a grow-only set of reached stages, shown as the highest.
    #[strum(to_string = "forward only: the highest stage reached is shown")]
    ForwardOnly,
    /// Entries, notes, GPS batches, media: keyed by fresh ids.
    #[strum(to_string = "append: concurrent additions are all kept")]
    Append,
    #[strum(to_string = "automerge's rule")]
    Automerge,
}

impl FieldPolicy {
    /// The policy of the field at `path`.
    pub fn of(path: &[String]) -> Self {
        let keys: Vec<&str> = path.iter().map(String::as_str).collect();
        match keys.as_slice() {
            ["truck_number"] | ["crew", ..] => Self::DispatcherWins,
            ["start_time"] | ["end_time"] => Self::DeviceWins,
            ["steps", _, "started" | "completed" | "approval"] => Self::SetOnce,
            ["steps", _, "activities", ..] => Self::LastWrite,
            ["stages", ..] => Self::ForwardOnly,
            ["entries" | "notes" | "gps" | "media", ..] => Self::Append,
            _ => Self::Automerge,
        }
    }
}

impl JourneyDocument {
    /// Every field that holds concurrent values, in document order (maps by key).
    /// Nested objects are searched in their current value.
    pub fn conflicts(&self) -> Result<Vec<FieldConflict>> {
        let writers = Writers::of(&self.doc);
        let mut found = Vec::new();
        let mut path = Vec::new();
        walk(&self.doc, &ROOT, &mut path, &writers, &mut found)?;
        Ok(found)
    }
}

/// The change behind each op: per actor, the op-counter ranges of its changes.
struct Writers {
    by_actor: HashMap<ActorId, Vec<ChangeSpan>>,
}

struct ChangeSpan {
    start_op: u64,
    end_op: u64,
    hash: String,
    message: Option<ChangeMessage>,
    time_ms: i64,
}

impl Writers {
    fn of(doc: &Automerge) -> Self {
        let mut by_actor: HashMap<ActorId, Vec<ChangeSpan>> = HashMap::new();
        for change in doc.get_changes(&[]) {
            let start_op = change.start_op().get();
            by_actor
                .entry(change.actor_id().clone())
                .or_default()
                .push(ChangeSpan {
                    start_op,
                    end_op: start_op + change.len() as u64,
                    hash: change.hash().to_string(),
                    message: change.message().and_then(ChangeMessage::parse),
                    time_ms: change.timestamp().saturating_mul(1000),
                });
        }
        for spans in by_actor.values_mut() {
            spans.sort_by_key(|s| s.start_op);
        }
        Self { by_actor }
    }

    fn change_of(&self, counter: u64, actor: &ActorId) -> Option<&ChangeSpan> {
        let spans = self.by_actor.get(actor)?;
        let after = spans.partition_point(|s| s.start_op <= counter);
        let span = spans.get(after.checked_sub(1)?)?;
        (counter < span.end_op).then_some(span)
    }
}

fn walk(
    doc: &Automerge,
    obj: &ObjId,
    path: &mut Vec<String>,
    writers: &Writers,
    found: &mut Vec<FieldConflict>,
) -> Result<()> {
    let props: Vec<Prop> = match doc.object_type(obj)? {
        ObjType::Map | ObjType::Table => doc.keys(obj).map(Prop::Map).collect(),
        ObjType::List => (0..doc.length(obj)).map(Prop::Seq).collect(),
        ObjType::Text => return Ok(()),
    };
    for prop in props {
        let key = match &prop {
            Prop::Map(key) => key.clone(),
            Prop::Seq(index) => index.to_string(),
        };
        path.push(key);
        let all = doc.get_all(obj, prop.clone())?;
        if all.len() > 1 {
            found.push(conflict(doc, path, &all, writers)?);
        }
        // Recurse into the current value (automerge lists it last).
        if let Some((Value::Object(_), child)) = all.last() {
            walk(doc, child, path, writers, found)?;
        }
        path.pop();
    }
    Ok(())
}

fn conflict(
    doc: &Automerge,
    path: &[String],
    all: &[(Value<'_>, ObjId)],
    writers: &Writers,
) -> Result<FieldConflict> {
    let mut values = Vec::with_capacity(all.len());
    for (index, (value, id)) in all.iter().enumerate().rev() {
        let (op, span) = match id {
            ObjId::Id(counter, actor, _) => (
                format!("{counter}@{actor}"),
                writers.change_of(*counter, actor),
            ),
            ObjId::Root => ("root".to_owned(), None),
        };
        values.push(WrittenValue {
            value: to_json(doc, value, id)?,
            op,
            change: span.map(|s| s.hash.clone()),
            writer: span.and_then(|s| s.message.as_ref().map(|m| m.origin.clone())),
            action: span.and_then(|s| s.message.as_ref().map(|m| m.action.clone())),
            device_time_ms: span.map(|s| s.time_ms),
            current: index + 1 == all.len(),
        });
    }
    let why = why(all);
    let path = path.to_vec();
    Ok(FieldConflict {
        policy: FieldPolicy::of(&path),
        path,
        values,
        why,
    })
}

/// Automerge's deterministic rule, applied to these writes, in words.
fn why(all: &[(Value<'_>, ObjId)]) -> String {
    let ids: Vec<(u64, &ActorId)> = all
        .iter()
        .filter_map(|(_, id)| match id {
            ObjId::Id(counter, actor, _) => Some((*counter, actor)),
            ObjId::Root => None,
        })
        .collect();
    let Some(&(counter, actor)) = ids.last() else {
        return "automerge's rule".to_owned();
    };
    let ties = ids.iter().filter(|(c, _)| *c == counter).count();
    let writes = all.len();
    if ties > 1 {
        format!(
            "{writes} writes were made without seeing each other; automerge shows the one with the \
             highest operation counter ({counter}), and as {ties} share it, the one whose actor id \
             sorts last ({actor}). Every device computes the same; the other values stay in the document."
        )
    } else {
        format!(
            "{writes} writes were made without seeing each other; automerge shows the one with the \
             highest operation counter ({counter}, by actor {actor}): the writer whose replica had \
             seen more operations. Every device computes the same; the other values stay in the \
             document. Clock times play no part."
        )
    }
}
