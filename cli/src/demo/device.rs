//! A tablet (or the office app) in the demo: its own device store and media
//! directory, signed in over HTTP, syncing through whatever link it is given.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crewsync_core::ids::UserId;
use crewsync_core::media::NetworkKind;
use crewsync_core::sync::runtime::{SyncClient, SyncConfig, SyncOutcome};
use crewsync_core::{DeviceStore, StoreOptions};

use super::DemoError;
use super::office::PASSWORD;

/// Sync attempts one device makes to settle before the demo gives up on it.
pub const MAX_ROUNDS: u32 = 200;

pub struct Device {
    pub name: String,
    pub user: UserId,
    pub store: Arc<DeviceStore>,
    pub sync: Arc<SyncClient>,
}

/// What settling one device took.
#[derive(Debug, Default, Clone, Copy)]
pub struct Settled {
    pub rounds: u32,
    /// Attempts the link broke (each retried).
    pub failures: u32,
    pub pushed: usize,
    pub received: usize,
}

impl Device {
    /// A fresh tablet in `root`, `email` signed in through `url`.
    pub async fn sign_in(
        root: &Path,
        label: &str,
        name: &str,
        email: &str,
        url: &str,
    ) -> Result<Self, DemoError> {
        let store = DeviceStore::open(
            root.join(format!("{label}.sqlite")),
            StoreOptions::default(),
        )?;
        let sync = SyncClient::with_config(Arc::clone(&store), url, config())?;
        let tokens = sync.sign_in(email, PASSWORD).await?;
        store.set_network(NetworkKind::Wifi)?;
        Ok(Self {
            name: name.to_owned(),
            user: tokens.user.id,
            store,
            sync,
        })
    }

    /// Syncs until nothing is left to push or upload and the server has nothing
    /// more, retrying what the link breaks; `tick` hears each attempt.
    pub async fn settle(&self, tick: &(dyn Fn() + Sync)) -> Result<Settled, DemoError> {
        let mut settled = Settled::default();
        while settled.rounds < MAX_ROUNDS {
            settled.rounds += 1;
            tick();
            match self.sync.sync_now().await {
                Ok(outcome) => {
                    add(&mut settled, &outcome);
                    let media = self.store.media_progress()?;
                    if outcome.pending == 0 && media.pending_items == 0 {
                        return Ok(settled);
                    }
                }
                Err(e) if transient(&e) => settled.failures += 1,
                Err(e) => return Err(e.into()),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(DemoError::Unsettled {
            device: self.name.clone(),
            rounds: MAX_ROUNDS,
        })
    }
}

/// Short limits: on the lossy link a lost answer costs this long.
pub fn config() -> SyncConfig {
    SyncConfig {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        ..SyncConfig::default()
    }
}

/// What a lossy link does: the next attempt may get through.
fn transient(error: &crewsync_core::Error) -> bool {
    use crewsync_core::Error;
    match error {
        Error::Network(_) | Error::NetworkUnusable(_) | Error::RateLimited { .. } => true,
        Error::Server { status, .. } => *status >= 500,
        _ => false,
    }
}

fn add(settled: &mut Settled, outcome: &SyncOutcome) {
    settled.pushed += outcome.pushed;
    settled.received += outcome.received;
}
