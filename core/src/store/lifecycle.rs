//! Suspend and resume: the store lets go of its SQLite file while the app is in the
//! background.
//!
//! iOS kills a suspended app that holds a file lock in a shared container
//! (`0xdead10cc`), and a WAL-mode connection keeps a lock on the `-shm` file for as long
//! as it is open. Suspending therefore waits for the write in progress (it takes the
//! writer lock, so no transaction is open), checkpoints the WAL into the database file,
//! and closes both connections. Until [`DeviceStore::resume`] reopens them every call
//! that needs the file fails and writes nothing; documents loaded in memory stay, since
//! they match what is on disk.

use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;

use super::{DeviceStore, connection, lock};
use crate::error::{Error, Result};

/// The error every call that needs the file returns while the store is suspended.
pub(super) fn refuse_if_suspended(suspended: &AtomicBool) -> Result<()> {
    if suspended.load(Ordering::Acquire) {
        return Err(Error::Io(std::io::Error::other(
            "the device store is suspended: call resume() first",
        )));
    }
    Ok(())
}

impl DeviceStore {
    /// Waits for the write in progress, checkpoints, and closes the SQLite file, so
    /// the process holds no lock and no open transaction on it. Idempotent.
    pub fn suspend(&self) -> Result<()> {
        let mut writer = self.lock_writer_even_suspended();
        let mut reader = lock(&self.reader)?;
        if self.suspended.load(Ordering::Acquire) {
            return Ok(());
        }
        // Fold the WAL into the database file, so the file is whole on its own.
        writer
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        // In-memory stand-ins hold no file; they are never used while suspended.
        let old_reader = std::mem::replace(&mut *reader, Connection::open_in_memory()?);
        let old_writer = std::mem::replace(&mut writer.conn, Connection::open_in_memory()?);
        self.suspended.store(true, Ordering::Release);
        // The reader first: the last connection to close removes the WAL and shm files.
        old_reader.close().map_err(|(_, e)| Error::from(e))?;
        old_writer.close().map_err(|(_, e)| Error::from(e))?;
        Ok(())
    }

    /// Reopens the SQLite file after [`suspend`](Self::suspend). Idempotent. The actor
    /// id stays: this is the same open of the store, one linear stream of changes.
    pub fn resume(&self) -> Result<()> {
        let mut writer = self.lock_writer_even_suspended();
        let mut reader = lock(&self.reader)?;
        if !self.suspended.load(Ordering::Acquire) {
            return Ok(());
        }
        writer.conn = connection::open_writer(&self.path)?;
        *reader = connection::open_reader(&self.path)?;
        self.suspended.store(false, Ordering::Release);
        Ok(())
    }

    /// Whether the store is suspended (its file closed).
    pub fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::StoreOptions;
    use crate::ids::UserId;
    use crate::model::{ActiveUser, Role};

    /// The store's files (database, WAL, shm) this process has open: an open file is
    /// what a lock needs, so none open means none held.
    fn open_files(path: &Path) -> Vec<std::path::PathBuf> {
        let names: Vec<std::path::PathBuf> = ["", "-wal", "-shm"]
            .iter()
            .map(|suffix| std::path::PathBuf::from(format!("{}{suffix}", path.display())))
            .collect();
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| names.contains(target))
            .collect()
    }

    fn open_with_a_user(path: &Path) -> std::sync::Arc<DeviceStore> {
        let store = DeviceStore::open(path, StoreOptions::default()).unwrap();
        store
            .set_active_user(Some(ActiveUser {
                user_id: UserId::new(),
                role: Role::Driver,
            }))
            .unwrap();
        store
    }

    #[test]
    fn a_suspended_store_holds_nothing_open_and_resumes_where_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = open_with_a_user(&path);
        store.journey_ids().unwrap();
        // Control: the open store's files are seen by the same check.
        assert!(
            !open_files(&path).is_empty(),
            "the check must see an open store"
        );

        store.suspend().unwrap();
        store.suspend().unwrap();
        assert!(store.is_suspended());
        assert_eq!(
            open_files(&path),
            Vec::<std::path::PathBuf>::new(),
            "suspended, yet open"
        );
        assert!(!path.with_extension("sqlite-wal").exists());

        let refused = store.journey_ids().unwrap_err().to_string();
        assert!(refused.contains("suspended"), "{refused}");
        assert!(store.outbox_len().is_err());

        store.resume().unwrap();
        store.resume().unwrap();
        assert!(!store.is_suspended());
        assert_eq!(store.outbox_len().unwrap(), 0);
        assert!(store.journey_ids().unwrap().is_empty());
        assert_eq!(
            store.device_id(),
            DeviceStore::open(&path, StoreOptions::default())
                .unwrap()
                .device_id()
        );
    }

    #[test]
    fn the_active_user_survives_a_reopen_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = open_with_a_user(&path);
        let active = store.active_user().unwrap();
        assert!(active.is_some());
        drop(store);
        let reopened = DeviceStore::open(&path, StoreOptions::default()).unwrap();
        assert_eq!(reopened.active_user().unwrap(), active);
        reopened.set_active_user(None).unwrap();
        drop(reopened);
        let again = DeviceStore::open(&path, StoreOptions::default()).unwrap();
        assert_eq!(again.active_user().unwrap(), None);
    }
}
