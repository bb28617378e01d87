//! A throwaway PostgreSQL cluster on loopback for tests.
//!
//! Each cluster lives in its own temp dir (data dir, log and Unix socket), on
//! 127.0.0.1 and a free port, with `trust` auth: it is reachable only from this
//! machine and is deleted afterwards. The API is synchronous (it runs the
//! cluster's own `initdb`, `pg_ctl`, `psql` and `createdb`) so sync and async
//! tests can both use it without an async runtime here.
//!
//! Use [`shared_cluster`] and [`PgCluster::fresh_database`] for ordinary tests;
//! start an own [`PgCluster`] only to stop or restart the server.

mod binaries;
mod watchdog;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub use binaries::{PG_BIN_ENV, REQUIRED_PROGRAMS, find_bin_dir, find_bin_dir_from_env};

/// Database superuser created by `initdb -U`; also the OS user the server runs
/// as when the tests run as root.
pub const SUPERUSER: &str = "postgres";

/// The unprivileged role test databases belong to and servers connect as: not a
/// superuser and without BYPASSRLS, so the schema's row-level security applies
/// to it as it does to a production server's role.
pub const APP_ROLE: &str = "crewsync_app";

/// Loopback address the server listens on.
pub const HOST: &str = "127.0.0.1";

/// OS account used when running as root (PostgreSQL refuses to run as root).
const SYSTEM_USER: &str = "postgres";

/// Start attempts: the port picked by binding port 0 can be taken by someone
/// else before the server binds it.
const START_ATTEMPTS: usize = 5;

/// Lines of the server log quoted in errors.
const LOG_TAIL_LINES: usize = 40;

/// Unix socket paths are limited to 107 bytes; this is what gets appended to
/// the base temp dir: `/crewsync-pg-XXXXXX/.s.PGSQL.65535`.
const SOCKET_SUFFIX_LEN: usize = 1 + 18 + 1 + 15;
const MAX_SOCKET_PATH: usize = 107;

/// Everything that can go wrong starting or using a test cluster.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No directory with the PostgreSQL programs was found.
    #[error(
        "PostgreSQL server programs not found (searched: {searched}). Install them with \
         `apt-get install postgresql` (Debian/Ubuntu; they land in /usr/lib/postgresql/<version>/bin), \
         or set CREWSYNC_PG_BIN to a directory containing initdb, pg_ctl, postgres, psql and createdb"
    )]
    BinariesNotFound {
        /// What was searched and, when known, what was missing.
        searched: String,
    },

    /// Running as root needs the unprivileged `postgres` OS user.
    #[error(
        "tests run as root but PostgreSQL refuses to run as root and the `postgres` system user \
         could not be used ({reason}); `apt-get install postgresql` creates it, or run the tests \
         as an unprivileged user"
    )]
    NoSystemUser {
        /// Why the lookup failed.
        reason: String,
    },

    /// No temp dir fits (Unix socket path length, quoting, traversability).
    #[error("no usable temp directory for the test cluster: {reasons}")]
    NoTempDir {
        /// Why each candidate was rejected.
        reasons: String,
    },

    /// A program could not be started at all.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },

    /// A program ran and failed.
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its stderr and stdout.
        output: String,
    },

    /// The server did not come up; `log_tail` is the end of its log.
    #[error(
        "PostgreSQL did not start after {attempts} attempt(s): {reason}\n--- tail of {log} ---\n{log_tail}"
    )]
    StartFailed {
        /// How many ports were tried.
        attempts: usize,
        /// What `pg_ctl` said.
        reason: String,
        /// The server log file.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },

    /// A file-system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },

    /// The process-wide cluster failed to start (on first use); later calls
    /// report the same error instead of retrying a slow failure.
    #[error("the shared test cluster is unavailable: {0}")]
    SharedClusterUnavailable(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Io { what, source }
}

/// The process-wide cluster, started on first use and shared by all tests in
/// the process. It is never dropped (statics are not); its watchdog stops it
/// and removes its directory after the process exits. Use
/// [`PgCluster::fresh_database`] to keep tests apart.
pub fn shared_cluster() -> Result<&'static PgCluster, PgError> {
    static SHARED: OnceLock<Result<PgCluster, String>> = OnceLock::new();
    match SHARED.get_or_init(|| PgCluster::start().map_err(|e| e.to_string())) {
        Ok(cluster) => Ok(cluster),
        Err(msg) => Err(PgError::SharedClusterUnavailable(msg.clone())),
    }
}

