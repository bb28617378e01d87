//! Sync figures (issue 3): `cargo bench -p crewsync-tests --bench sync`.
//!
//! Every section prints its figures and a RATIO against a baseline measured in the same
//! run: the machine is a shared, noisy 2-core VM, so absolute numbers move 20-40 %
//! between runs and nothing here asserts on a timing.
//!
//! 1. `remote_apply`: a device absorbing a sync response (MessagePack decode, the
//!    store applying each journey's batch, persisting, cursor) against raw automerge
//!    `apply_changes` plus one SQLite transaction inserting the same change bytes
//!    (WAL, `synchronous = FULL` on both sides).
//! 2. `reconnect`: a device with 1,000 offline changes reconnecting through
//!    `SyncClient::sync_now` to an in-process server, through a byte-counting loopback
//!    proxy, against automerge's own two-peer sync of the same documents.
//! 3. `fleet`: 200 devices with 300 offline entries each reconnecting at once to one
//!    server process on Postgres: time to every change acknowledged, server peak RSS,
//!    against raw batched Postgres inserts of the same bytes. Each device is a
//!    dispatcher's that creates its own journey and fills it offline (a dispatcher
//!    may create journeys and add entries), so every change passes the server's
//!    write checks.
//! 4. `live_latency`: commit acknowledged to another device → live frame received,
//!    against a WebSocket ping/pong round trip on the same socket.
//! 5. `idle_connections`: idle live sockets one server process holds and its RSS per
//!    socket, against the idle server's RSS.
//!
//! Every server requires sign-in: the bench creates a tenant (one user per role) in
//! each server's database before the server starts and signs its devices in, so
//! each sync request and live handshake carries a bearer token and the server
//! checks its session and user in the database (two lookups) before serving it.
//! Sections 2-5 include that cost; their baselines do not. The server also checks
//! every pushed change against its sender (role, crew, attribution), so every
//! device does only what its role allows: journeys are created by dispatchers'
//! devices, and a crew (driver) writes only to journeys whose crew it is on.
//!
//! Counts scale with `CREWSYNC_BENCH_SCALE` (default 1; e.g. 0.1 for a quick look);
//! `CREWSYNC_BENCH_ONLY=fleet` (comma-separated section names) runs only those.
//!
//! Server processes (sections 3-5) are the `crewsync-server` binary next to this
//! bench's profile dir (`cargo build --release -p crewsync-server`), or the binary
//! named by `CREWSYNC_SERVER_BIN`; when it is missing or older than the server's
//! sources, this bench re-runs itself as the server (the same `Server::open` + `serve`
//! as `main.rs`), so a run never measures a stale build. Everything listens on
//! 127.0.0.1 only.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use automerge::sync::{Message as SyncMessage, State as SyncState, SyncDoc};
use automerge::{Automerge, Change};
use crewsync_core::ids::{ClientId, DeviceId, JourneyId, LocationId, UserId};
use crewsync_core::model::{ActiveUser, Location, NewEntry, NewJourney, Role};
use crewsync_core::sync::auth::TokenResponse;
use crewsync_core::sync::engine::{self, Limits};
use crewsync_core::sync::runtime::{HttpTransport, SyncClient};
use crewsync_core::sync::wire::{self, LoggedChange, PROTOCOL_VERSION, SyncRequest, SyncResponse};
use crewsync_core::{DeviceStore, StoreOptions};
use crewsync_server::testing::{EmbeddedTestDb, TestTenant};
use futures_util::{SinkExt, StreamExt};
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request as WsRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const CHILD_ENV: &str = "CREWSYNC_BENCH_CHILD";
const SCALE_ENV: &str = "CREWSYNC_BENCH_SCALE";
/// Comma-separated section names to run; all when unset.
const ONLY_ENV: &str = "CREWSYNC_BENCH_ONLY";
/// An explicit server binary for the child-process sections.
const SERVER_BIN_ENV: &str = "CREWSYNC_SERVER_BIN";

const SECTIONS: [&str; 5] = [
    "remote_apply",
    "reconnect",
    "fleet",
    "live_latency",
    "idle_connections",
];

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(mode) if mode == "server" => child_server(),
        Ok(mode) => panic!("unknown child mode {mode:?}"),
        Err(_) => parent(),
    }
}

fn parent() {
    let started = Instant::now();
    let load_start = load_average();
    // Before any child starts, so server children inherit the raised limit.
    let (soft, hard) = raise_nofile_limit();
    println!(
        "crewsync sync bench (scale {}; set {SCALE_ENV} to change, {ONLY_ENV}=<section> to pick; \
         figures on a shared VM move 20-40% between runs, judge the ratios); open files limit {soft} (hard {hard})",
        scale()
    );
    let only = std::env::var(ONLY_ENV).unwrap_or_default();
    let wanted: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(unknown) = wanted.iter().find(|w| !SECTIONS.contains(w)) {
        panic!("{ONLY_ENV}: unknown section {unknown:?}; sections are {SECTIONS:?}");
    }
    let run = |section: &str| wanted.is_empty() || wanted.contains(&section);
    if run("remote_apply") {
        remote_apply();
    }
    if run("reconnect") {
        reconnect();
    }
    if run("fleet") {
        fleet();
    }
    if run("live_latency") {
        live_latency();
    }
    if run("idle_connections") {
        idle_connections(soft, hard);
    }
    println!();
    println!(
        "total bench time {:.1} s; load average at start {load_start}, at end {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
}

// ---------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------

/// The 1/5/15-minute load averages: other work on the machine skews every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn scale() -> f64 {
    std::env::var(SCALE_ENV)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0)
}

fn scaled(n: usize) -> usize {
    ((n as f64 * scale()).round() as usize).max(1)
}

