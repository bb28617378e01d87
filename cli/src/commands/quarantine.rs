//! `crewsync quarantine`: changes the server refused or held, with reasons.

use comfy_table::Cell;
use crewsync_core::ids::JourneyId;

use crate::error::CliError;
use crate::output::{self, Output};
use crate::source::Source;

pub fn run(source: &Source, only: &[JourneyId], out: Output) -> Result<(), CliError> {
    let mut all = Vec::new();
    for journey in source.journeys(only)? {
        all.extend(source.quarantine(journey)?);
    }
    if out.json {
        return out.json(&all);
    }
    if all.is_empty() {
        println!("nothing in quarantine in {}", source.describe());
        return Ok(());
    }
    let mut table = output::table(&["journey", "change", "kind", "reason", "at"]);
    for item in &all {
        table.add_row(vec![
            Cell::new(output::short(&item.journey.to_string())),
            Cell::new(output::short(&item.change)),
            Cell::new(&item.kind),
            Cell::new(&item.reason),
            Cell::new(output::time(Some(item.at_ms))),
        ]);
    }
    println!("{table}");
    Ok(())
}
