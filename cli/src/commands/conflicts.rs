//! `crewsync conflicts`: fields written concurrently, each value's writer, the
//! current one and why; `restore` makes a kept value current again.

use std::collections::HashMap;

use comfy_table::Cell;
use crewsync_core::JourneyAction;
use crewsync_core::document::conflicts::{FieldConflict, WrittenValue};
use crewsync_core::ids::{JourneyId, UserId};
use crewsync_core::model::{Role, Timestamp};
use serde::Serialize;

use crate::error::CliError;
use crate::output::{self, Output};
use crate::source::Source;

#[derive(Serialize)]
struct JourneyConflicts {
    journey: JourneyId,
    conflicts: Vec<Reported>,
}

#[derive(Serialize)]
struct Reported {
    #[serde(flatten)]
    conflict: FieldConflict,
    /// When the server received each value's change (same order as `values`;
    /// `null` on a device store).
    server_times_ms: Vec<Option<i64>>,
}

pub fn list(source: &Source, only: &[JourneyId], out: Output) -> Result<(), CliError> {
    let mut report = Vec::new();
    for journey in source.journeys(only)? {
        let doc = source.document(journey)?;
        let found = doc.conflicts()?;
        if found.is_empty() {
            continue;
        }
        let times = source.server_times(journey)?;
        report.push(JourneyConflicts {
            journey,
            conflicts: found
                .into_iter()
                .map(|conflict| Reported {
                    server_times_ms: server_times(&conflict.values, &times),
                    conflict,
                })
                .collect(),
        });
    }
    if out.json {
        return out.json(&report);
    }
    if report.is_empty() {
        println!("no conflicts in {}", source.describe());
        return Ok(());
    }
    for journey in &report {
        for reported in &journey.conflicts {
            let conflict = &reported.conflict;
            println!(
                "journey {}  field {}  — policy: {}",
                journey.journey,
                conflict.path.join("/"),
                conflict.policy
            );
            let mut table = output::table(&[
                "",
                "value",
                "writer",
                "role",
                "device",
                "device time",
                "server time",
                "op",
            ]);
            for (value, server) in conflict.values.iter().zip(&reported.server_times_ms) {
                let writer = value.writer.as_ref();
                table.add_row(vec![
                    output::current_cell(value.current),
                    Cell::new(output::value(&value.value)),
                    Cell::new(
                        writer.map_or("unknown".into(), |w| output::short(&w.user_id.to_string())),
                    ),
                    Cell::new(writer.map_or("—".into(), |w| w.role.to_string())),
                    Cell::new(
                        writer.map_or("—".into(), |w| output::short(&w.device_id.to_string())),
                    ),
                    Cell::new(output::time(value.device_time_ms)),
                    Cell::new(output::time(*server)),
                    Cell::new(&value.op),
                ]);
            }
            println!("{table}");
            println!("why: {}\n", conflict.why);
        }
    }
    Ok(())
}

fn server_times(values: &[WrittenValue], times: &HashMap<String, i64>) -> Vec<Option<i64>> {
    values
        .iter()
        .map(|v| v.change.as_ref().and_then(|c| times.get(c).copied()))
        .collect()
}

