//! The media routes: thin handlers over [`MediaService`] (see the module docs
//! of [`crate::media`] for the protocol). Every route takes a bearer token; ids
//! of another tenant, or of a journey outside the caller's sync scope, are 404.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use crewsync_core::ids::{JourneyId, MediaId};
use crewsync_core::model::Role;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::db::{self, MediaRow};
use super::evidence::Usage;
use super::uploads::{Completed, CreateUpload, UploadState};
use super::{CHUNK_SHA256, MediaError, MediaErrorBody, UPLOAD_OFFSET};
use crate::Services;
use crate::auth::http::Principal;
use crate::scope::Scope;

/// The routes of this module, with their OpenAPI descriptions.
pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(create_upload))
        .routes(routes!(upload_offset, upload_chunk))
        .routes(routes!(complete_upload))
        .routes(routes!(media_usage))
        .routes(routes!(get_media, delete_media))
        .routes(routes!(get_thumbnail))
        .routes(routes!(legal_hold))
        .routes(routes!(journey_media))
}

/// `PUT /v1/journeys/{journey}/legal-hold`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LegalHold {
    pub hold: bool,
}

/// A journey's hold after the change.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LegalHoldState {
    #[schema(value_type = String, format = Uuid)]
    pub journey_id: JourneyId,
    pub hold: bool,
}

fn offset_header(offset: u64) -> [(&'static str, HeaderValue); 2] {
    [
        (UPLOAD_OFFSET, HeaderValue::from(offset)),
        ("cache-control", HeaderValue::from_static("no-store")),
    ]
}

/// Creates an upload for a media item whose entry the server already holds.
#[utoipa::path(post, path = "/v1/media/uploads", tag = "media",
    request_body = CreateUpload,
    responses(
        (status = 201, description = "Created", body = UploadState),
        (status = 200, description = "The item's existing upload (status `complete` when stored)", body = UploadState),
        (status = 403, description = "The caller may not add media to this journey", body = MediaErrorBody),
        (status = 404, description = "Unknown journey, another tenant's, or outside the caller's scope", body = MediaErrorBody),
        (status = 409, description = "`entry_not_synced`: the journey has no matching entry yet", body = MediaErrorBody),
        (status = 413, description = "Over the kind's size limit", body = MediaErrorBody),
        (status = 415, description = "A content type this kind cannot have", body = MediaErrorBody),
    ),
    security(("bearer" = [])))]
async fn create_upload(
    State(services): State<Services>,
    principal: Principal,
    Json(body): Json<CreateUpload>,
) -> Result<(StatusCode, Json<UploadState>), MediaError> {
    let created = services
        .media
        .create_upload(&services, &principal, body)
        .await?;
    let status = if created.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(created.state)))
}

/// The server's offset of an upload, in `Upload-Offset`.
#[utoipa::path(head, path = "/v1/media/uploads/{upload_id}", tag = "media",
    params(("upload_id" = String, Path, description = "upload id")),
    responses(
        (status = 200, description = "`Upload-Offset: n`"),
        (status = 404, description = "Unknown, expired, failed or another tenant's"),
    ),
    security(("bearer" = [])))]
async fn upload_offset(
    State(services): State<Services>,
    principal: Principal,
    Path(upload_id): Path<Uuid>,
) -> Result<Response, MediaError> {
    let offset = services.media.offset(&principal, upload_id).await?;
    Ok((StatusCode::OK, offset_header(offset)).into_response())
}

