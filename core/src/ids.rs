//! Typed ids. Every id is a UUID on the wire and in documents; the newtypes keep a
//! journey id from being passed where a user id belongs, and parsing is where a
//! malformed id from the app or the network becomes a clear error.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id (UUIDv7), so ids sort roughly by creation time.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses the canonical hyphenated form, or fails with [`Error::InvalidId`].
            pub fn parse(value: &str) -> Result<Self, Error> {
                value.parse()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(value: &str) -> Result<Self, Error> {
                Uuid::try_parse(value).map(Self).map_err(|_| Error::InvalidId {
                    kind: $kind,
                    value: value.to_owned(),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A journey: one truck's day.
    JourneyId,
    "journey"
);
uuid_id!(
    /// A person (crew, dispatcher, manager, …).
    UserId,
    "user"
);
uuid_id!(
    /// A branch of the moving company; it owns a timezone.
    LocationId,
    "location"
);
uuid_id!(
    /// A tenant: one moving company.
    ClientId,
    "client"
);
uuid_id!(
    /// One install of the crew app (a device store).
    DeviceId,
    "device"
);
uuid_id!(
    /// An entry in a journey's stream (note, GPS fix, photo, signature, status update).
    EntryId,
    "entry"
);
uuid_id!(
    /// An activity inside a step (checklist, photo, video, approval, note, signature).
    ActivityId,
    "activity"
);
uuid_id!(
    /// A photo, video or signature image.
    MediaId,
    "media"
);
uuid_id!(
    /// Where a move came from (a lead source).
    MoveSourceId,
    "move source"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_ids_are_refused_with_their_kind() {
        let err = JourneyId::parse("not-a-uuid").unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidId {
                kind: "journey",
                ..
            }
        ));
        assert!(err.to_string().contains("not-a-uuid"));
        assert!(UserId::parse("").is_err());
    }

    #[test]
    fn ids_round_trip_through_their_string_form() {
        let id = JourneyId::new();
        assert_eq!(JourneyId::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn new_ids_sort_by_creation_time() {
        let a = EntryId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = EntryId::new();
        assert!(a < b);
    }
}
