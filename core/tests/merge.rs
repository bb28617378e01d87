//! Merge semantics between replicas (ARCHITECTURE.md, "Merge rules"), on real stores.
#![allow(clippy::unwrap_used)]

mod common;

use automerge::{ScalarValue, Value};
use common::{crew_journey, day, device, exchange, new_journey, send, toronto};
use crewsync_core::Error;
use crewsync_core::ids::UserId;
use crewsync_core::model::{NewEntry, Role, Stage, StepNumber};
use proptest::prelude::*;

fn text(value: &Value<'_>) -> String {
    match value {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => s.to_string(),
            other => format!("{other:?}"),
        },
        other => format!("{other:?}"),
    }
}

#[test]
fn concurrent_entries_and_notes_never_conflict() {
    let crew = device(Role::Driver);
    let dispatcher = device(Role::Dispatcher);
    let j = dispatcher
        .store
        .create_journey(&new_journey(&toronto(), day()))
        .unwrap();
    dispatcher
        .store
        .assign_crew(j, crew.user.user_id, Role::Driver)
        .unwrap();
    send(&dispatcher.store, &crew.store, j);

    // Both sides work offline.
    let mut crew_entries = Vec::new();
    for i in 0..40 {
        crew_entries.push(
            crew.store
                .add_entry(j, NewEntry::note(format!("crew {i}")))
                .unwrap(),
        );
    }
    let mut office_entries = Vec::new();
    for i in 0..25 {
        office_entries.push(
            dispatcher
                .store
                .add_entry(j, NewEntry::note(format!("office {i}")))
                .unwrap(),
        );
    }
    crew.store.add_note(j, "side door").unwrap();
    dispatcher
        .store
        .add_note(j, "customer called: gate code 4411")
        .unwrap();

    exchange(&crew.store, &dispatcher.store, j);
    let a = crew.store.journey(j).unwrap();
    let b = dispatcher.store.journey(j).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        crew.store.heads(j).unwrap(),
        dispatcher.store.heads(j).unwrap()
    );
    assert_eq!(a.entries.len(), 65);
    assert_eq!(
        a.notes.len(),
        2,
        "notes append; neither overwrites the other"
    );
    for id in crew_entries.iter().chain(&office_entries) {
        let values = crew
            .store
            .values_at(j, &["entries", &id.to_string()])
            .unwrap();
        assert_eq!(values.len(), 1, "entry {id} was never written concurrently");
    }
    // The list agrees with the document on both sides.
    let row = &crew.store.list_journeys(toronto().id, day()).unwrap()[0];
    assert_eq!((row.entry_count, row.note_count), (65, 2));
}

#[test]
fn a_field_written_concurrently_keeps_every_value() {
    // Two office roles: only the office changes the truck.
    let manager = device(Role::Manager);
    let dispatcher = device(Role::Dispatcher);
    let j = dispatcher
        .store
        .create_journey(&new_journey(&toronto(), day()))
        .unwrap();
    let checklist = dispatcher
        .store
        .add_checklist(
            j,
            StepNumber::new(1).unwrap(),
            "Truck",
            vec!["pads".into(), "straps".into()],
        )
        .unwrap();
    send(&dispatcher.store, &manager.store, j);

    dispatcher
        .store
        .set_truck_number(j, Some("T-7".into()))
        .unwrap();
    manager
        .store
        .set_truck_number(j, Some("T-9".into()))
        .unwrap();
    let step1 = StepNumber::new(1).unwrap();
    dispatcher
        .store
        .set_checklist_item(j, step1, checklist, "pads", true)
        .unwrap();
    manager
        .store
        .set_checklist_item(j, step1, checklist, "pads", false)
        .unwrap();
    exchange(&manager.store, &dispatcher.store, j);

    let truck = manager.store.values_at(j, &["truck_number"]).unwrap();
    let mut seen: Vec<String> = truck.iter().map(text).collect();
    let winner = manager.store.journey(j).unwrap().truck_number.unwrap();
    assert_eq!(
        seen[0], winner,
        "the first value is the one automerge shows"
    );
    seen.sort();
    assert_eq!(seen, vec!["T-7", "T-9"]);
    // Same winner everywhere (automerge's deterministic rule).
    assert_eq!(
        dispatcher.store.journey(j).unwrap().truck_number.unwrap(),
        winner
    );
    let path = [
        "steps",
        "1",
        "activities",
        &checklist.to_string(),
        "checklist",
        "pads",
    ];
    assert_eq!(
        manager.store.values_at(j, &path).unwrap().len(),
        2,
        "both ticks stay inspectable"
    );

    // Later unrelated work on either side does not erase the losing values …
    manager
        .store
        .add_entry(j, NewEntry::note("loading"))
        .unwrap();
    manager.store.advance_stage(j, Stage::EnRoute).unwrap();
    dispatcher
        .store
        .assign_crew(j, UserId::new(), Role::Mover)
        .unwrap();
    exchange(&manager.store, &dispatcher.store, j);
    assert_eq!(
        dispatcher
            .store
            .values_at(j, &["truck_number"])
            .unwrap()
            .len(),
        2
    );
    assert_eq!(dispatcher.store.values_at(j, &path).unwrap().len(), 2);

    // … only a new write to the field itself supersedes them.
    dispatcher
        .store
        .set_truck_number(j, Some("T-8".into()))
        .unwrap();
    exchange(&manager.store, &dispatcher.store, j);
    let truck = manager.store.values_at(j, &["truck_number"]).unwrap();
    assert_eq!(truck.iter().map(text).collect::<Vec<_>>(), vec!["T-8"]);
}

