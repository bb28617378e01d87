//! `crewsync`: the command line for people who run crewsync — conflict
//! inspection, history, replica diff, quarantine, audit verification and the demo.

mod commands;
mod demo;
mod error;
mod output;
mod source;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use crewsync_core::ids::JourneyId;

use crate::error::CliError;
use crate::output::Output;
use crate::source::Source;

#[derive(Parser)]
#[command(
    name = "crewsync",
    version,
    about = "Offline-first sync for moving crews and dispatchers",
    after_help = "Exit codes: 0 all well; 1 the check found something (replicas differ, a broken \
                  audit chain); 2 bad input (usage, paths, URLs, tokens); 3 not found; 4 the server \
                  refused or could not be reached; 5 anything else."
)]
struct Cli {
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Where to read journeys: a device store file, or a server as a signed-in user.
#[derive(Args)]
struct From {
    /// A device store file (the crew app's SQLite database).
    #[arg(long, value_name = "FILE", global = true)]
    store: Option<PathBuf>,
    /// A crewsync server, e.g. http://127.0.0.1:8080 (needs --token).
    #[arg(long, value_name = "URL", global = true)]
    server: Option<String>,
    /// An access token for --server (from sign-in).
    #[arg(long, env = "CREWSYNC_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

impl From {
    fn open(&self) -> Result<Source, CliError> {
        Source::open(
            self.store.as_deref(),
            self.server.as_deref(),
            self.token.as_deref(),
        )
    }
}

#[derive(Subcommand)]
enum Command {
    /// Fields written concurrently: every value, its writer, which is current and why.
    Conflicts {
        #[command(flatten)]
        from: From,
        /// Only these journeys (default: all in the store, or today's on the server).
        #[arg(long = "journey", value_name = "ID")]
        journeys: Vec<JourneyId>,
        #[command(subcommand)]
        action: Option<ConflictAction>,
    },
    /// A journey's changes as a timeline: who, role, device, device and server time, what changed.
    History {
        #[command(flatten)]
        from: From,
        journey: JourneyId,
        /// Only changes that wrote this field, e.g. truck_number or steps/2/completed.
        #[arg(long, value_name = "PATH")]
        field: Option<String>,
    },
    /// Compares two replicas (store files or server URLs): changes each lacks, fields that differ.
    Diff {
        /// A store file or a server URL.
        a: String,
        /// A store file or a server URL.
        b: String,
        /// Only these journeys.
        #[arg(long = "journey", value_name = "ID")]
        journeys: Vec<JourneyId>,
        /// Access token for a server replica.
        #[arg(long, env = "CREWSYNC_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Changes the server refused or held, with reasons.
    Quarantine {
        #[command(flatten)]
        from: From,
        #[arg(long = "journey", value_name = "ID")]
        journeys: Vec<JourneyId>,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// A journey document as JSON.
    Inspect {
        #[command(flatten)]
        from: From,
        journey: JourneyId,
    },
    /// Runs a crew day on three devices (two crews and a dispatcher), offline edits
    /// and all, merges them and shows what converged and which fields conflicted.
    /// A whole crew day against a real server: tablets offline, the office editing,
    /// a lossy reconnect; prints what converged, the conflicts and the media.
    Demo {
        /// Where the server's store and the tablets' stores go (default: a temporary
        /// directory, removed after).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the server running after the day (until Ctrl-C) to look around.
        #[arg(long)]
        serve: bool,
        /// Where the server listens; port 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// Seeds the lossy link's faults (the same seed, the same faults).
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum ConflictAction {
    /// Makes a kept value current again, as a new change by the store's user.
    Restore {
        #[arg(long)]
        journey: JourneyId,
        /// The field, e.g. truck_number.
        #[arg(long)]
        field: String,
        /// The op id of the value to restore, as the report lists it.
        #[arg(long)]
        op: String,
        /// The signed-in user making the change (default: the only one on the device).
        #[arg(long = "as", value_name = "USER_ID")]
        acting: Option<crewsync_core::ids::UserId>,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Verifies the tenant's chain (or a journey's trail) on this machine and names
    /// the first broken entry.
    Verify {
        /// The server, e.g. http://127.0.0.1:8080.
        #[arg(long, value_name = "URL")]
        server: String,
        #[arg(long, env = "CREWSYNC_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Only this journey's trail.
        #[arg(long)]
        journey: Option<JourneyId>,
        /// Keeps the verified head here; next time the chain must still hold it
        /// (catches a truncated or rewritten chain).
        #[arg(long, value_name = "FILE")]
        head_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output { json: cli.json };
    match run(cli.command, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crewsync: {e}");
            e.exit_code()
        }
    }
}

fn run(command: Command, out: Output) -> Result<(), CliError> {
    match command {
        Command::Conflicts {
            from,
            journeys,
            action: None,
        } => commands::conflicts::list(&from.open()?, &journeys, out),
        Command::Conflicts {
            from,
            action:
                Some(ConflictAction::Restore {
                    journey,
                    field,
                    op,
                    acting,
                }),
            ..
        } => commands::conflicts::restore(&from.open()?, journey, &field, &op, acting, out),
        Command::History {
            from,
            journey,
            field,
        } => commands::history::run(&from.open()?, journey, field.as_deref(), out),
        Command::Diff {
            a,
            b,
            journeys,
            token,
        } => {
            let a = Source::named(&a, token.as_deref())?;
            let b = Source::named(&b, token.as_deref())?;
            commands::diff::run(&a, &b, &journeys, out)
        }
        Command::Quarantine { from, journeys } => {
            commands::quarantine::run(&from.open()?, &journeys, out)
        }
        Command::Audit {
            action:
                AuditAction::Verify {
                    server,
                    token,
                    journey,
                    head_file,
                },
        } => {
            let source = Source::open(None, Some(&server), token.as_deref())?;
            let server = source
                .server()
                .ok_or_else(|| CliError::Other("not a server".into()))?;
            commands::audit::verify(server, journey, head_file.as_deref(), out)
        }
        Command::Inspect { from, journey } => commands::inspect::run(&from.open()?, journey, out),
        Command::Demo {
            dir,
            serve,
            listen,
            seed,
        } => demo::run(demo::DemoOptions {
            dir,
            serve,
            listen,
            seed,
        })
        .map_err(CliError::from),
    }
}
