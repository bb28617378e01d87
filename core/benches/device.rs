//! Device-side figures: `cargo bench -p crewsync-core --bench device`.
//!
//! Prints, in one run:
//! 1. local action throughput and p50/p99 latency through `DeviceStore` against a raw
//!    baseline measured in the same run (the same shape of automerge commit plus one
//!    SQLite insert per action, same pragmas), interleaved in blocks so both see the
//!    same disk;
//! 2. opening a store holding 1,000 journeys / 300k entries and listing one day's
//!    journeys at one location (warm page cache, and with the file evicted);
//! 3. the RSS of a child process after a working day of one journey, against a child
//!    that only opens an empty store;
//! 4. the GPS layout: one change per point against batches of points per change.
//!
//! Sizes scale with `CREWSYNC_BENCH_SCALE` (default 1; e.g. 0.1 for a quick look).
//! Every store lives under the target dir's tmp (a real disk, not a tmpfs), so the
//! `synchronous = FULL` fsyncs are real. Children are this binary re-run with
//! `CREWSYNC_BENCH_CHILD` set, so their RSS carries nothing from the other parts.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ObjId, ObjType, ROOT, ScalarValue};
use chrono::{Days, NaiveDate, NaiveTime};
use crewsync_core::document::{JourneyDocument, gps};
use crewsync_core::ids::{ClientId, DeviceId, EntryId, JourneyId, LocationId, MediaId, UserId};
use crewsync_core::model::{
    ActiveUser, EntryKind, GpsPoint, Location, NewEntry, NewJourney, Role, Stage, StepNumber,
    Timestamp,
};
use crewsync_core::{ChangeOrigin, DeviceStore, JourneyAction, StoreOptions};
use rusqlite::{Connection, TransactionBehavior, params};

const CHILD_ENV: &str = "CREWSYNC_BENCH_CHILD";
const PATH_ENV: &str = "CREWSYNC_BENCH_PATH";
const SCALE_ENV: &str = "CREWSYNC_BENCH_SCALE";
/// Comma-separated parts to run (1-4); all when unset.
const ONLY_ENV: &str = "CREWSYNC_BENCH_ONLY";

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(mode) => child(&mode),
        Err(_) => parent(),
    }
}

fn parent() {
    let started = Instant::now();
    let load_start = load_average();
    println!(
        "crewsync device bench (scale {}; set {SCALE_ENV} to change; figures on a shared VM move 20-40% between runs, judge the ratios)",
        scale()
    );
    let only = std::env::var(ONLY_ENV).unwrap_or_default();
    let run = |part: &str| only.is_empty() || only.split(',').any(|p| p.trim() == part);
    if run("1") {
        actions();
    }
    // The 1,000-journey build runs last: its writeback would slow the others' fsyncs.
    if run("3") {
        day_rss();
    }
    if run("4") {
        gps_layout();
    }
    if run("2") {
        open_and_list();
    }
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

/// A temp dir on the same disk as `target/` (never a tmpfs), removed on drop.
fn bench_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("crewsync-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// Latencies of one series of calls.
#[derive(Default)]
struct Series {
    samples: Vec<Duration>,
}

impl Series {
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.samples.push(start.elapsed());
        out
    }

    fn total(&self) -> Duration {
        self.samples.iter().sum()
    }

    fn per_sec(&self) -> f64 {
        self.samples.len() as f64 / self.total().as_secs_f64()
    }

    /// Nearest-rank percentile, in ms.
    fn pct_ms(&self, p: f64) -> f64 {
        pct_ms(&self.samples, p)
    }

    fn max_ms(&self) -> f64 {
        self.samples.iter().max().map_or(0.0, ms)
    }

    fn mean_us(&self) -> f64 {
        self.total().as_secs_f64() * 1e6 / self.samples.len().max(1) as f64
    }

    fn summary(&self) -> String {
        format!(
            "{:.0}/s p50 {:.2}ms p99 {:.2}ms max {:.1}ms",
            self.per_sec(),
            self.pct_ms(0.50),
            self.pct_ms(0.99),
            self.max_ms()
        )
    }
}

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct_ms(samples: &[Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    ms(&sorted[rank - 1])
}

fn kb(bytes: u64) -> String {
    format!("{:.1} KB", bytes as f64 / 1024.0)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

/// Size of a SQLite database with its WAL and shared-memory files.
fn sqlite_size(path: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(PathBuf::from(p)).ok().map(|m| m.len())
        })
        .sum()
}

/// A field of /proc/self/status (VmRSS, VmHWM), in bytes.
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
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

fn location(n: usize, timezone: &str) -> Location {
    Location {
        id: LocationId::new(),
        client_id: ClientId::parse("0192f1c4-0000-7000-8000-0000000000c1").unwrap(),
        name: format!("BRANCH {n}"),
        timezone: timezone.into(),
    }
}

fn new_journey(location: &Location, date: NaiveDate) -> NewJourney {
    NewJourney {
        id: Some(JourneyId::new()),
        client_id: location.client_id,
        location_id: location.id,
        date,
        truck_number: Some("T-12".into()),
        move_source_id: None,
        steps_requiring_approval: Vec::new(),
    }
}

/// A fresh store at `path` with one location registered and a driver acting.
fn open_store(path: &Path) -> (std::sync::Arc<DeviceStore>, Location, ActiveUser) {
    let store = DeviceStore::open(path, StoreOptions::default()).unwrap();
    let toronto = location(0, "America/Toronto");
    store.upsert_location(&toronto).unwrap();
    let user = ActiveUser {
        user_id: UserId::new(),
        role: Role::Driver,
    };
    store.set_active_user(Some(user.clone())).unwrap();
    (store, toronto, user)
}

/// The office creates a journey on the crew's tablet and puts `crew` on it (a crew
/// may do neither), then hands the tablet back.
fn crew_journey(store: &DeviceStore, location: &Location, crew: &ActiveUser) -> JourneyId {
    store
        .set_active_user(Some(ActiveUser {
            user_id: UserId::new(),
            role: Role::Dispatcher,
        }))
        .unwrap();
    let journey = store.create_journey(&new_journey(location, day())).unwrap();
    store.assign_crew(journey, crew.user_id, crew.role).unwrap();
    store.set_active_user(Some(crew.clone())).unwrap();
    journey
}

fn note_text(i: usize) -> String {
    format!("Item {i}: dresser, small scratch on the left side, customer informed")
}

/// Runs this binary as a child in `mode` and returns the `key=value` lines it prints.
fn run_child(mode: &str, path: &Path) -> BTreeMap<String, String> {
    let output = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, mode)
        .env(PATH_ENV, path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "child {mode} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (k, v) = line.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

fn get_u64(values: &BTreeMap<String, String>, key: &str) -> u64 {
    values
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("child did not report {key}: {values:?}"))
}

fn get_f64(values: &BTreeMap<String, String>, key: &str) -> f64 {
    values
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("child did not report {key}: {values:?}"))
}

