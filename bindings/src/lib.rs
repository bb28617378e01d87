//! crewsync-ffi: the uniffi surface the Android and iOS crew apps call.
//!
//! A thin layer over crewsync-core: types and errors are mapped here once, and no
//! logic of its own lives here. The full crew surface grows in the bindings issue.

uniffi::setup_scaffolding!();

/// The version of the crewsync core the app is linked against.
#[uniffi::export]
pub fn core_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
