//! The zero-setup backend: the change log in one SQLite file.
//!
//! WAL with `synchronous=FULL`, so a returned append survives a crash and a power
//! cut. Writes go through a pool of exactly ONE connection and start with
//! `BEGIN IMMEDIATE`: appends are serialized inside the process without ever
//! meeting `SQLITE_BUSY`, and a second process on the same file waits (busy
//! timeout) for the write lock before reading the head, never after. Because
//! the head is read and advanced inside that write transaction, sequence numbers
//! are handed out in commit order. Reads use a separate pool: WAL readers see the
//! last committed state and never block the writer. The audit chain's entries and
//! head are written in the same write transactions, so they are serialized the
//! same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use crewsync_core::audit::{AuditEntry, AuditRecord, ChainHead, Digest};
use crewsync_core::ids::JourneyId;
use sqlx::SqliteConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{Appended, JourneyRecord, NewChange, Storage, StorageError, StoredChange};
use crate::audit::Sealer;

/// The database file created in a data dir when no URL is given.
pub const DEFAULT_FILE_NAME: &str = "crewsync.sqlite3";

/// Reader connections (each has its own worker thread in sqlx): enough for a
/// 2-core machine; WAL readers do not block each other or the writer.
const READ_CONNECTIONS: u32 = 4;

