//! crewsync-core: the crew device's side of crewsync.
//!
//! Anatomy (one module, one job):
//! - [`model`] — the journey model the app reads (owned, FFI-shaped types);
//! - [`ids`] — typed UUID ids, parsed once at the boundary;
//! - [`document`] — a journey as an automerge document: layout, actions, merge rules (pure);
//! - [`store`] — the device's SQLite store: documents, outbox, journey list, GPS buffer;
//! - [`policy`] — who may change what: the rules both device and server check;
//! - [`sync`] — the sync protocol (wire format and the device's side), sans I/O;
//! - [`media`] — photos, videos and signatures: capture, thumbnails, the upload queue's rules;
//! - [`audit`] — the tamper-evident audit trail: entries, their hash, verification;
//! - [`error`] — the one error enum.

pub mod audit;
pub mod document;
pub mod error;
pub mod ids;
pub mod media;
pub mod model;
pub mod policy;
pub mod store;
pub mod sync;

pub use document::actions::JourneyAction;
pub use document::origin::{ChangeMessage, ChangeOrigin};
pub use error::{Error, Result};
pub use store::{DeviceStore, StoreOptions};
