//! The admin API's request and response bodies (JSON). Requests refuse unknown
//! fields, so a misspelt field is a 422 rather than a silent no-op. Responses are
//! the directory's records (a user's password hash is never serialized).
//!
//! The request bodies derive [`ToSchema`] for the OpenAPI document; fields whose
//! types live in core or the directory (ids, roles, storage types) are described
//! as the strings they serialize to, and a permission row by [`PermissionRow`].

use crewsync_core::ids::LocationId;
use crewsync_core::model::Role;
use crewsync_core::policy::RolePermission;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::directory::{StorageType, UserRecord};

/// Every error answer: `{"error": "…"}` (except a missing or refused token, which
/// is answered as plain text with `WWW-Authenticate`, as on every route).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    /// At least 8 characters ([`super::ops::MIN_PASSWORD_CHARS`]); stored as argon2id.
    pub password: String,
    /// `ADMIN`, `DISPATCHER`, `DRIVER`, `MOVER`, `MANAGER` or `AUDITOR`.
    #[schema(value_type = String, example = "MOVER")]
    pub role: Role,
    /// One of the tenant's locations.
    #[schema(value_type = String, format = Uuid)]
    pub location_id: LocationId,
}

/// `PATCH /v1/admin/users/{id}`: the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub name: Option<String>,
    /// `ADMIN`, `DISPATCHER`, `DRIVER`, `MOVER`, `MANAGER` or `AUDITOR`.
    #[schema(value_type = Option<String>, example = "MANAGER")]
    pub role: Option<Role>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub location_id: Option<LocationId>,
}

/// `POST /v1/admin/users/{id}/deactivate`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Deactivated {
    /// The user, now `INACTIVE`.
    #[schema(value_type = Object)]
    pub user: UserRecord,
    /// How many of the user's sessions (signed-in devices) were ended.
    pub sessions_revoked: u64,
}

/// `POST /v1/admin/locations`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLocation {
    pub name: String,
    /// IANA name, e.g. `America/Toronto`.
    pub timezone: String,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub is_corporate: bool,
    /// `NONE` (the default), `LOCKER` or `POD`.
    #[serde(default = "no_storage")]
    #[schema(value_type = String, example = "NONE")]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationChange {
    pub name: Option<String>,
    /// IANA name, e.g. `America/Toronto`.
    pub timezone: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub address: Option<Option<String>>,
    pub is_corporate: Option<bool>,
    /// `NONE`, `LOCKER` or `POD`.
    #[schema(value_type = Option<String>, example = "LOCKER")]
    pub storage_type: Option<StorageType>,
    pub customer_care: Option<bool>,
    pub trucks: Option<u32>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub contact: Option<Option<String>>,
}

/// `GET` and `PUT /v1/admin/permissions`: the whole table, one row per role and
/// step (a `PUT` must give all 24).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionRows {
    #[schema(value_type = Vec<PermissionRow>)]
    pub rows: Vec<RolePermission>,
}

/// One row of the permission table: what a role may do on a step. (The OpenAPI
/// shape of core's `RolePermission`, which this crate cannot derive a schema on;
/// a test keeps the two in step.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionRow {
    /// `ADMIN`, `DISPATCHER`, `DRIVER`, `MOVER`, `MANAGER` or `AUDITOR`.
    #[schema(example = "DRIVER")]
    pub role: String,
    /// The step, 1–4.
    #[schema(minimum = 1, maximum = 4)]
    pub step: u8,
    pub can_view: bool,
    pub can_edit: bool,
    pub can_approve: bool,
}

/// `POST /v1/admin/move-sources`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMoveSource {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Default `true`.
    #[serde(default = "active")]
    pub is_active: bool,
}

fn active() -> bool {
    true
}

/// `PATCH /v1/admin/settings`: the tenant's own record (its id and slug are fixed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantChange {
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub industry: Option<Option<String>>,
    pub is_franchise: Option<bool>,
    /// Replaces the settings object whole (a JSON object).
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeSet;

    use crewsync_core::policy::PermissionTable;
    use utoipa::PartialSchema;

    use super::*;

    /// The documented permission row is core's `RolePermission`, field for field.
    #[test]
    fn the_documented_permission_row_is_cores() {
        for row in PermissionTable::defaults().rows() {
            let json = serde_json::to_value(row).unwrap();
            let mirror: PermissionRow = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(serde_json::to_value(&mirror).unwrap(), json);
        }
        let json = serde_json::to_value(PermissionTable::defaults().rows()[0]).unwrap();
        let schema = serde_json::to_value(PermissionRow::schema()).unwrap();
        let documented: BTreeSet<&String> =
            schema["properties"].as_object().unwrap().keys().collect();
        let serialized: BTreeSet<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(documented, serialized);
    }
}