/// A temp dir on the same disk as `target/` (never a tmpfs), removed on drop: where
/// `synchronous = FULL` fsyncs are measured, they are real.
fn bench_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("crewsync-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// A temp dir on tmpfs when there is one, for device stores whose fsyncs are only
/// setup cost (the section measures something else).
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("crewsync-bench-")
            .tempdir_in(shm)
    {
        return dir;
    }
    bench_dir()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of `values` (any unit).
fn pct(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median(values: &[f64]) -> f64 {
    pct(values, 0.5)
}

fn kb(bytes: u64) -> String {
    format!("{:.1} KB", bytes as f64 / 1024.0)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

/// A field of /proc/<pid>/status (VmRSS, VmHWM), in bytes.
fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU seconds (user + system, all threads) process `pid` has used: fields 14 and 15
/// of /proc/<pid>/stat, in USER_HZ ticks (100 on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; fields after it start at 3 (state).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14 - 3) + ticks(15 - 3)) / 100.0
}

/// Busy CPU seconds of the whole machine, all cores (/proc/stat, USER_HZ ticks).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: everything but idle and iowait.
    let busy: f64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    busy / 100.0
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Raises this process's open-file limit to its hard limit (children inherit it):
/// section 5 holds one socket per idle connection on each side.
#[allow(unsafe_code)]
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not everywhere
fn raise_nofile_limit() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct we pass, which lives
    // on this stack frame for the duration of the call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return (0, 0);
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    (limit.rlim_cur as u64, limit.rlim_max as u64)
}

fn location() -> Location {
    Location {
        id: LocationId::parse("0192f1c4-0000-7000-8000-000000000002").unwrap(),
        client_id: ClientId::parse("0192f1c4-0000-7000-8000-0000000000c1").unwrap(),
        name: "HAMILTON".into(),
        timezone: "America/Toronto".into(),
    }
}

fn new_journey() -> NewJourney {
    NewJourney {
        id: None,
        client_id: location().client_id,
        location_id: location().id,
        date: chrono::Utc::now().date_naive(),
        truck_number: Some("T-12".into()),
        move_source_id: None,
        steps_requiring_approval: Vec::new(),
    }
}

/// A store at `path` with the location registered and nobody acting yet: a device
/// about to sign in (its id names the session).
fn open_store(path: &Path) -> Arc<DeviceStore> {
    let store = DeviceStore::open(path, StoreOptions::default()).unwrap();
    store.upsert_location(&location()).unwrap();
    store
}

/// A store at `path` with the location registered and a local `role` user acting,
/// for devices that never meet a server.
fn open_device(path: &Path, role: Role) -> Arc<DeviceStore> {
    let store = open_store(path);
    store
        .set_active_user(Some(ActiveUser {
            user_id: UserId::new(),
            role,
        }))
        .unwrap();
    store
}

/// The device keeps `tokens` and syncs as their user, now its active user.
fn sign_in(store: &DeviceStore, tokens: &TokenResponse) {
    store.save_sign_in(tokens, true).unwrap();
}

/// A transport to `url` as the bearer of `tokens`.
fn transport(url: &str, tokens: &TokenResponse) -> HttpTransport {
    let transport = HttpTransport::new(url).unwrap();
    transport.set_tokens(Some(tokens.clone()));
    transport
}

/// The live channel's handshake as the bearer of `token` (as `SyncClient` sends it).
fn live_request(url: &str, token: &str) -> WsRequest {
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Creates the bench tenant (`location()`'s ids, a user per role) in the database at
/// `database_url` or in `data_dir`'s embedded store, and signs each (role, device)
/// in: a session each, as `POST /v1/auth/sign-in` opens it. Everything this opens is
/// closed again on return, before a server opens the database.
async fn create_tenant(
    database_url: Option<&str>,
    data_dir: &Path,
    devices: &[(Role, DeviceId)],
) -> Vec<TokenResponse> {
    let opened = crewsync_server::storage::open(database_url, data_dir)
        .await
        .unwrap();
    drop(opened.storage);
    let tenant = TestTenant::create(opened.db, location().client_id, location().id)
        .await
        .unwrap();
    let mut tokens = Vec::with_capacity(devices.len());
    for (role, device) in devices {
        tokens.push(tenant.sign_in(*role, *device).await.unwrap());
    }
    tokens
}

fn note_text(i: usize) -> String {
    format!("Item {i}: dresser, small scratch on the left side, customer informed")
}

/// A journey's saved document, for the automerge baselines.
fn saved(store: &DeviceStore, journey: JourneyId) -> Automerge {
    let bytes = store.with_document(journey, |d| Ok(d.save())).unwrap();
    Automerge::load(&bytes).unwrap()
}

/// Blocking `GET path` on loopback (HTTP/1.1, Connection: close): readiness checks and
/// /metrics without a client library. Returns (status, body).
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((status, body))
}

/// The sum of a Prometheus metric's samples whose labels contain `label` ("" = all).
fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            let (metric, labels) = key.split_once('{').unwrap_or((key, ""));
            (metric == name && labels.contains(label))
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

async fn metrics_text(addr: SocketAddr) -> String {
    tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
        .await
        .unwrap()
        .map(|(_, body)| body)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------
// Server child processes
// ---------------------------------------------------------------------------------

/// A server child's database, made before the child starts: its data dir (the
/// embedded store) or its Postgres URL, with the bench tenant in it.
struct ServerData {
    database_url: Option<String>,
    dir: tempfile::TempDir,
}

impl ServerData {
    /// Embedded SQLite in a temp data dir, or the database at `database_url`; the
    /// bench tenant created in it and `devices` signed in (their tokens returned in
    /// order). The server will find the tenant, the sessions and the signing key
    /// in its database.
    fn prepare(
        database_url: Option<&str>,
        devices: &[(Role, DeviceId)],
    ) -> (Self, Vec<TokenResponse>) {
        let data = Self {
            database_url: database_url.map(str::to_owned),
            dir: bench_dir(),
        };
        let tokens = runtime().block_on(create_tenant(database_url, &data.data_dir(), devices));
        (data, tokens)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("server-data")
    }
}

/// A server child process on 127.0.0.1, killed (by its pid) and reaped on drop.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    _data: ServerData,
}

impl ServerProcess {
    /// Starts a server on `data`. Retries on another port if the one picked was
    /// taken in between.
    fn start(data: ServerData) -> Self {
        let (program, how) = server_program();
        let log_path = data.dir.path().join("server.log");
        let mut log = String::new();
        for _attempt in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut cmd = Command::new(&program);
            if program == std::env::current_exe().unwrap() {
                cmd.env(CHILD_ENV, "server");
            }
            cmd.env("CREWSYNC_LISTEN", addr.to_string())
                .env("CREWSYNC_DATA_DIR", data.data_dir())
                .env_remove("DATABASE_URL")
                .env_remove("CREWSYNC_DATABASE_URL")
                .env_remove("CREWSYNC_LIVE_PING_SECS")
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log_path).unwrap());
            if let Some(url) = &data.database_url {
                cmd.env("CREWSYNC_DATABASE_URL", url);
            }
            let mut child = cmd.spawn().unwrap();
            if wait_ready(&mut child, addr, Duration::from_secs(60)) {
                println!("    server child pid {} on {addr}: {how}", child.id());
                return ServerProcess {
                    child,
                    addr,
                    _data: data,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("the server did not start; its last log:\n{log}");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn rss(&self) -> u64 {
        proc_status(self.pid(), "VmRSS")
    }

    fn hwm(&self) -> u64 {
        proc_status(self.pid(), "VmHWM")
    }
}

/// Polls `/ready` until 200; false if the child exits or `timeout` passes.
fn wait_ready(child: &mut Child, addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if http_get(addr, "/ready").is_some_and(|(status, _)| status == 200) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server program to run and how it was chosen. Prefers a `crewsync-server` binary
/// built from the current sources; otherwise this bench binary (which cargo has just
/// rebuilt from them) in server mode.
fn server_program() -> (PathBuf, String) {
    let me = std::env::current_exe().unwrap();
    if let Some(path) = std::env::var_os(SERVER_BIN_ENV) {
        let path = PathBuf::from(path);
        return (
            path.clone(),
            format!("{} (from {SERVER_BIN_ENV})", path.display()),
        );
    }
    // target/<profile>/deps/sync-<hash> → target/<profile>/crewsync-server
    let built = me
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("crewsync-server"));
    let Some(built) = built.filter(|p| p.is_file()) else {
        return (
            me,
            "this bench re-run as the server (no crewsync-server binary next to it; \
             `cargo build --release -p crewsync-server` to use the real one)"
                .into(),
        );
    };
    let built_at = std::fs::metadata(&built).and_then(|m| m.modified()).ok();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sources = [
        "server/src",
        "server/migrations_sqlite",
        "server/Cargo.toml",
        "core/src",
        "core/Cargo.toml",
        "migrations",
        "Cargo.lock",
    ];
    let newest = sources
        .iter()
        .filter_map(|s| newest_mtime(&workspace.join(s)))
        .max();
    match (built_at, newest) {
        (Some(built_at), Some(newest)) if built_at >= newest => {
            let how = format!("{}", built.display());
            (built, how)
        }
        _ => (
            me,
            format!(
                "this bench re-run as the server ({} is older than the server's sources; \
                 `cargo build --release -p crewsync-server` to use it)",
                built.display()
            ),
        ),
    }
}

fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| newest_mtime(&entry.path()))
        .max()
}

/// Server mode of this binary: what `crewsync-server`'s main does, configured by the
/// same environment variables, without the log subscriber.
fn child_server() {
    use crewsync_server::Server;
    use crewsync_server::config::Config;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let defaults = Config::default();
    let config = Config {
        listen: env("CREWSYNC_LISTEN").unwrap().parse().unwrap(),
        database_url: env("CREWSYNC_DATABASE_URL"),
        data_dir: env("CREWSYNC_DATA_DIR").map_or(defaults.data_dir.clone(), PathBuf::from),
        live_ping_secs: env("CREWSYNC_LIVE_PING_SECS")
            .map_or(defaults.live_ping_secs, |s| s.parse().unwrap()),
        ..defaults
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let server = Server::open(&config).await.unwrap();
            let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
            server
                .serve(listener, std::future::pending())
                .await
                .unwrap();
        });
}

