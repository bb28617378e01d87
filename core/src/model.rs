//! The journey model: the types apps read and the values stored inside journey documents.
//!
//! Shapes follow the seed's operations schema (TruckJourney, JourneyStep, StepActivity,
//! AssignedCrew, JourneyEntry, Media). Leaf types derive autosurgeon's `Reconcile` and
//! `Hydrate`, so the same struct is what the document stores and what the app gets;
//! only [`Journey`] and [`Step`] are views assembled from the document (see
//! `document::schema`). Everything here is owned and free of lifetimes, so it maps
//! one-to-one onto the FFI records.

use std::fmt;
use std::str::FromStr;

use autosurgeon::{Hydrate, HydrateError, Reconcile};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{
    ActivityId, ClientId, EntryId, JourneyId, LocationId, MediaId, MoveSourceId, UserId,
};

/// Stores a value that has a canonical string form as an automerge string scalar.
macro_rules! string_scalar {
    ($($ty:ty),* $(,)?) => {$(
        impl Reconcile for $ty {
            type Key<'a> = autosurgeon::reconcile::NoKey;
            fn reconcile<R: autosurgeon::Reconciler>(&self, mut reconciler: R) -> Result<(), R::Error> {
                reconciler.str(self.to_string())
            }
        }
        impl Hydrate for $ty {
            fn hydrate_string(value: &str) -> Result<Self, HydrateError> {
                value
                    .parse()
                    .map_err(|_| HydrateError::unexpected(stringify!($ty), value.to_owned()))
            }
        }
    )*};
}

string_scalar!(
    JourneyId,
    UserId,
    LocationId,
    ClientId,
    EntryId,
    ActivityId,
    MediaId,
    MoveSourceId,
    Stage,
    Role,
    ActivityKind,
    EntryKind,
    MediaKind,
);

/// A point in time, milliseconds since the Unix epoch (UTC). Stored as an automerge
/// timestamp scalar. Device times are what the device's clock said; they order nothing
/// in a merge (automerge is clock-free) and are shown as "device time".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Self(at.timestamp_millis())
    }

    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.0)
    }

    pub fn millis(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime() {
            Some(at) => write!(f, "{}", at.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
            None => write!(f, "{}ms", self.0),
        }
    }
}

impl Reconcile for Timestamp {
    type Key<'a> = autosurgeon::reconcile::NoKey;
    fn reconcile<R: autosurgeon::Reconciler>(&self, mut reconciler: R) -> Result<(), R::Error> {
        reconciler.timestamp(self.0)
    }
}

impl Hydrate for Timestamp {
    fn hydrate_timestamp(millis: i64) -> Result<Self, HydrateError> {
        Ok(Self(millis))
    }
    fn hydrate_int(millis: i64) -> Result<Self, HydrateError> {
        Ok(Self(millis))
    }
}

/// A journey's stage. The order of the variants is the order of a day; a journey's
/// stage only moves forward, also through a merge (see `document`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::EnumIter,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Stage {
    MorningPrep,
    EnRoute,
    Onsite,
    Completed,
    Audited,
}

/// The six roles of the seed.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::EnumIter,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Admin,
    Dispatcher,
    Driver,
    Mover,
    Manager,
    Auditor,
}

/// A step's status, derived from when it was started and completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepStatus {
    Pending,
    InProgress,
    Completed,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActivityKind {
    Checklist,
    Photo,
    Video,
    Approval,
    Note,
    Signature,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntryKind {
    Note,
    Gps,
    Photo,
    Signature,
    StatusUpdate,
    Video,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MediaKind {
    Photo,
    Video,
    Signature,
}

/// One of a journey's four steps (1 = morning prep … 4 = completion).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct StepNumber(u8);

impl StepNumber {
    pub const ALL: [StepNumber; 4] = [StepNumber(1), StepNumber(2), StepNumber(3), StepNumber(4)];

    pub fn new(number: u8) -> Result<Self, Error> {
        if (1..=4).contains(&number) {
            Ok(Self(number))
        } else {
            Err(Error::InvalidInput(format!(
                "step number {number} is out of range: a journey has steps 1 to 4"
            )))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// The step's default name (the seed's four-step workflow, domain notes §4).
    pub fn default_name(self) -> &'static str {
        match self.0 {
            1 => "Morning prep",
            2 => "Origin",
            3 => "Transit and destination",
            _ => "Completion",
        }
    }
}

impl TryFrom<u8> for StepNumber {
    type Error = Error;
    fn try_from(number: u8) -> Result<Self, Error> {
        Self::new(number)
    }
}

impl From<StepNumber> for u8 {
    fn from(step: StepNumber) -> u8 {
        step.0
    }
}

impl fmt::Display for StepNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for StepNumber {
    type Err = Error;
    fn from_str(value: &str) -> Result<Self, Error> {
        let number: u8 = value
            .parse()
            .map_err(|_| Error::InvalidInput(format!("step number {value:?} is not a number")))?;
        Self::new(number)
    }
}

/// Who did something and when their device says it was.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct Stamp {
    pub by: UserId,
    pub at: Timestamp,
}

/// A stage the journey reached, with who moved it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageReached {
    pub stage: Stage,
    pub reached: Stamp,
}

/// A crew member assigned to a journey (AssignedCrew).
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct CrewAssignment {
    pub role: Role,
    pub assigned: Stamp,
}

/// A crew member as the app lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrewMember {
    pub user_id: UserId,
    pub role: Role,
    pub assigned: Stamp,
}

