//! End-to-end tests of the throwaway PostgreSQL cluster.
// Helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crewsync_testkit::postgres::{PgCluster, find_bin_dir, shared_cluster};
use sqlx::PgPool;

fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Whether `pid` is a live process (a zombie counts as gone).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            !matches!(stat.rsplit_once(") "), Some((_, rest)) if rest.starts_with(['Z', 'X']))
        }
        Err(_) => false,
    }
}

fn postmaster_pid(data_dir: &Path) -> u32 {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

/// Polls `done` for up to `limit`; true if it became true.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

#[tokio::test]
async fn fresh_databases_are_isolated_and_dropped() {
    let cluster = shared_cluster().unwrap();
    assert_eq!(cluster.host(), "127.0.0.1");
    let a = cluster.fresh_database().unwrap();
    let b = cluster.fresh_database().unwrap();
    assert_ne!(a.name, b.name);

    let pool_a = PgPool::connect(&a.url).await.unwrap();
    let pool_b = PgPool::connect(&b.url).await.unwrap();
    let version: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(&pool_a)
        .await
        .unwrap();
    assert!(version.starts_with("PostgreSQL "), "{version}");
    let current: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&pool_b)
        .await
        .unwrap();
    assert_eq!(current, b.name);

    sqlx::query("CREATE TABLE only_in_a (id int)")
        .execute(&pool_a)
        .await
        .unwrap();
    let lookup = "SELECT to_regclass('only_in_a')::text";
    let in_a: Option<String> = sqlx::query_scalar(lookup).fetch_one(&pool_a).await.unwrap();
    let in_b: Option<String> = sqlx::query_scalar(lookup).fetch_one(&pool_b).await.unwrap();
    assert_eq!(in_a.as_deref(), Some("only_in_a"));
    assert_eq!(in_b, None);

    // Dropping the TestDatabase drops the database even with pool_a still
    // connected (WITH (FORCE)).
    let name_a = a.name.clone();
    drop(a);
    let admin = PgPool::connect(&cluster.superuser_url()).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name_a)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(count, 0, "database {name_a} should be gone");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&b.name)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(count, 1);
    pool_a.close().await;
    pool_b.close().await;
    admin.close().await;
}

#[tokio::test]
async fn committed_row_survives_immediate_stop_and_restart() {
    let mut cluster = PgCluster::start().unwrap();
    let db = cluster.fresh_database().unwrap();
    let pool = PgPool::connect(&db.url).await.unwrap();
    sqlx::query("CREATE TABLE t (id int PRIMARY KEY, note text)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (1, 'before the crash')")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let port = cluster.port();
    cluster.stop_immediate().unwrap();
    assert!(!cluster.is_running());
    assert!(!accepts_connections(port), "server still up after stop");

    cluster.start_again().unwrap();
    assert_eq!(cluster.port(), port);
    assert!(cluster.is_running());
    let pool = PgPool::connect(&db.url).await.unwrap();
    let note: String = sqlx::query_scalar("SELECT note FROM t WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(note, "before the crash");
    pool.close().await;
    // The log shows the restart went through crash recovery.
    let log = std::fs::read_to_string(cluster.log_file()).unwrap();
    assert!(
        log.contains("was not properly shut down"),
        "expected crash recovery in the log:\n{log}"
    );
}

#[test]
fn start_failure_quotes_the_server_log() {
    let mut cluster = PgCluster::start().unwrap();
    let port = cluster.port();
    cluster.stop_immediate().unwrap();
    // Someone else takes the port while the server is down.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let err = cluster.start_again().unwrap_err().to_string();
    assert!(err.contains("Address already in use"), "{err}");
    assert!(err.contains("postgres.log"), "{err}");
    drop(squatter);
    cluster.start_again().unwrap();
    assert!(accepts_connections(port));
}

#[test]
fn dropping_an_own_cluster_stops_it_and_removes_its_dir() {
    let cluster = PgCluster::start().unwrap();
    let port = cluster.port();
    let root = cluster.socket_dir().to_path_buf();
    let pid = postmaster_pid(cluster.data_dir());
    assert!(cluster.data_dir().starts_with(&root));
    assert!(accepts_connections(port));
    assert_eq!(cluster.psql("postgres", "SELECT 40 + 2").unwrap(), "42");
    drop(cluster);
    assert!(!root.exists(), "{} still exists", root.display());
    // pg_ctl -w returns once postmaster.pid is gone, a moment before the exit.
    assert!(
        eventually(Duration::from_secs(5), || !process_alive(pid)),
        "postmaster {pid} still running"
    );
    assert!(!accepts_connections(port));
}

#[test]
fn psql_reports_sql_errors() {
    let cluster = shared_cluster().unwrap();
    let err = cluster
        .psql("postgres", "SELECT * FROM no_such_table")
        .unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");
}

#[test]
fn missing_binaries_give_an_install_hint() {
    let empty = tempfile::tempdir().unwrap();
    let err = find_bin_dir(Some(empty.path().as_os_str())).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("apt-get install postgresql"), "{msg}");
    assert!(msg.contains("CREWSYNC_PG_BIN"), "{msg}");
    assert!(msg.contains(&empty.path().display().to_string()), "{msg}");

    let err = PgCluster::start_with_bin_dir(empty.path()).unwrap_err();
    assert!(
        err.to_string().contains("apt-get install postgresql"),
        "{err}"
    );
}

