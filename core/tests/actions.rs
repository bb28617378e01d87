//! Crew actions through the store: what they record, and that invalid ones change nothing.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{TimeZone, Utc};
use common::{crew_journey, day, device, new_journey, toronto};
use crewsync_core::Error;
use crewsync_core::ids::{ActivityId, JourneyId, LocationId, UserId};
use crewsync_core::model::{
    ActivityKind, EntryKind, GpsPoint, Location, NewEntry, Role, Stage, StepNumber, StepStatus,
    Timestamp,
};

fn step(n: u8) -> StepNumber {
    StepNumber::new(n).unwrap()
}

#[test]
fn a_crew_day_is_recorded_in_the_journey() {
    let d = device(Role::Driver);
    let s = &d.store;
    let mover = UserId::new();
    let j = crew_journey(&d, &[(mover, Role::Mover)]);
    s.start_step(j, step(1)).unwrap();
    let checklist = s
        .add_checklist(
            j,
            step(1),
            "Truck check",
            vec!["pads".into(), "dollies".into(), "straps".into()],
        )
        .unwrap();
    s.set_checklist_item(j, step(1), checklist, "dollies", true)
        .unwrap();
    s.complete_step(j, step(1)).unwrap();
    s.advance_stage(j, Stage::EnRoute).unwrap();
    s.add_note(j, "Customer asked us to use the side door")
        .unwrap();
    let photo = s
        .add_entry(
            j,
            NewEntry {
                kind: EntryKind::Photo,
                tag: Some("SC".into()),
                ..NewEntry::note("scratch on dresser")
            },
        )
        .unwrap();
    s.add_gps_points(
        j,
        vec![GpsPoint {
            lat: 43.65,
            lon: -79.38,
            accuracy_m: Some(5.0),
            at: Timestamp(1_764_000_000_000),
        }],
    )
    .unwrap();
    s.set_times(j, Some(Timestamp(1_764_000_000_000)), None)
        .unwrap();

    let journey = s.journey(j).unwrap();
    assert_eq!(journey.stage, Stage::EnRoute);
    assert_eq!(journey.truck_number.as_deref(), Some("T-12"));
    assert_eq!(journey.crew.len(), 2);
    assert_eq!(journey.steps.len(), 4);
    assert_eq!(journey.steps[0].status, StepStatus::Completed);
    assert_eq!(journey.steps[1].status, StepStatus::Pending);
    assert!(journey.steps[3].requires_approval);
    let items = &journey.steps[0].activities[0].checklist;
    assert_eq!(
        items
            .iter()
            .map(|(k, i)| (k.as_str(), i.checked))
            .collect::<Vec<_>>(),
        vec![("pads", false), ("dollies", true), ("straps", false)]
    );
    assert_eq!(items[1].1.changed.as_ref().unwrap().by, d.user.user_id);
    assert_eq!(journey.notes.len(), 1);
    assert_eq!(journey.entries.len(), 1);
    assert_eq!(journey.entries[0].id, photo);
    assert_eq!(journey.entries[0].author, d.user.user_id);
    assert_eq!(journey.gps_point_count, 1);
    assert_eq!(journey.start_time, Some(Timestamp(1_764_000_000_000)));

    // The list shows the same, from the summary table.
    let list = s.list_journeys(toronto().id, day()).unwrap();
    assert_eq!(list.len(), 1);
    let row = &list[0];
    assert_eq!(
        (row.id, row.stage, row.entry_count, row.photo_count),
        (j, Stage::EnRoute, 1, 1)
    );
    assert_eq!((row.note_count, row.gps_point_count), (1, 1));
    assert_eq!(row.crew.len(), 2);
    // create + 2 assigns + start + checklist + tick + complete + stage + note + entry + gps + times
    assert_eq!(row.pending_changes, 12);
    assert_eq!(s.outbox_len().unwrap(), 12);
}

