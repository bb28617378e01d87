//! The CLI's errors and the exit codes they map to (documented in `--help`).

use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes: 0 all well; 1 the command found what it looks for (a broken audit
/// chain, replicas that differ); 2 bad input (usage, paths, tokens); 3 not found;
/// 4 the server refused or could not be reached; 5 anything else.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {reason}")]
    BadPath { path: PathBuf, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Auth(String),
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// The command's check failed (a broken chain, differing replicas): the
    /// report was printed.
    #[error("{0}")]
    Found(String),
    #[error(transparent)]
    Core(#[from] crewsync_core::Error),
    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Found(_) => 1,
            Self::Usage(_) | Self::BadPath { .. } => 2,
            Self::Core(
                crewsync_core::Error::InvalidInput(_) | crewsync_core::Error::InvalidId { .. },
            ) => 2,
            Self::NotFound(_) | Self::Core(crewsync_core::Error::UnknownJourney(_)) => 3,
            Self::Auth(_) | Self::Unreachable(_) => 4,
            Self::Core(crewsync_core::Error::NotAllowed(_)) => 4,
            Self::Core(_) | Self::Other(_) => 5,
        })
    }
}
