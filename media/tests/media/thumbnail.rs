//! Thumbnails with Matrix semantics, and refusing what is not a sane image.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageEncoder, ImageFormat, RgbImage};
use media::{
    Error, MAX_IMAGE_PIXELS, MAX_THUMBNAIL_SIDE, Thumbnail, ThumbnailMethod, make_thumbnail,
};

fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    })
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(gradient(width, height))
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .unwrap();
    bytes
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&gradient(width, height))
        .unwrap();
    bytes
}

/// A JPEG whose EXIF data says to turn it 90° clockwise for display, as
/// phone cameras write them.
fn rotated_jpeg(width: u32, height: u32) -> Vec<u8> {
    #[rustfmt::skip]
    let exif = vec![
        b'I', b'I', 42, 0, 8, 0, 0, 0, // little-endian TIFF header, first IFD at 8
        1, 0,                          // one entry:
        0x12, 0x01, 3, 0, 1, 0, 0, 0,  // Orientation, SHORT, count 1,
        6, 0, 0, 0,                    // value 6: rotate 90° clockwise
        0, 0, 0, 0,                    // no next IFD
    ];
    let mut bytes = Vec::new();
    let image = gradient(width, height);
    let mut encoder = JpegEncoder::new_with_quality(&mut bytes, 90);
    encoder.set_exif_metadata(exif).unwrap();
    encoder
        .write_image(
            image.as_raw(),
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    bytes
}

/// Checks the thumbnail really is an image of the announced format and size.
fn assert_thumbnail(thumbnail: &Thumbnail, format: ImageFormat, width: u32, height: u32) {
    let decoded =
        image::load_from_memory_with_format(&thumbnail.bytes, format).expect("decodable thumbnail");
    assert_eq!((decoded.width(), decoded.height()), (width, height));
    assert_eq!((thumbnail.width, thumbnail.height), (width, height));
    assert_eq!(thumbnail.content_type, format.to_mime_type());
    assert_eq!(image::guess_format(&thumbnail.bytes).unwrap(), format);
}

#[test]
fn scale_fits_within_the_box_keeping_the_aspect_ratio() {
    let source = png(640, 480);
    let thumbnail = make_thumbnail(&source, "image/png", 320, 320, ThumbnailMethod::Scale).unwrap();
    assert_thumbnail(&thumbnail, ImageFormat::Png, 320, 240);
    let thumbnail = make_thumbnail(&source, "image/png", 800, 96, ThumbnailMethod::Scale).unwrap();
    assert_thumbnail(&thumbnail, ImageFormat::Png, 128, 96);
}

#[test]
fn scale_never_enlarges() {
    let thumbnail =
        make_thumbnail(&png(64, 48), "image/png", 640, 640, ThumbnailMethod::Scale).unwrap();
    assert_thumbnail(&thumbnail, ImageFormat::Png, 64, 48);
}

#[test]
fn crop_fills_the_box_exactly() {
    let source = png(640, 480);
    let thumbnail = make_thumbnail(&source, "image/png", 96, 96, ThumbnailMethod::Crop).unwrap();
    assert_thumbnail(&thumbnail, ImageFormat::Png, 96, 96);
    let thumbnail = make_thumbnail(&source, "image/png", 200, 50, ThumbnailMethod::Crop).unwrap();
    assert_thumbnail(&thumbnail, ImageFormat::Png, 200, 50);
}

#[test]
fn crop_keeps_the_centre() {
    // Left third red, middle third green, right third blue.
    let stripes = RgbImage::from_fn(300, 100, |x, _| match x / 100 {
        0 => image::Rgb([255, 0, 0]),
        1 => image::Rgb([0, 255, 0]),
        _ => image::Rgb([0, 0, 255]),
    });
    let mut source = Vec::new();
    DynamicImage::ImageRgb8(stripes)
        .write_to(&mut Cursor::new(&mut source), ImageFormat::Png)
        .unwrap();
    let thumbnail = make_thumbnail(&source, "image/png", 50, 50, ThumbnailMethod::Crop).unwrap();
    let decoded = image::load_from_memory(&thumbnail.bytes).unwrap().to_rgb8();
    for pixel in [
        decoded.get_pixel(5, 25),
        decoded.get_pixel(25, 25),
        decoded.get_pixel(44, 25),
    ] {
        assert_eq!(pixel.0, [0, 255, 0]);
    }
}

#[test]
fn jpeg_stays_jpeg() {
    let source = jpeg(640, 480);
    let thumbnail =
        make_thumbnail(&source, "image/jpeg", 160, 160, ThumbnailMethod::Scale).unwrap();
    assert_thumbnail(&thumbnail, ImageFormat::Jpeg, 160, 120);
    let thumbnail = make_thumbnail(&source, "image/jpeg", 32, 32, ThumbnailMethod::Crop).unwrap();
    assert_thumbnail(&thumbnail, ImageFormat::Jpeg, 32, 32);
}

#[test]
fn gif_and_webp_become_png() {
    for (format, content_type) in [
        (ImageFormat::Gif, "image/gif"),
        (ImageFormat::WebP, "image/webp"),
    ] {
        let mut source = Vec::new();
        DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(gradient(120, 60)).to_rgba8())
            .write_to(&mut Cursor::new(&mut source), format)
            .unwrap();
        let thumbnail =
            make_thumbnail(&source, content_type, 60, 60, ThumbnailMethod::Scale).unwrap();
        assert_thumbnail(&thumbnail, ImageFormat::Png, 60, 30);
    }
}

