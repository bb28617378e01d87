//! The journey list: one row per journey, rewritten in the same transaction as every
//! change to the journey, so listing a day's journeys is one indexed query.

use chrono::NaiveDate;
use rusqlite::{Connection, Row, Transaction, params};

use crate::document::JourneyDocument;
use crate::error::{Error, Result};
use crate::ids::LocationId;
use crate::model::{JourneySummary, Role};

/// Rewrites the journey's row from its document. A document received before its
/// creation change has no header yet and gets no row until it does.
pub fn refresh(tx: &Transaction<'_>, doc: &JourneyDocument, now_ms: i64) -> Result<()> {
    let Ok((client, location, date)) = doc.header() else {
        return Ok(());
    };
    let fields = doc.summary_fields()?;
    let crew: Vec<(String, String)> = fields
        .crew
        .iter()
        .map(|(user, role)| (user.to_string(), role.to_string()))
        .collect();
    let crew = serde_json::to_string(&crew).map_err(|e| Error::InvalidInput(e.to_string()))?;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO journey_summary (journey_id, client_id, location_id, local_date, stage,
             truck_number, crew, entry_count, photo_count, signature_count, note_count,
             gps_point_count, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (journey_id) DO UPDATE SET
             client_id = excluded.client_id, location_id = excluded.location_id,
             local_date = excluded.local_date, stage = excluded.stage,
             truck_number = excluded.truck_number, crew = excluded.crew,
             entry_count = excluded.entry_count, photo_count = excluded.photo_count,
             signature_count = excluded.signature_count, note_count = excluded.note_count,
             gps_point_count = excluded.gps_point_count, updated_at = excluded.updated_at",
    )?;
    stmt.execute(params![
        doc.id().to_string(),
        client.to_string(),
        location.to_string(),
        date.format("%Y-%m-%d").to_string(),
        fields.stage.to_string(),
        fields.truck_number,
        crew,
        fields.entry_count as i64,
        fields.photo_count as i64,
        fields.signature_count as i64,
        fields.note_count as i64,
        fields.gps_point_count as i64,
        now_ms,
    ])?;
    Ok(())
}

/// A location's journeys on a day, by truck number.
pub fn list(
    conn: &Connection,
    location: LocationId,
    date: NaiveDate,
) -> Result<Vec<JourneySummary>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.journey_id, s.client_id, s.location_id, s.local_date, s.stage, s.truck_number,
                s.crew, s.entry_count, s.photo_count, s.signature_count, s.note_count,
                s.gps_point_count,
                (SELECT count(*) FROM outbox o WHERE o.journey_id = s.journey_id)
         FROM journey_summary s
         WHERE s.location_id = ?1 AND s.local_date = ?2
         ORDER BY s.truck_number, s.journey_id",
    )?;
    let rows = stmt.query_map(
        params![location.to_string(), date.format("%Y-%m-%d").to_string()],
        |row| Ok(parse_row(row)),
    )?;
    rows.map(|row| row?).collect()
}

fn parse_row(row: &Row<'_>) -> Result<JourneySummary> {
    let text = |i: usize| -> Result<String> { Ok(row.get::<_, String>(i)?) };
    let count = |i: usize| -> Result<u64> { Ok(row.get::<_, i64>(i)?.max(0) as u64) };
    let bad = |what: &str, value: &str| {
        Error::InvalidInput(format!("bad {what} {value:?} in journey_summary"))
    };
    let crew: Vec<(String, String)> = serde_json::from_str(&text(6)?)
        .map_err(|e| Error::InvalidInput(format!("bad crew in journey_summary: {e}")))?;
    let crew = crew
        .into_iter()
        .map(|(user, role)| {
            Ok((
                user.parse()?,
                role.parse::<Role>().map_err(|_| bad("role", &role))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let date = text(3)?;
    let stage = text(4)?;
    Ok(JourneySummary {
        id: text(0)?.parse()?,
        client_id: text(1)?.parse()?,
        location_id: text(2)?.parse()?,
        date: NaiveDate::parse_from_str(&date, "%Y-%m-%d").map_err(|_| bad("date", &date))?,
        stage: stage.parse().map_err(|_| bad("stage", &stage))?,
        truck_number: row.get(5)?,
        crew,
        entry_count: count(7)?,
        photo_count: count(8)?,
        signature_count: count(9)?,
        note_count: count(10)?,
        gps_point_count: count(11)?,
        pending_changes: count(12)?,
    })
}
