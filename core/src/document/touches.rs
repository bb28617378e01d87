//! What a change did to a journey, read from its effect on the document.
//!
//! A pushed change is opaque automerge operations; the server must not trust the
//! action named in its message. So it applies the change and asks automerge for the
//! difference (`Automerge::diff` between the heads before and after): every patch
//! carries the path it changed, and the path says which part of the journey layout
//! (see `schema`) was touched. Unknown paths are reported as such, so a change that
//! writes outside the layout is refused rather than ignored.

use std::collections::{BTreeSet, HashSet};
use std::str::FromStr;

use automerge::{Automerge, ChangeHash, ObjId, Patch, PatchAction, Prop, ReadDoc, Value};

use super::evidence;
use super::schema::{
    ACTIVITIES, COUNTS, CREW, ENTRIES, GPS, JourneyDoc, MEDIA, NOTES, STAGES, STEPS,
};
use crate::model::{Stage, StepNumber};
use crate::policy::Touch;

/// Root keys written only by the change that creates a journey.
const IDENTITY_KEYS: [&str; 7] = [
    "schema",
    "id",
    "client_id",
    "location_id",
    "timezone",
    "date",
    "created",
];

/// The touches of the changes between `before` and `after` (heads of `doc`).
/// `before` empty means the journey did not exist yet.
pub fn touches_between(doc: &Automerge, before: &[ChangeHash], after: &[ChangeHash]) -> Vec<Touch> {
    let patches = doc.diff(before, after);
    let created = created_objects(&patches);
    let scope = Scope {
        doc,
        before,
        creating: before.is_empty(),
        created: &created,
    };
    let touches: BTreeSet<Touch> = patches.iter().map(|patch| scope.classify(patch)).collect();
    touches.into_iter().collect()
}

