//! Shared fixtures for the server's loopback tests: real automerge changes, sync
//! requests, servers on 127.0.0.1, WebSocket clients and a Prometheus text reader.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use automerge::ActorId;
use chrono::NaiveDate;
use crewsync_core::ChangeOrigin;
use crewsync_core::document::JourneyDocument;
use crewsync_core::ids::{ClientId, DeviceId, JourneyId, LocationId, UserId};
use crewsync_core::model::{NewJourney, Role, Timestamp};
use crewsync_core::sync::wire::{self, CONTENT_TYPE, PROTOCOL_VERSION, SyncRequest, WireChange};
use crewsync_server::live::LiveFrame;
use crewsync_server::testing::{EmbeddedTestDb, TestTenant};
use crewsync_server::{Server, Services};
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(5);

/// Who pushes in a test: a signed-in user on a device, as the checks see them.
#[derive(Debug, Clone)]
pub struct Signer {
    pub token: String,
    pub user: UserId,
    pub role: Role,
    pub tenant: ClientId,
    pub location: LocationId,
    pub device: DeviceId,
}

impl Signer {
    /// Signs `role`'s user of `tenant` in on a new device.
    pub async fn sign_in(tenant: &TestTenant, role: Role) -> Self {
        let device = DeviceId::new();
        let tokens = tenant.sign_in(role, device).await.unwrap();
        Self {
            token: tokens.access_token,
            user: tokens.user.id,
            role,
            tenant: tokens.user.tenant,
            location: tokens.user.location_id,
            device,
        }
    }

    pub fn origin(&self) -> ChangeOrigin {
        ChangeOrigin {
            user_id: self.user,
            role: self.role,
            device_id: self.device,
        }
    }
}

/// A new journey's first change by `who` (an office role), in their tenant: real
/// automerge bytes that the write checks accept.
pub fn journey_change(who: &Signer) -> (JourneyId, Vec<u8>) {
    let id = JourneyId::new();
    let new = NewJourney {
        id: Some(id),
        client_id: who.tenant,
        location_id: who.location,
        date: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        truck_number: Some("T-12".into()),
        move_source_id: None,
        steps_requiring_approval: vec![],
    };
    let (_, change) = JourneyDocument::create(
        &new,
        "America/Toronto",
        &who.origin(),
        Timestamp::now(),
        ActorId::random(),
    )
    .unwrap();
    (id, change.raw_bytes().to_vec())
}

/// An encoded sync request pushing `changes` (journey, bytes).
pub fn sync_body(changes: &[(JourneyId, Vec<u8>)]) -> Vec<u8> {
    wire::encode(&SyncRequest {
        version: PROTOCOL_VERSION,
        device_id: DeviceId::new(),
        actor: ActorId::random().to_bytes().to_vec(),
        cursor: 0,
        changes: changes
            .iter()
            .map(|(journey, bytes)| WireChange {
                journey: *journey,
                bytes: bytes.clone(),
            })
            .collect(),
        max_changes: 1_000,
        held: None,
        report: None,
    })
}

/// POSTs a sync body as the bearer of `token`; returns the status and body.
pub async fn post_sync(
    base: &str,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/sync"))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .timeout(WAIT)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// Pushes `changes` and checks the server acknowledged all of them.
pub async fn push(base: &str, token: &str, changes: &[(JourneyId, Vec<u8>)]) {
    let (status, body) = post_sync(base, token, CONTENT_TYPE, sync_body(changes)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let response = wire::decode_response(&body).unwrap();
    assert_eq!(response.acked.len(), changes.len());
}

/// A router on a free loopback port, served until the test ends.
pub async fn serve_router(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// `services` on a free loopback port.
pub async fn serve_services(services: &Services) -> String {
    serve_router(crewsync_server::router(services.clone())).await
}

/// A [`Server`] running on loopback with a shutdown trigger, and a tenant in its
/// database.
pub struct Running {
    pub base: String,
    pub addr: SocketAddr,
    pub services: Services,
    pub tenant: TestTenant,
    /// A dispatcher of `tenant`, signed in.
    pub signer: Signer,
    /// The dispatcher's access token.
    pub token: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Serves `server` with a fresh tenant in its database.
    pub async fn start(server: Server) -> Self {
        let db = server.services().auth.directory.db().clone();
        let tenant = TestTenant::create(db, ClientId::new(), LocationId::new())
            .await
            .unwrap();
        Self::start_for(server, tenant).await
    }

    /// Serves `server` for an existing tenant (e.g. a second server on one database).
    pub async fn start_for(server: Server, tenant: TestTenant) -> Self {
        let signer = Signer::sign_in(&tenant, Role::Dispatcher).await;
        let token = signer.token.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let services = server.services().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            base: format!("http://{addr}"),
            addr,
            services,
            tenant,
            signer,
            token,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn live_url(&self) -> String {
        format!("ws://{}/v1/live", self.addr)
    }

    /// Triggers graceful shutdown and waits (bounded) for `serve` to return.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT * 2, task)
                .await
                .expect("server stops in time")
                .unwrap()
                .unwrap();
        }
    }
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to a live endpoint (`ws://…/v1/live`) as the bearer of `token` and
/// reads the first frame.
pub async fn connect_live(url: &str, token: &str) -> (Socket, LiveFrame) {
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap()
        .unwrap();
    let first = next_frame(&mut socket).await;
    (socket, first)
}

/// The next live frame, skipping pings; panics after [`WAIT`].
pub async fn next_frame(socket: &mut Socket) -> LiveFrame {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("a live frame within the wait")
            .expect("the socket is open")
            .unwrap();
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected live message {other:?}"),
        }
    }
}

/// Frames until one names `journey`; returns it.
pub async fn frame_naming(socket: &mut Socket, journey: JourneyId) -> LiveFrame {
    loop {
        let frame = next_frame(socket).await;
        if frame.journeys.contains(&journey) {
            return frame;
        }
    }
}

/// One sample from Prometheus text: `name{labels} value`, matching all given labels.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let pairs: Vec<(&str, &str)> = series_labels
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k, v.trim_matches('"')))
                })
                .collect();
            labels
                .iter()
                .all(|wanted| pairs.contains(wanted))
                .then(|| value.parse().unwrap())
        })
}

pub async fn metrics_text(base: &str) -> String {
    let response = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .timeout(WAIT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.unwrap()
}

/// Services over an in-memory change log, with a tenant (in a temp SQLite file:
/// sign-in lives in SQL) and a dispatcher's token.
pub struct TestServices {
    pub services: Services,
    pub tenant: TestTenant,
    /// A dispatcher of `tenant`, signed in.
    pub signer: Signer,
    pub token: String,
    _db: EmbeddedTestDb,
}

impl TestServices {
    /// The tenant's key in the change log.
    pub fn tenant_key(&self) -> String {
        self.tenant.tenant.to_string()
    }
}

/// In-memory services with the given limits.
pub async fn memory_services(max_body_bytes: usize) -> TestServices {
    services_with(crewsync_server::config::Config {
        max_body_bytes,
        ..Default::default()
    })
    .await
}

/// In-memory services with `config`.
pub async fn services_with(config: crewsync_server::config::Config) -> TestServices {
    let db = EmbeddedTestDb::create(ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let tenant = db.tenant.clone();
    let services = Services::in_process(
        Arc::new(crewsync_server::storage::memory::MemoryStorage::new()),
        Arc::clone(&tenant.auth),
        &config,
    )
    .unwrap();
    let signer = Signer::sign_in(&tenant, Role::Dispatcher).await;
    TestServices {
        services,
        tenant,
        token: signer.token.clone(),
        signer,
        _db: db,
    }
}
