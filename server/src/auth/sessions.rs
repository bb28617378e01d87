//! Sessions (a user signed in on a device: the seed's MobileSession) and their
//! rotating refresh tokens.
//!
//! A refresh token is 32 random bytes; only its SHA-256 is stored. Each use
//! rotates it: the presented token is marked used and a successor is issued. A
//! used token presented again means it leaked, unless it comes back within
//! [`REUSE_GRACE`] — the honest case of a device whose refresh response was lost
//! on a bad network. Then it gets a fresh successor (the undelivered one dies);
//! after the grace window the whole session (the token family) is revoked.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crewsync_core::ids::{ClientId, DeviceId, LocationId, UserId};
use rand::RngCore;
use sha2::{Digest, Sha256};
// Every dynamic statement here is assembled from constants (column lists, the
// lock suffix): no input reaches SQL text.
use sqlx::AssertSqlSafe;
use sqlx::types::Uuid;

use crate::directory::{Db, DirectoryError, db_err, in_write_tx, now_ms, on_db, tenant_key};

/// How long a refresh token lives unused (a crew can be offline for days).
pub const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long after its use a refresh token may come back (lost response).
pub const REUSE_GRACE: Duration = Duration::from_secs(30);

/// Why a refresh was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("unknown refresh token")]
    Unknown,
    #[error("refresh token expired")]
    Expired,
    #[error("session revoked: {0}")]
    Revoked(String),
    #[error("refresh token reused after rotation: the session is revoked")]
    Reused,
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub tenant: String,
    pub user_id: Uuid,
    pub device_id: Uuid,
    pub location_id: Uuid,
    pub created_at: i64,
    pub last_active: i64,
    pub sync_status: String,
    pub pending_changes: i64,
    pub pending_media_bytes: i64,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
}

/// A refresh token's row: session, expiry, when used, its successor's hash.
type TokenRow = (Uuid, i64, Option<i64>, Option<Vec<u8>>);

const SESSION_COLUMNS: &str = "id, tenant, user_id, device_id, location_id, created_at, \
     last_active, sync_status, pending_changes, pending_media_bytes, revoked_at, revoked_reason";

/// A session and the refresh token just issued for it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub session: SessionRow,
    pub refresh_token: String,
}

/// What a device reports about itself at each sync (for the dispatcher's view).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceReport {
    pub pending_changes: u64,
    pub pending_media_bytes: u64,
}

/// Sessions and refresh tokens over the server's database.
#[derive(Debug, Clone)]
pub struct Sessions {
    db: Db,
    reuse_grace: Duration,
}

