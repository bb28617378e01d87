//! What the camera wrote into the file: the capture time and GPS position (EXIF,
//! through `kamadak-exif`). Untrusted and optional: a file without EXIF, or with
//! unreadable EXIF, simply has none; it is never an error.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use chrono::{DateTime, NaiveDateTime, TimeZone};
use exif::{In, Tag, Value};

use crate::model::{GpsPoint, Timestamp};

/// EXIF facts of one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExifFacts {
    /// `DateTimeOriginal` as written (`YYYY:MM:DD HH:MM:SS`), plus
    /// `OffsetTimeOriginal` when present.
    pub time: Option<String>,
    pub offset: Option<String>,
    /// Latitude and longitude in degrees.
    pub gps: Option<(f64, f64)>,
}

impl ExifFacts {
    /// The capture instant: with the EXIF offset when written, else read in
    /// `timezone` (the journey's location), as cameras write local time.
    pub fn captured_at(&self, timezone: &str) -> Option<Timestamp> {
        let time = self.time.as_deref()?;
        let naive = NaiveDateTime::parse_from_str(time.trim(), "%Y:%m:%d %H:%M:%S").ok()?;
        if let Some(offset) = self.offset.as_deref() {
            let text = format!("{} {}", naive.format("%Y-%m-%dT%H:%M:%S"), offset.trim());
            if let Ok(at) = DateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S %:z") {
                return Some(Timestamp(at.timestamp_millis()));
            }
        }
        let tz: chrono_tz::Tz = timezone.parse().ok()?;
        let at = tz.from_local_datetime(&naive).earliest()?;
        Some(Timestamp(at.timestamp_millis()))
    }

    /// The EXIF position as a GPS point stamped with `at`, if it is in range.
    pub fn gps_point(&self, at: Timestamp) -> Option<GpsPoint> {
        let (lat, lon) = self.gps?;
        let point = GpsPoint {
            lat,
            lon,
            accuracy_m: None,
            at,
        };
        point.validate().ok().map(|()| point)
    }
}

/// Reads the EXIF of a JPEG, PNG or WebP file; empty facts if there is none.
pub fn read(path: &Path) -> ExifFacts {
    let Ok(file) = File::open(path) else {
        return ExifFacts::default();
    };
    let Ok(exif) = exif::Reader::new().read_from_container(&mut BufReader::new(file)) else {
        return ExifFacts::default();
    };
    let ascii = |tag: Tag| -> Option<String> {
        match &exif.get_field(tag, In::PRIMARY)?.value {
            Value::Ascii(parts) => parts.first().map(|bytes| {
                String::from_utf8_lossy(bytes)
                    .trim_end_matches('\0')
                    .to_owned()
            }),
            _ => None,
        }
    };
    let degrees = |tag: Tag, reference: Tag, negative: &str| -> Option<f64> {
        let Value::Rational(parts) = &exif.get_field(tag, In::PRIMARY)?.value else {
            return None;
        };
        let part = |i: usize| parts.get(i).map(|r| r.to_f64()).filter(|v| v.is_finite());
        let value = part(0)? + part(1).unwrap_or(0.0) / 60.0 + part(2).unwrap_or(0.0) / 3600.0;
        let sign = match ascii(reference) {
            Some(r) if r.eq_ignore_ascii_case(negative) => -1.0,
            _ => 1.0,
        };
        Some(sign * value)
    };
    let gps = degrees(Tag::GPSLatitude, Tag::GPSLatitudeRef, "S").zip(degrees(
        Tag::GPSLongitude,
        Tag::GPSLongitudeRef,
        "W",
    ));
    ExifFacts {
        time: ascii(Tag::DateTimeOriginal).or_else(|| ascii(Tag::DateTime)),
        offset: ascii(Tag::OffsetTimeOriginal),
        gps,
    }
}

/// The EXIF Orientation tag (1–8: how the camera was held) of a JPEG, PNG or
/// WebP file, if it has a valid one. The thumbnail is turned by it; the original
/// keeps its bytes and its tag.
pub fn orientation(path: &Path) -> Option<u8> {
    let file = File::open(path).ok()?;
    let exif = exif::Reader::new()
        .read_from_container(&mut BufReader::new(file))
        .ok()?;
    let value = exif
        .get_field(Tag::Orientation, In::PRIMARY)?
        .value
        .get_uint(0)?;
    u8::try_from(value).ok().filter(|v| (1..=8).contains(v))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn capture_time_uses_the_offset_or_the_journey_timezone() {
        let mut facts = ExifFacts {
            time: Some("2026:05:01 09:30:00".into()),
            offset: Some("-04:00".into()),
            gps: None,
        };
        let with_offset = facts.captured_at("Europe/Paris").unwrap();
        assert_eq!(with_offset.to_string(), "2026-05-01T13:30:00.000Z");
        facts.offset = None;
        let in_toronto = facts.captured_at("America/Toronto").unwrap();
        assert_eq!(in_toronto, with_offset, "Toronto is UTC-4 in May");
        facts.time = Some("garbage".into());
        assert_eq!(facts.captured_at("America/Toronto"), None);
    }
}