/// One appended journey note (TruckJourney.notes is an append-only log, never one
/// overwritten text: concurrent notes from crew and dispatcher both stay).
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct Note {
    pub text: String,
    pub written: Stamp,
}

/// A GPS fix. `accuracy_m` is the horizontal accuracy the platform reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Reconcile, Hydrate)]
pub struct GpsPoint {
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: Option<f32>,
    pub at: Timestamp,
}

impl GpsPoint {
    pub fn validate(&self) -> Result<(), Error> {
        let in_range = (-90.0..=90.0).contains(&self.lat) && (-180.0..=180.0).contains(&self.lon);
        if !in_range || !self.lat.is_finite() || !self.lon.is_finite() {
            return Err(Error::InvalidInput(format!(
                "GPS point ({}, {}) is outside latitude -90..90 / longitude -180..180",
                self.lat, self.lon
            )));
        }
        if let Some(accuracy) = self.accuracy_m
            && !(accuracy.is_finite() && accuracy >= 0.0)
        {
            return Err(Error::InvalidInput(format!(
                "GPS accuracy {accuracy} must be a non-negative number of metres"
            )));
        }
        Ok(())
    }
}

/// An entry in a journey's stream (JourneyEntry). Kind-specific fields are optional.
#[derive(Debug, Clone, PartialEq, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct Entry {
    pub id: EntryId,
    pub kind: EntryKind,
    /// A short code, e.g. BR (broken) or SC (scratched) on a damage note.
    pub tag: Option<String>,
    pub author: UserId,
    pub device_time: Timestamp,
    pub text: Option<String>,
    /// Where the device was, for GPS entries and as capture location of others.
    pub location: Option<GpsPoint>,
    /// The stage announced, for STATUS_UPDATE entries.
    pub stage: Option<Stage>,
    pub step: Option<u8>,
    /// The photo or signature this entry records (the media issue fills in the bytes).
    pub media_id: Option<MediaId>,
}

/// What the app supplies to add an entry; the store fills in id, author and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEntry {
    pub kind: EntryKind,
    pub tag: Option<String>,
    pub text: Option<String>,
    pub location: Option<GpsPoint>,
    pub stage: Option<Stage>,
    pub step: Option<StepNumber>,
    pub media_id: Option<MediaId>,
}

impl NewEntry {
    /// A NOTE entry with the given text.
    pub fn note(text: impl Into<String>) -> Self {
        Self {
            kind: EntryKind::Note,
            tag: None,
            text: Some(text.into()),
            location: None,
            stage: None,
            step: None,
            media_id: None,
        }
    }
}

/// A checklist item. Every tick replaces the whole item, so two crews ticking the same
/// item concurrently leave two complete values (one wins, both stay inspectable).
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct ChecklistItem {
    pub label: String,
    pub position: u64,
    pub checked: bool,
    pub changed: Option<Stamp>,
}

/// A manager's approval of a step.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct Approval {
    pub approved: Stamp,
    pub comment: Option<String>,
}

/// A reference from a journey to a media item (photo, video, signature).
///
/// This is the media's metadata as it travels with the journey: the server accepts
/// an item's bytes only once it holds a `MediaRef` naming the same id, kind and
/// SHA-256 (for a thumbnail: the parent's `thumbnail_sha256`), so the entry always
/// reaches the server no later than the bytes. Fields added after the first release
/// are optional: older documents hydrate with `None`.
#[derive(Debug, Clone, PartialEq, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct MediaRef {
    pub id: MediaId,
    pub kind: MediaKind,
    /// Lowercase hex SHA-256 of the original's bytes, as stored on the device.
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub step: Option<u8>,
    pub activity: Option<ActivityId>,
    pub entry: Option<EntryId>,
    /// Who captured it (the author) and the device's clock at capture (device time).
    pub captured: Stamp,
    /// MIME type of the original (`image/jpeg`, `image/png`, `image/webp`, `video/mp4`, …).
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    /// When the picture was taken: EXIF `DateTimeOriginal` where present (read in the
    /// journey's timezone when EXIF gives no offset), else the device time.
    #[serde(default)]
    pub captured_at: Option<Timestamp>,
    /// EXIF `DateTimeOriginal` as written in the file, kept verbatim as evidence.
    #[serde(default)]
    pub exif_time: Option<String>,
    /// GPS position written into the file by the camera (EXIF), if any.
    #[serde(default)]
    pub exif_gps: Option<GpsPoint>,
    /// The app's GPS fix at capture, if it had one.
    #[serde(default)]
    pub gps: Option<GpsPoint>,
    /// The device that captured it.
    #[serde(default)]
    pub device: Option<String>,
    /// The device-made JPEG thumbnail (its own upload, kind `thumbnail`).
    #[serde(default)]
    pub thumbnail_sha256: Option<String>,
    #[serde(default)]
    pub thumbnail_size: Option<u64>,
    /// What a signature binds (kind SIGNATURE only), or the refusal to sign.
    #[serde(default)]
    pub signature: Option<SignatureRecord>,
    /// Set once when the media is removed (`JourneyAction::RemoveMedia`): a
    /// tombstone, the reference and the bytes stay.
    #[serde(default)]
    pub removed: Option<Stamp>,
}

