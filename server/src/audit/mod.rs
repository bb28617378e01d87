//! The server's side of the audit trail (`crewsync_core::audit`): what each
//! appended or refused change records, and sealing records into a tenant's chain.
//!
//! Entries are written by the storage backends only, inside the transaction that
//! stores what they record and under the tenant's append lock (see
//! [`crate::storage`]), so the chain has exactly one next entry at any time.
//! Admin actions go through [`record`] (i.e. `Storage::record_audit`).

pub mod http;

use std::collections::HashMap;

use automerge::Change;
use crewsync_core::ChangeMessage;
use crewsync_core::audit::{AuditEntry, AuditRecord, ChainHead, Digest, JOURNEY_ENTITY};
use crewsync_core::ids::{DeviceId, JourneyId, LocationId, UserId};
use crewsync_core::policy::Touch;

use crate::auth::http::Principal;
use crate::storage::{QuarantineKind, Storage, StorageError};

/// The action of an entry recording an accepted change.
pub const CHANGE_ACCEPTED: &str = "change.accepted";
/// The action of an entry recording a change the write checks refused.
pub const CHANGE_REJECTED: &str = "change.rejected";
/// The action of an entry recording a change held because the journey was audited.
pub const CHANGE_AFTER_AUDIT: &str = "change.after_audit";

/// What the audit trail records about one pushed change, beyond what the log
/// keeps: who sent it, the journey's location, what it did, and when the device
/// says it was made. Part of every [`crate::storage::NewChange`], so a change
/// cannot be appended without its entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeAudit {
    pub user: Option<UserId>,
    /// The signed-in device that sent it (`None`: the device the request names).
    pub device: Option<DeviceId>,
    pub location: Option<LocationId>,
    /// Readable JSON: the change's hash, the action its message names, and what it
    /// touched ([`change_diff`]).
    pub diff: serde_json::Value,
    /// Milliseconds since the epoch by the device's clock (automerge's timestamp).
    pub device_time: Option<i64>,
}

impl ChangeAudit {
    /// Facts read from the change alone, for an append the write checks did not
    /// screen (the simulation, tests): the author its message names, unverified.
    pub fn unscreened(change: &Change) -> Self {
        let message = change.message().and_then(ChangeMessage::parse);
        Self {
            user: message.as_ref().map(|m| m.origin.user_id),
            device: None,
            location: None,
            diff: change_diff(change, None),
            device_time: device_time(change),
        }
    }

    /// Facts for a change the write checks judged for `principal`.
    pub fn screened(
        change: &Change,
        principal: &Principal,
        location: Option<LocationId>,
        touched: &[Touch],
    ) -> Self {
        Self {
            user: Some(principal.user),
            device: Some(principal.device),
            location,
            diff: change_diff(change, Some(touched)),
            device_time: device_time(change),
        }
    }

    /// The record of this change's entry; `device` is the one the request named,
    /// used when the facts name none.
    pub fn record(
        &self,
        action: &str,
        journey: JourneyId,
        device: DeviceId,
        server_time: i64,
    ) -> AuditRecord {
        AuditRecord {
            location: self.location,
            user: self.user,
            device: Some(self.device.unwrap_or(device)),
            action: action.to_owned(),
            entity: JOURNEY_ENTITY.to_owned(),
            entity_id: journey.to_string(),
            diff: self.diff.clone(),
            server_time,
            device_time: self.device_time,
        }
    }
}

/// The audit facts of accepted changes by hash, as the write checks found them
/// (`checks::screen`), for the exchange to attach to what it appends.
#[derive(Debug, Clone, Default)]
pub struct ChangeFacts(HashMap<automerge::ChangeHash, ChangeAudit>);

impl ChangeFacts {
    pub fn insert(&mut self, hash: automerge::ChangeHash, audit: ChangeAudit) {
        self.0.insert(hash, audit);
    }

