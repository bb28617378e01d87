//! Sync through a faulty network (reliability matrix B1–B5): a loopback proxy between
//! devices and the server resets connections, swallows responses after the server has
//! committed, cuts responses short, black-holes all traffic, flaps the link and
//! drips bytes a few at a time. Retries must never duplicate a change, and after the
//! faults stop every replica converges with nothing lost. Every device is signed in
//! to the tenant its journey belongs to, and does only what its role allows (the
//! server checks every pushed change against its sender): the office (a dispatcher)
//! creates the journey and puts the tenant's driver and mover on its crew, and the
//! crews, on its crew, add entries to it.
//!
//! Seeded and replayable: each test prints its seed; `CREWSYNC_SEED=N` replays it.
//! `CREWSYNC_SOAK=N` multiplies the flapping test's load.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use crewsync_core::ids::{ClientId, EntryId, JourneyId, LocationId};
use crewsync_core::model::{NewEntry, NewJourney, Role};
use crewsync_core::sync::runtime::{Backoff, SyncClient, SyncConfig, SyncStatus};
use crewsync_core::{DeviceStore, StoreOptions};
use crewsync_server::config::Config;
use crewsync_server::storage::Storage;
use crewsync_server::storage::memory::MemoryStorage;
use crewsync_server::testing::{EmbeddedTestDb, TestTenant};
use crewsync_tests::proxy::{Link, Proxy, Shaping};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;

/// Bound on every wait for the system to settle: a wedged sync fails the test.
const SETTLE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------
// Server, devices, seeds

/// A change log and the tenant the devices sign in to. Sign-in lives in SQL: with
/// the memory log, the tenant sits in an embedded database in a temp dir beside it.
struct Backend {
    storage: Arc<dyn Storage>,
    tenant: TestTenant,
    _db: Option<EmbeddedTestDb>,
}

impl Backend {
    async fn memory() -> Self {
        let db = EmbeddedTestDb::create(tenant_id(), location_id())
            .await
            .unwrap();
        Self {
            storage: Arc::new(MemoryStorage::new()),
            tenant: db.tenant.clone(),
            _db: Some(db),
        }
    }

    /// The embedded SQLite store: the log and the tenant in one file in `dir`.
    async fn embedded(dir: &Path) -> Self {
        let opened = crewsync_server::storage::open(None, dir).await.unwrap();
        let tenant = TestTenant::create(opened.db, tenant_id(), location_id())
            .await
            .unwrap();
        Self {
            storage: opened.storage,
            tenant,
            _db: None,
        }
    }
}

struct Server {
    addr: SocketAddr,
    storage: Arc<dyn Storage>,
    tenant: TestTenant,
    /// `POST /v1/sync` requests that reached the server.
    sync_requests: Arc<AtomicU64>,
    _db: Option<EmbeddedTestDb>,
}

impl Server {
    /// The in-process server on loopback. Live sockets are pinged every second, so a
    /// device may call 3 s of silence a dead link.
    async fn start(backend: Backend) -> Self {
        let Backend {
            storage,
            tenant,
            _db,
        } = backend;
        let config = Config {
            live_ping_secs: 1,
            ..Config::default()
        };
        let services = crewsync_server::Services::in_process(
            Arc::clone(&storage),
            Arc::clone(&tenant.auth),
            &config,
        )
        .unwrap();
        let sync_requests = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&sync_requests);
        let router = crewsync_server::router(services).layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                if request.uri().path() == "/v1/sync" {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                next.run(request)
            },
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            addr,
            storage,
            tenant,
            sync_requests,
            _db,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every logged change's hash; fails on a duplicate.
    async fn logged_hashes(&self) -> BTreeSet<Vec<u8>> {
        let log = self
            .storage
            .changes_since(&self.tenant.tenant.to_string(), 0, u32::MAX)
            .await
            .unwrap();
        let hashes: BTreeSet<_> = log.iter().map(|c| c.hash.clone()).collect();
        assert_eq!(hashes.len(), log.len(), "a change logged twice");
        hashes
    }
}

