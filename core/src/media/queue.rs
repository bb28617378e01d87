//! The upload queue's rules, pure: which lane an item goes in, whether the network
//! allows it, and how long a failed item waits. The rows live in the device store
//! (`store::media_queue`); the uploader asks the store for the next item.
//!
//! Lanes, in order: signatures; then photo metadata and thumbnails (small, and what
//! the office looks at first); then originals, smallest first. A large video may be
//! marked "Wi-Fi only" (over [`MediaOptions::wifi_only_over_bytes`]). A failing item
//! backs off exponentially and, after [`MediaOptions::max_attempts`], is set aside
//! with its reason, so one bad file never wedges the rest.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::image_info::ImageLimits;
use crate::ids::{JourneyId, MediaId};

/// The network the app says the device is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum NetworkKind {
    Offline,
    /// Cellular or any metered link.
    Cellular,
    Wifi,
}

/// What an upload carries (the protocol's `kind`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum UploadKind {
    Photo,
    Video,
    Signature,
    Thumbnail,
}

impl UploadKind {
    /// The lane: lower goes first.
    pub fn lane(self) -> u8 {
        match self {
            Self::Signature => 0,
            Self::Thumbnail => 1,
            Self::Photo | Self::Video => 2,
        }
    }
}

/// Tunables of capture and the queue.
#[derive(Debug, Clone)]
pub struct MediaOptions {
    /// Where originals and thumbnails are kept; `None` = beside the store file
    /// (`<store>.media/`).
    pub dir: Option<PathBuf>,
    /// Videos larger than this upload on Wi-Fi only.
    pub wifi_only_over_bytes: u64,
    /// Failed attempts before an item is set aside.
    pub max_attempts: u32,
    /// The first retry waits this long; each further one twice as long …
    pub backoff_base_ms: i64,
    /// … up to this.
    pub backoff_max_ms: i64,
    pub limits: ImageLimits,
}

impl Default for MediaOptions {
    fn default() -> Self {
        Self {
            dir: None,
            wifi_only_over_bytes: 25 * 1024 * 1024,
            max_attempts: 8,
            backoff_base_ms: 5_000,
            backoff_max_ms: 60 * 60 * 1000,
            limits: ImageLimits::default(),
        }
    }
}

impl MediaOptions {
    /// How long to wait after the `attempts`-th failure (1-based).
    pub fn backoff_ms(&self, attempts: u32) -> i64 {
        let shift = attempts.saturating_sub(1).min(30);
        self.backoff_base_ms
            .saturating_mul(1i64 << shift)
            .min(self.backoff_max_ms)
    }
}

/// Whether an item may go over `network`.
pub fn allowed_on(network: NetworkKind, wifi_only: bool) -> bool {
    match network {
        NetworkKind::Offline => false,
        NetworkKind::Cellular => !wifi_only,
        NetworkKind::Wifi => true,
    }
}

/// Everything the uploader needs for one item (see the media protocol: the
/// `POST /v1/media/uploads` body is `media_id`, `journey_id`, `kind`,
/// `content_type`, `size`, `sha256`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadItem {
    /// The queue item's own id (a photo has two items: original and thumbnail).
    pub item_id: String,
    pub media_id: MediaId,
    pub journey_id: JourneyId,
    pub kind: UploadKind,
    pub content_type: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// Bytes the last attempt reported sent; a hint only — the server owns the offset.
    pub offset_hint: u64,
    pub attempts: u32,
    pub wifi_only: bool,
    pub state: ItemState,
    pub last_error: Option<String>,
}

/// Where an item is in its life.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    Pending,
    /// The server confirmed the complete upload; the file may be deleted.
    Done,
    /// Failed too often; waits for someone to look (`retry_media`), the rest go on.
    SetAside,
}

/// Items and bytes still to upload (fed to the app and, with each sync, the office).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueProgress {
    pub pending_items: u64,
    /// Bytes not yet confirmed, counting each item's offset hint as sent.
    pub pending_bytes: u64,
    pub set_aside_items: u64,
    pub done_items: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let options = MediaOptions {
            backoff_base_ms: 1_000,
            backoff_max_ms: 10_000,
            ..MediaOptions::default()
        };
        let waits: Vec<i64> = (1..=6).map(|n| options.backoff_ms(n)).collect();
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(options.backoff_ms(1_000), 10_000);
    }

    #[test]
    fn wifi_only_items_wait_for_wifi() {
        assert!(!allowed_on(NetworkKind::Offline, false));
        assert!(allowed_on(NetworkKind::Cellular, false));
        assert!(!allowed_on(NetworkKind::Cellular, true));
        assert!(allowed_on(NetworkKind::Wifi, true));
    }
}
