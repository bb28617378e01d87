//! Who is who: tenants (the seed's Client), their locations, users, role
//! permissions and move sources.
//!
//! The statements are portable SQL (`$n` parameters, times as epoch milliseconds),
//! written once and run on whichever database the server uses: [`Db`] holds either
//! a Postgres pool or the embedded SQLite pools, and `on_db!` type-checks each
//! body against both drivers.

mod edits;
mod records;

use std::str::FromStr;

use crewsync_core::ids::{ClientId, LocationId, MoveSourceId, UserId};
use crewsync_core::model::{Role, StepNumber};
use crewsync_core::policy::{PermissionTable, RolePermission};
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::types::Uuid;

pub use edits::Edited;
pub use records::{
    LocationRecord, MoveSourceRecord, StorageType, TenantRecord, UserRecord, UserStatus,
};

/// A tenant's key in every table: its id's hyphenated text.
pub fn tenant_key(tenant: ClientId) -> String {
    tenant.to_string()
}

/// The tenant a stored key names.
pub fn parse_tenant_key(key: &str) -> Result<ClientId, DirectoryError> {
    records::parse_tenant(key)
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("database error: {0}")]
    Database(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("invalid stored value: {0}")]
    Corrupt(String),
}

pub(crate) fn db_err(operation: &'static str) -> impl FnOnce(sqlx::Error) -> DirectoryError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            DirectoryError::Conflict(format!("{operation}: {}", db.message()))
        }
        _ => DirectoryError::Database(format!("{operation}: {e}")),
    }
}

/// The database the directory (and the rest of the server's relational state)
/// lives in.
#[derive(Debug, Clone)]
pub enum Db {
    Postgres(PgPool),
    /// The embedded store: one writer connection, a pool of readers.
    Sqlite {
        writer: SqlitePool,
        readers: SqlitePool,
    },
}

