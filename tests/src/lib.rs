//! Support for crewsync's end-to-end tests across processes.
//!
//! - [`crash`] — the fixture and line protocol shared by the `crash_writer` binary (a
//!   device that writes until it is SIGKILLed) and the `device_crash` test that kills
//!   it and checks every acknowledged write survived.
//! - [`proxy`] — the loopback fault proxy of the network-fault and upload tests (the
//!   `crewsync-netsim` crate, which the CLI's demo uses too).
//! - the `crash_server` binary — the real server for the `server_crash` tests, with a
//!   lifetime limit and the control run's "acknowledge before commit" switch.

pub mod crash;
pub use crewsync_netsim as proxy;
