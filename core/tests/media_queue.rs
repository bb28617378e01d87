//! The persisted upload queue: lanes (signatures, thumbnails, originals smallest
//! first), the entry-before-bytes gate, Wi-Fi only, backoff and set-aside, progress,
//! reopening, and the open-time cleanup (issue 5 point 3).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use common::images::{jpeg, mp4};
use common::{Device, crew_journey, device_with};
use crewsync_core::media::queue::ItemState;
use crewsync_core::media::{
    MediaOptions, NetworkKind, SignatureCapture, Stroke, StrokePoint, UploadKind,
};
use crewsync_core::model::{Role, SignerRole, Timestamp};
use crewsync_core::store::{CaptureInfo, MediaSource};
use crewsync_core::sync::engine;
use crewsync_core::{DeviceStore, StoreOptions};

fn options() -> StoreOptions {
    StoreOptions {
        media: MediaOptions {
            wifi_only_over_bytes: 20_000,
            max_attempts: 3,
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
            ..MediaOptions::default()
        },
        ..StoreOptions::default()
    }
}

fn sign(d: &Device, j: crewsync_core::ids::JourneyId) -> crewsync_core::model::MediaRef {
    let point = |x: f32, y: f32| StrokePoint {
        x,
        y,
        at: Timestamp(0),
        pressure: None,
    };
    d.store
        .capture_signature(
            j,
            &SignatureCapture {
                signer_name: "Ada".into(),
                signer_role: SignerRole::Customer,
                document: "bill_of_lading".into(),
                document_sha256: "ee".repeat(32),
                consent: true,
                canvas_width: 300,
                canvas_height: 100,
                strokes: vec![Stroke {
                    points: vec![point(10.0, 10.0), point(290.0, 90.0)],
                }],
                step: None,
                gps: None,
            },
        )
        .unwrap()
}

/// What a sync does to the queue's gate: the server acknowledged every change.
fn sync_outbox(store: &DeviceStore) {
    let hashes: Vec<_> = store
        .outbox(10_000)
        .unwrap()
        .iter()
        .map(|e| e.hash)
        .collect();
    store.acknowledge(&hashes).unwrap();
}

#[test]
fn forty_photos_and_a_signature_go_signature_first_then_thumbnails_then_originals_smallest_first() {
    let d = device_with(Role::Driver, options());
    let j = crew_journey(&d, &[]);
    let mut photos = Vec::new();
    for i in 0..40u32 {
        // Sizes that do not follow capture order.
        let side = 40 + (i * 37 % 41) * 4;
        let media = d
            .store
            .capture_photo(
                j,
                MediaSource::Bytes(jpeg(side, side, i)),
                CaptureInfo::default(),
            )
            .unwrap();
        photos.push(media);
    }
    let signature = sign(&d, j);

    // Offline: nothing goes. Online but the entries have not reached the server:
    // nothing goes either (an item's entry reaches the server no later than its bytes).
    assert_eq!(d.store.next_item(NetworkKind::Offline).unwrap(), None);
    assert_eq!(d.store.next_item(NetworkKind::Wifi).unwrap(), None);
    sync_outbox(&d.store);

    let mut order = Vec::new();
    while let Some(item) = d.store.next_item(NetworkKind::Cellular).unwrap() {
        assert!(order.len() <= 81, "the queue does not end");
        d.store.mark_done(&item.item_id).unwrap();
        order.push(item);
    }
    assert_eq!(order.len(), 81);
    assert_eq!(order[0].kind, UploadKind::Signature);
    assert_eq!(order[0].media_id, signature.id);
    let thumbnails: Vec<_> = order[1..41].iter().map(|i| (i.kind, i.media_id)).collect();
    let expected: Vec<_> = photos
        .iter()
        .map(|p| (UploadKind::Thumbnail, p.id))
        .collect();
    assert_eq!(thumbnails, expected, "thumbnails in capture order");
    let originals = &order[41..];
    assert!(originals.iter().all(|i| i.kind == UploadKind::Photo));
    let sizes: Vec<u64> = originals.iter().map(|i| i.size).collect();
    let mut sorted = sizes.clone();
    sorted.sort();
    assert_eq!(sizes, sorted, "originals smallest first");
    assert_ne!(
        originals.iter().map(|i| i.media_id).collect::<Vec<_>>(),
        photos.iter().map(|p| p.id).collect::<Vec<_>>(),
        "the control: size order is not capture order here"
    );
    // Each item carries what the upload protocol needs.
    let first = &originals[0];
    assert_eq!(first.content_type, "image/jpeg");
    assert_eq!(first.journey_id, j);
    assert_eq!(fs::metadata(&first.path).unwrap().len(), first.size);
    let progress = d.store.media_progress().unwrap();
    assert_eq!(
        (
            progress.pending_items,
            progress.pending_bytes,
            progress.done_items
        ),
        (0, 0, 81)
    );
}