#[test]
fn binaries_are_found_on_this_machine() {
    let dir = find_bin_dir(None).unwrap();
    assert!(dir.join("initdb").is_file(), "{}", dir.display());
}

// ---- The watchdog: a cluster outlives no test process. ----

/// Selects the helper's behaviour in the child process; unset in normal runs.
const HELPER_ENV: &str = "CREWSYNC_TESTKIT_WATCHDOG_HELPER";
const HELPER_TEST: &str = "watchdog_helper_child";
const MARKER: &str = "CREWSYNC-HELPER-CLUSTER";

/// Not a real test: in a child process (env var set) it starts the shared
/// cluster, prints where it is, then panics (`panic`) or waits to be killed
/// (`hang`). In a normal run it does nothing.
#[test]
fn watchdog_helper_child() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    let cluster = shared_cluster().unwrap();
    println!(
        "{MARKER} {} {} {}",
        cluster.port(),
        postmaster_pid(cluster.data_dir()),
        cluster.socket_dir().display()
    );
    match mode.as_str() {
        "panic" => panic!("helper panics on purpose, leaving the shared cluster behind"),
        _ => std::thread::sleep(Duration::from_secs(60)),
    }
}

struct HelperCluster {
    port: u16,
    postmaster: u32,
    root: PathBuf,
}

fn spawn_helper(mode: &str) -> (std::process::Child, HelperCluster) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([HELPER_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let line = line.unwrap();
        // libtest prints "test name ... " on the same line first.
        if let Some((_, rest)) = line.split_once(MARKER) {
            let mut parts = rest.split_whitespace();
            let info = HelperCluster {
                port: parts.next().unwrap().parse().unwrap(),
                postmaster: parts.next().unwrap().parse().unwrap(),
                root: PathBuf::from(parts.next().unwrap()),
            };
            return (child, info);
        }
    }
    panic!(
        "helper exited without printing its cluster: {:?}",
        child.wait()
    );
}

fn assert_cleaned_up(info: &HelperCluster) {
    let limit = Duration::from_secs(15);
    assert!(
        eventually(limit, || !info.root.exists()),
        "cluster dir {} not removed within {limit:?}",
        info.root.display()
    );
    assert!(
        eventually(limit, || !process_alive(info.postmaster)),
        "postmaster {} still running",
        info.postmaster
    );
    assert!(
        eventually(limit, || !accepts_connections(info.port)),
        "port {} still accepts connections",
        info.port
    );
}

#[test]
fn watchdog_stops_cluster_after_test_process_panics() {
    let (mut child, info) = spawn_helper("panic");
    let status = child.wait().unwrap();
    assert!(!status.success(), "helper should have failed: {status}");
    assert_cleaned_up(&info);
}

#[test]
fn watchdog_stops_cluster_after_test_process_is_killed() {
    let (mut child, info) = spawn_helper("hang");
    // Up while the owner lives, so the checks below can tell a difference.
    assert!(accepts_connections(info.port));
    assert!(info.root.exists());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        info.root.exists(),
        "watchdog fired while its owner was alive"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_cleaned_up(&info);
}
