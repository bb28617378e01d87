//! The upload operations behind the HTTP handlers: create (or look up), offset,
//! chunk, complete. Each takes the caller's [`Principal`]; another tenant's ids
//! are "not found", like unknown ones.

use bytes::Bytes;
use chrono::Utc;
use crewsync_core::audit::JOURNEY_ENTITY;
use crewsync_core::document::JourneyDocument;
use crewsync_core::ids::{JourneyId, MediaId};
use crewsync_core::policy::{self, JourneyContext, Touch};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::db::{self, MediaRow, UploadRow};
use super::staging::ChunkFailure;
use super::{Kind, MediaError, MediaService, blobs, entry, images};
use crate::Services;
use crate::auth::http::Principal;
use crate::scope::Scope;

/// `POST /v1/media/uploads`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateUpload {
    #[schema(value_type = String, format = Uuid)]
    pub media_id: MediaId,
    #[schema(value_type = String, format = Uuid)]
    pub journey_id: JourneyId,
    pub kind: Kind,
    pub content_type: String,
    pub size: u64,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
}

/// Where an upload stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploadState {
    #[schema(value_type = String, format = Uuid)]
    pub upload_id: Uuid,
    pub offset: u64,
    pub max_chunk: u64,
    /// `open`, or `complete` when the media is already stored.
    pub status: String,
}

/// A stored media item, as `complete` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Completed {
    #[schema(value_type = String, format = Uuid)]
    pub media_id: MediaId,
    pub kind: Kind,
    pub sha256: String,
    pub size: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// A new upload (`true`) or the one that existed.
pub struct Created {
    pub new: bool,
    pub state: UploadState,
}

/// A journey the caller may write media to, loaded.
pub(crate) async fn writable_journey(
    services: &Services,
    principal: &Principal,
    journey: JourneyId,
) -> Result<JourneyDocument, MediaError> {
    let doc = visible_journey(services, principal, journey).await?;
    let on_crew = doc
        .is_on_crew(principal.user)
        .map_err(|e| MediaError::Corrupt(e.to_string()))?;
    let table = services
        .auth
        .directory
        .permissions(principal.tenant)
        .await?;
    // The stage is left out on purpose: bytes of an entry the server accepted
    // are evidence, and they may arrive after the journey was audited.
    let context = JourneyContext {
        creating: false,
        stage: None,
        on_crew,
    };
    policy::check_all(principal.role, &table, &context, &[Touch::Media])
        .map_err(|denial| MediaError::Forbidden(denial.to_string()))?;
    Ok(doc)
}

/// A journey in the caller's sync scope, loaded; 404 otherwise.
pub(crate) async fn visible_journey(
    services: &Services,
    principal: &Principal,
    journey: JourneyId,
) -> Result<JourneyDocument, MediaError> {
    let tenant = principal.tenant_key();
    let missing = || MediaError::NotFound(format!("journey {journey}"));
    let reach = services.scopes.reach(&tenant, &[journey]).await?;
    let reach = reach.first().ok_or_else(missing)?;
    let scope = Scope::of(principal, Utc::now().date_naive(), services.window);
    if !scope.covers(reach) {
        return Err(missing());
    }
    let record = services.storage.journey(&tenant, journey).await?;
    tokio::task::spawn_blocking(move || crate::checks::load(journey, &record))
        .await
        .map_err(|e| MediaError::Corrupt(format!("load task: {e}")))?
        .map_err(|e| MediaError::Corrupt(e.to_string()))
}

fn valid_sha256(text: &str) -> Result<String, MediaError> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(MediaError::Invalid(
            "sha256 must be 64 hex characters".into(),
        ))
    }
}

impl MediaService {
    fn state(&self, row: &UploadRow) -> UploadState {
        UploadState {
            upload_id: row.id,
            offset: row.offset(),
            max_chunk: self.config.max_chunk,
            status: row.status.clone(),
        }
    }

