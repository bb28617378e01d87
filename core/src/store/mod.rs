//! The device store: one SQLite file per device holding journey documents, the outbox
//! of unacknowledged changes, the journey list, and the GPS buffer.
//!
//! Concurrency: one writer connection behind a mutex, every write in a
//! `BEGIN IMMEDIATE` transaction (a deferred transaction upgraded to a write can hit
//! SQLITE_BUSY that no busy timeout fixes); a separate read-only connection serves the
//! journey list so a list never waits behind a write. Loaded documents are kept in a
//! small LRU cache under the writer lock.
//!
//! Every write is first put to the rules the server judges changes by (`permits`,
//! `core::policy`): a refused action returns `Error::NotAllowed` and writes nothing.
//!
//! Every action returns only after its change is committed with `synchronous = FULL`
//! (see `connection`). If persisting fails, the cached document, which already holds
//! the change in memory, is dropped, so memory never runs ahead of disk.

mod accounts;
mod connection;
mod documents;
mod gps_buffer;
mod lifecycle;
mod media;
mod media_queue;
pub mod migrations;
mod outbox;
mod permits;
mod rejections;
mod summary;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use automerge::{ActorId, Change, ChangeHash};
use chrono::{DateTime, NaiveDate, Utc};
use lru::LruCache;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

pub use self::accounts::Account;
pub use self::media::{CaptureInfo, MediaProblem, MediaSource};
pub use self::outbox::OutboxEntry;
pub use self::rejections::RejectedChange;
use crate::document::actions::JourneyAction;
use crate::document::{JourneyDocument, gps};
use crate::error::{Error, Result};
use crate::ids::{ActivityId, DeviceId, EntryId, JourneyId, LocationId, UserId};
use crate::media::{MediaOptions, NetworkKind};
use crate::model::{
    ActiveUser, ActivityKind, GpsPoint, Journey, JourneySummary, Location, NewEntry, NewJourney,
    Role, Stage, StepNumber, Timestamp,
};
use crate::policy::{RolePermission, Touch};
use crate::sync::auth::TokenResponse;

/// Tunables; the defaults suit a phone.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Compact a document once this many change rows follow its snapshot.
    pub compact_after_changes: usize,
    /// Documents kept loaded in memory.
    pub cache_capacity: usize,
    /// GPS fixes per batch change.
    pub gps_batch_size: usize,
    /// Media capture and the upload queue.
    pub media: MediaOptions,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            compact_after_changes: 500,
            cache_capacity: 16,
            gps_batch_size: gps::BATCH_SIZE,
            media: MediaOptions::default(),
        }
    }
}

/// What applying a batch of received changes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteApplied {
    /// Changes stored that were new to this device.
    pub new: usize,
    /// Changes automerge holds back until their dependencies arrive (kept on disk).
    pub held: usize,
}

/// What [`DeviceStore::absorb`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Absorbed {
    pub applied: RemoteApplied,
    /// Outbox rows the acknowledgements cleared.
    pub acknowledged: usize,
    new_per_journey: Vec<(JourneyId, usize)>,
}

struct CachedDocument {
    doc: JourneyDocument,
    /// Change rows on disk after the snapshot.
    uncompacted: usize,
}

struct Writer {
    conn: Connection,
    cache: LruCache<JourneyId, CachedDocument>,
}

/// The crew device's store. Shared as `Arc<DeviceStore>`; every method takes `&self`
/// and is safe to call from any thread.
pub struct DeviceStore {
    path: PathBuf,
    device_id: DeviceId,
    actor: ActorId,
    options: StoreOptions,
    writer: Mutex<Writer>,
    reader: Mutex<Connection>,
    active_user: Mutex<Option<ActiveUser>>,
    media_dir: PathBuf,
    media_options: MediaOptions,
    /// The network the app last reported (the upload queue follows it).
    network: Mutex<NetworkKind>,
    /// What the open found wrong in the media directory.
    media_problems: Mutex<Vec<MediaProblem>>,
    /// Both connections are closed (see `lifecycle`); set and cleared holding both locks.
    suspended: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for DeviceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStore")
            .field("path", &self.path)
            .field("device_id", &self.device_id)
            .field("actor", &self.actor.to_hex_string())
            .finish_non_exhaustive()
    }
}

