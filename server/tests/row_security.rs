//! Postgres row-level security: the second wall behind the tenant filter every
//! query carries (reliability.md §F1, issue 4 point 6).
//!
//! The server connects as an ordinary role that owns the schema (testkit's
//! `crewsync_app`, as in production); the superuser, which row-level security
//! does not bind, is used only to look at every tenant's rows and, in the
//! control, to take the wall down.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use chrono::NaiveDate;
use crewsync_core::ids::{DeviceId, JourneyId, LocationId, UserId};
use crewsync_server::audit::ChangeAudit;
use crewsync_server::directory::Db;
use crewsync_server::media::{
    self,
    db::{MediaRow, UploadRow},
};
use crewsync_server::scope::{Reach, ScopeIndex};
use crewsync_server::storage::postgres::PostgresStorage;
use crewsync_server::storage::{NewChange, QuarantineKind, Quarantined, Refused, Storage};
use crewsync_testkit::postgres::{TestDatabase, shared_cluster};
use sqlx::{PgPool, Row};
use uuid::Uuid;

const A: &str = "tenant-a";
const B: &str = "tenant-b";

/// Tables keyed by tenant that hold no journey data and are left to the tenant
/// filters alone (the directory and sign-in state: signing in looks a user up
/// before any tenant is known).
const UNWALLED: &[&str] = &[
    "locations",
    "users",
    "role_permissions",
    "move_sources",
    "sessions",
];

async fn fresh_db() -> TestDatabase {
    tokio::task::spawn_blocking(|| shared_cluster().unwrap().fresh_database().unwrap())
        .await
        .unwrap()
}

fn change(journey: JourneyId, label: &str) -> NewChange {
    let mut hash = label.as_bytes().to_vec();
    hash.resize(32, 0);
    NewChange {
        journey,
        hash,
        actor: format!("actor of {label}").into_bytes(),
        device: DeviceId::new(),
        bytes: format!("bytes of {label}").into_bytes(),
        audit: ChangeAudit {
            user: Some(UserId::new()),
            device: None,
            location: None,
            diff: serde_json::json!({ "label": label }),
            device_time: None,
        },
    }
}

/// Writes a row of `tenant` into every walled table through the server's own
/// storage and scope index: log, heads, audit, snapshot, quarantine, scope.
async fn fill(storage: &PostgresStorage, index: &ScopeIndex, tenant: &str) {
    let journey = JourneyId::new();
    storage
        .append(
            tenant,
            &[
                change(journey, &format!("{tenant} 1")),
                change(journey, &format!("{tenant} 2")),
            ],
        )
        .await
        .unwrap();
    assert!(
        storage
            .save_snapshot(tenant, journey, 0, b"snapshot", &[])
            .await
            .unwrap()
    );
    let refused = change(journey, &format!("{tenant} refused"));
    storage
        .quarantine(
            tenant,
            &[Refused {
                change: Quarantined {
                    journey,
                    hash: refused.hash.clone(),
                    kind: QuarantineKind::Rejected,
                    reason: "not allowed".into(),
                    user: UserId::new(),
                    device: refused.device,
                    bytes: refused.bytes.clone(),
                    received_at: 1,
                },
                audit: refused.audit.clone(),
            }],
        )
        .await
        .unwrap();
    let reach = Reach {
        journey,
        location: LocationId::new(),
        day: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        crew: vec![UserId::new()],
    };
    index.record(tenant, &reach, 2).await.unwrap();
    fill_media(&storage.db(), tenant, journey).await;
}

/// A finished upload, its media row and a legal hold of `tenant`, through the
/// server's media queries.
async fn fill_media(db: &Db, tenant: &str, journey: JourneyId) {
    let (media_id, upload, user, device) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let sha256 = "ab".repeat(32);
    media::db::insert_upload(
        db,
        &UploadRow {
            id: upload,
            tenant: tenant.to_owned(),
            media_id,
            kind: "photo".into(),
            journey_id: journey.as_uuid(),
            content_type: "image/jpeg".into(),
            size: 3,
            sha256: sha256.clone(),
            upload_offset: 0,
            status: "open".into(),
            user_id: user,
            device_id: device,
            created_at: 1,
            updated_at: 1,
        },
    )
    .await
    .unwrap();
    assert!(
        media::db::advance(db, tenant, upload, 0, 3, 2)
            .await
            .unwrap()
    );
    let row = MediaRow {
        tenant: tenant.to_owned(),
        media_id,
        kind: "photo".into(),
        journey_id: journey.as_uuid(),
        content_type: "image/jpeg".into(),
        sha256: sha256.clone(),
        size: 3,
        width: Some(1),
        height: Some(1),
        blob_key: format!("{tenant}/{sha256}"),
        thumb_key: None,
        thumb_size: None,
        user_id: user,
        device_id: device,
        created_at: 3,
        deleted_at: None,
        deleted_by: None,
        purged_at: None,
    };
    assert!(media::db::complete(db, upload, &row).await.unwrap());
    media::db::set_hold(db, tenant, journey.as_uuid(), true, user, 4)
        .await
        .unwrap();
}

/// Tables with a `tenant` column, and whether row-level security is enabled and
/// forced on each.
async fn tenant_tables(pool: &PgPool) -> Vec<(String, bool, bool)> {
    sqlx::query(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'r'
           AND EXISTS (SELECT 1 FROM pg_attribute a
                       WHERE a.attrelid = c.oid AND a.attname = 'tenant' AND NOT a.attisdropped)
         ORDER BY c.relname",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
    .collect()
}

/// The tenants whose rows of `table` a query sees, bound to `bound` (or to no
/// tenant), with no tenant filter of its own.
async fn tenants_seen(pool: &PgPool, table: &str, bound: Option<&str>) -> BTreeSet<String> {
    let mut tx = pool.begin().await.unwrap();
    if let Some(tenant) = bound {
        sqlx::query("SELECT set_config('crewsync.tenant', $1, true)")
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let seen: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT DISTINCT tenant FROM {table}"
    )))
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    seen.into_iter().collect()
}

