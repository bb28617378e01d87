//! The media upload protocol over real HTTP on 127.0.0.1 (reliability.md §E,
//! F8–F10, F13), on embedded SQLite and on Postgres where the storage differs:
//! resumable chunks at server-owned offsets, digests, idempotent completion,
//! expiry, limits, image bombs, path-ish metadata, stale rights at completion,
//! other tenants' ids, and "entry before bytes".
#![allow(clippy::unwrap_used)]

mod common;
mod media_common;

use crewsync_core::ids::MediaId;
use crewsync_core::model::Role;
use crewsync_server::directory::UserStatus;
use media_common::{Backend, CHUNK, Item, jpeg, png, sha_hex, world};
use serde_json::json;

macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(Backend::Postgres).await;
            }
        }
    };
}

on_both!(upload_resume_serve_and_idempotent_completion);
on_both!(concurrent_patches_at_one_offset_exactly_one_wins);
on_both!(abandoned_uploads_expire_and_restart_from_zero);
on_both!(stale_rights_at_completion_refuse_and_discard);
on_both!(evidence_tombstone_retention_and_legal_hold);

/// E7 and the happy path: chunks resume from HEAD's offset, completion is
/// idempotent, a repeated create says "complete", a second media id with the
/// same bytes shares the blob; GET serves the bytes and a server thumbnail;
/// usage counts it; the audit trail has one `media.uploaded` per item.
async fn upload_resume_serve_and_idempotent_completion(backend: Backend) {
    let w = world(backend).await;
    let photo = Item::new("photo", "image/jpeg", jpeg(640, 480, 1));
    assert!(photo.bytes.len() as u64 > 2 * CHUNK, "several chunks");
    w.push_entry(&w.driver, &photo, None).await;
    let token = &w.driver.token;

    let (status, state) = w.create(token, &photo.create_body(w.journey)).await;
    assert_eq!(status, 201, "{state}");
    assert_eq!(state["offset"], 0);
    assert_eq!(state["max_chunk"], CHUNK);
    let upload = state["upload_id"].as_str().unwrap().to_owned();
    let (status, next, _) = w
        .patch(token, &upload, 0, &photo.bytes[..CHUNK as usize], None)
        .await;
    assert_eq!((status, next), (204, Some(CHUNK)));
    // A fresh client resumes: the same create answers the same upload at its offset.
    let (status, again) = w.create(token, &photo.create_body(w.journey)).await;
    assert_eq!(status, 200);
    assert_eq!(again["upload_id"], upload.as_str());
    assert_eq!(w.head(token, &upload).await, (200, Some(CHUNK)));
    // Completing early is refused with the offset.
    let (status, body) = w.complete(token, &upload).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "upload_incomplete");
    let mut offset = CHUNK;
    while offset < photo.bytes.len() as u64 {
        let end = (offset + CHUNK).min(photo.bytes.len() as u64);
        let (status, next, _) = w
            .patch(
                token,
                &upload,
                offset,
                &photo.bytes[offset as usize..end as usize],
                None,
            )
            .await;
        assert_eq!(status, 204);
        offset = next.unwrap();
    }
    let (status, done) = w.complete(token, &upload).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["sha256"], photo.sha256.as_str());
    assert_eq!(
        (done["width"].as_u64(), done["height"].as_u64()),
        (Some(640), Some(480))
    );
    // Idempotent: again, the same answer; a repeated create says complete.
    assert_eq!(w.complete(token, &upload).await, (200, done.clone()));
    let (status, state) = w.create(token, &photo.create_body(w.journey)).await;
    assert_eq!((status, state["status"].as_str()), (200, Some("complete")));
    assert_eq!(w.media_rows(photo.media_id).await, 1);
    assert!(!w.staging_file(&upload).exists(), "staging removed");

    // Served byte for byte, to the office too; a thumbnail of ≤ 320 px.
    let (status, bytes) = w
        .get(
            &w.dispatcher.token,
            &format!("/v1/media/{}", photo.media_id),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(sha_hex(&bytes), photo.sha256);
    let (status, thumb) = w
        .get(token, &format!("/v1/media/{}/thumbnail", photo.media_id))
        .await;
    assert_eq!(status, 200);
    let thumb = image::load_from_memory(&thumb).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (320, 240));

    // Duplicate content under another media id: its own row, one blob.
    let twin = Item {
        media_id: MediaId::new(),
        ..photo.clone()
    };
    w.push_entry(&w.driver, &twin, None).await;
    let blobs_before = w.blob_files().len();
    assert_eq!(w.upload_all(token, &twin).await.0, 200);
    assert_eq!(
        w.blob_files().len(),
        blobs_before,
        "same content, same blob"
    );
    for file in w.blob_files() {
        let text = file.to_string_lossy().to_string();
        assert!(text.starts_with(&w.tenant_key()), "{text}");
    }

    // Usage (ADMIN, AUDITOR only) and the audit trail.
    let admin = w.sign_in(Role::Admin).await;
    let usage: serde_json::Value = w
        .http
        .get(format!("{}/v1/media/usage", w.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let photos = usage["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "photo")
        .unwrap();
    assert_eq!(photos["items"], 2);
    assert_eq!(photos["bytes"], 2 * photo.bytes.len() as u64);
    assert_eq!(w.get(token, "/v1/media/usage").await.0, 403);
    let trail: serde_json::Value = w
        .http
        .get(format!("{}/v1/journeys/{}/audit", w.base, w.journey))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uploaded = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "media.uploaded")
        .count();
    assert_eq!(uploaded, 2, "one entry per stored item, none for repeats");
}

/// E2: a stale or future offset is 409 with the server's offset, and the
/// staged bytes are unchanged. E3: a corrupt chunk is 422, the offset stays,
/// a retry succeeds. E4: a whole-file digest mismatch fails the upload and
/// attaches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_offsets_corrupt_chunks_and_bad_files_change_nothing() {
    let w = world(Backend::Sqlite).await;
    let token = &w.driver.token;
    let data: Vec<u8> = (0..3 * CHUNK as usize).map(|i| (i % 251) as u8).collect();
    let video = Item::new("video", "video/mp4", data);
    w.push_entry(&w.driver, &video, None).await;
    let (_, state) = w.create(token, &video.create_body(w.journey)).await;
    let upload = state["upload_id"].as_str().unwrap().to_owned();
    let first = &video.bytes[..CHUNK as usize];
    assert_eq!(w.patch(token, &upload, 0, first, None).await.0, 204);
    let staged = std::fs::read(w.staging_file(&upload)).unwrap();

    // E2: stale (0) and future (2×CHUNK) offsets.
    for wrong in [0, 2 * CHUNK] {
        let junk = vec![0xEE; CHUNK as usize];
        let (status, offset, body) = w.patch(token, &upload, wrong, &junk, None).await;
        assert_eq!((status, offset), (409, Some(CHUNK)), "{body}");
        assert_eq!(body["error"], "offset_mismatch");
        assert_eq!(std::fs::read(w.staging_file(&upload)).unwrap(), staged);
    }
    // E3: one flipped bit with the original chunk's digest.
    let second = &video.bytes[CHUNK as usize..2 * CHUNK as usize];
    let mut flipped = second.to_vec();
    flipped[17] ^= 0x04;
    let (status, _, body) = w
        .patch(token, &upload, CHUNK, &flipped, Some(&sha_hex(second)))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"], "chunk_digest_mismatch");
    assert_eq!(w.head(token, &upload).await, (200, Some(CHUNK)));
    assert_eq!(
        std::fs::read(w.staging_file(&upload)).unwrap(),
        staged,
        "cut back"
    );
    assert_eq!(
        w.patch(token, &upload, CHUNK, second, None).await.1,
        Some(2 * CHUNK)
    );
    // Control: the checker above does see a changed staging file.
    assert_ne!(std::fs::read(w.staging_file(&upload)).unwrap(), staged);

    // E4: the entry declares one hash, the bytes are another (each chunk intact).
    let declared = video.bytes.iter().map(|b| b ^ 1).collect::<Vec<u8>>();
    let liar = Item {
        media_id: MediaId::new(),
        sha256: sha_hex(&declared),
        ..video.clone()
    };
    w.push_entry(&w.driver, &liar, None).await;
    let (status, body) = w.upload_all(token, &liar).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "digest_mismatch");
    assert_eq!(w.media_rows(liar.media_id).await, 0, "nothing attached");
    let (status, _) = w.get(token, &format!("/v1/media/{}", liar.media_id)).await;
    assert_eq!(status, 404);
}