impl DeviceStore {
    /// Opens (creating or upgrading) the store at `path`. Each open writes with a fresh
    /// automerge actor id: reusing one on two copies of a document forks its history.
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Arc<Self>> {
        let path = path.as_ref().to_path_buf();
        let mut conn = connection::open_writer(&path)?;
        let actor = ActorId::random();
        let (device_id, active_user) = {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existing: Option<String> = tx
                .query_row(
                    "SELECT value FROM meta WHERE key = 'device_id'",
                    [],
                    |row| row.get(0),
                )
                .optional()?;
            let device_id = match existing {
                Some(id) => id.parse()?,
                None => {
                    let id = DeviceId::new();
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ('device_id', ?1)",
                        [id.to_string()],
                    )?;
                    id
                }
            };
            tx.execute(
                "INSERT INTO actors (actor, opened_at) VALUES (?1, ?2)",
                params![actor.to_bytes(), now_ms()],
            )?;
            let active: Option<String> = tx
                .query_row(
                    "SELECT value FROM meta WHERE key = 'active_user'",
                    [],
                    |row| row.get(0),
                )
                .optional()?;
            tx.commit()?;
            // An unreadable value (written by a later version) means nobody is active.
            let active = active.and_then(|json| serde_json::from_str::<ActiveUser>(&json).ok());
            (device_id, active)
        };
        let media_dir = options
            .media
            .dir
            .clone()
            .unwrap_or_else(|| media::default_dir(&path));
        std::fs::create_dir_all(&media_dir)?;
        let recovery = media::recover(&conn, &media_dir)?;
        let reader = connection::open_reader(&path)?;
        let capacity =
            NonZeroUsize::new(options.cache_capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Ok(Arc::new(Self {
            path,
            device_id,
            actor,
            writer: Mutex::new(Writer {
                conn,
                cache: LruCache::new(capacity),
            }),
            reader: Mutex::new(reader),
            active_user: Mutex::new(active_user),
            media_options: options.media.clone(),
            media_dir,
            network: Mutex::new(NetworkKind::Offline),
            media_problems: Mutex::new(recovery.problems),
            options,
            suspended: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This install's id, created on first open and kept for the life of the file.
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The automerge actor id this open writes with.
    pub fn actor_id(&self) -> String {
        self.actor.to_hex_string()
    }

    /// Sets who is acting on this device. Work already recorded keeps its author:
    /// changes carry their origin, and buffered GPS fixes are folded in their
    /// recorder's name whoever is signed in at the time.
    ///
    /// The choice is kept in the file, so a reopened store (the app restarted) acts
    /// and syncs as the same user until someone else signs in or they sign out.
    pub fn set_active_user(&self, user: Option<ActiveUser>) -> Result<()> {
        {
            let writer = self.lock_writer()?;
            match &user {
                Some(active) => {
                    let value = serde_json::to_string(active)
                        .map_err(|e| Error::InvalidInput(format!("active user: {e}")))?;
                    writer.conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('active_user', ?1)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        [value],
                    )?;
                }
                None => {
                    writer
                        .conn
                        .execute("DELETE FROM meta WHERE key = 'active_user'", [])?;
                }
            }
        }
        *lock(&self.active_user)? = user;
        Ok(())
    }

    pub fn active_user(&self) -> Result<Option<ActiveUser>> {
        Ok(lock(&self.active_user)?.clone())
    }

    /// Saves a sign-in (or a refresh) of this device: the account and its tokens.
    /// `activate` also makes the user the active user (the one whose actions are
    /// recorded); a refresh in the background leaves the active user alone.
    pub fn save_sign_in(&self, tokens: &TokenResponse, activate: bool) -> Result<()> {
        accounts::save(&self.lock_writer()?.conn, tokens, now_ms())?;
        if activate {
            self.set_active_user(Some(ActiveUser {
                user_id: tokens.user.id,
                role: tokens.user.role,
            }))?;
        }
        Ok(())
    }

    /// Applies a server's refusals (hash → reason) of local changes: each refused
    /// change and every local change built on it leaves the outbox and its journey,
    /// and is kept in the rejected list with its reason; the journey is rebuilt
    /// from everything else (see `rejections`). Unknown hashes are ignored.
    /// Returns how many changes were dropped.
    pub fn reject_local_changes(&self, refused: &[(ChangeHash, String)]) -> Result<usize> {
        let mut writer = self.lock_writer()?;
        let Writer { conn, cache } = &mut *writer;
        let mut by_journey: std::collections::BTreeMap<
            JourneyId,
            std::collections::HashMap<ChangeHash, String>,
        > = std::collections::BTreeMap::new();
        for (hash, reason) in refused {
            let journey: Option<String> = conn
                .query_row(
                    "SELECT journey_id FROM outbox WHERE hash = ?1",
                    [hash.as_ref()],
                    |row| row.get(0),
                )
                .optional()?;
            if let Some(journey) = journey {
                by_journey
                    .entry(journey.parse()?)
                    .or_default()
                    .insert(*hash, reason.clone());
            }
        }
        let mut dropped_total = 0;
        for (journey, refused) in by_journey {
            let cached = load_into(cache, conn, journey, &self.actor)?;
            let (rebuilt, dropped) =
                rejections::rebuild_without(&cached.doc, &refused, self.actor.clone())?;
            let now = now_ms();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored = (|| {
                rejections::record(&tx, journey, &dropped, now)?;
                let dropped_hashes: Vec<ChangeHash> =
                    dropped.iter().map(|(change, _)| change.hash()).collect();
                documents::replace(&tx, &rebuilt, &dropped_hashes, now)?;
                summary::refresh(&tx, &rebuilt, now)?;
                tx.commit()?;
                Ok::<_, Error>(())
            })();
            if let Err(e) = stored {
                cache.pop(&journey);
                return Err(e);
            }
            dropped_total += dropped.len();
            cache.put(
                journey,
                CachedDocument {
                    doc: rebuilt,
                    uncompacted: 0,
                },
            );
        }
        Ok(dropped_total)
    }

    /// The local changes servers refused for `journey`, with their reasons.
    pub fn rejected_changes(&self, journey: JourneyId) -> Result<Vec<RejectedChange>> {
        rejections::list(&self.lock_writer()?.conn, journey)
    }

    /// Every user who signed in on this device.
    pub fn account_users(&self) -> Result<Vec<UserId>> {
        accounts::users(&self.lock_writer()?.conn)
    }

    /// A user who signed in on this device.
    pub fn account(&self, user: UserId) -> Result<Option<Account>> {
        accounts::get(&self.lock_writer()?.conn, user)
    }

    /// The server refused `user`'s credentials: keep their work, ask them to sign in.
    pub fn mark_needs_sign_in(&self, user: UserId) -> Result<()> {
        accounts::mark_needs_sign_in(&self.lock_writer()?.conn, user)
    }

    /// Stores the tenant's permission table as the server sent it for `user`.
    pub fn set_account_permissions(&self, user: UserId, rows: &[RolePermission]) -> Result<()> {
        accounts::set_permissions(&self.lock_writer()?.conn, user, rows)
    }

    /// Forgets `user`'s tokens. Their unsynced changes stay queued under their name.
    pub fn forget_account(&self, user: UserId) -> Result<()> {
        accounts::remove(&self.lock_writer()?.conn, user)
    }

    /// Registers or updates a location (its timezone decides which day is "today").
    pub fn upsert_location(&self, location: &Location) -> Result<()> {
        location.timezone.parse::<chrono_tz::Tz>().map_err(|_| {
            Error::InvalidInput(format!("unknown IANA timezone {:?}", location.timezone))
        })?;
        let mut writer = self.lock_writer()?;
        let tx = writer
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO locations (id, client_id, name, timezone) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET client_id = excluded.client_id,
                 name = excluded.name, timezone = excluded.timezone",
            params![
                location.id.to_string(),
                location.client_id.to_string(),
                location.name,
                location.timezone
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Creates a journey at a known location, if the active user may (the office
    /// roles, inside their own tenant).
    pub fn create_journey(&self, new: &NewJourney) -> Result<JourneyId> {
        self.create_journey_as(new, true)
    }

    /// Test-only: creates a journey without asking the rules, as an app that does
    /// not enforce them would (to show the server refuses what the device would).
    #[cfg(feature = "testing")]
    pub fn create_journey_unchecked(&self, new: &NewJourney) -> Result<JourneyId> {
        self.create_journey_as(new, false)
    }

    fn create_journey_as(&self, new: &NewJourney, check: bool) -> Result<JourneyId> {
        let user = self.require_active_user()?;
        let mut writer = self.lock_writer()?;
        let acting = permits::acting(&writer.conn, &user, self.device_id)?;
        if check {
            permits::check_create(&acting, new)?;
        }
        let origin = acting.origin;
        let timezone = location_timezone(&writer.conn, new.location_id)?;
        if let Some(id) = new.id
            && documents::exists(&writer.conn, id)?
        {
            return Err(Error::JourneyExists(id.to_string()));
        }
        let (doc, change) = JourneyDocument::create(
            new,
            &timezone,
            &origin,
            Timestamp::now(),
            self.actor.clone(),
        )?;
        let id = doc.id();
        let tx = writer
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        documents::insert_document(&tx, id)?;
        record_local_change(&tx, &doc, &change, origin.user_id)?;
        tx.commit()?;
        writer.cache.put(
            id,
            CachedDocument {
                doc,
                uncompacted: 1,
            },
        );
        Ok(id)
    }

    /// Applies any action to a journey as one durable change, if the active user
    /// may (`Error::NotAllowed` otherwise, with nothing written). An AUDITED
    /// journey is refused outright: the server would only hold the change for
    /// review, and the record stays as audited either way.
    pub fn apply(&self, journey: JourneyId, action: &JourneyAction) -> Result<()> {
        let user = self.require_active_user()?;
        self.commit(journey, action, &user, true, |_, _| Ok(()))
    }

    /// Test-only: applies an action without asking the rules, as an app that does
    /// not enforce them would (to show the server refuses what the device would).
    #[cfg(feature = "testing")]
    pub fn apply_unchecked(&self, journey: JourneyId, action: &JourneyAction) -> Result<()> {
        let user = self.require_active_user()?;
        self.commit(journey, action, &user, false, |_, _| Ok(()))
    }

    pub fn advance_stage(&self, journey: JourneyId, to: Stage) -> Result<()> {
        self.apply(journey, &JourneyAction::AdvanceStage { to })
    }

    pub fn start_step(&self, journey: JourneyId, step: StepNumber) -> Result<()> {
        self.apply(journey, &JourneyAction::StartStep { step })
    }

    pub fn complete_step(&self, journey: JourneyId, step: StepNumber) -> Result<()> {
        self.apply(journey, &JourneyAction::CompleteStep { step })
    }

    pub fn approve_step(
        &self,
        journey: JourneyId,
        step: StepNumber,
        comment: Option<String>,
    ) -> Result<()> {
        self.apply(journey, &JourneyAction::ApproveStep { step, comment })
    }

    /// Adds a checklist to a step; returns its activity id.
    pub fn add_checklist(
        &self,
        journey: JourneyId,
        step: StepNumber,
        title: &str,
        items: Vec<String>,
    ) -> Result<ActivityId> {
        let activity = ActivityId::new();
        self.apply(
            journey,
            &JourneyAction::AddChecklist {
                step,
                activity,
                title: title.to_owned(),
                items,
            },
        )?;
        Ok(activity)
    }

    /// Ticks (or unticks) a checklist item.
    pub fn set_checklist_item(
        &self,
        journey: JourneyId,
        step: StepNumber,
        activity: ActivityId,
        item: &str,
        checked: bool,
    ) -> Result<()> {
        self.apply(
            journey,
            &JourneyAction::SetChecklistItem {
                step,
                activity,
                item: item.to_owned(),
                checked,
            },
        )
    }

    /// Adds a non-checklist activity (note, photo, video, approval, signature) to a step.
    pub fn add_activity(
        &self,
        journey: JourneyId,
        step: StepNumber,
        kind: ActivityKind,
        title: Option<String>,
        text: Option<String>,
    ) -> Result<ActivityId> {
        let activity = ActivityId::new();
        self.apply(
            journey,
            &JourneyAction::AddActivity {
                step,
                activity,
                kind,
                title,
                text,
                media_id: None,
            },
        )?;
        Ok(activity)
    }

    /// Appends a journey note; returns its id.
    pub fn add_note(&self, journey: JourneyId, text: &str) -> Result<EntryId> {
        let note = EntryId::new();
        self.apply(
            journey,
            &JourneyAction::AddNote {
                note,
                text: text.to_owned(),
            },
        )?;
        Ok(note)
    }

    pub fn assign_crew(&self, journey: JourneyId, user: UserId, role: Role) -> Result<()> {
        self.apply(journey, &JourneyAction::AssignCrew { user, role })
    }

    pub fn unassign_crew(&self, journey: JourneyId, user: UserId) -> Result<()> {
        self.apply(journey, &JourneyAction::UnassignCrew { user })
    }

    pub fn set_truck_number(&self, journey: JourneyId, truck_number: Option<String>) -> Result<()> {
        self.apply(journey, &JourneyAction::SetTruckNumber { truck_number })
    }

    pub fn set_times(
        &self,
        journey: JourneyId,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> Result<()> {
        self.apply(journey, &JourneyAction::SetTimes { start, end })
    }

    /// Adds an entry to the journey's stream; returns its id.
    pub fn add_entry(&self, journey: JourneyId, entry: NewEntry) -> Result<EntryId> {
        let id = EntryId::new();
        self.apply(journey, &JourneyAction::AddEntry { id, entry })?;
        Ok(id)
    }

    /// Adds GPS points the app has already batched, as one change.
    pub fn add_gps_points(&self, journey: JourneyId, points: Vec<GpsPoint>) -> Result<()> {
        self.apply(
            journey,
            &JourneyAction::AddGpsBatch {
                batch: EntryId::new(),
                points,
            },
        )
    }

    /// Records one GPS fix durably. Fixes are folded into the journey document a batch
    /// at a time (`gps_batch_size`), so a day of fixes costs ~150 changes, not ~4,300.
    /// The rules are asked here, when the fix is recorded: folding it later is only
    /// the storage of work already allowed (see `fold_gps`).
    pub fn record_gps_point(&self, journey: JourneyId, point: GpsPoint) -> Result<()> {
        point.validate()?;
        let active = self.require_active_user()?;
        let (pending, user) = {
            let mut writer = self.lock_writer()?;
            if !documents::exists(&writer.conn, journey)? {
                return Err(Error::UnknownJourney(journey.to_string()));
            }
            let acting = permits::acting(&writer.conn, &active, self.device_id)?;
            let Writer { conn, cache } = &mut *writer;
            let cached = load_into(cache, conn, journey, &self.actor)?;
            permits::check_touches(&acting, &cached.doc, &[Touch::Gps, Touch::Counts])?;
            let user = ActiveUser {
                user_id: acting.origin.user_id,
                role: acting.origin.role,
            };
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let pending = gps_buffer::push(&tx, journey, &user, &point)?;
            tx.commit()?;
            (pending, user)
        };
        if pending >= self.options.gps_batch_size {
            self.fold_gps(journey, Some(&user))?;
        }
        Ok(())
    }

    /// Folds every buffered fix of `journey` into its document now (before a sync, or
    /// when the journey ends), one batch per recorder, each in its recorder's name.
    pub fn flush_gps(&self, journey: JourneyId) -> Result<()> {
        self.fold_gps(journey, None)
    }

    /// Folds buffered fixes, each batch in its recorder's name. Not checked again:
    /// the fixes were allowed when recorded, and refusing them now (say the journey
    /// was audited since) would either lose them or wedge every later sync, which
    /// folds first. The server decides on them like on any change made offline.
    fn fold_gps(&self, journey: JourneyId, only: Option<&ActiveUser>) -> Result<()> {
        let batches = gps_buffer::pending(&self.lock_writer()?.conn, journey, only)?;
        for batch in batches {
            let action = JourneyAction::AddGpsBatch {
                batch: EntryId::new(),
                points: batch.points.clone(),
            };
            self.commit(journey, &action, &batch.author, false, |tx, _| {
                gps_buffer::remove_through(tx, journey, &batch)
            })?;
        }
        Ok(())
    }

    /// Reads a whole journey.
    pub fn journey(&self, journey: JourneyId) -> Result<Journey> {
        self.with_document(journey, |doc| doc.view())
    }

    /// A journey's whole GPS track in time order, including fixes not yet batched.
    pub fn gps_track(&self, journey: JourneyId) -> Result<Vec<GpsPoint>> {
        let mut track = self.with_document(journey, |doc| doc.gps_track())?;
        track.extend(gps_buffer::all_points(&self.lock_writer()?.conn, journey)?);
        track.sort_by_key(|p| p.at);
        Ok(track)
    }

    /// Every value a document key holds (several after concurrent writes), winner first.
    pub fn values_at(
        &self,
        journey: JourneyId,
        path: &[&str],
    ) -> Result<Vec<automerge::Value<'static>>> {
        self.with_document(journey, |doc| doc.values_at(path))
    }

    /// Fields of `journey` written concurrently: each value, its writer and why
    /// the current one is current.
    pub fn conflicts(
        &self,
        journey: JourneyId,
    ) -> Result<Vec<crate::document::conflicts::FieldConflict>> {
        self.with_document(journey, JourneyDocument::conflicts)
    }

    /// Runs `read` on the loaded document (loading it if needed).
    pub fn with_document<T>(
        &self,
        journey: JourneyId,
        read: impl FnOnce(&JourneyDocument) -> Result<T>,
    ) -> Result<T> {
        let mut writer = self.lock_writer()?;
        let cached = writer.load(journey, &self.actor)?;
        read(&cached.doc)
    }

    /// A location's journeys on a calendar day (in the location's timezone).
    pub fn list_journeys(
        &self,
        location: LocationId,
        date: NaiveDate,
    ) -> Result<Vec<JourneySummary>> {
        summary::list(&*self.lock_reader()?, location, date)
    }

    /// A location's journeys for "today" at `now`, where today is the location's
    /// calendar day (a Halifax crew at 23:30 is on a different day than Vancouver).
    pub fn list_journeys_today(
        &self,
        location: LocationId,
        now: DateTime<Utc>,
    ) -> Result<Vec<JourneySummary>> {
        let reader = self.lock_reader()?;
        let timezone = location_timezone(&reader, location)?;
        let tz: chrono_tz::Tz = timezone
            .parse()
            .map_err(|_| Error::InvalidInput(format!("unknown IANA timezone {timezone:?}")))?;
        summary::list(&reader, location, now.with_timezone(&tz).date_naive())
    }

    /// Stores and applies changes received from elsewhere, in one batch and one
    /// transaction. Nothing is stored if any change fails to decode. Re-delivered
    /// changes are no-ops; changes with missing dependencies are kept and held.
    pub fn apply_remote_changes(
        &self,
        journey: JourneyId,
        changes: Vec<Vec<u8>>,
    ) -> Result<RemoteApplied> {
        let absorbed = self.absorb(vec![(journey, changes)], &[], None)?;
        Ok(absorbed.applied)
    }

    /// Absorbs what one sync exchange brought, in ONE transaction (one fsync): the
    /// received changes of every journey (a batch per journey), the acknowledged
    /// hashes leaving the outbox, and the peer's new cursor. All or nothing: a
    /// crash or a bad change leaves the store as before, so the exchange is simply
    /// repeated.
    pub fn absorb(
        &self,
        received: Vec<(JourneyId, Vec<Vec<u8>>)>,
        acknowledged: &[ChangeHash],
        cursor: Option<(&str, u64)>,
    ) -> Result<Absorbed> {
        let decoded = received
            .into_iter()
            .map(|(journey, changes)| {
                let changes = changes
                    .into_iter()
                    .map(Change::from_bytes)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((journey, changes))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut writer = self.lock_writer()?;
        let Writer { conn, cache } = &mut *writer;
        let touched: Vec<JourneyId> = decoded.iter().map(|(journey, _)| *journey).collect();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let result = absorb_in(&tx, cache, &self.actor, decoded).and_then(|mut absorbed| {
            absorbed.acknowledged = outbox::acknowledge(&tx, acknowledged)?;
            if let Some((peer, cursor)) = cursor {
                record_sync_in(&tx, peer, cursor, None)?;
            }
            tx.commit()?;
            Ok(absorbed)
        });
        match result {
            Ok(absorbed) => {
                for (journey, new) in &absorbed.new_per_journey {
                    if let Some(cached) = cache.get_mut(journey) {
                        cached.uncompacted += new;
                    }
                }
                Ok(absorbed)
            }
            Err(e) => {
                // The cached documents hold changes the rollback took off the disk.
                for journey in touched {
                    cache.pop(&journey);
                }
                Err(e)
            }
        }
    }

    /// The changes a peer at `heads` lacks, as raw bytes.
    pub fn changes_since(&self, journey: JourneyId, heads: &[ChangeHash]) -> Result<Vec<Vec<u8>>> {
        self.with_document(journey, |doc| {
            Ok(doc
                .changes_since(heads)
                .iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect())
        })
    }

    pub fn heads(&self, journey: JourneyId) -> Result<Vec<ChangeHash>> {
        self.with_document(journey, |doc| Ok(doc.heads()))
    }

    /// The oldest unacknowledged local changes.
    pub fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        outbox::peek(&self.lock_writer()?.conn, None, limit)
    }

    pub fn outbox_len(&self) -> Result<u64> {
        outbox::len(&self.lock_writer()?.conn, None)
    }

    /// Whose queued changes a sync may push now: on a device where users signed in,
    /// only the active user's — each user's work goes under their own credentials,
    /// and another user's waits (never re-attributed, never refused) until they sign
    /// in again. `None` (push everything) on a device nobody signed in on.
    pub fn pushing_author(&self) -> Result<Option<UserId>> {
        let Some(user) = self.active_user()? else {
            return Ok(None);
        };
        Ok(self.account(user.user_id)?.map(|_| user.user_id))
    }

    /// The oldest unacknowledged changes of `author` (all authors for `None`).
    pub fn outbox_of(&self, author: Option<UserId>, limit: usize) -> Result<Vec<OutboxEntry>> {
        outbox::peek(&self.lock_writer()?.conn, author, limit)
    }

    /// How many changes of `author` (all authors for `None`) wait.
    pub fn outbox_len_of(&self, author: Option<UserId>) -> Result<u64> {
        outbox::len(&self.lock_writer()?.conn, author)
    }

    /// Clears changes a server has acknowledged as durable. Returns how many left.
    pub fn acknowledge(&self, hashes: &[ChangeHash]) -> Result<usize> {
        let mut writer = self.lock_writer()?;
        let tx = writer
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let removed = outbox::acknowledge(&tx, hashes)?;
        tx.commit()?;
        Ok(removed)
    }

    /// The last log position received from `peer` (0 before the first sync).
    pub fn sync_cursor(&self, peer: &str) -> Result<u64> {
        let writer = self.lock_writer()?;
        let cursor: Option<i64> = writer
            .conn
            .query_row(
                "SELECT cursor FROM sync_peers WHERE peer = ?1",
                [peer],
                |row| row.get(0),
            )
            .optional()?;
        Ok(cursor.unwrap_or(0).max(0) as u64)
    }

    /// Records a sync outcome with `peer`. The cursor only moves forward.
    pub fn record_sync(&self, peer: &str, cursor: u64, error: Option<&str>) -> Result<()> {
        let mut writer = self.lock_writer()?;
        let tx = writer
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        record_sync_in(&tx, peer, cursor, error)?;
        tx.commit()?;
        Ok(())
    }

    /// Journeys with GPS fixes still buffered.
    pub fn journeys_with_buffered_gps(&self) -> Result<Vec<JourneyId>> {
        let writer = self.lock_writer()?;
        let mut stmt = writer
            .conn
            .prepare_cached("SELECT DISTINCT journey_id FROM gps_pending")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        rows.map(|row| row?.parse()).collect()
    }

    /// The actor id's raw bytes (for the sync protocol).
    pub fn actor_bytes(&self) -> Vec<u8> {
        self.actor.to_bytes().to_vec()
    }

    /// Folds a journey's stored changes into a snapshot now. Returns the change rows left.
    pub fn compact(&self, journey: JourneyId) -> Result<usize> {
        let mut writer = self.lock_writer()?;
        let Writer { conn, cache } = &mut *writer;
        let cached = load_into(cache, conn, journey, &self.actor)?;
        let remaining = documents::compact(conn, &cached.doc, now_ms())?;
        cached.uncompacted = remaining;
        Ok(remaining)
    }

    /// Every journey id in the store.
    pub fn journey_ids(&self) -> Result<Vec<JourneyId>> {
        let reader = self.lock_reader()?;
        let mut stmt =
            reader.prepare_cached("SELECT journey_id FROM documents ORDER BY journey_id")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        rows.map(|row| row?.parse()).collect()
    }

    /// Drops a journey the server says is outside this device's sync scope now (its
    /// user was unassigned, or it fell out of the date window), unless something of
    /// it still waits to be sent: queued changes (any user's), GPS fixes not yet
    /// folded, or media not yet uploaded. Those go first; the server names the
    /// journey again at the next sync. Rejected changes stay listed: they are the
    /// device's record of what the server refused. Returns whether it dropped it.
    pub fn forget_journey(&self, journey: JourneyId) -> Result<bool> {
        let mut writer = self.lock_writer()?;
        let Writer { conn, cache } = &mut *writer;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id = journey.to_string();
        let waiting: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE journey_id = ?1)
                 OR EXISTS (SELECT 1 FROM gps_pending WHERE journey_id = ?1)
                 OR EXISTS (SELECT 1 FROM media_queue
                            WHERE journey_id = ?1 AND state != 'done')",
            [&id],
            |row| row.get(0),
        )?;
        if waiting {
            return Ok(false);
        }
        // Uploaded media goes with the journey; its files are orphans from here on,
        // deleted now or, failing that, at the next open.
        let uploaded = media_queue::remove_done(&tx, Some(journey))?;
        let mut dropped = 0;
        for table in ["journey_summary", "doc_changes", "documents"] {
            dropped += tx.execute(&format!("DELETE FROM {table} WHERE journey_id = ?1"), [&id])?;
        }
        tx.commit()?;
        cache.pop(&journey);
        for name in uploaded {
            let _ = std::fs::remove_file(self.media_dir.join(name));
        }
        Ok(dropped > 0)
    }

    /// SQLite's own consistency check; `Ok` only when it answers "ok".
    pub fn integrity_check(&self) -> Result<()> {
        let reader = self.lock_reader()?;
        let answer: String = reader.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
        if answer == "ok" {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!("integrity_check: {answer}")))
        }
    }

    /// Applies `action` as `author` (asking the rules first when `check`), then
    /// persists the change together with whatever `also` writes, in one transaction.
    /// The check runs under the writer lock on the document the change is made to,
    /// so no received change can slip in between the decision and the write.
    fn commit(
        &self,
        journey: JourneyId,
        action: &JourneyAction,
        author: &ActiveUser,
        check: bool,
        also: impl FnOnce(&Transaction<'_>, &Change) -> Result<()>,
    ) -> Result<()> {
        let mut writer = self.lock_writer()?;
        let Writer { conn, cache } = &mut *writer;
        let acting = permits::acting(conn, author, self.device_id)?;
        let origin = &acting.origin;
        let cached = load_into(cache, conn, journey, &self.actor)?;
        if check {
            permits::check_action(&acting, &cached.doc, action)?;
        }
        let Some(change) = cached.doc.apply(action, origin, Timestamp::now())? else {
            return Ok(());
        };
        let persisted = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            record_local_change(&tx, &cached.doc, &change, origin.user_id)?;
            also(&tx, &change)?;
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = persisted {
            // The in-memory document already has the change; drop it so the next read
            // reloads what is actually on disk.
            cache.pop(&journey);
            return Err(e);
        }
        cached.uncompacted += 1;
        if cached.uncompacted >= self.options.compact_after_changes {
            // Best effort: a failed compaction leaves the change rows, which are enough.
            match documents::compact(conn, &cached.doc, now_ms()) {
                Ok(remaining) => cached.uncompacted = remaining,
                Err(e) => tracing::warn!(%journey, error = %e, "compaction failed; will retry"),
            }
        }
        Ok(())
    }

    fn require_active_user(&self) -> Result<ActiveUser> {
        self.active_user()?.ok_or(Error::NoActiveUser)
    }

    /// The writer, unless the store is suspended (its connection is closed then).
    fn lock_writer(&self) -> Result<MutexGuard<'_, Writer>> {
        let guard = self.lock_writer_even_suspended();
        lifecycle::refuse_if_suspended(&self.suspended)?;
        Ok(guard)
    }

    fn lock_writer_even_suspended(&self) -> MutexGuard<'_, Writer> {
        match self.writer.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                // A panic while holding the lock may have left a cached document ahead
                // of disk; forget the cache and carry on from what is durable.
                let mut guard = poisoned.into_inner();
                guard.cache.clear();
                self.writer.clear_poison();
                guard
            }
        }
    }

