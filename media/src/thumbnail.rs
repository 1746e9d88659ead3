use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};

use crate::{Error, Result};

/// Images with more pixels than this are refused before they are decoded: a
/// small file can declare enormous dimensions (a decompression bomb).
pub const MAX_IMAGE_PIXELS: u64 = 32_000_000;
/// The largest width or height a thumbnail may be asked for.
pub const MAX_THUMBNAIL_SIDE: u32 = 2048;
/// Room for the largest allowed image at 16 bits per RGBA channel, with slack.
const MAX_DECODE_ALLOC: u64 = 512 * 1024 * 1024;
const JPEG_QUALITY: u8 = 80;
const THUMBNAIL_TYPES: [(&str, ImageFormat); 4] = [
    ("image/png", ImageFormat::Png),
    ("image/jpeg", ImageFormat::Jpeg),
    ("image/gif", ImageFormat::Gif),
    ("image/webp", ImageFormat::WebP),
];

/// How a thumbnail fits the requested box, as in the Matrix media API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThumbnailMethod {
    /// Keep the aspect ratio and fit within the box; never enlarge.
    Scale,
    /// Fill the box exactly, cutting the overflow off both sides evenly.
    Crop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    /// `image/jpeg` for JPEG sources, `image/png` otherwise.
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Makes a thumbnail of a PNG, JPEG, GIF (first frame) or WebP image declared
/// as `content_type`; the format itself is read from the bytes. EXIF rotation
/// is applied. CPU-bound: call it from a blocking thread.
pub fn make_thumbnail(
    image: &[u8],
    content_type: &str,
    width: u32,
    height: u32,
    method: ThumbnailMethod,
) -> Result<Thumbnail> {
    let side_range = 1..=MAX_THUMBNAIL_SIDE;
    if !side_range.contains(&width) || !side_range.contains(&height) {
        return Err(Error::InvalidThumbnailSize {
            width,
            height,
            max_side: MAX_THUMBNAIL_SIDE,
        });
    }
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !THUMBNAIL_TYPES.iter().any(|(name, _)| *name == media_type) {
        return Err(Error::UnsupportedContentType(content_type.to_owned()));
    }

    let mut reader = ImageReader::new(Cursor::new(image))
        .with_guessed_format()
        .map_err(ImageError::IoError)?;
    let format = reader
        .format()
        .filter(|format| {
            THUMBNAIL_TYPES
                .iter()
                .any(|(_, supported)| supported == format)
        })
        .ok_or(Error::NotAnImage)?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder()?;
    let (source_width, source_height) = decoder.dimensions();
    if u64::from(source_width) * u64::from(source_height) > MAX_IMAGE_PIXELS {
        return Err(Error::ImageTooLarge {
            width: source_width,
            height: source_height,
            max_pixels: MAX_IMAGE_PIXELS,
        });
    }
    let orientation = decoder.orientation()?;
    let mut source = DynamicImage::from_decoder(decoder)?;
    source.apply_orientation(orientation);

    let thumbnail = match method {
        ThumbnailMethod::Scale if source.width() <= width && source.height() <= height => source,
        ThumbnailMethod::Scale => source.resize(width, height, FilterType::Triangle),
        ThumbnailMethod::Crop => source.resize_to_fill(width, height, FilterType::Triangle),
    };
    encode(&thumbnail, format == ImageFormat::Jpeg)
}

fn encode(image: &DynamicImage, as_jpeg: bool) -> Result<Thumbnail> {
    let mut bytes = Vec::new();
    let content_type = if as_jpeg {
        JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY).encode_image(&image.to_rgb8())?;
        "image/jpeg"
    } else {
        image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)?;
        "image/png"
    };
    Ok(Thumbnail {
        bytes,
        content_type,
        width: image.width(),
        height: image.height(),
    })
}
