//! The device schema's versions, tracked in `PRAGMA user_version`.
//!
//! Each migration runs in one transaction with the version bump (rusqlite_migration),
//! so a crash mid-migration leaves the file at the old version or the new one, never
//! between. A store newer than this build refuses to open instead of guessing.

use rusqlite_migration::{M, Migrations};

/// Every version in order. Append only; released files are never edited.
pub const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("sql/001_device_store.sql")),
    M::up(include_str!("sql/002_sync_and_media.sql")),
    M::up(include_str!("sql/003_accounts_and_rejections.sql")),
    M::up(include_str!("sql/004_media_queue.sql")),
];

pub fn migrations() -> Migrations<'static> {
    Migrations::from_slice(MIGRATIONS)
}

/// The version a fresh store is created at.
pub const LATEST_VERSION: usize = MIGRATIONS.len();