/// Writes one chunk at `Upload-Offset`, checked against `Chunk-Sha256`.
#[utoipa::path(patch, path = "/v1/media/uploads/{upload_id}", tag = "media",
    params(
        ("upload_id" = String, Path, description = "upload id"),
        ("Upload-Offset" = u64, Header, description = "where the chunk goes"),
        ("Chunk-Sha256" = String, Header, description = "the chunk's SHA-256, hex"),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "Stored and fsynced; `Upload-Offset` is the new offset"),
        (status = 400, description = "Missing headers, or the chunk did not arrive whole", body = MediaErrorBody),
        (status = 404, description = "Unknown, expired, failed or another tenant's upload", body = MediaErrorBody),
        (status = 409, description = "Wrong offset: nothing written; `Upload-Offset` is the server's", body = MediaErrorBody),
        (status = 413, description = "Over the chunk limit or past the declared size", body = MediaErrorBody),
        (status = 422, description = "`chunk_digest_mismatch`: offset not advanced", body = MediaErrorBody),
    ),
    security(("bearer" = [])))]
async fn upload_chunk(
    State(services): State<Services>,
    principal: Principal,
    Path(upload_id): Path<Uuid>,
    request: Request,
) -> Result<Response, MediaError> {
    let headers = request.headers();
    let offset = header_text(headers, UPLOAD_OFFSET)?
        .parse::<u64>()
        .map_err(|_| MediaError::Invalid("Upload-Offset must be a whole number".into()))?;
    let digest = header_text(headers, CHUNK_SHA256)?.to_owned();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = request.into_body().into_data_stream();
    let next = services
        .media
        .write_chunk(&principal, upload_id, offset, &digest, length, body)
        .await?;
    Ok((StatusCode::NO_CONTENT, offset_header(next)).into_response())
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, MediaError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or_else(|| MediaError::Invalid(format!("the {name} header is required")))
}

/// Verifies the whole file and stores it; idempotent.
#[utoipa::path(post, path = "/v1/media/uploads/{upload_id}/complete", tag = "media",
    params(("upload_id" = String, Path, description = "upload id")),
    responses(
        (status = 200, description = "Stored", body = Completed),
        (status = 403, description = "The caller may no longer add media to the journey: the upload is discarded", body = MediaErrorBody),
        (status = 404, description = "Unknown, expired, failed or another tenant's upload", body = MediaErrorBody),
        (status = 409, description = "Not every byte arrived (`Upload-Offset` says how many did)", body = MediaErrorBody),
        (status = 415, description = "The bytes are not the declared image type: discarded", body = MediaErrorBody),
        (status = 422, description = "`digest_mismatch` or `image_rejected`: discarded", body = MediaErrorBody),
    ),
    security(("bearer" = [])))]
async fn complete_upload(
    State(services): State<Services>,
    principal: Principal,
    Path(upload_id): Path<Uuid>,
) -> Result<Json<Completed>, MediaError> {
    Ok(Json(
        services
            .media
            .complete(&services, &principal, upload_id)
            .await?,
    ))
}

/// The tenant's media usage (ADMIN, AUDITOR).
#[utoipa::path(get, path = "/v1/media/usage", tag = "media",
    responses(
        (status = 200, body = Usage),
        (status = 403, description = "For the ADMIN and AUDITOR roles", body = MediaErrorBody),
    ),
    security(("bearer" = [])))]
async fn media_usage(
    State(services): State<Services>,
    principal: Principal,
) -> Result<Json<Usage>, MediaError> {
    if !matches!(principal.role, Role::Admin | Role::Auditor) {
        return Err(MediaError::Forbidden(
            "media usage is for the ADMIN and AUDITOR roles".into(),
        ));
    }
    Ok(Json(services.media.usage(&principal.tenant_key()).await?))
}

/// Whether the caller's sync scope covers `journey`; 404 otherwise.
async fn in_scope(
    services: &Services,
    principal: &Principal,
    journey: JourneyId,
    what: &str,
) -> Result<(), MediaError> {
    let reach = services
        .scopes
        .reach(&principal.tenant_key(), &[journey])
        .await?;
    let scope = Scope::of(principal, Utc::now().date_naive(), services.window);
    match reach.first() {
        Some(reach) if scope.covers(reach) => Ok(()),
        _ => Err(MediaError::NotFound(what.to_owned())),
    }
}

