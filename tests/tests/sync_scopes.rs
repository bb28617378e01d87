//! Sync scopes end to end (issue 4 point 4): real devices over loopback HTTP on the
//! embedded SQLite store and on Postgres. Each device holds exactly the journeys
//! its user may see — crews their own within the date window, the office its
//! location's, admins and auditors the tenant's — scopes change live (a newly
//! assigned mover's device receives the journey whole; an unassigned one's drops
//! it once its own pending work is pushed), and a control shows the holdings check
//! catches an unscoped server.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

mod common;

use chrono::{Days, NaiveDate, Utc};
use crewsync_core::ids::JourneyId;
use crewsync_core::model::{NewJourney, Role};
use crewsync_core::sync::engine::{self, Limits};
use crewsync_core::sync::runtime::Backoff;
use crewsync_server::directory::LocationRecord;
use crewsync_server::testing::TestTenant;

use common::{Backend, Device, eventually};

fn journey_at(tenant: &TestTenant, location: &LocationRecord, date: NaiveDate) -> NewJourney {
    NewJourney {
        id: None,
        client_id: tenant.tenant,
        location_id: location.id,
        date,
        truck_number: Some("T-7".into()),
        move_source_id: None,
        steps_requiring_approval: vec![],
    }
}

async fn scopes_follow_roles_and_assignments(backend: Backend) {
    let tenant = &backend.tenant;
    let url = backend.serve().await;
    let home = tenant.location.clone();
    let away = tenant.add_location("BURLINGTON").await.unwrap();
    let today = Utc::now().date_naive();
    let long_ago = today.checked_sub_days(Days::new(30)).unwrap();

    let user = |role| tenant.user(role).clone();
    let office = Device::of(tenant, &user(Role::Dispatcher), &url).await;
    let away_office_user = tenant.add_user(Role::Dispatcher, &away).await.unwrap();
    let away_office = Device::of(tenant, &away_office_user, &url).await;
    let mover_a = Device::of(tenant, &user(Role::Mover), &url).await;
    let mover_b_user = tenant.add_user(Role::Mover, &home).await.unwrap();
    let mover_b = Device::of(tenant, &mover_b_user, &url).await;
    let driver = Device::of(tenant, &user(Role::Driver), &url).await;
    let manager = Device::of(tenant, &user(Role::Manager), &url).await;
    let admin = Device::of(tenant, &user(Role::Admin), &url).await;
    let auditor = Device::of(tenant, &user(Role::Auditor), &url).await;

    // The office plans: today's job with mover A and the driver, today's job with
    // nobody yet, and last month's job mover A was on; the other location plans its own.
    let crewed = office
        .store
        .create_journey(&journey_at(tenant, &home, today))
        .unwrap();
    for member in [&mover_a.user, &driver.user] {
        office
            .store
            .assign_crew(crewed, member.id, member.role)
            .unwrap();
    }
    let open = office
        .store
        .create_journey(&journey_at(tenant, &home, today))
        .unwrap();
    let old = office
        .store
        .create_journey(&journey_at(tenant, &home, long_ago))
        .unwrap();
    office
        .store
        .assign_crew(old, mover_a.user.id, Role::Mover)
        .unwrap();
    office.sync.sync_now().await.unwrap();
    let elsewhere = away_office
        .store
        .create_journey(&journey_at(tenant, &away, today))
        .unwrap();
    away_office.sync.sync_now().await.unwrap();

    let everyone = [
        &office,
        &away_office,
        &mover_a,
        &mover_b,
        &driver,
        &manager,
        &admin,
        &auditor,
    ];
    for device in everyone {
        device.sync.sync_now().await.unwrap();
    }
    let set = |ids: &[JourneyId]| ids.iter().copied().collect::<BTreeSet<_>>();
    let expected = [
        (&office, set(&[crewed, open, old])),
        (&manager, set(&[crewed, open, old])),
        (&away_office, set(&[elsewhere])),
        (&mover_a, set(&[crewed])),
        (&driver, set(&[crewed])),
        (&mover_b, set(&[])),
        (&admin, set(&[crewed, open, old, elsewhere])),
        (&auditor, set(&[crewed, open, old, elsewhere])),
    ];
    for (device, journeys) in &expected {
        assert_eq!(
            device.holds(),
            *journeys,
            "{} {} holds exactly its scope",
            device.user.role,
            device.user.name
        );
    }
    // What a device received is whole: the crew's copy equals the office's.
    assert_eq!(
        mover_a.store.journey(crewed).unwrap(),
        office.store.journey(crewed).unwrap()
    );

    // Live: mover B's device runs in the background; the office puts B on the open
    // job and B's device receives it whole, without polling (the interval is an hour).
    mover_b
        .sync
        .start(Duration::from_secs(3600), Backoff::default());
    mover_a
        .sync
        .start(Duration::from_secs(3600), Backoff::default());
    tokio::time::sleep(Duration::from_millis(300)).await; // live sockets connect
    office
        .store
        .assign_crew(open, mover_b.user.id, Role::Mover)
        .unwrap();
    office.sync.sync_now().await.unwrap();
    eventually("mover B receives the job it was assigned", || {
        mover_b.holds() == set(&[open])
    })
    .await;
    eventually("mover B's copy is the office's", || {
        mover_b.store.journey(open).ok() == office.store.journey(open).ok()
    })
    .await;

    // Mover A, offline, notes something on today's job; meanwhile the office takes A
    // off it. A's device keeps the job until its note is pushed, then drops it. (The
    // note was written after A was unassigned on the server, so it is refused and
    // quarantined — pushed and kept, not lost.)
    mover_a.sync.pause();
    mover_a
        .store
        .add_note(crewed, "strap broke on dolly 2")
        .unwrap();
    office.store.unassign_crew(crewed, mover_a.user.id).unwrap();
    office.sync.sync_now().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        mover_a.holds().contains(&crewed),
        "paused: nothing pushed, nothing dropped"
    );
    mover_a.sync.resume();
    mover_a.sync.wake();
    eventually("mover A drops the job after pushing its note", || {
        mover_a.holds().is_empty()
    })
    .await;
    assert_eq!(
        mover_a.store.outbox_len().unwrap(),
        0,
        "nothing left unsent"
    );
    let quarantined = backend
        .storage
        .quarantined(&tenant.tenant.to_string(), Some(crewed))
        .await
        .unwrap();
    assert_eq!(
        quarantined.len(),
        1,
        "the note reached the server: {quarantined:?}"
    );
    assert_eq!(quarantined[0].user, mover_a.user.id);
    assert_eq!(
        mover_a.store.rejected_changes(crewed).unwrap().len(),
        1,
        "and stays visible on the device as refused"
    );
    // The driver is still on it and still has it.
    driver.sync.sync_now().await.unwrap();
    assert!(driver.holds().contains(&crewed));
    mover_a.sync.stop().await;
    mover_b.sync.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_follow_roles_and_assignments_on_the_embedded_store() {
    scopes_follow_roles_and_assignments(Backend::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_follow_roles_and_assignments_on_postgres() {
    scopes_follow_roles_and_assignments(Backend::fresh_postgres().await).await;
}

/// Control: the holdings check bites. The same mover's device, exchanging with the
/// log unscoped (`sync::exchange`, as a server without scopes would), ends up
/// holding a journey it is not on — which the scoped server never hands it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_an_unscoped_exchange_hands_a_mover_journeys_it_is_not_on() {
    let backend = Backend::embedded().await;
    let tenant = &backend.tenant;
    let url = backend.serve().await;
    let office = Device::of(tenant, &tenant.user(Role::Dispatcher).clone(), &url).await;
    let mover = Device::of(tenant, &tenant.user(Role::Mover).clone(), &url).await;
    let journey = office
        .store
        .create_journey(&journey_at(
            tenant,
            &tenant.location,
            Utc::now().date_naive(),
        ))
        .unwrap();
    office.sync.sync_now().await.unwrap();

    mover.sync.sync_now().await.unwrap();
    assert!(
        mover.holds().is_empty(),
        "scoped: not on the crew, not held"
    );

    let request = engine::prepare(&mover.store, "unscoped", Limits::default()).unwrap();
    let exchanged = crewsync_server::sync::exchange(
        &backend.storage,
        &tenant.tenant.to_string(),
        request.clone(),
    )
    .await
    .unwrap();
    engine::absorb(&mover.store, "unscoped", &request, exchanged.response).unwrap();
    assert!(
        mover.holds().contains(&journey),
        "unscoped, the mover gets the journey: the holdings check above would fail"
    );
}
