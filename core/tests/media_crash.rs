//! Crash and disk-full safety of media capture (reliability §C3, §C4), in child
//! processes: this test binary re-runs itself as the child (`media_child`, which
//! does nothing unless `CREWSYNC_MEDIA_CHILD` is set).
//!
//! C3: the child stops dead (a fail point panics, and its panic hook aborts: no
//! unwinding, no destructors, like a kill) after the temp write, the fsync, the
//! rename, the directory fsync and the row insert. After each, the parent reopens
//! the store: every queue row's file exists with its SHA-256, the leftovers are
//! gone, nothing half-recorded is in the journey.
//!
//! C4: the child runs under `RLIMIT_FSIZE` with SIGXFSZ ignored, so writing a large
//! photo fails with EFBIG: the capture answers "storage full", stores nothing, and
//! what was captured earlier is intact; once the limit is gone it works again.
#![allow(clippy::unwrap_used, unsafe_code)] // test code; setrlimit/signal need libc

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::images::jpeg;
use common::{crew_journey, device};
use crewsync_core::ids::{JourneyId, UserId};
use crewsync_core::media::files::digest_file;
use crewsync_core::model::{ActiveUser, Role};
use crewsync_core::store::{CaptureInfo, MediaSource};
use crewsync_core::{DeviceStore, Error, StoreOptions};
use image::{ImageFormat, RgbImage};

const CHILD: &str = "CREWSYNC_MEDIA_CHILD";
const STORE: &str = "CREWSYNC_MEDIA_STORE";
const JOURNEY: &str = "CREWSYNC_MEDIA_JOURNEY";
const USER: &str = "CREWSYNC_MEDIA_USER";

const POINTS: [&str; 5] = [
    "media::after_temp_write",
    "media::after_fsync",
    "media::after_rename",
    "media::after_dir_fsync",
    "media::after_row_insert",
];

/// A store with one journey and one photo captured: what must survive.
struct Setup {
    _dir: tempfile::TempDir,
    path: PathBuf,
    media_dir: PathBuf,
    journey: JourneyId,
    user: ActiveUser,
}

fn setup() -> Setup {
    let d = device(Role::Driver);
    let j = crew_journey(&d, &[]);
    d.store
        .capture_photo(
            j,
            MediaSource::Bytes(jpeg(400, 300, 9)),
            CaptureInfo::default(),
        )
        .unwrap();
    Setup {
        path: d.store.path().to_path_buf(),
        media_dir: d.store.media_dir().to_path_buf(),
        journey: j,
        user: d.user.clone(),
        _dir: d.dir,
    }
}

