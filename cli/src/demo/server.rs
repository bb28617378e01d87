//! The demo's server: the real crewsync server, in this process, on its embedded
//! store with the seed's demo tenants.

use std::net::SocketAddr;
use std::path::Path;

use crewsync_server::config::Config;
use crewsync_server::directory::Directory;
use crewsync_server::{Server, seed, storage};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::DemoError;

/// A running server; [`stop`](Self::stop) shuts it down gracefully.
pub struct DemoServer {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl DemoServer {
    /// Opens (or creates) the embedded store in `data_dir`, loads the demo tenants
    /// into a fresh one, and serves on `listen`.
    pub async fn start(data_dir: &Path, listen: SocketAddr) -> Result<Self, DemoError> {
        let config = Config {
            listen,
            data_dir: data_dir.to_path_buf(),
            ..Config::default()
        };
        let server = |e: &dyn std::fmt::Display| DemoError::Server(e.to_string());
        let opened = storage::open(None, data_dir)
            .await
            .map_err(|e| server(&e))?;
        let directory = Directory::new(opened.db.clone());
        if directory
            .tenants()
            .await
            .map_err(|e| server(&e))?
            .is_empty()
        {
            seed::seed(&directory).await.map_err(|e| server(&e))?;
        }
        let running = Server::with_storage(&config, opened.storage, opened.db)
            .await
            .map_err(|e| server(&e))?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| DemoError::Server(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| server(&e))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(running.serve(listener, async {
            let _ = stopped.await;
        }));
        Ok(Self { addr, stop, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn stop(self) -> Result<(), DemoError> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DemoError::Server(e.to_string())),
            Err(e) => Err(DemoError::Server(e.to_string())),
        }
    }
}