/// E5: two PATCHes at the same offset at once: exactly one is acknowledged, the
/// other gets 409, and the stored file is the winner's bytes.
async fn concurrent_patches_at_one_offset_exactly_one_wins(backend: Backend) {
    let w = world(backend).await;
    let token = w.driver.token.clone();
    let data: Vec<u8> = (0..2 * CHUNK as usize).map(|i| (i % 13) as u8).collect();
    let video = Item::new("video", "video/mp4", data);
    w.push_entry(&w.driver, &video, None).await;
    for round in 0..5 {
        let item = Item {
            media_id: MediaId::new(),
            ..video.clone()
        };
        w.push_entry(&w.driver, &item, None).await;
        let (_, state) = w.create(&token, &item.create_body(w.journey)).await;
        let upload = state["upload_id"].as_str().unwrap().to_owned();
        let good = item.bytes[..CHUNK as usize].to_vec();
        let (a, b) = tokio::join!(
            w.patch(&token, &upload, 0, &good, None),
            w.patch(&token, &upload, 0, &good, None)
        );
        let mut statuses = [a.0, b.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [204, 409], "round {round}");
        assert_eq!(w.head(&token, &upload).await.1, Some(CHUNK));
        let rest = &item.bytes[CHUNK as usize..];
        assert_eq!(w.patch(&token, &upload, CHUNK, rest, None).await.0, 204);
        let (status, done) = w.complete(&token, &upload).await;
        assert_eq!(
            (status, done["sha256"].as_str()),
            (200, Some(item.sha256.as_str()))
        );
    }
}

