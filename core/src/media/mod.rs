//! Media on the device: photos, videos and signatures, from capture to the upload
//! queue. Pure helpers here (no SQLite); the store (`store::media`) ties them to the
//! journey document and the queue in one transaction.
//!
//! - [`sniff`] — what a file is, from its magic bytes (never from its name);
//! - [`files`] — durable file writes: temp → fsync → rename → fsync the directory,
//!   SHA-256 and size computed while streaming;
//! - [`image_info`] — dimensions and decoding of untrusted images under explicit limits;
//! - [`thumbnail`] — the ~320 px JPEG thumbnail (JPEG: decoder-side DCT downscaling);
//! - [`exif`] — capture time and GPS the camera wrote into the file;
//! - [`signature`] — strokes → a deterministic PNG;
//! - [`queue`] — the upload queue's lanes, network policy and backoff (pure rules).

pub mod exif;
pub mod files;
pub mod image_info;
pub mod queue;
pub mod signature;
pub mod sniff;
pub mod thumbnail;

pub use image_info::ImageLimits;
pub use queue::{MediaOptions, NetworkKind, QueueProgress, UploadItem, UploadKind};
pub use signature::{SignatureCapture, SignatureRefusal, Stroke, StrokePoint};
pub use sniff::Format;