fn child(mode: &str) {
    let path = PathBuf::from(std::env::var_os(PATH_ENV).unwrap());
    match mode {
        "empty" => child_empty(&path),
        "day" => child_day(&path),
        "reopen" => child_reopen(&path),
        "gps-load" => child_gps_load(&path),
        other => panic!("unknown child mode {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// 1. Local actions against a raw baseline
// ---------------------------------------------------------------------------------

/// The raw baseline: a bare automerge document and one SQLite table, one transaction
/// per action, with the pragmas the store uses.
struct Baseline {
    doc: Automerge,
    entries: ObjId,
    checklist: ObjId,
    conn: Connection,
    message_entry: String,
    message_tick: String,
    user: String,
}

impl Baseline {
    /// `path` None: an in-memory database, for CPU-only figures.
    fn new(
        path: Option<&Path>,
        synchronous: &str,
        origin: &ChangeOrigin,
        items: &[String],
    ) -> Self {
        let conn = match path {
            Some(path) => Connection::open(path).unwrap(),
            None => Connection::open_in_memory().unwrap(),
        };
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        conn.pragma_update(None, "temp_store", "MEMORY").unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", synchronous)
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE changes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL, bytes BLOB NOT NULL) STRICT",
        )
        .unwrap();
        let mut doc = Automerge::new().with_actor(ActorId::random());
        let mut tx = doc.transaction();
        let entries = tx.put_object(ROOT, "entries", ObjType::Map).unwrap();
        let checklist = tx.put_object(ROOT, "checklist", ObjType::Map).unwrap();
        for (position, label) in items.iter().enumerate() {
            let item = tx
                .put_object(&checklist, label.as_str(), ObjType::Map)
                .unwrap();
            tx.put(&item, "label", label.as_str()).unwrap();
            tx.put(&item, "position", position as u64).unwrap();
            tx.put(&item, "checked", false).unwrap();
            tx.put(&item, "changed", ScalarValue::Null).unwrap();
        }
        tx.commit();
        Self {
            doc,
            entries,
            checklist,
            conn,
            message_entry: origin.message("add_entry"),
            message_tick: origin.message("set_checklist_item"),
            user: origin.user_id.to_string(),
        }
    }

    /// The same ops an `add_entry` of a note writes: a fresh map with the Entry fields.
    fn add_entry(&mut self, text: &str, persist: bool) {
        let at = Timestamp::now().millis();
        let id = EntryId::new().to_string();
        let mut tx = self.doc.transaction();
        let obj = tx
            .put_object(&self.entries, id.as_str(), ObjType::Map)
            .unwrap();
        tx.put(&obj, "id", id.as_str()).unwrap();
        tx.put(&obj, "kind", "NOTE").unwrap();
        tx.put(&obj, "tag", ScalarValue::Null).unwrap();
        tx.put(&obj, "author", self.user.as_str()).unwrap();
        tx.put(&obj, "device_time", ScalarValue::Timestamp(at))
            .unwrap();
        tx.put(&obj, "text", text).unwrap();
        tx.put(&obj, "location", ScalarValue::Null).unwrap();
        tx.put(&obj, "stage", ScalarValue::Null).unwrap();
        tx.put(&obj, "step", ScalarValue::Null).unwrap();
        tx.put(&obj, "media_id", ScalarValue::Null).unwrap();
        tx.commit_with(
            CommitOptions::default()
                .with_message(self.message_entry.clone())
                .with_time(at / 1000),
        );
        let change = self.doc.get_last_local_change().unwrap();
        if persist {
            self.persist(&change);
        }
    }

    /// The same ops a checklist tick writes: the whole item as a fresh map.
    fn tick(&mut self, label: &str, position: usize, checked: bool) {
        let at = Timestamp::now().millis();
        let mut tx = self.doc.transaction();
        let item = tx.put_object(&self.checklist, label, ObjType::Map).unwrap();
        tx.put(&item, "label", label).unwrap();
        tx.put(&item, "position", position as u64).unwrap();
        tx.put(&item, "checked", checked).unwrap();
        let changed = tx.put_object(&item, "changed", ObjType::Map).unwrap();
        tx.put(&changed, "by", self.user.as_str()).unwrap();
        tx.put(&changed, "at", ScalarValue::Timestamp(at)).unwrap();
        tx.commit_with(
            CommitOptions::default()
                .with_message(self.message_tick.clone())
                .with_time(at / 1000),
        );
        let change = self.doc.get_last_local_change().unwrap();
        self.persist(&change);
    }

    fn persist(&mut self, change: &automerge::Change) {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        tx.prepare_cached("INSERT INTO changes (hash, bytes) VALUES (?1, ?2)")
            .unwrap()
            .execute(params![change.hash().as_ref(), change.raw_bytes()])
            .unwrap();
        tx.commit().unwrap();
    }
}

fn print_action(name: &str, ours: &Series, full: &Series, normal: &Series) {
    println!(
        "action {name} (n={}): ours {} | baseline FULL {} | ratio {:.2}x (goal >= 0.5x)",
        ours.samples.len(),
        ours.summary(),
        full.summary(),
        ours.per_sec() / full.per_sec()
    );
    println!(
        "    context: baseline with synchronous=NORMAL {} (ours/NORMAL {:.2}x)",
        normal.summary(),
        ours.per_sec() / normal.per_sec()
    );
}

fn actions() {
    println!();
    println!(
        "== 1. local actions: DeviceStore vs raw automerge commit + one SQLite insert (WAL) =="
    );
    let n_entries = scaled(2_000);
    let n_ticks = scaled(500);
    let day_entries = scaled(200);
    let dir = bench_dir();
    let (store, toronto, user) = open_store(&dir.path().join("crew.sqlite"));
    let origin = ChangeOrigin {
        user_id: user.user_id,
        role: user.role,
        device_id: store.device_id(),
    };
    let items: Vec<String> = (0..20).map(|i| format!("Item {i} wrapped")).collect();
    let mut full = Baseline::new(
        Some(&dir.path().join("full.sqlite")),
        "FULL",
        &origin,
        &items,
    );
    let mut normal = Baseline::new(
        Some(&dir.path().join("normal.sqlite")),
        "NORMAL",
        &origin,
        &items,
    );

    // add_entry into a journey that grows from 0 to n_entries entries.
    let journey = crew_journey(&store, &toronto, &user);
    let (ours, base_full, base_normal) = interleaved(
        n_entries,
        |i| {
            store
                .add_entry(journey, NewEntry::note(note_text(i)))
                .unwrap();
        },
        |i| full.add_entry(&note_text(i), true),
        |i| normal.add_entry(&note_text(i), true),
    );
    print_action(
        &format!("add_entry (note, journey growing to {n_entries} entries)"),
        &ours,
        &base_full,
        &base_normal,
    );
    let segment = (n_entries / 10).max(1);
    let mut by_size = Vec::new();
    for from in [0, n_entries / 2 - segment / 2, n_entries - segment] {
        let part = |s: &Series| Series {
            samples: s.samples[from..from + segment].to_vec(),
        };
        let (o, b) = (part(&ours), part(&base_full));
        by_size.push(format!(
            "{from}-{}: ours {:.0}/s p50 {:.2}ms vs {:.0}/s = {:.2}x",
            from + segment,
            o.per_sec(),
            o.pct_ms(0.5),
            b.per_sec(),
            o.per_sec() / b.per_sec()
        ));
    }
    println!(
        "    by entries already in the journey: {}",
        by_size.join(" | ")
    );

    // Checklist ticks in a day-sized journey (day_entries entries), on both sides.
    let journey = crew_journey(&store, &toronto, &user);
    for i in 0..day_entries {
        store
            .add_entry(journey, NewEntry::note(note_text(i)))
            .unwrap();
        full.add_entry(&note_text(i), false);
        normal.add_entry(&note_text(i), false);
    }
    let step = StepNumber::new(2).unwrap();
    let activity = store
        .add_checklist(journey, step, "Load truck", items.clone())
        .unwrap();
    let tick = |i: usize| (i % items.len(), (i / items.len()).is_multiple_of(2));
    let (ours, base_full, base_normal) = interleaved(
        n_ticks,
        |i| {
            let (k, checked) = tick(i);
            store
                .set_checklist_item(journey, step, activity, &items[k], checked)
                .unwrap();
        },
        |i| {
            let (k, checked) = tick(i);
            full.tick(&items[k], k, checked);
        },
        |i| {
            let (k, checked) = tick(i);
            normal.tick(&items[k], k, checked);
        },
    );
    print_action(
        &format!("set_checklist_item (journey of {day_entries} entries)"),
        &ours,
        &base_full,
        &base_normal,
    );

    cpu_breakdown(&origin);
    println!(
        "    files: ours {} (outbox {} changes), baseline {}",
        kb(sqlite_size(store.path())),
        store.outbox_len().unwrap(),
        kb(sqlite_size(&dir.path().join("full.sqlite")))
    );
}

/// Runs `n` calls of each of the three, in blocks of 10 in turn, so a slow patch of
/// the disk or a busy neighbour hits all three alike.
fn interleaved(
    n: usize,
    mut ours: impl FnMut(usize),
    mut full: impl FnMut(usize),
    mut normal: impl FnMut(usize),
) -> (Series, Series, Series) {
    const BLOCK: usize = 10;
    let (mut a, mut b, mut c) = (Series::default(), Series::default(), Series::default());
    let mut done = 0;
    while done < n {
        let end = (done + BLOCK).min(n);
        for i in done..end {
            a.time(|| ours(i));
        }
        for i in done..end {
            b.time(|| full(i));
        }
        for i in done..end {
            c.time(|| normal(i));
        }
        done = end;
    }
    (a, b, c)
}

/// Per-action CPU in memory, no SQLite: the document step of an action, the summary
/// the store recomputes in every action's transaction, and a bare automerge commit.
fn cpu_breakdown(origin: &ChangeOrigin) {
    let n = scaled(2_000);
    let sizes = [20.min(n), (n / 10).max(1), n];
    let (mut doc, _) = JourneyDocument::create(
        &new_journey(&location(0, "America/Toronto"), day()),
        "America/Toronto",
        origin,
        Timestamp::now(),
        ActorId::random(),
    )
    .unwrap();
    let mut apply = Series::default();
    let mut summaries = Vec::new();
    for i in 0..n {
        let action = JourneyAction::AddEntry {
            id: EntryId::new(),
            entry: NewEntry::note(note_text(i)),
        };
        apply.time(|| doc.apply(&action, origin, Timestamp::now()).unwrap());
        if sizes.contains(&(i + 1)) {
            let mut summary = Series::default();
            for _ in 0..20 {
                summary.time(|| doc.summary_fields().unwrap());
            }
            summaries.push(format!("{:.0}us at {} entries", summary.mean_us(), i + 1));
        }
    }
    let mut raw = Baseline::new(None, "OFF", origin, &[]);
    let mut commit = Series::default();
    for i in 0..n {
        let text = note_text(i);
        commit.time(|| raw.add_entry(&text, false));
    }
    println!(
        "    cpu per add_entry in memory (mean over {n}): JourneyDocument::apply {:.0}us vs raw commit + change bytes {:.0}us; summary_fields() (run in every action's transaction): {}",
        apply.mean_us(),
        commit.mean_us(),
        summaries.join(", ")
    );
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
}

// ---------------------------------------------------------------------------------
// 2. Opening a big store and listing one day
// ---------------------------------------------------------------------------------

const TIMEZONES: [&str; 10] = [
    "America/Toronto",
    "America/Vancouver",
    "America/Halifax",
    "America/St_Johns",
    "America/Edmonton",
    "America/Winnipeg",
    "America/Regina",
    "America/Montreal",
    "America/New_York",
    "America/Chicago",
];

/// Journeys sharing the listed day at the listed location (a branch's trucks that day).
const SAME_DAY: usize = 20;
const ENTRIES_PER_JOURNEY: usize = 300;
const DAYS: u64 = 100;

/// Where journey `i` is filed: the first `SAME_DAY` on the listed day at location 0,
/// the rest spread over 10 locations and 100 days.
fn slot(i: usize) -> (usize, u64) {
    if i < SAME_DAY {
        return (0, DAYS / 2);
    }
    let loc = i % TIMEZONES.len();
    let mut offset = (i / TIMEZONES.len()) as u64 % DAYS;
    if loc == 0 && offset == DAYS / 2 {
        offset += 1;
    }
    (loc, offset)
}

fn base_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
}

