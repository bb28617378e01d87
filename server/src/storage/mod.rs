//! Where the server keeps the change log: one trait, several backends, one
//! conformance suite (`tests/storage_conformance.rs`) that every backend passes.
//!
//! The log is append-only per tenant. Each appended change gets a sequence number
//! assigned in commit order (appends of one tenant are serialized), so a device that
//! has read up to `cursor` can never miss a change committed later with a smaller
//! number. Sequence numbers may have gaps (a re-sent change takes none). An append
//! returns only once the changes are durable: that is when the server acknowledges.
//!
//! The audit trail (`crate::audit`) is written here too: every newly appended
//! change, every newly quarantined one and every admin action becomes one entry of
//! the tenant's hash chain, in the same transaction and under the same per-tenant
//! serialization that numbers the log, so the chain can never fork.

pub mod memory;
pub mod postgres;
pub mod sqlite;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use crewsync_core::audit::{AuditEntry, AuditRecord, ChainHead};
use crewsync_core::ids::{DeviceId, JourneyId};

use crate::audit::ChangeAudit;

/// A change to append: decoded and checked by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChange {
    pub journey: JourneyId,
    /// The automerge change hash (32 bytes): the change's identity.
    pub hash: Vec<u8>,
    /// The automerge actor that wrote it.
    pub actor: Vec<u8>,
    pub device: DeviceId,
    pub bytes: Vec<u8>,
    /// What its audit entry records (written only if the change is new).
    pub audit: ChangeAudit,
}

impl NewChange {
    /// The record of this change's audit entry, at `server_time`.
    pub fn audit_record(&self, server_time: i64) -> AuditRecord {
        self.audit.record(
            crate::audit::CHANGE_ACCEPTED,
            self.journey,
            self.device,
            server_time,
        )
    }
}

/// A change as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChange {
    pub seq: u64,
    pub journey: JourneyId,
    pub hash: Vec<u8>,
    pub actor: Vec<u8>,
    pub bytes: Vec<u8>,
}

/// A journey's stored form: the latest snapshot (if compacted) and the changes not in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JourneyRecord {
    pub snapshot: Option<Vec<u8>>,
    /// Counts the snapshot's saves (0: none yet). A compaction saves only if this
    /// is unchanged since it read the record, so a slower compaction can never put
    /// back an older snapshot over changes a newer one folded.
    pub generation: u64,
    pub changes: Vec<Vec<u8>>,
}

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    /// The tenant's log head after the append.
    pub head: u64,
    /// How many of the changes were new to the log (re-sent ones are not).
    pub new_changes: u64,
}

/// Why a pushed change sits in quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::AsRefStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum QuarantineKind {
    /// Refused by the write checks.
    Rejected,
    /// Sent after the journey was audited: held for review.
    AfterAudit,
}

/// A pushed change the server did not accept, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub journey: JourneyId,
    pub hash: Vec<u8>,
    pub kind: QuarantineKind,
    pub reason: String,
    pub user: crewsync_core::ids::UserId,
    pub device: DeviceId,
    pub bytes: Vec<u8>,
    /// Milliseconds since the Unix epoch.
    pub received_at: i64,
}

/// A change to quarantine, with what its audit entry records.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub change: Quarantined,
    pub audit: ChangeAudit,
}

