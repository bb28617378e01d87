//! Sync scopes: which journeys a signed-in user's devices receive (partial
//! replication).
//!
//! - DRIVER and MOVER: the journeys they are on the crew of, dated within a window
//!   around today;
//! - DISPATCHER and MANAGER: their location's journeys;
//! - ADMIN and AUDITOR: the tenant's.
//!
//! The answer comes from an index (`journey_scope`, `journey_crew`) of each
//! journey's location, date and crew, read from its document whenever an accepted
//! change creates the journey or changes its crew ([`reindex`]). Each row carries
//! the log head it was read at, and an older reading never replaces a newer one, so
//! concurrent pushes to one journey cannot leave a stale crew behind. A push is
//! acknowledged only after its journeys are re-indexed, so a crash in between
//! makes the device push again, which indexes again.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{Days, NaiveDate};
use crewsync_core::document::JourneyDocument;
use crewsync_core::ids::{JourneyId, LocationId, UserId};
use crewsync_core::model::Role;
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use sqlx::types::Uuid;

use crate::auth::http::Principal;
use crate::checks::{self, CheckError};
use crate::directory::{Db, DirectoryError, db_err, in_write_tx, on_db};
use crate::storage::{Storage, to_db_seq};

/// The days around today a crew member's devices keep their journeys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub days_back: u32,
    pub days_ahead: u32,
}

impl Default for Window {
    /// Yesterday's journeys stay for late notes and signatures; a fortnight ahead
    /// lets crews see what is planned.
    fn default() -> Self {
        Self {
            days_back: 2,
            days_ahead: 14,
        }
    }
}

/// What one user may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Tenant,
    Location(LocationId),
    Crew {
        user: UserId,
        from: NaiveDate,
        to: NaiveDate,
    },
}

impl Scope {
    /// The scope of `principal` on `today` (UTC date: the window is wide enough
    /// that a location's timezone does not matter).
    pub fn of(principal: &Principal, today: NaiveDate, window: Window) -> Self {
        match principal.role {
            Role::Admin | Role::Auditor => Scope::Tenant,
            Role::Dispatcher | Role::Manager => Scope::Location(principal.location),
            Role::Driver | Role::Mover => Scope::Crew {
                user: principal.user,
                from: today
                    .checked_sub_days(Days::new(window.days_back.into()))
                    .unwrap_or(NaiveDate::MIN),
                to: today
                    .checked_add_days(Days::new(window.days_ahead.into()))
                    .unwrap_or(NaiveDate::MAX),
            },
        }
    }

    /// Whether a journey that `reach` describes is in this scope.
    pub fn covers(&self, reach: &Reach) -> bool {
        match self {
            Scope::Tenant => true,
            Scope::Location(location) => reach.location == *location,
            Scope::Crew { user, from, to } => {
                reach.crew.contains(user) && (*from..=*to).contains(&reach.day)
            }
        }
    }

    /// Whether live news of a journey that `reach` describes concerns this scope.
    /// Wider than [`covers`](Self::covers) on purpose: a crew member hears of every
    /// journey they are (or, in a notice, were) on, whatever its date, so that an
    /// unassigned device syncs and drops the journey.
    pub fn hears_of(&self, reach: &Reach) -> bool {
        match self {
            Scope::Crew { user, .. } => reach.crew.contains(user),
            other => other.covers(reach),
        }
    }
}

/// Where a journey is, when, and who is on it: what decides who sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reach {
    pub journey: JourneyId,
    pub location: LocationId,
    pub day: NaiveDate,
    pub crew: Vec<UserId>,
}

