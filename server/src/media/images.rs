//! Untrusted image bytes: the magic bytes must match the declared content type
//! (else 415), the image must decode within explicit `image::Limits` (a PNG that
//! declares 60000×60000 in a few bytes is refused before any allocation), and the
//! server makes its own ~320 px JPEG thumbnail from the decoded pixels, turned
//! upright by the EXIF Orientation tag.

use std::io::{BufReader, Read};
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

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
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| MediaError::Image(e.to_string()))?;
    // A phone held upright writes its pixels sideways and says so in EXIF: the
    // thumbnail is turned upright; the original keeps its bytes.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    // The same budget `decode` would charge: sides, then the pixel buffer.
    let mut budget = limits(max_side);
    let (w, h) = decoder.dimensions();
    budget
        .check_dimensions(w, h)
        .and_then(|()| budget.reserve(decoder.total_bytes()))
        .map_err(|e| MediaError::Image(e.to_string()))?;
    let image =
        DynamicImage::from_decoder(decoder).map_err(|e| MediaError::Image(e.to_string()))?;
    let (width, height) = (image.width(), image.height());
    let mut small = image.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE);
    small.apply_orientation(orientation);
    let small = small.to_rgb8();
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A 400×200 JPEG, with an APP1 EXIF segment holding only Orientation when
    /// `orientation` is given (built by hand: big-endian TIFF, one IFD entry).
    fn jpeg(orientation: Option<u16>) -> Vec<u8> {
        let image = image::RgbImage::from_fn(400, 200, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        });
        let mut plain = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 85)
            .encode_image(&image)
            .unwrap();
        let Some(orientation) = orientation else {
            return plain;
        };
        let mut payload = b"Exif\0\0MM\0\x2A\0\0\0\x08".to_vec();
        payload.extend_from_slice(&1u16.to_be_bytes());
        payload.extend_from_slice(&0x0112u16.to_be_bytes());
        payload.extend_from_slice(&3u16.to_be_bytes());
        payload.extend_from_slice(&1u32.to_be_bytes());
        payload.extend_from_slice(&orientation.to_be_bytes());
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
        out.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&plain[2..]);
        out
    }

    fn thumbnail_of(bytes: &[u8]) -> (Checked, (u32, u32)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upload");
        std::fs::write(&path, bytes).unwrap();
        let checked = check(&path, "image/jpeg", DEFAULT_MAX_SIDE).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "the original is untouched"
        );
        let thumb =
            image::load_from_memory_with_format(&checked.thumbnail, ImageFormat::Jpeg).unwrap();
        let size = (thumb.width(), thumb.height());
        (checked, size)
    }

    /// Orientation 6 (held upright, pixels sideways): the thumbnail's sides are
    /// swapped. Control: the same pixels without the tag are not turned.
    #[test]
    fn the_server_thumbnail_honours_the_exif_orientation() {
        let (checked, turned) = thumbnail_of(&jpeg(Some(6)));
        assert_eq!(turned, (160, 320));
        assert_eq!(
            (checked.width, checked.height),
            (400, 200),
            "the original's pixels"
        );
        let (_, control) = thumbnail_of(&jpeg(None));
        assert_eq!(control, (320, 160));
    }
}
