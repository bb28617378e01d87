//! Signed-in users of this device and their tokens (`accounts` table).

use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::ids::UserId;
use crate::model::Role;
use crate::policy::RolePermission;
use crate::sync::auth::{Credentials, TokenResponse};

/// A user signed in on this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: crate::sync::auth::UserView,
    pub session_id: String,
    pub credentials: Credentials,
    pub permissions: Vec<RolePermission>,
    /// The server refused the credentials: the user must sign in again (their
    /// unsynced work stays queued meanwhile).
    pub needs_sign_in: bool,
}

impl Account {
    /// The account as the token answer it was saved from (expiry unknown: 0).
    pub fn tokens(&self) -> Result<TokenResponse> {
        Ok(TokenResponse {
            access_token: self.credentials.access_token.clone(),
            token_type: "Bearer".into(),
            expires_in: 0,
            refresh_token: self.credentials.refresh_token.clone(),
            session_id: self
                .session_id
                .parse()
                .map_err(|e| Error::InvalidInput(format!("stored session id: {e}")))?,
            user: self.user.clone(),
        })
    }
}

pub fn save(conn: &Connection, tokens: &TokenResponse, now_ms: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO accounts (user_id, client_id, location_id, role, name, email, session_id,
             access_token, refresh_token, signed_in_at, needs_sign_in)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0)
         ON CONFLICT (user_id) DO UPDATE SET client_id = excluded.client_id,
             location_id = excluded.location_id, role = excluded.role, name = excluded.name,
             email = excluded.email, session_id = excluded.session_id,
             access_token = excluded.access_token, refresh_token = excluded.refresh_token,
             needs_sign_in = 0",
        params![
            tokens.user.id.to_string(),
            tokens.user.tenant.to_string(),
            tokens.user.location_id.to_string(),
            tokens.user.role.to_string(),
            tokens.user.name,
            tokens.user.email,
            tokens.session_id.to_string(),
            tokens.access_token,
            tokens.refresh_token,
            now_ms,
        ],
    )?;
    Ok(())
}

pub fn set_permissions(conn: &Connection, user: UserId, rows: &[RolePermission]) -> Result<()> {
    let json = serde_json::to_string(rows)
        .map_err(|e| Error::InvalidInput(format!("permissions: {e}")))?;
    conn.execute(
        "UPDATE accounts SET permissions = ?2 WHERE user_id = ?1",
        params![user.to_string(), json],
    )?;
    Ok(())
}

pub fn mark_needs_sign_in(conn: &Connection, user: UserId) -> Result<()> {
    conn.execute(
        "UPDATE accounts SET needs_sign_in = 1 WHERE user_id = ?1",
        [user.to_string()],
    )?;
    Ok(())
}

pub fn remove(conn: &Connection, user: UserId) -> Result<()> {
    conn.execute(
        "DELETE FROM accounts WHERE user_id = ?1",
        [user.to_string()],
    )?;
    Ok(())
}

pub fn get(conn: &Connection, user: UserId) -> Result<Option<Account>> {
    let row = conn
        .query_row(
            "SELECT user_id, client_id, location_id, role, name, email, session_id,
                    access_token, refresh_token, permissions, needs_sign_in
             FROM accounts WHERE user_id = ?1",
            [user.to_string()],
            |row| {
                Ok((
                    [
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, String>(5)?,
                        row.get::<_, String>(6)?,
                        row.get::<_, String>(7)?,
                        row.get::<_, String>(8)?,
                        row.get::<_, String>(9)?,
                    ],
                    row.get::<_, i64>(10)?,
                ))
            },
        )
        .optional()?;
    let Some((
        [
            id,
            tenant,
            location,
            role,
            name,
            email,
            session,
            access,
            refresh,
            permissions,
        ],
        needs,
    )) = row
    else {
        return Ok(None);
    };
    Ok(Some(Account {
        user: crate::sync::auth::UserView {
            id: id.parse()?,
            tenant: tenant.parse()?,
            location_id: location.parse()?,
            name,
            email,
            role: Role::from_str(&role)
                .map_err(|_| Error::InvalidInput(format!("stored role {role:?}")))?,
        },
        session_id: session,
        credentials: Credentials {
            access_token: access,
            refresh_token: refresh,
        },
        permissions: serde_json::from_str(&permissions)
            .map_err(|e| Error::InvalidInput(format!("stored permissions: {e}")))?,
        needs_sign_in: needs != 0,
    }))
}

/// The ids of every user signed in on this device, in id order.
pub fn users(conn: &Connection) -> Result<Vec<UserId>> {
    let mut stmt = conn.prepare_cached("SELECT user_id FROM accounts ORDER BY user_id")?;
    let ids = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    ids.into_iter().map(|id| id.parse()).collect()
}
