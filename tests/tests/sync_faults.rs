//! Sync through a faulty network (reliability matrix B1, B2): a loopback proxy between
//! devices and the server resets connections, swallows responses after the server has
//! committed, and cuts responses short. Retries must never duplicate a change, and
//! after the faults stop every replica converges with nothing lost.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::NaiveDate;
use crewsync_core::ids::{ClientId, LocationId, UserId};
use crewsync_core::model::{ActiveUser, Location, NewEntry, NewJourney, Role};
use crewsync_core::sync::runtime::SyncClient;
use crewsync_core::{DeviceStore, StoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TENANT: &str = "default";

#[derive(Debug, Clone, Copy)]
enum Fault {
    Pass,
    /// Close the connection before anything reaches the server.
    Reset,
    /// Forward the request, drop the server's answer, then close: the server has
    /// committed and acknowledged, the device never hears it.
    SwallowResponse,
    /// Forward the request, pass part of the answer, then close.
    CutResponse(usize),
}

/// A TCP proxy on loopback that applies a seeded fault to each new connection.
async fn fault_proxy(upstream: SocketAddr, seed: u64, faults: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let fault = match rng.random_range(0..100) {
                0..50 => Fault::Pass,
                50..65 => Fault::Reset,
                65..85 => Fault::SwallowResponse,
                _ => Fault::CutResponse(rng.random_range(0..200)),
            };
            if !matches!(fault, Fault::Pass) {
                faults.fetch_add(1, Ordering::Relaxed);
            }
            tokio::spawn(relay(client, upstream, fault));
        }
    });
    addr
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, fault: Fault) {
    if matches!(fault, Fault::Reset) {
        drop(client); // closed before the request reaches the server
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    if matches!(fault, Fault::Pass) {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        return;
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let mut passed = 0;
    let mut buffer = [0u8; 4096];
    loop {
        // One answer per connection matters here; stop at the first quiet moment.
        let read =
            tokio::time::timeout(Duration::from_millis(300), server_read.read(&mut buffer)).await;
        let Ok(Ok(n)) = read else { break };
        if n == 0 {
            break;
        }
        if let Fault::CutResponse(limit) = fault {
            let take = n.min(limit.saturating_sub(passed));
            if take > 0 && client_write.write_all(&buffer[..take]).await.is_err() {
                break;
            }
            passed += take;
        }
    }
    // Closing our halves ends the connection: the device's request fails mid-answer.
}

fn location() -> Location {
    Location {
        id: LocationId::parse("0192f1c4-0000-7000-8000-000000000003").unwrap(),
        client_id: ClientId::parse("0192f1c4-0000-7000-8000-0000000000c1").unwrap(),
        name: "OTTAWA".into(),
        timezone: "America/Toronto".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_through_resets_and_lost_responses_never_duplicate_or_lose_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let storage = crewsync_server::storage::connect(None, dir.path())
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = listener.local_addr().unwrap();
    let router = crewsync_server::app(crewsync_server::AppState {
        storage: Arc::clone(&storage),
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    let faults = Arc::new(AtomicU64::new(0));
    let seed = std::env::var("CREWSYNC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    println!("fault proxy seed {seed} (replay with CREWSYNC_SEED={seed})");
    let proxy = format!(
        "http://{}",
        fault_proxy(server_addr, seed, Arc::clone(&faults)).await
    );
    let direct = format!("http://{server_addr}");

    let dispatcher =
        DeviceStore::open(dir.path().join("office.sqlite"), StoreOptions::default()).unwrap();
    dispatcher.upsert_location(&location()).unwrap();
    dispatcher
        .set_active_user(Some(ActiveUser {
            user_id: UserId::new(),
            role: Role::Dispatcher,
        }))
        .unwrap();
    let journey = dispatcher
        .create_journey(&NewJourney {
            id: None,
            client_id: location().client_id,
            location_id: location().id,
            date: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
            truck_number: None,
            move_source_id: None,
            steps_requiring_approval: vec![],
        })
        .unwrap();
    SyncClient::new(Arc::clone(&dispatcher), &direct)
        .unwrap()
        .sync_now()
        .await
        .unwrap();

    const CREWS: usize = 5;
    const ENTRIES: usize = 40;
    let mut crews = Vec::new();
    for i in 0..CREWS {
        let store = DeviceStore::open(
            dir.path().join(format!("crew{i}.sqlite")),
            StoreOptions::default(),
        )
        .unwrap();
        store
            .set_active_user(Some(ActiveUser {
                user_id: UserId::new(),
                role: Role::Mover,
            }))
            .unwrap();
        SyncClient::new(Arc::clone(&store), &direct)
            .unwrap()
            .sync_now()
            .await
            .unwrap();
        crews.push(store);
    }
    // Crews write while syncing through the faulty proxy, each many times.
    let mut failures = 0;
    for n in 0..ENTRIES {
        for (i, store) in crews.iter().enumerate() {
            store
                .add_entry(journey, NewEntry::note(format!("crew {i} entry {n}")))
                .unwrap();
            if n % 4 == 3 {
                let client = SyncClient::new(Arc::clone(store), &proxy).unwrap();
                if client.sync_now().await.is_err() {
                    failures += 1;
                }
            }
        }
    }
    assert!(
        faults.load(Ordering::Relaxed) > 5,
        "the proxy injected faults"
    );
    assert!(failures > 0, "some syncs failed");

    // Faults stop: everyone syncs directly until nothing is pending (bounded).
    for _ in 0..3 {
        for store in crews.iter().chain([&dispatcher]) {
            SyncClient::new(Arc::clone(store), &direct)
                .unwrap()
                .sync_now()
                .await
                .unwrap();
        }
    }
    let log = storage.changes_since(TENANT, 0, u32::MAX).await.unwrap();
    let expected = 1 + CREWS * ENTRIES;
    assert_eq!(
        log.len(),
        expected,
        "every change stored exactly once despite retries"
    );
    let view = dispatcher.journey(journey).unwrap();
    assert_eq!(view.entries.len(), CREWS * ENTRIES, "no change lost");
    for store in &crews {
        assert_eq!(store.outbox_len().unwrap(), 0);
        assert_eq!(store.journey(journey).unwrap(), view);
        assert_eq!(
            store.heads(journey).unwrap(),
            dispatcher.heads(journey).unwrap()
        );
    }
    println!(
        "{} faulted connections, {failures} failed syncs, {expected} changes once each",
        faults.load(Ordering::Relaxed)
    );
}
