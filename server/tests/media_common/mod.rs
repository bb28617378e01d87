//! Fixtures for the media tests: a server on 127.0.0.1 over embedded SQLite or a
//! throwaway Postgres, with media under a temp data dir and a clock the test moves;
//! a journey crewed by the driver; MediaRefs pushed the way a device pushes them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ObjType, ReadDoc, Value};
use crewsync_core::document::JourneyDocument;
use crewsync_core::ids::{ClientId, DeviceId, JourneyId, LocationId, MediaId};
use crewsync_core::model::{MediaKind, MediaRef, Role, Stamp, Timestamp};
use crewsync_server::Services;
use crewsync_server::config::Config;
use crewsync_server::media::MediaService;
use crewsync_server::testing::TestTenant;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::common::{self, Signer};

/// Which database the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A running server with a tenant, a journey and signed-in users.
pub struct World {
    pub base: String,
    pub http: reqwest::Client,
    pub services: Services,
    pub tenant: TestTenant,
    pub dispatcher: Signer,
    pub driver: Signer,
    pub journey: JourneyId,
    pub clock: Arc<AtomicI64>,
    pub data_dir: tempfile::TempDir,
    _pg: Option<crewsync_testkit::postgres::TestDatabase>,
}

/// Small chunks so a few KiB exercise several; tests can override.
pub const CHUNK: u64 = 64 * 1024;

pub async fn world(backend: Backend) -> World {
    world_with(backend, |_| {}).await
}

