//! The records and enums the apps read and pass, each mapped from or to its core
//! type. Ids cross as UUID strings, days as `YYYY-MM-DD`, times as milliseconds since
//! the Unix epoch (UTC).

use crewsync_core::media::NetworkKind;
use crewsync_core::model;
use crewsync_core::store::RejectedChange as CoreRejected;
use crewsync_core::sync::auth::UserView;
use crewsync_core::sync::runtime::{SyncOutcome as CoreOutcome, SyncStatus as CoreStatus};

use crate::error::{CrewsyncError, Result};

/// Maps a fieldless core enum onto its FFI twin, both ways.
macro_rules! mirror_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
        pub enum $name { $($variant),+ }

        impl From<model::$name> for $name {
            fn from(value: model::$name) -> Self {
                match value { $(model::$name::$variant => Self::$variant),+ }
            }
        }

        impl From<$name> for model::$name {
            fn from(value: $name) -> Self {
                match value { $($name::$variant => Self::$variant),+ }
            }
        }
    };
}

mirror_enum!(
    /// A journey's stage; it only moves forward.
    Stage { MorningPrep, EnRoute, Onsite, Completed, Audited }
);
mirror_enum!(
    /// The six roles.
    Role { Admin, Dispatcher, Driver, Mover, Manager, Auditor }
);
mirror_enum!(StepStatus {
    Pending,
    InProgress,
    Completed
});
mirror_enum!(ActivityKind {
    Checklist,
    Photo,
    Video,
    Approval,
    Note,
    Signature
});
mirror_enum!(EntryKind {
    Note,
    Gps,
    Photo,
    Video,
    Signature,
    StatusUpdate
});
mirror_enum!(MediaKind {
    Photo,
    Video,
    Signature
});
mirror_enum!(
    /// Who signed: the customer, or a crew member.
    SignerRole { Customer, Crew }
);

/// What kind of network the platform says the device is on. Stored for the media
/// upload queue (large uploads wait for an unmetered network); a change to a usable
/// network also wakes background sync. `Unknown` (before the app has said) counts as
/// a metered network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, uniffi::Enum)]
pub enum NetworkType {
    #[default]
    Unknown,
    Offline,
    Wifi,
    Cellular,
}

impl From<NetworkType> for NetworkKind {
    fn from(n: NetworkType) -> Self {
        match n {
            NetworkType::Offline => Self::Offline,
            NetworkType::Wifi => Self::Wifi,
            NetworkType::Cellular | NetworkType::Unknown => Self::Cellular,
        }
    }
}

/// Who did something, and when their device says it was.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Stamp {
    pub by: String,
    pub at_ms: i64,
}

impl From<model::Stamp> for Stamp {
    fn from(s: model::Stamp) -> Self {
        Self {
            by: s.by.to_string(),
            at_ms: s.at.millis(),
        }
    }
}

/// A GPS fix; `accuracy_m` is the horizontal accuracy the platform reported.
#[derive(Debug, Clone, Copy, PartialEq, uniffi::Record)]
pub struct GpsPoint {
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: Option<f32>,
    pub at_ms: i64,
}

impl From<model::GpsPoint> for GpsPoint {
    fn from(p: model::GpsPoint) -> Self {
        Self {
            lat: p.lat,
            lon: p.lon,
            accuracy_m: p.accuracy_m,
            at_ms: p.at.millis(),
        }
    }
}

