//! The thin runtime around the sans-I/O engine: HTTP transport (reqwest), sync-now,
//! and a background loop with backoff, pause/resume and a clean stop (tokio).
//!
//! Store calls are blocking SQLite work, so they run on tokio's blocking pool and
//! never stall the reactor.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::auth::{Credentials, Me, RefreshRequest, SignInRequest, TokenResponse};
use super::engine::{self, ExchangeReport, Limits};
use super::upload::{self, UploadOutcome, UploadProgress};
use super::wire::{self, CONTENT_TYPE, SyncRequest, SyncResponse};
use crate::error::{Error, Result};
use crate::ids::{DeviceId, MediaId};
use crate::media::queue::{ItemState, QueueProgress, UploadItem as QueueItem, UploadKind};
use crate::model::Timestamp;
use crate::store::DeviceStore;

/// Exchanges per sync before giving up on draining (pages of `Limits::max_pull`).
const MAX_EXCHANGES_PER_SYNC: usize = 1_000;
/// Items one upload round visits at most; each is visited once per round anyway.
const MAX_UPLOADS_PER_ROUND: usize = 100_000;

/// What the app shows: connection, pending work, last outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStatus {
    pub connected: bool,
    pub syncing: bool,
    pub paused: bool,
    /// Listening on the server's live channel.
    pub live: bool,
    pub pending_changes: u64,
    pub last_success: Option<Timestamp>,
    pub last_error: Option<String>,
    /// The media queue: items and bytes pending, set aside; updated as the server
    /// acknowledges each chunk.
    pub media: QueueProgress,
    /// The media item being sent now.
    pub uploading: Option<MediaId>,
}

/// What one sync-now did, summed over its exchanges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    pub round_trips: usize,
    pub pushed: usize,
    pub acknowledged: usize,
    pub received: usize,
    pub applied_new: usize,
    pub pending: u64,
    /// The upload round that followed the document exchange.
    pub media: MediaOutcome,
}

/// What one upload round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaOutcome {
    /// Items the server confirmed complete.
    pub uploaded: u32,
    /// Bytes this round sent of the items it completed (a resumed item counts from
    /// the server's offset).
    pub bytes: u64,
    /// Items the server refused (each such attempt counted against the item).
    pub failed: u32,
    /// Items set aside this round: refused on their last attempt, or no longer
    /// recorded by their journey (the server refused the change that captured them).
    pub set_aside: u32,
    /// Items left for a later round because the server does not hold their
    /// journey entry yet (409 `entry_not_synced`); no attempt is counted.
    pub waiting_for_entry: u32,
    /// Items that went on from an offset the server already held.
    pub resumed: u32,
    /// Uploaded files deleted from the device after the round.
    pub purged: u32,
    /// The queue after the round.
    pub progress: QueueProgress,
}

/// How an upload attempt ended, for the queue.
enum Attempt {
    Done(UploadOutcome),
    /// The server refused the item: count it against the item, go on.
    Refused(String),
    /// 409 `entry_not_synced`: try again next round, nothing counted.
    EntryNotSynced,
    /// The link or the server is unwell: stop the round, the item keeps its place.
    Stop(Error),
}

/// Sorts an upload error into what the queue does with it.
fn classify(error: Error) -> Attempt {
    match error {
        Error::Upload {
            status: 409, code, ..
        } if code == "entry_not_synced" => Attempt::EntryNotSynced,
        // Rate limits and an unavailable server or gateway are nobody's fault
        // of the item's: wait, and keep its attempts.
        Error::Upload {
            status: 429 | 502 | 503 | 504,
            ..
        }
        | Error::Network(_)
        | Error::NetworkUnusable(_)
        | Error::Unauthorized(_)
        | Error::RateLimited { .. }
        | Error::Server { .. } => Attempt::Stop(error),
        // Any other refusal (too large, wrong type, a bad digest, an image the server
        // rejects, no right to the journey) or a local file that is not what its row
        // says: the item's own trouble.
        Error::Upload { .. } | Error::Io(_) | Error::InvalidInput(_) | Error::UnknownMedia(_) => {
            Attempt::Refused(error.to_string())
        }
        other => Attempt::Stop(other),
    }
}

