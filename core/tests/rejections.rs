//! A server's refusal of local changes: the refused change and what builds on it
//! leave the outbox and the journey, stay visible with their reasons, survive a
//! restart, and the device keeps working on the journey afterwards.
#![allow(clippy::unwrap_used)]

mod common;

use automerge::ReadDoc;

use common::{day, device, new_journey, toronto};
use crewsync_core::model::{NewEntry, Role};
use crewsync_core::{DeviceStore, StoreOptions};

#[test]
fn a_refused_change_and_its_dependents_leave_the_journey_but_stay_visible() {
    let d = device(Role::Dispatcher);
    let s = &d.store;
    let j = s.create_journey(&new_journey(&toronto(), day())).unwrap();
    s.add_entry(j, NewEntry::note("kept")).unwrap();
    s.set_truck_number(j, Some("T-REFUSED".into())).unwrap();
    s.add_entry(j, NewEntry::note("built on the refused one"))
        .unwrap();
    let outbox = s.outbox(10).unwrap();
    assert_eq!(outbox.len(), 4);
    let refused = outbox[2].hash;
    let (seq_of_refused, actor) = s
        .with_document(j, |doc| {
            let change = doc.automerge().get_change_by_hash(&refused).unwrap();
            Ok((change.seq(), change.actor_id().clone()))
        })
        .unwrap();

    let dropped = s
        .reject_local_changes(&[(refused, "a DRIVER may not change the truck".into())])
        .unwrap();
    assert_eq!(dropped, 2, "the refused change and the entry built on it");
    let view = s.journey(j).unwrap();
    assert_eq!(
        view.truck_number.as_deref(),
        Some("T-12"),
        "back to the accepted value"
    );
    let texts: Vec<_> = view.entries.iter().filter_map(|e| e.text.clone()).collect();
    assert_eq!(texts, vec!["kept".to_owned()]);
    let pending: Vec<_> = s.outbox(10).unwrap().iter().map(|e| e.hash).collect();
    assert_eq!(pending, vec![outbox[0].hash, outbox[1].hash]);

    let rejected = s.rejected_changes(j).unwrap();
    assert_eq!(rejected.len(), 2);
    assert!(
        rejected
            .iter()
            .any(|r| r.hash == refused && r.reason.contains("change the truck"))
    );
    assert!(
        rejected
            .iter()
            .any(|r| r.hash == outbox[3].hash && r.reason.contains("builds on the refused change"))
    );

    // Work continues: the next change takes the refused one's place in the actor's
    // sequence; the refused one exists in no document.
    s.add_entry(j, NewEntry::note("after the refusal")).unwrap();
    let newest = s.outbox(10).unwrap().last().unwrap().hash;
    s.with_document(j, |doc| {
        let change = doc.automerge().get_change_by_hash(&newest).unwrap();
        assert_eq!((change.seq(), change.actor_id()), (seq_of_refused, &actor));
        assert!(doc.automerge().get_change_by_hash(&refused).is_none());
        Ok(())
    })
    .unwrap();

    // All of it is on disk.
    let path = s.path().to_path_buf();
    let expected = s.journey(j).unwrap();
    drop(d.store);
    let reopened = DeviceStore::open(&path, StoreOptions::default()).unwrap();
    reopened.set_active_user(Some(d.user.clone())).unwrap();
    assert_eq!(reopened.journey(j).unwrap(), expected);
    assert_eq!(reopened.rejected_changes(j).unwrap().len(), 2);
    assert_eq!(reopened.outbox_len().unwrap(), 3);
}
