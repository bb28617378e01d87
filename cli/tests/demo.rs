//! `crewsync demo` as README runs it, on a fresh directory: the whole day, with the
//! demo's own checks (replicas against the server, files downloaded back and hashed,
//! upload order) and what it must report.
#![allow(clippy::unwrap_used)]

use std::process::Command;

/// "media       T-12: 10/10 originals …" → (10, 10).
fn originals(stdout: &str, truck: &str) -> (u32, u32) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("media       {truck}:")))
        .unwrap_or_else(|| panic!("no media line for {truck}:\n{stdout}"));
    let counts = line.split_whitespace().nth(2).unwrap();
    let (got, named) = counts.split_once('/').unwrap();
    (got.parse().unwrap(), named.parse().unwrap())
}

#[test]
fn the_demo_plays_a_crew_day_and_every_check_passes() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crewsync"))
        .args([
            "demo",
            "--dir",
            dir.path().to_str().unwrap(),
            "--seed",
            "11",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(!stdout.contains("FAILED"), "{stdout}");
    for truck in ["T-12", "T-07"] {
        assert!(
            stdout.contains(&format!("converged   {truck}:")),
            "{truck} not converged:\n{stdout}"
        );
    }
    // T-12: the driver's 2 photos and a signature, Max's 4 photos, Jo's 3; T-07:
    // the driver's 2 and a signature, Riley's 3. All back from the server intact.
    assert_eq!(originals(&stdout, "T-12"), (10, 10), "{stdout}");
    assert_eq!(originals(&stdout, "T-07"), (6, 6), "{stdout}");
    // The conflicts a dispatcher must see: two office values for the truck, the
    // driver's and the mover's opposite ticks of 'pads'.
    assert!(stdout.contains("truck_number"), "{stdout}");
    assert!(stdout.contains("pads"), "{stdout}");
    // The driver's truck change was refused on the tablet itself.
    assert!(stdout.contains("refused     on Dev Driver"), "{stdout}");
    // The link really was lossy.
    let reconnect = stdout
        .lines()
        .find(|l| l.starts_with("reconnect   "))
        .unwrap();
    let faulted: u64 = reconnect
        .split(" of them")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(faulted > 0, "{reconnect}");
    // Every store is kept in --dir: the server's and six devices'.
    let stores = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sqlite")
        })
        .count();
    assert_eq!(stores, 6);
    assert!(dir.path().join("server").is_dir());
}
