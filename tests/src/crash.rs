//! The crash-durability fixture: the device the `crash_writer` child sets up, and the
//! one-line acknowledgements it prints after each write returns `Ok`.
//!
//! The child prints a line only *after* the store call returned, so every line the
//! parent reads names a write the store promised was durable. A SIGKILL may land
//! between a commit and its line; such a write is on disk but unreported, which the
//! checks allow (they test "acknowledged ⇒ present", not the converse).

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use crewsync_core::StoreOptions;
use crewsync_core::ids::{ActivityId, ClientId, EntryId, JourneyId, LocationId, UserId};
use crewsync_core::model::{Location, NewJourney, Role, StepNumber};
use uuid::Uuid;

/// Compacting after this few change rows makes the child hit compaction (snapshot
/// write plus change-row deletes in one transaction) every handful of writes.
pub const COMPACT_AFTER_CHANGES: usize = 7;
/// Small GPS batches, so fixes are folded into the document (and the buffer rows
/// deleted) often.
pub const GPS_BATCH_SIZE: usize = 5;
/// The step checklists are added to.
pub const CHECKLIST_STEP: u8 = 1;
/// The step other activities are added to.
pub const ACTIVITY_STEP: u8 = 2;
/// Items of every checklist the child adds; it ticks them one write at a time.
pub const CHECKLIST_ITEMS: [&str; 4] = ["pads", "dollies", "straps", "blankets"];

const LOCATION: Uuid = Uuid::from_u128(0x0192f1c4_0000_7000_8000_000000000001);
const CLIENT: Uuid = Uuid::from_u128(0x0192f1c4_0000_7000_8000_0000000000c1);
/// The two crew members who take turns on the device. Fixed across runs, so fixes a
/// killed run left buffered are folded in when the same user records again.
const USERS: [Uuid; 2] = [
    Uuid::from_u128(0x0192f1c4_0000_7000_8000_00000000a001),
    Uuid::from_u128(0x0192f1c4_0000_7000_8000_00000000a002),
];

/// The store options both the child and the verifying parent open with.
pub fn store_options() -> StoreOptions {
    StoreOptions {
        compact_after_changes: COMPACT_AFTER_CHANGES,
        gps_batch_size: GPS_BATCH_SIZE,
        ..StoreOptions::default()
    }
}

pub fn location() -> Location {
    Location {
        id: LocationId::from_uuid(LOCATION),
        client_id: ClientId::from_uuid(CLIENT),
        name: "DOWNTOWN TORONTO".into(),
        timezone: "America/Toronto".into(),
    }
}

pub fn user(index: usize) -> UserId {
    UserId::from_uuid(USERS[index % USERS.len()])
}

/// The dispatcher who creates the journey and assigns crew (the crews may not).
pub fn dispatcher() -> UserId {
    UserId::from_uuid(Uuid::from_u128(0x0192f1c4_0000_7000_8000_00000000d001))
}

pub fn journey_date() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

pub fn new_journey() -> NewJourney {
    let location = location();
    NewJourney {
        id: None,
        client_id: location.client_id,
        location_id: location.id,
        date: journey_date(),
        truck_number: Some("T-12".into()),
        move_source_id: None,
        steps_requiring_approval: Vec::new(),
    }
}

pub fn step(number: u8) -> StepNumber {
    StepNumber::ALL
        .into_iter()
        .find(|s| s.get() == number)
        .unwrap_or(StepNumber::ALL[0])
}

/// One write the child saw return `Ok`, as one stdout line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// Setup finished: the journey every following write goes to.
    Journey(JourneyId),
    /// `add_entry` of a NOTE entry.
    Entry(EntryId),
    /// `add_note` with a text containing this token (notes are listed without ids).
    Note(String),
    /// `record_gps_point` of a fix at this device time (unique within the store).
    Gps(i64),
    /// `assign_crew` of a fresh user.
    Crew(UserId, Role),
    /// `add_checklist` on [`CHECKLIST_STEP`] with [`CHECKLIST_ITEMS`].
    Checklist(ActivityId),
    /// `set_checklist_item(.., true)`.
    Tick(ActivityId, String),
    /// `add_activity` (a NOTE activity) on [`ACTIVITY_STEP`].
    Activity(ActivityId),
    /// `set_active_user` to another user (flushing the previous user's GPS buffer).
    Switch(UserId),
}

