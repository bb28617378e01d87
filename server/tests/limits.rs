//! Rate limits over HTTP on 127.0.0.1 (issue 4 point 9; reliability matrix F7):
//! a burst of sign-ins from one device and IP, one device flooding sync, one tenant
//! flooding its quota. Past a quota: 429 with Retry-After and nothing processed;
//! meanwhile other devices and other tenants are served; after Retry-After the
//! device is served again. Control: the same floods with no limits get no 429.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Signer, journey_change, post_sync, sync_body};
use crewsync_core::ids::{ClientId, DeviceId, LocationId};
use crewsync_core::model::Role;
use crewsync_core::sync::wire::CONTENT_TYPE;
use crewsync_server::Services;
use crewsync_server::auth::sessions::Sessions;
use crewsync_server::config::Config;
use crewsync_server::limits::{Limits, RateLimit};
use crewsync_server::storage::{self, Storage};
use crewsync_server::testing::{TEST_PASSWORD, TestTenant};
use serde_json::json;

/// How many requests each flood sends.
const FLOOD: usize = 100;

struct Env {
    base: String,
    storage: Arc<dyn Storage>,
    a: TestTenant,
    b: TestTenant,
    _dir: tempfile::TempDir,
}

/// A server on loopback with the peer address known (as `Server::serve` runs it),
/// over a fresh embedded store with two tenants. `limited: false` is the control:
/// the same server with no quotas.
async fn server(config: Config, limited: bool) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let opened = storage::open(None, dir.path()).await.unwrap();
    let a = TestTenant::create(opened.db.clone(), ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let b = TestTenant::create(opened.db.clone(), ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let mut services =
        Services::in_process(Arc::clone(&opened.storage), Arc::clone(&a.auth), &config).unwrap();
    if !limited {
        services.limits = Arc::new(Limits::none());
    }
    let app = crewsync_server::router(services).into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Env {
        base,
        storage: opened.storage,
        a,
        b,
        _dir: dir,
    }
}

/// `n` an hour: refills are 36 s apart or more, so a flood's counts are exact.
fn per_hour(n: u32) -> RateLimit {
    RateLimit {
        count: NonZeroU32::new(n).unwrap(),
        period: Duration::from_secs(3600),
    }
}

/// Signs in over HTTP: the status, and `Retry-After` when there is one.
async fn sign_in(base: &str, email: &str, device: DeviceId) -> (u16, Option<u64>, String) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/auth/sign-in"))
        .json(&json!({ "email": email, "password": TEST_PASSWORD, "device_id": device }))
        .timeout(common::WAIT * 4)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry_after, response.text().await.unwrap())
}

/// Posts an empty sync: the status and `Retry-After`.
async fn sync(base: &str, token: &str) -> (u16, Option<u64>) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/sync"))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
        .body(sync_body(&[]))
        .timeout(common::WAIT)
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (response.status().as_u16(), retry_after)
}

async fn open_sessions(tenant: &TestTenant) -> usize {
    Sessions::new(tenant.auth.directory.db().clone())
        .open_sessions(tenant.tenant)
        .await
        .unwrap()
        .len()
}

/// What a flood of sign-ins to one account from one device and IP saw.
struct SignInFlood {
    ok: usize,
    limited: usize,
    retry_after: Vec<u64>,
    /// Sessions opened in the account's tenant.
    sessions: usize,
    /// Sign-ins of another tenant's user during the flood that were refused.
    other_tenant_refused: usize,
}