    /// The read connection, unless the store is suspended.
    fn lock_reader(&self) -> Result<MutexGuard<'_, Connection>> {
        let guard = lock(&self.reader)?;
        lifecycle::refuse_if_suspended(&self.suspended)?;
        Ok(guard)
    }
}

impl Writer {
    fn load(&mut self, journey: JourneyId, actor: &ActorId) -> Result<&mut CachedDocument> {
        load_into(&mut self.cache, &self.conn, journey, actor)
    }
}

/// Records a sync outcome inside `tx`; the cursor only moves forward.
fn record_sync_in(
    tx: &Transaction<'_>,
    peer: &str,
    cursor: u64,
    error: Option<&str>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO sync_peers (peer, cursor, last_success, last_error)
         VALUES (?1, ?2, CASE WHEN ?4 IS NULL THEN ?3 END, ?4)
         ON CONFLICT (peer) DO UPDATE SET
             cursor = max(cursor, excluded.cursor),
             last_success = coalesce(excluded.last_success, last_success),
             last_error = excluded.last_error",
        params![peer, cursor as i64, now_ms(), error],
    )?;
    Ok(())
}

/// Applies each journey's received batch inside `tx` (documents in `cache`).
fn absorb_in(
    tx: &Transaction<'_>,
    cache: &mut LruCache<JourneyId, CachedDocument>,
    actor: &ActorId,
    received: Vec<(JourneyId, Vec<Change>)>,
) -> Result<Absorbed> {
    let mut absorbed = Absorbed::default();
    for (journey, decoded) in received {
        if !documents::exists(tx, journey)? && !cache.contains(&journey) {
            let doc = JourneyDocument::load(journey, None, Vec::new(), actor.clone())?;
            cache.put(
                journey,
                CachedDocument {
                    doc,
                    uncompacted: 0,
                },
            );
        }
        let cached = load_into(cache, tx, journey, actor)?;
        documents::insert_document(tx, journey)?;
        let mut new = 0;
        for change in decoded.iter().filter(|c| !cached.doc.has_change(&c.hash())) {
            // A change already folded into the document needs no row (it may have been
            // compacted away); a held one is already stored and is ignored here.
            if documents::insert_change(tx, journey, &change.hash(), change.raw_bytes())? {
                new += 1;
            }
        }
        let hashes: Vec<ChangeHash> = decoded.iter().map(Change::hash).collect();
        cached.doc.apply_changes(decoded)?;
        summary::refresh(tx, &cached.doc, now_ms())?;
        absorbed.applied.new += new;
        absorbed.applied.held += hashes.iter().filter(|h| !cached.doc.has_change(h)).count();
        absorbed.new_per_journey.push((journey, new));
    }
    Ok(absorbed)
}

