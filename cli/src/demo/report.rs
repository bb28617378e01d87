//! What the demo checks and prints at the end of the day: every replica against the
//! server, the conflicts and rejections (through the CLI's own commands), and every
//! delivered file against the bytes its tablet captured.

use std::collections::BTreeMap;

use crewsync_core::ids::JourneyId;
use sha2::{Digest, Sha256};

use super::DemoError;
use super::office::Delivered;
use super::story::Day;
use crate::commands;
use crate::output::Output;
use crate::source::Source;

/// The media check of one journey.
pub struct JourneyMedia {
    pub truck: String,
    /// Originals (photos, signatures) the journey names, and how many of them the
    /// server holds byte-identical.
    pub named: usize,
    pub identical: usize,
    pub thumbnails: usize,
    pub bytes: u64,
    /// Per uploading device, the order its files were stored in.
    pub orders: Vec<(String, Vec<String>)>,
    /// Problems found (missing, corrupt, out of order).
    pub problems: Vec<String>,
}

/// Downloads what the server holds for each journey and compares it with what the
/// tablets captured; checks each tablet's order: signatures before any thumbnail,
/// thumbnails before any original.
pub async fn check_media(day: &Day) -> Result<Vec<JourneyMedia>, DemoError> {
    let mut checked = Vec::new();
    let names: BTreeMap<String, String> = day
        .crews
        .iter()
        .chain(std::iter::once(&day.office_app))
        .map(|d| (d.store.device_id().to_string(), d.name.clone()))
        .collect();
    for (truck, journey) in &day.journeys {
        let named = day.office_app.store.journey(*journey)?.media;
        let delivered = day.board.delivered(*journey).await?;
        let mut report = JourneyMedia {
            truck: truck.clone(),
            named: named.len(),
            identical: 0,
            thumbnails: delivered.iter().filter(|d| d.kind == "thumbnail").count(),
            bytes: delivered.iter().map(|d| d.size).sum(),
            orders: Vec::new(),
            problems: Vec::new(),
        };
        for media in &named {
            let id = media.id.to_string();
            let Some(stored) = delivered
                .iter()
                .find(|d| d.media_id == id && d.kind != "thumbnail")
            else {
                report
                    .problems
                    .push(format!("{:?} {id} never arrived", media.kind));
                continue;
            };
            let bytes = day.board.media_bytes(&stored.media_id).await?;
            let sha = hex::encode(Sha256::digest(&bytes));
            if Some(&sha) == media.sha256.as_ref() && sha == stored.sha256 {
                report.identical += 1;
            } else {
                report
                    .problems
                    .push(format!("{id}: the server's bytes differ from the tablet's"));
            }
        }
        for (device, files) in by_device(&delivered) {
            let order: Vec<&str> = files.iter().map(|d| lane(&d.kind)).collect();
            if out_of_order(&order) {
                report.problems.push(format!(
                    "{} stored {} out of order",
                    names.get(&device).map_or(device.as_str(), String::as_str),
                    order.join(", ")
                ));
            }
            report
                .orders
                .push((names.get(&device).cloned().unwrap_or(device), runs(&order)));
        }
        checked.push(report);
    }
    Ok(checked)
}

fn by_device(delivered: &[Delivered]) -> BTreeMap<String, Vec<&Delivered>> {
    let mut grouped: BTreeMap<String, Vec<&Delivered>> = BTreeMap::new();
    for file in delivered {
        grouped
            .entry(file.device_id.clone())
            .or_default()
            .push(file);
    }
    for files in grouped.values_mut() {
        files.sort_by_key(|d| d.stored_at);
    }
    grouped
}

fn lane(kind: &str) -> &str {
    match kind {
        "signature" => "signature",
        "thumbnail" => "thumbnail",
        _ => "original",
    }
}

/// The queue's lanes: signatures, then thumbnails, then originals.
fn rank(lane: &str) -> u8 {
    match lane {
        "signature" => 0,
        "thumbnail" => 1,
        _ => 2,
    }
}

/// Whether a file of a later lane was stored before one of an earlier lane.
fn out_of_order(order: &[&str]) -> bool {
    order.windows(2).any(|w| rank(w[0]) > rank(w[1]))
}

