//! The production backend: the change log in Postgres.
//!
//! Schema: `migrations/` at the workspace root (run at connect). Appends of one
//! tenant are serialized by locking the tenant's `log_heads` row for the whole
//! transaction: the next append can only read the head, and so number its changes,
//! once the previous append has committed. Sequence numbers are therefore handed
//! out in commit order, and a reader that has seen `seq = n` has seen every change
//! with a smaller number that will ever exist.
//!
//! The audit chain rides on the same lock: its head is stored in the same row, and
//! entries (for appended changes, quarantined changes, admin actions) are sealed
//! and inserted only while the row is locked, in the transaction that writes what
//! they record. An append costs one lookup (which changes are new, the latest entry
//! of each journey) and one statement that inserts changes and entries in batches
//! and moves both heads.

use std::time::Duration;

use std::collections::HashSet;

use async_trait::async_trait;
use crewsync_core::audit::{AuditEntry, AuditRecord, ChainHead, Digest};
use crewsync_core::ids::JourneyId;
use sqlx::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::types::Uuid;

use super::{Appended, JourneyRecord, NewChange, Storage, StorageError, StoredChange};
use crate::audit::Sealer;

/// Connections per server process. The server shares a 2-core machine class with
/// Postgres; appends of one tenant serialize on a row lock anyway, so more
/// connections would mostly queue inside Postgres instead of in the pool.
const MAX_CONNECTIONS: u32 = 8;

/// How long a request waits for a free connection before failing with 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Under the tenant's head lock: which of the given change hashes the log already
/// holds, and the hash of the latest audit entry of each given entity (empty when
/// it has none), in the order given. It runs after the lock was taken, so its
/// snapshot sees every committed append of the tenant.
const LOOKUP_SQL: &str = "
SELECT
    ARRAY(SELECT hash FROM change_log WHERE tenant = $1 AND hash = ANY($2::bytea[])),
    ARRAY(
        SELECT COALESCE((
            SELECT a.hash FROM audit_log a
            WHERE a.tenant = $1 AND a.entity = k.entity AND a.entity_id = k.id
            ORDER BY a.seq DESC LIMIT 1
        ), ''::bytea)
        FROM UNNEST($3::text[], $4::text[]) WITH ORDINALITY AS k(entity, id, ord)
        ORDER BY k.ord
    )";

