//! `crewsync-server` as the `server_crash` tests run it: the same [`Server`] over the
//! same storage, plus two things a production binary must never have.
//!
//! - `--max-lifetime-secs`: the process exits by itself, so a server whose test
//!   died never runs on.
//! - `--control-ack-before-commit`: the broken server of the control run. Appends
//!   report success at once and reach the storage only later, so a SIGKILL in
//!   between loses acknowledged changes; the control test proves the crash tests'
//!   checker notices.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use crewsync_core::audit::{AuditEntry, AuditRecord, ChainHead};
use crewsync_core::ids::JourneyId;
use crewsync_server::Server;
use crewsync_server::config::Config;
use crewsync_server::storage::{
    self, Appended, JourneyRecord, NewChange, Storage, StorageError, StoredChange,
};

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    config: Config,
    /// Exit (code 3) after this many seconds.
    #[arg(long, default_value_t = 120)]
    max_lifetime_secs: u64,
    /// Acknowledge appends before they are stored (the control run).
    #[arg(long)]
    control_ack_before_commit: bool,
}

/// How long the control server sits on an acknowledged append before storing it.
const CONTROL_DELAY: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let opened =
        match storage::open(args.config.database_url.as_deref(), &args.config.data_dir).await {
            Ok(opened) => opened,
            Err(e) => {
                eprintln!("crash_server: {e}");
                return ExitCode::FAILURE;
            }
        };
    let mut storage = opened.storage;
    if args.control_ack_before_commit {
        storage = Arc::new(AckBeforeCommit { inner: storage });
    }
    // Sign-in (sessions, the signing key) lives in the same database, unwrapped.
    let server = match Server::with_storage(&args.config, storage, opened.db).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("crash_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.config.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("crash_server: cannot listen on {}: {e}", args.config.listen);
            return ExitCode::FAILURE;
        }
    };
    let lifetime = Duration::from_secs(args.max_lifetime_secs);
    match server.serve(listener, tokio::time::sleep(lifetime)).await {
        Ok(()) => ExitCode::from(3),
        Err(e) => {
            eprintln!("crash_server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The protection removed: `append` returns before the changes are stored.
struct AckBeforeCommit {
    inner: Arc<dyn Storage>,
}

#[async_trait]
impl Storage for AckBeforeCommit {
    async fn append(&self, tenant: &str, changes: &[NewChange]) -> Result<Appended, StorageError> {
        let head = self.inner.head(tenant).await?;
        let (inner, tenant, changes) =
            (Arc::clone(&self.inner), tenant.to_owned(), changes.to_vec());
        let new_changes = changes.len() as u64;
        tokio::spawn(async move {
            tokio::time::sleep(CONTROL_DELAY).await;
            if let Err(e) = inner.append(&tenant, &changes).await {
                eprintln!("crash_server (control): late append failed: {e}");
            }
        });
        Ok(Appended { head, new_changes })
    }

    async fn changes_since(
        &self,
        tenant: &str,
        cursor: u64,
        limit: u32,
    ) -> Result<Vec<StoredChange>, StorageError> {
        self.inner.changes_since(tenant, cursor, limit).await
    }

    async fn head(&self, tenant: &str) -> Result<u64, StorageError> {
        self.inner.head(tenant).await
    }

    async fn journey(
        &self,
        tenant: &str,
        journey: JourneyId,
    ) -> Result<JourneyRecord, StorageError> {
        self.inner.journey(tenant, journey).await
    }

    async fn unfolded_count(&self, tenant: &str, journey: JourneyId) -> Result<u64, StorageError> {
        self.inner.unfolded_count(tenant, journey).await
    }

    async fn save_snapshot(
        &self,
        tenant: &str,
        journey: JourneyId,
        base_generation: u64,
        snapshot: &[u8],
        contains: &[Vec<u8>],
    ) -> Result<bool, StorageError> {
        self.inner
            .save_snapshot(tenant, journey, base_generation, snapshot, contains)
            .await
    }

    async fn quarantine(
        &self,
        tenant: &str,
        changes: &[storage::Refused],
    ) -> Result<(), StorageError> {
        self.inner.quarantine(tenant, changes).await
    }

    async fn quarantined(
        &self,
        tenant: &str,
        journey: Option<JourneyId>,
    ) -> Result<Vec<storage::Quarantined>, StorageError> {
        self.inner.quarantined(tenant, journey).await
    }

    async fn record_audit(
        &self,
        tenant: &str,
        records: &[AuditRecord],
    ) -> Result<Vec<AuditEntry>, StorageError> {
        self.inner.record_audit(tenant, records).await
    }

    async fn audit_since(
        &self,
        tenant: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        self.inner.audit_since(tenant, after, limit).await
    }

    async fn audit_trail(
        &self,
        tenant: &str,
        entity: &str,
        entity_id: &str,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        self.inner.audit_trail(tenant, entity, entity_id).await
    }

    async fn audit_head(&self, tenant: &str) -> Result<Option<ChainHead>, StorageError> {
        self.inner.audit_head(tenant).await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.inner.ping().await
    }
}
