//! The media records the apps pass (captures, signatures, refusals) and read (the
//! upload queue and its progress), each mapped from or to its core type.
//! Times cross as milliseconds since the Unix epoch, ids as UUID strings.

use crewsync_core::media::queue::{
    ItemState, QueueProgress, UploadItem as CoreItem, UploadKind as CoreKind,
};
use crewsync_core::media::signature as core_signature;
use crewsync_core::model::{self, StepNumber, Timestamp};
use crewsync_core::store::{CaptureInfo as CoreInfo, MediaProblem as CoreProblem};
use crewsync_core::sync::runtime::MediaOutcome as CoreMediaOutcome;

use crate::error::{CrewsyncError, Result};
use crate::records::{GpsPoint, SignerRole};

/// What the app knows about a photo or video besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, uniffi::Record)]
pub struct CaptureInfo {
    /// The step it documents (1–4), if any.
    #[uniffi(default = None)]
    pub step: Option<u8>,
    /// The step activity it belongs to (a PHOTO or VIDEO activity's id), if any.
    #[uniffi(default = None)]
    pub activity_id: Option<String>,
    /// The app's GPS fix at capture.
    #[uniffi(default = None)]
    pub gps: Option<GpsPoint>,
    /// A short code such as BR (broken) for a damage photo.
    #[uniffi(default = None)]
    pub tag: Option<String>,
    #[uniffi(default = None)]
    pub text: Option<String>,
}

impl TryFrom<CaptureInfo> for CoreInfo {
    type Error = CrewsyncError;
    fn try_from(i: CaptureInfo) -> Result<Self> {
        Ok(Self {
            step: i.step.map(StepNumber::new).transpose()?,
            activity: i.activity_id.as_deref().map(str::parse).transpose()?,
            gps: i.gps.map(Into::into),
            tag: i.tag,
            text: i.text,
        })
    }
}

/// One sampled point of a stroke, in drawing-pad pixels.
#[derive(Debug, Clone, Copy, PartialEq, uniffi::Record)]
pub struct StrokePoint {
    pub x: f32,
    pub y: f32,
    /// Device time of the sample.
    pub at_ms: i64,
    /// 0..=1 where the screen reports it (widens the line).
    pub pressure: Option<f32>,
}

/// One continuous stroke: finger down to finger up.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Stroke {
    pub points: Vec<StrokePoint>,
}

/// A signature as the signer drew it, and what it binds.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SignatureCapture {
    pub signer_name: String,
    pub signer_role: SignerRole,
    /// What was signed (e.g. `bill_of_lading`) …
    pub document: String,
    /// … and the lowercase hex SHA-256 of the version shown to the signer.
    pub document_sha256: String,
    /// The signer agreed to sign electronically; required (else record a refusal).
    pub consent: bool,
    /// The drawing pad's size in pixels; every point lies inside it.
    pub canvas_width: u32,
    pub canvas_height: u32,
    pub strokes: Vec<Stroke>,
    pub step: Option<u8>,
    pub gps: Option<GpsPoint>,
}

impl TryFrom<SignatureCapture> for core_signature::SignatureCapture {
    type Error = CrewsyncError;
    fn try_from(s: SignatureCapture) -> Result<Self> {
        Ok(Self {
            signer_name: s.signer_name,
            signer_role: s.signer_role.into(),
            document: s.document,
            document_sha256: s.document_sha256,
            consent: s.consent,
            canvas_width: s.canvas_width,
            canvas_height: s.canvas_height,
            strokes: s
                .strokes
                .into_iter()
                .map(|stroke| core_signature::Stroke {
                    points: stroke
                        .points
                        .into_iter()
                        .map(|p| core_signature::StrokePoint {
                            x: p.x,
                            y: p.y,
                            at: Timestamp(p.at_ms),
                            pressure: p.pressure,
                        })
                        .collect(),
                })
                .collect(),
            step: s.step.map(StepNumber::new).transpose()?,
            gps: s.gps.map(Into::into),
        })
    }
}

/// The signer refused to sign: kept with the reason, no image.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SignatureRefusal {
    pub signer_name: String,
    pub signer_role: SignerRole,
    pub document: String,
    pub document_sha256: String,
    pub reason: String,
    pub step: Option<u8>,
    pub gps: Option<GpsPoint>,
}

impl TryFrom<SignatureRefusal> for core_signature::SignatureRefusal {
    type Error = CrewsyncError;
    fn try_from(r: SignatureRefusal) -> Result<Self> {
        Ok(Self {
            signer_name: r.signer_name,
            signer_role: r.signer_role.into(),
            document: r.document,
            document_sha256: r.document_sha256,
            reason: r.reason,
            step: r.step.map(StepNumber::new).transpose()?,
            gps: r.gps.map(Into::into),
        })
    }
}

