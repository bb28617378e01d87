//! Server crashes while devices sync (reliability matrix D1–D4): the server runs as a
//! child process (`crash_server`, the real `Server` over real storage) and is
//! SIGKILLed at seeded moments while five devices write and sync over loopback;
//! with Postgres the database is also stopped with `pg_ctl stop -m immediate`.
//! Every change a device saw acknowledged must be in the server's log afterwards,
//! exactly once, and every replica must converge. The devices are signed in to a
//! tenant made in the server's database before it first starts; their tokens
//! outlive every restart (the signing key is in the database too).
//!
//! The server checks every pushed change against its sender, so each device does
//! only what its role allows: the first device is the office's (a dispatcher): it
//! creates the journey, puts the crews on it and syncs before the crash loop
//! starts; the other four are crew devices (drivers and movers) that receive the
//! journey with their assignment and then add entries, as does the office.
//!
//! The control run starts the server with acknowledgement before commit: the same
//! checker must then find acknowledged changes missing, or it proves nothing.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashSet};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crewsync_core::ids::{ClientId, JourneyId, LocationId, UserId};
use crewsync_core::model::{NewEntry, NewJourney, Role};
use crewsync_core::sync::auth::TokenResponse;
use crewsync_core::sync::engine::{self, Limits};
use crewsync_core::sync::runtime::HttpTransport;
use crewsync_core::{DeviceStore, StoreOptions};
use crewsync_server::storage::{self, Opened};
use crewsync_server::testing::TestTenant;
use crewsync_testkit::postgres::PgCluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The tenant the devices sign in to, and the key of its change log.
const TENANT: &str = "0192f1c4-0000-7000-8000-0000000000c1";
const LOCATION: &str = "0192f1c4-0000-7000-8000-000000000002";
const PEER: &str = "server";
const DEVICES: usize = 5;
/// Every wait in this file ends by itself after this long.
const BOUND: Duration = Duration::from_secs(60);

/// Where the server keeps its log.
enum Backend {
    /// The embedded default: an SQLite file in this data dir.
    Embedded(tempfile::TempDir),
    Postgres {
        cluster: PgCluster,
        url: String,
    },
}

