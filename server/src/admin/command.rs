//! `crewsync-server user add|deactivate|reactivate|list`: the admin operations for
//! operators without a token, over the same [`AdminService`] as the API (so the
//! same checks, and the same audit seam with the operator as the actor).

use crewsync_core::ids::ClientId;

use super::api::NewUser;
use super::{Actor, AdminError, AdminService};
use crate::config::UserCommand;
use crate::directory::{TenantRecord, UserRecord};

/// Runs `command`; returns what to print.
pub async fn run(admin: &AdminService, command: UserCommand) -> Result<String, AdminError> {
    match command {
        UserCommand::Add {
            tenant,
            email,
            name,
            role,
            location,
            password,
        } => {
            let actor = Actor::operator(tenant_named(admin, &tenant).await?.id);
            let location = admin.location_named(&actor, &location).await?;
            let user = admin
                .create_user(
                    &actor,
                    NewUser {
                        name,
                        email,
                        password,
                        role,
                        location_id: location.id,
                    },
                )
                .await?;
            Ok(format!("added {}", line(&user)))
        }
        UserCommand::Deactivate { tenant, email } => {
            let actor = Actor::operator(tenant_named(admin, &tenant).await?.id);
            let user = admin.user_by_email(&actor, &email).await?;
            let done = admin.deactivate_user(&actor, user.id).await?;
            Ok(format!(
                "deactivated {} ({} sessions ended)",
                line(&done.user),
                done.sessions_revoked
            ))
        }
        UserCommand::Reactivate { tenant, email } => {
            let actor = Actor::operator(tenant_named(admin, &tenant).await?.id);
            let user = admin.user_by_email(&actor, &email).await?;
            let user = admin.reactivate_user(&actor, user.id).await?;
            Ok(format!("reactivated {}", line(&user)))
        }
        UserCommand::List { tenant } => {
            let actor = Actor::operator(tenant_named(admin, &tenant).await?.id);
            let users = admin.users(&actor).await?;
            Ok(users.iter().map(line).collect::<Vec<_>>().join("\n"))
        }
    }
}

/// A tenant by slug (`lgm`) or id.
async fn tenant_named(admin: &AdminService, name: &str) -> Result<TenantRecord, AdminError> {
    match ClientId::parse(name.trim()) {
        Ok(id) => Ok(admin.directory.tenant(id).await?),
        Err(_) => Ok(admin.directory.tenant_by_slug(name.trim()).await?),
    }
}

fn line(user: &UserRecord) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}",
        user.id,
        user.email,
        user.role,
        user.status.as_ref(),
        user.name
    )
}