    /// The facts of `change`; [`ChangeAudit::unscreened`] if it was not screened.
    pub fn of(&self, change: &Change) -> ChangeAudit {
        self.0
            .get(&change.hash())
            .cloned()
            .unwrap_or_else(|| ChangeAudit::unscreened(change))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The action recorded for a quarantined change.
pub fn refused_action(kind: QuarantineKind) -> &'static str {
    match kind {
        QuarantineKind::Rejected => CHANGE_REJECTED,
        QuarantineKind::AfterAudit => CHANGE_AFTER_AUDIT,
    }
}

/// A change's diff: its hash, the action its message names (as claimed by the
/// device), and what it touched, in words (`None`: not judged).
pub fn change_diff(change: &Change, touched: Option<&[Touch]>) -> serde_json::Value {
    let action = change
        .message()
        .and_then(ChangeMessage::parse)
        .map(|m| m.action);
    serde_json::json!({
        "change": change.hash().to_string(),
        "action": action,
        "touched": touched.map(|touches| touches.iter().map(touch_text).collect::<Vec<_>>()),
    })
}

/// What a change touched, as a reader of the trail would say it.
pub fn touch_text(touch: &Touch) -> String {
    match touch {
        Touch::Create => "journey created".to_owned(),
        Touch::TruckNumber => "truck number".to_owned(),
        Touch::MoveSource => "move source".to_owned(),
        Touch::Times => "planned times".to_owned(),
        Touch::Crew => "crew".to_owned(),
        Touch::Stage(stage) => format!("stage {stage}"),
        Touch::StepStart(step) => format!("step {} started", step.get()),
        Touch::StepComplete(step) => format!("step {} completed", step.get()),
        Touch::StepApprove(step) => format!("step {} approval", step.get()),
        Touch::StepActivity(step) => format!("step {} activity", step.get()),
        Touch::Note => "note added".to_owned(),
        Touch::Entry => "entry added".to_owned(),
        Touch::Gps => "gps batch added".to_owned(),
        Touch::Media => "media added".to_owned(),
        Touch::Counts => "counts".to_owned(),
        Touch::EvidenceRewrite(path) => format!("evidence rewritten at {path}"),
        Touch::RemoveMedia { .. } => "media removed".to_owned(),
        Touch::Unknown(path) => format!("outside the journey layout at {path}"),
    }
}

/// Automerge stores seconds; the trail keeps milliseconds (0 means unset).
fn device_time(change: &Change) -> Option<i64> {
    let seconds = change.timestamp();
    (seconds != 0).then(|| seconds.saturating_mul(1000))
}

/// The server's clock for `server_time`.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Records an admin action in the tenant's chain, as `who`: one call for the admin
/// API. `entity` names what was acted on (`user`, `location`, `tenant`, …).
pub async fn record(
    storage: &dyn Storage,
    who: &Principal,
    action: &str,
    entity: &str,
    entity_id: &str,
    diff: serde_json::Value,
) -> Result<AuditEntry, StorageError> {
    let record = AuditRecord {
        location: Some(who.location),
        user: Some(who.user),
        device: Some(who.device),
        action: action.to_owned(),
        entity: entity.to_owned(),
        entity_id: entity_id.to_owned(),
        diff,
        server_time: now_ms(),
        device_time: None,
    };
    storage
        .record_audit(&who.tenant_key(), &[record])
        .await?
        .pop()
        .ok_or_else(|| StorageError::Database("record_audit returned no entry".to_owned()))
}

/// Seals records into a tenant's chain: the backends create one under the
/// tenant's lock from the stored head and the latest entry of each entity the
/// records name, and write the entries it returns in the same transaction.
#[derive(Debug)]
pub(crate) struct Sealer {
    tenant: String,
    last: Option<ChainHead>,
    entities: HashMap<(String, String), Digest>,
}

impl Sealer {
    pub(crate) fn new(tenant: &str, last: Option<ChainHead>) -> Self {
        Self {
            tenant: tenant.to_owned(),
            last,
            entities: HashMap::new(),
        }
    }

