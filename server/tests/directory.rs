//! The directory on both databases: the seed loads, re-seeding changes nothing,
//! lookups are scoped to their tenant, and the permission table round-trips.
#![allow(clippy::unwrap_used)]

use crewsync_core::ids::{ClientId, LocationId};
use crewsync_core::model::{Role, StepNumber};
use crewsync_core::policy::{PermissionTable, RolePermission};
use crewsync_server::auth::password;
use crewsync_server::directory::{Directory, DirectoryError, UserStatus};
use crewsync_server::seed::{self, DEMO_PASSWORD, LGM_TENANT};
use crewsync_server::storage;

async fn sqlite() -> (Directory, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let opened = storage::open(None, dir.path()).await.unwrap();
    (Directory::new(opened.db), dir)
}

async fn postgres() -> (Directory, crewsync_testkit::postgres::TestDatabase) {
    let db = crewsync_testkit::postgres::shared_cluster()
        .unwrap()
        .fresh_database()
        .unwrap();
    let opened = storage::open(Some(&db.url), std::path::Path::new("."))
        .await
        .unwrap();
    (Directory::new(opened.db), db)
}

async fn seeded_directory_is_complete_and_scoped(directory: Directory) {
    let first = seed::seed(&directory).await.unwrap();
    assert_eq!(first.tenants, 2);
    assert_eq!(first.locations, 43 + 2);
    assert_eq!(first.users, 50 + 6);
    // Seeding again updates in place.
    seed::seed(&directory).await.unwrap();
    let tenants = directory.tenants().await.unwrap();
    assert_eq!(tenants.len(), 2);

    let lgm = ClientId::from_uuid(LGM_TENANT);
    let maple = tenants.iter().find(|t| t.slug == "maple").unwrap().id;
    let lgm_locations = directory.locations(lgm).await.unwrap();
    assert_eq!(lgm_locations.len(), 43);
    assert_eq!(directory.users(lgm).await.unwrap().len(), 50);
    assert_eq!(directory.users(maple).await.unwrap().len(), 6);

    // Another tenant's ids are simply not there.
    let hamilton = lgm_locations.iter().find(|l| l.name == "HAMILTON").unwrap();
    assert_eq!(
        directory.location(lgm, hamilton.id).await.unwrap().name,
        "HAMILTON"
    );
    assert!(matches!(
        directory.location(maple, hamilton.id).await,
        Err(DirectoryError::NotFound(_))
    ));
    assert!(matches!(
        directory.location(lgm, LocationId::new()).await,
        Err(DirectoryError::NotFound(_))
    ));

    // Sign-in lookups by email, case-insensitively; the password verifies.
    let driver = directory
        .user_by_email(" Driver@LGM.example ")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(driver.role, Role::Driver);
    assert_eq!(driver.tenant, lgm);
    assert_eq!(driver.location_id, hamilton.id);
    assert!(password::verify(DEMO_PASSWORD, driver.password_hash.as_deref().unwrap()).unwrap());
    assert!(
        directory
            .user_by_email("nobody@lgm.example")
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        directory.user(maple, driver.id).await,
        Err(DirectoryError::NotFound(_))
    ));

    directory
        .set_user_status(lgm, driver.id, UserStatus::Inactive)
        .await
        .unwrap();
    assert_eq!(
        directory.user(lgm, driver.id).await.unwrap().status,
        UserStatus::Inactive
    );
    assert!(
        directory
            .set_user_status(maple, driver.id, UserStatus::Active)
            .await
            .is_err(),
        "another tenant's user cannot be changed"
    );

    // Permissions: the defaults, then a tenant-specific change to one row.
    assert_eq!(
        directory.permissions(lgm).await.unwrap(),
        PermissionTable::defaults()
    );
    let row = RolePermission {
        role: Role::Mover,
        step: StepNumber::new(4).unwrap(),
        can_view: true,
        can_edit: true,
        can_approve: false,
    };
    directory.set_permissions(maple, &[row]).await.unwrap();
    let maple_table = directory.permissions(maple).await.unwrap();
    assert_eq!(maple_table.get(Role::Mover, row.step), row);
    assert!(
        !directory
            .permissions(lgm)
            .await
            .unwrap()
            .get(Role::Mover, row.step)
            .can_edit
    );
    assert_eq!(directory.move_sources(lgm).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_directory() {
    let (directory, _dir) = sqlite().await;
    seeded_directory_is_complete_and_scoped(directory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_directory() {
    let (directory, _db) = postgres().await;
    seeded_directory_is_complete_and_scoped(directory).await;
}
