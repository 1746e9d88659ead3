//! Media storage as a library: the [`MediaStore`] trait with filesystem
//! ([`FsStore`]) and S3/R2 ([`S3Store`]) backends, presigned URLs and
//! thumbnails ([`make_thumbnail`]).
//!
//! The crate knows nothing of Matrix: it stores bytes under validated
//! [`ObjectKey`]s and makes thumbnails. Content uploaded through the server is
//! content-addressed: its key is derived from its SHA-256, so the same bytes are
//! stored once. Which media ids point at which content, and when content is no
//! longer referenced and may be deleted, is the caller's business.
//!
//! Key layout (identical for both backends, `/` separates directories or S3 key
//! segments):
//! - `content/<h0h1>/<h2h3>/<sha256 hex>`: content stored by [`MediaStore::put`],
//!   sharded by the first two bytes of the hash.
//! - `uploads/<id>`: objects a client uploads itself through a presigned PUT
//!   ([`MediaStore::presign_put`]). They are not deduplicated: that would mean
//!   downloading every direct upload again to hash it, which is the cost direct
//!   uploads exist to avoid.
//! - `staging/<random>` (S3 only, internal): multipart uploads in progress,
//!   before their hash is known. After a crash, leftovers there and unfinished
//!   multipart uploads are garbage; a bucket lifecycle rule (expire `staging/`
//!   and abort incomplete multipart uploads after a day) removes them.
//! - `tmp/` (filesystem only, internal): puts in progress; never a key.

mod error;
mod fs;
mod key;
mod s3;
#[cfg(feature = "testing")]
pub mod testing;
mod thumbnail;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};

pub use error::{Error, Result};
pub use fs::FsStore;
pub use key::ObjectKey;
pub use s3::{S3Settings, S3Store};
pub use thumbnail::{
    MAX_IMAGE_PIXELS, MAX_THUMBNAIL_SIDE, Thumbnail, ThumbnailMethod, make_thumbnail,
};

/// A body streamed in chunks, as an HTTP server hands out request bodies.
pub type BodyStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// What [`MediaStore::put`] stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// The content key, derived from `sha256`.
    pub key: ObjectKey,
    pub size: u64,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
}

/// A stored object being read.
pub struct ObjectBody {
    pub size: u64,
    pub body: BodyStream,
}

impl std::fmt::Debug for ObjectBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBody")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// An HTTP request signed for a client to perform as is, without credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresignedRequest {
    pub method: String,
    pub url: String,
    /// Headers the client must send exactly like this; they are signed.
    pub headers: Vec<(String, String)>,
    /// How long after signing the URL stops working.
    pub expires_in: Duration,
}

/// Response headers a presigned GET makes the store send instead of the
/// object's own, so downloads get the uploader's file name and type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseOverrides {
    pub content_type: Option<String>,
    pub content_disposition: Option<String>,
}

/// Longest validity S3 SigV4 allows for a presigned URL.
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Where media bytes live. Object-safe: hold it as `Arc<dyn MediaStore>`.
#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Streams `body` into the store, hashing it on the way, and files it under
    /// its content key; identical bytes are stored once. A body longer than
    /// `max_size` fails with [`Error::TooLarge`] and leaves nothing behind, as
    /// does any other failure (a failing `body` gives [`Error::Body`]).
    async fn put(&self, body: BodyStream, max_size: u64) -> Result<StoredObject>;

    /// Streams a stored object; [`Error::NotFound`] when there is none.
    async fn get(&self, key: &ObjectKey) -> Result<ObjectBody>;

    /// The object's size, or `None` when there is no such object.
    async fn head(&self, key: &ObjectKey) -> Result<Option<u64>>;

    /// Removes the object; removing a missing object succeeds.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;

    /// Whether the `presign_*` methods and [`MediaStore::adopt_upload`] work,
    /// i.e. whether clients may talk to the store directly.
    fn supports_presigned_urls(&self) -> bool;

    /// Signs a PUT of exactly `content_length` bytes of `content_type` to an
    /// `uploads/` key, valid for `expires_in` (at most [`MAX_PRESIGN_EXPIRY`]).
    /// `Content-Type` and `Content-Length` are among the signed headers, so
    /// the store refuses any other type or length (a browser sets the length
    /// itself from the body). [`Error::Unsupported`] on stores without direct
    /// access.
    async fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        content_length: u64,
        expires_in: Duration,
    ) -> Result<PresignedRequest>;

    /// Signs a GET of the object, valid for `expires_in` (at most
    /// [`MAX_PRESIGN_EXPIRY`]). [`Error::Unsupported`] on stores without direct
    /// access.
    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        overrides: &ResponseOverrides,
    ) -> Result<PresignedRequest>;

    /// Accepts an object a client uploaded to an `uploads/` key through a
    /// presigned PUT: it must exist ([`Error::NotFound`]), be at most
    /// `max_size` bytes ([`Error::TooLarge`]) and exactly `expected_size` bytes
    /// ([`Error::SizeMismatch`]). A refused object is deleted, so the client may
    /// upload again while its URL is valid. Returns the size.
    async fn adopt_upload(&self, key: &ObjectKey, expected_size: u64, max_size: u64)
    -> Result<u64>;
}

/// Counts and hashes a body as it streams past, refusing it once it grows
/// beyond the limit.
struct BodyMeter {
    hasher: Sha256,
    size: u64,
    max_size: u64,
}

impl BodyMeter {
    fn new(max_size: u64) -> Self {
        Self {
            hasher: Sha256::new(),
            size: 0,
            max_size,
        }
    }

    fn update(&mut self, chunk: &[u8]) -> Result<()> {
        self.size = self.size.saturating_add(chunk.len() as u64);
        if self.size > self.max_size {
            return Err(Error::TooLarge {
                max_size: self.max_size,
            });
        }
        self.hasher.update(chunk);
        Ok(())
    }

    /// The size and lowercase hex SHA-256 of everything seen.
    fn finish(self) -> (u64, String) {
        (self.size, hex::encode(self.hasher.finalize()))
    }
}
