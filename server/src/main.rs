//! `crewsync-server`: binds, serves, and shuts down gracefully on Ctrl-C / SIGTERM.

use std::process::ExitCode;

use crewsync_server::Server;
use crewsync_server::config::Config;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::from_args_and_env();
    let server = match Server::open(&config).await {
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
