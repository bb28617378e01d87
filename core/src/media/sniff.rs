//! What a file is, from its first bytes. The name and the caller's claim are never
//! trusted: a photo is captured only if its magic bytes say JPEG, PNG or WebP.

use crate::error::{Error, Result};

/// Bytes [`sniff`] needs to decide.
pub const SNIFF_LEN: usize = 12;

/// The formats the device captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    /// ISO base media (MP4) video.
    Mp4,
    /// QuickTime (MOV) video, as iPhones record.
    QuickTime,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Mp4 => "video/mp4",
            Self::QuickTime => "video/quicktime",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Mp4 => "mp4",
            Self::QuickTime => "mov",
        }
    }

    pub fn is_photo(self) -> bool {
        matches!(self, Self::Jpeg | Self::Png | Self::Webp)
    }

    pub(crate) fn image_format(self) -> Option<image::ImageFormat> {
        match self {
            Self::Jpeg => Some(image::ImageFormat::Jpeg),
            Self::Png => Some(image::ImageFormat::Png),
            Self::Webp => Some(image::ImageFormat::WebP),
            Self::Mp4 | Self::QuickTime => None,
        }
    }
}

/// The format `head` (the file's first bytes) announces, or `Unsupported`.
pub fn sniff(head: &[u8]) -> Result<Format> {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Format::Jpeg);
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(Format::Png);
    }
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return Ok(Format::Webp);
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return Ok(if &head[8..12] == b"qt  " {
            Format::QuickTime
        } else {
            Format::Mp4
        });
    }
    Err(Error::Unsupported(describe(head)))
}

fn describe(head: &[u8]) -> String {
    if head.is_empty() {
        return "the file is empty".to_owned();
    }
    let hex: String = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!(
        "not a JPEG, PNG or WebP photo, nor an MP4/QuickTime video (starts with {hex}); \
         HEIC and other formats must be converted by the app first"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn magic_bytes_decide() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]).unwrap(), Format::Jpeg);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\r").unwrap(), Format::Png);
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ").unwrap(), Format::Webp);
        assert_eq!(sniff(b"\0\0\0\x18ftypmp42").unwrap(), Format::Mp4);
        assert_eq!(sniff(b"\0\0\0\x14ftypqt  ").unwrap(), Format::QuickTime);
        for bad in [
            &b"MZ\x90\0\x03\0\0\0\x04\0\0\0"[..],
            b"GIF89a",
            b"",
            b"RIFF\0\0\0\0WAVE",
        ] {
            assert!(matches!(sniff(bad), Err(Error::Unsupported(_))), "{bad:?}");
        }
    }
}
