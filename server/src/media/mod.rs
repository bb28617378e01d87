//! Media (issue 5, server side): resumable uploads, the blob store, serving, size
//! limits, usage, and the evidence rules (tombstones, retention, legal holds).
//!
//! The protocol (agreed with the device side, see `core::sync::upload`):
//!
//! ```text
//! POST  /v1/media/uploads                      {media_id, journey_id, kind, content_type, size, sha256}
//!                                              → 201 {upload_id, offset, max_chunk} (200 when repeated)
//! HEAD  /v1/media/uploads/{upload_id}          → 200, Upload-Offset: n (the server owns the offset)
//! PATCH /v1/media/uploads/{upload_id}          Upload-Offset: n, Chunk-Sha256: hex, raw bytes
//!                                              → 204, Upload-Offset: new (409 + correct offset if wrong)
//! POST  /v1/media/uploads/{upload_id}/complete → 200 {media_id, sha256, size, width, height}
//! GET   /v1/media/{media_id}[/thumbnail]       DELETE /v1/media/{media_id} (ADMIN: tombstone)
//! GET   /v1/media/usage                        PUT /v1/journeys/{journey}/legal-hold
//! ```
//!
//! - **Entry before bytes**: an upload is created only for a `MediaRef` the
//!   server's copy of the journey already holds, with the same hash and kind
//!   ([`entry`]); otherwise 409 `entry_not_synced`.
//! - **Durable offsets**: a chunk is written at its offset into a staging file
//!   named by the server-made upload id ([`staging`]), fsynced, and only then is the
//!   offset in the database moved (conditionally on the old value, so of two
//!   PATCHes at one offset exactly one wins) and the chunk acknowledged.
//! - **Completion** checks the whole file's SHA-256, that the uploader may still
//!   write the journey, the magic bytes and (with explicit `image::Limits`) the
//!   image itself ([`images`]), then stores the blob under `{tenant}/{sha256}`
//!   through `object_store` ([`blobs`]), records the row ([`db`]) and an audit entry.
//! - **Evidence** ([`evidence`]): deletion is an ADMIN tombstone; originals past the
//!   tenant's retention are purged unless their journey is on legal hold.

pub mod blobs;
pub mod db;
pub mod entry;
pub mod evidence;
pub mod http;
pub mod images;
pub mod staging;
pub mod uploads;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::directory::{Db, DirectoryError};
use crate::storage::{Storage, StorageError};

pub use http::routes;

/// Header carrying an upload's offset (request: where the chunk goes; response:
/// where the server stands).
pub const UPLOAD_OFFSET: &str = "upload-offset";
/// Header carrying a chunk's SHA-256 (hex).
pub const CHUNK_SHA256: &str = "chunk-sha256";

const MIB: u64 = 1024 * 1024;
/// Per-kind size limits unless configured.
pub const DEFAULT_MAX_SIGNATURE: u64 = 2 * MIB;
pub const DEFAULT_MAX_THUMBNAIL: u64 = MIB;
pub const DEFAULT_MAX_PHOTO: u64 = 40 * MIB;
pub const DEFAULT_MAX_VIDEO: u64 = 2 * 1024 * MIB;
/// Largest chunk one PATCH may carry unless configured.
pub const DEFAULT_MAX_CHUNK: u64 = 8 * MIB;
/// Abandoned partial uploads expire after this long unless configured.
pub const DEFAULT_UPLOAD_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// What an item is. `Thumbnail` is the device's thumbnail of the photo (or video)
/// with the same media id.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::AsRefStr,
    strum::EnumString,
    strum::Display,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Kind {
    Photo,
    Video,
    Signature,
    Thumbnail,
}

impl Kind {
    /// Whether the bytes are an image the server decodes (and thumbnails).
    pub fn is_image(self) -> bool {
        !matches!(self, Kind::Video)
    }

