//! Capturing photos, videos and signatures: what is stored, what is recorded in the
//! journey, and that bad input stores nothing (reliability §F9, issue 5 points 1–2).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use common::images::{self, jpeg, jpeg_with_exif, mp4, png_bomb};
use common::{Device, crew_journey, device, device_with, exchange};
use crewsync_core::ids::JourneyId;
use crewsync_core::media::files::sha256_hex;
use crewsync_core::media::image_info::{self, ImageLimits};
use crewsync_core::media::signature::render_png;
use crewsync_core::media::{
    Format, MediaOptions, SignatureCapture, SignatureRefusal, Stroke, StrokePoint, UploadKind,
};
use crewsync_core::model::{
    EntryKind, GpsPoint, MediaKind, MediaRef, Role, SignerRole, StepNumber, Timestamp,
};
use crewsync_core::store::{CaptureInfo, MediaSource};
use crewsync_core::{DeviceStore, Error, StoreOptions};
use image::ImageFormat;

fn files_in(store: &DeviceStore) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(store.media_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn fix() -> GpsPoint {
    GpsPoint {
        lat: 43.65,
        lon: -79.38,
        accuracy_m: Some(5.0),
        at: Timestamp(1_700_000_000_000),
    }
}

fn step(n: u8) -> StepNumber {
    StepNumber::new(n).unwrap()
}

#[test]
fn a_photo_is_stored_as_given_with_its_metadata_thumbnail_and_entry() {
    let d = device(Role::Driver);
    let j = crew_journey(&d, &[]);
    let bytes = jpeg_with_exif(1200, 900, "2026:11:24 09:30:00");
    let outbox_before = d.store.outbox_len().unwrap();
    let media = d
        .store
        .capture_photo(
            j,
            MediaSource::Bytes(bytes.clone()),
            CaptureInfo {
                step: Some(step(2)),
                gps: Some(fix()),
                tag: Some("SC".into()),
                ..CaptureInfo::default()
            },
        )
        .unwrap();

    assert_eq!(media.kind, MediaKind::Photo);
    assert_eq!(media.sha256.as_deref(), Some(sha256_hex(&bytes).as_str()));
    assert_eq!(media.size, Some(bytes.len() as u64));
    assert_eq!(media.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!((media.width, media.height), (Some(1200), Some(900)));
    assert_eq!(media.exif_time.as_deref(), Some("2026:11:24 09:30:00"));
    // No offset in the EXIF: read in the journey's timezone (Toronto, UTC-5 in November).
    assert_eq!(
        media.captured_at.unwrap().to_string(),
        "2026-11-24T14:30:00.000Z"
    );
    let exif_gps = media.exif_gps.unwrap();
    assert!((exif_gps.lat - 43.65).abs() < 1e-9 && (exif_gps.lon + 79.383_333).abs() < 1e-5);
    assert_eq!(media.gps, Some(fix()));
    assert_eq!(
        media.device.as_deref(),
        Some(d.store.device_id().to_string().as_str())
    );
    assert_eq!(media.captured.by, d.user.user_id);
    assert_eq!(media.step, Some(2));

    // The original is byte-identical (never recompressed or stripped).
    let original = d.store.media_dir().join(format!("{}.jpg", media.id));
    assert_eq!(fs::read(&original).unwrap(), bytes);
    // The thumbnail: its own file, a JPEG of at most 320 px, hash recorded.
    let thumb_path = d.store.media_dir().join(format!("{}.thumb.jpg", media.id));
    let thumb = fs::read(&thumb_path).unwrap();
    assert_eq!(
        media.thumbnail_sha256.as_deref(),
        Some(sha256_hex(&thumb).as_str())
    );
    assert_eq!(media.thumbnail_size, Some(thumb.len() as u64));
    let decoded = image::load_from_memory_with_format(&thumb, ImageFormat::Jpeg).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (320, 240));

    // The journey holds the MediaRef and a PHOTO entry naming it, in one change.
    assert_eq!(d.store.outbox_len().unwrap(), outbox_before + 1);
    let view = d.store.journey(j).unwrap();
    assert_eq!(view.media, vec![media.clone()]);
    let entry = view
        .entries
        .iter()
        .find(|e| e.media_id == Some(media.id))
        .unwrap();
    assert_eq!(entry.kind, EntryKind::Photo);
    assert_eq!(Some(entry.id), media.entry);
    assert_eq!(entry.tag.as_deref(), Some("SC"));
    assert_eq!(
        d.store
            .list_journeys(common::toronto().id, common::day())
            .unwrap()[0]
            .photo_count,
        1
    );

    // Two queue items: the original and the thumbnail.
    let queue = d.store.upload_queue().unwrap();
    let kinds: Vec<UploadKind> = queue.iter().map(|i| i.kind).collect();
    assert_eq!(kinds, [UploadKind::Thumbnail, UploadKind::Photo]);
    assert!(
        queue
            .iter()
            .all(|i| i.media_id == media.id && i.journey_id == j)
    );
    assert_eq!(queue[1].path, original);
    assert_eq!(queue[1].sha256, sha256_hex(&bytes));
    assert_eq!(queue[0].content_type, "image/jpeg");
    assert_eq!(files_in(&d.store).len(), 2);
}

#[test]
fn png_and_webp_are_captured_from_a_path() {
    let d = device(Role::Mover);
    let j = crew_journey(&d, &[]);
    for (format, content_type) in [
        (ImageFormat::Png, "image/png"),
        (ImageFormat::WebP, "image/webp"),
    ] {
        let bytes = images::encode(&images::picture(640, 480, 3), format);
        let path = d
            .dir
            .path()
            .join(format!("camera.{}", format.extensions_str()[0]));
        fs::write(&path, &bytes).unwrap();
        let media = d
            .store
            .capture_photo(j, MediaSource::Path(path.clone()), CaptureInfo::default())
            .unwrap();
        assert_eq!(media.content_type.as_deref(), Some(content_type));
        assert_eq!((media.width, media.height), (Some(640), Some(480)));
        assert_eq!(media.sha256.as_deref(), Some(sha256_hex(&bytes).as_str()));
        // No EXIF: capture time is the device time.
        assert_eq!(media.captured_at, Some(media.captured.at));
        assert_eq!(fs::read(&path).unwrap(), bytes, "the source is left alone");
    }
    assert_eq!(d.store.upload_queue().unwrap().len(), 4);
}

/// Each bad input is refused with a clear error and leaves no file, no queue row,
/// no journey change.
#[test]
fn bombs_truncated_files_and_wrong_content_store_nothing() {
    let d = device(Role::Driver);
    let j = crew_journey(&d, &[]);
    let good = jpeg(800, 600, 5);
    let mut garbage_after_header = good[..300].to_vec();
    garbage_after_header.extend(std::iter::repeat_n(0x55u8, 5_000));
    type Case = (&'static str, Vec<u8>, fn(&Error) -> bool);
    let cases: Vec<Case> = vec![
        (
            "png bomb 60000x60000",
            png_bomb(60_000, 60_000),
            |e| matches!(e, Error::InvalidMedia(m) if m.contains("60000×60000")),
        ),
        ("truncated jpeg", good[..good.len() / 2].to_vec(), |e| {
            matches!(e, Error::InvalidMedia(_))
        }),
        ("jpeg header then garbage", garbage_after_header, |e| {
            matches!(e, Error::InvalidMedia(_))
        }),
        (
            "windows exe",
            b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec(),
            |e| matches!(e, Error::Unsupported(_)),
        ),
        ("gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec(), |e| {
            matches!(e, Error::Unsupported(_))
        }),
        ("empty", Vec::new(), |e| matches!(e, Error::Unsupported(_))),
        ("a video as a photo", mp4(1_000), |e| {
            matches!(e, Error::Unsupported(_))
        }),
    ];
    let outbox = d.store.outbox_len().unwrap();
    for (name, bytes, expected) in cases {
        let error = d
            .store
            .capture_photo(j, MediaSource::Bytes(bytes), CaptureInfo::default())
            .unwrap_err();
        assert!(expected(&error), "{name}: {error}");
        assert!(files_in(&d.store).is_empty(), "{name}: a file was left");
        assert!(
            d.store.upload_queue().unwrap().is_empty(),
            "{name}: a row was left"
        );
        assert_eq!(
            d.store.outbox_len().unwrap(),
            outbox,
            "{name}: a change was made"
        );
        assert!(d.store.journey(j).unwrap().media.is_empty(), "{name}");
    }
    // Control: the untruncated photo is accepted by the same path.
    d.store
        .capture_photo(j, MediaSource::Bytes(good), CaptureInfo::default())
        .unwrap();
    assert_eq!(files_in(&d.store).len(), 2);
}

/// The bomb is caught by the explicit limits, not by luck: with the limits lifted
/// the same header reads as a 60000×60000 image that a decoder would then allocate.
#[test]
fn the_bomb_is_stopped_by_the_explicit_limits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.png");
    fs::write(&path, png_bomb(60_000, 60_000)).unwrap();
    let strict = image_info::dimensions(&path, Format::Png, &ImageLimits::default());
    assert!(matches!(strict, Err(Error::InvalidMedia(_))), "{strict:?}");
    let lifted = ImageLimits {
        max_width: u32::MAX,
        max_height: u32::MAX,
        max_alloc: u64::MAX,
    };
    assert_eq!(
        image_info::dimensions(&path, Format::Png, &lifted).unwrap(),
        (60_000, 60_000)
    );
}