/// E8: an upload abandoned past the expiry answers 404, its bytes are swept,
/// and creating it again starts cleanly from 0.
async fn abandoned_uploads_expire_and_restart_from_zero(backend: Backend) {
    let w = world(backend).await;
    let token = &w.driver.token;
    let data: Vec<u8> = (0..CHUNK as usize + 10).map(|i| (i % 7) as u8).collect();
    let video = Item::new("video", "video/mp4", data);
    w.push_entry(&w.driver, &video, None).await;
    let (_, state) = w.create(token, &video.create_body(w.journey)).await;
    let upload = state["upload_id"].as_str().unwrap().to_owned();
    assert_eq!(
        w.patch(token, &upload, 0, &video.bytes[..CHUNK as usize], None)
            .await
            .0,
        204
    );

    // Control: one hour on, nothing expires.
    w.advance(3_600_000);
    assert_eq!(w.services.media.sweep().await.unwrap().expired, 0);
    assert_eq!(w.head(token, &upload).await, (200, Some(CHUNK)));
    w.advance(24 * 3_600_000);
    assert_eq!(
        w.head(token, &upload).await.0,
        404,
        "expired before the sweep"
    );
    assert_eq!(w.services.media.sweep().await.unwrap().expired, 1);
    assert!(!w.staging_file(&upload).exists(), "partial bytes deleted");
    assert_eq!(w.head(token, &upload).await.0, 404);
    let (status, state) = w.create(token, &video.create_body(w.journey)).await;
    assert_eq!(
        (status, state["offset"].as_u64()),
        (201, Some(0)),
        "{state}"
    );
    let (status, done) = w.upload_all(token, &video).await;
    assert_eq!(
        (status, done["size"].as_u64()),
        (200, Some(video.bytes.len() as u64))
    );
}

