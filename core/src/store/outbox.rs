//! Local changes waiting for a server's acknowledgement.

use automerge::ChangeHash;
use rusqlite::{Connection, Transaction, params};

use crate::error::{Error, Result};
use crate::ids::{JourneyId, UserId};

/// One unacknowledged local change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: i64,
    pub journey_id: JourneyId,
    pub hash: ChangeHash,
    pub bytes: Vec<u8>,
    pub author: UserId,
}

pub fn push(
    tx: &Transaction<'_>,
    journey: JourneyId,
    hash: &ChangeHash,
    bytes: &[u8],
    author: UserId,
    now_ms: i64,
) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO outbox (journey_id, hash, bytes, user_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    stmt.execute(params![
        journey.to_string(),
        hash.as_ref(),
        bytes,
        author.to_string(),
        now_ms
    ])?;
    Ok(())
}

/// The oldest `limit` entries (of `author` only, if given), in commit order.
pub fn peek(conn: &Connection, author: Option<UserId>, limit: usize) -> Result<Vec<OutboxEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, journey_id, hash, bytes, user_id FROM outbox
         WHERE ?2 IS NULL OR user_id = ?2 ORDER BY seq LIMIT ?1",
    )?;
    let rows = stmt.query_map(
        params![limit as i64, author.map(|a| a.to_string())],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Vec<u8>>(2)?,
                row.get::<_, Vec<u8>>(3)?,
                row.get::<_, String>(4)?,
            ))
        },
    )?;
    rows.map(|row| {
        let (seq, journey, hash, bytes, author) = row?;
        Ok(OutboxEntry {
            seq,
            journey_id: journey.parse()?,
            hash: ChangeHash::try_from(hash.as_slice())
                .map_err(|e| Error::InvalidInput(format!("bad hash in outbox row {seq}: {e}")))?,
            bytes,
            author: author.parse()?,
        })
    })
    .collect()
}

/// How many entries wait (of `author` only, if given).
pub fn len(conn: &Connection, author: Option<UserId>) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM outbox WHERE ?1 IS NULL OR user_id = ?1",
        [author.map(|a| a.to_string())],
        |row| row.get::<_, i64>(0),
    )? as u64)
}

/// Removes acknowledged changes; unknown hashes are ignored (an ack may be repeated).
pub fn acknowledge(tx: &Transaction<'_>, hashes: &[ChangeHash]) -> Result<usize> {
    let mut stmt = tx.prepare_cached("DELETE FROM outbox WHERE hash = ?1")?;
    let mut removed = 0;
    for hash in hashes {
        removed += stmt.execute([hash.as_ref()])?;
    }
    Ok(removed)
}
