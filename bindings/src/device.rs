//! [`CrewDevice`]: one device store and its sync client, as the app holds them.
//!
//! Threading model (also in bindings/README.md): the object owns a small tokio runtime
//! (two workers). Local reads and crew actions are synchronous: each is one SQLite
//! transaction (one fsync, a few milliseconds), safe from any thread; apps call them
//! off the main thread. Network work (`sign_in`, `sign_out`, `sync_now`, stopping,
//! `suspend`, `resume`) is `async`: it is spawned on the owned runtime and the foreign
//! future only awaits its completion, so no foreign thread ever needs a tokio
//! reactor. Cancelling such a call (a Kotlin coroutine's cancel, dropping a Swift
//! task's future) stops the waiting, not the work: the spawned task runs to the end
//! of its transaction, so a cancelled call never leaves half a state behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use crewsync_core::ids::{ActivityId, JourneyId, LocationId, MediaId, UserId};
use crewsync_core::model::{StepNumber, Timestamp};
use crewsync_core::store::MediaSource;
use crewsync_core::sync::runtime::{Backoff, SyncClient};
use crewsync_core::{DeviceStore, StoreOptions};
use tokio::sync::watch;

use crate::error::{CrewsyncError, Result};
use crate::media::{
    CaptureInfo, MediaOutcome, MediaProblem, MediaProgress, SignatureCapture, SignatureRefusal,
    UploadItem,
};
use crate::observers::{
    JourneyObserver, ObserverHandle, SyncStatusObserver, UploadProgressObserver, watch_journey,
    watch_sync_status, watch_uploads,
};
use crate::records::{
    ActivityKind, GpsPoint, Journey, JourneySummary, Location, MediaRef, NetworkType, NewEntry,
    RejectedChange, Role, SignedInUser, Stage, SyncOutcome, SyncStatus,
};

/// Worker threads of the owned runtime: sync is one exchange at a time plus a live
/// socket, and a phone's app extension must stay small.
const WORKERS: usize = 2;