/// F8: a chunk over the limit (by Content-Length, or streamed without one),
/// bytes past the declared size and a size over the kind's limit are 413,
/// and the staging file never holds more than the acknowledged offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_chunks_bodies_and_lies_get_413() {
    let w = world(Backend::Sqlite).await;
    let token = &w.driver.token;
    let data: Vec<u8> = (0..4 * CHUNK as usize).map(|i| (i % 17) as u8).collect();
    let video = Item::new("video", "video/mp4", data);
    w.push_entry(&w.driver, &video, None).await;
    let (_, state) = w.create(token, &video.create_body(w.journey)).await;
    let upload = state["upload_id"].as_str().unwrap().to_owned();

    // Content-Length over the chunk limit: refused before reading.
    let big = &video.bytes[..CHUNK as usize + 1];
    let (status, _, body) = w.patch(token, &upload, 0, big, None).await;
    assert_eq!(status, 413, "{body}");
    // No Content-Length (chunked): counted while streaming, cut at the limit.
    let mut chunked = Vec::new();
    for piece in big.chunks(4096) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "PATCH /v1/media/uploads/{upload} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         upload-offset: 0\r\nchunk-sha256: {}\r\ntransfer-encoding: chunked\r\n\r\n",
        sha_hex(big)
    );
    assert_eq!(
        media_common::raw_status(&w.base, &head, &chunked).await,
        413
    );
    assert_eq!(std::fs::metadata(w.staging_file(&upload)).unwrap().len(), 0);
    assert_eq!(w.head(token, &upload).await.1, Some(0));

    // Past the declared size: a tiny item, a chunk longer than it.
    let tiny = Item::new("video", "video/mp4", vec![1, 2, 3]);
    w.push_entry(&w.driver, &tiny, None).await;
    let (_, state) = w.create(token, &tiny.create_body(w.journey)).await;
    let tiny_upload = state["upload_id"].as_str().unwrap().to_owned();
    assert_eq!(
        w.patch(token, &tiny_upload, 0, &[1, 2, 3, 4], None).await.0,
        413
    );
    assert_eq!(
        std::fs::metadata(w.staging_file(&tiny_upload))
            .unwrap()
            .len(),
        0
    );
    // Control: the exact bytes are taken.
    assert_eq!(
        w.patch(token, &tiny_upload, 0, &[1, 2, 3], None).await.0,
        204
    );

    // A declared size over the kind's limit (signature: 2 MiB).
    let huge = json!({
        "media_id": MediaId::new(), "journey_id": w.journey, "kind": "signature",
        "content_type": "image/png", "size": 2 * 1024 * 1024 + 1, "sha256": "ab".repeat(32),
    });
    assert_eq!(w.create(token, &huge).await.0, 413);

    // A lying Content-Length (says more than it sends, then hangs up): nothing
    // acknowledged, nothing left past the offset.
    use tokio::io::AsyncWriteExt;
    let addr = w.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PATCH /v1/media/uploads/{upload} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         upload-offset: 0\r\nchunk-sha256: {}\r\ncontent-length: {CHUNK}\r\n\r\n",
        sha_hex(&video.bytes[..CHUNK as usize])
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&video.bytes[..1000]).await.unwrap();
    drop(socket);
    // The server finishes with that request before it answers the next one on
    // the upload (the upload's lock), so this HEAD sees its outcome.
    let (status, _, _) = w.patch(token, &upload, 0, &video.bytes[..10], None).await;
    assert_eq!(status, 204, "the offset is still 0");
    assert_eq!(
        std::fs::metadata(w.staging_file(&upload)).unwrap().len(),
        10
    );
}