fn new_refresh_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Sessions {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            reuse_grace: REUSE_GRACE,
        }
    }

    /// The same, with another reuse grace window (tests shorten it).
    pub fn with_reuse_grace(mut self, grace: Duration) -> Self {
        self.reuse_grace = grace;
        self
    }

    /// The token signing secret shared by every server on this database, created
    /// on first use (32 random bytes).
    pub async fn signing_secret(&self) -> Result<Vec<u8>, DirectoryError> {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let insert = "INSERT INTO server_keys (name, secret, created_at) VALUES ('jwt', $1, $2)
                      ON CONFLICT (name) DO NOTHING";
        on_db!(&self.db, write pool => sqlx::query(insert)
            .bind(secret.as_slice())
            .bind(now_ms())
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(db_err("create signing key"))?);
        let select = "SELECT secret FROM server_keys WHERE name = 'jwt'";
        let stored: Vec<u8> = on_db!(&self.db, write pool => sqlx::query_scalar(select)
            .fetch_one(pool)
            .await
            .map_err(db_err("read signing key"))?);
        Ok(stored)
    }

    /// Opens a session for `user` on `device` and issues its first refresh token.
    pub async fn open(
        &self,
        tenant: ClientId,
        user: UserId,
        device: DeviceId,
        location: LocationId,
    ) -> Result<Issued, DirectoryError> {
        let now = now_ms();
        let id = Uuid::now_v7();
        let (token, hash) = new_refresh_token();
        in_write_tx!(&self.db, tx, _lock => {
            sqlx::query(
                "INSERT INTO sessions (id, tenant, user_id, device_id, location_id, created_at, last_active)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(id)
            .bind(tenant_key(tenant))
            .bind(user.as_uuid())
            .bind(device.as_uuid())
            .bind(location.as_uuid())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err("open session"))?;
            sqlx::query(
                "INSERT INTO refresh_tokens (hash, session_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&hash)
            .bind(id)
            .bind(now)
            .bind(now + millis(REFRESH_TTL))
            .execute(&mut *tx)
            .await
            .map_err(db_err("issue refresh token"))?;
            tx.commit().await.map_err(db_err("open session: commit"))?;
        });
        let session = self
            .session(tenant, id)
            .await?
            .ok_or_else(|| DirectoryError::NotFound(format!("session {id}")))?;
        Ok(Issued {
            session,
            refresh_token: token,
        })
    }

    /// One of the tenant's sessions.
    pub async fn session(
        &self,
        tenant: ClientId,
        id: Uuid,
    ) -> Result<Option<SessionRow>, DirectoryError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant = $1 AND id = $2");
        let row: Option<SessionRow> = on_db!(&self.db, write pool => sqlx::query_as(AssertSqlSafe(sql.clone()))
            .bind(tenant_key(tenant))
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(db_err("read session"))?);
        Ok(row)
    }

    /// The tenant's open sessions, most recently active first.
    pub async fn open_sessions(&self, tenant: ClientId) -> Result<Vec<SessionRow>, DirectoryError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant = $1 AND revoked_at IS NULL
             ORDER BY last_active DESC"
        );
        let rows: Vec<SessionRow> = on_db!(&self.db, read pool => sqlx::query_as(AssertSqlSafe(sql.clone()))
            .bind(tenant_key(tenant))
            .fetch_all(pool)
            .await
            .map_err(db_err("list sessions"))?);
        Ok(rows)
    }

    /// Rotates a refresh token (see the module docs for reuse).
    pub async fn rotate(&self, presented: &str) -> Result<Issued, RefreshError> {
        let now = now_ms();
        let hash = token_hash(presented);
        let (token, new_hash) = new_refresh_token();
        let outcome: Result<Uuid, RefreshError> = in_write_tx!(&self.db, tx, lock => {
            let found: Option<TokenRow> = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT session_id, expires_at, used_at, successor FROM refresh_tokens WHERE hash = $1{lock}"
            )))
            .bind(&hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("find refresh token"))?;
            let Some((session_id, expires_at, used_at, successor)) = found else {
                return Err(RefreshError::Unknown);
            };
            let revoked: Option<(Option<i64>, Option<String>)> = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT revoked_at, revoked_reason FROM sessions WHERE id = $1{lock}"
            )))
            .bind(session_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("find session"))?;
            let outcome = match (revoked, used_at) {
                (None, _) => Err(RefreshError::Unknown),
                (Some((Some(_), reason)), _) => {
                    Err(RefreshError::Revoked(reason.unwrap_or_default()))
                }
                _ if expires_at < now => Err(RefreshError::Expired),
                (_, Some(used)) if now - used > millis(self.reuse_grace) => {
                    sqlx::query(
                        "UPDATE sessions SET revoked_at = $2, revoked_reason = 'refresh token reuse' WHERE id = $1",
                    )
                    .bind(session_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("revoke session"))?;
                    Err(RefreshError::Reused)
                }
                (_, used) => {
                    if let (Some(_), Some(undelivered)) = (used, successor) {
                        // The lost response's token dies; the retry gets a new one.
                        sqlx::query("UPDATE refresh_tokens SET expires_at = $2 WHERE hash = $1")
                            .bind(undelivered)
                            .bind(now - 1)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err("retire undelivered token"))?;
                    }
                    sqlx::query(
                        "UPDATE refresh_tokens SET used_at = COALESCE(used_at, $2), successor = $3 WHERE hash = $1",
                    )
                    .bind(&hash)
                    .bind(now)
                    .bind(&new_hash)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("mark refresh token used"))?;
                    sqlx::query(
                        "INSERT INTO refresh_tokens (hash, session_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&new_hash)
                    .bind(session_id)
                    .bind(now)
                    .bind(now + millis(REFRESH_TTL))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("issue refresh token"))?;
                    Ok(session_id)
                }
            };
            // Revocation is committed too: it must stick although the call fails.
            tx.commit().await.map_err(db_err("rotate: commit"))?;
            outcome
        });
        let session_id = outcome?;
        let session = self.session_by_id(session_id).await?;
        Ok(Issued {
            session,
            refresh_token: token,
        })
    }

    async fn session_by_id(&self, id: Uuid) -> Result<SessionRow, DirectoryError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
        let row: Option<SessionRow> = on_db!(&self.db, write pool => sqlx::query_as(AssertSqlSafe(sql.clone()))
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(db_err("read session"))?);
        row.ok_or_else(|| DirectoryError::NotFound(format!("session {id}")))
    }

    /// Revokes one session (sign-out, an admin's revocation).
    pub async fn revoke(
        &self,
        tenant: ClientId,
        id: Uuid,
        reason: &str,
    ) -> Result<bool, DirectoryError> {
        let sql = "UPDATE sessions SET revoked_at = $3, revoked_reason = $4
                   WHERE tenant = $1 AND id = $2 AND revoked_at IS NULL";
        let done = on_db!(&self.db, write pool => sqlx::query(sql)
            .bind(tenant_key(tenant))
            .bind(id)
            .bind(now_ms())
            .bind(reason)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(db_err("revoke session"))?);
        Ok(done > 0)
    }

    /// Revokes every session of a user (deactivation).
    pub async fn revoke_user(
        &self,
        tenant: ClientId,
        user: UserId,
        reason: &str,
    ) -> Result<u64, DirectoryError> {
        let sql = "UPDATE sessions SET revoked_at = $3, revoked_reason = $4
                   WHERE tenant = $1 AND user_id = $2 AND revoked_at IS NULL";
        let done = on_db!(&self.db, write pool => sqlx::query(sql)
            .bind(tenant_key(tenant))
            .bind(user.as_uuid())
            .bind(now_ms())
            .bind(reason)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(db_err("revoke sessions"))?);
        Ok(done)
    }

    /// Records a contact from the session's device, with what it reported.
    pub async fn touch(
        &self,
        tenant: ClientId,
        id: Uuid,
        report: Option<DeviceReport>,
    ) -> Result<(), DirectoryError> {
        let (changes, media) = report.map_or((None, None), |r| {
            (
                Some(i64::try_from(r.pending_changes).unwrap_or(i64::MAX)),
                Some(i64::try_from(r.pending_media_bytes).unwrap_or(i64::MAX)),
            )
        });
        let sql = "UPDATE sessions SET last_active = $3,
                       pending_changes = COALESCE($4, pending_changes),
                       pending_media_bytes = COALESCE($5, pending_media_bytes)
                   WHERE tenant = $1 AND id = $2";
        on_db!(&self.db, write pool => sqlx::query(sql)
            .bind(tenant_key(tenant))
            .bind(id)
            .bind(now_ms())
            .bind(changes)
            .bind(media)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(db_err("touch session"))?);
        Ok(())
    }
}