/// A crew device: its store, its sync with one server, its observers.
#[derive(uniffi::Object)]
pub struct CrewDevice {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    store: Arc<DeviceStore>,
    sync: Arc<SyncClient>,
    /// Bumped after every local write, so journey observers re-read.
    local_writes: watch::Sender<u64>,
    network: Mutex<NetworkType>,
    /// The background sync's interval while it runs (kept across suspend/resume).
    background: Mutex<Option<Duration>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for CrewDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrewDevice")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

#[uniffi::export]
impl CrewDevice {
    /// Opens (creating or upgrading) the store at `store_path`, to sync with the
    /// server at `server_url` (`https://host:port`). A user signed in before keeps
    /// syncing as themselves.
    #[uniffi::constructor]
    pub fn open(store_path: String, server_url: String) -> Result<Arc<Self>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("crewsync")
            .enable_all()
            .build()
            .map_err(|e| CrewsyncError::other(format!("cannot start the runtime: {e}")))?;
        let store = DeviceStore::open(&store_path, StoreOptions::default())?;
        let sync = {
            let _inside = runtime.enter();
            SyncClient::new(Arc::clone(&store), &server_url)?
        };
        let (local_writes, _) = watch::channel(0);
        store.set_network(NetworkType::Unknown.into())?;
        Ok(Arc::new(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            store,
            sync,
            local_writes,
            network: Mutex::new(NetworkType::Unknown),
            background: Mutex::new(None),
            closed: AtomicBool::new(false),
        }))
    }

    /// This install's id (kept for the life of the store file).
    pub fn device_id(&self) -> String {
        self.store.device_id().to_string()
    }

    // ---- sign-in ---------------------------------------------------------------

    /// Signs in and makes the user the one whose actions are recorded. `Auth` for a
    /// wrong password, `Network` when the server cannot be reached.
    pub async fn sign_in(&self, email: String, password: String) -> Result<SignedInUser> {
        self.open_store()?;
        let sync = Arc::clone(&self.sync);
        let tokens = self
            .on_runtime(async move { Ok(sync.sign_in(&email, &password).await?) })
            .await?;
        Ok(tokens.user.into())
    }

    /// Signs the user out: ends the session on the server when it answers (returns
    /// whether it did) and forgets the tokens either way. Their unsynced work stays
    /// queued for their next sign-in.
    pub async fn sign_out(&self) -> Result<bool> {
        self.open_store()?;
        let sync = Arc::clone(&self.sync);
        self.on_runtime(async move { Ok(sync.sign_out().await?) })
            .await
    }

    /// The active user, if someone is signed in.
    pub fn signed_in_user(&self) -> Result<Option<SignedInUser>> {
        let store = self.open_store()?;
        let Some(active) = store.active_user()? else {
            return Ok(None);
        };
        Ok(store.account(active.user_id)?.map(|a| a.user.into()))
    }

    // ---- reading ---------------------------------------------------------------

    /// Registers or updates a location (its timezone decides which day is today).
    pub fn upsert_location(&self, location: Location) -> Result<()> {
        let location: crewsync_core::model::Location = location.try_into()?;
        Ok(self.open_store()?.upsert_location(&location)?)
    }

    /// A location's journeys on `date` (`YYYY-MM-DD`).
    pub fn list_journeys(&self, location_id: String, date: String) -> Result<Vec<JourneySummary>> {
        let date = NaiveDate::parse_from_str(&date, "%Y-%m-%d")
            .map_err(|e| CrewsyncError::invalid(format!("date {date:?} is not YYYY-MM-DD: {e}")))?;
        let list = self
            .open_store()?
            .list_journeys(location_id.parse()?, date)?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// A location's journeys today, in the location's timezone (register it first).
    pub fn list_journeys_today(&self, location_id: String) -> Result<Vec<JourneySummary>> {
        let location: LocationId = location_id.parse()?;
        let list = self
            .open_store()?
            .list_journeys_today(location, chrono::Utc::now())?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// Every journey this device holds.
    pub fn journey_ids(&self) -> Result<Vec<String>> {
        let ids = self.open_store()?.journey_ids()?;
        Ok(ids.iter().map(ToString::to_string).collect())
    }

    /// A whole journey.
    pub fn journey(&self, journey_id: String) -> Result<Journey> {
        Ok(self.open_store()?.journey(journey_id.parse()?)?.into())
    }

    /// A journey's whole GPS track in time order, including fixes not yet batched.
    pub fn gps_track(&self, journey_id: String) -> Result<Vec<GpsPoint>> {
        let track = self.open_store()?.gps_track(journey_id.parse()?)?;
        Ok(track.into_iter().map(Into::into).collect())
    }

    /// The local changes the server refused for a journey, with its reasons.
    pub fn rejected_changes(&self, journey_id: String) -> Result<Vec<RejectedChange>> {
        let rejected = self.open_store()?.rejected_changes(journey_id.parse()?)?;
        Ok(rejected.into_iter().map(Into::into).collect())
    }

    /// Local changes (every user's) not yet acknowledged by the server.
    pub fn pending_changes(&self) -> Result<u64> {
        Ok(self.open_store()?.outbox_len()?)
    }

    // ---- crew actions: each one durable change, checked against the user's role --

    pub fn advance_stage(&self, journey_id: String, to: Stage) -> Result<()> {
        self.write(|s| s.advance_stage(journey_id.parse()?, to.into()))
    }

    pub fn start_step(&self, journey_id: String, step: u8) -> Result<()> {
        self.write(|s| s.start_step(journey_id.parse()?, StepNumber::new(step)?))
    }

    pub fn complete_step(&self, journey_id: String, step: u8) -> Result<()> {
        self.write(|s| s.complete_step(journey_id.parse()?, StepNumber::new(step)?))
    }

    pub fn approve_step(
        &self,
        journey_id: String,
        step: u8,
        comment: Option<String>,
    ) -> Result<()> {
        self.write(|s| s.approve_step(journey_id.parse()?, StepNumber::new(step)?, comment))
    }

    /// Adds a checklist to a step; returns its activity id.
    pub fn add_checklist(
        &self,
        journey_id: String,
        step: u8,
        title: String,
        items: Vec<String>,
    ) -> Result<String> {
        self.write(|s| s.add_checklist(journey_id.parse()?, StepNumber::new(step)?, &title, items))
            .map(|id| id.to_string())
    }

    /// Ticks or unticks a checklist item (`item` is the item's key).
    pub fn set_checklist_item(
        &self,
        journey_id: String,
        step: u8,
        activity_id: String,
        item: String,
        checked: bool,
    ) -> Result<()> {
        self.write(|s| {
            let activity: ActivityId = activity_id.parse()?;
            s.set_checklist_item(
                journey_id.parse()?,
                StepNumber::new(step)?,
                activity,
                &item,
                checked,
            )
        })
    }

    /// Adds a non-checklist activity (note, approval, …) to a step; returns its id.
    pub fn add_activity(
        &self,
        journey_id: String,
        step: u8,
        kind: ActivityKind,
        title: Option<String>,
        text: Option<String>,
    ) -> Result<String> {
        self.write(|s| {
            s.add_activity(
                journey_id.parse()?,
                StepNumber::new(step)?,
                kind.into(),
                title,
                text,
            )
        })
        .map(|id| id.to_string())
    }

    /// Appends a journey note; returns its id.
    pub fn add_note(&self, journey_id: String, text: String) -> Result<String> {
        self.write(|s| s.add_note(journey_id.parse()?, &text))
            .map(|id| id.to_string())
    }

    pub fn assign_crew(&self, journey_id: String, user_id: String, role: Role) -> Result<()> {
        self.write(|s| {
            let user: UserId = user_id.parse()?;
            s.assign_crew(journey_id.parse()?, user, role.into())
        })
    }

    pub fn unassign_crew(&self, journey_id: String, user_id: String) -> Result<()> {
        self.write(|s| {
            let user: UserId = user_id.parse()?;
            s.unassign_crew(journey_id.parse()?, user)
        })
    }

    pub fn set_truck_number(&self, journey_id: String, truck_number: Option<String>) -> Result<()> {
        self.write(|s| s.set_truck_number(journey_id.parse()?, truck_number))
    }

    pub fn set_times(
        &self,
        journey_id: String,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
    ) -> Result<()> {
        self.write(|s| {
            s.set_times(
                journey_id.parse()?,
                start_ms.map(Timestamp),
                end_ms.map(Timestamp),
            )
        })
    }

    /// Adds an entry (note, status update, damage tag, …); returns its id.
    pub fn add_entry(&self, journey_id: String, entry: NewEntry) -> Result<String> {
        let entry: crewsync_core::model::NewEntry = entry.try_into()?;
        self.write(|s| s.add_entry(journey_id.parse()?, entry))
            .map(|id| id.to_string())
    }

    /// Adds GPS points the app has batched itself, as one change.
    pub fn add_gps_points(&self, journey_id: String, points: Vec<GpsPoint>) -> Result<()> {
        let points: Vec<crewsync_core::model::GpsPoint> =
            points.into_iter().map(Into::into).collect();
        self.write(|s| s.add_gps_points(journey_id.parse()?, points))
    }

    /// Records one GPS fix durably; fixes reach the journey a batch at a time.
    pub fn record_gps_point(&self, journey_id: String, point: GpsPoint) -> Result<()> {
        let journey: JourneyId = journey_id.parse()?;
        Ok(self.open_store()?.record_gps_point(journey, point.into())?)
    }

    /// Folds the buffered GPS fixes of a journey into it now (e.g. at the end of a day).
    pub fn flush_gps(&self, journey_id: String) -> Result<()> {
        self.write(|s| s.flush_gps(journey_id.parse()?))
    }

    // ---- media: capture decodes, thumbnails and fsyncs, so it is async ----------

    /// Captures a JPEG, PNG or WebP photo from a file the camera wrote (copied, never
    /// moved). The original is kept byte for byte, a thumbnail is made, and the PHOTO
    /// entry and both uploads are queued in one transaction. `InvalidInput` for
    /// another format (judged by its bytes), a damaged image or a decompression bomb;
    /// `StorageFull` when the disk is full; in each case nothing is stored.
    pub async fn capture_photo(
        &self,
        journey_id: String,
        path: String,
        info: CaptureInfo,
    ) -> Result<MediaRef> {
        self.capture(journey_id, MediaSource::Path(path.into()), info, false)
            .await
    }

    /// [`capture_photo`](Self::capture_photo) from bytes the app holds.
    pub async fn capture_photo_bytes(
        &self,
        journey_id: String,
        bytes: Vec<u8>,
        info: CaptureInfo,
    ) -> Result<MediaRef> {
        self.capture(journey_id, MediaSource::Bytes(bytes), info, false)
            .await
    }

    /// Captures an MP4 or QuickTime video from a file, kept as it is. Large videos
    /// upload on Wi-Fi only.
    pub async fn capture_video(
        &self,
        journey_id: String,
        path: String,
        info: CaptureInfo,
    ) -> Result<MediaRef> {
        self.capture(journey_id, MediaSource::Path(path.into()), info, true)
            .await
    }

    /// Captures a signature: the strokes become a deterministic PNG whose SHA-256 is
    /// bound with the signer, the document and its hash in a SIGNATURE entry.
    /// `InvalidInput` without consent, with no strokes or points off the pad.
    pub async fn capture_signature(
        &self,
        journey_id: String,
        capture: SignatureCapture,
    ) -> Result<MediaRef> {
        let journey: JourneyId = journey_id.parse()?;
        let capture: crewsync_core::media::SignatureCapture = capture.try_into()?;
        self.write_off_thread(move |s| s.capture_signature(journey, &capture))
            .await
    }

    /// Records that the signer refused to sign, with the reason (nothing to upload).
    pub fn record_signature_refusal(
        &self,
        journey_id: String,
        refusal: SignatureRefusal,
    ) -> Result<MediaRef> {
        let refusal: crewsync_core::media::SignatureRefusal = refusal.try_into()?;
        self.write(|s| s.record_signature_refusal(journey_id.parse()?, &refusal))
            .map(Into::into)
    }

    /// Tombstones a photo, video or signature (its bytes and upload stay).
    /// `NotAllowed` for crews once it is sealed evidence: its step's inventory or
    /// a signature is complete.
    pub fn remove_media(&self, journey_id: String, media_id: String) -> Result<()> {
        self.write(|s| {
            let media: MediaId = media_id.parse()?;
            s.remove_media(journey_id.parse()?, media)
        })
    }

    /// Items and bytes still to upload.
    pub fn media_progress(&self) -> Result<MediaProgress> {
        Ok(self.open_store()?.media_progress()?.into())
    }

    /// Every upload item: pending ones in upload order, then set aside, then done.
    pub fn upload_queue(&self) -> Result<Vec<UploadItem>> {
        let items = self.open_store()?.upload_queue()?;
        Ok(items.into_iter().map(Into::into).collect())
    }

    /// Queued files found missing or damaged when the store was opened; their items
    /// are set aside.
    pub fn media_problems(&self) -> Result<Vec<MediaProblem>> {
        let problems = self.open_store()?.media_problems()?;
        Ok(problems.into_iter().map(Into::into).collect())
    }

    /// Puts a set-aside upload item back in line.
    pub fn retry_media(&self, item_id: String) -> Result<()> {
        self.open_store()?.retry_upload(&item_id)?;
        self.local_writes.send_modify(|n| *n = n.wrapping_add(1));
        self.sync.wake();
        Ok(())
    }

    // ---- sync ------------------------------------------------------------------

    /// Syncs now until nothing is pending or the server has nothing more.
    pub async fn sync_now(&self) -> Result<SyncOutcome> {
        self.open_store()?;
        let sync = Arc::clone(&self.sync);
        let outcome = self
            .on_runtime(async move { Ok(sync.sync_now().await?) })
            .await?;
        Ok(outcome.into())
    }

    /// Uploads the media queue now (what `sync_now` does after its exchange), on the
    /// network last set: `Offline` uploads nothing; large videos wait for `Wifi`.
    pub async fn upload_media(&self) -> Result<MediaOutcome> {
        self.open_store()?;
        let sync = Arc::clone(&self.sync);
        let outcome = self
            .on_runtime(async move { Ok(sync.upload_media().await?) })
            .await?;
        Ok(outcome.into())
    }

    /// Starts syncing in the background every `interval_ms`, at once after a local
    /// action, and when the server announces changes. Idempotent.
    pub fn start_background_sync(&self, interval_ms: u64) -> Result<()> {
        self.open_store()?;
        let interval = Duration::from_millis(interval_ms.max(1));
        let _inside = self.handle.enter();
        self.sync.start(interval, Backoff::default());
        *lock(&self.background) = Some(interval);
        Ok(())
    }

    /// Stops background sync; an exchange in flight finishes first.
    pub async fn stop_background_sync(&self) -> Result<()> {
        *lock(&self.background) = None;
        let sync = Arc::clone(&self.sync);
        self.on_runtime(async move {
            sync.stop().await;
            Ok(())
        })
        .await
    }

    /// The current sync status.
    pub fn sync_status(&self) -> SyncStatus {
        self.sync.status().borrow().clone().into()
    }

    /// What kind of network the platform reports. Offline pauses background sync
    /// (no backoff is spent on a known-dead link); any other type resumes it. The
    /// upload queue follows it too: large videos wait for Wi-Fi; `Unknown` counts as
    /// a metered network.
    pub fn set_network_type(&self, network: NetworkType) -> Result<()> {
        self.open_store()?.set_network(network.into())?;
        *lock(&self.network) = network;
        if network == NetworkType::Offline {
            self.sync.pause();
        } else {
            self.sync.resume();
        }
        Ok(())
    }

    pub fn network_type(&self) -> NetworkType {
        *lock(&self.network)
    }

    // ---- observers ---------------------------------------------------------------

    /// Calls `observer` with the current sync status, then on every change.
    pub fn observe_sync_status(
        &self,
        observer: Box<dyn SyncStatusObserver>,
    ) -> Arc<ObserverHandle> {
        watch_sync_status(&self.handle, self.sync.status(), observer)
    }

    /// Calls `observer` with the journey as it is now (once it is on the device), then
    /// whenever a local action, a sync or a refusal changes it.
    pub fn observe_journey(
        &self,
        journey_id: String,
        observer: Box<dyn JourneyObserver>,
    ) -> Result<Arc<ObserverHandle>> {
        Ok(watch_journey(
            &self.handle,
            Arc::clone(self.open_store()?),
            journey_id.parse()?,
            self.local_writes.subscribe(),
            self.sync.status(),
            observer,
        ))
    }

    /// Calls `observer` with the upload queue as it is now, then after every capture,
    /// upload step and sync that changes it.
    pub fn observe_uploads(
        &self,
        observer: Box<dyn UploadProgressObserver>,
    ) -> Result<Arc<ObserverHandle>> {
        Ok(watch_uploads(
            &self.handle,
            Arc::clone(self.open_store()?),
            self.local_writes.subscribe(),
            self.sync.status(),
            observer,
        ))
    }

    // ---- lifecycle -----------------------------------------------------------------

    /// For iOS backgrounding: stops background sync, waits for the write in progress,
    /// and closes the SQLite file, so the app holds no file lock while suspended.
    /// Calls that need the store fail until [`resume`](Self::resume).
    pub async fn suspend(&self) -> Result<()> {
        let sync = Arc::clone(&self.sync);
        let store = Arc::clone(&self.store);
        self.on_runtime(async move {
            sync.stop().await;
            tokio::task::spawn_blocking(move || store.suspend())
                .await
                .map_err(|e| CrewsyncError::other(format!("suspend failed: {e}")))??;
            Ok(())
        })
        .await
    }

    /// Reopens the store and restarts background sync if it was running.
    pub async fn resume(&self) -> Result<()> {
        self.open_store()?;
        let store = Arc::clone(&self.store);
        self.on_runtime(async move {
            tokio::task::spawn_blocking(move || store.resume())
                .await
                .map_err(|e| CrewsyncError::other(format!("resume failed: {e}")))??;
            Ok(())
        })
        .await?;
        let background = *lock(&self.background);
        if let Some(interval) = background {
            let _inside = self.handle.enter();
            self.sync.start(interval, Backoff::default());
        }
        Ok(())
    }

    pub fn is_suspended(&self) -> bool {
        self.store.is_suspended()
    }

    /// Stops background sync and closes the store file. Every later call fails with
    /// `Other`. Call it from the app's own thread, not from inside an observer. (Not
    /// `close`: Kotlin objects already have `close()`, which frees the object.)
    pub fn shutdown(&self) -> Result<()> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(CrewsyncError::other(
                "shutdown() was called from a crewsync callback thread; call it from the app's thread",
            ));
        }
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let sync = Arc::clone(&self.sync);
        self.handle.block_on(async move { sync.stop().await });
        Ok(self.store.suspend()?)
    }
}