/// A private PostgreSQL cluster in a temp dir. Dropping it stops the server
/// (`pg_ctl stop -m immediate`) and removes the directory; if the process dies
/// first, a watchdog process does the same.
#[derive(Debug)]
pub struct PgCluster {
    bin_dir: PathBuf,
    /// Temp dir: holds `data/`, the log and the Unix socket.
    root: PathBuf,
    data_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    /// Run server programs via `runuser -u postgres` (euid is 0).
    as_system_user: bool,
    watchdog: Option<Child>,
}

impl PgCluster {
    /// Starts a new cluster with the programs found by [`find_bin_dir_from_env`].
    pub fn start() -> Result<Self, PgError> {
        Self::start_with_bin_dir(&find_bin_dir_from_env()?)
    }

    /// Starts a new cluster with the programs in `bin_dir`.
    pub fn start_with_bin_dir(bin_dir: &Path) -> Result<Self, PgError> {
        binaries::check_bin_dir(bin_dir)?;
        let as_system_user = effective_uid() == 0;
        let owner = if as_system_user {
            Some(lookup_system_user()?)
        } else {
            None
        };
        let base = choose_base_dir(as_system_user)?;
        let root = tempfile::Builder::new()
            .prefix("crewsync-pg-")
            .tempdir_in(&base)
            .map_err(io_err(format!("creating a temp dir in {}", base.display())))?
            .keep();

        // From here on, dropping `cluster` on an error path cleans up.
        let mut cluster = PgCluster {
            bin_dir: bin_dir.to_path_buf(),
            data_dir: root.join("data"),
            log_file: root.join("postgres.log"),
            root,
            port: 0,
            as_system_user,
            watchdog: None,
        };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&cluster.root, Some(uid), Some(gid)).map_err(io_err(
                format!("handing {} to the postgres user", cluster.root.display()),
            ))?;
        }
        // Before initdb, so that even a process killed during startup is cleaned up.
        let pg_ctl = cluster.server_command("pg_ctl");
        let prefix: Vec<&OsStr> = std::iter::once(pg_ctl.get_program())
            .chain(pg_ctl.get_args())
            .collect();
        cluster.watchdog = Some(watchdog::spawn(&cluster.root, &cluster.data_dir, &prefix)?);

        cluster.initdb()?;
        cluster.start_on_free_port()?;
        cluster.psql(
            "postgres",
            &format!("CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE"),
        )?;
        Ok(cluster)
    }

    /// TCP port on [`HOST`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Host to connect to: always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// URL of the `postgres` database as the superuser (no password: trust auth).
    pub fn superuser_url(&self) -> String {
        self.database_url("postgres")
    }

    /// URL of `database` as the superuser. The name is inserted verbatim, so it
    /// must be URL-safe (names from [`PgCluster::fresh_database`] are).
    pub fn database_url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@{HOST}:{}/{database}", self.port)
    }

    /// URL of `database` as [`APP_ROLE`], the role a server connects as.
    pub fn app_url(&self, database: &str) -> String {
        format!("postgres://{APP_ROLE}@{HOST}:{}/{database}", self.port)
    }

    /// The cluster's data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Directory of the Unix socket; also the temp dir removed on drop.
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }

    /// The server log.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Directory of the PostgreSQL programs this cluster uses.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Creates an empty database with a unique name, owned by [`APP_ROLE`]; it is
    /// dropped when the returned value is.
    pub fn fresh_database(&self) -> Result<TestDatabase, PgError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "crewsync_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut cmd = self.client_command("createdb");
        cmd.args(["-O", APP_ROLE]).arg(&name);
        run(&mut cmd)?;
        Ok(TestDatabase {
            url: self.app_url(&name),
            superuser_url: self.database_url(&name),
            name,
            dropper: Dropper {
                psql: self.bin_dir.join("psql"),
                socket_dir: self.root.clone(),
                port: self.port,
            },
        })
    }

    /// Runs `sql` with `psql` in `database` as the superuser and returns its
    /// unaligned, tuples-only output (trimmed). Stops at the first error.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, PgError> {
        let mut cmd = self.client_command("psql");
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(database)
            .arg("-c")
            .arg(sql);
        let out = run(&mut cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Whether the server is running (`pg_ctl status`).
    pub fn is_running(&self) -> bool {
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("-D").arg(&self.data_dir).arg("status");
        cmd.output().is_ok_and(|o| o.status.success())
    }

    /// Stops the server like a crash: `pg_ctl stop -m immediate` (no
    /// checkpoint; the next start runs crash recovery). Takes `&mut self` so
    /// the shared cluster, which other tests use, cannot be stopped.
    pub fn stop_immediate(&mut self) -> Result<(), PgError> {
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "immediate", "-w", "stop"]);
        run(&mut cmd).map(|_| ())
    }

    /// Starts the server again on the same data dir and the same port (so
    /// URLs stay valid), e.g. after [`PgCluster::stop_immediate`].
    pub fn start_again(&mut self) -> Result<(), PgError> {
        self.try_start(self.port)
            .map_err(|failure| failure.into_error(1))
    }

    fn initdb(&self) -> Result<(), PgError> {
        let mut cmd = self.server_command("initdb");
        cmd.arg("-D").arg(&self.data_dir).args([
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "-N",
            "--no-locale",
            "-E",
            "UTF8",
        ]);
        run(&mut cmd).map(|_| ())
    }

    fn start_on_free_port(&mut self) -> Result<(), PgError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            match self.try_start(port) {
                Ok(()) => {
                    self.port = port;
                    return Ok(());
                }
                Err(failure) if failure.port_taken && attempt < START_ATTEMPTS => continue,
                Err(failure) => return Err(failure.into_error(attempt)),
            }
        }
    }

    fn try_start(&self, port: u16) -> Result<(), StartFailure> {
        let log_offset = std::fs::metadata(&self.log_file).map_or(0, |m| m.len());
        let options = format!(
            "-p {port} -c listen_addresses={HOST} -c unix_socket_directories={} -c fsync=on",
            self.root.display()
        );
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-t", "60", "-o"])
            .arg(options)
            .arg("start");
        let reason = match run(&mut cmd) {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        };
        let log_tail = read_log_tail(&self.log_file, log_offset);
        let port_taken = log_tail.contains("Address already in use")
            || log_tail.contains("could not bind")
            || log_tail.contains("could not create any TCP/IP sockets");
        Err(StartFailure {
            reason,
            log: self.log_file.clone(),
            log_tail,
            port_taken,
        })
    }

    /// A server program (`initdb`, `pg_ctl`), run as `postgres` when we are root.
    fn server_command(&self, program: &str) -> Command {
        let exe = self.bin_dir.join(program);
        let mut cmd = if self.as_system_user {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", SYSTEM_USER, "--"]).arg(exe);
            cmd
        } else {
            Command::new(exe)
        };
        // The server user may not be able to read the test's working dir,
        // which initdb and postgres trip over.
        cmd.current_dir(&self.root).stdin(Stdio::null());
        cmd
    }

    /// A client program, connecting through the cluster's Unix socket.
    fn client_command(&self, program: &str) -> Command {
        client_command(&self.bin_dir.join(program), &self.root, self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Best effort: nothing useful can be done about failures here.
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = cmd.status();
        let _ = std::fs::remove_dir_all(&self.root);
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// A database created by [`PgCluster::fresh_database`]; dropped (with
/// `WITH (FORCE)`, so open connections do not block it) when this is.
#[derive(Debug)]
pub struct TestDatabase {
    /// Connection URL for a server: [`APP_ROLE`], TCP on loopback. Row-level
    /// security applies to it.
    pub url: String,
    /// The same database as the superuser, which bypasses row-level security:
    /// for tests that inspect or tamper with every tenant's rows.
    pub superuser_url: String,
    /// Database name.
    pub name: String,
    dropper: Dropper,
}

#[derive(Debug)]
struct Dropper {
    psql: PathBuf,
    socket_dir: PathBuf,
    port: u16,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Best effort: the cluster may already be stopped or gone.
        let d = &self.dropper;
        let mut cmd = client_command(&d.psql, &d.socket_dir, d.port);
        cmd.args(["-X", "-q", "-d", "postgres", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = cmd.status();
    }
}

struct StartFailure {
    reason: String,
    log: PathBuf,
    log_tail: String,
    port_taken: bool,
}

impl StartFailure {
    fn into_error(self, attempts: usize) -> PgError {
        PgError::StartFailed {
            attempts,
            reason: self.reason,
            log: self.log,
            log_tail: self.log_tail,
        }
    }
}

fn client_command(exe: &Path, socket_dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("-h")
        .arg(socket_dir)
        .arg("-p")
        .arg(port.to_string())
        .arg("-U")
        .arg(SUPERUSER)
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd`, turning a failure into an error with its output.
fn run(cmd: &mut Command) -> Result<Output, PgError> {
    let out = cmd.output().map_err(|source| PgError::Spawn {
        command: format!("{cmd:?}"),
        source,
    })?;
    if out.status.success() {
        return Ok(out);
    }
    let mut output = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        let _ = write!(output, "\n{}", stdout.trim());
    }
    Err(PgError::CommandFailed {
        command: format!("{cmd:?}"),
        status: out.status.to_string(),
        output,
    })
}

/// A port that was free a moment ago (the kernel's pick for port 0).
fn free_port() -> Result<u16, PgError> {
    let listener = TcpListener::bind((HOST, 0)).map_err(io_err("binding 127.0.0.1:0"))?;
    let addr = listener
        .local_addr()
        .map_err(io_err("reading the bound address"))?;
    Ok(addr.port())
}

/// The last lines the server logged since `offset`.
fn read_log_tail(log: &Path, offset: u64) -> String {
    let mut text = String::new();
    let read = std::fs::File::open(log).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(())
    });
    if let Err(e) = read {
        return format!("(could not read {}: {e})", log.display());
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// uid and gid of the `postgres` system user.
fn lookup_system_user() -> Result<(u32, u32), PgError> {
    let out = Command::new("getent")
        .args(["passwd", SYSTEM_USER])
        .output()
        .map_err(|e| PgError::NoSystemUser {
            reason: format!("could not run getent: {e}"),
        })?;
    let line = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = line.trim().split(':').collect();
    match (out.status.success(), fields.get(2), fields.get(3)) {
        (true, Some(uid), Some(gid)) => match (uid.parse(), gid.parse()) {
            (Ok(uid), Ok(gid)) => Ok((uid, gid)),
            _ => Err(PgError::NoSystemUser {
                reason: format!("unexpected passwd entry {line:?}"),
            }),
        },
        _ => Err(PgError::NoSystemUser {
            reason: format!("`getent passwd {SYSTEM_USER}` found no such user"),
        }),
    }
}

/// Where to create the cluster's temp dir: `$TMPDIR` (or the platform
/// default), else `/tmp`.
fn choose_base_dir(as_system_user: bool) -> Result<PathBuf, PgError> {
    let mut reasons = Vec::new();
    for candidate in [std::env::temp_dir(), PathBuf::from("/tmp")] {
        match check_base_dir(&candidate, as_system_user) {
            Ok(dir) => return Ok(dir),
            Err(why) => reasons.push(format!("{}: {why}", candidate.display())),
        }
    }
    Err(PgError::NoTempDir {
        reasons: reasons.join("; "),
    })
}

/// Accepts a base dir whose path works as a Unix socket dir inside a
/// `pg_ctl -o` string, and that the `postgres` user can traverse when the
/// server runs as that user.
fn check_base_dir(dir: &Path, as_system_user: bool) -> Result<PathBuf, String> {
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve: {e}"))?;
    if !std::fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
        return Err("not a directory".to_owned());
    }
    let text = dir.to_str().ok_or("path is not UTF-8")?;
    if !text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        return Err("path has characters that would need quoting in pg_ctl -o".to_owned());
    }
    if text.len() + SOCKET_SUFFIX_LEN > MAX_SOCKET_PATH {
        return Err(format!(
            "path too long for a Unix socket inside it (limit {MAX_SOCKET_PATH} bytes)"
        ));
    }
    if as_system_user {
        for ancestor in dir.ancestors() {
            let mode = std::fs::metadata(ancestor)
                .map_err(|e| format!("cannot stat {}: {e}", ancestor.display()))?
                .permissions()
                .mode();
            if mode & 0o001 == 0 {
                return Err(format!(
                    "{} is not traversable by the postgres user (needs o+x)",
                    ancestor.display()
                ));
            }
        }
    }
    Ok(dir)
}