fn set(tenants: &[&str]) -> BTreeSet<String> {
    tenants.iter().map(|t| (*t).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_journey_table_shows_a_transaction_only_its_own_tenant() {
    let db = fresh_db().await;
    let storage = PostgresStorage::connect(&db.url).await.unwrap();
    let index = ScopeIndex::new(storage.db());
    fill(&storage, &index, A).await;
    fill(&storage, &index, B).await;
    let app = PgPool::connect(&db.url).await.unwrap();
    let superuser = PgPool::connect(&db.superuser_url).await.unwrap();

    let tables = tenant_tables(&superuser).await;
    let walled: Vec<&str> = tables
        .iter()
        .filter(|(name, _, _)| !UNWALLED.contains(&name.as_str()))
        .map(|(name, _, _)| name.as_str())
        .collect();
    assert!(walled.len() >= 10, "walled tables: {walled:?}");
    for media_table in ["media_uploads", "media", "journey_holds"] {
        assert!(walled.contains(&media_table), "{media_table} is walled");
    }
    for (name, enabled, forced) in &tables {
        if UNWALLED.contains(&name.as_str()) {
            continue;
        }
        // A new tenant table without a wall fails here, not in production.
        assert!(
            *enabled && *forced,
            "{name} holds tenant rows but row-level security is not enabled and forced on it"
        );
    }

    for table in &walled {
        assert_eq!(
            tenants_seen(&superuser, table, None).await,
            set(&[A, B]),
            "{table}: both tenants' rows are stored (the superuser sees them)"
        );
        assert_eq!(
            tenants_seen(&app, table, Some(A)).await,
            set(&[A]),
            "{table}: bound to {A}, a query without a tenant filter sees only {A}"
        );
        assert_eq!(
            tenants_seen(&app, table, Some(B)).await,
            set(&[B]),
            "{table}: bound to {B}"
        );
        assert!(
            tenants_seen(&app, table, None).await.is_empty(),
            "{table}: bound to no tenant, nothing is visible"
        );
    }

    // Writes: bound to A, another tenant's rows can be neither added, changed
    // nor deleted.
    let mut tx = app.begin().await.unwrap();
    sqlx::query("SELECT set_config('crewsync.tenant', $1, true)")
        .bind(A)
        .execute(&mut *tx)
        .await
        .unwrap();
    let updated = sqlx::query("UPDATE change_log SET folded = true WHERE tenant = $1")
        .bind(B)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 0, "B's log rows cannot be updated");
    let deleted = sqlx::query("DELETE FROM audit_log WHERE tenant = $1")
        .bind(B)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(
        deleted.rows_affected(),
        0,
        "B's audit rows cannot be deleted"
    );
    let smuggled = sqlx::query(
        "INSERT INTO journey_crew (tenant, journey_id, user_id) VALUES ($1, gen_random_uuid(), gen_random_uuid())",
    )
    .bind(B)
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert!(
        smuggled.to_string().contains("row-level security"),
        "inserting a row of B while bound to A: {smuggled}"
    );
    drop(tx);

    // And the server's own reads still work through the wall.
    assert_eq!(storage.changes_since(A, 0, 100).await.unwrap().len(), 2);
    assert!(storage.audit_head(B).await.unwrap().is_some());
    assert_eq!(storage.quarantined(A, None).await.unwrap().len(), 1);
    let usage = media::db::usage(&storage.db(), A).await.unwrap();
    assert_eq!(
        usage.len(),
        1,
        "A's media, read through the wall: {usage:?}"
    );
    assert_eq!(media::db::staged(&storage.db(), B).await.unwrap(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_query_that_forgets_its_tenant_filter_still_sees_only_its_tenant() {
    let db = fresh_db().await;
    let careful = PostgresStorage::connect(&db.url).await.unwrap();
    let careless = PostgresStorage::connect(&db.url)
        .await
        .unwrap()
        .forgetting_tenant_filter();
    let index = ScopeIndex::new(careful.db());
    fill(&careful, &index, A).await;
    fill(&careful, &index, B).await;
    let tenants_of = |log: &[crewsync_server::storage::StoredChange]| -> BTreeSet<String> {
        log.iter()
            .map(|c| {
                String::from_utf8_lossy(&c.hash)
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };

    let careless_a = careless.changes_since(A, 0, 100).await.unwrap();
    assert_eq!(
        tenants_of(&careless_a),
        set(&[A]),
        "the wall keeps B's changes out of A's read despite the missing filter"
    );

    // Control: with the wall down, the same careless read leaks B's changes
    // (so the test above bites), while the careful read still does not (the
    // first wall).
    let superuser = PgPool::connect(&db.superuser_url).await.unwrap();
    sqlx::query("ALTER TABLE change_log DISABLE ROW LEVEL SECURITY")
        .execute(&superuser)
        .await
        .unwrap();
    let leaked = careless.changes_since(A, 0, 100).await.unwrap();
    assert_eq!(
        tenants_of(&leaked),
        set(&[A, B]),
        "without the wall, B leaks"
    );
    let careful_a = careful.changes_since(A, 0, 100).await.unwrap();
    assert_eq!(tenants_of(&careful_a), set(&[A]));
}
