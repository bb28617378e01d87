//! `crewsync inspect`: a journey document as JSON.

use automerge::ROOT;
use crewsync_core::document::json::to_json;
use crewsync_core::ids::JourneyId;

use crate::error::CliError;
use crate::output::Output;
use crate::source::Source;

pub fn run(source: &Source, journey: JourneyId, out: Output) -> Result<(), CliError> {
    let doc = source.document(journey)?;
    let whole = to_json(
        doc.automerge(),
        &automerge::Value::Object(automerge::ObjType::Map),
        &ROOT,
    )?;
    // The document is JSON either way; --json only makes it compact for tools.
    if out.json {
        println!("{whole}");
        Ok(())
    } else {
        out.json(&whole)
    }
}
