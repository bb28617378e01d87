//! The device's media queue driven by the sync runtime (`SyncClient`) against the
//! real server over 127.0.0.1 (embedded SQLite), issue 5 points 3 and 6:
//!
//! - E6: 40 photos (real JPEGs of various sizes) and a customer signature captured
//!   offline, then one `sync_now`: the server finished the signature (entry, then
//!   bytes) before the first byte of any photo original reached it, all 81 files
//!   (40 originals, 40 thumbnails, the signature) arrive byte identical, each sent
//!   exactly once, and the queue ends empty. The order is read from the server's
//!   own request log (a layer around its router), which no client can write.
//!   Control: the same checker catches a queue that puts the signature last.
//! - A `SyncClient` killed mid-upload and a fresh one on the reopened store: it
//!   goes on from the server's offset.
//! - The dispatcher's sync-health view shows the device's pending media bytes
//!   before the upload and none after (control: without the report exchange that
//!   follows an upload round, the view stays stale).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use crewsync_core::ids::{DeviceId, JourneyId, LocationId, MediaId};
use crewsync_core::media::MediaOptions;
use crewsync_core::media::queue::{ItemState, UploadKind};
use crewsync_core::media::{NetworkKind, SignatureCapture, Stroke, StrokePoint};
use crewsync_core::model::{MediaRef, Role, SignerRole, Timestamp};
use crewsync_core::store::{CaptureInfo, MediaSource};
use crewsync_core::sync::runtime::SyncClient;
use crewsync_core::{DeviceStore, StoreOptions};
use crewsync_server::Services;
use crewsync_server::config::Config;
use crewsync_server::testing::TestTenant;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What the server saw, in the order it saw it: a request arriving (with its
/// `Upload-Offset` and length) and the answer it produced.
#[derive(Debug, Clone)]
enum Event {
    Arrived {
        method: String,
        path: String,
        offset: Option<u64>,
        length: u64,
    },
    Answered {
        method: String,
        path: String,
        status: u16,
    },
}

type Log = Arc<Mutex<Vec<Event>>>;

/// The layer that writes the server's request log.
async fn record(State(log): State<Log>, request: Request, next: Next) -> Response {
    let (method, path) = (
        request.method().to_string(),
        request.uri().path().to_owned(),
    );
    let (offset, length) = {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        (
            header("upload-offset"),
            header("content-length").unwrap_or(0),
        )
    };
    log.lock().unwrap().push(Event::Arrived {
        method: method.clone(),
        path: path.clone(),
        offset,
        length,
    });
    let response = next.run(request).await;
    log.lock().unwrap().push(Event::Answered {
        method,
        path,
        status: response.status().as_u16(),
    });
    response
}

struct World {
    url: String,
    services: Services,
    tenant: TestTenant,
    dispatcher: String,
    journey: JourneyId,
    log: Log,
    data: tempfile::TempDir,
}

async fn world(chunk: u64) -> World {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: data.path().to_path_buf(),
        ..Config::default()
    };
    config.media.max_chunk_bytes = chunk;
    let opened = crewsync_server::storage::open(None, data.path())
        .await
        .unwrap();
    let tenant = TestTenant::create(
        opened.db.clone(),
        crewsync_core::ids::ClientId::new(),
        LocationId::new(),
    )
    .await
    .unwrap();
    let services = Services::in_process(opened.storage, Arc::clone(&tenant.auth), &config).unwrap();
    let log: Log = Arc::default();
    let router = crewsync_server::router(services.clone()).layer(
        axum::middleware::from_fn_with_state(Arc::clone(&log), record),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let url = format!("http://{addr}");
    let dispatcher = tenant
        .sign_in(Role::Dispatcher, DeviceId::new())
        .await
        .unwrap()
        .access_token;
    let journey = common::plan_journey(
        &url,
        &dispatcher,
        tenant.location.id,
        tenant.user(Role::Driver).id,
    )
    .await;
    World {
        url,
        services,
        tenant,
        dispatcher,
        journey,
        log,
        data,
    }
}

/// The driver's device: a store file in a temp dir, signed in, holding the journey.
struct Device {
    path: PathBuf,
    store: Arc<DeviceStore>,
    sync: Arc<SyncClient>,
    _dir: tempfile::TempDir,
}

impl World {
    async fn device(&self) -> Device {
        self.device_with(StoreOptions::default()).await
    }

    async fn device_with(&self, options: StoreOptions) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sqlite");
        let store = DeviceStore::open(&path, options).unwrap();
        store
            .upsert_location(&self.tenant.device_location())
            .unwrap();
        let tokens = self
            .tenant
            .sign_in(Role::Driver, store.device_id())
            .await
            .unwrap();
        store.save_sign_in(&tokens, true).unwrap();
        let sync = SyncClient::new(Arc::clone(&store), &self.url).unwrap();
        sync.sync_now().await.unwrap();
        assert!(store.journey_ids().unwrap().contains(&self.journey));
        Device {
            path,
            store,
            sync,
            _dir: dir,
        }
    }

    /// The server's upload id of one item.
    async fn upload_id(&self, media: MediaId, kind: UploadKind) -> Uuid {
        crewsync_server::media::db::upload_of_item(
            &self.services.media.db,
            &self.tenant.tenant.to_string(),
            media.as_uuid(),
            &kind.to_string(),
        )
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no upload of {media} {kind}"))
        .id
    }

    async fn server_offset(&self, media: MediaId, kind: UploadKind) -> u64 {
        crewsync_server::media::db::upload_of_item(
            &self.services.media.db,
            &self.tenant.tenant.to_string(),
            media.as_uuid(),
            &kind.to_string(),
        )
        .await
        .unwrap()
        .map_or(0, |row| row.offset())
    }

    /// The bytes the server stored for one item (its blob, read from disk).
    async fn stored(&self, media: MediaId, kind: UploadKind) -> Vec<u8> {
        let row = crewsync_server::media::db::media(
            &self.services.media.db,
            &self.tenant.tenant.to_string(),
            media.as_uuid(),
            &kind.to_string(),
        )
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no stored {media} {kind}"));
        std::fs::read(self.data.path().join("media/blobs").join(&row.blob_key)).unwrap()
    }

    /// What the dispatcher's sync-health view says the device has not uploaded.
    async fn dispatcher_sees_pending(&self, device: DeviceId) -> u64 {
        let trucks: Value = reqwest::Client::new()
            .get(format!(
                "{}/v1/sync-health?date={}",
                self.url,
                chrono::Utc::now().date_naive()
            ))
            .bearer_auth(&self.dispatcher)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let truck = trucks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["journey_id"] == json!(self.journey))
            .unwrap();
        let device = truck["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device_id"] == json!(device))
            .unwrap_or_else(|| panic!("no device {device} in {truck}"));
        device["pending_media_bytes"].as_u64().unwrap()
    }

    /// Waits (bounded) until the server answered every request that reached it, so
    /// a chunk in flight at a kill has landed or failed before the test reads state.
    async fn quiet(&self) {
        for _ in 0..200 {
            let events = self.events();
            let arrived = events
                .iter()
                .filter(|e| matches!(e, Event::Arrived { .. }))
                .count();
            if arrived == events.len() - arrived {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn events(&self) -> Vec<Event> {
        self.log.lock().unwrap().clone()
    }
}

/// A real JPEG of `width`×`height`: a gradient with seeded noise, so sizes vary.
fn photo(rng: &mut StdRng, width: u32, height: u32) -> Vec<u8> {
    let noise: u8 = rng.random_range(4..64);
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        let n = |rng: &mut StdRng| rng.random_range(0..noise);
        image::Rgb([
            ((x * 255 / width) as u8).wrapping_add(n(rng)),
            ((y * 255 / height) as u8).wrapping_add(n(rng)),
            128u8.wrapping_add(n(rng)),
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 88)
        .encode_image(&image)
        .unwrap();
    out
}

fn signature() -> SignatureCapture {
    let point = |x: f32, y: f32, t: i64| StrokePoint {
        x,
        y,
        at: Timestamp(1_700_000_000_000 + t),
        pressure: None,
    };
    SignatureCapture {
        signer_name: "Ada Customer".into(),
        signer_role: SignerRole::Customer,
        document: "bill_of_lading".into(),
        document_sha256: "ab".repeat(32),
        consent: true,
        canvas_width: 400,
        canvas_height: 160,
        strokes: vec![Stroke {
            points: vec![
                point(20.0, 120.0, 0),
                point(90.0, 30.0, 20),
                point(180.0, 130.0, 40),
                point(380.0, 40.0, 60),
            ],
        }],
        step: None,
        gps: None,
    }
}

/// Captures `photos` photos (sizes drawn from `seed`), then the signature, with
/// the device offline. Returns the photos' and the signature's `MediaRef`s.
fn capture_offline(
    device: &Device,
    journey: JourneyId,
    photos: usize,
    seed: u64,
) -> (Vec<MediaRef>, MediaRef) {
    device.store.set_network(NetworkKind::Offline).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut refs = Vec::new();
    for _ in 0..photos {
        let (width, height) = (rng.random_range(120..1400), rng.random_range(90..1000));
        let bytes = photo(&mut rng, width, height);
        refs.push(
            device
                .store
                .capture_photo(journey, MediaSource::Bytes(bytes), CaptureInfo::default())
                .unwrap(),
        );
    }
    let signed = device
        .store
        .capture_signature(journey, &signature())
        .unwrap();
    (refs, signed)
}

/// Every queued file's bytes' SHA-256, by (media, kind), read before the upload
/// (uploaded files are deleted from the device afterwards).
fn queued_files(store: &DeviceStore) -> HashMap<(MediaId, UploadKind), (String, u64)> {
    store
        .upload_queue()
        .unwrap()
        .into_iter()
        .map(|item| {
            let bytes = std::fs::read(&item.path).unwrap();
            assert_eq!(sha_hex(&bytes), item.sha256);
            ((item.media_id, item.kind), (item.sha256, item.size))
        })
        .collect()
}

/// The E6 checker, over the server's request log: the signature's upload was
/// completed (answered 200) before the first chunk of any photo original arrived,
/// and so was every thumbnail's.
fn signature_and_thumbnails_first(
    events: &[Event],
    signature: Uuid,
    thumbnails: &HashSet<Uuid>,
    originals: &HashSet<Uuid>,
) -> Result<(), String> {
    let upload_of = |path: &str| {
        path.strip_prefix("/v1/media/uploads/")
            .and_then(|rest| rest.split('/').next())
            .and_then(|id| id.parse::<Uuid>().ok())
    };
    let completed = |id: Uuid| {
        events.iter().position(|e| {
            matches!(e, Event::Answered { method, path, status: 200 }
                if method == "POST" && path.ends_with("/complete") && upload_of(path) == Some(id))
        })
    };
    let first_original_byte = events
        .iter()
        .position(|e| {
            matches!(e, Event::Arrived { method, path, .. }
                if method == "PATCH" && upload_of(path).is_some_and(|u| originals.contains(&u)))
        })
        .ok_or("no chunk of any original reached the server")?;
    let signed = completed(signature).ok_or("the signature never completed")?;
    if signed > first_original_byte {
        return Err(format!(
            "the signature completed at event {signed}, after a photo original's first chunk at {first_original_byte}"
        ));
    }
    for thumbnail in thumbnails {
        let done = completed(*thumbnail).ok_or("a thumbnail never completed")?;
        if done > first_original_byte {
            return Err(format!(
                "thumbnail {thumbnail} completed at event {done}, after an original's first chunk at {first_original_byte}"
            ));
        }
    }
    Ok(())
}

/// Per upload id: the bytes of every chunk that arrived, whatever the answer.
fn chunk_bytes(events: &[Event]) -> HashMap<Uuid, u64> {
    let mut sent = HashMap::new();
    for event in events {
        if let Event::Arrived {
            method,
            path,
            length,
            ..
        } = event
            && method == "PATCH"
            && let Some(id) = path
                .strip_prefix("/v1/media/uploads/")
                .and_then(|id| id.parse::<Uuid>().ok())
        {
            *sent.entry(id).or_insert(0) += *length;
        }
    }
    sent
}

/// E6 (reliability.md §E, issue 5 point 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_photos_and_a_signature_captured_offline_go_signature_first_each_once() {
    let w = world(256 * 1024).await;
    let device = w.device().await;
    let (photos, signed) = capture_offline(&device, w.journey, 40, 6);
    let files = queued_files(&device.store);
    assert_eq!(files.len(), 81, "40 originals, 40 thumbnails, 1 signature");
    let total: u64 = files.values().map(|(_, size)| size).sum();

    device.store.set_network(NetworkKind::Wifi).unwrap();
    let started = Instant::now();
    let outcome = device.sync.sync_now().await.unwrap();
    let took = started.elapsed();
    println!(
        "E6: 81 files, {total} bytes uploaded in {took:?} on loopback ({:.1} MB/s), {} round trips",
        total as f64 / took.as_secs_f64() / 1e6,
        outcome.round_trips
    );
    assert_eq!(outcome.media.uploaded, 81, "{outcome:?}");
    assert_eq!(
        (outcome.media.failed, outcome.media.waiting_for_entry),
        (0, 0)
    );
    assert_eq!(outcome.media.bytes, total);
    assert_eq!(outcome.media.purged, 81);

    // Order, read from the server's log.
    let events = w.events();
    let signature = w.upload_id(signed.id, UploadKind::Signature).await;
    let mut thumbnails = HashSet::new();
    let mut originals = HashSet::new();
    for photo in &photos {
        thumbnails.insert(w.upload_id(photo.id, UploadKind::Thumbnail).await);
        originals.insert(w.upload_id(photo.id, UploadKind::Photo).await);
    }
    signature_and_thumbnails_first(&events, signature, &thumbnails, &originals).unwrap();

    // Every file byte identical, each byte sent exactly once.
    let sent = chunk_bytes(&events);
    for ((media, kind), (sha256, size)) in &files {
        let stored = w.stored(*media, *kind).await;
        assert_eq!(&sha_hex(&stored), sha256, "{media} {kind}: byte identical");
        let upload = w.upload_id(*media, *kind).await;
        assert_eq!(
            sent.get(&upload).copied().unwrap_or(0),
            *size,
            "{media} {kind}: sent once"
        );
    }
    let completions = events
        .iter()
        .filter(|e| matches!(e, Event::Answered { path, status: 200, .. } if path.ends_with("/complete")))
        .count();
    assert_eq!(completions, 81, "each upload completed once");

    // The queue ends empty, its files gone; the office sees nothing pending.
    assert!(device.store.upload_queue().unwrap().is_empty());
    let progress = device.store.media_progress().unwrap();
    assert_eq!((progress.pending_items, progress.pending_bytes), (0, 0));
    let status = device.sync.status().borrow().clone();
    assert_eq!((status.media.pending_items, status.uploading), (0, None));
    let left: Vec<_> = std::fs::read_dir(device.store.media_dir())
        .unwrap()
        .collect();
    assert!(left.is_empty(), "uploaded files are purged: {left:?}");
    assert_eq!(w.dispatcher_sees_pending(device.store.device_id()).await, 0);
}

/// Control for E6: a queue that puts the signature after the photos (its lane
/// moved behind the originals in the device's SQLite file) is caught by the same
/// checker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_a_queue_with_photos_first_is_caught() {
    let w = world(256 * 1024).await;
    let device = w.device().await;
    let (photos, signed) = capture_offline(&device, w.journey, 3, 7);
    let moved = rusqlite::Connection::open(&device.path)
        .unwrap()
        .execute(
            "UPDATE media_queue SET lane = 3 WHERE kind = 'signature'",
            [],
        )
        .unwrap();
    assert_eq!(moved, 1);
    device.store.set_network(NetworkKind::Wifi).unwrap();
    let outcome = device.sync.sync_now().await.unwrap();
    assert_eq!(outcome.media.uploaded, 7);
    let signature = w.upload_id(signed.id, UploadKind::Signature).await;
    let mut thumbnails = HashSet::new();
    let mut originals = HashSet::new();
    for photo in &photos {
        thumbnails.insert(w.upload_id(photo.id, UploadKind::Thumbnail).await);
        originals.insert(w.upload_id(photo.id, UploadKind::Photo).await);
    }
    let verdict = signature_and_thumbnails_first(&w.events(), signature, &thumbnails, &originals);
    assert!(
        verdict.as_ref().is_err_and(|e| e.contains("signature")),
        "the checker must catch it: {verdict:?}"
    );
}

/// A `SyncClient` killed in the middle of an original, and a fresh one on the
/// reopened store file: it goes on from the server's offset, and the file arrives
/// byte identical with no byte sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sync_client_resumes_from_the_servers_offset() {
    const CHUNK: u64 = 32 * 1024;
    let w = world(CHUNK).await;
    let device = w.device().await;
    let mut rng = StdRng::seed_from_u64(9);
    let bytes = photo(&mut rng, 1100, 800);
    assert!(bytes.len() as u64 > 12 * CHUNK, "{} bytes", bytes.len());
    let media = device
        .store
        .capture_photo(
            w.journey,
            MediaSource::Bytes(bytes.clone()),
            CaptureInfo::default(),
        )
        .unwrap();
    let size = bytes.len() as u64;
    // The entry goes first (still offline), then the upload on Wi-Fi.
    device.sync.sync_now().await.unwrap();
    device.store.set_network(NetworkKind::Wifi).unwrap();
    let mut status = device.sync.status();
    let sync = Arc::clone(&device.sync);
    let task = tokio::spawn(async move { sync.upload_media().await });
    // Kill once the server acknowledged a few chunks of the original.
    let seen = tokio::time::timeout(
        Duration::from_secs(60),
        status.wait_for(|s| {
            s.uploading == Some(media.id) && s.media.pending_bytes + 4 * CHUNK <= size
        }),
    )
    .await;
    assert!(matches!(seen, Ok(Ok(_))), "the upload got under way");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled(), "killed mid-upload");
    w.quiet().await;
    let at_kill = w.server_offset(media.id, UploadKind::Photo).await;
    assert!(
        at_kill > 0 && at_kill < size,
        "mid-upload: {at_kill} of {size}"
    );
    let before_restart = w.events().len();

    // The app restarts: the store reopened from its file, a new client.
    let Device {
        path,
        store,
        sync,
        _dir,
    } = device;
    drop(sync);
    drop(store);
    let store = DeviceStore::open(&path, StoreOptions::default()).unwrap();
    store.set_network(NetworkKind::Wifi).unwrap();
    let pending = store.media_progress().unwrap();
    assert_eq!(pending.pending_items, 1);
    let sync = SyncClient::new(Arc::clone(&store), &w.url).unwrap();
    let outcome = sync.sync_now().await.unwrap();
    assert_eq!(
        (outcome.media.uploaded, outcome.media.resumed),
        (1, 1),
        "{outcome:?}"
    );
    // The offset may have moved on by a chunk acknowledged while the kill landed.
    let resumed_at = first_chunk_offset(&w.events()[before_restart..]).unwrap();
    let at_restart = at_kill.max(resumed_at);
    resumed_from_server_offset(&w.events()[before_restart..], at_kill, CHUNK).unwrap();
    assert_eq!(outcome.media.bytes, size - at_restart);
    assert_eq!(
        sha_hex(&w.stored(media.id, UploadKind::Photo).await),
        media.sha256.clone().unwrap()
    );
    let upload = w.upload_id(media.id, UploadKind::Photo).await;
    // The protocol's promise: a kill costs at most one chunk. The killed client's
    // last chunk can still reach the server after the new client asked for the
    // offset; the server refuses it (409) and the new client follows, so that one
    // chunk's bytes arrive twice, never more.
    let sent = chunk_bytes(&w.events())[&upload];
    assert!(
        (size..=size + CHUNK).contains(&sent),
        "{sent} bytes sent for a {size}-byte file: more than one chunk twice"
    );
    assert!(store.upload_queue().unwrap().is_empty());

    // Control: the checker sees a client that started over from 0.
    let restarted = [Event::Arrived {
        method: "PATCH".into(),
        path: format!("/v1/media/uploads/{upload}"),
        offset: Some(0),
        length: CHUNK,
    }];
    assert!(resumed_from_server_offset(&restarted, at_kill, CHUNK).is_err());
}