fn load_into<'c>(
    cache: &'c mut LruCache<JourneyId, CachedDocument>,
    conn: &Connection,
    journey: JourneyId,
    actor: &ActorId,
) -> Result<&'c mut CachedDocument> {
    if !cache.contains(&journey) {
        let (doc, uncompacted) = documents::load(conn, journey, actor.clone())?;
        cache.put(journey, CachedDocument { doc, uncompacted });
    }
    cache
        .get_mut(&journey)
        .ok_or_else(|| Error::UnknownJourney(journey.to_string()))
}

/// Writes a local change: its row, its outbox entry, and the refreshed summary.
fn record_local_change(
    tx: &Transaction<'_>,
    doc: &JourneyDocument,
    change: &Change,
    author: UserId,
) -> Result<()> {
    let now = now_ms();
    let hash = change.hash();
    documents::insert_change(tx, doc.id(), &hash, change.raw_bytes())?;
    outbox::push(tx, doc.id(), &hash, change.raw_bytes(), author, now)?;
    summary::refresh(tx, doc, now)
}

fn location_timezone(conn: &Connection, location: LocationId) -> Result<String> {
    conn.query_row(
        "SELECT timezone FROM locations WHERE id = ?1",
        [location.to_string()],
        |row| row.get(0),
    )
    .optional()?
    .ok_or_else(|| Error::UnknownLocation(location.to_string()))
}

fn lock<T>(mutex: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    // The guarded values here (a read connection, the active user) stay valid after
    // a panic elsewhere, so a poisoned lock is simply taken over.
    Ok(mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()))
}

fn now_ms() -> i64 {
    Timestamp::now().millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `synchronous` is a per-connection setting, not stored in the file, so the crash
    /// test cannot see it; this checks the writer really commits with FULL in WAL mode.
    #[test]
    fn the_writer_commits_with_full_sync_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            DeviceStore::open(dir.path().join("s.sqlite"), StoreOptions::default()).unwrap();
        let writer = store.lock_writer().unwrap();
        let synchronous: i64 = writer
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        let journal: String = writer
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!((synchronous, journal.as_str()), (2, "wal"), "2 = FULL");
    }
}