/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request waits for a free connection (the writer is shared by all
/// appends of the process) before failing with 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations_sqlite");

/// The change log in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    path: PathBuf,
    /// Exactly one connection: every write transaction goes through it.
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStorage {
    /// Opens (creating if missing) the database file at `path` and brings the
    /// schema up to date. The parent directory must exist.
    pub async fn open(path: &Path) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let open_err = |pool: &'static str| {
            move |e: sqlx::Error| {
                StorageError::Database(format!("sqlite open {} ({pool}): {e}", path.display()))
            }
        };
        let writer = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // The connection is in-process: a ping per acquire would only add a
            // round trip to its worker thread.
            .test_before_acquire(false)
            // Never close the writer for idleness: reopening costs a WAL recovery check.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(open_err("writer"))?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StorageError::Migration(format!("sqlite {}: {e}", path.display())))?;
        let readers = SqlitePoolOptions::new()
            .min_connections(0)
            .max_connections(READ_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(open_err("readers"))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer,
            readers,
        })
    }

    /// Opens `sqlite://PATH` (or `sqlite:PATH`). In-memory databases and URL
    /// parameters are refused: the store must be a durable file, and its settings
    /// (WAL, `synchronous=FULL`) are not negotiable.
    pub async fn open_url(url: &str) -> Result<Self, StorageError> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| StorageError::Database(format!("sqlite: not an sqlite URL: {url}")))?;
        if path.contains('?') {
            return Err(StorageError::Database(format!(
                "sqlite: URL parameters are not supported (the store sets its own): {url}"
            )));
        }
        if path.is_empty() || path == ":memory:" {
            return Err(StorageError::Database(format!(
                "sqlite: the URL must name a database file, not an in-memory database: {url}"
            )));
        }
        Self::open(Path::new(path)).await
    }

    /// The same database for the directory and the rest of the relational state.
    pub fn db(&self) -> crate::directory::Db {
        crate::directory::Db::Sqlite {
            writer: self.writer.clone(),
            readers: self.readers.clone(),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection (checkpointing the WAL when the last one closes).
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }

    fn err(&self, operation: &'static str) -> impl FnOnce(sqlx::Error) -> StorageError + '_ {
        move |e| {
            StorageError::Database(format!("sqlite {operation} ({}): {e}", self.path.display()))
        }
    }

    /// The tenant's log head and audit chain head, read inside a write transaction
    /// (which holds the database's write lock).
    async fn heads(
        &self,
        tx: &mut SqliteConnection,
        tenant: &str,
    ) -> Result<(i64, Option<ChainHead>), StorageError> {
        let row: Option<(i64, i64, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT head, audit_seq, audit_hash FROM log_heads WHERE tenant = ?1")
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.err("read heads"))?;
        match row {
            None => Ok((0, None)),
            Some((head, seq, hash)) => Ok((head, crate::audit::stored_head("sqlite", seq, hash)?)),
        }
    }

    /// Seals `records` after `audit_head`, inserts them and stores both heads,
    /// inside the caller's write transaction.
    async fn write_audit(
        &self,
        tx: &mut SqliteConnection,
        tenant: &str,
        log_head: i64,
        audit_head: Option<ChainHead>,
        records: Vec<AuditRecord>,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        let mut sealer = Sealer::new(tenant, audit_head);
        for (entity, id) in Sealer::entities_of(&records) {
            let latest: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT hash FROM audit_log WHERE tenant = ?1 AND entity = ?2 AND entity_id = ?3
                 ORDER BY seq DESC LIMIT 1",
            )
            .bind(tenant)
            .bind(&entity)
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.err("audit: latest entry of an entity"))?;
            if let Some(hash) = latest.as_deref().and_then(Digest::from_slice) {
                sealer.know((entity, id), hash);
            }
        }
        let entries: Vec<AuditEntry> = records.into_iter().map(|r| sealer.seal(r)).collect();
        for entry in &entries {
            sqlx::query(
                "INSERT INTO audit_log (tenant, seq, location_id, user_id, device_id, action, entity,
                     entity_id, diff, server_time, device_time, prev_hash, entity_prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .bind(&entry.tenant)
            .bind(super::to_db_seq(entry.seq))
            .bind(entry.location.map(|id| id.as_uuid()))
            .bind(entry.user.map(|id| id.as_uuid()))
            .bind(entry.device.map(|id| id.as_uuid()))
            .bind(&entry.action)
            .bind(&entry.entity)
            .bind(&entry.entity_id)
            .bind(crate::audit::diff_text(entry))
            .bind(entry.server_time)
            .bind(entry.device_time)
            .bind(entry.prev_hash.as_bytes().as_slice())
            .bind(entry.entity_prev_hash.as_bytes().as_slice())
            .bind(entry.hash.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(self.err("audit: insert"))?;
        }
        let head = sealer.head();
        sqlx::query(
            "INSERT INTO log_heads (tenant, head, audit_seq, audit_hash) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant) DO UPDATE SET head = excluded.head,
                 audit_seq = excluded.audit_seq, audit_hash = excluded.audit_hash",
        )
        .bind(tenant)
        .bind(log_head)
        .bind(head.map_or(0, |h| super::to_db_seq(h.seq)))
        .bind(head.map(|h| h.hash.as_bytes().to_vec()))
        .execute(&mut *tx)
        .await
        .map_err(self.err("update heads"))?;
        Ok(entries)
    }
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn append(&self, tenant: &str, changes: &[NewChange]) -> Result<Appended, StorageError> {
        if changes.is_empty() {
            return Ok(Appended {
                head: self.head(tenant).await?,
                new_changes: 0,
            });
        }
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.err("append: begin"))?;
        let (old_head, audit_head) = self.heads(&mut tx, tenant).await?;
        let mut head = old_head;
        let now = crate::audit::now_ms();
        let mut records = Vec::new();
        for change in changes {
            // In-process statements are cheap (no network round trip); the
            // prepared statement is cached by the connection.
            let inserted = sqlx::query(
                "INSERT INTO change_log (tenant, seq, journey_id, hash, actor, device_id, bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (tenant, hash) DO NOTHING",
            )
            .bind(tenant)
            .bind(head + 1)
            .bind(change.journey.as_uuid())
            .bind(change.hash.as_slice())
            .bind(change.actor.as_slice())
            .bind(change.device.as_uuid())
            .bind(change.bytes.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(self.err("append: insert"))?;
            if inserted.rows_affected() == 1 {
                head += 1;
                records.push(change.audit_record(now));
            }
        }
        if !records.is_empty() {
            self.write_audit(&mut tx, tenant, head, audit_head, records)
                .await?;
        }
        // Durable on return: WAL with synchronous=FULL syncs the WAL at COMMIT.
        tx.commit().await.map_err(self.err("append: commit"))?;
        Ok(Appended {
            head: super::from_db_seq("sqlite", "append", head)?,
            new_changes: super::from_db_seq("sqlite", "append", head - old_head)?,
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
             WHERE tenant = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .bind(tenant)
        .bind(super::to_db_seq(cursor))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(self.err("changes_since"))?;
        super::stored_changes("sqlite", rows)
    }

    async fn head(&self, tenant: &str) -> Result<u64, StorageError> {
        let head: Option<i64> = sqlx::query_scalar("SELECT head FROM log_heads WHERE tenant = ?1")
            .bind(tenant)
            .fetch_optional(&self.readers)
            .await
            .map_err(self.err("head"))?;
        super::from_db_seq("sqlite", "head", head.unwrap_or(0))
    }

    async fn journey(
        &self,
        tenant: &str,
        journey: JourneyId,
    ) -> Result<JourneyRecord, StorageError> {
        // One read transaction, so the snapshot and the unfolded changes come from
        // the same committed state: reading them separately could see the old
        // snapshot and then miss the changes a concurrent save_snapshot folded.
        let mut tx = self
            .readers
            .begin()
            .await
            .map_err(self.err("journey: begin"))?;
        let snapshot: Option<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT snapshot, generation FROM journey_snapshots WHERE tenant = ?1 AND journey_id = ?2",
        )
        .bind(tenant)
        .bind(journey.as_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(self.err("journey: read snapshot"))?;
        let changes: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT bytes FROM change_log
             WHERE tenant = ?1 AND journey_id = ?2 AND folded = 0
             ORDER BY seq",
        )
        .bind(tenant)
        .bind(journey.as_uuid())
        .fetch_all(&mut *tx)
        .await
        .map_err(self.err("journey: read changes"))?;
        tx.commit().await.map_err(self.err("journey: end"))?;
        let (snapshot, generation) = match snapshot {
            Some((snapshot, generation)) => (
                Some(snapshot),
                super::from_db_seq("sqlite", "journey", generation)?,
            ),
            None => (None, 0),
        };
        Ok(JourneyRecord {
            snapshot,
            generation,
            changes,
        })
    }

    async fn unfolded_count(&self, tenant: &str, journey: JourneyId) -> Result<u64, StorageError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM change_log WHERE tenant = ?1 AND journey_id = ?2 AND folded = 0",
        )
        .bind(tenant)
        .bind(journey.as_uuid())
        .fetch_one(&self.readers)
        .await
        .map_err(self.err("unfolded_count"))?;
        super::from_db_seq("sqlite", "unfolded_count", count)
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
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.err("save_snapshot: begin"))?;
        // The first snapshot inserts; later ones replace only the generation they
        // were built from (the write lock makes the check and the write one step).
        let saved = if base_generation == 0 {
            sqlx::query(
                "INSERT INTO journey_snapshots (tenant, journey_id, snapshot, generation)
                 VALUES (?1, ?2, ?3, 1) ON CONFLICT (tenant, journey_id) DO NOTHING",
            )
            .bind(tenant)
            .bind(journey.as_uuid())
            .bind(snapshot)
            .execute(&mut *tx)
            .await
        } else {
            sqlx::query(
                "UPDATE journey_snapshots
                 SET snapshot = ?3, generation = generation + 1,
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE tenant = ?1 AND journey_id = ?2 AND generation = ?4",
            )
            .bind(tenant)
            .bind(journey.as_uuid())
            .bind(snapshot)
            .bind(super::to_db_seq(base_generation))
            .execute(&mut *tx)
            .await
        }
        .map_err(self.err("save_snapshot: store snapshot"))?
        .rows_affected()
            == 1;
        if !saved {
            return Ok(false);
        }
        for hash in contains {
            // Only this journey's changes: a stray hash of another journey must
            // not hide that journey's change from its record.
            sqlx::query(
                "UPDATE change_log SET folded = 1
                 WHERE tenant = ?1 AND hash = ?2 AND journey_id = ?3 AND folded = 0",
            )
            .bind(tenant)
            .bind(hash.as_slice())
            .bind(journey.as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(self.err("save_snapshot: fold changes"))?;
        }
        tx.commit()
            .await
            .map_err(self.err("save_snapshot: commit"))?;
        Ok(true)
    }

    async fn quarantine(
        &self,
        tenant: &str,
        changes: &[super::Refused],
    ) -> Result<(), StorageError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.err("quarantine: begin"))?;
        let (log_head, audit_head) = self.heads(&mut tx, tenant).await?;
        let mut records = Vec::new();
        for refused in changes {
            let change = &refused.change;
            let inserted = sqlx::query(super::QUARANTINE_INSERT)
                .bind(tenant)
                .bind(change.hash.as_slice())
                .bind(change.journey.as_uuid())
                .bind(change.kind.as_ref())
                .bind(&change.reason)
                .bind(change.user.as_uuid())
                .bind(change.device.as_uuid())
                .bind(change.bytes.as_slice())
                .bind(change.received_at)
                .execute(&mut *tx)
                .await
                .map_err(self.err("quarantine: insert"))?;
            if inserted.rows_affected() == 1 {
                records.push(refused.audit_record());
            }
        }
        if !records.is_empty() {
            self.write_audit(&mut tx, tenant, log_head, audit_head, records)
                .await?;
        }
        tx.commit().await.map_err(self.err("quarantine: commit"))?;
        Ok(())
    }

    async fn quarantined(
        &self,
        tenant: &str,
        journey: Option<JourneyId>,
    ) -> Result<Vec<super::Quarantined>, StorageError> {
        super::quarantined_in(&self.db(), "sqlite", tenant, journey).await
    }

    async fn record_audit(
        &self,
        tenant: &str,
        records: &[AuditRecord],
    ) -> Result<Vec<AuditEntry>, StorageError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.err("record_audit: begin"))?;
        let (log_head, audit_head) = self.heads(&mut tx, tenant).await?;
        let entries = self
            .write_audit(&mut tx, tenant, log_head, audit_head, records.to_vec())
            .await?;
        tx.commit()
            .await
            .map_err(self.err("record_audit: commit"))?;
        Ok(entries)
    }

    async fn audit_since(
        &self,
        tenant: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        super::audit_since_in(&self.db(), "sqlite", tenant, after, limit).await
    }

    async fn audit_trail(
        &self,
        tenant: &str,
        entity: &str,
        entity_id: &str,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        super::audit_trail_in(&self.db(), "sqlite", tenant, entity, entity_id).await
    }

    async fn audit_head(&self, tenant: &str) -> Result<Option<ChainHead>, StorageError> {
        super::audit_head_in(&self.db(), "sqlite", tenant).await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map_err(self.err("ping"))?;
        Ok(())
    }
}
