//! Device schema migrations: a store upgraded from any earlier version with data equals
//! a fresh one ("upgraded == fresh"), and a store from a newer app is refused.
#![allow(clippy::unwrap_used)]

mod common;

use common::{crew_journey, day, device, toronto};
use crewsync_core::model::{GpsPoint, NewEntry, Role, Stage, Timestamp};
use crewsync_core::store::migrations::{LATEST_VERSION, migrations};
use crewsync_core::{DeviceStore, Error, StoreOptions};
use rusqlite::Connection;

/// The schema of every released version, frozen (not rebuilt from the migrations,
/// which could have been edited since).
fn released_schema(version: usize) -> &'static str {
    match version {
        1 => include_str!("fixtures/device_schema_v1.sql"),
        2 => include_str!("fixtures/device_schema_v2.sql"),
        3 => include_str!("fixtures/device_schema_v3.sql"),
        v => {
            panic!("add tests/fixtures/device_schema_v{v}.sql, a frozen copy of the schema at v{v}")
        }
    }
}

fn schema(conn: &Connection) -> Vec<(String, String, String)> {
    let mut stmt = conn
        .prepare("SELECT type, name, coalesce(sql, '') FROM sqlite_master ORDER BY type, name")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn tables(conn: &Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn columns(conn: &Connection, table: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_info({table})"))
        .unwrap();
    stmt.query_map([], |r| r.get(1))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn upgraded_equals_fresh_from_every_earlier_version_with_data() {
    // A store at the latest version, with data in every kind of row.
    let d = device(Role::Driver);
    let j = crew_journey(&d, &[]);
    d.store.advance_stage(j, Stage::EnRoute).unwrap();
    d.store
        .add_entry(j, NewEntry::note("packed the piano"))
        .unwrap();
    d.store
        .record_gps_point(
            j,
            GpsPoint {
                lat: 43.7,
                lon: -79.4,
                accuracy_m: Some(4.0),
                at: Timestamp(1),
            },
        )
        .unwrap();
    let fresh_schema = schema(&Connection::open(d.store.path()).unwrap());
    let (view, outbox, track) = (
        d.store.journey(j).unwrap(),
        d.store.outbox(100).unwrap(),
        d.store.gps_track(j).unwrap(),
    );
    let listed = d.store.list_journeys(toronto().id, day()).unwrap();

    for version in 1..LATEST_VERSION {
        let dir = tempfile::tempdir().unwrap();
        let old_path = dir.path().join("old.sqlite");
        {
            let old = Connection::open(&old_path).unwrap();
            old.execute_batch(released_schema(version)).unwrap();
            old.pragma_update(None, "user_version", version as i64)
                .unwrap();
            old.execute(
                "ATTACH DATABASE ?1 AS src",
                [d.store.path().to_str().unwrap()],
            )
            .unwrap();
            for table in tables(&old) {
                let cols = columns(&old, &table).join(", ");
                old.execute(
                    &format!("INSERT INTO main.{table} ({cols}) SELECT {cols} FROM src.{table}"),
                    [],
                )
                .unwrap();
            }
            old.execute("DETACH DATABASE src", []).unwrap();
            let user_version: i64 = old
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(user_version, version as i64);
        }

        let upgraded = DeviceStore::open(&old_path, StoreOptions::default()).unwrap();
        upgraded.set_active_user(Some(d.user.clone())).unwrap();
        let conn = Connection::open(&old_path).unwrap();
        assert_eq!(
            schema(&conn),
            fresh_schema,
            "upgraded from v{version} differs from fresh"
        );
        let user_version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(user_version, LATEST_VERSION as i64);
        assert_eq!(upgraded.journey(j).unwrap(), view, "v{version}");
        assert_eq!(upgraded.outbox(100).unwrap(), outbox, "v{version}");
        assert_eq!(upgraded.gps_track(j).unwrap(), track, "v{version}");
        assert_eq!(
            upgraded.list_journeys(toronto().id, day()).unwrap(),
            listed,
            "v{version}"
        );
        assert_eq!(upgraded.device_id(), d.store.device_id());
        upgraded
            .add_entry(j, NewEntry::note("written after the upgrade"))
            .unwrap();
        upgraded.integrity_check().unwrap();
    }
}

#[test]
fn every_migration_runs_and_the_definitions_are_valid() {
    migrations().validate().unwrap();
    let mut conn = Connection::open_in_memory().unwrap();
    for version in 1..=LATEST_VERSION {
        migrations().to_version(&mut conn, version).unwrap();
    }
}

#[test]
fn a_store_written_by_a_newer_app_is_refused_not_guessed_at() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.sqlite");
    DeviceStore::open(&path, StoreOptions::default()).unwrap();
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", LATEST_VERSION as i64 + 1)
        .unwrap();
    let err = DeviceStore::open(&path, StoreOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Migration(_)), "{err}");
}
