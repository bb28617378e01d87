//! The demo: one journey, a dispatcher and two crew devices, each with its own store.
//! The crews work offline (entries, GPS, checklist, stage) while the dispatcher edits
//! the same journey; then the devices meet and everything merges.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use crewsync_core::ids::{ClientId, JourneyId, LocationId, UserId};
use crewsync_core::model::{
    ActiveUser, EntryKind, GpsPoint, Location, NewEntry, NewJourney, Role, Stage, StepNumber,
    Timestamp,
};
use crewsync_core::{DeviceStore, StoreOptions};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Core(#[from] crewsync_core::Error),
    #[error("cannot use directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("replicas did not converge on journey {0}")]
    Diverged(JourneyId),
}

struct Device {
    name: &'static str,
    store: Arc<DeviceStore>,
}

pub fn run(dir: Option<PathBuf>) -> Result<(), DemoError> {
    let started = Instant::now();
    let temp;
    let root = match dir {
        Some(path) => {
            std::fs::create_dir_all(&path).map_err(|source| DemoError::Dir {
                path: path.clone(),
                source,
            })?;
            path
        }
        None => {
            temp = tempfile::tempdir().map_err(|source| DemoError::Dir {
                path: std::env::temp_dir(),
                source,
            })?;
            temp.path().to_path_buf()
        }
    };
    let location = Location {
        id: LocationId::new(),
        client_id: ClientId::new(),
        name: "DOWNTOWN TORONTO".into(),
        timezone: "America/Toronto".into(),
    };
    let open = |name: &'static str, role: Role| -> Result<(Device, UserId), DemoError> {
        let store =
            DeviceStore::open(root.join(format!("{name}.sqlite")), StoreOptions::default())?;
        store.upsert_location(&location)?;
        let user = UserId::new();
        store.set_active_user(Some(ActiveUser {
            user_id: user,
            role,
        }))?;
        Ok((Device { name, store }, user))
    };
    let (office, _dispatcher) = open("dispatcher", Role::Dispatcher)?;
    let (driver, driver_id) = open("driver", Role::Driver)?;
    let (mover, mover_id) = open("mover", Role::Mover)?;
    println!("crewsync demo — device stores in {}", root.display());

    // Morning: the dispatcher plans the day and the crews' tablets take it on Wi-Fi.
    let today = Utc::now()
        .with_timezone(&chrono_tz::America::Toronto)
        .date_naive();
    let journey = office.store.create_journey(&NewJourney {
        id: None,
        client_id: location.client_id,
        location_id: location.id,
        date: today,
        truck_number: Some("T-12".into()),
        move_source_id: None,
        steps_requiring_approval: vec![StepNumber::new(4)?],
    })?;
    office.store.assign_crew(journey, driver_id, Role::Driver)?;
    office.store.assign_crew(journey, mover_id, Role::Mover)?;
    let checklist = office.store.add_checklist(
        journey,
        StepNumber::new(1)?,
        "Truck check",
        vec!["pads".into(), "dollies".into()],
    )?;
    for crew in [&driver, &mover] {
        sync(&office, crew, journey)?;
    }
    println!("morning: journey {journey} for truck T-12 primed on both crew devices");

    // Offline: the crews work in a basement while the dispatcher keeps editing.
    let step1 = StepNumber::new(1)?;
    driver.store.start_step(journey, step1)?;
    driver
        .store
        .set_checklist_item(journey, step1, checklist, "pads", true)?;
    mover
        .store
        .set_checklist_item(journey, step1, checklist, "pads", false)?;
    driver.store.advance_stage(journey, Stage::EnRoute)?;
    mover.store.advance_stage(journey, Stage::Onsite)?;
    for i in 0..12 {
        driver.store.record_gps_point(
            journey,
            GpsPoint {
                lat: 43.6532 + f64::from(i) * 3e-4,
                lon: -79.3832,
                accuracy_m: Some(5.0),
                at: Timestamp::now(),
            },
        )?;
    }
    driver.store.flush_gps(journey)?;
    mover.store.add_entry(
        journey,
        NewEntry {
            kind: EntryKind::Photo,
            tag: Some("SC".into()),
            ..NewEntry::note("scratch on the dresser, left side")
        },
    )?;
    mover
        .store
        .add_note(journey, "Customer wants the piano moved first")?;
    office
        .store
        .set_truck_number(journey, Some("T-14".into()))?;
    // The office plans the start time while the driver records the real one (a crew
    // may not change the truck: only the office does that).
    let planned = Timestamp::now();
    office.store.set_times(journey, Some(planned), None)?;
    driver
        .store
        .set_times(journey, Some(Timestamp(planned.millis() + 600_000)), None)?;
    office.store.add_note(journey, "Gate code 4411")?;
    println!(
        "offline: driver {} changes, mover {} changes, dispatcher {} changes pending",
        driver.store.outbox_len()?,
        mover.store.outbox_len()?,
        office.store.outbox_len()?
    );

    // Reconnect: every device meets the dispatcher.
    let merge_started = Instant::now();
    for _ in 0..2 {
        for crew in [&driver, &mover] {
            sync(&office, crew, journey)?;
        }
    }
    let merge_time = merge_started.elapsed();
    let views = [&office, &driver, &mover]
        .iter()
        .map(|d| d.store.journey(journey))
        .collect::<Result<Vec<_>, _>>()?;
    let heads = [&office, &driver, &mover]
        .iter()
        .map(|d| d.store.heads(journey))
        .collect::<Result<Vec<_>, _>>()?;
    if views.windows(2).any(|w| w[0] != w[1]) || heads.windows(2).any(|w| w[0] != w[1]) {
        return Err(DemoError::Diverged(journey));
    }
    let merged = &views[0];
    println!(
        "converged: 3 replicas, same heads ({} head), same journey",
        heads[0].len()
    );
    println!(
        "  stage {} (forward-only: the mover's ONSITE beat the driver's EN_ROUTE)",
        merged.stage
    );
    println!(
        "  {} entries, {} notes (appended from both sides), {} GPS points",
        merged.entries.len(),
        merged.notes.len(),
        merged.gps_point_count
    );
    println!("conflicts kept for inspection:");
    let pads = [
        "steps",
        "1",
        "activities",
        &checklist.to_string(),
        "checklist",
        "pads",
    ];
    for (label, path) in [
        ("start_time", vec!["start_time"]),
        ("checklist 'pads'", pads.to_vec()),
    ] {
        let values = office.store.values_at(journey, &path)?;
        println!(
            "  {label}: {} concurrent values, shown: {}",
            values.len(),
            show(&values[0])
        );
        for loser in &values[1..] {
            println!("    also kept: {}", show(loser));
        }
    }
    println!(
        "timings: merge {:.1} ms, whole demo {:.1} ms",
        merge_time.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// Both directions between the dispatcher and a crew device.
fn sync(office: &Device, crew: &Device, journey: JourneyId) -> Result<(), DemoError> {
    for (from, to) in [(office, crew), (crew, office)] {
        let heads = to.store.heads(journey).unwrap_or_default();
        let changes = from.store.changes_since(journey, &heads)?;
        let applied = to.store.apply_remote_changes(journey, changes)?;
        if applied.new > 0 {
            println!(
                "  sync {} → {}: {} changes",
                from.name, to.name, applied.new
            );
        }
    }
    Ok(())
}

fn show(value: &automerge::Value<'_>) -> String {
    match value {
        automerge::Value::Scalar(s) => s.to_string(),
        automerge::Value::Object(_) => "a whole checklist tick (checked, by whom, when)".into(),
    }
}
