//! The tamper-evident audit trail: entries as they travel over HTTP, their
//! canonical hash, and verification of a tenant's chain and of one entity's trail.
//!
//! Every entry carries two links, and its hash covers both:
//! - `prev_hash`: the previous entry of the tenant's chain (`seq - 1`), so editing,
//!   deleting or reordering any stored entry breaks the chain at that point;
//! - `entity_prev_hash`: the previous entry about the same entity (a journey), so a
//!   journey's trail can be verified on its own, without the rest of the chain.
//!
//! The first entry of a chain, and the first of each trail, link to [`Digest::ZERO`].
//! Truncation leaves a consistent but shorter chain: it is caught against a
//! [`ChainHead`] (seq and hash of the latest entry) the verifier received earlier.
//!
//! The hash is SHA-256 over a length-prefixed binary encoding of every field
//! (the JSON `diff` included, with object keys sorted), never over JSON text, whose
//! key order and number formatting could drift between serializers and databases.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ids::{DeviceId, LocationId, UserId};

/// Tells this encoding apart from any other SHA-256 input (and from later versions).
const DOMAIN: &[u8] = b"crewsync-audit-v1\0";

/// A SHA-256 digest; hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// What the first entry of a chain or trail links to.
    pub const ZERO: Digest = Digest([0; 32]);

    /// From stored bytes; `None` unless exactly 32 of them.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from(DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        out
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits (a SHA-256 digest)"))
    }
}

/// The latest entry of a chain or trail: what a client keeps to detect truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: Digest,
}

/// The entity audit entries about journeys name.
pub const JOURNEY_ENTITY: &str = "journey";

/// What happened, before it has a place in a chain: who, where, what, to which
/// entity. The storage seals it into an [`AuditEntry`] under the tenant's lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub location: Option<LocationId>,
    pub user: Option<UserId>,
    pub device: Option<DeviceId>,
    /// e.g. `change.accepted`, `change.rejected`, `user.deactivate`.
    pub action: String,
    /// e.g. `journey`, `user`, `tenant`.
    pub entity: String,
    pub entity_id: String,
    /// What changed, readable JSON.
    pub diff: serde_json::Value,
    /// Milliseconds since the Unix epoch, by the server's clock.
    pub server_time: i64,
    /// When the device says it acted (milliseconds), if a device acted.
    pub device_time: Option<i64>,
}

/// One entry of a tenant's hash chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub tenant: String,
    /// Position in the tenant's chain: 1, 2, 3, … without gaps.
    pub seq: u64,
    pub location: Option<LocationId>,
    pub user: Option<UserId>,
    pub device: Option<DeviceId>,
    pub action: String,
    pub entity: String,
    pub entity_id: String,
    pub diff: serde_json::Value,
    pub server_time: i64,
    pub device_time: Option<i64>,
    /// The hash of entry `seq - 1` ([`Digest::ZERO`] for the first).
    pub prev_hash: Digest,
    /// The hash of the previous entry about the same entity ([`Digest::ZERO`] for its first).
    pub entity_prev_hash: Digest,
    /// SHA-256 over every field above ([`AuditEntry::compute_hash`]).
    pub hash: Digest,
}

impl AuditEntry {
    /// Places `record` in a chain at `seq` after the given links, and hashes it.
    pub fn seal(
        tenant: &str,
        seq: u64,
        record: AuditRecord,
        prev_hash: Digest,
        entity_prev_hash: Digest,
    ) -> Self {
        let mut entry = AuditEntry {
            tenant: tenant.to_owned(),
            seq,
            location: record.location,
            user: record.user,
            device: record.device,
            action: record.action,
            entity: record.entity,
            entity_id: record.entity_id,
            diff: record.diff,
            server_time: record.server_time,
            device_time: record.device_time,
            prev_hash,
            entity_prev_hash,
            hash: Digest::ZERO,
        };
        entry.hash = entry.compute_hash();
        entry
    }

    /// The hash this entry's content (everything but `hash`) should have.
    pub fn compute_hash(&self) -> Digest {
        let mut out = Canonical(Vec::with_capacity(256));
        out.raw(DOMAIN);
        out.text(&self.tenant);
        out.u64(self.seq);
        out.uuid(self.location.map(|id| id.as_uuid()));
        out.uuid(self.user.map(|id| id.as_uuid()));
        out.uuid(self.device.map(|id| id.as_uuid()));
        out.text(&self.action);
        out.text(&self.entity);
        out.text(&self.entity_id);
        out.json(&self.diff);
        out.i64(self.server_time);
        match self.device_time {
            None => out.raw(&[0]),
            Some(time) => {
                out.raw(&[1]);
                out.i64(time);
            }
        }
        out.raw(self.prev_hash.as_bytes());
        out.raw(self.entity_prev_hash.as_bytes());
        Digest(Sha256::digest(&out.0).into())
    }