/// F9: a PNG declaring 60000×60000, a truncated JPEG, EXE bytes labelled
/// image/jpeg: clear errors, nothing stored. Control: a good image of the same
/// kind is stored, so the "nothing stored" checks do see a stored item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_bombs_truncations_and_lies_store_nothing() {
    let w = world(Backend::Sqlite).await;
    let token = &w.driver.token;
    // A valid 1×1 PNG whose IHDR is rewritten to 60000×60000 (CRC fixed up).
    let mut bomb = png(1, 1);
    bomb[16..20].copy_from_slice(&60_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&60_000u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let good_jpeg = jpeg(200, 100, 7);
    let truncated = good_jpeg[..good_jpeg.len() / 2].to_vec();
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
    exe.extend(std::iter::repeat_n(0u8, 4000));
    let cases = [
        (
            "bomb",
            Item::new("photo", "image/png", bomb),
            422,
            "image_rejected",
        ),
        (
            "truncated",
            Item::new("photo", "image/jpeg", truncated),
            422,
            "image_rejected",
        ),
        (
            "exe",
            Item::new("photo", "image/jpeg", exe),
            415,
            "unsupported_content_type",
        ),
        (
            "png as jpeg",
            Item::new("signature", "image/png", good_jpeg.clone()),
            415,
            "unsupported_content_type",
        ),
    ];
    for (name, item, status, code) in cases {
        w.push_entry(&w.driver, &item, None).await;
        let before = w.blob_files();
        let (got, body) = w.upload_all(token, &item).await;
        assert_eq!(got, status, "{name}: {body}");
        assert_eq!(body["error"], code, "{name}");
        assert!(
            body["message"].as_str().unwrap().len() > 10,
            "{name}: a clear message"
        );
        assert_eq!(w.media_rows(item.media_id).await, 0, "{name}: no row");
        assert_eq!(w.blob_files(), before, "{name}: no blob");
        assert!(
            !w.media_files()
                .iter()
                .any(|f| f.starts_with("staging") && f.extension().is_some()),
            "{name}: staging removed: {:?}",
            w.media_files()
        );
    }
    let good = Item::new("photo", "image/jpeg", good_jpeg);
    w.push_entry(&w.driver, &good, None).await;
    let before = w.blob_files();
    assert_eq!(w.upload_all(token, &good).await.0, 200);
    assert_eq!(w.media_rows(good.media_id).await, 1);
    assert_eq!(
        w.blob_files().len(),
        before.len() + 2,
        "original and thumbnail"
    );
}

/// PNG's CRC-32 (for the bomb's rewritten header).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// F10: path-ish and long names in the metadata never reach a storage path: the
/// content type is checked against the kind (415), ids are UUIDs (400), and
/// every stored file is `staging/{uuid}.part` or `blobs/{tenant}/{sha256}`.
/// Control: the key builder refuses a path-ish hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_ish_metadata_never_reaches_a_storage_path() {
    let w = world(Backend::Sqlite).await;
    let token = &w.driver.token;
    let photo = Item::new("photo", "image/jpeg", jpeg(64, 64, 3));
    w.push_entry(&w.driver, &photo, None).await;
    let long = "é".repeat(5000);
    for content_type in ["../../etc/passwd", "image/jpeg/../../x", long.as_str()] {
        let mut body = photo.create_body(w.journey);
        body["content_type"] = json!(content_type);
        assert_eq!(w.create(token, &body).await.0, 415, "{content_type:.40}");
    }
    for media_id in ["../../etc/passwd", "..%2F..%2Fx"] {
        let mut body = photo.create_body(w.journey);
        body["media_id"] = json!(media_id);
        assert!(w.create(token, &body).await.0 >= 400);
    }
    let mut body = photo.create_body(w.journey);
    body["sha256"] = json!(format!("../../{}", "a".repeat(58)));
    assert_eq!(w.create(token, &body).await.0, 400);
    assert_eq!(w.upload_all(token, &photo).await.0, 200);
    let tenant = w.tenant_key();
    for file in w.media_files() {
        let parts: Vec<String> = file
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let ok = match parts.as_slice() {
            [blobs, t, hash] => {
                blobs == "blobs"
                    && *t == tenant
                    && hash.len() == 64
                    && hash.bytes().all(|b| b.is_ascii_hexdigit())
            }
            _ => false,
        };
        assert!(ok, "unexpected stored path {file:?}");
    }
    assert!(crewsync_server::media::blobs::key(&tenant, "../../etc/passwd").is_err());
    assert!(crewsync_server::media::blobs::key("../x", &"a".repeat(64)).is_err());
}

