//! Durable media files. A captured original is written as a temp file in the media
//! directory, fsynced, renamed to its final name, and the directory fsynced — all
//! before the queue row that points at it exists — so a crash at any moment leaves
//! either no file, a stray temp file or an unreferenced complete file (both cleaned
//! up when the store opens), and never a row pointing at a partial file.
//!
//! SHA-256 and size are computed while the bytes stream to disk: no second read.
//! Fail points (`fail` crate, on with core's `testing` feature) mark each step so the
//! crash test can stop the process exactly there.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::Result;

/// Temp files start with this; any left at open time are crash leftovers.
pub const TEMP_PREFIX: &str = ".tmp-";

const CHUNK: usize = 64 * 1024;

/// A complete, fsynced temp file not yet given its final name. Dropping it without
/// [`TempFile::persist`] deletes it (an error path: nothing is stored).
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// The first bytes, for sniffing.
    pub head: Vec<u8>,
    persisted: bool,
}

impl TempFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file to `target` (same directory) and fsyncs the directory, so
    /// the name survives power loss. Returns the final path.
    pub fn persist(mut self, target: &Path) -> Result<PathBuf> {
        fs::rename(&self.path, target)?;
        self.persisted = true;
        fail::fail_point!("media::after_rename");
        if let Some(dir) = target.parent() {
            sync_dir(dir)?;
        }
        fail::fail_point!("media::after_dir_fsync");
        Ok(target.to_path_buf())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Streams `source` into a fresh temp file in `dir`, hashing as it goes, and
/// fsyncs it. On any error the temp file is removed.
pub fn write_temp(dir: &Path, source: &mut dyn Read) -> Result<TempFile> {
    let path = dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let mut temp = TempFile {
        path,
        sha256: String::new(),
        size: 0,
        head: Vec::new(),
        persisted: false,
    };
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        let chunk = &buffer[..n];
        if temp.head.len() < super::sniff::SNIFF_LEN {
            let take = (super::sniff::SNIFF_LEN - temp.head.len()).min(n);
            temp.head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(chunk);
        file.write_all(chunk)?;
        temp.size += n as u64;
    }
    file.flush()?;
    fail::fail_point!("media::after_temp_write");
    file.sync_all()?;
    fail::fail_point!("media::after_fsync");
    temp.sha256 = hex(&hasher.finalize());
    Ok(temp)
}

/// Writes `bytes` durably as a temp file (see [`write_temp`]).
pub fn write_temp_bytes(dir: &Path, bytes: &[u8]) -> Result<TempFile> {
    let mut reader = bytes;
    write_temp(dir, &mut reader)
}

/// fsyncs a directory, making renames and creations inside it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// SHA-256 and size of a file, streaming.
pub fn digest_file(path: &Path) -> Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

/// SHA-256 of bytes in memory, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