/// Every invalid action returns its error and leaves document, outbox and list unchanged.
#[test]
fn invalid_actions_change_nothing() {
    let d = device(Role::Driver);
    let s = &d.store;
    let j = crew_journey(&d, &[]);
    s.advance_stage(j, Stage::Onsite).unwrap();
    s.start_step(j, step(1)).unwrap();
    s.complete_step(j, step(1)).unwrap();
    let checklist = s
        .add_checklist(j, step(2), "Walkthrough", vec!["floors".into()])
        .unwrap();
    let note_activity = s
        .add_activity(j, step(2), ActivityKind::Note, None, Some("ok".into()))
        .unwrap();

    let before = (
        s.heads(j).unwrap(),
        s.outbox_len().unwrap(),
        s.list_journeys(toronto().id, day()).unwrap(),
    );
    let check = |result: crewsync_core::Result<()>, expect: &dyn Fn(&Error) -> bool| {
        let err = result.unwrap_err();
        assert!(expect(&err), "unexpected error: {err}");
        let after = (
            s.heads(j).unwrap(),
            s.outbox_len().unwrap(),
            s.list_journeys(toronto().id, day()).unwrap(),
        );
        assert_eq!(after, before, "{err} changed something");
    };
    check(s.advance_stage(j, Stage::EnRoute), &|e| {
        matches!(
            e,
            Error::StageNotForward {
                from: Stage::Onsite,
                to: Stage::EnRoute
            }
        )
    });
    check(s.advance_stage(j, Stage::Onsite), &|e| {
        matches!(e, Error::StageNotForward { .. })
    });
    check(s.complete_step(j, step(1)), &|e| {
        matches!(e, Error::StepAlreadyCompleted(_))
    });
    check(s.start_step(j, step(1)), &|e| {
        matches!(e, Error::StepAlreadyStarted(_))
    });
    check(s.complete_step(j, step(3)), &|e| {
        matches!(e, Error::StepNotStarted(_))
    });
    // What the driver may not do is refused the same way (`Error::NotAllowed`).
    check(s.approve_step(j, step(1), None), &|e| {
        matches!(e, Error::NotAllowed(_))
    });
    check(s.set_truck_number(j, Some("T-99".into())), &|e| {
        matches!(e, Error::NotAllowed(_))
    });
    check(s.unassign_crew(j, d.user.user_id), &|e| {
        matches!(e, Error::NotAllowed(_))
    });
    check(
        s.set_checklist_item(j, step(2), checklist, "ceiling", true),
        &|e| matches!(e, Error::UnknownChecklistItem { .. }),
    );
    check(
        s.set_checklist_item(j, step(2), ActivityId::new(), "floors", true),
        &|e| matches!(e, Error::UnknownActivity { .. }),
    );
    check(
        s.set_checklist_item(j, step(2), note_activity, "floors", true),
        &|e| matches!(e, Error::NotAChecklist(_)),
    );
    check(s.add_note(j, "   ").map(|_| ()), &|e| {
        matches!(e, Error::InvalidInput(_))
    });
    check(s.add_note(j, &"x".repeat(10_001)).map(|_| ()), &|e| {
        matches!(e, Error::InvalidInput(_))
    });
    // The office's invalid actions, on the same tablet.
    s.set_active_user(Some(crewsync_core::model::ActiveUser {
        user_id: UserId::new(),
        role: Role::Manager,
    }))
    .unwrap();
    check(s.approve_step(j, step(3), None), &|e| {
        matches!(e, Error::StepNotCompleted(_))
    });
    check(s.unassign_crew(j, UserId::new()), &|e| {
        matches!(e, Error::NotAssigned(_))
    });
    s.set_active_user(Some(d.user.clone())).unwrap();
    check(
        s.add_gps_points(
            j,
            vec![GpsPoint {
                lat: 91.0,
                lon: 0.0,
                accuracy_m: None,
                at: Timestamp(0),
            }],
        ),
        &|e| matches!(e, Error::InvalidInput(_)),
    );
    check(s.add_gps_points(j, vec![]), &|e| {
        matches!(e, Error::InvalidInput(_))
    });
    check(
        s.set_times(j, Some(Timestamp(10)), Some(Timestamp(5))),
        &|e| matches!(e, Error::InvalidInput(_)),
    );
    check(
        s.add_checklist(j, step(1), "dup", vec!["a".into(), "a".into()])
            .map(|_| ()),
        &|e| matches!(e, Error::InvalidInput(_)),
    );
    check(
        s.add_checklist(j, step(1), "empty", vec![]).map(|_| ()),
        &|e| matches!(e, Error::InvalidInput(_)),
    );

    // Unknown journeys and malformed ids are refused before anything is touched.
    assert!(matches!(
        s.advance_stage(JourneyId::new(), Stage::EnRoute),
        Err(Error::UnknownJourney(_))
    ));
    assert!(matches!(
        JourneyId::parse("12345"),
        Err(Error::InvalidId {
            kind: "journey",
            ..
        })
    ));
    assert!(matches!(StepNumber::new(5), Err(Error::InvalidInput(_))));
    assert_eq!(s.outbox_len().unwrap(), before.1);
}