impl Ack {
    /// The note text the child writes for `token`.
    pub fn note_text(token: &str) -> String {
        format!("crash note {token}")
    }

    /// Whether this write adds exactly one local change (a GPS fix may add none or a
    /// batch; a switch may add several flushes; setup adds the creation change).
    pub fn adds_one_change(&self) -> bool {
        matches!(
            self,
            Self::Entry(_)
                | Self::Note(_)
                | Self::Crew(..)
                | Self::Checklist(_)
                | Self::Tick(..)
                | Self::Activity(_)
        )
    }
}

impl fmt::Display for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Journey(id) => write!(f, "journey {id}"),
            Self::Entry(id) => write!(f, "entry {id}"),
            Self::Note(token) => write!(f, "note {token}"),
            Self::Gps(at) => write!(f, "gps {at}"),
            Self::Crew(user, role) => write!(f, "crew {user} {role}"),
            Self::Checklist(id) => write!(f, "checklist {id}"),
            Self::Tick(id, item) => write!(f, "tick {id} {item}"),
            Self::Activity(id) => write!(f, "activity {id}"),
            Self::Switch(user) => write!(f, "switch {user}"),
        }
    }
}

impl FromStr for Ack {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let bad = || format!("unreadable acknowledgement line {line:?}");
        let words: Vec<&str> = line.split_whitespace().collect();
        let parse_id = |i: usize| words.get(i).copied().ok_or_else(bad);
        let ack = match words.first().copied() {
            Some("journey") => Self::Journey(parse_id(1)?.parse().map_err(|_| bad())?),
            Some("entry") => Self::Entry(parse_id(1)?.parse().map_err(|_| bad())?),
            Some("note") => Self::Note(parse_id(1)?.to_owned()),
            Some("gps") => Self::Gps(parse_id(1)?.parse().map_err(|_| bad())?),
            Some("crew") => Self::Crew(
                parse_id(1)?.parse().map_err(|_| bad())?,
                parse_id(2)?.parse().map_err(|_| bad())?,
            ),
            Some("checklist") => Self::Checklist(parse_id(1)?.parse().map_err(|_| bad())?),
            Some("tick") => Self::Tick(
                parse_id(1)?.parse().map_err(|_| bad())?,
                parse_id(2)?.to_owned(),
            ),
            Some("activity") => Self::Activity(parse_id(1)?.parse().map_err(|_| bad())?),
            Some("switch") => Self::Switch(parse_id(1)?.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        Ok(ack)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn acks_round_trip_through_their_lines() {
        let acks = [
            Ack::Journey(JourneyId::new()),
            Ack::Entry(EntryId::new()),
            Ack::Note(Uuid::new_v4().to_string()),
            Ack::Gps(1_764_000_000_123),
            Ack::Crew(UserId::new(), Role::Mover),
            Ack::Checklist(ActivityId::new()),
            Ack::Tick(ActivityId::new(), "dollies".into()),
            Ack::Activity(ActivityId::new()),
            Ack::Switch(user(1)),
        ];
        for ack in acks {
            assert_eq!(ack.to_string().parse::<Ack>().unwrap(), ack);
        }
        assert!("gps".parse::<Ack>().is_err());
        assert!("entry not-a-uuid".parse::<Ack>().is_err());
        assert!("launch rockets".parse::<Ack>().is_err());
    }

    #[test]
    fn fixture_values_are_valid() {
        assert_eq!(step(CHECKLIST_STEP).get(), CHECKLIST_STEP);
        assert_eq!(step(ACTIVITY_STEP).get(), ACTIVITY_STEP);
        assert_eq!(journey_date(), chrono::Utc::now().date_naive());
        assert_ne!(user(0), user(1));
    }
}
