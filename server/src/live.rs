//! The live channel: `GET /v1/live` upgrades to a WebSocket on which a device hears,
//! within milliseconds of their commit, that new changes are in the log, so it
//! syncs right away instead of at its next poll.
//!
//! # Frames
//!
//! Server → device, JSON text frames ([`LiveFrame`]):
//!
//! ```json
//! {"head": 42, "journeys": ["0192f1c4-…", "…"]}
//! ```
//!
//! `head` is the tenant's log head (the highest sequence number) after the append;
//! `journeys` names the journeys the new changes belong to, or is empty when that
//! is not known (the first frame, which carries the head at connect time; a socket
//! that fell behind; a notice too large for Postgres). A device syncs whenever
//! `head` is above its cursor; `journeys` only says what to expect. Heads on one
//! socket strictly increase: notices at or below what a socket was already told are
//! skipped, and queued notices are merged into one frame. The server pings every
//! `--live-ping-secs` and closes a socket silent for two intervals; on shutdown every
//! socket gets a close frame (1001, going away).
//!
//! # Fan-out
//!
//! [`LiveHub`] fans notices out to this process's sockets through a
//! `tokio::sync::broadcast` channel: publishing never waits for a socket, and a socket
//! that falls behind the channel skips to the latest head it missed. With Postgres
//! storage several server processes share one log, so [`PgFanout`] carries notices
//! between them: after an append commits, the sync endpoint hands the notice to the
//! [`Notifier`], which publishes it locally and queues a `pg_notify` on
//! [`PG_CHANNEL`]; every process `LISTEN`s on that channel and publishes what other
//! processes announced to its own hub. Notifications are lost while a LISTEN
//! connection is down, so after reconnecting the listener reads each known tenant's
//! head from storage and announces it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use crewsync_core::ids::JourneyId;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::scope::{Reach, Scope};
use crate::storage::Storage;

/// The Postgres notification channel change notices travel on between processes.
pub const PG_CHANNEL: &str = "crewsync_changes";

/// Postgres refuses NOTIFY payloads of 8000 bytes or more; above this, the journey
/// list is dropped and only the head is sent.
pub const MAX_NOTIFY_PAYLOAD: usize = 7_900;

/// A frame names at most this many journeys; more become "unknown" (empty).
pub const MAX_FRAME_JOURNEYS: usize = 256;

/// Notices the broadcast channel holds for a slow socket before it lags.
const BROADCAST_CAPACITY: usize = 1_024;

/// A socket that cannot take a frame within this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest message accepted from a device (it has nothing to say but pongs).
pub const MAX_INCOMING_MESSAGE: usize = 4 * 1024;

/// Read and write buffer per live socket: a few frames' worth.
pub const SOCKET_BUFFER: usize = 4 * 1024;

/// Most a slow device's unsent frames may hold before its socket errors.
pub const MAX_WRITE_BUFFER: usize = 64 * 1024;

/// Route label for live-channel metrics.
const ROUTE: &str = "/v1/live";

/// Connections the Postgres fan-out uses: one LISTEN, the rest for NOTIFY.
const PG_POOL_SIZE: u32 = 3;

/// Longest wait between attempts to re-establish a lost LISTEN connection.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);

/// What a device hears on its live socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveFrame {
    /// The tenant's log head.
    pub head: u64,
    /// Journeys with new changes; empty when not known.
    pub journeys: Vec<JourneyId>,
}

/// New changes are durable in `tenant`'s log up to `head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub tenant: String,
    pub head: u64,
    /// Journeys with new changes and who may hear of them; empty when not known
    /// (then every socket of the tenant hears of the head, without journey ids).
    pub journeys: Vec<Reach>,
}

impl Notice {
    /// Merges a later notice of the same tenant into this one (for one NOTIFY).
    fn absorb(&mut self, later: Notice) {
        self.head = self.head.max(later.head);
        if self.journeys.is_empty() || later.journeys.is_empty() {
            // Either does not know its journeys: neither does the merge.
            self.journeys.clear();
            return;
        }
        for reach in later.journeys {
            match self
                .journeys
                .iter_mut()
                .find(|r| r.journey == reach.journey)
            {
                Some(known) => {
                    known.crew.extend(reach.crew);
                    known.crew.sort();
                    known.crew.dedup();
                }
                None => self.journeys.push(reach),
            }
        }
        if self.journeys.len() > MAX_FRAME_JOURNEYS {
            self.journeys.clear();
        }
    }
}

