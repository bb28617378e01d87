//! A journey's changes as a timeline people can read: who (user, role, device),
//! when by the device's clock, the action, and which fields each change wrote.

use serde::Serialize;

use super::JourneyDocument;
use super::origin::{ChangeMessage, ChangeOrigin};
use super::touches::{FieldWrite, writes_between};
use crate::error::Result;

/// One change of a journey.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// The change's hash, hex.
    pub change: String,
    /// The changes it was made on top of (hex): two entries that do not reach
    /// each other through these were made concurrently.
    pub deps: Vec<String>,
    pub writer: Option<ChangeOrigin>,
    pub action: Option<String>,
    /// The device clock at the change, milliseconds since the epoch.
    pub device_time_ms: i64,
    pub writes: Vec<FieldWrite>,
}

impl JourneyDocument {
    /// Every change in causal order (automerge's: each after the ones it builds on).
    pub fn history(&self) -> Result<Vec<HistoryEntry>> {
        let doc = self.automerge();
        Ok(doc
            .get_changes(&[])
            .into_iter()
            .map(|change| {
                let message = change.message().and_then(ChangeMessage::parse);
                HistoryEntry {
                    change: change.hash().to_string(),
                    deps: change.deps().iter().map(ToString::to_string).collect(),
                    writer: message.as_ref().map(|m| m.origin.clone()),
                    action: message.map(|m| m.action),
                    device_time_ms: change.timestamp().saturating_mul(1000),
                    writes: writes_between(doc, change.deps(), &[change.hash()]),
                }
            })
            .collect())
    }
}

impl HistoryEntry {
    /// Whether the change wrote the field at `path` or anything under it, or
    /// the object holding it.
    pub fn wrote(&self, path: &[String]) -> bool {
        self.writes.iter().any(|write| {
            let common = write.path.len().min(path.len());
            write.path[..common] == path[..common]
        })
    }
}