#[test]
fn a_video_is_kept_as_it_is_and_large_ones_wait_for_wifi() {
    let d = device_with(
        Role::Driver,
        StoreOptions {
            media: MediaOptions {
                wifi_only_over_bytes: 10_000,
                ..MediaOptions::default()
            },
            ..StoreOptions::default()
        },
    );
    let j = crew_journey(&d, &[]);
    let small = mp4(2_000);
    let large = mp4(50_000);
    let a = d
        .store
        .capture_video(j, MediaSource::Bytes(small.clone()), CaptureInfo::default())
        .unwrap();
    let b = d
        .store
        .capture_video(j, MediaSource::Bytes(large.clone()), CaptureInfo::default())
        .unwrap();
    assert_eq!(a.kind, MediaKind::Video);
    assert_eq!(a.content_type.as_deref(), Some("video/mp4"));
    assert_eq!((a.width, a.thumbnail_sha256.as_deref()), (None, None));
    assert_eq!(
        fs::read(d.store.media_dir().join(format!("{}.mp4", b.id))).unwrap(),
        large
    );
    let queue = d.store.upload_queue().unwrap();
    assert_eq!(queue.len(), 2, "videos get no device thumbnail");
    let wifi_only: Vec<bool> = queue.iter().map(|i| i.wifi_only).collect();
    assert_eq!(wifi_only, [false, true]);
    let entry = d
        .store
        .journey(j)
        .unwrap()
        .entries
        .into_iter()
        .find(|e| e.media_id == Some(a.id))
        .unwrap();
    assert_eq!(entry.kind, EntryKind::Video);
    // A photo is not a video.
    let photo = d.store.capture_video(
        j,
        MediaSource::Bytes(jpeg(10, 10, 1)),
        CaptureInfo::default(),
    );
    assert!(matches!(photo, Err(Error::Unsupported(_))));
}

