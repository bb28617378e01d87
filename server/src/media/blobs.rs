//! Where finished media bytes live: an `object_store` (the local filesystem under
//! the data dir by default; S3-compatible storage by configuration, feature `s3`).
//!
//! Keys are content addressed, `{tenant}/{sha256 hex}`: built only from the
//! tenant's id and a hex digest the server computed, so nothing a client wrote
//! (file names, metadata) can reach a storage path, and one content is one blob.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

use super::{MediaConfig, MediaError};

/// Which store blobs go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobConfig {
    /// `{data_dir}/media/blobs`.
    Local,
    /// An S3-compatible bucket (needs the `s3` cargo feature).
    S3 {
        bucket: String,
        region: Option<String>,
        /// e.g. `http://127.0.0.1:9000` for MinIO; absent for AWS.
        endpoint: Option<String>,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
    },
}

/// Bytes per part when a blob is written from a staging file.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// The blob store. The local store is opened on first use, so a server that
/// never receives media makes no directories.
#[derive(Clone)]
pub struct Blobs {
    config: BlobConfig,
    local_root: PathBuf,
    store: Arc<OnceCell<Arc<dyn ObjectStore>>>,
}

/// The content-addressed key of `sha256` (lowercase hex, checked) in `tenant`.
pub fn key(tenant: &str, sha256: &str) -> Result<String, MediaError> {
    let hex_ok = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    let tenant_ok = !tenant.is_empty()
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !hex_ok || !tenant_ok {
        return Err(MediaError::Corrupt(format!(
            "not a blob key: {tenant:?}/{sha256:?}"
        )));
    }
    Ok(format!("{tenant}/{}", sha256.to_ascii_lowercase()))
}

impl Blobs {
    pub fn new(config: &MediaConfig) -> Self {
        Self {
            config: config.blobs.clone(),
            local_root: config.local_blob_dir(),
            store: Arc::new(OnceCell::new()),
        }
    }

    /// Refuses a configuration this build cannot serve (checked at start).
    pub fn check(&self) -> Result<(), MediaError> {
        if let BlobConfig::S3 { bucket, .. } = &self.config {
            if !cfg!(feature = "s3") {
                return Err(MediaError::Blob(
                    "S3 media storage is configured but this server was built without the `s3` feature"
                        .into(),
                ));
            }
            if bucket.is_empty() {
                return Err(MediaError::Blob("the S3 bucket name is empty".into()));
            }
        }
        Ok(())
    }

    /// The local directory blobs are written under (local store only).
    pub fn local_root(&self) -> Option<&std::path::Path> {
        matches!(self.config, BlobConfig::Local).then_some(self.local_root.as_path())
    }

    async fn store(&self) -> Result<&Arc<dyn ObjectStore>, MediaError> {
        self.store
            .get_or_try_init(|| async {
                match &self.config {
                    BlobConfig::Local => {
                        tokio::fs::create_dir_all(&self.local_root)
                            .await
                            .map_err(|e| {
                                MediaError::Blob(format!(
                                    "cannot create {}: {e}",
                                    self.local_root.display()
                                ))
                            })?;
                        let store = LocalFileSystem::new_with_prefix(&self.local_root)
                            .map_err(|e| MediaError::Blob(e.to_string()))?;
                        Ok(Arc::new(store) as Arc<dyn ObjectStore>)
                    }
                    BlobConfig::S3 { .. } => s3_store(&self.config),
                }
            })
            .await
    }

    /// Whether `key` is stored.
    pub async fn exists(&self, key: &str) -> Result<bool, MediaError> {
        match self.store().await?.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(MediaError::Blob(e.to_string())),
        }
    }

    /// Stores small bytes (a thumbnail) under `key`, durably.
    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), MediaError> {
        let path = ObjectPath::from(key);
        self.store()
            .await?
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| MediaError::Blob(e.to_string()))?;
        self.sync_local(key).await
    }

    /// Streams a staging file into `key` (never whole in memory), durably. A key
    /// already stored is the same content: nothing is written.
    pub async fn put_file(&self, key: &str, file: &std::path::Path) -> Result<(), MediaError> {
        if self.exists(key).await? {
            return Ok(());
        }
        let store = self.store().await?;
        let path = ObjectPath::from(key);
        let upload = store
            .put_multipart(&path)
            .await
            .map_err(|e| MediaError::Blob(e.to_string()))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut source = tokio::fs::File::open(file)
            .await
            .map_err(|e| MediaError::Staging(format!("open {}: {e}", file.display())))?;
        let mut buffer = vec![0u8; 1024 * 1024];
        loop {
            let n = source
                .read(&mut buffer)
                .await
                .map_err(|e| MediaError::Staging(format!("read {}: {e}", file.display())))?;
            if n == 0 {
                break;
            }
            writer
                .wait_for_capacity(4)
                .await
                .map_err(|e| MediaError::Blob(e.to_string()))?;
            writer.write(&buffer[..n]);
        }
        writer
            .finish()
            .await
            .map_err(|e| MediaError::Blob(e.to_string()))?;
        self.sync_local(key).await
    }

    /// A blob's bytes as a stream, or `None` if it is not stored.
    pub async fn get(&self, key: &str) -> Result<Option<object_store::GetResult>, MediaError> {
        match self.store().await?.get(&ObjectPath::from(key)).await {
            Ok(result) => Ok(Some(result)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(MediaError::Blob(e.to_string())),
        }
    }

    /// A blob's bytes whole (small blobs: thumbnails, tests).
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, MediaError> {
        match self.get(key).await? {
            Some(result) => Ok(Some(
                result
                    .bytes()
                    .await
                    .map_err(|e| MediaError::Blob(e.to_string()))?
                    .to_vec(),
            )),
            None => Ok(None),
        }
    }

    /// Deletes a blob (purges); one already gone is fine.
    pub async fn delete(&self, key: &str) -> Result<(), MediaError> {
        match self.store().await?.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(MediaError::Blob(e.to_string())),
        }
    }

    /// The local store does not fsync; an acknowledged completion must survive a
    /// power cut, so the file and its directory are synced here.
    async fn sync_local(&self, key: &str) -> Result<(), MediaError> {
        let Some(root) = self.local_root() else {
            return Ok(());
        };
        let file = root.join(key);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            if let Some(dir) = file.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(|e| MediaError::Blob(format!("sync task: {e}")))?
        .map_err(|e| MediaError::Blob(format!("sync {key}: {e}")))
    }
}

#[cfg(feature = "s3")]
fn s3_store(config: &BlobConfig) -> Result<Arc<dyn ObjectStore>, MediaError> {
    let BlobConfig::S3 {
        bucket,
        region,
        endpoint,
        access_key_id,
        secret_access_key,
    } = config
    else {
        return Err(MediaError::Blob("not an S3 configuration".into()));
    };
    let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(region) = region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(key) = access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    let store = builder
        .build()
        .map_err(|e| MediaError::Blob(e.to_string()))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "s3"))]
fn s3_store(_: &BlobConfig) -> Result<Arc<dyn ObjectStore>, MediaError> {
    Err(MediaError::Blob(
        "this server was built without the `s3` feature".into(),
    ))
}
