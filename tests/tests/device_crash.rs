//! Durability: an action returns only after it is durable. A child device process
//! (`crash_writer`) writes to one store file and is SIGKILLed at random moments, 50
//! times (× `CREWSYNC_SOAK`); after each kill the store reopens, `PRAGMA
//! integrity_check` is ok, and every write the child acknowledged is present.
//!
//! Replay a run's kill schedule and write mix with `CREWSYNC_SEED=<seed>` (printed at
//! the start). Kill timing still depends on the machine, so a replay is close, not
//! exact.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crewsync_core::DeviceStore;
use crewsync_core::ids::{ActivityId, EntryId, JourneyId, UserId};
use crewsync_core::model::{ActivityKind, Role};
use crewsync_tests::crash::{self, Ack};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 50;
/// How long a child may take from spawn to its first line before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const CRASH_WRITER: &str = env!("CARGO_BIN_EXE_crash_writer");

/// When a round's child is killed.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This long after spawn, whatever it is doing (exec, open, migration, setup…).
    AfterSpawn(Duration),
    /// This long after it reported its setup done, i.e. of actual writing.
    AfterStart(Duration),
}

/// Everything every child acknowledged, over all rounds.
#[derive(Debug, Default)]
struct Acked {
    journey: Option<JourneyId>,
    entries: HashSet<EntryId>,
    notes: HashSet<String>,
    gps: HashSet<i64>,
    crew: HashMap<UserId, Role>,
    checklists: HashSet<ActivityId>,
    ticks: HashSet<(ActivityId, String)>,
    activities: HashSet<ActivityId>,
    switches: usize,
    /// Acknowledged writes, setup excluded.
    writes: usize,
    /// Acknowledged writes that each add exactly one local change.
    single_change_writes: u64,
}

impl Acked {
    fn record(&mut self, ack: Ack) {
        if !matches!(ack, Ack::Journey(_)) {
            self.writes += 1;
        }
        if ack.adds_one_change() {
            self.single_change_writes += 1;
        }
        match ack {
            Ack::Journey(id) => {
                if let Some(known) = self.journey {
                    assert_eq!(known, id, "the child switched journeys");
                }
                self.journey = Some(id);
            }
            Ack::Entry(id) => assert!(self.entries.insert(id), "entry {id} acked twice"),
            Ack::Note(token) => assert!(self.notes.insert(token)),
            Ack::Gps(at) => assert!(self.gps.insert(at), "GPS time {at} reused"),
            Ack::Crew(user, role) => assert!(self.crew.insert(user, role).is_none()),
            Ack::Checklist(id) => assert!(self.checklists.insert(id)),
            Ack::Tick(id, item) => {
                assert!(self.checklists.contains(&id), "tick of unknown checklist");
                assert!(self.ticks.insert((id, item)));
            }
            Ack::Activity(id) => assert!(self.activities.insert(id)),
            Ack::Switch(_) => self.switches += 1,
        }
    }
}

/// What one killed child reported.
struct Round {
    acks: Vec<Ack>,
    /// A last line cut off without its newline (a write that returned Ok but whose
    /// report was cut; tolerated, not verifiable).
    torn: Option<String>,
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let started = Instant::now();
    let seed = match std::env::var("CREWSYNC_SEED") {
        Ok(seed) => seed.trim().parse().expect("CREWSYNC_SEED must be a u64"),
        Err(_) => rand::random::<u64>(),
    };
    let soak: usize = std::env::var("CREWSYNC_SOAK")
        .ok()
        .map(|s| s.trim().parse().expect("CREWSYNC_SOAK must be a count"))
        .unwrap_or(1);
    let rounds = ROUNDS * soak.max(1);
    println!("device_crash: seed {seed} (replay with CREWSYNC_SEED={seed}), {rounds} rounds");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crew.sqlite");
    let mut acked = Acked::default();
    let mut outbox_floor = 0;
    let (mut early_kills, mut writing_rounds, mut rounds_with_writes, mut torn) = (0, 0, 0, 0);
    for round in 0..rounds {
        // Every fifth round is killed around startup (the first one very early, so it
        // can land mid-migration); the rest after 5–150 ms of writing.
        let kill = match round % 10 {
            0 => KillAt::AfterSpawn(Duration::from_millis(rng.random_range(0..=2))),
            5 => KillAt::AfterSpawn(Duration::from_millis(rng.random_range(3..=40))),
            _ => KillAt::AfterStart(Duration::from_millis(rng.random_range(5..=150))),
        };
        let outcome = run_child(&path, rng.random(), kill)
            .unwrap_or_else(|e| panic!("round {round} (seed {seed}, {kill:?}): {e}"));
        match kill {
            KillAt::AfterSpawn(_) => early_kills += 1,
            KillAt::AfterStart(_) => writing_rounds += 1,
        }
        let before = acked.writes;
        for ack in outcome.acks {
            acked.record(ack);
        }
        if acked.writes > before {
            rounds_with_writes += 1;
        }
        torn += usize::from(outcome.torn.is_some());
        verify(&path, &acked, &mut outbox_floor)
            .unwrap_or_else(|e| panic!("round {round} (seed {seed}, {kill:?}): {e}"));
    }