#[test]
fn large_videos_wait_for_wifi_and_the_rest_go_on_cellular() {
    let d = device_with(Role::Driver, options());
    let j = crew_journey(&d, &[]);
    let big = d
        .store
        .capture_video(j, MediaSource::Bytes(mp4(50_000)), CaptureInfo::default())
        .unwrap();
    let small = d
        .store
        .capture_video(
            j,
            MediaSource::Bytes(mp4(60_000)[..5_000].to_vec()),
            CaptureInfo::default(),
        )
        .unwrap();
    sync_outbox(&d.store);
    d.store.set_network(NetworkKind::Cellular).unwrap();
    let next = d.store.next_upload().unwrap().unwrap();
    assert_eq!(next.media_id, small.id);
    d.store.mark_done(&next.item_id).unwrap();
    assert_eq!(
        d.store.next_upload().unwrap(),
        None,
        "the large video waits for Wi-Fi"
    );
    d.store.set_network(NetworkKind::Wifi).unwrap();
    let next = d.store.next_upload().unwrap().unwrap();
    assert_eq!((next.media_id, next.wifi_only), (big.id, true));
    d.store.set_network(NetworkKind::Offline).unwrap();
    assert_eq!(d.store.next_upload().unwrap(), None);
}

#[test]
fn a_failing_item_backs_off_then_is_set_aside_and_never_wedges_the_queue() {
    let d = device_with(Role::Driver, options());
    let j = crew_journey(&d, &[]);
    sign(&d, j);
    let other = sign(&d, j);
    sync_outbox(&d.store);
    let t0 = Timestamp(1_000_000);
    let bad = d
        .store
        .next_item_at(NetworkKind::Wifi, t0)
        .unwrap()
        .unwrap();
    assert_eq!(
        d.store
            .mark_failed_at(&bad.item_id, "HTTP 500", t0)
            .unwrap(),
        ItemState::Pending
    );
    // Backing off: the other item goes meanwhile.
    let meanwhile = d
        .store
        .next_item_at(NetworkKind::Wifi, t0)
        .unwrap()
        .unwrap();
    assert_eq!(meanwhile.media_id, other.id);
    // After 1 s it is back (and first in line again).
    assert_eq!(
        d.store
            .next_item_at(NetworkKind::Wifi, Timestamp(t0.0 + 999))
            .unwrap()
            .unwrap()
            .item_id,
        meanwhile.item_id
    );
    assert_eq!(
        d.store
            .next_item_at(NetworkKind::Wifi, Timestamp(t0.0 + 1_000))
            .unwrap()
            .unwrap()
            .item_id,
        bad.item_id
    );
    // Second failure: 2 s; third: set aside with its reason.
    let t1 = Timestamp(t0.0 + 1_000);
    d.store
        .mark_failed_at(&bad.item_id, "HTTP 500", t1)
        .unwrap();
    assert_eq!(
        d.store
            .next_item_at(NetworkKind::Wifi, Timestamp(t1.0 + 1_999))
            .unwrap()
            .unwrap()
            .item_id,
        meanwhile.item_id
    );
    let t2 = Timestamp(t1.0 + 2_000);
    assert_eq!(
        d.store
            .mark_failed_at(&bad.item_id, "422 digest_mismatch", t2)
            .unwrap(),
        ItemState::SetAside
    );
    let aside = d.store.upload_item(&bad.item_id).unwrap();
    assert_eq!((aside.state, aside.attempts), (ItemState::SetAside, 3));
    assert_eq!(aside.last_error.as_deref(), Some("422 digest_mismatch"));
    // Far in the future it still does not come back; the rest go on.
    let far = Timestamp(t2.0 + 10_000_000);
    assert_eq!(
        d.store
            .next_item_at(NetworkKind::Wifi, far)
            .unwrap()
            .unwrap()
            .item_id,
        meanwhile.item_id
    );
    d.store.mark_done(&meanwhile.item_id).unwrap();
    assert_eq!(d.store.next_item_at(NetworkKind::Wifi, far).unwrap(), None);
    let progress = d.store.media_progress().unwrap();
    assert_eq!(
        (
            progress.pending_items,
            progress.set_aside_items,
            progress.done_items
        ),
        (0, 1, 1)
    );
    assert_eq!(
        progress.pending_bytes, aside.size,
        "set-aside bytes are still owed"
    );
    // Someone looked: it goes again.
    d.store.retry_upload(&bad.item_id).unwrap();
    assert_eq!(
        d.store
            .next_item_at(NetworkKind::Wifi, far)
            .unwrap()
            .unwrap()
            .item_id,
        bad.item_id
    );
}