impl CrewDevice {
    /// The store, unless the device was closed.
    fn open_store(&self) -> Result<&Arc<DeviceStore>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(CrewsyncError::other("the device was closed"));
        }
        Ok(&self.store)
    }

    /// Runs a local write and tells journey observers and the sync loop about it.
    fn write<T>(&self, action: impl FnOnce(&DeviceStore) -> crewsync_core::Result<T>) -> Result<T> {
        let done = action(self.open_store()?)?;
        self.local_writes.send_modify(|n| *n = n.wrapping_add(1));
        self.sync.wake();
        Ok(done)
    }

    /// [`write`](Self::write) for long work (decoding, thumbnails, file fsyncs): run
    /// on the owned runtime's blocking pool, never on the caller's thread. A cancelled
    /// call leaves the capture to finish (or fail) whole.
    async fn write_off_thread<T: Into<R> + Send + 'static, R: Send + 'static>(
        &self,
        action: impl FnOnce(&DeviceStore) -> crewsync_core::Result<T> + Send + 'static,
    ) -> Result<R> {
        let store = Arc::clone(self.open_store()?);
        let done = self
            .on_runtime(async move {
                tokio::task::spawn_blocking(move || action(&store))
                    .await
                    .map_err(|e| CrewsyncError::other(format!("crewsync task failed: {e}")))?
                    .map_err(CrewsyncError::from)
            })
            .await?;
        self.local_writes.send_modify(|n| *n = n.wrapping_add(1));
        self.sync.wake();
        Ok(done.into())
    }

    /// A photo (or, with `video`, a video) capture from `source`, off the caller's
    /// thread.
    async fn capture(
        &self,
        journey_id: String,
        source: MediaSource,
        info: CaptureInfo,
        video: bool,
    ) -> Result<MediaRef> {
        let journey: JourneyId = journey_id.parse()?;
        let info: crewsync_core::store::CaptureInfo = info.try_into()?;
        self.write_off_thread(move |s| {
            if video {
                s.capture_video(journey, source, info)
            } else {
                s.capture_photo(journey, source, info)
            }
        })
        .await
    }

    /// Runs `work` on the owned runtime; the caller's future only waits for it, so
    /// dropping that future (a cancelled call) leaves the work to finish on its own.
    async fn on_runtime<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.handle
            .spawn(work)
            .await
            .map_err(|e| CrewsyncError::other(format!("crewsync task failed: {e}")))?
    }
}

impl Drop for CrewDevice {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime inside another's context panics; let a plain thread do it.
            if tokio::runtime::Handle::try_current().is_ok() {
                std::thread::spawn(move || runtime.shutdown_background());
            } else {
                runtime.shutdown_background();
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
