//! `crewsync-server`: binds, serves, and shuts down gracefully on Ctrl-C / SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "crewsync-server", version, about = "The crewsync sync server")]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "CREWSYNC_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("crewsync-server: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %args.listen, "listening");
    let state = crewsync_server::AppState {
        storage: std::sync::Arc::new(crewsync_server::storage::memory::MemoryStorage::new()),
    };
    let served = axum::serve(listener, crewsync_server::app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
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
