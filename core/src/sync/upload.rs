//! The device's side of the resumable media upload protocol (server:
//! `crewsync_server::media`): create or look up the upload, ask the server for its
//! offset, send chunks from there with per-chunk SHA-256, complete.
//!
//! The server owns the offset: after any failure the next call to [`upload`]
//! starts from wherever the server says it is, so a connection cut, a killed app
//! or a lost acknowledgement costs at most one chunk. A 409 (the server is
//! elsewhere than we thought) resyncs to the offset it names. The file is read
//! one chunk at a time, never whole. Transport failures are [`Error::Network`]:
//! the caller (the media queue) retries with backoff; refusals are
//! [`Error::Upload`] with the server's code.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::error::{Error, Result};
use crate::ids::{JourneyId, MediaId};

/// Header carrying an upload's offset.
pub const UPLOAD_OFFSET: &str = "upload-offset";
/// Header carrying a chunk's SHA-256 (hex).
pub const CHUNK_SHA256: &str = "chunk-sha256";

/// How many times one call follows the server's offset (409) or restarts an
/// expired upload before giving up; each costs at most one chunk.
const MAX_RESYNCS: u32 = 64;

/// What an upload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadKind {
    Photo,
    Video,
    Signature,
    /// The device's thumbnail of the photo (or video) with the same media id.
    Thumbnail,
}

/// One file to upload; its entry (the journey's `MediaRef`) must have been synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadItem {
    pub media_id: MediaId,
    pub journey_id: JourneyId,
    pub kind: UploadKind,
    pub content_type: String,
    pub path: PathBuf,
    pub size: u64,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
}

/// Progress of one upload, in bytes the server acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadProgress {
    pub acked: u64,
    pub total: u64,
}

/// A finished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOutcome {
    pub media_id: MediaId,
    pub sha256: String,
    pub size: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// The offset this call started sending from (0 for a fresh upload).
    pub resumed_from: u64,
    /// Chunks this call sent and the server acknowledged.
    pub chunks: u32,
    /// Times this call followed the server's offset after a 409.
    pub resyncs: u32,
}

#[derive(Debug, Serialize)]
struct CreateBody<'a> {
    media_id: MediaId,
    journey_id: JourneyId,
    kind: UploadKind,
    content_type: &'a str,
    size: u64,
    sha256: &'a str,
}

#[derive(Debug, Deserialize)]
struct UploadState {
    upload_id: uuid::Uuid,
    offset: u64,
    max_chunk: u64,
    status: String,
}

#[derive(Debug, Deserialize)]
struct Completed {
    media_id: MediaId,
    sha256: String,
    size: u64,
    width: Option<u32>,
    height: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    message: String,
}

fn network(e: reqwest::Error) -> Error {
    Error::Network(e.to_string())
}

/// A refusal, from the server's JSON `{error, message}` (or its text).
async fn refusal(response: reqwest::Response) -> Error {
    let status = response.status().as_u16();
    if status == 401 || (status == 403 && response.headers().contains_key("www-authenticate")) {
        let text = response.text().await.unwrap_or_default();
        return Error::Unauthorized(text);
    }
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => Error::Upload {
            status,
            code: body.error,
            message: body.message,
        },
        Err(_) => Error::Upload {
            status,
            code: "http_error".into(),
            message: text,
        },
    }
}

