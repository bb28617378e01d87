//! The crew day the demo plays, phase by phase, against a real server: morning on
//! the depot's Wi-Fi, a day of offline work while the office keeps editing, and the
//! reconnect over a lossy link. Each phase prints one line as it ends.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use crewsync_core::ids::{ActivityId, JourneyId, UserId};
use crewsync_core::media::NetworkKind;
use crewsync_core::model::{GpsPoint, Role, Stage, StepNumber, Timestamp};
use crewsync_core::store::{CaptureInfo, MediaSource};
use crewsync_core::sync::runtime::SyncClient;
use crewsync_netsim::{Link, Proxy, Shaping};
use crewsync_server::seed;
use indicatif::{ProgressBar, ProgressStyle};

use super::device::{self, Device, Settled};
use super::office::Office;
use super::{DemoError, capture};

/// One truck's plan.
struct Truck {
    number: &'static str,
    journey: JourneyId,
    checklist: Option<ActivityId>,
}

/// What happened, for the report.
pub struct Day {
    pub journeys: Vec<(String, JourneyId)>,
    pub crews: Vec<Device>,
    pub office_app: Device,
    pub board: Office,
    pub refused_on_device: Vec<String>,
    pub settled: Vec<(String, Settled)>,
    pub link: LinkReport,
    pub timings: Vec<(&'static str, Duration)>,
}

/// What one tablet captured offline.
#[derive(Debug, Default, Clone, Copy)]
pub struct Captured {
    pub changes: u64,
    pub photos: u32,
    pub signatures: u32,
    pub gps: u32,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct LinkReport {
    pub connections: u64,
    pub faulted: u64,
    pub drops: u32,
}

fn step(n: u8) -> Result<StepNumber, DemoError> {
    Ok(StepNumber::new(n)?)
}

fn gps(i: u32) -> GpsPoint {
    GpsPoint {
        lat: 43.2557 + f64::from(i) * 2e-4,
        lon: -79.8711 + f64::from(i) * 1e-4,
        accuracy_m: Some(6.0),
        at: Timestamp::now(),
    }
}

/// Plays the day. `root` holds the tablets' stores; `server` is the server's URL.
pub async fn play(root: &Path, server: &str, seed_value: u64) -> Result<Day, DemoError> {
    let mut timings = Vec::new();
    let started = Instant::now();

    // Morning, at the depot: the admin adds today's second crew, the dispatcher plans
    // two trucks, the crews' tablets sign in on the Wi-Fi and take their journeys.
    let admin_email = format!("admin.{}@lgm.example", seed::slug(seed::CREW_HOME));
    let admin = Office::sign_in(server, &admin_email).await?;
    let board = Office::sign_in(server, "dispatcher@lgm.example").await?;
    let run = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let mut new_crew = Vec::new();
    for (name, local, role) in [
        ("Sam Driver", "sam.driver", Role::Driver),
        ("Riley Mover", "riley.mover", Role::Mover),
        ("Jo Mover", "jo.mover", Role::Mover),
    ] {
        let email = format!("{local}.{run}@lgm.example");
        admin.add_user(name, &email, role, board.location()).await?;
        new_crew.push((name, email));
    }
    let mut crews = Vec::new();
    let tablets = [
        ("dev", "Dev Driver", "driver@lgm.example".to_owned()),
        ("max", "Max Mover", "mover@lgm.example".to_owned()),
    ]
    .into_iter()
    .chain(
        new_crew
            .iter()
            .zip(["sam", "riley", "jo"])
            .map(|((name, email), label)| (label, *name, email.clone())),
    );
    for (label, name, email) in tablets {
        crews.push(Device::sign_in(root, label, name, &email, server).await?);
    }
    let office_app = Device::sign_in(
        root,
        "office",
        "Dana (office app)",
        "dispatcher@lgm.example",
        server,
    )
    .await?;
    let ids: Vec<UserId> = crews.iter().map(|c| c.user).collect();
    let today = Utc::now()
        .with_timezone(&chrono_tz::America::Toronto)
        .date_naive();
    let mut trucks = Vec::new();
    for (number, crew) in [("T-12", &ids[0..2]), ("T-07", &ids[2..5])] {
        let journey = board.plan_journey(today, number).await?;
        for user in crew {
            board.assign(journey, *user).await?;
        }
        trucks.push(Truck {
            number,
            journey,
            checklist: None,
        });
    }
    settle_all(std::slice::from_ref(&office_app), None).await?;
    for truck in &mut trucks {
        truck.checklist = Some(office_app.store.add_checklist(
            truck.journey,
            step(1)?,
            "Truck check",
            vec!["pads".into(), "dollies".into(), "straps".into()],
        )?);
    }
    settle_all(std::slice::from_ref(&office_app), None).await?;
    settle_all(&crews, None).await?;
    println!(
        "morning     the dispatcher planned T-12 (Dev, Max) and T-07 (Sam, Riley, Jo); \
         5 tablets signed in and took their journeys on the depot Wi-Fi"
    );
    // Midday: Jo moves to T-12, still on the Wi-Fi; her tablet follows.
    board.unassign(trucks[1].journey, ids[4]).await?;
    board.assign(trucks[0].journey, ids[4]).await?;
    settle_all(&crews[4..5], None).await?;
    let holds = crews[4].store.journey_ids()?;
    println!(
        "            Jo Mover reassigned from T-07 to T-12; her tablet {} T-12{}",
        if holds.contains(&trucks[0].journey) {
            "now holds"
        } else {
            "does NOT hold"
        },
        if holds.contains(&trucks[1].journey) {
            " and still T-07"
        } else {
            ", no longer T-07"
        }
    );
    timings.push(("morning", started.elapsed()));

    // The day, offline: basements, elevators, highways.
    let offline = Instant::now();
    for crew in &crews {
        crew.store.set_network(NetworkKind::Offline)?;
    }
    let (t12, t07) = (&trucks[0], &trucks[1]);
    let mut captured = BTreeMap::new();
    let mut refused_on_device = Vec::new();
    let work = [
        (
            0,
            t12,
            Work::Driver {
                signer: "Mrs. Alvarez",
            },
        ),
        (
            1,
            t12,
            Work::Mover {
                photos: 4,
                tick: Some(("pads", false)),
            },
        ),
        (
            4,
            t12,
            Work::Mover {
                photos: 3,
                tick: None,
            },
        ),
        (
            2,
            t07,
            Work::Driver {
                signer: "Mr. Okafor",
            },
        ),
        (
            3,
            t07,
            Work::Mover {
                photos: 3,
                tick: Some(("dollies", true)),
            },
        ),
    ];
    let mut tasks = Vec::new();
    for (index, truck, job) in work {
        let store = Arc::clone(&crews[index].store);
        let (journey, checklist) = (truck.journey, truck.checklist);
        tasks.push(tokio::task::spawn_blocking(move || {
            job.run(&store, journey, checklist)
        }));
    }
    // Meanwhile the office: the board moves T-12 to truck T-14 while the office app
    // (a laptop between sites, offline too) plans T-16 and a start time; both add notes.
    board.set_truck(t12.journey, "T-14").await?;
    office_app
        .store
        .set_truck_number(t12.journey, Some("T-16".into()))?;
    office_app
        .store
        .set_times(t12.journey, Some(Timestamp::now()), None)?;
    office_app
        .store
        .add_note(t12.journey, "Gate code 4411; the elevator is booked 9–11")?;
    if let Some(list) = t12.checklist {
        office_app
            .store
            .set_checklist_item(t12.journey, step(1)?, list, "straps", true)?;
    }
    for (task, crew) in tasks.into_iter().zip([0usize, 1, 4, 2, 3]) {
        let done = task
            .await
            .map_err(|e| DemoError::Capture(e.to_string()))??;
        if let Some(refusal) = done.refused {
            refused_on_device.push(format!("{}: {refusal}", crews[crew].name));
        }
        let mut counted = done.captured;
        counted.changes = crews[crew].store.outbox_len()?;
        captured.insert(crews[crew].name.clone(), counted);
    }
    for (name, c) in &captured {
        println!(
            "offline     {name:<12} {:>3} changes, {} photos, {} signatures, {} GPS points — all on the tablet",
            c.changes, c.photos, c.signatures, c.gps
        );
    }
    println!(
        "            the office: board moved T-12 to truck T-14; office app (offline) wrote T-16, \
         a start time, a note and ticked 'straps'"
    );
    timings.push(("offline work", offline.elapsed()));

    // Evening: the tablets come back on a bad cellular link.
    let reconnect = Instant::now();
    let upstream: std::net::SocketAddr = server
        .trim_start_matches("http://")
        .parse()
        .map_err(|e| DemoError::Server(format!("{server}: {e}")))?;
    let shaping = Shaping {
        connection_faults: true,
        request_cuts: 10,
        cut_request_below: 48 * 1024,
        ..Shaping::default()
    };
    let proxy = Arc::new(
        Proxy::start(upstream, seed_value, shaping)
            .await
            .map_err(|e| DemoError::Server(format!("cannot start the lossy link: {e}")))?,
    );
    for crew in &mut crews {
        crew.store.set_network(NetworkKind::Cellular)?;
        // The app restarts on the new network: same store, same saved sign-in.
        crew.sync =
            SyncClient::with_config(Arc::clone(&crew.store), &proxy.url(), device::config())?;
    }
    let drops = flap(Arc::clone(&proxy));
    let settled = {
        let mut first = settle_all(&crews, Some("pushing")).await?;
        settle_all(std::slice::from_ref(&office_app), None).await?;
        // A second pass brings each tablet what the others pushed.
        let second = settle_all(&crews, Some("pulling")).await?;
        for ((_, a), (_, b)) in first.iter_mut().zip(second) {
            a.rounds += b.rounds;
            a.failures += b.failures;
            a.pushed += b.pushed;
            a.received += b.received;
        }
        first
    };
    drops.abort();
    let link = LinkReport {
        connections: proxy.stat(|s| &s.connections),
        faulted: proxy.stat(|s| &s.faulted),
        drops: drops.await.unwrap_or(0),
    };
    timings.push(("reconnect", reconnect.elapsed()));
    Ok(Day {
        journeys: trucks
            .iter()
            .map(|t| (t.number.to_owned(), t.journey))
            .collect(),
        crews,
        office_app,
        board,
        refused_on_device,
        settled,
        link,
        timings,
    })
}

/// Drops the link for a moment every two seconds (an elevator, a tunnel) until
/// aborted; returns how often.
fn flap(proxy: Arc<Proxy>) -> tokio::task::JoinHandle<u32> {
    let drops = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        // Bounded: the settle loops end long before.
        for _ in 0..600u32 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            proxy.set(Link::Down);
            drops.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(300)).await;
            proxy.set(Link::Up);
        }
        u32::try_from(drops.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
    })
}

