//! `/metrics` after real traffic, and the request limits (413, 415, 400) leaving the
//! log untouched, over HTTP on loopback.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServices;
use common::{
    connect_live, journey_change, metrics_text, post_sync, push, sample, serve_services, sync_body,
};
use crewsync_core::ids::JourneyId;
use crewsync_core::sync::wire::{self, CONTENT_TYPE};

async fn head(test: &TestServices) -> u64 {
    test.services
        .storage
        .head(&test.tenant_key())
        .await
        .unwrap()
}

fn requests(text: &str, status: &str) -> f64 {
    sample(
        text,
        "crewsync_http_requests_total",
        &[
            ("route", "/v1/sync"),
            ("method", "POST"),
            ("status", status),
        ],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_syncs_changes_bytes_and_live_connections() {
    let test = common::memory_services(crewsync_server::MAX_BODY_BYTES).await;
    let base = serve_services(&test.services).await;
    let before = metrics_text(&base).await;
    assert_eq!(
        sample(&before, "crewsync_changes_accepted_total", &[]),
        Some(0.0)
    );
    assert_eq!(sample(&before, "crewsync_live_connections", &[]), Some(0.0));

    let url = format!("{}/v1/live", base.replace("http://", "ws://"));
    let (socket, _) = connect_live(&url, &test.token).await;
    let (a, b) = (journey_change(&test.signer), journey_change(&test.signer));
    push(&base, &test.token, &[a, b]).await;
    // One change that is not automerge: refused, counted, not stored.
    let (status, body) = post_sync(
        &base,
        &test.token,
        CONTENT_TYPE,
        sync_body(&[(JourneyId::new(), b"not automerge".to_vec())]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(wire::decode_response(&body).unwrap().rejected.len(), 1);

    let text = metrics_text(&base).await;
    assert_eq!(
        sample(&text, "crewsync_changes_accepted_total", &[]),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "crewsync_changes_rejected_total", &[]),
        Some(1.0)
    );
    assert_eq!(sample(&text, "crewsync_live_connections", &[]), Some(1.0));
    assert_eq!(requests(&text, "200"), 2.0);
    assert_eq!(
        sample(&text, "crewsync_sync_duration_seconds_count", &[]),
        Some(2.0)
    );
    let received = sample(
        &text,
        "crewsync_bytes_received_total",
        &[("route", "/v1/sync")],
    )
    .unwrap();
    assert!(received > 100.0, "{received}");
    assert!(sample(&text, "crewsync_bytes_sent_total", &[("route", "/v1/sync")]).unwrap() > 0.0);
    assert!(sample(&text, "crewsync_bytes_sent_total", &[("route", "/v1/live")]).unwrap() > 0.0);
    assert_eq!(
        sample(&text, "crewsync_live_notices_total", &[("source", "local")]),
        Some(1.0)
    );
    assert!(sample(&text, "crewsync_live_frames_sent_total", &[]).unwrap() >= 1.0);
    assert!(
        sample(
            &text,
            "crewsync_http_requests_total",
            &[("route", "/metrics"), ("status", "200")]
        )
        .unwrap()
            >= 1.0
    );

    drop(socket);
    assert!(test.services.hub().wait_closed(common::WAIT).await);
    let after = metrics_text(&base).await;
    assert_eq!(sample(&after, "crewsync_live_connections", &[]), Some(0.0));
}

#[tokio::test]
async fn an_oversized_body_gets_413_with_the_limit_and_stores_nothing() {
    let mut test = common::memory_services(crewsync_server::MAX_BODY_BYTES).await;
    let change = journey_change(&test.signer);
    let fits = sync_body(std::slice::from_ref(&change));
    let limit = fits.len();
    test.services.max_body_bytes = limit;
    let base = serve_services(&test.services).await;
    let (status, body) = post_sync(&base, &test.token, CONTENT_TYPE, vec![0x80; limit + 1]).await;
    assert_eq!(status, 413);
    let message = String::from_utf8(body).unwrap();
    assert!(
        message.contains("too large") && message.contains(&format!("limit is {limit} bytes")),
        "{message}"
    );
    assert_eq!(head(&test).await, 0);
    // A request of exactly the limit still goes through.
    let (status, _) = post_sync(&base, &test.token, CONTENT_TYPE, fits).await;
    assert_eq!(status, 200);
    assert_eq!(head(&test).await, 1);
    assert_eq!(requests(&metrics_text(&base).await, "413"), 1.0);
}

#[tokio::test]
async fn a_wrong_content_type_gets_415_and_stores_nothing() {
    let test = common::memory_services(crewsync_server::MAX_BODY_BYTES).await;
    let base = serve_services(&test.services).await;
    let (status, body) = post_sync(
        &base,
        &test.token,
        "application/json",
        sync_body(&[journey_change(&test.signer)]),
    )
    .await;
    assert_eq!(status, 415);
    assert!(String::from_utf8(body).unwrap().contains(CONTENT_TYPE));
    assert_eq!(head(&test).await, 0);
    assert_eq!(requests(&metrics_text(&base).await, "415"), 1.0);
}

#[tokio::test]
async fn malformed_messagepack_gets_400_with_a_clear_message_and_stores_nothing() {
    let test = common::memory_services(crewsync_server::MAX_BODY_BYTES).await;
    let base = serve_services(&test.services).await;
    let valid = sync_body(&[journey_change(&test.signer)]);
    for garbage in [
        b"\xc1".to_vec(),
        valid[..valid.len() / 2].to_vec(),
        Vec::new(),
    ] {
        let (status, body) = post_sync(&base, &test.token, CONTENT_TYPE, garbage).await;
        assert_eq!(status, 400);
        let message = String::from_utf8(body).unwrap();
        assert!(message.contains("malformed sync message"), "{message}");
    }
    assert_eq!(head(&test).await, 0);
    assert_eq!(requests(&metrics_text(&base).await, "400"), 3.0);
}

/// A pushed document counts as the changes it holds, not as its heads.
#[tokio::test]
async fn a_pushed_document_counts_each_of_its_changes() {
    use automerge::{ActorId, Change};
    use crewsync_core::JourneyAction;
    use crewsync_core::document::JourneyDocument;
    use crewsync_core::ids::EntryId;
    use crewsync_core::model::Timestamp;

    let test = common::memory_services(crewsync_server::MAX_BODY_BYTES).await;
    let base = serve_services(&test.services).await;
    let (journey, creation) = journey_change(&test.signer);
    let mut doc = JourneyDocument::load(
        journey,
        None,
        vec![Change::from_bytes(creation).unwrap()],
        ActorId::random(),
    )
    .unwrap();
    for n in 0..4 {
        let note = JourneyAction::AddNote {
            note: EntryId::new(),
            text: format!("note {n}"),
        };
        doc.apply(&note, &test.signer.origin(), Timestamp::now())
            .unwrap();
    }
    let (status, body) = post_sync(
        &base,
        &test.token,
        CONTENT_TYPE,
        sync_body(&[(journey, doc.save())]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        wire::decode_response(&body).unwrap().acked.len(),
        1,
        "by its head"
    );
    assert_eq!(head(&test).await, 5);
    let text = metrics_text(&base).await;
    assert_eq!(
        sample(&text, "crewsync_changes_accepted_total", &[]),
        Some(5.0)
    );
}
