//! Partial uploads on disk: one file per upload, named by the server-made upload
//! id (never by anything a client sent), under `{data_dir}/media/staging`.
//!
//! A chunk is written at its offset and fsynced before the caller moves the
//! offset in the database, so an acknowledged offset survives a crash. A chunk
//! that fails (too long, digest mismatch, connection cut) is cut off again: the
//! file never holds more than the acknowledged offset for long, and never more
//! than offset + one chunk limit.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use uuid::Uuid;

use super::MediaError;

#[derive(Debug, Clone)]
pub struct Staging {
    dir: PathBuf,
}

/// A chunk that reached the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub len: u64,
    /// SHA-256 of the chunk, lowercase hex.
    pub sha256: String,
}

/// Why a chunk was not written.
#[derive(Debug)]
pub enum ChunkFailure {
    /// More bytes than `limit`: reading stopped there.
    TooLong {
        limit: u64,
    },
    /// The body stream broke (connection reset, …).
    Body(String),
    Io(String),
}

impl Staging {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The staging file of an upload.
    pub fn path(&self, upload: Uuid) -> PathBuf {
        self.dir.join(format!("{}.part", upload.simple()))
    }

    /// Creates an upload's (empty) staging file.
    pub async fn create(&self, upload: Uuid) -> Result<(), MediaError> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| MediaError::Staging(format!("create {}: {e}", self.dir.display())))?;
        let path = self.path(upload);
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .await
            .map_err(|e| MediaError::Staging(format!("create {}: {e}", path.display())))?;
        file.sync_all()
            .await
            .map_err(|e| MediaError::Staging(format!("sync {}: {e}", path.display())))?;
        Ok(())
    }

    /// The staging file's length (0 if missing).
    pub async fn len(&self, upload: Uuid) -> u64 {
        tokio::fs::metadata(self.path(upload))
            .await
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Writes `body` at `offset`, hashing it, reading at most `limit` bytes (one
    /// more is a [`ChunkFailure::TooLong`]); fsyncs before returning. On any
    /// failure the file is cut back to `offset`.
    pub async fn write_at<S, E>(
        &self,
        upload: Uuid,
        offset: u64,
        mut body: S,
        limit: u64,
    ) -> Result<Written, ChunkFailure>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = self.path(upload);
        let io = |what: &str, e: std::io::Error| {
            ChunkFailure::Io(format!("{what} {}: {e}", path.display()))
        };
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| io("create dir for", e))?;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .await
            .map_err(|e| io("open", e))?;
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| io("seek", e))?;
        let mut hasher = Sha256::new();
        let mut len: u64 = 0;
        let outcome = loop {
            match body.next().await {
                None => break Ok(()),
                Some(Err(e)) => break Err(ChunkFailure::Body(e.to_string())),
                Some(Ok(frame)) => {
                    len += frame.len() as u64;
                    if len > limit {
                        break Err(ChunkFailure::TooLong { limit });
                    }
                    hasher.update(&frame);
                    if let Err(e) = file.write_all(&frame).await {
                        break Err(io("write", e));
                    }
                }
            }
        };
        let synced = match outcome {
            Ok(()) => file.flush().await.and(file.sync_data().await),
            Err(failure) => {
                // Cut the partial chunk off again; the offset never moved.
                let _ = file.set_len(offset).await;
                let _ = file.sync_data().await;
                return Err(failure);
            }
        };
        synced.map_err(|e| io("sync", e))?;
        Ok(Written {
            len,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Cuts an upload's file back to `len` (a chunk written but not acknowledged).
    pub async fn truncate(&self, upload: Uuid, len: u64) -> Result<(), MediaError> {
        let path = self.path(upload);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await
            .map_err(|e| MediaError::Staging(format!("open {}: {e}", path.display())))?;
        file.set_len(len)
            .await
            .map_err(|e| MediaError::Staging(format!("truncate {}: {e}", path.display())))?;
        file.sync_data()
            .await
            .map_err(|e| MediaError::Staging(format!("sync {}: {e}", path.display())))
    }

    /// SHA-256 (hex) and length of the first `len` bytes, read in pieces.
    pub async fn digest(&self, upload: Uuid, len: u64) -> Result<String, MediaError> {
        let path = self.path(upload);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| MediaError::Staging(format!("open {}: {e}", path.display())))?;
        let mut reader = file.take(len);
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1024 * 1024];
        loop {
            let n = reader
                .read(&mut buffer)
                .await
                .map_err(|e| MediaError::Staging(format!("read {}: {e}", path.display())))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// Removes an upload's file; a missing one is fine.
    pub async fn remove(&self, upload: Uuid) -> Result<(), MediaError> {
        match tokio::fs::remove_file(self.path(upload)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(MediaError::Staging(format!("remove: {e}"))),
        }
    }
}
