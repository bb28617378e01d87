//! Sync with a server, sans I/O.
//!
//! The protocol is a cursor over the server's per-tenant change log (see
//! ARCHITECTURE.md): one request pushes every unacknowledged local change and asks
//! for every log entry after the device's cursor; the response acknowledges what is
//! now durable on the server and carries what the device missed. [`engine`] builds
//! requests from the store and absorbs responses into it; it never touches a socket,
//! so the whole protocol runs deterministically in tests. A runtime layer moves the
//! bytes.

pub mod auth;
pub mod engine;
pub mod runtime;
pub mod upload;
pub mod wire;

pub use runtime::{MediaOutcome, SyncOutcome, SyncStatus};