#[test]
fn the_queue_survives_reopening_and_feeds_the_sync_report() {
    let d = device_with(Role::Driver, options());
    let j = crew_journey(&d, &[]);
    let photo = d
        .store
        .capture_photo(
            j,
            MediaSource::Bytes(jpeg(300, 200, 1)),
            CaptureInfo::default(),
        )
        .unwrap();
    sign(&d, j);
    sync_outbox(&d.store);
    let item = d.store.next_item(NetworkKind::Wifi).unwrap().unwrap();
    d.store.mark_progress(&item.item_id, 100).unwrap();
    let before = d.store.upload_queue().unwrap();
    let progress = d.store.media_progress().unwrap();
    let total: u64 = before.iter().map(|i| i.size).sum();
    assert_eq!(progress.pending_bytes, total - 100);
    assert_eq!(progress.pending_items, 3);
    let path = d.store.path().to_path_buf();
    drop(d.store);

    let store = DeviceStore::open(&path, options()).unwrap();
    assert_eq!(store.upload_queue().unwrap(), before);
    assert_eq!(store.upload_item(&item.item_id).unwrap().offset_hint, 100);
    assert!(store.media_problems().unwrap().is_empty());
    assert!(store.verify_media().unwrap().is_empty());
    assert!(before.iter().any(|i| i.media_id == photo.id));
    // The sync request reports the bytes still to upload to the office.
    store.set_active_user(Some(d.user.clone())).unwrap();
    let request = engine::prepare(&store, "server", engine::Limits::default()).unwrap();
    assert_eq!(request.report.unwrap().pending_media_bytes, total - 100);
}