/// A media row the caller may read: in scope, and not tombstoned unless ADMIN.
async fn readable(
    services: &Services,
    principal: &Principal,
    row: Option<MediaRow>,
    media: MediaId,
) -> Result<MediaRow, MediaError> {
    let what = format!("media {media}");
    let row = row.ok_or_else(|| MediaError::NotFound(what.clone()))?;
    in_scope(
        services,
        principal,
        JourneyId::from_uuid(row.journey_id),
        &what,
    )
    .await?;
    if row.deleted_at.is_some() && principal.role != Role::Admin {
        return Err(MediaError::Gone(format!("{what} was deleted")));
    }
    Ok(row)
}

async fn serve_blob(
    services: &Services,
    key: &str,
    content_type: &str,
    etag: &str,
) -> Result<Response, MediaError> {
    let blob = services
        .media
        .blobs
        .get(key)
        .await?
        .ok_or_else(|| MediaError::Blob(format!("blob {key} is missing")))?;
    let size = blob.meta.size;
    let stream = blob.into_stream().map_err(std::io::Error::other);
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    let value = |text: &str| {
        HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("application/octet-stream"))
    };
    headers.insert(header::CONTENT_TYPE, value(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(header::ETAG, value(&format!("\"{etag}\"")));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    Ok(response)
}

/// The original bytes (photo, video or signature).
#[utoipa::path(get, path = "/v1/media/{media_id}", tag = "media",
    params(("media_id" = String, Path, description = "media id")),
    responses(
        (status = 200, description = "The original, byte for byte", content_type = "application/octet-stream"),
        (status = 404, description = "Unknown, another tenant's, or outside the caller's scope", body = MediaErrorBody),
        (status = 410, description = "Deleted (tombstone; ADMINs still read it) or purged past retention", body = MediaErrorBody),
    ),
    security(("bearer" = [])))]
async fn get_media(
    State(services): State<Services>,
    principal: Principal,
    Path(media): Path<MediaId>,
) -> Result<Response, MediaError> {
    let row = db::original(&services.media.db, &principal.tenant_key(), media.as_uuid()).await?;
    let row = readable(&services, &principal, row, media).await?;
    if row.purged_at.is_some() {
        return Err(MediaError::Gone(format!(
            "media {media}: the original was purged past the retention period"
        )));
    }
    serve_blob(&services, &row.blob_key, &row.content_type, &row.sha256).await
}

/// A ~320 px thumbnail: the server's own, or else the device's.
#[utoipa::path(get, path = "/v1/media/{media_id}/thumbnail", tag = "media",
    params(("media_id" = String, Path, description = "media id")),
    responses(
        (status = 200, description = "The thumbnail", content_type = "image/jpeg"),
        (status = 404, description = "Unknown, another tenant's, outside the caller's scope, or no thumbnail", body = MediaErrorBody),
        (status = 410, description = "Deleted (tombstone)", body = MediaErrorBody),
    ),
    security(("bearer" = [])))]
async fn get_thumbnail(
    State(services): State<Services>,
    principal: Principal,
    Path(media): Path<MediaId>,
) -> Result<Response, MediaError> {
    let tenant = principal.tenant_key();
    let db = &services.media.db;
    if let Some(original) = db::original(db, &tenant, media.as_uuid()).await? {
        let original = readable(&services, &principal, Some(original), media).await?;
        if let Some(key) = &original.thumb_key {
            return serve_blob(&services, key, "image/jpeg", key).await;
        }
    }
    let device = db::media(db, &tenant, media.as_uuid(), "thumbnail").await?;
    let device = readable(&services, &principal, device, media).await?;
    serve_blob(
        &services,
        &device.blob_key,
        &device.content_type,
        &device.sha256,
    )
    .await
}

/// Deletes a media item as a tombstone (ADMIN): flagged and audited, bytes kept.
#[utoipa::path(delete, path = "/v1/media/{media_id}", tag = "media",
    params(("media_id" = String, Path, description = "media id")),
    responses(
        (status = 204, description = "Tombstoned (or already was)"),
        (status = 403, description = "For the ADMIN role", body = MediaErrorBody),
        (status = 404, description = "Unknown or another tenant's", body = MediaErrorBody),
    ),
    security(("bearer" = [])))]
