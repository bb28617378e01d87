//! The device enforces the server's write rules (issue 4 point 5; reliability matrix
//! F3 seen from the device): devices of all six roles attempt random actions,
//! forbidden ones included, on shared journeys. Every change a device accepted is
//! then judged by the server's own checks (`checks::check_push`) and must be
//! accepted, and the actions the device refused are exactly those `core::policy`
//! denies, for the reason it gives. Half the schedules run a random permission
//! table that the signed-in devices received (so a device using the default table
//! fails); the others the defaults, with some devices nobody signed in on.
//!
//! Control: the same schedules written past the device's rules (the test-only
//! `apply_unchecked`) make the server refuse changes, and refuse every one the
//! policy denied — the test bites, and its oracle is the server's.
//!
//! Each burst a device first takes in everything the server accepted, acts, and
//! pushes, so both sides judge the same journey. (A change made before the device
//! received a newer crew or an audit is the server's call, by design.)
//! Seeded: a failure prints its seed, `CREWSYNC_SEED=N` replays one schedule;
//! `CREWSYNC_SOAK=N` multiplies the number of schedules.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use automerge::{Change, ChangeHash};
use crewsync_core::ids::{ActivityId, ClientId, EntryId, JourneyId, LocationId, MediaId, UserId};
use crewsync_core::model::{
    ActiveUser, ActivityKind, GpsPoint, Location, MediaKind, MediaRef, NewEntry, NewJourney, Role,
    Stage, Stamp, StepNumber, Timestamp,
};
use crewsync_core::policy::{self, Denial, JourneyContext, PermissionTable, RolePermission, Touch};
use crewsync_core::sync::auth::{TokenResponse, UserView};
use crewsync_core::{DeviceStore, Error, JourneyAction, StoreOptions};
use crewsync_server::auth::http::Principal;
use crewsync_server::checks::{Verdict, check_push};
use crewsync_server::storage::memory::MemoryStorage;
use crewsync_server::storage::{NewChange, Storage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SCHEDULES: u64 = 8;
const ROLES: [Role; 6] = [
    Role::Admin,
    Role::Dispatcher,
    Role::Driver,
    Role::Mover,
    Role::Manager,
    Role::Auditor,
];
const BURSTS: usize = 60;

/// One device per role, with its user signed in or not.
struct Member {
    store: Arc<DeviceStore>,
    role: Role,
    user: UserId,
    /// Whether the user signed in here (an account) or was only set active.
    signed_in: bool,
    principal: Principal,
    cursor: u64,
}

/// What one attempt was.
// A test's list of attempts: boxing the action would only add noise.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    Create(NewJourney),
    Action(JourneyId, JourneyAction),
    /// `record_gps_point` (folded at once: batches of one).
    Gps(JourneyId, GpsPoint),
}

#[derive(Default, Debug)]
struct Tally {
    local_accepted: usize,
    invalid: usize,
    refused: BTreeMap<&'static str, usize>,
    server_accepted: usize,
    server_refused: usize,
    denied_changes: usize,
}