/// F13: rights that change between create and complete. The driver taken to
/// AUDITOR (who may not add media): completion refused, the upload discarded.
/// A deactivated uploader: refused at the door, and the sweep discards the
/// partial bytes at once. Control: an unchanged driver completes.
async fn stale_rights_at_completion_refuse_and_discard(backend: Backend) {
    let w = world(backend).await;
    let directory = &w.tenant.auth.directory;
    let tenant = w.tenant.tenant;
    let data: Vec<u8> = (0..1000).map(|i| (i % 5) as u8).collect();

    // Control.
    let control = Item::new("video", "video/mp4", data.clone());
    w.push_entry(&w.driver, &control, None).await;
    assert_eq!(w.upload_all(&w.driver.token, &control).await.0, 200);

    // Role changed.
    let mover = w
        .tenant
        .add_user(Role::Mover, &w.tenant.location)
        .await
        .unwrap();
    let status = w
        .http
        .post(format!("{}/v1/journeys/{}/crew", w.base, w.journey))
        .bearer_auth(&w.dispatcher.token)
        .json(&json!({"user_id": mover.id}))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success());
    let device = media_common::new_device();
    let tokens = w.tenant.sign_in_user(&mover, device).await.unwrap();
    let mover_signer = common::Signer {
        token: tokens.access_token.clone(),
        user: mover.id,
        role: Role::Mover,
        tenant,
        location: mover.location_id,
        device,
    };
    let item = Item::new("video", "video/mp4", data.clone());
    w.push_entry(&mover_signer, &item, None).await;
    let token = &mover_signer.token;
    let (_, state) = w.create(token, &item.create_body(w.journey)).await;
    let upload = state["upload_id"].as_str().unwrap().to_owned();
    assert_eq!(w.patch(token, &upload, 0, &item.bytes, None).await.0, 204);
    directory
        .edit_user(tenant, mover.id, |user| {
            user.role = Role::Auditor;
            Ok::<_, crewsync_server::directory::DirectoryError>(())
        })
        .await
        .unwrap();
    let (status, body) = w.complete(token, &upload).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(w.media_rows(item.media_id).await, 0);
    assert!(!w.staging_file(&upload).exists(), "partial data discarded");
    assert_eq!(w.head(token, &upload).await.0, 404);

    // Deactivated.
    let item = Item::new("video", "video/mp4", data);
    w.push_entry(&w.driver, &item, None).await;
    let token = &w.driver.token;
    let (_, state) = w.create(token, &item.create_body(w.journey)).await;
    let upload = state["upload_id"].as_str().unwrap().to_owned();
    assert_eq!(w.patch(token, &upload, 0, &item.bytes, None).await.0, 204);
    directory
        .set_user_status(tenant, w.driver.user, UserStatus::Inactive)
        .await
        .unwrap();
    let (status, _) = w.complete(token, &upload).await;
    assert!(status == 401 || status == 403, "{status}");
    assert!(w.staging_file(&upload).exists(), "until the sweep");
    assert_eq!(w.services.media.sweep().await.unwrap().expired, 1);
    assert!(!w.staging_file(&upload).exists());
    assert_eq!(w.media_rows(item.media_id).await, 0);
}