fn run_child(setup: &Setup, mode: &str) -> (std::process::ExitStatus, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "media_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, mode)
        .env(STORE, &setup.path)
        .env(JOURNEY, setup.journey.to_string())
        .env(USER, setup.user.user_id.to_string())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

fn files(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The invariant: every row's file exists with the row's size and SHA-256, and no
/// file is without a row.
fn consistent(store: &DeviceStore) -> Result<(), String> {
    let queue = store.upload_queue().map_err(|e| e.to_string())?;
    let mut named = BTreeSet::new();
    for item in &queue {
        let (sha, size) = digest_file(&item.path).map_err(|e| format!("{:?}: {e}", item.path))?;
        if sha != item.sha256 || size != item.size {
            return Err(format!("{:?} does not match its row", item.path));
        }
        named.insert(
            item.path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        );
    }
    let on_disk = files(store.media_dir());
    if on_disk != named {
        return Err(format!("files {on_disk:?} ≠ rows {named:?}"));
    }
    Ok(())
}

fn reopen(setup: &Setup) -> std::sync::Arc<DeviceStore> {
    let store = DeviceStore::open(&setup.path, StoreOptions::default()).unwrap();
    store.set_active_user(Some(setup.user.clone())).unwrap();
    store
}

#[test]
fn a_crash_between_any_two_steps_never_leaves_a_row_pointing_at_a_partial_file() {
    for point in POINTS {
        let setup = setup();
        let before = files(&setup.media_dir);
        let (status, output) = run_child(&setup, &format!("crash:{point}"));
        assert_eq!(
            status.signal(),
            Some(libc::SIGABRT),
            "{point}: {status:?}\n{output}"
        );
        // Control: the crash really happened mid-capture and left debris to clean up.
        let debris: Vec<String> = files(&setup.media_dir)
            .difference(&before)
            .cloned()
            .collect();
        assert!(
            !debris.is_empty(),
            "{point}: no leftover file, so no crash mid-capture"
        );
        if point.ends_with("temp_write") || (point.ends_with("fsync") && !point.contains("dir")) {
            assert!(
                debris.iter().all(|f| f.starts_with(".tmp-")),
                "{point}: {debris:?}"
            );
        }

        let store = reopen(&setup);
        store.integrity_check().unwrap();
        consistent(&store).unwrap_or_else(|e| panic!("{point}: {e}"));
        assert_eq!(
            files(&setup.media_dir),
            before,
            "{point}: the leftovers are gone"
        );
        assert_eq!(store.upload_queue().unwrap().len(), 2, "{point}");
        assert_eq!(
            store.journey(setup.journey).unwrap().media.len(),
            1,
            "{point}"
        );
        assert!(store.media_problems().unwrap().is_empty(), "{point}");
        // And capture works again on the same files.
        store
            .capture_photo(
                setup.journey,
                MediaSource::Bytes(jpeg(64, 64, 1)),
                CaptureInfo::default(),
            )
            .unwrap();
        consistent(&store).unwrap();
    }
}

/// Control for the checker: with no fail point the child's capture commits, and a
/// file damaged afterwards is caught by the same check.
#[test]
fn control_an_uninterrupted_capture_commits_and_a_damaged_file_is_caught() {
    let setup = setup();
    let (status, output) = run_child(&setup, "crash:none");
    assert!(
        status.success() && output.contains("CAPTURED"),
        "{status:?}\n{output}"
    );
    let store = reopen(&setup);
    consistent(&store).unwrap();
    assert_eq!(store.upload_queue().unwrap().len(), 4);
    assert_eq!(store.journey(setup.journey).unwrap().media.len(), 2);
    let victim = store.upload_queue().unwrap().pop().unwrap().path;
    let bytes = fs::read(&victim).unwrap();
    fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    assert!(
        consistent(&store).is_err(),
        "the check bites on a partial file"
    );
}

/// Incompressible pixels: a PNG of `side`² is about 3·side² bytes.
fn noise_png(side: u32) -> Vec<u8> {
    let mut state = 0x9E37_79B9u32;
    let image = RgbImage::from_fn(side, side, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let [a, b, c, _] = state.to_le_bytes();
        image::Rgb([a, b, c])
    });
    common::images::encode(&image, ImageFormat::Png)
}

/// Largest file the child may write; above every store file here, below the photo.
const FSIZE_LIMIT: u64 = 2 * 1024 * 1024;

#[test]
fn disk_full_is_a_clear_error_and_loses_nothing_captured_before() {
    let setup = setup();
    let before_files = files(&setup.media_dir);
    let before_queue = reopen(&setup).upload_queue().unwrap();
    let (status, output) = run_child(&setup, "diskfull");
    assert!(status.success(), "{status:?}\n{output}");
    assert!(output.contains("STORAGE_FULL storage full:"), "{output}");

    let store = reopen(&setup);
    store.integrity_check().unwrap();
    assert_eq!(
        store.upload_queue().unwrap(),
        before_queue,
        "nothing lost, nothing added"
    );
    assert_eq!(files(&setup.media_dir), before_files);
    consistent(&store).unwrap();
    // Space is back: the same photo is captured.
    store
        .capture_photo(
            setup.journey,
            MediaSource::Bytes(noise_png(1000)),
            CaptureInfo::default(),
        )
        .unwrap();
    consistent(&store).unwrap();
    assert_eq!(store.upload_queue().unwrap().len(), 4);
}

/// The child's side; a no-op in a normal test run.
#[test]
fn media_child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let path = PathBuf::from(std::env::var(STORE).unwrap());
    let journey: JourneyId = std::env::var(JOURNEY).unwrap().parse().unwrap();
    let user: UserId = std::env::var(USER).unwrap().parse().unwrap();
    let store = DeviceStore::open(&path, StoreOptions::default()).unwrap();
    store
        .set_active_user(Some(ActiveUser {
            user_id: user,
            role: Role::Driver,
        }))
        .unwrap();
    if let Some(point) = mode.strip_prefix("crash:") {
        // Die like a kill: no unwinding, so no destructor tidies up.
        std::panic::set_hook(Box::new(|_| std::process::abort()));
        if point != "none" {
            fail::cfg(point, "panic").unwrap();
        }
        store
            .capture_photo(
                journey,
                MediaSource::Bytes(jpeg(1200, 900, 4)),
                CaptureInfo::default(),
            )
            .unwrap();
        println!("CAPTURED");
    } else if mode == "diskfull" {
        let photo = noise_png(1000);
        assert!(photo.len() as u64 > FSIZE_LIMIT);
        let files_before = files(store.media_dir());
        let limit = libc::rlimit {
            rlim_cur: FSIZE_LIMIT as libc::rlim_t,
            rlim_max: FSIZE_LIMIT as libc::rlim_t,
        };
        // SAFETY: plain syscalls on this process, no memory handed over.
        unsafe {
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
        let error = store
            .capture_photo(journey, MediaSource::Bytes(photo), CaptureInfo::default())
            .unwrap_err();
        assert!(matches!(error, Error::StorageFull(_)), "{error:?}");
        assert_eq!(
            files(store.media_dir()),
            files_before,
            "no file left behind"
        );
        assert_eq!(store.upload_queue().unwrap().len(), 2);
        println!("STORAGE_FULL {error}");
    }
}
