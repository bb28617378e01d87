//! The server's write checks on real journey changes (reliability matrix F3): each
//! role's changes are accepted or refused as the policy says, a change built on a
//! refused one is refused with it, forged attribution and other tenants' journeys
//! are refused, an audited journey holds later changes for review, and a change
//! missing its dependencies is deferred, not judged.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use automerge::{ActorId, Change};
use chrono::NaiveDate;
use crewsync_core::document::JourneyDocument;
use crewsync_core::ids::{ClientId, DeviceId, EntryId, JourneyId, LocationId, UserId};
use crewsync_core::model::{NewEntry, NewJourney, Role, Stage, Timestamp};
use crewsync_core::policy::PermissionTable;
use crewsync_core::{ChangeOrigin, JourneyAction};
use crewsync_server::auth::http::Principal;
use crewsync_server::checks::{Verdict, check_push};
use crewsync_server::storage::memory::MemoryStorage;
use crewsync_server::storage::{NewChange, Storage};

const TENANT: &str = "tenant-under-test";

struct Person {
    principal: Principal,
    origin: ChangeOrigin,
}

fn person(tenant: ClientId, role: Role) -> Person {
    let (user, device) = (UserId::new(), DeviceId::new());
    Person {
        principal: Principal {
            user,
            tenant,
            role,
            location: LocationId::new(),
            session: uuid::Uuid::now_v7(),
            device,
        },
        origin: ChangeOrigin {
            user_id: user,
            role,
            device_id: device,
        },
    }
}

fn new_journey(tenant: ClientId) -> NewJourney {
    NewJourney {
        id: None,
        client_id: tenant,
        location_id: LocationId::new(),
        date: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        truck_number: Some("T-1".into()),
        move_source_id: None,
        steps_requiring_approval: vec![],
    }
}

/// A device's copy of a journey: applies actions as `who` and returns the change.
struct Replica(JourneyDocument);

impl Replica {
    fn act(&mut self, who: &Person, action: JourneyAction) -> Change {
        self.0
            .apply(&action, &who.origin, Timestamp::now())
            .unwrap()
            .unwrap()
    }
}

async fn verdicts(
    storage: &Arc<dyn Storage>,
    who: &Person,
    journey: JourneyId,
    changes: &[Change],
) -> Vec<Verdict> {
    let checked = check_push(
        storage,
        TENANT,
        &who.principal,
        &PermissionTable::defaults(),
        changes.iter().map(|c| (journey, c.clone())).collect(),
    )
    .await
    .unwrap();
    // What the exchange does next: accepted changes join the log.
    let accepted: Vec<NewChange> = checked
        .iter()
        .filter(|c| c.verdict == Verdict::Accepted)
        .map(|c| NewChange {
            journey,
            hash: c.change.hash().as_ref().to_vec(),
            actor: c.change.actor_id().to_bytes().to_vec(),
            device: who.principal.device,
            bytes: c.change.raw_bytes().to_vec(),
            audit: crewsync_server::audit::ChangeAudit::screened(
                &c.change,
                &who.principal,
                c.location,
                &c.touched,
            ),
        })
        .collect();
    storage.append(TENANT, &accepted).await.unwrap();
    checked.into_iter().map(|c| c.verdict).collect()
}

/// A replica of the journey as the server accepted it.
async fn accepted_replica(storage: &Arc<dyn Storage>, journey: JourneyId) -> Replica {
    let changes = storage
        .journey(TENANT, journey)
        .await
        .unwrap()
        .changes
        .into_iter()
        .map(|b| Change::from_bytes(b).unwrap())
        .collect();
    Replica(JourneyDocument::load(journey, None, changes, ActorId::random()).unwrap())
}

fn rejected_because(verdict: &Verdict, part: &str) -> bool {
    matches!(verdict, Verdict::Rejected(reason) if reason.contains(part))
}

