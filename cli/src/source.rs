//! Where journeys are read from: a device store file, or a server (URL + token).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use automerge::ActorId;
use crewsync_core::audit::JourneyTrail;
use crewsync_core::document::JourneyDocument;
use crewsync_core::ids::JourneyId;
use crewsync_core::{DeviceStore, StoreOptions};
use serde::Deserialize;

use crate::error::CliError;

/// A replica of journeys the CLI can read.
pub enum Source {
    Store {
        path: PathBuf,
        store: Arc<DeviceStore>,
    },
    Server(Server),
}

/// A crewsync server, read as a signed-in user.
pub struct Server {
    base: String,
    token: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// A refused or held change, from either side.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Quarantined {
    pub journey: JourneyId,
    pub change: String,
    pub kind: String,
    pub reason: String,
    /// Milliseconds since the epoch: when the device learned of the refusal, or
    /// when the server received the change.
    pub at_ms: i64,
}

impl Source {
    /// `store` is a device store file; `server` a base URL (with `token`).
    pub fn open(
        store: Option<&Path>,
        server: Option<&str>,
        token: Option<&str>,
    ) -> Result<Self, CliError> {
        match (store, server) {
            (Some(path), None) => Self::store(path),
            (None, Some(url)) => {
                let token = token.ok_or_else(|| {
                    CliError::Usage(
                        "--server needs a token: pass --token or set CREWSYNC_TOKEN".into(),
                    )
                })?;
                Ok(Self::Server(Server::new(url, token)?))
            }
            (Some(_), Some(_)) => Err(CliError::Usage(
                "give either --store or --server, not both".into(),
            )),
            (None, None) => Err(CliError::Usage(
                "say where to read: --store FILE (a device store) or --server URL".into(),
            )),
        }
    }

    /// A replica named by one word: `http(s)://…` is a server, anything else a
    /// store file (for `diff A B`).
    pub fn named(name: &str, token: Option<&str>) -> Result<Self, CliError> {
        if name.starts_with("http://") || name.starts_with("https://") {
            Self::open(None, Some(name), token)
        } else {
            Self::open(Some(Path::new(name)), None, None)
        }
    }

