//! `crewsync audit verify`: checks a tenant's or a journey's hash chain on the
//! client, naming the first broken entry; a head kept from an earlier run
//! (`--head-file`) also catches a truncated chain.

use std::path::Path;

use crewsync_core::audit::{AuditPage, Broken, ChainHead, ChainVerifier, Verified, verify_trail};
use crewsync_core::ids::JourneyId;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::error::CliError;
use crate::output::Output;
use crate::source::Server;

const PAGE: u32 = 1000;

#[derive(Serialize)]
struct Report {
    ok: bool,
    scope: String,
    entries: u64,
    head: Option<ChainHead>,
    broken: Option<Broken>,
}

pub fn verify(
    server: &Server,
    journey: Option<JourneyId>,
    head_file: Option<&Path>,
    out: Output,
) -> Result<(), CliError> {
    let held = match head_file {
        Some(path) if path.exists() => Some(read_head(path)?),
        _ => None,
    };
    let (scope, result) = match journey {
        Some(journey) => (
            format!("journey {journey}"),
            verify_journey(server, journey, held)?,
        ),
        None => ("tenant chain".to_owned(), verify_tenant(server, held, out)?),
    };
    let report = match &result {
        Ok(verified) => Report {
            ok: true,
            scope,
            entries: verified.entries,
            head: verified.head,
            broken: None,
        },
        Err(broken) => Report {
            ok: false,
            scope,
            entries: 0,
            head: None,
            broken: Some(broken.clone()),
        },
    };
    if out.json {
        out.json(&report)?;
    }
    match result {
        Ok(verified) => {
            if let (Some(path), Some(head)) = (head_file, verified.head) {
                write_head(path, &head)?;
            }
            if !out.json {
                println!(
                    "{}: {} entries verified, head {}",
                    report.scope,
                    verified.entries,
                    verified.head.map_or("none".into(), |h| format!(
                        "{} {}",
                        h.seq,
                        h.hash.to_hex()
                    ))
                );
            }
            Ok(())
        }
        Err(broken) => Err(CliError::Found(format!("{}: {broken}", report.scope))),
    }
}

fn verify_journey(
    server: &Server,
    journey: JourneyId,
    held: Option<ChainHead>,
) -> Result<Result<Verified, Broken>, CliError> {
    let trail = server.trail(journey)?;
    // The held head, if older than the server's, must still be in the trail.
    if let Some(held) = held {
        let kept = trail
            .entries
            .iter()
            .any(|e| e.seq == held.seq && e.hash == held.hash);
        if !kept {
            return Ok(Err(Broken {
                seq: held.seq,
                reason: format!(
                    "the trail no longer holds entry {} that the head you kept names (rewritten or truncated?)",
                    held.seq
                ),
            }));
        }
    }
    Ok(verify_trail(trail.entries, trail.head))
}

fn verify_tenant(
    server: &Server,
    held: Option<ChainHead>,
    out: Output,
) -> Result<Result<Verified, Broken>, CliError> {
    let first: AuditPage = server.get_json(&format!("/v1/audit?after=0&limit={PAGE}"))?;
    // The head kept from before, if any, must be in the chain as it was kept
    // (and the chain must reach it); otherwise the server's own head.
    let target = held.or(first.head);
    let end = first
        .head
        .map_or(0, |h| h.seq)
        .max(held.map_or(0, |h| h.seq));
    let progress = if out.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(end)
    };
    progress.set_style(
        ProgressStyle::with_template("verifying {pos}/{len} entries {bar:30}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut verifier = ChainVerifier::new(target);
    let mut page = first;
    // Bounded: each page moves past its last entry, and the chain ends.
    loop {
        for entry in &page.entries {
            if entry.seq > end {
                break;
            }
            if let Err(broken) = verifier.push(entry) {
                progress.finish_and_clear();
                return Ok(Err(broken));
            }
            progress.inc(1);
        }
        let last = page.entries.last().map(|e| e.seq);
        match last {
            Some(last) if page.more && last < end => {
                page = server.get_json(&format!("/v1/audit?after={last}&limit={PAGE}"))?;
            }
            _ => break,
        }
    }
    progress.finish_and_clear();
    Ok(verifier.finish())
}

fn read_head(path: &Path) -> Result<ChainHead, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::BadPath {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| CliError::BadPath {
        path: path.to_path_buf(),
        reason: format!("not a chain head kept by `crewsync audit verify`: {e}"),
    })
}

fn write_head(path: &Path, head: &ChainHead) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(head)
        .map_err(|e| CliError::Other(format!("cannot write the head: {e}")))?;
    std::fs::write(path, text).map_err(|e| CliError::BadPath {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
