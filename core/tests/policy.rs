//! The policy's two views of a change agree: what an action declares it touches
//! equals what the server reads from the change's effect. And hand-made changes
//! that an honest app never makes (rewriting evidence, writing outside the layout)
//! are seen for what they are.
#![allow(clippy::unwrap_used)]

mod common;

use automerge::transaction::Transactable;
use automerge::{ActorId, ROOT, ReadDoc};
use common::{day, new_journey, toronto};
use crewsync_core::document::JourneyDocument;
use crewsync_core::document::touches::touches_between;
use crewsync_core::ids::{ActivityId, DeviceId, EntryId, MediaId, UserId};
use crewsync_core::model::{
    ActivityKind, GpsPoint, MediaKind, MediaRef, NewEntry, Role, Stage, Stamp, StepNumber,
    Timestamp,
};
use crewsync_core::policy::Touch;
use crewsync_core::{ChangeOrigin, JourneyAction};

fn step(n: u8) -> StepNumber {
    StepNumber::new(n).unwrap()
}

fn origin() -> ChangeOrigin {
    ChangeOrigin {
        user_id: UserId::new(),
        role: Role::Manager,
        device_id: DeviceId::new(),
    }
}

fn journey() -> JourneyDocument {
    JourneyDocument::create(
        &new_journey(&toronto(), day()),
        "America/Toronto",
        &origin(),
        Timestamp::now(),
        ActorId::random(),
    )
    .unwrap()
    .0
}

/// Every kind of action, in an order where each one is valid.
fn every_action() -> Vec<JourneyAction> {
    let checklist = ActivityId::new();
    let stamp = Stamp {
        by: UserId::new(),
        at: Timestamp(1),
    };
    let media = MediaRef {
        sha256: Some("00".repeat(32)),
        size: Some(1_000),
        ..MediaRef::new(MediaId::new(), MediaKind::Photo, stamp.clone())
    };
    let photo = MediaRef {
        sha256: Some("11".repeat(32)),
        size: Some(2_000),
        step: Some(2),
        content_type: Some("image/jpeg".into()),
        width: Some(4000),
        height: Some(3000),
        thumbnail_sha256: Some("22".repeat(32)),
        thumbnail_size: Some(20_000),
        ..MediaRef::new(MediaId::new(), MediaKind::Photo, stamp)
    };
    let photo_id = photo.id;
    vec![
        JourneyAction::SetTruckNumber {
            truck_number: Some("T-9".into()),
        },
        JourneyAction::SetTimes {
            start: Some(Timestamp(10)),
            end: None,
        },
        JourneyAction::AssignCrew {
            user: UserId::new(),
            role: Role::Mover,
        },
        JourneyAction::StartStep { step: step(1) },
        JourneyAction::AddChecklist {
            step: step(1),
            activity: checklist,
            title: "Truck".into(),
            items: vec!["pads".into()],
        },
        JourneyAction::SetChecklistItem {
            step: step(1),
            activity: checklist,
            item: "pads".into(),
            checked: true,
        },
        JourneyAction::AddActivity {
            step: step(1),
            activity: ActivityId::new(),
            kind: ActivityKind::Note,
            title: None,
            text: Some("ok".into()),
            media_id: None,
        },
        JourneyAction::CompleteStep { step: step(1) },
        JourneyAction::ApproveStep {
            step: step(1),
            comment: None,
        },
        JourneyAction::AdvanceStage { to: Stage::EnRoute },
        JourneyAction::AddNote {
            note: EntryId::new(),
            text: "side door".into(),
        },
        JourneyAction::AddEntry {
            id: EntryId::new(),
            entry: NewEntry::note("scratch"),
        },
        JourneyAction::AddGpsBatch {
            batch: EntryId::new(),
            points: vec![GpsPoint {
                lat: 43.0,
                lon: -79.0,
                accuracy_m: None,
                at: Timestamp(5),
            }],
        },
        JourneyAction::AddMediaRef { media },
        JourneyAction::RecordMedia {
            media: photo,
            entry: EntryId::new(),
            tag: Some("BR".into()),
            text: None,
        },
        JourneyAction::RemoveMedia { media: photo_id },
    ]
}