    /// This entry as a head.
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash,
        }
    }
}

/// An unambiguous byte encoding: fixed-width numbers, length-prefixed strings,
/// tagged JSON values with sorted object keys.
struct Canonical(Vec<u8>);

impl Canonical {
    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn u64(&mut self, value: u64) {
        self.raw(&value.to_be_bytes());
    }

    fn i64(&mut self, value: i64) {
        self.raw(&value.to_be_bytes());
    }

    fn len(&mut self, len: usize) {
        self.u64(len as u64);
    }

    fn text(&mut self, text: &str) {
        self.len(text.len());
        self.raw(text.as_bytes());
    }

    fn uuid(&mut self, id: Option<uuid::Uuid>) {
        match id {
            None => self.raw(&[0]),
            Some(id) => {
                self.raw(&[1]);
                self.raw(id.as_bytes());
            }
        }
    }

    fn json(&mut self, value: &serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::Null => self.raw(b"n"),
            Value::Bool(false) => self.raw(b"f"),
            Value::Bool(true) => self.raw(b"t"),
            Value::Number(number) => {
                if let Some(n) = number.as_u64() {
                    self.raw(b"u");
                    self.u64(n);
                } else if let Some(n) = number.as_i64() {
                    self.raw(b"i");
                    self.i64(n);
                } else {
                    // Neither integer form: a float (serde_json has no NaN/inf).
                    self.raw(b"d");
                    self.u64(number.as_f64().unwrap_or_default().to_bits());
                }
            }
            Value::String(text) => {
                self.raw(b"s");
                self.text(text);
            }
            Value::Array(items) => {
                self.raw(b"a");
                self.len(items.len());
                items.iter().for_each(|item| self.json(item));
            }
            Value::Object(map) => {
                // serde_json's map order depends on a crate feature: sort here.
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                self.raw(b"o");
                self.len(keys.len());
                for key in keys {
                    self.text(key);
                    self.json(&map[key]);
                }
            }
        }
    }
}

/// `GET /v1/journeys/{journey}/audit`: a journey's trail and its head (the latest
/// entry), to check with [`verify_trail`] and keep for next time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JourneyTrail {
    pub journey: crate::ids::JourneyId,
    pub entries: Vec<AuditEntry>,
    pub head: ChainHead,
}

/// `GET /v1/audit?after=SEQ&limit=N`: a page of the tenant's chain and its head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// The tenant's chain head when the page was read.
    pub head: Option<ChainHead>,
    /// More entries follow this page.
    pub more: bool,
}

/// `GET /v1/audit/verify`: the server's check of its own stored chain against the
/// head it stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerification {
    pub ok: bool,
    /// Entries verified before the first break (all of them when `ok`).
    pub entries: u64,
    /// The head the server stored for the chain.
    pub head: Option<ChainHead>,
    pub broken: Option<Broken>,
}

/// Where verification failed: the first broken entry and why, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("audit chain broken at entry {seq}: {reason}")]
pub struct Broken {
    pub seq: u64,
    pub reason: String,
}

/// A chain or trail that verified: how many entries, and its latest entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    pub entries: u64,
    pub head: Option<ChainHead>,
}

/// Verifies a tenant's chain entry by entry, so a long chain can be checked page
/// by page without holding it all. [`verify_chain`] is the one-call form.
#[derive(Debug, Clone, Default)]
pub struct ChainVerifier {
    /// A head received earlier: the chain must reach it and hold exactly it.
    held: Option<ChainHead>,
    tenant: Option<String>,
    last: Option<ChainHead>,
    entities: HashMap<(String, String), Digest>,
    entries: u64,
}

impl ChainVerifier {
    /// A verifier for a chain from seq 1; `held` is a head received earlier, if any.
    pub fn new(held: Option<ChainHead>) -> Self {
        Self {
            held,
            ..Self::default()
        }
    }

