//! crewsync-server: the sync server crews' devices and dispatchers talk to.
//!
//! For now it answers health checks; the sync protocol, storage backends and the
//! dispatcher API build on this router.

use axum::{Json, Router, routing::get};
use serde::Serialize;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}

/// The HTTP surface, without sockets, so tests and `main` share it.
pub fn app() -> Router {
    Router::new().route("/health", get(health))
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}