/// Where a notice came from (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An append on this process.
    Local,
    /// Another process, through Postgres LISTEN/NOTIFY.
    Postgres,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("postgres live channel: {0}")]
    Postgres(String),
}

/// Notices merged while a socket (or the NOTIFY sender) was busy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Merged {
    head: u64,
    /// `None`: not known which journeys changed.
    journeys: Option<BTreeSet<JourneyId>>,
}

impl Merged {
    /// What `notice` says to a socket whose user sees `scope`; `None` when it
    /// names journeys and none of them concern the socket.
    fn of(notice: &Notice, scope: &Scope) -> Option<Self> {
        if notice.journeys.is_empty() {
            return Some(Self::unknown(notice.head));
        }
        let journeys: BTreeSet<JourneyId> = notice
            .journeys
            .iter()
            .filter(|reach| scope.hears_of(reach))
            .map(|reach| reach.journey)
            .collect();
        (!journeys.is_empty()).then_some(Self {
            head: notice.head,
            journeys: Some(journeys),
        })
    }

    fn unknown(head: u64) -> Self {
        Self {
            head,
            journeys: None,
        }
    }

    fn merge(&mut self, other: Merged) {
        self.head = self.head.max(other.head);
        self.journeys = match (self.journeys.take(), other.journeys) {
            (Some(mut mine), Some(theirs)) => {
                mine.extend(theirs);
                (mine.len() <= MAX_FRAME_JOURNEYS).then_some(mine)
            }
            _ => None,
        };
    }

    fn merge_into(slot: &mut Option<Merged>, other: Merged) {
        match slot {
            Some(merged) => merged.merge(other),
            None => *slot = Some(other),
        }
    }

    fn journeys(self) -> Vec<JourneyId> {
        self.journeys.map(Vec::from_iter).unwrap_or_default()
    }
}

/// In-process fan-out of change notices to this server's live sockets.
#[derive(Debug)]
pub struct LiveHub {
    notices: broadcast::Sender<Arc<Notice>>,
    /// The highest head heard per tenant (from any source).
    latest: Mutex<HashMap<String, u64>>,
    connections: watch::Sender<usize>,
    closing: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    ping_every: Duration,
}

impl LiveHub {
    pub fn new(metrics: Arc<Metrics>, ping_every: Duration) -> Arc<Self> {
        let (notices, _) = broadcast::channel(BROADCAST_CAPACITY);
        Arc::new(Self {
            notices,
            latest: Mutex::new(HashMap::new()),
            connections: watch::Sender::new(0),
            closing: watch::Sender::new(false),
            metrics,
            ping_every: ping_every.max(Duration::from_millis(10)),
        })
    }

    /// Hands a notice to every socket of this process; never waits for one.
    pub fn publish(&self, notice: Notice, source: Source) {
        self.observe(&notice.tenant, notice.head);
        self.metrics
            .live_notices
            .with_label_values(&[source.label()])
            .inc();
        // An error only means no socket is listening right now.
        let _ = self.notices.send(Arc::new(notice));
    }

    /// The highest head heard for `tenant` (0 if none yet).
    pub fn latest(&self, tenant: &str) -> u64 {
        self.lock_latest().get(tenant).copied().unwrap_or(0)
    }

    /// Tenants this hub has heard of (from notices or connecting sockets).
    pub fn tenants(&self) -> Vec<String> {
        self.lock_latest().keys().cloned().collect()
    }

    fn observe(&self, tenant: &str, head: u64) {
        let mut latest = self.lock_latest();
        match latest.get_mut(tenant) {
            Some(known) => *known = (*known).max(head),
            None => {
                latest.insert(tenant.to_owned(), head);
            }
        }
    }

