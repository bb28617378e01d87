//! Who made a change. Automerge identifies writers only by actor id; every change we
//! commit also carries its origin (user, role, device, action) in the change message,
//! so history and conflict reports can name people, not hex ids.

use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, UserId};
use crate::model::Role;

/// The origin recorded in a change's message, as compact JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeOrigin {
    #[serde(rename = "u")]
    pub user_id: UserId,
    #[serde(rename = "r")]
    pub role: Role,
    #[serde(rename = "d")]
    pub device_id: DeviceId,
}

/// A parsed change message: the origin plus the action's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeMessage {
    #[serde(flatten)]
    pub origin: ChangeOrigin,
    #[serde(rename = "a")]
    pub action: String,
}

impl ChangeOrigin {
    pub fn message(&self, action: &str) -> String {
        let message = ChangeMessage {
            origin: self.clone(),
            action: action.to_owned(),
        };
        // Serializing plain strings and enums cannot fail; fall back to the action alone.
        serde_json::to_string(&message).unwrap_or_else(|_| action.to_owned())
    }
}

impl ChangeMessage {
    /// Reads a change's message; `None` for changes not written by crewsync.
    pub fn parse(message: &str) -> Option<Self> {
        serde_json::from_str(message).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips() {
        let origin = ChangeOrigin {
            user_id: UserId::new(),
            role: Role::Mover,
            device_id: DeviceId::new(),
        };
        let parsed = ChangeMessage::parse(&origin.message("add_entry")).unwrap();
        assert_eq!(parsed.origin, origin);
        assert_eq!(parsed.action, "add_entry");
        assert_eq!(ChangeMessage::parse("hand-written"), None);
    }
}