impl Backend {
    fn embedded() -> Self {
        Backend::Embedded(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Self {
        let cluster = PgCluster::start().unwrap();
        let url = cluster.database_url("postgres");
        Backend::Postgres { cluster, url }
    }

    fn server_args(&self) -> Vec<String> {
        match self {
            Backend::Embedded(dir) => vec!["--data-dir".into(), path_arg(dir.path())],
            Backend::Postgres { url, .. } => vec!["--database-url".into(), url.clone()],
        }
    }

    /// The server's storage and database, opened from this process.
    async fn open(&self) -> Opened {
        match self {
            Backend::Embedded(dir) => storage::open(None, dir.path()).await.unwrap(),
            Backend::Postgres { url, .. } => {
                storage::open(Some(url), Path::new(".")).await.unwrap()
            }
        }
    }

    /// Creates the tenant in the server's database (before the server starts) and
    /// signs each device in as its role's user ([`role_of`]), at the tenant's
    /// location; the store keeps the tokens. Returns the users on the crew devices
    /// (with their roles), for the office to assign. The connections close before
    /// the server opens the database; the tokens stay good across server restarts
    /// (the signing key is in the database).
    async fn sign_in(&self, crews: &[&Crew]) -> Vec<(UserId, Role)> {
        let Opened { storage, db } = self.open().await;
        drop(storage);
        let tenant = TestTenant::create(
            db,
            ClientId::parse(TENANT).unwrap(),
            LocationId::parse(LOCATION).unwrap(),
        )
        .await
        .unwrap();
        let mut crew_users = Vec::new();
        for (i, crew) in crews.iter().enumerate() {
            crew.store
                .upsert_location(&tenant.device_location())
                .unwrap();
            let role = role_of(i);
            let tokens = tenant.sign_in(role, crew.store.device_id()).await.unwrap();
            if matches!(role, Role::Driver | Role::Mover)
                && !crew_users.contains(&(tokens.user.id, role))
            {
                crew_users.push((tokens.user.id, role));
            }
            crew.signed_in(tokens);
        }
        crew_users
    }

    /// The whole log, read straight from the storage (the server is stopped).
    async fn logged_hashes(&self) -> Vec<Vec<u8>> {
        let storage = self.open().await.storage;
        let mut hashes = Vec::new();
        let mut cursor = 0;
        loop {
            let page = storage.changes_since(TENANT, cursor, 10_000).await.unwrap();
            let Some(last) = page.last() else { break };
            cursor = last.seq;
            hashes.extend(page.into_iter().map(|c| c.hash));
        }
        hashes
    }
}

/// The role device `i` signs in as: the first is the office's (a dispatcher, who
/// creates the journey and assigns its crew), the rest alternate driver and mover.
fn role_of(i: usize) -> Role {
    match i {
        0 => Role::Dispatcher,
        i if i % 2 == 1 => Role::Driver,
        _ => Role::Mover,
    }
}

fn path_arg(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// The server child process, on a fixed loopback port so devices find it again
/// after a restart.
struct ServerProcess {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
}

/// A loopback port free a moment ago: the devices are made for it before the
/// server starts on it.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ServerProcess {
    fn start(backend: &Backend, port: u16, extra: &[&str]) -> Self {
        let mut args = backend.server_args();
        args.extend(["--listen".into(), format!("127.0.0.1:{port}")]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut server = Self {
            child: None,
            port,
            args,
        };
        server.restart();
        server
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(env!("CARGO_BIN_EXE_crash_server"))
            .args(&self.args)
            .args(["--max-lifetime-secs", "180"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + BOUND;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "server not listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown, no flush, nothing.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A crew device that records every acknowledgement the server sent it.
struct Crew {
    store: Arc<DeviceStore>,
    journey: JourneyId,
    transport: HttpTransport,
    acked: Vec<Vec<u8>>,
    /// Exchanges that failed (server gone, connection cut mid-request, 503).
    failed: usize,
    _dir: tempfile::TempDir,
}

impl Crew {
    /// A device for the server at `base_url`, not signed in yet ([`Backend::sign_in`]).
    fn new(base_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store =
            DeviceStore::open(dir.path().join("device.sqlite"), StoreOptions::default()).unwrap();
        Self {
            store,
            journey: JourneyId::new(),
            transport: HttpTransport::new(base_url).unwrap(),
            acked: Vec::new(),
            failed: 0,
            _dir: dir,
        }
    }

    /// Syncs as the tokens' user from now on, who becomes the device's active user.
    fn signed_in(&self, tokens: TokenResponse) {
        self.store.save_sign_in(&tokens, true).unwrap();
        self.transport.set_tokens(Some(tokens));
    }

    /// Works on `journey` (received from the server: [`drain`](Self::drain) first).
    fn open_journey(&mut self, journey: JourneyId) {
        self.journey = journey;
    }

    /// Creates the journey and works on it, with `crew` on its crew: the office's
    /// work, so the signed-in user must be a dispatcher (or manager, admin).
    fn create_journey(&mut self, crew: &[(UserId, Role)]) {
        self.journey = self
            .store
            .create_journey(&NewJourney {
                id: None,
                client_id: ClientId::parse(TENANT).unwrap(),
                location_id: LocationId::parse(LOCATION).unwrap(),
                date: chrono::Utc::now().date_naive(),
                truck_number: Some("T-7".into()),
                move_source_id: None,
                steps_requiring_approval: vec![],
            })
            .unwrap();
        for (user, role) in crew {
            self.store.assign_crew(self.journey, *user, *role).unwrap();
        }
    }

    /// One exchange; the acknowledgements are recorded before the device absorbs
    /// them, exactly as the server sent them.
    async fn exchange(&mut self) -> Result<engine::ExchangeReport, crewsync_core::Error> {
        let request = engine::prepare(&self.store, PEER, Limits::default())?;
        let response = self.transport.exchange(&request).await?;
        self.acked
            .extend(response.acked.iter().map(|hash| hash.to_vec()));
        engine::absorb(&self.store, PEER, &request, response)
    }

    /// Exchanges until nothing is pending and the server has nothing more.
    async fn drain(&mut self) {
        let deadline = Instant::now() + BOUND;
        loop {
            match self.exchange().await {
                Ok(report) if report.pending == 0 && !report.more => return,
                Ok(_) => {}
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot drain: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// The devices (signed in) write and sync until `stop`; returns them with their acks.
/// The first is the office's: it creates the journey with `crew_users` on its crew.
async fn write_and_sync(
    crews: Vec<Crew>,
    crew_users: Vec<(UserId, Role)>,
    stop: Arc<AtomicBool>,
) -> Vec<Crew> {
    // The office's journey, crew assigned, reaches the server and then every crew
    // before the writing starts: the server judges a crew's changes against the
    // journey as it has accepted it.
    let mut crews = crews.into_iter();
    let mut office = crews.next().unwrap();
    office.create_journey(&crew_users);
    office.drain().await;
    let journey = office.journey;
    let mut ready = vec![office];
    for mut crew in crews {
        crew.drain().await;
        crew.open_journey(journey);
        ready.push(crew);
    }
    let crews = ready;
    let tasks: Vec<_> = crews
        .into_iter()
        .enumerate()
        .map(|(i, mut crew)| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut n = 0;
                let deadline = Instant::now() + BOUND;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    for _ in 0..3 {
                        crew.store
                            .add_entry(crew.journey, NewEntry::note(format!("crew {i} #{n}")))
                            .unwrap();
                        n += 1;
                    }
                    if crew.exchange().await.is_err() {
                        crew.failed += 1;
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                }
                crew
            })
        })
        .collect();
    let mut crews = Vec::new();
    for task in tasks {
        crews.push(task.await.unwrap());
    }
    crews
}

/// Acknowledged hashes the log does not hold (the lost writes).
fn lost_acknowledged(crews: &[Crew], logged: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let logged: HashSet<&Vec<u8>> = logged.iter().collect();
    crews
        .iter()
        .flat_map(|crew| &crew.acked)
        .filter(|hash| !logged.contains(hash))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn seed() -> u64 {
    std::env::var("CREWSYNC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

/// The story: devices write and sync while the server is killed `crashes` times
/// (with Postgres, the database is stopped immediately every other time); then
/// everything drains and is checked.
async fn crash_story(backend: Backend, crashes: usize) {
    let seed = seed();
    eprintln!("seed {seed} (CREWSYNC_SEED={seed} replays the schedule)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut backend = backend;
    let port = free_port();
    let base_url = format!("http://127.0.0.1:{port}");
    let crews: Vec<Crew> = (0..DEVICES).map(|_| Crew::new(&base_url)).collect();
    let crew_users = backend.sign_in(&crews.iter().collect::<Vec<_>>()).await;
    let mut server = ServerProcess::start(&backend, port, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = tokio::spawn(write_and_sync(crews, crew_users, Arc::clone(&stop)));

    for crash in 0..crashes {
        let wait = Duration::from_millis(rng.random_range(300..900));
        tokio::time::sleep(wait).await;
        server.kill();
        if let Backend::Postgres { cluster, .. } = &mut backend
            && crash % 2 == 1
        {
            cluster.stop_immediate().unwrap();
            cluster.start_again().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
        server.restart();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut crews = writers.await.unwrap();

    // Quiet network: every device sends what is left, then hears everyone.
    for crew in &mut crews {
        crew.drain().await;
    }
    for crew in &mut crews {
        crew.drain().await;
    }
    server.kill();

    let acked: usize = crews.iter().map(|c| c.acked.len()).sum();
    let failed: usize = crews.iter().map(|c| c.failed).sum();
    let logged = backend.logged_hashes().await;
    let unique: HashSet<&Vec<u8>> = logged.iter().collect();
    eprintln!(
        "{crashes} crashes: {} changes logged, {acked} acknowledgements, {failed} failed exchanges",
        logged.len()
    );
    assert!(acked > 0, "nothing was acknowledged: the story did not run");
    assert!(
        failed > 0,
        "no exchange met a crash: the story did not bite"
    );
    assert_eq!(unique.len(), logged.len(), "a change is logged twice");
    let lost = lost_acknowledged(&crews, &logged);
    assert!(lost.is_empty(), "{} acknowledged changes lost", lost.len());

    let journey = crews[0].journey;
    let expected = crews[0].store.journey(journey).unwrap();
    let heads = crews[0].store.heads(journey).unwrap();
    let written: usize = crews
        .iter()
        .map(|c| c.store.journey(journey).unwrap().entries.len())
        .max()
        .unwrap();
    for crew in &crews {
        assert_eq!(
            crew.store.rejected_changes(journey).unwrap(),
            vec![],
            "every device stayed within its role: the server refused nothing"
        );
        assert_eq!(crew.store.outbox_len().unwrap(), 0);
        assert_eq!(crew.store.heads(journey).unwrap(), heads);
        assert_eq!(crew.store.journey(journey).unwrap(), expected);
    }
    assert_eq!(expected.entries.len(), written);
    // The converged journey is exactly the log: no change missing, none extra.
    let history: HashSet<Vec<u8>> = crews[0]
        .store
        .with_document(journey, |doc| {
            Ok(doc
                .automerge()
                .get_changes(&[])
                .iter()
                .map(|c| c.hash().as_ref().to_vec())
                .collect())
        })
        .unwrap();
    assert_eq!(history, logged.into_iter().collect::<HashSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_server_killed_mid_sync_loses_no_acknowledged_change() {
    crash_story(Backend::embedded(), 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_and_database_crash_mid_sync_lose_no_acknowledged_change() {
    crash_story(Backend::postgres(), 4).await;
}

/// The control run (D3): a server that acknowledges before it commits is killed
/// right after acknowledging. The checker above must see the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_acknowledging_before_commit_is_caught() {
    let backend = Backend::embedded();
    let port = free_port();
    let mut crew = Crew::new(&format!("http://127.0.0.1:{port}"));
    // A dispatcher's device (the first signed in): creating the journey and adding
    // entries are its to do, so the server accepts every change and the loss below
    // is the broken acknowledgement's alone.
    let crew_users = backend.sign_in(&[&crew]).await;
    assert!(crew_users.is_empty());
    crew.create_journey(&[]);
    let mut server = ServerProcess::start(&backend, port, &["--control-ack-before-commit"]);
    for n in 0..20 {
        crew.store
            .add_entry(crew.journey, NewEntry::note(format!("#{n}")))
            .unwrap();
    }
    let report = crew.exchange().await.unwrap();
    assert_eq!(report.rejected, vec![], "the server refused nothing");
    assert_eq!(report.pending, 0, "the device believes all is stored");
    server.kill();

    let crews = [crew];
    let logged = backend.logged_hashes().await;
    let lost = lost_acknowledged(&crews, &logged);
    assert_eq!(
        lost.len(),
        crews[0].acked.len(),
        "the checker must find every acknowledged change missing"
    );
    assert!(!lost.is_empty());
}
