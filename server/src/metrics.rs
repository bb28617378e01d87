//! Prometheus metrics for one server instance, served as text on `GET /metrics`.
//!
//! Each [`Metrics`] owns its own registry (not the process-global one), so two
//! servers in one process — as in the scale-out tests — count separately.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Route label for requests that matched no route (keeps label cardinality bounded).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Errors building the metric set (a duplicate or invalid name: a programming error).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Every metric the server exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `crewsync_http_requests_total{route, method, status}`
    pub http_requests: IntCounterVec,
    /// `crewsync_bytes_received_total{route}`: sync request bodies.
    pub bytes_received: IntCounterVec,
    /// `crewsync_bytes_sent_total{route}`: sync response bodies and live frames.
    pub bytes_sent: IntCounterVec,
    /// `crewsync_changes_accepted_total`: pushed changes acknowledged as durable.
    pub changes_accepted: IntCounter,
    /// `crewsync_changes_rejected_total`: pushed changes refused (not automerge).
    pub changes_rejected: IntCounter,
    /// `crewsync_sync_duration_seconds`: one `POST /v1/sync`, body read to response.
    pub sync_duration: Histogram,
    /// `crewsync_live_connections`: open live sockets on this instance.
    pub live_connections: IntGauge,
    /// `crewsync_live_frames_sent_total`
    pub live_frames_sent: IntCounter,
    /// `crewsync_live_notices_total{source}`: change notices this instance heard,
    /// `source` = `local` (its own appends) or `postgres` (another instance's).
    pub live_notices: IntCounterVec,
    /// `crewsync_compactions_total{outcome}`: journey compactions, by outcome
    /// (`saved`, `lost_race`, `nothing`, `failed`).
    pub compactions: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "crewsync_http_requests_total",
                "HTTP requests by route, method and status.",
            ),
            &["route", "method", "status"],
        )?;
        let bytes_received = IntCounterVec::new(
            Opts::new(
                "crewsync_bytes_received_total",
                "Body bytes received, by route.",
            ),
            &["route"],
        )?;
        let bytes_sent = IntCounterVec::new(
            Opts::new(
                "crewsync_bytes_sent_total",
                "Body and frame bytes sent, by route.",
            ),
            &["route"],
        )?;
        let changes_accepted = IntCounter::new(
            "crewsync_changes_accepted_total",
            "Pushed changes acknowledged as durable (new or already known).",
        )?;
        let changes_rejected = IntCounter::new(
            "crewsync_changes_rejected_total",
            "Pushed changes refused (not an automerge change).",
        )?;
        let sync_duration = Histogram::with_opts(
            HistogramOpts::new(
                "crewsync_sync_duration_seconds",
                "Time to serve one sync exchange.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let live_connections = IntGauge::new(
            "crewsync_live_connections",
            "Devices connected to the live channel on this instance.",
        )?;
        let live_frames_sent = IntCounter::new(
            "crewsync_live_frames_sent_total",
            "Frames sent on live sockets.",
        )?;
        let live_notices = IntCounterVec::new(
            Opts::new(
                "crewsync_live_notices_total",
                "Change notices heard, by source (local or postgres).",
            ),
            &["source"],
        )?;
        let compactions = IntCounterVec::new(
            Opts::new(
                "crewsync_compactions_total",
                "Journey compactions, by outcome.",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(compactions.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(bytes_received.clone()))?;
        registry.register(Box::new(bytes_sent.clone()))?;
        registry.register(Box::new(changes_accepted.clone()))?;
        registry.register(Box::new(changes_rejected.clone()))?;
        registry.register(Box::new(sync_duration.clone()))?;
        registry.register(Box::new(live_connections.clone()))?;
        registry.register(Box::new(live_frames_sent.clone()))?;
        registry.register(Box::new(live_notices.clone()))?;
        Ok(Self {
            registry,
            http_requests,
            bytes_received,
            bytes_sent,
            changes_accepted,
            changes_rejected,
            sync_duration,
            live_connections,
            live_frames_sent,
            live_notices,
            compactions,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, MetricsError> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        // The text encoder writes only UTF-8 (names, labels, numbers).
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn endpoint(State(metrics): State<std::sync::Arc<Metrics>>) -> Response {
    match metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}

/// Middleware counting every request by its route pattern (not the raw path), method
/// and status.
pub async fn track(
    State(metrics): State<std::sync::Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .http_requests
        .with_label_values(&[route.as_str(), method.as_str(), response.status().as_str()])
        .inc();
    tracing::debug!(
        %route,
        %method,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    response
}
