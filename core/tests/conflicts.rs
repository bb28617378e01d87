//! The conflict report (issue 7 point 1): every concurrently written field, each
//! value with its writer, the current one and why — checked against automerge's
//! own `get_all` and `get` on property-generated concurrent edits.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use automerge::{ReadDoc, ScalarValue, Value};
use common::{Device, day, device, exchange, new_journey, send, toronto};
use crewsync_core::document::conflicts::{FieldConflict, FieldPolicy};
use crewsync_core::ids::{JourneyId, UserId};
use crewsync_core::model::{Role, Timestamp};
use proptest::prelude::*;

fn soak() -> u32 {
    std::env::var("CREWSYNC_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Two dispatchers, a driver and a mover on one journey they all hold.
fn crew() -> (Vec<Device>, JourneyId) {
    let devices = vec![
        device(Role::Dispatcher),
        device(Role::Dispatcher),
        device(Role::Driver),
        device(Role::Mover),
    ];
    let j = devices[0]
        .store
        .create_journey(&new_journey(&toronto(), day()))
        .unwrap();
    devices[0]
        .store
        .assign_crew(j, devices[2].user.user_id, Role::Driver)
        .unwrap();
    devices[0]
        .store
        .assign_crew(j, devices[3].user.user_id, Role::Mover)
        .unwrap();
    for d in &devices[1..] {
        send(&devices[0].store, &d.store, j);
    }
    (devices, j)
}

fn converge(devices: &[Device], j: JourneyId) {
    for _ in 0..2 {
        for a in devices {
            for b in devices {
                if !std::ptr::eq(a, b) {
                    send(&a.store, &b.store, j);
                }
            }
        }
    }
}

fn text(value: &Value<'_>) -> serde_json::Value {
    match value {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => serde_json::Value::String(s.to_string()),
            ScalarValue::Int(i) | ScalarValue::Timestamp(i) => (*i).into(),
            ScalarValue::Null => serde_json::Value::Null,
            other => panic!("unexpected scalar {other:?}"),
        },
        other => panic!("unexpected object {other:?}"),
    }
}

#[test]
fn two_dispatchers_setting_the_truck_offline_are_both_named() {
    let (devices, j) = crew();
    let (a, b) = (&devices[0], &devices[1]);
    a.store.set_truck_number(j, Some("T-40".into())).unwrap();
    b.store.set_truck_number(j, Some("T-77".into())).unwrap();
    exchange(&a.store, &b.store, j);

    let report = a.store.conflicts(j).unwrap();
    assert_eq!(report.len(), 1, "{report:#?}");
    let conflict = &report[0];
    assert_eq!(conflict.path, ["truck_number"]);
    assert_eq!(conflict.policy, FieldPolicy::DispatcherWins);
    let shown = a.store.journey(j).unwrap().truck_number.unwrap();
    assert_eq!(conflict.values[0].value, serde_json::json!(shown));
    assert!(conflict.values[0].current && !conflict.values[1].current);
    let writers: BTreeMap<String, UserId> = conflict
        .values
        .iter()
        .map(|v| {
            let writer = v.writer.as_ref().unwrap();
            assert_eq!(writer.role, Role::Dispatcher);
            assert_eq!(v.action.as_deref(), Some("set_truck_number"));
            (v.value.as_str().unwrap().to_owned(), writer.user_id)
        })
        .collect();
    assert_eq!(writers["T-40"], a.user.user_id);
    assert_eq!(writers["T-77"], b.user.user_id);
    assert!(conflict.why.contains("highest operation counter"));
    check_truthful(a, j, &report).unwrap();
    // Every replica tells the same story.
    assert_eq!(b.store.conflicts(j).unwrap(), report);
}

#[test]
fn a_journey_without_concurrent_writes_has_no_conflicts() {
    let (devices, j) = crew();
    devices[0]
        .store
        .set_truck_number(j, Some("T-1".into()))
        .unwrap();
    send(&devices[0].store, &devices[1].store, j);
    devices[1]
        .store
        .set_truck_number(j, Some("T-2".into()))
        .unwrap();
    converge(&devices, j);
    assert_eq!(devices[0].store.conflicts(j).unwrap(), Vec::new());
}

#[derive(Debug, Clone)]
enum Op {
    Truck { replica: usize },
    Times { replica: usize, start: i64 },
    Note { replica: usize },
    Send { from: usize, to: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4usize).prop_map(|replica| Op::Truck { replica }),
        (0..4usize, 0..1_000i64).prop_map(|(replica, start)| Op::Times { replica, start }),
        (0..4usize).prop_map(|replica| Op::Note { replica }),
        (0..4usize, 0..4usize).prop_map(|(from, to)| Op::Send { from, to }),
    ]
}