/// Entry before bytes: an upload for a media id the journey does not hold (or
/// holds with another hash or kind) is 409 `entry_not_synced`; once the entry
/// is synced, the same request is accepted. Device thumbnails need the parent's
/// `thumbnail_sha256`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_wait_for_their_entry() {
    let w = world(Backend::Sqlite).await;
    let token = &w.driver.token;
    let photo = Item::new("photo", "image/jpeg", jpeg(400, 300, 5));
    let thumb = Item {
        media_id: photo.media_id,
        ..Item::new("thumbnail", "image/jpeg", jpeg(320, 240, 6))
    };
    let (status, body) = w.create(token, &photo.create_body(w.journey)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("entry_not_synced"))
    );
    w.push_entry_as(
        &w.driver,
        photo.media_id,
        "photo",
        &"0".repeat(64),
        photo.bytes.len(),
        None,
    )
    .await;
    let (status, body) = w.create(token, &photo.create_body(w.journey)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("entry_not_synced")),
        "other hash"
    );
    let mut as_signature = photo.create_body(w.journey);
    as_signature["kind"] = json!("signature");
    as_signature["content_type"] = json!("image/png");
    assert_eq!(w.create(token, &as_signature).await.0, 409, "other kind");

    let photo = Item {
        media_id: MediaId::new(),
        ..photo
    };
    let thumb = Item {
        media_id: photo.media_id,
        ..thumb
    };
    w.push_entry(&w.driver, &photo, Some(&thumb)).await;
    assert_eq!(w.upload_all(token, &thumb).await.0, 200, "thumbnail first");
    assert_eq!(w.upload_all(token, &photo).await.0, 200);
    let wrong_thumb = Item::new("thumbnail", "image/jpeg", jpeg(10, 10, 9));
    let mut body = wrong_thumb.create_body(w.journey);
    body["media_id"] = json!(photo.media_id);
    assert_eq!(w.create(token, &body).await.0, 409);
    let (status, bytes) = w
        .get(token, &format!("/v1/media/{}/thumbnail", photo.media_id))
        .await;
    assert_eq!(status, 200);
    assert!(image::load_from_memory(&bytes).is_ok());
}

/// Another tenant's upload and media ids answer 404 on every media route, and
/// change nothing; the same calls with the owner's token succeed (control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_ids_are_not_found() {
    let w = world(Backend::Sqlite).await;
    let token = &w.driver.token;
    let photo = Item::new("photo", "image/jpeg", jpeg(100, 100, 2));
    w.push_entry(&w.driver, &photo, None).await;
    assert_eq!(w.upload_all(token, &photo).await.0, 200);
    let video = Item::new("video", "video/mp4", vec![9; 100]);
    w.push_entry(&w.driver, &video, None).await;
    let (_, state) = w.create(token, &video.create_body(w.journey)).await;
    let upload = state["upload_id"].as_str().unwrap().to_owned();

    let other = crewsync_server::testing::TestTenant::create(
        w.tenant.auth.directory.db().clone(),
        crewsync_core::ids::ClientId::new(),
        crewsync_core::ids::LocationId::new(),
    )
    .await
    .unwrap();
    for role in [Role::Admin, Role::Driver] {
        let stranger = common::Signer::sign_in(&other, role).await.token;
        assert_eq!(w.head(&stranger, &upload).await.0, 404);
        assert_eq!(
            w.patch(&stranger, &upload, 0, &video.bytes, None).await.0,
            404
        );
        assert_eq!(w.complete(&stranger, &upload).await.0, 404);
        for path in [
            format!("/v1/media/{}", photo.media_id),
            format!("/v1/media/{}/thumbnail", photo.media_id),
        ] {
            assert_eq!(w.get(&stranger, &path).await.0, 404, "{path}");
        }
        let mut body = photo.create_body(w.journey);
        body["media_id"] = json!(MediaId::new());
        assert_eq!(w.create(&stranger, &body).await.0, 404);
    }
    let stranger = common::Signer::sign_in(&other, Role::Admin).await.token;
    let status = w
        .http
        .delete(format!("{}/v1/media/{}", w.base, photo.media_id))
        .bearer_auth(&stranger)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    // Control: the owner's calls work, and nothing moved.
    assert_eq!(w.head(token, &upload).await, (200, Some(0)));
    assert_eq!(
        w.get(token, &format!("/v1/media/{}", photo.media_id))
            .await
            .0,
        200
    );
}