/// Begins a Postgres transaction bound to `tenant`: the row-level security
/// policies (migration 0009) show and accept only that tenant's rows in it. The
/// setting is transaction-local, so it ends with the transaction and never
/// reaches the pool's next user.
pub(crate) async fn tenant_tx(
    pool: &PgPool,
    tenant: &str,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('crewsync.tenant', $1, true)")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Runs `$body` with `$pool` bound to the backend's pool: the writer for writes
/// (`write`), any reader for reads (`read`).
///
/// With `tenant $t` (tenant-walled tables), Postgres runs the body in a
/// [`tenant_tx`] with `$pool` bound to its connection: with `read`, the
/// transaction only reads and is ended by dropping it; with `write`, it commits
/// when the body succeeds. A failure to begin (or commit) it is returned as the
/// body's error, so the body must produce `Result<_, sqlx::Error>`.
macro_rules! on_db {
    ($db:expr, tenant $tenant:expr, read $pool:ident => $body:expr) => {
        match $db {
            Db::Postgres(pool) => match $crate::directory::tenant_tx(pool, $tenant).await {
                Ok(mut tx) => {
                    let $pool = &mut *tx;
                    $body
                }
                Err(e) => Err(e),
            },
            Db::Sqlite { readers: $pool, .. } => $body,
        }
    };
    ($db:expr, tenant $tenant:expr, write $pool:ident => $body:expr) => {
        match $db {
            Db::Postgres(pool) => match $crate::directory::tenant_tx(pool, $tenant).await {
                Ok(mut tx) => {
                    let result = {
                        let $pool = &mut *tx;
                        $body
                    };
                    match result {
                        Ok(value) => tx.commit().await.map(|()| value),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            },
            Db::Sqlite { writer: $pool, .. } => $body,
        }
    };
    ($db:expr, read $pool:ident => $body:expr) => {
        match $db {
            Db::Postgres($pool) => $body,
            Db::Sqlite { readers: $pool, .. } => $body,
        }
    };
    ($db:expr, write $pool:ident => $body:expr) => {
        match $db {
            Db::Postgres($pool) => $body,
            Db::Sqlite { writer: $pool, .. } => $body,
        }
    };
}

/// Runs `$body` inside a write transaction `$tx`, with `$lock` the row-locking
/// suffix for SELECTs that guard a read-modify-write (`FOR UPDATE` on Postgres;
/// nothing on SQLite, whose `BEGIN IMMEDIATE` already holds the write lock).
/// `$body` commits. With `tenant $t`, the Postgres transaction is a
/// [`tenant_tx`].
macro_rules! in_write_tx {
    ($db:expr, tenant $tenant:expr, $tx:ident, $lock:ident => $body:expr) => {
        match $db {
            Db::Postgres(pool) => {
                let mut $tx = $crate::directory::tenant_tx(pool, $tenant)
                    .await
                    .map_err($crate::directory::db_err("begin"))?;
                let $lock = " FOR UPDATE";
                $body
            }
            Db::Sqlite { writer, .. } => {
                let mut $tx = writer
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err($crate::directory::db_err("begin"))?;
                let $lock = "";
                $body
            }
        }
    };
    ($db:expr, $tx:ident, $lock:ident => $body:expr) => {
        match $db {
            Db::Postgres(pool) => {
                let mut $tx = pool
                    .begin()
                    .await
                    .map_err($crate::directory::db_err("begin"))?;
                let $lock = " FOR UPDATE";
                $body
            }
            Db::Sqlite { writer, .. } => {
                let mut $tx = writer
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err($crate::directory::db_err("begin"))?;
                let $lock = "";
                $body
            }
        }
    };
}
pub(crate) use {in_write_tx, on_db};

/// The directory over a [`Db`].
#[derive(Debug, Clone)]
pub struct Directory {
    db: Db,
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Directory {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    // ----- tenants -------------------------------------------------------------

    /// Creates a tenant, or updates its name and settings if its id exists.
    pub async fn upsert_tenant(&self, tenant: &TenantRecord) -> Result<(), DirectoryError> {
        let sql =
            "INSERT INTO tenants (id, slug, name, industry, is_franchise, settings, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)
                   ON CONFLICT (id) DO UPDATE SET slug = excluded.slug, name = excluded.name,
                       industry = excluded.industry, is_franchise = excluded.is_franchise,
                       settings = excluded.settings";
        on_db!(&self.db, write pool => sqlx::query(sql)
            .bind(tenant.id.as_uuid())
            .bind(&tenant.slug)
            .bind(&tenant.name)
            .bind(&tenant.industry)
            .bind(tenant.is_franchise)
            .bind(tenant.settings.to_string())
            .bind(now_ms())
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(db_err("upsert tenant"))?);
        Ok(())
    }

    pub async fn tenants(&self) -> Result<Vec<TenantRecord>, DirectoryError> {
        let sql =
            "SELECT id, slug, name, industry, is_franchise, settings FROM tenants ORDER BY slug";
        let rows: Vec<records::TenantRow> = on_db!(&self.db, read pool => sqlx::query_as(sql)
            .fetch_all(pool)
            .await
            .map_err(db_err("list tenants"))?);
        rows.into_iter().map(TenantRecord::try_from).collect()
    }

    pub async fn tenant(&self, id: ClientId) -> Result<TenantRecord, DirectoryError> {
        let sql =
            "SELECT id, slug, name, industry, is_franchise, settings FROM tenants WHERE id = $1";
        let row: Option<records::TenantRow> = on_db!(&self.db, read pool => sqlx::query_as(sql)
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await
            .map_err(db_err("read tenant"))?);
        row.ok_or_else(|| DirectoryError::NotFound(format!("tenant {id}")))?
            .try_into()
    }

    // ----- locations -----------------------------------------------------------

    pub async fn upsert_location(&self, location: &LocationRecord) -> Result<(), DirectoryError> {
        let sql = "INSERT INTO locations (id, tenant, name, timezone, address, is_corporate,
                       storage_type, customer_care, trucks, contact)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                   ON CONFLICT (id) DO UPDATE SET name = excluded.name, timezone = excluded.timezone,
                       address = excluded.address, is_corporate = excluded.is_corporate,
                       storage_type = excluded.storage_type, customer_care = excluded.customer_care,
                       trucks = excluded.trucks, contact = excluded.contact";
        on_db!(&self.db, write pool => sqlx::query(sql)
            .bind(location.id.as_uuid())
            .bind(tenant_key(location.tenant))
            .bind(&location.name)
            .bind(&location.timezone)
            .bind(&location.address)
            .bind(location.is_corporate)
            .bind(location.storage_type.as_ref())
            .bind(location.customer_care)
            .bind(i32::try_from(location.trucks).unwrap_or(i32::MAX))
            .bind(&location.contact)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(db_err("upsert location"))?);
        Ok(())
    }

    pub async fn locations(&self, tenant: ClientId) -> Result<Vec<LocationRecord>, DirectoryError> {
        let sql = "SELECT id, tenant, name, timezone, address, is_corporate, storage_type,
                          customer_care, trucks, contact
                   FROM locations WHERE tenant = $1 ORDER BY name";
        let rows: Vec<records::LocationRow> = on_db!(&self.db, read pool => sqlx::query_as(sql)
            .bind(tenant_key(tenant))
            .fetch_all(pool)
            .await
            .map_err(db_err("list locations"))?);
        rows.into_iter().map(LocationRecord::try_from).collect()
    }

    /// One of the tenant's locations; another tenant's id is "not found".
    pub async fn location(
        &self,
        tenant: ClientId,
        id: LocationId,
    ) -> Result<LocationRecord, DirectoryError> {
        let sql = "SELECT id, tenant, name, timezone, address, is_corporate, storage_type,
                          customer_care, trucks, contact
                   FROM locations WHERE tenant = $1 AND id = $2";
        let row: Option<records::LocationRow> = on_db!(&self.db, read pool => sqlx::query_as(sql)
            .bind(tenant_key(tenant))
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await
            .map_err(db_err("read location"))?);
        row.ok_or_else(|| DirectoryError::NotFound(format!("location {id}")))?
            .try_into()
    }

    // ----- users ---------------------------------------------------------------

    /// Creates a user, or updates everything but the password if the id exists
    /// (a `None` password hash leaves the stored one).
    pub async fn upsert_user(&self, user: &UserRecord) -> Result<(), DirectoryError> {
        let sql = "INSERT INTO users (id, tenant, location_id, name, email, role, status,
                       password_hash, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                   ON CONFLICT (id) DO UPDATE SET location_id = excluded.location_id,
                       name = excluded.name, email = excluded.email, role = excluded.role,
                       status = excluded.status,
                       password_hash = COALESCE(excluded.password_hash, users.password_hash)";
        on_db!(&self.db, write pool => sqlx::query(sql)
            .bind(user.id.as_uuid())
            .bind(tenant_key(user.tenant))
            .bind(user.location_id.as_uuid())
            .bind(&user.name)
            .bind(user.email.to_lowercase())
            .bind(user.role.to_string())
            .bind(user.status.as_ref())
            .bind(&user.password_hash)
            .bind(now_ms())
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(db_err("upsert user"))?);
        Ok(())
    }

    pub async fn users(&self, tenant: ClientId) -> Result<Vec<UserRecord>, DirectoryError> {
        let sql = "SELECT id, tenant, location_id, name, email, role, status, password_hash
                   FROM users WHERE tenant = $1 ORDER BY email";
        let rows: Vec<records::UserRow> = on_db!(&self.db, read pool => sqlx::query_as(sql)
            .bind(tenant_key(tenant))
            .fetch_all(pool)
            .await
            .map_err(db_err("list users"))?);
        rows.into_iter().map(UserRecord::try_from).collect()
    }

    /// One of the tenant's users; another tenant's id is "not found".
    pub async fn user(&self, tenant: ClientId, id: UserId) -> Result<UserRecord, DirectoryError> {
        let sql = "SELECT id, tenant, location_id, name, email, role, status, password_hash
                   FROM users WHERE tenant = $1 AND id = $2";
        let row: Option<records::UserRow> = on_db!(&self.db, read pool => sqlx::query_as(sql)
            .bind(tenant_key(tenant))
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await
            .map_err(db_err("read user"))?);
        row.ok_or_else(|| DirectoryError::NotFound(format!("user {id}")))?
            .try_into()
    }

    /// The user signing in with `email` (any tenant: emails are unique).
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, DirectoryError> {
        let sql = "SELECT id, tenant, location_id, name, email, role, status, password_hash
                   FROM users WHERE email = $1";
        let row: Option<records::UserRow> = on_db!(&self.db, read pool => sqlx::query_as(sql)
            .bind(email.trim().to_lowercase())
            .fetch_optional(pool)
            .await
            .map_err(db_err("find user"))?);
        row.map(UserRecord::try_from).transpose()
    }

    pub async fn set_user_status(
        &self,
        tenant: ClientId,
        id: UserId,
        status: UserStatus,
    ) -> Result<(), DirectoryError> {
        let sql = "UPDATE users SET status = $3 WHERE tenant = $1 AND id = $2";
        let done = on_db!(&self.db, write pool => sqlx::query(sql)
            .bind(tenant_key(tenant))
            .bind(id.as_uuid())
            .bind(status.as_ref())
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(db_err("set user status"))?);
        if done == 0 {
            return Err(DirectoryError::NotFound(format!("user {id}")));
        }
        Ok(())
    }

    // ----- role permissions ----------------------------------------------------

    /// Replaces rows of the tenant's table (rows not given stay).
    pub async fn set_permissions(
        &self,
        tenant: ClientId,
        rows: &[RolePermission],
    ) -> Result<(), DirectoryError> {
        let sql =
            "INSERT INTO role_permissions (tenant, role, step, can_view, can_edit, can_approve)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (tenant, role, step) DO UPDATE SET can_view = excluded.can_view,
                       can_edit = excluded.can_edit, can_approve = excluded.can_approve";
        for row in rows {
            on_db!(&self.db, write pool => sqlx::query(sql)
                .bind(tenant_key(tenant))
                .bind(row.role.to_string())
                .bind(i32::from(row.step.get()))
                .bind(row.can_view)
                .bind(row.can_edit)
                .bind(row.can_approve)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
                .map_err(db_err("set permission"))?);
        }
        Ok(())
    }

    /// The tenant's table; a tenant that never set one has the defaults.
    pub async fn permissions(&self, tenant: ClientId) -> Result<PermissionTable, DirectoryError> {
        let sql = "SELECT role, step, can_view, can_edit, can_approve
                   FROM role_permissions WHERE tenant = $1";
        let rows: Vec<(String, i32, bool, bool, bool)> = on_db!(&self.db, read pool => sqlx::query_as(sql)
                .bind(tenant_key(tenant))
                .fetch_all(pool)
                .await
                .map_err(db_err("read permissions"))?);
        if rows.is_empty() {
            return Ok(PermissionTable::defaults());
        }
        let rows = rows
            .into_iter()
            .map(|(role, step, can_view, can_edit, can_approve)| {
                Ok(RolePermission {
                    role: Role::from_str(&role)
                        .map_err(|_| DirectoryError::Corrupt(format!("role {role:?}")))?,
                    step: u8::try_from(step)
                        .ok()
                        .and_then(|n| StepNumber::new(n).ok())
                        .ok_or_else(|| DirectoryError::Corrupt(format!("step {step}")))?,
                    can_view,
                    can_edit,
                    can_approve,
                })
            })
            .collect::<Result<Vec<_>, DirectoryError>>()?;
        Ok(PermissionTable::from_rows(rows))
    }

    // ----- move sources --------------------------------------------------------

    pub async fn upsert_move_source(
        &self,
        source: &MoveSourceRecord,
    ) -> Result<(), DirectoryError> {
        let sql = "INSERT INTO move_sources (id, tenant, name, description, is_active)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                       description = excluded.description, is_active = excluded.is_active";
        on_db!(&self.db, write pool => sqlx::query(sql)
            .bind(source.id.as_uuid())
            .bind(tenant_key(source.tenant))
            .bind(&source.name)
            .bind(&source.description)
            .bind(source.is_active)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(db_err("upsert move source"))?);
        Ok(())
    }

    pub async fn move_sources(
        &self,
        tenant: ClientId,
    ) -> Result<Vec<MoveSourceRecord>, DirectoryError> {
        let sql = "SELECT id, tenant, name, description, is_active
                   FROM move_sources WHERE tenant = $1 ORDER BY name";
        let rows: Vec<(Uuid, String, String, Option<String>, bool)> = on_db!(&self.db, read pool => sqlx::query_as(sql)
                .bind(tenant_key(tenant))
                .fetch_all(pool)
                .await
                .map_err(db_err("list move sources"))?);
        rows.into_iter()
            .map(|(id, tenant, name, description, is_active)| {
                Ok(MoveSourceRecord {
                    id: MoveSourceId::from_uuid(id),
                    tenant: records::parse_tenant(&tenant)?,
                    name,
                    description,
                    is_active,
                })
            })
            .collect()
    }
}