    /// Checks the next entry of the chain (the first must be seq 1).
    pub fn push(&mut self, entry: &AuditEntry) -> Result<(), Broken> {
        let expected = self.last.map_or(1, |head| head.seq + 1);
        let broken = |seq: u64, reason: String| Err(Broken { seq, reason });
        if entry.seq < expected {
            return broken(
                entry.seq,
                format!(
                    "entries out of order: entry {} comes after entry {}",
                    entry.seq,
                    expected - 1
                ),
            );
        }
        if entry.seq > expected {
            let missing = if entry.seq == expected + 1 {
                format!("entry {expected} is missing (deleted?)")
            } else {
                format!(
                    "entries {expected} to {} are missing (deleted?)",
                    entry.seq - 1
                )
            };
            return broken(expected, missing);
        }
        if let Some(tenant) = self.tenant.as_ref().filter(|t| **t != entry.tenant) {
            return broken(
                entry.seq,
                format!(
                    "entry {} belongs to tenant {:?}, not to this chain's {tenant:?}",
                    entry.seq, entry.tenant
                ),
            );
        }
        if entry.compute_hash() != entry.hash {
            return broken(
                entry.seq,
                format!(
                    "entry {}'s content does not match its hash (edited?)",
                    entry.seq
                ),
            );
        }
        let prev = self.last.map_or(Digest::ZERO, |head| head.hash);
        if entry.prev_hash != prev {
            let reason = match self.last {
                None => format!(
                    "entry {} is the first but links to an earlier entry (the start deleted?)",
                    entry.seq
                ),
                Some(last) => format!(
                    "entry {} does not link to entry {} (entry {} replaced, or entries reordered?)",
                    entry.seq, last.seq, last.seq
                ),
            };
            return broken(entry.seq, reason);
        }
        let key = (entry.entity.clone(), entry.entity_id.clone());
        let entity_prev = self.entities.get(&key).copied().unwrap_or(Digest::ZERO);
        if entry.entity_prev_hash != entity_prev {
            return broken(
                entry.seq,
                format!(
                    "entry {} does not link to the previous entry about {} {}",
                    entry.seq, entry.entity, entry.entity_id
                ),
            );
        }
        if let Some(held) = self
            .held
            .filter(|h| h.seq == entry.seq && h.hash != entry.hash)
        {
            return broken(
                held.seq,
                format!(
                    "entry {} is not the entry the head you hold names (rewritten?)",
                    held.seq
                ),
            );
        }
        self.tenant.get_or_insert_with(|| entry.tenant.clone());
        self.entities.insert(key, entry.hash);
        self.last = Some(entry.head());
        self.entries += 1;
        Ok(())
    }

    /// The latest entry verified so far.
    pub fn head(&self) -> Option<ChainHead> {
        self.last
    }

    /// Ends verification: the chain must reach the held head (if any).
    pub fn finish(self) -> Result<Verified, Broken> {
        if let Some(held) = self.held {
            check_head_reached(self.last, held, "chain")?;
        }
        Ok(Verified {
            entries: self.entries,
            head: self.last,
        })
    }
}

/// A held head beyond the verified range means the entries after the end were
/// cut off.
fn check_head_reached(last: Option<ChainHead>, held: ChainHead, what: &str) -> Result<(), Broken> {
    let end = last.map_or(0, |head| head.seq);
    if held.seq > end {
        return Err(Broken {
            seq: end + 1,
            reason: format!(
                "the {what} ends at {end} but the head you hold is {} (truncated?)",
                held.seq
            ),
        });
    }
    Ok(())
}

/// Verifies a tenant's whole chain (from seq 1, in order): every hash recomputed,
/// every link checked, seq numbers consecutive; then, if given, a head received
/// earlier must be in the chain. Reports the first broken entry.
pub fn verify_chain(
    entries: Vec<AuditEntry>,
    expected_head: Option<ChainHead>,
) -> Result<Verified, Broken> {
    let mut verifier = ChainVerifier::new(expected_head);
    for entry in &entries {
        verifier.push(entry)?;
    }
    verifier.finish()
}

