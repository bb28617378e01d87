//! Journey documents on disk: a snapshot plus the changes after it.
//!
//! Writing a change is one row; compaction writes a new snapshot and deletes the
//! rows it contains *in the same transaction*, so no change is ever deleted before a
//! durable snapshot holds it. Changes automerge holds back for missing dependencies
//! are not in the snapshot and keep their rows.

use automerge::{ActorId, Change, ChangeHash};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::document::JourneyDocument;
use crate::error::{Error, Result};
use crate::ids::JourneyId;

pub fn exists(conn: &Connection, journey: JourneyId) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM documents WHERE journey_id = ?1",
            [journey.to_string()],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Loads a journey; [`Error::UnknownJourney`] if the store has no such document.
pub fn load(
    conn: &Connection,
    journey: JourneyId,
    actor: ActorId,
) -> Result<(JourneyDocument, usize)> {
    let key = journey.to_string();
    let snapshot: Option<Option<Vec<u8>>> = conn
        .query_row(
            "SELECT snapshot FROM documents WHERE journey_id = ?1",
            [&key],
            |row| row.get(0),
        )
        .optional()?;
    let Some(snapshot) = snapshot else {
        return Err(Error::UnknownJourney(key));
    };
    let mut stmt =
        conn.prepare_cached("SELECT bytes FROM doc_changes WHERE journey_id = ?1 ORDER BY rowid")?;
    let changes = stmt
        .query_map([&key], |row| row.get::<_, Vec<u8>>(0))?
        .map(|bytes| Ok(Change::from_bytes(bytes?)?))
        .collect::<Result<Vec<_>>>()?;
    let count = changes.len();
    let doc = JourneyDocument::load(journey, snapshot.as_deref(), changes, actor)?;
    Ok((doc, count))
}

pub fn insert_document(tx: &Transaction<'_>, journey: JourneyId) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO documents (journey_id) VALUES (?1)",
        [journey.to_string()],
    )?;
    Ok(())
}

/// Stores a change's bytes; a change already stored is left as it is. Returns whether
/// the row is new.
pub fn insert_change(
    tx: &Transaction<'_>,
    journey: JourneyId,
    hash: &ChangeHash,
    bytes: &[u8],
) -> Result<bool> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO doc_changes (journey_id, hash, bytes) VALUES (?1, ?2, ?3)",
    )?;
    Ok(stmt.execute(params![journey.to_string(), hash.as_ref(), bytes])? == 1)
}

/// Folds every stored change the document contains into a new snapshot.
/// Returns how many change rows remain (those automerge still holds back).
pub fn compact(conn: &mut Connection, doc: &JourneyDocument, now_ms: i64) -> Result<usize> {
    let key = doc.id().to_string();
    let snapshot = doc.save();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let hashes: Vec<Vec<u8>> = {
        let mut stmt = tx.prepare_cached("SELECT hash FROM doc_changes WHERE journey_id = ?1")?;
        stmt.query_map([&key], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    tx.execute(
        "UPDATE documents SET snapshot = ?2, compacted_at = ?3 WHERE journey_id = ?1",
        params![key, snapshot, now_ms],
    )?;
    let mut remaining = 0;
    {
        let mut delete =
            tx.prepare_cached("DELETE FROM doc_changes WHERE journey_id = ?1 AND hash = ?2")?;
        for hash in hashes {
            let contained = ChangeHash::try_from(hash.as_slice()).is_ok_and(|h| doc.has_change(&h));
            if contained {
                delete.execute(params![key, hash])?;
            } else {
                remaining += 1;
            }
        }
    }
    tx.commit()?;
    Ok(remaining)
}

/// Replaces a journey's stored form with `doc` as one snapshot after refused
/// changes were taken out: rows of changes the snapshot holds and of `dropped`
/// ones go; rows automerge still holds back (missing dependencies) stay.
pub fn replace(
    tx: &Transaction<'_>,
    doc: &JourneyDocument,
    dropped: &[ChangeHash],
    now_ms: i64,
) -> Result<()> {
    let key = doc.id().to_string();
    tx.execute(
        "UPDATE documents SET snapshot = ?2, compacted_at = ?3 WHERE journey_id = ?1",
        params![key, doc.save(), now_ms],
    )?;
    let hashes: Vec<Vec<u8>> = {
        let mut stmt = tx.prepare_cached("SELECT hash FROM doc_changes WHERE journey_id = ?1")?;
        stmt.query_map([&key], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut delete =
        tx.prepare_cached("DELETE FROM doc_changes WHERE journey_id = ?1 AND hash = ?2")?;
    for hash in hashes {
        let gone = ChangeHash::try_from(hash.as_slice())
            .is_ok_and(|h| doc.has_change(&h) || dropped.contains(&h));
        if gone {
            delete.execute(params![key, hash])?;
        }
    }
    Ok(())
}