/// Fails fast on stalls (1 s per exchange, 3 s of live silence at 1 s pings).
fn quick() -> SyncConfig {
    SyncConfig {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(1),
        live_silence_timeout: Duration::from_secs(3),
    }
}

fn short_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(400),
    }
}

fn tenant_id() -> ClientId {
    ClientId::parse("0192f1c4-0000-7000-8000-0000000000c1").unwrap()
}

fn location_id() -> LocationId {
    LocationId::parse("0192f1c4-0000-7000-8000-000000000003").unwrap()
}

/// A device store with the tenant's location and `role`'s user signed in (the
/// store keeps the tokens, so every `SyncClient` on it syncs as that user).
async fn device(dir: &Path, name: &str, tenant: &TestTenant, role: Role) -> Arc<DeviceStore> {
    let store =
        DeviceStore::open(dir.join(format!("{name}.sqlite")), StoreOptions::default()).unwrap();
    store.upsert_location(&tenant.device_location()).unwrap();
    let tokens = tenant.sign_in(role, store.device_id()).await.unwrap();
    store.save_sign_in(&tokens, true).unwrap();
    store
}

/// The office's journey: created on `office` (a dispatcher's device) with the
/// tenant's driver and mover on its crew, so crew devices of either may write to it
/// once the server has it. Returns the journey and how many changes that took.
fn new_journey(office: &DeviceStore, tenant: &TestTenant) -> (JourneyId, usize) {
    let journey = office
        .create_journey(&NewJourney {
            id: None,
            client_id: tenant_id(),
            location_id: location_id(),
            date: chrono::Utc::now().date_naive(),
            truck_number: None,
            move_source_id: None,
            steps_requiring_approval: vec![],
        })
        .unwrap();
    for role in [Role::Driver, Role::Mover] {
        office
            .assign_crew(journey, tenant.user(role).id, role)
            .unwrap();
    }
    (journey, document_hashes(office, journey).len())
}

/// A local write, off the reactor (SQLite commits with a full fsync).
async fn write_entry(store: &Arc<DeviceStore>, journey: JourneyId, text: String) -> EntryId {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || store.add_entry(journey, NewEntry::note(text)))
        .await
        .unwrap()
        .expect("a local write succeeds whatever the network does")
}

/// Every change hash in a device's copy of the journey.
fn document_hashes(store: &DeviceStore, journey: JourneyId) -> BTreeSet<Vec<u8>> {
    store
        .with_document(journey, |doc| {
            Ok(doc
                .changes_since(&[])
                .iter()
                .map(|c| c.hash().0.to_vec())
                .collect())
        })
        .unwrap()
}

/// Every replica holds the same journey, with the same heads, and exactly the
/// changes the server logged; no outbox holds anything, and the server refused
/// nothing (every actor stayed within its role).
async fn assert_converged(server: &Server, stores: &[&Arc<DeviceStore>], journey: JourneyId) {
    let logged = server.logged_hashes().await;
    let view = stores[0].journey(journey).unwrap();
    let heads = stores[0].heads(journey).unwrap();
    for (i, store) in stores.iter().enumerate() {
        assert_eq!(store.outbox_len().unwrap(), 0, "device {i}'s outbox");
        assert_eq!(
            store.rejected_changes(journey).unwrap(),
            vec![],
            "device {i}: the server refused a change"
        );
        assert_eq!(store.heads(journey).unwrap(), heads, "device {i}'s heads");
        assert_eq!(
            store.journey(journey).unwrap(),
            view,
            "device {i}'s journey"
        );
        assert_eq!(
            document_hashes(store, journey),
            logged,
            "device {i} holds exactly the server's changes"
        );
    }
}

/// Waits until `ready` holds for the status, failing after [`SETTLE`].
async fn wait_status(client: &SyncClient, what: &str, ready: impl FnMut(&SyncStatus) -> bool) {
    let mut status = client.status();
    let waited = tokio::time::timeout(SETTLE, status.wait_for(ready)).await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "{what}: not within {SETTLE:?}; status {:?}",
        client.status().borrow().clone()
    );
}

