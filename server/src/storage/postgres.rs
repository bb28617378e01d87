//! The production backend: the change log in Postgres.
//!
//! Schema: `migrations/` at the workspace root (run at connect). Appends of one
//! tenant are serialized by locking the tenant's `log_heads` row for the whole
//! transaction: the next append can only read the head, and so number its changes,
//! once the previous append has committed. Sequence numbers are therefore handed
//! out in commit order, and a reader that has seen `seq = n` has seen every change
//! with a smaller number that will ever exist.

use std::time::Duration;

use async_trait::async_trait;
use crewsync_core::ids::JourneyId;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::types::Uuid;

use super::{Appended, JourneyRecord, NewChange, Storage, StorageError, StoredChange};

/// Connections per server process. The server shares a 2-core machine class with
/// Postgres; appends of one tenant serialize on a row lock anyway, so more
/// connections would mostly queue inside Postgres instead of in the pool.
const MAX_CONNECTIONS: u32 = 8;

/// How long a request waits for a free connection before failing with 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Numbers and inserts a batch in one statement, under the tenant's head lock:
/// drops changes already in the log and duplicates within the batch (the first
/// occurrence wins), numbers the rest `head + 1 ..` in batch order, and moves
/// the head to the last number used (not at all when nothing was new). Returns
/// how many rows it inserted and the moved head (NULL when it did not move).
///
/// The statement runs after the lock was taken, so its snapshot sees every
/// committed append of the tenant; `ON CONFLICT` is only a safety net.
const APPEND_SQL: &str = "
WITH input AS (
    SELECT *
    FROM UNNEST($3::uuid[], $4::bytea[], $5::bytea[], $6::uuid[], $7::bytea[])
        WITH ORDINALITY AS t(journey_id, hash, actor, device_id, bytes, ord)
),
fresh AS (
    SELECT DISTINCT ON (i.hash) i.*
    FROM input i
    WHERE NOT EXISTS (SELECT 1 FROM change_log c WHERE c.tenant = $1 AND c.hash = i.hash)
    ORDER BY i.hash, i.ord
),
numbered AS (
    SELECT f.*, row_number() OVER (ORDER BY f.ord) AS rn FROM fresh f
),
inserted AS (
    INSERT INTO change_log (tenant, seq, journey_id, hash, actor, device_id, bytes)
    SELECT $1, $2::bigint + n.rn, n.journey_id, n.hash, n.actor, n.device_id, n.bytes
    FROM numbered n
    ORDER BY n.rn
    ON CONFLICT (tenant, hash) DO NOTHING
    RETURNING seq
),
moved AS (
    UPDATE log_heads SET head = (SELECT max(seq) FROM inserted)
    WHERE tenant = $1 AND EXISTS (SELECT 1 FROM inserted)
    RETURNING head
)
SELECT (SELECT count(*) FROM inserted), (SELECT head FROM moved)";

/// The snapshot and the unfolded changes in ONE statement, i.e. from one MVCC
/// snapshot: two statements could see the old snapshot and then miss the changes
/// a concurrent `save_snapshot` folded into the new one.
const JOURNEY_SQL: &str = "
SELECT
    (SELECT snapshot FROM journey_snapshots WHERE tenant = $1 AND journey_id = $2),
    (SELECT generation FROM journey_snapshots WHERE tenant = $1 AND journey_id = $2),
    ARRAY(
        SELECT bytes FROM change_log
        WHERE tenant = $1 AND journey_id = $2 AND NOT folded
        ORDER BY seq
    )";

/// The change log in Postgres.
#[derive(Debug, Clone)]
pub struct PostgresStorage {
    pool: PgPool,
}

