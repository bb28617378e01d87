//! Evidence rules and housekeeping: ADMIN tombstones (bytes kept), legal holds,
//! purging originals past the tenant's retention (never under hold), expiring
//! abandoned uploads, and the per-tenant usage report.
//!
//! Retention is the tenant setting `media_retention_days` (a whole number of
//! days; absent: originals are kept for ever). A purge deletes the original's
//! blob (unless another live row shares its content) and keeps the row, the
//! server thumbnail and the device thumbnail; each purge is audited.

use std::sync::Arc;
use std::time::Duration;

use crewsync_core::audit::{AuditRecord, JOURNEY_ENTITY};
use crewsync_core::ids::{ClientId, JourneyId, MediaId};
use serde::{Deserialize, Serialize};

use super::db::{self, MediaRow};
use super::{MediaError, MediaService};
use crate::auth::http::Principal;
use crate::directory::Directory;

/// The tenant setting naming the retention period of originals, in days.
pub const RETENTION_SETTING: &str = "media_retention_days";

const DAY_MS: i64 = 24 * 3600 * 1000;

/// What a purge did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReport {
    /// Originals whose bytes were deleted.
    pub purged: u64,
    /// Originals past retention kept because their journey is on legal hold.
    pub held: u64,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    /// Unfinished uploads forgotten, their staging files removed.
    pub expired: u64,
}

/// One kind's share of a tenant's media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KindUsage {
    pub kind: String,
    pub items: u64,
    /// Bytes of originals still stored (purged ones count 0).
    pub bytes: u64,
    /// Bytes of the server's thumbnails.
    pub thumbnail_bytes: u64,
}

/// `GET /v1/media/usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub kinds: Vec<KindUsage>,
    pub total_bytes: u64,
    pub open_uploads: u64,
    /// Bytes received so far by unfinished uploads.
    pub staged_bytes: u64,
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl MediaService {
    /// Tombstones a media item (ADMIN): its rows are flagged, its bytes kept, and
    /// the deletion audited. Repeating it changes nothing.
    pub async fn tombstone(&self, principal: &Principal, media: MediaId) -> Result<(), MediaError> {
        let tenant = principal.tenant_key();
        let row = db::original(&self.db, &tenant, media.as_uuid())
            .await?
            .ok_or_else(|| MediaError::NotFound(format!("media {media}")))?;
        if db::tombstone(
            &self.db,
            &tenant,
            media.as_uuid(),
            principal.user.as_uuid(),
            self.now(),
        )
        .await?
        {
            crate::audit::record(
                self.storage.as_ref(),
                principal,
                "media.deleted",
                JOURNEY_ENTITY,
                &row.journey_id.to_string(),
                serde_json::json!({
                    "media_id": media.to_string(),
                    "kind": row.kind,
                    "sha256": row.sha256,
                    "bytes_kept": true,
                }),
            )
            .await?;
        }
        Ok(())
    }

    /// Sets or lifts a journey's legal hold, audited when it changes.
    pub async fn set_hold(
        &self,
        principal: &Principal,
        journey: JourneyId,
        hold: bool,
    ) -> Result<(), MediaError> {
        let tenant = principal.tenant_key();
        let before = db::set_hold(
            &self.db,
            &tenant,
            journey.as_uuid(),
            hold,
            principal.user.as_uuid(),
            self.now(),
        )
        .await?;
        if before != hold {
            crate::audit::record(
                self.storage.as_ref(),
                principal,
                "journey.legal_hold",
                JOURNEY_ENTITY,
                &journey.to_string(),
                serde_json::json!({"hold": {"before": before, "after": hold}}),
            )
            .await?;
        }
        Ok(())
    }

    /// Purges, in every tenant with a retention period, the originals stored
    /// longer ago than it, except on journeys under legal hold.
    pub async fn purge(&self, directory: &Directory) -> Result<PurgeReport, MediaError> {
        let mut report = PurgeReport::default();
        for tenant in directory.tenants().await? {
            let Some(days) = tenant
                .settings
                .get(RETENTION_SETTING)
                .and_then(serde_json::Value::as_u64)
            else {
                continue;
            };
            let days = i64::try_from(days).unwrap_or(i64::MAX);
            let before = self.now().saturating_sub(days.saturating_mul(DAY_MS));
            let one = self.purge_tenant(tenant.id, before).await?;
            report.purged += one.purged;
            report.held += one.held;
        }
        Ok(report)
    }

    /// Purges one tenant's originals stored before `before` (not under hold).
    pub async fn purge_tenant(
        &self,
        tenant: ClientId,
        before: i64,
    ) -> Result<PurgeReport, MediaError> {
        let key = crate::directory::tenant_key(tenant);
        let mut report = PurgeReport::default();
        for row in db::purge_candidates(&self.db, &key, before).await? {
            let now = self.now();
            if !db::mark_purged(&self.db, &row, now).await? {
                report.held += 1;
                continue;
            }
            if !db::blob_in_use(&self.db, &key, &row.blob_key).await? {
                self.blobs.delete(&row.blob_key).await?;
            }
            self.record_purge(&row, now).await?;
            report.purged += 1;
        }
        Ok(report)
    }

    async fn record_purge(&self, row: &MediaRow, now: i64) -> Result<(), MediaError> {
        let record = AuditRecord {
            location: None,
            user: None,
            device: None,
            action: "media.purged".into(),
            entity: JOURNEY_ENTITY.into(),
            entity_id: row.journey_id.to_string(),
            diff: serde_json::json!({
                "media_id": row.media_id.to_string(),
                "kind": row.kind,
                "sha256": row.sha256,
                "stored_at": row.created_at,
                "thumbnail_kept": row.thumb_key.is_some(),
            }),
            server_time: now,
            device_time: None,
        };
        self.storage.record_audit(&row.tenant, &[record]).await?;
        Ok(())
    }

    /// Forgets unfinished uploads untouched for the expiry (and those of users no
    /// longer active), removing their partial bytes.
    pub async fn sweep(&self) -> Result<SweepReport, MediaError> {
        let mut report = SweepReport::default();
        // Tenant by tenant: row-level security shows each transaction one tenant.
        for tenant in db::tenants(&self.db).await? {
            for id in db::abandoned_uploads(&self.db, &tenant, self.expired_before()).await? {
                let lock = self.lock_for(id);
                let _held = lock.lock().await;
                if db::delete_upload(&self.db, &tenant, id).await? {
                    report.expired += 1;
                }
                self.staging.remove(id).await?;
            }
        }
        Ok(report)
    }

    /// The tenant's media usage.
    pub async fn usage(&self, tenant: &str) -> Result<Usage, MediaError> {
        let kinds: Vec<KindUsage> = db::usage(&self.db, tenant)
            .await?
            .into_iter()
            .map(|(kind, items, bytes, thumbs)| KindUsage {
                kind,
                items: unsigned(items),
                bytes: unsigned(bytes),
                thumbnail_bytes: unsigned(thumbs),
            })
            .collect();
        let (open, staged) = db::staged(&self.db, tenant).await?;
        Ok(Usage {
            total_bytes: kinds.iter().map(|k| k.bytes + k.thumbnail_bytes).sum(),
            kinds,
            open_uploads: unsigned(open),
            staged_bytes: unsigned(staged),
        })
    }
}

/// Sweeps abandoned uploads every `every` until the handle is aborted.
pub fn spawn_sweeper(media: Arc<MediaService>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match media.sweep().await {
                Ok(report) if report.expired > 0 => {
                    tracing::info!(expired = report.expired, "swept abandoned uploads");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "upload sweep failed"),
            }
        }
    })
}
