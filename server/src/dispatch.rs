//! The dispatcher API: JSON over HTTP for the office (described at `/openapi.json`).
//!
//! Create a day's journeys, put crews on and take them off, change the truck, read
//! a journey and each truck's sync health. Every edit is an automerge change made
//! here in the dispatcher's name (their user, role and session device in the change
//! message; a fresh actor per edit, so two edits at once are two concurrent
//! changes, never a clash of sequence numbers), and it enters the log the one way
//! every change does (`intake`): checked against the dispatcher's role, appended,
//! re-indexed for sync scopes, announced live to the devices it concerns.
//!
//! Journeys outside the caller's sync scope answer 404, exactly like unknown ids
//! and another tenant's.

use std::collections::BTreeMap;

use automerge::{ActorId, Change};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{NaiveDate, Utc};
use crewsync_core::document::JourneyDocument;
use crewsync_core::ids::{DeviceId, JourneyId, LocationId, MoveSourceId, UserId};
use crewsync_core::model::{Journey, NewJourney, Role, StepNumber, Timestamp};
use crewsync_core::policy::{self, JourneyContext, Touch};
use crewsync_core::sync::wire::{PROTOCOL_VERSION, SyncRequest, WireChange};
use crewsync_core::{ChangeOrigin, JourneyAction};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::http::Principal;
use crate::directory::DirectoryError;
use crate::scope::Scope;
use crate::{ApiError, Services, checks, intake};

/// The routes of this module, with their OpenAPI descriptions.
pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(create_journey, list_journeys))
        .routes(routes!(read_journey))
        .routes(routes!(read_document))
        .routes(routes!(read_quarantine))
        .routes(routes!(assign_crew))
        .routes(routes!(unassign_crew))
        .routes(routes!(set_truck))
        .routes(routes!(sync_health))
}

/// A journey to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateJourney {
    /// The journey's day at its location (YYYY-MM-DD).
    pub date: NaiveDate,
    #[schema(value_type = String, format = Uuid)]
    pub location_id: LocationId,
    pub truck_number: Option<String>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub move_source_id: Option<MoveSourceId>,
    /// Steps (1–4) whose completion needs a manager's approval.
    #[serde(default)]
    pub steps_requiring_approval: Vec<u8>,
}

/// Whom to put on a journey's crew (their role is the directory's).
#[derive(Debug, Deserialize, ToSchema)]
pub struct AssignCrew {
    #[schema(value_type = String, format = Uuid)]
    pub user_id: UserId,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SetTruck {
    /// `null` takes the truck off.
    pub truck_number: Option<String>,
}

/// Which day to list (default: today, UTC).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DayQuery {
    pub date: Option<NaiveDate>,
}

/// A journey in a day's list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JourneySummary {
    #[schema(value_type = String, format = Uuid)]
    pub id: JourneyId,
    #[schema(value_type = String, format = Uuid)]
    pub location_id: LocationId,
    pub date: NaiveDate,
    pub truck_number: Option<String>,
    /// The furthest stage reached (e.g. `IN_TRANSIT`).
    pub stage: String,
    #[schema(value_type = Vec<String>)]
    pub crew: Vec<UserId>,
}

/// One device's last word on its sync.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviceHealth {
    #[schema(value_type = String, format = Uuid)]
    pub user_id: UserId,
    #[schema(value_type = String, format = Uuid)]
    pub device_id: DeviceId,
    /// Milliseconds since the Unix epoch.
    pub last_contact: i64,
    /// Changes the device had not sent yet, as it said at its last sync.
    pub pending_changes: u64,
    /// Photo, video and signature bytes not uploaded yet, as it said.
    pub pending_media_bytes: u64,
}

/// A truck's day: its journey and the sync health of its crew's devices.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TruckHealth {
    #[schema(value_type = String, format = Uuid)]
    pub journey_id: JourneyId,
    pub truck_number: Option<String>,
    pub stage: String,
    pub devices: Vec<DeviceHealth>,
}

