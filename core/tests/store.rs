//! The device store on disk: reopening, actor ids, compaction, received changes, the outbox.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{crew_journey, day, device, device_with, new_journey, toronto};
use crewsync_core::model::{NewEntry, Role, Stage};
use crewsync_core::{DeviceStore, Error, StoreOptions};

fn reopen(d: &common::Device) -> Arc<DeviceStore> {
    let store = DeviceStore::open(d.store.path(), StoreOptions::default()).unwrap();
    store.set_active_user(Some(d.user.clone())).unwrap();
    store
}

fn change_rows(store: &DeviceStore) -> i64 {
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    conn.query_row("SELECT count(*) FROM doc_changes", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn reopening_restores_everything_under_a_fresh_actor() {
    let d = device(Role::Driver);
    let j = crew_journey(&d, &[]);
    d.store
        .add_entry(j, NewEntry::note("before restart"))
        .unwrap();
    let (view, heads, first_actor) = (
        d.store.journey(j).unwrap(),
        d.store.heads(j).unwrap(),
        d.store.actor_id(),
    );

    let again = reopen(&d);
    assert_eq!(again.journey(j).unwrap(), view);
    assert_eq!(again.heads(j).unwrap(), heads);
    assert_eq!(
        again.device_id(),
        d.store.device_id(),
        "the install keeps its device id"
    );
    assert_ne!(
        again.actor_id(),
        first_actor,
        "every open writes with a fresh actor id"
    );

    again.add_entry(j, NewEntry::note("after restart")).unwrap();
    let outbox = again.outbox(10).unwrap();
    let last = automerge::Change::from_bytes(outbox.last().unwrap().bytes.clone()).unwrap();
    assert_eq!(last.actor_id().to_hex_string(), again.actor_id());
    assert_eq!(last.seq(), 1, "a fresh actor starts its own sequence");
}

#[test]
fn compaction_folds_changes_into_a_snapshot_without_losing_any() {
    let d = device_with(
        Role::Driver,
        StoreOptions {
            compact_after_changes: 5,
            ..StoreOptions::default()
        },
    );
    let j = crew_journey(&d, &[]);
    for i in 0..23 {
        d.store
            .add_entry(j, NewEntry::note(format!("entry {i}")))
            .unwrap();
    }
    assert!(
        change_rows(&d.store) < 5,
        "compaction ran and deleted folded rows"
    );
    assert_eq!(
        d.store.outbox_len().unwrap(),
        25,
        "compaction never touches the outbox"
    );
    let view = d.store.journey(j).unwrap();
    assert_eq!(view.entries.len(), 23);

    let again = reopen(&d);
    assert_eq!(again.journey(j).unwrap(), view);
    assert_eq!(again.heads(j).unwrap(), d.store.heads(j).unwrap());
    assert_eq!(again.compact(j).unwrap(), 0);
    assert_eq!(change_rows(&again), 0);
    assert_eq!(reopen(&d).journey(j).unwrap(), view);
}

#[test]
fn received_changes_are_idempotent_and_held_until_their_dependencies_arrive() {
    let office = device(Role::Dispatcher);
    let crew = device(Role::Driver);
    let j = office
        .store
        .create_journey(&new_journey(&toronto(), day()))
        .unwrap();
    let creation = office.store.changes_since(j, &[]).unwrap();
    let after_creation = office.store.heads(j).unwrap();
    office.store.add_entry(j, NewEntry::note("one")).unwrap();
    let after_one = office.store.heads(j).unwrap();
    office.store.add_entry(j, NewEntry::note("two")).unwrap();
    let one = office.store.changes_since(j, &after_creation).unwrap()[..1].to_vec();
    let two = office.store.changes_since(j, &after_one).unwrap();

    // "two" arrives first: stored and held, not dropped, and not shown yet.
    let applied = crew.store.apply_remote_changes(j, two.clone()).unwrap();
    assert_eq!(
        applied,
        crewsync_core::store::RemoteApplied { new: 1, held: 1 }
    );
    assert!(
        crew.store
            .list_journeys(toronto().id, day())
            .unwrap()
            .is_empty()
    );

    // A restart in between loses nothing.
    let crew_again = reopen(&crew);
    let applied = crew_again
        .apply_remote_changes(j, creation.clone())
        .unwrap();
    assert_eq!(applied.new, 1);
    assert_eq!(
        crew_again.compact(j).unwrap(),
        1,
        "the held change keeps its row through compaction"
    );
    crew_again.apply_remote_changes(j, one).unwrap();
    assert_eq!(
        crew_again.journey(j).unwrap(),
        office.store.journey(j).unwrap()
    );
    assert_eq!(crew_again.heads(j).unwrap(), office.store.heads(j).unwrap());

    // Re-delivery of everything is a no-op.
    let heads = crew_again.heads(j).unwrap();
    let applied = crew_again
        .apply_remote_changes(j, office.store.changes_since(j, &[]).unwrap())
        .unwrap();
    assert_eq!(
        applied,
        crewsync_core::store::RemoteApplied { new: 0, held: 0 }
    );
    assert_eq!(crew_again.heads(j).unwrap(), heads);
    assert_eq!(
        crew_again.outbox_len().unwrap(),
        0,
        "received changes are not ours to send"
    );
    assert_eq!(
        crew_again.list_journeys(toronto().id, day()).unwrap()[0].entry_count,
        2
    );
}

#[test]
fn malformed_change_bytes_are_refused_and_store_nothing() {
    let office = device(Role::Dispatcher);
    let crew = device(Role::Driver);
    let j = office
        .store
        .create_journey(&new_journey(&toronto(), day()))
        .unwrap();
    let mut changes = office.store.changes_since(j, &[]).unwrap();
    changes.push(b"definitely not an automerge change".to_vec());
    let err = crew
        .store
        .apply_remote_changes(j, changes.clone())
        .unwrap_err();
    assert!(matches!(err, Error::ChangeDecode(_)), "{err}");
    assert!(crew.store.journey_ids().unwrap().is_empty());

    let mut flipped = changes[0].clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    assert!(
        crew.store.apply_remote_changes(j, vec![flipped]).is_err(),
        "checksum catches corruption"
    );
    assert!(crew.store.journey_ids().unwrap().is_empty());
}

#[test]
fn the_outbox_clears_only_what_was_acknowledged() {
    let d = device(Role::Driver);
    let j = crew_journey(&d, &[]);
    d.store.advance_stage(j, Stage::EnRoute).unwrap();
    d.store.add_entry(j, NewEntry::note("n")).unwrap();
    let outbox = d.store.outbox(10).unwrap();
    assert_eq!(outbox.len(), 4); // creation, assignment, stage, entry
    assert!(
        outbox.windows(2).all(|w| w[0].seq < w[1].seq),
        "commit order"
    );
    assert!(outbox[2..].iter().all(|e| e.author == d.user.user_id));
    assert!(outbox.iter().all(|e| e.journey_id == j));

    assert_eq!(
        d.store
            .acknowledge(&[outbox[0].hash, outbox[1].hash, outbox[2].hash])
            .unwrap(),
        3
    );
    assert_eq!(
        d.store.acknowledge(&[outbox[0].hash]).unwrap(),
        0,
        "a repeated ack is harmless"
    );
    let left = d.store.outbox(10).unwrap();
    assert_eq!(left, vec![outbox[3].clone()]);
    assert_eq!(reopen(&d).outbox_len().unwrap(), 1);
    assert_eq!(
        d.store.list_journeys(toronto().id, day()).unwrap()[0].pending_changes,
        1
    );
}

#[test]
fn threads_share_one_store_without_losing_writes() {
    let d = device(Role::Driver);
    let j = crew_journey(&d, &[]);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&d.store);
            std::thread::spawn(move || {
                for i in 0..25 {
                    store
                        .add_entry(j, NewEntry::note(format!("{t}/{i}")))
                        .unwrap();
                    store.list_journeys(toronto().id, day()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(reopen(&d).journey(j).unwrap().entries.len(), 100);
    assert_eq!(d.store.outbox_len().unwrap(), 102);
    d.store.integrity_check().unwrap();
}