/// The protocol's description of a queue item.
fn wire_item(item: &QueueItem) -> upload::UploadItem {
    upload::UploadItem {
        media_id: item.media_id,
        journey_id: item.journey_id,
        kind: match item.kind {
            UploadKind::Photo => upload::UploadKind::Photo,
            UploadKind::Video => upload::UploadKind::Video,
            UploadKind::Signature => upload::UploadKind::Signature,
            UploadKind::Thumbnail => upload::UploadKind::Thumbnail,
        },
        content_type: item.content_type.clone(),
        path: item.path.clone(),
        size: item.size,
        sha256: item.sha256.clone(),
    }
}

/// How long a 429 answer asks us to wait (`Retry-After` in seconds; the HTTP-date
/// form is not used by crewsync servers and reads as "not said").
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Maps an answer's status to the error it means: refused credentials, a rate
/// limit (with the wait the server asked for), or any other failure.
pub(crate) fn check_status(
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<()> {
    let text = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(Error::Unauthorized(text()));
    }
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(Error::RateLimited {
            retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
            message: text(),
        });
    }
    if !status.is_success() {
        return Err(Error::Server {
            status: status.as_u16(),
            message: text(),
        });
    }
    Ok(())
}

/// Backoff between failed attempts: exponential with full jitter, capped.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay before attempt `failures + 1`: uniform in [base/2, base], base doubling.
    pub fn delay(&self, failures: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(2u32.saturating_pow(failures.min(20)))
            .min(self.max);
        let half = base / 2;
        half + base
            .saturating_sub(half)
            .mul_f64(rand::rng().random::<f64>())
    }
}

/// Time limits for talking to the server. A black-holed link (an elevator, a
/// basement) drops no connection, so without limits an attempt would hang.
/// Owned and `Copy` so the app can pass it across FFI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConfig {
    /// Opening a TCP connection.
    pub connect_timeout: Duration,
    /// One whole exchange, request sent to response read, and a live-channel
    /// handshake: a stalled attempt fails after this long and is retried.
    pub request_timeout: Duration,
    /// A live socket that hears nothing (not even the server's pings, every
    /// `--live-ping-secs`) this long is dead and is reopened; 2–3 ping intervals.
    pub live_silence_timeout: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            // Three of the server's default 20 s ping intervals.
            live_silence_timeout: Duration::from_secs(60),
        }
    }
}

/// Talks to one server over HTTP, as the signed-in user of its [`Credentials`].
#[derive(Debug, Clone)]
pub struct HttpTransport {
    base_url: String,
    endpoint: String,
    client: reqwest::Client,
    request_timeout: Duration,
    /// The signed-in user's tokens; shared by clones, so a refresh by one is seen
    /// by all.
    tokens: Arc<Mutex<Option<TokenResponse>>>,
}

impl HttpTransport {
    /// `base_url` like `http://127.0.0.1:8080`, with the default [`SyncConfig`].
    pub fn new(base_url: &str) -> Result<Self> {
        Self::with_config(base_url, SyncConfig::default())
    }