async fn delete_media(
    State(services): State<Services>,
    principal: Principal,
    Path(media): Path<MediaId>,
) -> Result<StatusCode, MediaError> {
    if principal.role != Role::Admin {
        return Err(MediaError::Forbidden(
            "only an ADMIN deletes media (as a tombstone)".into(),
        ));
    }
    services.media.tombstone(&principal, media).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets or lifts a journey's legal hold (ADMIN, MANAGER): while held, none of
/// its originals is purged.
#[utoipa::path(put, path = "/v1/journeys/{journey}/legal-hold", tag = "media",
    params(("journey" = String, Path, description = "journey id")),
    request_body = LegalHold,
    responses(
        (status = 200, body = LegalHoldState),
        (status = 403, description = "For the ADMIN and MANAGER roles", body = MediaErrorBody),
        (status = 404, description = "Unknown, another tenant's, or outside the caller's scope", body = MediaErrorBody),
    ),
    security(("bearer" = [])))]
async fn legal_hold(
    State(services): State<Services>,
    principal: Principal,
    Path(journey): Path<JourneyId>,
    Json(body): Json<LegalHold>,
) -> Result<Json<LegalHoldState>, MediaError> {
    if !matches!(principal.role, Role::Admin | Role::Manager) {
        return Err(MediaError::Forbidden(
            "legal holds are for the ADMIN and MANAGER roles".into(),
        ));
    }
    in_scope(
        &services,
        &principal,
        journey,
        &format!("journey {journey}"),
    )
    .await?;
    services
        .media
        .set_hold(&principal, journey, body.hold)
        .await?;
    Ok(Json(LegalHoldState {
        journey_id: journey,
        hold: body.hold,
    }))
}

/// A file the server holds for a journey, as `GET /v1/journeys/{journey}/media`
/// lists it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredMedia {
    pub media_id: Uuid,
    /// `photo`, `video`, `signature`, or `thumbnail` (the device's, of `media_id`).
    pub kind: String,
    pub content_type: String,
    pub size: i64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub user_id: Uuid,
    pub device_id: Uuid,
    /// When the server confirmed the whole file (ms since the epoch, server clock).
    pub stored_at: i64,
    /// Tombstoned by an ADMIN (listed to ADMINs only).
    pub deleted: bool,
    /// The original was purged past retention.
    pub purged: bool,
}

/// The files the server holds for a journey, in the order it confirmed them: what
/// a dispatcher checks has arrived (and in which order each device sent it).
#[utoipa::path(get, path = "/v1/journeys/{journey}/media", tag = "media",
    params(("journey" = String, Path, description = "journey id")),
    responses(
        (status = 200, body = [StoredMedia]),
        (status = 404, description = "Unknown, another tenant's, or outside the caller's scope", body = MediaErrorBody),
    ),
    security(("bearer" = [])))]
async fn journey_media(
    State(services): State<Services>,
    principal: Principal,
    Path(journey): Path<JourneyId>,
) -> Result<Json<Vec<StoredMedia>>, MediaError> {
    in_scope(
        &services,
        &principal,
        journey,
        &format!("journey {journey}"),
    )
    .await?;
    let rows = db::journey_media(
        &services.media.db,
        &principal.tenant_key(),
        journey.as_uuid(),
    )
    .await?;
    Ok(Json(
        rows.into_iter()
            .filter(|row| row.deleted_at.is_none() || principal.role == Role::Admin)
            .map(|row| StoredMedia {
                media_id: row.media_id,
                kind: row.kind,
                content_type: row.content_type,
                size: row.size,
                sha256: row.sha256,
                width: row.width,
                height: row.height,
                user_id: row.user_id,
                device_id: row.device_id,
                stored_at: row.created_at,
                deleted: row.deleted_at.is_some(),
                purged: row.purged_at.is_some(),
            })
            .collect(),
    ))
}