/// What a signature in a journey binds (or why the signer refused).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SignatureRecord {
    pub signer_name: String,
    pub signer_role: SignerRole,
    pub document: String,
    pub document_sha256: String,
    pub consent: bool,
    pub strokes: u64,
    pub points: u64,
    /// The refusal's reason, when the signer refused.
    pub refused: Option<String>,
}

impl From<model::SignatureRecord> for SignatureRecord {
    fn from(s: model::SignatureRecord) -> Self {
        Self {
            signer_name: s.signer_name,
            signer_role: s.signer_role.into(),
            document: s.document,
            document_sha256: s.document_sha256,
            consent: s.consent,
            strokes: s.strokes,
            points: s.points,
            refused: s.refused,
        }
    }
}

/// Items and bytes still to upload. A photo is two items (original and thumbnail).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, uniffi::Record)]
pub struct MediaProgress {
    pub pending_items: u64,
    /// Bytes the server has not confirmed yet.
    pub pending_bytes: u64,
    /// Items that failed too often and wait for `retry_media`.
    pub set_aside_items: u64,
    /// Items the server confirmed (until their files are purged).
    pub done_items: u64,
}

impl From<QueueProgress> for MediaProgress {
    fn from(p: QueueProgress) -> Self {
        Self {
            pending_items: p.pending_items,
            pending_bytes: p.pending_bytes,
            set_aside_items: p.set_aside_items,
            done_items: p.done_items,
        }
    }
}

/// What one upload round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, uniffi::Record)]
pub struct MediaOutcome {
    /// Items the server confirmed complete.
    pub uploaded: u32,
    /// Bytes sent of the items completed.
    pub bytes: u64,
    /// Items the server refused this round (each counted against the item) …
    pub failed: u32,
    /// … and of those, items set aside after their last attempt.
    pub set_aside: u32,
    /// The queue after the round.
    pub progress: MediaProgress,
}

impl From<CoreMediaOutcome> for MediaOutcome {
    fn from(o: CoreMediaOutcome) -> Self {
        Self {
            uploaded: o.uploaded,
            bytes: o.bytes,
            failed: o.failed,
            set_aside: o.set_aside,
            progress: o.progress.into(),
        }
    }
}

/// What an upload item carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum UploadKind {
    Photo,
    Video,
    Signature,
    Thumbnail,
}

impl From<CoreKind> for UploadKind {
    fn from(k: CoreKind) -> Self {
        match k {
            CoreKind::Photo => Self::Photo,
            CoreKind::Video => Self::Video,
            CoreKind::Signature => Self::Signature,
            CoreKind::Thumbnail => Self::Thumbnail,
        }
    }
}

/// Where an upload item is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum UploadState {
    Pending,
    /// The server confirmed the whole file.
    Done,
    /// Failed too often; waits for `retry_media` while the rest go on.
    SetAside,
}

impl From<ItemState> for UploadState {
    fn from(s: ItemState) -> Self {
        match s {
            ItemState::Pending => Self::Pending,
            ItemState::Done => Self::Done,
            ItemState::SetAside => Self::SetAside,
        }
    }
}

/// One file in the upload queue.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct UploadItem {
    /// The queue item's id (what `retry_media` takes).
    pub item_id: String,
    pub media_id: String,
    pub journey_id: String,
    pub kind: UploadKind,
    pub content_type: String,
    pub sha256: String,
    pub size: u64,
    /// Bytes the server has confirmed so far.
    pub sent_bytes: u64,
    pub attempts: u32,
    /// Waits for Wi-Fi (a large video).
    pub wifi_only: bool,
    pub state: UploadState,
    pub last_error: Option<String>,
}

impl From<CoreItem> for UploadItem {
    fn from(i: CoreItem) -> Self {
        Self {
            item_id: i.item_id,
            media_id: i.media_id.to_string(),
            journey_id: i.journey_id.to_string(),
            kind: i.kind.into(),
            content_type: i.content_type,
            sha256: i.sha256,
            size: i.size,
            sent_bytes: i.offset_hint,
            attempts: i.attempts,
            wifi_only: i.wifi_only,
            state: i.state.into(),
            last_error: i.last_error,
        }
    }
}

/// What an upload-progress observer hears: the totals, the item being sent now,
/// and every item of the queue (pending in upload order, then set aside, then done).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct UploadProgress {
    pub queue: MediaProgress,
    /// The media being uploaded right now, if any.
    pub uploading_media_id: Option<String>,
    pub items: Vec<UploadItem>,
}

/// A queued file that is not what its row says (found at open or by a check);
/// its item is set aside with this reason.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct MediaProblem {
    pub item_id: String,
    pub path: String,
    pub reason: String,
}

impl From<CoreProblem> for MediaProblem {
    fn from(p: CoreProblem) -> Self {
        Self {
            item_id: p.item_id,
            path: p.path.to_string_lossy().into_owned(),
            reason: p.reason,
        }
    }
}
