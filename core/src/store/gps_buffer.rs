//! Recorded GPS fixes waiting to be folded into a batch in their journey's document.
//! Each fix is durable the moment it is recorded; the batch change comes later, in the
//! name of the user who recorded the fixes.

use rusqlite::{Connection, Transaction, params};

use crate::error::{Error, Result};
use crate::ids::JourneyId;
use crate::model::{ActiveUser, GpsPoint, Role};

/// Buffers a fix; returns how many fixes `user` now has buffered for the journey.
pub fn push(
    tx: &Transaction<'_>,
    journey: JourneyId,
    user: &ActiveUser,
    point: &GpsPoint,
) -> Result<usize> {
    let bytes =
        rmp_serde::to_vec(point).map_err(|e| Error::InvalidInput(format!("GPS point: {e}")))?;
    let (journey, user_id) = (journey.to_string(), user.user_id.to_string());
    tx.prepare_cached(
        "INSERT INTO gps_pending (journey_id, user_id, role, point) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![journey, user_id, user.role.to_string(), bytes])?;
    let pending: i64 = tx
        .prepare_cached("SELECT count(*) FROM gps_pending WHERE journey_id = ?1 AND user_id = ?2")?
        .query_row(params![journey, user_id], |row| row.get(0))?;
    Ok(pending as usize)
}

/// Buffered fixes of one author for one journey, oldest first.
pub struct PendingBatch {
    pub author: ActiveUser,
    pub points: Vec<GpsPoint>,
    /// The last row id in the batch, so exactly these rows are removed with it.
    pub last_id: i64,
}

/// A journey's buffered fixes grouped by author (optionally only `only`'s).
pub fn pending(
    conn: &Connection,
    journey: JourneyId,
    only: Option<&ActiveUser>,
) -> Result<Vec<PendingBatch>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, user_id, role, point FROM gps_pending WHERE journey_id = ?1 ORDER BY user_id, id",
    )?;
    let rows = stmt.query_map([journey.to_string()], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, Vec<u8>>(3)?,
        ))
    })?;
    let mut batches: Vec<PendingBatch> = Vec::new();
    for row in rows {
        let (id, user, role, bytes) = row?;
        let author = ActiveUser {
            user_id: user.parse()?,
            role: role.parse::<Role>().map_err(|_| {
                Error::InvalidInput(format!("unreadable role {role:?} in GPS row {id}"))
            })?,
        };
        if only.is_some_and(|only| only.user_id != author.user_id) {
            continue;
        }
        let point = rmp_serde::from_slice(&bytes)
            .map_err(|e| Error::InvalidInput(format!("unreadable GPS row {id}: {e}")))?;
        match batches.last_mut() {
            Some(batch) if batch.author.user_id == author.user_id => {
                batch.points.push(point);
                batch.last_id = id;
            }
            _ => batches.push(PendingBatch {
                author,
                points: vec![point],
                last_id: id,
            }),
        }
    }
    Ok(batches)
}

/// Every buffered fix of a journey, whoever recorded it.
pub fn all_points(conn: &Connection, journey: JourneyId) -> Result<Vec<GpsPoint>> {
    Ok(pending(conn, journey, None)?
        .into_iter()
        .flat_map(|b| b.points)
        .collect())
}

pub fn remove_through(
    tx: &Transaction<'_>,
    journey: JourneyId,
    batch: &PendingBatch,
) -> Result<()> {
    tx.prepare_cached(
        "DELETE FROM gps_pending WHERE journey_id = ?1 AND user_id = ?2 AND id <= ?3",
    )?
    .execute(params![
        journey.to_string(),
        batch.author.user_id.to_string(),
        batch.last_id
    ])?;
    Ok(())
}
