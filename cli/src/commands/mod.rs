//! One module per command.

pub mod audit;
pub mod conflicts;
pub mod diff;
pub mod history;
pub mod inspect;
pub mod quarantine;
