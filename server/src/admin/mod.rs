//! Tenant administration (issue 4 point 1): the admin JSON API under `/v1/admin`
//! for the ADMIN role, and the `crewsync-server user …` command for operators.
//!
//! Both go through [`AdminService`]: validation and the directory calls live in
//! [`ops`], the HTTP handlers in [`http`] only extract and answer. Everything is
//! scoped to the caller's tenant (the token's, or the one an operator names):
//! another tenant's ids are "not found" and nothing changes.
//!
//! Every change ends in [`AdminService::record`], the one seam where admin actions
//! reach the tenant's audit trail.

pub mod api;
pub mod command;
mod http;
pub mod ops;

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crewsync_core::audit::AuditRecord;
use crewsync_core::ids::{ClientId, DeviceId, LocationId, UserId};

use crate::auth::http::{AuthError, Principal};
use crate::auth::sessions::Sessions;
use crate::directory::{Directory, DirectoryError};
use crate::storage::Storage;

pub use http::routes;

/// What administration works over: the directory and the sessions (deactivation
/// ends them).
#[derive(Clone)]
pub struct AdminService {
    pub directory: Directory,
    pub sessions: Sessions,
    /// Where the tenant's audit trail is chained.
    pub storage: Arc<dyn Storage>,
}

/// Who made an admin change: a signed-in admin (user and device) or an operator
/// at the server command (neither).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub tenant: ClientId,
    pub user: Option<UserId>,
    pub device: Option<DeviceId>,
    pub location: Option<LocationId>,
}

impl Actor {
    /// An operator running `crewsync-server user …` for `tenant`.
    pub fn operator(tenant: ClientId) -> Self {
        Self {
            tenant,
            user: None,
            device: None,
            location: None,
        }
    }
}

impl From<&Principal> for Actor {
    fn from(principal: &Principal) -> Self {
        Self {
            tenant: principal.tenant,
            user: Some(principal.user),
            device: Some(principal.device),
            location: Some(principal.location),
        }
    }
}

/// One admin change, as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminAction {
    /// `user.create`, `user.update`, `user.deactivate`, …
    pub action: &'static str,
    /// `user`, `location`, `role_permissions`, `move_source`, `tenant`.
    pub entity: &'static str,
    pub entity_id: String,
    /// What changed: `{field: {"before": …, "after": …}}`, or the new row.
    pub diff: serde_json::Value,
}

impl AdminService {
    pub fn new(directory: Directory, sessions: Sessions, storage: Arc<dyn Storage>) -> Self {
        Self {
            directory,
            sessions,
            storage,
        }
    }

    /// Records a committed admin change in the tenant's audit trail. Every
    /// mutation in [`ops`] ends here, so the audit store is wired in this one place.
    /// It is chained after the directory write committed (its own transaction),
    /// so a crash in between leaves a change without its entry, never an entry
    /// without its change.
    pub async fn record(&self, actor: &Actor, action: AdminAction) -> Result<(), AdminError> {
        let record = AuditRecord {
            location: actor.location,
            user: actor.user,
            device: actor.device,
            action: action.action.to_owned(),
            entity: action.entity.to_owned(),
            entity_id: action.entity_id,
            diff: action.diff,
            server_time: chrono::Utc::now().timestamp_millis(),
            device_time: None,
        };
        self.storage
            .record_audit(&crate::directory::tenant_key(actor.tenant), &[record])
            .await
            .map_err(|e| AdminError::Unavailable(format!("audit trail: {e}")))?;
        Ok(())
    }
}

/// Why an admin request failed; one mapping to HTTP, here.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("the admin API is for the ADMIN role")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(String),
    /// Well-formed input the directory cannot take (unknown location, bad
    /// timezone, an empty name, …).
    #[error("{0}")]
    Invalid(String),
    /// Taken: an email, a location's or move source's name.
    #[error("{0}")]
    Conflict(String),
    /// A body or path that did not parse: axum's status and message.
    #[error("{1}")]
    Rejected(StatusCode, String),
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    #[error("invalid stored value: {0}")]
    Corrupt(String),
}

impl From<DirectoryError> for AdminError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::NotFound(what) => AdminError::NotFound(what),
            DirectoryError::Conflict(what) => AdminError::Conflict(what),
            DirectoryError::Database(e) => AdminError::Unavailable(e),
            DirectoryError::Corrupt(e) => AdminError::Corrupt(e),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        // 401 with WWW-Authenticate, or 403 for a deactivated user.
        let this = match self {
            AdminError::Auth(e) => return e.into_response(),
            other => other,
        };
        let status = match &this {
            AdminError::Auth(_) => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden => StatusCode::FORBIDDEN,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Rejected(status, _) => *status,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %this, "admin request failed");
        }
        (status, Json(api::ErrorBody::new(this.to_string()))).into_response()
    }
}