#[test]
fn writes_need_an_active_user_and_a_known_location() {
    let d = device(Role::Dispatcher);
    let mut unknown = new_journey(&toronto(), day());
    unknown.location_id = LocationId::new();
    assert!(matches!(
        d.store.create_journey(&unknown),
        Err(Error::UnknownLocation(_))
    ));
    let bad_tz = Location {
        timezone: "Mars/Olympus".into(),
        ..toronto()
    };
    assert!(matches!(
        d.store.upsert_location(&bad_tz),
        Err(Error::InvalidInput(_))
    ));

    d.store.set_active_user(None).unwrap();
    assert!(matches!(
        d.store.create_journey(&new_journey(&toronto(), day())),
        Err(Error::NoActiveUser)
    ));
    assert_eq!(d.store.outbox_len().unwrap(), 0);
}

#[test]
fn assigning_twice_in_the_same_role_is_a_no_op() {
    let d = device(Role::Dispatcher);
    let j = d
        .store
        .create_journey(&new_journey(&toronto(), day()))
        .unwrap();
    let mover = UserId::new();
    d.store.assign_crew(j, mover, Role::Mover).unwrap();
    let heads = d.store.heads(j).unwrap();
    d.store.assign_crew(j, mover, Role::Mover).unwrap();
    assert_eq!(d.store.heads(j).unwrap(), heads);
    d.store.assign_crew(j, mover, Role::Driver).unwrap();
    assert_ne!(d.store.heads(j).unwrap(), heads);
    d.store.unassign_crew(j, mover).unwrap();
    assert!(d.store.journey(j).unwrap().crew.is_empty());
}

/// "Today" is the location's calendar day: at 03:45 UTC it is still the 23rd in
/// Vancouver (19:45) but already the 24th in St. John's (00:15, a half-hour offset).
#[test]
fn today_is_decided_by_the_location_timezone() {
    let d = device(Role::Dispatcher);
    let vancouver = Location {
        id: LocationId::new(),
        name: "VANCOUVER".into(),
        timezone: "America/Vancouver".into(),
        ..toronto()
    };
    let st_johns = Location {
        id: LocationId::new(),
        name: "ST JOHN'S".into(),
        timezone: "America/St_Johns".into(),
        ..toronto()
    };
    d.store.upsert_location(&vancouver).unwrap();
    d.store.upsert_location(&st_johns).unwrap();
    let nov24 = day();
    let nov23 = nov24.pred_opt().unwrap();
    let van_23 = d
        .store
        .create_journey(&new_journey(&vancouver, nov23))
        .unwrap();
    let van_24 = d
        .store
        .create_journey(&new_journey(&vancouver, nov24))
        .unwrap();
    let stj_24 = d
        .store
        .create_journey(&new_journey(&st_johns, nov24))
        .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 3, 45, 0).unwrap();

    let ids = |loc: LocationId| -> Vec<JourneyId> {
        d.store
            .list_journeys_today(loc, now)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(ids(vancouver.id), vec![van_23]);
    assert_eq!(ids(st_johns.id), vec![stj_24]);
    assert_eq!(
        d.store.list_journeys(vancouver.id, nov24).unwrap()[0].id,
        van_24
    );
    assert!(matches!(
        d.store.list_journeys_today(LocationId::new(), now),
        Err(Error::UnknownLocation(_))
    ));
}

