//! The audit trail end to end (reliability matrix F3 "the rejection is audited",
//! F11, F12): pushed changes over real HTTP each get exactly one entry (refusals
//! too, re-sends none) and the trail is served by role; tampering with the stored
//! chain through a direct superuser connection (Postgres) or the SQLite file is
//! named at its first broken entry; concurrent writers never fork a chain, and a
//! writer that skips the lock does, which the same checker catches.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use automerge::{ActorId, Change};
use common::{Running, Signer, WAIT, journey_change, push, sync_body};
use crewsync_core::JourneyAction;
use crewsync_core::audit::{
    self, AuditEntry, AuditPage, AuditRecord, AuditVerification, Digest, JourneyTrail,
};
use crewsync_core::document::JourneyDocument;
use crewsync_core::ids::{ClientId, DeviceId, EntryId, JourneyId, LocationId, UserId};
use crewsync_core::model::{Role, Timestamp};
use crewsync_core::sync::wire::{self, CONTENT_TYPE};
use crewsync_server::Server;
use crewsync_server::audit::ChangeAudit;
use crewsync_server::audit::http::verify_stored;
use crewsync_server::config::Config;
use crewsync_server::storage::{NewChange, Storage};
use crewsync_server::testing::TestTenant;

// ----- over HTTP ----------------------------------------------------------------

