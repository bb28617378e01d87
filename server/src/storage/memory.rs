//! An in-memory backend: for the deterministic simulation and as the conformance
//! suite's reference. Not durable; never used by a running server.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use crewsync_core::audit::{AuditEntry, AuditRecord, ChainHead};
use crewsync_core::ids::JourneyId;

use super::{Appended, JourneyRecord, NewChange, Storage, StorageError, StoredChange};
use crate::audit::Sealer;

#[derive(Debug, Default)]
struct Tenant {
    log: Vec<StoredChange>,
    hashes: HashSet<Vec<u8>>,
    /// Each journey's snapshot and its generation.
    snapshots: HashMap<JourneyId, (Vec<u8>, u64)>,
    /// (journey, hash) of changes folded into that journey's snapshot.
    folded: HashSet<(JourneyId, Vec<u8>)>,
    quarantine: Vec<super::Quarantined>,
    audit: Vec<AuditEntry>,
}

impl Tenant {
    /// Seals `records` into the chain (the caller holds the mutex: the lock).
    fn audit(&mut self, tenant: &str, records: Vec<AuditRecord>) -> Vec<AuditEntry> {
        let mut sealer = Sealer::new(tenant, self.audit.last().map(AuditEntry::head));
        for (entity, id) in Sealer::entities_of(&records) {
            let latest = self
                .audit
                .iter()
                .rev()
                .find(|e| e.entity == entity && e.entity_id == id);
            if let Some(latest) = latest {
                sealer.know((entity, id), latest.hash);
            }
        }
        let sealed: Vec<AuditEntry> = records.into_iter().map(|r| sealer.seal(r)).collect();
        self.audit.extend(sealed.iter().cloned());
        sealed
    }

    fn unfolded(&self, journey: JourneyId) -> impl Iterator<Item = &StoredChange> {
        self.log.iter().filter(move |c| {
            c.journey == journey && !self.folded.contains(&(journey, c.hash.clone()))
        })
    }
}

#[derive(Debug, Default)]
pub struct MemoryStorage {
    tenants: Mutex<BTreeMap<String, Tenant>>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, tenant: &str, f: impl FnOnce(&mut Tenant) -> T) -> T {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        f(tenants.entry(tenant.to_owned()).or_default())
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn append(&self, tenant: &str, changes: &[NewChange]) -> Result<Appended, StorageError> {
        let now = crate::audit::now_ms();
        Ok(self.with(tenant, |t| {
            let mut new_changes = 0;
            let mut records = Vec::new();
            for change in changes {
                if t.hashes.insert(change.hash.clone()) {
                    records.push(change.audit_record(now));
                    let seq = t.log.last().map_or(0, |c| c.seq) + 1;
                    t.log.push(StoredChange {
                        seq,
                        journey: change.journey,
                        hash: change.hash.clone(),
                        actor: change.actor.clone(),
                        bytes: change.bytes.clone(),
                    });
                    new_changes += 1;
                }
            }
            t.audit(tenant, records);
            Appended {
                head: t.log.last().map_or(0, |c| c.seq),
                new_changes,
            }
        }))
    }

    async fn changes_since(
        &self,
        tenant: &str,
        cursor: u64,
        limit: u32,
    ) -> Result<Vec<StoredChange>, StorageError> {
        Ok(self.with(tenant, |t| {
            t.log
                .iter()
                .filter(|c| c.seq > cursor)
                .take(limit as usize)
                .cloned()
                .collect()
        }))
    }

    async fn head(&self, tenant: &str) -> Result<u64, StorageError> {
        Ok(self.with(tenant, |t| t.log.last().map_or(0, |c| c.seq)))
    }

    async fn journey(
        &self,
        tenant: &str,
        journey: JourneyId,
    ) -> Result<JourneyRecord, StorageError> {
        Ok(self.with(tenant, |t| {
            let (snapshot, generation) = t
                .snapshots
                .get(&journey)
                .map_or((None, 0), |(bytes, generation)| {
                    (Some(bytes.clone()), *generation)
                });
            JourneyRecord {
                snapshot,
                generation,
                changes: t.unfolded(journey).map(|c| c.bytes.clone()).collect(),
            }
        }))
    }

    async fn unfolded_count(&self, tenant: &str, journey: JourneyId) -> Result<u64, StorageError> {
        Ok(self.with(tenant, |t| t.unfolded(journey).count() as u64))
    }

    async fn save_snapshot(
        &self,
        tenant: &str,
        journey: JourneyId,
        base_generation: u64,
        snapshot: &[u8],
        contains: &[Vec<u8>],
    ) -> Result<bool, StorageError> {
        Ok(self.with(tenant, |t| {
            let current = t
                .snapshots
                .get(&journey)
                .map_or(0, |(_, generation)| *generation);
            if current != base_generation {
                return false;
            }
            t.snapshots
                .insert(journey, (snapshot.to_vec(), base_generation + 1));
            t.folded
                .extend(contains.iter().map(|hash| (journey, hash.clone())));
            true
        }))
    }

    async fn quarantine(
        &self,
        tenant: &str,
        changes: &[super::Refused],
    ) -> Result<(), StorageError> {
        self.with(tenant, |t| {
            let mut records = Vec::new();
            for refused in changes {
                if !t.quarantine.iter().any(|q| q.hash == refused.change.hash) {
                    t.quarantine.push(refused.change.clone());
                    records.push(refused.audit_record());
                }
            }
            t.audit(tenant, records);
        });
        Ok(())
    }

    async fn quarantined(
        &self,
        tenant: &str,
        journey: Option<JourneyId>,
    ) -> Result<Vec<super::Quarantined>, StorageError> {
        Ok(self.with(tenant, |t| {
            let mut found: Vec<_> = t
                .quarantine
                .iter()
                .filter(|q| journey.is_none_or(|j| q.journey == j))
                .cloned()
                .collect();
            found.sort_by(|a, b| (a.received_at, &a.hash).cmp(&(b.received_at, &b.hash)));
            found
        }))
    }

    async fn record_audit(
        &self,
        tenant: &str,
        records: &[AuditRecord],
    ) -> Result<Vec<AuditEntry>, StorageError> {
        Ok(self.with(tenant, |t| t.audit(tenant, records.to_vec())))
    }

    async fn audit_since(
        &self,
        tenant: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        Ok(self.with(tenant, |t| {
            t.audit
                .iter()
                .filter(|e| e.seq > after)
                .take(limit as usize)
                .cloned()
                .collect()
        }))
    }

    async fn audit_trail(
        &self,
        tenant: &str,
        entity: &str,
        entity_id: &str,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        Ok(self.with(tenant, |t| {
            t.audit
                .iter()
                .filter(|e| e.entity == entity && e.entity_id == entity_id)
                .cloned()
                .collect()
        }))
    }

    async fn audit_head(&self, tenant: &str) -> Result<Option<ChainHead>, StorageError> {
        Ok(self.with(tenant, |t| t.audit.last().map(AuditEntry::head)))
    }

    async fn ping(&self) -> Result<(), StorageError> {
        Ok(())
    }
}