    /// Whether `content_type` is one this kind may declare.
    pub fn accepts(self, content_type: &str) -> bool {
        let ct = content_type.trim().to_ascii_lowercase();
        match self {
            Kind::Photo | Kind::Thumbnail => {
                matches!(ct.as_str(), "image/jpeg" | "image/png" | "image/webp")
            }
            Kind::Signature => ct == "image/png",
            Kind::Video => matches!(
                ct.as_str(),
                "video/mp4" | "video/quicktime" | "video/webm" | "video/3gpp"
            ),
        }
    }
}

/// Configuration of the media store (flags in [`crate::config::Config`]).
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Staging files live under `{data_dir}/media/staging`, local blobs under
    /// `{data_dir}/media/blobs`.
    pub data_dir: PathBuf,
    pub max_signature: u64,
    pub max_thumbnail: u64,
    pub max_photo: u64,
    pub max_video: u64,
    pub max_chunk: u64,
    pub upload_expiry: Duration,
    /// Largest width or height of an image the server decodes (bombs past it: 422).
    pub max_image_side: u32,
    /// Where blobs go (local filesystem unless an S3 bucket is configured).
    pub blobs: blobs::BlobConfig,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./crewsync-data"),
            max_signature: DEFAULT_MAX_SIGNATURE,
            max_thumbnail: DEFAULT_MAX_THUMBNAIL,
            max_photo: DEFAULT_MAX_PHOTO,
            max_video: DEFAULT_MAX_VIDEO,
            max_chunk: DEFAULT_MAX_CHUNK,
            upload_expiry: DEFAULT_UPLOAD_EXPIRY,
            max_image_side: images::DEFAULT_MAX_SIDE,
            blobs: blobs::BlobConfig::Local,
        }
    }
}

impl MediaConfig {
    /// The size limit of `kind`.
    pub fn max_size(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Photo => self.max_photo,
            Kind::Video => self.max_video,
            Kind::Signature => self.max_signature,
            Kind::Thumbnail => self.max_thumbnail,
        }
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.data_dir.join("media").join("staging")
    }

    pub fn local_blob_dir(&self) -> PathBuf {
        self.data_dir.join("media").join("blobs")
    }
}

/// The server's clock in epoch milliseconds; tests substitute one they advance.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The real clock.
pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

/// Everything media works over. Cheap to clone.
#[derive(Clone)]
pub struct MediaService {
    pub config: Arc<MediaConfig>,
    pub db: Db,
    pub storage: Arc<dyn Storage>,
    pub blobs: blobs::Blobs,
    pub staging: staging::Staging,
    clock: Clock,
    /// One writer per upload at a time in this process: a PATCH or completion
    /// holds its upload's lock, so a second one waits, then sees the moved offset.
    locks: Arc<Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>>,
}

