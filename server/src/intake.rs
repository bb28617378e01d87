//! The one way changes enter the log, whoever made them: a device's push
//! (`POST /v1/sync`) or a dispatcher's edit through the JSON API (`dispatch`).
//!
//! In order: every change is checked against its sender (`checks::screen`;
//! refusals are quarantined), the accepted ones are appended durably
//! (`sync::push`), the journeys whose crew or existence changed are re-indexed for
//! sync scopes (`scope::reindex`) — all before anyone hears "durable" — and then
//! live sockets (of the users the journeys concern) and the compactor hear of
//! real news.

use std::collections::BTreeSet;

use automerge::ChangeHash;
use crewsync_core::sync::wire::{RejectedChange, SyncRequest};

use crate::auth::http::Principal;
use crate::live::Notice;
use crate::{ApiError, Services, checks, scope, sync};

/// What became of a request's changes.
#[derive(Debug)]
pub struct Taken {
    /// The request without its changes (the pull half still needs the rest).
    pub request: SyncRequest,
    /// Hashes now durable: a change's own, a pushed document's heads.
    pub acked: Vec<ChangeHash>,
    /// Changes refused (quarantined, with the reason) or not automerge at all.
    pub rejected: Vec<RejectedChange>,
}

/// Checks, appends and announces the changes of `request` from `principal`.
pub async fn take(
    services: &Services,
    principal: &Principal,
    request: SyncRequest,
) -> Result<Taken, ApiError> {
    let tenant = principal.tenant_key();
    let table = services
        .auth
        .directory
        .permissions(principal.tenant)
        .await?;
    let checks::Screened {
        mut request,
        rejected: refused,
        facts,
        rescope,
    } = checks::screen(&services.storage, &tenant, principal, &table, request).await?;

    let journeys: BTreeSet<_> = request.changes.iter().map(|c| c.journey).collect();
    let changes = std::mem::take(&mut request.changes);
    let pushed = sync::push(
        &services.storage,
        &tenant,
        request.device_id,
        changes,
        &facts,
    )
    .await?;
    // Before anyone hears "durable": who sees the journeys now. A crash in between
    // leaves the push unacknowledged, and its re-send re-indexes.
    let rescope: Vec<_> = rescope.into_iter().collect();
    let rescoped = scope::reindex(&services.storage, &services.scopes, &tenant, &rescope).await?;

    let mut rejected = pushed.rejected;
    rejected.extend(refused);
    services
        .metrics
        .changes_accepted
        .inc_by(pushed.accepted as u64);
    services
        .metrics
        .changes_rejected
        .inc_by(rejected.len() as u64);
    // A re-sent change adds nothing: live sockets and the compactor hear only of
    // real news (and of a journey whose reach changed). The changes are durable and
    // acknowledged whatever happens here.
    if pushed.appended.new_changes > 0 || !rescoped.is_empty() {
        let journeys: Vec<_> = journeys.into_iter().collect();
        services.compactor.touched(&tenant, &journeys);
        let mut reach = services.scopes.reach(&tenant, &journeys).await?;
        // The crews before a re-index hear of it too: an unassigned device drops it.
        for heard in rescoped {
            match reach.iter_mut().find(|r| r.journey == heard.journey) {
                Some(filed) => {
                    filed.crew.extend(heard.crew);
                    filed.crew.sort();
                    filed.crew.dedup();
                }
                None => reach.push(heard),
            }
        }
        if reach.len() < journeys.len() {
            // A journey not indexed yet: who may hear of it is unknown, so every
            // socket of the tenant hears of the new head (without journey ids).
            reach.clear();
        }
        services.notifier.committed(Notice {
            tenant,
            head: pushed.appended.head,
            journeys: reach,
        });
    }
    Ok(Taken {
        request,
        acked: pushed.acked,
        rejected,
    })
}