    fn is_expired(&self, row: &UploadRow) -> bool {
        row.status != db::COMPLETE && row.updated_at < self.expired_before()
    }

    /// Creates an upload, or answers the existing one of the same item.
    pub async fn create_upload(
        &self,
        services: &Services,
        principal: &Principal,
        request: CreateUpload,
    ) -> Result<Created, MediaError> {
        if !request.kind.accepts(&request.content_type) {
            return Err(MediaError::ContentType(format!(
                "{} is not a content type for a {}",
                request.content_type, request.kind
            )));
        }
        let limit = self.config.max_size(request.kind);
        if request.size > limit {
            return Err(MediaError::TooLarge(format!(
                "a {} may be at most {limit} bytes",
                request.kind
            )));
        }
        let sha256 = valid_sha256(&request.sha256)?;
        let doc = writable_journey(services, principal, request.journey_id).await?;
        entry::check(
            entry::facts(&doc, request.media_id).as_ref(),
            request.media_id,
            request.kind,
            &sha256,
            request.size,
        )?;
        let tenant = principal.tenant_key();
        let now = self.now();
        let fresh = UploadRow {
            id: Uuid::new_v4(),
            tenant: tenant.clone(),
            media_id: request.media_id.as_uuid(),
            kind: request.kind.as_ref().to_owned(),
            journey_id: request.journey_id.as_uuid(),
            content_type: request.content_type.trim().to_ascii_lowercase(),
            size: i64::try_from(request.size).unwrap_or(i64::MAX),
            sha256,
            upload_offset: 0,
            status: db::OPEN.to_owned(),
            user_id: principal.user.as_uuid(),
            device_id: principal.device.as_uuid(),
            created_at: now,
            updated_at: now,
        };
        if let Some(existing) =
            db::upload_of_item(&self.db, &tenant, fresh.media_id, &fresh.kind).await?
        {
            let lock = self.lock_for(existing.id);
            let _held = lock.lock().await;
            let Some(existing) = db::upload(&self.db, &tenant, existing.id).await? else {
                return Err(MediaError::Busy);
            };
            if existing.status == db::COMPLETE {
                return Ok(Created {
                    new: false,
                    state: self.state(&existing),
                });
            }
            let same = existing.sha256 == fresh.sha256 && existing.size == fresh.size;
            if existing.status == db::OPEN && same && !self.is_expired(&existing) {
                if existing.user_id != fresh.user_id || existing.device_id != fresh.device_id {
                    // Whoever may write the item now carries its upload on.
                    db::hand_over(&self.db, &existing, fresh.user_id, fresh.device_id, now).await?;
                }
                return Ok(Created {
                    new: false,
                    state: self.state(&existing),
                });
            }
            // Failed, expired or re-declared: the same upload id starts again from 0.
            db::fail(&self.db, &tenant, existing.id, now).await?;
            self.staging.remove(existing.id).await?;
            self.staging.create(existing.id).await?;
            let reopened = UploadRow {
                id: existing.id,
                ..fresh
            };
            db::reopen(&self.db, &reopened).await?;
            return Ok(Created {
                new: false,
                state: self.state(&reopened),
            });
        }
        self.staging.create(fresh.id).await?;
        let stored = db::insert_upload(&self.db, &fresh).await?;
        if stored.id != fresh.id {
            // Another request created it first.
            self.staging.remove(fresh.id).await?;
        }
        Ok(Created {
            new: stored.id == fresh.id,
            state: self.state(&stored),
        })
    }

    /// One of the caller's own uploads; expired and failed ones are gone, and
    /// another user's (or tenant's) is "not found" alike.
    async fn live_upload(&self, principal: &Principal, id: Uuid) -> Result<UploadRow, MediaError> {
        let row = db::upload(&self.db, &principal.tenant_key(), id)
            .await?
            .filter(|row| {
                row.status != db::FAILED
                    && !self.is_expired(row)
                    && row.user_id == principal.user.as_uuid()
            })
            .ok_or_else(|| MediaError::NotFound(format!("upload {id}")))?;
        Ok(row)
    }