    fn lock_latest(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        // The map stays consistent whatever panicked while holding it.
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open live sockets on this process.
    pub fn connections(&self) -> usize {
        *self.connections.borrow()
    }

    /// Closes every socket (close frame 1001) and refuses new ones: for shutdown.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Waits until every socket has closed, at most `grace`; whether they all did.
    pub async fn wait_closed(&self, grace: Duration) -> bool {
        let mut connections = self.connections.subscribe();
        tokio::time::timeout(grace, connections.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn connect(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.send_modify(|n| *n += 1);
        self.metrics.live_connections.inc();
        ConnectionGuard {
            hub: Arc::clone(self),
        }
    }
}

/// Counts one open socket for as long as it lives.
struct ConnectionGuard {
    hub: Arc<LiveHub>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.hub
            .connections
            .send_modify(|n| *n = n.saturating_sub(1));
        self.hub.metrics.live_connections.dec();
    }
}

/// What the sync endpoint tells after an append that added changes.
#[derive(Debug, Clone)]
pub struct Notifier {
    hub: Arc<LiveHub>,
    remote: Option<mpsc::UnboundedSender<Notice>>,
}

impl Notifier {
    /// Only this process's sockets (embedded SQLite or memory storage).
    pub fn local(hub: Arc<LiveHub>) -> Self {
        Self { hub, remote: None }
    }

    /// The hub this notifier publishes to.
    pub fn hub(&self) -> &Arc<LiveHub> {
        &self.hub
    }

    /// Changes are durable up to `notice.head`: tell this process's sockets now and,
    /// with Postgres, every other process (queued; the caller never waits on it).
    pub fn committed(&self, notice: Notice) {
        if let Some(remote) = &self.remote
            && remote.send(notice.clone()).is_err()
        {
            tracing::warn!("live: the Postgres notifier has stopped; other servers miss a notice");
        }
        self.hub.publish(notice, Source::Local);
    }
}

/// Serves one device's live socket until it closes, falls silent, or the server
/// shuts down. Sends the current head first.
pub async fn serve_socket(
    mut socket: WebSocket,
    hub: Arc<LiveHub>,
    storage: Arc<dyn Storage>,
    tenant: String,
    scope: Scope,
) {
    let _connected = hub.connect();
    if hub.is_closing() {
        close(&mut socket, close_code::AWAY, "server shutting down").await;
        return;
    }
    // Subscribe before reading the head: nothing committed after the read is missed.
    let mut notices = hub.notices.subscribe();
    let mut closing = hub.closing.subscribe();
    let head = match storage.head(&tenant).await {
        Ok(head) => head,
        Err(e) => {
            tracing::warn!(error = %e, "live: cannot read the log head");
            close(&mut socket, close_code::ERROR, "storage unavailable").await;
            return;
        }
    };
    hub.observe(&tenant, head);
    let mut told = head;
    let first = LiveFrame {
        head,
        journeys: Vec::new(),
    };
    if !send_frame(&mut socket, &hub.metrics, &first).await {
        return;
    }
    let ping_every = hub.ping_every;
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            () = closed(&mut closing) => {
                close(&mut socket, close_code::AWAY, "server shutting down").await;
                return;
            }
            received = notices.recv() => {
                let mut pending = None;
                if !take_notice(received, &tenant, &scope, &hub, &mut pending) {
                    return;
                }
                // Merge whatever else is already queued: a busy socket gets one frame.
                loop {
                    match notices.try_recv() {
                        Err(broadcast::error::TryRecvError::Empty) => break,
                        Err(broadcast::error::TryRecvError::Closed) => return,
                        Err(broadcast::error::TryRecvError::Lagged(_)) => Merged::merge_into(
                            &mut pending,
                            Merged::unknown(hub.latest(&tenant)),
                        ),
                        Ok(notice) => {
                            if notice.tenant == tenant
                                && let Some(merged) = Merged::of(&notice, &scope)
                            {
                                Merged::merge_into(&mut pending, merged);
                            }
                        }
                    }
                }
                if let Some(merged) = pending.filter(|m| m.head > told) {
                    told = merged.head;
                    let frame = LiveFrame { head: merged.head, journeys: merged.journeys() };
                    if !send_frame(&mut socket, &hub.metrics, &frame).await {
                        return;
                    }
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > ping_every * 2 {
                    tracing::debug!("live: socket silent for two ping intervals; closing");
                    close(&mut socket, close_code::AWAY, "ping timeout").await;
                    return;
                }
                let sent = tokio::time::timeout(
                    SEND_TIMEOUT,
                    socket.send(Message::Ping(Default::default())),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    return;
                }
            }
        }
    }
}

/// Folds one broadcast result into `pending`; false when the hub is gone.
fn take_notice(
    received: Result<Arc<Notice>, broadcast::error::RecvError>,
    tenant: &str,
    scope: &Scope,
    hub: &LiveHub,
    pending: &mut Option<Merged>,
) -> bool {
    match received {
        Ok(notice) => {
            if notice.tenant == tenant
                && let Some(merged) = Merged::of(&notice, scope)
            {
                Merged::merge_into(pending, merged);
            }
            true
        }
        Err(broadcast::error::RecvError::Lagged(skipped)) => {
            tracing::debug!(
                skipped,
                "live: slow socket skipped notices; sending the latest head"
            );
            Merged::merge_into(pending, Merged::unknown(hub.latest(tenant)));
            true
        }
        Err(broadcast::error::RecvError::Closed) => false,
    }
}

/// Sends one frame, bounded in time; false when the socket is unusable.
async fn send_frame(socket: &mut WebSocket, metrics: &Metrics, frame: &LiveFrame) -> bool {
    let text = match serde_json::to_string(frame) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "live: cannot encode a frame");
            return false;
        }
    };
    let bytes = text.len() as u64;
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::text(text))).await {
        Ok(Ok(())) => {
            metrics.live_frames_sent.inc();
            metrics.bytes_sent.with_label_values(&[ROUTE]).inc_by(bytes);
            true
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "live: socket closed while sending");
            false
        }
        Err(_) => {
            tracing::info!("live: socket too slow to take a frame; dropping it");
            false
        }
    }
}

