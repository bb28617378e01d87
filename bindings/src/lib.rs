//! crewsync-ffi: the uniffi surface the Android and iOS crew apps call.
//!
//! A thin layer over crewsync-core: types are mapped in [`records`], errors once in
//! [`error`], subscriptions in [`observers`], and [`device::CrewDevice`] forwards each
//! call to core. No logic of its own lives here. The threading model is described in
//! `device` and in bindings/README.md.

pub mod device;
pub mod error;
pub mod media;
pub mod observers;
pub mod records;

pub use device::CrewDevice;
pub use error::CrewsyncError;

uniffi::setup_scaffolding!();

/// The version of the crewsync core the app is linked against.
#[uniffi::export]
pub fn core_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
