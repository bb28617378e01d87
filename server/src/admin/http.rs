//! The admin API's routes: thin handlers over [`AdminService`].
//!
//! ```text
//! GET  /v1/admin/users                 POST  /v1/admin/users
//! GET  /v1/admin/users/{id}            PATCH /v1/admin/users/{id}
//! POST /v1/admin/users/{id}/deactivate POST  /v1/admin/users/{id}/reactivate
//! GET  /v1/admin/locations             POST  /v1/admin/locations
//! GET  /v1/admin/locations/{id}        PATCH /v1/admin/locations/{id}
//! GET  /v1/admin/permissions           PUT   /v1/admin/permissions
//! GET  /v1/admin/move-sources          POST  /v1/admin/move-sources
//! GET  /v1/admin/settings              PATCH /v1/admin/settings
//! ```
//!
//! The caller is checked first ([`Admin`]: a valid token of an active ADMIN, else
//! 401/403), then the path, then the body, so a non-admin learns nothing from a
//! request's shape.
//!
//! Every route is in the OpenAPI document (tag `admin`, bearer token): errors are
//! [`ErrorBody`] JSON, except a refused token (401, and 403 for a deactivated
//! user), which is plain text with `WWW-Authenticate` as on every route.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use crewsync_core::ids::{LocationId, UserId};
use crewsync_core::model::Role;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::api::{
    Deactivated, ErrorBody, LocationChange, NewLocation, NewMoveSource, NewUser, PermissionRows,
    TenantChange, UserChange,
};
use super::{Actor, AdminError, AdminService};
use crate::Services;
use crate::auth::http::Principal;
use crate::directory::{LocationRecord, MoveSourceRecord, TenantRecord, UserRecord};

impl FromRef<Services> for AdminService {
    fn from_ref(services: &Services) -> Self {
        AdminService::new(
            services.auth.directory.clone(),
            services.auth.sessions.clone(),
            Arc::clone(&services.storage),
        )
    }
}

/// The admin API's routes, with their OpenAPI descriptions.
pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(read_user, change_user))
        .routes(routes!(deactivate_user))
        .routes(routes!(reactivate_user))
        .routes(routes!(list_locations, create_location))
        .routes(routes!(read_location, change_location))
        .routes(routes!(read_permissions, replace_permissions))
        .routes(routes!(list_move_sources, create_move_source))
        .routes(routes!(read_settings, change_settings))
}

/// A request by an active user with the ADMIN role (the directory's current role,
/// not the token's).
pub struct Admin(pub Actor);

impl FromRequestParts<Services> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &Services) -> Result<Self, AdminError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if principal.role != Role::Admin {
            return Err(AdminError::Forbidden);
        }
        Ok(Admin(Actor::from(&principal)))
    }
}

/// A path id; a malformed one is a 400 in the API's error shape.
pub struct Id(pub Uuid);

impl FromRequestParts<Services> for Id {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &Services) -> Result<Self, AdminError> {
        Path::<Uuid>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Id(id))
            .map_err(|rejection| AdminError::Rejected(rejection.status(), rejection.body_text()))
    }
}

/// A JSON body; one that does not parse is a 400/415/422 in the API's error shape.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = AdminError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AdminError> {
        Json::<T>::from_request(request, state)
            .await
            .map(|Json(value)| Body(value))
            .map_err(|rejection| AdminError::Rejected(rejection.status(), rejection.body_text()))
    }
}

type Answer<T> = Result<Json<T>, AdminError>;
type Created<T> = Result<(StatusCode, Json<T>), AdminError>;

/// Lists the tenant's users.
#[utoipa::path(get, path = "/v1/admin/users", tag = "admin",
    responses(
        (status = 200, description = "The tenant's users (`UserRecord`: id, tenant, location_id, name, email, role, status)", body = [Object]),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
    ),
    security(("bearer" = [])))]
async fn list_users(
    State(admin): State<AdminService>,
    Admin(who): Admin,
) -> Answer<Vec<UserRecord>> {
    Ok(Json(admin.users(&who).await?))
}

