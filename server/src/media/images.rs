//! Untrusted image bytes: the magic bytes must match the declared content type
//! (else 415), the image must decode within explicit `image::Limits` (a PNG that
//! declares 60000×60000 in a few bytes is refused before any allocation), and the
//! server makes its own ~320 px JPEG thumbnail from the decoded pixels.

use std::io::{BufReader, Read};
use std::path::Path;

use image::{ImageFormat, ImageReader, Limits};

use super::MediaError;

/// Largest width or height decoded unless configured (a 50 MP phone photo is
/// about 8200 px wide).
pub const DEFAULT_MAX_SIDE: u32 = 16_384;
/// Most bytes one decode may allocate.
pub const MAX_DECODE_ALLOC: u64 = 512 * 1024 * 1024;
/// The server thumbnail's longest side.
pub const THUMBNAIL_SIDE: u32 = 320;

/// What a checked image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub width: u32,
    pub height: u32,
    /// The server's JPEG thumbnail.
    pub thumbnail: Vec<u8>,
}

/// The format a content type names, if it is an image type we take.
pub fn declared_format(content_type: &str) -> Option<ImageFormat> {
    match content_type.trim().to_ascii_lowercase().as_str() {
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/png" => Some(ImageFormat::Png),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

/// The decode limits: explicit, never the crate's defaults.
pub fn limits(max_side: u32) -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    limits
}

/// A truncated JPEG still decodes (the decoder fills the missing rows with
/// grey), so the image must have its end-of-image marker after its last scan.
fn jpeg_is_whole(path: &Path) -> Result<(), MediaError> {
    let bytes = std::fs::read(path)
        .map_err(|e| MediaError::Staging(format!("read {}: {e}", path.display())))?;
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let whole = last_scan.is_some_and(|scan| bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9]));
    if whole {
        Ok(())
    } else {
        Err(MediaError::Image(
            "the JPEG is truncated: no end-of-image marker after its last scan".into(),
        ))
    }
}

/// Checks the first `len` bytes of `path` as an image of `content_type` and makes
/// its thumbnail. Blocking: run it off the async workers.
pub fn check(path: &Path, content_type: &str, max_side: u32) -> Result<Checked, MediaError> {
    let declared = declared_format(content_type).ok_or_else(|| {
        MediaError::ContentType(format!("{content_type} is not an image type we take"))
    })?;
    let open = || {
        std::fs::File::open(path)
            .map_err(|e| MediaError::Staging(format!("open {}: {e}", path.display())))
    };
    let mut magic = [0u8; 16];
    let mut head = open()?;
    let mut read = 0;
    while read < magic.len() {
        match head.read(&mut magic[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(MediaError::Staging(format!("read: {e}"))),
        }
    }
    let actual = image::guess_format(&magic[..read]).ok();
    if actual != Some(declared) {
        return Err(MediaError::ContentType(format!(
            "declared {content_type} but the bytes are {}",
            actual.map_or("not an image we recognise".to_owned(), |f| format!("{f:?}"))
        )));
    }
    if declared == ImageFormat::Jpeg {
        jpeg_is_whole(path)?;
    }
    let mut reader = ImageReader::with_format(BufReader::new(open()?), declared);
    reader.limits(limits(max_side));
    let image = reader
        .decode()
        .map_err(|e| MediaError::Image(e.to_string()))?;
    let (width, height) = (image.width(), image.height());
    let small = image.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).to_rgb8();
    let mut thumbnail = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut thumbnail, 80)
        .encode_image(&small)
        .map_err(|e| MediaError::Image(format!("thumbnail: {e}")))?;
    Ok(Checked {
        width,
        height,
        thumbnail,
    })
}
