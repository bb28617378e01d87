//! The device's side of the write rules (`store::permits`): whose role and table
//! decide, what a refusal looks like, and that it writes nothing. The randomized
//! proof that the device and the server agree is `tests/tests/device_policy.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{crew_journey, day, device, new_journey, toronto};
use crewsync_core::Error;
use crewsync_core::ids::{ClientId, UserId};
use crewsync_core::model::{ActiveUser, NewEntry, Role, Stage, StepNumber};
use crewsync_core::policy::{Denial, PermissionTable, RolePermission};
use crewsync_core::sync::auth::{TokenResponse, UserView};

fn step(n: u8) -> StepNumber {
    StepNumber::new(n).unwrap()
}

/// What the server answers a sign-in of `user` as `role` in Toronto's tenant.
fn tokens(user: UserId, role: Role) -> TokenResponse {
    TokenResponse {
        access_token: "a".into(),
        token_type: "Bearer".into(),
        expires_in: 900,
        refresh_token: "r".into(),
        session_id: uuid::Uuid::new_v4(),
        user: UserView {
            id: user,
            tenant: toronto().client_id,
            location_id: toronto().id,
            name: "Test".into(),
            email: "t@test.example".into(),
            role,
        },
    }
}

/// Everything a refusal must leave alone.
fn state(d: &common::Device, j: crewsync_core::ids::JourneyId) -> impl PartialEq + std::fmt::Debug {
    (
        d.store.heads(j).unwrap(),
        d.store.outbox_len().unwrap(),
        d.store.list_journeys(toronto().id, day()).unwrap(),
        d.store.journey(j).unwrap(),
    )
}

#[test]
fn a_crew_member_is_refused_office_work_and_other_crews_journeys() {
    let d = device(Role::Mover);
    let j = crew_journey(&d, &[]);
    let before = state(&d, j);
    let refusal = d.store.set_truck_number(j, Some("T-9".into())).unwrap_err();
    assert!(
        matches!(
            &refusal,
            Error::NotAllowed(Denial::Role {
                role: Role::Mover,
                ..
            })
        ),
        "{refusal}"
    );
    assert_eq!(
        refusal.to_string(),
        "not allowed: a MOVER may not change the truck"
    );
    assert!(matches!(
        d.store.create_journey(&new_journey(&toronto(), day())),
        Err(Error::NotAllowed(_))
    ));
    assert_eq!(state(&d, j), before, "a refusal writes nothing");

    // Off the crew, not even an entry or a GPS fix.
    d.store
        .set_active_user(Some(ActiveUser {
            user_id: UserId::new(),
            role: Role::Dispatcher,
        }))
        .unwrap();
    d.store.unassign_crew(j, d.user.user_id).unwrap();
    d.store.set_active_user(Some(d.user.clone())).unwrap();
    let before = state(&d, j);
    assert!(matches!(
        d.store.add_entry(j, NewEntry::note("not mine")),
        Err(Error::NotAllowed(Denial::NotOnCrew { .. }))
    ));
    let fix = crewsync_core::model::GpsPoint {
        lat: 43.0,
        lon: -79.0,
        accuracy_m: None,
        at: crewsync_core::model::Timestamp(1),
    };
    assert!(matches!(
        d.store.record_gps_point(j, fix),
        Err(Error::NotAllowed(Denial::NotOnCrew { .. }))
    ));
    assert!(d.store.gps_track(j).unwrap().is_empty(), "nothing buffered");
    assert_eq!(state(&d, j), before);
}

/// A signed-in user is judged as their account says: the server's role, the
/// tenant's table once the server sent it (the defaults before), their tenant.
#[test]
fn a_signed_in_user_is_judged_by_their_account() {
    let d = device(Role::Driver);
    let j = crew_journey(&d, &[]);
    d.store
        .save_sign_in(&tokens(d.user.user_id, Role::Driver), true)
        .unwrap();
    // The app claims a manager; the account (the token) says driver.
    d.store
        .set_active_user(Some(ActiveUser {
            user_id: d.user.user_id,
            role: Role::Manager,
        }))
        .unwrap();
    d.store.start_step(j, step(1)).unwrap();
    d.store.complete_step(j, step(1)).unwrap();
    assert!(matches!(
        d.store.approve_step(j, step(1), None),
        Err(Error::NotAllowed(Denial::Role {
            role: Role::Driver,
            ..
        }))
    ));

    // The tenant's own table: this tenant lets drivers approve but not work step 2.
    let mut table = PermissionTable::defaults();
    for (n, can_edit, can_approve) in [(1, true, true), (2, false, false)] {
        table.set(RolePermission {
            role: Role::Driver,
            step: step(n),
            can_view: true,
            can_edit,
            can_approve,
        });
    }
    d.store
        .set_account_permissions(d.user.user_id, &table.rows())
        .unwrap();
    d.store.approve_step(j, step(1), None).unwrap();
    assert!(matches!(
        d.store.start_step(j, step(2)),
        Err(Error::NotAllowed(_))
    ));

    // An office user of this tenant may not create a journey in another tenant.
    let office = UserId::new();
    d.store
        .save_sign_in(&tokens(office, Role::Dispatcher), true)
        .unwrap();
    let foreign = crewsync_core::model::NewJourney {
        client_id: ClientId::new(),
        ..new_journey(&toronto(), day())
    };
    assert!(matches!(
        d.store.create_journey(&foreign),
        Err(Error::NotAllowed(Denial::OtherTenant { .. }))
    ));
    d.store
        .create_journey(&new_journey(&toronto(), day()))
        .unwrap();
}

/// Once the device knows the journey is audited, it refuses every change instead
/// of queueing one the server would only hold for review.
#[test]
fn an_audited_journey_takes_no_more_changes() {
    let d = device(Role::Driver);
    let j = crew_journey(&d, &[]);
    d.store.advance_stage(j, Stage::Completed).unwrap();
    assert!(matches!(
        d.store.advance_stage(j, Stage::Audited),
        Err(Error::NotAllowed(_))
    ));
    let auditor = ActiveUser {
        user_id: UserId::new(),
        role: Role::Auditor,
    };
    d.store.set_active_user(Some(auditor)).unwrap();
    d.store.advance_stage(j, Stage::Audited).unwrap();
    d.store.set_active_user(Some(d.user.clone())).unwrap();
    let before = state(&d, j);
    assert!(matches!(
        d.store.add_entry(j, NewEntry::note("late")),
        Err(Error::NotAllowed(Denial::AfterAudit))
    ));
    assert_eq!(state(&d, j), before);
}
