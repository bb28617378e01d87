//! "An item's entry reaches the server no later than its bytes": an upload is
//! accepted only for a `MediaRef` the server's copy of the journey holds, with
//! the declared hash and kind (a device thumbnail: the parent's
//! `thumbnail_sha256`, and `thumbnail_size` when given).
//!
//! The fields are read straight from the automerge document (`media/{id}/…`)
//! rather than through `MediaRef`, so fields the device side adds to it
//! (`thumbnail_sha256`, `content_type`, …) are understood without this module
//! depending on the struct's exact shape.

use automerge::{ObjType, ReadDoc, ScalarValue, Value};
use crewsync_core::document::JourneyDocument;
use crewsync_core::ids::MediaId;

use super::{Kind, MediaError};

/// What the journey says about one media item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefFacts {
    /// `PHOTO`, `VIDEO` or `SIGNATURE`.
    pub kind: Option<String>,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub thumbnail_sha256: Option<String>,
    pub thumbnail_size: Option<u64>,
}

/// The `MediaRef` facts of `media` in `doc`, if it has one.
pub fn facts(doc: &JourneyDocument, media: MediaId) -> Option<RefFacts> {
    let am = doc.automerge();
    let media_map = match am.get(automerge::ROOT, crewsync_core::document::schema::MEDIA) {
        Ok(Some((Value::Object(ObjType::Map), id))) => id,
        _ => return None,
    };
    let item = match am.get(&media_map, media.to_string()) {
        Ok(Some((Value::Object(ObjType::Map), id))) => id,
        _ => return None,
    };
    let scalar = |key: &str| match am.get(&item, key) {
        Ok(Some((Value::Scalar(value), _))) => Some(value.into_owned()),
        _ => None,
    };
    let text = |key: &str| match scalar(key) {
        Some(ScalarValue::Str(s)) => Some(s.to_string()),
        _ => None,
    };
    let number = |key: &str| match scalar(key) {
        Some(ScalarValue::Uint(n)) => Some(n),
        Some(ScalarValue::Int(n)) => u64::try_from(n).ok(),
        _ => None,
    };
    Some(RefFacts {
        kind: text("kind"),
        sha256: text("sha256"),
        size: number("size"),
        thumbnail_sha256: text("thumbnail_sha256"),
        thumbnail_size: number("thumbnail_size"),
    })
}

/// Whether the journey's entry for `media` names what an upload declares.
pub fn check(
    facts: Option<&RefFacts>,
    media: MediaId,
    kind: Kind,
    sha256: &str,
    size: u64,
) -> Result<(), MediaError> {
    let not_synced = |why: &str| MediaError::EntryNotSynced(format!("media {media}: {why}"));
    let facts = facts.ok_or_else(|| not_synced("the journey has no such media entry"))?;
    let same_hash = |stored: &Option<String>| {
        stored
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(sha256))
    };
    match kind {
        Kind::Thumbnail => {
            if !matches!(facts.kind.as_deref(), Some("PHOTO" | "VIDEO")) {
                return Err(not_synced("a thumbnail belongs to a photo or video"));
            }
            if !same_hash(&facts.thumbnail_sha256) {
                return Err(not_synced("the entry names another thumbnail"));
            }
            if facts.thumbnail_size.is_some_and(|n| n != size) {
                return Err(not_synced("the entry names another thumbnail size"));
            }
        }
        _ => {
            let wanted = kind.as_ref().to_ascii_uppercase();
            if facts.kind.as_deref() != Some(wanted.as_str()) {
                return Err(not_synced("the entry is of another kind"));
            }
            if !same_hash(&facts.sha256) {
                return Err(not_synced("the entry names another SHA-256"));
            }
            if facts.size.is_some_and(|n| n != size) {
                return Err(not_synced("the entry names another size"));
            }
        }
    }
    Ok(())
}