/// Inserts numbered changes and sealed audit entries, each in one batch, and moves
/// both heads: one statement, under the tenant's head lock.
const WRITE_SQL: &str = "
WITH changes AS (
    INSERT INTO change_log (tenant, seq, journey_id, hash, actor, device_id, bytes)
    SELECT $1, t.*
    FROM UNNEST($2::bigint[], $3::uuid[], $4::bytea[], $5::bytea[], $6::uuid[], $7::bytea[]) AS t
),
entries AS (
    INSERT INTO audit_log (tenant, seq, location_id, user_id, device_id, action, entity,
        entity_id, diff, server_time, device_time, prev_hash, entity_prev_hash, hash)
    SELECT $1, t.*
    FROM UNNEST($8::bigint[], $9::uuid[], $10::uuid[], $11::uuid[], $12::text[], $13::text[],
        $14::text[], $15::text[], $16::bigint[], $17::bigint[], $18::bytea[], $19::bytea[],
        $20::bytea[]) AS t
)
UPDATE log_heads SET head = $21, audit_seq = $22, audit_hash = $23 WHERE tenant = $1";

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
    #[cfg(feature = "testing")]
    forget_tenant_filter: bool,
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
        // Row-level security (migration 0009) is a second wall behind the
        // tenant filters; superusers and BYPASSRLS roles walk past it.
        let bypasses: bool = sqlx::query_scalar(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&pool)
        .await
        .map_err(err("connect: read role"))?;
        if bypasses {
            tracing::warn!(
                "the database role is a superuser or has BYPASSRLS, so row-level security \
                 does not apply to this server: connect as an ordinary role that owns the schema"
            );
        }
        Ok(Self {
            pool,
            #[cfg(feature = "testing")]
            forget_tenant_filter: false,
        })
    }

    /// Test-only fault: `changes_since` loses its `tenant = $1` filter, as a
    /// careless edit might, so a test can show row-level security still keeps
    /// other tenants' changes out.
    #[cfg(feature = "testing")]
    pub fn forgetting_tenant_filter(mut self) -> Self {
        self.forget_tenant_filter = true;
        self
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
impl PostgresStorage {
    /// A transaction bound to `tenant` (row-level security shows it only that
    /// tenant's rows). Reads end it by dropping it.
    async fn tenant_tx(
        &self,
        tenant: &str,
        operation: &'static str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StorageError> {
        crate::directory::tenant_tx(&self.pool, tenant)
            .await
            .map_err(err(operation))
    }
}

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
        let mut tx = self.tenant_tx(tenant, "append: begin").await?;
        let (head, audit_head) = lock_heads(&mut tx, tenant).await?;
        let entities = journey_entities(changes);
        let hashes: Vec<&[u8]> = changes.iter().map(|c| c.hash.as_slice()).collect();
        let (known, latest) = lookup(&mut tx, tenant, &hashes, &entities).await?;
        let known: HashSet<&[u8]> = known.iter().map(Vec::as_slice).collect();
        // New to the log, first occurrence in the batch wins.
        let mut seen = HashSet::new();
        let fresh: Vec<&NewChange> = changes
            .iter()
            .filter(|c| !known.contains(c.hash.as_slice()) && seen.insert(c.hash.as_slice()))
            .collect();
        if fresh.is_empty() {
            tx.commit().await.map_err(err("append: commit"))?;
            return Ok(Appended {
                head: super::from_db_seq("postgres", "append", head)?,
                new_changes: 0,
            });
        }
        let now = crate::audit::now_ms();
        let records = fresh.iter().map(|c| c.audit_record(now)).collect();
        let mut sealer = sealer(tenant, audit_head, entities, latest);
        let entries: Vec<AuditEntry> = seal_all(&mut sealer, records);
        let numbered: Vec<(i64, &NewChange)> = (head + 1..).zip(fresh.iter().copied()).collect();
        let new_head = head + numbered.len() as i64;
        write(
            &mut tx,
            tenant,
            &numbered,
            &entries,
            new_head,
            sealer.head(),
        )
        .await?;
        // Durable on return: synchronous_commit is left at its default (on).
        tx.commit().await.map_err(err("append: commit"))?;
        Ok(Appended {
            head: super::from_db_seq("postgres", "append", new_head)?,
            new_changes: numbered.len() as u64,
        })
    }

    async fn changes_since(
        &self,
        tenant: &str,
        cursor: u64,
        limit: u32,
    ) -> Result<Vec<StoredChange>, StorageError> {
        let sql = "SELECT seq, journey_id, hash, actor, bytes FROM change_log
                   WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3";
        #[cfg(feature = "testing")]
        let sql = if self.forget_tenant_filter {
            "SELECT seq, journey_id, hash, actor, bytes FROM change_log
             WHERE $1::text IS NOT NULL AND seq > $2 ORDER BY seq LIMIT $3"
        } else {
            sql
        };
        let rows: Vec<super::LogRow> = sqlx::query_as(sql)
            .bind(tenant)
            .bind(super::to_db_seq(cursor))
            .bind(i64::from(limit))
            .fetch_all(&mut *self.tenant_tx(tenant, "changes_since: begin").await?)
            .await
            .map_err(err("changes_since"))?;
        super::stored_changes("postgres", rows)
    }

    async fn head(&self, tenant: &str) -> Result<u64, StorageError> {
        let head: Option<i64> = sqlx::query_scalar("SELECT head FROM log_heads WHERE tenant = $1")
            .bind(tenant)
            .fetch_optional(&mut *self.tenant_tx(tenant, "head: begin").await?)
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
                .fetch_one(&mut *self.tenant_tx(tenant, "journey: begin").await?)
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
        .fetch_one(&mut *self.tenant_tx(tenant, "unfolded_count: begin").await?)
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
        let mut tx = self.tenant_tx(tenant, "save_snapshot: begin").await?;
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
        changes: &[super::Refused],
    ) -> Result<(), StorageError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut tx = self.tenant_tx(tenant, "quarantine: begin").await?;
        let (head, audit_head) = lock_heads(&mut tx, tenant).await?;
        // Refusals are rare: one statement per change is fine here.
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
                .map_err(err("quarantine: insert"))?;
            if inserted.rows_affected() == 1 {
                records.push(refused.audit_record());
            }
        }
        if !records.is_empty() {
            audit_only(&mut tx, tenant, head, audit_head, records).await?;
        }
        tx.commit().await.map_err(err("quarantine: commit"))?;
        Ok(())
    }

    async fn quarantined(
        &self,
        tenant: &str,
        journey: Option<JourneyId>,
    ) -> Result<Vec<super::Quarantined>, StorageError> {
        super::quarantined_in(&self.db(), "postgres", tenant, journey).await
    }

    async fn record_audit(
        &self,
        tenant: &str,
        records: &[AuditRecord],
    ) -> Result<Vec<AuditEntry>, StorageError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.tenant_tx(tenant, "record_audit: begin").await?;
        let (head, audit_head) = lock_heads(&mut tx, tenant).await?;
        let entries = audit_only(&mut tx, tenant, head, audit_head, records.to_vec()).await?;
        tx.commit().await.map_err(err("record_audit: commit"))?;
        Ok(entries)
    }

    async fn audit_since(
        &self,
        tenant: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        super::audit_since_in(&self.db(), "postgres", tenant, after, limit).await
    }

    async fn audit_trail(
        &self,
        tenant: &str,
        entity: &str,
        entity_id: &str,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        super::audit_trail_in(&self.db(), "postgres", tenant, entity, entity_id).await
    }

    async fn audit_head(&self, tenant: &str) -> Result<Option<ChainHead>, StorageError> {
        super::audit_head_in(&self.db(), "postgres", tenant).await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(err("ping"))?;
        Ok(())
    }
}