impl std::fmt::Debug for MediaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MediaService {
    /// Over the server's database and log; directories are made on first use.
    pub fn new(config: MediaConfig, db: Db, storage: Arc<dyn Storage>) -> Self {
        let blobs = blobs::Blobs::new(&config);
        let staging = staging::Staging::new(config.staging_dir());
        Self {
            config: Arc::new(config),
            db,
            storage,
            blobs,
            staging,
            clock: system_clock(),
            locks: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The same service on another clock (tests advance it to expire uploads).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The in-process lock of one upload.
    pub(crate) fn lock_for(&self, upload: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.locks.lock() {
            Ok(locks) => locks,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Drop locks nobody holds, so the map stays as small as the live uploads.
        if locks.len() > 1024 {
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        Arc::clone(locks.entry(upload).or_default())
    }

    /// Uploads older than the expiry, as of now.
    pub fn expired_before(&self) -> i64 {
        let expiry = i64::try_from(self.config.upload_expiry.as_millis()).unwrap_or(i64::MAX);
        self.now().saturating_sub(expiry)
    }
}

/// Why a media request failed. Answers are JSON `{error, message}`.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    /// The journey the server holds has no matching `MediaRef` yet.
    #[error("the journey's entry for this media has not reached the server yet: {0}")]
    EntryNotSynced(String),
    /// A chunk at the wrong offset: nothing written; `offset` is the server's.
    #[error("the upload is at offset {offset}")]
    OffsetMismatch { offset: u64 },
    /// Completion before every byte arrived.
    #[error("the upload has {offset} of {size} bytes")]
    Incomplete { offset: u64, size: u64 },
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    ContentType(String),
    #[error("the chunk's SHA-256 does not match Chunk-Sha256")]
    ChunkDigest,
    #[error("the file's SHA-256 {actual} does not match the declared {declared}")]
    Digest { declared: String, actual: String },
    #[error("image refused: {0}")]
    Image(String),
    /// Tombstoned (ADMIN deletion) or its original purged past retention.
    #[error("{0}")]
    Gone(String),
    #[error("another request is writing this upload")]
    Busy,
    #[error("database unavailable: {0}")]
    Database(String),
    #[error("blob store: {0}")]
    Blob(String),
    #[error("staging: {0}")]
    Staging(String),
    #[error("invalid stored value: {0}")]
    Corrupt(String),
}

impl MediaError {
    /// The machine-readable code in the JSON answer.
    pub fn code(&self) -> &'static str {
        match self {
            MediaError::NotFound(_) => "not_found",
            MediaError::Forbidden(_) => "forbidden",
            MediaError::Invalid(_) => "invalid_request",
            MediaError::EntryNotSynced(_) => "entry_not_synced",
            MediaError::OffsetMismatch { .. } => "offset_mismatch",
            MediaError::Incomplete { .. } => "upload_incomplete",
            MediaError::TooLarge(_) => "too_large",
            MediaError::ContentType(_) => "unsupported_content_type",
            MediaError::ChunkDigest => "chunk_digest_mismatch",
            MediaError::Digest { .. } => "digest_mismatch",
            MediaError::Image(_) => "image_rejected",
            MediaError::Gone(_) => "gone",
            MediaError::Busy => "busy",
            MediaError::Database(_) => "unavailable",
            MediaError::Blob(_) | MediaError::Staging(_) => "storage_error",
            MediaError::Corrupt(_) => "corrupt",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            MediaError::NotFound(_) => StatusCode::NOT_FOUND,
            MediaError::Forbidden(_) => StatusCode::FORBIDDEN,
            MediaError::Invalid(_) => StatusCode::BAD_REQUEST,
            MediaError::EntryNotSynced(_)
            | MediaError::OffsetMismatch { .. }
            | MediaError::Incomplete { .. }
            | MediaError::Busy => StatusCode::CONFLICT,
            MediaError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            MediaError::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            MediaError::ChunkDigest | MediaError::Digest { .. } | MediaError::Image(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            MediaError::Gone(_) => StatusCode::GONE,
            MediaError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
            MediaError::Blob(_) | MediaError::Staging(_) | MediaError::Corrupt(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl From<DirectoryError> for MediaError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::NotFound(what) => MediaError::NotFound(what),
            DirectoryError::Corrupt(what) => MediaError::Corrupt(what),
            other => MediaError::Database(other.to_string()),
        }
    }
}

impl From<StorageError> for MediaError {
    fn from(e: StorageError) -> Self {
        MediaError::Database(e.to_string())
    }
}

/// The JSON body of a refused media request.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaErrorBody {
    pub error: String,
    pub message: String,
}

impl IntoResponse for MediaError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "media request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "media request refused");
        }
        let offset = match &self {
            MediaError::OffsetMismatch { offset } | MediaError::Incomplete { offset, .. } => {
                Some(*offset)
            }
            _ => None,
        };
        let body = MediaErrorBody {
            error: self.code().to_owned(),
            message: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(offset) = offset {
            response
                .headers_mut()
                .insert(UPLOAD_OFFSET, HeaderValue::from(offset));
        }
        response
    }
}