impl MediaRef {
    /// A reference with its id, kind and capture stamp, everything else unset.
    pub fn new(id: MediaId, kind: MediaKind, captured: Stamp) -> Self {
        Self {
            id,
            kind,
            sha256: None,
            size: None,
            step: None,
            activity: None,
            entry: None,
            captured,
            content_type: None,
            width: None,
            height: None,
            captured_at: None,
            exif_time: None,
            exif_gps: None,
            gps: None,
            device: None,
            thumbnail_sha256: None,
            thumbnail_size: None,
            signature: None,
            removed: None,
        }
    }
}

/// Who signs: the customer or a crew member.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SignerRole {
    Customer,
    Crew,
}

string_scalar!(SignerRole);

/// What a signature binds together. A signature's PNG hash is its `MediaRef`'s
/// `sha256`; a refusal has no PNG and says why in `refused`.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct SignatureRecord {
    pub signer_name: String,
    pub signer_role: SignerRole,
    /// What is signed (e.g. `bill_of_lading`, `inventory:step-2`).
    pub document: String,
    /// Lowercase hex SHA-256 of the version of `document` that was shown.
    pub document_sha256: String,
    /// The signer agreed to sign electronically.
    pub consent: bool,
    /// Strokes drawn and points in them (the PNG is rendered from them).
    pub strokes: u64,
    pub points: u64,
    /// `Some(reason)` when the signer refused to sign.
    pub refused: Option<String>,
}

/// An activity inside a step (StepActivity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub id: ActivityId,
    pub kind: ActivityKind,
    pub title: Option<String>,
    pub created: Stamp,
    /// Items in display order; empty unless `kind` is CHECKLIST.
    pub checklist: Vec<(String, ChecklistItem)>,
    pub media_id: Option<MediaId>,
    pub text: Option<String>,
}

/// One of the journey's four steps (JourneyStep) as the app sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub number: StepNumber,
    pub name: String,
    pub status: StepStatus,
    pub requires_approval: bool,
    pub started: Option<Stamp>,
    pub completed: Option<Stamp>,
    pub approval: Option<Approval>,
    pub activities: Vec<Activity>,
}

/// A whole journey as the app reads it (TruckJourney with its parts).
///
/// GPS points are summarised here (count and last fix); the full track is read with
/// `DeviceStore::gps_track`, so reading a journey stays cheap late in the day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journey {
    pub id: JourneyId,
    pub client_id: ClientId,
    pub location_id: LocationId,
    pub timezone: String,
    /// The journey's day, in the location's timezone.
    pub date: NaiveDate,
    /// The furthest stage reached.
    pub stage: Stage,
    pub stage_history: Vec<StageReached>,
    pub truck_number: Option<String>,
    pub move_source_id: Option<MoveSourceId>,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    pub created: Stamp,
    pub steps: Vec<Step>,
    pub crew: Vec<CrewMember>,
    pub notes: Vec<Note>,
    /// Entries in id order (ids are time-ordered UUIDv7s).
    pub entries: Vec<Entry>,
    pub gps_point_count: u64,
    pub last_gps: Option<GpsPoint>,
    pub media: Vec<MediaRef>,
}

/// What a dispatcher (or a test) supplies to create a journey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewJourney {
    /// Leave `None` for a fresh id.
    pub id: Option<JourneyId>,
    pub client_id: ClientId,
    pub location_id: LocationId,
    pub date: NaiveDate,
    pub truck_number: Option<String>,
    pub move_source_id: Option<MoveSourceId>,
    /// Steps whose completion needs a manager's approval.
    pub steps_requiring_approval: Vec<StepNumber>,
}

/// A branch of the company as the device knows it: what decides "today".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub id: LocationId,
    pub client_id: ClientId,
    pub name: String,
    /// An IANA timezone name, e.g. America/Toronto or America/St_Johns.
    pub timezone: String,
}

/// The person using the app now; every change the store makes is attributed to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveUser {
    pub user_id: UserId,
    pub role: Role,
}

/// A row of the journey list: read from the summary table, never from documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneySummary {
    pub id: JourneyId,
    pub client_id: ClientId,
    pub location_id: LocationId,
    pub date: NaiveDate,
    pub stage: Stage,
    pub truck_number: Option<String>,
    pub crew: Vec<(UserId, Role)>,
    pub entry_count: u64,
    pub photo_count: u64,
    pub signature_count: u64,
    pub note_count: u64,
    pub gps_point_count: u64,
    /// Local changes not yet acknowledged by a server.
    pub pending_changes: u64,
}