fn first_chunk_offset(events: &[Event]) -> Option<u64> {
    events.iter().find_map(|e| match e {
        Event::Arrived { method, offset, .. } if method == "PATCH" => *offset,
        _ => None,
    })
}

/// The first chunk after a restart starts at the server's offset at the kill (or
/// one chunk on, when the chunk in flight at the kill was stored), never before.
fn resumed_from_server_offset(events: &[Event], at_kill: u64, chunk: u64) -> Result<(), String> {
    let first = first_chunk_offset(events).ok_or("no chunk after the restart")?;
    if first == at_kill || first == at_kill + chunk {
        Ok(())
    } else {
        Err(format!("resumed at {first}, the server held {at_kill}"))
    }
}

/// The office sees the device's pending media bytes through sync, and sees them
/// go once uploaded. Control: an upload round with no report exchange after it
/// leaves the office's view stale, which the same check notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_sees_pending_media_bytes_go_down_through_sync() {
    let w = world(256 * 1024).await;
    let device = w.device().await;
    let (_, _) = capture_offline(&device, w.journey, 2, 8);
    let pending = device.store.media_progress().unwrap().pending_bytes;
    assert!(pending > 0);
    // Entries synced, bytes held back (the app says: offline for uploads).
    device.sync.sync_now().await.unwrap();
    assert_eq!(
        w.dispatcher_sees_pending(device.store.device_id()).await,
        pending
    );
    let status = device.sync.status().borrow().clone();
    assert_eq!(status.media.pending_bytes, pending, "the app sees it too");

    // Control: the upload alone (no exchange after it) leaves the view stale.
    device.store.set_network(NetworkKind::Wifi).unwrap();
    let uploaded = device.sync.upload_media().await.unwrap();
    assert_eq!(uploaded.uploaded, 5);
    assert_eq!(uploaded.progress.pending_bytes, 0);
    assert_ne!(
        w.dispatcher_sees_pending(device.store.device_id()).await,
        0,
        "stale"
    );

    // A sync reports it.
    device.sync.sync_now().await.unwrap();
    assert_eq!(w.dispatcher_sees_pending(device.store.device_id()).await, 0);
}

