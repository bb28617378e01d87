//! Fixtures for tests in this and other crates (feature `testing`): a tenant with
//! one user per role, signed in without going through HTTP, and the embedded
//! database to keep it in.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::collections::BTreeSet;

use crewsync_core::ids::{ClientId, DeviceId, JourneyId, LocationId, UserId};
use crewsync_core::model::{Location, Role};
use crewsync_core::sync::auth::{TokenResponse, UserView};
use crewsync_core::sync::runtime::SyncClient;
use crewsync_core::{DeviceStore, StoreOptions};
use strum::IntoEnumIterator;

use crate::auth::http::AuthService;
use crate::auth::password;
use crate::auth::tokens;
use crate::directory::{
    Db, DirectoryError, LocationRecord, StorageType, TenantRecord, UserRecord, UserStatus,
};
use crate::storage::{self, Opened, Storage};

/// Every test user's password.
pub const TEST_PASSWORD: &str = "test-password";

/// A tenant with one location and one active user per role.
#[derive(Debug, Clone)]
pub struct TestTenant {
    pub auth: Arc<AuthService>,
    pub tenant: ClientId,
    pub location: LocationRecord,
    pub users: BTreeMap<Role, UserRecord>,
}

impl TestTenant {
    /// Creates the tenant in `db`; `tenant` and `location` ids as given (so a
    /// test's journeys can name them).
    pub async fn create(
        db: Db,
        tenant: ClientId,
        location: LocationId,
    ) -> Result<Self, DirectoryError> {
        let auth = Arc::new(AuthService::open(db).await?);
        auth.directory
            .upsert_tenant(&TenantRecord {
                id: tenant,
                slug: format!("test-{tenant}"),
                name: "Test Movers".into(),
                industry: None,
                is_franchise: false,
                settings: serde_json::json!({}),
            })
            .await?;
        let location = LocationRecord {
            id: location,
            tenant,
            name: "HAMILTON".into(),
            timezone: "America/Toronto".into(),
            address: None,
            is_corporate: true,
            storage_type: StorageType::None,
            customer_care: false,
            trucks: 3,
            contact: None,
        };
        auth.directory.upsert_location(&location).await?;
        // One hash for every test user: argon2 is slow on purpose.
        let hash =
            password::hash(TEST_PASSWORD).map_err(|e| DirectoryError::Database(e.to_string()))?;
        let mut users = BTreeMap::new();
        for role in Role::iter() {
            let id = UserId::new();
            let user = UserRecord {
                id,
                tenant,
                location_id: location.id,
                name: format!("Test {role}"),
                email: format!("{}.{id}@test.example", role.to_string().to_lowercase()),
                role,
                status: UserStatus::Active,
                password_hash: Some(hash.clone()),
            };
            auth.directory.upsert_user(&user).await?;
            users.insert(role, user);
        }
        Ok(Self {
            auth,
            tenant,
            location,
            users,
        })
    }

    /// The user with `role`.
    pub fn user(&self, role: Role) -> &UserRecord {
        &self.users[&role]
    }

    /// The location as a device registers it.
    pub fn device_location(&self) -> Location {
        Location {
            id: self.location.id,
            client_id: self.tenant,
            name: self.location.name.clone(),
            timezone: self.location.timezone.clone(),
        }
    }

    /// Adds a location to the tenant (same timezone as the first).
    pub async fn add_location(&self, name: &str) -> Result<LocationRecord, DirectoryError> {
        let location = LocationRecord {
            id: LocationId::new(),
            name: name.to_owned(),
            ..self.location.clone()
        };
        self.auth.directory.upsert_location(&location).await?;
        Ok(location)
    }

    /// Adds another user with `role` at `location`, with the test password.
    pub async fn add_user(
        &self,
        role: Role,
        location: &LocationRecord,
    ) -> Result<UserRecord, DirectoryError> {
        let id = UserId::new();
        let user = UserRecord {
            id,
            location_id: location.id,
            name: format!("Test {role} {id}"),
            email: format!("{}.{id}@test.example", role.to_string().to_lowercase()),
            ..self.user(role).clone()
        };
        self.auth.directory.upsert_user(&user).await?;
        Ok(user)
    }

    /// Signs `role`'s user in on `device`: a session and its tokens, exactly what
    /// `POST /v1/auth/sign-in` answers.
    pub async fn sign_in(
        &self,
        role: Role,
        device: DeviceId,
    ) -> Result<TokenResponse, DirectoryError> {
        self.sign_in_user(self.user(role), device).await
    }

    /// As [`sign_in`](Self::sign_in), for any user of the tenant.
    pub async fn sign_in_user(
        &self,
        user: &UserRecord,
        device: DeviceId,
    ) -> Result<TokenResponse, DirectoryError> {
        let role = user.role;
        let issued = self
            .auth
            .sessions
            .open(self.tenant, user.id, device, user.location_id)
            .await?;
        let claims = tokens::claims_for(
            user.id,
            self.tenant,
            role,
            user.location_id,
            issued.session.id,
            device,
        );
        let access_token = self
            .auth
            .keys
            .issue(&claims)
            .map_err(|e| DirectoryError::Database(e.to_string()))?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: tokens::ACCESS_TTL.as_secs(),
            refresh_token: issued.refresh_token,
            session_id: issued.session.id,
            user: UserView {
                id: user.id,
                tenant: self.tenant,
                location_id: user.location_id,
                name: user.name.clone(),
                email: user.email.clone(),
                role,
            },
        })
    }
}

/// An embedded database in a temp dir: its change log and a tenant in it.
pub struct EmbeddedTestDb {
    pub storage: Arc<dyn Storage>,
    pub tenant: TestTenant,
    pub dir: tempfile::TempDir,
}

impl EmbeddedTestDb {
    pub async fn create(
        tenant: ClientId,
        location: LocationId,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let dir = tempfile::tempdir()?;
        let Opened { storage, db } = storage::open(None, dir.path()).await?;
        let tenant = TestTenant::create(db, tenant, location).await?;
        Ok(Self {
            storage,
            tenant,
            dir,
        })
    }
}

/// Serves the server's routes over `storage` on a free port of 127.0.0.1 and
/// returns its base URL.
#[allow(clippy::unwrap_used)]
pub async fn serve(storage: &Arc<dyn Storage>, tenant: &TestTenant) -> String {
    let app = crate::app(crate::AppState {
        storage: Arc::clone(storage),
        auth: Arc::clone(&tenant.auth),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A device store in a temp dir, signed in as a user of a test tenant, with a
/// sync client for a server at `url`.
pub struct TestDevice {
    pub user: UserRecord,
    pub store: Arc<DeviceStore>,
    pub sync: Arc<SyncClient>,
    _dir: tempfile::TempDir,
}

// Test fixture: a failed set-up should stop the test where it happened.
#[allow(clippy::unwrap_used)]
impl TestDevice {
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