async fn flood_sign_ins(env: &Env) -> SignInFlood {
    let driver = &env.a.user(Role::Driver).email;
    let device = DeviceId::new();
    let before = open_sessions(&env.a).await;
    let (mut ok, mut limited, mut retry_after, mut other_tenant_refused) = (0, 0, Vec::new(), 0);
    for n in 0..FLOOD {
        let (status, retry, body) = sign_in(&env.base, driver, device).await;
        match status {
            200 => ok += 1,
            429 => {
                limited += 1;
                assert!(body.contains("too many requests"), "{body}");
                retry_after.push(retry.expect("a 429 carries Retry-After"));
            }
            other => panic!("sign-in {n}: {other} {body}"),
        }
        if n % 25 == 24 {
            let other = env.b.user(Role::Dispatcher);
            let (status, _, body) = sign_in(&env.base, &other.email, DeviceId::new()).await;
            if status != 200 {
                other_tenant_refused += 1;
                eprintln!("other tenant refused: {status} {body}");
            }
        }
    }
    SignInFlood {
        ok,
        limited,
        retry_after,
        sessions: open_sessions(&env.a).await - before,
        other_tenant_refused,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sign_ins_from_one_device_gets_429_with_retry_after() {
    // The defaults: 10 a minute per account and per device (one more every 6 s).
    let env = server(Config::default(), true).await;
    let started = Instant::now();
    let flood = flood_sign_ins(&env).await;
    let refills = (started.elapsed().as_secs() / 6) as usize;
    assert!(
        (10..=10 + refills + 1).contains(&flood.ok),
        "the quota's burst is served, and no more: {} in {:?}",
        flood.ok,
        started.elapsed()
    );
    assert_eq!(flood.limited, FLOOD - flood.ok);
    assert_eq!(
        flood.sessions, flood.ok,
        "a refused sign-in opens no session"
    );
    assert!(
        flood.retry_after.iter().all(|s| (1..=6).contains(s)),
        "{:?}",
        flood.retry_after
    );
    assert_eq!(
        flood.other_tenant_refused, 0,
        "another tenant signs in meanwhile"
    );

    // Control: the same flood against the same server with no quotas.
    let env = env_unlimited().await;
    let flood = flood_sign_ins(&env).await;
    assert_eq!((flood.ok, flood.limited), (FLOOD, 0));
    assert_eq!(flood.sessions, FLOOD);
}

async fn env_unlimited() -> Env {
    server(Config::default(), false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_are_limited_per_ip_and_per_tenant() {
    // Per IP: many accounts and devices from one address.
    let env = server(
        Config {
            sign_in_limit_per_ip: per_hour(5),
            ..Config::default()
        },
        true,
    )
    .await;
    let mut statuses = Vec::new();
    for role in [
        Role::Driver,
        Role::Mover,
        Role::Manager,
        Role::Auditor,
        Role::Admin,
        Role::Dispatcher,
    ] {
        let (status, retry, body) =
            sign_in(&env.base, &env.a.user(role).email, DeviceId::new()).await;
        statuses.push(status);
        if status == 429 {
            assert!(body.contains("sign-in per IP"), "{body}");
            assert!(retry.is_some());
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);

    // Per tenant: tenant A's quota spent, tenant B still signs in.
    let env = server(
        Config {
            sign_in_limit_per_tenant: per_hour(3),
            ..Config::default()
        },
        true,
    )
    .await;
    let mut statuses = Vec::new();
    for role in [Role::Driver, Role::Mover, Role::Manager, Role::Auditor] {
        let (status, _, body) = sign_in(&env.base, &env.a.user(role).email, DeviceId::new()).await;
        if status == 429 {
            assert!(body.contains("sign-in per tenant"), "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let (status, _, _) = sign_in(&env.base, &env.b.user(Role::Driver).email, DeviceId::new()).await;
    assert_eq!(status, 200, "another tenant's quota is its own");
}

/// What a sync flood from one device saw, and the others during it.
struct SyncFlood {
    ok: usize,
    limited: usize,
    retry_after: Option<u64>,
    /// Syncs of another device of the same tenant, and of another tenant's
    /// device, during the flood that were not 200.
    same_tenant_refused: usize,
    other_tenant_refused: usize,
}

async fn flood_sync(env: &Env, flooder: &str, neighbour: &str, stranger: &str) -> SyncFlood {
    let mut flood = SyncFlood {
        ok: 0,
        limited: 0,
        retry_after: None,
        same_tenant_refused: 0,
        other_tenant_refused: 0,
    };
    for n in 0..FLOOD {
        match sync(&env.base, flooder).await {
            (200, _) => flood.ok += 1,
            (429, retry) => {
                flood.limited += 1;
                flood.retry_after = Some(retry.expect("a 429 carries Retry-After"));
            }
            (other, _) => panic!("sync {n}: {other}"),
        }
        if n % 10 == 9 {
            if sync(&env.base, neighbour).await.0 != 200 {
                flood.same_tenant_refused += 1;
            }
            if sync(&env.base, stranger).await.0 != 200 {
                flood.other_tenant_refused += 1;
            }
        }
    }
    flood
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_device_flooding_sync_gets_429_and_nobody_else_does() {
    let config = Config {
        sync_limit_per_device: per_hour(30),
        ..Config::default()
    };
    let env = server(config.clone(), true).await;
    let flooder = Signer::sign_in(&env.a, Role::Dispatcher).await;
    let neighbour = Signer::sign_in(&env.a, Role::Driver).await;
    let stranger = Signer::sign_in(&env.b, Role::Driver).await;
    let flood = flood_sync(&env, &flooder.token, &neighbour.token, &stranger.token).await;
    assert_eq!(flood.ok, 30, "the device's burst is served");
    assert_eq!(flood.limited, FLOOD - 30);
    assert!(flood.retry_after.is_some_and(|s| (1..=120).contains(&s)));
    assert_eq!(
        flood.same_tenant_refused, 0,
        "another device of the tenant syncs meanwhile"
    );
    assert_eq!(
        flood.other_tenant_refused, 0,
        "another tenant syncs meanwhile"
    );

    // Nothing is processed past the quota: a limited push appends nothing.
    let tenant = env.a.tenant.to_string();
    let head = env.storage.head(&tenant).await.unwrap();
    let (status, _) = post_sync(
        &env.base,
        &flooder.token,
        CONTENT_TYPE,
        sync_body(&[journey_change(&flooder)]),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(
        env.storage.head(&tenant).await.unwrap(),
        head,
        "nothing appended"
    );
    // The live upgrade counts against the same quota.
    let live = reqwest::Client::new()
        .get(format!("{}/v1/live", env.base))
        .bearer_auth(&flooder.token)
        .timeout(common::WAIT)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 429);

    // Control: the same flood with no quotas gets no 429.
    let env = env_unlimited_with(config).await;
    let flooder = Signer::sign_in(&env.a, Role::Dispatcher).await;
    let neighbour = Signer::sign_in(&env.a, Role::Driver).await;
    let stranger = Signer::sign_in(&env.b, Role::Driver).await;
    let flood = flood_sync(&env, &flooder.token, &neighbour.token, &stranger.token).await;
    assert_eq!((flood.ok, flood.limited), (FLOOD, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_retry_after_a_limited_device_is_served_again() {
    // 5 a second: a burst of 5, then one every 200 ms.
    let env = server(
        Config {
            sync_limit_per_device: RateLimit::per_second(NonZeroU32::new(5).unwrap()),
            ..Config::default()
        },
        true,
    )
    .await;
    let device = Signer::sign_in(&env.a, Role::Dispatcher).await;
    let mut retry_after = None;
    for _ in 0..FLOOD {
        if let (429, retry) = sync(&env.base, &device.token).await {
            retry_after = retry;
            break;
        }
    }
    let retry_after = retry_after.expect("the flood reached the quota, with Retry-After");
    assert_eq!(retry_after, 1, "200 ms rounded up to whole seconds");
    let change = journey_change(&device);
    let mut served = false;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(retry_after)).await;
        let (status, _) = post_sync(
            &env.base,
            &device.token,
            CONTENT_TYPE,
            sync_body(std::slice::from_ref(&change)),
        )
        .await;
        if status == 200 {
            served = true;
            break;
        }
        assert_eq!(status, 429);
    }
    assert!(served, "served again after Retry-After");
    assert!(
        env.storage.head(&env.a.tenant.to_string()).await.unwrap() > 0,
        "and its push appended"
    );
}

async fn env_unlimited_with(config: Config) -> Env {
    server(config, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_spending_its_sync_quota_never_blocks_another() {
    let config = Config {
        sync_limit_per_tenant: per_hour(40),
        ..Config::default()
    };
    for limited in [true, false] {
        let env = server(config.clone(), limited).await;
        // Four devices of tenant A, each well under the per-device quota.
        let mut devices = Vec::new();
        for role in [Role::Driver, Role::Mover, Role::Manager, Role::Dispatcher] {
            devices.push(Signer::sign_in(&env.a, role).await);
        }
        let stranger = Signer::sign_in(&env.b, Role::Driver).await;
        let (mut ok, mut refused, mut stranger_refused) = (0, 0, 0);
        for n in 0..FLOOD {
            match sync(&env.base, &devices[n % devices.len()].token).await {
                (200, _) => ok += 1,
                (429, Some(_)) => refused += 1,
                other => panic!("{other:?}"),
            }
            // Tenant B syncs 20 times, within its own quota of 40.
            if n % 5 == 4 && sync(&env.base, &stranger.token).await.0 != 200 {
                stranger_refused += 1;
            }
        }
        if limited {
            assert_eq!((ok, refused), (40, FLOOD - 40), "tenant A's quota is spent");
        } else {
            assert_eq!((ok, refused), (FLOOD, 0), "control: no quotas, no 429");
        }
        assert_eq!(stranger_refused, 0, "tenant B is served throughout");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_client_hears_429_as_rate_limited_with_the_servers_wait() {
    use crewsync_core::Error;
    use crewsync_core::sync::runtime::HttpTransport;
    let env = server(
        Config {
            sync_limit_per_device: per_hour(2),
            ..Config::default()
        },
        true,
    )
    .await;
    let transport = HttpTransport::new(&env.base).unwrap();
    let email = env.a.user(Role::Dispatcher).email.clone();
    transport
        .sign_in(&email, TEST_PASSWORD, DeviceId::new())
        .await
        .unwrap();
    let request: crewsync_core::sync::wire::SyncRequest =
        crewsync_core::sync::wire::decode_request(&sync_body(&[])).unwrap();
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(transport.exchange(&request).await);
    }
    assert!(outcomes[0].is_ok() && outcomes[1].is_ok(), "{outcomes:?}");
    match &outcomes[2] {
        // 2 an hour: the next one refills 30 minutes on.
        Err(Error::RateLimited { retry_after, .. }) => assert!(
            (Duration::from_secs(60)..=Duration::from_secs(1800)).contains(retry_after),
            "{retry_after:?}"
        ),
        other => panic!("expected a rate limit, got {other:?}"),
    }
}
