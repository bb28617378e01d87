//! Fixtures shared by the end-to-end tests: a server on loopback over the embedded
//! store or Postgres, with a test tenant; devices signed in as its users.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use crewsync_core::ids::{ClientId, LocationId};
use crewsync_server::storage::Storage;
use crewsync_server::testing::{EmbeddedTestDb, TestTenant};

pub struct Backend {
    pub storage: Arc<dyn Storage>,
    pub tenant: TestTenant,
    _db: Option<EmbeddedTestDb>,
    _pg: Option<crewsync_testkit::postgres::TestDatabase>,
}

impl Backend {
    pub async fn embedded() -> Self {
        let db = EmbeddedTestDb::create(ClientId::new(), LocationId::new())
            .await
            .unwrap();
        Self {
            storage: Arc::clone(&db.storage),
            tenant: db.tenant.clone(),
            _db: Some(db),
            _pg: None,
        }
    }

    pub async fn postgres(url: &str) -> Self {
        let opened = crewsync_server::storage::open(Some(url), Path::new("."))
            .await
            .unwrap();
        let tenant = TestTenant::create(opened.db, ClientId::new(), LocationId::new())
            .await
            .unwrap();
        Self {
            storage: opened.storage,
            tenant,
            _db: None,
            _pg: None,
        }
    }

    /// A fresh database on the shared throwaway cluster, kept as long as this.
    pub async fn fresh_postgres() -> Self {
        let db = tokio::task::spawn_blocking(|| {
            crewsync_testkit::postgres::shared_cluster()
                .unwrap()
                .fresh_database()
                .unwrap()
        })
        .await
        .unwrap();
        let mut backend = Self::postgres(&db.url).await;
        backend._pg = Some(db);
        backend
    }

    pub async fn serve(&self) -> String {
        crewsync_server::testing::serve(&self.storage, &self.tenant).await
    }
}

#[allow(unused_imports)]
pub use crewsync_server::testing::TestDevice as Device;

/// Polls `check` (bounded: 100 × 50 ms) until it holds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 5 s");
}

/// As a dispatcher (`token`) on the server at `url`: plans a journey for today at
/// `location` and puts `crew` on it, as the office does before a crew's day.
pub async fn plan_journey(
    url: &str,
    token: &str,
    location: LocationId,
    crew: crewsync_core::ids::UserId,
) -> crewsync_core::ids::JourneyId {
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{url}/v1/journeys"))
        .bearer_auth(token)
        .json(&serde_json::json!({
            "date": chrono::Utc::now().date_naive(), "location_id": location, "truck_number": "T-7",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let journey = serde_json::from_value(created["id"].clone()).unwrap();
    let status = http
        .post(format!("{url}/v1/journeys/{journey}/crew"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "user_id": crew }))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
    journey
}
