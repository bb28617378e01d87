//! Evidence rules (issue 5 point 5): crews may tombstone their photos only until the
//! step's inventory (completion) or signature is done; an ADMIN always; evidence
//! stays with its journey through crew changes. Judged the same way on the device
//! (`Error::NotAllowed`) and by the server's reading of the change
//! (`document::touches` + `policy`).
#![allow(clippy::unwrap_used)]

mod common;

use automerge::transaction::Transactable;
use automerge::{ActorId, ROOT, ReadDoc};
use common::images::jpeg;
use common::{Device, crew_journey, device};
use crewsync_core::document::touches::touches_between;
use crewsync_core::ids::{JourneyId, MediaId, UserId};
use crewsync_core::media::{NetworkKind, SignatureCapture, Stroke, StrokePoint};
use crewsync_core::model::{ActiveUser, MediaRef, Role, SignerRole, StepNumber, Timestamp};
use crewsync_core::policy::{self, Denial, JourneyContext, PermissionTable, Touch};
use crewsync_core::store::{CaptureInfo, MediaSource};
use crewsync_core::{Error, JourneyAction};

fn step(n: u8) -> StepNumber {
    StepNumber::new(n).unwrap()
}

fn photo(d: &Device, j: JourneyId, on: Option<u8>) -> MediaRef {
    d.store
        .capture_photo(
            j,
            MediaSource::Bytes(jpeg(120, 90, 1)),
            CaptureInfo {
                step: on.map(step),
                ..CaptureInfo::default()
            },
        )
        .unwrap()
}

fn sign(d: &Device, j: JourneyId, on: Option<u8>) -> MediaRef {
    let point = |x: f32| StrokePoint {
        x,
        y: 20.0,
        at: Timestamp(0),
        pressure: None,
    };
    d.store
        .capture_signature(
            j,
            &SignatureCapture {
                signer_name: "Ada".into(),
                signer_role: SignerRole::Customer,
                document: "inventory".into(),
                document_sha256: "aa".repeat(32),
                consent: true,
                canvas_width: 100,
                canvas_height: 40,
                strokes: vec![Stroke {
                    points: vec![point(5.0), point(95.0)],
                }],
                step: on.map(step),
                gps: None,
            },
        )
        .unwrap()
}

fn as_role(d: &Device, role: Role) {
    d.store
        .set_active_user(Some(ActiveUser {
            user_id: UserId::new(),
            role,
        }))
        .unwrap();
}

fn removed(d: &Device, j: JourneyId, media: MediaId) -> bool {
    let view = d.store.journey(j).unwrap();
    view.media
        .iter()
        .find(|m| m.id == media)
        .unwrap()
        .removed
        .is_some()
}

fn is_sealed_denial(e: &Error) -> bool {
    matches!(e, Error::NotAllowed(Denial::Role { what, .. }) if what.contains("inventory or signature"))
}

#[test]
fn crews_remove_photos_only_until_the_step_is_completed_or_signed() {
    let d = device(Role::Driver);
    let j = crew_journey(&d, &[]);
    d.store.start_step(j, step(2)).unwrap();
    // Before the step is done: the crew may take a photo back (a tombstone).
    let early = photo(&d, j, Some(2));
    d.store.remove_media(j, early.id).unwrap();
    assert!(removed(&d, j, early.id));
    assert_eq!(
        d.store.journey(j).unwrap().media.len(),
        1,
        "the reference stays"
    );
    assert!(matches!(
        d.store.remove_media(j, early.id),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        d.store.remove_media(j, MediaId::new()),
        Err(Error::UnknownMedia(_))
    ));

    // Step completed (its inventory is done): no longer.
    let inventory = photo(&d, j, Some(2));
    d.store.complete_step(j, step(2)).unwrap();
    let outbox = d.store.outbox_len().unwrap();
    let error = d.store.remove_media(j, inventory.id).unwrap_err();
    assert!(is_sealed_denial(&error), "{error}");
    assert!(!removed(&d, j, inventory.id));
    assert_eq!(d.store.outbox_len().unwrap(), outbox, "nothing written");

    // A signature on a step seals that step's photos, and photos of no step.
    let damage = photo(&d, j, Some(3));
    let loose = photo(&d, j, None);
    let other_step = photo(&d, j, Some(4));
    sign(&d, j, Some(3));
    assert!(is_sealed_denial(
        &d.store.remove_media(j, damage.id).unwrap_err()
    ));
    assert!(is_sealed_denial(
        &d.store.remove_media(j, loose.id).unwrap_err()
    ));
    // Control: step 4 is neither completed nor signed: still removable.
    d.store.remove_media(j, other_step.id).unwrap();

    // Office roles other than ADMIN may not remove media at all; an ADMIN always.
    for role in [Role::Dispatcher, Role::Manager, Role::Auditor] {
        as_role(&d, role);
        let error = d.store.remove_media(j, damage.id).unwrap_err();
        assert!(matches!(error, Error::NotAllowed(_)), "{role}: {error}");
    }
    as_role(&d, Role::Admin);
    d.store.remove_media(j, inventory.id).unwrap();
    assert!(removed(&d, j, inventory.id));
    // The bytes stay queued: removal is a tombstone, not a deletion.
    assert!(
        d.store
            .upload_queue()
            .unwrap()
            .iter()
            .any(|i| i.media_id == inventory.id)
    );
}