/// "signature", "thumbnail", "thumbnail" → ["1 signature", "2 thumbnails"].
fn runs(order: &[&str]) -> Vec<String> {
    let mut runs: Vec<(String, usize)> = Vec::new();
    for lane in order {
        match runs.last_mut() {
            Some((last, n)) if last == lane => *n += 1,
            _ => runs.push(((*lane).to_owned(), 1)),
        }
    }
    runs.into_iter()
        .map(|(lane, n)| format!("{n} {lane}{}", if n == 1 { "" } else { "s" }))
        .collect()
}

/// Prints the end of the day; an error if a replica differs from the server or a
/// file is missing, corrupt or out of order.
pub fn print(day: &Day, media: &[JourneyMedia], url: &str) -> Result<(), DemoError> {
    let mut failures = Vec::new();
    let attempts: u32 = day.settled.iter().map(|(_, s)| s.rounds).sum();
    let retried: u32 = day.settled.iter().map(|(_, s)| s.failures).sum();
    println!(
        "reconnect   {} connections through the lossy link, {} of them reset, cut or their answer lost; \
         the link dropped {} times; {attempts} sync attempts, {retried} broken and retried",
        day.link.connections, day.link.faulted, day.link.drops
    );
    for refusal in &day.refused_on_device {
        println!("refused     on {refusal}");
    }
    let source = Source::open(None, Some(url), Some(&day.board.tokens.access_token))?;
    let journeys: Vec<JourneyId> = day.journeys.iter().map(|(_, j)| *j).collect();
    for (truck, journey) in &day.journeys {
        let server = source.document(*journey)?;
        let mut heads = server.heads();
        heads.sort();
        let mut replicas = 0;
        for device in day.crews.iter().chain(std::iter::once(&day.office_app)) {
            if !device.store.journey_ids()?.contains(journey) {
                continue;
            }
            replicas += 1;
            let mut theirs = device.store.heads(*journey)?;
            theirs.sort();
            if theirs != heads {
                failures.push(format!(
                    "{}'s copy of {truck} differs from the server's",
                    device.name
                ));
            }
        }
        let view = server.view()?;
        println!(
            "converged   {truck}: {replicas} device replicas and the server hold the same {} head(s); \
             truck {}, stage {}, {} notes, {} entries, {} GPS points, {} media",
            heads.len(),
            view.truck_number.as_deref().unwrap_or("—"),
            view.stage,
            view.notes.len(),
            view.entries.len(),
            view.gps_point_count,
            view.media.len()
        );
    }
    println!(
        "conflicts   the fields written concurrently, as `crewsync conflicts --server {url}` shows them:"
    );
    commands::conflicts::list(&source, &journeys, Output { json: false })?;
    println!("rejected    changes the server refused (`crewsync quarantine`):");
    commands::quarantine::run(&source, &journeys, Output { json: false })?;
    for journey in media {
        println!(
            "media       {}: {}/{} originals on the server byte-identical, {} thumbnails, {:.1} MB",
            journey.truck,
            journey.identical,
            journey.named,
            journey.thumbnails,
            journey.bytes as f64 / 1e6
        );
        for (device, order) in &journey.orders {
            println!(
                "            {device:<12} stored in this order: {}",
                order.join(" → ")
            );
        }
        failures.extend(journey.problems.iter().cloned());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        for failure in &failures {
            println!("FAILED      {failure}");
        }
        Err(DemoError::Failed(failures.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_order_is_checked_lane_by_lane() {
        assert!(!out_of_order(&[
            "signature",
            "thumbnail",
            "thumbnail",
            "original"
        ]));
        assert!(!out_of_order(&["thumbnail", "original", "original"]));
        // Controls: each way of breaking the order is caught.
        assert!(out_of_order(&["original", "signature"]));
        assert!(out_of_order(&["thumbnail", "signature", "original"]));
        assert!(out_of_order(&["signature", "original", "thumbnail"]));
    }

    #[test]
    fn runs_count_consecutive_lanes() {
        assert_eq!(
            runs(&["signature", "thumbnail", "thumbnail", "original"]),
            ["1 signature", "2 thumbnails", "1 original"]
        );
    }
}
