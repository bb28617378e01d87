//! crewsync-server: the sync server crews' devices and dispatchers talk to.
//!
//! [`router`] is the whole HTTP surface over [`Services`], without sockets, so tests
//! and `main` serve the same router; [`Server`] opens what a [`config::Config`] names
//! and serves it with graceful shutdown. The sync logic itself lives in [`sync`], the
//! change log behind the [`storage::Storage`] trait, the live channel in [`live`],
//! the Prometheus metrics in [`metrics`].
//!
//! Routes: `GET /health`, `GET /ready`, `GET /metrics` (operators, no token);
//! `POST /v1/auth/sign-in`, `POST /v1/auth/refresh`; and with a bearer token
//! (see [`auth::http::Principal`]): `POST /v1/auth/sign-out`, `GET /v1/me`,
//! `POST /v1/sync`, `GET /v1/live` (WebSocket), the dispatcher API (see
//! [`dispatch`]), the audit trail (`GET /v1/journeys/{journey}/audit`,
//! `GET /v1/audit`, `GET /v1/audit/verify`, see [`audit::http`]), and for the ADMIN
//! role the admin API under `/v1/admin` (see [`admin`]). Every route is in
//! `/openapi.json`. A request's tenant is always the one its token names.
//! Sign-in, sync and the live upgrade are rate limited ([`limits`]).

pub mod admin;
pub mod audit;
pub mod auth;
pub mod checks;
pub mod compaction;
pub mod config;
pub mod directory;
pub mod dispatch;
pub mod intake;
pub mod limits;
pub mod live;
pub mod media;
pub mod metrics;
pub mod scope;
pub mod seed;
pub mod storage;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use axum::{Extension, Json, Router, middleware};
use crewsync_core::sync::wire::{self, CONTENT_TYPE, WireError};
use serde::Serialize;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::http::{AuthService, Principal};
use crate::compaction::Compactor;
use crate::config::Config;
use crate::limits::Limits;
use crate::live::{LiveHub, Notifier, PgFanout};
use crate::metrics::{Metrics, MetricsError};
use crate::scope::{Scope, ScopeIndex};
use crate::storage::{Storage, StorageError};

/// Largest sync request body accepted unless configured (`--max-body-bytes`).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How long shutdown waits for live sockets to close after telling them to.
pub const LIVE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The storage and authentication a router serves; [`app`] adds in-process
/// defaults for the rest.
#[derive(Clone)]
pub struct AppState {
    pub storage: Arc<dyn Storage>,
    pub auth: Arc<AuthService>,
}

/// Everything the router serves from: the log, the live hub, the metrics, limits.
#[derive(Clone)]
pub struct Services {
    pub storage: Arc<dyn Storage>,
    /// Who is who, sessions and tokens.
    pub auth: Arc<AuthService>,
    /// Tells live sockets (here and, with Postgres, on other servers) of appends.
    pub notifier: Notifier,
    pub metrics: Arc<Metrics>,
    /// Folds busy journeys' changes into snapshots, off the request path.
    pub compactor: Compactor,
    /// Largest sync request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Who sees which journey (sync scopes).
    pub scopes: ScopeIndex,
    /// The date window of crew members' scopes.
    pub window: scope::Window,
    /// Rate limits on sign-in, sync and live upgrades.
    pub limits: Arc<Limits>,
    /// Uploads, blobs and the evidence rules.
    pub media: Arc<media::MediaService>,
}

impl Services {
    /// One process on its own: live notices reach only this process's sockets.
    pub fn in_process(
        storage: Arc<dyn Storage>,
        auth: Arc<AuthService>,
        config: &Config,
    ) -> Result<Self, MetricsError> {
        let metrics = Arc::new(Metrics::new()?);
        let hub = LiveHub::new(Arc::clone(&metrics), config.live_ping());
        let compactor = Compactor::new(
            Arc::clone(&storage),
            Arc::clone(&metrics),
            config.compact_after,
        );
        let scopes = ScopeIndex::new(auth.directory.db().clone());
        let media = Arc::new(media::MediaService::new(
            config.media_config(),
            auth.directory.db().clone(),
            Arc::clone(&storage),
        ));
        Ok(Self {
            media,
            storage,
            auth,
            scopes,
            window: config.scope_window(),
            notifier: Notifier::local(hub),
            metrics,
            compactor,
            max_body_bytes: config.max_body_bytes,
            limits: Arc::new(Limits::new(&config.limits())),
        })
    }