    /// The server's offset (`HEAD`).
    pub async fn offset(&self, principal: &Principal, id: Uuid) -> Result<u64, MediaError> {
        Ok(self.live_upload(principal, id).await?.offset())
    }

    /// Writes one chunk at `offset` (`PATCH`); returns the new offset.
    pub async fn write_chunk<S, E>(
        &self,
        principal: &Principal,
        id: Uuid,
        offset: u64,
        chunk_sha256: &str,
        content_length: Option<u64>,
        body: S,
    ) -> Result<u64, MediaError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let expected = valid_sha256(chunk_sha256)
            .map_err(|_| MediaError::Invalid("Chunk-Sha256 must be 64 hex characters".into()))?;
        let max_chunk = self.config.max_chunk;
        if content_length.is_some_and(|n| n > max_chunk) {
            return Err(MediaError::TooLarge(format!(
                "a chunk may be at most {max_chunk} bytes"
            )));
        }
        let lock = self.lock_for(id);
        let _held = lock.lock().await;
        let row = self.live_upload(principal, id).await?;
        let current = row.offset();
        if row.status == db::COMPLETE || offset != current {
            return Err(MediaError::OffsetMismatch { offset: current });
        }
        let remaining = row.size().saturating_sub(current);
        if content_length.is_some_and(|n| n > remaining) {
            return Err(MediaError::TooLarge(format!(
                "the chunk goes past the declared size ({remaining} bytes remain)"
            )));
        }
        let limit = max_chunk.min(remaining);
        let written = match self.staging.write_at(id, current, body, limit).await {
            Ok(written) => written,
            Err(ChunkFailure::TooLong { limit }) => {
                return Err(MediaError::TooLarge(format!(
                    "the chunk is over {limit} bytes (the chunk limit or the declared size)"
                )));
            }
            Err(ChunkFailure::Body(e)) => {
                return Err(MediaError::Invalid(format!(
                    "the chunk did not arrive: {e}"
                )));
            }
            Err(ChunkFailure::Io(e)) => return Err(MediaError::Staging(e)),
        };
        if written.sha256 != expected {
            self.staging.truncate(id, current).await?;
            return Err(MediaError::ChunkDigest);
        }
        let next = current + written.len;
        if !db::advance(&self.db, &row.tenant, id, current, next, self.now()).await? {
            // Another server moved it: ours is not acknowledged.
            let now_at = db::upload(&self.db, &row.tenant, id)
                .await?
                .map_or(0, |r| r.offset());
            return Err(MediaError::OffsetMismatch { offset: now_at });
        }
        Ok(next)
    }

    /// Discards an upload that may not complete: marked failed, bytes removed.
    async fn discard(&self, row: &UploadRow) -> Result<(), MediaError> {
        db::fail(&self.db, &row.tenant, row.id, self.now()).await?;
        self.staging.remove(row.id).await
    }

    /// Verifies and stores a finished upload; idempotent.
    pub async fn complete(
        &self,
        services: &Services,
        principal: &Principal,
        id: Uuid,
    ) -> Result<Completed, MediaError> {
        let lock = self.lock_for(id);
        let _held = lock.lock().await;
        let row = self.live_upload(principal, id).await?;
        let kind: Kind = row
            .kind
            .parse()
            .map_err(|_| MediaError::Corrupt(format!("upload kind {:?}", row.kind)))?;
        if row.status == db::COMPLETE {
            let stored = db::media(&self.db, &row.tenant, row.media_id, &row.kind)
                .await?
                .ok_or_else(|| {
                    MediaError::Corrupt(format!("upload {id} complete without media"))
                })?;
            return completed(&stored, kind);
        }
        if row.offset() != row.size() {
            return Err(MediaError::Incomplete {
                offset: row.offset(),
                size: row.size(),
            });
        }
        // The caller's rights now, not at creation (TOCTOU): a user whose role
        // or crew changed since may not attach these bytes.
        if let Err(e) =
            writable_journey(services, principal, JourneyId::from_uuid(row.journey_id)).await
        {
            self.discard(&row).await?;
            return Err(e);
        }
        let actual = self.staging.digest(id, row.size()).await?;
        if actual != row.sha256 {
            self.discard(&row).await?;
            return Err(MediaError::Digest {
                declared: row.sha256.clone(),
                actual,
            });
        }
        let checked = if kind.is_image() {
            let path = self.staging.path(id);
            let content_type = row.content_type.clone();
            let max_side = self.config.max_image_side;
            let result =
                tokio::task::spawn_blocking(move || images::check(&path, &content_type, max_side))
                    .await
                    .map_err(|e| MediaError::Image(format!("decode task: {e}")))?;
            match result {
                Ok(checked) => Some(checked),
                Err(e) => {
                    self.discard(&row).await?;
                    return Err(e);
                }
            }
        } else {
            None
        };
        let blob_key = blobs::key(&row.tenant, &row.sha256)?;
        self.blobs
            .put_file(&blob_key, &self.staging.path(id))
            .await?;
        let mut thumb = None;
        if let Some(checked) = checked.as_ref().filter(|_| kind != Kind::Thumbnail) {
            let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&checked.thumbnail));
            let key = blobs::key(&row.tenant, &digest)?;
            let size = i64::try_from(checked.thumbnail.len()).unwrap_or(i64::MAX);
            self.blobs
                .put_bytes(&key, checked.thumbnail.clone())
                .await?;
            thumb = Some((key, size));
        }
        let now = self.now();
        let media = MediaRow {
            tenant: row.tenant.clone(),
            media_id: row.media_id,
            kind: row.kind.clone(),
            journey_id: row.journey_id,
            content_type: row.content_type.clone(),
            sha256: row.sha256.clone(),
            size: row.size,
            width: checked
                .as_ref()
                .map(|c| i32::try_from(c.width).unwrap_or(i32::MAX)),
            height: checked
                .as_ref()
                .map(|c| i32::try_from(c.height).unwrap_or(i32::MAX)),
            blob_key,
            thumb_size: thumb.as_ref().map(|(_, size)| *size),
            thumb_key: thumb.map(|(key, _)| key),
            // The uploader, whoever completes.
            user_id: row.user_id,
            device_id: row.device_id,
            created_at: now,
            deleted_at: None,
            deleted_by: None,
            purged_at: None,
        };
        let new = db::complete(&self.db, id, &media).await?;
        self.staging.remove(id).await?;
        let stored = db::media(&self.db, &row.tenant, row.media_id, &row.kind)
            .await?
            .ok_or_else(|| MediaError::Corrupt(format!("media of upload {id} vanished")))?;
        if new {
            crate::audit::record(
                self.storage.as_ref(),
                principal,
                "media.uploaded",
                JOURNEY_ENTITY,
                &row.journey_id.to_string(),
                serde_json::json!({
                    "media_id": row.media_id.to_string(),
                    "kind": row.kind,
                    "sha256": stored.sha256,
                    "size": stored.size,
                    "content_type": stored.content_type,
                    "width": stored.width,
                    "height": stored.height,
                }),
            )
            .await?;
        }
        completed(&stored, kind)
    }
}

fn completed(row: &MediaRow, kind: Kind) -> Result<Completed, MediaError> {
    Ok(Completed {
        media_id: MediaId::from_uuid(row.media_id),
        kind,
        sha256: row.sha256.clone(),
        size: u64::try_from(row.size).map_err(|_| MediaError::Corrupt("size".into()))?,
        width: row.width.and_then(|w| u32::try_from(w).ok()),
        height: row.height.and_then(|h| u32::try_from(h).ok()),
    })
}
