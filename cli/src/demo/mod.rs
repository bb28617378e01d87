//! `crewsync demo`: the product's whole story in one command on a fresh machine.
//! A real server on its embedded store with the demo tenant; five crew tablets and
//! the dispatcher's office app, each with its own store and media directory; a day
//! of offline capture (entries, GPS, photos, signatures) while the office edits the
//! same journeys; then the reconnect over a lossy link. It prints what converged,
//! the conflicts and how each resolved, the media delivered (signatures first), and
//! timings. With `--serve` the server keeps running for a person to look.

mod capture;
mod device;
mod office;
mod report;
mod server;
mod story;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use crate::error::CliError;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Core(#[from] crewsync_core::Error),
    #[error("server: {0}")]
    Server(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("capture: {0}")]
    Capture(String),
    #[error("cannot use directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{device} did not settle in {rounds} sync attempts")]
    Unsettled { device: String, rounds: u32 },
    /// A check of the outcome failed: replicas differ, a file is missing or
    /// corrupt, media came out of order. The report was printed.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Cli(#[from] CliError),
}

impl From<DemoError> for CliError {
    fn from(error: DemoError) -> Self {
        match error {
            DemoError::Cli(e) => e,
            DemoError::Failed(what) => CliError::Found(what),
            DemoError::Dir { path, source } => CliError::BadPath {
                path,
                reason: source.to_string(),
            },
            other => CliError::Other(other.to_string()),
        }
    }
}

/// What `crewsync demo` was asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the server's store and the tablets' stores go (default: a temporary
    /// directory, removed after unless serving).
    pub dir: Option<PathBuf>,
    /// Keep the server running on `listen` after the day, until Ctrl-C.
    pub serve: bool,
    pub listen: SocketAddr,
    /// Seeds the lossy link's faults: the same seed, the same faults.
    pub seed: u64,
}

pub fn run(options: DemoOptions) -> Result<(), DemoError> {
    let started = Instant::now();
    let temp;
    let root = match &options.dir {
        Some(path) => {
            std::fs::create_dir_all(path).map_err(|source| DemoError::Dir {
                path: path.clone(),
                source,
            })?;
            path.clone()
        }
        None => {
            temp = tempfile::tempdir().map_err(|source| DemoError::Dir {
                path: std::env::temp_dir(),
                source,
            })?;
            temp.path().to_path_buf()
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| DemoError::Server(e.to_string()))?;
    let server_dir = root.join("server");
    let server = runtime.block_on(server::DemoServer::start(&server_dir, options.listen))?;
    let url = server.url();
    println!("crewsync demo — a crew day against a real server, six devices, a lossy link");
    println!(
        "server      {url} on its embedded store in {} (tenant LGM, password {:?})",
        server_dir.display(),
        office::PASSWORD
    );
    let day = runtime.block_on(story::play(&root, &url, options.seed))?;
    let checked = runtime.block_on(report::check_media(&day))?;
    // The printing reads the server through the CLI's own commands, which run their
    // own runtime: outside this one's context.
    let outcome = report::print(&day, &checked, &url);
    println!(
        "timings     {} · whole demo {:.1} s",
        day.timings
            .iter()
            .map(|(phase, took)| format!("{phase} {:.1} s", took.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" · "),
        started.elapsed().as_secs_f64()
    );
    if options.serve {
        println!(
            "serving     {url} — sign in as dispatcher@lgm.example / {:?}, e.g.\n            \
             TOKEN=$(curl -s -X POST {url}/v1/auth/sign-in -H 'content-type: application/json' \
             -d '{{\"email\":\"dispatcher@lgm.example\",\"password\":\"{}\",\"device_id\":\"0192f1c4-0000-7000-8000-00000000d001\"}}' \
             | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')\n            \
             crewsync conflicts --server {url} --token $TOKEN\n            \
             device stores: {}/*.sqlite (try: crewsync conflicts --store {}/office.sqlite)\n            \
             Ctrl-C stops.",
            office::PASSWORD,
            office::PASSWORD,
            root.display(),
            root.display()
        );
        runtime.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
    }
    runtime.block_on(server.stop())?;
    outcome
}