/// Settles `crews` side by side; with a label, a progress bar counts attempts.
async fn settle_all(
    crews: &[Device],
    label: Option<&'static str>,
) -> Result<Vec<(String, Settled)>, DemoError> {
    let bar = match label {
        Some(label) => {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template(
                    "reconnect   {spinner} {msg} ({pos} attempts, {elapsed})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(format!("{label} over a lossy link"));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        }
        None => ProgressBar::hidden(),
    };
    let tick = || bar.inc(1);
    let results = futures_util::future::join_all(crews.iter().map(|crew| crew.settle(&tick))).await;
    bar.finish_and_clear();
    crews
        .iter()
        .zip(results)
        .map(|(crew, settled)| Ok((crew.name.clone(), settled?)))
        .collect()
}

/// One tablet's offline work.
#[derive(Clone, Copy)]
enum Work {
    /// Drives, records the route, starts and completes step 1, collects the
    /// customer's signature at step 4, and tries to change the truck (refused).
    Driver { signer: &'static str },
    /// Photographs the inventory and damage, ticks a checklist item.
    Mover {
        photos: u32,
        tick: Option<(&'static str, bool)>,
    },
}

struct Done {
    captured: Captured,
    refused: Option<String>,
}

impl Work {
    fn run(
        self,
        store: &crewsync_core::DeviceStore,
        journey: JourneyId,
        checklist: Option<ActivityId>,
    ) -> Result<Done, DemoError> {
        let mut done = Done {
            captured: Captured::default(),
            refused: None,
        };
        match self {
            Work::Driver { signer } => {
                store.start_step(journey, step(1)?)?;
                if let Some(list) = checklist {
                    store.set_checklist_item(journey, step(1)?, list, "pads", true)?;
                }
                store.advance_stage(journey, Stage::EnRoute)?;
                for i in 0..40 {
                    store.record_gps_point(journey, gps(i))?;
                }
                store.flush_gps(journey)?;
                done.captured.gps = 40;
                store.advance_stage(journey, Stage::Onsite)?;
                store.set_times(journey, Some(Timestamp::now()), None)?;
                store.add_note(journey, "Customer wants the piano moved first")?;
                store.complete_step(journey, step(1)?)?;
                // Damage found at pickup, photographed before the customer signs:
                // the queue still sends the signature first.
                done.captured.photos = take_photos(store, journey, 2, 7)?;
                store.capture_signature(
                    journey,
                    &capture::customer_signature(signer, step(4)?, gps(41)),
                )?;
                done.captured.signatures = 1;
                done.refused = store
                    .set_truck_number(journey, Some("T-99".into()))
                    .err()
                    .map(|e| e.to_string());
            }
            Work::Mover { photos, tick } => {
                if let (Some(list), Some((item, checked))) = (checklist, tick) {
                    store.set_checklist_item(journey, step(1)?, list, item, checked)?;
                }
                done.captured.photos = take_photos(store, journey, photos, 0)?;
                store.add_note(journey, "Two boxes marked fragile in the basement")?;
            }
        }
        Ok(done)
    }
}

/// Photographs `count` things (the first a damage, the rest inventory) as real
/// JPEGs of decreasing size; `seed` varies the pictures between tablets.
fn take_photos(
    store: &crewsync_core::DeviceStore,
    journey: JourneyId,
    count: u32,
    seed: u32,
) -> Result<u32, DemoError> {
    for i in 0..count {
        let jpeg = capture::photo(1600 - i * 160, 1200 - i * 120, seed + i)?;
        let damage = i == 0;
        store.capture_photo(
            journey,
            MediaSource::Bytes(jpeg),
            CaptureInfo {
                step: Some(step(2)?),
                gps: Some(gps(i)),
                tag: Some(if damage { "SC" } else { "INV" }.into()),
                text: Some(if damage {
                    "scratch on the dresser, left side".into()
                } else {
                    format!("inventory, room {i}")
                }),
                ..CaptureInfo::default()
            },
        )?;
    }
    Ok(count)
}
