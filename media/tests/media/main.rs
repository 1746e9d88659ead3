//! The media crate's tests, one binary: the stores against a temp dir and a
//! real S3-compatible server (s3s-fs), presigned URLs, keys and thumbnails.

mod common;
mod fs_store;
mod keys;
mod presign;
mod store;
mod thumbnail;