/// Evidence: an ADMIN deletion is a tombstone (410 for others, bytes kept,
/// audited; others may not delete); past the tenant's retention, originals are
/// purged unless their journey is on legal hold; the row and thumbnail stay.
async fn evidence_tombstone_retention_and_legal_hold(backend: Backend) {
    let w = world(backend).await;
    let token = &w.driver.token;
    let admin = w.sign_in(Role::Admin).await;
    let manager = w.sign_in(Role::Manager).await;
    let photo = Item::new("photo", "image/jpeg", jpeg(120, 80, 4));
    w.push_entry(&w.driver, &photo, None).await;
    assert_eq!(w.upload_all(token, &photo).await.0, 200);
    let path = format!("/v1/media/{}", photo.media_id);
    let delete = |who: &str| {
        w.http
            .delete(format!("{}{path}", w.base))
            .bearer_auth(who.to_owned())
            .send()
    };
    assert_eq!(delete(token).await.unwrap().status(), 403);
    assert_eq!(delete(&manager.token).await.unwrap().status(), 403);
    assert_eq!(
        w.get(token, &path).await.0,
        200,
        "refused deletions changed nothing"
    );
    assert_eq!(delete(&admin.token).await.unwrap().status(), 204);
    assert_eq!(
        delete(&admin.token).await.unwrap().status(),
        204,
        "idempotent"
    );
    assert_eq!(w.get(token, &path).await.0, 410);
    let (status, bytes) = w.get(&admin.token, &path).await;
    assert_eq!(
        (status, sha_hex(&bytes)),
        (200, photo.sha256.clone()),
        "bytes kept"
    );

    // Retention and holds: two journeys' originals, one held.
    let held = Item::new("photo", "image/jpeg", jpeg(90, 90, 8));
    w.push_entry(&w.driver, &held, None).await;
    assert_eq!(w.upload_all(token, &held).await.0, 200);
    let hold = |who: String, on: bool| {
        w.http
            .put(format!("{}/v1/journeys/{}/legal-hold", w.base, w.journey))
            .bearer_auth(who)
            .json(&json!({"hold": on}))
            .send()
    };
    assert_eq!(hold(token.clone(), true).await.unwrap().status(), 403);
    assert_eq!(
        hold(w.dispatcher.token.clone(), true)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        hold(manager.token.clone(), true).await.unwrap().status(),
        200
    );
    let mut settings = w
        .tenant
        .auth
        .directory
        .tenant(w.tenant.tenant)
        .await
        .unwrap();
    settings.settings = json!({"media_retention_days": 30});
    w.tenant
        .auth
        .directory
        .upsert_tenant(&settings)
        .await
        .unwrap();
    let directory = &w.tenant.auth.directory;
    // Within retention: nothing; past it, under hold: nothing.
    assert_eq!(w.services.media.purge(directory).await.unwrap().purged, 0);
    w.advance(31 * 24 * 3_600_000);
    let report = w.services.media.purge(directory).await.unwrap();
    assert_eq!((report.purged, report.held), (0, 2));
    assert_eq!(
        w.get(&admin.token, &format!("/v1/media/{}", held.media_id))
            .await
            .0,
        200
    );
    // Hold lifted: both purged; rows and thumbnails stay; audited.
    assert_eq!(
        hold(admin.token.clone(), false).await.unwrap().status(),
        200
    );
    let report = w.services.media.purge(directory).await.unwrap();
    assert_eq!(report.purged, 2);
    assert_eq!(
        w.get(&admin.token, &format!("/v1/media/{}", held.media_id))
            .await
            .0,
        410
    );
    let (status, _) = w
        .get(token, &format!("/v1/media/{}/thumbnail", held.media_id))
        .await;
    assert_eq!(status, 200, "thumbnail kept");
    assert_eq!(w.media_rows(held.media_id).await, 1, "row kept");
    let trail: serde_json::Value = w
        .http
        .get(format!("{}/v1/journeys/{}/audit", w.base, w.journey))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["media.deleted", "journey.legal_hold", "media.purged"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    assert_eq!(actions.iter().filter(|a| **a == "media.deleted").count(), 1);
    assert_eq!(actions.iter().filter(|a| **a == "media.purged").count(), 2);
    let verified: serde_json::Value = w
        .http
        .get(format!("{}/v1/audit/verify", w.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verified["ok"], true, "{verified}");
}
