//! The admin API's request and response bodies (JSON). Requests refuse unknown
//! fields, so a misspelt field is a 422 rather than a silent no-op. Responses are
//! the directory's records (a user's password hash is never serialized).

use crewsync_core::ids::LocationId;
use crewsync_core::model::Role;
use crewsync_core::policy::RolePermission;
use serde::{Deserialize, Deserializer, Serialize};

use crate::directory::{StorageType, UserRecord};

/// Every error answer: `{"error": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
        }
    }
}

/// A present field, even `null`, is `Some(…)`; an absent one `None`: PATCH tells
/// "clear this" from "leave it".
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `POST /v1/admin/users`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    /// At least [`super::ops::MIN_PASSWORD_CHARS`] characters; stored as argon2id.
    pub password: String,
    pub role: Role,
    pub location_id: LocationId,
}

/// `PATCH /v1/admin/users/{id}`: the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub location_id: Option<LocationId>,
}

/// `POST /v1/admin/users/{id}/deactivate`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deactivated {
    pub user: UserRecord,
    /// How many of the user's sessions (signed-in devices) were ended.
    pub sessions_revoked: u64,
}

/// `POST /v1/admin/locations`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLocation {
    pub name: String,
    /// IANA name, e.g. `America/Toronto`.
    pub timezone: String,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub is_corporate: bool,
    #[serde(default = "no_storage")]
    pub storage_type: StorageType,
    #[serde(default)]
    pub customer_care: bool,
    #[serde(default)]
    pub trucks: u32,
    #[serde(default)]
    pub contact: Option<String>,
}

fn no_storage() -> StorageType {
    StorageType::None
}

/// `PATCH /v1/admin/locations/{id}`: the fields given change (`null` clears the
/// address or contact).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationChange {
    pub name: Option<String>,
    pub timezone: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub address: Option<Option<String>>,
    pub is_corporate: Option<bool>,
    pub storage_type: Option<StorageType>,
    pub customer_care: Option<bool>,
    pub trucks: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub contact: Option<Option<String>>,
}

/// `GET` and `PUT /v1/admin/permissions`: the whole table, one row per role and
/// step (a `PUT` must give all 24).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionRows {
    pub rows: Vec<RolePermission>,
}

/// `POST /v1/admin/move-sources`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMoveSource {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "active")]
    pub is_active: bool,
}

fn active() -> bool {
    true
}

/// `PATCH /v1/admin/settings`: the tenant's own record (its id and slug are fixed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantChange {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub industry: Option<Option<String>>,
    pub is_franchise: Option<bool>,
    /// Replaces the settings object whole (a JSON object).
    pub settings: Option<serde_json::Value>,
}
