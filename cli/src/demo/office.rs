//! The office side of the demo over the server's JSON API: the admin adds crew
//! members, the dispatcher plans journeys, assigns crews and changes trucks on the
//! dispatch board, and reads back what the devices delivered.

use chrono::NaiveDate;
use crewsync_core::ids::{DeviceId, JourneyId, LocationId, UserId};
use crewsync_core::model::Role;
use crewsync_core::sync::auth::TokenResponse;
use crewsync_core::sync::runtime::HttpTransport;
use serde::Deserialize;
use serde_json::json;

use super::DemoError;

/// Every demo user's password (the seed's).
pub const PASSWORD: &str = crewsync_server::seed::DEMO_PASSWORD;

/// One signed-in office user talking to the server's JSON API.
pub struct Office {
    http: reqwest::Client,
    base: String,
    pub tokens: TokenResponse,
}

/// A file the server holds for a journey, as the dispatcher sees it.
#[derive(Debug, Clone, Deserialize)]
pub struct Delivered {
    pub media_id: String,
    pub kind: String,
    pub size: u64,
    pub sha256: String,
    /// When the server confirmed the whole file (ms since the epoch).
    pub stored_at: i64,
    /// The device that uploaded it.
    pub device_id: String,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

fn http(e: impl std::fmt::Display) -> DemoError {
    DemoError::Http(e.to_string())
}

impl Office {
    pub async fn sign_in(base: &str, email: &str) -> Result<Self, DemoError> {
        let tokens = HttpTransport::new(base)?
            .sign_in(email, PASSWORD, DeviceId::new())
            .await?;
        Ok(Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            tokens,
        })
    }

    pub fn token(&self) -> &str {
        &self.tokens.access_token
    }

    pub fn location(&self) -> LocationId {
        self.tokens.user.location_id
    }

    /// Sends `body` (if any) and returns the answer's bytes; a refusal is an error
    /// naming the route and the server's words.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Vec<u8>, DemoError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(self.token());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(http)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(http)?.to_vec();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(DemoError::Http(format!(
                "{method} {path}: {status}: {text}"
            )));
        }
        Ok(bytes)
    }

    /// [`send`](Self::send), reading the answer as JSON (`null` when empty).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, DemoError> {
        let bytes = self.send(method, path, body).await?;
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(http)
    }

    /// ADMIN: a new crew member at the office's location.
    pub async fn add_user(
        &self,
        name: &str,
        email: &str,
        role: Role,
        location: LocationId,
    ) -> Result<UserId, DemoError> {
        let created = self
            .call(
                reqwest::Method::POST,
                "/v1/admin/users",
                Some(json!({
                    "name": name, "email": email, "password": PASSWORD,
                    "role": role.to_string(), "location_id": location,
                })),
            )
            .await?;
        let created: Created = serde_json::from_value(created).map_err(http)?;
        created.id.parse().map_err(http)
    }

    /// DISPATCHER: a journey for `date` at the office's location; step 4 needs approval.
    pub async fn plan_journey(&self, date: NaiveDate, truck: &str) -> Result<JourneyId, DemoError> {
        let created = self
            .call(
                reqwest::Method::POST,
                "/v1/journeys",
                Some(json!({
                    "date": date, "location_id": self.location(), "truck_number": truck,
                    "steps_requiring_approval": [4],
                })),
            )
            .await?;
        let created: Created = serde_json::from_value(created).map_err(http)?;
        created.id.parse().map_err(http)
    }

    pub async fn assign(&self, journey: JourneyId, user: UserId) -> Result<(), DemoError> {
        let path = format!("/v1/journeys/{journey}/crew");
        self.call(
            reqwest::Method::POST,
            &path,
            Some(json!({ "user_id": user })),
        )
        .await
        .map(drop)
    }

    pub async fn unassign(&self, journey: JourneyId, user: UserId) -> Result<(), DemoError> {
        let path = format!("/v1/journeys/{journey}/crew/{user}");
        self.call(reqwest::Method::DELETE, &path, None)
            .await
            .map(drop)
    }

    pub async fn set_truck(&self, journey: JourneyId, truck: &str) -> Result<(), DemoError> {
        let path = format!("/v1/journeys/{journey}/truck");
        self.call(
            reqwest::Method::PUT,
            &path,
            Some(json!({ "truck_number": truck })),
        )
        .await
        .map(drop)
    }

    /// The journey's delivered media, in the order the server stored them.
    pub async fn delivered(&self, journey: JourneyId) -> Result<Vec<Delivered>, DemoError> {
        let path = format!("/v1/journeys/{journey}/media");
        let listed = self.call(reqwest::Method::GET, &path, None).await?;
        serde_json::from_value(listed).map_err(http)
    }

    /// The bytes of one delivered original.
    pub async fn media_bytes(&self, media: &str) -> Result<Vec<u8>, DemoError> {
        self.send(reqwest::Method::GET, &format!("/v1/media/{media}"), None)
            .await
    }
}