/// One journey's changes, built in memory: creation plus `ENTRIES_PER_JOURNEY` entries
/// (notes, photos with a capture location, status updates, signatures), one change each.
fn generate_journey(location: &Location, date: NaiveDate) -> (JourneyId, Vec<Vec<u8>>) {
    let origin = ChangeOrigin {
        user_id: UserId::new(),
        role: Role::Driver,
        device_id: DeviceId::new(),
    };
    let start = date
        .and_time(NaiveTime::from_hms_opt(12, 0, 0).unwrap())
        .and_utc();
    let at = |k: usize| Timestamp(start.timestamp_millis() + k as i64 * 60_000);
    let (mut doc, created) = JourneyDocument::create(
        &new_journey(location, date),
        &location.timezone,
        &origin,
        at(0),
        ActorId::random(),
    )
    .unwrap();
    let mut changes = Vec::with_capacity(ENTRIES_PER_JOURNEY + 1);
    changes.push(created.raw_bytes().to_vec());
    for k in 0..ENTRIES_PER_JOURNEY {
        let entry = match k % 10 {
            7 => NewEntry {
                kind: EntryKind::Photo,
                tag: Some("BR".into()),
                text: Some("Broken leg, chair 3".into()),
                location: Some(GpsPoint {
                    lat: 43.65 + k as f64 * 1e-4,
                    lon: -79.38,
                    accuracy_m: Some(5.0),
                    at: at(k),
                }),
                stage: None,
                step: Some(StepNumber::new(2).unwrap()),
                media_id: Some(MediaId::new()),
            },
            8 => NewEntry {
                kind: EntryKind::StatusUpdate,
                stage: Some(Stage::EnRoute),
                ..NewEntry::note("On the way")
            },
            9 => NewEntry {
                kind: EntryKind::Signature,
                text: None,
                media_id: Some(MediaId::new()),
                ..NewEntry::note("")
            },
            _ => NewEntry::note(note_text(k)),
        };
        let action = JourneyAction::AddEntry {
            id: EntryId::new(),
            entry,
        };
        let change = doc.apply(&action, &origin, at(k + 1)).unwrap().unwrap();
        changes.push(change.raw_bytes().to_vec());
    }
    (doc.id(), changes)
}

