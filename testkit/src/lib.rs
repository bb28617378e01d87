//! Test support shared by every crewsync crate.
//!
//! [`postgres`] gives tests a real, throwaway PostgreSQL server on loopback,
//! so server code is tested against the database it runs on in production
//! rather than a mock. Tests fail (never skip) when PostgreSQL is missing.
//!
//! ```no_run
//! let cluster = crewsync_testkit::postgres::shared_cluster()?;
//! let db = cluster.fresh_database()?; // dropped with `db`
//! println!("connect to {}", db.url);
//! # Ok::<(), crewsync_testkit::postgres::PgError>(())
//! ```

pub mod postgres;