    fn store(path: &Path) -> Result<Self, CliError> {
        // Opening creates a missing file: refuse first, so a typo is an error
        // instead of a new empty store.
        let meta = std::fs::metadata(path).map_err(|e| CliError::BadPath {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if !meta.is_file() {
            return Err(CliError::BadPath {
                path: path.to_path_buf(),
                reason: "not a file".into(),
            });
        }
        let mut header = [0u8; 16];
        let read = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut header))
            .map_err(|e| CliError::BadPath {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        if read < 16 || &header != b"SQLite format 3\0" {
            return Err(CliError::BadPath {
                path: path.to_path_buf(),
                reason: "not a crewsync device store (not an SQLite file)".into(),
            });
        }
        let store = DeviceStore::open(path, StoreOptions::default())?;
        Ok(Self::Store {
            path: path.to_path_buf(),
            store,
        })
    }

    /// The store, for commands that write (`conflicts restore`).
    pub fn device_store(&self) -> Option<&Arc<DeviceStore>> {
        match self {
            Self::Store { store, .. } => Some(store),
            Self::Server(_) => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Store { path, .. } => path.display().to_string(),
            Self::Server(server) => server.base.clone(),
        }
    }

    /// The journeys to look at: `only` if given, else every journey the store
    /// holds, or the server's journeys of today for the signed-in user.
    pub fn journeys(&self, only: &[JourneyId]) -> Result<Vec<JourneyId>, CliError> {
        if !only.is_empty() {
            return Ok(only.to_vec());
        }
        match self {
            Self::Store { store, .. } => Ok(store.journey_ids()?),
            Self::Server(server) => server.todays_journeys(),
        }
    }

    /// The replica's copy of `journey`.
    pub fn document(&self, journey: JourneyId) -> Result<JourneyDocument, CliError> {
        match self {
            Self::Store { store, .. } => {
                let known = store.journey_ids()?;
                if !known.contains(&journey) {
                    return Err(CliError::NotFound(format!(
                        "journey {journey} is not in {}",
                        self.describe()
                    )));
                }
                Ok(store.with_document(journey, |doc| {
                    JourneyDocument::load(journey, Some(&doc.save()), Vec::new(), ActorId::random())
                })?)
            }
            Self::Server(server) => server.document(journey),
        }
    }

    /// When the server received each change of `journey` (hex hash → ms), from
    /// its audit trail; empty for a store, which has no server times.
    pub fn server_times(&self, journey: JourneyId) -> Result<HashMap<String, i64>, CliError> {
        match self {
            Self::Store { .. } => Ok(HashMap::new()),
            Self::Server(server) => server.server_times(journey),
        }
    }

    pub fn quarantine(&self, journey: JourneyId) -> Result<Vec<Quarantined>, CliError> {
        match self {
            Self::Store { store, .. } => Ok(store
                .rejected_changes(journey)?
                .into_iter()
                .map(|r| Quarantined {
                    journey,
                    change: r.hash.to_string(),
                    kind: "rejected".into(),
                    reason: r.reason,
                    at_ms: r.rejected_at,
                })
                .collect()),
            Self::Server(server) => server.quarantine(journey),
        }
    }

    pub fn server(&self) -> Option<&Server> {
        match self {
            Self::Server(server) => Some(server),
            Self::Store { .. } => None,
        }
    }
}

#[derive(Deserialize)]
struct Summary {
    id: JourneyId,
}

#[derive(Deserialize)]
struct ServerQuarantined {
    change: String,
    kind: String,
    reason: String,
    received_at: i64,
}

impl Server {
    fn new(base: &str, token: &str) -> Result<Self, CliError> {
        let parsed = reqwest::Url::parse(base).map_err(|e| {
            CliError::Usage(format!(
                "{base:?} is not a server URL ({e}); expected e.g. http://127.0.0.1:8080"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CliError::Usage(format!(
                "{base:?}: the server URL must start with http:// or https://"
            )));
        }
        if token.trim().is_empty() || token.split('.').count() != 3 {
            return Err(CliError::Usage(
                "the token is not a JWT (three dot-separated parts): sign in and pass the access token"
                    .into(),
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Other(format!("cannot start the HTTP runtime: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| CliError::Other(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
            runtime,
        })
    }

    /// GETs `path`; the body on 2xx, a clear error otherwise.
    pub fn get(&self, path: &str) -> Result<Vec<u8>, CliError> {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let response = self
                .http
                .get(&url)
                .bearer_auth(&self.token)
                .send()
                .await
                .map_err(|e| CliError::Unreachable(format!("{}: {e}", self.base)))?;
            let status = response.status();
            let body = response
                .bytes()
                .await
                .map_err(|e| CliError::Unreachable(format!("{}: {e}", self.base)))?;
            let text = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            match status.as_u16() {
                200..=299 => Ok(body.to_vec()),
                401 => Err(CliError::Auth(format!(
                    "the server refused the token ({}): sign in again",
                    text()
                ))),
                403 => Err(CliError::Auth(format!(
                    "not allowed for this user: {}",
                    text()
                ))),
                404 => Err(CliError::NotFound(format!("{path}: {}", text()))),
                _ => Err(CliError::Other(format!("{url}: {status}: {}", text()))),
            }
        })
    }

    pub fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let body = self.get(path)?;
        serde_json::from_slice(&body)
            .map_err(|e| CliError::Other(format!("unreadable answer from {path}: {e}")))
    }

    fn todays_journeys(&self) -> Result<Vec<JourneyId>, CliError> {
        let today = chrono::Utc::now().date_naive();
        let list: Vec<Summary> = self.get_json(&format!("/v1/journeys?date={today}"))?;
        Ok(list.into_iter().map(|s| s.id).collect())
    }

    fn document(&self, journey: JourneyId) -> Result<JourneyDocument, CliError> {
        let bytes = self.get(&format!("/v1/journeys/{journey}/document"))?;
        Ok(JourneyDocument::load(
            journey,
            Some(&bytes),
            Vec::new(),
            ActorId::random(),
        )?)
    }

    pub fn trail(&self, journey: JourneyId) -> Result<JourneyTrail, CliError> {
        self.get_json(&format!("/v1/journeys/{journey}/audit"))
    }

    fn server_times(&self, journey: JourneyId) -> Result<HashMap<String, i64>, CliError> {
        Ok(self
            .trail(journey)?
            .entries
            .into_iter()
            .filter_map(|entry| {
                let hash = entry.diff.get("change")?.as_str()?.to_owned();
                Some((hash, entry.server_time))
            })
            .collect())
    }

    fn quarantine(&self, journey: JourneyId) -> Result<Vec<Quarantined>, CliError> {
        let held: Vec<ServerQuarantined> =
            self.get_json(&format!("/v1/journeys/{journey}/quarantine"))?;
        Ok(held
            .into_iter()
            .map(|q| Quarantined {
                journey,
                change: q.change,
                kind: q.kind,
                reason: q.reason,
                at_ms: q.received_at,
            })
            .collect())
    }
}