fn open_and_list() {
    println!();
    println!("== 2. open a big store + list one day's journeys at one location ==");
    let n_journeys = scaled(1_000).max(SAME_DAY);
    let dir = bench_dir();
    let path = dir.path().join("big.sqlite");
    let locations: Vec<Location> = TIMEZONES
        .iter()
        .enumerate()
        .map(|(n, tz)| location(n, tz))
        .collect();

    // Build: two threads generate documents in memory; this thread stores each journey
    // with one apply_remote_changes call (one transaction, one fsync per journey).
    let build_start = Instant::now();
    let mut store_time = Duration::ZERO;
    let mut total_changes = 0usize;
    {
        let store = DeviceStore::open(&path, StoreOptions::default()).unwrap();
        for l in &locations {
            store.upsert_location(l).unwrap();
        }
        let (send, receive) = mpsc::sync_channel::<(JourneyId, Vec<Vec<u8>>)>(16);
        std::thread::scope(|scope| {
            for worker in 0..2 {
                let send = send.clone();
                let locations = &locations;
                scope.spawn(move || {
                    for i in (worker..n_journeys).step_by(2) {
                        let (loc, offset) = slot(i);
                        let date = base_day().checked_add_days(Days::new(offset)).unwrap();
                        send.send(generate_journey(&locations[loc], date)).unwrap();
                    }
                });
            }
            drop(send);
            for (journey, changes) in receive {
                total_changes += changes.len();
                let start = Instant::now();
                let applied = store.apply_remote_changes(journey, changes).unwrap();
                store_time += start.elapsed();
                assert_eq!(applied.held, 0);
            }
        });
    }
    let build = build_start.elapsed();
    println!(
        "build: {n_journeys} journeys, {} entries, {total_changes} changes in {:.1} s (storing {:.1} s: {:.1} ms per journey of {} changes); file {} (change rows uncompacted, as received)",
        n_journeys * ENTRIES_PER_JOURNEY,
        build.as_secs_f64(),
        store_time.as_secs_f64(),
        ms(&store_time) / n_journeys as f64,
        ENTRIES_PER_JOURNEY + 1,
        mb(sqlite_size(&path)),
    );

    // Let the build's writeback finish so it does not slow the fsyncs measured next.
    let sync_start = Instant::now();
    let _ = Command::new("sync").status();
    println!(
        "    (sync after the build: {:.1} s)",
        sync_start.elapsed().as_secs_f64()
    );
    let target = &locations[0];
    let target_day = base_day().checked_add_days(Days::new(DAYS / 2)).unwrap();
    let measure = |cold: bool, reps: usize| {
        let (mut open, mut list, mut both) = (Vec::new(), Vec::new(), Vec::new());
        let mut rows = 0;
        for _ in 0..reps {
            if cold {
                evict(&path);
            }
            let start = Instant::now();
            let store = DeviceStore::open(&path, StoreOptions::default()).unwrap();
            let opened = start.elapsed();
            let journeys = store.list_journeys(target.id, target_day).unwrap();
            let total = start.elapsed();
            open.push(opened);
            list.push(total - opened);
            both.push(total);
            rows = journeys.len();
            assert!(
                journeys
                    .iter()
                    .all(|j| j.entry_count == ENTRIES_PER_JOURNEY as u64)
            );
            drop(store);
        }
        println!(
            "open+list ({}, n={reps}): median {:.2} ms, p90 {:.2} ms (open median {:.2} ms, list median {:.2} ms) -> {rows} journeys listed | goal <= 50 ms median",
            if cold {
                "cold: db evicted from page cache"
            } else {
                "warm page cache"
            },
            pct_ms(&both, 0.5),
            pct_ms(&both, 0.9),
            pct_ms(&open, 0.5),
            pct_ms(&list, 0.5),
        );
    };
    measure(false, 11);
    measure(true, 7);
}