/// `POST /v1/journeys`: a new journey for a date, location and truck.
#[utoipa::path(post, path = "/v1/journeys", tag = "dispatch",
    request_body = CreateJourney,
    responses(
        (status = 201, description = "Created: the journey as stored", body = Object),
        (status = 403, description = "The caller's role may not create journeys here"),
        (status = 404, description = "Unknown location (or another tenant's)"),
        (status = 422, description = "Invalid journey"),
    ),
    security(("bearer" = [])))]
async fn create_journey(
    State(services): State<Services>,
    principal: Principal,
    Json(body): Json<CreateJourney>,
) -> Result<(StatusCode, Json<Journey>), ApiError> {
    let location = services
        .auth
        .directory
        .location(principal.tenant, body.location_id)
        .await
        .map_err(not_found("location"))?;
    if let Scope::Location(own) = scope_of(&services, &principal)
        && own != location.id
    {
        return Err(ApiError::Forbidden(
            "a dispatcher or manager creates journeys at their own location".into(),
        ));
    }
    // The rules first, as a device does: a refused request is answered, not
    // quarantined (it is no one's offline work).
    let mut touches = vec![Touch::Create];
    if body.truck_number.is_some() {
        touches.push(Touch::TruckNumber);
    }
    if body.move_source_id.is_some() {
        touches.push(Touch::MoveSource);
    }
    let context = JourneyContext {
        creating: true,
        stage: None,
        on_crew: false,
    };
    let table = services
        .auth
        .directory
        .permissions(principal.tenant)
        .await?;
    policy::check_all(principal.role, &table, &context, &touches)
        .map_err(|denial| ApiError::Forbidden(denial.to_string()))?;
    let steps = body
        .steps_requiring_approval
        .iter()
        .map(|&n| StepNumber::new(n).map_err(|_| ApiError::Invalid(format!("step {n} is not 1–4"))))
        .collect::<Result<Vec<_>, _>>()?;
    let new = NewJourney {
        id: None,
        client_id: principal.tenant,
        location_id: location.id,
        date: body.date,
        truck_number: body.truck_number,
        move_source_id: body.move_source_id,
        steps_requiring_approval: steps,
    };
    let (doc, change) = JourneyDocument::create(
        &new,
        &location.timezone,
        &origin(&principal),
        Timestamp::now(),
        ActorId::random(),
    )
    .map_err(|e| ApiError::Invalid(e.to_string()))?;
    let journey = doc.id();
    commit(&services, &principal, journey, change).await?;
    let view = doc.view().map_err(|e| ApiError::Invalid(e.to_string()))?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/journeys?date=`: the day's journeys the caller may see.
#[utoipa::path(get, path = "/v1/journeys", tag = "dispatch",
    params(DayQuery),
    responses((status = 200, body = [JourneySummary])),
    security(("bearer" = [])))]
async fn list_journeys(
    State(services): State<Services>,
    principal: Principal,
    Query(query): Query<DayQuery>,
) -> Result<Json<Vec<JourneySummary>>, ApiError> {
    let day = query.date.unwrap_or_else(|| Utc::now().date_naive());
    let mut out = Vec::new();
    for journey in day_journeys(&services, &principal, day).await? {
        let view = load(&services, &principal, journey).await?.view;
        out.push(summary(&view));
    }
    Ok(Json(out))
}

/// `GET /v1/journeys/{journey}`: a journey's status (stage, steps, crew, entries).
#[utoipa::path(get, path = "/v1/journeys/{journey}", tag = "dispatch",
    params(("journey" = String, Path, description = "journey id")),
    responses(
        (status = 200, description = "The journey", body = Object),
        (status = 404, description = "Unknown, another tenant's, or outside the caller's scope"),
    ),
    security(("bearer" = [])))]
async fn read_journey(
    State(services): State<Services>,
    principal: Principal,
    Path(journey): Path<JourneyId>,
) -> Result<Json<Journey>, ApiError> {
    Ok(Json(load(&services, &principal, journey).await?.view))
}

/// `GET /v1/journeys/{journey}/document`: the server's copy of the journey as
/// an automerge document (its saved bytes), for tools that inspect history and
/// conflicts (`crewsync conflicts --server`).
#[utoipa::path(get, path = "/v1/journeys/{journey}/document", tag = "dispatch",
    params(("journey" = String, Path, description = "journey id")),
    responses(
        (status = 200, description = "The automerge document", content_type = "application/octet-stream"),
        (status = 404, description = "Unknown, another tenant's, or outside the caller's scope"),
    ),
    security(("bearer" = [])))]
async fn read_document(
    State(services): State<Services>,
    principal: Principal,
    Path(journey): Path<JourneyId>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let doc = load(&services, &principal, journey).await?.doc;
    let bytes = tokio::task::spawn_blocking(move || doc.save())
        .await
        .map_err(|e| checks::CheckError::Corrupt {
            journey,
            reason: format!("save task failed: {e}"),
        })?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    ))
}

/// A change the server refused or held, as `GET /v1/journeys/{journey}/quarantine`
/// lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantineItem {
    /// The change's hash, hex.
    pub change: String,
    /// `rejected` or `after_audit`.
    pub kind: String,
    pub reason: String,
    #[schema(value_type = String, format = Uuid)]
    pub user_id: UserId,
    #[schema(value_type = String, format = Uuid)]
    pub device_id: crewsync_core::ids::DeviceId,
    /// Milliseconds since the epoch, server clock.
    pub received_at: i64,
}

/// `GET /v1/journeys/{journey}/quarantine`: the journey's refused and held
/// changes with their reasons (`crewsync quarantine --server`).
#[utoipa::path(get, path = "/v1/journeys/{journey}/quarantine", tag = "dispatch",
    params(("journey" = String, Path, description = "journey id")),
    responses(
        (status = 200, description = "The journey's quarantined changes", body = [QuarantineItem]),
        (status = 404, description = "Unknown, another tenant's, or outside the caller's scope"),
    ),
    security(("bearer" = [])))]
async fn read_quarantine(
    State(services): State<Services>,
    principal: Principal,
    Path(journey): Path<JourneyId>,
) -> Result<Json<Vec<QuarantineItem>>, ApiError> {
    load(&services, &principal, journey).await?;
    let held = services
        .storage
        .quarantined(&principal.tenant_key(), Some(journey))
        .await?;
    Ok(Json(
        held.into_iter()
            .map(|q| QuarantineItem {
                change: q.hash.iter().map(|b| format!("{b:02x}")).collect(),
                kind: q.kind.as_ref().to_owned(),
                reason: q.reason,
                user_id: q.user,
                device_id: q.device,
                received_at: q.received_at,
            })
            .collect(),
    ))
}

/// `POST /v1/journeys/{journey}/crew`: puts a user of the tenant on the crew.
#[utoipa::path(post, path = "/v1/journeys/{journey}/crew", tag = "dispatch",
    params(("journey" = String, Path, description = "journey id")),
    request_body = AssignCrew,
    responses(
        (status = 200, description = "The journey after the change", body = Object),
        (status = 403, description = "The caller's role may not change crews"),
        (status = 404, description = "Unknown journey or user"),
    ),
    security(("bearer" = [])))]
async fn assign_crew(
    State(services): State<Services>,
    principal: Principal,
    Path(journey): Path<JourneyId>,
    Json(body): Json<AssignCrew>,
) -> Result<Json<Journey>, ApiError> {
    let user = services
        .auth
        .directory
        .user(principal.tenant, body.user_id)
        .await
        .map_err(not_found("user"))?;
    let action = JourneyAction::AssignCrew {
        user: user.id,
        role: user.role,
    };
    edit(&services, &principal, journey, &action).await
}

/// `DELETE /v1/journeys/{journey}/crew/{user}`: takes a user off the crew.
#[utoipa::path(delete, path = "/v1/journeys/{journey}/crew/{user}", tag = "dispatch",
    params(
        ("journey" = String, Path, description = "journey id"),
        ("user" = String, Path, description = "user id"),
    ),
    responses(
        (status = 200, description = "The journey after the change", body = Object),
        (status = 403, description = "The caller's role may not change crews"),
        (status = 404, description = "Unknown journey, or the user is not on its crew"),
    ),
    security(("bearer" = [])))]
async fn unassign_crew(
    State(services): State<Services>,
    principal: Principal,
    Path((journey, user)): Path<(JourneyId, UserId)>,
) -> Result<Json<Journey>, ApiError> {
    let loaded = load(&services, &principal, journey).await?;
    if !loaded.view.crew.iter().any(|member| member.user_id == user) {
        return Err(ApiError::NotFound(format!(
            "user {user} on journey {journey}"
        )));
    }
    edit(
        &services,
        &principal,
        journey,
        &JourneyAction::UnassignCrew { user },
    )
    .await
}

/// `PUT /v1/journeys/{journey}/truck`: changes (or clears) the truck.
#[utoipa::path(put, path = "/v1/journeys/{journey}/truck", tag = "dispatch",
    params(("journey" = String, Path, description = "journey id")),
    request_body = SetTruck,
    responses(
        (status = 200, description = "The journey after the change", body = Object),
        (status = 403, description = "The caller's role may not change the truck"),
        (status = 404, description = "Unknown journey"),
    ),
    security(("bearer" = [])))]
async fn set_truck(
    State(services): State<Services>,
    principal: Principal,
    Path(journey): Path<JourneyId>,
    Json(body): Json<SetTruck>,
) -> Result<Json<Journey>, ApiError> {
    let action = JourneyAction::SetTruckNumber {
        truck_number: body.truck_number,
    };
    edit(&services, &principal, journey, &action).await
}

/// `GET /v1/sync-health?date=`: each truck of the day, with its crew's devices'
/// last contact and what they had not sent yet.
#[utoipa::path(get, path = "/v1/sync-health", tag = "dispatch",
    params(DayQuery),
    responses(
        (status = 200, body = [TruckHealth]),
        (status = 403, description = "Crews do not read the office's view"),
    ),
    security(("bearer" = [])))]
async fn sync_health(
    State(services): State<Services>,
    principal: Principal,
    Query(query): Query<DayQuery>,
) -> Result<Json<Vec<TruckHealth>>, ApiError> {
    office_only(&principal)?;
    let day = query.date.unwrap_or_else(|| Utc::now().date_naive());
    let sessions = services
        .auth
        .sessions
        .open_sessions(principal.tenant)
        .await?;
    let mut by_user: BTreeMap<UserId, Vec<DeviceHealth>> = BTreeMap::new();
    for session in sessions {
        let user = UserId::from_uuid(session.user_id);
        by_user.entry(user).or_default().push(DeviceHealth {
            user_id: user,
            device_id: DeviceId::from_uuid(session.device_id),
            last_contact: session.last_active,
            pending_changes: u64::try_from(session.pending_changes).unwrap_or(0),
            pending_media_bytes: u64::try_from(session.pending_media_bytes).unwrap_or(0),
        });
    }
    let mut trucks = Vec::new();
    for journey in day_journeys(&services, &principal, day).await? {
        let view = load(&services, &principal, journey).await?.view;
        let devices = view
            .crew
            .iter()
            .flat_map(|member| by_user.remove(&member.user_id).unwrap_or_default())
            .collect();
        trucks.push(TruckHealth {
            journey_id: view.id,
            truck_number: view.truck_number.clone(),
            stage: view.stage.to_string(),
            devices,
        });
    }
    Ok(Json(trucks))
}

/// A journey as the caller may see it, with its accepted document.
struct Loaded {
    doc: JourneyDocument,
    view: Journey,
}

fn scope_of(services: &Services, principal: &Principal) -> Scope {
    Scope::of(principal, Utc::now().date_naive(), services.window)
}

/// The office roles read the office's views; crews use their devices.
fn office_only(principal: &Principal) -> Result<(), ApiError> {
    match principal.role {
        Role::Admin | Role::Auditor | Role::Dispatcher | Role::Manager => Ok(()),
        Role::Driver | Role::Mover => Err(ApiError::Forbidden(
            "crews read journeys on their devices, not through the office API".into(),
        )),
    }
}

/// The caller's journeys of `day`.
async fn day_journeys(
    services: &Services,
    principal: &Principal,
    day: NaiveDate,
) -> Result<Vec<JourneyId>, ApiError> {
    let tenant = principal.tenant_key();
    let visible = services
        .scopes
        .visible(&tenant, &scope_of(services, principal))
        .await?;
    let visible: Vec<_> = visible.into_iter().collect();
    let reach = services.scopes.reach(&tenant, &visible).await?;
    Ok(reach
        .into_iter()
        .filter(|r| r.day == day)
        .map(|r| r.journey)
        .collect())
}

/// Loads a journey the caller may see; 404 otherwise.
async fn load(
    services: &Services,
    principal: &Principal,
    journey: JourneyId,
) -> Result<Loaded, ApiError> {
    let tenant = principal.tenant_key();
    let missing = || ApiError::NotFound(format!("journey {journey}"));
    let reach = services.scopes.reach(&tenant, &[journey]).await?;
    let reach = reach.first().ok_or_else(missing)?;
    if !scope_of(services, principal).covers(reach) {
        return Err(missing());
    }
    let record = services.storage.journey(&tenant, journey).await?;
    let doc = tokio::task::spawn_blocking(move || checks::load(journey, &record))
        .await
        .map_err(|e| checks::CheckError::Corrupt {
            journey,
            reason: format!("load task failed: {e}"),
        })??;
    let view = doc.view().map_err(|e| checks::CheckError::Corrupt {
        journey,
        reason: e.to_string(),
    })?;
    Ok(Loaded { doc, view })
}

/// Makes `action` on the caller's journey as the caller, and commits it.
async fn edit(
    services: &Services,
    principal: &Principal,
    journey: JourneyId,
    action: &JourneyAction,
) -> Result<Json<Journey>, ApiError> {
    let Loaded { mut doc, view } = load(services, principal, journey).await?;
    // The rules first, as a device does: an edit that would change nothing is
    // still not the caller's to make.
    let table = services
        .auth
        .directory
        .permissions(principal.tenant)
        .await?;
    let context = JourneyContext {
        creating: false,
        stage: Some(view.stage),
        on_crew: view.crew.iter().any(|m| m.user_id == principal.user),
    };
    policy::check_all(principal.role, &table, &context, &action.touches())
        .map_err(|denial| ApiError::Forbidden(denial.to_string()))?;
    let change = doc
        .apply(action, &origin(principal), Timestamp::now())
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    if let Some(change) = change {
        commit(services, principal, journey, change).await?;
    }
    let view = doc.view().map_err(|e| ApiError::Invalid(e.to_string()))?;
    Ok(Json(view))
}

/// Sends one change through the intake; a refusal is the caller's 403 (and, like
/// every refusal, sits in quarantine with its reason).
async fn commit(
    services: &Services,
    principal: &Principal,
    journey: JourneyId,
    mut change: Change,
) -> Result<(), ApiError> {
    let request = SyncRequest {
        version: PROTOCOL_VERSION,
        device_id: principal.device,
        actor: change.actor_id().to_bytes().to_vec(),
        cursor: 0,
        changes: vec![WireChange {
            journey,
            bytes: change.bytes().into_owned(),
        }],
        max_changes: 1,
        held: None,
        report: None,
    };
    let taken = intake::take(services, principal, request).await?;
    if let Some(refused) = taken.rejected.first() {
        return Err(ApiError::Forbidden(refused.reason.clone()));
    }
    if taken.acked.is_empty() {
        // Deferred: it builds on a change the server does not have (impossible
        // for a change made on the server's own copy, short of a race with
        // compaction); the caller can simply try again.
        return Err(ApiError::Conflict(
            "the journey changed while editing; try again".into(),
        ));
    }
    Ok(())
}

fn origin(principal: &Principal) -> ChangeOrigin {
    ChangeOrigin {
        user_id: principal.user,
        role: principal.role,
        device_id: principal.device,
    }
}

fn summary(view: &Journey) -> JourneySummary {
    JourneySummary {
        id: view.id,
        location_id: view.location_id,
        date: view.date,
        truck_number: view.truck_number.clone(),
        stage: view.stage.to_string(),
        crew: view.crew.iter().map(|member| member.user_id).collect(),
    }
}

fn not_found(what: &'static str) -> impl FnOnce(DirectoryError) -> ApiError {
    move |e| match e {
        DirectoryError::NotFound(_) => ApiError::NotFound(what.into()),
        other => ApiError::Directory(other),
    }
}
