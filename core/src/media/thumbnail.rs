//! The device thumbnail: at most [`THUMBNAIL_EDGE`] pixels on its long side, JPEG.
//!
//! A JPEG original is decoded at reduced size by the decoder itself (`jpeg-decoder`'s
//! DCT scaling to 1/2, 1/4 or 1/8: the pixels of a 12 MP photo are never all built),
//! then resized the rest of the way with `fast_image_resize`. PNG and WebP have no
//! such trick and are decoded whole, under the limits. The thumbnail is turned
//! upright by the EXIF Orientation tag (the original is never changed). Figures:
//! `benches/media.rs`.

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::Path;

use fast_image_resize::images::Image as FirImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::codecs::jpeg::JpegEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ExtendedColorType, ImageEncoder, RgbImage};

use super::exif;
use super::image_info::{self, ImageLimits};
use super::sniff::Format;
use crate::error::{Error, Result};

/// The thumbnail's long side, in pixels.
pub const THUMBNAIL_EDGE: u32 = 320;
const QUALITY: u8 = 80;

/// A made thumbnail, and what decoding the original told us.
#[derive(Debug, Clone)]
pub struct Thumbnail {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The original's dimensions (from its headers).
    pub original_width: u32,
    pub original_height: u32,
}

/// Makes the thumbnail of the photo at `path`. Decoding it whole (or at 1/8 scale)
/// is also what proves the file is not truncated or damaged.
pub fn make(path: &Path, format: Format, limits: &ImageLimits) -> Result<Thumbnail> {
    match format {
        Format::Jpeg => from_jpeg(path, limits),
        Format::Png | Format::Webp => {
            let image = image_info::decode(path, format, limits)?;
            let (original_width, original_height) = (image.width(), image.height());
            let rgb = image.into_rgb8();
            let (width, height) = (rgb.width(), rgb.height());
            finish(
                rgb.into_raw(),
                (width, height),
                (original_width, original_height),
                exif::orientation(path),
            )
        }
        Format::Mp4 | Format::QuickTime => Err(Error::Unsupported(
            "videos are kept as they are, without a device thumbnail".to_owned(),
        )),
    }
}

/// JPEG: decoder-side downscaling, then a short resize.
pub fn from_jpeg(path: &Path, limits: &ImageLimits) -> Result<Thumbnail> {
    let mut decoder = jpeg_decoder::Decoder::new(BufReader::new(File::open(path)?));
    decoder.read_info().map_err(jpeg_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| Error::InvalidMedia("the JPEG has no frame header".to_owned()))?;
    let (original_width, original_height) = (u32::from(info.width), u32::from(info.height));
    limits.check(original_width, original_height)?;
    let edge = THUMBNAIL_EDGE as u16;
    let (width, height) = decoder.scale(edge, edge).map_err(jpeg_error)?;
    decoder.set_max_decoding_buffer_size(usize::try_from(limits.max_alloc).unwrap_or(usize::MAX));
    let pixels = decoder.decode().map_err(jpeg_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| Error::InvalidMedia("the JPEG has no frame header".to_owned()))?;
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        jpeg_decoder::PixelFormat::L16 => pixels
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        jpeg_decoder::PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|p| {
                let k = u16::from(p[3]);
                let ink = |c: u8| ((u16::from(c) * k) / 255) as u8;
                [ink(p[0]), ink(p[1]), ink(p[2])]
            })
            .collect(),
    };
    finish(
        rgb,
        (u32::from(width), u32::from(height)),
        (original_width, original_height),
        exif::orientation(path),
    )
}

/// Resizes RGB pixels to fit the thumbnail box, turns them by the EXIF
/// `orientation` (after the resize: fewer pixels to move), and encodes them as JPEG.
fn finish(
    rgb: Vec<u8>,
    (width, height): (u32, u32),
    (original_width, original_height): (u32, u32),
    orientation: Option<u8>,
) -> Result<Thumbnail> {
    let (target_width, target_height) = fit(width, height, THUMBNAIL_EDGE);
    let (pixels, width, height) = if (target_width, target_height) == (width, height) {
        (rgb, width, height)
    } else {
        let source = FirImage::from_vec_u8(width, height, rgb, PixelType::U8x3)
            .map_err(|e| Error::InvalidMedia(format!("thumbnail buffer: {e}")))?;
        let mut target = FirImage::new(target_width, target_height, PixelType::U8x3);
        Resizer::new()
            .resize(
                &source,
                &mut target,
                &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
            )
            .map_err(|e| Error::InvalidMedia(format!("thumbnail resize: {e}")))?;
        (target.into_vec(), target_width, target_height)
    };
    let (pixels, width, height) = match orientation
        .and_then(Orientation::from_exif)
        .filter(|o| *o != Orientation::NoTransforms)
    {
        Some(orientation) => {
            let image = RgbImage::from_raw(width, height, pixels).ok_or_else(|| {
                Error::InvalidMedia("thumbnail buffer of the wrong size".to_owned())
            })?;
            let mut image = DynamicImage::ImageRgb8(image);
            image.apply_orientation(orientation);
            let image = image.into_rgb8();
            let (width, height) = image.dimensions();
            (image.into_raw(), width, height)
        }
        None => (pixels, width, height),
    };
    let mut jpeg = Cursor::new(Vec::with_capacity(32 * 1024));
    JpegEncoder::new_with_quality(&mut jpeg, QUALITY)
        .write_image(&pixels, width, height, ExtendedColorType::Rgb8)
        .map_err(|e| Error::InvalidMedia(format!("thumbnail encoding: {e}")))?;
    Ok(Thumbnail {
        jpeg: jpeg.into_inner(),
        width,
        height,
        original_width,
        original_height,
    })
}

/// The size that fits `width`×`height` into an `edge` box, keeping the aspect ratio
/// (never enlarging, never zero).
pub fn fit(width: u32, height: u32, edge: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= edge {
        return (width, height);
    }
    let scale = |side: u32| {
        ((u64::from(side) * u64::from(edge) + u64::from(long) / 2) / u64::from(long)).max(1) as u32
    };
    (scale(width), scale(height))
}

fn jpeg_error(e: jpeg_decoder::Error) -> Error {
    match e {
        jpeg_decoder::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::InvalidMedia(format!("the JPEG is truncated: {io}"))
        }
        jpeg_decoder::Error::Io(io) => Error::from(io),
        other => Error::InvalidMedia(format!(
            "the JPEG does not decode (damaged or truncated?): {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn fits_the_long_side() {
        assert_eq!(fit(4000, 3000, 320), (320, 240));
        assert_eq!(fit(3000, 4000, 320), (240, 320));
        assert_eq!(fit(200, 100, 320), (200, 100));
        assert_eq!(fit(10_000, 1, 320), (320, 1));
    }
}
