//! `crewsync`: the command line for people who run crewsync.
//!
//! Today it runs the demo of the device core; conflict inspection, history, replica
//! diff and audit verification arrive with the server.

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "crewsync",
    version,
    about = "Offline-first sync for moving crews and dispatchers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a crew day on three devices (two crews and a dispatcher), offline edits
    /// and all, merges them and shows what converged and which fields conflicted.
    Demo {
        /// Where the device stores go (default: a temporary directory, removed after).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { dir } => demo::run(dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crewsync: {e}");
            ExitCode::FAILURE
        }
    }
}