/// The report against automerge itself: each reported field's values are exactly
/// `get_all`'s, the current one is `get`'s, and every field `get_all` shows
/// several values for is reported.
fn check_truthful(d: &Device, j: JourneyId, report: &[FieldConflict]) -> Result<(), TestCaseError> {
    d.store
        .with_document(j, |doc| {
            let am = doc.automerge();
            for conflict in report {
                let path: Vec<&str> = conflict.path.iter().map(String::as_str).collect();
                let all = doc.values_at(&path)?;
                assert_eq!(all.len(), conflict.values.len(), "{path:?}");
                if let [key] = path.as_slice() {
                    let (current, _) = am.get(automerge::ROOT, *key)?.unwrap();
                    assert_eq!(conflict.values[0].value, text(&current), "{path:?}");
                    let reported: Vec<_> =
                        conflict.values.iter().map(|v| v.value.clone()).collect();
                    let actual: Vec<_> = all.iter().map(text).collect();
                    assert_eq!(reported, actual, "{path:?}");
                }
            }
            for key in ["truck_number", "start_time", "end_time"] {
                let several = doc.values_at(&[key])?.len() > 1;
                let reported = report.iter().any(|c| c.path == [key]);
                assert_eq!(several, reported, "{key}: automerge holds several values");
            }
            Ok(())
        })
        .map_err(|e| TestCaseError::fail(e.to_string()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24 * soak()))]

    /// Replicas edit offline and exchange in any order; after they converge, the
    /// report is truthful, names the device that wrote each value, and is the
    /// same on every replica.
    #[test]
    fn the_report_matches_automerge_on_generated_concurrent_edits(ops in proptest::collection::vec(op(), 1..40)) {
        let (devices, j) = crew();
        // Which user wrote which value: every written value is unique.
        let mut wrote: BTreeMap<String, UserId> = BTreeMap::new();
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Truck { replica } => {
                    let truck = format!("T-{replica}-{n}");
                    // Crews may not set the truck; the refusal writes nothing.
                    if devices[replica].store.set_truck_number(j, Some(truck.clone())).is_ok() {
                        wrote.insert(serde_json::json!(truck).to_string(), devices[replica].user.user_id);
                    }
                }
                Op::Times { replica, start } => {
                    let at = Timestamp(1_800_000_000_000 + start * 1_000 + n as i64);
                    if devices[replica].store.set_times(j, Some(at), None).is_ok() {
                        wrote.insert(serde_json::json!(at.millis()).to_string(), devices[replica].user.user_id);
                    }
                }
                Op::Note { replica } => {
                    devices[replica].store.add_note(j, &format!("note {n}")).unwrap();
                }
                Op::Send { from, to } if from != to => send(&devices[from].store, &devices[to].store, j),
                Op::Send { .. } => {}
            }
        }
        converge(&devices, j);
        let report = devices[0].store.conflicts(j).unwrap();
        check_truthful(&devices[0], j, &report)?;
        for conflict in &report {
            prop_assert!(conflict.policy != FieldPolicy::Append, "append-only fields never conflict: {:?}", conflict.path);
            prop_assert_eq!(conflict.values.iter().filter(|v| v.current).count(), 1);
            for value in &conflict.values {
                if let Some(author) = wrote.get(&value.value.to_string()) {
                    prop_assert_eq!(value.writer.as_ref().map(|w| w.user_id), Some(*author), "{:?}", conflict.path);
                }
            }
        }
        for d in &devices[1..] {
            prop_assert_eq!(&d.store.conflicts(j).unwrap(), &report);
        }
    }
}
