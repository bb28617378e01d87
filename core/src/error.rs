//! The core's error type: one enum, so the FFI and the server map it in one place each.
//!
//! Variants fall in two groups: the caller's mistakes (an invalid action or input,
//! reported with what was wrong and nothing changed) and the environment's failures
//! (storage, a corrupt document), which carry their source.

use crate::model::{Stage, StepNumber};

/// Everything the device core can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An id string that is not a well-formed id of its kind.
    #[error(
        "malformed {kind} id {value:?}: expected a UUID such as 0192f1c4-7d1e-7c3a-9f1b-2a3b4c5d6e7f"
    )]
    InvalidId { kind: &'static str, value: String },

    /// Input that fails validation (empty text, coordinates out of range, …).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("no journey {0} in this store")]
    UnknownJourney(String),

    #[error("unknown location {0}: register it with upsert_location before using it")]
    UnknownLocation(String),

    #[error("journey {0} already exists")]
    JourneyExists(String),

    /// The stage only moves forward (MORNING_PREP → … → AUDITED).
    #[error("the stage cannot move from {from} to {to}: stages only move forward")]
    StageNotForward { from: Stage, to: Stage },

    #[error("step {0} is already started")]
    StepAlreadyStarted(StepNumber),

    #[error("step {0} is not started yet: start it before completing it")]
    StepNotStarted(StepNumber),

    #[error("step {0} is already completed")]
    StepAlreadyCompleted(StepNumber),

    #[error("step {0} is already approved")]
    StepAlreadyApproved(StepNumber),

    #[error("step {0} must be completed before it is approved")]
    StepNotCompleted(StepNumber),

    #[error("no activity {activity} in step {step}")]
    UnknownActivity { step: StepNumber, activity: String },

    #[error("activity {0} is not a checklist")]
    NotAChecklist(String),

    #[error("checklist {activity} has no item {item:?}")]
    UnknownChecklistItem { activity: String, item: String },

    #[error("user {0} is not assigned to this journey")]
    NotAssigned(String),

    /// Every write is attributed; the app must say who is acting first.
    #[error("no active user: call set_active_user before writing")]
    NoActiveUser,

    /// The acting user may not do this: the rules the server judges every pushed
    /// change by (`core::policy`) refuse it, so the device refuses it first.
    /// Nothing was written.
    #[error("not allowed: {0}")]
    NotAllowed(#[from] crate::policy::Denial),

    /// The device's disk is full. Nothing was written; the app should tell the crew.
    #[error("storage full: {0}")]
    StorageFull(String),

    /// A file the device does not capture: only JPEG, PNG and WebP photos and
    /// MP4/QuickTime videos are taken. Nothing was stored.
    #[error("unsupported media: {0}")]
    Unsupported(String),

    /// A photo that is damaged, truncated, or too large to decode safely (a
    /// "decompression bomb"). Nothing was stored.
    #[error("invalid media: {0}")]
    InvalidMedia(String),

    /// No media item with this id in the device's queue.
    #[error("no media item {0} in this store")]
    UnknownMedia(String),

    /// A document that cannot be decoded or does not have the journey shape.
    #[error("corrupt journey document {journey}: {reason}")]
    CorruptDocument { journey: String, reason: String },

    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),

    #[error("database migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),

    #[error("automerge error: {0}")]
    Automerge(#[from] automerge::AutomergeError),

    #[error("automerge could not decode a change: {0}")]
    ChangeDecode(#[from] automerge::LoadChangeError),

    /// The server could not be reached (offline, timeout, connection reset).
    #[error("network error: {0}")]
    Network(String),

    /// Something answered, but not a crewsync server (a captive portal's login page,
    /// a proxy's error page). Nothing was marked synced.
    #[error("network unusable: {0}")]
    NetworkUnusable(String),

    /// The server answered with an error status.
    #[error("server error {status}: {message}")]
    Server { status: u16, message: String },

    /// The server is shedding this device's requests (429): try again after
    /// `retry_after`, which the sync loop honours over its own backoff.
    #[error("rate limited, retry after {retry_after:?}: {message}")]
    RateLimited {
        retry_after: std::time::Duration,
        message: String,
    },

    /// The server does not accept this device's credentials (none, expired and not
    /// refreshable, revoked, or the user deactivated): sign in again. Unsynced work
    /// stays queued.
    #[error("not signed in: {0}")]
    Unauthorized(String),

    #[error("i/o error: {0}")]
    Io(std::io::Error),

    /// The server refused a media upload step, with its code (`entry_not_synced`,
    /// `digest_mismatch`, `image_rejected`, `too_large`, …).
    #[error("upload refused ({status} {code}): {message}")]
    Upload {
        status: u16,
        code: String,
        message: String,
    },
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        // A full disk (or a file-size limit, or a quota) is the crew's to fix: say so.
        match e.raw_os_error() {
            Some(code) if [libc_enospc(), libc_efbig(), libc_edquot()].contains(&code) => {
                Error::StorageFull(e.to_string())
            }
            _ if e.kind() == std::io::ErrorKind::StorageFull => Error::StorageFull(e.to_string()),
            _ => Error::Io(e),
        }
    }
}

// errno values (Linux, Android, and the BSD family incl. iOS/macOS agree on ENOSPC
// and EFBIG; EDQUOT differs).
const fn libc_enospc() -> i32 {
    28
}
const fn libc_efbig() -> i32 {
    27
}
const fn libc_edquot() -> i32 {
    if cfg!(any(target_os = "macos", target_os = "ios")) {
        69
    } else {
        122
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        // SQLITE_FULL gets its own variant: it is the one storage failure the crew can fix.
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Error::StorageFull(e.to_string()),
            _ => Error::Sqlite(e),
        }
    }
}

impl From<autosurgeon::ReconcileError> for Error {
    fn from(e: autosurgeon::ReconcileError) -> Self {
        match e {
            autosurgeon::ReconcileError::Automerge(e) => Error::Automerge(e),
            other => Error::InvalidInput(other.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
