//! The audit trail over HTTP.
//!
//! - `GET /v1/journeys/{journey}/audit`: a journey's trail and its head, for anyone
//!   whose sync scope holds the journey (so a crew's device can verify what it
//!   holds); an unknown journey, another tenant's, or one outside the caller's
//!   scope is 404 (never data).
//! - `GET /v1/audit?after=SEQ&limit=N`: a page of the tenant's chain and its head
//!   (ADMIN, AUDITOR).
//! - `GET /v1/audit/verify`: the server verifies its stored chain against the head
//!   it stored (ADMIN, AUDITOR).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crewsync_core::audit::{
    AuditPage, AuditVerification, ChainVerifier, JOURNEY_ENTITY, JourneyTrail,
};
use crewsync_core::ids::JourneyId;
use crewsync_core::model::Role;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Services;
use crate::auth::http::Principal;
use crate::scope::Scope;
use crate::storage::{Storage, StorageError};

/// The most entries one page carries, whatever the caller asks for.
pub const MAX_PAGE: u32 = 10_000;

/// Entries per page when the caller does not say.
pub const DEFAULT_PAGE: u32 = 1_000;

/// Entries read per step while the server verifies its chain.
const VERIFY_PAGE: u32 = 5_000;

/// Roles that read and verify the whole chain.
const CHAIN_READERS: [Role; 2] = [Role::Admin, Role::Auditor];

#[derive(Debug, thiserror::Error)]
pub enum AuditHttpError {
    #[error("a {0} may not read the audit trail")]
    Forbidden(Role),
    #[error("no such journey")]
    NotFound,
    #[error("storage unavailable: {0}")]
    Storage(#[from] StorageError),
}

impl IntoResponse for AuditHttpError {
    fn into_response(self) -> Response {
        let status = match &self {
            AuditHttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            AuditHttpError::NotFound => StatusCode::NOT_FOUND,
            AuditHttpError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "audit request failed");
        }
        (status, self.to_string()).into_response()
    }
}

/// The audit routes, with their OpenAPI descriptions.
pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(journey_trail))
        .routes(routes!(chain_page))
        .routes(routes!(verify))
}

fn allow(principal: &Principal, roles: &[Role]) -> Result<(), AuditHttpError> {
    if roles.contains(&principal.role) {
        Ok(())
    } else {
        Err(AuditHttpError::Forbidden(principal.role))
    }
}

/// `GET /v1/journeys/{journey}/audit`.
#[utoipa::path(get, path = "/v1/journeys/{journey}/audit", tag = "audit",
    params(("journey" = String, Path, description = "journey id")),
    responses(
        (status = 200, description = "The journey's trail and its chain head", body = Object),
        (status = 404, description = "Unknown, another tenant's, or outside the caller's scope"),
    ),
    security(("bearer" = [])))]
async fn journey_trail(
    State(services): State<Services>,
    principal: Principal,
    Path(journey): Path<String>,
) -> Result<Json<JourneyTrail>, AuditHttpError> {
    // A malformed id names no journey: the same 404 as an unknown one.
    let journey = JourneyId::parse(&journey).map_err(|_| AuditHttpError::NotFound)?;
    let reach = services
        .scopes
        .reach(&principal.tenant_key(), &[journey])
        .await
        .map_err(|e| AuditHttpError::Storage(StorageError::Database(e.to_string())))?;
    let scope = Scope::of(&principal, chrono::Utc::now().date_naive(), services.window);
    if !reach.first().is_some_and(|reach| scope.covers(reach)) {
        return Err(AuditHttpError::NotFound);
    }
    let entries = services
        .storage
        .audit_trail(
            &principal.tenant_key(),
            JOURNEY_ENTITY,
            &journey.to_string(),
        )
        .await?;
    // Every journey in the tenant's log has entries; none means not this tenant's.
    let head = entries
        .last()
        .map(|entry| entry.head())
        .ok_or(AuditHttpError::NotFound)?;
    Ok(Json(JourneyTrail {
        journey,
        entries,
        head,
    }))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default)]
    after: u64,
    limit: Option<u32>,
}

/// `GET /v1/audit?after=&limit=`.
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(
        ("after" = Option<u64>, Query, description = "entries after this sequence number"),
        ("limit" = Option<u32>, Query, description = "at most this many (default 1,000)"),
    ),
    responses(
        (status = 200, description = "A page of the tenant's chain and its head", body = Object),
        (status = 403, description = "Only ADMIN and AUDITOR read the whole chain"),
    ),
    security(("bearer" = [])))]
async fn chain_page(
    State(services): State<Services>,
    principal: Principal,
    Query(query): Query<PageQuery>,
) -> Result<Json<AuditPage>, AuditHttpError> {
    allow(&principal, &CHAIN_READERS)?;
    let tenant = principal.tenant_key();
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    // The head first: every entry up to it is committed, so the page is never
    // ahead of the head it comes with.
    let head = services.storage.audit_head(&tenant).await?;
    let entries = services
        .storage
        .audit_since(&tenant, query.after, limit)
        .await?;
    let more = entries.len() == limit as usize;
    Ok(Json(AuditPage {
        entries,
        head,
        more,
    }))
}

/// `GET /v1/audit/verify`.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses(
        (status = 200, description = "The server's verification of its stored chain", body = Object),
        (status = 403, description = "Only ADMIN and AUDITOR verify the chain"),
    ),
    security(("bearer" = [])))]
async fn verify(
    State(services): State<Services>,
    principal: Principal,
) -> Result<Json<AuditVerification>, AuditHttpError> {
    allow(&principal, &CHAIN_READERS)?;
    Ok(Json(
        verify_stored(&services.storage, &principal.tenant_key()).await?,
    ))
}

/// Verifies a tenant's stored chain page by page against the head the server
/// stored with it (so a deleted tail is reported too). Entries past that head
/// were appended after it was read and are left for the next verification.
pub async fn verify_stored(
    storage: &Arc<dyn Storage>,
    tenant: &str,
) -> Result<AuditVerification, StorageError> {
    let head = storage.audit_head(tenant).await?;
    let mut verifier = ChainVerifier::new(head);
    let mut after = 0;
    // Bounded: every page moves `after` forward, and the chain ends.
    loop {
        let page = storage.audit_since(tenant, after, VERIFY_PAGE).await?;
        for entry in &page {
            if head.is_some_and(|h| entry.seq > h.seq) {
                break;
            }
            if let Err(broken) = verifier.push(entry) {
                return Ok(AuditVerification {
                    ok: false,
                    entries: verifier.head().map_or(0, |h| h.seq),
                    head,
                    broken: Some(broken),
                });
            }
        }
        match page.last() {
            Some(last) if page.len() == VERIFY_PAGE as usize => after = last.seq,
            _ => break,
        }
    }
    Ok(match verifier.finish() {
        Ok(verified) => AuditVerification {
            ok: true,
            entries: verified.entries,
            head,
            broken: None,
        },
        Err(broken) => AuditVerification {
            ok: false,
            entries: broken.seq.saturating_sub(1),
            head,
            broken: Some(broken),
        },
    })
}
