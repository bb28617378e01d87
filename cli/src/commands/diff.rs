//! `crewsync diff A B`: two replicas compared, journey by journey.

use std::collections::BTreeSet;

use comfy_table::Cell;
use crewsync_core::document::compare::{ReplicaDiff, compare};
use crewsync_core::ids::JourneyId;
use serde::Serialize;

use crate::error::CliError;
use crate::output::{self, Output};
use crate::source::Source;

#[derive(Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum JourneyDiff {
    Same {
        journey: JourneyId,
    },
    OnlyInA {
        journey: JourneyId,
    },
    OnlyInB {
        journey: JourneyId,
    },
    Differ {
        journey: JourneyId,
        diff: ReplicaDiff,
    },
}

/// Prints the differences; `Found` (exit 1) when the replicas differ.
pub fn run(a: &Source, b: &Source, only: &[JourneyId], out: Output) -> Result<(), CliError> {
    let (in_a, in_b): (BTreeSet<JourneyId>, BTreeSet<JourneyId>) = if only.is_empty() {
        (
            a.journeys(&[])?.into_iter().collect(),
            b.journeys(&[])?.into_iter().collect(),
        )
    } else {
        (
            only.iter().copied().collect(),
            only.iter().copied().collect(),
        )
    };
    let mut report = Vec::new();
    for journey in in_a.union(&in_b).copied() {
        let doc_a = present(a.document(journey))?;
        let doc_b = present(b.document(journey))?;
        report.push(match (doc_a, doc_b) {
            (Some(x), Some(y)) => {
                let diff = compare(&x, &y)?;
                if diff.is_empty() {
                    JourneyDiff::Same { journey }
                } else {
                    JourneyDiff::Differ { journey, diff }
                }
            }
            (Some(_), None) => JourneyDiff::OnlyInA { journey },
            (None, Some(_)) => JourneyDiff::OnlyInB { journey },
            (None, None) => {
                return Err(CliError::NotFound(format!(
                    "journey {journey} is in neither replica"
                )));
            }
        });
    }
    let differing = report
        .iter()
        .filter(|d| !matches!(d, JourneyDiff::Same { .. }))
        .count();
    if out.json {
        out.json(&report)?;
    } else {
        print(a, b, &report);
    }
    if differing == 0 {
        Ok(())
    } else {
        Err(CliError::Found(format!(
            "{differing} of {} journeys differ",
            report.len()
        )))
    }
}

/// A journey missing from a replica is a difference, not an error.
fn present<T>(found: Result<T, CliError>) -> Result<Option<T>, CliError> {
    match found {
        Ok(value) => Ok(Some(value)),
        Err(CliError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn print(a: &Source, b: &Source, report: &[JourneyDiff]) {
    println!("A = {}\nB = {}", a.describe(), b.describe());
    for item in report {
        match item {
            JourneyDiff::Same { journey } => println!("journey {journey}: same"),
            JourneyDiff::OnlyInA { journey } => println!("journey {journey}: only in A"),
            JourneyDiff::OnlyInB { journey } => println!("journey {journey}: only in B"),
            JourneyDiff::Differ { journey, diff } => {
                println!(
                    "journey {journey}: B lacks {} of A's changes, A lacks {} of B's",
                    diff.only_in_a.len(),
                    diff.only_in_b.len()
                );
                if !diff.fields.is_empty() {
                    let mut table = output::table(&["field", "A", "B"]);
                    for field in &diff.fields {
                        let show = |v: &Option<serde_json::Value>| {
                            v.as_ref().map_or("(absent)".into(), output::value)
                        };
                        table.add_row(vec![
                            Cell::new(&field.path),
                            Cell::new(show(&field.a)),
                            Cell::new(show(&field.b)),
                        ]);
                    }
                    println!("{table}");
                }
            }
        }
    }
}