    /// The entities of `records`, once each: whose latest entries the backend
    /// looks up (and passes to [`Self::know`]) before sealing.
    pub(crate) fn entities_of(records: &[AuditRecord]) -> Vec<(String, String)> {
        let mut keys: Vec<(String, String)> = records
            .iter()
            .map(|r| (r.entity.clone(), r.entity_id.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// The hash of the latest stored entry about an entity.
    pub(crate) fn know(&mut self, entity: (String, String), hash: Digest) {
        self.entities.insert(entity, hash);
    }

    /// Places `record` next in the chain.
    pub(crate) fn seal(&mut self, record: AuditRecord) -> AuditEntry {
        let seq = self.last.map_or(1, |head| head.seq + 1);
        let prev = self.last.map_or(Digest::ZERO, |head| head.hash);
        let key = (record.entity.clone(), record.entity_id.clone());
        let entity_prev = self.entities.get(&key).copied().unwrap_or(Digest::ZERO);
        let entry = AuditEntry::seal(&self.tenant, seq, record, prev, entity_prev);
        self.entities.insert(key, entry.hash);
        self.last = Some(entry.head());
        entry
    }

    /// The chain head after everything sealed so far.
    pub(crate) fn head(&self) -> Option<ChainHead> {
        self.last
    }
}

/// An audit row as both SQL backends select it.
pub(crate) type AuditRow = (
    String,
    i64,
    Option<uuid::Uuid>,
    Option<uuid::Uuid>,
    Option<uuid::Uuid>,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
);

fn digest(backend: &str, seq: i64, bytes: &[u8]) -> Result<Digest, StorageError> {
    Digest::from_slice(bytes).ok_or_else(|| {
        StorageError::Database(format!(
            "{backend} audit: entry {seq} holds a hash of {} bytes, not 32",
            bytes.len()
        ))
    })
}

/// A stored row as an entry. Rows are returned as stored, however tampered with:
/// a diff that is not JSON anymore comes back as a JSON string of its text (which
/// verification then reports as not matching the entry's hash).
pub(crate) fn entry_from_row(backend: &str, row: AuditRow) -> Result<AuditEntry, StorageError> {
    let (
        tenant,
        seq,
        location,
        user,
        device,
        action,
        entity,
        entity_id,
        diff,
        server_time,
        device_time,
        prev_hash,
        entity_prev_hash,
        hash,
    ) = row;
    Ok(AuditEntry {
        tenant,
        seq: crate::storage::from_db_seq(backend, "audit", seq)?,
        location: location.map(LocationId::from_uuid),
        user: user.map(UserId::from_uuid),
        device: device.map(DeviceId::from_uuid),
        action,
        entity,
        entity_id,
        diff: serde_json::from_str(&diff).unwrap_or(serde_json::Value::String(diff)),
        server_time,
        device_time,
        prev_hash: digest(backend, seq, &prev_hash)?,
        entity_prev_hash: digest(backend, seq, &entity_prev_hash)?,
        hash: digest(backend, seq, &hash)?,
    })
}

/// A stored chain head (`log_heads.audit_seq`, `audit_hash`).
pub(crate) fn stored_head(
    backend: &str,
    seq: i64,
    hash: Option<Vec<u8>>,
) -> Result<Option<ChainHead>, StorageError> {
    match (seq, hash) {
        (0, _) => Ok(None),
        (seq, Some(hash)) => Ok(Some(ChainHead {
            seq: crate::storage::from_db_seq(backend, "audit head", seq)?,
            hash: digest(backend, seq, &hash)?,
        })),
        (seq, None) => Err(StorageError::Database(format!(
            "{backend} audit head: at entry {seq} but without a hash"
        ))),
    }
}

/// The diff as stored: its JSON text.
pub(crate) fn diff_text(entry: &AuditEntry) -> String {
    entry.diff.to_string()
}
