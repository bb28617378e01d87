//! Sign-in, tokens and tenants over HTTP on loopback (reliability matrix F4, F6, and
//! the tenant wall of the sync log), on the embedded store and on Postgres.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{Signer, connect_live, journey_change, post_sync, push, serve_services, sync_body};
use crewsync_core::ids::{ClientId, DeviceId, LocationId};
use crewsync_core::model::Role;
use crewsync_core::sync::auth::{Me, TokenResponse};
use crewsync_core::sync::wire::{self, CONTENT_TYPE};
use crewsync_server::Services;
use crewsync_server::auth::tokens::{self, TokenKeys};
use crewsync_server::config::Config;
use crewsync_server::directory::{Db, UserStatus};
use crewsync_server::storage::{self, Storage};
use crewsync_server::testing::{TEST_PASSWORD, TestTenant};

struct Env {
    base: String,
    storage: Arc<dyn Storage>,
    a: TestTenant,
    b: TestTenant,
}

async fn env(storage: Arc<dyn Storage>, db: Db) -> Env {
    let a = TestTenant::create(db.clone(), ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let b = TestTenant::create(db, ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let services = Services::in_process(
        Arc::clone(&storage),
        Arc::clone(&a.auth),
        &Config::default(),
    )
    .unwrap();
    Env {
        base: serve_services(&services).await,
        storage,
        a,
        b,
    }
}

async fn post_json(base: &str, path: &str, body: serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn sign_in(base: &str, email: &str, password: &str) -> reqwest::Response {
    post_json(
        base,
        "/v1/auth/sign-in",
        serde_json::json!({ "email": email, "password": password, "device_id": DeviceId::new() }),
    )
    .await
}

async fn me(base: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn sign_in_refresh_and_sign_out(env: &Env) {
    let driver = env.a.user(Role::Driver);
    // Unknown email and wrong password look the same.
    for (email, password) in [
        (driver.email.as_str(), "wrong"),
        ("nobody@test.example", TEST_PASSWORD),
    ] {
        let response = sign_in(&env.base, email, password).await;
        assert_eq!(response.status(), 401);
        assert_eq!(response.text().await.unwrap(), "wrong email or password");
    }
    let response = sign_in(&env.base, &driver.email.to_uppercase(), TEST_PASSWORD).await;
    assert_eq!(response.status(), 200);
    let tokens: TokenResponse = response.json().await.unwrap();
    assert_eq!(tokens.user.id, driver.id);
    assert_eq!(tokens.user.role, Role::Driver);

    let me_now: Me = me(&env.base, &tokens.access_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me_now.user.tenant, env.a.tenant);
    assert_eq!(
        me_now.permissions.len(),
        24,
        "the tenant's permission table"
    );

    // Refresh rotates; the old refresh token comes back once within the grace
    // window (a lost response) and still works.
    let refreshed: TokenResponse = post_json(
        &env.base,
        "/v1/auth/refresh",
        serde_json::json!({ "refresh_token": tokens.refresh_token }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_ne!(refreshed.refresh_token, tokens.refresh_token);
    assert_eq!(me(&env.base, &refreshed.access_token).await.status(), 200);
    let garbage = post_json(
        &env.base,
        "/v1/auth/refresh",
        serde_json::json!({ "refresh_token": "garbage" }),
    )
    .await;
    assert_eq!(garbage.status(), 401);

    // Sign-out ends the session: its still-unexpired token is refused.
    let out = reqwest::Client::new()
        .post(format!("{}/v1/auth/sign-out", env.base))
        .bearer_auth(&refreshed.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let after = me(&env.base, &refreshed.access_token).await;
    assert_eq!(after.status(), 401);
    assert!(after.text().await.unwrap().contains("session has ended"));

    // A deactivated user's device is refused at its next contact.
    let mover = env.a.sign_in(Role::Mover, DeviceId::new()).await.unwrap();
    assert_eq!(me(&env.base, &mover.access_token).await.status(), 200);
    env.a
        .auth
        .directory
        .set_user_status(env.a.tenant, mover.user.id, UserStatus::Inactive)
        .await
        .unwrap();
    assert_eq!(me(&env.base, &mover.access_token).await.status(), 403);
    let mover_email = &env.a.user(Role::Mover).email;
    assert_eq!(
        sign_in(&env.base, mover_email, TEST_PASSWORD)
            .await
            .status(),
        403
    );
}

async fn forged_tokens_are_refused_and_store_nothing(env: &Env) {
    let signer = Signer::sign_in(&env.a, Role::Dispatcher).await;
    let good = env.a.sign_in(Role::Driver, DeviceId::new()).await.unwrap();
    let claims = env.a.auth.keys.validate(&good.access_token).unwrap();
    let other_key = TokenKeys::from_secret(b"some other server's 32-byte key!");
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "missing bearer token"),
        (
            "another key",
            Some(other_key.issue(&claims).unwrap()),
            "signature",
        ),
        (
            "expired",
            Some(
                env.a
                    .auth
                    .keys
                    .issue(&tokens::Claims {
                        exp: claims.iat - 3_600,
                        ..claims.clone()
                    })
                    .unwrap(),
            ),
            "expired",
        ),
        (
            "another audience",
            Some(
                env.a
                    .auth
                    .keys
                    .issue(&tokens::Claims {
                        aud: "elsewhere".into(),
                        ..claims.clone()
                    })
                    .unwrap(),
            ),
            "audience",
        ),
        (
            "alg none",
            Some(format!(
                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
                good.access_token.split('.').nth(1).unwrap()
            )),
            "algorithm",
        ),
    ];
    for (name, token, reason) in cases {
        let mut request = reqwest::Client::new()
            .post(format!("{}/v1/sync", env.base))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(sync_body(&[journey_change(&signer)]));
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{name}");
        let challenge = response.headers()[reqwest::header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        let message = response.text().await.unwrap();
        assert!(message.contains(reason), "{name}: {message}");
    }
    assert_eq!(
        env.storage.head(&env.a.tenant.to_string()).await.unwrap(),
        0
    );
}

/// Each tenant's log is its own: pushes, pulls and live notices never cross.
async fn tenants_never_see_each_others_changes(env: &Env) {
    let a = Signer::sign_in(&env.a, Role::Dispatcher).await;
    let b = Signer::sign_in(&env.b, Role::Dispatcher).await;
    let live = format!("{}/v1/live", env.base.replace("http://", "ws://"));
    let (mut b_socket, b_first) = connect_live(&live, &b.token).await;
    assert_eq!(b_first.head, 0);

    let (journey, change) = journey_change(&a);
    push(&env.base, &a.token, &[(journey, change)]).await;
    assert_eq!(
        env.storage.head(&env.a.tenant.to_string()).await.unwrap(),
        1
    );
    assert_eq!(
        env.storage.head(&env.b.tenant.to_string()).await.unwrap(),
        0
    );

    // B pulls from the start of its log: nothing of A's.
    let (status, body) = post_sync(&env.base, &b.token, CONTENT_TYPE, sync_body(&[])).await;
    assert_eq!(status, 200);
    let response = wire::decode_response(&body).unwrap();
    assert!(response.changes.is_empty());
    assert_eq!(response.cursor, 0);
    // And B's socket hears nothing of it.
    let quiet = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        common::next_frame(&mut b_socket),
    )
    .await;
    assert!(
        quiet.is_err(),
        "tenant B heard of tenant A's append: {quiet:?}"
    );
}

async fn all(storage: Arc<dyn Storage>, db: Db) {
    let env = env(storage, db).await;
    sign_in_refresh_and_sign_out(&env).await;
    forged_tokens_are_refused_and_store_nothing(&env).await;
    tenants_never_see_each_others_changes(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let opened = storage::open(None, dir.path()).await.unwrap();
    all(opened.storage, opened.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_on_postgres() {
    let db = tokio::task::spawn_blocking(|| {
        crewsync_testkit::postgres::shared_cluster()
            .unwrap()
            .fresh_database()
            .unwrap()
    })
    .await
    .unwrap();
    let opened = storage::open(Some(&db.url), std::path::Path::new("."))
        .await
        .unwrap();
    all(opened.storage, opened.db).await;
}