#[test]
fn orphans_are_removed_and_broken_rows_reported_at_open_and_done_files_purged() {
    let d = device_with(Role::Driver, options());
    let j = crew_journey(&d, &[]);
    let a = d
        .store
        .capture_photo(
            j,
            MediaSource::Bytes(jpeg(200, 100, 1)),
            CaptureInfo::default(),
        )
        .unwrap();
    let b = d
        .store
        .capture_photo(
            j,
            MediaSource::Bytes(jpeg(210, 100, 2)),
            CaptureInfo::default(),
        )
        .unwrap();
    let dir = d.store.media_dir().to_path_buf();
    let path = d.store.path().to_path_buf();
    drop(d.store);
    // A crash left a temp file and a renamed file with no row; b's original lost bytes.
    fs::write(dir.join(".tmp-0192f1c4"), b"partial").unwrap();
    fs::write(
        dir.join("0192f1c4-dead-7000-8000-000000000000.jpg"),
        jpeg(10, 10, 3),
    )
    .unwrap();
    let b_original = dir.join(format!("{}.jpg", b.id));
    let bytes = fs::read(&b_original).unwrap();
    fs::write(&b_original, &bytes[..bytes.len() - 10]).unwrap();

    let store = DeviceStore::open(&path, options()).unwrap();
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected = vec![
        format!("{}.jpg", a.id),
        format!("{}.thumb.jpg", a.id),
        format!("{}.jpg", b.id),
        format!("{}.thumb.jpg", b.id),
    ];
    expected.sort();
    assert_eq!(names, expected, "orphans removed, referenced files kept");
    let problems = store.media_problems().unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, b_original);
    assert!(
        problems[0].reason.contains("bytes"),
        "{}",
        problems[0].reason
    );
    let item = store.upload_item(&problems[0].item_id).unwrap();
    assert_eq!(item.state, ItemState::SetAside);

    // Same size, different bytes: only the full rehash sees it.
    let a_thumb = dir.join(format!("{}.thumb.jpg", a.id));
    let mut thumb = fs::read(&a_thumb).unwrap();
    let last = thumb.len() - 3;
    thumb[last] ^= 0xFF;
    fs::write(&a_thumb, &thumb).unwrap();
    let rehashed = store.verify_media().unwrap();
    assert!(rehashed.iter().any(|p| p.path == a_thumb), "{rehashed:?}");

    // Uploaded items' files go only when purged, after the server confirmed.
    store.set_active_user(Some(d.user.clone())).unwrap();
    sync_outbox(&store);
    let a_original = store
        .upload_queue()
        .unwrap()
        .into_iter()
        .find(|i| i.media_id == a.id && i.kind == UploadKind::Photo)
        .unwrap();
    store.mark_done(&a_original.item_id).unwrap();
    assert!(a_original.path.exists(), "done is not deleted before purge");
    assert_eq!(store.purge_uploaded().unwrap(), 1);
    assert!(!a_original.path.exists());
    assert_eq!(store.upload_queue().unwrap().len(), 3);
}

/// A capture the server refused is rebuilt out of the journey, so the server will
/// never hold its entry: its items are set aside with the reason instead of waiting
/// for `entry_not_synced` to clear forever. A capture merely not synced yet keeps
/// waiting (the control).
#[test]
fn files_of_a_refused_capture_are_set_aside_and_a_recorded_one_waits() {
    let d = device_with(Role::Driver, options());
    let j = crew_journey(&d, &[]);
    sync_outbox(&d.store);
    let kept = d
        .store
        .capture_photo(
            j,
            MediaSource::Bytes(jpeg(64, 48, 1)),
            CaptureInfo::default(),
        )
        .unwrap();
    sync_outbox(&d.store);
    let refused = d
        .store
        .capture_photo(
            j,
            MediaSource::Bytes(jpeg(80, 60, 2)),
            CaptureInfo::default(),
        )
        .unwrap();
    let capture = d.store.outbox(10).unwrap();
    assert_eq!(capture.len(), 1, "the second capture is one unsent change");
    d.store
        .reject_local_changes(&[(capture[0].hash, "not allowed: test".into())])
        .unwrap();
    assert!(
        d.store
            .journey(j)
            .unwrap()
            .media
            .iter()
            .all(|m| m.id != refused.id)
    );

    let items = d.store.upload_queue().unwrap();
    for item in &items {
        let set_aside = d.store.set_aside_if_unrecorded(&item.item_id).unwrap();
        assert_eq!(set_aside, item.media_id == refused.id, "{item:?}");
    }
    for item in d.store.upload_queue().unwrap() {
        if item.media_id == refused.id {
            assert_eq!(item.state, ItemState::SetAside, "{item:?}");
            assert!(item.last_error.unwrap().contains("refused the change"));
        } else {
            assert_eq!(item.media_id, kept.id);
            assert_eq!(item.state, ItemState::Pending, "{item:?}");
        }
    }
    let progress = d.store.media_progress().unwrap();
    assert_eq!((progress.pending_items, progress.set_aside_items), (2, 2));
}
