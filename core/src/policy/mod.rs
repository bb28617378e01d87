//! Who may change what in a journey: one set of rules, used twice.
//!
//! The device checks each action before writing it (so an honest app never makes a
//! change the server refuses), and the server checks each pushed change before
//! accepting it (so a dishonest one cannot). Both describe a change as the
//! [`Touch`]es it makes — the device from the action, the server from the change's
//! effect on the document (`document::touches`) — and ask [`check`].
//!
//! The rules (issue 4; domain notes §4):
//! - DISPATCHER, MANAGER and ADMIN create journeys, assign crew, change the truck,
//!   the move source and the planned times.
//! - Step work (start, complete, activities, checklists) needs the role's `edit`
//!   permission for that step; approving needs `approve` (by default MANAGER only).
//! - Only an AUDITOR moves a journey to AUDITED; auditors otherwise only add notes.
//! - DRIVER and MOVER write only to journeys whose crew they are on.
//! - Entries, notes, GPS and media are evidence: added, never deleted or rewritten.
//!   A media reference can be tombstoned (marked removed, bytes kept): by its crew
//!   until its step's inventory or signature is complete, by an ADMIN always.
//! - Once AUDITED, a journey's record no longer changes: a later change is held
//!   for review as "after audit" instead of merged.

mod permissions;

use serde::{Deserialize, Serialize};

pub use permissions::{PermissionTable, RolePermission};

use crate::ids::ClientId;
use crate::model::{Role, Stage, StepNumber};

/// One thing a change does to a journey.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Touch {
    /// Builds the journey's skeleton (ids, date, steps, empty collections): only
    /// the change that creates the journey may do this.
    Create,
    TruckNumber,
    MoveSource,
    Times,
    Crew,
    Stage(Stage),
    StepStart(StepNumber),
    StepComplete(StepNumber),
    StepApprove(StepNumber),
    /// Activities and checklist ticks of a step.
    StepActivity(StepNumber),
    Note,
    Entry,
    Gps,
    Media,
    /// The running totals, bumped alongside what they count.
    Counts,
    /// Tombstoning a media reference (`JourneyAction::RemoveMedia`). `sealed`: its
    /// step's inventory or signature was complete before this change
    /// (`document::evidence::sealed`), after which crews may not remove it.
    RemoveMedia {
        sealed: bool,
    },
    /// Deleting or rewriting evidence (an entry, note, GPS batch or media ref).
    EvidenceRewrite(String),
    /// Anything outside the journey layout, by path.
    Unknown(String),
}

/// What the journey looked like before the change, as far as the rules care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JourneyContext {
    /// No journey yet: this change creates it.
    pub creating: bool,
    /// The journey's stage before the change.
    pub stage: Option<Stage>,
    /// Whether the writer is on the journey's crew.
    pub on_crew: bool,
}

/// Why a change is not accepted as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Denial {
    #[error("a {role} may not {what}")]
    Role { role: Role, what: String },
    #[error("a {role} writes only to journeys whose crew they are on")]
    NotOnCrew { role: Role },
    #[error("{0}")]
    Layout(String),
    /// A journey is created only inside the writer's own tenant.
    #[error("a journey of tenant {tenant} cannot be created by another tenant's user")]
    OtherTenant { tenant: ClientId },
    /// Not a violation: the journey was audited; the change waits for review.
    #[error("the journey is audited: changes after the audit are held for review")]
    AfterAudit,
}

/// Checks every touch of one change; the first refusal wins.
pub fn check_all(
    role: Role,
    table: &PermissionTable,
    context: &JourneyContext,
    touches: &[Touch],
) -> Result<(), Denial> {
    if context.stage == Some(Stage::Audited) && touches.iter().any(|t| !matches!(t, Touch::Counts))
    {
        return Err(Denial::AfterAudit);
    }
    touches
        .iter()
        .try_for_each(|touch| check(role, table, context, touch))
}