#[tokio::test]
async fn each_role_is_held_to_the_policy() {
    let tenant = ClientId::new();
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let dispatcher = person(tenant, Role::Dispatcher);
    let driver = person(tenant, Role::Driver);
    let auditor = person(tenant, Role::Auditor);

    // The dispatcher creates the journey; the driver is not on its crew yet.
    let (doc, creation) = JourneyDocument::create(
        &new_journey(tenant),
        "America/Toronto",
        &dispatcher.origin,
        Timestamp::now(),
        ActorId::random(),
    )
    .unwrap();
    let journey = doc.id();
    assert_eq!(
        verdicts(
            &storage,
            &dispatcher,
            journey,
            std::slice::from_ref(&creation)
        )
        .await,
        vec![Verdict::Accepted]
    );
    let mut office = Replica(doc);
    let mut crew_copy =
        Replica(JourneyDocument::load(journey, None, vec![creation], ActorId::random()).unwrap());
    let note = crew_copy.act(
        &driver,
        JourneyAction::AddEntry {
            id: EntryId::new(),
            entry: NewEntry::note("not on the crew"),
        },
    );
    assert!(rejected_because(
        &verdicts(&storage, &driver, journey, &[note]).await[0],
        "crew they are on"
    ));

    // Assigned by the dispatcher, the driver's work is accepted; changing the
    // truck is not theirs, and what they build on it next is refused with it.
    let assign = office.act(
        &dispatcher,
        JourneyAction::AssignCrew {
            user: driver.principal.user,
            role: Role::Driver,
        },
    );
    assert_eq!(
        verdicts(
            &storage,
            &dispatcher,
            journey,
            std::slice::from_ref(&assign)
        )
        .await,
        vec![Verdict::Accepted]
    );
    let mut crew_copy = accepted_replica(&storage, journey).await;
    let entry = crew_copy.act(
        &driver,
        JourneyAction::AddEntry {
            id: EntryId::new(),
            entry: NewEntry::note("on the crew now"),
        },
    );
    let truck = crew_copy.act(
        &driver,
        JourneyAction::SetTruckNumber {
            truck_number: Some("T-99".into()),
        },
    );
    let after_truck = crew_copy.act(&driver, JourneyAction::AdvanceStage { to: Stage::EnRoute });
    let got = verdicts(
        &storage,
        &driver,
        journey,
        &[entry, truck.clone(), after_truck],
    )
    .await;
    assert_eq!(got[0], Verdict::Accepted);
    assert!(rejected_because(&got[1], "change the truck"), "{got:?}");
    assert!(
        rejected_because(&got[2], "builds on the rejected change"),
        "{got:?}"
    );

    // A change undone later in the same push still counts: the truck changed
    // and changed back is two refused truck changes, not nothing. (From the
    // accepted state: the device dropped its refused changes.)
    let mut crew_copy = accepted_replica(&storage, journey).await;
    let there = crew_copy.act(
        &driver,
        JourneyAction::SetTruckNumber {
            truck_number: Some("T-X".into()),
        },
    );
    let back = crew_copy.act(
        &driver,
        JourneyAction::SetTruckNumber {
            truck_number: Some("T-1".into()),
        },
    );
    let got = verdicts(&storage, &driver, journey, &[there, back]).await;
    assert!(rejected_because(&got[0], "change the truck"), "{got:?}");
    assert!(matches!(&got[1], Verdict::Rejected(_)), "{got:?}");

    // Attribution must be the signed-in user's own.
    let mut crew_copy = accepted_replica(&storage, journey).await;
    let forged = crew_copy.act(
        &dispatcher,
        JourneyAction::AddNote {
            note: EntryId::new(),
            text: "pushed by the driver in the dispatcher's name".into(),
        },
    );
    assert!(rejected_because(
        &verdicts(&storage, &driver, journey, &[forged]).await[0],
        "attributed to user"
    ));

    // Only an auditor audits; after that, changes wait for review.
    let mut office_copy = accepted_replica(&storage, journey).await;
    for stage in [Stage::EnRoute, Stage::Onsite, Stage::Completed] {
        let change = office_copy.act(&dispatcher, JourneyAction::AdvanceStage { to: stage });
        assert_eq!(
            verdicts(&storage, &dispatcher, journey, &[change]).await,
            vec![Verdict::Accepted]
        );
    }
    let mut audit_copy = accepted_replica(&storage, journey).await;
    let by_dispatcher = office_copy.act(
        &dispatcher,
        JourneyAction::AdvanceStage { to: Stage::Audited },
    );
    assert!(rejected_because(
        &verdicts(&storage, &dispatcher, journey, &[by_dispatcher]).await[0],
        "mark a journey audited"
    ));
    let audited = audit_copy.act(&auditor, JourneyAction::AdvanceStage { to: Stage::Audited });
    assert_eq!(
        verdicts(&storage, &auditor, journey, &[audited]).await,
        vec![Verdict::Accepted]
    );
    let late = audit_copy.act(
        &auditor,
        JourneyAction::AddNote {
            note: EntryId::new(),
            text: "after the audit".into(),
        },
    );
    assert_eq!(
        verdicts(&storage, &auditor, journey, &[late]).await,
        vec![Verdict::AfterAudit]
    );
}