impl PostgresStorage {
    /// Connects to `url` (`postgres://…`) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        // The URL may carry a password: never echo it in an error.
        let options: PgConnectOptions = url.parse().map_err(|e| {
            StorageError::Database(format!("postgres: invalid connection URL: {e}"))
        })?;
        let options = options
            .application_name("crewsync-server")
            // Appends hold their tenant's head lock until COMMIT: if this process
            // stalls mid-transaction, Postgres ends it instead of blocking the
            // tenant's appends from every other server for good.
            .options([("idle_in_transaction_session_timeout", "30s")]);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(err("connect"))?;
        Self::from_pool(pool).await
    }

    /// Uses an existing pool and brings the schema up to date. Refuses a database
    /// where `synchronous_commit` is off (appends would not be durable on return).
    pub async fn from_pool(pool: PgPool) -> Result<Self, StorageError> {
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StorageError::Migration(format!("postgres: {e}")))?;
        // "Durable when append returns" relies on COMMIT waiting for the WAL
        // flush. Every setting but `off` does (local, on, remote_write, remote_apply).
        let synchronous_commit: String =
            sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
                .fetch_one(&pool)
                .await
                .map_err(err("connect: read synchronous_commit"))?;
        if synchronous_commit == "off" {
            return Err(StorageError::Database(
                "postgres connect: synchronous_commit is off for this database or role, so a crash \
                 could lose appends the server already acknowledged; set it to on \
                 (e.g. ALTER DATABASE … RESET synchronous_commit)"
                    .to_owned(),
            ));
        }
        Ok(Self { pool })
    }

    /// The underlying pool (for tests and diagnostics).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The same database for the directory and the rest of the relational state.
    pub fn db(&self) -> crate::directory::Db {
        crate::directory::Db::Postgres(self.pool.clone())
    }

    /// Closes every connection, waiting for the ones in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Maps a driver error to a [`StorageError`] naming the backend and the operation.
