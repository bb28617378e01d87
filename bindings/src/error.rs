//! The one error the apps see, mapped once from core's [`Error`].
//!
//! Variants are what an app can act on: retry later (`Network`), ask the crew to sign
//! in (`Auth`), tell them the phone is full (`StorageFull`), explain a refusal
//! (`NotAllowed`), fix the call (`InvalidInput`); everything else is `Other`, with the
//! details for a bug report.

use crewsync_core::Error;

/// Everything a call into crewsync can fail with.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum CrewsyncError {
    /// The server could not be reached or answered unusably; work stays queued.
    #[error("network: {reason}")]
    Network { reason: String },
    /// Not signed in, or the server refused the credentials: sign in again.
    #[error("auth: {reason}")]
    Auth { reason: String },
    /// The device's disk is full; nothing was written.
    #[error("storage full: {reason}")]
    StorageFull { reason: String },
    /// The signed-in user's role may not do this; nothing was written.
    #[error("not allowed: {reason}")]
    NotAllowed { reason: String },
    /// The call itself was wrong (a malformed id, a stage moving backwards, …).
    #[error("invalid input: {reason}")]
    InvalidInput { reason: String },
    /// Anything else (a corrupt document, a database fault, a closed device).
    #[error("{details}")]
    Other { details: String },
}

impl From<Error> for CrewsyncError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::Network(_) | Error::NetworkUnusable(_) | Error::RateLimited { .. } => {
                Self::Network { reason: message }
            }
            // A server in trouble is, for the app, a network it cannot use now.
            Error::Server { status, .. } if status >= 500 => Self::Network { reason: message },
            Error::Unauthorized(_) | Error::NoActiveUser => Self::Auth { reason: message },
            Error::StorageFull(_) => Self::StorageFull { reason: message },
            Error::NotAllowed(_) => Self::NotAllowed { reason: message },
            Error::InvalidId { .. }
            | Error::InvalidInput(_)
            | Error::UnknownJourney(_)
            | Error::UnknownLocation(_)
            | Error::JourneyExists(_)
            | Error::StageNotForward { .. }
            | Error::StepAlreadyStarted(_)
            | Error::StepNotStarted(_)
            | Error::StepAlreadyCompleted(_)
            | Error::StepAlreadyApproved(_)
            | Error::StepNotCompleted(_)
            | Error::UnknownActivity { .. }
            | Error::NotAChecklist(_)
            | Error::UnknownChecklistItem { .. }
            | Error::NotAssigned(_)
            | Error::Unsupported(_)
            | Error::InvalidMedia(_)
            | Error::UnknownMedia(_) => Self::InvalidInput { reason: message },
            Error::Server { .. }
            | Error::Upload { .. }
            | Error::CorruptDocument { .. }
            | Error::Sqlite(_)
            | Error::Migration(_)
            | Error::Automerge(_)
            | Error::ChangeDecode(_)
            | Error::Io(_) => Self::Other {
                details: format!("{message} ({e:?})"),
            },
        }
    }
}

impl CrewsyncError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidInput {
            reason: message.into(),
        }
    }

    pub(crate) fn other(details: impl Into<String>) -> Self {
        Self::Other {
            details: details.into(),
        }
    }
}

pub type Result<T, E = CrewsyncError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_core_error_lands_on_the_variant_an_app_acts_on() {
        let cases: Vec<(Error, &str)> = vec![
            (Error::Network("reset".into()), "Network"),
            (Error::NetworkUnusable("portal".into()), "Network"),
            (
                Error::Server {
                    status: 503,
                    message: "down".into(),
                },
                "Network",
            ),
            (Error::Unauthorized("revoked".into()), "Auth"),
            (Error::NoActiveUser, "Auth"),
            (Error::StorageFull("disk".into()), "StorageFull"),
            (
                Error::NotAllowed(crewsync_core::policy::Denial::AfterAudit),
                "NotAllowed",
            ),
            (Error::InvalidInput("empty".into()), "InvalidInput"),
            (Error::UnknownJourney("j".into()), "InvalidInput"),
            (Error::Unsupported("image/gif".into()), "InvalidInput"),
            (Error::InvalidMedia("60000×60000".into()), "InvalidInput"),
            (
                Error::NotAllowed(crewsync_core::policy::Denial::Role {
                    role: crewsync_core::model::Role::Mover,
                    what: "remove sealed photos".into(),
                }),
                "NotAllowed",
            ),
            (
                Error::Server {
                    status: 400,
                    message: "bad".into(),
                },
                "Other",
            ),
            (Error::Io(std::io::Error::other("x")), "Other"),
        ];
        for (core, expected) in cases {
            let mapped = CrewsyncError::from(core);
            let name = format!("{mapped:?}");
            assert!(name.starts_with(expected), "{name} is not {expected}");
        }
    }
}