#[test]
fn recorded_gps_fixes_are_durable_and_batched() {
    let d = device(Role::Driver);
    let j = crew_journey(&d, &[]);
    let point = |i: i64| GpsPoint {
        lat: 43.6 + i as f64 * 1e-4,
        lon: -79.4,
        accuracy_m: Some(3.0),
        at: Timestamp(1_764_000_000_000 + i * 10_000),
    };
    let heads = d.store.heads(j).unwrap();
    for i in 0..29 {
        d.store.record_gps_point(j, point(i)).unwrap();
    }
    // Below a batch: nothing in the document yet, but every fix is in the track.
    assert_eq!(d.store.heads(j).unwrap(), heads);
    assert_eq!(d.store.gps_track(j).unwrap().len(), 29);
    d.store.record_gps_point(j, point(29)).unwrap();
    assert_eq!(d.store.journey(j).unwrap().gps_point_count, 30);
    assert_eq!(d.store.outbox_len().unwrap(), 3); // creation + assignment + one batch

    for i in 30..35 {
        d.store.record_gps_point(j, point(i)).unwrap();
    }
    // The buffer survives a restart and is flushed on demand.
    let path = d.store.path().to_path_buf();
    drop(d.store);
    let reopened = crewsync_core::DeviceStore::open(&path, Default::default()).unwrap();
    reopened.set_active_user(Some(d.user.clone())).unwrap();
    assert_eq!(reopened.gps_track(j).unwrap().len(), 35);
    reopened.flush_gps(j).unwrap();
    let journey = reopened.journey(j).unwrap();
    assert_eq!(journey.gps_point_count, 35);
    assert_eq!(journey.last_gps, Some(point(34)));
    let track = reopened.gps_track(j).unwrap();
    assert_eq!(track, (0..35).map(point).collect::<Vec<_>>());
}

#[test]
fn buffered_fixes_keep_their_recorder_across_a_restart_and_a_new_user() {
    let d = device(Role::Driver);
    let second = crewsync_core::model::ActiveUser {
        user_id: UserId::new(),
        role: Role::Mover,
    };
    let j = crew_journey(&d, &[(second.user_id, second.role)]);
    for i in 0..3 {
        d.store
            .record_gps_point(
                j,
                GpsPoint {
                    lat: 1.0,
                    lon: 2.0,
                    accuracy_m: None,
                    at: Timestamp(i),
                },
            )
            .unwrap();
    }
    // The app dies; another crew member signs in on the same tablet and records too.
    let path = d.store.path().to_path_buf();
    drop(d.store);
    let store = crewsync_core::DeviceStore::open(&path, Default::default()).unwrap();
    store.set_active_user(Some(second.clone())).unwrap();
    store
        .record_gps_point(
            j,
            GpsPoint {
                lat: 1.5,
                lon: 2.5,
                accuracy_m: None,
                at: Timestamp(9),
            },
        )
        .unwrap();
    store.flush_gps(j).unwrap();

    assert_eq!(
        store.journey(j).unwrap().gps_point_count,
        4,
        "nothing stranded in the buffer"
    );
    let outbox = store.outbox(10).unwrap();
    // After the creation and the two assignments.
    let authors: Vec<_> = outbox[3..].iter().map(|e| e.author).collect();
    assert_eq!(authors.len(), 2, "one batch per recorder");
    assert!(authors.contains(&d.user.user_id) && authors.contains(&second.user_id));
    let messages: Vec<_> = outbox[3..]
        .iter()
        .map(|e| {
            let change = automerge::Change::from_bytes(e.bytes.clone()).unwrap();
            crewsync_core::ChangeMessage::parse(change.message().unwrap()).unwrap()
        })
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.origin.user_id == d.user.user_id && m.origin.role == Role::Driver)
    );
    assert!(
        messages
            .iter()
            .any(|m| m.origin.user_id == second.user_id && m.origin.role == Role::Mover)
    );
}