fn strokes(shift: f32) -> Vec<Stroke> {
    let point = |x: f32, y: f32, t: i64, pressure: Option<f32>| StrokePoint {
        x: x + shift,
        y,
        at: Timestamp(1_700_000_000_000 + t),
        pressure,
    };
    vec![
        Stroke {
            points: vec![
                point(20.0, 100.0, 0, Some(0.4)),
                point(60.5, 40.25, 16, Some(0.7)),
                point(120.0, 150.0, 33, Some(0.9)),
                point(180.0, 60.0, 50, None),
            ],
        },
        Stroke {
            points: vec![
                point(200.0, 120.0, 400, None),
                point(380.0, 118.0, 450, None),
            ],
        },
    ]
}

fn signature(document_sha256: &str, shift: f32) -> SignatureCapture {
    SignatureCapture {
        signer_name: "Ada Customer".into(),
        signer_role: SignerRole::Customer,
        document: "bill_of_lading".into(),
        document_sha256: document_sha256.into(),
        consent: true,
        canvas_width: 400,
        canvas_height: 200,
        strokes: strokes(shift),
        step: Some(StepNumber::new(4).unwrap()),
        gps: Some(fix()),
    }
}

#[test]
fn the_same_strokes_give_a_byte_identical_png() {
    let a = render_png(400, 200, &strokes(0.0)).unwrap();
    let b = render_png(400, 200, &strokes(0.0)).unwrap();
    assert_eq!(a, b);
    // Control: the check can fail — a stroke moved by half a pixel changes the bytes.
    let c = render_png(400, 200, &strokes(0.5)).unwrap();
    assert_ne!(a, c);
    let image = image::load_from_memory_with_format(&a, ImageFormat::Png)
        .unwrap()
        .into_luma8();
    assert_eq!(image.dimensions(), (400, 200));
    let ink = image.pixels().filter(|p| p.0[0] == 0).count();
    assert!(ink > 500, "strokes are drawn ({ink} ink pixels)");
    // Bad strokes are refused.
    assert!(render_png(400, 200, &[]).is_err());
    assert!(render_png(400, 200, &strokes(1_000.0)).is_err());
}

