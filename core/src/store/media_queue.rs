//! The media upload queue's rows (`media_queue`, migration 004). The rules (lanes,
//! network policy, backoff) are `media::queue`'s; this module only reads and writes.

use std::collections::HashSet;
use std::path::Path;

use automerge::ChangeHash;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::error::{Error, Result};
use crate::ids::{JourneyId, MediaId};
use crate::media::queue::{
    ItemState, MediaOptions, NetworkKind, QueueProgress, UploadItem, UploadKind,
};

/// A row to insert.
#[derive(Debug, Clone)]
pub(super) struct NewItem<'a> {
    pub media_id: MediaId,
    pub journey_id: JourneyId,
    pub kind: UploadKind,
    pub content_type: &'a str,
    /// The file's name inside the media directory.
    pub file_name: &'a str,
    pub sha256: &'a str,
    pub size: u64,
    pub wifi_only: bool,
}

const COLUMNS: &str = "id, media_id, journey_id, kind, content_type, path, sha256, size, \
                       uploaded_bytes, attempts, wifi_only, state, last_error";

pub(super) fn insert(
    tx: &Transaction<'_>,
    item: &NewItem<'_>,
    change: Option<&ChangeHash>,
    now: i64,
) -> Result<String> {
    let id = uuid::Uuid::now_v7().to_string();
    tx.execute(
        "INSERT INTO media_queue (id, media_id, journey_id, kind, lane, content_type, path,
                                  sha256, size, change_hash, wifi_only, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            id,
            item.media_id.to_string(),
            item.journey_id.to_string(),
            item.kind.to_string(),
            item.kind.lane(),
            item.content_type,
            item.file_name,
            item.sha256,
            item.size as i64,
            change.map(|h| h.as_ref().to_vec()),
            item.wifi_only,
            now,
        ],
    )?;
    Ok(id)
}

/// The next item to upload over `network` at `now`: pending, not backing off,
/// allowed on this network, whose journey change has left the outbox, and not one
/// of `skip` (items an upload round already tried).
pub(super) fn next(
    conn: &Connection,
    dir: &Path,
    network: NetworkKind,
    now: i64,
    skip: &[String],
) -> Result<Option<UploadItem>> {
    if network == NetworkKind::Offline {
        return Ok(None);
    }
    let wifi = network == NetworkKind::Wifi;
    let skip =
        serde_json::to_string(skip).map_err(|e| Error::InvalidInput(format!("skip list: {e}")))?;
    conn.query_row(
        &format!(
            "SELECT {COLUMNS} FROM media_queue q
             WHERE state = 'pending' AND next_attempt_at <= ?1 AND (?2 OR wifi_only = 0)
               AND (change_hash IS NULL
                    OR NOT EXISTS (SELECT 1 FROM outbox o WHERE o.hash = q.change_hash))
               AND id NOT IN (SELECT value FROM json_each(?3))
             ORDER BY lane, CASE WHEN lane = 2 THEN size ELSE 0 END, seq
             LIMIT 1"
        ),
        params![now, wifi, skip],
        |row| item(row, dir),
    )
    .optional()?
    .transpose()
}

/// Every item, in queue order (done and set-aside ones too).
pub(super) fn list(conn: &Connection, dir: &Path) -> Result<Vec<UploadItem>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM media_queue
         ORDER BY CASE state WHEN 'pending' THEN 0 WHEN 'set_aside' THEN 1 ELSE 2 END,
                  lane, CASE WHEN lane = 2 THEN size ELSE 0 END, seq"
    ))?;
    let rows = stmt.query_map([], |row| item(row, dir))?;
    rows.map(|r| r?).collect()
}

pub(super) fn get(conn: &Connection, dir: &Path, id: &str) -> Result<UploadItem> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM media_queue WHERE id = ?1"),
        [id],
        |row| item(row, dir),
    )
    .optional()?
    .transpose()?
    .ok_or_else(|| Error::UnknownMedia(id.to_owned()))
}

fn item(row: &Row<'_>, dir: &Path) -> rusqlite::Result<Result<UploadItem>> {
    let parse = || -> Result<UploadItem> {
        let kind: String = row.get(3)?;
        let state: String = row.get(11)?;
        let file: String = row.get(5)?;
        Ok(UploadItem {
            item_id: row.get(0)?,
            media_id: row.get::<_, String>(1)?.parse()?,
            journey_id: row.get::<_, String>(2)?.parse()?,
            kind: kind
                .parse()
                .map_err(|_| Error::InvalidInput(format!("queue kind {kind:?}")))?,
            content_type: row.get(4)?,
            path: dir.join(file),
            sha256: row.get(6)?,
            size: row.get::<_, i64>(7)?.max(0) as u64,
            offset_hint: row.get::<_, i64>(8)?.max(0) as u64,
            attempts: row.get::<_, i64>(9)?.max(0) as u32,
            wifi_only: row.get(10)?,
            state: state
                .parse()
                .map_err(|_| Error::InvalidInput(format!("queue state {state:?}")))?,
            last_error: row.get(12)?,
        })
    };
    Ok(parse())
}

