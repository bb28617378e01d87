//! The device's upload client (`core::sync::upload`) against the real server over
//! 127.0.0.1 (embedded SQLite), through the loopback fault proxy (reliability.md
//! E1, issue 5 point 6):
//!
//! - connections reset at random byte offsets inside the request (mid-chunk), and
//!   answers swallowed or cut (a chunk stored but never acknowledged), for sizes
//!   {0, 1, chunk−1, chunk, chunk+1, a ~5 MB real JPEG}: every file arrives byte
//!   identical, exactly once, and the server's offset never exceeds the bytes that
//!   reached it;
//! - the client killed mid-upload at random offsets 50 times (its task aborted,
//!   a fresh client started): the file arrives byte identical, exactly once.
//!
//! Seeded: the seed is printed; `CREWSYNC_SEED=N` replays the proxy's faults and
//! the kill points. `CREWSYNC_SOAK=N` multiplies the trial counts.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use automerge::ActorId;
use crewsync_core::ChangeOrigin;
use crewsync_core::JourneyAction;
use crewsync_core::document::JourneyDocument;
use crewsync_core::ids::{ClientId, DeviceId, JourneyId, LocationId, MediaId};
use crewsync_core::model::{MediaKind, MediaRef, Role, Stamp, Timestamp};
use crewsync_core::sync::upload::{UploadItem, UploadKind, UploadProgress, upload};
use crewsync_core::sync::wire::{self, CONTENT_TYPE, PROTOCOL_VERSION, SyncRequest, WireChange};
use crewsync_server::Services;
use crewsync_server::config::Config;
use crewsync_server::testing::TestTenant;
use crewsync_tests::proxy::{Proxy, Shaping};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use sha2::{Digest, Sha256};

const CHUNK: u64 = 64 * 1024;
/// Bound on one file's attempts: a wedged upload fails the test.
const MAX_ATTEMPTS: u32 = 400;

