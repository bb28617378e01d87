//! The sync wire format: MessagePack (rmp-serde, named fields) carrying a protocol
//! version. Shared by devices and the server, so both ends decode the same types.
//!
//! Changes travel as automerge chunks: one change in its compressed form
//! (`Change::bytes()`; the raw form is read too), or, from a device, a journey the
//! server has never seen as one saved document (`Automerge::save()`: columnar and
//! compressed, about a tenth of its changes' size). A document is acknowledged by its
//! heads; see [`SyncResponse::acked`].

use automerge::{Automerge, Change, ChangeHash};
use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, JourneyId};

/// The protocol version this build speaks. A peer speaking another is refused with
/// [`WireError::UnsupportedVersion`], never guessed at.
///
/// Compressed changes and pushed documents did not change it: every version-1 peer
/// reads compressed changes (`Change::from_bytes` takes both forms), and an older
/// server refuses a pushed document as "not an automerge change", storing nothing
/// and acknowledging nothing, so the device keeps it queued and says why, while
/// everything else still syncs. A new version would cut new devices off from older
/// servers entirely.
pub const PROTOCOL_VERSION: u32 = 1;

/// The media type of a sync body.
pub const CONTENT_TYPE: &str = "application/vnd.crewsync.sync+msgpack";

/// What a device pushes for one journey: one automerge chunk, either a change
/// (compressed form from this version on; raw from older devices) or a saved
/// document holding every change of a journey the server has never seen (see
/// [`is_document`]). Automerge's own sync messages carry changes and documents the
/// same way, as a list of chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireChange {
    pub journey: JourneyId,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// A change as the server's log holds it: with the sequence number the server gave it.
/// Its bytes are one change, compressed (the log keeps the wire form; rows written
/// before this version are raw, and `Change::from_bytes` reads both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedChange {
    pub seq: u64,
    pub journey: JourneyId,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Device → server: "here is what I made; what have I missed since `cursor`?"
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub version: u32,
    pub device_id: DeviceId,
    /// The automerge actor this device writes with now; its own changes are not sent
    /// back. (A device restored from a backup writes with a new actor, so it does get
    /// back what it wrote before and lost.)
    #[serde(with = "serde_bytes")]
    pub actor: Vec<u8>,
    /// The last log sequence number this device has applied.
    pub cursor: u64,
    /// Local changes not yet acknowledged, oldest first; a journey whose every
    /// change is still unacknowledged may come as one document instead.
    pub changes: Vec<WireChange>,
    /// The most changes the device wants back in this response.
    pub max_changes: u32,
    /// Every journey the device holds. With it the server keeps the device's copy
    /// to its sync scope: journeys that entered the scope come whole
    /// ([`SyncResponse::entered`]), journeys that left it are named
    /// ([`SyncResponse::left`]). `None` (a device before scopes): the log is only
    /// filtered to the scope.
    #[serde(default)]
    pub held: Option<Vec<JourneyId>>,
    /// What the device still has to send, for the dispatcher's sync-health view.
    #[serde(default)]
    pub report: Option<DeviceReport>,
}

/// What a device says of its backlog at each sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceReport {
    /// Local changes not yet acknowledged (every user's, on a shared device).
    pub pending_changes: u64,
    /// Bytes of photos, videos and signatures not yet uploaded.
    pub pending_media_bytes: u64,
}

/// Why the server refused one change (it stored nothing for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedChange {
    #[serde(with = "serde_bytes")]
    pub hash: Vec<u8>,
    pub reason: String,
}

/// Server → device: what is now durable, and what the device missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    pub version: u32,
    /// Hashes of pushed changes that are durable on the server (new or already known).
    /// A pushed document is acknowledged by its heads, all of them and only once
    /// every change in it is durable: the device then clears the whole document.
    pub acked: Vec<serde_bytes::ByteBuf>,
    pub rejected: Vec<RejectedChange>,
    /// Log entries after the request's cursor, in log order.
    pub changes: Vec<LoggedChange>,
    /// The cursor to send next time: everything up to it is in `changes` or was the
    /// device's own.
    pub cursor: u64,
    /// More changes wait: sync again right away.
    pub more: bool,
    /// Journeys that entered the device's scope (e.g. its user was just assigned),
    /// each as one saved automerge document: the log before the device's cursor
    /// holds their history, so it comes whole. The page in `changes` leaves them out.
    #[serde(default)]
    pub entered: Vec<WireChange>,
    /// Journeys the device holds that are outside its scope now (e.g. its user was
    /// unassigned): the device drops each once it has nothing left to push for it.
    #[serde(default)]
    pub left: Vec<JourneyId>,
}

/// The first bytes of every automerge chunk.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// Whether `bytes` is a saved automerge document rather than a change: the chunk
/// header (4 magic bytes, a 4-byte checksum) is followed by chunk type 0, where a
/// change has 1 (raw) or 2 (compressed). Says nothing about the rest being valid.
pub fn is_document(bytes: &[u8]) -> bool {
    bytes.len() > 8 && bytes[..4] == CHUNK_MAGIC && bytes[8] == 0
}