/// Drops the database's pages from the OS page cache (posix_fadvise DONTNEED via dd),
/// without touching any other file's cache.
fn evict(path: &Path) {
    let _ = Command::new("sync").status();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        if p.exists() {
            let mut arg = std::ffi::OsString::from("if=");
            arg.push(&p);
            let _ = Command::new("dd")
                .arg(arg)
                .args(["iflag=nocache", "count=0", "status=none"])
                .status();
        }
    }
}

// ---------------------------------------------------------------------------------
// 3. RSS after a working day of one journey
// ---------------------------------------------------------------------------------

fn day_rss() {
    println!();
    println!("== 3. device RSS after a working day of one journey (fresh child processes) ==");
    let dir = bench_dir();
    let empty = run_child("empty", &dir.path().join("empty.sqlite"));
    let day_path = dir.path().join("day.sqlite");
    let day = run_child("day", &day_path);
    let reopen = run_child("reopen", &day_path);
    let (e_rss, e_hwm) = (get_u64(&empty, "rss"), get_u64(&empty, "hwm"));
    let (d_rss, d_hwm) = (get_u64(&day, "rss"), get_u64(&day, "hwm"));
    println!(
        "day simulated: {} GPS fixes via record_gps_point, {} other actions, in {:.1} s; document {} changes, saved {}; store file {}",
        get_u64(&day, "gps_points"),
        get_u64(&day, "actions"),
        get_f64(&day, "seconds"),
        get_u64(&day, "changes"),
        kb(get_u64(&day, "doc_bytes")),
        kb(get_u64(&day, "file_bytes")),
    );
    println!(
        "    record_gps_point: p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; the calls that flush a batch: mean {:.2} ms",
        get_f64(&day, "gps_p50_ms"),
        get_f64(&day, "gps_p99_ms"),
        get_f64(&day, "gps_max_ms"),
        get_f64(&day, "gps_flush_mean_ms"),
    );
    println!(
        "RSS: after the day {} (VmHWM {}) | empty store {} (VmHWM {}) | ratio {:.2}x, +{}",
        mb(d_rss),
        mb(d_hwm),
        mb(e_rss),
        mb(e_hwm),
        d_rss as f64 / e_rss as f64,
        mb(d_rss.saturating_sub(e_rss)),
    );
    println!(
        "    reopened the day's store in a fresh process and read the journey + GPS track: RSS {} (VmHWM {}), load {:.1} ms",
        mb(get_u64(&reopen, "rss")),
        mb(get_u64(&reopen, "hwm")),
        get_f64(&reopen, "load_ms"),
    );
}