impl Refused {
    /// The record of this refusal's audit entry.
    pub fn audit_record(&self) -> AuditRecord {
        self.audit.record(
            crate::audit::refused_action(self.change.kind),
            self.change.journey,
            self.change.device,
            self.change.received_at,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(String),
    #[error("migration failed: {0}")]
    Migration(String),
}

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Appends changes durably, each new one with its audit entry in the same
    /// transaction; changes already in the tenant's log are skipped (no entry).
    async fn append(&self, tenant: &str, changes: &[NewChange]) -> Result<Appended, StorageError>;

    /// Up to `limit` log entries with `seq > cursor`, in log order.
    async fn changes_since(
        &self,
        tenant: &str,
        cursor: u64,
        limit: u32,
    ) -> Result<Vec<StoredChange>, StorageError>;

    /// The highest sequence number in the tenant's log (0 when empty).
    async fn head(&self, tenant: &str) -> Result<u64, StorageError>;

    /// Everything needed to load one journey's document.
    async fn journey(
        &self,
        tenant: &str,
        journey: JourneyId,
    ) -> Result<JourneyRecord, StorageError>;

    /// How many of a journey's changes are not in its snapshot yet.
    async fn unfolded_count(&self, tenant: &str, journey: JourneyId) -> Result<u64, StorageError>;

    /// Stores a snapshot of a journey that contains the changes with the given hashes;
    /// those leave the journey's record (the log keeps them for cursors). Saves only
    /// if the record's generation is still `base_generation`, and returns whether
    /// it saved: `false` means another compaction got there first.
    async fn save_snapshot(
        &self,
        tenant: &str,
        journey: JourneyId,
        base_generation: u64,
        snapshot: &[u8],
        contains: &[Vec<u8>],
    ) -> Result<bool, StorageError>;

    /// Keeps changes the server did not accept (idempotent per tenant and hash),
    /// each newly kept one with its audit entry in the same transaction.
    async fn quarantine(&self, tenant: &str, changes: &[Refused]) -> Result<(), StorageError>;

    /// The tenant's quarantined changes (of one journey, or all), oldest first.
    async fn quarantined(
        &self,
        tenant: &str,
        journey: Option<JourneyId>,
    ) -> Result<Vec<Quarantined>, StorageError>;

    /// Appends entries that record something other than a change (admin actions)
    /// to the tenant's audit chain, under the same lock as [`Storage::append`];
    /// returns them as sealed. See `crate::audit::record` for the one-call form.
    async fn record_audit(
        &self,
        tenant: &str,
        records: &[AuditRecord],
    ) -> Result<Vec<AuditEntry>, StorageError>;

    /// Up to `limit` entries of the tenant's audit chain with `seq > after`, in order.
    async fn audit_since(
        &self,
        tenant: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StorageError>;

    /// Every entry about one entity (e.g. `journey`, its id), in chain order.
    async fn audit_trail(
        &self,
        tenant: &str,
        entity: &str,
        entity_id: &str,
    ) -> Result<Vec<AuditEntry>, StorageError>;

    /// The tenant's audit chain head as stored (`None`: no entries yet).
    async fn audit_head(&self, tenant: &str) -> Result<Option<ChainHead>, StorageError>;

    /// Whether the backend answers (for `/ready`).
    async fn ping(&self) -> Result<(), StorageError>;
}

/// Log positions are `u64` in the protocol and `BIGINT`/`INTEGER` in the databases.
/// Sequence numbers never exceed `i64::MAX`; a larger cursor is past every row.
pub(crate) fn to_db_seq(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

pub(crate) fn from_db_seq(backend: &str, operation: &str, seq: i64) -> Result<u64, StorageError> {
    u64::try_from(seq).map_err(|_| {
        StorageError::Database(format!(
            "{backend} {operation}: negative number {seq} where the log keeps counts and positions"
        ))
    })
}

/// A quarantine row as both SQL backends select it.
pub(crate) type QuarantineRow = (
    uuid::Uuid,
    Vec<u8>,
    String,
    String,
    uuid::Uuid,
    uuid::Uuid,
    Vec<u8>,
    i64,
);

pub(crate) const QUARANTINE_INSERT: &str =
    "INSERT INTO quarantine (tenant, hash, journey_id, kind, reason, user_id, device_id, bytes, received_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant, hash) DO NOTHING";

pub(crate) const QUARANTINE_SELECT: &str =
    "SELECT journey_id, hash, kind, reason, user_id, device_id, bytes, received_at FROM quarantine
     WHERE tenant = $1 AND ($2 IS NULL OR journey_id = $2) ORDER BY received_at, hash";

/// `Storage::quarantined` for both SQL backends.
pub(crate) async fn quarantined_in(
    db: &crate::directory::Db,
    backend: &'static str,
    tenant: &str,
    journey: Option<JourneyId>,
) -> Result<Vec<Quarantined>, StorageError> {
    use crate::directory::{Db, on_db};
    let rows: Vec<QuarantineRow> =
        on_db!(db, tenant tenant, read pool => sqlx::query_as(QUARANTINE_SELECT)
        .bind(tenant)
        .bind(journey.map(|j| j.as_uuid()))
        .fetch_all(pool)
        .await)
        .map_err(|e| StorageError::Database(format!("{backend} quarantined: {e}")))?;
    quarantined_rows(backend, rows)
}

/// Turns selected quarantine rows into [`Quarantined`]s.
pub(crate) fn quarantined_rows(
    backend: &str,
    rows: Vec<QuarantineRow>,
) -> Result<Vec<Quarantined>, StorageError> {
    rows.into_iter()
        .map(
            |(journey, hash, kind, reason, user, device, bytes, received_at)| {
                Ok(Quarantined {
                    journey: JourneyId::from_uuid(journey),
                    hash,
                    kind: kind.parse().map_err(|_| {
                        StorageError::Database(format!(
                            "{backend} quarantine: unknown kind {kind:?}"
                        ))
                    })?,
                    reason,
                    user: crewsync_core::ids::UserId::from_uuid(user),
                    device: DeviceId::from_uuid(device),
                    bytes,
                    received_at,
                })
            },
        )
        .collect()
}

/// The columns of `crate::audit::AuditRow`, in order (a literal, for `concat!`).
macro_rules! audit_columns {
    () => {
        "tenant, seq, location_id, user_id, device_id, action, entity, entity_id, \
         diff, server_time, device_time, prev_hash, entity_prev_hash, hash"
    };
}

/// `Storage::audit_since` for both SQL backends.
pub(crate) async fn audit_since_in(
    db: &crate::directory::Db,
    backend: &'static str,
    tenant: &str,
    after: u64,
    limit: u32,
) -> Result<Vec<AuditEntry>, StorageError> {
    use crate::directory::{Db, on_db};
    let sql = concat!(
        "SELECT ",
        audit_columns!(),
        " FROM audit_log WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    );
    let rows: Vec<crate::audit::AuditRow> =
        on_db!(db, tenant tenant, read pool => sqlx::query_as(sql)
        .bind(tenant)
        .bind(to_db_seq(after))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)
        .map_err(|e| StorageError::Database(format!("{backend} audit_since: {e}")))?;
    rows.into_iter()
        .map(|row| crate::audit::entry_from_row(backend, row))
        .collect()
}

/// `Storage::audit_trail` for both SQL backends.
pub(crate) async fn audit_trail_in(
    db: &crate::directory::Db,
    backend: &'static str,
    tenant: &str,
    entity: &str,
    entity_id: &str,
) -> Result<Vec<AuditEntry>, StorageError> {
    use crate::directory::{Db, on_db};
    let sql = concat!(
        "SELECT ",
        audit_columns!(),
        " FROM audit_log WHERE tenant = $1 AND entity = $2 AND entity_id = $3 ORDER BY seq"
    );
    let rows: Vec<crate::audit::AuditRow> =
        on_db!(db, tenant tenant, read pool => sqlx::query_as(sql)
        .bind(tenant)
        .bind(entity)
        .bind(entity_id)
        .fetch_all(pool)
        .await)
        .map_err(|e| StorageError::Database(format!("{backend} audit_trail: {e}")))?;
    rows.into_iter()
        .map(|row| crate::audit::entry_from_row(backend, row))
        .collect()
}

/// `Storage::audit_head` for both SQL backends.
pub(crate) async fn audit_head_in(
    db: &crate::directory::Db,
    backend: &'static str,
    tenant: &str,
) -> Result<Option<ChainHead>, StorageError> {
    use crate::directory::{Db, on_db};
    let row: Option<(i64, Option<Vec<u8>>)> =
        on_db!(db, tenant tenant, read pool => sqlx::query_as(
        "SELECT audit_seq, audit_hash FROM log_heads WHERE tenant = $1")
        .bind(tenant)
        .fetch_optional(pool)
        .await)
        .map_err(|e| StorageError::Database(format!("{backend} audit_head: {e}")))?;
    match row {
        None => Ok(None),
        Some((seq, hash)) => crate::audit::stored_head(backend, seq, hash),
    }
}

/// A log row as both SQL backends select it: seq, journey, hash, actor, bytes.
pub(crate) type LogRow = (i64, uuid::Uuid, Vec<u8>, Vec<u8>, Vec<u8>);

/// Turns selected log rows into [`StoredChange`]s, naming the backend on a bad row.
pub(crate) fn stored_changes(
    backend: &str,
    rows: Vec<LogRow>,
) -> Result<Vec<StoredChange>, StorageError> {
    rows.into_iter()
        .map(|(seq, journey, hash, actor, bytes)| {
            Ok(StoredChange {
                seq: from_db_seq(backend, "changes_since", seq)?,
                journey: JourneyId::from_uuid(journey),
                hash,
                actor,
                bytes,
            })
        })
        .collect()
}

/// A server's database: the change log behind [`Storage`], and the same database
/// for the directory and the rest of the relational state.
pub struct Opened {
    pub storage: Arc<dyn Storage>,
    pub db: crate::directory::Db,
}

/// Opens the storage a server is configured with: `postgres://…` (or
/// `postgresql://…`) is Postgres; `sqlite://PATH` is that SQLite file; no URL is
/// the zero-setup default, an SQLite file in `data_dir` (both created if missing).
/// Migrations run before this returns.
pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Opened, StorageError> {
    match url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let storage = postgres::PostgresStorage::connect(url).await?;
            let db = storage.db();
            Ok(Opened {
                storage: Arc::new(storage),
                db,
            })
        }
        Some(url) if url.starts_with("sqlite:") => {
            let storage = sqlite::SqliteStorage::open_url(url).await?;
            let db = storage.db();
            Ok(Opened {
                storage: Arc::new(storage),
                db,
            })
        }
        Some(url) => {
            let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
            Err(StorageError::Database(format!(
                "unsupported storage URL scheme {scheme:?}: expected postgres://…, sqlite://PATH, or none for {}",
                data_dir.join(sqlite::DEFAULT_FILE_NAME).display()
            )))
        }
        None => {
            std::fs::create_dir_all(data_dir).map_err(|e| {
                StorageError::Database(format!(
                    "sqlite: cannot create the data dir {}: {e}",
                    data_dir.display()
                ))
            })?;
            let storage =
                sqlite::SqliteStorage::open(&data_dir.join(sqlite::DEFAULT_FILE_NAME)).await?;
            let db = storage.db();
            Ok(Opened {
                storage: Arc::new(storage),
                db,
            })
        }
    }
}

/// As [`open`], for callers that need only the change log.
pub async fn connect(url: Option<&str>, data_dir: &Path) -> Result<Arc<dyn Storage>, StorageError> {
    Ok(open(url, data_dir).await?.storage)
}