    pub fn hub(&self) -> &Arc<LiveHub> {
        self.notifier.hub()
    }
}

impl FromRef<Services> for Arc<AuthService> {
    fn from_ref(services: &Services) -> Self {
        Arc::clone(&services.auth)
    }
}

impl FromRef<Services> for Arc<Metrics> {
    fn from_ref(services: &Services) -> Self {
        Arc::clone(&services.metrics)
    }
}

#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
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
    #[error("request body too large: the limit is {limit} bytes")]
    TooLarge { limit: usize },
    #[error("cannot read the request body: {0}")]
    Body(String),
    #[error("storage unavailable: {0}")]
    Storage(#[from] StorageError),
    #[error("directory unavailable: {0}")]
    Directory(#[from] directory::DirectoryError),
    #[error("{0}")]
    Check(#[from] checks::CheckError),
    #[error("{0}")]
    Scope(#[from] scope::ScopeError),
    #[error("{0}")]
    Pull(#[from] sync::PullError),
    /// Unknown here, or another tenant's, or outside the caller's scope: the
    /// same answer for all three, so ids reveal nothing.
    #[error("{0} not found")]
    NotFound(String),
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("conflict: {0}")]
    Conflict(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Wire(WireError::UnsupportedVersion { .. }) => StatusCode::BAD_REQUEST,
            ApiError::Wire(WireError::Malformed(_)) => StatusCode::BAD_REQUEST,
            ApiError::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Body(_) => StatusCode::BAD_REQUEST,
            ApiError::Storage(_) | ApiError::Directory(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Check(checks::CheckError::Storage(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Check(e) | ApiError::Scope(scope::ScopeError::Check(e)) => check_status(e),
            ApiError::Pull(sync::PullError::Check(e)) => check_status(e),
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Scope(scope::ScopeError::Directory(_))
            | ApiError::Pull(sync::PullError::Storage(_)) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "request refused");
        }
        (status, self.to_string()).into_response()
    }
}

fn check_status(error: &checks::CheckError) -> StatusCode {
    match error {
        checks::CheckError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        checks::CheckError::Corrupt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Live(#[from] live::LiveError),
    #[error("directory: {0}")]
    Directory(#[from] directory::DirectoryError),
    #[error("sync scopes: {0}")]
    Scope(#[from] scope::ScopeError),
    #[error("media: {0}")]
    Media(#[from] media::MediaError),
}

/// The router over `state.storage` with in-process defaults: a live hub for this
/// process only, a fresh metrics registry, the default body limit.
pub fn app(state: AppState) -> Router {
    // The metric names and help texts are constants that `Metrics::new` always
    // accepts (every test builds them); only a programming error can fail here.
    #[allow(clippy::expect_used)]
    let services = Services::in_process(state.storage, state.auth, &Config::default())
        .expect("the constant metric definitions are valid");
    router(services)
}

/// The whole HTTP surface over `services`.
pub fn router(services: Services) -> Router {
    let metrics = Arc::clone(&services.metrics);
    let sync_gate = middleware::from_fn_with_state(services.clone(), limits::sync_gate);
    let sign_in_gate = middleware::from_fn_with_state(services.clone(), limits::sign_in_gate);
    let (documented, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics::endpoint))
        .routes(routes!(openapi_document))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(sync_endpoint))
                .routes(routes!(live_endpoint))
                .route_layer(sync_gate),
        )
        .merge(dispatch::routes())
        .merge(auth::http::sign_in_routes().route_layer(sign_in_gate))
        .merge(auth::http::session_routes())
        .merge(admin::routes())
        .merge(audit::http::routes())
        .merge(media::routes())
        .split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    Router::new()
        .merge(documented)
        .layer(Extension(Arc::new(api)))
        .layer(DefaultBodyLimit::max(services.max_body_bytes))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
        .with_state(services)
}

/// `GET /openapi.json`: this document. Every route is registered through
/// `utoipa_axum::routes!`, so the document lists them all (the route-table test
/// relies on it).
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", body = Object)))]
async fn openapi_document(
    Extension(api): Extension<Arc<utoipa::openapi::OpenApi>>,
) -> Json<Arc<utoipa::openapi::OpenApi>> {
    Json(api)
}

/// The OpenAPI document's frame; the routes add their paths (`utoipa_axum`).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "crewsync",
        description = "The crewsync sync server: the office's JSON API. Devices sync over `POST /v1/sync` (MessagePack, see ARCHITECTURE.md)."
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Every documented route takes a bearer access token from `POST /v1/auth/sign-in`.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// A configured server: storage opened, and with Postgres the cross-process live
/// fan-out started. [`serve`](Self::serve) runs it until shutdown.
pub struct Server {
    services: Services,
    fanout: Option<PgFanout>,
    /// Expires abandoned uploads while serving.
    sweeper: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Opens the configured storage (running migrations) and, for Postgres, a LISTEN
    /// connection of its own, so several processes on one database tell each
    /// other's live sockets of their appends.
    pub async fn open(config: &Config) -> Result<Self, StartError> {
        let opened = storage::open(config.database_url.as_deref(), &config.data_dir).await?;
        Self::with_storage(config, opened.storage, opened.db).await
    }

    /// As [`open`](Self::open), over storage the caller opened (e.g. wrapped) and
    /// the database it lives in.
    pub async fn with_storage(
        config: &Config,
        storage: Arc<dyn Storage>,
        db: directory::Db,
    ) -> Result<Self, StartError> {
        let auth = Arc::new(AuthService::open(db).await?);
        let mut services = Services::in_process(Arc::clone(&storage), auth, config)?;
        services.media.blobs.check()?;
        let indexed = scope::backfill(&storage, &services.scopes).await?;
        if indexed > 0 {
            tracing::info!(
                journeys = indexed,
                "indexed journeys logged before sync scopes"
            );
        }
        let fanout = match config.database_url.as_deref() {
            Some(url) if config.is_postgres() => {
                let fanout = PgFanout::start(url, Arc::clone(services.hub()), storage).await?;
                services.notifier = fanout.notifier();
                Some(fanout)
            }
            _ => None,
        };
        let sweep_every = (config.media_config().upload_expiry / 4)
            .clamp(Duration::from_secs(1), Duration::from_secs(3600));
        let sweeper = media::evidence::spawn_sweeper(Arc::clone(&services.media), sweep_every);
        Ok(Self {
            services,
            fanout,
            sweeper,
        })
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    pub fn router(&self) -> Router {
        router(self.services.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then closes every live
    /// socket (waiting up to [`LIVE_CLOSE_GRACE`]) and in-flight requests finish.
    pub async fn serve<F>(
        self,
        listener: tokio::net::TcpListener,
        shutdown: F,
    ) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let hub = Arc::clone(self.services.hub());
        let closing = Arc::clone(&hub);
        // Live notices are small frames that must leave at once: with Nagle on, a
        // frame after the device's pong waited ≈40 ms for a delayed ACK (bench).
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        // The peer address is the sign-in limit's client IP.
        let app = self
            .router()
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                closing.close();
            })
            .await;
        hub.close();
        if !hub.wait_closed(LIVE_CLOSE_GRACE).await {
            tracing::warn!(
                open = hub.connections(),
                "live sockets still open at shutdown"
            );
        }
        self.services.compactor.stop();
        self.sweeper.abort();
        if let Some(fanout) = self.fanout {
            fanout.stop().await;
        }
        served
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Ready when the storage answers.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database does not answer"),
    ))]
async fn ready(State(services): State<Services>) -> Result<Json<Health>, ApiError> {
    services.storage.ping().await?;
    Ok(health().await)
}

/// `GET /v1/live`: a WebSocket that hears of appends to journeys in the caller's
/// sync scope (JSON frames `{"head": n, "journeys": [...]}`).
#[utoipa::path(get, path = "/v1/live", tag = "sync",
    params(("access_token" = Option<String>, Query,
        description = "The bearer token, for WebSocket clients that cannot set headers")),
    responses(
        (status = 101, description = "Switching to the WebSocket"),
        (status = 401, description = "No valid token"),
        (status = 429, description = "Over the device's or tenant's rate limit"),
    ),
    security(("bearer" = [])))]
async fn live_endpoint(
    State(services): State<Services>,
    principal: Principal,
    upgrade: WebSocketUpgrade,
) -> Response {
    let hub = Arc::clone(services.hub());
    let scope = Scope::of(&principal, chrono::Utc::now().date_naive(), services.window);
    upgrade
        .max_message_size(live::MAX_INCOMING_MESSAGE)
        // Devices send only pongs and frames are small notices: tungstenite's
        // 128 KiB default buffers made an idle socket cost ≈135 KB (sync bench).
        .read_buffer_size(live::SOCKET_BUFFER)
        .write_buffer_size(live::SOCKET_BUFFER)
        .max_write_buffer_size(live::MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| {
            live::serve_socket(socket, hub, services.storage, principal.tenant_key(), scope)
        })
}

/// `POST /v1/sync`: push local changes, pull what the device missed (MessagePack
/// `SyncRequest` → `SyncResponse`, see ARCHITECTURE.md).
#[utoipa::path(post, path = "/v1/sync", tag = "sync",
    request_body(content = Vec<u8>, content_type = "application/vnd.crewsync.sync+msgpack"),
    responses(
        (status = 200, description = "SyncResponse (MessagePack)",
            content_type = "application/vnd.crewsync.sync+msgpack"),
        (status = 400, description = "Malformed message or unsupported protocol version"),
        (status = 401, description = "No valid token"),
        (status = 413, description = "Body over the limit"),
        (status = 415, description = "Wrong content type"),
        (status = 429, description = "Over the device's or tenant's rate limit"),
    ),
    security(("bearer" = [])))]
async fn sync_endpoint(
    State(services): State<Services>,
    principal: Principal,
    request: Request,
) -> Result<Response, ApiError> {
    let tenant = principal.tenant_key();
    let _timer = services.metrics.sync_duration.start_timer();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type != Some(CONTENT_TYPE) {
        return Err(ApiError::ContentType);
    }
    let limit = services.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge { limit });
    }
    let body = Bytes::from_request(request, &services)
        .await
        .map_err(|rejection| body_error(rejection, limit))?;
    services
        .metrics
        .bytes_received
        .with_label_values(&["/v1/sync"])
        .inc_by(body.len() as u64);
    let request = wire::decode_request(&body)?;
    let report = request.report;
    let intake::Taken {
        request,
        acked,
        rejected,
    } = intake::take(&services, &principal, request).await?;
    if let Some(report) = report {
        services
            .auth
            .sessions
            .touch(
                principal.tenant,
                principal.session,
                Some(auth::sessions::DeviceReport {
                    pending_changes: report.pending_changes,
                    pending_media_bytes: report.pending_media_bytes,
                }),
            )
            .await?;
    }
    let scope = Scope::of(&principal, chrono::Utc::now().date_naive(), services.window);
    let view = sync::View {
        visible: Some(services.scopes.visible(&tenant, &scope).await?),
        held: request
            .held
            .as_ref()
            .map(|held| held.iter().copied().collect()),
    };
    let response = sync::pull(&services.storage, &tenant, &request, acked, rejected, &view).await?;

    let encoded = wire::encode(&response);
    services
        .metrics
        .bytes_sent
        .with_label_values(&["/v1/sync"])
        .inc_by(encoded.len() as u64);
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], encoded).into_response())
}

fn body_error(rejection: BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge { limit }
    } else {
        ApiError::Body(rejection.body_text())
    }
}
