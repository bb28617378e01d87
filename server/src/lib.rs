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
//! `POST /v1/sync`, `GET /v1/live` (WebSocket), and the audit trail
//! (`GET /v1/journeys/{journey}/audit`, `GET /v1/audit`, `GET /v1/audit/verify`, see
//! [`audit::http`]). A request's tenant is always the one its token names.

pub mod audit;
pub mod auth;
pub mod checks;
pub mod compaction;
pub mod config;
pub mod directory;
pub mod live;
pub mod metrics;
pub mod seed;
pub mod storage;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router, middleware};
use crewsync_core::sync::wire::{self, CONTENT_TYPE, WireError};
use serde::Serialize;

use crate::auth::http::{AuthService, Principal};
use crate::compaction::Compactor;
use crate::config::Config;
use crate::live::{LiveHub, Notice, Notifier, PgFanout};
use crate::metrics::{Metrics, MetricsError};
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
        Ok(Self {
            storage,
            auth,
            notifier: Notifier::local(hub),
            metrics,
            compactor,
            max_body_bytes: config.max_body_bytes,
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
            ApiError::Check(checks::CheckError::Corrupt { .. }) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "request refused");
        }
        (status, self.to_string()).into_response()
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
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/v1/sync", post(sync_endpoint))
        .route("/v1/live", get(live_endpoint))
        .route("/metrics", get(metrics::endpoint))
        .merge(auth::http::routes())
        .merge(audit::http::routes())
        .layer(DefaultBodyLimit::max(services.max_body_bytes))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
        .with_state(services)
}

/// A configured server: storage opened, and with Postgres the cross-process live
/// fan-out started. [`serve`](Self::serve) runs it until shutdown.
pub struct Server {
    services: Services,
    fanout: Option<PgFanout>,
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
        let fanout = match config.database_url.as_deref() {
            Some(url) if config.is_postgres() => {
                let fanout = PgFanout::start(url, Arc::clone(services.hub()), storage).await?;
                services.notifier = fanout.notifier();
                Some(fanout)
            }
            _ => None,
        };
        Ok(Self { services, fanout })
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
        let served = axum::serve(listener, self.router())
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
        if let Some(fanout) = self.fanout {
            fanout.stop().await;
        }
        served
    }
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Ready when the storage answers.
async fn ready(State(services): State<Services>) -> Result<Json<Health>, ApiError> {
    services.storage.ping().await?;
    Ok(health().await)
}

/// `GET /v1/live`: a WebSocket that hears of every append to the tenant's log.
async fn live_endpoint(
    State(services): State<Services>,
    principal: Principal,
    upgrade: WebSocketUpgrade,
) -> Response {
    let hub = Arc::clone(services.hub());
    upgrade
        .max_message_size(live::MAX_INCOMING_MESSAGE)
        // Devices send only pongs and frames are small notices: tungstenite's
        // 128 KiB default buffers made an idle socket cost ≈135 KB (sync bench).
        .read_buffer_size(live::SOCKET_BUFFER)
        .write_buffer_size(live::SOCKET_BUFFER)
        .max_write_buffer_size(live::MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| {
            live::serve_socket(socket, hub, services.storage, principal.tenant_key())
        })
}

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
    let table = services
        .auth
        .directory
        .permissions(principal.tenant)
        .await?;
    let (request, refused, facts) =
        checks::screen(&services.storage, &tenant, &principal, &table, request).await?;

    let journeys: BTreeSet<_> = request.changes.iter().map(|c| c.journey).collect();
    let sync::Exchanged {
        mut response,
        appended,
        accepted,
    } = sync::exchange(&services.storage, &tenant, request, &facts).await?;
    // Refused changes are durable in quarantine: the device hears why, and stops
    // sending them.
    response.rejected.extend(refused);
    services.metrics.changes_accepted.inc_by(accepted as u64);
    services
        .metrics
        .changes_rejected
        .inc_by(response.rejected.len() as u64);
    // A re-sent change adds nothing: live sockets and the compactor hear only of
    // real news. The changes are durable and acknowledged whatever happens here.
    if appended.new_changes > 0 {
        let journeys: Vec<_> = journeys.into_iter().collect();
        services.compactor.touched(&tenant, &journeys);
        services.notifier.committed(Notice {
            tenant: tenant.clone(),
            head: appended.head,
            journeys,
        });
    }

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