/// Completes once the hub is closing (or gone).
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(frame)).await;
}

/// A NOTIFY payload on [`PG_CHANNEL`].
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    /// The process that sent it (it ignores its own).
    origin: Uuid,
    tenant: String,
    head: u64,
    #[serde(default)]
    journeys: Vec<Reach>,
}

/// The payload for `notice`, without the journeys if they would not fit.
fn payload(origin: Uuid, notice: &Notice) -> Result<String, serde_json::Error> {
    let mut payload = Payload {
        origin,
        tenant: notice.tenant.clone(),
        head: notice.head,
        journeys: notice.journeys.clone(),
    };
    let text = serde_json::to_string(&payload)?;
    if text.len() <= MAX_NOTIFY_PAYLOAD {
        return Ok(text);
    }
    payload.journeys.clear();
    serde_json::to_string(&payload)
}

/// Carries notices between server processes sharing one Postgres database.
#[derive(Debug)]
pub struct PgFanout {
    origin: Uuid,
    pool: PgPool,
    notifier: Notifier,
    tasks: Vec<JoinHandle<()>>,
}

impl PgFanout {
    /// Connects a small pool of its own (one LISTEN connection, the rest for
    /// NOTIFY), starts listening, and publishes other processes' notices to `hub`.
    /// `storage` is read to catch up after a lost LISTEN connection.
    pub async fn start(
        url: &str,
        hub: Arc<LiveHub>,
        storage: Arc<dyn Storage>,
    ) -> Result<Self, LiveError> {
        // The URL may carry a password: never echo it.
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| LiveError::Postgres(format!("invalid connection URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(PG_POOL_SIZE)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.application_name("crewsync-server-live"))
            .await
            .map_err(|e| LiveError::Postgres(format!("connect: {e}")))?;
        let listener = listen(&pool).await?;
        let origin = Uuid::new_v4();
        let (sender, queue) = mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(send_notices(pool.clone(), queue, origin)),
            tokio::spawn(receive_notices(
                listener,
                pool.clone(),
                Arc::clone(&hub),
                storage,
                origin,
            )),
        ];
        tracing::info!(
            channel = PG_CHANNEL,
            "live: listening for other servers' changes"
        );
        Ok(Self {
            origin,
            pool,
            notifier: Notifier {
                hub,
                remote: Some(sender),
            },
            tasks,
        })
    }

    /// The notifier that publishes locally and to every other process.
    pub fn notifier(&self) -> Notifier {
        self.notifier.clone()
    }

    /// This process's id in payloads.
    pub fn origin(&self) -> Uuid {
        self.origin
    }

    /// Stops listening and closes the pool.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.pool.close().await;
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, LiveError> {
    let mut listener = PgListener::connect_with(pool)
        .await
        .map_err(|e| LiveError::Postgres(format!("LISTEN connection: {e}")))?;
    listener
        .listen(PG_CHANNEL)
        .await
        .map_err(|e| LiveError::Postgres(format!("LISTEN {PG_CHANNEL}: {e}")))?;
    Ok(listener)
}

/// Sends queued notices with `pg_notify`, merging what piled up per tenant.
async fn send_notices(pool: PgPool, mut queue: mpsc::UnboundedReceiver<Notice>, origin: Uuid) {
    while let Some(first) = queue.recv().await {
        let mut batch: BTreeMap<String, Notice> = BTreeMap::new();
        let mut add = |notice: Notice| match batch.get_mut(&notice.tenant) {
            Some(queued) => queued.absorb(notice),
            None => {
                batch.insert(notice.tenant.clone(), notice);
            }
        };
        add(first);
        while let Ok(notice) = queue.try_recv() {
            add(notice);
        }
        for notice in batch.into_values() {
            let text = match payload(origin, &notice) {
                Ok(text) => text,
                Err(e) => {
                    tracing::error!(error = %e, "live: cannot encode a notice");
                    continue;
                }
            };
            let sent = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(PG_CHANNEL)
                .bind(text)
                .execute(&pool)
                .await;
            if let Err(e) = sent {
                tracing::warn!(error = %e, "live: NOTIFY failed; other servers miss a notice");
            }
        }
    }
}

/// Publishes other processes' notices to `hub`; re-listens after failures and
/// then announces each known tenant's head, since notices sent meanwhile are lost.
async fn receive_notices(
    mut listener: PgListener,
    pool: PgPool,
    hub: Arc<LiveHub>,
    storage: Arc<dyn Storage>,
    origin: Uuid,
) {
    let mut closing = hub.closing.subscribe();
    let mut failures = 0u32;
    loop {
        let next = tokio::select! {
            () = closed(&mut closing) => return,
            next = listener.try_recv() => next,
        };
        match next {
            Ok(Some(notification)) => {
                match serde_json::from_str::<Payload>(notification.payload()) {
                    Ok(payload) if payload.origin == origin => {}
                    Ok(payload) => hub.publish(
                        Notice {
                            tenant: payload.tenant,
                            head: payload.head,
                            journeys: payload.journeys,
                        },
                        Source::Postgres,
                    ),
                    Err(e) => tracing::warn!(error = %e, "live: unreadable notice ignored"),
                }
            }
            Ok(None) => {
                tracing::warn!("live: LISTEN connection lost and re-established; catching up");
                catch_up(&hub, &storage).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "live: LISTEN failed; reconnecting");
                loop {
                    failures = failures.saturating_add(1);
                    let delay = Duration::from_millis(250)
                        .saturating_mul(2u32.saturating_pow(failures.min(8)))
                        .min(MAX_RECONNECT_DELAY);
                    tokio::select! {
                        () = closed(&mut closing) => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    match listen(&pool).await {
                        Ok(fresh) => {
                            listener = fresh;
                            failures = 0;
                            catch_up(&hub, &storage).await;
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "live: still cannot LISTEN"),
                    }
                }
            }
        }
    }
}

/// Announces every known tenant's head that is above what the hub heard.
async fn catch_up(hub: &LiveHub, storage: &Arc<dyn Storage>) {
    for tenant in hub.tenants() {
        match storage.head(&tenant).await {
            Ok(head) if head > hub.latest(&tenant) => hub.publish(
                Notice {
                    tenant,
                    head,
                    journeys: Vec::new(),
                },
                Source::Postgres,
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "live: cannot read the head to catch up"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn reach(journey: JourneyId) -> Reach {
        Reach {
            journey,
            location: crewsync_core::ids::LocationId::new(),
            day: chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
            crew: vec![],
        }
    }

    fn notice(head: u64, journeys: Vec<JourneyId>) -> Notice {
        Notice {
            tenant: "t".into(),
            head,
            journeys: journeys.into_iter().map(reach).collect(),
        }
    }

    fn heard(notice: &Notice) -> Merged {
        Merged::of(notice, &Scope::Tenant).unwrap()
    }

    #[test]
    fn a_socket_hears_only_of_journeys_in_its_scope() {
        let (mover, other) = (
            crewsync_core::ids::UserId::new(),
            crewsync_core::ids::UserId::new(),
        );
        let mine = Reach {
            crew: vec![mover],
            ..reach(JourneyId::new())
        };
        let theirs = Reach {
            crew: vec![other],
            ..reach(JourneyId::new())
        };
        let day = mine.day;
        let crew = Scope::Crew {
            user: mover,
            from: day,
            to: day,
        };
        let both = Notice {
            tenant: "t".into(),
            head: 4,
            journeys: vec![mine.clone(), theirs.clone()],
        };
        let heard = Merged::of(&both, &crew).unwrap();
        assert_eq!(
            heard.journeys(),
            vec![mine.journey],
            "no other journey's id"
        );
        let only_theirs = Notice {
            journeys: vec![theirs.clone()],
            ..both.clone()
        };
        assert_eq!(Merged::of(&only_theirs, &crew), None);
        // Their location's dispatcher hears of it; another location's does not.
        assert!(Merged::of(&only_theirs, &Scope::Location(theirs.location)).is_some());
        assert!(Merged::of(&only_theirs, &Scope::Location(mine.location)).is_none());
        // Unknown journeys: everyone of the tenant hears of the head, without ids.
        let unknown = Notice {
            journeys: vec![],
            ..both
        };
        assert_eq!(Merged::of(&unknown, &crew), Some(Merged::unknown(4)));
    }

    #[test]
    fn merging_keeps_the_highest_head_and_all_journeys() {
        let (a, b) = (JourneyId::new(), JourneyId::new());
        let mut merged = heard(&notice(3, vec![a]));
        merged.merge(heard(&notice(2, vec![b, a])));
        assert_eq!(merged.head, 3);
        assert_eq!(merged.clone().journeys().len(), 2);
        merged.merge(Merged::unknown(5));
        assert_eq!(merged, Merged::unknown(5), "unknown journeys stay unknown");
    }

    #[test]
    fn too_many_journeys_become_unknown() {
        let mut merged = heard(&notice(1, vec![JourneyId::new()]));
        for _ in 0..MAX_FRAME_JOURNEYS {
            merged.merge(heard(&notice(1, vec![JourneyId::new()])));
        }
        assert!(merged.journeys().is_empty());
    }

    #[test]
    fn an_oversized_payload_falls_back_to_the_head() {
        let many: Vec<_> = (0..1_000).map(|_| JourneyId::new()).collect();
        let origin = Uuid::new_v4();
        let text = payload(origin, &notice(9, many)).unwrap();
        assert!(text.len() <= MAX_NOTIFY_PAYLOAD);
        let back: Payload = serde_json::from_str(&text).unwrap();
        assert_eq!((back.origin, back.head), (origin, 9));
        assert!(back.journeys.is_empty());
        let few = payload(origin, &notice(9, vec![JourneyId::new()])).unwrap();
        let back: Payload = serde_json::from_str(&few).unwrap();
        assert_eq!(back.journeys.len(), 1);
    }

    #[test]
    fn frames_are_small_json() {
        let id = JourneyId::new();
        let text = serde_json::to_string(&LiveFrame {
            head: 7,
            journeys: vec![id],
        })
        .unwrap();
        assert_eq!(text, format!(r#"{{"head":7,"journeys":["{id}"]}}"#));
    }
}