impl From<GpsPoint> for model::GpsPoint {
    fn from(p: GpsPoint) -> Self {
        Self {
            lat: p.lat,
            lon: p.lon,
            accuracy_m: p.accuracy_m,
            at: model::Timestamp(p.at_ms),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct StageReached {
    pub stage: Stage,
    pub reached: Stamp,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CrewMember {
    pub user_id: String,
    pub role: Role,
    pub assigned: Stamp,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Note {
    pub text: String,
    pub written: Stamp,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ChecklistItem {
    /// The item's key, as `set_checklist_item` takes it.
    pub key: String,
    pub label: String,
    pub position: u64,
    pub checked: bool,
    pub changed: Option<Stamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Approval {
    pub approved: Stamp,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Activity {
    pub id: String,
    pub kind: ActivityKind,
    pub title: Option<String>,
    pub created: Stamp,
    pub checklist: Vec<ChecklistItem>,
    pub media_id: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Step {
    pub number: u8,
    pub name: String,
    pub status: StepStatus,
    pub requires_approval: bool,
    pub started: Option<Stamp>,
    pub completed: Option<Stamp>,
    pub approval: Option<Approval>,
    pub activities: Vec<Activity>,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Entry {
    pub id: String,
    pub kind: EntryKind,
    pub tag: Option<String>,
    pub author: String,
    pub device_time_ms: i64,
    pub text: Option<String>,
    pub location: Option<GpsPoint>,
    pub stage: Option<Stage>,
    pub step: Option<u8>,
    pub media_id: Option<String>,
}

/// What the app supplies to add an entry; id, author and time are filled in.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct NewEntry {
    pub kind: EntryKind,
    pub tag: Option<String>,
    pub text: Option<String>,
    pub location: Option<GpsPoint>,
    pub stage: Option<Stage>,
    pub step: Option<u8>,
    pub media_id: Option<String>,
}

impl TryFrom<NewEntry> for model::NewEntry {
    type Error = CrewsyncError;
    fn try_from(e: NewEntry) -> Result<Self> {
        Ok(Self {
            kind: e.kind.into(),
            tag: e.tag,
            text: e.text,
            location: e.location.map(Into::into),
            stage: e.stage.map(Into::into),
            step: e.step.map(model::StepNumber::new).transpose()?,
            media_id: e.media_id.as_deref().map(str::parse).transpose()?,
        })
    }
}

/// A photo, video or signature in a journey. Removed media stays, tombstoned.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct MediaRef {
    pub id: String,
    pub kind: MediaKind,
    /// Lowercase hex SHA-256 of the original (none for a refusal to sign).
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub step: Option<u8>,
    pub activity: Option<String>,
    /// The entry that records the capture.
    pub entry: Option<String>,
    pub captured: Stamp,
    pub content_type: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// When it was taken: the camera's EXIF time where present, else the device's.
    pub captured_at_ms: Option<i64>,
    /// The app's GPS fix at capture, and the camera's own (EXIF), if any.
    pub gps: Option<GpsPoint>,
    pub exif_gps: Option<GpsPoint>,
    pub thumbnail_sha256: Option<String>,
    pub signature: Option<crate::media::SignatureRecord>,
    /// Who removed it and when, if it was removed.
    pub removed: Option<Stamp>,
}

/// A whole journey as the app reads it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Journey {
    pub id: String,
    pub client_id: String,
    pub location_id: String,
    pub timezone: String,
    /// The journey's day (`YYYY-MM-DD`) in the location's timezone.
    pub date: String,
    pub stage: Stage,
    pub stage_history: Vec<StageReached>,
    pub truck_number: Option<String>,
    pub move_source_id: Option<String>,
    pub start_time_ms: Option<i64>,
    pub end_time_ms: Option<i64>,
    pub created: Stamp,
    pub steps: Vec<Step>,
    pub crew: Vec<CrewMember>,
    pub notes: Vec<Note>,
    pub entries: Vec<Entry>,
    pub gps_point_count: u64,
    pub last_gps: Option<GpsPoint>,
    pub media: Vec<MediaRef>,
}

impl From<model::Journey> for Journey {
    fn from(j: model::Journey) -> Self {
        Self {
            id: j.id.to_string(),
            client_id: j.client_id.to_string(),
            location_id: j.location_id.to_string(),
            timezone: j.timezone,
            date: j.date.to_string(),
            stage: j.stage.into(),
            stage_history: j
                .stage_history
                .into_iter()
                .map(|s| StageReached {
                    stage: s.stage.into(),
                    reached: s.reached.into(),
                })
                .collect(),
            truck_number: j.truck_number,
            move_source_id: j.move_source_id.map(|id| id.to_string()),
            start_time_ms: j.start_time.map(model::Timestamp::millis),
            end_time_ms: j.end_time.map(model::Timestamp::millis),
            created: j.created.into(),
            steps: j.steps.into_iter().map(step).collect(),
            crew: j
                .crew
                .into_iter()
                .map(|c| CrewMember {
                    user_id: c.user_id.to_string(),
                    role: c.role.into(),
                    assigned: c.assigned.into(),
                })
                .collect(),
            notes: j
                .notes
                .into_iter()
                .map(|n| Note {
                    text: n.text,
                    written: n.written.into(),
                })
                .collect(),
            entries: j.entries.into_iter().map(entry).collect(),
            gps_point_count: j.gps_point_count,
            last_gps: j.last_gps.map(Into::into),
            media: j.media.into_iter().map(Into::into).collect(),
        }
    }
}

fn step(s: model::Step) -> Step {
    Step {
        number: s.number.get(),
        name: s.name,
        status: s.status.into(),
        requires_approval: s.requires_approval,
        started: s.started.map(Into::into),
        completed: s.completed.map(Into::into),
        approval: s.approval.map(|a| Approval {
            approved: a.approved.into(),
            comment: a.comment,
        }),
        activities: s
            .activities
            .into_iter()
            .map(|a| Activity {
                id: a.id.to_string(),
                kind: a.kind.into(),
                title: a.title,
                created: a.created.into(),
                checklist: a
                    .checklist
                    .into_iter()
                    .map(|(key, item)| ChecklistItem {
                        key,
                        label: item.label,
                        position: item.position,
                        checked: item.checked,
                        changed: item.changed.map(Into::into),
                    })
                    .collect(),
                media_id: a.media_id.map(|id| id.to_string()),
                text: a.text,
            })
            .collect(),
    }
}

fn entry(e: model::Entry) -> Entry {
    Entry {
        id: e.id.to_string(),
        kind: e.kind.into(),
        tag: e.tag,
        author: e.author.to_string(),
        device_time_ms: e.device_time.millis(),
        text: e.text,
        location: e.location.map(Into::into),
        stage: e.stage.map(Into::into),
        step: e.step,
        media_id: e.media_id.map(|id| id.to_string()),
    }
}

impl From<model::MediaRef> for MediaRef {
    fn from(m: model::MediaRef) -> Self {
        Self {
            id: m.id.to_string(),
            kind: m.kind.into(),
            sha256: m.sha256,
            size: m.size,
            step: m.step,
            activity: m.activity.map(|id| id.to_string()),
            entry: m.entry.map(|id| id.to_string()),
            captured: m.captured.into(),
            content_type: m.content_type,
            width: m.width,
            height: m.height,
            captured_at_ms: m.captured_at.map(model::Timestamp::millis),
            gps: m.gps.map(Into::into),
            exif_gps: m.exif_gps.map(Into::into),
            thumbnail_sha256: m.thumbnail_sha256,
            signature: m.signature.map(Into::into),
            removed: m.removed.map(Into::into),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CrewRole {
    pub user_id: String,
    pub role: Role,
}

/// A row of the day's journey list (read without loading documents).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct JourneySummary {
    pub id: String,
    pub client_id: String,
    pub location_id: String,
    pub date: String,
    pub stage: Stage,
    pub truck_number: Option<String>,
    pub crew: Vec<CrewRole>,
    pub entry_count: u64,
    pub photo_count: u64,
    pub signature_count: u64,
    pub note_count: u64,
    pub gps_point_count: u64,
    /// Local changes not yet acknowledged by the server.
    pub pending_changes: u64,
}

impl From<model::JourneySummary> for JourneySummary {
    fn from(s: model::JourneySummary) -> Self {
        Self {
            id: s.id.to_string(),
            client_id: s.client_id.to_string(),
            location_id: s.location_id.to_string(),
            date: s.date.to_string(),
            stage: s.stage.into(),
            truck_number: s.truck_number,
            crew: s
                .crew
                .into_iter()
                .map(|(user, role)| CrewRole {
                    user_id: user.to_string(),
                    role: role.into(),
                })
                .collect(),
            entry_count: s.entry_count,
            photo_count: s.photo_count,
            signature_count: s.signature_count,
            note_count: s.note_count,
            gps_point_count: s.gps_point_count,
            pending_changes: s.pending_changes,
        }
    }
}

/// A branch of the company: its timezone decides which day is "today".
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Location {
    pub id: String,
    pub client_id: String,
    pub name: String,
    /// An IANA name, e.g. America/Toronto.
    pub timezone: String,
}

impl TryFrom<Location> for model::Location {
    type Error = CrewsyncError;
    fn try_from(l: Location) -> Result<Self> {
        Ok(Self {
            id: l.id.parse()?,
            client_id: l.client_id.parse()?,
            name: l.name,
            timezone: l.timezone,
        })
    }
}

/// The signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SignedInUser {
    pub user_id: String,
    pub tenant_id: String,
    pub location_id: String,
    pub name: String,
    pub email: String,
    pub role: Role,
}

impl From<UserView> for SignedInUser {
    fn from(u: UserView) -> Self {
        Self {
            user_id: u.id.to_string(),
            tenant_id: u.tenant.to_string(),
            location_id: u.location_id.to_string(),
            name: u.name,
            email: u.email,
            role: u.role.into(),
        }
    }
}

/// What the app shows about sync: connection, pending work, last outcome.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatus {
    pub connected: bool,
    pub syncing: bool,
    pub paused: bool,
    /// Listening on the server's live channel.
    pub live: bool,
    pub pending_changes: u64,
    pub last_success_ms: Option<i64>,
    pub last_error: Option<String>,
    /// The media upload queue, updated as the server confirms each chunk.
    pub media: crate::media::MediaProgress,
    /// The media being uploaded now.
    pub uploading_media_id: Option<String>,
}

impl From<CoreStatus> for SyncStatus {
    fn from(s: CoreStatus) -> Self {
        Self {
            connected: s.connected,
            syncing: s.syncing,
            paused: s.paused,
            live: s.live,
            pending_changes: s.pending_changes,
            last_success_ms: s.last_success.map(model::Timestamp::millis),
            last_error: s.last_error,
            media: s.media.into(),
            uploading_media_id: s.uploading.map(|id| id.to_string()),
        }
    }
}

/// What one sync-now did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncOutcome {
    pub round_trips: u64,
    pub pushed: u64,
    pub acknowledged: u64,
    pub received: u64,
    pub applied_new: u64,
    pub pending: u64,
    /// The upload round that followed the document exchange.
    pub media: crate::media::MediaOutcome,
}

impl From<CoreOutcome> for SyncOutcome {
    fn from(o: CoreOutcome) -> Self {
        Self {
            round_trips: o.round_trips as u64,
            pushed: o.pushed as u64,
            acknowledged: o.acknowledged as u64,
            received: o.received as u64,
            applied_new: o.applied_new as u64,
            pending: o.pending,
            media: o.media.into(),
        }
    }
}

/// A local change the server refused: it left the journey and the outbox, and is
/// kept here with the reason so the crew can see what did not count.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RejectedChange {
    pub hash: String,
    pub journey_id: String,
    pub reason: String,
    pub rejected_at_ms: i64,
}

impl From<CoreRejected> for RejectedChange {
    fn from(r: CoreRejected) -> Self {
        Self {
            hash: r.hash.to_string(),
            journey_id: r.journey.to_string(),
            reason: r.reason,
            rejected_at_ms: r.rejected_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crewsync_core::media::queue::allowed_on;

    #[test]
    fn an_unknown_network_uploads_small_items_and_keeps_wifi_only_ones_waiting() {
        let unknown: NetworkKind = NetworkType::Unknown.into();
        assert!(allowed_on(unknown, false));
        assert!(!allowed_on(unknown, true));
        assert!(!allowed_on(NetworkType::Offline.into(), false));
        assert!(allowed_on(NetworkType::Wifi.into(), true));
    }
}