    assert!(
        acked.writes > 0,
        "no child acknowledged a write in {rounds} rounds; the test checked nothing"
    );
    assert!(
        rounds_with_writes * 2 >= writing_rounds,
        "only {rounds_with_writes} of {writing_rounds} rounds got past setup and wrote"
    );
    println!(
        "device_crash: {rounds} rounds ({early_kills} killed around startup, \
         {rounds_with_writes} with writes), {} acknowledged writes verified \
         ({} entries, {} notes, {} GPS fixes, {} crew, {} checklists, {} ticks, \
         {} activities, {} user switches), {torn} torn report lines, outbox {outbox_floor} \
         changes, {:.1?}",
        acked.writes,
        acked.entries.len(),
        acked.notes.len(),
        acked.gps.len(),
        acked.crew.len(),
        acked.checklists.len(),
        acked.ticks.len(),
        acked.activities.len(),
        acked.switches,
        started.elapsed(),
    );
}

/// Runs one child on `path`, SIGKILLs it at `kill`, and returns what it reported.
fn run_child(path: &Path, seed: u64, kill: KillAt) -> Result<Round, String> {
    let mut child = Command::new(CRASH_WRITER)
        .arg(path)
        .arg(seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {CRASH_WRITER}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) if !line.ends_with('\n') => return Some(line), // cut by the kill
                Ok(_) => {
                    if lines_tx.send(line.trim_end().to_owned()).is_err() {
                        return None;
                    }
                }
            }
        }
    });

    let mut received = Vec::new();
    let early_exit = match kill {
        KillAt::AfterSpawn(delay) => {
            thread::sleep(delay);
            None
        }
        KillAt::AfterStart(delay) => match lines.recv_timeout(START_TIMEOUT) {
            Ok(first) => {
                received.push(first);
                thread::sleep(delay);
                None
            }
            Err(RecvTimeoutError::Timeout) => Some(format!(
                "the child reported nothing within {START_TIMEOUT:?} of starting"
            )),
            Err(RecvTimeoutError::Disconnected) => {
                Some("the child closed stdout before reporting its setup".to_owned())
            }
        },
    };
    // SIGKILL on Unix; a child that already exited is a zombie until waited, so this
    // cannot hit another process.
    child.kill().map_err(|e| format!("kill: {e}"))?;
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let torn = reader.join().map_err(|_| "stdout reader panicked")?;
    received.extend(lines.try_iter());
    if let Some(problem) = early_exit {
        return Err(format!("{problem}; status {status}, stderr: {stderr}"));
    }
    if status.signal() != Some(libc::SIGKILL) {
        return Err(format!(
            "the child ended before it was killed ({status}); stderr: {stderr}"
        ));
    }
    let acks = received
        .iter()
        .map(|line| line.parse::<Ack>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Round { acks, torn })
}

