//! Observers: foreign callback interfaces the app implements, each subscription held
//! by an [`ObserverHandle`] that cancels it on `cancel()` or when dropped.
//!
//! Every subscription delivers the current state first, then each change. Callbacks
//! run one at a time per subscription on the runtime's blocking pool, never on the
//! caller's thread and never on a reactor thread, so a slow callback delays only its
//! own subscription; a callback must not block waiting for the app's main thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crewsync_core::DeviceStore;
use crewsync_core::ids::JourneyId;
use crewsync_core::sync::runtime::SyncStatus as CoreStatus;
use tokio::sync::watch;

use crate::media::UploadProgress;
use crate::records::{Journey, RejectedChange, SyncStatus};

/// Hears the sync status: connection, pending changes, last outcome.
#[uniffi::export(callback_interface)]
pub trait SyncStatusObserver: Send + Sync {
    fn on_status(&self, status: SyncStatus);
}

/// Hears one journey: its whole current state and the local changes the server
/// refused, after every local action, every sync that changed it, and every refusal.
#[uniffi::export(callback_interface)]
pub trait JourneyObserver: Send + Sync {
    fn on_journey(&self, journey: Journey, rejected: Vec<RejectedChange>);
}

/// Hears the media upload queue: totals, the item being sent, and every item (bytes
/// sent of its size, done, or set aside with the reason), after each capture, each
/// upload step and each sync.
#[uniffi::export(callback_interface)]
pub trait UploadProgressObserver: Send + Sync {
    fn on_progress(&self, progress: UploadProgress);
}

/// A subscription. Cancelled by [`cancel`](Self::cancel) or when the handle is
/// dropped (Kotlin: `close()`/`use {}`; Swift and Python: on release). A delivery
/// already under way when it is cancelled may still finish; none starts after.
#[derive(uniffi::Object)]
pub struct ObserverHandle {
    cancelled: Arc<AtomicBool>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

#[uniffi::export]
impl ObserverHandle {
    /// Stops the subscription. Idempotent.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.abort();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

impl Drop for ObserverHandle {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Runs `deliver` on the blocking pool unless the subscription was cancelled.
/// Returns false once it is cancelled (or the runtime is going away).
async fn deliver(cancelled: &Arc<AtomicBool>, call: impl FnOnce() + Send + 'static) -> bool {
    if cancelled.load(Ordering::Acquire) {
        return false;
    }
    let cancelled = Arc::clone(cancelled);
    tokio::task::spawn_blocking(move || {
        if !cancelled.load(Ordering::Acquire) {
            call();
        }
    })
    .await
    .is_ok()
}

pub(crate) fn watch_sync_status(
    runtime: &tokio::runtime::Handle,
    mut status: watch::Receiver<CoreStatus>,
    observer: Box<dyn SyncStatusObserver>,
) -> Arc<ObserverHandle> {
    let cancelled = Arc::new(AtomicBool::new(false));
    let observer: Arc<dyn SyncStatusObserver> = Arc::from(observer);
    let flag = Arc::clone(&cancelled);
    let task = runtime.spawn(async move {
        loop {
            let current: SyncStatus = status.borrow_and_update().clone().into();
            let observer = Arc::clone(&observer);
            if !deliver(&flag, move || observer.on_status(current)).await {
                return;
            }
            if status.changed().await.is_err() {
                return;
            }
        }
    });
    handle(cancelled, task.abort_handle())
}

pub(crate) fn watch_journey(
    runtime: &tokio::runtime::Handle,
    store: Arc<DeviceStore>,
    journey: JourneyId,
    local_writes: watch::Receiver<u64>,
    status: watch::Receiver<CoreStatus>,
    observer: Box<dyn JourneyObserver>,
) -> Arc<ObserverHandle> {
    let observer: Arc<dyn JourneyObserver> = Arc::from(observer);
    watch_store(
        runtime,
        local_writes,
        status,
        move |_| {
            let view: Journey = store.journey(journey)?.into();
            let rejected: Vec<RejectedChange> = store
                .rejected_changes(journey)?
                .into_iter()
                .map(Into::into)
                .collect();
            Ok((view, rejected))
        },
        move |(view, rejected)| observer.on_journey(view, rejected),
    )
}

/// Re-reads the upload queue after every local write (a capture) and every status
/// change (an upload step, a sync), and delivers it when it differs.
pub(crate) fn watch_uploads(
    runtime: &tokio::runtime::Handle,
    store: Arc<DeviceStore>,
    local_writes: watch::Receiver<u64>,
    status: watch::Receiver<CoreStatus>,
    observer: Box<dyn UploadProgressObserver>,
) -> Arc<ObserverHandle> {
    let observer: Arc<dyn UploadProgressObserver> = Arc::from(observer);
    watch_store(
        runtime,
        local_writes,
        status,
        move |status| {
            Ok(UploadProgress {
                queue: store.media_progress()?.into(),
                uploading_media_id: uploading(status),
                items: store.upload_queue()?.into_iter().map(Into::into).collect(),
            })
        },
        move |now| observer.on_progress(now),
    )
}

/// The loop behind the store observers: `read` (blocking SQLite, off the runtime's
/// workers) after every local write and every sync status change, and `notify` with
/// the result whenever it differs from the last one delivered. A read that fails
/// (the journey is unknown yet, the store is suspended) waits for the next change.
fn watch_store<T, R, N>(
    runtime: &tokio::runtime::Handle,
    mut local_writes: watch::Receiver<u64>,
    mut status: watch::Receiver<CoreStatus>,
    read: R,
    notify: N,
) -> Arc<ObserverHandle>
where
    T: PartialEq + Clone + Send + 'static,
    R: Fn(&CoreStatus) -> crewsync_core::Result<T> + Send + Sync + 'static,
    N: Fn(T) + Send + Sync + 'static,
{
    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancelled);
    let (read, notify) = (Arc::new(read), Arc::new(notify));
    let task = runtime.spawn(async move {
        let mut last: Option<T> = None;
        loop {
            local_writes.borrow_and_update();
            let current = status.borrow_and_update().clone();
            let read = Arc::clone(&read);
            match tokio::task::spawn_blocking(move || read(&current)).await {
                Ok(Ok(now)) if last.as_ref() != Some(&now) => {
                    last = Some(now.clone());
                    let notify = Arc::clone(&notify);
                    if !deliver(&flag, move || notify(now)).await {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
            tokio::select! {
                changed = local_writes.changed() => if changed.is_err() { return },
                changed = status.changed() => if changed.is_err() { return },
            }
        }
    });
    handle(cancelled, task.abort_handle())
}

/// The media the sync client is uploading now.
fn uploading(status: &CoreStatus) -> Option<String> {
    status.uploading.map(|id| id.to_string())
}

fn handle(cancelled: Arc<AtomicBool>, task: tokio::task::AbortHandle) -> Arc<ObserverHandle> {
    Arc::new(ObserverHandle {
        cancelled,
        task: Mutex::new(Some(task)),
    })
}
