//! The media tables (`migrations/0010_media.sql`), in portable SQL run on either
//! database through the directory's `on_db!` / `in_write_tx!`. Every statement
//! names the tenant, so another tenant's ids are simply not found, and on Postgres
//! runs in a transaction bound to that tenant, so row-level security (migration
//! 0011) is a second wall behind the filter.

use crewsync_core::ids::ClientId;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::MediaError;
use crate::directory::{Db, UserStatus, db_err, in_write_tx, on_db};

/// Upload states.
pub const OPEN: &str = "open";
pub const COMPLETE: &str = "complete";
pub const FAILED: &str = "failed";

const UPLOAD_COLUMNS: &str = "id, tenant, media_id, kind, journey_id, content_type, size, sha256, \
     upload_offset, status, user_id, device_id, created_at, updated_at";
const MEDIA_COLUMNS: &str = "tenant, media_id, kind, journey_id, content_type, sha256, size, \
     width, height, blob_key, thumb_key, thumb_size, user_id, device_id, created_at, deleted_at, \
     deleted_by, purged_at";

/// An upload as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UploadRow {
    pub id: Uuid,
    pub tenant: String,
    pub media_id: Uuid,
    pub kind: String,
    pub journey_id: Uuid,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub upload_offset: i64,
    pub status: String,
    pub user_id: Uuid,
    pub device_id: Uuid,
    pub created_at: i64,
    pub updated_at: i64,
}

impl UploadRow {
    pub fn offset(&self) -> u64 {
        u64::try_from(self.upload_offset).unwrap_or(0)
    }

    pub fn size(&self) -> u64 {
        u64::try_from(self.size).unwrap_or(0)
    }
}

/// A stored media item.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MediaRow {
    pub tenant: String,
    pub media_id: Uuid,
    pub kind: String,
    pub journey_id: Uuid,
    pub content_type: String,
    pub sha256: String,
    pub size: i64,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub blob_key: String,
    pub thumb_key: Option<String>,
    pub thumb_size: Option<i64>,
    pub user_id: Uuid,
    pub device_id: Uuid,
    pub created_at: i64,
    pub deleted_at: Option<i64>,
    pub deleted_by: Option<Uuid>,
    pub purged_at: Option<i64>,
}

fn err(operation: &'static str) -> impl FnOnce(sqlx::Error) -> MediaError {
    move |e| MediaError::from(db_err(operation)(e))
}

// ----- uploads ---------------------------------------------------------------

