//! `crewsync history`: a journey's changes as a timeline.

use comfy_table::Cell;
use crewsync_core::document::history::HistoryEntry;
use crewsync_core::ids::JourneyId;
use serde::Serialize;

use crate::error::CliError;
use crate::output::{self, Output};
use crate::source::Source;

#[derive(Serialize)]
struct Line {
    #[serde(flatten)]
    entry: HistoryEntry,
    /// When the server received the change (`null` on a device store, or for a
    /// change the server does not have).
    server_time_ms: Option<i64>,
}

pub fn run(
    source: &Source,
    journey: JourneyId,
    field: Option<&str>,
    out: Output,
) -> Result<(), CliError> {
    let doc = source.document(journey)?;
    let times = source.server_times(journey)?;
    let field: Option<Vec<String>> =
        field.map(|f| f.split(['/', '.']).map(str::to_owned).collect());
    let lines: Vec<Line> = doc
        .history()?
        .into_iter()
        .filter(|entry| field.as_ref().is_none_or(|f| entry.wrote(f)))
        .map(|entry| Line {
            server_time_ms: times.get(&entry.change).copied(),
            entry,
        })
        .collect();
    if out.json {
        return out.json(&lines);
    }
    let mut table = output::table(&[
        "device time",
        "server time",
        "writer",
        "role",
        "device",
        "action",
        "wrote",
        "change",
    ]);
    for line in &lines {
        let e = &line.entry;
        let writer = e.writer.as_ref();
        let wrote: Vec<String> = e
            .writes
            .iter()
            .map(|w| format!("{} {}", w.act, w.path.join("/")))
            .take(4)
            .collect();
        let more = e.writes.len().saturating_sub(4);
        table.add_row(vec![
            Cell::new(output::time(Some(e.device_time_ms))),
            Cell::new(output::time(line.server_time_ms)),
            Cell::new(writer.map_or("unknown".into(), |w| output::short(&w.user_id.to_string()))),
            Cell::new(writer.map_or("—".into(), |w| w.role.to_string())),
            Cell::new(writer.map_or("—".into(), |w| output::short(&w.device_id.to_string()))),
            Cell::new(e.action.clone().unwrap_or_default()),
            Cell::new(if more > 0 {
                format!("{}\n… {more} more", wrote.join("\n"))
            } else {
                wrote.join("\n")
            }),
            Cell::new(output::short(&e.change)),
        ]);
    }
    println!("{table}");
    println!("{} changes", lines.len());
    Ok(())
}
