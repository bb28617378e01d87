//! Support for crewsync's end-to-end tests across processes.
//!
//! - [`crash`] — the fixture and line protocol shared by the `crash_writer` binary (a
//!   device that writes until it is SIGKILLed) and the `device_crash` test that kills
//!   it and checks every acknowledged write survived.

pub mod crash;
