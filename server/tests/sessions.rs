//! Sessions and refresh-token rotation on both databases (reliability matrix F6):
//! rotation, a lost response retried within the grace window, reuse after it
//! revoking the whole family, sign-out and deactivation.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crewsync_core::ids::{ClientId, DeviceId, LocationId, UserId};
use crewsync_core::model::Role;
use crewsync_server::auth::sessions::{DeviceReport, RefreshError, Sessions};
use crewsync_server::directory::{
    Db, Directory, LocationRecord, StorageType, TenantRecord, UserRecord, UserStatus,
};
use crewsync_server::storage;

struct Fixture {
    db: Db,
    tenant: ClientId,
    user: UserId,
    location: LocationId,
}

async fn fixture(db: Db) -> Fixture {
    let directory = Directory::new(db.clone());
    let tenant = ClientId::new();
    let location = LocationId::new();
    let user = UserId::new();
    directory
        .upsert_tenant(&TenantRecord {
            id: tenant,
            slug: format!("t-{tenant}"),
            name: "Test Movers".into(),
            industry: None,
            is_franchise: false,
            settings: serde_json::json!({}),
        })
        .await
        .unwrap();
    directory
        .upsert_location(&LocationRecord {
            id: location,
            tenant,
            name: "HAMILTON".into(),
            timezone: "America/Toronto".into(),
            address: None,
            is_corporate: true,
            storage_type: StorageType::None,
            customer_care: false,
            trucks: 1,
            contact: None,
        })
        .await
        .unwrap();
    directory
        .upsert_user(&UserRecord {
            id: user,
            tenant,
            location_id: location,
            name: "Dev".into(),
            email: format!("{user}@test.example"),
            role: Role::Driver,
            status: UserStatus::Active,
            password_hash: None,
        })
        .await
        .unwrap();
    Fixture {
        db,
        tenant,
        user,
        location,
    }
}

async fn rotation_reuse_and_revocation(f: Fixture) {
    let sessions = Sessions::new(f.db.clone());
    let secret = sessions.signing_secret().await.unwrap();
    assert_eq!(secret.len(), 32);
    assert_eq!(
        Sessions::new(f.db.clone()).signing_secret().await.unwrap(),
        secret,
        "every server on the database signs with one key"
    );

    let device = DeviceId::new();
    let first = sessions
        .open(f.tenant, f.user, device, f.location)
        .await
        .unwrap();
    assert_eq!(first.session.device_id, device.as_uuid());
    assert!(matches!(
        sessions.rotate("not a token").await,
        Err(RefreshError::Unknown)
    ));

    // Rotation: a new token each time.
    let second = sessions.rotate(&first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(second.session.id, first.session.id);

    // The response carrying `second` was lost: the device retries with `first`
    // within the grace window and gets a third token; `second` is dead.
    let third = sessions.rotate(&first.refresh_token).await.unwrap();
    assert!(matches!(
        sessions.rotate(&second.refresh_token).await,
        Err(RefreshError::Expired)
    ));
    let fourth = sessions.rotate(&third.refresh_token).await.unwrap();

    // Past the grace window, a used token is a stolen one: the family dies.
    let strict = Sessions::new(f.db.clone()).with_reuse_grace(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(matches!(
        strict.rotate(&third.refresh_token).await,
        Err(RefreshError::Reused)
    ));
    assert!(matches!(
        strict.rotate(&fourth.refresh_token).await,
        Err(RefreshError::Revoked(reason)) if reason == "refresh token reuse"
    ));
    let revoked = sessions
        .session(f.tenant, first.session.id)
        .await
        .unwrap()
        .unwrap();
    assert!(revoked.revoked_at.is_some());

    // Sign-out revokes one session; deactivation every session of the user.
    let phone = sessions
        .open(f.tenant, f.user, DeviceId::new(), f.location)
        .await
        .unwrap();
    let tablet = sessions
        .open(f.tenant, f.user, DeviceId::new(), f.location)
        .await
        .unwrap();
    assert!(
        sessions
            .revoke(f.tenant, phone.session.id, "sign-out")
            .await
            .unwrap()
    );
    assert!(
        !sessions
            .revoke(ClientId::new(), tablet.session.id, "other tenant")
            .await
            .unwrap(),
        "another tenant cannot revoke it"
    );
    assert!(matches!(
        sessions.rotate(&phone.refresh_token).await,
        Err(RefreshError::Revoked(_))
    ));
    assert_eq!(sessions.open_sessions(f.tenant).await.unwrap().len(), 1);
    assert_eq!(
        sessions
            .revoke_user(f.tenant, f.user, "deactivated")
            .await
            .unwrap(),
        1
    );
    assert!(sessions.open_sessions(f.tenant).await.unwrap().is_empty());

    // Contacts record what the device reported.
    sessions
        .touch(
            f.tenant,
            tablet.session.id,
            Some(DeviceReport {
                pending_changes: 7,
                pending_media_bytes: 4096,
            }),
        )
        .await
        .unwrap();
    let row = sessions
        .session(f.tenant, tablet.session.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.pending_changes, row.pending_media_bytes), (7, 4096));
    assert!(row.last_active >= tablet.session.last_active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let opened = storage::open(None, dir.path()).await.unwrap();
    rotation_reuse_and_revocation(fixture(opened.db).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sessions() {
    let db = crewsync_testkit::postgres::shared_cluster()
        .unwrap()
        .fresh_database()
        .unwrap();
    let opened = storage::open(Some(&db.url), std::path::Path::new("."))
        .await
        .unwrap();
    rotation_reuse_and_revocation(fixture(opened.db).await).await;
}
