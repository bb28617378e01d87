//! GPS points packed into batches.
//!
//! A crew device records a fix every ~10 s, ≈4,300 a working day. Stored one map object
//! per point, that is 4,300 changes and ~25 operations each in the journey document;
//! automerge's memory grows with changes and operations, not bytes. A batch is one
//! map object holding the points as one MessagePack byte string: a day becomes ~150
//! changes. Points inside a batch are opaque to the CRDT, which is fine: a batch is
//! written once by one device and never edited, so there is nothing to merge inside it.
//! The bench (`cargo bench -p crewsync-core --bench device`) measures both layouts.

use crate::error::{Error, Result};
use crate::ids::JourneyId;
use crate::model::GpsPoint;

/// Points per batch when the store flushes its durable GPS buffer (≈5 min at one fix per 10 s).
pub const BATCH_SIZE: usize = 30;

/// Packs points as MessagePack (each point an array: lat, lon, accuracy, time).
pub fn encode(points: &[GpsPoint]) -> Result<Vec<u8>> {
    rmp_serde::to_vec(points)
        .map_err(|e| Error::InvalidInput(format!("cannot encode GPS points: {e}")))
}

pub fn decode(journey: JourneyId, bytes: &[u8]) -> Result<Vec<GpsPoint>> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::CorruptDocument {
        journey: journey.to_string(),
        reason: format!("GPS batch does not decode: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    #[test]
    fn a_batch_round_trips_exactly() {
        let points: Vec<GpsPoint> = (0..BATCH_SIZE)
            .map(|i| GpsPoint {
                lat: 43.65 + i as f64 * 1e-4,
                lon: -79.38,
                accuracy_m: if i % 2 == 0 { Some(4.5) } else { None },
                at: Timestamp(1_700_000_000_000 + i as i64 * 10_000),
            })
            .collect();
        let bytes = encode(&points).unwrap();
        assert_eq!(decode(JourneyId::new(), &bytes).unwrap(), points);
        // Compact: well under the ~60 bytes a point costs as a JSON object.
        assert!(bytes.len() < points.len() * 40, "{} bytes", bytes.len());
    }

    #[test]
    fn garbage_is_a_document_error_not_a_panic() {
        let err = decode(JourneyId::new(), &[0xc1, 0xff, 0x00]).unwrap_err();
        assert!(matches!(err, Error::CorruptDocument { .. }));
    }
}
