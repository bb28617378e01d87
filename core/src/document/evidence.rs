//! When a photo becomes evidence that crews can no longer remove.
//!
//! A media reference is *sealed* once what it documents was signed off:
//! - media of a step: the step is completed (its inventory is done), or a signature
//!   was captured for that step or for the whole journey;
//! - media of no step: the journey reached COMPLETED, or any signature was captured.
//!
//! A refusal to sign, or a removed signature, seals nothing. The device asks this
//! of its current document; the server of the document as it was just before the
//! pushed change (`touches`), so both judge the same state.

use super::schema::JourneyDoc;
use crate::model::{MediaKind, MediaRef, Stage};

/// Whether crews may no longer remove the media stored under `media_key`.
/// Unknown media is not sealed (there is nothing to protect).
pub fn sealed(doc: &JourneyDoc, media_key: &str) -> bool {
    let Some(media) = doc.media.get(media_key) else {
        return false;
    };
    let signed = |step: Option<u8>| {
        doc.media
            .values()
            .any(|m| is_signature(m) && (m.step.is_none() || step.is_none() || m.step == step))
    };
    match media.step {
        Some(step) => {
            let completed = doc
                .steps
                .get(&step.to_string())
                .is_some_and(|s| s.completed.is_some());
            completed || signed(Some(step))
        }
        None => doc.stages.contains_key(&Stage::Completed.to_string()) || signed(None),
    }
}

/// A signature that was given (not refused) and is not removed.
fn is_signature(media: &MediaRef) -> bool {
    media.kind == MediaKind::Signature
        && media.removed.is_none()
        && media.sha256.is_some()
        && media
            .signature
            .as_ref()
            .is_some_and(|s| s.refused.is_none())
}