/// Polls `done` every 10 ms, failing after [`SETTLE`].
async fn wait_until<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let waited = tokio::time::timeout(SETTLE, async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what}: not within {SETTLE:?}");
}

/// This run's seed: `CREWSYNC_SEED`, else `default`. The guard repeats it on failure.
fn seed(default: u64) -> (u64, SeedGuard) {
    let seed = std::env::var("CREWSYNC_SEED")
        .ok()
        .map(|s| s.parse().expect("CREWSYNC_SEED is a number"))
        .unwrap_or(default);
    println!("seed {seed} (replay with CREWSYNC_SEED={seed})");
    (seed, SeedGuard(seed))
}

struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "failed with seed {0}; replay with CREWSYNC_SEED={0}",
                self.0
            );
        }
    }
}

fn soak() -> u32 {
    std::env::var("CREWSYNC_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

// ---------------------------------------------------------------------------------
// B1, B2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_through_resets_and_lost_responses_never_duplicate_or_lose_a_change() {
    let (seed, _guard) = seed(7);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Backend::embedded(dir.path()).await).await;
    let shaping = Shaping {
        connection_faults: true,
        ..Shaping::default()
    };
    let proxy = Proxy::start(server.addr, seed, shaping).await.unwrap();
    let direct = server.url();

    let dispatcher = device(dir.path(), "office", &server.tenant, Role::Dispatcher).await;
    let (journey, setup) = new_journey(&dispatcher, &server.tenant);
    SyncClient::new(Arc::clone(&dispatcher), &direct)
        .unwrap()
        .sync_now()
        .await
        .unwrap();

    const CREWS: usize = 5;
    const ENTRIES: usize = 40;
    let mut crews = Vec::new();
    for i in 0..CREWS {
        let store = device(dir.path(), &format!("crew{i}"), &server.tenant, Role::Mover).await;
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
                let client = SyncClient::new(Arc::clone(store), &proxy.url()).unwrap();
                if client.sync_now().await.is_err() {
                    failures += 1;
                }
            }
        }
    }
    let faulted = proxy.stat(|s| &s.faulted);
    assert!(faulted > 5, "the proxy injected faults");
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
    let expected = setup + CREWS * ENTRIES;
    assert_eq!(
        server.logged_hashes().await.len(),
        expected,
        "every change stored exactly once despite retries"
    );
    let view = dispatcher.journey(journey).unwrap();
    assert_eq!(view.entries.len(), CREWS * ENTRIES, "no change lost");
    let all: Vec<_> = crews.iter().chain([&dispatcher]).collect();
    assert_converged(&server, &all, journey).await;
    println!(
        "{faulted} faulted connections, {failures} failed syncs, {expected} changes once each"
    );
}

// ---------------------------------------------------------------------------------
// B3