    pub fn with_config(base_url: &str, config: SyncConfig) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| Error::Network(format!("cannot build HTTP client: {e}")))?;
        let base_url = base_url.trim_end_matches('/').to_owned();
        Ok(Self {
            endpoint: format!("{base_url}/v1/sync"),
            base_url,
            client,
            request_timeout: config.request_timeout,
            tokens: Arc::new(Mutex::new(None)),
        })
    }

    /// The server's base URL (`http://host:port`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The tokens in use (after the last sign-in or refresh).
    pub fn tokens(&self) -> Option<TokenResponse> {
        self.lock_tokens().clone()
    }

    pub fn credentials(&self) -> Option<Credentials> {
        self.lock_tokens().as_ref().map(Credentials::from)
    }

    /// Uses these tokens from now on (`None`: signed out).
    pub fn set_tokens(&self, tokens: Option<TokenResponse>) {
        *self.lock_tokens() = tokens;
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, Option<TokenResponse>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Signs `email` in on `device`; the tokens are used from now on.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        device: DeviceId,
    ) -> Result<TokenResponse> {
        let request = SignInRequest {
            email: email.to_owned(),
            password: password.to_owned(),
            device_id: device,
        };
        let tokens: TokenResponse = self.post_json("/v1/auth/sign-in", &request).await?;
        self.set_tokens(Some(tokens.clone()));
        Ok(tokens)
    }

    /// `GET /v1/me`: who the tokens belong to, and the tenant's permission table.
    pub async fn me(&self) -> Result<Me> {
        let Some(current) = self.credentials() else {
            return Err(Error::Unauthorized("no credentials: sign in first".into()));
        };
        let response = self
            .client
            .get(format!("{}/v1/me", self.base_url))
            .bearer_auth(&current.access_token)
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        let (status, retry_after) = (response.status(), retry_after(&response));
        let body = response.bytes().await.map_err(|e| self.network_error(e))?;
        check_status(status, retry_after, &body)?;
        serde_json::from_slice(&body)
            .map_err(|e| Error::NetworkUnusable(format!("unreadable answer from /v1/me: {e}")))
    }

    /// Trades the refresh token for new tokens (the old one is then spent).
    pub async fn refresh(&self) -> Result<TokenResponse> {
        let Some(current) = self.credentials() else {
            return Err(Error::Unauthorized("no credentials: sign in first".into()));
        };
        let request = RefreshRequest {
            refresh_token: current.refresh_token,
        };
        let tokens: TokenResponse = self.post_json("/v1/auth/refresh", &request).await?;
        self.set_tokens(Some(tokens.clone()));
        Ok(tokens)
    }

    /// `POST /v1/auth/sign-out`: ends the tokens' session on the server (its refresh
    /// token too).
    pub async fn sign_out(&self) -> Result<()> {
        let Some(current) = self.credentials() else {
            return Err(Error::Unauthorized("no credentials: sign in first".into()));
        };
        let response = self
            .client
            .post(format!("{}/v1/auth/sign-out", self.base_url))
            .bearer_auth(&current.access_token)
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        let (status, retry_after) = (response.status(), retry_after(&response));
        let body = response.bytes().await.map_err(|e| self.network_error(e))?;
        check_status(status, retry_after, &body)
    }

    async fn post_json<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        request: &Q,
    ) -> Result<A> {
        let response = self
            .client
            .post(format!("{}{path}", self.base_url))
            .json(request)
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        let (status, retry_after) = (response.status(), retry_after(&response));
        let body = response.bytes().await.map_err(|e| self.network_error(e))?;
        check_status(status, retry_after, &body)?;
        serde_json::from_slice(&body)
            .map_err(|e| Error::NetworkUnusable(format!("unreadable answer from {path}: {e}")))
    }

    /// One exchange as the signed-in user. An expired access token is refreshed
    /// once and the exchange repeated; anything the server refuses after that is
    /// [`Error::Unauthorized`] and leaves the queue as it was.
    pub async fn exchange(&self, request: &SyncRequest) -> Result<SyncResponse> {
        if self.credentials().is_none() {
            return Err(Error::Unauthorized("not signed in".into()));
        }
        match self.exchange_once(request).await {
            Err(Error::Unauthorized(reason)) if self.credentials().is_some() => {
                tracing::debug!(%reason, "sync refused; refreshing the access token");
                self.refresh().await?;
                self.exchange_once(request).await
            }
            other => other,
        }
    }

    /// One request/response. Anything but a sync response — a captive portal's HTML
    /// page with 200, a proxy error — is "network unusable" and changes nothing.
    async fn exchange_once(&self, request: &SyncRequest) -> Result<SyncResponse> {
        let mut post = self
            .client
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE);
        if let Some(credentials) = self.credentials() {
            post = post.bearer_auth(credentials.access_token);
        }
        let response = post
            .body(wire::encode(request))
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        let (status, retry_after) = (response.status(), retry_after(&response));
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.bytes().await.map_err(|e| self.network_error(e))?;
        check_status(status, retry_after, &body)?;
        if content_type != CONTENT_TYPE {
            return Err(Error::NetworkUnusable(format!(
                "expected a sync response, got {status} with content type {content_type:?} \
                 (a captive portal or proxy?)"
            )));
        }
        wire::decode_response(&body)
            .map_err(|e| Error::NetworkUnusable(format!("unreadable sync response: {e}")))
    }

    /// reqwest's message for a timeout does not say it timed out; the status should.
    fn network_error(&self, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            Error::Network(format!(
                "no answer within {:?} (stalled link?): {e}",
                self.request_timeout
            ))
        } else {
            Error::Network(e.to_string())
        }
    }
}

