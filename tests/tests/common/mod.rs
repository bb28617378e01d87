//! Fixtures shared by the end-to-end tests: a server on loopback over the embedded
//! store or Postgres, with a test tenant; devices signed in as its users.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use crewsync_core::ids::{ClientId, JourneyId, LocationId};
use crewsync_core::sync::runtime::SyncClient;
use crewsync_core::{DeviceStore, StoreOptions};
use crewsync_server::directory::UserRecord;
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
        let app = crewsync_server::app(crewsync_server::AppState {
            storage: Arc::clone(&self.storage),
            auth: Arc::clone(&self.tenant.auth),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
}

pub struct Device {
    pub user: UserRecord,
    pub store: Arc<DeviceStore>,
    pub sync: Arc<SyncClient>,
    _dir: tempfile::TempDir,
}

impl Device {
    /// A device signed in as `user`, knowing every location of the tenant.
    pub async fn of(tenant: &TestTenant, user: &UserRecord, url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store =
            DeviceStore::open(dir.path().join("d.sqlite"), StoreOptions::default()).unwrap();
        store.upsert_location(&tenant.device_location()).unwrap();
        // Every location of the tenant, as the app learns them at sign-in.
        for location in tenant
            .auth
            .directory
            .locations(tenant.tenant)
            .await
            .unwrap()
        {
            store
                .upsert_location(&crewsync_core::model::Location {
                    id: location.id,
                    client_id: tenant.tenant,
                    name: location.name,
                    timezone: location.timezone,
                })
                .unwrap();
        }
        let tokens = tenant.sign_in_user(user, store.device_id()).await.unwrap();
        store.save_sign_in(&tokens, true).unwrap();
        let sync = SyncClient::new(Arc::clone(&store), url).unwrap();
        Self {
            user: user.clone(),
            store,
            sync,
            _dir: dir,
        }
    }

    /// The journeys on the device.
    pub fn holds(&self) -> BTreeSet<JourneyId> {
        self.store.journey_ids().unwrap().into_iter().collect()
    }
}

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