fn report_rss() {
    println!("rss={}", proc_status("VmRSS"));
    println!("hwm={}", proc_status("VmHWM"));
}

fn child_empty(path: &Path) {
    let (_store, _, _) = open_store(path);
    report_rss();
}

fn child_day(path: &Path) {
    let started = Instant::now();
    let gps_points = scaled(4_320);
    let entries = scaled(200);
    let (store, toronto, user) = open_store(path);
    // The office creates the journey and assigns the crew on the tablet (the crew
    // may do neither), then hands it to the driver for the day.
    store
        .set_active_user(Some(ActiveUser {
            user_id: UserId::new(),
            role: Role::Dispatcher,
        }))
        .unwrap();
    let journey = store.create_journey(&new_journey(&toronto, day())).unwrap();
    let mut actions = 1usize;
    for (crew, role) in [
        (user.user_id, Role::Driver),
        (UserId::new(), Role::Mover),
        (UserId::new(), Role::Mover),
    ] {
        store.assign_crew(journey, crew, role).unwrap();
        actions += 1;
    }
    store.set_active_user(Some(user.clone())).unwrap();
    store
        .set_times(journey, Some(Timestamp::now()), None)
        .unwrap();
    actions += 1;

    // The four steps split the day; each is started, gets a checklist of six items that
    // are all ticked, and is completed, and the stage advances as the day goes.
    let stage_after = [
        Some(Stage::EnRoute),
        Some(Stage::Onsite),
        None,
        Some(Stage::Completed),
    ];
    let step_start = |s: usize| s * gps_points / 4;
    let every = (gps_points / entries).max(1);
    let mut entry_no = 0;
    let mut gps = Series::default();
    let mut flushes = Series::default();
    let start = Timestamp::now().millis() - 12 * 3_600_000;
    for i in 0..gps_points {
        for (s, step) in StepNumber::ALL.iter().enumerate() {
            if i == step_start(s) {
                store.start_step(journey, *step).unwrap();
                let items: Vec<String> = (0..6).map(|k| format!("Step {step} check {k}")).collect();
                let activity = store
                    .add_checklist(journey, *step, "Checklist", items.clone())
                    .unwrap();
                for item in &items {
                    store
                        .set_checklist_item(journey, *step, activity, item, true)
                        .unwrap();
                }
                actions += 2 + items.len();
            }
            if i + 1 == step_start(s + 1).max(step_start(s) + 1).min(gps_points) {
                store.complete_step(journey, *step).unwrap();
                actions += 1;
                if let Some(stage) = stage_after[s] {
                    store.advance_stage(journey, stage).unwrap();
                    actions += 1;
                }
            }
        }
        if i % every == 0 && entry_no < entries {
            let k = entry_no;
            entry_no += 1;
            let entry = match k % 10 {
                3 | 7 => NewEntry {
                    kind: EntryKind::Photo,
                    media_id: Some(MediaId::new()),
                    ..NewEntry::note("Photo of the item before wrapping")
                },
                8 => NewEntry {
                    kind: EntryKind::StatusUpdate,
                    stage: Some(Stage::Onsite),
                    ..NewEntry::note("Status update")
                },
                _ => NewEntry::note(note_text(k)),
            };
            store.add_entry(journey, entry).unwrap();
            actions += 1;
            if k % 20 == 19 {
                store
                    .add_note(journey, "Customer asked to call before arrival")
                    .unwrap();
                actions += 1;
            }
        }
        let point = GpsPoint {
            lat: 43.65 + (i as f64) * 1e-5,
            lon: -79.38 - (i as f64) * 1e-5,
            accuracy_m: Some(4.0 + (i % 7) as f32),
            at: Timestamp(start + i as i64 * 10_000),
        };
        let series = if (i + 1) % gps::BATCH_SIZE == 0 {
            &mut flushes
        } else {
            &mut gps
        };
        series.time(|| store.record_gps_point(journey, point).unwrap());
    }
    store.flush_gps(journey).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    // RSS with the store still open and the journey loaded, as on the device.
    let view = store.journey(journey).unwrap();
    assert_eq!(view.gps_point_count, gps_points as u64);
    assert_eq!(view.stage, Stage::Completed);
    report_rss();
    let doc_bytes = store
        .with_document(journey, |d| Ok(d.save().len()))
        .unwrap();
    let changes = store
        .with_document(journey, |d| Ok(d.automerge().get_changes(&[]).len()))
        .unwrap();
    let mut all = gps.samples.clone();
    all.extend(&flushes.samples);
    println!("gps_points={gps_points}");
    println!("actions={actions}");
    println!("seconds={seconds}");
    println!("doc_bytes={doc_bytes}");
    println!("changes={changes}");
    println!("file_bytes={}", sqlite_size(path));
    println!("gps_p50_ms={}", pct_ms(&all, 0.5));
    println!("gps_p99_ms={}", pct_ms(&all, 0.99));
    println!("gps_max_ms={}", all.iter().max().map_or(0.0, ms));
    println!("gps_flush_mean_ms={}", flushes.mean_us() / 1e3);
}

