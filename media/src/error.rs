use std::time::Duration;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the body is larger than the limit of {max_size} bytes")]
    TooLarge { max_size: u64 },
    #[error("the object has {actual} bytes, not the {expected} announced")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("no such object")]
    NotFound,
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    #[error("{0} is not supported by this store")]
    Unsupported(&'static str),
    #[error("presigned URLs may be valid for at most {max:?}")]
    ExpiryTooLong { max: Duration },
    /// The body handed to `put` failed, e.g. the uploading client went away.
    #[error("reading the body failed: {0}")]
    Body(#[source] std::io::Error),
    /// The filesystem store failed.
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The S3 store failed or refused.
    #[error("storage backend failed: {0}")]
    Backend(String),
    #[error("cannot make thumbnails of {0:?}")]
    UnsupportedContentType(String),
    #[error("the bytes are not a PNG, JPEG, GIF or WebP image")]
    NotAnImage,
    #[error("image of {width}x{height} pixels is larger than {max_pixels} pixels")]
    ImageTooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error("thumbnail size {width}x{height} is not within 1..={max_side} on each side")]
    InvalidThumbnailSize {
        width: u32,
        height: u32,
        max_side: u32,
    },
    #[error("image processing failed: {0}")]
    Image(#[from] image::ImageError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