// ---------------------------------------------------------------------------------
// 1. remote_apply
// ---------------------------------------------------------------------------------

/// The raw baseline for one batch: automerge decode + `apply_changes` per journey and
/// one SQLite transaction inserting every change's hash and bytes, same pragmas as the
/// device store. With `commits_per_journey` (context only) each journey commits on
/// its own and `extra_commits` empty transactions follow, as many commits as the
/// store makes. Returns the elapsed time.
fn raw_apply(
    path: &Path,
    creations: &[Vec<u8>],
    batches: &[(JourneyId, Vec<Vec<u8>>)],
    commits_per_journey: bool,
    extra_commits: usize,
) -> Duration {
    let mut conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        "CREATE TABLE changes (id INTEGER PRIMARY KEY, journey_id TEXT NOT NULL,
             hash BLOB NOT NULL UNIQUE, bytes BLOB NOT NULL) STRICT;
         CREATE TABLE cursor (id INTEGER PRIMARY KEY, value INTEGER NOT NULL) STRICT;",
    )
    .unwrap();
    // Each journey already known, as on the device (its creation change applied).
    let mut docs: Vec<Automerge> = creations
        .iter()
        .map(|bytes| {
            let mut doc = Automerge::new();
            doc.apply_changes([Change::from_bytes(bytes.clone()).unwrap()])
                .unwrap();
            doc
        })
        .collect();
    let batches: Vec<(String, Vec<Vec<u8>>)> = batches
        .iter()
        .map(|(j, b)| (j.to_string(), b.clone()))
        .collect();
    let insert_sql = "INSERT INTO changes (journey_id, hash, bytes) VALUES (?1, ?2, ?3)";
    let start = Instant::now();
    if commits_per_journey {
        for (doc, (journey, batch)) in docs.iter_mut().zip(batches) {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            let decoded: Vec<Change> = batch
                .into_iter()
                .map(|b| Change::from_bytes(b).unwrap())
                .collect();
            {
                let mut insert = tx.prepare_cached(insert_sql).unwrap();
                for change in &decoded {
                    insert
                        .execute(params![journey, change.hash().as_ref(), change.raw_bytes()])
                        .unwrap();
                }
            }
            doc.apply_changes(decoded).unwrap();
            tx.commit().unwrap();
        }
        for i in 0..extra_commits {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            tx.execute(
                "INSERT OR REPLACE INTO cursor (id, value) VALUES (1, ?1)",
                [i as i64],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        return start.elapsed();
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    {
        let mut insert = tx.prepare_cached(insert_sql).unwrap();
        for (doc, (journey, batch)) in docs.iter_mut().zip(batches) {
            let decoded: Vec<Change> = batch
                .into_iter()
                .map(|b| Change::from_bytes(b).unwrap())
                .collect();
            for change in &decoded {
                insert
                    .execute(params![journey, change.hash().as_ref(), change.raw_bytes()])
                    .unwrap();
            }
            doc.apply_changes(decoded).unwrap();
        }
    }
    tx.commit().unwrap();
    start.elapsed()
}

fn remote_apply() {
    println!();
    println!(
        "== remote_apply: device absorbs a sync response (decode + DeviceStore batch apply + persist) \
         vs raw automerge apply_changes + one SQLite transaction (WAL, synchronous=FULL) =="
    );
    let n_changes = scaled(1_000);
    let n_journeys = 20.min(n_changes);
    let reps = 5;
    let scratch = scratch_dir();
    let dir = bench_dir();

    // A dispatcher's device writes the changes; the measured device receives them.
    let source = open_device(&scratch.path().join("source.sqlite"), Role::Dispatcher);
    let journeys: Vec<JourneyId> = (0..n_journeys)
        .map(|_| source.create_journey(&new_journey()).unwrap())
        .collect();
    for i in 0..n_changes {
        source
            .add_entry(journeys[i % n_journeys], NewEntry::note(note_text(i)))
            .unwrap();
    }
    let mut creations = Vec::new();
    let mut batches = Vec::new();
    for journey in &journeys {
        let mut all = source.changes_since(*journey, &[]).unwrap();
        let rest = all.split_off(1);
        creations.push(all.remove(0));
        batches.push((*journey, rest));
    }
    // The log interleaves journeys, as many devices' pushes would.
    let mut logged = Vec::new();
    let longest = batches.iter().map(|(_, b)| b.len()).max().unwrap_or(0);
    for i in 0..longest {
        for (journey, batch) in &batches {
            if let Some(bytes) = batch.get(i) {
                logged.push(LoggedChange {
                    seq: logged.len() as u64 + 100,
                    journey: *journey,
                    bytes: bytes.clone(),
                });
            }
        }
    }
    let change_bytes: usize = logged.iter().map(|c| c.bytes.len()).sum();
    let cursor = logged.last().map_or(0, |c| c.seq);
    let encoded = wire::encode(&SyncResponse {
        version: PROTOCOL_VERSION,
        acked: Vec::new(),
        rejected: Vec::new(),
        changes: logged,
        cursor,
        more: false,
        entered: Vec::new(),
        left: Vec::new(),
    });
    let request = SyncRequest {
        version: PROTOCOL_VERSION,
        device_id: DeviceId::new(),
        actor: Vec::new(),
        cursor: 0,
        changes: Vec::new(),
        max_changes: 5_000,
        held: None,
        report: None,
    };

    let (mut ours, mut raw, mut decode) = (Vec::new(), Vec::new(), Vec::new());
    let mut per_journey = Vec::new();
    for rep in 0..reps {
        // Interleaved, so both see the same disk and neighbours.
        let target = open_device(&dir.path().join(format!("ours-{rep}.sqlite")), Role::Driver);
        for (journey, creation) in journeys.iter().zip(&creations) {
            target
                .apply_remote_changes(*journey, vec![creation.clone()])
                .unwrap();
        }
        let start = Instant::now();
        let response = wire::decode_response(&encoded).unwrap();
        let decoded = start.elapsed();
        let report = engine::absorb(&target, "bench", &request, response).unwrap();
        let took = start.elapsed();
        assert_eq!(report.applied_new, n_changes);
        assert_eq!(report.held, 0);
        ours.push(took);
        decode.push(decoded);
        let entries: usize = journeys
            .iter()
            .map(|j| target.journey(*j).unwrap().entries.len())
            .sum();
        assert_eq!(entries, n_changes);
        drop(target);

        raw.push(raw_apply(
            &dir.path().join(format!("raw-{rep}.sqlite")),
            &creations,
            &batches,
            false,
            0,
        ));
        per_journey.push(raw_apply(
            &dir.path().join(format!("raw-per-journey-{rep}.sqlite")),
            &creations,
            &batches,
            true,
            2,
        ));
    }
    let rate = |d: &Duration| n_changes as f64 / d.as_secs_f64();
    let ours_rates: Vec<f64> = ours.iter().map(rate).collect();
    let raw_rates: Vec<f64> = raw.iter().map(rate).collect();
    let ours_ms: Vec<f64> = ours.iter().map(|d| ms(*d)).collect();
    let raw_ms: Vec<f64> = raw.iter().map(|d| ms(*d)).collect();
    let decode_ms: Vec<f64> = decode.iter().map(|d| ms(*d)).collect();
    println!(
        "{n_changes} changes across {n_journeys} journeys ({} of change bytes, response {}), median of {reps}:",
        kb(change_bytes as u64),
        kb(encoded.len() as u64)
    );
    println!(
        "remote_apply: ours {:.0} changes/s ({:.1} ms, of which msgpack decode {:.2} ms) | baseline {:.0} changes/s ({:.1} ms) | RATIO {:.2}x (goal >= 0.5x)",
        median(&ours_rates),
        median(&ours_ms),
        median(&decode_ms),
        median(&raw_rates),
        median(&raw_ms),
        median(&ours_rates) / median(&raw_rates),
    );
    println!(
        "    all runs ms: ours {:?} | baseline {:?}",
        ours_ms.iter().map(|v| v.round()).collect::<Vec<_>>(),
        raw_ms.iter().map(|v| v.round()).collect::<Vec<_>>()
    );
    let per_journey_rates: Vec<f64> = per_journey.iter().map(rate).collect();
    println!(
        "    context: ours and the baseline each commit one fsynced transaction; the baseline committing once per journey \
         ({} commits, as the device did before `DeviceStore::absorb`): {:.0} changes/s ({:.1} ms), ours/that {:.2}x",
        n_journeys,
        median(&per_journey_rates),
        median(&per_journey.iter().map(|d| ms(*d)).collect::<Vec<_>>()),
        median(&ours_rates) / median(&per_journey_rates),
    );
}

// ---------------------------------------------------------------------------------
// 2. reconnect
// ---------------------------------------------------------------------------------

/// A loopback TCP proxy that counts the bytes it forwards each way.
struct CountingProxy {
    addr: SocketAddr,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
}

impl CountingProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            addr: listener.local_addr().unwrap(),
            up: Arc::default(),
            down: Arc::default(),
            connections: Arc::default(),
        };
        let (up, down, connections) = (
            Arc::clone(&proxy.up),
            Arc::clone(&proxy.down),
            Arc::clone(&proxy.connections),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::Relaxed);
                let (up, down) = (Arc::clone(&up), Arc::clone(&down));
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, up),
                        pump(server_read, client_write, down)
                    );
                });
            }
        });
        proxy
    }

    /// (bytes device → server, bytes server → device, connections accepted)
    fn totals(&self) -> (u64, u64, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
            self.connections.load(Ordering::Relaxed),
        )
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counter: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                counter.fetch_add(n as u64, Ordering::Relaxed);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// What automerge's own sync protocol spent bringing two peers together.
struct AutomergeSync {
    round_trips: usize,
    messages: usize,
    bytes: usize,
    took: Duration,
}

