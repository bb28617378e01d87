//! The sign-in API's messages (JSON), shared by the server and devices so the two
//! can never disagree on a field.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{ClientId, DeviceId, LocationId, UserId};
use crate::model::Role;
use crate::policy::RolePermission;

/// `POST /v1/auth/sign-in`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInRequest {
    pub email: String,
    pub password: String,
    /// The device's id (from its store): a session is one user on one device.
    pub device_id: DeviceId,
}

/// `POST /v1/auth/refresh`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// The answer to a sign-in or a refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// Single use: every refresh returns the next one.
    pub refresh_token: String,
    pub session_id: Uuid,
    pub user: UserView,
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub id: UserId,
    pub tenant: ClientId,
    pub location_id: LocationId,
    pub name: String,
    pub email: String,
    pub role: Role,
}

/// `GET /v1/me`: who the token belongs to and the tenant's permission table (the
/// device enforces the same table before writing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub user: UserView,
    pub session_id: Uuid,
    pub permissions: Vec<RolePermission>,
}

/// The tokens a device syncs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub access_token: String,
    pub refresh_token: String,
}

impl From<&TokenResponse> for Credentials {
    fn from(tokens: &TokenResponse) -> Self {
        Self {
            access_token: tokens.access_token.clone(),
            refresh_token: tokens.refresh_token.clone(),
        }
    }
}
