//! Sign-in over HTTP, and the [`Principal`] every authenticated route extracts.
//!
//! Routes: `POST /v1/auth/sign-in`, `POST /v1/auth/refresh`, `POST /v1/auth/sign-out`,
//! `GET /v1/me`. A request's principal comes from its bearer token, and is checked
//! against the database on every request: a revoked session or a deactivated user
//! is refused at the device's next contact, whatever the token's expiry says.
//!
//! The routes are in the OpenAPI document (tag `auth`). Their bodies are core's
//! types (`crewsync_core::sync::auth`), which carry no schema: the document shows
//! them as objects with an example; errors are plain text.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use crewsync_core::ids::{ClientId, DeviceId, LocationId, UserId};
use crewsync_core::model::Role;
use crewsync_core::sync::auth::{Me, RefreshRequest, SignInRequest, TokenResponse, UserView};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::password;
use super::sessions::{Issued, RefreshError, Sessions};
use super::tokens::{self, ACCESS_TTL, TokenError, TokenKeys};
use crate::directory::{Db, Directory, DirectoryError, UserRecord, UserStatus};

/// What authentication needs: the directory, the sessions, the signing key.
#[derive(Debug, Clone)]
pub struct AuthService {
    pub directory: Directory,
    pub sessions: Sessions,
    pub keys: TokenKeys,
}

impl AuthService {
    /// Over the server's database; reads (or creates) the shared signing key.
    pub async fn open(db: Db) -> Result<Self, DirectoryError> {
        let sessions = Sessions::new(db.clone());
        let keys = TokenKeys::from_secret(&sessions.signing_secret().await?);
        Ok(Self {
            directory: Directory::new(db),
            sessions,
            keys,
        })
    }

    /// A new access token for a session.
    fn access_token(&self, user: &UserRecord, issued: &Issued) -> Result<String, AuthError> {
        let claims = tokens::claims_for(
            user.id,
            user.tenant,
            user.role,
            user.location_id,
            issued.session.id,
            DeviceId::from_uuid(issued.session.device_id),
        );
        Ok(self.keys.issue(&claims)?)
    }
}

/// The signed-in user behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: UserId,
    pub tenant: ClientId,
    pub role: Role,
    pub location: LocationId,
    pub session: Uuid,
    pub device: DeviceId,
}

impl Principal {
    /// The tenant's key in the change log and every table.
    pub fn tenant_key(&self) -> String {
        crate::directory::tenant_key(self.tenant)
    }
}

/// Why a request is not authenticated (401) or not allowed in (403).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("wrong email or password")]
    BadCredentials,
    #[error("the user is not active")]
    Inactive,
    #[error("the session has ended: {0}")]
    SessionEnded(String),
    #[error("{0}")]
    Refresh(String),
    #[error("invalid request: {0}")]
    BadRequest(String),
    #[error("authentication is unavailable: {0}")]
    Unavailable(String),
}

impl From<DirectoryError> for AuthError {
    fn from(e: DirectoryError) -> Self {
        AuthError::Unavailable(e.to_string())
    }
}

impl From<RefreshError> for AuthError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Directory(e) => e.into(),
            other => AuthError::Refresh(other.to_string()),
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = match &self {
            AuthError::Inactive => StatusCode::FORBIDDEN,
            AuthError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        let message = self.to_string();
        let mut response = (status, message.clone()).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: say why, so a device knows to refresh or sign in again.
            let value = format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                message.replace('"', "'")
            );
            if let Ok(value) = HeaderValue::from_str(&value) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

impl<S> FromRequestParts<S> for Principal
where
    Arc<AuthService>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        let auth = Arc::<AuthService>::from_ref(state);
        let token = bearer_token(&parts.headers, &parts.uri)?;
        authenticate(&auth, token).await
    }
}

/// The bearer token of a request (header, or `access_token` query parameter for
/// WebSocket clients that cannot set headers).
pub fn bearer_token<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Result<&'a str, AuthError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| AuthError::Token(TokenError::Malformed("header".into())))?;
        return value
            .strip_prefix("Bearer ")
            .map(str::trim)
            .ok_or(AuthError::Token(TokenError::Missing));
    }
    uri.query()
        .and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("access_token="))
        })
        .ok_or(AuthError::Token(TokenError::Missing))
}