/// Runs automerge's two-peer sync on every document pair at once (one connection
/// carrying all documents), fresh sync state on both sides, the device speaking first,
/// until neither side has anything to send. A round trip is device → server → device.
fn automerge_sync(device: &mut [Automerge], server: &mut [Automerge]) -> AutomergeSync {
    let n = device.len();
    let mut device_states: Vec<SyncState> = (0..n).map(|_| SyncState::new()).collect();
    let mut server_states: Vec<SyncState> = (0..n).map(|_| SyncState::new()).collect();
    let (mut messages, mut bytes, mut active_halves, mut quiet) = (0usize, 0usize, 0usize, 0u32);
    let start = Instant::now();
    for half in 0..1_000 {
        let (from, to, from_states, to_states) = if half % 2 == 0 {
            (
                &mut *device,
                &mut *server,
                &mut device_states,
                &mut server_states,
            )
        } else {
            (
                &mut *server,
                &mut *device,
                &mut server_states,
                &mut device_states,
            )
        };
        let mut sent = false;
        for i in 0..n {
            if let Some(message) = from[i].generate_sync_message(&mut from_states[i]) {
                let encoded = message.encode();
                bytes += encoded.len();
                messages += 1;
                sent = true;
                to[i]
                    .receive_sync_message(&mut to_states[i], SyncMessage::decode(&encoded).unwrap())
                    .unwrap();
            }
        }
        if sent {
            active_halves += 1;
            quiet = 0;
        } else {
            quiet += 1;
            if quiet == 2 {
                break;
            }
        }
    }
    let took = start.elapsed();
    for (d, s) in device.iter_mut().zip(server.iter_mut()) {
        assert_eq!(
            d.get_heads(),
            s.get_heads(),
            "automerge sync did not converge"
        );
    }
    AutomergeSync {
        round_trips: active_halves.div_ceil(2),
        messages,
        bytes,
        took,
    }
}

/// One measured reconnect: sync_now through the proxy, with the server's own counts.
struct Reconnect {
    round_trips: usize,
    requests: f64,
    body_up: f64,
    body_down: f64,
    wire_up: u64,
    wire_down: u64,
    connections: u64,
    pushed: usize,
    received: usize,
    took: Duration,
}

async fn measured_sync(
    client: &SyncClient,
    proxy: &CountingProxy,
    server: SocketAddr,
) -> Reconnect {
    let before = metrics_text(server).await;
    let (up0, down0, conn0) = proxy.totals();
    let start = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(300), client.sync_now())
        .await
        .unwrap()
        .unwrap();
    let took = start.elapsed();
    // Let the proxy forward the last bytes it has read.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (up1, down1, conn1) = proxy.totals();
    let after = metrics_text(server).await;
    let delta =
        |name: &str, label: &str| metric(&after, name, label) - metric(&before, name, label);
    assert_eq!(outcome.pending, 0);
    Reconnect {
        round_trips: outcome.round_trips,
        requests: delta("crewsync_http_requests_total", "route=\"/v1/sync\""),
        body_up: delta("crewsync_bytes_received_total", "route=\"/v1/sync\""),
        body_down: delta("crewsync_bytes_sent_total", "route=\"/v1/sync\""),
        wire_up: up1 - up0,
        wire_down: down1 - down0,
        connections: conn1 - conn0,
        pushed: outcome.pushed,
        received: outcome.received,
        took,
    }
}

/// Total (uncompressed `raw_bytes`, compressed `bytes`) sizes of automerge changes:
/// what travels today, and what automerge's own encoding of the same changes takes.
fn change_sizes<'a>(changes: impl Iterator<Item = &'a Vec<u8>>) -> (usize, usize) {
    changes.fold((0, 0), |(raw, compressed), bytes| {
        let mut change = Change::from_bytes(bytes.clone()).unwrap();
        (raw + bytes.len(), compressed + change.bytes().len())
    })
}

fn print_reconnect(name: &str, ours: &Reconnect, base: &AutomergeSync, sizes: (usize, usize)) {
    let body = ours.body_up + ours.body_down;
    let wire = (ours.wire_up + ours.wire_down) as f64;
    println!(
        "reconnect {name}: ours {} round trips ({} POST /v1/sync, {} new TCP connections), \
         {} bodies ({} up, {} down), {} on the wire incl. HTTP; pushed {}, received {}, {:.1} ms",
        ours.round_trips,
        ours.requests,
        ours.connections,
        kb(body as u64),
        kb(ours.body_up as u64),
        kb(ours.body_down as u64),
        kb(wire as u64),
        ours.pushed,
        ours.received,
        ms(ours.took),
    );
    println!(
        "    baseline automerge sync: {} round trips, {} messages, {} ({:.1} ms CPU, no I/O)",
        base.round_trips,
        base.messages,
        kb(base.bytes as u64),
        ms(base.took),
    );
    println!(
        "    RATIO round trips {} vs {} (goal <= 2); bytes bodies/automerge {:.2}x, wire/automerge {:.2}x (goal <= 1.2x); \
         the changes' raw_bytes in transit {} ({:.2}x automerge sync), compressed (Change::bytes) {} ({:.2}x)",
        ours.round_trips,
        base.round_trips,
        body / base.bytes as f64,
        wire / base.bytes as f64,
        kb(sizes.0 as u64),
        sizes.0 as f64 / base.bytes as f64,
        kb(sizes.1 as u64),
        sizes.1 as f64 / base.bytes as f64,
    );
}