/// Reopens the store and checks it is intact and holds every acknowledged write.
fn verify(path: &Path, acked: &Acked, outbox_floor: &mut u64) -> Result<(), String> {
    let store = DeviceStore::open(path, crash::store_options())
        .map_err(|e| format!("reopening the store after the kill failed: {e}"))?;
    store
        .integrity_check()
        .map_err(|e| format!("integrity check after the kill: {e}"))?;
    let outbox_len = store.outbox_len().map_err(|e| e.to_string())?;
    if outbox_len < *outbox_floor {
        return Err(format!(
            "the outbox shrank from {} to {outbox_len} changes; nothing was acknowledged",
            *outbox_floor
        ));
    }
    *outbox_floor = outbox_len;
    let ids = store.journey_ids().map_err(|e| e.to_string())?;
    let Some(j) = acked.journey else {
        // No child finished setup yet; a killed one may or may not have created it.
        if ids.len() > 1 {
            return Err(format!("{} journeys after setup was killed", ids.len()));
        }
        return Ok(());
    };
    if ids != [j] {
        return Err(format!("expected only journey {j}, found {ids:?}"));
    }

    let journey = store.journey(j).map_err(|e| format!("loading {j}: {e}"))?;
    let entries: HashSet<EntryId> = journey.entries.iter().map(|e| e.id).collect();
    missing(
        "entries",
        acked.entries.iter().filter(|id| !entries.contains(id)),
    )?;
    let notes: HashSet<&str> = journey.notes.iter().map(|n| n.text.as_str()).collect();
    missing(
        "notes",
        acked
            .notes
            .iter()
            .filter(|token| !notes.contains(Ack::note_text(token).as_str())),
    )?;
    missing(
        "crew assignments",
        acked.crew.iter().filter(|(user, role)| {
            !journey
                .crew
                .iter()
                .any(|m| m.user_id == **user && m.role == **role)
        }),
    )?;
    let activities = |step: u8| {
        journey
            .steps
            .iter()
            .filter(move |s| s.number.get() == step)
            .flat_map(|s| s.activities.iter())
    };
    let checklists: HashMap<ActivityId, _> = activities(crash::CHECKLIST_STEP)
        .filter(|a| a.kind == ActivityKind::Checklist)
        .map(|a| (a.id, a))
        .collect();
    missing(
        "checklists",
        acked.checklists.iter().filter(|id| {
            !checklists.get(id).is_some_and(|a| {
                a.checklist
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    == crash::CHECKLIST_ITEMS
            })
        }),
    )?;
    missing(
        "checklist ticks",
        acked.ticks.iter().filter(|(id, item)| {
            !checklists.get(id).is_some_and(|a| {
                a.checklist
                    .iter()
                    .any(|(k, i)| k == item && i.checked && i.changed.is_some())
            })
        }),
    )?;
    let others: HashSet<ActivityId> = activities(crash::ACTIVITY_STEP).map(|a| a.id).collect();
    missing(
        "activities",
        acked.activities.iter().filter(|id| !others.contains(id)),
    )?;

    // GPS: every acknowledged fix once, whether still buffered or folded into a batch.
    let track = store.gps_track(j).map_err(|e| e.to_string())?;
    let times: HashSet<i64> = track.iter().map(|p| p.at.millis()).collect();
    if times.len() != track.len() {
        return Err(format!(
            "the GPS track holds {} fixes but only {} distinct times: a fix was stored twice",
            track.len(),
            times.len()
        ));
    }
    missing(
        "GPS fixes",
        acked.gps.iter().filter(|at| !times.contains(at)),
    )?;
    let (journal_mode, buffered) = raw_state(path, j)?;
    if journal_mode != "wal" {
        return Err(format!(
            "the store is in {journal_mode:?} journal mode, not WAL"
        ));
    }
    if journey.gps_point_count + buffered != track.len() as u64 {
        return Err(format!(
            "{} batched + {buffered} buffered fixes, but the track has {}",
            journey.gps_point_count,
            track.len()
        ));
    }

    // The outbox holds every local change ever made (nothing was acknowledged), and
    // nothing else: exactly the document's changes.
    let changes = store.changes_since(j, &[]).map_err(|e| e.to_string())?;
    let outbox = store
        .outbox(outbox_len as usize)
        .map_err(|e| e.to_string())?;
    let change_bytes: HashSet<&[u8]> = changes.iter().map(Vec::as_slice).collect();
    let outbox_bytes: HashSet<&[u8]> = outbox.iter().map(|e| e.bytes.as_slice()).collect();
    if outbox.len() as u64 != outbox_len
        || outbox_bytes.len() != outbox.len()
        || outbox_bytes != change_bytes
        || outbox.iter().any(|e| e.journey_id != j)
    {
        return Err(format!(
            "the outbox ({outbox_len} rows, {} distinct) is not the document's {} changes \
             ({} changes missing from the outbox, {} outbox rows not in the document)",
            outbox_bytes.len(),
            changes.len(),
            change_bytes.difference(&outbox_bytes).count(),
            outbox_bytes.difference(&change_bytes).count(),
        ));
    }
    let lower_bound = 1 + acked.single_change_writes;
    if outbox_len < lower_bound {
        return Err(format!(
            "the outbox has {outbox_len} changes, fewer than the {lower_bound} acknowledged"
        ));
    }

    // The journey list, written in the same transactions, agrees with the document.
    let list = store
        .list_journeys(crash::location().id, crash::journey_date())
        .map_err(|e| e.to_string())?;
    let [row] = list.as_slice() else {
        return Err(format!(
            "expected one journey in the list, got {}",
            list.len()
        ));
    };
    let from_list = (
        row.id,
        row.entry_count,
        row.note_count,
        row.gps_point_count,
        row.crew.len(),
        row.pending_changes,
    );
    let from_doc = (
        j,
        journey.entries.len() as u64,
        journey.notes.len() as u64,
        journey.gps_point_count,
        journey.crew.len(),
        outbox_len,
    );
    if from_list != from_doc {
        return Err(format!(
            "journey list row (id, entries, notes, gps, crew, pending) {from_list:?} \
             disagrees with the document {from_doc:?}"
        ));
    }
    Ok(())
}

/// Fails naming how many acknowledged writes of `what` are missing, and a few of them.
fn missing<T: std::fmt::Debug>(what: &str, absent: impl Iterator<Item = T>) -> Result<(), String> {
    let absent: Vec<T> = absent.collect();
    if absent.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} acknowledged {what} missing after the kill, e.g. {:?}",
        absent.len(),
        &absent[..absent.len().min(3)]
    ))
}

/// Read straight from the file: its journal mode, and the GPS fixes recorded but not
/// yet folded into the document.
fn raw_state(path: &Path, journey: JourneyId) -> Result<(String, u64), String> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| e.to_string())?;
    let journal_mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .map_err(|e| e.to_string())?;
    let buffered: i64 = conn
        .query_row(
            "SELECT count(*) FROM gps_pending WHERE journey_id = ?1",
            [journey.to_string()],
            |row| row.get(0),
        )
        .map_err(|e| e.to_string())?;
    Ok((journal_mode, buffered as u64))
}
