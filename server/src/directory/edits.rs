//! Changes an administrator makes (the admin API and the `user` server command).
//!
//! Unlike the seed's upserts, every statement here names the tenant in its `WHERE`
//! clause and creation is a plain `INSERT`: an id that exists (in any tenant) is a
//! conflict, never an update, so one tenant can never overwrite another's row.
//! Edits read the row and write it back in one write transaction (the row locked
//! on Postgres), so two concurrent edits of one row cannot lose either's change.

use crewsync_core::ids::{ClientId, LocationId, UserId};
use crewsync_core::policy::{PermissionTable, RolePermission};
// Every dynamic statement here is a constant with the lock suffix appended: no
// input reaches SQL text.
use sqlx::AssertSqlSafe;

use super::records::{LocationRow, TenantRow, UserRow};
use super::{
    Db, Directory, DirectoryError, LocationRecord, MoveSourceRecord, TenantRecord, UserRecord,
    db_err, in_write_tx, now_ms, on_db, tenant_key,
};

const USER_COLUMNS: &str = "id, tenant, location_id, name, email, role, status, password_hash";
const LOCATION_COLUMNS: &str = "id, tenant, name, timezone, address, is_corporate, storage_type, \
     customer_care, trucks, contact";
const TENANT_COLUMNS: &str = "id, slug, name, industry, is_franchise, settings";

/// A row before and after an edit.
#[derive(Debug, Clone, PartialEq)]
pub struct Edited<T> {
    pub before: T,
    pub after: T,
}

