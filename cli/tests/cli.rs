//! The `crewsync` binary on real device stores and a real server on 127.0.0.1,
//! with real conflicts made by devices editing offline (issue 7 point 5).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crewsync_core::ids::{ClientId, DeviceId, JourneyId, LocationId, UserId};
use crewsync_core::model::{NewJourney, Role};
use crewsync_core::{DeviceStore, JourneyAction, StoreOptions};
use crewsync_server::testing::{EmbeddedTestDb, TestDevice, TestTenant, serve};
use serde_json::Value;

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

fn crewsync(args: &[&str]) -> Ran {
    let out = Command::new(env!("CARGO_BIN_EXE_crewsync"))
        .args(args)
        .env_remove("CREWSYNC_TOKEN")
        .output()
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------- device stores

fn office_store(
    dir: &Path,
    name: &str,
    location: &crewsync_core::model::Location,
) -> (Arc<DeviceStore>, UserId) {
    let store = DeviceStore::open(dir.join(name), StoreOptions::default()).unwrap();
    store.upsert_location(location).unwrap();
    let user = UserId::new();
    // Signed in as a dispatcher (the tokens are never used: no server here).
    store
        .save_sign_in(
            &crewsync_core::sync::auth::TokenResponse {
                access_token: "a.b.c".into(),
                token_type: "Bearer".into(),
                expires_in: 900,
                refresh_token: "r".into(),
                session_id: uuid::Uuid::now_v7(),
                user: crewsync_core::sync::auth::UserView {
                    id: user,
                    tenant: location.client_id,
                    location_id: location.id,
                    name: format!("dispatcher {name}"),
                    email: format!("{name}@test.example"),
                    role: Role::Dispatcher,
                },
            },
            true,
        )
        .unwrap();
    (store, user)
}

fn send(from: &DeviceStore, to: &DeviceStore, journey: JourneyId) {
    let heads = to.heads(journey).unwrap_or_default();
    to.apply_remote_changes(journey, from.changes_since(journey, &heads).unwrap())
        .unwrap();
}

#[test]
fn store_commands_report_real_conflicts_and_restore_a_kept_value() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = ClientId::new();
    let location = crewsync_core::model::Location {
        id: LocationId::new(),
        client_id: tenant,
        name: "DOWNTOWN TORONTO".into(),
        timezone: "America/Toronto".into(),
    };
    let (a, user_a) = office_store(dir.path(), "a.sqlite", &location);
    let (b, user_b) = office_store(dir.path(), "b.sqlite", &location);
    let j = a
        .create_journey(&NewJourney {
            id: None,
            client_id: tenant,
            location_id: location.id,
            date: chrono::Utc::now().date_naive(),
            truck_number: Some("T-12".into()),
            move_source_id: None,
            steps_requiring_approval: Vec::new(),
        })
        .unwrap();
    send(&a, &b, j);
    a.set_truck_number(j, Some("T-40".into())).unwrap();
    b.set_truck_number(j, Some("T-77".into())).unwrap();
    let (pa, pb) = (a.path().to_owned(), b.path().to_owned());

    // Before they meet, the replicas differ: exit 1, each lacks the other's change.
    let diff = crewsync(&["--json", "diff", path(&pa), path(&pb)]);
    assert_eq!(diff.code, 1, "{}", diff.stderr);
    let report = diff.json();
    assert_eq!(report[0]["status"], "differ");
    assert_eq!(report[0]["diff"]["only_in_a"].as_array().unwrap().len(), 1);
    assert_eq!(report[0]["diff"]["only_in_b"].as_array().unwrap().len(), 1);
    let fields = report[0]["diff"]["fields"].as_array().unwrap();
    assert!(
        fields
            .iter()
            .any(|f| f["path"] == "truck_number" && f["a"] == "T-40" && f["b"] == "T-77")
    );

    send(&a, &b, j);
    send(&b, &a, j);
    let same = crewsync(&["diff", path(&pa), path(&pb)]);
    assert_eq!(same.code, 0, "{}{}", same.stdout, same.stderr);
    assert!(same.stdout.contains("same"));

    // The conflict, as JSON: both values, their writers, the current one.
    let ran = crewsync(&["--json", "conflicts", "--store", path(&pa)]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let report = ran.json();
    let conflicts = report[0]["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1);
    let truck = &conflicts[0];
    assert_eq!(truck["path"], serde_json::json!(["truck_number"]));
    assert_eq!(truck["policy"], "dispatcher_wins");
    let values = truck["values"].as_array().unwrap();
    let shown = a.journey(j).unwrap().truck_number.unwrap();
    assert_eq!(values[0]["value"], shown.as_str());
    assert_eq!(values[0]["current"], true);
    for value in values {
        let writer = value["writer"]["u"].as_str().unwrap();
        let expected = if value["value"] == "T-40" {
            user_a
        } else {
            user_b
        };
        assert_eq!(writer, expected.to_string());
    }
    // A store has no server times.
    assert!(
        truck["server_times_ms"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_null)
    );

    // As a table: the field, its policy, why.
    let table = crewsync(&["conflicts", "--store", path(&pa)]);
    assert_eq!(table.code, 0);
    assert!(table.stdout.contains("truck_number") && table.stdout.contains("why:"));
    assert!(
        !table.stdout.contains('\u{1b}'),
        "no colour when not on a terminal"
    );

    // History of the field: creation and the two concurrent writes.
    let history = crewsync(&[
        "--json",
        "history",
        "--store",
        path(&pa),
        &j.to_string(),
        "--field",
        "truck_number",
    ]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    let actions: Vec<String> = history
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| *a == "set_truck_number").count(),
        2,
        "{actions:?}"
    );
    assert_eq!(actions.len(), 3, "{actions:?}");

    // Restore the kept value: it becomes current and the conflict is gone.
    let loser = values.iter().find(|v| v["current"] == false).unwrap();
    let restored_value = loser["value"].as_str().unwrap().to_owned();
    drop((a, b));
    let restore = crewsync(&[
        "conflicts",
        "restore",
        "--store",
        path(&pa),
        "--journey",
        &j.to_string(),
        "--field",
        "truck_number",
        "--op",
        loser["op"].as_str().unwrap(),
    ]);
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    let inspect = crewsync(&["inspect", "--store", path(&pa), &j.to_string()]);
    assert_eq!(inspect.json()["truck_number"], restored_value.as_str());
    let after = crewsync(&["--json", "conflicts", "--store", path(&pa)]);
    assert_eq!(after.json(), serde_json::json!([]));
    // Restoring again: the field holds one value now.
    let again = crewsync(&[
        "conflicts",
        "restore",
        "--store",
        path(&pa),
        "--journey",
        &j.to_string(),
        "--field",
        "truck_number",
        "--op",
        loser["op"].as_str().unwrap(),
    ]);
    assert_eq!(again.code, 3, "{}", again.stderr);

    // Bad input: clear errors and exit codes, nothing created.
    let missing = dir.path().join("nope.sqlite");
    let ran = crewsync(&["conflicts", "--store", path(&missing)]);
    assert_eq!(ran.code, 2);
    assert!(ran.stderr.contains("nope.sqlite"), "{}", ran.stderr);
    assert!(!missing.exists(), "a typo must not create a store");
    let not_a_store = dir.path().join("notes.txt");
    std::fs::write(&not_a_store, "hello").unwrap();
    let ran = crewsync(&["conflicts", "--store", path(&not_a_store)]);
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr.contains("not a crewsync device store"),
        "{}",
        ran.stderr
    );
    let ran = crewsync(&["inspect", "--store", path(&pa), "not-a-uuid"]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    let ran = crewsync(&[
        "inspect",
        "--store",
        path(&pa),
        &JourneyId::new().to_string(),
    ]);
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    let ran = crewsync(&["conflicts"]);
    assert_eq!(ran.code, 2);
    assert!(ran.stderr.contains("--store"), "{}", ran.stderr);
}

// ---------------------------------------------------------------------- server

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_commands_name_writers_with_server_times_and_verify_the_audit_chain() {
    let db = EmbeddedTestDb::create(ClientId::new(), LocationId::new())
        .await
        .unwrap();
    let tenant: &TestTenant = &db.tenant;
    let url = serve(&db.storage, tenant).await;
    let office = TestDevice::of(tenant, tenant.user(Role::Dispatcher), &url).await;
    let manager = TestDevice::of(tenant, tenant.user(Role::Manager), &url).await;
    let mover = TestDevice::of(tenant, tenant.user(Role::Mover), &url).await;
    let j = office
        .store
        .create_journey(&NewJourney {
            id: None,
            client_id: tenant.tenant,
            location_id: tenant.location.id,
            date: chrono::Utc::now().date_naive(),
            truck_number: Some("T-12".into()),
            move_source_id: None,
            steps_requiring_approval: Vec::new(),
        })
        .unwrap();
    office
        .store
        .assign_crew(j, mover.user.id, Role::Mover)
        .unwrap();
    office.sync.sync_now().await.unwrap();
    manager.sync.sync_now().await.unwrap();
    mover.sync.sync_now().await.unwrap();
    // Concurrent truck changes, and a mover's change the server refuses.
    office
        .store
        .set_truck_number(j, Some("T-40".into()))
        .unwrap();
    manager
        .store
        .set_truck_number(j, Some("T-77".into()))
        .unwrap();
    mover
        .store
        .apply_unchecked(
            j,
            &JourneyAction::SetTruckNumber {
                truck_number: Some("T-0".into()),
            },
        )
        .unwrap();
    for device in [&office, &manager, &mover, &office] {
        device.sync.sync_now().await.unwrap();
    }
    let token = tenant
        .sign_in(Role::Dispatcher, DeviceId::new())
        .await
        .unwrap()
        .access_token;
    let auditor = tenant
        .sign_in(Role::Auditor, DeviceId::new())
        .await
        .unwrap()
        .access_token;
    let (url_s, j_s) = (url.as_str(), j.to_string());

    let ran = crewsync_async(&[
        "--json",
        "conflicts",
        "--server",
        url_s,
        "--token",
        &token,
        "--journey",
        &j_s,
    ])
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let report = ran.json();
    let truck = &report[0]["conflicts"][0];
    assert_eq!(truck["path"], serde_json::json!(["truck_number"]));
    let roles: Vec<&str> = truck["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["writer"]["r"].as_str().unwrap())
        .collect();
    assert!(
        roles.contains(&"DISPATCHER") && roles.contains(&"MANAGER"),
        "{roles:?}"
    );
    assert!(
        truck["server_times_ms"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_i64),
        "the server's receipt time of each value: {truck}"
    );

    let history = crewsync_async(&[
        "--json", "history", "--server", url_s, "--token", &token, &j_s,
    ])
    .await;
    assert_eq!(history.code, 0, "{}", history.stderr);
    assert!(
        history
            .json()
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["server_time_ms"].is_i64())
    );

    // The office device and the server hold the same journey.
    let diff = crewsync_async(&[
        "diff",
        path(office.store.path()),
        url_s,
        "--token",
        &token,
        "--journey",
        &j_s,
    ])
    .await;
    assert_eq!(diff.code, 0, "{}{}", diff.stdout, diff.stderr);

    // The refusal, on the server and on the mover's device.
    let held = crewsync_async(&[
        "--json",
        "quarantine",
        "--server",
        url_s,
        "--token",
        &token,
        "--journey",
        &j_s,
    ])
    .await;
    assert_eq!(held.code, 0, "{}", held.stderr);
    let held = held.json();
    assert_eq!(held.as_array().unwrap().len(), 1, "{held}");
    assert_eq!(held[0]["kind"], "rejected");
    let on_device = crewsync_async(&[
        "--json",
        "quarantine",
        "--store",
        path(mover.store.path()),
        "--journey",
        &j_s,
    ])
    .await;
    assert_eq!(on_device.json()[0]["change"], held[0]["change"]);

    // The audit chain verifies; the head is kept for next time.
    let head_file = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&head_file).unwrap();
    let verify = crewsync_async(&[
        "audit",
        "verify",
        "--server",
        url_s,
        "--token",
        &auditor,
        "--head-file",
        path(&head_file),
    ])
    .await;
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    assert!(head_file.exists());
    let journey = crewsync_async(&[
        "audit",
        "verify",
        "--server",
        url_s,
        "--token",
        &token,
        "--journey",
        &j_s,
    ])
    .await;
    assert_eq!(journey.code, 0, "{}", journey.stderr);

    // Tamper with one stored entry: verification names it and exits 1.
    let file = db
        .dir
        .path()
        .join(crewsync_server::storage::sqlite::DEFAULT_FILE_NAME);
    let conn = rusqlite::Connection::open(&file).unwrap();
    conn.execute(
        "UPDATE audit_log SET diff = '{\"forged\":true}' WHERE seq = 2",
        [],
    )
    .unwrap();
    drop(conn);
    let broken = crewsync_async(&[
        "audit",
        "verify",
        "--server",
        url_s,
        "--token",
        &auditor,
        "--head-file",
        path(&head_file),
    ])
    .await;
    assert_eq!(broken.code, 1, "{}{}", broken.stdout, broken.stderr);
    assert!(broken.stderr.contains("entry 2"), "{}", broken.stderr);

    // Bad tokens and servers: clear errors, distinct exit codes.
    let ran = crewsync_async(&["conflicts", "--server", url_s, "--token", "abc"]).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    let forged = format!("{}x", token);
    let ran = crewsync_async(&[
        "conflicts",
        "--server",
        url_s,
        "--token",
        &forged,
        "--journey",
        &j_s,
    ])
    .await;
    assert_eq!(ran.code, 4, "{}", ran.stderr);
    assert!(ran.stderr.contains("refused the token"), "{}", ran.stderr);
    let ran = crewsync_async(&[
        "conflicts",
        "--server",
        "http://127.0.0.1:1",
        "--token",
        &token,
        "--journey",
        &j_s,
    ])
    .await;
    assert_eq!(ran.code, 4, "{}", ran.stderr);
    let ran = crewsync_async(&[
        "conflicts",
        "--server",
        url_s,
        "--token",
        &token,
        "--journey",
        &JourneyId::new().to_string(),
    ])
    .await;
    assert_eq!(ran.code, 3, "{}", ran.stderr);
}

/// Runs the CLI off the test's runtime threads (the server runs on them).
async fn crewsync_async(args: &[&str]) -> Ran {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crewsync(&args)
    })
    .await
    .unwrap()
}
