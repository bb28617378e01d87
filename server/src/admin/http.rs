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

use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use crewsync_core::ids::{LocationId, UserId};
use crewsync_core::model::Role;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::api::{
    Deactivated, LocationChange, NewLocation, NewMoveSource, NewUser, PermissionRows, TenantChange,
    UserChange,
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
        )
    }
}

/// The admin API's routes.
pub fn routes() -> Router<Services> {
    Router::new()
        .route("/v1/admin/users", get(list_users).post(create_user))
        .route("/v1/admin/users/{id}", get(read_user).patch(change_user))
        .route("/v1/admin/users/{id}/deactivate", post(deactivate_user))
        .route("/v1/admin/users/{id}/reactivate", post(reactivate_user))
        .route(
            "/v1/admin/locations",
            get(list_locations).post(create_location),
        )
        .route(
            "/v1/admin/locations/{id}",
            get(read_location).patch(change_location),
        )
        .route(
            "/v1/admin/permissions",
            get(read_permissions).put(replace_permissions),
        )
        .route(
            "/v1/admin/move-sources",
            get(list_move_sources).post(create_move_source),
        )
        .route(
            "/v1/admin/settings",
            get(read_settings).patch(change_settings),
        )
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

async fn list_users(
    State(admin): State<AdminService>,
    Admin(who): Admin,
) -> Answer<Vec<UserRecord>> {
    Ok(Json(admin.users(&who).await?))
}

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

async fn read_user(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Id(id): Id,
) -> Answer<UserRecord> {
    Ok(Json(admin.user(&who, UserId::from_uuid(id)).await?))
}

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

async fn deactivate_user(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Id(id): Id,
) -> Answer<Deactivated> {
    Ok(Json(
        admin.deactivate_user(&who, UserId::from_uuid(id)).await?,
    ))
}

async fn reactivate_user(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Id(id): Id,
) -> Answer<UserRecord> {
    Ok(Json(
        admin.reactivate_user(&who, UserId::from_uuid(id)).await?,
    ))
}

async fn list_locations(
    State(admin): State<AdminService>,
    Admin(who): Admin,
) -> Answer<Vec<LocationRecord>> {
    Ok(Json(admin.locations(&who).await?))
}

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

async fn read_location(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Id(id): Id,
) -> Answer<LocationRecord> {
    Ok(Json(admin.location(&who, LocationId::from_uuid(id)).await?))
}

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

async fn read_permissions(
    State(admin): State<AdminService>,
    Admin(who): Admin,
) -> Answer<PermissionRows> {
    Ok(Json(PermissionRows {
        rows: admin.permissions(&who).await?,
    }))
}

async fn replace_permissions(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Body(table): Body<PermissionRows>,
) -> Answer<PermissionRows> {
    Ok(Json(PermissionRows {
        rows: admin.replace_permissions(&who, table.rows).await?,
    }))
}

async fn list_move_sources(
    State(admin): State<AdminService>,
    Admin(who): Admin,
) -> Answer<Vec<MoveSourceRecord>> {
    Ok(Json(admin.move_sources(&who).await?))
}

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

async fn read_settings(
    State(admin): State<AdminService>,
    Admin(who): Admin,
) -> Answer<TenantRecord> {
    Ok(Json(admin.settings(&who).await?))
}

async fn change_settings(
    State(admin): State<AdminService>,
    Admin(who): Admin,
    Body(change): Body<TenantChange>,
) -> Answer<TenantRecord> {
    Ok(Json(admin.change_settings(&who, change).await?))
}