/// Syncs one device store with one server, now or in the background.
pub struct SyncClient {
    store: Arc<DeviceStore>,
    transport: HttpTransport,
    config: SyncConfig,
    peer: String,
    limits: Limits,
    status: watch::Sender<SyncStatus>,
    wake: Notify,
    /// One document exchange at a time.
    lock: tokio::sync::Mutex<()>,
    /// One upload round at a time (apart from `lock`, so a long upload does not hold
    /// up an app's document sync).
    upload_lock: tokio::sync::Mutex<()>,
    worker: Mutex<Option<(watch::Sender<bool>, JoinHandle<()>)>>,
}

impl SyncClient {
    /// With the default [`SyncConfig`].
    pub fn new(store: Arc<DeviceStore>, base_url: &str) -> Result<Arc<Self>> {
        Self::with_config(store, base_url, SyncConfig::default())
    }

    pub fn with_config(
        store: Arc<DeviceStore>,
        base_url: &str,
        config: SyncConfig,
    ) -> Result<Arc<Self>> {
        let pending = store.outbox_len()?;
        let (status, _) = watch::channel(SyncStatus {
            pending_changes: pending,
            media: store.media_progress()?,
            ..SyncStatus::default()
        });
        let transport = HttpTransport::with_config(base_url, config)?;
        // The active user's saved sign-in, unless the server already refused it.
        if let Some(user) = store.active_user()?
            && let Some(account) = store.account(user.user_id)?.filter(|a| !a.needs_sign_in)
        {
            transport.set_tokens(Some(account.tokens()?));
        }
        Ok(Arc::new(Self {
            store,
            transport,
            config,
            peer: base_url.trim_end_matches('/').to_owned(),
            limits: Limits::default(),
            status,
            wake: Notify::new(),
            lock: tokio::sync::Mutex::new(()),
            upload_lock: tokio::sync::Mutex::new(()),
            worker: Mutex::new(None),
        }))
    }

    /// Signs `email` in on this device and makes them the active user. The tokens
    /// are saved, so the device keeps syncing as them after a restart.
    pub async fn sign_in(&self, email: &str, password: &str) -> Result<TokenResponse> {
        let tokens = self
            .transport
            .sign_in(email, password, self.store.device_id())
            .await?;
        self.adopt(tokens.clone(), true).await?;
        Ok(tokens)
    }

    /// Syncs with tokens obtained elsewhere (e.g. an app's own sign-in screen).
    pub async fn use_tokens(&self, tokens: TokenResponse) -> Result<()> {
        self.transport.set_tokens(Some(tokens.clone()));
        self.adopt(tokens, true).await
    }

    async fn adopt(&self, tokens: TokenResponse, activate: bool) -> Result<()> {
        let user = tokens.user.id;
        let store = Arc::clone(&self.store);
        run_blocking(move || store.save_sign_in(&tokens, activate)).await?;
        // The tenant's permission table, so the device refuses exactly what the
        // server would. Without it the device judges by the default table; a
        // later sign-in fetches it again.
        match self.transport.me().await {
            Ok(me) => {
                let store = Arc::clone(&self.store);
                run_blocking(move || store.set_account_permissions(user, &me.permissions)).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the permission table; using the defaults");
                Ok(())
            }
        }
    }

    /// Signs the active user out: ends their session on the server if it answers (an
    /// expired access token is refreshed once first), then forgets their tokens and
    /// clears the active user whatever the server said. Their queued changes stay
    /// under their name for their next sign-in. Returns whether the server confirmed;
    /// offline, the session ends when its refresh token expires.
    pub async fn sign_out(&self) -> Result<bool> {
        let confirmed = match self.transport.sign_out().await {
            Err(Error::Unauthorized(_)) if self.transport.credentials().is_some() => {
                self.transport.refresh().await.is_ok() && self.transport.sign_out().await.is_ok()
            }
            answer => answer.is_ok(),
        };
        self.transport.set_tokens(None);
        let store = Arc::clone(&self.store);
        run_blocking(move || {
            if let Some(user) = store.active_user()? {
                store.forget_account(user.user_id)?;
            }
            store.set_active_user(None)
        })
        .await?;
        Ok(confirmed)
    }

