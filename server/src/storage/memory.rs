//! An in-memory backend: for the deterministic simulation and as the conformance
//! suite's reference. Not durable; never used by a running server.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use crewsync_core::ids::JourneyId;

use super::{JourneyRecord, NewChange, Storage, StorageError, StoredChange};

#[derive(Debug, Default)]
struct Tenant {
    log: Vec<StoredChange>,
    hashes: HashSet<Vec<u8>>,
    snapshots: HashMap<JourneyId, Vec<u8>>,
    /// (journey, hash) of changes folded into that journey's snapshot.
    folded: HashSet<(JourneyId, Vec<u8>)>,
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
    async fn append(&self, tenant: &str, changes: &[NewChange]) -> Result<(), StorageError> {
        self.with(tenant, |t| {
            for change in changes {
                if t.hashes.insert(change.hash.clone()) {
                    let seq = t.log.last().map_or(0, |c| c.seq) + 1;
                    t.log.push(StoredChange {
                        seq,
                        journey: change.journey,
                        hash: change.hash.clone(),
                        actor: change.actor.clone(),
                        bytes: change.bytes.clone(),
                    });
                }
            }
        });
        Ok(())
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
        Ok(self.with(tenant, |t| JourneyRecord {
            snapshot: t.snapshots.get(&journey).cloned(),
            changes: t
                .log
                .iter()
                .filter(|c| c.journey == journey && !t.folded.contains(&(journey, c.hash.clone())))
                .map(|c| c.bytes.clone())
                .collect(),
        }))
    }

    async fn save_snapshot(
        &self,
        tenant: &str,
        journey: JourneyId,
        snapshot: &[u8],
        contains: &[Vec<u8>],
    ) -> Result<(), StorageError> {
        self.with(tenant, |t| {
            t.snapshots.insert(journey, snapshot.to_vec());
            t.folded
                .extend(contains.iter().map(|hash| (journey, hash.clone())));
        });
        Ok(())
    }

    async fn ping(&self) -> Result<(), StorageError> {
        Ok(())
    }
}