/// B3: the link black-holes everything (nothing forwarded, nothing closed). The
/// device notices within its configured bounds — the exchange times out, the live
/// socket falls silent — and says so in its status; the crew keeps writing; once the
/// link is back, sync resumes by itself and everyone converges.
async fn a_stalled_link_is_detected_and_sync_resumes_after_it(backend: Backend) {
    let (seed, _guard) = seed(3);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(backend).await;
    let proxy = Proxy::start(server.addr, seed, Shaping::default())
        .await
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);

    let office = device(dir.path(), "office", &server.tenant, Role::Dispatcher).await;
    let (journey, _) = new_journey(&office, &server.tenant);
    let office_sync = SyncClient::new(Arc::clone(&office), &server.url()).unwrap();
    office_sync.sync_now().await.unwrap();

    let crew = device(dir.path(), "crew", &server.tenant, Role::Driver).await;
    let crew_sync = SyncClient::with_config(Arc::clone(&crew), &proxy.url(), quick()).unwrap();
    crew_sync.start(Duration::from_millis(300), short_backoff());
    wait_status(&crew_sync, "first sync and live socket", |s| {
        s.connected && s.live && s.pending_changes == 0
    })
    .await;
    let mut written = vec![write_entry(&crew, journey, "before the lift".into()).await];
    crew_sync.wake();
    wait_until("synced before the stall", || {
        let crew = Arc::clone(&crew);
        async move { crew.outbox_len().unwrap() == 0 }
    })
    .await;

    proxy.set(Link::Stalled);
    let stalled_at = Instant::now();
    let logged_at_stall = server.logged_hashes().await;
    // The crew keeps working; each write asks for a sync that cannot get through.
    for n in 0..rng.random_range(3..8) {
        written.push(write_entry(&crew, journey, format!("in the lift {n}")).await);
        crew_sync.wake();
    }
    wait_status(&crew_sync, "the stalled exchange reported", |s| {
        !s.connected
            && s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("no answer"))
    })
    .await;
    let exchange_noticed = stalled_at.elapsed();
    wait_status(&crew_sync, "the silent live socket dropped", |s| !s.live).await;
    let live_noticed = stalled_at.elapsed();
    // Still writing after the device knows it is cut off.
    for n in 0..rng.random_range(3..8) {
        written.push(write_entry(&crew, journey, format!("still in the lift {n}")).await);
    }
    // The office carries on meanwhile; the crew cannot hear of it yet.
    for n in 0..3 {
        office.add_note(journey, &format!("office {n}")).unwrap();
    }
    office_sync.sync_now().await.unwrap();
    assert_eq!(
        crew.outbox_len().unwrap(),
        written.len() as u64 - 1,
        "nothing written in the lift was acknowledged"
    );
    let logged = server.logged_hashes().await;
    assert!(
        document_hashes(&crew, journey)
            .difference(&logged_at_stall)
            .all(|h| !logged.contains(h)),
        "the black hole let a crew change through"
    );
    let stall = stalled_at.elapsed();

    proxy.set(Link::Up);
    let released_at = Instant::now();
    wait_status(&crew_sync, "sync resumed after the stall", |s| {
        s.connected && s.live && s.pending_changes == 0 && s.last_error.is_none()
    })
    .await;
    wait_until("the crew pulled the office's notes", || {
        let crew = Arc::clone(&crew);
        async move { crew.journey(journey).unwrap().notes.len() == 3 }
    })
    .await;
    let resumed = released_at.elapsed();
    crew_sync.stop().await;
    office_sync.sync_now().await.unwrap();

    let view = office.journey(journey).unwrap();
    let ids: HashSet<_> = view.entries.iter().map(|e| e.id).collect();
    assert!(
        written.iter().all(|id| ids.contains(id)),
        "a crew write lost"
    );
    assert_eq!(view.entries.len(), written.len());
    assert_converged(&server, &[&office, &crew], journey).await;
    println!(
        "stall of {stall:?}: exchange timed out after {exchange_noticed:?}, live socket \
         dropped after {live_noticed:?}; resumed {resumed:?} after release; {} crew \
         writes during it",
        written.len() - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_link_is_detected_and_sync_resumes_after_it_on_the_memory_backend() {
    a_stalled_link_is_detected_and_sync_resumes_after_it(Backend::memory().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_link_is_detected_and_sync_resumes_after_it_on_the_embedded_sqlite_backend() {
    let dir = tempfile::tempdir().unwrap();
    a_stalled_link_is_detected_and_sync_resumes_after_it(Backend::embedded(dir.path()).await).await;
}

// ---------------------------------------------------------------------------------
// B4

/// B4: the link flaps — up, then cut or black-holed, at seeded random intervals of
/// 0–2 s — while three crews write and every device's background loop syncs. After
/// healing, the loops drain every outbox within a bounded number of requests (no
/// wedged queue), the server holds exactly the changes written (none twice), and
/// every replica holds every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_link_wedges_no_queue_and_loses_no_acknowledged_write() {
    const CREWS: usize = 3;
    let load = Duration::from_secs(8) * soak();
    let (seed, _guard) = seed(4);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Backend::embedded(dir.path()).await).await;
    let proxy = Proxy::start(server.addr, seed, Shaping::default())
        .await
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);

    let office = device(dir.path(), "office", &server.tenant, Role::Dispatcher).await;
    let (journey, setup) = new_journey(&office, &server.tenant);
    let mut stores = vec![office];
    for i in 0..CREWS {
        let role = [Role::Driver, Role::Mover][i % 2];
        stores.push(device(dir.path(), &format!("crew{i}"), &server.tenant, role).await);
    }
    let mut clients = Vec::new();
    for store in &stores {
        let client = SyncClient::with_config(Arc::clone(store), &proxy.url(), quick()).unwrap();
        client.sync_now().await.unwrap();
        // Writes and live notices wake the loops; the interval is only a fallback.
        client.start(Duration::from_secs(2), short_backoff());
        clients.push(client);
    }

    // Crews write at random moments until the load ends; every write is local.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (i, (store, client)) in stores.iter().zip(&clients).enumerate().skip(1) {
        let (store, client, stop) = (Arc::clone(store), Arc::clone(client), Arc::clone(&stop));
        let mut rng = StdRng::seed_from_u64(rng.random());
        writers.push(tokio::spawn(async move {
            let mut written = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let text = format!("crew {i} entry {}", written.len());
                written.push(write_entry(&store, journey, text).await);
                client.wake();
                tokio::time::sleep(Duration::from_millis(rng.random_range(10..120))).await;
            }
            written
        }));
    }
    let (mut flaps, mut cuts) = (0, 0);
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..2_000))).await;
        let down = if rng.random_bool(0.5) {
            cuts += 1;
            Link::Down
        } else {
            Link::Stalled
        };
        proxy.set(down);
        flaps += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..2_000))).await;
        if started.elapsed() >= load {
            break; // heal only once the writers have stopped
        }
        proxy.set(Link::Up);
    }
    let load = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    // Still cut off: every crew has something to push when the link heals.
    for (i, (store, client)) in stores.iter().zip(&clients).enumerate().skip(1) {
        written.push(write_entry(store, journey, format!("crew {i} last entry")).await);
        client.wake();
    }
    let pending: u64 = stores.iter().map(|s| s.outbox_len().unwrap()).sum();
    assert!(pending >= CREWS as u64);

    // Healed: the loops alone must empty every outbox.
    let requests_at_heal = server.sync_requests.load(Ordering::Relaxed);
    proxy.set(Link::Up);
    let healed = Instant::now();
    for (i, store) in stores.iter().enumerate() {
        wait_until(
            &format!("device {i}'s outbox drained after healing"),
            || {
                let store = Arc::clone(store);
                async move { store.outbox_len().unwrap() == 0 }
            },
        )
        .await;
    }
    let drained = healed.elapsed();
    let requests = server.sync_requests.load(Ordering::Relaxed) - requests_at_heal;
    for client in &clients {
        client.stop().await;
    }
    // A few exchanges per device (a backoff retry, a wake per live notice), not a
    // retry storm.
    let bound = 10 * stores.len() as u64;
    assert!(
        requests <= bound,
        "{requests} sync requests to drain after healing (bound {bound})"
    );
    // One more exchange each now pushes nothing and brings everyone level.
    for (i, client) in clients.iter().enumerate() {
        let outcome = client.sync_now().await.unwrap();
        assert_eq!((outcome.pushed, outcome.pending), (0, 0), "device {i}");
    }

    let logged = server.logged_hashes().await;
    assert_eq!(
        logged.len(),
        setup + written.len(),
        "the server logged every write once"
    );
    for (i, store) in stores.iter().enumerate() {
        let ids: HashSet<EntryId> = store
            .journey(journey)
            .unwrap()
            .entries
            .iter()
            .map(|e| e.id)
            .collect();
        assert!(
            written.iter().all(|id| ids.contains(id)),
            "device {i} lacks an acknowledged write"
        );
        assert_eq!(
            ids.len(),
            written.len(),
            "device {i}: no entry from nowhere"
        );
    }
    let all: Vec<_> = stores.iter().collect();
    assert_converged(&server, &all, journey).await;
    println!(
        "{load:?} of load: {flaps} outages ({cuts} cuts, {} stalls), {} connections; {} writes \
         by {CREWS} crews; {pending} pending at healing, drained in {drained:?} and \
         {requests} sync requests",
        flaps - cuts,
        proxy.stat(|s| &s.connections),
        written.len(),
    );
}

