//! The seed's RolePermission table: per role and step, view / edit / approve.
//!
//! A tenant may change its table (the server stores it and sends it to devices);
//! [`PermissionTable::defaults`] is what a new tenant starts with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strum::IntoEnumIterator;

use crate::model::{Role, StepNumber};

/// One row of the table (owned, FFI-shaped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolePermission {
    pub role: Role,
    pub step: StepNumber,
    pub can_view: bool,
    pub can_edit: bool,
    pub can_approve: bool,
}

/// Role × step permissions; a missing row grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionTable {
    rows: BTreeMap<(Role, StepNumber), RolePermission>,
}

impl PermissionTable {
    /// A new tenant's table:
    /// - everyone views every step;
    /// - DRIVER and MANAGER edit all four steps; MOVER steps 1–3 (the completion
    ///   paperwork is the driver's); DISPATCHER and ADMIN step 1 (morning prep is
    ///   planned from the office); AUDITOR none;
    /// - only MANAGER approves.
    pub fn defaults() -> Self {
        let mut table = Self::default();
        for role in Role::iter() {
            for step in StepNumber::ALL {
                let n = step.get();
                let can_edit = match role {
                    Role::Driver | Role::Manager => true,
                    Role::Mover => n <= 3,
                    Role::Dispatcher | Role::Admin => n == 1,
                    Role::Auditor => false,
                };
                table.set(RolePermission {
                    role,
                    step,
                    can_view: true,
                    can_edit,
                    can_approve: role == Role::Manager,
                });
            }
        }
        table
    }

    /// Builds a table from rows (later rows replace earlier ones).
    pub fn from_rows(rows: impl IntoIterator<Item = RolePermission>) -> Self {
        let mut table = Self::default();
        for row in rows {
            table.set(row);
        }
        table
    }

    pub fn set(&mut self, row: RolePermission) {
        self.rows.insert((row.role, row.step), row);
    }

    /// The row for `role` and `step`; all-false when the table has none.
    pub fn get(&self, role: Role, step: StepNumber) -> RolePermission {
        self.rows
            .get(&(role, step))
            .copied()
            .unwrap_or(RolePermission {
                role,
                step,
                can_view: false,
                can_edit: false,
                can_approve: false,
            })
    }

    pub fn rows(&self) -> Vec<RolePermission> {
        self.rows.values().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_cover_every_role_and_step_and_rows_round_trip() {
        let table = PermissionTable::defaults();
        assert_eq!(table.rows().len(), 6 * 4);
        assert_eq!(PermissionTable::from_rows(table.rows()), table);
        let approvers: Vec<_> = table.rows().into_iter().filter(|r| r.can_approve).collect();
        assert!(approvers.iter().all(|r| r.role == Role::Manager));
        assert_eq!(approvers.len(), 4);
        let step = StepNumber::new(2).unwrap();
        assert!(!PermissionTable::default().get(Role::Admin, step).can_view);
    }
}