fn reconnect() {
    println!();
    println!(
        "== reconnect: sync_now after offline work, via a counting loopback proxy to an in-process server (memory storage) \
         vs automerge two-peer sync of the same documents =="
    );
    let n_changes = scaled(1_000);
    let n_journeys = 10.min(n_changes);
    let dir = bench_dir();
    runtime().block_on(async {
        // The change log in memory; the tenant and sessions in an embedded
        // database beside it (sign-in lives in SQL).
        let db = EmbeddedTestDb::create(location().client_id, location().id)
            .await
            .unwrap();
        let storage: Arc<dyn crewsync_server::storage::Storage> =
            Arc::new(crewsync_server::storage::memory::MemoryStorage::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let app = crewsync_server::app(crewsync_server::AppState {
            storage,
            auth: Arc::clone(&db.tenant.auth),
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        let proxy = CountingProxy::start(server).await;
        let url = format!("http://{}", proxy.addr);

        let office = open_store(&dir.path().join("office.sqlite"));
        let crew = open_store(&dir.path().join("crew.sqlite"));
        let office_tokens = db
            .tenant
            .sign_in(Role::Dispatcher, office.device_id())
            .await
            .unwrap();
        sign_in(&office, &office_tokens);
        let crew_tokens = db
            .tenant
            .sign_in(Role::Driver, crew.device_id())
            .await
            .unwrap();
        sign_in(&crew, &crew_tokens);
        println!(
            "    each request carries a {}-byte Authorization header (the bearer JWT), counted in the wire bytes",
            "authorization: Bearer \r\n".len() + crew_tokens.access_token.len()
        );
        let office_sync = SyncClient::new(Arc::clone(&office), &url).unwrap();
        let crew_sync = SyncClient::new(Arc::clone(&crew), &url).unwrap();
        // The office creates the journeys with the crew's driver on them; the crew
        // receives them before working offline.
        let journeys: Vec<JourneyId> = (0..n_journeys)
            .map(|_| {
                let journey = office.create_journey(&new_journey()).unwrap();
                office
                    .assign_crew(journey, crew_tokens.user.id, Role::Driver)
                    .unwrap();
                journey
            })
            .collect();
        office_sync.sync_now().await.unwrap();
        crew_sync.sync_now().await.unwrap();

        // A: the crew works offline; nothing new on the server.
        for i in 0..n_changes {
            let journey = journeys[i % n_journeys];
            crew.add_entry(journey, NewEntry::note(note_text(i))).unwrap();
        }
        let pending = crew.outbox(usize::MAX).unwrap();
        let sizes = change_sizes(pending.iter().map(|e| &e.bytes));
        let mut crew_docs: Vec<Automerge> = journeys.iter().map(|j| saved(&crew, *j)).collect();
        let mut server_docs: Vec<Automerge> =
            journeys.iter().map(|j| saved(&office, *j)).collect();
        let ours = measured_sync(&crew_sync, &proxy, server).await;
        let base = automerge_sync(&mut crew_docs, &mut server_docs);
        print_reconnect(
            &format!("push-only ({n_changes} offline changes in {n_journeys} journeys)"),
            &ours,
            &base,
            sizes,
        );

        // B: both sides diverged: the office pushed as many changes meanwhile.
        office_sync.sync_now().await.unwrap();
        for i in 0..n_changes {
            let journey = journeys[i % n_journeys];
            crew.add_entry(journey, NewEntry::note(note_text(i))).unwrap();
            office
                .add_entry(journey, NewEntry::note(format!("office {i}")))
                .unwrap();
        }
        let pending: Vec<_> = crew
            .outbox(usize::MAX)
            .unwrap()
            .into_iter()
            .chain(office.outbox(usize::MAX).unwrap())
            .collect();
        let sizes = change_sizes(pending.iter().map(|e| &e.bytes));
        office_sync.sync_now().await.unwrap();
        let mut crew_docs: Vec<Automerge> = journeys.iter().map(|j| saved(&crew, *j)).collect();
        let mut server_docs: Vec<Automerge> =
            journeys.iter().map(|j| saved(&office, *j)).collect();
        let ours = measured_sync(&crew_sync, &proxy, server).await;
        let base = automerge_sync(&mut crew_docs, &mut server_docs);
        print_reconnect(
            &format!("divergent ({n_changes} on the device, {n_changes} from another device on the server)"),
            &ours,
            &base,
            sizes,
        );
        for journey in &journeys {
            assert_eq!(crew.heads(*journey).unwrap().len(), 2, "crew must hold both sides");
            assert!(
                crew.rejected_changes(*journey).unwrap().is_empty()
                    && office.rejected_changes(*journey).unwrap().is_empty(),
                "the server refused a change"
            );
        }
    });
}

// ---------------------------------------------------------------------------------
// 3. fleet
// ---------------------------------------------------------------------------------

/// A change as the baseline inserts it: journey, hash, bytes.
type RawChange = (JourneyId, Vec<u8>, Vec<u8>);

/// One device of the fleet: its store, its sign-in, its journey and the changes it
/// holds, for the baseline.
struct FleetDevice {
    store: Arc<DeviceStore>,
    tokens: TokenResponse,
    journey: JourneyId,
    changes: Vec<RawChange>,
}

/// Signs each store in with its tokens and gives it one journey of `entries`
/// entries, on two threads. The tokens must be an office role's (the device
/// creates the journey it fills).
fn build_fleet(
    signed_in: &[(Arc<DeviceStore>, TokenResponse)],
    entries: usize,
) -> Vec<FleetDevice> {
    let n = signed_in.len();
    let build = |i: usize| {
        let (store, tokens) = (Arc::clone(&signed_in[i].0), signed_in[i].1.clone());
        sign_in(&store, &tokens);
        let journey = store.create_journey(&new_journey()).unwrap();
        for k in 0..entries {
            store
                .add_entry(journey, NewEntry::note(note_text(k)))
                .unwrap();
        }
        let changes = store
            .outbox(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| (e.journey_id, e.hash.as_ref().to_vec(), e.bytes))
            .collect();
        FleetDevice {
            store,
            tokens,
            journey,
            changes,
        }
    };
    let (even, odd): (Vec<_>, Vec<_>) = std::thread::scope(|s| {
        let even = s.spawn(|| (0..n).step_by(2).map(build).collect::<Vec<_>>());
        let odd = s.spawn(|| (1..n).step_by(2).map(build).collect::<Vec<_>>());
        (even.join().unwrap(), odd.join().unwrap())
    });
    even.into_iter().chain(odd).collect()
}

/// The raw baseline: the same change bytes inserted with multi-row VALUES, one
/// committed statement per device batch, `concurrency` connections at a time.
async fn raw_postgres_insert(url: &str, batches: &[Vec<RawChange>], concurrency: u32) -> Duration {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(concurrency)
        .connect(url)
        .await
        .unwrap();
    sqlx::query("DROP TABLE IF EXISTS raw_changes")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE raw_changes (id BIGSERIAL PRIMARY KEY, journey_id UUID NOT NULL,
             hash BYTEA NOT NULL UNIQUE, bytes BYTEA NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ALTER TABLE raw_changes ALTER COLUMN bytes SET STORAGE EXTERNAL")
        .execute(&pool)
        .await
        .unwrap();
    // Open every connection before the clock starts.
    let warm: Vec<_> =
        futures_util::future::join_all((0..concurrency).map(|_| pool.acquire())).await;
    drop(warm);
    let batches: Vec<_> = batches.iter().map(|b| Arc::new(b.clone())).collect();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (pool, batches, next) = (pool.clone(), batches.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(batch) = batches.get(i) else { break };
                    let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                        "INSERT INTO raw_changes (journey_id, hash, bytes) ",
                    );
                    insert.push_values(batch.iter(), |mut row, (journey, hash, bytes)| {
                        row.push_bind(journey.as_uuid())
                            .push_bind(hash.as_slice())
                            .push_bind(bytes.as_slice());
                    });
                    insert.build().execute(&pool).await.unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let took = start.elapsed();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM raw_changes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        rows as usize,
        batches.iter().map(|b| b.len()).sum::<usize>()
    );
    pool.close().await;
    took
}

/// What one fleet device saw.
struct DeviceRun {
    done: Option<Instant>,
    exchanges: usize,
    errors: usize,
    /// Changes the server refused (none, when every device stays within its role).
    refused: usize,
}

/// Pushes everything `store` has until the server acknowledged it all. Pulls at most
/// one log entry per exchange: every device of a tenant would otherwise download the
/// whole fleet's log (measured separately below).
async fn push_all(store: Arc<DeviceStore>, transport: HttpTransport, peer: String) -> DeviceRun {
    let limits = Limits {
        max_push: 5_000,
        max_pull: 1,
    };
    let (mut exchanges, mut errors, mut refused) = (0, 0, 0);
    for _ in 0..50 {
        let (s, p) = (Arc::clone(&store), peer.clone());
        let request = tokio::task::spawn_blocking(move || engine::prepare(&s, &p, limits))
            .await
            .unwrap()
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(120), transport.exchange(&request)).await {
            Ok(Ok(response)) => {
                exchanges += 1;
                let (s, p) = (Arc::clone(&store), peer.clone());
                let report =
                    tokio::task::spawn_blocking(move || engine::absorb(&s, &p, &request, response))
                        .await
                        .unwrap()
                        .unwrap();
                refused += report.rejected.len();
                if report.pending == 0 {
                    return DeviceRun {
                        done: Some(Instant::now()),
                        exchanges,
                        errors,
                        refused,
                    };
                }
            }
            _ => {
                errors += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    DeviceRun {
        done: None,
        exchanges,
        errors,
        refused,
    }
}

fn fleet() {
    println!();
    println!(
        "== fleet: devices with one journey of 300 offline entries each reconnect at once to one server process on Postgres \
         vs raw batched Postgres inserts of the same bytes =="
    );
    let n_devices = scaled(200);
    let entries = 300;
    let cluster = match crewsync_testkit::postgres::shared_cluster() {
        Ok(cluster) => cluster,
        Err(e) => {
            println!("fleet: SKIPPED, no Postgres: {e}");
            return;
        }
    };
    let server_db = cluster.fresh_database().unwrap();
    let raw_db = cluster.fresh_database().unwrap();
    let scratch = scratch_dir();
    // Every device signs in (a session each) before it works offline, and a
    // dispatcher's device that pulls the whole log at the end. The fleet's devices
    // are dispatchers' too: each creates its own journey (only office roles may)
    // and fills it with entries while offline.
    let stores: Vec<_> = (0..n_devices)
        .map(|i| open_store(&scratch.path().join(format!("device-{i}.sqlite"))))
        .collect();
    let fresh = open_store(&scratch.path().join("newcomer.sqlite"));
    let mut sign_ins: Vec<_> = stores
        .iter()
        .map(|store| (Role::Dispatcher, store.device_id()))
        .collect();
    sign_ins.push((Role::Dispatcher, fresh.device_id()));
    let (server_data, mut tokens) = ServerData::prepare(Some(&server_db.url), &sign_ins);
    sign_in(&fresh, &tokens.pop().unwrap());
    let signed_in: Vec<_> = stores.into_iter().zip(tokens).collect();
    let build_start = Instant::now();
    let devices = build_fleet(&signed_in, entries);
    let total: usize = devices.iter().map(|d| d.changes.len()).sum();
    let total_bytes: usize = devices
        .iter()
        .flat_map(|d| d.changes.iter().map(|c| c.2.len()))
        .sum();
    println!(
        "    {n_devices} device stores (tmpfs) with {total} changes, {} of change bytes, built in {:.1} s",
        mb(total_bytes as u64),
        build_start.elapsed().as_secs_f64()
    );
    let server = ServerProcess::start(server_data);
    let idle_rss = server.rss();
    let url = server.url();
    let batches: Vec<_> = devices.iter().map(|d| d.changes.clone()).collect();

    runtime().block_on(async {
        let raw_before = raw_postgres_insert(&raw_db.url, &batches, 8).await;

        let barrier = Arc::new(tokio::sync::Barrier::new(n_devices + 1));
        let tasks: Vec<_> = devices
            .iter()
            .map(|d| {
                let store = Arc::clone(&d.store);
                let transport = transport(&url, &d.tokens);
                let (barrier, peer) = (Arc::clone(&barrier), url.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    push_all(store, transport, peer).await
                })
            })
            .collect();
        let cpu_before = (
            cpu_seconds(server.pid()),
            cpu_seconds(std::process::id()),
            machine_busy_seconds(),
        );
        barrier.wait().await;
        let start = Instant::now();
        let mut runs = Vec::new();
        for task in tasks {
            runs.push(task.await.unwrap());
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu = (
            cpu_seconds(server.pid()) - cpu_before.0,
            cpu_seconds(std::process::id()) - cpu_before.1,
            machine_busy_seconds() - cpu_before.2,
        );
        let failed = runs.iter().filter(|r| r.done.is_none()).count();
        let refused: usize = runs.iter().map(|r| r.refused).sum();
        let refused_kept: usize = devices
            .iter()
            .map(|d| d.store.rejected_changes(d.journey).unwrap().len())
            .sum();
        assert_eq!(
            (refused, refused_kept),
            (0, 0),
            "the server refused fleet changes: the figures would not measure acceptance"
        );
        let finish: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.done.map(|d| (d - start).as_secs_f64()))
            .collect();
        let converged = finish.iter().copied().fold(0.0, f64::max);
        let peak = server.hwm();
        let after_rss = server.rss();
        let metrics = metrics_text(server.addr).await;

        let raw_after = raw_postgres_insert(&raw_db.url, &batches, 8).await;
        let raw_serial = raw_postgres_insert(&raw_db.url, &batches, 1).await;
        let raw_mean = (raw_before + raw_after).as_secs_f64() / 2.0;

        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&server_db.superuser_url)
            .await
            .unwrap();
        let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM change_log")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;

        let ours_rate = total as f64 / converged;
        let raw_rate = total as f64 / raw_mean;
        println!(
            "fleet: {n_devices} devices x {} changes = {total}: full convergence (every change acknowledged) in {:.2} s, \
             server {:.0} changes/s | baseline raw INSERT (8 connections, batches of {}) {:.0} changes/s ({:.2} s; runs {:.2} s, {:.2} s) | RATIO {:.2}x (goal >= 0.3x)",
            entries + 1,
            converged,
            ours_rate,
            entries + 1,
            raw_rate,
            raw_mean,
            raw_before.as_secs_f64(),
            raw_after.as_secs_f64(),
            ours_rate / raw_rate,
        );
        println!(
            "    devices done: p50 {:.2} s, p99 {:.2} s; exchanges {} (errors/retries {}, unfinished devices {failed}); change_log rows {logged}; \
             server counted {} accepted, {} sync requests",
            pct(&finish, 0.5),
            pct(&finish, 0.99),
            runs.iter().map(|r| r.exchanges).sum::<usize>(),
            runs.iter().map(|r| r.errors).sum::<usize>(),
            metric(&metrics, "crewsync_changes_accepted_total", ""),
            metric(&metrics, "crewsync_http_requests_total", "route=\"/v1/sync\""),
        );
        println!(
            "    server RSS: idle {} | peak (VmHWM) {} | after {}",
            mb(idle_rss),
            mb(peak),
            mb(after_rss),
        );
        println!(
            "    note: each sync request is authenticated before its append (bearer JWT checked, then the session and \
             the user read from Postgres: 2 lookups per request; the baseline has none)"
        );
        println!(
            "    context: raw INSERT on one connection (the server serializes a tenant's appends) {:.0} changes/s ({:.2} s), RATIO vs that {:.2}x; \
             CPU over the {wall:.2} s run: server {:.2} s ({:.0} changes per server CPU-second), devices in this process {:.2} s, \
             whole machine {:.2} s of {:.2} s (Postgres and anything else: {:.2} s)",
            total as f64 / raw_serial.as_secs_f64(),
            raw_serial.as_secs_f64(),
            ours_rate / (total as f64 / raw_serial.as_secs_f64()),
            cpu.0,
            total as f64 / cpu.0.max(0.01),
            cpu.1,
            cpu.2,
            wall * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
            (cpu.2 - cpu.0 - cpu.1).max(0.0),
        );

        // Context: what one device of this tenant downloads to catch up with the fleet.
        let newcomer = SyncClient::new(Arc::clone(&fresh), &url).unwrap();
        let start = Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(600), newcomer.sync_now())
            .await
            .unwrap()
            .unwrap();
        let took = start.elapsed();
        println!(
            "    context: one device pulling the tenant's whole log: {} changes in {} round trips, {:.2} s ({:.0} changes/s); \
             every device of a tenant receives every journey's changes",
            outcome.received,
            outcome.round_trips,
            took.as_secs_f64(),
            outcome.received as f64 / took.as_secs_f64(),
        );
    });
    drop(server);
}

// ---------------------------------------------------------------------------------
// 4. live_latency
// ---------------------------------------------------------------------------------

/// A frame or pong as the listening device saw it, stamped on arrival.
enum Heard {
    Head(u64, Instant),
    Pong(Vec<u8>, Instant),
}

/// The pushing device and what it pushes to.
struct Pusher {
    store: Arc<DeviceStore>,
    journey: JourneyId,
    transport: HttpTransport,
    peer: String,
}

/// One push of one change: (ms from the HTTP response to the frame, signed — the
/// server tells live sockets before it writes the response, so a frame can beat the
/// acknowledgement; ms from sending the request to the frame).
async fn push_and_hear(
    pusher: &Pusher,
    heard: &mut tokio::sync::mpsc::UnboundedReceiver<Heard>,
    i: usize,
) -> (f64, f64) {
    let (store, peer, journey) = (
        Arc::clone(&pusher.store),
        pusher.peer.clone(),
        pusher.journey,
    );
    let request = tokio::task::spawn_blocking(move || {
        store.add_entry(journey, NewEntry::note(note_text(i)))?;
        engine::prepare(&store, &peer, Limits::default())
    })
    .await
    .unwrap()
    .unwrap();
    let sent = Instant::now();
    let response =
        tokio::time::timeout(Duration::from_secs(10), pusher.transport.exchange(&request))
            .await
            .unwrap()
            .unwrap();
    let acked = Instant::now();
    assert!(
        response.rejected.is_empty(),
        "the server refused the push: {:?}",
        response.rejected
    );
    let head = response.cursor;
    let (store, peer) = (Arc::clone(&pusher.store), pusher.peer.clone());
    tokio::task::spawn_blocking(move || engine::absorb(&store, &peer, &request, response))
        .await
        .unwrap()
        .unwrap();
    let arrived = loop {
        match tokio::time::timeout(Duration::from_secs(5), heard.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Heard::Head(h, at) if h >= head => break at,
            _ => {}
        }
    };
    let signed = if arrived >= acked {
        ms(arrived - acked)
    } else {
        -ms(acked - arrived)
    };
    (signed, ms(arrived - sent))
}

/// One WebSocket ping → pong round trip on the listening socket, in ms.
async fn ping_pong<S>(
    sink: &mut S,
    heard: &mut tokio::sync::mpsc::UnboundedReceiver<Heard>,
    i: usize,
) -> f64
where
    S: futures_util::Sink<WsMessage> + Unpin,
    S::Error: std::fmt::Debug,
{
    let payload = (i as u64).to_be_bytes().to_vec();
    let pinged = Instant::now();
    sink.send(WsMessage::Ping(payload.clone().into()))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), heard.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Heard::Pong(p, at) if p == payload => break ms(at - pinged),
            _ => {}
        }
    }
}