/// Makes the value written by `op` at `path` current again, as a new change by
/// the store's signed-in user (checked by the same rules as any edit; the server
/// audits it when the device syncs).
pub fn restore(
    source: &Source,
    journey: JourneyId,
    path: &str,
    op: &str,
    acting: Option<UserId>,
    out: Output,
) -> Result<(), CliError> {
    let store = source.device_store().ok_or_else(|| {
        CliError::Usage(
            "restore writes a change: run it on a device store (--store), which syncs it".into(),
        )
    })?;
    let path: Vec<String> = path.split('/').map(str::to_owned).collect();
    let doc = source.document(journey)?;
    let conflict = doc
        .conflicts()?
        .into_iter()
        .find(|c| c.path == path)
        .ok_or_else(|| {
            CliError::NotFound(format!(
                "field {} of journey {journey} holds no concurrent values",
                path.join("/")
            ))
        })?;
    let chosen = conflict.values.iter().find(|v| v.op == op).ok_or_else(|| {
        CliError::NotFound(format!(
            "no value of {} was written by op {op}; the report lists each value's op",
            path.join("/")
        ))
    })?;
    if chosen.current {
        return Err(CliError::Usage(format!(
            "the value written by {op} is already current"
        )));
    }
    let view = store.journey(journey)?;
    let action = action_for(&path, &chosen.value, view.start_time, view.end_time)?;
    store.set_active_user(Some(acting_user(store, acting)?))?;
    store.apply(journey, &action)?;
    let after = store.values_at(
        journey,
        &path.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    if out.json {
        out.json(&serde_json::json!({
            "journey": journey,
            "field": path.join("/"),
            "restored": chosen.value,
            "values_now": after.len(),
        }))
    } else {
        println!(
            "restored {} of journey {journey} to {} (written by {}); it syncs with the device's next sync",
            path.join("/"),
            output::value(&chosen.value),
            chosen
                .writer
                .as_ref()
                .map_or("an unknown writer".into(), |w| format!(
                    "{} {}",
                    w.role, w.user_id
                )),
        );
        Ok(())
    }
}

/// The user the restore is made by: `--as`, or the one user signed in on the
/// device. Their role is the one their sign-in gave, and the same rules apply
/// as to any edit of theirs.
fn acting_user(
    store: &crewsync_core::DeviceStore,
    acting: Option<UserId>,
) -> Result<crewsync_core::model::ActiveUser, CliError> {
    let user = match acting {
        Some(user) => user,
        None => match store.account_users()?.as_slice() {
            [only] => *only,
            [] => {
                return Err(CliError::Usage(
                    "nobody has signed in on this device store: a restore is made by a signed-in user"
                        .into(),
                ));
            }
            several => {
                return Err(CliError::Usage(format!(
                    "{} users signed in on this device: say which with --as USER_ID",
                    several.len()
                )));
            }
        },
    };
    let account = store.account(user)?.ok_or_else(|| {
        CliError::NotFound(format!("user {user} has not signed in on this device"))
    })?;
    Ok(crewsync_core::model::ActiveUser {
        user_id: user,
        role: account.user.role,
    })
}

/// The edit that writes `value` at `path`: only fields whose value an action can
/// set whole are restorable.
fn action_for(
    path: &[String],
    value: &serde_json::Value,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
) -> Result<JourneyAction, CliError> {
    let keys: Vec<&str> = path.iter().map(String::as_str).collect();
    let time = |v: &serde_json::Value| -> Result<Option<Timestamp>, CliError> {
        match v {
            serde_json::Value::Null => Ok(None),
            other => other
                .as_i64()
                .map(|ms| Some(Timestamp(ms)))
                .ok_or_else(|| CliError::Other(format!("not a time: {other}"))),
        }
    };
    match keys.as_slice() {
        ["truck_number"] => Ok(JourneyAction::SetTruckNumber {
            truck_number: value.as_str().map(str::to_owned),
        }),
        ["start_time"] => Ok(JourneyAction::SetTimes {
            start: time(value)?,
            end,
        }),
        ["end_time"] => Ok(JourneyAction::SetTimes {
            start,
            end: time(value)?,
        }),
        ["crew", user] => {
            let user = UserId::parse(user)?;
            let role: Role = value
                .get("role")
                .and_then(|r| serde_json::from_value(r.clone()).ok())
                .ok_or_else(|| CliError::Other(format!("crew value without a role: {value}")))?;
            Ok(JourneyAction::AssignCrew { user, role })
        }
        _ => Err(CliError::Usage(format!(
            "{} cannot be restored from the CLI: only the truck number, start and end times and crew members",
            path.join("/")
        ))),
    }
}
