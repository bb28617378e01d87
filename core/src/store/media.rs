//! Capturing media into a journey, and the upload queue the uploader drains.
//!
//! A capture writes its file(s) durably first (`media::files`: temp → fsync →
//! rename → fsync the directory), then — in one SQLite transaction — the journey
//! change recording the `MediaRef` and its entry, and the queue rows. So a crash
//! leaves either no row (the file is an orphan, deleted at the next open) or a row
//! whose file is complete. Originals are stored byte for byte as given.
//!
//! At open, files no row points at are deleted (leftovers of a crash), and rows
//! whose file is missing or has the wrong size are set aside and reported
//! ([`DeviceStore::media_problems`]); [`DeviceStore::verify_media`] also rehashes.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::media_queue::{self, NewItem};
use super::{DeviceStore, Writer, lock, now_ms};
use crate::document::actions::JourneyAction;
use crate::error::{Error, Result};
use crate::ids::{ActivityId, EntryId, JourneyId, MediaId};
use crate::media::files::{self, TempFile};
use crate::media::queue::{ItemState, NetworkKind, QueueProgress, UploadItem, UploadKind};
use crate::media::signature::{self, SignatureCapture, SignatureRefusal};
use crate::media::sniff::{self, SNIFF_LEN};
use crate::media::{exif, thumbnail};
use crate::model::{GpsPoint, MediaKind, MediaRef, SignatureRecord, Stamp, StepNumber, Timestamp};

/// Where a capture's bytes come from.
#[derive(Debug, Clone)]
pub enum MediaSource {
    /// A file the camera or picker wrote; copied, never moved or modified.
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// What the app knows about a capture besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureInfo {
    pub step: Option<StepNumber>,
    pub activity: Option<ActivityId>,
    /// The app's GPS fix at capture.
    pub gps: Option<GpsPoint>,
    /// A short code such as BR (broken) for a damage photo.
    pub tag: Option<String>,
    pub text: Option<String>,
}

/// A queue row whose file is not what the row says, found at open or by
/// [`DeviceStore::verify_media`]. The row is set aside with this reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaProblem {
    pub item_id: String,
    pub path: PathBuf,
    pub reason: String,
}

/// The media directory's state at open: orphans removed, problems found.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    pub orphans_removed: usize,
    pub problems: Vec<MediaProblem>,
}

/// Deletes files no row points at and sets aside rows whose file is missing or
/// of the wrong size. Runs at open, before anything else writes.
pub(super) fn recover(conn: &rusqlite::Connection, dir: &Path) -> Result<Recovery> {
    let known = media_queue::file_names(conn)?;
    let mut recovery = Recovery::default();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !known.contains(&name) && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            recovery.orphans_removed += 1;
        }
    }
    if recovery.orphans_removed > 0 {
        files::sync_dir(dir)?;
        tracing::info!(
            removed = recovery.orphans_removed,
            "removed media files no queue row points at"
        );
    }
    for (id, name, size, _) in media_queue::expected_files(conn)? {
        let path = dir.join(&name);
        let reason = match fs::metadata(&path) {
            Err(_) => Some("the file is missing".to_owned()),
            Ok(meta) if meta.len() != size => Some(format!(
                "the file has {} bytes, the queue expects {size}",
                meta.len()
            )),
            Ok(_) => None,
        };
        if let Some(reason) = reason {
            media_queue::set_aside(conn, &id, &reason)?;
            recovery.problems.push(MediaProblem {
                item_id: id,
                path,
                reason,
            });
        }
    }
    Ok(recovery)
}

/// The default media directory: beside the store file.
pub(super) fn default_dir(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".media");
    PathBuf::from(name)
}

/// A file written and renamed into place, to queue.
struct Stored {
    name: String,
    kind: UploadKind,
    content_type: &'static str,
    sha256: String,
    size: u64,
    wifi_only: bool,
}

impl DeviceStore {
    /// The directory holding captured originals, thumbnails and signature PNGs.
    pub fn media_dir(&self) -> &Path {
        &self.media_dir
    }

    /// Captures a JPEG, PNG or WebP photo into `journey`: the original is kept as
    /// given, a thumbnail is made, and the PHOTO entry, its `MediaRef` and both
    /// upload items are recorded in one transaction. Returns the `MediaRef`.
    ///
    /// Errors: `Unsupported` for anything else (decided by magic bytes),
    /// `InvalidMedia` for damaged, truncated or oversized images, `StorageFull`
    /// when the disk is full; in each case nothing is stored.
    pub fn capture_photo(
        &self,
        journey: JourneyId,
        source: MediaSource,
        info: CaptureInfo,
    ) -> Result<MediaRef> {
        self.capture(journey, source, info, false)
    }