#[test]
fn a_signature_binds_signer_document_time_gps_and_png_hash() {
    let d = device(Role::Driver);
    let j = crew_journey(&d, &[]);
    let doc_hash = "ab".repeat(32);
    let media = d
        .store
        .capture_signature(j, &signature(&doc_hash, 0.0))
        .unwrap();
    let png = fs::read(d.store.media_dir().join(format!("{}.png", media.id))).unwrap();
    assert_eq!(
        png,
        render_png(400, 200, &strokes(0.0)).unwrap(),
        "same strokes, same bytes"
    );
    assert_eq!(media.sha256.as_deref(), Some(sha256_hex(&png).as_str()));
    assert_eq!(media.kind, MediaKind::Signature);
    assert_eq!(media.gps, Some(fix()));
    let record = media.signature.clone().unwrap();
    assert_eq!(record.signer_name, "Ada Customer");
    assert_eq!(record.signer_role, SignerRole::Customer);
    assert_eq!(record.document_sha256, doc_hash);
    assert!(record.consent && record.refused.is_none());
    assert_eq!((record.strokes, record.points), (2, 6));
    let view = d.store.journey(j).unwrap();
    let entry = view
        .entries
        .iter()
        .find(|e| e.media_id == Some(media.id))
        .unwrap();
    assert_eq!(entry.kind, EntryKind::Signature);
    assert_eq!(entry.device_time, media.captured.at);
    let queue = d.store.upload_queue().unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(
        (queue[0].kind, queue[0].content_type.as_str()),
        (UploadKind::Signature, "image/png")
    );

    // No consent, or a malformed document hash: refused, nothing stored.
    let mut no_consent = signature(&doc_hash, 0.0);
    no_consent.consent = false;
    assert!(matches!(
        d.store.capture_signature(j, &no_consent),
        Err(Error::InvalidInput(_))
    ));
    assert!(
        d.store
            .capture_signature(j, &signature("not-a-hash", 0.0))
            .is_err()
    );
    assert_eq!(d.store.upload_queue().unwrap().len(), 1);
    assert_eq!(files_in(&d.store).len(), 1);
}

