//! A signature drawn on the screen, rendered as a deterministic PNG: the same
//! strokes always give byte-identical bytes (integer rasterizing, fixed PNG
//! settings, no timestamps or text chunks), so the PNG's SHA-256 recorded in the
//! journey can be recomputed from the strokes months later.

use std::io::Cursor;

use image::ImageEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{GpsPoint, SignerRole, StepNumber, Timestamp};

/// One sampled point of a stroke, in canvas pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StrokePoint {
    pub x: f32,
    pub y: f32,
    /// Device time of the sample.
    pub at: Timestamp,
    /// 0..=1 where the screen reports it; widens the line.
    pub pressure: Option<f32>,
}

/// One continuous stroke (finger down to finger up).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stroke {
    pub points: Vec<StrokePoint>,
}

/// What the app hands over when the signer has signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureCapture {
    pub signer_name: String,
    pub signer_role: SignerRole,
    /// What was signed (e.g. `bill_of_lading`), and the SHA-256 of the version shown.
    pub document: String,
    pub document_sha256: String,
    /// The signer agreed to sign electronically; required.
    pub consent: bool,
    /// The drawing pad's size in pixels; points are inside it.
    pub canvas_width: u32,
    pub canvas_height: u32,
    pub strokes: Vec<Stroke>,
    pub step: Option<StepNumber>,
    pub gps: Option<GpsPoint>,
}

/// A refusal to sign: recorded with its reason, no PNG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureRefusal {
    pub signer_name: String,
    pub signer_role: SignerRole,
    pub document: String,
    pub document_sha256: String,
    pub reason: String,
    pub step: Option<StepNumber>,
    pub gps: Option<GpsPoint>,
}

/// Largest accepted canvas side.
pub const MAX_CANVAS: u32 = 4096;
/// Ink radius in pixels at pressure 0.5 (or when no pressure is reported).
const RADIUS: f32 = 1.5;

/// Checks the text fields every signature record carries.
pub fn check_document(name: &str, document: &str, document_sha256: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::InvalidInput("the signer's name is empty".into()));
    }
    if document.trim().is_empty() {
        return Err(Error::InvalidInput(
            "the signed document is not named".into(),
        ));
    }
    let hex = document_sha256.len() == 64
        && document_sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex {
        return Err(Error::InvalidInput(format!(
            "document_sha256 {document_sha256:?} is not a lowercase hex SHA-256"
        )));
    }
    Ok(())
}

/// Renders strokes as an 8-bit grayscale PNG: black ink on white.
pub fn render_png(width: u32, height: u32, strokes: &[Stroke]) -> Result<Vec<u8>> {
    if !(1..=MAX_CANVAS).contains(&width) || !(1..=MAX_CANVAS).contains(&height) {
        return Err(Error::InvalidInput(format!(
            "signature canvas {width}×{height} is outside 1..={MAX_CANVAS} pixels a side"
        )));
    }
    if strokes.iter().all(|s| s.points.is_empty()) {
        return Err(Error::InvalidInput("the signature has no strokes".into()));
    }
    for point in strokes.iter().flat_map(|s| &s.points) {
        let inside = point.x.is_finite()
            && point.y.is_finite()
            && (0.0..=width as f32).contains(&point.x)
            && (0.0..=height as f32).contains(&point.y)
            && point.pressure.is_none_or(|p| (0.0..=1.0).contains(&p));
        if !inside {
            return Err(Error::InvalidInput(format!(
                "stroke point ({}, {}) is outside the {width}×{height} canvas or has a bad pressure",
                point.x, point.y
            )));
        }
    }
    let mut canvas = vec![255u8; width as usize * height as usize];
    for stroke in strokes {
        let mut previous: Option<&StrokePoint> = None;
        for point in &stroke.points {
            match previous {
                None => dab(&mut canvas, width, height, point.x, point.y, radius(point)),
                Some(from) => segment(&mut canvas, width, height, from, point),
            }
            previous = Some(point);
        }
    }
    let mut png = Cursor::new(Vec::new());
    PngEncoder::new_with_quality(&mut png, CompressionType::Best, FilterType::NoFilter)
        .write_image(&canvas, width, height, image::ExtendedColorType::L8)
        .map_err(|e| Error::InvalidInput(format!("signature PNG: {e}")))?;
    Ok(png.into_inner())
}

fn radius(point: &StrokePoint) -> f32 {
    RADIUS * (0.5 + point.pressure.unwrap_or(0.5))
}

/// A line from `a` to `b`: dabs every half pixel, the radius interpolated.
fn segment(canvas: &mut [u8], width: u32, height: u32, a: &StrokePoint, b: &StrokePoint) {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let steps = ((dx.abs().max(dy.abs())) * 2.0).ceil().max(1.0) as u32;
    for i in 1..=steps {
        let t = i as f32 / steps as f32;
        let r = radius(a) + (radius(b) - radius(a)) * t;
        dab(canvas, width, height, a.x + dx * t, a.y + dy * t, r);
    }
}

/// A filled disc of ink.
fn dab(canvas: &mut [u8], width: u32, height: u32, cx: f32, cy: f32, r: f32) {
    let (x0, x1) = (
        (cx - r).floor().max(0.0) as u32,
        ((cx + r).ceil() as u32).min(width - 1),
    );
    let (y0, y1) = (
        (cy - r).floor().max(0.0) as u32,
        ((cy + r).ceil() as u32).min(height - 1),
    );
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (px, py) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            if px * px + py * py <= r * r {
                canvas[y as usize * width as usize + x as usize] = 0;
            }
        }
    }
}