    /// The tokens in use.
    pub fn tokens(&self) -> Option<TokenResponse> {
        self.transport.tokens()
    }

    /// Watch the status: the current value first, then every change.
    pub fn status(&self) -> watch::Receiver<SyncStatus> {
        self.status.subscribe()
    }

    /// Syncs until nothing is pending or the server has nothing more, then uploads
    /// the media queue ([`upload_media`](Self::upload_media)): after the exchange,
    /// so every entry is on the server before its bytes. When the round moved the
    /// queue, one more exchange tells the server (and so the dispatcher) what is
    /// left. Outbox rows are cleared only by the server's acknowledgements.
    pub async fn sync_now(&self) -> Result<SyncOutcome> {
        self.status.send_modify(|s| s.syncing = true);
        let result = self.sync_and_upload().await;
        let pending = self.store.outbox_len().unwrap_or_default();
        let media = self.store.media_progress().unwrap_or_default();
        self.status.send_modify(|s| {
            s.syncing = false;
            s.pending_changes = pending;
            s.media = media;
            s.uploading = None;
            match &result {
                Ok(_) => {
                    s.connected = true;
                    s.last_success = Some(Timestamp::now());
                    s.last_error = None;
                }
                Err(e) => {
                    s.connected = false;
                    s.last_error = Some(e.to_string());
                }
            }
        });
        if let Err(e) = &result {
            let store = Arc::clone(&self.store);
            let (peer, message) = (self.peer.clone(), e.to_string());
            let _ = run_blocking(move || store.record_sync(&peer, 0, Some(&message))).await;
        }
        result
    }

    async fn sync_and_upload(&self) -> Result<SyncOutcome> {
        let mut outcome = self.exchange_all().await?;
        let media = {
            let _one_at_a_time = self.upload_lock.lock().await;
            self.upload_round().await?
        };
        if media.uploaded + media.failed > 0 {
            let report = self.exchange_all().await?;
            outcome.round_trips += report.round_trips;
            outcome.pushed += report.pushed;
            outcome.acknowledged += report.acknowledged;
            outcome.received += report.received;
            outcome.applied_new += report.applied_new;
            outcome.pending = report.pending;
        }
        outcome.media = media;
        Ok(outcome)
    }

    async fn exchange_all(&self) -> Result<SyncOutcome> {
        let _one_at_a_time = self.lock.lock().await;
        self.drain().await
    }

    /// Uploads the media queue's items allowed on the store's network
    /// ([`DeviceStore::set_network`]), in queue order: signatures, then thumbnails,
    /// then originals smallest first. Each resumes from the server's offset, and
    /// each acknowledged chunk is recorded, so a killed app loses at most a chunk.
    /// A refused item is counted against (and after its last attempt set aside);
    /// the rest go on. An item whose entry the server does not hold yet waits for
    /// the next round. A network error ends the round with that error: the item
    /// keeps its place and the caller backs off. Uploaded files are then purged
    /// (the server confirmed them). [`sync_now`](Self::sync_now) calls this after
    /// its exchange; call it alone only when the entries are known to be synced.
    pub async fn upload_media(&self) -> Result<MediaOutcome> {
        let _one_at_a_time = self.upload_lock.lock().await;
        let result = self.upload_round().await;
        let media = self.store.media_progress().unwrap_or_default();
        self.status.send_modify(|s| {
            s.media = media;
            s.uploading = None;
            if let Err(e) = &result {
                s.last_error = Some(e.to_string());
            }
        });
        result
    }