/// Objects the patches create: writes inside them fill in something new (an
/// entry's fields); they do not rewrite something that existed.
fn created_objects(patches: &[Patch]) -> HashSet<ObjId> {
    patches
        .iter()
        .filter_map(|patch| match &patch.action {
            PatchAction::PutMap {
                value: (Value::Object(_), id),
                ..
            }
            | PatchAction::PutSeq {
                value: (Value::Object(_), id),
                ..
            } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

/// One field a change wrote: its path from the root and what it did.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct FieldWrite {
    pub path: Vec<String>,
    /// `put`, `delete` or `increment`.
    pub act: &'static str,
}

/// The fields the changes between `before` and `after` wrote. Writes inside an
/// object the same changes created are reported as that object (an entry, not
/// its text and time).
pub fn writes_between(
    doc: &Automerge,
    before: &[ChangeHash],
    after: &[ChangeHash],
) -> Vec<FieldWrite> {
    let patches = doc.diff(before, after);
    let created = created_objects(&patches);
    let writes: BTreeSet<FieldWrite> = patches
        .iter()
        .filter(|patch| !created.contains(&patch.obj))
        .map(|patch| {
            let (path, act) = path_of(patch);
            FieldWrite {
                path,
                act: match act {
                    Act::Put => "put",
                    Act::Delete => "delete",
                    Act::Increment => "increment",
                },
            }
        })
        .collect();
    writes.into_iter().collect()
}

struct Scope<'a> {
    doc: &'a Automerge,
    before: &'a [ChangeHash],
    creating: bool,
    created: &'a HashSet<ObjId>,
}

/// What a patch did at its path.
#[derive(PartialEq)]
enum Act {
    Put,
    Delete,
    Increment,
}

impl Scope<'_> {
    fn classify(&self, patch: &Patch) -> Touch {
        let (path, act) = path_of(patch);
        let segments: Vec<&str> = path.iter().map(String::as_str).collect();
        let joined = || path.join("/");
        let inside_new = self.created.contains(&patch.obj)
            || patch.path.iter().any(|(obj, _)| self.created.contains(obj));
        // The creating change lays out every field, the unset ones as nulls.
        if self.creating && puts_null(patch) {
            return Touch::Create;
        }
        match segments.as_slice() {
            [COUNTS, ..] if act == Act::Increment => Touch::Counts,
            [COUNTS, ..] => Touch::Create,
            // The collections themselves are made once, with the journey.
            [ENTRIES | NOTES | GPS | MEDIA] if !self.creating => Touch::EvidenceRewrite(joined()),
            [STAGES | STEPS | CREW | ENTRIES | NOTES | GPS | MEDIA] => Touch::Create,
            // A tombstone on a media reference that existed before (a new reference
            // lays out its `removed` as null, like its other fields).
            [MEDIA, key, "removed", ..]
                if act != Act::Delete && !self.created.contains(media_item(patch)) =>
            {
                self.removal(key, joined)
            }
            [collection @ (ENTRIES | NOTES | GPS | MEDIA), key, rest @ ..] => {
                let rewrite = act == Act::Delete
                    || (rest.is_empty() && self.existed(patch, key))
                    || (!rest.is_empty() && !inside_new);
                if rewrite {
                    Touch::EvidenceRewrite(joined())
                } else {
                    match *collection {
                        ENTRIES => Touch::Entry,
                        NOTES => Touch::Note,
                        GPS => Touch::Gps,
                        _ => Touch::Media,
                    }
                }
            }
            [CREW, ..] => Touch::Crew,
            ["truck_number"] => Touch::TruckNumber,
            ["move_source_id"] => Touch::MoveSource,
            ["start_time" | "end_time"] => Touch::Times,
            [STAGES, stage, ..] => match Stage::from_str(stage) {
                Ok(Stage::MorningPrep) if self.creating => Touch::Create,
                Ok(stage) => Touch::Stage(stage),
                Err(_) => Touch::Unknown(joined()),
            },
            [STEPS, step, rest @ ..] => self.classify_step(step, rest, joined),
            [key, ..] if IDENTITY_KEYS.contains(key) => Touch::Create,
            _ => Touch::Unknown(joined()),
        }
    }

    fn classify_step(&self, step: &str, rest: &[&str], joined: impl Fn() -> String) -> Touch {
        let Some(number) = step
            .parse::<u8>()
            .ok()
            .and_then(|n| StepNumber::new(n).ok())
        else {
            return Touch::Unknown(joined());
        };
        match rest {
            ["started", ..] => Touch::StepStart(number),
            ["completed", ..] => Touch::StepComplete(number),
            ["approval", ..] => Touch::StepApprove(number),
            [ACTIVITIES, _, ..] => Touch::StepActivity(number),
            // A step's definition (number, name, whether it needs approval) is set
            // at creation; rewriting it later is not a step's work.
            _ => Touch::Create,
        }
    }

    /// A tombstone on a media reference: judged against the journey as it was
    /// before the change. Setting it twice, or on media that did not exist, is
    /// not a removal.
    fn removal(&self, key: &str, joined: impl Fn() -> String) -> Touch {
        if self.creating {
            return Touch::Unknown(joined());
        }
        let before: Option<JourneyDoc> = self
            .doc
            .fork_at(self.before)
            .ok()
            .and_then(|fork| autosurgeon::hydrate(&fork).ok());
        let Some(before) = before else {
            return Touch::Unknown(joined());
        };
        match before.media.get(key) {
            None => Touch::EvidenceRewrite(joined()),
            Some(media) if media.removed.is_some() => Touch::EvidenceRewrite(joined()),
            Some(_) => Touch::RemoveMedia {
                sealed: evidence::sealed(&before, key),
            },
        }
    }

    /// Whether `patch.obj[key]` held a value before these changes.
    fn existed(&self, patch: &Patch, key: &str) -> bool {
        !self.creating
            && self
                .doc
                .get_at(&patch.obj, key, self.before)
                .is_ok_and(|value| value.is_some())
    }
}

/// The media reference object a patch under `media/<key>/…` acts in or below.
fn media_item(patch: &Patch) -> &ObjId {
    patch.path.get(2).map_or(&patch.obj, |(obj, _)| obj)
}

fn puts_null(patch: &Patch) -> bool {
    matches!(
        &patch.action,
        PatchAction::PutMap { value: (Value::Scalar(scalar), _), .. }
            if matches!(scalar.as_ref(), automerge::ScalarValue::Null)
    )
}

/// The path of a patch, as strings (the parent path plus the key it acted on),
/// and what it did there.
fn path_of(patch: &Patch) -> (Vec<String>, Act) {
    let mut path: Vec<String> = patch.path.iter().map(|(_, prop)| prop_text(prop)).collect();
    let act = match &patch.action {
        PatchAction::PutMap { key, .. } => {
            path.push(key.clone());
            Act::Put
        }
        PatchAction::DeleteMap { key } => {
            path.push(key.clone());
            Act::Delete
        }
        PatchAction::Increment { prop, .. } => {
            path.push(prop_text(prop));
            Act::Increment
        }
        PatchAction::Conflict { prop } => {
            path.push(prop_text(prop));
            Act::Put
        }
        PatchAction::PutSeq { index, .. } => {
            path.push(index.to_string());
            Act::Put
        }
        PatchAction::DeleteSeq { .. } => Act::Delete,
        PatchAction::Insert { .. } | PatchAction::SpliceText { .. } | PatchAction::Mark { .. } => {
            Act::Put
        }
    };
    (path, act)
}

fn prop_text(prop: &Prop) -> String {
    match prop {
        Prop::Map(key) => key.clone(),
        Prop::Seq(index) => index.to_string(),
    }
}