fn soak() -> u32 {
    std::env::var("CREWSYNC_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

fn seed(default: u64) -> u64 {
    let seed = std::env::var("CREWSYNC_SEED")
        .ok()
        .map(|s| s.parse().expect("CREWSYNC_SEED is a number"))
        .unwrap_or(default);
    println!("seed {seed} (replay with CREWSYNC_SEED={seed})");
    seed
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A real JPEG of about 5 MB: noisy pixels, high quality.
fn big_jpeg() -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(5);
    let image = image::RgbImage::from_fn(1800, 1400, |_, _| {
        image::Rgb([rng.random(), rng.random(), rng.random()])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92)
        .encode_image(&image)
        .unwrap();
    out
}

struct World {
    direct: String,
    addr: std::net::SocketAddr,
    services: Services,
    tenant: TestTenant,
    driver_token: String,
    origin: ChangeOrigin,
    journey: JourneyId,
    files: tempfile::TempDir,
    data: tempfile::TempDir,
}

async fn world() -> World {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: data.path().to_path_buf(),
        ..Config::default()
    };
    config.media.max_chunk_bytes = CHUNK;
    let opened = crewsync_server::storage::open(None, data.path())
        .await
        .unwrap();
    let tenant = TestTenant::create(opened.db.clone(), ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let services = Services::in_process(opened.storage, Arc::clone(&tenant.auth), &config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = crewsync_server::router(services.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let direct = format!("http://{addr}");
    let dispatcher = tenant
        .sign_in(Role::Dispatcher, DeviceId::new())
        .await
        .unwrap();
    let device = DeviceId::new();
    let driver = tenant.sign_in(Role::Driver, device).await.unwrap();
    let journey = common::plan_journey(
        &direct,
        &dispatcher.access_token,
        tenant.location.id,
        driver.user.id,
    )
    .await;
    World {
        direct,
        addr,
        services,
        origin: ChangeOrigin {
            user_id: driver.user.id,
            role: Role::Driver,
            device_id: device,
        },
        driver_token: driver.access_token,
        tenant,
        journey,
        files: tempfile::tempdir().unwrap(),
        data,
    }
}

impl World {
    /// Writes `bytes` to a file and syncs its photo or video entry (directly, as
    /// the device's sync does before its bytes go).
    async fn item(&self, bytes: &[u8], kind: UploadKind, content_type: &str) -> UploadItem {
        let media_id = MediaId::new();
        let path = self.files.path().join(media_id.to_string());
        std::fs::write(&path, bytes).unwrap();
        let sha256 = sha_hex(bytes);
        let tenant = self.tenant.tenant.to_string();
        let record = self
            .services
            .storage
            .journey(&tenant, self.journey)
            .await
            .unwrap();
        let changes = record
            .changes
            .iter()
            .map(|b| automerge::Change::from_bytes(b.clone()).unwrap())
            .collect();
        let mut doc = JourneyDocument::load(
            self.journey,
            record.snapshot.as_deref(),
            changes,
            ActorId::random(),
        )
        .unwrap();
        let media = MediaRef {
            sha256: Some(sha256.clone()),
            size: Some(bytes.len() as u64),
            step: Some(1),
            ..MediaRef::new(
                media_id,
                if kind == UploadKind::Video {
                    MediaKind::Video
                } else {
                    MediaKind::Photo
                },
                Stamp {
                    by: self.origin.user_id,
                    at: Timestamp::now(),
                },
            )
        };
        let mut change = doc
            .apply(
                &JourneyAction::AddMediaRef { media },
                &self.origin,
                Timestamp::now(),
            )
            .unwrap()
            .unwrap();
        let body = wire::encode(&SyncRequest {
            version: PROTOCOL_VERSION,
            device_id: self.origin.device_id,
            actor: change.actor_id().to_bytes().to_vec(),
            cursor: 0,
            changes: vec![WireChange {
                journey: self.journey,
                bytes: change.bytes().into_owned(),
            }],
            max_changes: 1,
            held: None,
            report: None,
        });
        let response = reqwest::Client::new()
            .post(format!("{}/v1/sync", self.direct))
            .bearer_auth(&self.driver_token)
            .header("content-type", CONTENT_TYPE)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer = wire::decode_response(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(answer.acked.len(), 1, "the entry is on the server");
        UploadItem {
            media_id,
            journey_id: self.journey,
            kind,
            content_type: content_type.to_owned(),
            path,
            size: bytes.len() as u64,
            sha256,
        }
    }

    /// The stored original, read directly.
    async fn stored(&self, media: MediaId) -> Vec<u8> {
        let response = reqwest::Client::new()
            .get(format!("{}/v1/media/{media}", self.direct))
            .bearer_auth(&self.driver_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap().to_vec()
    }

    /// Media rows of the tenant for `media` (exactly-once check).
    async fn rows(&self, media: MediaId) -> usize {
        let tenant = self.tenant.tenant.to_string();
        let mut n = 0;
        for kind in ["photo", "video", "signature", "thumbnail"] {
            if crewsync_server::media::db::media(
                &self.services.media.db,
                &tenant,
                media.as_uuid(),
                kind,
            )
            .await
            .unwrap()
            .is_some()
            {
                n += 1;
            }
        }
        n
    }

    /// The server's offset of the item's upload, read directly (0 if none yet).
    async fn server_offset(&self, item: &UploadItem, kind: &str) -> u64 {
        crewsync_server::media::db::upload_of_item(
            &self.services.media.db,
            &self.tenant.tenant.to_string(),
            item.media_id.as_uuid(),
            kind,
        )
        .await
        .unwrap()
        .map_or(0, |row| row.offset())
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn quiet(_: UploadProgress) {}

/// E1: resets at random offsets inside requests, swallowed and cut answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_through_resets_arrive_byte_identical_exactly_once() {
    let seed = seed(11);
    let w = world().await;
    let proxy = Proxy::start(
        w.addr,
        seed,
        Shaping {
            connection_faults: true,
            request_cuts: 35,
            cut_request_below: CHUNK as usize + 4096,
            ..Shaping::default()
        },
    )
    .await
    .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let jpeg = big_jpeg();
    assert!(jpeg.len() > 4_000_000, "a ~5 MB JPEG: {}", jpeg.len());
    // Small files are cheap: many trials; the 5 MB JPEG a few.
    let (small_trials, big_trials) = (10 * soak(), 2 * soak());
    let mut cases: Vec<(String, Vec<u8>, UploadKind, &str)> = Vec::new();
    for size in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1] {
        let bytes: Vec<u8> = (0..size).map(|_| rng.random()).collect();
        cases.push((
            format!("{size} bytes"),
            bytes,
            UploadKind::Video,
            "video/mp4",
        ));
    }
    cases.push(("5 MB JPEG".into(), jpeg, UploadKind::Photo, "image/jpeg"));
    let mut attempts_total = 0;
    let mut files = 0;
    for (name, bytes, kind, content_type) in &cases {
        let trials = if bytes.len() > 1_000_000 {
            big_trials
        } else {
            small_trials
        };
        for trial in 0..trials {
            files += 1;
            let item = w.item(bytes, *kind, content_type).await;
            let kind_name = if *kind == UploadKind::Photo {
                "photo"
            } else {
                "video"
            };
            let mut attempts = 0;
            let item_start = proxy.stat(|s| &s.request_bytes);
            let outcome = loop {
                attempts += 1;
                assert!(attempts <= MAX_ATTEMPTS, "{name} #{trial}: wedged");
                let result = upload(&client(), &proxy.url(), &w.driver_token, &item, &quiet).await;
                // Safety: the server never counts more than reached it (this item's
                // requests, headers included, are all the proxy forwarded since).
                let offset = w.server_offset(&item, kind_name).await;
                let received = proxy.stat(|s| &s.request_bytes) - item_start;
                assert!(
                    offset <= received && offset <= item.size,
                    "{name}: offset {offset} past the {received} bytes forwarded"
                );
                match result {
                    Ok(outcome) => break outcome,
                    Err(
                        crewsync_core::Error::Network(_) | crewsync_core::Error::NetworkUnusable(_),
                    ) => {}
                    Err(other) => panic!("{name} #{trial}: {other}"),
                }
            };
            attempts_total += attempts;
            assert_eq!(outcome.sha256, item.sha256, "{name}");
            assert_eq!(outcome.size, item.size);
            let stored = w.stored(item.media_id).await;
            assert_eq!(
                sha_hex(&stored),
                item.sha256,
                "{name} #{trial}: byte identical"
            );
            assert_eq!(
                w.rows(item.media_id).await,
                1,
                "{name} #{trial}: exactly once"
            );
        }
    }
    let faulted = proxy.stat(|s| &s.faulted);
    println!(
        "{files} files ({small_trials} per small size, {big_trials} JPEGs), {attempts_total} attempts, {faulted} faulted connections of {}",
        proxy.stat(|s| &s.connections)
    );
    assert!(faulted > 10, "the proxy injected faults");
    assert!(attempts_total > files, "some uploads resumed");
}

/// Issue 5 point 6: the client killed mid-upload at random offsets 50 times;
/// each time a fresh client resumes from the server's offset. Files of 40 chunks
/// take several kills each; every file arrives byte identical, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_fifty_times_still_delivers_every_file_once() {
    let seed = seed(23);
    let w = world().await;
    let mut rng = StdRng::seed_from_u64(seed);
    let kills = 50 * soak();
    let size = 40 * CHUNK;
    let new_file = |rng: &mut StdRng| (0..size).map(|_| rng.random()).collect::<Vec<u8>>();
    let mut bytes = new_file(&mut rng);
    let mut item = w.item(&bytes, UploadKind::Video, "video/mp4").await;
    let mut files = Vec::new();
    let mut kill_offsets = Vec::new();
    for kill in 0..kills {
        let at = w.server_offset(&item, "video").await;
        if at + 8 * CHUNK >= size {
            // Near its end: a fresh client finishes it, and the next file starts.
            files.push(finish(&w, &item).await);
            bytes = new_file(&mut rng);
            item = w.item(&bytes, UploadKind::Video, "video/mp4").await;
        }
        let at = w.server_offset(&item, "video").await;
        let target = rng.random_range(at..at + 6 * CHUNK);
        let (tell, told) = tokio::sync::oneshot::channel::<()>();
        let tell = std::sync::Mutex::new(Some(tell));
        let task_item = item.clone();
        let (base, token) = (w.direct.clone(), w.driver_token.clone());
        let mut task = tokio::spawn(async move {
            let progress = move |p: UploadProgress| {
                if p.acked >= target
                    && let Some(tell) = tell.lock().unwrap().take()
                {
                    let _ = tell.send(());
                }
            };
            upload(&client(), &base, &token, &task_item, &progress).await
        });
        tokio::select! {
            _ = told => {}
            finished = &mut task => panic!("kill {kill}: ended before its kill point: {finished:?}"),
        }
        // The kill: the task is dropped wherever it is (often mid-chunk).
        task.abort();
        match task.await {
            Err(e) if e.is_cancelled() => {}
            other => panic!("kill {kill}: {other:?}"),
        }
        let offset = w.server_offset(&item, "video").await;
        assert!(offset < size, "kill {kill}: not complete yet");
        kill_offsets.push(offset);
    }
    files.push(finish(&w, &item).await);
    kill_offsets.sort_unstable();
    kill_offsets.dedup();
    println!(
        "{kills} kills over {} files, at {} distinct server offsets",
        files.len(),
        kill_offsets.len()
    );
    assert!(files.len() >= 3, "several files went through kills");
    assert!(kill_offsets.len() > 10, "kills landed at many offsets");
}

/// A fresh client completes `item`; checks it arrived byte identical, once.
async fn finish(w: &World, item: &UploadItem) -> MediaId {
    let outcome = upload(&client(), &w.direct, &w.driver_token, item, &quiet)
        .await
        .unwrap();
    assert_eq!(outcome.sha256, item.sha256);
    assert!(outcome.resumed_from > 0, "the last client resumed");
    assert_eq!(sha_hex(&w.stored(item.media_id).await), item.sha256);
    assert_eq!(w.rows(item.media_id).await, 1);
    item.media_id
}

/// Control: the byte-identity check above sees one flipped byte in a stored blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_the_byte_identity_check_sees_one_flipped_byte() {
    let w = world().await;
    let bytes: Vec<u8> = (0..3 * CHUNK).map(|i| (i % 241) as u8).collect();
    let item = w.item(&bytes, UploadKind::Video, "video/mp4").await;
    finish_fresh(&w, &item).await;
    let blob = w
        .data
        .path()
        .join("media/blobs")
        .join(w.tenant.tenant.to_string())
        .join(&item.sha256);
    let mut stored = std::fs::read(&blob).unwrap();
    stored[CHUNK as usize] ^= 1;
    std::fs::write(&blob, stored).unwrap();
    assert_ne!(sha_hex(&w.stored(item.media_id).await), item.sha256);
}

async fn finish_fresh(w: &World, item: &UploadItem) {
    let outcome = upload(&client(), &w.direct, &w.driver_token, item, &quiet)
        .await
        .unwrap();
    assert_eq!(sha_hex(&w.stored(item.media_id).await), outcome.sha256);
}