    async fn upload_round(&self) -> Result<MediaOutcome> {
        let mut outcome = MediaOutcome::default();
        let mut tried: Vec<String> = Vec::new();
        let mut refreshed = false;
        let mut stop = None;
        for _ in 0..MAX_UPLOADS_PER_ROUND {
            let (store, skip) = (Arc::clone(&self.store), tried.clone());
            let next = run_blocking(move || {
                let network = store.network()?;
                store.next_item_except(network, Timestamp::now(), &skip)
            })
            .await?;
            let Some(item) = next else {
                break;
            };
            let media_id = item.media_id;
            self.status.send_modify(|s| s.uploading = Some(media_id));
            let mut attempt = self.attempt(&item).await;
            if matches!(&attempt, Attempt::Stop(Error::Unauthorized(_))) && !refreshed {
                // An access token that expired mid-round: refresh once, try again.
                refreshed = true;
                let before = self.transport.credentials();
                let refresh = self.transport.refresh().await;
                self.keep_refreshed_tokens(before, &refresh).await?;
                attempt = match refresh {
                    Ok(_) => self.attempt(&item).await,
                    Err(e) => Attempt::Stop(e),
                };
            }
            if !matches!(attempt, Attempt::Done(_)) {
                // Done items leave the pending set by themselves; the rest must not
                // come back in this round (backoff may be zero).
                tried.push(item.item_id.clone());
            }
            match attempt {
                Attempt::Done(done) => {
                    let id = item.item_id.clone();
                    let store = Arc::clone(&self.store);
                    run_blocking(move || store.mark_done(&id)).await?;
                    outcome.uploaded += 1;
                    outcome.bytes += item.size.saturating_sub(done.resumed_from);
                    if done.resumed_from > 0 {
                        outcome.resumed += 1;
                    }
                }
                Attempt::Refused(reason) => {
                    tracing::warn!(item = %item.item_id, media = %media_id, %reason, "upload refused");
                    let (id, store) = (item.item_id.clone(), Arc::clone(&self.store));
                    let state = run_blocking(move || store.mark_failed(&id, &reason)).await?;
                    outcome.failed += 1;
                    if state == ItemState::SetAside {
                        outcome.set_aside += 1;
                    }
                }
                Attempt::EntryNotSynced => {
                    // Waiting is right while the entry is on its way; an entry the
                    // server refused never arrives, so that item is set aside.
                    let (id, store) = (item.item_id.clone(), Arc::clone(&self.store));
                    if run_blocking(move || store.set_aside_if_unrecorded(&id)).await? {
                        outcome.set_aside += 1;
                    } else {
                        outcome.waiting_for_entry += 1;
                    }
                }
                Attempt::Stop(error) => {
                    if refreshed && matches!(error, Error::Unauthorized(_)) {
                        // Refused with fresh tokens too: mark the account "sign in
                        // again", as a refused exchange does.
                        let refused: Result<()> = Err(Error::Unauthorized(String::new()));
                        self.keep_refreshed_tokens(self.transport.credentials(), &refused)
                            .await?;
                    }
                    stop = Some(error);
                    break;
                }
            }
            let store = Arc::clone(&self.store);
            let progress = run_blocking(move || store.media_progress()).await?;
            self.status.send_modify(|s| {
                s.media = progress;
                s.uploading = None;
            });
        }
        // Confirmed files may go now: the server holds them (`purge_uploaded` deletes
        // only rows marked done, i.e. confirmed complete).
        let store = Arc::clone(&self.store);
        let (purged, progress) =
            run_blocking(move || Ok((store.purge_uploaded()?, store.media_progress()?))).await?;
        outcome.purged = u32::try_from(purged).unwrap_or(u32::MAX);
        outcome.progress = progress;
        self.status.send_modify(|s| {
            s.media = progress;
            s.uploading = None;
        });
        match stop {
            Some(error) => Err(error),
            None => Ok(outcome),
        }
    }

    /// One upload call for `item`, recording each acknowledged chunk in the queue
    /// and the status as it goes.
    async fn attempt(&self, item: &QueueItem) -> Attempt {
        let Some(credentials) = self.transport.credentials() else {
            return Attempt::Stop(Error::Unauthorized("not signed in".into()));
        };
        let wire = wire_item(item);
        let (acked_tx, mut acked) = watch::channel(0u64);
        let on_chunk = move |p: UploadProgress| {
            acked_tx.send_replace(p.acked);
        };
        let sending = upload::upload(
            &self.transport.client,
            &self.transport.base_url,
            &credentials.access_token,
            &wire,
            &on_chunk,
        );
        tokio::pin!(sending);
        let result = loop {
            tokio::select! {
                result = &mut sending => break result,
                Ok(()) = acked.changed() => {
                    let sent = *acked.borrow_and_update();
                    self.record_progress(&item.item_id, sent).await;
                }
            }
        };
        if acked.has_changed().unwrap_or(false) {
            let sent = *acked.borrow_and_update();
            self.record_progress(&item.item_id, sent).await;
        }
        match result {
            Ok(done) => Attempt::Done(done),
            Err(e) => classify(e),
        }
    }

