//! Two replicas of a journey side by side: the changes each lacks and the
//! fields whose current values differ.

use std::collections::{BTreeMap, BTreeSet};

use automerge::ROOT;
use serde::Serialize;

use super::JourneyDocument;
use super::json::to_json;
use crate::error::Result;

/// How replica `a` and replica `b` of one journey differ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaDiff {
    /// Hashes (hex) of changes `a` holds and `b` lacks.
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
    /// Fields (leaf paths joined by `/`) whose current values differ.
    pub fields: Vec<FieldDiff>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    pub path: String,
    /// `None`: the field does not exist on that side.
    pub a: Option<serde_json::Value>,
    pub b: Option<serde_json::Value>,
}

impl ReplicaDiff {
    pub fn is_empty(&self) -> bool {
        self.only_in_a.is_empty() && self.only_in_b.is_empty() && self.fields.is_empty()
    }
}

/// Compares two replicas of the same journey.
pub fn compare(a: &JourneyDocument, b: &JourneyDocument) -> Result<ReplicaDiff> {
    let hashes = |doc: &JourneyDocument| -> BTreeSet<String> {
        doc.automerge()
            .get_changes(&[])
            .iter()
            .map(|c| c.hash().to_string())
            .collect()
    };
    let (in_a, in_b) = (hashes(a), hashes(b));
    let (leaves_a, leaves_b) = (leaves(a)?, leaves(b)?);
    let paths: BTreeSet<&String> = leaves_a.keys().chain(leaves_b.keys()).collect();
    let fields = paths
        .into_iter()
        .filter_map(|path| {
            let (va, vb) = (leaves_a.get(path), leaves_b.get(path));
            (va != vb).then(|| FieldDiff {
                path: path.clone(),
                a: va.cloned(),
                b: vb.cloned(),
            })
        })
        .collect();
    Ok(ReplicaDiff {
        only_in_a: in_a.difference(&in_b).cloned().collect(),
        only_in_b: in_b.difference(&in_a).cloned().collect(),
        fields,
    })
}

/// Every leaf value of the document's current state, by path.
fn leaves(doc: &JourneyDocument) -> Result<BTreeMap<String, serde_json::Value>> {
    let am = doc.automerge();
    let root = to_json(
        am,
        &automerge::Value::Object(automerge::ObjType::Map),
        &ROOT,
    )?;
    let mut out = BTreeMap::new();
    flatten(String::new(), root, &mut out);
    Ok(out)
}

fn flatten(
    prefix: String,
    value: serde_json::Value,
    out: &mut BTreeMap<String, serde_json::Value>,
) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}/{key}")
        }
    };
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                flatten(join(&key), child, out);
            }
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            for (index, child) in items.into_iter().enumerate() {
                flatten(join(&index.to_string()), child, out);
            }
        }
        leaf => {
            out.insert(prefix, leaf);
        }
    }
}
