//! Local changes a server refused: out of the outbox, out of the journey, kept
//! with the reason in `rejected_changes`.
//!
//! Automerge chains an actor's changes: a later local change that builds on a
//! refused one cannot stand without it, so it goes too (the server refuses it for
//! the same reason). The journey is rebuilt from every other change it has: the
//! server's accepted state plus this device's still-pending work that does not
//! depend on a refused change. New changes then continue the actor's sequence
//! from its last kept change; the refused change with that sequence number exists
//! only in the server's quarantine and in this table, never in a document, so no
//! replica ever holds two changes with one (actor, seq).

use std::collections::{HashMap, HashSet};

use automerge::{ActorId, Change, ChangeHash};
use rusqlite::{Transaction, params};

use crate::document::JourneyDocument;
use crate::error::Result;
use crate::ids::JourneyId;

/// A refused local change, as the app shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedChange {
    pub hash: ChangeHash,
    pub journey: JourneyId,
    pub reason: String,
    pub rejected_at: i64,
}

/// Removes `refused` (hash → reason) and everything built on them from `doc`,
/// returning the rebuilt document and every dropped change with its reason.
pub fn rebuild_without(
    doc: &JourneyDocument,
    refused: &HashMap<ChangeHash, String>,
    actor: ActorId,
) -> Result<(JourneyDocument, Vec<(Change, String)>)> {
    let mut dropped_hashes: HashSet<ChangeHash> = HashSet::new();
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    // get_changes returns a causal order: dependencies come first.
    for change in doc.changes_since(&[]) {
        let hash = change.hash();
        let reason = refused.get(&hash).cloned().or_else(|| {
            change
                .deps()
                .iter()
                .find(|dep| dropped_hashes.contains(dep))
                .map(|dep| format!("builds on the refused change {dep}"))
        });
        match reason {
            Some(reason) => {
                dropped_hashes.insert(hash);
                dropped.push((change, reason));
            }
            None => kept.push(change),
        }
    }
    let rebuilt = JourneyDocument::load(doc.id(), None, kept, actor)?;
    Ok((rebuilt, dropped))
}

/// Records dropped changes and removes them from the outbox.
pub fn record(
    tx: &Transaction<'_>,
    journey: JourneyId,
    dropped: &[(Change, String)],
    now_ms: i64,
) -> Result<()> {
    let mut author = tx.prepare_cached("SELECT user_id FROM outbox WHERE hash = ?1")?;
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO rejected_changes (hash, journey_id, user_id, reason, bytes, rejected_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut unqueue = tx.prepare_cached("DELETE FROM outbox WHERE hash = ?1")?;
    for (change, reason) in dropped {
        let hash = change.hash();
        let user: Option<String> = author.query_row([hash.as_ref()], |row| row.get(0)).ok();
        insert.execute(params![
            hash.as_ref(),
            journey.to_string(),
            user.unwrap_or_default(),
            reason,
            change.raw_bytes(),
            now_ms
        ])?;
        unqueue.execute([hash.as_ref()])?;
    }
    Ok(())
}

/// The refused changes of a journey, oldest first.
pub fn list(conn: &rusqlite::Connection, journey: JourneyId) -> Result<Vec<RejectedChange>> {
    let mut stmt = conn.prepare_cached(
        "SELECT hash, reason, rejected_at FROM rejected_changes WHERE journey_id = ?1
         ORDER BY rejected_at, hash",
    )?;
    let rows = stmt.query_map([journey.to_string()], |row| {
        Ok((
            row.get::<_, Vec<u8>>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })?;
    rows.map(|row| {
        let (hash, reason, rejected_at) = row?;
        Ok(RejectedChange {
            hash: ChangeHash::try_from(hash.as_slice()).map_err(|e| {
                crate::error::Error::InvalidInput(format!("stored rejected hash: {e}"))
            })?,
            journey,
            reason,
            rejected_at,
        })
    })
    .collect()
}