fn trucks(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Directory {
    /// The tenant whose slug is `slug` (operators name tenants by slug).
    pub async fn tenant_by_slug(&self, slug: &str) -> Result<TenantRecord, DirectoryError> {
        let sql =
            "SELECT id, slug, name, industry, is_franchise, settings FROM tenants WHERE slug = $1";
        let row: Option<TenantRow> = on_db!(&self.db, read pool => sqlx::query_as(sql)
            .bind(slug)
            .fetch_optional(pool)
            .await
            .map_err(db_err("read tenant"))?);
        row.ok_or_else(|| DirectoryError::NotFound(format!("tenant {slug:?}")))?
            .try_into()
    }

    /// Adds a user to its tenant; a taken email (in any tenant: sign-in finds users
    /// by email) or id is [`DirectoryError::Conflict`].
    pub async fn insert_user(&self, user: &UserRecord) -> Result<(), DirectoryError> {
        let sql = "INSERT INTO users (id, tenant, location_id, name, email, role, status,
                       password_hash, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
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
            .map(|_| ())
            .map_err(db_err("insert user"))?);
        Ok(())
    }

    /// Applies `edit` to one of the tenant's users (another tenant's id is "not
    /// found"). The id, tenant, email and password stay as they were.
    pub async fn edit_user<E>(
        &self,
        tenant: ClientId,
        id: UserId,
        edit: impl FnOnce(&mut UserRecord) -> Result<(), E>,
    ) -> Result<Edited<UserRecord>, E>
    where
        E: From<DirectoryError>,
    {
        in_write_tx!(&self.db, tx, lock => {
            let row: Option<UserRow> = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE tenant = $1 AND id = $2{lock}"
            )))
            .bind(tenant_key(tenant))
            .bind(id.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("read user"))?;
            let before = UserRecord::try_from(
                row.ok_or_else(|| DirectoryError::NotFound(format!("user {id}")))?,
            )?;
            let mut after = before.clone();
            edit(&mut after)?;
            // What the caller may not change, whatever `edit` did.
            after.id = before.id;
            after.tenant = before.tenant;
            after.email.clone_from(&before.email);
            after.password_hash.clone_from(&before.password_hash);
            sqlx::query(
                "UPDATE users SET location_id = $3, name = $4, role = $5, status = $6
                 WHERE tenant = $1 AND id = $2",
            )
            .bind(tenant_key(tenant))
            .bind(id.as_uuid())
            .bind(after.location_id.as_uuid())
            .bind(&after.name)
            .bind(after.role.to_string())
            .bind(after.status.as_ref())
            .execute(&mut *tx)
            .await
            .map_err(db_err("update user"))?;
            tx.commit().await.map_err(db_err("update user: commit"))?;
            Ok(Edited { before, after })
        })
    }

    /// Adds a location to its tenant; a taken name (in the tenant) or id is
    /// [`DirectoryError::Conflict`].
    pub async fn insert_location(&self, location: &LocationRecord) -> Result<(), DirectoryError> {
        let sql = "INSERT INTO locations (id, tenant, name, timezone, address, is_corporate,
                       storage_type, customer_care, trucks, contact)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        on_db!(&self.db, write pool => sqlx::query(sql)
            .bind(location.id.as_uuid())
            .bind(tenant_key(location.tenant))
            .bind(&location.name)
            .bind(&location.timezone)
            .bind(&location.address)
            .bind(location.is_corporate)
            .bind(location.storage_type.as_ref())
            .bind(location.customer_care)
            .bind(trucks(location.trucks))
            .bind(&location.contact)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(db_err("insert location"))?);
        Ok(())
    }

    /// Applies `edit` to one of the tenant's locations (another tenant's id is "not
    /// found"); its id and tenant stay.
    pub async fn edit_location<E>(
        &self,
        tenant: ClientId,
        id: LocationId,
        edit: impl FnOnce(&mut LocationRecord) -> Result<(), E>,
    ) -> Result<Edited<LocationRecord>, E>
    where
        E: From<DirectoryError>,
    {
        in_write_tx!(&self.db, tx, lock => {
            let row: Option<LocationRow> = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT {LOCATION_COLUMNS} FROM locations WHERE tenant = $1 AND id = $2{lock}"
            )))
            .bind(tenant_key(tenant))
            .bind(id.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("read location"))?;
            let before = LocationRecord::try_from(
                row.ok_or_else(|| DirectoryError::NotFound(format!("location {id}")))?,
            )?;
            let mut after = before.clone();
            edit(&mut after)?;
            after.id = before.id;
            after.tenant = before.tenant;
            sqlx::query(
                "UPDATE locations SET name = $3, timezone = $4, address = $5, is_corporate = $6,
                     storage_type = $7, customer_care = $8, trucks = $9, contact = $10
                 WHERE tenant = $1 AND id = $2",
            )
            .bind(tenant_key(tenant))
            .bind(id.as_uuid())
            .bind(&after.name)
            .bind(&after.timezone)
            .bind(&after.address)
            .bind(after.is_corporate)
            .bind(after.storage_type.as_ref())
            .bind(after.customer_care)
            .bind(trucks(after.trucks))
            .bind(&after.contact)
            .execute(&mut *tx)
            .await
            .map_err(db_err("update location"))?;
            tx.commit().await.map_err(db_err("update location: commit"))?;
            Ok(Edited { before, after })
        })
    }

    /// Replaces the tenant's whole permission table with `rows`, in one transaction.
    /// Returns the table it replaced.
    pub async fn replace_permissions(
        &self,
        tenant: ClientId,
        rows: &[RolePermission],
    ) -> Result<PermissionTable, DirectoryError> {
        let before = self.permissions(tenant).await?;
        in_write_tx!(&self.db, tx, _lock => {
            sqlx::query("DELETE FROM role_permissions WHERE tenant = $1")
                .bind(tenant_key(tenant))
                .execute(&mut *tx)
                .await
                .map_err(db_err("clear permissions"))?;
            for row in rows {
                sqlx::query(
                    "INSERT INTO role_permissions (tenant, role, step, can_view, can_edit, can_approve)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(tenant_key(tenant))
                .bind(row.role.to_string())
                .bind(i32::from(row.step.get()))
                .bind(row.can_view)
                .bind(row.can_edit)
                .bind(row.can_approve)
                .execute(&mut *tx)
                .await
                .map_err(db_err("insert permission"))?;
            }
            tx.commit().await.map_err(db_err("replace permissions: commit"))?;
        });
        Ok(before)
    }

    /// Adds a move source to its tenant; a taken name (in the tenant) or id is
    /// [`DirectoryError::Conflict`].
    pub async fn insert_move_source(
        &self,
        source: &MoveSourceRecord,
    ) -> Result<(), DirectoryError> {
        let sql = "INSERT INTO move_sources (id, tenant, name, description, is_active)
                   VALUES ($1, $2, $3, $4, $5)";
        on_db!(&self.db, write pool => sqlx::query(sql)
            .bind(source.id.as_uuid())
            .bind(tenant_key(source.tenant))
            .bind(&source.name)
            .bind(&source.description)
            .bind(source.is_active)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(db_err("insert move source"))?);
        Ok(())
    }

    /// Applies `edit` to the tenant's own record; its id and slug stay.
    pub async fn edit_tenant<E>(
        &self,
        tenant: ClientId,
        edit: impl FnOnce(&mut TenantRecord) -> Result<(), E>,
    ) -> Result<Edited<TenantRecord>, E>
    where
        E: From<DirectoryError>,
    {
        in_write_tx!(&self.db, tx, lock => {
            let row: Option<TenantRow> = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1{lock}"
            )))
            .bind(tenant.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("read tenant"))?;
            let before = TenantRecord::try_from(
                row.ok_or_else(|| DirectoryError::NotFound(format!("tenant {tenant}")))?,
            )?;
            let mut after = before.clone();
            edit(&mut after)?;
            after.id = before.id;
            after.slug.clone_from(&before.slug);
            sqlx::query(
                "UPDATE tenants SET name = $2, industry = $3, is_franchise = $4, settings = $5
                 WHERE id = $1",
            )
            .bind(tenant.as_uuid())
            .bind(&after.name)
            .bind(&after.industry)
            .bind(after.is_franchise)
            .bind(after.settings.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err("update tenant"))?;
            tx.commit().await.map_err(db_err("update tenant: commit"))?;
            Ok(Edited { before, after })
        })
    }
}