/// Inserts `row` unless the tenant already has an upload of that item; returns
/// the stored one either way.
pub async fn insert_upload(db: &Db, row: &UploadRow) -> Result<UploadRow, MediaError> {
    let sql = "INSERT INTO media_uploads (id, tenant, media_id, kind, journey_id, content_type,
                   size, sha256, upload_offset, status, user_id, device_id, created_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
               ON CONFLICT (tenant, media_id, kind) DO NOTHING";
    on_db!(db, tenant &row.tenant, write pool => sqlx::query(sql)
        .bind(row.id)
        .bind(&row.tenant)
        .bind(row.media_id)
        .bind(&row.kind)
        .bind(row.journey_id)
        .bind(&row.content_type)
        .bind(row.size)
        .bind(&row.sha256)
        .bind(row.upload_offset)
        .bind(&row.status)
        .bind(row.user_id)
        .bind(row.device_id)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
    .map_err(err("insert upload"))?;
    upload_of_item(db, &row.tenant, row.media_id, &row.kind)
        .await?
        .ok_or_else(|| MediaError::Database("the upload vanished after its insert".into()))
}

/// The tenant's upload of one item.
pub async fn upload_of_item(
    db: &Db,
    tenant: &str,
    media: Uuid,
    kind: &str,
) -> Result<Option<UploadRow>, MediaError> {
    let sql = format!(
        "SELECT {UPLOAD_COLUMNS} FROM media_uploads WHERE tenant = $1 AND media_id = $2 AND kind = $3"
    );
    on_db!(db, tenant tenant, write pool => sqlx::query_as(AssertSqlSafe(sql))
        .bind(tenant)
        .bind(media)
        .bind(kind)
        .fetch_optional(pool)
        .await)
    .map_err(err("read upload"))
}

/// One of the tenant's uploads (read on the writer: the offset must be current).
pub async fn upload(db: &Db, tenant: &str, id: Uuid) -> Result<Option<UploadRow>, MediaError> {
    let sql = format!("SELECT {UPLOAD_COLUMNS} FROM media_uploads WHERE tenant = $1 AND id = $2");
    on_db!(db, tenant tenant, write pool => sqlx::query_as(AssertSqlSafe(sql))
        .bind(tenant)
        .bind(id)
        .fetch_optional(pool)
        .await)
    .map_err(err("read upload"))
}

/// Moves an open upload's offset from `from` to `to`; `false` if it was not at
/// `from` any more (another writer won) or is not open.
pub async fn advance(
    db: &Db,
    tenant: &str,
    id: Uuid,
    from: u64,
    to: u64,
    now: i64,
) -> Result<bool, MediaError> {
    let sql = "UPDATE media_uploads SET upload_offset = $4, updated_at = $5
               WHERE tenant = $1 AND id = $2 AND upload_offset = $3 AND status = 'open'";
    let done = on_db!(db, tenant tenant, write pool => sqlx::query(sql)
        .bind(tenant)
        .bind(id)
        .bind(i64::try_from(from).unwrap_or(i64::MAX))
        .bind(i64::try_from(to).unwrap_or(i64::MAX))
        .bind(now)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
    .map_err(err("advance upload"))?;
    Ok(done == 1)
}

/// Marks an upload failed (its partial bytes are discarded by the caller).
pub async fn fail(db: &Db, tenant: &str, id: Uuid, now: i64) -> Result<(), MediaError> {
    let sql = "UPDATE media_uploads SET status = 'failed', upload_offset = 0, updated_at = $3
               WHERE tenant = $1 AND id = $2 AND status <> 'complete'";
    on_db!(db, tenant tenant, write pool => sqlx::query(sql)
        .bind(tenant)
        .bind(id)
        .bind(now)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
    .map_err(err("fail upload"))?;
    Ok(())
}

/// Opens a failed upload again from 0 with what the new request declares.
pub async fn reopen(db: &Db, row: &UploadRow) -> Result<(), MediaError> {
    let sql = "UPDATE media_uploads SET status = 'open', upload_offset = 0, content_type = $3,
                   size = $4, sha256 = $5, journey_id = $6, user_id = $7, device_id = $8,
                   updated_at = $9
               WHERE tenant = $1 AND id = $2 AND status = 'failed'";
    on_db!(db, tenant &row.tenant, write pool => sqlx::query(sql)
        .bind(&row.tenant)
        .bind(row.id)
        .bind(&row.content_type)
        .bind(row.size)
        .bind(&row.sha256)
        .bind(row.journey_id)
        .bind(row.user_id)
        .bind(row.device_id)
        .bind(row.updated_at)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
    .map_err(err("reopen upload"))?;
    Ok(())
}

/// Gives an open upload to another user and device (the item's writer now).
pub async fn hand_over(
    db: &Db,
    row: &UploadRow,
    user: Uuid,
    device: Uuid,
    now: i64,
) -> Result<(), MediaError> {
    let sql = "UPDATE media_uploads SET user_id = $3, device_id = $4, updated_at = $5
               WHERE tenant = $1 AND id = $2 AND status = 'open'";
    on_db!(db, tenant &row.tenant, write pool => sqlx::query(sql)
        .bind(&row.tenant)
        .bind(row.id)
        .bind(user)
        .bind(device)
        .bind(now)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
    .map_err(err("hand over upload"))?;
    Ok(())
}

/// Forgets one of the tenant's uploads that never completed (expired or discarded).
pub async fn delete_upload(db: &Db, tenant: &str, id: Uuid) -> Result<bool, MediaError> {
    let sql = "DELETE FROM media_uploads WHERE tenant = $1 AND id = $2 AND status <> 'complete'";
    let done = on_db!(db, tenant tenant, write pool => sqlx::query(sql)
        .bind(tenant)
        .bind(id)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
    .map_err(err("delete upload"))?;
    Ok(done == 1)
}

/// The tenant's unfinished uploads untouched since `before`, and those whose
/// uploader is no longer active (their partial bytes must not wait for the expiry).
pub async fn abandoned_uploads(
    db: &Db,
    tenant: &str,
    before: i64,
) -> Result<Vec<Uuid>, MediaError> {
    let sql = "SELECT m.id FROM media_uploads m LEFT JOIN users u ON u.id = m.user_id
               WHERE m.tenant = $1 AND m.status <> 'complete'
                 AND (m.updated_at < $2 OR u.id IS NULL OR u.status <> $3)";
    let rows: Vec<(Uuid,)> = on_db!(db, tenant tenant, read pool => sqlx::query_as(sql)
        .bind(tenant)
        .bind(before)
        .bind(UserStatus::Active.as_ref())
        .fetch_all(pool)
        .await)
    .map_err(err("list abandoned uploads"))?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Every tenant's key (the directory is not walled): work that spans tenants,
/// such as the expiry sweep, goes through them one at a time, each in its own
/// tenant-bound transactions.
pub async fn tenants(db: &Db) -> Result<Vec<String>, MediaError> {
    let rows: Vec<(Uuid,)> = on_db!(db, read pool => sqlx::query_as("SELECT id FROM tenants ORDER BY id")
        .fetch_all(pool)
        .await
        .map_err(err("list tenants"))?);
    Ok(rows
        .into_iter()
        .map(|(id,)| crate::directory::tenant_key(ClientId::from_uuid(id)))
        .collect())
}

// ----- media -----------------------------------------------------------------

/// Records a finished upload: the media row (unless one exists: completion is
/// idempotent) and the upload marked complete, in one transaction. Returns
/// whether the row is new.
pub async fn complete(db: &Db, upload: Uuid, row: &MediaRow) -> Result<bool, MediaError> {
    in_write_tx!(db, tenant &row.tenant, tx, _lock => {
        let sql = format!(
            "INSERT INTO media ({MEDIA_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
             ON CONFLICT (tenant, media_id, kind) DO NOTHING"
        );
        let inserted = sqlx::query(AssertSqlSafe(sql))
            .bind(&row.tenant)
            .bind(row.media_id)
            .bind(&row.kind)
            .bind(row.journey_id)
            .bind(&row.content_type)
            .bind(&row.sha256)
            .bind(row.size)
            .bind(row.width)
            .bind(row.height)
            .bind(&row.blob_key)
            .bind(&row.thumb_key)
            .bind(row.thumb_size)
            .bind(row.user_id)
            .bind(row.device_id)
            .bind(row.created_at)
            .bind(row.deleted_at)
            .bind(row.deleted_by)
            .bind(row.purged_at)
            .execute(&mut *tx)
            .await
            .map_err(err("insert media"))?
            .rows_affected();
        sqlx::query(
            "UPDATE media_uploads SET status = 'complete', upload_offset = size, updated_at = $3
             WHERE tenant = $1 AND id = $2",
        )
        .bind(&row.tenant)
        .bind(upload)
        .bind(row.created_at)
        .execute(&mut *tx)
        .await
        .map_err(err("complete upload"))?;
        tx.commit().await.map_err(err("complete upload: commit"))?;
        Ok(inserted == 1)
    })
}

/// One stored item of the tenant.
pub async fn media(
    db: &Db,
    tenant: &str,
    media: Uuid,
    kind: &str,
) -> Result<Option<MediaRow>, MediaError> {
    let sql = format!(
        "SELECT {MEDIA_COLUMNS} FROM media WHERE tenant = $1 AND media_id = $2 AND kind = $3"
    );
    on_db!(db, tenant tenant, read pool => sqlx::query_as(AssertSqlSafe(sql))
        .bind(tenant)
        .bind(media)
        .bind(kind)
        .fetch_optional(pool)
        .await)
    .map_err(err("read media"))
}

/// The original (photo, video or signature) a media id names.
pub async fn original(db: &Db, tenant: &str, media: Uuid) -> Result<Option<MediaRow>, MediaError> {
    let sql = format!(
        "SELECT {MEDIA_COLUMNS} FROM media
         WHERE tenant = $1 AND media_id = $2 AND kind IN ('photo', 'video', 'signature')"
    );
    on_db!(db, tenant tenant, read pool => sqlx::query_as(AssertSqlSafe(sql))
        .bind(tenant)
        .bind(media)
        .fetch_optional(pool)
        .await)
    .map_err(err("read media"))
}

/// Tombstones every row of a media id (original and device thumbnail); `false`
/// if it already was (or does not exist).
pub async fn tombstone(
    db: &Db,
    tenant: &str,
    media: Uuid,
    by: Uuid,
    now: i64,
) -> Result<bool, MediaError> {
    let sql = "UPDATE media SET deleted_at = $3, deleted_by = $4
               WHERE tenant = $1 AND media_id = $2 AND deleted_at IS NULL";
    let done = on_db!(db, tenant tenant, write pool => sqlx::query(sql)
        .bind(tenant)
        .bind(media)
        .bind(now)
        .bind(by)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
    .map_err(err("tombstone media"))?;
    Ok(done > 0)
}

/// Whether any unpurged row of the tenant still needs the blob `key`.
pub async fn blob_in_use(db: &Db, tenant: &str, key: &str) -> Result<bool, MediaError> {
    let sql = "SELECT COUNT(*) FROM media
               WHERE tenant = $1 AND ((blob_key = $2 AND purged_at IS NULL) OR thumb_key = $2)";
    let (n,): (i64,) = on_db!(db, tenant tenant, write pool => sqlx::query_as(sql)
        .bind(tenant)
        .bind(key)
        .fetch_one(pool)
        .await)
    .map_err(err("count blob users"))?;
    Ok(n > 0)
}

// ----- legal holds and purges ------------------------------------------------

/// Sets or lifts a journey's legal hold; returns the previous value.
pub async fn set_hold(
    db: &Db,
    tenant: &str,
    journey: Uuid,
    hold: bool,
    by: Uuid,
    now: i64,
) -> Result<bool, MediaError> {
    in_write_tx!(db, tenant tenant, tx, lock => {
        let before: Option<(bool,)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT hold FROM journey_holds WHERE tenant = $1 AND journey_id = $2{lock}"
        )))
        .bind(tenant)
        .bind(journey)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err("read hold"))?;
        sqlx::query(
            "INSERT INTO journey_holds (tenant, journey_id, hold, set_at, set_by)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant, journey_id) DO UPDATE SET hold = excluded.hold,
                 set_at = excluded.set_at, set_by = excluded.set_by",
        )
        .bind(tenant)
        .bind(journey)
        .bind(hold)
        .bind(now)
        .bind(by)
        .execute(&mut *tx)
        .await
        .map_err(err("set hold"))?;
        tx.commit().await.map_err(err("set hold: commit"))?;
        Ok(before.is_some_and(|(held,)| held))
    })
}

/// Whether a journey is on legal hold.
pub async fn held(db: &Db, tenant: &str, journey: Uuid) -> Result<bool, MediaError> {
    let sql = "SELECT hold FROM journey_holds WHERE tenant = $1 AND journey_id = $2";
    let row: Option<(bool,)> = on_db!(db, tenant tenant, read pool => sqlx::query_as(sql)
        .bind(tenant)
        .bind(journey)
        .fetch_optional(pool)
        .await)
    .map_err(err("read hold"))?;
    Ok(row.is_some_and(|(held,)| held))
}

/// Originals of the tenant stored before `before` and not purged yet.
pub async fn purge_candidates(
    db: &Db,
    tenant: &str,
    before: i64,
) -> Result<Vec<MediaRow>, MediaError> {
    let sql = format!(
        "SELECT {MEDIA_COLUMNS} FROM media
         WHERE tenant = $1 AND created_at < $2 AND purged_at IS NULL
           AND kind IN ('photo', 'video', 'signature')
         ORDER BY created_at"
    );
    on_db!(db, tenant tenant, read pool => sqlx::query_as(AssertSqlSafe(sql))
        .bind(tenant)
        .bind(before)
        .fetch_all(pool)
        .await)
    .map_err(err("list purge candidates"))
}

/// Marks an original purged unless its journey is on hold, deciding under the
/// hold row's lock (created if missing, so a concurrent hold cannot slip past);
/// `true` if marked.
pub async fn mark_purged(db: &Db, row: &MediaRow, now: i64) -> Result<bool, MediaError> {
    in_write_tx!(db, tenant &row.tenant, tx, lock => {
        sqlx::query(
            "INSERT INTO journey_holds (tenant, journey_id, hold, set_at, set_by)
             VALUES ($1, $2, FALSE, $3, NULL) ON CONFLICT (tenant, journey_id) DO NOTHING",
        )
        .bind(&row.tenant)
        .bind(row.journey_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(err("purge: hold row"))?;
        let (held,): (bool,) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT hold FROM journey_holds WHERE tenant = $1 AND journey_id = $2{lock}"
        )))
        .bind(&row.tenant)
        .bind(row.journey_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(err("purge: read hold"))?;
        if held {
            tx.rollback().await.map_err(err("purge: rollback"))?;
            return Ok(false);
        }
        let done = sqlx::query(
            "UPDATE media SET purged_at = $4
             WHERE tenant = $1 AND media_id = $2 AND kind = $3 AND purged_at IS NULL",
        )
        .bind(&row.tenant)
        .bind(row.media_id)
        .bind(&row.kind)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(err("purge: mark"))?
        .rows_affected();
        tx.commit().await.map_err(err("purge: commit"))?;
        Ok(done == 1)
    })
}

// ----- usage -----------------------------------------------------------------

/// Per kind: items, bytes stored (originals not purged), thumbnails' bytes.
pub async fn usage(db: &Db, tenant: &str) -> Result<Vec<(String, i64, i64, i64)>, MediaError> {
    // SUM of BIGINT is NUMERIC on Postgres: cast back so both drivers read i64.
    let sql = "SELECT kind, COUNT(*),
                      CAST(COALESCE(SUM(CASE WHEN purged_at IS NULL THEN size ELSE 0 END), 0) AS BIGINT),
                      CAST(COALESCE(SUM(COALESCE(thumb_size, 0)), 0) AS BIGINT)
               FROM media WHERE tenant = $1 GROUP BY kind ORDER BY kind";
    on_db!(db, tenant tenant, read pool => sqlx::query_as(sql)
        .bind(tenant)
        .fetch_all(pool)
        .await)
    .map_err(err("media usage"))
}

/// Unfinished uploads of the tenant and the bytes they hold so far.
pub async fn staged(db: &Db, tenant: &str) -> Result<(i64, i64), MediaError> {
    let sql = "SELECT COUNT(*), CAST(COALESCE(SUM(upload_offset), 0) AS BIGINT) FROM media_uploads
               WHERE tenant = $1 AND status = 'open'";
    on_db!(db, tenant tenant, read pool => sqlx::query_as(sql)
        .bind(tenant)
        .fetch_one(pool)
        .await)
    .map_err(err("staged uploads"))
}