/// Verifies one entity's trail (a journey's entries, in chain order) on its own:
/// every hash recomputed, each entry linked to the previous one of the trail, the
/// first to none; and the trail must reach `head` (the latest entry's seq and
/// hash as the server gave it, or as the client held it earlier) and hold it.
pub fn verify_trail(entries: Vec<AuditEntry>, head: ChainHead) -> Result<Verified, Broken> {
    let mut last: Option<&AuditEntry> = None;
    let mut hashes = HashMap::new();
    for entry in &entries {
        let broken = |reason: String| {
            Err(Broken {
                seq: entry.seq,
                reason,
            })
        };
        if let Some(prev) = last {
            if entry.seq <= prev.seq {
                return broken(format!(
                    "entries out of order: entry {} comes after entry {}",
                    entry.seq, prev.seq
                ));
            }
            if (&entry.tenant, &entry.entity, &entry.entity_id)
                != (&prev.tenant, &prev.entity, &prev.entity_id)
            {
                return broken(format!(
                    "entry {} is about {} {}, not this trail's {} {}",
                    entry.seq, entry.entity, entry.entity_id, prev.entity, prev.entity_id
                ));
            }
        }
        if entry.compute_hash() != entry.hash {
            return broken(format!(
                "entry {}'s content does not match its hash (edited?)",
                entry.seq
            ));
        }
        let expected = last.map_or(Digest::ZERO, |prev| prev.hash);
        if entry.entity_prev_hash != expected {
            return broken(match last {
                None => format!(
                    "the trail starts at entry {}, which follows an entry not in the trail (deleted?)",
                    entry.seq
                ),
                Some(prev) => format!(
                    "entry {} does not link to entry {}, the trail's previous one (an entry between them deleted, or entries reordered?)",
                    entry.seq, prev.seq
                ),
            });
        }
        hashes.insert(entry.seq, entry.hash);
        last = Some(entry);
    }
    let last = last.map(AuditEntry::head);
    check_head_reached(last, head, "trail")?;
    match hashes.get(&head.seq) {
        Some(hash) if *hash == head.hash => {}
        Some(_) => {
            return Err(Broken {
                seq: head.seq,
                reason: format!(
                    "entry {} is not the entry the head you hold names (rewritten?)",
                    head.seq
                ),
            });
        }
        None => {
            return Err(Broken {
                seq: head.seq,
                reason: format!(
                    "the head you hold names entry {}, which is not in the trail (deleted?)",
                    head.seq
                ),
            });
        }
    }
    Ok(Verified {
        entries: entries.len() as u64,
        head: last,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record(entity_id: &str, n: u64) -> AuditRecord {
        AuditRecord {
            location: Some(LocationId::new()),
            user: Some(UserId::new()),
            device: None,
            action: "change.accepted".into(),
            entity: JOURNEY_ENTITY.into(),
            entity_id: entity_id.into(),
            diff: serde_json::json!({"touched": ["entry"], "n": n, "z": {"b": 1.5, "a": -2}}),
            server_time: 1_700_000_000_000 + n as i64,
            device_time: Some(1_700_000_000_000),
        }
    }

    /// A chain of `n` entries alternating between two journeys.
    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        let mut entity_heads: HashMap<String, Digest> = HashMap::new();
        for seq in 1..=n {
            let id = if seq % 2 == 0 { "j-even" } else { "j-odd" };
            let prev = out.last().map_or(Digest::ZERO, |e| e.hash);
            let entity_prev = entity_heads.get(id).copied().unwrap_or(Digest::ZERO);
            let entry = AuditEntry::seal("t", seq, record(id, seq), prev, entity_prev);
            entity_heads.insert(id.into(), entry.hash);
            out.push(entry);
        }
        out
    }

    fn trail(entries: &[AuditEntry], id: &str) -> Vec<AuditEntry> {
        entries
            .iter()
            .filter(|e| e.entity_id == id)
            .cloned()
            .collect()
    }

    #[test]
    fn an_untouched_chain_and_its_trails_verify() {
        let entries = chain(10);
        let head = entries.last().unwrap().head();
        let verified = verify_chain(entries.clone(), Some(head)).unwrap();
        assert_eq!(
            verified,
            Verified {
                entries: 10,
                head: Some(head)
            }
        );
        let odd = trail(&entries, "j-odd");
        let odd_head = odd.last().unwrap().head();
        assert_eq!(verify_trail(odd, odd_head).unwrap().entries, 5);
        assert_eq!(verify_chain(Vec::new(), None).unwrap().entries, 0);
    }

    #[test]
    fn the_hash_does_not_depend_on_json_key_order_but_on_every_field() {
        let entry = chain(1).remove(0);
        let text = r#"{"z":{"a":-2,"b":1.5},"n":1,"touched":["entry"]}"#;
        let mut reordered = entry.clone();
        reordered.diff = serde_json::from_str(text).unwrap();
        assert_eq!(reordered.compute_hash(), entry.hash);
        // A round trip through JSON keeps the hash.
        let back: AuditEntry =
            serde_json::from_str(&serde_json::to_string(&entry).unwrap()).unwrap();
        assert_eq!(back.compute_hash(), entry.hash);
        for change in [
            |e: &mut AuditEntry| e.tenant.push('x'),
            |e: &mut AuditEntry| e.seq += 1,
            |e: &mut AuditEntry| e.location = None,
            |e: &mut AuditEntry| e.user = None,
            |e: &mut AuditEntry| e.device = Some(DeviceId::new()),
            |e: &mut AuditEntry| e.action.push('x'),
            |e: &mut AuditEntry| e.entity.push('x'),
            |e: &mut AuditEntry| e.entity_id.push('x'),
            |e: &mut AuditEntry| e.diff["n"] = serde_json::json!(2),
            |e: &mut AuditEntry| e.server_time += 1,
            |e: &mut AuditEntry| e.device_time = None,
            |e: &mut AuditEntry| e.prev_hash.0[0] ^= 1,
            |e: &mut AuditEntry| e.entity_prev_hash.0[31] ^= 1,
        ] {
            let mut edited = entry.clone();
            change(&mut edited);
            assert_ne!(edited.compute_hash(), entry.hash, "{edited:?}");
        }
        // Moving bytes between adjacent strings changes the hash (length prefixes).
        let mut shifted = entry.clone();
        shifted.action = "change.accepte".into();
        shifted.entity = format!("d{}", entry.entity);
        assert_ne!(shifted.compute_hash(), entry.hash);
    }

    #[test]
    fn each_kind_of_tampering_is_named_at_the_first_broken_entry() {
        let entries = chain(10);
        let head = entries.last().unwrap().head();

        let mut edited = entries.clone();
        edited[4].diff = serde_json::json!({"touched": []});
        let broken = verify_chain(edited, None).unwrap_err();
        assert_eq!(broken.seq, 5);
        assert!(
            broken.reason.contains("does not match its hash"),
            "{broken}"
        );

        let mut rehashed = entries.clone();
        rehashed[4].action = "forged".into();
        rehashed[4].hash = rehashed[4].compute_hash();
        let broken = verify_chain(rehashed, None).unwrap_err();
        assert_eq!(broken.seq, 6, "{broken}");
        assert!(
            broken.reason.contains("does not link to entry 5"),
            "{broken}"
        );

        let mut deleted = entries.clone();
        deleted.remove(6);
        let broken = verify_chain(deleted, None).unwrap_err();
        assert_eq!(
            (broken.seq, broken.reason.as_str()),
            (7, "entry 7 is missing (deleted?)")
        );

        let mut swapped = entries.clone();
        swapped.swap(2, 3);
        let broken = verify_chain(swapped, None).unwrap_err();
        assert_eq!(broken.seq, 3, "{broken}");

        let mut reordered = entries.clone();
        let moved = reordered.remove(2);
        reordered.push(moved);
        let broken = verify_chain(reordered, None).unwrap_err();
        assert_eq!(broken.seq, 3, "{broken}");

        let truncated = entries[..7].to_vec();
        assert!(verify_chain(truncated.clone(), None).is_ok());
        let broken = verify_chain(truncated, Some(head)).unwrap_err();
        assert_eq!(broken.seq, 8);
        assert!(
            broken
                .reason
                .contains("ends at 7 but the head you hold is 10"),
            "{broken}"
        );

        let mut other = head;
        other.seq = 4;
        let broken = verify_chain(entries.clone(), Some(other)).unwrap_err();
        assert_eq!(broken.seq, 4, "{broken}");
    }

    #[test]
    fn a_trail_detects_edits_deletions_and_truncation_on_its_own() {
        let entries = chain(10);
        let odd = trail(&entries, "j-odd");
        let head = odd.last().unwrap().head();

        let mut edited = odd.clone();
        edited[1].server_time += 1;
        assert_eq!(verify_trail(edited, head).unwrap_err().seq, 3);

        let mut deleted = odd.clone();
        deleted.remove(2);
        let broken = verify_trail(deleted, head).unwrap_err();
        assert_eq!(broken.seq, 7, "{broken}");

        let mut first_gone = odd.clone();
        first_gone.remove(0);
        assert_eq!(verify_trail(first_gone, head).unwrap_err().seq, 3);

        let truncated = odd[..3].to_vec();
        let broken = verify_trail(truncated, head).unwrap_err();
        assert!(broken.reason.contains("(truncated?)"), "{broken}");

        let mut foreign = odd.clone();
        foreign.push(entries[9].clone());
        assert_eq!(verify_trail(foreign, head).unwrap_err().seq, 10);

        // A head held from earlier still verifies against a longer trail.
        let earlier = odd[2].head();
        assert!(verify_trail(odd, earlier).is_ok());
    }

    #[test]
    fn digests_round_trip_as_hex() {
        let digest = chain(1)[0].hash;
        assert_eq!(Digest::from_hex(&digest.to_hex()), Some(digest));
        assert_eq!(Digest::from_hex("zz"), None);
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
    }
}