/// Validates a token and checks its session and user in the database.
pub async fn authenticate(auth: &AuthService, token: &str) -> Result<Principal, AuthError> {
    let claims = auth.keys.validate(token)?;
    let session = auth
        .sessions
        .session(claims.tid, claims.sid)
        .await?
        .ok_or_else(|| AuthError::SessionEnded("unknown session".into()))?;
    if let Some(reason) = session
        .revoked_reason
        .filter(|_| session.revoked_at.is_some())
    {
        return Err(AuthError::SessionEnded(reason));
    }
    if session.user_id != claims.sub.as_uuid() || session.device_id != claims.dev.as_uuid() {
        return Err(AuthError::SessionEnded(
            "the token does not match its session".into(),
        ));
    }
    let user = match auth.directory.user(claims.tid, claims.sub).await {
        Ok(user) => user,
        Err(DirectoryError::NotFound(_)) => {
            return Err(AuthError::SessionEnded("unknown user".into()));
        }
        Err(e) => return Err(e.into()),
    };
    if user.status != UserStatus::Active {
        return Err(AuthError::Inactive);
    }
    Ok(Principal {
        user: user.id,
        tenant: user.tenant,
        // The directory's current role and location, not the token's: a change
        // takes effect at the next request.
        role: user.role,
        location: user.location_id,
        session: session.id,
        device: claims.dev,
    })
}

fn user_view(user: &UserRecord) -> UserView {
    UserView {
        id: user.id,
        tenant: user.tenant,
        location_id: user.location_id,
        name: user.name.clone(),
        email: user.email.clone(),
        role: user.role,
    }
}

/// The authentication routes over any state that holds an [`AuthService`], with
/// their OpenAPI descriptions.
pub fn routes<S>() -> OpenApiRouter<S>
where
    Arc<AuthService>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    sign_in_routes().merge(session_routes())
}

/// `POST /v1/auth/sign-in` alone, so the server can put its rate limits on it.
pub fn sign_in_routes<S>() -> OpenApiRouter<S>
where
    Arc<AuthService>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    OpenApiRouter::new().routes(routes!(sign_in))
}

/// Refresh, sign-out and `GET /v1/me`.
pub fn session_routes<S>() -> OpenApiRouter<S>
where
    Arc<AuthService>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    OpenApiRouter::new()
        .routes(routes!(refresh))
        .routes(routes!(sign_out))
        .routes(routes!(me))
}

/// Verified against when the email is unknown, so a wrong email costs the same
/// time as a wrong password (no user enumeration by timing).
static DUMMY_HASH: std::sync::LazyLock<Option<String>> =
    std::sync::LazyLock::new(|| password::hash("no such user").ok());

/// `POST /v1/auth/sign-in`: opens a session for one user on one device.
#[utoipa::path(post, path = "/v1/auth/sign-in", tag = "auth",
    request_body(content = Object, description = "`SignInRequest`: email, password and the device's id",
        example = json!({"email": "ann@example.com", "password": "correct horse", "device_id": "0190b4a2-6c1e-7c3a-9a51-2f0e8d1b4c77"})),
    responses(
        (status = 200, description = "Signed in: `TokenResponse`, an access token and a single-use refresh token", body = Object,
            example = json!({"access_token": "eyJ…", "token_type": "Bearer", "expires_in": 900, "refresh_token": "…",
                "session_id": "0190b4a2-6c1e-7c3a-9a51-2f0e8d1b4c78",
                "user": {"id": "…", "tenant": "…", "location_id": "…", "name": "Ann", "email": "ann@example.com", "role": "DRIVER"}})),
        (status = 400, description = "The body is not JSON", body = String),
        (status = 401, description = "Wrong email or password", body = String,
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The user is not active", body = String),
        (status = 413, description = "The body is over 64 KiB", body = String),
        (status = 415, description = "The body is not `application/json`", body = String),
        (status = 422, description = "A field is missing or of the wrong type", body = String),
        (status = 429, description = "Too many attempts from this address, for this account or tenant", body = String,
            headers(("Retry-After" = u64, description = "Seconds until a retry may pass"))),
    ))]