// ---------------------------------------------------------------------------------
// B5

/// B5: every write crosses the link as 1–16-byte slices 1–5 ms apart, both ways.
/// Requests, responses and live frames reassemble: no exchange fails, nothing
/// decodes wrong, a live notice still wakes an idle device, and replicas converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_drip_reassembles_every_message() {
    let (seed, _guard) = seed(5);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Backend::memory().await).await;
    let shaping = Shaping {
        drip: true,
        ..Shaping::default()
    };
    let proxy = Proxy::start(server.addr, seed, shaping).await.unwrap();
    let started = Instant::now();

    let office = device(dir.path(), "office", &server.tenant, Role::Dispatcher).await;
    let (journey, _) = new_journey(&office, &server.tenant);
    let office_sync = SyncClient::new(Arc::clone(&office), &proxy.url()).unwrap();
    office_sync.sync_now().await.unwrap();
    // The office only listens from here on: dripped live frames must wake it.
    office_sync.start(Duration::from_secs(3600), short_backoff());
    wait_status(&office_sync, "the office's live socket", |s| {
        s.live && s.last_success.is_some()
    })
    .await;

    // Two crews at once: pull the journey, write (one entry spans many slices), push.
    let crew = |i: usize| {
        let (dir, tenant, url) = (dir.path(), &server.tenant, proxy.url());
        async move {
            let store = device(dir, &format!("crew{i}"), tenant, Role::Mover).await;
            let client = SyncClient::new(Arc::clone(&store), &url).unwrap();
            client.sync_now().await.unwrap();
            let long = format!("crew {i}: {}", "scratched dresser, ".repeat(10));
            let written = [
                write_entry(&store, journey, format!("crew {i} loaded")).await,
                write_entry(&store, journey, long).await,
            ];
            let outcome = client.sync_now().await.unwrap();
            assert_eq!(outcome.pending, 0, "crew {i}: everything acknowledged");
            (store, client, written)
        }
    };
    let (first, second) = tokio::join!(crew(0), crew(1));
    let written: Vec<_> = first.2.iter().chain(&second.2).copied().collect();
    wait_until("live notices made the office pull", || {
        let office = Arc::clone(&office);
        let expected = written.len();
        async move { office.journey(journey).unwrap().entries.len() == expected }
    })
    .await;
    office_sync.stop().await;
    assert_eq!(
        office_sync.status().borrow().last_error,
        None,
        "no exchange failed"
    );
    let (pulled, pulled_too) = tokio::join!(first.1.sync_now(), second.1.sync_now());
    pulled.unwrap();
    pulled_too.unwrap();

    let view = office.journey(journey).unwrap();
    let ids: HashSet<_> = view.entries.iter().map(|e| e.id).collect();
    assert!(written.iter().all(|id| ids.contains(id)), "a write lost");
    assert_converged(&server, &[&office, &first.0, &second.0], journey).await;
    let slices = proxy.stat(|s| &s.slices);
    assert!(slices > 1_000, "the proxy dripped ({slices} slices)");
    println!(
        "{} writes synced: {} bytes in {slices} slices over {} connections in {:?}",
        written.len(),
        proxy.stat(|s| &s.bytes),
        proxy.stat(|s| &s.connections),
        started.elapsed()
    );
}