fn live_latency() {
    println!();
    println!(
        "== live_latency: push acknowledged to device A → live frame at device B (server child, embedded SQLite) \
         vs a WebSocket ping/pong round trip on the same socket =="
    );
    let samples = scaled(500);
    let spaced_samples = scaled(50);
    let interleaved_samples = scaled(100);
    let scratch = scratch_dir();
    // Device A (a driver) pushes; device B (a dispatcher, the office) creates the
    // journey with A's driver on its crew, then listens.
    let store = open_store(&scratch.path().join("pusher.sqlite"));
    let office = open_store(&scratch.path().join("office.sqlite"));
    let (data, tokens) = ServerData::prepare(
        None,
        &[
            (Role::Driver, store.device_id()),
            (Role::Dispatcher, office.device_id()),
        ],
    );
    sign_in(&store, &tokens[0]);
    sign_in(&office, &tokens[1]);
    let server = ServerProcess::start(data);
    let url = server.url();
    runtime().block_on(async {
        let journey = office.create_journey(&new_journey()).unwrap();
        office
            .assign_crew(journey, tokens[0].user.id, Role::Driver)
            .unwrap();
        SyncClient::new(Arc::clone(&office), &url)
            .unwrap()
            .sync_now()
            .await
            .unwrap();
        // The driver receives the journey (and its place on the crew) before pushing.
        SyncClient::new(Arc::clone(&store), &url)
            .unwrap()
            .sync_now()
            .await
            .unwrap();
        assert!(
            store.journey(journey).is_ok(),
            "the driver received the office's journey"
        );
        let pusher = Pusher {
            store,
            journey,
            transport: transport(&url, &tokens[0]),
            peer: url.clone(),
        };

        // Device B listens the way `SyncClient::listen_live` does: a plain client
        // with its bearer token in the handshake.
        let live_url = format!("ws://{}/v1/live", server.addr);
        let (socket, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(live_request(&live_url, &tokens[1].access_token)),
        )
        .await
        .unwrap()
        .unwrap();
        let (mut sink, mut stream) = socket.split();
        let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let at = Instant::now();
                let event = match message {
                    WsMessage::Text(text) => {
                        let frame: serde_json::Value =
                            serde_json::from_str(text.as_str()).unwrap();
                        Heard::Head(frame["head"].as_u64().unwrap(), at)
                    }
                    WsMessage::Pong(payload) => Heard::Pong(payload.to_vec(), at),
                    _ => continue,
                };
                if heard_tx.send(event).is_err() {
                    break;
                }
            }
        });
        // The first frame is the head at connect time.
        let first = tokio::time::timeout(Duration::from_secs(5), heard.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(first, Heard::Head(..)));

        // Back to back: each push right after the previous frame arrived.
        let (mut after_ack, mut after_send) = (Vec::new(), Vec::new());
        for i in 0..samples {
            let (signed, upper) = push_and_hear(&pusher, &mut heard, i).await;
            after_ack.push(signed);
            after_send.push(upper);
        }
        // The baseline on the same socket: ping → pong, back to back.
        let mut pings = Vec::new();
        for i in 0..samples {
            pings.push(ping_pong(&mut sink, &mut heard, i).await);
        }
        // Context: each push after a ping/pong on the socket, as after the server's
        // keep-alive: the device has just sent something on it.
        let mut after_ping = Vec::new();
        for i in 0..interleaved_samples {
            ping_pong(&mut sink, &mut heard, samples + i).await;
            after_ping.push(push_and_hear(&pusher, &mut heard, samples + i).await.0);
        }
        // Context: pushes 100 ms apart, so no earlier frame is still waiting for the
        // device's (delayed) TCP acknowledgement when the next one is written.
        let mut spaced = Vec::new();
        for i in 0..spaced_samples {
            tokio::time::sleep(Duration::from_millis(100)).await;
            spaced.push(push_and_hear(&pusher, &mut heard, 2 * samples + i).await.0);
        }
        let early = after_ack.iter().filter(|v| **v < 0.0).count();
        let ack_clamped: Vec<f64> = after_ack.iter().map(|v| v.max(0.0)).collect();
        let spaced: Vec<f64> = spaced.iter().map(|v| v.max(0.0)).collect();
        let after_ping: Vec<f64> = after_ping.iter().map(|v| v.max(0.0)).collect();
        println!(
            "live_latency ({samples} pushes of one change, back to back): acknowledged→frame p50 {:.2} ms, p99 {:.2} ms \
             (goal <= 10 / 50 ms; {early} frames arrived before the HTTP response, counted as 0) \
             | baseline ping/pong p50 {:.3} ms, p99 {:.3} ms | RATIO p99 {:.1}x",
            pct(&ack_clamped, 0.5),
            pct(&ack_clamped, 0.99),
            pct(&pings, 0.5),
            pct(&pings, 0.99),
            pct(&ack_clamped, 0.99) / pct(&pings, 0.99),
        );
        println!(
            "    upper bound, request sent→frame (includes upload, authentication, decode, the server's fsynced append): \
             p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms (RATIO p50 {:.1}x, p99 {:.1}x ping/pong); signed acknowledged→frame p50 {:.2} ms",
            pct(&after_send, 0.5),
            pct(&after_send, 0.99),
            pct(&after_send, 1.0),
            pct(&after_send, 0.5) / pct(&pings, 0.5),
            pct(&after_send, 0.99) / pct(&pings, 0.99),
            pct(&after_ack, 0.5),
        );
        println!(
            "    context: {spaced_samples} pushes 100 ms apart: acknowledged→frame p50 {:.2} ms, p99 {:.2} ms; \
             {interleaved_samples} pushes each right after a ping/pong on the live socket: p50 {:.2} ms, p99 {:.2} ms",
            pct(&spaced, 0.5),
            pct(&spaced, 0.99),
            pct(&after_ping, 0.5),
            pct(&after_ping, 0.99),
        );
    });
    drop(server);
}