fn changed(n: usize, id: &str) -> Result<()> {
    if n == 0 {
        Err(Error::UnknownMedia(id.to_owned()))
    } else {
        Ok(())
    }
}

pub(super) fn mark_progress(conn: &Connection, id: &str, sent: u64) -> Result<()> {
    let n = conn.execute(
        "UPDATE media_queue SET uploaded_bytes = min(?2, size) WHERE id = ?1",
        params![id, sent as i64],
    )?;
    changed(n, id)
}

pub(super) fn mark_done(conn: &Connection, id: &str, now: i64) -> Result<()> {
    let n = conn.execute(
        "UPDATE media_queue SET state = 'done', uploaded_bytes = size, last_error = NULL,
                done_at = ?2
         WHERE id = ?1",
        params![id, now],
    )?;
    changed(n, id)
}

/// Counts a failed attempt: the item backs off, or is set aside after the last
/// attempt. Returns its new state.
pub(super) fn mark_failed(
    conn: &Connection,
    id: &str,
    reason: &str,
    now: i64,
    options: &MediaOptions,
) -> Result<ItemState> {
    let attempts: Option<i64> = conn
        .query_row(
            "SELECT attempts FROM media_queue WHERE id = ?1 AND state = 'pending'",
            [id],
            |row| row.get(0),
        )
        .optional()?;
    let Some(attempts) = attempts else {
        return Err(Error::UnknownMedia(id.to_owned()));
    };
    let attempts = u32::try_from(attempts + 1).unwrap_or(u32::MAX);
    let state = if attempts >= options.max_attempts {
        ItemState::SetAside
    } else {
        ItemState::Pending
    };
    conn.execute(
        "UPDATE media_queue SET attempts = ?2, last_error = ?3, state = ?4,
                next_attempt_at = ?5
         WHERE id = ?1",
        params![
            id,
            attempts,
            reason,
            state.to_string(),
            now.saturating_add(options.backoff_ms(attempts))
        ],
    )?;
    Ok(state)
}

/// Sets an item aside at once, with the reason (its file is missing or damaged).
pub(super) fn set_aside(conn: &Connection, id: &str, reason: &str) -> Result<()> {
    let n = conn.execute(
        "UPDATE media_queue SET state = 'set_aside', last_error = ?2 WHERE id = ?1",
        params![id, reason],
    )?;
    changed(n, id)
}

/// Puts a set-aside item back in line with a fresh count of attempts.
pub(super) fn retry(conn: &Connection, id: &str) -> Result<()> {
    let n = conn.execute(
        "UPDATE media_queue SET state = 'pending', attempts = 0, next_attempt_at = 0
         WHERE id = ?1 AND state = 'set_aside'",
        [id],
    )?;
    changed(n, id)
}

pub(super) fn progress(conn: &Connection) -> Result<QueueProgress> {
    conn.query_row(
        "SELECT
             coalesce(sum(state = 'pending'), 0),
             coalesce(sum(CASE WHEN state != 'done' THEN size - uploaded_bytes ELSE 0 END), 0),
             coalesce(sum(state = 'set_aside'), 0),
             coalesce(sum(state = 'done'), 0)
         FROM media_queue",
        [],
        |row| {
            let n = |i: usize| row.get::<_, i64>(i).map(|v| v.max(0) as u64);
            Ok(QueueProgress {
                pending_items: n(0)?,
                pending_bytes: n(1)?,
                set_aside_items: n(2)?,
                done_items: n(3)?,
            })
        },
    )
    .map_err(Error::from)
}

/// Every file name a row points at.
pub(super) fn file_names(conn: &Connection) -> Result<HashSet<String>> {
    let mut stmt = conn.prepare("SELECT path FROM media_queue")?;
    let names = stmt.query_map([], |row| row.get(0))?;
    Ok(names.collect::<rusqlite::Result<_>>()?)
}

/// Rows with their file name, size and hash, for the check at open.
pub(super) fn expected_files(conn: &Connection) -> Result<Vec<(String, String, u64, String)>> {
    let mut stmt = conn.prepare("SELECT id, path, size, sha256 FROM media_queue ORDER BY seq")?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get::<_, i64>(2)?.max(0) as u64,
            row.get(3)?,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Deletes the rows of uploaded items (of one journey, or all); returns their files.
pub(super) fn remove_done(tx: &Transaction<'_>, journey: Option<JourneyId>) -> Result<Vec<String>> {
    let journey = journey.map(|j| j.to_string());
    let mut stmt = tx.prepare(
        "DELETE FROM media_queue WHERE state = 'done' AND (?1 IS NULL OR journey_id = ?1)
         RETURNING path",
    )?;
    let names = stmt.query_map([journey], |row| row.get(0))?;
    Ok(names.collect::<rusqlite::Result<_>>()?)
}
