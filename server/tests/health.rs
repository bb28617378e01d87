//! The server over real HTTP on loopback.
#![allow(clippy::unwrap_used)]

use crewsync_core::ids::{ClientId, LocationId};
use crewsync_server::testing::EmbeddedTestDb;

#[tokio::test]
async fn health_answers_over_loopback_without_a_token() {
    let db = EmbeddedTestDb::create(ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = crewsync_server::AppState {
        storage: std::sync::Arc::new(crewsync_server::storage::memory::MemoryStorage::new()),
        auth: db.tenant.auth.clone(),
    };
    let server =
        tokio::spawn(async move { axum::serve(listener, crewsync_server::app(state)).await });
    let response = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let missing = reqwest::get(format!("http://{addr}/nope")).await.unwrap();
    assert_eq!(missing.status(), 404);
    server.abort();
}
