//! The admin operations, shared by the HTTP API and the server command: input
//! checks, then the directory, then [`AdminService::record`]. Every operation is
//! in `actor.tenant`; bad input fails before anything is written.

use std::collections::BTreeSet;
use std::str::FromStr;

use crewsync_core::ids::{LocationId, MoveSourceId, UserId};
use crewsync_core::model::{Role, StepNumber};
use crewsync_core::policy::{PermissionTable, RolePermission};
use serde_json::{Value, json};
use strum::IntoEnumIterator;

use super::api::{
    Deactivated, LocationChange, NewLocation, NewMoveSource, NewUser, TenantChange, UserChange,
};
use super::{Actor, AdminAction, AdminError, AdminService};
use crate::auth::password;
use crate::directory::{
    DirectoryError, LocationRecord, MoveSourceRecord, TenantRecord, UserRecord, UserStatus,
};

/// The shortest password an admin may set.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Longest name, email, address, … accepted.
pub const MAX_TEXT_CHARS: usize = 256;

/// A required text field, trimmed: not empty, not too long.
fn required(field: &str, value: &str) -> Result<String, AdminError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AdminError::Invalid(format!("{field} must not be empty")));
    }
    if value.chars().count() > MAX_TEXT_CHARS {
        return Err(AdminError::Invalid(format!(
            "{field} is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(value.to_owned())
}

/// An optional text field: trimmed, empty means none.
fn optional(field: &str, value: Option<&str>) -> Result<Option<String>, AdminError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => required(field, v).map(Some),
    }
}

fn email(value: &str) -> Result<String, AdminError> {
    let value = required("email", value)?.to_lowercase();
    let valid = value
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !value.chars().any(char::is_whitespace);
    if !valid {
        return Err(AdminError::Invalid(format!(
            "{value:?} is not an email address"
        )));
    }
    Ok(value)
}

fn timezone(value: &str) -> Result<String, AdminError> {
    let value = value.trim();
    chrono_tz::Tz::from_str(value).map_err(|_| {
        AdminError::Invalid(format!(
            "unknown timezone {value:?}: expected an IANA name such as America/Toronto"
        ))
    })?;
    Ok(value.to_owned())
}

/// `{field: {before, after}}` for each field whose value differs.
fn diff<T: serde::Serialize>(before: &T, after: &T) -> Value {
    let (before, after) = (json!(before), json!(after));
    let mut changed = serde_json::Map::new();
    if let (Value::Object(b), Value::Object(a)) = (&before, &after) {
        for (key, new) in a {
            let old = b.get(key).unwrap_or(&Value::Null);
            if old != new {
                changed.insert(key.clone(), json!({ "before": old, "after": new }));
            }
        }
    }
    Value::Object(changed)
}

/// The directory's "taken" as a clear message about `what`.
fn taken(what: String) -> impl FnOnce(DirectoryError) -> AdminError {
    move |e| match e {
        DirectoryError::Conflict(_) => AdminError::Conflict(what),
        other => other.into(),
    }
}

impl AdminService {
    // ----- users ---------------------------------------------------------------

    pub async fn users(&self, actor: &Actor) -> Result<Vec<UserRecord>, AdminError> {
        Ok(self.directory.users(actor.tenant).await?)
    }

    pub async fn user(&self, actor: &Actor, id: UserId) -> Result<UserRecord, AdminError> {
        Ok(self.directory.user(actor.tenant, id).await?)
    }

    /// The tenant's user with `email` (the server command names users by email).
    pub async fn user_by_email(
        &self,
        actor: &Actor,
        email: &str,
    ) -> Result<UserRecord, AdminError> {
        self.directory
            .user_by_email(email)
            .await?
            .filter(|user| user.tenant == actor.tenant)
            .ok_or_else(|| AdminError::NotFound(format!("user {email:?}")))
    }

    /// A location given in a body must be the tenant's: another tenant's id reads
    /// exactly as an unknown one.
    async fn own_location(&self, actor: &Actor, id: LocationId) -> Result<(), AdminError> {
        match self.directory.location(actor.tenant, id).await {
            Ok(_) => Ok(()),
            Err(DirectoryError::NotFound(_)) => {
                Err(AdminError::Invalid(format!("unknown location {id}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Adds an active user with an argon2id password.
    pub async fn create_user(&self, actor: &Actor, new: NewUser) -> Result<UserRecord, AdminError> {
        let name = required("name", &new.name)?;
        let email = email(&new.email)?;
        if new.password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AdminError::Invalid(format!(
                "the password must have at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        self.own_location(actor, new.location_id).await?;
        let secret = new.password;
        let hash = tokio::task::spawn_blocking(move || password::hash(&secret))
            .await
            .map_err(|e| AdminError::Unavailable(e.to_string()))?
            .map_err(|e| AdminError::Unavailable(e.to_string()))?;
        let user = UserRecord {
            id: UserId::new(),
            tenant: actor.tenant,
            location_id: new.location_id,
            name,
            email,
            role: new.role,
            status: UserStatus::Active,
            password_hash: Some(hash),
        };
        self.directory
            .insert_user(&user)
            .await
            .map_err(taken(format!(
                "a user with email {:?} already exists",
                user.email
            )))?;
        self.record(
            actor,
            AdminAction {
                action: "user.create",
                entity: "user",
                entity_id: user.id.to_string(),
                diff: json!({ "after": user }),
            },
        )
        .await?;
        Ok(user)
    }

    /// Changes a user's name, role or location.
    pub async fn change_user(
        &self,
        actor: &Actor,
        id: UserId,
        change: UserChange,
    ) -> Result<UserRecord, AdminError> {
        if change == UserChange::default() {
            return Err(AdminError::Invalid(
                "nothing to change: give name, role or location_id".into(),
            ));
        }
        let name = change
            .name
            .as_deref()
            .map(|n| required("name", n))
            .transpose()?;
        if change.role.is_some_and(|r| r != Role::Admin) && actor.user == Some(id) {
            return Err(AdminError::Invalid(
                "an admin cannot take their own ADMIN role away".into(),
            ));
        }
        if let Some(location) = change.location_id {
            self.own_location(actor, location).await?;
        }
        let edited = self
            .directory
            .edit_user(actor.tenant, id, |user| {
                if let Some(name) = name {
                    user.name = name;
                }
                if let Some(role) = change.role {
                    user.role = role;
                }
                if let Some(location) = change.location_id {
                    user.location_id = location;
                }
                Ok::<_, AdminError>(())
            })
            .await?;
        self.record(
            actor,
            AdminAction {
                action: "user.update",
                entity: "user",
                entity_id: id.to_string(),
                diff: diff(&edited.before, &edited.after),
            },
        )
        .await?;
        Ok(edited.after)
    }

    /// Deactivates a user and ends every session they have: their devices are
    /// refused at their next contact (the status alone already refuses them, as
    /// every request re-reads it; revoking also kills their refresh tokens).
    pub async fn deactivate_user(
        &self,
        actor: &Actor,
        id: UserId,
    ) -> Result<Deactivated, AdminError> {
        if actor.user == Some(id) {
            return Err(AdminError::Invalid(
                "an admin cannot deactivate themselves".into(),
            ));
        }
        let edited = self.set_status(actor, id, UserStatus::Inactive).await?;
        let sessions_revoked = self
            .sessions
            .revoke_user(actor.tenant, id, "user deactivated")
            .await?;
        let mut changes = diff(&edited.before, &edited.after);
        if let Value::Object(map) = &mut changes {
            map.insert("sessions_revoked".into(), json!(sessions_revoked));
        }
        self.record(
            actor,
            AdminAction {
                action: "user.deactivate",
                entity: "user",
                entity_id: id.to_string(),
                diff: changes,
            },
        )
        .await?;
        Ok(Deactivated {
            user: edited.after,
            sessions_revoked,
        })
    }

    /// Lets a deactivated user sign in again (their old sessions stay ended).
    pub async fn reactivate_user(
        &self,
        actor: &Actor,
        id: UserId,
    ) -> Result<UserRecord, AdminError> {
        let edited = self.set_status(actor, id, UserStatus::Active).await?;
        self.record(
            actor,
            AdminAction {
                action: "user.reactivate",
                entity: "user",
                entity_id: id.to_string(),
                diff: diff(&edited.before, &edited.after),
            },
        )
        .await?;
        Ok(edited.after)
    }

    async fn set_status(
        &self,
        actor: &Actor,
        id: UserId,
        status: UserStatus,
    ) -> Result<crate::directory::Edited<UserRecord>, AdminError> {
        self.directory
            .edit_user(actor.tenant, id, |user| {
                user.status = status;
                Ok::<_, AdminError>(())
            })
            .await
    }

    // ----- locations -----------------------------------------------------------

    pub async fn locations(&self, actor: &Actor) -> Result<Vec<LocationRecord>, AdminError> {
        Ok(self.directory.locations(actor.tenant).await?)
    }

    pub async fn location(
        &self,
        actor: &Actor,
        id: LocationId,
    ) -> Result<LocationRecord, AdminError> {
        Ok(self.directory.location(actor.tenant, id).await?)
    }

    /// The tenant's location named `name` or with id `name` (the server command).
    pub async fn location_named(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<LocationRecord, AdminError> {
        let wanted = name.trim();
        self.directory
            .locations(actor.tenant)
            .await?
            .into_iter()
            .find(|l| l.name.eq_ignore_ascii_case(wanted) || l.id.to_string() == wanted)
            .ok_or_else(|| AdminError::NotFound(format!("location {wanted:?}")))
    }

    pub async fn create_location(
        &self,
        actor: &Actor,
        new: NewLocation,
    ) -> Result<LocationRecord, AdminError> {
        let location = LocationRecord {
            id: LocationId::new(),
            tenant: actor.tenant,
            name: required("name", &new.name)?,
            timezone: timezone(&new.timezone)?,
            address: optional("address", new.address.as_deref())?,
            is_corporate: new.is_corporate,
            storage_type: new.storage_type,
            customer_care: new.customer_care,
            trucks: new.trucks,
            contact: optional("contact", new.contact.as_deref())?,
        };
        self.directory
            .insert_location(&location)
            .await
            .map_err(taken(format!(
                "a location named {:?} already exists",
                location.name
            )))?;
        self.record(
            actor,
            AdminAction {
                action: "location.create",
                entity: "location",
                entity_id: location.id.to_string(),
                diff: json!({ "after": location }),
            },
        )
        .await?;
        Ok(location)
    }

    pub async fn change_location(
        &self,
        actor: &Actor,
        id: LocationId,
        change: LocationChange,
    ) -> Result<LocationRecord, AdminError> {
        if change == LocationChange::default() {
            return Err(AdminError::Invalid("nothing to change".into()));
        }
        let name = change
            .name
            .as_deref()
            .map(|n| required("name", n))
            .transpose()?;
        let zone = change.timezone.as_deref().map(timezone).transpose()?;
        let address = change
            .address
            .as_ref()
            .map(|a| optional("address", a.as_deref()))
            .transpose()?;
        let contact = change
            .contact
            .as_ref()
            .map(|c| optional("contact", c.as_deref()))
            .transpose()?;
        let new_name = name.clone();
        let edited = self
            .directory
            .edit_location(actor.tenant, id, |location| {
                if let Some(name) = name {
                    location.name = name;
                }
                if let Some(zone) = zone {
                    location.timezone = zone;
                }
                if let Some(address) = address {
                    location.address = address;
                }
                if let Some(contact) = contact {
                    location.contact = contact;
                }
                if let Some(v) = change.is_corporate {
                    location.is_corporate = v;
                }
                if let Some(v) = change.storage_type {
                    location.storage_type = v;
                }
                if let Some(v) = change.customer_care {
                    location.customer_care = v;
                }
                if let Some(v) = change.trucks {
                    location.trucks = v;
                }
                Ok::<_, AdminError>(())
            })
            .await
            .map_err(|e| match e {
                AdminError::Conflict(_) => AdminError::Conflict(format!(
                    "a location named {:?} already exists",
                    new_name.unwrap_or_default()
                )),
                other => other,
            })?;
        self.record(
            actor,
            AdminAction {
                action: "location.update",
                entity: "location",
                entity_id: id.to_string(),
                diff: diff(&edited.before, &edited.after),
            },
        )
        .await?;
        Ok(edited.after)
    }

    // ----- role permissions ----------------------------------------------------

    pub async fn permissions(&self, actor: &Actor) -> Result<Vec<RolePermission>, AdminError> {
        Ok(self.directory.permissions(actor.tenant).await?.rows())
    }

    /// Replaces the whole table: exactly one row per role and step.
    pub async fn replace_permissions(
        &self,
        actor: &Actor,
        rows: Vec<RolePermission>,
    ) -> Result<Vec<RolePermission>, AdminError> {
        let mut seen = BTreeSet::new();
        for row in &rows {
            if !seen.insert((row.role, row.step)) {
                return Err(AdminError::Invalid(format!(
                    "two rows for {} step {}",
                    row.role, row.step
                )));
            }
        }
        let missing: Vec<String> = Role::iter()
            .flat_map(|role| StepNumber::ALL.map(|step| (role, step)))
            .filter(|key| !seen.contains(key))
            .map(|(role, step)| format!("{role} step {step}"))
            .collect();
        if !missing.is_empty() {
            return Err(AdminError::Invalid(format!(
                "the table needs a row for every role and step; missing: {}",
                missing.join(", ")
            )));
        }
        let before = self
            .directory
            .replace_permissions(actor.tenant, &rows)
            .await?;
        let after = PermissionTable::from_rows(rows);
        let changed: Vec<Value> = after
            .rows()
            .into_iter()
            .filter_map(|row| {
                let old = before.get(row.role, row.step);
                (old != row).then(|| json!({ "before": old, "after": row }))
            })
            .collect();
        self.record(
            actor,
            AdminAction {
                action: "permissions.replace",
                entity: "role_permissions",
                entity_id: actor.tenant.to_string(),
                diff: json!({ "rows": changed }),
            },
        )
        .await?;
        Ok(after.rows())
    }

    // ----- move sources --------------------------------------------------------

    pub async fn move_sources(&self, actor: &Actor) -> Result<Vec<MoveSourceRecord>, AdminError> {
        Ok(self.directory.move_sources(actor.tenant).await?)
    }

    pub async fn create_move_source(
        &self,
        actor: &Actor,
        new: NewMoveSource,
    ) -> Result<MoveSourceRecord, AdminError> {
        let source = MoveSourceRecord {
            id: MoveSourceId::new(),
            tenant: actor.tenant,
            name: required("name", &new.name)?,
            description: optional("description", new.description.as_deref())?,
            is_active: new.is_active,
        };
        self.directory
            .insert_move_source(&source)
            .await
            .map_err(taken(format!(
                "a move source named {:?} already exists",
                source.name
            )))?;
        self.record(
            actor,
            AdminAction {
                action: "move_source.create",
                entity: "move_source",
                entity_id: source.id.to_string(),
                diff: json!({ "after": source }),
            },
        )
        .await?;
        Ok(source)
    }

    // ----- the tenant's settings -----------------------------------------------

    pub async fn settings(&self, actor: &Actor) -> Result<TenantRecord, AdminError> {
        Ok(self.directory.tenant(actor.tenant).await?)
    }

    pub async fn change_settings(
        &self,
        actor: &Actor,
        change: TenantChange,
    ) -> Result<TenantRecord, AdminError> {
        if change == TenantChange::default() {
            return Err(AdminError::Invalid("nothing to change".into()));
        }
        let name = change
            .name
            .as_deref()
            .map(|n| required("name", n))
            .transpose()?;
        let industry = change
            .industry
            .as_ref()
            .map(|i| optional("industry", i.as_deref()))
            .transpose()?;
        if let Some(settings) = &change.settings
            && !settings.is_object()
        {
            return Err(AdminError::Invalid("settings must be a JSON object".into()));
        }
        let edited = self
            .directory
            .edit_tenant(actor.tenant, |tenant| {
                if let Some(name) = name {
                    tenant.name = name;
                }
                if let Some(industry) = industry {
                    tenant.industry = industry;
                }
                if let Some(v) = change.is_franchise {
                    tenant.is_franchise = v;
                }
                if let Some(settings) = change.settings {
                    tenant.settings = settings;
                }
                Ok::<_, AdminError>(())
            })
            .await?;
        self.record(
            actor,
            AdminAction {
                action: "tenant.update",
                entity: "tenant",
                entity_id: actor.tenant.to_string(),
                diff: diff(&edited.before, &edited.after),
            },
        )
        .await?;
        Ok(edited.after)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn inputs_are_checked() {
        assert_eq!(email(" Ann@Example.COM ").unwrap(), "ann@example.com");
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@localhost",
            "a nn@example.com",
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        assert_eq!(timezone("America/Toronto").unwrap(), "America/Toronto");
        assert!(timezone("Mars/Olympus").is_err());
        assert!(timezone("").is_err());
        assert!(required("name", "   ").is_err());
        assert!(required("name", &"x".repeat(MAX_TEXT_CHARS + 1)).is_err());
        assert_eq!(optional("address", Some("  ")).unwrap(), None);
    }

    #[test]
    fn diff_names_only_changed_fields() {
        let before = json!({ "a": 1, "b": "x" });
        let after = json!({ "a": 1, "b": "y" });
        assert_eq!(
            diff(&before, &after),
            json!({ "b": { "before": "x", "after": "y" } })
        );
    }
}