pub async fn world_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> World {
    let data_dir = tempfile::tempdir().unwrap();
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(
            tokio::task::spawn_blocking(|| {
                crewsync_testkit::postgres::shared_cluster()
                    .unwrap()
                    .fresh_database()
                    .unwrap()
            })
            .await
            .unwrap(),
        ),
    };
    let mut config = Config {
        data_dir: data_dir.path().to_path_buf(),
        database_url: pg.as_ref().map(|db| db.url.clone()),
        ..Config::default()
    };
    config.media.max_chunk_bytes = CHUNK;
    tweak(&mut config);
    let opened = crewsync_server::storage::open(config.database_url.as_deref(), data_dir.path())
        .await
        .unwrap();
    let tenant = TestTenant::create(opened.db.clone(), ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let mut services =
        Services::in_process(opened.storage, Arc::clone(&tenant.auth), &config).unwrap();
    let clock = Arc::new(AtomicI64::new(chrono::Utc::now().timestamp_millis()));
    let reading = Arc::clone(&clock);
    services.media = Arc::new(
        MediaService::clone(&services.media)
            .with_clock(Arc::new(move || reading.load(Ordering::SeqCst))),
    );
    let base = common::serve_services(&services).await;
    let dispatcher = Signer::sign_in(&tenant, Role::Dispatcher).await;
    let driver = Signer::sign_in(&tenant, Role::Driver).await;
    // No pooled connections: a 409 answered before its body was read closes the
    // connection, and a pooled one would fail the test's next request.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let created: Json = http
        .post(format!("{base}/v1/journeys"))
        .bearer_auth(&dispatcher.token)
        .json(&json!({"date": chrono::Utc::now().date_naive(), "location_id": tenant.location.id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let journey: JourneyId = serde_json::from_value(created["id"].clone()).unwrap();
    let status = http
        .post(format!("{base}/v1/journeys/{journey}/crew"))
        .bearer_auth(&dispatcher.token)
        .json(&json!({"user_id": driver.user}))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success());
    World {
        base,
        http,
        services,
        tenant,
        dispatcher,
        driver,
        journey,
        clock,
        data_dir,
        _pg: pg,
    }
}

/// A file to upload and what its entry says.
#[derive(Debug, Clone)]
pub struct Item {
    pub media_id: MediaId,
    pub kind: &'static str,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl Item {
    pub fn new(kind: &'static str, content_type: &'static str, bytes: Vec<u8>) -> Self {
        Self {
            media_id: MediaId::new(),
            kind,
            content_type,
            sha256: sha_hex(&bytes),
            bytes,
        }
    }

    pub fn create_body(&self, journey: JourneyId) -> Json {
        json!({
            "media_id": self.media_id,
            "journey_id": journey,
            "kind": self.kind,
            "content_type": self.content_type,
            "size": self.bytes.len(),
            "sha256": self.sha256,
        })
    }
}

/// A real JPEG of `w`×`h` with noisy pixels (so it does not compress to nothing).
pub fn jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(w, h, |x, y| {
        let v = x
            .wrapping_mul(2_654_435_761)
            .wrapping_add(y.wrapping_mul(40_503))
            .wrapping_add(seed);
        image::Rgb([(v >> 3) as u8, (v >> 11) as u8, (v >> 19) as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&image)
        .unwrap();
    out
}

pub fn png(w: u32, h: u32) -> Vec<u8> {
    let image = image::GrayImage::from_fn(w, h, |x, y| image::Luma([((x + y) % 2 * 255) as u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

impl World {
    pub fn tenant_key(&self) -> String {
        self.tenant.tenant.to_string()
    }

    pub fn advance(&self, millis: i64) {
        self.clock.fetch_add(millis, Ordering::SeqCst);
    }

    /// Pushes `item`'s MediaRef (as `who`) the way a device does: an automerge
    /// change on the journey through `/v1/sync`. `thumbnail` adds the device
    /// thumbnail's hash and size to the entry.
    pub async fn push_entry(&self, who: &Signer, item: &Item, thumbnail: Option<&Item>) {
        self.push_entry_as(
            who,
            item.media_id,
            item.kind,
            &item.sha256,
            item.bytes.len(),
            thumbnail,
        )
        .await;
    }

    pub async fn push_entry_as(
        &self,
        who: &Signer,
        media_id: MediaId,
        kind: &str,
        sha256: &str,
        size: usize,
        thumbnail: Option<&Item>,
    ) {
        let change = media_ref_change(
            self.services.storage.as_ref(),
            &self.tenant_key(),
            self.journey,
            &who.origin(),
            media_id,
            kind,
            sha256,
            size as u64,
            thumbnail.map(|t| (t.sha256.as_str(), t.bytes.len() as u64)),
        )
        .await;
        common::push(&self.base, &who.token, &[(self.journey, change)]).await;
    }

    /// `POST /v1/media/uploads` as `token`: status and JSON.
    pub async fn create(&self, token: &str, body: &Json) -> (u16, Json) {
        let response = self
            .http
            .post(format!("{}/v1/media/uploads", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Json::Null))
    }

    pub async fn head(&self, token: &str, upload: &str) -> (u16, Option<u64>) {
        let response = self
            .http
            .head(format!("{}/v1/media/uploads/{upload}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), offset_of(&response))
    }

    /// PATCHes `chunk` at `offset` with its own digest (or `digest`).
    pub async fn patch(
        &self,
        token: &str,
        upload: &str,
        offset: u64,
        chunk: &[u8],
        digest: Option<&str>,
    ) -> (u16, Option<u64>, Json) {
        let response = self
            .http
            .patch(format!("{}/v1/media/uploads/{upload}", self.base))
            .bearer_auth(token)
            .header("upload-offset", offset)
            .header(
                "chunk-sha256",
                digest.map_or_else(|| sha_hex(chunk), str::to_owned),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let offset = offset_of(&response);
        (status, offset, response.json().await.unwrap_or(Json::Null))
    }

    pub async fn complete(&self, token: &str, upload: &str) -> (u16, Json) {
        let response = self
            .http
            .post(format!("{}/v1/media/uploads/{upload}/complete", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Json::Null))
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Vec<u8>) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }

    /// Creates, sends every chunk and completes; returns the completion.
    pub async fn upload_all(&self, token: &str, item: &Item) -> (u16, Json) {
        let (status, state) = self.create(token, &item.create_body(self.journey)).await;
        assert!(status == 201 || status == 200, "create: {status} {state}");
        let upload = state["upload_id"].as_str().unwrap().to_owned();
        let mut offset = state["offset"].as_u64().unwrap();
        while offset < item.bytes.len() as u64 {
            let end = (offset + CHUNK).min(item.bytes.len() as u64);
            let (status, next, body) = self
                .patch(
                    token,
                    &upload,
                    offset,
                    &item.bytes[offset as usize..end as usize],
                    None,
                )
                .await;
            assert_eq!(status, 204, "{body}");
            offset = next.unwrap();
        }
        self.complete(token, &upload).await
    }

    /// How many media rows the tenant has for `media_id`, read in SQL.
    pub async fn media_rows(&self, media_id: MediaId) -> i64 {
        let sql = "SELECT COUNT(*) FROM media WHERE tenant = $1 AND media_id = $2";
        let n: (i64,) = match self.services.auth.directory.db() {
            // Row-level security: a transaction bound to the tenant, as the server's.
            crewsync_server::directory::Db::Postgres(pool) => {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("SELECT set_config('crewsync.tenant', $1, true)")
                    .bind(self.tenant_key())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                sqlx::query_as(sql)
                    .bind(self.tenant_key())
                    .bind(media_id.as_uuid())
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap()
            }
            crewsync_server::directory::Db::Sqlite { readers, .. } => sqlx::query_as(sql)
                .bind(self.tenant_key())
                .bind(media_id.as_uuid())
                .fetch_one(readers)
                .await
                .unwrap(),
        };
        n.0
    }

    /// Every file under the data dir's media folder, relative.
    pub fn media_files(&self) -> Vec<PathBuf> {
        let root = self.data_dir.path().join("media");
        let mut out = Vec::new();
        walk(&root, &root, &mut out);
        out.sort();
        out
    }

    /// Files of the blob store (relative to it).
    pub fn blob_files(&self) -> Vec<PathBuf> {
        let root = self.data_dir.path().join("media").join("blobs");
        let mut out = Vec::new();
        walk(&root, &root, &mut out);
        out
    }

    pub fn staging_file(&self, upload: &str) -> PathBuf {
        let id = uuid::Uuid::parse_str(upload).unwrap();
        self.services.media.staging.path(id)
    }

    pub async fn sign_in(&self, role: Role) -> Signer {
        Signer::sign_in(&self.tenant, role).await
    }
}

/// A device's change adding a `MediaRef` (plus the device thumbnail's hash and
/// size when given) to the journey as the server holds it.
#[allow(clippy::too_many_arguments)]
pub async fn media_ref_change(
    storage: &dyn crewsync_server::storage::Storage,
    tenant: &str,
    journey: JourneyId,
    origin: &crewsync_core::ChangeOrigin,
    media_id: MediaId,
    kind: &str,
    sha256: &str,
    size: u64,
    thumbnail: Option<(&str, u64)>,
) -> Vec<u8> {
    let record = storage.journey(tenant, journey).await.unwrap();
    let changes = record
        .changes
        .iter()
        .map(|b| automerge::Change::from_bytes(b.clone()).unwrap())
        .collect();
    let doc = JourneyDocument::load(
        journey,
        record.snapshot.as_deref(),
        changes,
        ActorId::random(),
    )
    .unwrap();
    let mut am = AutoCommit::load(&doc.save()).unwrap();
    am.set_actor(ActorId::random());
    let media_map = match am.get(automerge::ROOT, "media").unwrap() {
        Some((Value::Object(ObjType::Map), id)) => id,
        other => panic!("no media map: {other:?}"),
    };
    let media_kind = match kind {
        "photo" => MediaKind::Photo,
        "video" => MediaKind::Video,
        _ => MediaKind::Signature,
    };
    let entry = MediaRef {
        sha256: Some(sha256.to_owned()),
        size: Some(size),
        step: Some(1),
        ..MediaRef::new(
            media_id,
            media_kind,
            Stamp {
                at: Timestamp::now(),
                by: origin.user_id,
            },
        )
    };
    autosurgeon::reconcile_prop(&mut am, &media_map, media_id.to_string().as_str(), &entry)
        .unwrap();
    if let Some((thumb_sha, thumb_size)) = thumbnail {
        let (_, obj) = am.get(&media_map, media_id.to_string()).unwrap().unwrap();
        am.put(&obj, "thumbnail_sha256", thumb_sha).unwrap();
        am.put(&obj, "thumbnail_size", thumb_size).unwrap();
    }
    am.commit_with(
        CommitOptions::default()
            .with_message(origin.message("add_media_ref"))
            .with_time(chrono::Utc::now().timestamp()),
    );
    am.get_last_local_change().unwrap().raw_bytes().to_vec()
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}

/// Sends a raw HTTP/1.1 request over a fresh socket and returns the status code
/// (for bodies reqwest will not make: chunked without a length, lying lengths).
pub async fn raw_status(base: &str, head: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) and close before taking everything.
    let _ = socket.write_all(body).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    let line = String::from_utf8_lossy(&answer);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub fn offset_of(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get("upload-offset")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A device id nobody uses.
pub fn new_device() -> DeviceId {
    DeviceId::new()
}
