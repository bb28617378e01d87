//! What the demo's crews capture: real JPEG photos (made here, as a camera would
//! write them) and a customer's signature drawn as timed strokes.

use std::io::Cursor;

use crewsync_core::media::signature::{SignatureCapture, Stroke, StrokePoint};
use crewsync_core::model::{GpsPoint, SignerRole, StepNumber, Timestamp};
use image::{ImageFormat, Rgb, RgbImage};

use super::DemoError;

/// A `width`×`height` JPEG of a room-like scene, different for every `seed`.
pub fn photo(width: u32, height: u32, seed: u32) -> Result<Vec<u8>, DemoError> {
    let image = RgbImage::from_fn(width, height, |x, y| {
        let wall = (x * 255 / width.max(1)) as u8;
        let floor = (y * 255 / height.max(1)) as u8;
        // A little texture, so the JPEG is as large as a real photo's.
        let grain = (x.wrapping_mul(31) ^ y.wrapping_mul(17) ^ seed.wrapping_mul(97)) % 23;
        Rgb([
            wall.wrapping_add(grain as u8),
            floor,
            ((seed * 40) % 255) as u8,
        ])
    });
    let mut bytes = Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, ImageFormat::Jpeg)
        .map_err(|e| DemoError::Capture(e.to_string()))?;
    Ok(bytes.into_inner())
}

/// The customer signs the bill of lading on a 600×200 pad: two strokes.
pub fn customer_signature(name: &str, step: StepNumber, gps: GpsPoint) -> SignatureCapture {
    let start = Timestamp::now().millis();
    let stroke = |offset: f32, phase: f32| Stroke {
        points: (0..60u8)
            .map(|i| {
                let t = f32::from(i) / 59.0;
                StrokePoint {
                    x: 40.0 + offset + t * 240.0,
                    y: 100.0 + (t * 12.0 + phase).sin() * 45.0,
                    at: Timestamp(start + i64::from(i) * 12),
                    pressure: Some(0.4 + t * 0.3),
                }
            })
            .collect(),
    };
    SignatureCapture {
        signer_name: name.to_owned(),
        signer_role: SignerRole::Customer,
        document: "bill_of_lading".into(),
        // The SHA-256 of the bill of lading the customer was shown.
        document_sha256: "5f1d3a0c9b7e2f46a8c1d09e3b5a7c6f4e2d1b0a9c8e7f6d5c4b3a29180716f5".into(),
        consent: true,
        canvas_width: 600,
        canvas_height: 200,
        strokes: vec![stroke(0.0, 0.0), stroke(260.0, 1.3)],
        step: Some(step),
        gps: Some(gps),
    }
}