    /// Records that the server holds `sent` bytes of an item, and tells the app.
    async fn record_progress(&self, item_id: &str, sent: u64) {
        let (store, id) = (Arc::clone(&self.store), item_id.to_owned());
        let recorded = run_blocking(move || {
            store.mark_progress(&id, sent)?;
            store.media_progress()
        })
        .await;
        match recorded {
            Ok(progress) => self.status.send_modify(|s| s.media = progress),
            // A hint only (the server owns the offset): the upload goes on.
            Err(e) => tracing::warn!(error = %e, "cannot record upload progress"),
        }
    }

    async fn drain(&self) -> Result<SyncOutcome> {
        let mut outcome = SyncOutcome::default();
        for _ in 0..MAX_EXCHANGES_PER_SYNC {
            let (store, peer, limits) = (Arc::clone(&self.store), self.peer.clone(), self.limits);
            let request = run_blocking(move || engine::prepare(&store, &peer, limits)).await?;
            let before = self.transport.credentials();
            let exchanged = self.transport.exchange(&request).await;
            self.keep_refreshed_tokens(before, &exchanged).await?;
            let response = exchanged?;
            let (store, peer) = (Arc::clone(&self.store), self.peer.clone());
            let report: ExchangeReport =
                run_blocking(move || engine::absorb(&store, &peer, &request, response)).await?;
            outcome.round_trips += 1;
            outcome.pushed += report.pushed;
            outcome.acknowledged += report.acknowledged;
            outcome.received += report.received;
            outcome.applied_new += report.applied_new;
            outcome.pending = report.pending;
            let pushed_everything = report.pushed == 0 || report.acknowledged + report.refused > 0;
            if !report.more && (report.pending == 0 || !pushed_everything) {
                return Ok(outcome);
            }
        }
        Ok(outcome)
    }

    /// Saves tokens a refresh rotated during an exchange (the old refresh token is
    /// spent: losing the new one would sign the device out), and marks the account
    /// when the server refused it.
    async fn keep_refreshed_tokens<T>(
        &self,
        before: Option<Credentials>,
        exchanged: &Result<T>,
    ) -> Result<()> {
        let after = self.transport.tokens();
        if after.as_ref().map(Credentials::from) != before
            && let Some(tokens) = after.clone()
        {
            self.adopt(tokens, false).await?;
        }
        if let (Err(Error::Unauthorized(_)), Some(tokens)) = (exchanged, after) {
            let store = Arc::clone(&self.store);
            run_blocking(move || store.mark_needs_sign_in(tokens.user.id)).await?;
            // Refused tokens are not tried again: the loop waits for a new sign-in
            // instead of asking the server to refuse them over and over.
            self.transport.set_tokens(None);
        }
        Ok(())
    }

