//! Opening the device's SQLite file: pragmas, migrations, and the read connection.
//!
//! Durability: `synchronous = FULL` in WAL mode, so a commit returns only after the
//! WAL is fsynced. NORMAL survives an app crash but can lose the last commits on power
//! loss, and a crew phone's dead battery is power loss; an action that returned Ok must
//! survive it. The cost is one fsync per action (measured in the device bench).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::migrations::migrations;
use crate::error::Result;

/// Waits this long for another connection's lock before giving up with SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The one writer connection, migrated to the latest version.
pub fn open_writer(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    configure(&conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    migrations().to_latest(&mut conn)?;
    Ok(conn)
}

/// A read-only connection for listing, so reads never wait behind a write.
pub fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    configure(&conn)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Android has no writable temp directory for SQLite; keep temp data in memory.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}