/// A file the server refuses (its bytes no longer match the hash its entry names)
/// is counted and, after its last attempt, set aside with the reason while the
/// rest go on; an item whose entry the server does not hold yet waits for a later
/// round without an attempt counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_file_is_set_aside_and_an_unsynced_entry_waits_without_counting() {
    let w = world(256 * 1024).await;
    let device = w
        .device_with(StoreOptions {
            media: MediaOptions {
                max_attempts: 1,
                ..MediaOptions::default()
            },
            ..StoreOptions::default()
        })
        .await;
    let (photos, _signed) = capture_offline(&device, w.journey, 1, 10);
    let original = device
        .store
        .upload_queue()
        .unwrap()
        .into_iter()
        .find(|i| i.kind == UploadKind::Photo)
        .unwrap();
    // Same size, other bytes: only the server's whole-file check can tell.
    let mut bytes = std::fs::read(&original.path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    std::fs::write(&original.path, &bytes).unwrap();

    device.store.set_network(NetworkKind::Wifi).unwrap();
    let outcome = device.sync.sync_now().await.unwrap();
    assert_eq!(
        (
            outcome.media.uploaded,
            outcome.media.failed,
            outcome.media.set_aside
        ),
        (2, 1, 1),
        "signature and thumbnail went, the original was refused: {outcome:?}"
    );
    let item = device.store.upload_item(&original.item_id).unwrap();
    assert_eq!(item.state, ItemState::SetAside);
    assert!(
        item.last_error
            .as_deref()
            .is_some_and(|e| e.contains("digest")),
        "{item:?}"
    );
    assert_eq!(outcome.media.progress.set_aside_items, 1);
    assert!(
        !w.stored(photos[0].id, UploadKind::Thumbnail)
            .await
            .is_empty()
    );

    // An entry the server has not got (its change still unsent, the queue row
    // made to forget it): 409 entry_not_synced, no attempt counted.
    let j = w.journey;
    let late = device
        .store
        .capture_photo(
            j,
            MediaSource::Bytes(photo(&mut StdRng::seed_from_u64(1), 300, 200)),
            CaptureInfo::default(),
        )
        .unwrap();
    rusqlite::Connection::open(&device.path)
        .unwrap()
        .execute(
            "UPDATE media_queue SET change_hash = NULL WHERE media_id = ?1",
            [late.id.to_string()],
        )
        .unwrap();
    let waited = device.sync.upload_media().await.unwrap();
    assert_eq!(
        (waited.uploaded, waited.waiting_for_entry, waited.failed),
        (0, 2, 0),
        "{waited:?}"
    );
    assert!(
        device
            .store
            .upload_queue()
            .unwrap()
            .iter()
            .filter(|i| i.media_id == late.id)
            .all(|i| i.attempts == 0 && i.state == ItemState::Pending),
        "nothing counted"
    );
    // The next sync sends the entry, then its bytes.
    let outcome = device.sync.sync_now().await.unwrap();
    assert_eq!(outcome.media.uploaded, 2, "{outcome:?}");
}
