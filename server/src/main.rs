//! `crewsync-server`: binds, serves, and shuts down gracefully on Ctrl-C / SIGTERM.

use std::process::ExitCode;

use crewsync_server::Server;
use crewsync_server::admin::{self, AdminService};
use crewsync_server::auth::sessions::Sessions;
use crewsync_server::config::{Command, Config, MediaCommand};
use crewsync_server::directory::Directory;
use crewsync_server::{seed, storage};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::from_args_and_env();
    let opened = match storage::open(config.database_url.as_deref(), &config.data_dir).await {
        Ok(opened) => opened,
        Err(e) => {
            tracing::error!(error = %e, backend = config.backend_name(), "cannot start");
            eprintln!("crewsync-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let directory = Directory::new(opened.db.clone());
    if let Some(Command::User { command }) = config.command.clone() {
        let admin = AdminService::new(directory, Sessions::new(opened.db), opened.storage);
        return match admin::command::run(&admin, command).await {
            Ok(output) => {
                println!("{output}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("crewsync-server user: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Media { command }) = config.command.clone() {
        return run_media_command(&config, opened, &directory, command).await;
    }
    if let Some(Command::Seed) = config.command {
        return match seed::seed(&directory).await {
            Ok(seeded) => {
                println!(
                    "seeded {} tenants, {} locations, {} users (password {:?})",
                    seeded.tenants,
                    seeded.locations,
                    seeded.users,
                    seed::DEMO_PASSWORD
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("crewsync-server seed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = seed_fresh_embedded_store(&config, &directory).await {
        eprintln!("crewsync-server: cannot load the demo tenants: {e}");
        return ExitCode::FAILURE;
    }
    let server = match Server::with_storage(&config, opened.storage, opened.db).await {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(error = %e, backend = config.backend_name(), "cannot start");
            eprintln!("crewsync-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("crewsync-server: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    if config.database_url.is_none() {
        tracing::info!(data_dir = %config.data_dir.display(), "embedded store");
    }
    tracing::info!(
        addr = %config.listen,
        backend = config.backend_name(),
        compact_after = config.compact_after,
        max_body_bytes = config.max_body_bytes,
        live_ping_secs = config.live_ping_secs,
        "listening"
    );
    match server.serve(listener, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crewsync-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `crewsync-server media purge|sweep`: one pass, then exit.
async fn run_media_command(
    config: &Config,
    opened: storage::Opened,
    directory: &Directory,
    command: MediaCommand,
) -> ExitCode {
    let media =
        crewsync_server::media::MediaService::new(config.media_config(), opened.db, opened.storage);
    if let Err(e) = media.blobs.check() {
        eprintln!("crewsync-server media: {e}");
        return ExitCode::FAILURE;
    }
    let result = match command {
        MediaCommand::Purge => media.purge(directory).await.map(|report| {
            format!(
                "purged {} originals past retention; kept {} under legal hold",
                report.purged, report.held
            )
        }),
        MediaCommand::Sweep => media
            .sweep()
            .await
            .map(|report| format!("removed {} abandoned uploads", report.expired)),
    };
    match result {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crewsync-server media: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The zero-setup promise: an embedded store with no tenants gets the demo
/// tenants, so a first `crewsync-server` can be signed in to. Postgres never is.
async fn seed_fresh_embedded_store(
    config: &Config,
    directory: &Directory,
) -> Result<(), seed::SeedError> {
    if config.database_url.is_some()
        || config.no_demo_seed
        || !directory.tenants().await?.is_empty()
    {
        return Ok(());
    }
    let seeded = seed::seed(directory).await?;
    tracing::info!(
        tenants = seeded.tenants,
        users = seeded.users,
        password = seed::DEMO_PASSWORD,
        "empty embedded store: loaded the demo tenants (sign in as e.g. dispatcher@lgm.example)"
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