#[test]
fn a_refusal_to_sign_is_recorded_with_its_reason_and_no_png() {
    let d = device(Role::Driver);
    let j = crew_journey(&d, &[]);
    let refusal = SignatureRefusal {
        signer_name: "Bob Customer".into(),
        signer_role: SignerRole::Customer,
        document: "inventory".into(),
        document_sha256: "cd".repeat(32),
        reason: "disputes the scratch on the piano".into(),
        step: None,
        gps: None,
    };
    let media = d.store.record_signature_refusal(j, &refusal).unwrap();
    assert_eq!(media.sha256, None);
    let record = media.signature.unwrap();
    assert_eq!(
        record.refused.as_deref(),
        Some("disputes the scratch on the piano")
    );
    assert!(!record.consent);
    assert!(d.store.upload_queue().unwrap().is_empty());
    assert!(files_in(&d.store).is_empty());
    let view = d.store.journey(j).unwrap();
    let entry = view
        .entries
        .iter()
        .find(|e| e.media_id == Some(media.id))
        .unwrap();
    assert_eq!(entry.kind, EntryKind::Signature);
    assert_eq!(
        entry.text.as_deref(),
        Some("disputes the scratch on the piano")
    );
    // A refusal is not counted as a signature.
    assert_eq!(
        d.store
            .list_journeys(common::toronto().id, common::day())
            .unwrap()[0]
            .signature_count,
        0
    );
}

/// Two devices each take a signature offline; after a merge both are there, each
/// with its own PNG hash: signatures are keyed by fresh ids, never merged.
#[test]
fn two_concurrent_signatures_both_survive_a_merge() {
    let a = device(Role::Driver);
    let j: JourneyId = crew_journey(&a, &[]);
    let b: Device = device(Role::Driver);
    common::send(&a.store, &b.store, j);
    b.store.set_active_user(Some(a.user.clone())).unwrap();
    let first = a
        .store
        .capture_signature(j, &signature(&"01".repeat(32), 0.0))
        .unwrap();
    let second = b
        .store
        .capture_signature(j, &signature(&"02".repeat(32), 3.0))
        .unwrap();
    assert_ne!(first.sha256, second.sha256);
    exchange(&a.store, &b.store, j);
    for store in [&a.store, &b.store] {
        let view = store.journey(j).unwrap();
        let mut hashes: Vec<_> = view.media.iter().map(|m| m.sha256.clone()).collect();
        hashes.sort();
        let mut expected = vec![first.sha256.clone(), second.sha256.clone()];
        expected.sort();
        assert_eq!(hashes, expected);
        assert_eq!(
            view.entries
                .iter()
                .filter(|e| e.kind == EntryKind::Signature)
                .count(),
            2
        );
        let docs: Vec<_> = view
            .media
            .iter()
            .map(|m| m.signature.clone().unwrap().document_sha256)
            .collect();
        assert!(docs.contains(&"01".repeat(32)) && docs.contains(&"02".repeat(32)));
    }
}

/// A phone held upright writes its pixels sideways with EXIF Orientation 6: the
/// thumbnail is turned upright (sides swapped), the original kept byte for byte.
/// Control: the same pixels without the tag give a landscape thumbnail.
#[test]
fn the_thumbnail_honours_the_exif_orientation_and_the_original_is_untouched() {
    let d = device(Role::Driver);
    let j = crew_journey(&d, &[]);
    let plain = jpeg(400, 200, 11);
    let sideways = images::with_orientation(&plain, 6);
    let thumbnail_size = |media: &MediaRef| {
        let bytes = fs::read(d.store.media_dir().join(format!("{}.thumb.jpg", media.id))).unwrap();
        let thumb = image::load_from_memory_with_format(&bytes, ImageFormat::Jpeg).unwrap();
        (thumb.width(), thumb.height())
    };

    let turned = d
        .store
        .capture_photo(
            j,
            MediaSource::Bytes(sideways.clone()),
            CaptureInfo::default(),
        )
        .unwrap();
    assert_eq!(thumbnail_size(&turned), (160, 320), "turned upright");
    let original = fs::read(d.store.media_dir().join(format!("{}.jpg", turned.id))).unwrap();
    assert_eq!(
        original, sideways,
        "the original is kept as given, tag and all"
    );
    assert_eq!((turned.width, turned.height), (Some(400), Some(200)));

    let control = d
        .store
        .capture_photo(j, MediaSource::Bytes(plain), CaptureInfo::default())
        .unwrap();
    assert_eq!(thumbnail_size(&control), (320, 160), "no tag: as stored");
}