fn offset_of(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get(UPLOAD_OFFSET)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Uploads `item` to the server at `base_url` as the bearer of `token`, resuming
/// from the server's offset; `progress` hears each acknowledged chunk.
pub async fn upload(
    client: &reqwest::Client,
    base_url: &str,
    token: &str,
    item: &UploadItem,
    progress: &(dyn Fn(UploadProgress) + Send + Sync),
) -> Result<UploadOutcome> {
    let base = base_url.trim_end_matches('/');
    let mut file = tokio::fs::File::open(&item.path).await?;
    let on_disk = file.metadata().await?.len();
    if on_disk != item.size {
        return Err(Error::InvalidInput(format!(
            "{} holds {on_disk} bytes, not the {} its entry names",
            item.path.display(),
            item.size
        )));
    }
    let mut resyncs = 0u32;
    let mut chunks = 0u32;
    let mut state = create(client, base, token, item).await?;
    let complete_url = |id: uuid::Uuid| format!("{base}/v1/media/uploads/{id}/complete");
    if state.status == "complete" {
        return finish(
            client,
            &complete_url(state.upload_id),
            token,
            state.offset,
            0,
            0,
        )
        .await;
    }
    let max_chunk = usize::try_from(state.max_chunk.max(1)).unwrap_or(usize::MAX);
    let mut buffer = vec![0u8; max_chunk.min(usize::try_from(item.size).unwrap_or(usize::MAX))];
    let mut offset = head(client, base, token, state.upload_id).await?;
    let resumed_from = offset;
    loop {
        while offset < item.size {
            let url = format!("{base}/v1/media/uploads/{}", state.upload_id);
            let want = usize::try_from(item.size - offset)
                .unwrap_or(usize::MAX)
                .min(max_chunk);
            file.seek(std::io::SeekFrom::Start(offset)).await?;
            file.read_exact(&mut buffer[..want]).await?;
            let chunk = &buffer[..want];
            let digest = hex_digest(chunk);
            let response = client
                .patch(&url)
                .bearer_auth(token)
                .header(UPLOAD_OFFSET, offset)
                .header(CHUNK_SHA256, digest)
                .header("content-type", "application/offset+octet-stream")
                .body(chunk.to_vec())
                .send()
                .await
                .map_err(network)?;
            match response.status().as_u16() {
                204 => {
                    offset = offset_of(&response).ok_or_else(|| {
                        Error::NetworkUnusable("a chunk's answer without Upload-Offset".into())
                    })?;
                    chunks += 1;
                    progress(UploadProgress {
                        acked: offset,
                        total: item.size,
                    });
                }
                409 if resyncs < MAX_RESYNCS => {
                    resyncs += 1;
                    offset = match offset_of(&response) {
                        Some(server) => server,
                        None => head(client, base, token, state.upload_id).await?,
                    };
                }
                404 if resyncs < MAX_RESYNCS => {
                    // Expired: the same call starts it again from the server's word.
                    resyncs += 1;
                    state = create(client, base, token, item).await?;
                    offset = state.offset;
                }
                _ => return Err(refusal(response).await),
            }
        }
        let response = client
            .post(complete_url(state.upload_id))
            .bearer_auth(token)
            .send()
            .await
            .map_err(network)?;
        match response.status().as_u16() {
            200 => {
                let done: Completed = response.json().await.map_err(|e| {
                    Error::NetworkUnusable(format!("unreadable completion answer: {e}"))
                })?;
                return Ok(outcome(done, resumed_from, chunks, resyncs));
            }
            409 if resyncs < MAX_RESYNCS => {
                resyncs += 1;
                offset = match offset_of(&response) {
                    Some(server) => server,
                    None => head(client, base, token, state.upload_id).await?,
                };
            }
            _ => return Err(refusal(response).await),
        }
    }
}

fn hex_digest(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

fn outcome(done: Completed, resumed_from: u64, chunks: u32, resyncs: u32) -> UploadOutcome {
    UploadOutcome {
        media_id: done.media_id,
        sha256: done.sha256,
        size: done.size,
        width: done.width,
        height: done.height,
        resumed_from,
        chunks,
        resyncs,
    }
}

async fn create(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    item: &UploadItem,
) -> Result<UploadState> {
    let response = client
        .post(format!("{base}/v1/media/uploads"))
        .bearer_auth(token)
        .json(&CreateBody {
            media_id: item.media_id,
            journey_id: item.journey_id,
            kind: item.kind,
            content_type: &item.content_type,
            size: item.size,
            sha256: &item.sha256,
        })
        .send()
        .await
        .map_err(network)?;
    if !response.status().is_success() {
        return Err(refusal(response).await);
    }
    response
        .json()
        .await
        .map_err(|e| Error::NetworkUnusable(format!("unreadable upload answer: {e}")))
}

async fn head(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    upload: uuid::Uuid,
) -> Result<u64> {
    let response = client
        .head(format!("{base}/v1/media/uploads/{upload}"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(network)?;
    if !response.status().is_success() {
        return Err(refusal(response).await);
    }
    offset_of(&response)
        .ok_or_else(|| Error::NetworkUnusable("an upload's HEAD without Upload-Offset".into()))
}

async fn finish(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    resumed_from: u64,
    chunks: u32,
    resyncs: u32,
) -> Result<UploadOutcome> {
    let response = client
        .post(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(network)?;
    if !response.status().is_success() {
        return Err(refusal(response).await);
    }
    let done: Completed = response
        .json()
        .await
        .map_err(|e| Error::NetworkUnusable(format!("unreadable completion answer: {e}")))?;
    Ok(outcome(done, resumed_from, chunks, resyncs))
}
