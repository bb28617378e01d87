//! The device's side of the write rules: before the store writes a change, the
//! acting user's role, the tenant's permission table and the journey's state go to
//! `core::policy` — the code the server judges every pushed change with — so an
//! honest app never queues a change the server refuses.
//!
//! Who is judged is whoever the change is attributed to: the active user. If they
//! signed in on this device, their account decides: the role the server put in
//! their token, the tenant's table as the server sent it (`set_account_permissions`;
//! the defaults until then, which is also what the server uses for a tenant that
//! never set a table), and their tenant. On a device nobody signed in on, the active
//! user is judged as the app set them, with the default table; the tenant of a new
//! journey cannot be checked there and is left to the server.
//!
//! Both sides read the same journey state only when the device is up to date: a
//! change made while the server already has a newer crew or an audit that the device
//! has not received yet is decided by the server (refused, or held "after audit").

use rusqlite::Connection;

use super::accounts;
use crate::document::JourneyDocument;
use crate::document::actions::JourneyAction;
use crate::document::origin::ChangeOrigin;
use crate::error::Result;
use crate::ids::{ClientId, DeviceId};
use crate::model::{ActiveUser, NewJourney};
use crate::policy::{self, Denial, JourneyContext, PermissionTable, Touch};

/// The acting user as the rules see them.
#[derive(Debug, Clone)]
pub(super) struct Acting {
    /// What the change records as its origin (the role is the checked one).
    pub origin: ChangeOrigin,
    pub table: PermissionTable,
    /// `None` on a device nobody signed in on.
    pub tenant: Option<ClientId>,
}

/// Resolves `user` on `device`: from their account when they signed in here.
pub(super) fn acting(conn: &Connection, user: &ActiveUser, device: DeviceId) -> Result<Acting> {
    let account = accounts::get(conn, user.user_id)?;
    let (role, table, tenant) = match account {
        Some(account) => {
            // An empty table is one the server has not sent yet (the column's
            // default); a tenant's real table always has rows.
            let table = if account.permissions.is_empty() {
                PermissionTable::defaults()
            } else {
                PermissionTable::from_rows(account.permissions)
            };
            (account.user.role, table, Some(account.user.tenant))
        }
        None => (user.role, PermissionTable::defaults(), None),
    };
    Ok(Acting {
        origin: ChangeOrigin {
            user_id: user.user_id,
            role,
            device_id: device,
        },
        table,
        tenant,
    })
}

/// May `acting` create `new`? The touches are those of the creating change as the
/// server reads them (the skeleton, plus the truck and move source if set).
pub(super) fn check_create(acting: &Acting, new: &NewJourney) -> Result<()> {
    if let Some(tenant) = acting.tenant
        && tenant != new.client_id
    {
        return Err(Denial::OtherTenant {
            tenant: new.client_id,
        }
        .into());
    }
    let mut touches = vec![Touch::Create];
    if new.truck_number.is_some() {
        touches.push(Touch::TruckNumber);
    }
    if new.move_source_id.is_some() {
        touches.push(Touch::MoveSource);
    }
    let context = JourneyContext {
        creating: true,
        stage: None,
        on_crew: false,
    };
    policy::check_all(acting.origin.role, &acting.table, &context, &touches)?;
    Ok(())
}

/// May `acting` apply `action` to `doc` as it is now? Decided from what the action
/// declares it touches (`JourneyDocument::touches_of`, checked against the change's real
/// effect for every action by the policy tests), before anything is written.
pub(super) fn check_action(
    acting: &Acting,
    doc: &JourneyDocument,
    action: &JourneyAction,
) -> Result<()> {
    check_touches(acting, doc, &doc.touches_of(action)?)
}

/// May `acting` make a change touching `touches` on `doc` as it is now?
pub(super) fn check_touches(
    acting: &Acting,
    doc: &JourneyDocument,
    touches: &[Touch],
) -> Result<()> {
    let context = JourneyContext {
        creating: false,
        stage: Some(doc.stage()?),
        on_crew: doc.is_on_crew(acting.origin.user_id)?,
    };
    policy::check_all(acting.origin.role, &acting.table, &context, touches)?;
    Ok(())
}