async fn get(base: &str, path: &str, token: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .timeout(WAIT)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn get_json<T: serde::de::DeserializeOwned>(base: &str, path: &str, token: &str) -> T {
    let (status, body) = get(base, path, token).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// A note by `who` on the journey the `creation` change made.
fn note_change(journey: JourneyId, creation: &[u8], who: &Signer) -> Vec<u8> {
    let mut doc = JourneyDocument::load(
        journey,
        None,
        vec![Change::from_bytes(creation.to_vec()).unwrap()],
        ActorId::random(),
    )
    .unwrap();
    let action = JourneyAction::AddNote {
        note: EntryId::new(),
        text: "tried to write".into(),
    };
    doc.apply(&action, &who.origin(), Timestamp::now())
        .unwrap()
        .unwrap()
        .raw_bytes()
        .to_vec()
}

/// Every change pushed over HTTP is in the trail once (accepted or refused, a
/// re-send adds nothing), the trail verifies on its own, and who may read what is
/// as specified; then a tampered SQLite file is reported by `GET /v1/audit/verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_changes_are_audited_once_and_served_by_role() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    let mut server = Running::start(Server::open(&config).await.unwrap()).await;
    let base = server.base.clone();
    let dispatcher = server.signer.clone();

    // Accepted, then re-sent: one entry.
    let (journey, creation) = journey_change(&dispatcher);
    push(&base, &dispatcher.token, &[(journey, creation.clone())]).await;
    push(&base, &dispatcher.token, &[(journey, creation.clone())]).await;
    // A mover not on the crew writes a note: refused, and audited.
    let mover = Signer::sign_in(&server.tenant, Role::Mover).await;
    let refused = note_change(journey, &creation, &mover);
    for _ in 0..2 {
        let (status, body) = common::post_sync(
            &base,
            &mover.token,
            CONTENT_TYPE,
            sync_body(&[(journey, refused.clone())]),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(wire::decode_response(&body).unwrap().rejected.len(), 1);
    }

    let path = format!("/v1/journeys/{journey}/audit");
    let trail: JourneyTrail = get_json(&base, &path, &dispatcher.token).await;
    let actions: Vec<&str> = trail.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["change.accepted", "change.rejected"]);
    let (created, rejected) = (&trail.entries[0], &trail.entries[1]);
    assert_eq!(created.user, Some(dispatcher.user));
    assert_eq!(created.device, Some(dispatcher.device));
    assert_eq!(
        created.location,
        Some(dispatcher.location),
        "the journey's location"
    );
    assert!(created.device_time.is_some());
    assert_eq!(
        created.diff["touched"][0], "journey created",
        "{}",
        created.diff
    );
    assert_eq!(
        created.diff["change"],
        Change::from_bytes(creation.clone())
            .unwrap()
            .hash()
            .to_string()
    );
    assert_eq!(rejected.user, Some(mover.user));
    assert!(
        rejected.diff["reason"].as_str().unwrap().contains("crew"),
        "{}",
        rejected.diff
    );
    assert_eq!(trail.head, rejected.head());
    let verified = audit::verify_trail(trail.entries.clone(), trail.head).unwrap();
    assert_eq!(verified.entries, 2);

    // Whoever's sync scope holds the journey reads its trail; crews off its crew
    // (here: it has none) get 404, as for other tenants' journeys.
    for role in [Role::Admin, Role::Auditor, Role::Manager] {
        let who = Signer::sign_in(&server.tenant, role).await;
        assert_eq!(get(&base, &path, &who.token).await.0, 200, "{role}");
    }
    let driver = Signer::sign_in(&server.tenant, Role::Driver).await;
    for crew in [&mover, &driver] {
        assert_eq!(get(&base, &path, &crew.token).await.0, 404);
        assert_eq!(get(&base, "/v1/audit", &crew.token).await.0, 403);
    }
    assert_eq!(get(&base, "/v1/audit", &dispatcher.token).await.0, 403);
    assert_eq!(
        get(&base, "/v1/audit/verify", &dispatcher.token).await.0,
        403
    );
    let unknown = format!("/v1/journeys/{}/audit", JourneyId::new());
    assert_eq!(get(&base, &unknown, &dispatcher.token).await.0, 404);
    assert_eq!(
        get(&base, "/v1/journeys/not-an-id/audit", &dispatcher.token)
            .await
            .0,
        404
    );
    assert_eq!(get(&base, &path, "not-a-token").await.0, 401);
    let db = server.services.auth.directory.db().clone();
    let other = TestTenant::create(db, ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let stranger = Signer::sign_in(&other, Role::Admin).await;
    let (status, body) = get(&base, &path, &stranger.token).await;
    assert_eq!((status, body.contains("change")), (404, false), "{body}");
    // The 404 is the tenant wall, not absence: the other tenant's own journey is there.
    let stranger_dispatcher = Signer::sign_in(&other, Role::Dispatcher).await;
    let (theirs, change) = journey_change(&stranger_dispatcher);
    push(&base, &stranger_dispatcher.token, &[(theirs, change)]).await;
    let their_path = format!("/v1/journeys/{theirs}/audit");
    assert_eq!(get(&base, &their_path, &stranger.token).await.0, 200);
    assert_eq!(get(&base, &their_path, &dispatcher.token).await.0, 404);

    // An admin action joins the same chain.
    let admin = Signer::sign_in(&server.tenant, Role::Admin).await;
    let principal = crewsync_server::auth::http::Principal {
        user: admin.user,
        tenant: admin.tenant,
        role: Role::Admin,
        location: admin.location,
        session: uuid::Uuid::now_v7(),
        device: admin.device,
    };
    let recorded = crewsync_server::audit::record(
        server.services.storage.as_ref(),
        &principal,
        "user.deactivate",
        "user",
        &mover.user.to_string(),
        serde_json::json!({"status": {"from": "ACTIVE", "to": "INACTIVE"}}),
    )
    .await
    .unwrap();
    assert_eq!(recorded.seq, 3);

    let auditor = Signer::sign_in(&server.tenant, Role::Auditor).await;
    let page: AuditPage = get_json(&base, "/v1/audit", &auditor.token).await;
    assert_eq!(page.entries.len(), 3);
    assert!(!page.more);
    assert_eq!(page.entries[2], recorded);
    assert_eq!(page.head, Some(recorded.head()));
    audit::verify_chain(page.entries.clone(), page.head).unwrap();
    let paged: AuditPage = get_json(&base, "/v1/audit?after=1&limit=1", &admin.token).await;
    assert_eq!((paged.entries.len(), paged.more), (1, true));
    assert_eq!(paged.entries[0], page.entries[1]);
    let theirs: AuditPage = get_json(&base, "/v1/audit", &stranger.token).await;
    assert_eq!(
        theirs.entries.len(),
        1,
        "the other tenant's chain is its own"
    );
    assert_eq!(theirs.entries[0].seq, 1);

    let verification: AuditVerification = get_json(&base, "/v1/audit/verify", &auditor.token).await;
    assert!(verification.ok, "{verification:?}");
    assert_eq!(verification.entries, 3);

    // Edit entry 2 in the file behind the server's back.
    let file = config
        .data_dir
        .join(crewsync_server::storage::sqlite::DEFAULT_FILE_NAME);
    let direct = Direct::sqlite(&file).await;
    direct
        .run(&format!(
            "UPDATE audit_log SET diff = '{{\"reason\":\"nothing to see\"}}' \
             WHERE tenant = '{}' AND seq = 2",
            server.tenant.tenant
        ))
        .await;
    let verification: AuditVerification = get_json(&base, "/v1/audit/verify", &admin.token).await;
    assert!(!verification.ok);
    let broken = verification.broken.unwrap();
    assert_eq!(broken.seq, 2, "{broken:?}");
    assert!(
        broken.reason.contains("does not match its hash"),
        "{broken:?}"
    );
    let trail: JourneyTrail = get_json(&base, &path, &dispatcher.token).await;
    assert_eq!(
        audit::verify_trail(trail.entries, trail.head)
            .unwrap_err()
            .seq,
        2
    );
    server.shutdown().await;
}

// ----- F11: tampering through a direct connection --------------------------------

/// A connection to the server's database that bypasses the server.
enum Direct {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Direct {
    async fn postgres(url: &str) -> Self {
        Direct::Postgres(sqlx::PgPool::connect(url).await.unwrap())
    }

    async fn sqlite(file: &std::path::Path) -> Self {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(file)
            .busy_timeout(WAIT);
        Direct::Sqlite(sqlx::SqlitePool::connect_with(options).await.unwrap())
    }

    /// Runs SQL text (test-made, no user input) as is.
    async fn run(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Direct::Postgres(pool) => {
                sqlx::raw_sql(sql).execute(pool).await.unwrap();
            }
            Direct::Sqlite(pool) => {
                sqlx::raw_sql(sql).execute(pool).await.unwrap();
            }
        }
    }
}

const TAMPER_ENTRIES: u64 = 10;

/// Five appends of two changes: entries 1..=10, odd ones about `a`, even about `b`.
async fn fill(storage: &dyn Storage, tenant: &str, a: JourneyId, b: JourneyId) {
    for round in 0..TAMPER_ENTRIES / 2 {
        let batch: Vec<NewChange> = [a, b]
            .into_iter()
            .map(|journey| {
                let label = format!("{tenant}-{round}-{journey}");
                NewChange {
                    journey,
                    hash: Digest(sha(&label)).as_bytes().to_vec(),
                    actor: vec![1; 16],
                    device: DeviceId::new(),
                    bytes: label.clone().into_bytes(),
                    audit: ChangeAudit {
                        user: Some(UserId::new()),
                        device: None,
                        location: Some(LocationId::new()),
                        diff: serde_json::json!({"label": label, "touched": ["entry added"]}),
                        device_time: Some(1_700_000_000_000),
                    },
                }
            })
            .collect();
        storage.append(tenant, &batch).await.unwrap();
    }
}

fn sha(text: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// What the server says of its chain, and what a client holding `held` says.
async fn verdicts(
    storage: &Arc<dyn Storage>,
    tenant: &str,
    held: audit::ChainHead,
) -> (Option<audit::Broken>, Option<audit::Broken>) {
    let stored = verify_stored(storage, tenant).await.unwrap();
    let chain = storage.audit_since(tenant, 0, u32::MAX).await.unwrap();
    let client = audit::verify_chain(chain, Some(held)).err();
    assert_eq!(stored.ok, stored.broken.is_none());
    (stored.broken, client)
}

fn assert_broken(found: &Option<audit::Broken>, seq: u64, words: &str) {
    let broken = found.as_ref().expect("verification reports the tampering");
    assert_eq!(broken.seq, seq, "{broken:?}");
    assert!(broken.reason.contains(words), "{broken:?}");
}

/// Every column but `seq`, for swapping two rows' contents.
const CONTENT: &str = "location_id, user_id, device_id, action, entity, entity_id, diff, \
    server_time, device_time, prev_hash, entity_prev_hash, hash";

/// F11 on one backend: each kind of tampering in a tenant of its own.
async fn tampering_is_named_at_the_first_broken_entry(storage: Arc<dyn Storage>, direct: Direct) {
    let tenants = [
        "untouched",
        "edited",
        "deleted",
        "swapped",
        "truncated",
        "covered",
    ];
    let (a, b) = (JourneyId::new(), JourneyId::new());
    let mut held = Vec::new();
    for tenant in tenants {
        fill(storage.as_ref(), tenant, a, b).await;
        // What a client received before the tampering.
        let head = storage.audit_head(tenant).await.unwrap().unwrap();
        assert_eq!(head.seq, TAMPER_ENTRIES);
        held.push(head);
    }
    let trail_b_before = storage
        .audit_trail("deleted", "journey", &b.to_string())
        .await
        .unwrap();
    let trail_b_head = trail_b_before.last().unwrap().head();

    direct
        .run(
            "UPDATE audit_log SET diff = '{\"label\":\"forged\",\"touched\":[]}' \
             WHERE tenant = 'edited' AND seq = 4;
             DELETE FROM audit_log WHERE tenant = 'deleted' AND seq = 6;
             DELETE FROM audit_log WHERE tenant IN ('truncated', 'covered') AND seq > 7;",
        )
        .await;
    // Swap the contents of entries 3 and 7 (3 + 7 = 10).
    direct
        .run(&format!(
            "CREATE TEMP TABLE swap_copy AS SELECT * FROM audit_log WHERE tenant = 'swapped' AND seq IN (3, 7);
             UPDATE audit_log SET ({CONTENT}) = (SELECT {CONTENT} FROM swap_copy c WHERE c.seq = 10 - audit_log.seq)
             WHERE tenant = 'swapped' AND seq IN (3, 7);
             DROP TABLE swap_copy;"
        ))
        .await;
    // Cover the truncation: move the stored head back to entry 7.
    direct
        .run(
            "UPDATE log_heads SET audit_seq = 7,
                 audit_hash = (SELECT hash FROM audit_log WHERE tenant = 'covered' AND seq = 7)
             WHERE tenant = 'covered';",
        )
        .await;

    let (server, client) = verdicts(&storage, "untouched", held[0]).await;
    assert_eq!(
        (server, client),
        (None, None),
        "an untampered chain verifies"
    );

    let (server, client) = verdicts(&storage, "edited", held[1]).await;
    assert_broken(
        &server,
        4,
        "entry 4's content does not match its hash (edited?)",
    );
    assert_broken(&client, 4, "does not match its hash");
    let trail = storage
        .audit_trail("edited", "journey", &b.to_string())
        .await
        .unwrap();
    let head = trail.last().unwrap().head();
    assert_broken(&audit::verify_trail(trail, head).err(), 4, "does not match");

    let (server, client) = verdicts(&storage, "deleted", held[2]).await;
    assert_broken(&server, 6, "entry 6 is missing (deleted?)");
    assert_broken(&client, 6, "entry 6 is missing (deleted?)");
    // The journey's trail alone shows it too: entry 8 no longer follows entry 4.
    let trail = storage
        .audit_trail("deleted", "journey", &b.to_string())
        .await
        .unwrap();
    assert_broken(
        &audit::verify_trail(trail, trail_b_head).err(),
        8,
        "does not link to entry 4",
    );

    let (server, client) = verdicts(&storage, "swapped", held[3]).await;
    assert_broken(&server, 3, "does not match its hash");
    assert_broken(&client, 3, "does not match its hash");

    let (server, client) = verdicts(&storage, "truncated", held[4]).await;
    assert_broken(
        &server,
        8,
        "the chain ends at 7 but the head you hold is 10 (truncated?)",
    );
    assert_broken(&client, 8, "(truncated?)");

    // With the stored head moved back too, the server's own check cannot tell; the
    // head a client received earlier still does.
    let (server, client) = verdicts(&storage, "covered", held[5]).await;
    assert_eq!(server, None);
    assert_broken(
        &client,
        8,
        "the chain ends at 7 but the head you hold is 10",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_postgres_is_detected() {
    let db = tokio::task::spawn_blocking(|| {
        crewsync_testkit::postgres::shared_cluster()
            .unwrap()
            .fresh_database()
            .unwrap()
    })
    .await
    .unwrap();
    let storage = crewsync_server::storage::postgres::PostgresStorage::connect(&db.url)
        .await
        .unwrap();
    let direct = Direct::postgres(&db.superuser_url).await;
    tampering_is_named_at_the_first_broken_entry(Arc::new(storage), direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_the_sqlite_file_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crewsync.sqlite3");
    let storage = crewsync_server::storage::sqlite::SqliteStorage::open(&file)
        .await
        .unwrap();
    let direct = Direct::sqlite(&file).await;
    tampering_is_named_at_the_first_broken_entry(Arc::new(storage), direct).await;
}

// ----- F12: concurrency on Postgres ----------------------------------------------

const WRITERS: usize = 8;

async fn postgres_db() -> crewsync_testkit::postgres::TestDatabase {
    tokio::task::spawn_blocking(|| {
        crewsync_testkit::postgres::shared_cluster()
            .unwrap()
            .fresh_database()
            .unwrap()
    })
    .await
    .unwrap()
}

fn admin_record(label: &str) -> AuditRecord {
    AuditRecord {
        location: None,
        user: Some(UserId::new()),
        device: None,
        action: "test.write".into(),
        entity: "writer".into(),
        entity_id: label.to_owned(),
        diff: serde_json::json!({ "label": label }),
        server_time: 1_700_000_000_000,
        device_time: None,
    }
}

fn fresh_change(journey: JourneyId, label: &str) -> NewChange {
    NewChange {
        journey,
        hash: sha(label).to_vec(),
        actor: vec![2; 16],
        device: DeviceId::new(),
        bytes: label.as_bytes().to_vec(),
        audit: ChangeAudit {
            user: Some(UserId::new()),
            device: None,
            location: None,
            diff: serde_json::json!({ "label": label }),
            device_time: None,
        },
    }
}

/// 8 writers in one tenant on two "servers" (two storages, two pools, one
/// database) and a second tenant written at the same time: appends and admin
/// entries interleave, and each tenant's chain is whole, unforked and its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_two_servers_never_fork_a_chain() {
    use crewsync_server::storage::postgres::PostgresStorage;
    const ROUNDS: usize = 12;
    let db = postgres_db().await;
    let servers: Vec<Arc<dyn Storage>> = vec![
        Arc::new(PostgresStorage::connect(&db.url).await.unwrap()),
        Arc::new(PostgresStorage::connect(&db.url).await.unwrap()),
    ];
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS + 2));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS + 2 {
        let storage = Arc::clone(&servers[writer % 2]);
        let start = Arc::clone(&start);
        let tenant = if writer < WRITERS { "one" } else { "two" };
        tasks.push(tokio::spawn(async move {
            let journey = JourneyId::new();
            start.wait().await;
            for round in 0..ROUNDS {
                let label = format!("w{writer}-r{round}");
                if round % 4 == 3 {
                    storage
                        .record_audit(tenant, &[admin_record(&label)])
                        .await
                        .unwrap();
                } else {
                    let batch = [
                        fresh_change(journey, &format!("{label}-a")),
                        fresh_change(journey, &format!("{label}-b")),
                    ];
                    storage.append(tenant, &batch).await.unwrap();
                }
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(WAIT * 6, task).await.unwrap().unwrap();
    }
    let per_writer = ROUNDS / 4 * 3 * 2 + ROUNDS / 4;
    for (tenant, writers) in [("one", WRITERS), ("two", 2)] {
        let chain = servers[0].audit_since(tenant, 0, u32::MAX).await.unwrap();
        let head = servers[1].audit_head(tenant).await.unwrap();
        let verified = audit::verify_chain(chain.clone(), head).unwrap();
        assert_eq!(verified.entries as usize, writers * per_writer, "{tenant}");
        assert_eq!(verified.head, head);
        assert!(chain.iter().all(|e| e.tenant == tenant));
        // Each writer's journey trail verifies on its own.
        let journeys: std::collections::BTreeSet<String> = chain
            .iter()
            .filter(|e| e.entity == "journey")
            .map(|e| e.entity_id.clone())
            .collect();
        assert_eq!(journeys.len(), writers);
        for journey in journeys {
            let trail = servers[1]
                .audit_trail(tenant, "journey", &journey)
                .await
                .unwrap();
            let head = trail.last().unwrap().head();
            audit::verify_trail(trail, head).unwrap();
        }
    }
}

/// The control for F12: writers that read the chain head without the tenant's lock
/// (a plausible bug: read, compute, insert, and on a duplicate seq retry with the
/// next number) all build on the same entry. The unique `(tenant, seq)` refuses
/// the duplicate numbers, the retries get in, and the checker names the fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_without_the_lock_fork_the_chain_and_verification_catches_it() {
    use crewsync_server::storage::postgres::PostgresStorage;
    let db = postgres_db().await;
    let storage: Arc<dyn Storage> = Arc::new(PostgresStorage::connect(&db.url).await.unwrap());
    storage
        .record_audit("racy", &[admin_record("genesis")])
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&db.superuser_url).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (pool, barrier) = (pool.clone(), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            unlocked_append(&pool, "racy", &format!("w{writer}"), &barrier).await
        }));
    }
    let mut duplicates = 0;
    for task in tasks {
        duplicates += tokio::time::timeout(WAIT * 6, task).await.unwrap().unwrap();
    }
    assert!(duplicates > 0, "the writers raced for the same number");
    let chain = storage.audit_since("racy", 0, u32::MAX).await.unwrap();
    assert_eq!(chain.len(), WRITERS + 1, "every writer got in");
    let broken = audit::verify_chain(chain, None).unwrap_err();
    assert_eq!(broken.seq, 3, "{broken:?}");
    assert!(
        broken.reason.contains("does not link to entry 2"),
        "{broken:?}"
    );

    // The same start through the storage (the lock) gives a chain that verifies.
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (storage, barrier) = (Arc::clone(&storage), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            storage
                .record_audit("locked", &[admin_record(&format!("w{writer}"))])
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        tokio::time::timeout(WAIT * 6, task).await.unwrap().unwrap();
    }
    let chain = storage.audit_since("locked", 0, u32::MAX).await.unwrap();
    let head = storage.audit_head("locked").await.unwrap();
    assert_eq!(
        audit::verify_chain(chain, head).unwrap().entries,
        WRITERS as u64
    );
}

/// The broken append path of the control, in test code only: reads the latest
/// entry without locking, waits until every writer has read it, then inserts
/// after it, retrying the next number on a duplicate. Returns the duplicates hit.
async fn unlocked_append(
    pool: &sqlx::PgPool,
    tenant: &str,
    label: &str,
    barrier: &tokio::sync::Barrier,
) -> u32 {
    let (seq, hash): (i64, Vec<u8>) = sqlx::query_as(
        "SELECT seq, hash FROM audit_log WHERE tenant = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await
    .unwrap();
    barrier.wait().await;
    let prev = Digest::from_slice(&hash).unwrap();
    let mut duplicates = 0;
    // Bounded: each retry moves to the next number, and there are 8 writers.
    for next in (seq + 1)..(seq + 1 + 2 * WRITERS as i64) {
        let entry = AuditEntry::seal(
            tenant,
            u64::try_from(next).unwrap(),
            admin_record(label),
            prev,
            Digest::ZERO,
        );
        let inserted = sqlx::query(
            "INSERT INTO audit_log (tenant, seq, location_id, user_id, device_id, action, entity,
                 entity_id, diff, server_time, device_time, prev_hash, entity_prev_hash, hash)
             VALUES ($1, $2, NULL, $3, NULL, $4, $5, $6, $7, $8, NULL, $9, $10, $11)",
        )
        .bind(tenant)
        .bind(next)
        .bind(entry.user.map(|u| u.as_uuid()))
        .bind(&entry.action)
        .bind(&entry.entity)
        .bind(&entry.entity_id)
        .bind(entry.diff.to_string())
        .bind(entry.server_time)
        .bind(entry.prev_hash.as_bytes().as_slice())
        .bind(entry.entity_prev_hash.as_bytes().as_slice())
        .bind(entry.hash.as_bytes().as_slice())
        .execute(pool)
        .await;
        match inserted {
            Ok(_) => return duplicates,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => duplicates += 1,
            Err(e) => panic!("insert: {e}"),
        }
    }
    panic!("{label} found no free number");
}
