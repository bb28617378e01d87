//! crewsync-server: the sync server crews' devices and dispatchers talk to.
//!
//! `app` is the whole HTTP surface over shared state, without sockets, so tests and
//! `main` serve the same router. The sync logic itself lives in [`sync`], the change
//! log behind the [`storage::Storage`] trait.

pub mod storage;
pub mod sync;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crewsync_core::sync::wire::{self, CONTENT_TYPE, WireError};
use serde::Serialize;

use crate::storage::{Storage, StorageError};

/// The tenant every request belongs to until sign-in (the identity issue) names one.
pub const DEFAULT_TENANT: &str = "default";

/// Largest sync request body accepted.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub storage: Arc<dyn Storage>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}

/// Errors a request can end in, mapped to HTTP once, here.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("expected content type {CONTENT_TYPE}")]
    ContentType,
    #[error("storage unavailable: {0}")]
    Storage(#[from] StorageError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Wire(WireError::UnsupportedVersion { .. }) => StatusCode::BAD_REQUEST,
            ApiError::Wire(WireError::Malformed(_)) => StatusCode::BAD_REQUEST,
            ApiError::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (status, self.to_string()).into_response()
    }
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/v1/sync", post(sync_endpoint))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Ready when the storage answers.
async fn ready(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.storage.ping().await?;
    Ok(health().await)
}

async fn sync_endpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type != Some(CONTENT_TYPE) {
        return Err(ApiError::ContentType);
    }
    let request = wire::decode_request(&body)?;
    let response = sync::exchange(&state.storage, DEFAULT_TENANT, request).await?;
    Ok((
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        wire::encode(&response),
    )
        .into_response())
}