/// Adds an active user with a password.
#[utoipa::path(post, path = "/v1/admin/users", tag = "admin",
    request_body = NewUser,
    responses(
        (status = 201, description = "Created: the new active user (`UserRecord`)", body = Object),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
        (status = 409, description = "A user with this email already exists", body = ErrorBody),
        (status = 422, description = "Unknown or missing fields, an empty name, a bad email, a password under 8 characters, or a location not the tenant's", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn create_user(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Body(new): Body<NewUser>,
) -> Created<UserRecord> {
    Ok((
        StatusCode::CREATED,
        Json(admin.create_user(&who, new).await?),
    ))
}

/// Reads one of the tenant's users.
#[utoipa::path(get, path = "/v1/admin/users/{id}", tag = "admin",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user (`UserRecord`)", body = Object),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
        (status = 404, description = "No such user in the caller's tenant (another tenant's reads the same)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn read_user(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Id(id): Id,
) -> Answer<UserRecord> {
    Ok(Json(admin.user(&who, UserId::from_uuid(id)).await?))
}

/// Changes a user's name, role or location.
#[utoipa::path(patch, path = "/v1/admin/users/{id}", tag = "admin",
    params(("id" = Uuid, Path, description = "The user's id")),
    request_body = UserChange,
    responses(
        (status = 200, description = "The user as changed (`UserRecord`)", body = Object),
        (status = 400, description = "The id is not a UUID, or the body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
        (status = 404, description = "No such user in the caller's tenant (another tenant's reads the same)", body = ErrorBody),
        (status = 422, description = "Unknown fields, nothing to change, an empty name, a location not the tenant's, or an admin taking their own ADMIN role away", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn change_user(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Id(id): Id,
    Body(change): Body<UserChange>,
) -> Answer<UserRecord> {
    Ok(Json(
        admin
            .change_user(&who, UserId::from_uuid(id), change)
            .await?,
    ))
}

/// Deactivates a user and ends every session they have.
#[utoipa::path(post, path = "/v1/admin/users/{id}/deactivate", tag = "admin",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "Deactivated: the user and how many of their sessions were ended", body = Deactivated),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
        (status = 404, description = "No such user in the caller's tenant (another tenant's reads the same)", body = ErrorBody),
        (status = 422, description = "An admin deactivating themselves", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn deactivate_user(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Id(id): Id,
) -> Answer<Deactivated> {
    Ok(Json(
        admin.deactivate_user(&who, UserId::from_uuid(id)).await?,
    ))
}

/// Lets a deactivated user sign in again.
#[utoipa::path(post, path = "/v1/admin/users/{id}/reactivate", tag = "admin",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user, active again (`UserRecord`); their old sessions stay ended", body = Object),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
        (status = 404, description = "No such user in the caller's tenant (another tenant's reads the same)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn reactivate_user(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Id(id): Id,
) -> Answer<UserRecord> {
    Ok(Json(
        admin.reactivate_user(&who, UserId::from_uuid(id)).await?,
    ))
}

/// Lists the tenant's locations.
#[utoipa::path(get, path = "/v1/admin/locations", tag = "admin",
    responses(
        (status = 200, description = "The tenant's locations (`LocationRecord`: id, tenant, name, timezone, address, is_corporate, storage_type, customer_care, trucks, contact)", body = [Object]),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
    ),
    security(("bearer" = [])))]
async fn list_locations(
    State(admin): State<AdminService>,
    Admin(who): Admin,
) -> Answer<Vec<LocationRecord>> {
    Ok(Json(admin.locations(&who).await?))
}

/// Adds a location.
#[utoipa::path(post, path = "/v1/admin/locations", tag = "admin",
    request_body = NewLocation,
    responses(
        (status = 201, description = "Created: the new location (`LocationRecord`)", body = Object),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
        (status = 409, description = "A location with this name already exists", body = ErrorBody),
        (status = 422, description = "Unknown or missing fields, an empty name or an unknown timezone", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn create_location(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Body(new): Body<NewLocation>,
) -> Created<LocationRecord> {
    Ok((
        StatusCode::CREATED,
        Json(admin.create_location(&who, new).await?),
    ))
}

/// Reads one of the tenant's locations.
#[utoipa::path(get, path = "/v1/admin/locations/{id}", tag = "admin",
    params(("id" = Uuid, Path, description = "The location's id")),
    responses(
        (status = 200, description = "The location (`LocationRecord`)", body = Object),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
        (status = 404, description = "No such location in the caller's tenant (another tenant's reads the same)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn read_location(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Id(id): Id,
) -> Answer<LocationRecord> {
    Ok(Json(admin.location(&who, LocationId::from_uuid(id)).await?))
}

/// Changes a location.
#[utoipa::path(patch, path = "/v1/admin/locations/{id}", tag = "admin",
    params(("id" = Uuid, Path, description = "The location's id")),
    request_body = LocationChange,
    responses(
        (status = 200, description = "The location as changed (`LocationRecord`)", body = Object),
        (status = 400, description = "The id is not a UUID, or the body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
        (status = 404, description = "No such location in the caller's tenant (another tenant's reads the same)", body = ErrorBody),
        (status = 409, description = "Another location already has this name", body = ErrorBody),
        (status = 422, description = "Unknown fields, nothing to change, an empty name or an unknown timezone", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn change_location(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Id(id): Id,
    Body(change): Body<LocationChange>,
) -> Answer<LocationRecord> {
    Ok(Json(
        admin
            .change_location(&who, LocationId::from_uuid(id), change)
            .await?,
    ))
}

/// Reads the tenant's role × step permission table.
#[utoipa::path(get, path = "/v1/admin/permissions", tag = "admin",
    responses(
        (status = 200, description = "The tenant's permission table, one row per role and step", body = PermissionRows),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
    ),
    security(("bearer" = [])))]
async fn read_permissions(
    State(admin): State<AdminService>,
    Admin(who): Admin,
) -> Answer<PermissionRows> {
    Ok(Json(PermissionRows {
        rows: admin.permissions(&who).await?,
    }))
}

/// Replaces the whole permission table (all 24 rows).
#[utoipa::path(put, path = "/v1/admin/permissions", tag = "admin",
    request_body = PermissionRows,
    responses(
        (status = 200, description = "The table as stored", body = PermissionRows),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
        (status = 422, description = "Unknown fields, a step not 1–4, two rows for one role and step, or a role and step missing (all 24 are needed)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn replace_permissions(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Body(table): Body<PermissionRows>,
) -> Answer<PermissionRows> {
    Ok(Json(PermissionRows {
        rows: admin.replace_permissions(&who, table.rows).await?,
    }))
}

/// Lists the tenant's move sources.
#[utoipa::path(get, path = "/v1/admin/move-sources", tag = "admin",
    responses(
        (status = 200, description = "The tenant's move sources (`MoveSourceRecord`: id, tenant, name, description, is_active)", body = [Object]),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
    ),
    security(("bearer" = [])))]
async fn list_move_sources(
    State(admin): State<AdminService>,
    Admin(who): Admin,
) -> Answer<Vec<MoveSourceRecord>> {
    Ok(Json(admin.move_sources(&who).await?))
}

/// Adds a move source.
#[utoipa::path(post, path = "/v1/admin/move-sources", tag = "admin",
    request_body = NewMoveSource,
    responses(
        (status = 201, description = "Created: the new move source (`MoveSourceRecord`)", body = Object),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
        (status = 409, description = "A move source with this name already exists", body = ErrorBody),
        (status = 422, description = "Unknown or missing fields, or an empty name", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn create_move_source(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Body(new): Body<NewMoveSource>,
) -> Created<MoveSourceRecord> {
    Ok((
        StatusCode::CREATED,
        Json(admin.create_move_source(&who, new).await?),
    ))
}

/// Reads the tenant's own record and settings.
#[utoipa::path(get, path = "/v1/admin/settings", tag = "admin",
    responses(
        (status = 200, description = "The tenant (`TenantRecord`: id, slug, name, industry, is_franchise, settings)", body = Object),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
    ),
    security(("bearer" = [])))]
async fn read_settings(
    State(admin): State<AdminService>,
    Admin(who): Admin,
) -> Answer<TenantRecord> {
    Ok(Json(admin.settings(&who).await?))
}

/// Changes the tenant's name, industry, franchise flag or settings.
#[utoipa::path(patch, path = "/v1/admin/settings", tag = "admin",
    request_body = TenantChange,
    responses(
        (status = 200, description = "The tenant as changed (`TenantRecord`)", body = Object),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token, or its session has ended (plain text)",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The caller is not an ADMIN (JSON), or is no longer active (plain text)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
        (status = 422, description = "Unknown fields, nothing to change, an empty name, or settings that are not a JSON object", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn change_settings(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Body(change): Body<TenantChange>,
) -> Answer<TenantRecord> {
    Ok(Json(admin.change_settings(&who, change).await?))
}