#[test]
fn concurrent_advances_to_the_same_stage_keep_both_stamps() {
    let a = device(Role::Driver);
    let b = device(Role::Mover);
    let j = crew_journey(&a, &[(b.user.user_id, Role::Mover)]);
    send(&a.store, &b.store, j);
    a.store.advance_stage(j, Stage::EnRoute).unwrap();
    b.store.advance_stage(j, Stage::EnRoute).unwrap();
    exchange(&a.store, &b.store, j);
    assert_eq!(a.store.journey(j).unwrap().stage, Stage::EnRoute);
    let stamps = a.store.values_at(j, &["stages", "EN_ROUTE"]).unwrap();
    assert_eq!(stamps.len(), 2, "who moved it and when, from both devices");
}

#[derive(Debug, Clone)]
enum Op {
    Advance { replica: usize, to: Stage },
    Entry { replica: usize },
    Truck { replica: usize, truck: u8 },
    Send { from: usize, to: usize },
}

fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![
        Just(Stage::EnRoute),
        Just(Stage::Onsite),
        Just(Stage::Completed),
        Just(Stage::Audited)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, stage()).prop_map(|(replica, to)| Op::Advance { replica, to }),
        (0..3usize).prop_map(|replica| Op::Entry { replica }),
        (0..3usize, 0..4u8).prop_map(|(replica, truck)| Op::Truck { replica, truck }),
        (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Send { from, to }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24 * soak()))]

    /// Three replicas edit and exchange in any order. Through every merge a replica's
    /// stage never decreases; at the end all agree (same heads, same journey), the
    /// stage is the furthest any replica reached, and no entry is lost. Delivery order
    /// does not matter: merging into a fresh replica in reverse order gives the same.
    #[test]
    fn replicas_converge_and_the_stage_never_regresses(ops in proptest::collection::vec(op(), 1..40)) {
        // Each does what its role may: the office the truck, the driver the work,
        // the auditor the audit; the rest is refused and changes nothing.
        let replicas = [device(Role::Dispatcher), device(Role::Driver), device(Role::Auditor)];
        let j = replicas[0].store.create_journey(&new_journey(&toronto(), day())).unwrap();
        replicas[0].store.assign_crew(j, replicas[1].user.user_id, Role::Driver).unwrap();
        for r in &replicas[1..] {
            send(&replicas[0].store, &r.store, j);
        }
        let mut furthest = Stage::MorningPrep;
        let mut entries = 0;
        for op in ops {
            match op {
                Op::Advance { replica, to } => {
                    if replicas[replica].store.advance_stage(j, to).is_ok() {
                        furthest = furthest.max(to);
                    }
                }
                Op::Entry { replica } => {
                    match replicas[replica].store.add_entry(j, NewEntry::note("x")) {
                        Ok(_) => entries += 1,
                        Err(Error::NotAllowed(_)) => {}
                        Err(e) => prop_assert!(false, "{e}"),
                    }
                }
                Op::Truck { replica, truck } => {
                    match replicas[replica].store.set_truck_number(j, Some(format!("T-{truck}"))) {
                        Ok(()) | Err(Error::NotAllowed(_)) => {}
                        Err(e) => prop_assert!(false, "{e}"),
                    }
                }
                Op::Send { from, to } if from != to => {
                    let before = replicas[to].store.journey(j).unwrap().stage;
                    send(&replicas[from].store, &replicas[to].store, j);
                    let after = replicas[to].store.journey(j).unwrap().stage;
                    prop_assert!(after >= before, "stage went from {before} to {after} in a merge");
                }
                Op::Send { .. } => {}
            }
        }
        for _ in 0..2 {
            for a in 0..3 {
                for b in 0..3 {
                    if a != b {
                        send(&replicas[a].store, &replicas[b].store, j);
                    }
                }
            }
        }
        let views: Vec<_> = replicas.iter().map(|r| r.store.journey(j).unwrap()).collect();
        let heads: Vec<_> = replicas.iter().map(|r| r.store.heads(j).unwrap()).collect();
        prop_assert!(views.windows(2).all(|w| w[0] == w[1]));
        prop_assert!(heads.windows(2).all(|w| w[0] == w[1]));
        prop_assert_eq!(views[0].stage, furthest);
        prop_assert_eq!(views[0].entries.len(), entries);

        let fresh = device(Role::Auditor);
        for r in replicas.iter().rev() {
            send(&r.store, &fresh.store, j);
        }
        prop_assert_eq!(fresh.store.journey(j).unwrap(), views[0].clone());
        prop_assert_eq!(fresh.store.heads(j).unwrap(), heads[0].clone());
    }
}

fn soak() -> u32 {
    std::env::var("CREWSYNC_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}