struct World {
    seed: u64,
    rng: StdRng,
    enforce: bool,
    location: Location,
    table: PermissionTable,
    members: Vec<Member>,
    storage: Arc<dyn Storage>,
    tenant_key: String,
    journeys: Vec<JourneyId>,
    checklists: Vec<(JourneyId, StepNumber, ActivityId)>,
    /// Control: changes written past the rules, and whether the policy denied them.
    denied: HashMap<ChangeHash, bool>,
    tally: Tally,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

/// Stores go to tmpfs when there is one: this is about the rules, not the disk.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

fn random_table(rng: &mut StdRng) -> PermissionTable {
    let mut table = PermissionTable::default();
    for role in ROLES {
        for step in StepNumber::ALL {
            table.set(RolePermission {
                role,
                step,
                can_view: true,
                can_edit: rng.random_bool(0.6),
                can_approve: rng.random_bool(0.3),
            });
        }
    }
    table
}

impl World {
    fn new(seed: u64, enforce: bool) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = scratch_dir();
        let location = Location {
            id: LocationId::new(),
            client_id: ClientId::new(),
            name: "HAMILTON".into(),
            timezone: "America/Toronto".into(),
        };
        // Odd seeds: a tenant table of its own, delivered to every (signed-in) device.
        let custom = seed % 2 == 1;
        let table = if custom {
            random_table(&mut rng)
        } else {
            PermissionTable::defaults()
        };
        let members = ROLES
            .into_iter()
            .enumerate()
            .map(|(i, role)| {
                let store = DeviceStore::open(
                    dir.path().join(format!("{role}-{i}.sqlite")),
                    StoreOptions {
                        gps_batch_size: 1,
                        ..StoreOptions::default()
                    },
                )
                .unwrap();
                store.upsert_location(&location).unwrap();
                let user = UserId::new();
                let signed_in = custom || rng.random_bool(0.5);
                if signed_in {
                    store
                        .save_sign_in(&tokens(user, role, &location), true)
                        .unwrap();
                    // With the defaults, some devices never hear the table: an empty
                    // one means the defaults on the device, as on the server.
                    if custom || rng.random_bool(0.5) {
                        store.set_account_permissions(user, &table.rows()).unwrap();
                    }
                } else {
                    store
                        .set_active_user(Some(ActiveUser {
                            user_id: user,
                            role,
                        }))
                        .unwrap();
                }
                let principal = Principal {
                    user,
                    tenant: location.client_id,
                    role,
                    location: location.id,
                    session: uuid::Uuid::new_v4(),
                    device: store.device_id(),
                };
                Member {
                    store,
                    role,
                    user,
                    signed_in,
                    principal,
                    cursor: 0,
                }
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        Self {
            seed,
            rng,
            enforce,
            tenant_key: location.client_id.to_string(),
            location,
            table,
            members,
            storage: Arc::new(MemoryStorage::new()),
            journeys: Vec::new(),
            checklists: Vec::new(),
            denied: HashMap::new(),
            tally: Tally::default(),
            runtime,
            _dir: dir,
        }
    }

    fn run(&mut self) {
        for _ in 0..BURSTS {
            let device = self.rng.random_range(0..self.members.len());
            self.pull(device);
            for _ in 0..self.rng.random_range(1..=3) {
                let attempt = self.attempt_for(device);
                self.attempt(device, attempt);
            }
            self.push(device);
        }
    }

    /// Takes in everything the server's log holds after the device's cursor.
    fn pull(&mut self, device: usize) {
        let member = &mut self.members[device];
        let log = self
            .runtime
            .block_on(
                self.storage
                    .changes_since(&self.tenant_key, member.cursor, u32::MAX),
            )
            .unwrap();
        let mut by_journey: BTreeMap<JourneyId, Vec<Vec<u8>>> = BTreeMap::new();
        for entry in log {
            member.cursor = member.cursor.max(entry.seq);
            by_journey
                .entry(entry.journey)
                .or_default()
                .push(entry.bytes);
        }
        for (journey, changes) in by_journey {
            member.store.apply_remote_changes(journey, changes).unwrap();
        }
    }

    /// Sends the device's outbox through the server's checks; accepted changes join
    /// the log and leave the outbox, refused ones leave the device's journey.
    fn push(&mut self, device: usize) {
        let member = &self.members[device];
        let outbox = member.store.outbox(usize::MAX >> 1).unwrap();
        if outbox.is_empty() {
            return;
        }
        let pushed: Vec<(JourneyId, Change)> = outbox
            .iter()
            .map(|e| (e.journey_id, Change::from_bytes(e.bytes.clone()).unwrap()))
            .collect();
        let checked = self
            .runtime
            .block_on(check_push(
                &self.storage,
                &self.tenant_key,
                &member.principal,
                &self.table,
                pushed,
            ))
            .unwrap();
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        for item in &checked {
            let hash = item.change.hash();
            let denied = self.denied.get(&hash).copied().unwrap_or(false);
            match &item.verdict {
                Verdict::Accepted => {
                    assert!(
                        !denied,
                        "seed {}: the server accepted a change the policy denies",
                        self.seed
                    );
                    accepted.push(NewChange {
                        audit: crewsync_server::audit::ChangeAudit::unscreened(&item.change),
                        journey: item.journey,
                        hash: hash.as_ref().to_vec(),
                        actor: item.change.actor_id().to_bytes().to_vec(),
                        device: member.principal.device,
                        bytes: item.change.raw_bytes().to_vec(),
                    });
                }
                verdict => {
                    assert!(
                        !self.enforce,
                        "seed {}: a {} device wrote a change locally ({}) that the server \
                         does not accept: {verdict:?}",
                        self.seed,
                        member.role,
                        item.change.message().unwrap_or_default()
                    );
                    refused.push((hash, format!("{verdict:?}")));
                }
            }
        }
        self.tally.server_accepted += accepted.len();
        self.tally.server_refused += refused.len();
        let hashes: Vec<ChangeHash> = checked
            .iter()
            .filter(|c| c.verdict == Verdict::Accepted)
            .map(|c| c.change.hash())
            .collect();
        self.runtime
            .block_on(self.storage.append(&self.tenant_key, &accepted))
            .unwrap();
        member.store.acknowledge(&hashes).unwrap();
        if !refused.is_empty() {
            member.store.reject_local_changes(&refused).unwrap();
        }
        assert_eq!(
            member.store.outbox_len().unwrap(),
            0,
            "seed {}: every pushed change was decided",
            self.seed
        );
    }

    fn attempt_for(&mut self, device: usize) -> Attempt {
        let create = self.journeys.is_empty() || self.rng.random_bool(0.06);
        if create {
            // A signed-in device knows its tenant: now and then try another one.
            let client_id = if self.members[device].signed_in && self.rng.random_bool(0.15) {
                ClientId::new()
            } else {
                self.location.client_id
            };
            return Attempt::Create(NewJourney {
                id: None,
                client_id,
                location_id: self.location.id,
                date: chrono::Utc::now().date_naive(),
                truck_number: self.rng.random_bool(0.5).then(|| "T-1".to_owned()),
                move_source_id: None,
                steps_requiring_approval: vec![StepNumber::new(4).unwrap()],
            });
        }
        let journey = self.journeys[self.rng.random_range(0..self.journeys.len())];
        let step = StepNumber::new(self.rng.random_range(1..=4)).unwrap();
        let at = Timestamp(self.rng.random_range(1..1_000_000));
        let point = GpsPoint {
            lat: 43.25,
            lon: -79.87,
            accuracy_m: None,
            at,
        };
        let member = self.rng.random_range(0..self.members.len());
        let (user, role) = (self.members[member].user, self.members[member].role);
        let action = match self.rng.random_range(0..20) {
            0 | 1 => {
                let stages = [
                    Stage::EnRoute,
                    Stage::Onsite,
                    Stage::Completed,
                    Stage::Audited,
                ];
                JourneyAction::AdvanceStage {
                    to: stages[self.rng.random_range(0..stages.len())],
                }
            }
            2 => JourneyAction::StartStep { step },
            3 => JourneyAction::CompleteStep { step },
            4 => JourneyAction::ApproveStep {
                step,
                comment: None,
            },
            5 => {
                let activity = ActivityId::new();
                self.checklists.push((journey, step, activity));
                JourneyAction::AddChecklist {
                    step,
                    activity,
                    title: "Truck".into(),
                    items: vec!["pads".into(), "dollies".into()],
                }
            }
            6 => {
                let known: Vec<_> = self
                    .checklists
                    .iter()
                    .filter(|(j, _, _)| *j == journey)
                    .copied()
                    .collect();
                match known.get(self.rng.random_range(0..known.len().max(1))) {
                    Some(&(_, step, activity)) => JourneyAction::SetChecklistItem {
                        step,
                        activity,
                        item: "pads".into(),
                        checked: self.rng.random_bool(0.5),
                    },
                    None => JourneyAction::AddNote {
                        note: EntryId::new(),
                        text: "no checklist yet".into(),
                    },
                }
            }
            7 => JourneyAction::AddActivity {
                step,
                activity: ActivityId::new(),
                kind: ActivityKind::Note,
                title: None,
                text: Some("looks fine".into()),
                media_id: None,
            },
            8 => JourneyAction::AddNote {
                note: EntryId::new(),
                text: "gate code 4411".into(),
            },
            9..=11 => JourneyAction::AssignCrew { user, role },
            12 => JourneyAction::UnassignCrew { user },
            13 => JourneyAction::SetTruckNumber {
                truck_number: Some(format!("T-{}", self.rng.random_range(0..4))),
            },
            14 => JourneyAction::SetTimes {
                start: Some(at),
                end: None,
            },
            15 | 16 => JourneyAction::AddEntry {
                id: EntryId::new(),
                entry: NewEntry::note("scratch on the dresser"),
            },
            17 => JourneyAction::AddGpsBatch {
                batch: EntryId::new(),
                points: vec![point],
            },
            18 => JourneyAction::AddMediaRef {
                media: MediaRef {
                    size: Some(1_000),
                    ..MediaRef::new(MediaId::new(), MediaKind::Photo, Stamp { by: user, at })
                },
            },
            _ if self.enforce => return Attempt::Gps(journey, point),
            // Past the rules there is no unchecked GPS buffer: the batch it folds to.
            _ => JourneyAction::AddGpsBatch {
                batch: EntryId::new(),
                points: vec![point],
            },
        };
        Attempt::Action(journey, action)
    }

    /// What the policy says about `attempt` by `device`, from the device's journey.
    fn expected(&self, device: usize, attempt: &Attempt) -> Result<(), Denial> {
        let member = &self.members[device];
        let (journey, touches) = match attempt {
            Attempt::Create(new) => {
                if member.signed_in && new.client_id != self.location.client_id {
                    return Err(Denial::OtherTenant {
                        tenant: new.client_id,
                    });
                }
                let mut touches = vec![Touch::Create];
                if new.truck_number.is_some() {
                    touches.push(Touch::TruckNumber);
                }
                let context = JourneyContext {
                    creating: true,
                    stage: None,
                    on_crew: false,
                };
                return policy::check_all(member.role, &self.table, &context, &touches);
            }
            Attempt::Action(journey, action) => (*journey, action.touches()),
            Attempt::Gps(journey, _) => (*journey, vec![Touch::Gps, Touch::Counts]),
        };
        let context = member
            .store
            .with_document(journey, |doc| {
                Ok(JourneyContext {
                    creating: false,
                    stage: Some(doc.stage()?),
                    on_crew: doc.is_on_crew(member.user)?,
                })
            })
            .unwrap();
        policy::check_all(member.role, &self.table, &context, &touches)
    }

    fn attempt(&mut self, device: usize, attempt: Attempt) {
        let expected = self.expected(device, &attempt);
        let store = Arc::clone(&self.members[device].store);
        let before = store.outbox_len().unwrap();
        let (result, created) = match &attempt {
            Attempt::Create(new) => {
                let created = if self.enforce {
                    store.create_journey(new)
                } else {
                    store.create_journey_unchecked(new)
                };
                match created {
                    Ok(id) => (Ok(()), Some(id)),
                    Err(e) => (Err(e), None),
                }
            }
            Attempt::Action(journey, action) if self.enforce => {
                (store.apply(*journey, action), None)
            }
            Attempt::Action(journey, action) => (store.apply_unchecked(*journey, action), None),
            Attempt::Gps(journey, point) => (store.record_gps_point(*journey, *point), None),
        };
        let seed = self.seed;
        let role = self.members[device].role;
        match (&expected, &result) {
            (Err(denial), Err(Error::NotAllowed(refused))) => {
                assert_eq!(
                    refused, denial,
                    "seed {seed}: {role} refused for another reason"
                );
                *self.tally.refused.entry(denial_kind(denial)).or_default() += 1;
            }
            (Err(denial), other) => {
                if self.enforce {
                    panic!(
                        "seed {seed}: the policy denies a {role} ({denial}); the device: {other:?}"
                    );
                }
            }
            (Ok(()), Err(Error::NotAllowed(denial))) => {
                panic!("seed {seed}: the policy allows a {role} what the device refused: {denial}")
            }
            (Ok(()), Ok(())) => self.tally.local_accepted += 1,
            (Ok(()), Err(e)) => {
                // The action itself is invalid in the journey's state; nothing written.
                assert!(is_invalid_action(e), "seed {seed}: {role}: {e}");
                self.tally.invalid += 1;
            }
        }
        let after = store.outbox_len().unwrap();
        if result.is_err() {
            assert_eq!(after, before, "seed {seed}: a refused action wrote nothing");
        }
        if let (Ok(()), Some(id)) = (&expected, created) {
            self.journeys.push(id);
        }
        if !self.enforce && after > before {
            let newest = store.outbox(usize::MAX >> 1).unwrap();
            for entry in newest.iter().skip(before as usize) {
                self.denied.insert(entry.hash, expected.is_err());
                if expected.is_err() {
                    self.tally.denied_changes += 1;
                }
            }
        }
    }
}

fn denial_kind(denial: &Denial) -> &'static str {
    match denial {
        Denial::Role { .. } => "role",
        Denial::NotOnCrew { .. } => "not on crew",
        Denial::Layout(_) => "layout",
        Denial::OtherTenant { .. } => "other tenant",
        Denial::AfterAudit => "after audit",
    }
}

/// Errors an allowed action may still meet: it does not fit the journey's state.
fn is_invalid_action(e: &Error) -> bool {
    matches!(
        e,
        Error::StageNotForward { .. }
            | Error::StepAlreadyStarted(_)
            | Error::StepNotStarted(_)
            | Error::StepAlreadyCompleted(_)
            | Error::StepAlreadyApproved(_)
            | Error::StepNotCompleted(_)
            | Error::UnknownActivity { .. }
            | Error::NotAssigned(_)
    )
}

/// A sign-in answer as the server gives it (the tokens are never used here).
fn tokens(user: UserId, role: Role, location: &Location) -> TokenResponse {
    TokenResponse {
        access_token: "unused".into(),
        token_type: "Bearer".into(),
        expires_in: 900,
        refresh_token: "unused".into(),
        session_id: uuid::Uuid::new_v4(),
        user: UserView {
            id: user,
            tenant: location.client_id,
            location_id: location.id,
            name: format!("Test {role}"),
            email: format!("{user}@test.example"),
            role,
        },
    }
}

fn soak() -> u64 {
    std::env::var("CREWSYNC_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn seeds() -> Vec<u64> {
    match std::env::var("CREWSYNC_SEED") {
        Ok(seed) => vec![seed.parse().expect("CREWSYNC_SEED is a number")],
        Err(_) => (0..SCHEDULES * soak()).collect(),
    }
}

fn run_all(enforce: bool) -> Tally {
    let mut total = Tally::default();
    for seed in seeds() {
        let result = std::panic::catch_unwind(|| {
            let mut world = World::new(seed, enforce);
            world.run();
            world.tally
        });
        match result {
            Ok(tally) => {
                total.local_accepted += tally.local_accepted;
                total.invalid += tally.invalid;
                total.server_accepted += tally.server_accepted;
                total.server_refused += tally.server_refused;
                total.denied_changes += tally.denied_changes;
                for (kind, n) in tally.refused {
                    *total.refused.entry(kind).or_default() += n;
                }
            }
            Err(panic) => {
                eprintln!("schedule failed; replay with CREWSYNC_SEED={seed}");
                std::panic::resume_unwind(panic);
            }
        }
    }
    println!("{total:?}");
    total
}

#[test]
fn every_change_a_device_accepts_the_server_accepts() {
    let tally = run_all(true);
    assert_eq!(tally.server_refused, 0);
    assert!(tally.server_accepted > 0 && tally.local_accepted > 0);
    // The schedules reach the rules that matter, not only the easy ones.
    if std::env::var("CREWSYNC_SEED").is_err() {
        for kind in ["role", "not on crew", "after audit", "other tenant"] {
            assert!(
                tally.refused.get(kind).copied().unwrap_or(0) > 0,
                "no refusal of kind {kind:?}: {tally:?}"
            );
        }
    }
}

/// Control: past the device's rules, the server refuses changes — every one the
/// policy denied among them.
#[test]
fn control_without_local_enforcement_the_server_refuses_changes() {
    let tally = run_all(false);
    assert!(tally.denied_changes > 0, "{tally:?}");
    assert!(
        tally.server_refused >= tally.denied_changes,
        "every denied change is refused: {tally:?}"
    );
}