#[tokio::test]
async fn other_tenants_journeys_and_missing_dependencies() {
    let tenant = ClientId::new();
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let dispatcher = person(tenant, Role::Dispatcher);

    // A journey filed under another tenant is refused at creation.
    let (_, foreign) = JourneyDocument::create(
        &new_journey(ClientId::new()),
        "America/Toronto",
        &dispatcher.origin,
        Timestamp::now(),
        ActorId::random(),
    )
    .unwrap();
    let foreign_journey = JourneyId::new();
    assert!(rejected_because(
        &verdicts(&storage, &dispatcher, foreign_journey, &[foreign]).await[0],
        "belongs to tenant"
    ));

    // A change whose creation the server never saw is deferred, then accepted once
    // its dependency arrives.
    let (doc, creation) = JourneyDocument::create(
        &new_journey(tenant),
        "America/Toronto",
        &dispatcher.origin,
        Timestamp::now(),
        ActorId::random(),
    )
    .unwrap();
    let journey = doc.id();
    let mut replica = Replica(doc);
    let truck = replica.act(
        &dispatcher,
        JourneyAction::SetTruckNumber {
            truck_number: Some("T-2".into()),
        },
    );
    assert_eq!(
        verdicts(&storage, &dispatcher, journey, std::slice::from_ref(&truck)).await,
        vec![Verdict::Deferred]
    );
    assert_eq!(
        verdicts(&storage, &dispatcher, journey, &[creation, truck]).await,
        vec![Verdict::Accepted, Verdict::Accepted]
    );
}

/// A crew's write to an office field that loses a concurrent conflict changes
/// nothing visible on the server's copy, so judging by the visible difference
/// would let it in: the checks judge what the change's author did (its own
/// diff from its dependencies), so it is refused. Found by the CLI's conflict
/// report, which listed a mover among a truck number's writers.
#[tokio::test]
async fn a_crew_write_hidden_in_a_conflict_is_still_refused() {
    let tenant = ClientId::new();
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let dispatcher = person(tenant, Role::Dispatcher);
    let manager = person(tenant, Role::Manager);
    let mover = person(tenant, Role::Mover);
    let (doc, creation) = JourneyDocument::create(
        &new_journey(tenant),
        "America/Toronto",
        &dispatcher.origin,
        Timestamp::now(),
        ActorId::random(),
    )
    .unwrap();
    let journey = doc.id();
    let mut office = Replica(doc);
    let assign = office.act(
        &dispatcher,
        JourneyAction::AssignCrew {
            user: mover.principal.user,
            role: Role::Mover,
        },
    );
    assert_eq!(
        verdicts(&storage, &dispatcher, journey, &[creation, assign]).await,
        vec![Verdict::Accepted, Verdict::Accepted]
    );
    // Three replicas of the same state; each writes the truck offline.
    let mut second = accepted_replica(&storage, journey).await;
    let mut crew = accepted_replica(&storage, journey).await;
    let mut office = accepted_replica(&storage, journey).await;
    // The office's writes come after more operations of their own, so their op
    // counters are higher and the mover's value loses whatever the actor ids.
    let office_note = office.act(
        &dispatcher,
        JourneyAction::AddNote {
            note: EntryId::new(),
            text: "gate code 4411".into(),
        },
    );
    let manager_note = second.act(
        &manager,
        JourneyAction::AddNote {
            note: EntryId::new(),
            text: "customer called".into(),
        },
    );
    let by_office = office.act(
        &dispatcher,
        JourneyAction::SetTruckNumber {
            truck_number: Some("T-40".into()),
        },
    );
    let by_manager = second.act(
        &manager,
        JourneyAction::SetTruckNumber {
            truck_number: Some("T-77".into()),
        },
    );
    let by_mover = crew.act(
        &mover,
        JourneyAction::SetTruckNumber {
            truck_number: Some("T-0".into()),
        },
    );
    assert_eq!(
        verdicts(&storage, &dispatcher, journey, &[office_note, by_office]).await,
        vec![Verdict::Accepted; 2]
    );
    assert_eq!(
        verdicts(&storage, &manager, journey, &[manager_note, by_manager]).await,
        vec![Verdict::Accepted; 2]
    );
    let verdict = verdicts(&storage, &mover, journey, &[by_mover]).await;
    assert!(
        rejected_because(&verdict[0], "truck"),
        "a mover's truck number must be refused: {verdict:?}"
    );
}
