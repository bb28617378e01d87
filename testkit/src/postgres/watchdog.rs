//! A detached process that stops a cluster once its test process is gone.
//!
//! Statics are never dropped and a test process may panic, abort or be
//! killed, so `Drop` alone would leak running servers and temp dirs. The
//! watchdog is a tiny `sh` loop in its own session (`setsid`, so Ctrl-C to
//! the test's process group does not reach it) that polls the owner's pid.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::PgError;

/// `$1` owner pid, `$2` cluster dir (temp root), `$3` data dir, `$4...` the
/// `pg_ctl` command (possibly behind `runuser`). A zombie owner counts as gone.
/// The loop also ends when the dir disappears: that is a normal `Drop`, which
/// has already cleaned up, so the watchdog then exits without touching anything.
const SCRIPT: &str = r#"
owner="$1"; dir="$2"; data="$3"; shift 3
alive() {
    kill -0 "$owner" 2>/dev/null || return 1
    if [ -r "/proc/$owner/stat" ]; then
        read -r st < "/proc/$owner/stat" || return 1
        st=${st##*") "}
        case "$st" in Z*|X*) return 1 ;; esac
    fi
    return 0
}
while alive && [ -d "$dir" ]; do sleep 0.2; done
[ -d "$dir" ] || exit 0
"$@" -D "$data" -m immediate -w stop >/dev/null 2>&1
rm -rf "$dir"
"#;

/// Spawns the watchdog for the cluster in `dir`. `pg_ctl` is the command
/// prefix that runs `pg_ctl` as the server's user.
pub(crate) fn spawn(
    dir: &Path,
    data_dir: &Path,
    pg_ctl: &[&std::ffi::OsStr],
) -> Result<Child, PgError> {
    let mut cmd = Command::new("setsid");
    cmd.arg("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("crewsync-pg-watchdog") // $0
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(data_dir)
        .args(pg_ctl)
        // Never hold the test's stdout/stderr pipes: the test runner would
        // wait for EOF on them long after the test process has exited.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/");
    cmd.spawn().map_err(|source| PgError::Spawn {
        command: "setsid sh -c <watchdog>".to_owned(),
        source,
    })
}
