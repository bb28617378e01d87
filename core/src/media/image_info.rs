//! Untrusted images are decoded only under explicit limits. `image`'s width/height
//! limits are off by default; a small PNG declaring 60000×60000 pixels would ask
//! for ~14 GB. Dimensions are read from headers first and checked before any pixel
//! buffer is allocated.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use image::{DynamicImage, ImageReader};

use super::sniff::Format;
use crate::error::{Error, Result};

/// Bounds on what the device decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Widest and tallest accepted image (16384 covers a 200 MP phone sensor).
    pub max_width: u32,
    pub max_height: u32,
    /// Most bytes one decode may allocate (full decodes of PNG/WebP only; JPEG
    /// decodes at 1/8 scale).
    pub max_alloc: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_width: 16_384,
            max_height: 16_384,
            max_alloc: 512 * 1024 * 1024,
        }
    }
}

impl ImageLimits {
    pub(crate) fn image_limits(&self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_width);
        limits.max_image_height = Some(self.max_height);
        limits.max_alloc = Some(self.max_alloc);
        limits
    }

    /// Refuses dimensions over the limits (or zero).
    pub fn check(&self, width: u32, height: u32) -> Result<()> {
        if width == 0 || height == 0 {
            return Err(Error::InvalidMedia(format!(
                "the image declares {width}×{height} pixels"
            )));
        }
        if width > self.max_width || height > self.max_height {
            return Err(Error::InvalidMedia(format!(
                "the image declares {width}×{height} pixels; the limit is {}×{} \
                 (a decompression bomb or a corrupt file)",
                self.max_width, self.max_height
            )));
        }
        Ok(())
    }
}

fn reader(
    path: &Path,
    format: Format,
    limits: &ImageLimits,
) -> Result<ImageReader<BufReader<File>>> {
    let image_format = format
        .image_format()
        .ok_or_else(|| Error::Unsupported(format!("{} is not a photo", format.content_type())))?;
    let mut reader = ImageReader::new(BufReader::new(File::open(path)?));
    reader.set_format(image_format);
    reader.limits(limits.image_limits());
    Ok(reader)
}

/// Width and height from the headers, refused over the limits. Reads no pixels.
pub fn dimensions(path: &Path, format: Format, limits: &ImageLimits) -> Result<(u32, u32)> {
    match reader(path, format, limits)?.into_dimensions() {
        Ok((width, height)) => {
            limits.check(width, height)?;
            Ok((width, height))
        }
        Err(image::ImageError::Limits(_)) => {
            // Say what the header declared: read it again without limits (headers
            // only, nothing is allocated for pixels).
            let mut unlimited = reader(path, format, limits)?;
            unlimited.no_limits();
            let declared = unlimited
                .into_dimensions()
                .map_err(|e| invalid(format, e))?;
            limits.check(declared.0, declared.1)?;
            Err(Error::InvalidMedia(format!(
                "the {} is over the decoding limits",
                format.content_type()
            )))
        }
        Err(e) => Err(invalid(format, e)),
    }
}

/// Decodes the whole image under the limits (PNG and WebP thumbnails).
pub fn decode(path: &Path, format: Format, limits: &ImageLimits) -> Result<DynamicImage> {
    dimensions(path, format, limits)?;
    reader(path, format, limits)?
        .decode()
        .map_err(|e| invalid(format, e))
}

pub(crate) fn invalid(format: Format, e: image::ImageError) -> Error {
    match e {
        image::ImageError::Limits(limit) => Error::InvalidMedia(format!(
            "the {} is over the decoding limits ({limit})",
            format.content_type()
        )),
        image::ImageError::IoError(io) => Error::from(io),
        other => Error::InvalidMedia(format!(
            "the {} does not decode (damaged or truncated?): {other}",
            format.content_type()
        )),
    }
}
