//! The live channel over real WebSockets on loopback: same-server notices, the
//! scale-out path (two servers on one Postgres), lag, keep-alive and shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    Running, WAIT, connect_live, frame_naming, journey_change, next_frame, push, serve_services,
};
use crewsync_server::compaction::Compactor;
use crewsync_server::config::Config;
use crewsync_server::live::{LiveHub, Notice, Notifier, Source};
use crewsync_server::metrics::Metrics;
use crewsync_server::storage::Storage;
use crewsync_server::storage::memory::MemoryStorage;
use crewsync_server::{Server, Services};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn embedded_server(dir: &tempfile::TempDir) -> Running {
    let config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    Running::start(Server::open(&config).await.unwrap()).await
}

fn local_notices(services: &Services) -> u64 {
    services
        .metrics
        .live_notices
        .with_label_values(&["local"])
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_socket_hears_a_change_pushed_to_the_same_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = embedded_server(&dir).await;
    let (mut socket, first) = connect_live(&server.live_url(), &server.token).await;
    assert_eq!(first.head, 0, "the current head comes first");
    assert!(first.journeys.is_empty());

    let (journey, change) = journey_change(&server.signer);
    let pushed = Instant::now();
    push(&server.base, &server.token, &[(journey, change.clone())]).await;
    let frame = frame_naming(&mut socket, journey).await;
    eprintln!("live frame {:?} after the push", pushed.elapsed());
    assert_eq!(frame.head, 1);
    assert_eq!(frame.journeys, vec![journey]);

    // A re-sent change adds nothing to the log, so nobody is told of it.
    push(&server.base, &server.token, &[(journey, change)]).await;
    assert_eq!(local_notices(&server.services), 1);
    let (other, change) = journey_change(&server.signer);
    push(&server.base, &server.token, &[(other, change)]).await;
    let frame = next_frame(&mut socket).await;
    assert_eq!(
        frame.journeys,
        vec![other],
        "the next frame is the next append"
    );
    assert_eq!(frame.head, 2);
    server.shutdown().await;
}

/// The scale-out story: two server processes (here two instances, each with its own
/// storage pool and LISTEN connection) on one database; a device on A hears of a
/// change pushed to B, and the other way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_on_one_server_hears_a_change_pushed_to_another_on_the_same_postgres() {
    let db = tokio::task::spawn_blocking(|| {
        crewsync_testkit::postgres::shared_cluster()
            .unwrap()
            .fresh_database()
            .unwrap()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        database_url: Some(db.url.clone()),
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    assert!(config.is_postgres());
    let mut a = Running::start(Server::open(&config).await.unwrap()).await;
    // B serves the same tenant: one database, one signing key, one log.
    let mut b = Running::start_for(Server::open(&config).await.unwrap(), a.tenant.clone()).await;
    let (mut on_a, first) = connect_live(&a.live_url(), &a.token).await;
    assert_eq!(first.head, 0);
    let (mut on_b, _) = connect_live(&b.live_url(), &b.token).await;

    let (journey, change) = journey_change(&b.signer);
    let pushed = Instant::now();
    push(&b.base, &b.token, &[(journey, change)]).await;
    let heard = frame_naming(&mut on_a, journey).await;
    eprintln!("server A heard B's append after {:?}", pushed.elapsed());
    assert_eq!(heard.head, 1);
    assert_eq!(frame_naming(&mut on_b, journey).await.head, 1);

    let (back, change) = journey_change(&a.signer);
    push(&a.base, &a.token, &[(back, change)]).await;
    assert_eq!(frame_naming(&mut on_b, back).await.head, 2);
    assert_eq!(frame_naming(&mut on_a, back).await.head, 2);

    let from_postgres = |running: &Running| {
        running
            .services
            .metrics
            .live_notices
            .with_label_values(&["postgres"])
            .get()
    };
    assert_eq!(
        from_postgres(&a),
        1,
        "A heard only B's append from Postgres"
    );
    assert_eq!(from_postgres(&b), 1, "and B only A's: each ignores its own");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_falls_behind_skips_to_the_latest_head() {
    let test = common::memory_services(crewsync_server::MAX_BODY_BYTES).await;
    let services = test.services.clone();
    let base = serve_services(&services).await;
    let url = format!("{}/v1/live", base.replace("http://", "ws://"));
    let (mut stalled, _) = connect_live(&url, &test.token).await;
    let (mut reader, _) = connect_live(&url, &test.token).await;

    // Far more notices than the broadcast channel holds, published without a pause.
    const NOTICES: u64 = 5_000;
    for head in 1..=NOTICES {
        services.notifier.committed(Notice {
            tenant: test.tenant_key(),
            head,
            journeys: vec![],
        });
    }
    // Another tenant's notices never reach this tenant's sockets.
    services.hub().publish(
        Notice {
            tenant: "someone-else".into(),
            head: NOTICES * 2,
            journeys: vec![],
        },
        Source::Local,
    );

    // The reading socket is not held up by the one that does not read.
    for socket in [&mut reader, &mut stalled] {
        let mut last = 0;
        let mut frames = 0;
        while last < NOTICES {
            let frame = next_frame(socket).await;
            assert!(frame.head > last, "heads strictly increase");
            last = frame.head;
            frames += 1;
        }
        assert_eq!(last, NOTICES);
        eprintln!("{frames} frames for {NOTICES} notices");
        assert!(frames <= NOTICES, "{frames} frames");
    }
}

/// A hub pinging every 100 ms, so keep-alive is observable quickly.
async fn fast_ping_services() -> common::TestServices {
    let mut test = common::memory_services(crewsync_server::MAX_BODY_BYTES).await;
    let metrics = Arc::new(Metrics::new().unwrap());
    let hub = LiveHub::new(Arc::clone(&metrics), Duration::from_millis(100));
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    test.services = Services {
        compactor: Compactor::new(Arc::clone(&storage), Arc::clone(&metrics), 0),
        storage,
        auth: Arc::clone(&test.tenant.auth),
        notifier: Notifier::local(hub),
        metrics,
        max_body_bytes: crewsync_server::MAX_BODY_BYTES,
        scopes: crewsync_server::scope::ScopeIndex::new(test.tenant.auth.directory.db().clone()),
        window: Default::default(),
        limits: Arc::clone(&test.services.limits),
        media: Arc::clone(&test.services.media),
    };
    test
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_pings_arrive_and_a_silent_socket_is_closed() {
    let test = fast_ping_services().await;
    let services = test.services.clone();
    let base = serve_services(&services).await;
    let url = format!("{}/v1/live", base.replace("http://", "ws://"));

    // A device that reads answers pings (tungstenite pongs automatically) and stays.
    let (mut listening, _) = connect_live(&url, &test.token).await;
    let mut pings = 0;
    while pings < 3 {
        let message = tokio::time::timeout(WAIT, listening.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if matches!(message, Message::Ping(_)) {
            pings += 1;
        }
    }
    assert_eq!(
        services.hub().connections(),
        1,
        "answering sockets stay open"
    );

    // One that stops reading never answers: the server drops it after two intervals.
    let (_silent, _) = connect_live(&url, &test.token).await;
    listening.close(None).await.unwrap();
    assert!(
        services.hub().wait_closed(WAIT).await,
        "{} sockets still open",
        services.hub().connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_live_sockets_with_going_away() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = embedded_server(&dir).await;
    let (mut socket, _) = connect_live(&server.live_url(), &server.token).await;
    server.shutdown().await;
    let close = loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Close(frame) = message {
            break frame.unwrap();
        }
    };
    assert_eq!(close.code, CloseCode::Away);
    assert_eq!(server.services.hub().connections(), 0);
}