fn err(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StorageError {
    move |e| StorageError::Database(format!("postgres {operation}: {e}"))
}

#[async_trait]
impl Storage for PostgresStorage {
    async fn append(&self, tenant: &str, changes: &[NewChange]) -> Result<Appended, StorageError> {
        if changes.is_empty() {
            return Ok(Appended {
                head: self.head(tenant).await?,
                new_changes: 0,
            });
        }
        let journeys: Vec<Uuid> = changes.iter().map(|c| c.journey.as_uuid()).collect();
        let hashes: Vec<&[u8]> = changes.iter().map(|c| c.hash.as_slice()).collect();
        let actors: Vec<&[u8]> = changes.iter().map(|c| c.actor.as_slice()).collect();
        let devices: Vec<Uuid> = changes.iter().map(|c| c.device.as_uuid()).collect();
        let bytes: Vec<&[u8]> = changes.iter().map(|c| c.bytes.as_slice()).collect();

        let mut tx = self.pool.begin().await.map_err(err("append: begin"))?;
        // Lock the tenant's head row until COMMIT. The row is created on the
        // tenant's first append; a concurrent first append waits on the INSERT
        // and then finds the row.
        let lock = "SELECT head FROM log_heads WHERE tenant = $1 FOR UPDATE";
        let mut head: Option<i64> = sqlx::query_scalar(lock)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err("append: lock head"))?;
        if head.is_none() {
            sqlx::query("INSERT INTO log_heads (tenant, head) VALUES ($1, 0) ON CONFLICT (tenant) DO NOTHING")
                .bind(tenant)
                .execute(&mut *tx)
                .await
                .map_err(err("append: create head"))?;
            head = sqlx::query_scalar(lock)
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await
                .map_err(err("append: lock head"))?;
        }
        let head = head.ok_or_else(|| {
            StorageError::Database("postgres append: tenant head row missing".to_owned())
        })?;

        let (inserted, moved): (i64, Option<i64>) = sqlx::query_as(APPEND_SQL)
            .bind(tenant)
            .bind(head)
            .bind(journeys)
            .bind(hashes)
            .bind(actors)
            .bind(devices)
            .bind(bytes)
            .fetch_one(&mut *tx)
            .await
            .map_err(err("append: insert"))?;
        // Durable on return: synchronous_commit is left at its default (on).
        tx.commit().await.map_err(err("append: commit"))?;
        Ok(Appended {
            head: super::from_db_seq("postgres", "append", moved.unwrap_or(head))?,
            new_changes: u64::try_from(inserted).unwrap_or(0),
        })
    }

    async fn changes_since(
        &self,
        tenant: &str,
        cursor: u64,
        limit: u32,
    ) -> Result<Vec<StoredChange>, StorageError> {
        let rows: Vec<super::LogRow> = sqlx::query_as(
            "SELECT seq, journey_id, hash, actor, bytes FROM change_log
             WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(tenant)
        .bind(super::to_db_seq(cursor))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err("changes_since"))?;
        super::stored_changes("postgres", rows)
    }

    async fn head(&self, tenant: &str) -> Result<u64, StorageError> {
        let head: Option<i64> = sqlx::query_scalar("SELECT head FROM log_heads WHERE tenant = $1")
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await
            .map_err(err("head"))?;
        super::from_db_seq("postgres", "head", head.unwrap_or(0))
    }

    async fn journey(
        &self,
        tenant: &str,
        journey: JourneyId,
    ) -> Result<JourneyRecord, StorageError> {
        let (snapshot, generation, changes): (Option<Vec<u8>>, Option<i64>, Vec<Vec<u8>>) =
            sqlx::query_as(JOURNEY_SQL)
                .bind(tenant)
                .bind(journey.as_uuid())
                .fetch_one(&self.pool)
                .await
                .map_err(err("journey"))?;
        Ok(JourneyRecord {
            snapshot,
            generation: super::from_db_seq("postgres", "journey", generation.unwrap_or(0))?,
            changes,
        })
    }

    async fn unfolded_count(&self, tenant: &str, journey: JourneyId) -> Result<u64, StorageError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM change_log WHERE tenant = $1 AND journey_id = $2 AND NOT folded",
        )
        .bind(tenant)
        .bind(journey.as_uuid())
        .fetch_one(&self.pool)
        .await
        .map_err(err("unfolded_count"))?;
        super::from_db_seq("postgres", "unfolded_count", count)
    }

    async fn save_snapshot(
        &self,
        tenant: &str,
        journey: JourneyId,
        base_generation: u64,
        snapshot: &[u8],
        contains: &[Vec<u8>],
    ) -> Result<bool, StorageError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(err("save_snapshot: begin"))?;
        // The first snapshot inserts (a concurrent first one makes this a no-op);
        // later ones replace only the generation they were built from.
        let saved = if base_generation == 0 {
            sqlx::query(
                "INSERT INTO journey_snapshots (tenant, journey_id, snapshot, generation)
                 VALUES ($1, $2, $3, 1) ON CONFLICT (tenant, journey_id) DO NOTHING",
            )
            .bind(tenant)
            .bind(journey.as_uuid())
            .bind(snapshot)
            .execute(&mut *tx)
            .await
        } else {
            sqlx::query(
                "UPDATE journey_snapshots
                 SET snapshot = $3, generation = generation + 1, updated_at = now()
                 WHERE tenant = $1 AND journey_id = $2 AND generation = $4",
            )
            .bind(tenant)
            .bind(journey.as_uuid())
            .bind(snapshot)
            .bind(super::to_db_seq(base_generation))
            .execute(&mut *tx)
            .await
        }
        .map_err(err("save_snapshot: store snapshot"))?
        .rows_affected()
            == 1;
        if !saved {
            return Ok(false);
        }
        if !contains.is_empty() {
            // Only this journey's changes: a stray hash of another journey must
            // not hide that journey's change from its record.
            let hashes: Vec<&[u8]> = contains.iter().map(Vec::as_slice).collect();
            sqlx::query(
                "UPDATE change_log SET folded = true
                 WHERE tenant = $1 AND journey_id = $2 AND hash = ANY($3::bytea[]) AND NOT folded",
            )
            .bind(tenant)
            .bind(journey.as_uuid())
            .bind(hashes)
            .execute(&mut *tx)
            .await
            .map_err(err("save_snapshot: fold changes"))?;
        }
        tx.commit().await.map_err(err("save_snapshot: commit"))?;
        Ok(true)
    }

    async fn quarantine(
        &self,
        tenant: &str,
        changes: &[super::Quarantined],
    ) -> Result<(), StorageError> {
        super::quarantine_in(&self.db(), "postgres", tenant, changes).await
    }

    async fn quarantined(
        &self,
        tenant: &str,
        journey: Option<JourneyId>,
    ) -> Result<Vec<super::Quarantined>, StorageError> {
        super::quarantined_in(&self.db(), "postgres", tenant, journey).await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(err("ping"))?;
        Ok(())
    }
}
