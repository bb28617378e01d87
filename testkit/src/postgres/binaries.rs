//! Finding the PostgreSQL server programs.
//!
//! Debian keeps `initdb`, `pg_ctl` and `postgres` off `PATH` (in
//! `/usr/lib/postgresql/<version>/bin`), so `PATH` alone is not enough.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::PgError;

/// Names a directory holding the PostgreSQL programs. When set (and not
/// empty) it is the only place searched, so a broken value fails loudly
/// instead of silently picking another installation.
pub const PG_BIN_ENV: &str = "CREWSYNC_PG_BIN";

/// Programs the test kit runs; a directory counts only if it has all of them.
pub const REQUIRED_PROGRAMS: [&str; 5] = ["initdb", "pg_ctl", "postgres", "psql", "createdb"];

/// Where Debian and Ubuntu install each major version's server programs.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// Finds the directory holding the PostgreSQL programs.
///
/// `env_override` is the value of [`PG_BIN_ENV`]; it is a parameter (see
/// [`find_bin_dir_from_env`] for the usual call) so tests can exercise the
/// override without touching the process-global environment. Search order:
/// the override (exclusively, when set and not empty), the highest version
/// under `/usr/lib/postgresql/*/bin`, then `PATH`.
pub fn find_bin_dir(env_override: Option<&OsStr>) -> Result<PathBuf, PgError> {
    search(
        env_override,
        Path::new(DEBIAN_ROOT),
        std::env::var_os("PATH").as_deref(),
    )
}

/// [`find_bin_dir`] with the override read from [`PG_BIN_ENV`].
pub fn find_bin_dir_from_env() -> Result<PathBuf, PgError> {
    find_bin_dir(std::env::var_os(PG_BIN_ENV).as_deref())
}

/// Checks that `dir` holds every program in [`REQUIRED_PROGRAMS`].
pub(crate) fn check_bin_dir(dir: &Path) -> Result<(), PgError> {
    let missing = missing_programs(dir);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PgError::BinariesNotFound {
            searched: format!("{} (missing: {})", dir.display(), missing.join(", ")),
        })
    }
}

/// The search itself, with every input a parameter so it can be unit tested.
pub(crate) fn search(
    env_override: Option<&OsStr>,
    debian_root: &Path,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, PgError> {
    if let Some(dir) = env_override.filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        return match check_bin_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(_) => Err(PgError::BinariesNotFound {
                searched: format!(
                    "{PG_BIN_ENV}={} (missing: {}); it is set, so nothing else was searched",
                    dir.display(),
                    missing_programs(&dir).join(", ")
                ),
            }),
        };
    }

    let mut searched = Vec::new();
    let debian = debian_bin_dirs(debian_root);
    searched.push(format!("{}/*/bin", debian_root.display()));
    if let Some(dir) = debian.into_iter().find(|d| missing_programs(d).is_empty()) {
        return Ok(dir);
    }

    searched.push("PATH".to_owned());
    let on_path = path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .filter(|d| d.is_absolute())
        .find(|d| missing_programs(d).is_empty());
    if let Some(dir) = on_path {
        return Ok(dir);
    }

    Err(PgError::BinariesNotFound {
        searched: searched.join(", "),
    })
}

/// `<root>/<version>/bin` directories, highest version first (compared
/// numerically, so `15` beats `9.6`).
fn debian_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u64>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = parse_version(name.to_str()?)?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn parse_version(name: &str) -> Option<Vec<u64>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

fn missing_programs(dir: &Path) -> Vec<&'static str> {
    REQUIRED_PROGRAMS
        .into_iter()
        .filter(|program| !is_executable(&dir.join(program)))
        .collect()
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Makes `dir` look like a PostgreSQL bin directory (empty executables),
    /// leaving out `skip`.
    fn fake_bin_dir(dir: &Path, skip: &[&str]) {
        std::fs::create_dir_all(dir).unwrap();
        for program in REQUIRED_PROGRAMS.iter().filter(|p| !skip.contains(p)) {
            let path = dir.join(program);
            std::fs::write(&path, "").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[test]
    fn highest_debian_version_wins_numerically() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("lib");
        fake_bin_dir(&root.join("9.6/bin"), &[]);
        fake_bin_dir(&root.join("15/bin"), &[]);
        fake_bin_dir(&root.join("13/bin"), &[]);
        // Highest version but incomplete: must be passed over.
        fake_bin_dir(&root.join("16/bin"), &["initdb"]);
        std::fs::create_dir_all(root.join("not-a-version/bin")).unwrap();
        let found = search(None, &root, None).unwrap();
        assert_eq!(found, root.join("15/bin"));
    }

    #[test]
    fn path_is_the_fallback_and_needs_all_programs() {
        let tmp = tempfile::tempdir().unwrap();
        let partial = tmp.path().join("usr-bin"); // like Debian's /usr/bin: psql only
        fake_bin_dir(&partial, &["initdb", "pg_ctl", "postgres"]);
        let full = tmp.path().join("pg-bin");
        fake_bin_dir(&full, &[]);
        let path_var = std::env::join_paths([&partial, &full]).unwrap();
        let found = search(None, &tmp.path().join("no-debian"), Some(&path_var)).unwrap();
        assert_eq!(found, full);
    }

    #[test]
    fn override_is_exclusive() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("lib");
        fake_bin_dir(&root.join("15/bin"), &[]);
        let empty = tmp.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let err = search(Some(empty.as_os_str()), &root, None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
        assert!(msg.contains(PG_BIN_ENV), "{msg}");
        assert!(msg.contains(&empty.display().to_string()), "{msg}");

        let good = tmp.path().join("good");
        fake_bin_dir(&good, &[]);
        assert_eq!(search(Some(good.as_os_str()), &root, None).unwrap(), good);
        // An empty value counts as unset.
        assert_eq!(
            search(Some(OsStr::new("")), &root, None).unwrap(),
            root.join("15/bin")
        );
    }

    #[test]
    fn nothing_found_says_what_to_install() {
        let tmp = tempfile::tempdir().unwrap();
        let err = search(None, &tmp.path().join("none"), Some(OsStr::new(""))).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
        assert!(msg.contains("PATH"), "{msg}");
    }
}