fn child_reopen(path: &Path) {
    let store = DeviceStore::open(path, StoreOptions::default()).unwrap();
    store
        .set_active_user(Some(ActiveUser {
            user_id: UserId::new(),
            role: Role::Driver,
        }))
        .unwrap();
    let journey = store.journey_ids().unwrap()[0];
    let start = Instant::now();
    let view = store.journey(journey).unwrap();
    let track = store.gps_track(journey).unwrap();
    let load = start.elapsed();
    assert_eq!(track.len() as u64, view.gps_point_count);
    report_rss();
    println!("load_ms={}", ms(&load));
}

// ---------------------------------------------------------------------------------
// 4. GPS layout: one change per point vs batched points per change
// ---------------------------------------------------------------------------------

struct Layout {
    name: String,
    changes: usize,
    commit: Duration,
    change_bytes: usize,
    saved: Vec<u8>,
    load: Duration,
}

fn gps_points(n: usize) -> Vec<GpsPoint> {
    let start = Timestamp::now().millis() - 12 * 3_600_000;
    (0..n)
        .map(|i| GpsPoint {
            lat: 43.65 + (i as f64) * 1e-5,
            lon: -79.38 - (i as f64) * 1e-5,
            accuracy_m: Some(4.0 + (i % 7) as f32),
            at: Timestamp(start + i as i64 * 10_000),
        })
        .collect()
}