    /// Captures an MP4 or QuickTime video, kept as the file it is (no processing).
    /// Videos over `MediaOptions::wifi_only_over_bytes` upload on Wi-Fi only.
    pub fn capture_video(
        &self,
        journey: JourneyId,
        source: MediaSource,
        info: CaptureInfo,
    ) -> Result<MediaRef> {
        self.capture(journey, source, info, true)
    }

    fn capture(
        &self,
        journey: JourneyId,
        source: MediaSource,
        info: CaptureInfo,
        video: bool,
    ) -> Result<MediaRef> {
        let user = self.require_active_user()?;
        // Ask the rules before doing any work; `commit` asks again under the lock.
        self.precheck(journey, &user)?;
        let mut reader: Box<dyn Read> = match &source {
            MediaSource::Path(path) => Box::new(File::open(path)?),
            MediaSource::Bytes(bytes) => Box::new(bytes.as_slice()),
        };
        let head = read_head(&mut reader)?;
        let format = sniff::sniff(&head)?;
        if format.is_photo() == video {
            return Err(Error::Unsupported(format!(
                "{} is {}; use capture_{}",
                format.content_type(),
                if video { "a photo" } else { "a video" },
                if video { "photo" } else { "video" },
            )));
        }
        let mut chained = head.as_slice().chain(reader);
        let original = files::write_temp(&self.media_dir, &mut chained)?;
        let media_id = MediaId::new();
        let device_time = Timestamp::now();
        let mut media = MediaRef {
            id: media_id,
            kind: if video {
                MediaKind::Video
            } else {
                MediaKind::Photo
            },
            sha256: Some(original.sha256.clone()),
            size: Some(original.size),
            step: info.step.map(StepNumber::get),
            activity: info.activity,
            entry: None,
            captured: Stamp {
                by: user.user_id,
                at: device_time,
            },
            content_type: Some(format.content_type().to_owned()),
            width: None,
            height: None,
            captured_at: Some(device_time),
            exif_time: None,
            exif_gps: None,
            gps: info.gps,
            device: Some(self.device_id.to_string()),
            thumbnail_sha256: None,
            thumbnail_size: None,
            signature: None,
            removed: None,
        };
        let mut temps: Vec<(TempFile, String, UploadKind, &'static str)> = Vec::new();
        if !video {
            // Decoding the thumbnail is also what proves the photo is whole.
            let thumb = thumbnail::make(original.path(), format, &self.media_options.limits)?;
            media.width = Some(thumb.original_width);
            media.height = Some(thumb.original_height);
            let facts = exif::read(original.path());
            let timezone = self.journey_timezone(journey)?;
            media.exif_time = facts.time.clone();
            media.captured_at = facts.captured_at(&timezone).or(Some(device_time));
            media.exif_gps = facts.gps_point(media.captured_at.unwrap_or(device_time));
            let thumb_file = files::write_temp_bytes(&self.media_dir, &thumb.jpeg)?;
            media.thumbnail_sha256 = Some(thumb_file.sha256.clone());
            media.thumbnail_size = Some(thumb_file.size);
            temps.push((
                thumb_file,
                format!("{media_id}.thumb.jpg"),
                UploadKind::Thumbnail,
                "image/jpeg",
            ));
        }
        let wifi_only = video && original.size > self.media_options.wifi_only_over_bytes;
        temps.insert(
            0,
            (
                original,
                format!("{media_id}.{}", format.extension()),
                if video {
                    UploadKind::Video
                } else {
                    UploadKind::Photo
                },
                format.content_type(),
            ),
        );
        let stored = self.persist(temps, wifi_only)?;
        self.record(journey, media, info.tag, info.text, stored)
    }

    /// Captures a signature: the strokes become a deterministic PNG (its SHA-256
    /// bound in the SIGNATURE entry with the signer, the document and its hash, the
    /// device time and GPS). Each signature is a new media id: never merged with or
    /// overwriting another.
    pub fn capture_signature(
        &self,
        journey: JourneyId,
        capture: &SignatureCapture,
    ) -> Result<MediaRef> {
        let user = self.require_active_user()?;
        signature::check_document(
            &capture.signer_name,
            &capture.document,
            &capture.document_sha256,
        )?;
        if !capture.consent {
            return Err(Error::InvalidInput(
                "the signer has not consented to sign electronically; record a refusal instead"
                    .into(),
            ));
        }
        if let Some(gps) = &capture.gps {
            gps.validate()?;
        }
        self.precheck(journey, &user)?;
        let png = signature::render_png(
            capture.canvas_width,
            capture.canvas_height,
            &capture.strokes,
        )?;
        let file = files::write_temp_bytes(&self.media_dir, &png)?;
        let media_id = MediaId::new();
        let device_time = Timestamp::now();
        let media = MediaRef {
            id: media_id,
            kind: MediaKind::Signature,
            sha256: Some(file.sha256.clone()),
            size: Some(file.size),
            step: capture.step.map(StepNumber::get),
            activity: None,
            entry: None,
            captured: Stamp {
                by: user.user_id,
                at: device_time,
            },
            content_type: Some("image/png".to_owned()),
            width: Some(capture.canvas_width),
            height: Some(capture.canvas_height),
            captured_at: Some(device_time),
            exif_time: None,
            exif_gps: None,
            gps: capture.gps,
            device: Some(self.device_id.to_string()),
            thumbnail_sha256: None,
            thumbnail_size: None,
            signature: Some(SignatureRecord {
                signer_name: capture.signer_name.clone(),
                signer_role: capture.signer_role,
                document: capture.document.clone(),
                document_sha256: capture.document_sha256.clone(),
                consent: true,
                strokes: capture.strokes.len() as u64,
                points: capture.strokes.iter().map(|s| s.points.len() as u64).sum(),
                refused: None,
            }),
            removed: None,
        };
        let stored = self.persist(
            vec![(
                file,
                format!("{media_id}.png"),
                UploadKind::Signature,
                "image/png",
            )],
            false,
        )?;
        self.record(journey, media, None, None, stored)
    }

    /// Records that the signer refused to sign, with their reason: a SIGNATURE
    /// entry and a `MediaRef` with no PNG (nothing to upload).
    pub fn record_signature_refusal(
        &self,
        journey: JourneyId,
        refusal: &SignatureRefusal,
    ) -> Result<MediaRef> {
        let user = self.require_active_user()?;
        signature::check_document(
            &refusal.signer_name,
            &refusal.document,
            &refusal.document_sha256,
        )?;
        if refusal.reason.trim().is_empty() {
            return Err(Error::InvalidInput("a refusal needs its reason".into()));
        }
        let device_time = Timestamp::now();
        let media = MediaRef {
            id: MediaId::new(),
            kind: MediaKind::Signature,
            sha256: None,
            size: None,
            step: refusal.step.map(StepNumber::get),
            activity: None,
            entry: None,
            captured: Stamp {
                by: user.user_id,
                at: device_time,
            },
            content_type: None,
            width: None,
            height: None,
            captured_at: Some(device_time),
            exif_time: None,
            exif_gps: None,
            gps: refusal.gps,
            device: Some(self.device_id.to_string()),
            thumbnail_sha256: None,
            thumbnail_size: None,
            signature: Some(SignatureRecord {
                signer_name: refusal.signer_name.clone(),
                signer_role: refusal.signer_role,
                document: refusal.document.clone(),
                document_sha256: refusal.document_sha256.clone(),
                consent: false,
                strokes: 0,
                points: 0,
                refused: Some(refusal.reason.clone()),
            }),
            removed: None,
        };
        self.record(
            journey,
            media,
            None,
            Some(refusal.reason.clone()),
            Vec::new(),
        )
    }

    /// Tombstones a media reference (see `JourneyAction::RemoveMedia`): crews only
    /// until its step's inventory or signature is complete; an ADMIN always. The
    /// bytes and their upload are kept.
    pub fn remove_media(&self, journey: JourneyId, media: MediaId) -> Result<()> {
        self.apply(journey, &JourneyAction::RemoveMedia { media })
    }

    /// Renames each temp file to its name (fsyncing the directory after each).
    fn persist(
        &self,
        temps: Vec<(TempFile, String, UploadKind, &'static str)>,
        wifi_only: bool,
    ) -> Result<Vec<Stored>> {
        let mut stored = Vec::with_capacity(temps.len());
        for (temp, name, kind, content_type) in temps {
            let (sha256, size) = (temp.sha256.clone(), temp.size);
            let persisted = temp.persist(&self.media_dir.join(&name));
            if let Err(e) = persisted {
                self.discard(&stored);
                return Err(e);
            }
            stored.push(Stored {
                name,
                kind,
                content_type,
                sha256,
                size,
                wifi_only: wifi_only && kind == UploadKind::Video,
            });
        }
        Ok(stored)
    }

    /// Commits the entry, the `MediaRef` and the queue rows in one transaction.
    fn record(
        &self,
        journey: JourneyId,
        media: MediaRef,
        tag: Option<String>,
        text: Option<String>,
        stored: Vec<Stored>,
    ) -> Result<MediaRef> {
        let user = self.require_active_user()?;
        let action = JourneyAction::RecordMedia {
            media: media.clone(),
            entry: EntryId::new(),
            tag,
            text,
        };
        let now = now_ms();
        let committed = self.commit(journey, &action, &user, true, |tx, change| {
            for file in &stored {
                let item = NewItem {
                    media_id: media.id,
                    journey_id: journey,
                    kind: file.kind,
                    content_type: file.content_type,
                    file_name: &file.name,
                    sha256: &file.sha256,
                    size: file.size,
                    wifi_only: file.wifi_only,
                };
                media_queue::insert(tx, &item, Some(&change.hash()), now)?;
            }
            fail::fail_point!("media::after_row_insert");
            Ok(())
        });
        if let Err(e) = committed {
            self.discard(&stored);
            return Err(e);
        }
        let action_entry = match &action {
            JourneyAction::RecordMedia { entry, .. } => Some(*entry),
            _ => None,
        };
        Ok(MediaRef {
            entry: action_entry,
            ..media
        })
    }

    /// Best effort: files whose row was never written (the next open would too).
    fn discard(&self, stored: &[Stored]) {
        for file in stored {
            let _ = fs::remove_file(self.media_dir.join(&file.name));
        }
    }

    /// The rules' answer for a media capture by `user`, before any file is written.
    fn precheck(&self, journey: JourneyId, user: &crate::model::ActiveUser) -> Result<()> {
        let mut writer = self.lock_writer()?;
        let Writer { conn, cache } = &mut *writer;
        let acting = super::permits::acting(conn, user, self.device_id)?;
        let cached = super::load_into(cache, conn, journey, &self.actor)?;
        let touches = [
            crate::policy::Touch::Entry,
            crate::policy::Touch::Media,
            crate::policy::Touch::Counts,
        ];
        super::permits::check_touches(&acting, &cached.doc, &touches)
    }

    fn journey_timezone(&self, journey: JourneyId) -> Result<String> {
        self.with_document(journey, |doc| doc.timezone())
    }

    /// Tells the queue which network the device is on (the app calls this on every
    /// change); [`DeviceStore::next_upload`] follows it.
    pub fn set_network(&self, network: NetworkKind) -> Result<()> {
        *lock(&self.network)? = network;
        Ok(())
    }

    pub fn network(&self) -> Result<NetworkKind> {
        Ok(*lock(&self.network)?)
    }

    /// The next item to upload on the network last set, or `None` (offline, empty,
    /// everything backing off or waiting for its entry to sync).
    pub fn next_upload(&self) -> Result<Option<UploadItem>> {
        self.next_item(self.network()?)
    }

    /// The next item to upload over `network` now.
    pub fn next_item(&self, network: NetworkKind) -> Result<Option<UploadItem>> {
        self.next_item_at(network, Timestamp::now())
    }

    /// The next item to upload over `network` at `now` (tests pass a clock).
    pub fn next_item_at(&self, network: NetworkKind, now: Timestamp) -> Result<Option<UploadItem>> {
        self.next_item_except(network, now, &[])
    }

    /// The next item to upload over `network` at `now` that is not one of `skip`
    /// (queue item ids): an upload round passes the items it already tried, so it
    /// visits each at most once.
    pub fn next_item_except(
        &self,
        network: NetworkKind,
        now: Timestamp,
        skip: &[String],
    ) -> Result<Option<UploadItem>> {
        media_queue::next(
            &self.lock_writer()?.conn,
            &self.media_dir,
            network,
            now.millis(),
            skip,
        )
    }

    /// One queue item by id.
    pub fn upload_item(&self, item_id: &str) -> Result<UploadItem> {
        media_queue::get(&self.lock_writer()?.conn, &self.media_dir, item_id)
    }

    /// Every queue item: pending ones in upload order, then set-aside, then done.
    pub fn upload_queue(&self) -> Result<Vec<UploadItem>> {
        media_queue::list(&self.lock_writer()?.conn, &self.media_dir)
    }

    /// Records how many bytes the server has confirmed (a resume hint only).
    pub fn mark_progress(&self, item_id: &str, sent: u64) -> Result<()> {
        media_queue::mark_progress(&self.lock_writer()?.conn, item_id, sent)
    }

    /// The server confirmed the complete upload. The file may now be deleted
    /// ([`DeviceStore::purge_uploaded`]); never before.
    pub fn mark_done(&self, item_id: &str) -> Result<()> {
        media_queue::mark_done(&self.lock_writer()?.conn, item_id, now_ms())
    }

    /// An attempt failed: the item backs off exponentially, and after
    /// `max_attempts` is set aside with `reason` while the rest go on.
    pub fn mark_failed(&self, item_id: &str, reason: &str) -> Result<ItemState> {
        self.mark_failed_at(item_id, reason, Timestamp::now())
    }

    /// [`DeviceStore::mark_failed`] at a given time (tests pass a clock).
    pub fn mark_failed_at(&self, item_id: &str, reason: &str, now: Timestamp) -> Result<ItemState> {
        media_queue::mark_failed(
            &self.lock_writer()?.conn,
            item_id,
            reason,
            now.millis(),
            &self.media_options,
        )
    }

    /// Sets an item aside if its journey no longer records its media: the server
    /// refused the change that captured it (and the device rebuilt the journey
    /// without it), or the journey left this device. The server would answer
    /// `entry_not_synced` to such an item forever. Returns whether it did.
    pub fn set_aside_if_unrecorded(&self, item_id: &str) -> Result<bool> {
        let mut writer = self.lock_writer()?;
        let item = media_queue::get(&writer.conn, &self.media_dir, item_id)?;
        let recorded = match writer.load(item.journey_id, &self.actor) {
            Ok(cached) => cached
                .doc
                .view()?
                .media
                .iter()
                .any(|m| m.id == item.media_id),
            Err(Error::UnknownJourney(_)) => false,
            Err(e) => return Err(e),
        };
        if recorded {
            return Ok(false);
        }
        media_queue::set_aside(
            &writer.conn,
            item_id,
            "the journey no longer records this file: the server refused the change that \
             captured it (see the journey's rejected changes), or the journey left this device",
        )?;
        Ok(true)
    }

    /// Puts a set-aside item back in line (after the crew or support looked).
    pub fn retry_upload(&self, item_id: &str) -> Result<()> {
        media_queue::retry(&self.lock_writer()?.conn, item_id)
    }

    /// Items and bytes still to upload.
    pub fn media_progress(&self) -> Result<QueueProgress> {
        media_queue::progress(&self.lock_writer()?.conn)
    }

    /// Deletes the files and rows of items the server confirmed. Returns how many.
    pub fn purge_uploaded(&self) -> Result<usize> {
        let names = {
            let mut writer = self.lock_writer()?;
            let tx = writer
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let names = media_queue::remove_done(&tx, None)?;
            tx.commit()?;
            names
        };
        for name in &names {
            match fs::remove_file(self.media_dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(names.len())
    }

    /// Problems the open found in the media directory (rows set aside).
    pub fn media_problems(&self) -> Result<Vec<MediaProblem>> {
        Ok(lock(&self.media_problems)?.clone())
    }

    /// Rehashes every queued file; mismatches are set aside and returned.
    pub fn verify_media(&self) -> Result<Vec<MediaProblem>> {
        let expected = media_queue::expected_files(&self.lock_writer()?.conn)?;
        let mut problems = Vec::new();
        for (id, name, size, sha256) in expected {
            let path = self.media_dir.join(&name);
            let reason = match files::digest_file(&path) {
                Err(_) => Some("the file is missing or unreadable".to_owned()),
                Ok((hash, len)) if hash != sha256 || len != size => Some(format!(
                    "the file's SHA-256 is {hash} ({len} bytes); the queue expects {sha256} ({size} bytes)"
                )),
                Ok(_) => None,
            };
            if let Some(reason) = reason {
                media_queue::set_aside(&self.lock_writer()?.conn, &id, &reason)?;
                problems.push(MediaProblem {
                    item_id: id,
                    path,
                    reason,
                });
            }
        }
        Ok(problems)
    }
}

/// Reads up to [`SNIFF_LEN`] bytes (fewer only at end of file).
fn read_head(reader: &mut dyn Read) -> Result<Vec<u8>> {
    let mut head = vec![0u8; SNIFF_LEN];
    let mut filled = 0;
    while filled < SNIFF_LEN {
        match reader.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    head.truncate(filled);
    Ok(head)
}