#[test]
fn what_an_action_declares_is_what_its_change_does() {
    let mut doc = journey();
    let origin = origin();
    let mut seen = std::collections::BTreeSet::new();
    for action in every_action() {
        let before = doc.heads();
        let mut declared = doc.touches_of(&action).unwrap();
        doc.apply(&action, &origin, Timestamp::now())
            .unwrap()
            .unwrap();
        let derived = touches_between(doc.automerge(), &before, &doc.heads());
        declared.sort();
        assert_eq!(derived, declared, "{}", action.name());
        seen.insert(action.name());
    }
    assert_eq!(seen.len(), 16, "every action kind is covered");
}

#[test]
fn the_creating_change_only_builds_the_skeleton() {
    let doc = journey();
    assert_eq!(
        touches_between(doc.automerge(), &[], &doc.heads()),
        vec![Touch::Create, Touch::TruckNumber]
    );
}

#[test]
fn unassigning_crew_is_a_crew_touch() {
    let mut doc = journey();
    let user = UserId::new();
    let origin = origin();
    let assign = JourneyAction::AssignCrew {
        user,
        role: Role::Driver,
    };
    doc.apply(&assign, &origin, Timestamp::now()).unwrap();
    let before = doc.heads();
    doc.apply(
        &JourneyAction::UnassignCrew { user },
        &origin,
        Timestamp::now(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        touches_between(doc.automerge(), &before, &doc.heads()),
        vec![Touch::Crew]
    );
}

/// Hand-written automerge operations a dishonest client could send.
#[test]
fn rewriting_evidence_or_leaving_the_layout_is_recognized() {
    let mut doc = journey();
    let entry = EntryId::new();
    doc.apply(
        &JourneyAction::AddEntry {
            id: entry,
            entry: NewEntry::note("original"),
        },
        &origin(),
        Timestamp::now(),
    )
    .unwrap();
    let base = doc.automerge().clone();
    let entries = base.get(ROOT, "entries").unwrap().unwrap().1;
    let entry_obj = base.get(&entries, entry.to_string()).unwrap().unwrap().1;
    let steps = base.get(ROOT, "steps").unwrap().unwrap().1;
    let step1 = base.get(&steps, "1").unwrap().unwrap().1;

    type Edit = Box<dyn Fn(&mut automerge::transaction::Transaction<'_>)>;
    let cases: Vec<(&str, Edit, Touch)> = vec![
        (
            "delete an entry",
            Box::new({
                let (entries, key) = (entries.clone(), entry.to_string());
                move |tx| tx.delete(&entries, key.as_str()).unwrap()
            }),
            Touch::EvidenceRewrite(format!("entries/{entry}")),
        ),
        (
            "edit an entry's text",
            Box::new({
                let entry_obj = entry_obj.clone();
                move |tx| tx.put(&entry_obj, "text", "forged").unwrap()
            }),
            Touch::EvidenceRewrite(format!("entries/{entry}/text")),
        ),
        (
            "replace an entry whole",
            Box::new({
                let (entries, key) = (entries.clone(), entry.to_string());
                move |tx| {
                    tx.put_object(&entries, key.as_str(), automerge::ObjType::Map)
                        .unwrap();
                }
            }),
            Touch::EvidenceRewrite(format!("entries/{entry}")),
        ),
        (
            "wipe the entries",
            Box::new(|tx| {
                tx.put_object(ROOT, "entries", automerge::ObjType::Map)
                    .unwrap();
            }),
            Touch::EvidenceRewrite("entries".into()),
        ),
        (
            "a key outside the layout",
            Box::new(|tx| tx.put(ROOT, "backdoor", true).unwrap()),
            Touch::Unknown("backdoor".into()),
        ),
        (
            "rename a step",
            Box::new({
                let step1 = step1.clone();
                move |tx| tx.put(&step1, "requires_approval", true).unwrap()
            }),
            Touch::Create,
        ),
        (
            "an unknown stage",
            Box::new(|tx| {
                let stages = tx.get(ROOT, "stages").unwrap().unwrap().1;
                tx.put(&stages, "TELEPORTED", 1).unwrap();
            }),
            Touch::Unknown("stages/TELEPORTED".into()),
        ),
    ];
    for (name, edit, expected) in cases {
        let mut forged = base.fork().with_actor(ActorId::random());
        let before = forged.get_heads();
        let mut tx = forged.transaction();
        edit(&mut tx);
        tx.commit();
        let after = forged.get_heads();
        assert_eq!(
            touches_between(&forged, &before, &after),
            vec![expected],
            "{name}"
        );
    }
}