/// The server reads the same judgement from the change itself.
#[test]
fn the_server_reads_the_same_judgement_from_the_change() {
    let d = device(Role::Mover);
    let j = crew_journey(&d, &[]);
    let open = photo(&d, j, Some(2));
    let sealed = photo(&d, j, Some(3));
    sign(&d, j, Some(3));
    let table = PermissionTable::defaults();
    let context = JourneyContext {
        creating: false,
        stage: Some(crewsync_core::model::Stage::MorningPrep),
        on_crew: true,
    };
    for (media, expect_sealed) in [(open.id, false), (sealed.id, true)] {
        let before = d.store.heads(j).unwrap();
        // Past the device's own check, as a dishonest app would.
        d.store
            .apply_unchecked(j, &JourneyAction::RemoveMedia { media })
            .unwrap();
        let after = d.store.heads(j).unwrap();
        let touches = d
            .store
            .with_document(j, |doc| {
                Ok(touches_between(doc.automerge(), &before, &after))
            })
            .unwrap();
        assert_eq!(
            touches,
            vec![Touch::RemoveMedia {
                sealed: expect_sealed
            }]
        );
        let verdict = policy::check_all(Role::Mover, &table, &context, &touches);
        assert_eq!(verdict.is_ok(), !expect_sealed, "{verdict:?}");
        assert!(policy::check_all(Role::Admin, &table, &context, &touches).is_ok());
    }

    // Undoing a tombstone, or stamping it again, is rewriting evidence.
    let base = d
        .store
        .with_document(j, |doc| Ok(doc.automerge().clone()))
        .unwrap();
    let media_map = base.get(ROOT, "media").unwrap().unwrap().1;
    let item = base
        .get(&media_map, open.id.to_string())
        .unwrap()
        .unwrap()
        .1;
    for undo in [true, false] {
        let mut forged = base.fork().with_actor(ActorId::random());
        let before = forged.get_heads();
        let mut tx = forged.transaction();
        if undo {
            tx.delete(&item, "removed").unwrap();
        } else {
            tx.put_object(&item, "removed", automerge::ObjType::Map)
                .unwrap();
        }
        tx.commit();
        let touches = touches_between(&forged, &before, &forged.get_heads());
        assert!(
            touches
                .iter()
                .all(|t| matches!(t, Touch::EvidenceRewrite(_)))
                && !touches.is_empty(),
            "undo={undo}: {touches:?}"
        );
    }
}

#[test]
fn evidence_stays_with_its_journey_through_crew_changes() {
    let d = device(Role::Driver);
    let j = crew_journey(&d, &[]);
    let shot = photo(&d, j, Some(2));
    sign(&d, j, Some(2));
    let crew = d.user.clone();
    // The office takes the driver off and puts another mover on.
    let next = UserId::new();
    as_role(&d, Role::Dispatcher);
    d.store.unassign_crew(j, crew.user_id).unwrap();
    d.store.assign_crew(j, next, Role::Mover).unwrap();

    let view = d.store.journey(j).unwrap();
    assert_eq!(view.media.len(), 2, "the media stays on the journey");
    assert!(view.entries.iter().any(|e| e.media_id == Some(shot.id)));
    // The former crew's device still uploads it, to the same journey.
    let hashes: Vec<_> = d
        .store
        .outbox(1_000)
        .unwrap()
        .iter()
        .map(|e| e.hash)
        .collect();
    d.store.acknowledge(&hashes).unwrap();
    let item = d.store.next_item(NetworkKind::Wifi).unwrap().unwrap();
    assert_eq!(item.journey_id, j);
    // Nobody on the crew can remove it now: not the new mover (sealed), not the old
    // driver (no longer on the crew).
    d.store
        .set_active_user(Some(ActiveUser {
            user_id: next,
            role: Role::Mover,
        }))
        .unwrap();
    assert!(is_sealed_denial(
        &d.store.remove_media(j, shot.id).unwrap_err()
    ));
    d.store.set_active_user(Some(crew)).unwrap();
    let error = d.store.remove_media(j, shot.id).unwrap_err();
    assert!(
        matches!(error, Error::NotAllowed(Denial::NotOnCrew { .. })),
        "{error}"
    );
}