#[test]
fn exif_rotation_is_applied() {
    let thumbnail = make_thumbnail(
        &rotated_jpeg(640, 480),
        "image/jpeg",
        320,
        320,
        ThumbnailMethod::Scale,
    )
    .unwrap();
    assert_thumbnail(&thumbnail, ImageFormat::Jpeg, 240, 320);
}

#[test]
fn content_type_parameters_and_case_are_ignored() {
    let thumbnail = make_thumbnail(
        &png(40, 40),
        "Image/PNG; charset=binary",
        20,
        20,
        ThumbnailMethod::Scale,
    )
    .unwrap();
    assert_thumbnail(&thumbnail, ImageFormat::Png, 20, 20);
}

#[test]
fn non_images_are_refused() {
    let text = b"Hello, this is not a picture at all.";
    assert!(matches!(
        make_thumbnail(text, "image/png", 32, 32, ThumbnailMethod::Scale),
        Err(Error::NotAnImage)
    ));
    assert!(matches!(
        make_thumbnail(&png(40, 40), "text/plain", 32, 32, ThumbnailMethod::Scale),
        Err(Error::UnsupportedContentType(_))
    ));
    assert!(matches!(
        make_thumbnail(
            &png(40, 40),
            "image/svg+xml",
            32,
            32,
            ThumbnailMethod::Scale
        ),
        Err(Error::UnsupportedContentType(_))
    ));
    let truncated = &png(64, 64)[..100];
    assert!(matches!(
        make_thumbnail(truncated, "image/png", 32, 32, ThumbnailMethod::Scale),
        Err(Error::Image(_))
    ));
}

/// A valid 1×1 PNG whose header claims 20000×20000 pixels: a few bytes that
/// would need gigabytes once decoded.
#[test]
fn decompression_bombs_are_refused_before_decoding() {
    let mut bomb = png(1, 1);
    // Signature (8), IHDR length (4) and type (4), then width and height.
    bomb[16..20].copy_from_slice(&20_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&20_000u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());

    let error = make_thumbnail(&bomb, "image/png", 32, 32, ThumbnailMethod::Scale).unwrap_err();
    assert!(
        matches!(
            error,
            Error::ImageTooLarge {
                width: 20_000,
                height: 20_000,
                max_pixels: MAX_IMAGE_PIXELS
            }
        ),
        "{error:?}"
    );
}

#[test]
fn thumbnail_sizes_are_bounded() {
    let source = png(40, 40);
    for (width, height) in [(0, 32), (32, 0), (MAX_THUMBNAIL_SIDE + 1, 32)] {
        let result = make_thumbnail(&source, "image/png", width, height, ThumbnailMethod::Crop);
        assert!(
            matches!(result, Err(Error::InvalidThumbnailSize { .. })),
            "{width}x{height}: {result:?}"
        );
    }
}

/// The CRC-32 PNG chunks carry (ISO 3309, reflected, polynomial 0xEDB88320).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
