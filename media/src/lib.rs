//! Media storage as a library: the `MediaStore` trait with filesystem and S3/R2
//! backends, presigned URLs and thumbnails. It lands with the media issue.