async fn sign_in(
    State(auth): State<Arc<AuthService>>,
    Json(request): Json<SignInRequest>,
) -> Result<Json<TokenResponse>, AuthError> {
    let user = auth.directory.user_by_email(&request.email).await?;
    let stored = user
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .or_else(|| DUMMY_HASH.clone())
        .unwrap_or_default();
    let password = request.password;
    let matches = tokio::task::spawn_blocking(move || password::verify(&password, &stored))
        .await
        .map_err(|e| AuthError::Unavailable(e.to_string()))?
        .unwrap_or(false);
    let Some(user) = user.filter(|u| matches && u.password_hash.is_some()) else {
        return Err(AuthError::BadCredentials);
    };
    if user.status != UserStatus::Active {
        return Err(AuthError::Inactive);
    }
    let issued = auth
        .sessions
        .open(user.tenant, user.id, request.device_id, user.location_id)
        .await?;
    Ok(Json(token_response(&auth, &user, issued)?))
}

/// `POST /v1/auth/refresh`: the next access and refresh tokens for a session.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth",
    request_body(content = Object, description = "`RefreshRequest`: the refresh token last issued",
        example = json!({"refresh_token": "…"})),
    responses(
        (status = 200, description = "`TokenResponse`, as for sign-in; the refresh token given is spent", body = Object),
        (status = 400, description = "The body is not JSON", body = String),
        (status = 401, description = "Unknown, spent or expired refresh token, or the session has ended", body = String,
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The user is not active", body = String),
        (status = 415, description = "The body is not `application/json`", body = String),
        (status = 422, description = "A field is missing or of the wrong type", body = String),
    ))]
async fn refresh(
    State(auth): State<Arc<AuthService>>,
    Json(request): Json<RefreshRequest>,
) -> Result<Json<TokenResponse>, AuthError> {
    let issued = auth.sessions.rotate(&request.refresh_token).await?;
    let tenant = crate::directory::parse_tenant_key(&issued.session.tenant)?;
    let user = auth
        .directory
        .user(tenant, UserId::from_uuid(issued.session.user_id))
        .await?;
    if user.status != UserStatus::Active {
        return Err(AuthError::Inactive);
    }
    Ok(Json(token_response(&auth, &user, issued)?))
}

fn token_response(
    auth: &AuthService,
    user: &UserRecord,
    issued: Issued,
) -> Result<TokenResponse, AuthError> {
    Ok(TokenResponse {
        access_token: auth.access_token(user, &issued)?,
        token_type: "Bearer".into(),
        expires_in: ACCESS_TTL.as_secs(),
        refresh_token: issued.refresh_token,
        session_id: issued.session.id,
        user: user_view(user),
    })
}

/// `POST /v1/auth/sign-out`: ends the token's session (its refresh token too).
#[utoipa::path(post, path = "/v1/auth/sign-out", tag = "auth",
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "No valid bearer token, or its session has ended", body = String,
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The user is no longer active", body = String),
    ),
    security(("bearer" = [])))]
async fn sign_out(
    State(auth): State<Arc<AuthService>>,
    principal: Principal,
) -> Result<StatusCode, AuthError> {
    auth.sessions
        .revoke(principal.tenant, principal.session, "signed out")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/me`: who the token belongs to, and the tenant's permission table.
#[utoipa::path(get, path = "/v1/me", tag = "auth",
    responses(
        (status = 200, description = "`Me`: the user, the session's id and the permission rows", body = Object,
            example = json!({"user": {"id": "…", "tenant": "…", "location_id": "…", "name": "Ann", "email": "ann@example.com", "role": "DRIVER"},
                "session_id": "…", "permissions": [{"role": "DRIVER", "step": 1, "can_view": true, "can_edit": true, "can_approve": false}]})),
        (status = 401, description = "No valid bearer token, or its session has ended", body = String,
            headers(("WWW-Authenticate" = String, description = "RFC 6750 `invalid_token` and why"))),
        (status = 403, description = "The user is no longer active", body = String),
    ),
    security(("bearer" = [])))]
async fn me(
    State(auth): State<Arc<AuthService>>,
    principal: Principal,
) -> Result<Json<Me>, AuthError> {
    let user = auth
        .directory
        .user(principal.tenant, principal.user)
        .await?;
    let permissions = auth.directory.permissions(principal.tenant).await?.rows();
    Ok(Json(Me {
        user: user_view(&user),
        session_id: principal.session,
        permissions,
    }))
}