/// Commits `points` into a fresh document, `per_change` at a time, each change carrying
/// the origin message the store writes. `per_change == 1` writes each point as a map
/// {lat, lon, accuracy, at}; otherwise each batch is a map like the store's GpsBatch.
fn build_layout(points: &[GpsPoint], per_change: usize, origin: &ChangeOrigin) -> Layout {
    let mut doc = Automerge::new().with_actor(ActorId::random());
    let mut tx = doc.transaction();
    let gps_map = tx.put_object(ROOT, "gps", ObjType::Map).unwrap();
    tx.commit();
    let message = origin.message(if per_change == 1 {
        "add_gps_point"
    } else {
        "add_gps_batch"
    });
    let author = origin.user_id.to_string();
    let mut change_bytes = 0;
    let mut changes = 0;
    let start = Instant::now();
    for chunk in points.chunks(per_change) {
        let at = chunk[chunk.len() - 1].at.millis();
        let mut tx = doc.transaction();
        let obj = tx
            .put_object(&gps_map, EntryId::new().to_string(), ObjType::Map)
            .unwrap();
        if per_change == 1 {
            let p = chunk[0];
            tx.put(&obj, "lat", p.lat).unwrap();
            tx.put(&obj, "lon", p.lon).unwrap();
            match p.accuracy_m {
                Some(a) => tx.put(&obj, "accuracy", f64::from(a)).unwrap(),
                None => tx.put(&obj, "accuracy", ScalarValue::Null).unwrap(),
            }
            tx.put(&obj, "at", ScalarValue::Timestamp(p.at.millis()))
                .unwrap();
        } else {
            tx.put(&obj, "author", author.as_str()).unwrap();
            tx.put(&obj, "count", chunk.len() as u64).unwrap();
            tx.put(
                &obj,
                "first_at",
                ScalarValue::Timestamp(chunk[0].at.millis()),
            )
            .unwrap();
            tx.put(&obj, "last_at", ScalarValue::Timestamp(at)).unwrap();
            tx.put(
                &obj,
                "points",
                ScalarValue::Bytes(gps::encode(chunk).unwrap()),
            )
            .unwrap();
        }
        tx.commit_with(
            CommitOptions::default()
                .with_message(message.clone())
                .with_time(at / 1000),
        );
        // The store extracts every change to persist it and queue it for sync.
        change_bytes += doc.get_last_local_change().unwrap().raw_bytes().len();
        changes += 1;
    }
    let commit = start.elapsed();
    let saved = doc.save();
    let mut loads: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let loaded = Automerge::load(&saved).unwrap();
            let took = start.elapsed();
            drop(loaded);
            took
        })
        .collect();
    loads.sort();
    Layout {
        name: if per_change == 1 {
            "one change per point".into()
        } else {
            format!("batches of {per_change} (store)")
        },
        changes,
        commit,
        change_bytes,
        saved,
        load: loads[loads.len() / 2],
    }
}

fn gps_layout() {
    println!();
    println!("== 4. GPS layout in a raw automerge document (no SQLite) ==");
    let points = gps_points(scaled(4_320));
    let origin = ChangeOrigin {
        user_id: UserId::new(),
        role: Role::Driver,
        device_id: DeviceId::new(),
    };
    let dir = bench_dir();
    let layouts = [
        build_layout(&points, 1, &origin),
        build_layout(&points, gps::BATCH_SIZE, &origin),
    ];
    let mut mem = Vec::new();
    for (n, layout) in layouts.iter().enumerate() {
        let file = dir.path().join(format!("layout-{n}.automerge"));
        std::fs::write(&file, &layout.saved).unwrap();
        let child = run_child("gps-load", &file);
        let (before, after, hwm) = (
            get_u64(&child, "rss_before"),
            get_u64(&child, "rss_after"),
            get_u64(&child, "hwm"),
        );
        mem.push((after.saturating_sub(before), hwm.saturating_sub(before)));
        println!(
            "{} points, {}: {} changes, commit {:.1} ms ({:.1} us/point), changes on the wire {}, saved doc {}, load {:.2} ms, loaded RSS +{} (peak +{})",
            points.len(),
            layout.name,
            layout.changes,
            ms(&layout.commit),
            layout.commit.as_secs_f64() * 1e6 / points.len() as f64,
            kb(layout.change_bytes as u64),
            kb(layout.saved.len() as u64),
            ms(&layout.load),
            mb(mem[n].0),
            mb(mem[n].1),
        );
    }
    let (a, b) = (&layouts[0], &layouts[1]);
    println!(
        "ratio per-point / batched: commit {:.1}x, wire {:.1}x, saved size {:.1}x, load {:.1}x, loaded RSS {:.1}x",
        ms(&a.commit) / ms(&b.commit),
        a.change_bytes as f64 / b.change_bytes as f64,
        a.saved.len() as f64 / b.saved.len() as f64,
        ms(&a.load) / ms(&b.load),
        mem[0].0 as f64 / mem[1].0.max(1) as f64,
    );
}

fn child_gps_load(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let before = proc_status("VmRSS");
    let doc = Automerge::load(&bytes).unwrap();
    let after = proc_status("VmRSS");
    let hwm = proc_status("VmHWM");
    drop(doc);
    println!("rss_before={before}");
    println!("rss_after={after}");
    println!("hwm={hwm}");
}
