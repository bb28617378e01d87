//! Recorded GPS fixes waiting to be folded into a batch in their journey's document.
//! Each fix is durable the moment it is recorded; the batch change comes later.

use rusqlite::{Connection, Transaction, params};

use crate::error::{Error, Result};
use crate::ids::{JourneyId, UserId};
use crate::model::GpsPoint;

pub fn push(
    tx: &Transaction<'_>,
    journey: JourneyId,
    user: UserId,
    point: &GpsPoint,
) -> Result<usize> {
    let bytes =
        rmp_serde::to_vec(point).map_err(|e| Error::InvalidInput(format!("GPS point: {e}")))?;
    tx.prepare_cached("INSERT INTO gps_pending (journey_id, user_id, point) VALUES (?1, ?2, ?3)")?
        .execute(params![journey.to_string(), user.to_string(), bytes])?;
    let pending: i64 = tx
        .prepare_cached("SELECT count(*) FROM gps_pending WHERE journey_id = ?1 AND user_id = ?2")?
        .query_row(params![journey.to_string(), user.to_string()], |row| {
            row.get(0)
        })?;
    Ok(pending as usize)
}

/// The user's pending fixes for a journey, oldest first, with the last row id.
pub fn pending(
    conn: &Connection,
    journey: JourneyId,
    user: UserId,
) -> Result<(Vec<GpsPoint>, Option<i64>)> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, point FROM gps_pending WHERE journey_id = ?1 AND user_id = ?2 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![journey.to_string(), user.to_string()], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
    })?;
    let mut points = Vec::new();
    let mut last = None;
    for row in rows {
        let (id, bytes) = row?;
        let point = rmp_serde::from_slice(&bytes)
            .map_err(|e| Error::InvalidInput(format!("unreadable GPS row {id}: {e}")))?;
        points.push(point);
        last = Some(id);
    }
    Ok((points, last))
}

/// Journeys with pending fixes by `user`.
pub fn journeys_with_pending(conn: &Connection, user: UserId) -> Result<Vec<JourneyId>> {
    let mut stmt =
        conn.prepare_cached("SELECT DISTINCT journey_id FROM gps_pending WHERE user_id = ?1")?;
    let rows = stmt.query_map([user.to_string()], |row| row.get::<_, String>(0))?;
    rows.map(|row| row?.parse()).collect()
}

pub fn remove_through(
    tx: &Transaction<'_>,
    journey: JourneyId,
    user: UserId,
    last_id: i64,
) -> Result<()> {
    tx.prepare_cached(
        "DELETE FROM gps_pending WHERE journey_id = ?1 AND user_id = ?2 AND id <= ?3",
    )?
    .execute(params![journey.to_string(), user.to_string(), last_id])?;
    Ok(())
}