/// Checks one touch by a `role` writer.
pub fn check(
    role: Role,
    table: &PermissionTable,
    context: &JourneyContext,
    touch: &Touch,
) -> Result<(), Denial> {
    use Role::{Admin, Auditor, Dispatcher, Driver, Manager, Mover};
    let deny = |what: &str| {
        Err(Denial::Role {
            role,
            what: what.to_owned(),
        })
    };
    let office = matches!(role, Dispatcher | Manager | Admin);
    if matches!(role, Driver | Mover) && !context.on_crew && !matches!(touch, Touch::Counts) {
        return Err(Denial::NotOnCrew { role });
    }
    match touch {
        Touch::Create if !context.creating => Err(Denial::Layout(
            "a journey's ids, date and steps are set once, when it is created".to_owned(),
        )),
        Touch::Create if !office => deny("create a journey"),
        Touch::TruckNumber if !office => deny("change the truck"),
        Touch::MoveSource if !office => deny("change the move source"),
        Touch::Crew if !office => deny("assign or unassign crew"),
        Touch::Times if !(office || role == Driver) => deny("set the journey's times"),
        Touch::Stage(Stage::Audited) if role != Auditor => deny("mark a journey audited"),
        Touch::Stage(stage) if role == Auditor && *stage != Stage::Audited => {
            deny("move a journey's stage")
        }
        Touch::StepStart(step) | Touch::StepComplete(step) | Touch::StepActivity(step)
            if !table.get(role, *step).can_edit =>
        {
            deny(&format!("work on step {step}"))
        }
        Touch::StepApprove(step) if !table.get(role, *step).can_approve => {
            deny(&format!("approve step {step}"))
        }
        Touch::Entry | Touch::Gps | Touch::Media if role == Auditor => {
            deny("add entries, GPS or media")
        }
        Touch::RemoveMedia { sealed } => match role {
            Admin => Ok(()),
            Driver | Mover if !sealed => Ok(()),
            Driver | Mover => {
                deny("remove photos once their step's inventory or signature is complete")
            }
            _ => deny("remove media"),
        },
        Touch::EvidenceRewrite(path) => Err(Denial::Layout(format!(
            "evidence is never deleted or rewritten ({path})"
        ))),
        Touch::Unknown(path) => Err(Denial::Layout(format!("{path} is not part of a journey"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use strum::IntoEnumIterator;

    use super::*;

    fn step(n: u8) -> StepNumber {
        StepNumber::new(n).unwrap()
    }

    fn allowed(role: Role, touch: Touch, on_crew: bool) -> bool {
        let context = JourneyContext {
            creating: matches!(touch, Touch::Create),
            stage: Some(Stage::Onsite),
            on_crew,
        };
        check(role, &PermissionTable::defaults(), &context, &touch).is_ok()
    }

    #[test]
    fn the_issue_rules_hold_for_every_role() {
        for role in Role::iter() {
            let office = matches!(role, Role::Dispatcher | Role::Manager | Role::Admin);
            assert_eq!(allowed(role, Touch::Crew, true), office, "{role} crew");
            assert_eq!(
                allowed(role, Touch::TruckNumber, true),
                office,
                "{role} truck"
            );
            assert_eq!(allowed(role, Touch::Create, true), office, "{role} create");
            assert_eq!(
                allowed(role, Touch::StepApprove(step(2)), true),
                role == Role::Manager,
                "{role} approve"
            );
            assert_eq!(
                allowed(role, Touch::Stage(Stage::Audited), true),
                role == Role::Auditor,
                "{role} audit"
            );
            assert!(allowed(role, Touch::Note, true), "{role} note");
            assert!(!allowed(role, Touch::Unknown("x".into()), true));
            assert!(!allowed(
                role,
                Touch::EvidenceRewrite("entries/x".into()),
                true
            ));
        }
        // Crews work the steps they may edit, on their own journeys only.
        assert!(allowed(Role::Driver, Touch::StepActivity(step(4)), true));
        assert!(allowed(Role::Mover, Touch::Entry, true));
        assert!(!allowed(Role::Mover, Touch::Entry, false));
        assert!(!allowed(Role::Driver, Touch::Note, false));
        assert!(!allowed(Role::Auditor, Touch::StepActivity(step(1)), true));
    }

    #[test]
    fn a_custom_table_changes_step_rights() {
        let mut table = PermissionTable::defaults();
        table.set(RolePermission {
            role: Role::Mover,
            step: step(3),
            can_view: true,
            can_edit: false,
            can_approve: true,
        });
        let context = JourneyContext {
            creating: false,
            stage: Some(Stage::EnRoute),
            on_crew: true,
        };
        assert!(check(Role::Mover, &table, &context, &Touch::StepStart(step(3))).is_err());
        assert!(check(Role::Mover, &table, &context, &Touch::StepApprove(step(3))).is_ok());
        assert!(check(Role::Mover, &table, &context, &Touch::StepStart(step(2))).is_ok());
    }

    #[test]
    fn an_audited_journey_holds_every_change_for_review() {
        let context = JourneyContext {
            creating: false,
            stage: Some(Stage::Audited),
            on_crew: true,
        };
        let table = PermissionTable::defaults();
        assert_eq!(
            check_all(
                Role::Driver,
                &table,
                &context,
                &[Touch::Entry, Touch::Counts]
            ),
            Err(Denial::AfterAudit)
        );
        assert_eq!(
            check_all(Role::Manager, &table, &context, &[Touch::Counts]),
            Ok(())
        );
    }
}
