//! A crew device that writes until it is killed: the child process of the
//! `device_crash` test.
//!
//! Usage: `crash_writer <store-path> <seed>`
//!
//! Opens the store, registers the location, creates the journey as the dispatcher (or
//! reuses the store's one) with both crew members on it, prints `journey <id>`, and
//! then writes forever as the crew: entries, notes, GPS fixes, crew assignments (the
//! dispatcher's, for a moment), checklists and ticks, activities and user switches,
//! chosen by a PRNG seeded from `<seed>`. After each call returns `Ok` it
//! prints one line naming the write (see `crewsync_tests::crash::Ack`) and flushes
//! stdout. Any error goes to stderr with a non-zero exit.
//!
//! It stops by itself (exit 3) after [`MAX_LIFETIME`], so a child whose parent died
//! never writes on forever; a closed stdout also ends it (the next print fails).

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crewsync_core::DeviceStore;
use crewsync_core::ids::{ActivityId, JourneyId, UserId};
use crewsync_core::model::{ActiveUser, ActivityKind, GpsPoint, NewEntry, Role, Timestamp};
use crewsync_tests::crash::{self, Ack};
use uuid::Uuid;

/// A child nobody killed gives up after this long.
const MAX_LIFETIME: Duration = Duration::from_secs(30);

const ROLES: [Role; 6] = [
    Role::Admin,
    Role::Dispatcher,
    Role::Driver,
    Role::Mover,
    Role::Manager,
    Role::Auditor,
];

/// The roles of the two crew members who take turns (`crash::user(0)` and `(1)`).
const CREW: [Role; 2] = [Role::Driver, Role::Mover];

type BoxResult<T> = Result<T, Box<dyn Error>>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            eprintln!("crash_writer: not killed within {MAX_LIFETIME:?}; stopping");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("crash_writer: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SplitMix64: enough randomness to vary the writes, no dependency needed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Writer {
    store: std::sync::Arc<DeviceStore>,
    journey: JourneyId,
    rng: SplitMix,
    out: std::io::StdoutLock<'static>,
    /// Device time of the next GPS fix; strictly increasing across runs.
    next_gps_at: i64,
    /// Which of the two fixed users is acting.
    acting: usize,
    /// The checklist being ticked and how many of its items are ticked.
    checklist: Option<(ActivityId, usize)>,
}

fn run() -> BoxResult<()> {
    let started = Instant::now();
    let mut args = std::env::args_os().skip(1);
    let (Some(path), Some(seed)) = (args.next(), args.next()) else {
        return Err("usage: crash_writer <store-path> <seed>".into());
    };
    let path = PathBuf::from(path);
    let seed: u64 = seed
        .to_str()
        .ok_or("seed is not UTF-8")?
        .parse()
        .map_err(|e| format!("bad seed: {e}"))?;

    let store = DeviceStore::open(&path, crash::store_options())?;
    store.upsert_location(&crash::location())?;
    // The dispatcher creates the journey and puts both crew members on it (again
    // after a kill: assigning someone already assigned changes nothing); then the
    // driver takes the tablet.
    store.set_active_user(Some(ActiveUser {
        user_id: crash::dispatcher(),
        role: Role::Dispatcher,
    }))?;
    let journey = match store.journey_ids()?.as_slice() {
        [] => store.create_journey(&crash::new_journey())?,
        [only] => *only,
        more => return Err(format!("expected at most one journey, found {}", more.len()).into()),
    };
    for (index, role) in CREW.into_iter().enumerate() {
        store.assign_crew(journey, crash::user(index), role)?;
    }
    store.set_active_user(Some(ActiveUser {
        user_id: crash::user(0),
        role: CREW[0],
    }))?;
    // Fixes are identified by their device time, so continue after the last one stored.
    let last_gps = store
        .gps_track(journey)?
        .last()
        .map_or(0, |p| p.at.millis());
    let mut writer = Writer {
        store,
        journey,
        rng: SplitMix(seed),
        out: std::io::stdout().lock(),
        next_gps_at: Timestamp::now().millis().max(last_gps + 1),
        acting: 0,
        checklist: None,
    };
    writer.ack(&Ack::Journey(journey))?;
    while started.elapsed() < MAX_LIFETIME {
        writer.write_one()?;
    }
    Ok(())
}

impl Writer {
    fn ack(&mut self, ack: &Ack) -> BoxResult<()> {
        writeln!(self.out, "{ack}")?;
        self.out.flush()?;
        Ok(())
    }

    fn write_one(&mut self) -> BoxResult<()> {
        let j = self.journey;
        let ack = match self.rng.below(100) {
            0..=24 => {
                let text = format!("crash entry {}", Uuid::new_v4());
                Ack::Entry(self.store.add_entry(j, NewEntry::note(text))?)
            }
            25..=39 => {
                let token = Uuid::new_v4().to_string();
                self.store.add_note(j, &Ack::note_text(&token))?;
                Ack::Note(token)
            }
            40..=74 => {
                let at = self.next_gps_at;
                self.next_gps_at += 1;
                let jitter = self.rng.below(10_000) as f64 / 1_000_000.0;
                self.store.record_gps_point(
                    j,
                    GpsPoint {
                        lat: 43.65 + jitter,
                        lon: -79.38 - jitter,
                        accuracy_m: Some(5.0),
                        at: Timestamp(at),
                    },
                )?;
                Ack::Gps(at)
            }
            75..=81 => {
                // The dispatcher takes the tablet for a moment: only the office
                // assigns crew.
                let user = UserId::new();
                let role = ROLES[self.rng.below(ROLES.len() as u64) as usize];
                self.store.set_active_user(Some(ActiveUser {
                    user_id: crash::dispatcher(),
                    role: Role::Dispatcher,
                }))?;
                self.store.assign_crew(j, user, role)?;
                self.store.set_active_user(Some(ActiveUser {
                    user_id: crash::user(self.acting),
                    role: CREW[self.acting],
                }))?;
                Ack::Crew(user, role)
            }
            82..=93 => match self.checklist {
                Some((activity, ticked)) if ticked < crash::CHECKLIST_ITEMS.len() => {
                    let item = crash::CHECKLIST_ITEMS[ticked];
                    self.store.set_checklist_item(
                        j,
                        crash::step(crash::CHECKLIST_STEP),
                        activity,
                        item,
                        true,
                    )?;
                    self.checklist = Some((activity, ticked + 1));
                    Ack::Tick(activity, item.to_owned())
                }
                _ => {
                    let activity = self.store.add_checklist(
                        j,
                        crash::step(crash::CHECKLIST_STEP),
                        "Truck check",
                        crash::CHECKLIST_ITEMS.map(String::from).to_vec(),
                    )?;
                    self.checklist = Some((activity, 0));
                    Ack::Checklist(activity)
                }
            },
            94..=97 => Ack::Activity(self.store.add_activity(
                j,
                crash::step(crash::ACTIVITY_STEP),
                ActivityKind::Note,
                Some("Walkthrough".into()),
                Some(format!("crash activity {}", Uuid::new_v4())),
            )?),
            _ => {
                self.acting = (self.acting + 1) % 2;
                let user_id = crash::user(self.acting);
                let role = CREW[self.acting];
                self.store
                    .set_active_user(Some(ActiveUser { user_id, role }))?;
                Ack::Switch(user_id)
            }
        };
        self.ack(&ack)
    }
}