/// What one pushed entry holds: its changes (a document's in causal order), and
/// the hashes that acknowledge it: a change's own, a document's heads.
#[derive(Debug)]
pub struct Unpacked {
    pub changes: Vec<Change>,
    pub acknowledged_by: Vec<ChangeHash>,
}

/// Reads one pushed entry (a change, raw or compressed, or a saved document);
/// `Err` is the reason to give the device. The server judges pushed changes and a
/// device reads journeys that entered its scope through here, so a document's
/// changes are seen exactly like single ones.
pub fn unpack(bytes: Vec<u8>) -> Result<Unpacked, String> {
    if is_document(&bytes) {
        let doc = Automerge::load(&bytes).map_err(|e| format!("not an automerge document: {e}"))?;
        return Ok(Unpacked {
            changes: doc.get_changes(&[]),
            acknowledged_by: doc.get_heads(),
        });
    }
    let change = Change::from_bytes(bytes).map_err(|e| format!("not an automerge change: {e}"))?;
    Ok(Unpacked {
        acknowledged_by: vec![change.hash()],
        changes: vec![change],
    })
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("protocol version {found} is not supported (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("malformed sync message: {0}")]
    Malformed(String),
}

/// Encodes a message as MessagePack with field names (so fields can be added later).
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Our message types contain only plain data; serializing them cannot fail.
    rmp_serde::to_vec_named(message).unwrap_or_default()
}

/// Decodes a request, refusing other protocol versions.
pub fn decode_request(bytes: &[u8]) -> Result<SyncRequest, WireError> {
    check_version(bytes)?;
    rmp_serde::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

pub fn decode_response(bytes: &[u8]) -> Result<SyncResponse, WireError> {
    check_version(bytes)?;
    rmp_serde::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Reads only the version first, so a future peer's message fails as "unsupported
/// version" rather than as a confusing shape error.
fn check_version(bytes: &[u8]) -> Result<(), WireError> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let Versioned { version } = rmp_serde::from_slice(bytes)
        .map_err(|e| WireError::Malformed(format!("no protocol version: {e}")))?;
    if version == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(WireError::UnsupportedVersion { found: version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> SyncRequest {
        SyncRequest {
            version: PROTOCOL_VERSION,
            device_id: DeviceId::new(),
            actor: vec![1, 2, 3],
            cursor: 42,
            changes: vec![WireChange {
                journey: JourneyId::new(),
                bytes: vec![0x85, 0x6f, 0x4a, 0x83],
            }],
            max_changes: 1000,
            held: Some(vec![JourneyId::new()]),
            report: Some(DeviceReport {
                pending_changes: 3,
                pending_media_bytes: 4096,
            }),
        }
    }

    #[test]
    fn messages_round_trip() {
        let req = request();
        assert_eq!(decode_request(&encode(&req)).unwrap(), req);
        let resp = SyncResponse {
            version: PROTOCOL_VERSION,
            acked: vec![serde_bytes::ByteBuf::from(vec![9; 32])],
            rejected: vec![],
            changes: vec![],
            cursor: 7,
            more: false,
            entered: vec![],
            left: vec![JourneyId::new()],
        };
        assert_eq!(decode_response(&encode(&resp)).unwrap(), resp);
    }

    #[test]
    fn another_version_is_refused_clearly() {
        let req = SyncRequest {
            version: PROTOCOL_VERSION + 1,
            ..request()
        };
        let err = decode_request(&encode(&req)).unwrap_err();
        assert!(
            matches!(err, WireError::UnsupportedVersion { found } if found == PROTOCOL_VERSION + 1)
        );
        assert!(err.to_string().contains("not supported"));
    }

    #[test]
    fn documents_are_told_from_changes() {
        let mut doc = automerge::AutoCommit::new();
        automerge::transaction::Transactable::put(
            &mut doc,
            automerge::ROOT,
            "note",
            "dresser, small scratch on the left side, customer informed ".repeat(10),
        )
        .unwrap();
        let mut change = doc.get_last_local_change().unwrap().clone();
        let raw = change.raw_bytes().to_vec();
        let compressed = change.bytes().into_owned();
        assert_ne!(raw, compressed, "large enough to be compressed");
        assert!(is_document(&doc.save()));
        assert!(!is_document(&raw));
        assert!(!is_document(&compressed));
        for garbage in [
            &b""[..],
            b"\x85\x6f\x4a\x83",
            b"\x85\x6f\x4a\x83\0\0\0\0",
            b"GET / HTTP/1.1",
        ] {
            assert!(!is_document(garbage), "{garbage:?}");
        }
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\xc1",
            b"GET / HTTP/1.1",
            &encode(&request())[..10],
        ] {
            assert!(
                matches!(decode_request(bytes), Err(WireError::Malformed(_))),
                "{bytes:?}"
            );
        }
    }
}
