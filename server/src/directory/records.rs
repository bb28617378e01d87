//! The directory's records (owned, serializable for the admin API) and the row
//! shapes both databases return.

use std::str::FromStr;

use crewsync_core::ids::{ClientId, LocationId, MoveSourceId, UserId};
use crewsync_core::model::Role;
use serde::{Deserialize, Serialize};
use sqlx::types::Uuid;

use super::DirectoryError;

/// A tenant: one moving company (the seed's Client).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub id: ClientId,
    /// A short unique name for URLs and commands (`lgm`).
    pub slug: String,
    pub name: String,
    pub industry: Option<String>,
    pub is_franchise: bool,
    pub settings: serde_json::Value,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::AsRefStr, strum::EnumString,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StorageType {
    None,
    Locker,
    Pod,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationRecord {
    pub id: LocationId,
    pub tenant: ClientId,
    pub name: String,
    /// IANA timezone: a journey's date is the day in this zone.
    pub timezone: String,
    pub address: Option<String>,
    pub is_corporate: bool,
    pub storage_type: StorageType,
    pub customer_care: bool,
    pub trucks: u32,
    pub contact: Option<String>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::AsRefStr, strum::EnumString,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserStatus {
    Active,
    Inactive,
    Suspended,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: UserId,
    pub tenant: ClientId,
    pub location_id: LocationId,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub status: UserStatus,
    /// The argon2 PHC string; never serialized out.
    #[serde(skip)]
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveSourceRecord {
    pub id: MoveSourceId,
    pub tenant: ClientId,
    pub name: String,
    pub description: Option<String>,
    pub is_active: bool,
}

pub(super) fn parse_tenant(text: &str) -> Result<ClientId, DirectoryError> {
    ClientId::parse(text).map_err(|_| DirectoryError::Corrupt(format!("tenant key {text:?}")))
}

fn parse<T: FromStr>(what: &str, text: &str) -> Result<T, DirectoryError> {
    T::from_str(text).map_err(|_| DirectoryError::Corrupt(format!("{what} {text:?}")))
}

pub(super) type TenantRow = (Uuid, String, String, Option<String>, bool, String);

impl TryFrom<TenantRow> for TenantRecord {
    type Error = DirectoryError;
    fn try_from(
        (id, slug, name, industry, is_franchise, settings): TenantRow,
    ) -> Result<Self, DirectoryError> {
        Ok(Self {
            id: ClientId::from_uuid(id),
            slug,
            name,
            industry,
            is_franchise,
            settings: serde_json::from_str(&settings)
                .map_err(|e| DirectoryError::Corrupt(format!("tenant settings: {e}")))?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct LocationRow {
    id: Uuid,
    tenant: String,
    name: String,
    timezone: String,
    address: Option<String>,
    is_corporate: bool,
    storage_type: String,
    customer_care: bool,
    trucks: i32,
    contact: Option<String>,
}

impl TryFrom<LocationRow> for LocationRecord {
    type Error = DirectoryError;
    fn try_from(row: LocationRow) -> Result<Self, DirectoryError> {
        Ok(Self {
            id: LocationId::from_uuid(row.id),
            tenant: parse_tenant(&row.tenant)?,
            name: row.name,
            timezone: row.timezone,
            address: row.address,
            is_corporate: row.is_corporate,
            storage_type: parse("storage type", &row.storage_type)?,
            customer_care: row.customer_care,
            trucks: u32::try_from(row.trucks).unwrap_or(0),
            contact: row.contact,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: Uuid,
    tenant: String,
    location_id: Uuid,
    name: String,
    email: String,
    role: String,
    status: String,
    password_hash: Option<String>,
}

impl TryFrom<UserRow> for UserRecord {
    type Error = DirectoryError;
    fn try_from(row: UserRow) -> Result<Self, DirectoryError> {
        Ok(Self {
            id: UserId::from_uuid(row.id),
            tenant: parse_tenant(&row.tenant)?,
            location_id: LocationId::from_uuid(row.location_id),
            name: row.name,
            email: row.email,
            role: parse("role", &row.role)?,
            status: parse("user status", &row.status)?,
            password_hash: row.password_hash,
        })
    }
}