/// Locks the tenant's `log_heads` row until COMMIT (creating it on the tenant's
/// first write; a concurrent first write waits on the INSERT and then finds the
/// row) and returns the log head and the audit chain head.
async fn lock_heads(
    tx: &mut PgConnection,
    tenant: &str,
) -> Result<(i64, Option<ChainHead>), StorageError> {
    let lock = "SELECT head, audit_seq, audit_hash FROM log_heads WHERE tenant = $1 FOR UPDATE";
    let mut row: Option<(i64, i64, Option<Vec<u8>>)> = sqlx::query_as(lock)
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err("lock heads"))?;
    if row.is_none() {
        sqlx::query(
            "INSERT INTO log_heads (tenant, head) VALUES ($1, 0) ON CONFLICT (tenant) DO NOTHING",
        )
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(err("create heads"))?;
        row = sqlx::query_as(lock)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err("lock heads"))?;
    }
    let (head, audit_seq, audit_hash) = row.ok_or_else(|| {
        StorageError::Database("postgres: the tenant's head row is missing".to_owned())
    })?;
    Ok((
        head,
        crate::audit::stored_head("postgres", audit_seq, audit_hash)?,
    ))
}

/// The journeys of a batch as audit entities, once each.
fn journey_entities(changes: &[NewChange]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = changes
        .iter()
        .map(|c| {
            (
                crewsync_core::audit::JOURNEY_ENTITY.to_owned(),
                c.journey.to_string(),
            )
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// [`LOOKUP_SQL`]: known change hashes, and the latest entry hash per entity.
async fn lookup(
    tx: &mut PgConnection,
    tenant: &str,
    hashes: &[&[u8]],
    entities: &[(String, String)],
) -> Result<(Vec<Vec<u8>>, Vec<Vec<u8>>), StorageError> {
    let kinds: Vec<&str> = entities.iter().map(|(kind, _)| kind.as_str()).collect();
    let ids: Vec<&str> = entities.iter().map(|(_, id)| id.as_str()).collect();
    sqlx::query_as(LOOKUP_SQL)
        .bind(tenant)
        .bind(hashes)
        .bind(kinds)
        .bind(ids)
        .fetch_one(&mut *tx)
        .await
        .map_err(err("lookup"))
}

/// A sealer after `audit_head` that knows the latest entry of each entity.
fn sealer(
    tenant: &str,
    audit_head: Option<ChainHead>,
    entities: Vec<(String, String)>,
    latest: Vec<Vec<u8>>,
) -> Sealer {
    let mut sealer = Sealer::new(tenant, audit_head);
    for (entity, hash) in entities.into_iter().zip(latest) {
        if let Some(hash) = Digest::from_slice(&hash) {
            sealer.know(entity, hash);
        }
    }
    sealer
}

fn seal_all(sealer: &mut Sealer, records: Vec<AuditRecord>) -> Vec<AuditEntry> {
    records.into_iter().map(|r| sealer.seal(r)).collect()
}

/// Seals and writes entries that come with no change (refusals, admin actions).
async fn audit_only(
    tx: &mut PgConnection,
    tenant: &str,
    head: i64,
    audit_head: Option<ChainHead>,
    records: Vec<AuditRecord>,
) -> Result<Vec<AuditEntry>, StorageError> {
    let entities = Sealer::entities_of(&records);
    let (_, latest) = lookup(tx, tenant, &[], &entities).await?;
    let mut sealer = sealer(tenant, audit_head, entities, latest);
    let entries = seal_all(&mut sealer, records);
    write(tx, tenant, &[], &entries, head, sealer.head()).await?;
    Ok(entries)
}

/// [`WRITE_SQL`]: numbered changes and sealed entries in two batched inserts, and
/// both heads moved.
async fn write(
    tx: &mut PgConnection,
    tenant: &str,
    changes: &[(i64, &NewChange)],
    entries: &[AuditEntry],
    log_head: i64,
    audit_head: Option<ChainHead>,
) -> Result<(), StorageError> {
    let seqs: Vec<i64> = changes.iter().map(|(seq, _)| *seq).collect();
    let journeys: Vec<Uuid> = changes.iter().map(|(_, c)| c.journey.as_uuid()).collect();
    let hashes: Vec<&[u8]> = changes.iter().map(|(_, c)| c.hash.as_slice()).collect();
    let actors: Vec<&[u8]> = changes.iter().map(|(_, c)| c.actor.as_slice()).collect();
    let devices: Vec<Uuid> = changes.iter().map(|(_, c)| c.device.as_uuid()).collect();
    let bytes: Vec<&[u8]> = changes.iter().map(|(_, c)| c.bytes.as_slice()).collect();

    let entry_seqs: Vec<i64> = entries.iter().map(|e| super::to_db_seq(e.seq)).collect();
    let locations: Vec<Option<Uuid>> = entries
        .iter()
        .map(|e| e.location.map(|id| id.as_uuid()))
        .collect();
    let users: Vec<Option<Uuid>> = entries
        .iter()
        .map(|e| e.user.map(|id| id.as_uuid()))
        .collect();
    let entry_devices: Vec<Option<Uuid>> = entries
        .iter()
        .map(|e| e.device.map(|id| id.as_uuid()))
        .collect();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    let kinds: Vec<&str> = entries.iter().map(|e| e.entity.as_str()).collect();
    let ids: Vec<&str> = entries.iter().map(|e| e.entity_id.as_str()).collect();
    let diffs: Vec<String> = entries.iter().map(crate::audit::diff_text).collect();
    let server_times: Vec<i64> = entries.iter().map(|e| e.server_time).collect();
    let device_times: Vec<Option<i64>> = entries.iter().map(|e| e.device_time).collect();
    let prevs: Vec<&[u8]> = entries
        .iter()
        .map(|e| e.prev_hash.as_bytes().as_slice())
        .collect();
    let entity_prevs: Vec<&[u8]> = entries
        .iter()
        .map(|e| e.entity_prev_hash.as_bytes().as_slice())
        .collect();
    let entry_hashes: Vec<&[u8]> = entries
        .iter()
        .map(|e| e.hash.as_bytes().as_slice())
        .collect();

    let moved = sqlx::query(WRITE_SQL)
        .bind(tenant)
        .bind(seqs)
        .bind(journeys)
        .bind(hashes)
        .bind(actors)
        .bind(devices)
        .bind(bytes)
        .bind(entry_seqs)
        .bind(locations)
        .bind(users)
        .bind(entry_devices)
        .bind(actions)
        .bind(kinds)
        .bind(ids)
        .bind(diffs)
        .bind(server_times)
        .bind(device_times)
        .bind(prevs)
        .bind(entity_prevs)
        .bind(entry_hashes)
        .bind(log_head)
        .bind(audit_head.map_or(0, |h| super::to_db_seq(h.seq)))
        .bind(audit_head.map(|h| h.hash.as_bytes().to_vec()))
        .execute(&mut *tx)
        .await
        .map_err(err("write"))?;
    if moved.rows_affected() != 1 {
        return Err(StorageError::Database(
            "postgres write: the tenant's head row is missing".to_owned(),
        ));
    }
    Ok(())
}