// ---------------------------------------------------------------------------------
// 5. idle_connections
// ---------------------------------------------------------------------------------

/// Opens one live socket (3 attempts) and holds it, answering pings, until `stop`.
async fn hold_socket(
    url: String,
    token: Arc<str>,
    connecting: Arc<tokio::sync::Semaphore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
    opened: tokio::sync::mpsc::UnboundedSender<bool>,
) {
    // Small client buffers: the bench process holds as many sockets as the server.
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let mut socket = None;
    {
        let _permit = connecting.acquire().await.unwrap();
        for _ in 0..3 {
            let attempt = tokio::time::timeout(
                Duration::from_secs(10),
                tokio_tungstenite::connect_async_with_config(
                    live_request(&url, &token),
                    Some(config),
                    true,
                ),
            )
            .await;
            if let Ok(Ok((s, _))) = attempt {
                socket = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let Some(mut socket) = socket else {
        let _ = opened.send(false);
        return;
    };
    open.fetch_add(1, Ordering::Relaxed);
    let _ = opened.send(true);
    loop {
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(_)) => {}
                _ => break,
            },
            _ = stop.changed() => break,
        }
    }
    open.fetch_sub(1, Ordering::Relaxed);
}

fn idle_connections(nofile: u64, nofile_hard: u64) {
    println!();
    println!(
        "== idle_connections: idle live sockets held by one server process (child, embedded SQLite) and its RSS per socket \
         vs the idle server's RSS =="
    );
    let wanted = scaled(10_000);
    // Each side holds one descriptor per socket; keep headroom for files and pools.
    let allowed = nofile.saturating_sub(256) as usize;
    let n = wanted.min(allowed);
    if n < wanted {
        println!(
            "    NOTE: the open-files limit is {nofile} (hard {nofile_hard}): opening {n} sockets instead of {wanted} \
             (raise it with `ulimit -Hn` / limits.conf to measure the goal of 10,000)"
        );
    }
    // One session for every socket: a socket holds nothing per session, and a
    // sign-in per socket would only lengthen the setup.
    let (data, tokens) = ServerData::prepare(None, &[(Role::Dispatcher, DeviceId::new())]);
    let token: Arc<str> = tokens[0].access_token.as_str().into();
    let server = ServerProcess::start(data);
    let addr = server.addr;
    let url = format!("ws://{addr}/v1/live");
    // The idle figure after the server has served a request of each kind.
    runtime().block_on(async {
        let (warm, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(live_request(&url, &token)),
        )
        .await
        .unwrap()
        .unwrap();
        drop(warm);
        let _ = metrics_text(addr).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    let idle = server.rss();
    let ping_secs = crewsync_server::config::DEFAULT_LIVE_PING_SECS;

    runtime().block_on(async {
        let connecting = Arc::new(tokio::sync::Semaphore::new(64));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let open = Arc::new(AtomicUsize::new(0));
        let (opened_tx, mut opened_rx) = tokio::sync::mpsc::unbounded_channel();
        let start = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                tokio::spawn(hold_socket(
                    url.clone(),
                    Arc::clone(&token),
                    Arc::clone(&connecting),
                    stop_rx.clone(),
                    Arc::clone(&open),
                    opened_tx.clone(),
                ))
            })
            .collect();
        drop(opened_tx);
        let (mut ok, mut failed) = (0usize, 0usize);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        while ok + failed < n {
            match tokio::time::timeout_at(deadline, opened_rx.recv()).await {
                Ok(Some(true)) => ok += 1,
                Ok(Some(false)) => failed += 1,
                _ => break,
            }
        }
        let open_secs = start.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let held = metric(&metrics_text(addr).await, "crewsync_live_connections", "");
        let rss = server.rss();
        // Across one keep-alive ping interval: every socket has been pinged and has
        // answered, and stays open.
        tokio::time::sleep(Duration::from_secs(ping_secs + 2)).await;
        let held_later = metric(&metrics_text(addr).await, "crewsync_live_connections", "");
        let rss_later = server.rss();
        let peak = server.hwm();
        let per = |rss: u64, held: f64| rss.saturating_sub(idle) as f64 / held.max(1.0) / 1024.0;
        println!(
            "idle_connections: opened {ok} of {n} sockets ({failed} failed) in {open_secs:.1} s; server holds {held} \
             (after one {ping_secs}s ping interval: {held_later}, client side still open {})",
            open.load(Ordering::Relaxed)
        );
        println!(
            "    server RSS: idle {} | with the sockets {} | after the ping round {} (VmHWM {}) | {:.1} KB per socket, {:.1} KB after pings (goal <= 50 KB) | RATIO {:.1}x idle RSS",
            mb(idle),
            mb(rss),
            mb(rss_later),
            mb(peak),
            per(rss, held),
            per(rss_later, held_later),
            rss_later as f64 / idle as f64,
        );
        stop_tx.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            for task in tasks {
                let _ = task.await;
            }
        })
        .await;
    });
    drop(server);
}
