//! Fixtures shared by the core's integration tests: real SQLite files in temp dirs.
#![allow(dead_code, clippy::unwrap_used)]

pub mod images;

use std::sync::Arc;

use chrono::NaiveDate;
use crewsync_core::ids::{ClientId, JourneyId, LocationId, UserId};
use crewsync_core::model::{ActiveUser, Location, NewJourney, Role};
use crewsync_core::{DeviceStore, StoreOptions};
use tempfile::TempDir;

pub struct Device {
    pub store: Arc<DeviceStore>,
    pub user: ActiveUser,
    pub dir: TempDir,
}

pub const DAY: (i32, u32, u32) = (2026, 11, 24);

pub fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(DAY.0, DAY.1, DAY.2).unwrap()
}

pub fn toronto() -> Location {
    Location {
        id: LocationId::parse("0192f1c4-0000-7000-8000-000000000001").unwrap(),
        client_id: ClientId::parse("0192f1c4-0000-7000-8000-0000000000c1").unwrap(),
        name: "DOWNTOWN TORONTO".into(),
        timezone: "America/Toronto".into(),
    }
}

/// A device with a store at a fresh path, Toronto registered, and `role` acting.
pub fn device(role: Role) -> Device {
    device_with(role, StoreOptions::default())
}

pub fn device_with(role: Role, options: StoreOptions) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let store = DeviceStore::open(dir.path().join("crew.sqlite"), options).unwrap();
    store.upsert_location(&toronto()).unwrap();
    let user = ActiveUser {
        user_id: UserId::new(),
        role,
    };
    store.set_active_user(Some(user.clone())).unwrap();
    Device { store, user, dir }
}

pub fn new_journey(location: &Location, date: NaiveDate) -> NewJourney {
    NewJourney {
        id: None,
        client_id: location.client_id,
        location_id: location.id,
        date,
        truck_number: Some("T-12".into()),
        move_source_id: None,
        steps_requiring_approval: vec![crewsync_core::model::StepNumber::new(4).unwrap()],
    }
}

/// Sends `from` every change of `journey` that `to` lacks.
pub fn send(from: &DeviceStore, to: &DeviceStore, journey: JourneyId) {
    let heads = to.heads(journey).unwrap_or_default();
    let changes = from.changes_since(journey, &heads).unwrap();
    to.apply_remote_changes(journey, changes).unwrap();
}

/// Both ways, so the two replicas converge.
pub fn exchange(a: &DeviceStore, b: &DeviceStore, journey: JourneyId) {
    send(a, b, journey);
    send(b, a, journey);
}

/// The office's part of a crew's day, on the crew's own tablet: a dispatcher
/// creates a journey and puts `d`'s user (and `others`) on its crew — crews may do
/// neither — then hands the tablet back. Leaves 2 + `others.len()` changes queued.
pub fn crew_journey(d: &Device, others: &[(UserId, Role)]) -> JourneyId {
    let office = ActiveUser {
        user_id: UserId::new(),
        role: Role::Dispatcher,
    };
    d.store.set_active_user(Some(office)).unwrap();
    let j = d
        .store
        .create_journey(&new_journey(&toronto(), day()))
        .unwrap();
    d.store.assign_crew(j, d.user.user_id, d.user.role).unwrap();
    for (user, role) in others {
        d.store.assign_crew(j, *user, *role).unwrap();
    }
    d.store.set_active_user(Some(d.user.clone())).unwrap();
    j
}