    /// Starts the background work (idempotent): the sync loop — sync, then wait for
    /// `interval`, a [`wake`](Self::wake) or a failure's backoff — and a listener on the
    /// server's live channel that wakes the loop when changes past our cursor commit.
    /// Must be called inside a tokio runtime.
    pub fn start(self: &Arc<Self>, interval: Duration, backoff: Backoff) {
        let mut worker = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        if worker.is_some() {
            return;
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let client = Arc::clone(self);
        let live = tokio::spawn(Arc::clone(self).listen_live(backoff, stop_rx.clone()));
        let mut stop_rx = stop_rx;
        let handle = tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                if *stop_rx.borrow() {
                    break;
                }
                let wait = if client.status.borrow().paused {
                    interval
                } else {
                    match client.sync_now().await {
                        Ok(_) => {
                            failures = 0;
                            interval
                        }
                        Err(e) => {
                            failures = failures.saturating_add(1);
                            // A server that says when to come back is believed.
                            let asked = match e {
                                Error::RateLimited { retry_after, .. } => retry_after,
                                _ => Duration::ZERO,
                            };
                            backoff.delay(failures - 1).max(asked)
                        }
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    () = client.wake.notified() => {}
                    _ = stop_rx.changed() => {}
                }
            }
            let _ = live.await;
        });
        *worker = Some((stop_tx, handle));
    }

    /// Keeps a WebSocket open to `/v1/live`; every notice whose log head is past our
    /// cursor wakes the sync loop. Reconnects with backoff after a close, an error or
    /// `live_silence_timeout` of silence; ends when stopped.
    async fn listen_live(self: Arc<Self>, backoff: Backoff, mut stop: watch::Receiver<bool>) {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;

        let url = format!("{}/v1/live", self.peer.replacen("http", "ws", 1));
        let mut failures = 0u32;
        while !*stop.borrow() {
            let Ok(request) = self.live_request(&url) else {
                return;
            };
            let handshake = tokio_tungstenite::connect_async(request);
            let connected = tokio::select! {
                connected = tokio::time::timeout(self.config.request_timeout, handshake) => connected,
                _ = stop.changed() => break,
            };
            if let Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) = &connected
                && response.status() == 401
            {
                // The access token expired while the loop was idle: refresh it here,
                // so live notices do not wait for the next sync.
                let before = self.transport.credentials();
                let refreshed = self.transport.refresh().await;
                let _ = self.keep_refreshed_tokens(before, &refreshed).await;
                if refreshed.is_ok() {
                    continue;
                }
            }
            if let Ok(Ok((mut socket, _))) = connected {
                failures = 0;
                self.status.send_modify(|s| s.live = true);
                loop {
                    // A black-holed link closes nothing: silence is the only sign.
                    let silence = self.config.live_silence_timeout;
                    let frame = tokio::select! {
                        frame = tokio::time::timeout(silence, socket.next()) => frame,
                        _ = stop.changed() => break,
                    };
                    let Ok(frame) = frame else {
                        tracing::debug!(?silence, "live: socket silent; reconnecting");
                        break;
                    };
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            if self.is_news(text.as_str()).await {
                                self.wake();
                            }
                        }
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => {} // pings are answered by the library while we read
                    }
                }
                self.status.send_modify(|s| s.live = false);
            }
            let delay = backoff.delay(failures);
            failures = failures.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// The live channel's handshake request, as the signed-in user.
    fn live_request(
        &self,
        url: &str,
    ) -> std::result::Result<tokio_tungstenite::tungstenite::handshake::client::Request, ()> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().map_err(|e| {
            tracing::warn!(error = %e, url, "live: bad URL");
        })?;
        if let Some(credentials) = self.transport.credentials() {
            let value = format!("Bearer {}", credentials.access_token);
            if let Ok(value) = value.parse() {
                request
                    .headers_mut()
                    .insert(reqwest::header::AUTHORIZATION.as_str(), value);
            }
        }
        Ok(request)
    }

    /// Whether a live notice reports log entries this device has not pulled yet.
    async fn is_news(&self, frame: &str) -> bool {
        #[derive(serde::Deserialize)]
        struct Notice {
            head: u64,
        }
        let Ok(notice) = serde_json::from_str::<Notice>(frame) else {
            return false;
        };
        let (store, peer) = (Arc::clone(&self.store), self.peer.clone());
        let cursor = run_blocking(move || store.sync_cursor(&peer))
            .await
            .unwrap_or(0);
        notice.head > cursor
    }

    /// Asks the background loop to sync now (e.g. after a local change or a push).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn pause(&self) {
        self.status.send_modify(|s| s.paused = true);
    }

    pub fn resume(&self) {
        self.status.send_modify(|s| s.paused = false);
        self.wake();
    }

    /// Stops the background loop and waits for it: an exchange in flight finishes first.
    pub async fn stop(&self) {
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((stop, handle)) = worker {
            let _ = stop.send(true);
            let _ = handle.await;
        }
    }
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::InvalidInput(format!("store task failed: {e}")))?
}