impl Reach {
    /// Read from a journey's document.
    pub fn of(doc: &JourneyDocument) -> crewsync_core::Result<Self> {
        let (_, location, day) = doc.header()?;
        let mut crew = doc.crew_ids()?;
        crew.sort();
        Ok(Self {
            journey: doc.id(),
            location,
            day,
            crew,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Check(#[from] CheckError),
}

/// The scope index over the server's database.
#[derive(Debug, Clone)]
pub struct ScopeIndex {
    db: Db,
}

const DAY_FORMAT: &str = "%Y-%m-%d";

impl ScopeIndex {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Files `reach` as read at log head `as_of`, unless a reading at a later head
    /// is already filed. Returns the crew it replaced when who sees the journey
    /// changed (`None`: the reading was stale, or the same as filed).
    pub async fn record(
        &self,
        tenant: &str,
        reach: &Reach,
        as_of: u64,
    ) -> Result<Option<Vec<UserId>>, DirectoryError> {
        let journey = reach.journey.as_uuid();
        let day = reach.day.format(DAY_FORMAT).to_string();
        in_write_tx!(&self.db, tenant tenant, tx, lock => {
            let current: Option<(i64, Uuid, String)> = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT as_of, location_id, day FROM journey_scope
                 WHERE tenant = $1 AND journey_id = $2{lock}"
            )))
            .bind(tenant)
            .bind(journey)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("scope: read"))?;
            if current
                .as_ref()
                .is_some_and(|(current, _, _)| *current > to_db_seq(as_of))
            {
                return Ok(None);
            }
            let mut before: Vec<Uuid> = sqlx::query_scalar(
                "SELECT user_id FROM journey_crew WHERE tenant = $1 AND journey_id = $2",
            )
            .bind(tenant)
            .bind(journey)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err("scope: read crew"))?;
            before.sort();
            let before: Vec<UserId> = before.into_iter().map(UserId::from_uuid).collect();
            let unchanged = current.as_ref().is_some_and(|(_, location, filed_day)| {
                *location == reach.location.as_uuid() && *filed_day == day && before == reach.crew
            });
            sqlx::query(
                "INSERT INTO journey_scope (tenant, journey_id, location_id, day, as_of)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant, journey_id) DO UPDATE SET location_id = excluded.location_id,
                     day = excluded.day, as_of = excluded.as_of",
            )
            .bind(tenant)
            .bind(journey)
            .bind(reach.location.as_uuid())
            .bind(&day)
            .bind(to_db_seq(as_of))
            .execute(&mut *tx)
            .await
            .map_err(db_err("scope: write"))?;
            sqlx::query("DELETE FROM journey_crew WHERE tenant = $1 AND journey_id = $2")
                .bind(tenant)
                .bind(journey)
                .execute(&mut *tx)
                .await
                .map_err(db_err("scope: clear crew"))?;
            for user in &reach.crew {
                sqlx::query(
                    "INSERT INTO journey_crew (tenant, journey_id, user_id) VALUES ($1, $2, $3)",
                )
                .bind(tenant)
                .bind(journey)
                .bind(user.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db_err("scope: write crew"))?;
            }
            tx.commit().await.map_err(db_err("scope: commit"))?;
            Ok((!unchanged).then_some(before))
        })
    }

    /// Every indexed journey in `scope`.
    pub async fn visible(
        &self,
        tenant: &str,
        scope: &Scope,
    ) -> Result<BTreeSet<JourneyId>, DirectoryError> {
        let rows: Vec<Uuid> = match scope {
            Scope::Tenant => on_db!(&self.db, tenant tenant, read pool => sqlx::query_scalar(
                "SELECT journey_id FROM journey_scope WHERE tenant = $1",
            )
            .bind(tenant)
            .fetch_all(pool)
            .await),
            Scope::Location(location) => {
                on_db!(&self.db, tenant tenant, read pool => sqlx::query_scalar(
                "SELECT journey_id FROM journey_scope WHERE tenant = $1 AND location_id = $2",
            )
            .bind(tenant)
            .bind(location.as_uuid())
            .fetch_all(pool)
            .await)
            }
            Scope::Crew { user, from, to } => {
                on_db!(&self.db, tenant tenant, read pool => sqlx::query_scalar(
                "SELECT s.journey_id FROM journey_scope s
                 JOIN journey_crew c ON c.tenant = s.tenant AND c.journey_id = s.journey_id
                 WHERE s.tenant = $1 AND c.user_id = $2 AND s.day BETWEEN $3 AND $4",
            )
            .bind(tenant)
            .bind(user.as_uuid())
            .bind(from.format(DAY_FORMAT).to_string())
            .bind(to.format(DAY_FORMAT).to_string())
            .fetch_all(pool)
            .await)
            }
        }
        .map_err(db_err("scope: visible"))?;
        Ok(rows.into_iter().map(JourneyId::from_uuid).collect())
    }

    /// The filed reach of each of `journeys` that is indexed.
    pub async fn reach(
        &self,
        tenant: &str,
        journeys: &[JourneyId],
    ) -> Result<Vec<Reach>, DirectoryError> {
        let mut out = Vec::with_capacity(journeys.len());
        for journey in journeys {
            let row: Option<(Uuid, String)> =
                on_db!(&self.db, tenant tenant, read pool => sqlx::query_as(
                "SELECT location_id, day FROM journey_scope WHERE tenant = $1 AND journey_id = $2",
            )
            .bind(tenant)
            .bind(journey.as_uuid())
            .fetch_optional(pool)
            .await)
                .map_err(db_err("scope: reach"))?;
            let Some((location, day)) = row else { continue };
            let crew: Vec<Uuid> = on_db!(&self.db, tenant tenant, read pool => sqlx::query_scalar(
                "SELECT user_id FROM journey_crew WHERE tenant = $1 AND journey_id = $2 ORDER BY user_id",
            )
            .bind(tenant)
            .bind(journey.as_uuid())
            .fetch_all(pool)
            .await)
            .map_err(db_err("scope: reach crew"))?;
            out.push(Reach {
                journey: *journey,
                location: LocationId::from_uuid(location),
                day: NaiveDate::parse_from_str(&day, DAY_FORMAT).map_err(|e| {
                    DirectoryError::Corrupt(format!("journey {journey}: day {day:?}: {e}"))
                })?,
                crew: crew.into_iter().map(UserId::from_uuid).collect(),
            });
        }
        Ok(out)
    }
}

