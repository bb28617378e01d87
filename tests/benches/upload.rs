//! Upload throughput (issue 5 point 7): `cargo bench -p crewsync-tests --bench upload`.
//!
//! One file of `CREWSYNC_BENCH_MIB` MiB (default 64) uploaded with the device's
//! client (`core::sync::upload`: chunks of the server's default 8 MiB, SHA-256 per
//! chunk on both sides, fsync per chunk, whole-file SHA-256 and the blob store
//! write with fsync at completion) to an in-process server on 127.0.0.1 (embedded
//! SQLite), against three baselines measured in the same run on the same bytes:
//! a raw loopback TCP copy, a disk write + fsync in the same directory, and
//! SHA-256. The RATIO is the upload's throughput over the slowest baseline's
//! (goal ≥ 0.25). Nothing asserts on a timing: the machine is a shared 2-core VM.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use automerge::ActorId;
use crewsync_core::document::JourneyDocument;
use crewsync_core::ids::{ClientId, DeviceId, JourneyId, LocationId, MediaId};
use crewsync_core::model::{MediaKind, MediaRef, Role, Stamp, Timestamp};
use crewsync_core::sync::upload::{UploadItem, UploadKind, upload};
use crewsync_core::sync::wire::{self, CONTENT_TYPE, PROTOCOL_VERSION, SyncRequest, WireChange};
use crewsync_core::{ChangeOrigin, JourneyAction};
use crewsync_server::Services;
use crewsync_server::config::Config;
use crewsync_server::testing::TestTenant;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn mib_per_s(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / seconds
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mib: usize = std::env::var("CREWSYNC_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let size = mib * 1024 * 1024;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut bytes = vec![0u8; size];
    rng.fill(&mut bytes[..]);
    let dir = tempfile::tempdir().unwrap();

    // Baseline 1: loopback TCP copy.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buffer = vec![0u8; 1 << 20];
        let mut total = 0usize;
        loop {
            let n = socket.read(&mut buffer).await.unwrap();
            if n == 0 {
                return total;
            }
            total += n;
        }
    });
    let started = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    for piece in bytes.chunks(1 << 20) {
        socket.write_all(piece).await.unwrap();
    }
    socket.shutdown().await.unwrap();
    assert_eq!(sink.await.unwrap(), size);
    let tcp = mib_per_s(size, started.elapsed().as_secs_f64());

    // Baseline 2: disk write + fsync.
    let started = Instant::now();
    let mut file = std::fs::File::create(dir.path().join("baseline")).unwrap();
    file.write_all(&bytes).unwrap();
    file.sync_all().unwrap();
    let disk = mib_per_s(size, started.elapsed().as_secs_f64());
    std::fs::remove_file(dir.path().join("baseline")).unwrap();

    // Baseline 3: SHA-256.
    let started = Instant::now();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let sha = mib_per_s(size, started.elapsed().as_secs_f64());

    // The upload.
    let data = dir.path().join("server");
    let config = Config {
        data_dir: data.clone(),
        ..Config::default()
    };
    let opened = crewsync_server::storage::open(None, &data).await.unwrap();
    let tenant = TestTenant::create(opened.db.clone(), ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let services = Services::in_process(opened.storage, Arc::clone(&tenant.auth), &config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = crewsync_server::router(services.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let device = DeviceId::new();
    let dispatcher = tenant.sign_in(Role::Dispatcher, device).await.unwrap();
    let created: Value = http
        .post(format!("{base}/v1/journeys"))
        .bearer_auth(&dispatcher.access_token)
        .json(&json!({"date": chrono::Utc::now().date_naive(), "location_id": tenant.location.id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let journey: JourneyId = serde_json::from_value(created["id"].clone()).unwrap();
    let origin = ChangeOrigin {
        user_id: dispatcher.user.id,
        role: Role::Dispatcher,
        device_id: device,
    };
    let media_id = MediaId::new();
    let record = services
        .storage
        .journey(&tenant.tenant.to_string(), journey)
        .await
        .unwrap();
    let changes = record
        .changes
        .iter()
        .map(|b| automerge::Change::from_bytes(b.clone()).unwrap())
        .collect();
    let mut doc = JourneyDocument::load(
        journey,
        record.snapshot.as_deref(),
        changes,
        ActorId::random(),
    )
    .unwrap();
    let media = MediaRef {
        sha256: Some(sha256.clone()),
        size: Some(size as u64),
        step: Some(1),
        ..MediaRef::new(
            media_id,
            MediaKind::Video,
            Stamp {
                by: origin.user_id,
                at: Timestamp::now(),
            },
        )
    };
    let mut change = doc
        .apply(
            &JourneyAction::AddMediaRef { media },
            &origin,
            Timestamp::now(),
        )
        .unwrap()
        .unwrap();
    let body = wire::encode(&SyncRequest {
        version: PROTOCOL_VERSION,
        device_id: device,
        actor: change.actor_id().to_bytes().to_vec(),
        cursor: 0,
        changes: vec![WireChange {
            journey,
            bytes: change.bytes().into_owned(),
        }],
        max_changes: 1,
        held: None,
        report: None,
    });
    let status = http
        .post(format!("{base}/v1/sync"))
        .bearer_auth(&dispatcher.access_token)
        .header("content-type", CONTENT_TYPE)
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let path = dir.path().join("video.mp4");
    std::fs::write(&path, &bytes).unwrap();
    drop(bytes);
    let item = UploadItem {
        media_id,
        journey_id: journey,
        kind: UploadKind::Video,
        content_type: "video/mp4".into(),
        path,
        size: size as u64,
        sha256: sha256.clone(),
    };
    let started = Instant::now();
    let outcome = upload(&http, &base, &dispatcher.access_token, &item, &|_| {})
        .await
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(outcome.sha256, sha256);
    let throughput = mib_per_s(size, seconds);

    let slowest = tcp.min(disk).min(sha);
    println!("upload {mib} MiB over loopback ({} chunks)", outcome.chunks);
    println!("  upload (create, chunks, complete)  {throughput:8.1} MiB/s  ({seconds:.2} s)");
    println!("  baseline: loopback TCP copy        {tcp:8.1} MiB/s");
    println!("  baseline: disk write + fsync       {disk:8.1} MiB/s");
    println!("  baseline: SHA-256                  {sha:8.1} MiB/s");
    println!(
        "RATIO upload / slowest baseline = {:.2} (goal >= 0.25)",
        throughput / slowest
    );
}