/// Re-reads the reach of `journeys` from their stored documents and files it.
/// Returns the journeys whose reach changed, each with the crew it had before
/// added (so a live notice reaches the unassigned too).
pub async fn reindex(
    storage: &Arc<dyn Storage>,
    index: &ScopeIndex,
    tenant: &str,
    journeys: &[JourneyId],
) -> Result<Vec<Reach>, ScopeError> {
    let mut out = Vec::with_capacity(journeys.len());
    for &journey in journeys {
        // Read the head first: the document loaded after it holds at least every
        // change up to it, so `as_of` never claims more than the reading saw.
        let as_of = storage
            .head(tenant)
            .await
            .map_err(|e| ScopeError::Check(e.into()))?;
        let record = storage
            .journey(tenant, journey)
            .await
            .map_err(|e| ScopeError::Check(e.into()))?;
        if record.snapshot.is_none() && record.changes.is_empty() {
            continue;
        }
        let reach = tokio::task::spawn_blocking(move || {
            let doc = checks::load(journey, &record)?;
            Reach::of(&doc).map_err(|e| CheckError::Corrupt {
                journey,
                reason: e.to_string(),
            })
        })
        .await
        .map_err(|e| CheckError::Corrupt {
            journey,
            reason: format!("index task failed: {e}"),
        })??;
        if let Some(before) = index.record(tenant, &reach, as_of).await? {
            let mut heard = reach;
            heard.crew.extend(before);
            heard.crew.sort();
            heard.crew.dedup();
            out.push(heard);
        }
    }
    Ok(out)
}

/// Indexes every journey in the change log that has no index row yet (journeys
/// logged before this index existed), so that nobody loses sight of them. Runs at
/// start; a no-op once everything is indexed.
pub async fn backfill(storage: &Arc<dyn Storage>, index: &ScopeIndex) -> Result<usize, ScopeError> {
    // Tenant by tenant: on Postgres, row-level security shows a transaction only
    // the rows of the tenant it is bound to.
    let tenants: Vec<Uuid> = on_db!(&index.db, read pool => sqlx::query_scalar(
        "SELECT id FROM tenants ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .map_err(db_err("scope: tenants"))?);
    let mut indexed = 0;
    for tenant in tenants {
        let tenant = tenant.hyphenated().to_string();
        let journeys: Vec<Uuid> =
            on_db!(&index.db, tenant &tenant, read pool => sqlx::query_scalar(
            "SELECT DISTINCT c.journey_id FROM change_log c
             WHERE c.tenant = $1 AND NOT EXISTS (SELECT 1 FROM journey_scope s
                               WHERE s.tenant = c.tenant AND s.journey_id = c.journey_id)",
        )
        .bind(&tenant)
        .fetch_all(pool)
        .await)
            .map_err(db_err("scope: unindexed journeys"))?;
        let journeys: Vec<JourneyId> = journeys.into_iter().map(JourneyId::from_uuid).collect();
        indexed += reindex(storage, index, &tenant, &journeys).await?.len();
    }
    Ok(indexed)
}
