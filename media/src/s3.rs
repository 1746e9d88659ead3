use std::fmt;
use std::io;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::{
    BodyMeter, BodyStream, Error, MAX_PRESIGN_EXPIRY, MediaStore, ObjectBody, ObjectKey,
    PresignedRequest, ResponseOverrides, Result, StoredObject,
};

/// Bodies up to this size go up in one PutObject; larger ones in multipart
/// parts of this size (S3 wants at least 5 MiB per part but the last).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// The largest object CopyObject can copy, which bounds what `put` accepts.
const MAX_COPY_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// How to reach the bucket; every field is explicit, nothing is read from the
/// environment or `~/.aws`.
#[derive(Clone)]
pub struct S3Settings {
    /// e.g. `https://<account>.r2.cloudflarestorage.com`.
    pub endpoint: String,
    pub bucket: String,
    /// `auto` for Cloudflare R2.
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Address the bucket as `<endpoint>/<bucket>` rather than as a host name
    /// `<bucket>.<endpoint host>`; needed for IP endpoints.
    pub force_path_style: bool,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("force_path_style", &self.force_path_style)
            .finish()
    }
}

/// A [`MediaStore`] in an S3-compatible bucket (AWS S3, Cloudflare R2, ...).
///
/// `put` of a body that fits in one part hashes it first and uploads it
/// straight to its content key, skipping the upload when that key exists.
/// Larger bodies go as a multipart upload to a `staging/` key while being
/// hashed; then, if the content key exists, the staging object is deleted,
/// otherwise it is copied server-side (CopyObject) to the content key and
/// deleted. Bodies are therefore limited to 5 GiB, CopyObject's limit.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

impl S3Store {
    pub fn new(settings: &S3Settings) -> Self {
        let credentials = Credentials::new(
            &settings.access_key_id,
            &settings.secret_access_key,
            None,
            None,
            "teatime-settings",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&settings.endpoint)
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(settings.force_path_style)
            // S3-compatible stores do not all understand the checksum headers and
            // chunked trailers the SDK adds by default; send them only where S3
            // requires them.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Self {
            client: Client::from_conf(config),
            bucket: settings.bucket.clone(),
        }
    }

    /// Checks that the bucket exists and the credentials may use it, so a
    /// wrong setting shows at startup rather than at the first upload.
    pub async fn check_bucket(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|error| backend_error("HeadBucket", error))?;
        Ok(())
    }

    async fn put_single(&self, body: Bytes, meter: BodyMeter) -> Result<StoredObject> {
        let (size, sha256) = meter.finish();
        let key = ObjectKey::content(&sha256)?;
        if self.head(&key).await?.is_none() {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .content_length(to_i64(size))
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|error| backend_error("PutObject", error))?;
        }
        Ok(StoredObject { key, size, sha256 })
    }

    /// Uploads `first_part` and the rest of the body to `staging`, then files
    /// the result under its content key.
    async fn put_staged(
        &self,
        staging: &mut StagingUpload,
        first_part: Bytes,
        mut parts_of_body: PartReader,
    ) -> Result<StoredObject> {
        let mut part = first_part;
        let mut uploaded = Vec::new();
        loop {
            // Only a full part may have more of the body behind it.
            let full = part.len() == PART_SIZE;
            if !part.is_empty() {
                // At most MAX_COPY_SIZE / PART_SIZE + 1 = 641 parts, far below S3's 10,000.
                let number = uploaded.len() as i32 + 1;
                uploaded.push(self.upload_part(staging, number, part).await?);
            }
            if !full {
                break;
            }
            part = parts_of_body.next_part().await?;
        }

        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(staging.key.as_str())
            .upload_id(&staging.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(uploaded))
                    .build(),
            )
            .send()
            .await
            .map_err(|error| backend_error("CompleteMultipartUpload", error))?;
        staging.completed = true;

        let (size, sha256) = parts_of_body.meter.finish();
        let key = ObjectKey::content(&sha256)?;
        if self.head(&key).await?.is_none() {
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .copy_source(format!("{}/{}", self.bucket, staging.key))
                .send()
                .await
                .map_err(|error| backend_error("CopyObject", error))?;
        }
        Ok(StoredObject { key, size, sha256 })
    }

    async fn upload_part(
        &self,
        staging: &StagingUpload,
        number: i32,
        bytes: Bytes,
    ) -> Result<CompletedPart> {
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(staging.key.as_str())
            .upload_id(&staging.upload_id)
            .part_number(number)
            .content_length(to_i64(bytes.len() as u64))
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|error| backend_error("UploadPart", error))?;
        Ok(CompletedPart::builder()
            .set_e_tag(output.e_tag)
            .part_number(number)
            .build())
    }
}

#[async_trait]
impl MediaStore for S3Store {
    async fn put(&self, body: BodyStream, max_size: u64) -> Result<StoredObject> {
        let mut parts_of_body = PartReader {
            body,
            meter: BodyMeter::new(max_size.min(MAX_COPY_SIZE)),
            carry: Bytes::new(),
        };
        let first_part = parts_of_body.next_part().await?;
        if first_part.len() < PART_SIZE {
            return self.put_single(first_part, parts_of_body.meter).await;
        }

        let key = ObjectKey::staging();
        let upload_id = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|error| backend_error("CreateMultipartUpload", error))?
            .upload_id
            .ok_or_else(|| {
                Error::Backend("CreateMultipartUpload: response without an upload id".to_owned())
            })?;
        let mut staging = StagingUpload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key,
            upload_id,
            completed: false,
            removed: false,
        };
        let stored = self
            .put_staged(&mut staging, first_part, parts_of_body)
            .await;
        staging.remove().await;
        stored
    }

    async fn get(&self, key: &ObjectKey) -> Result<ObjectBody> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|error| {
                if error
                    .as_service_error()
                    .is_some_and(|error| error.is_no_such_key())
                {
                    Error::NotFound
                } else {
                    backend_error("GetObject", error)
                }
            })?;
        let size = object_size("GetObject", output.content_length())?;
        let body = futures_util::stream::unfold(output.body, |mut body| async move {
            body.next()
                .await
                .map(|chunk| (chunk.map_err(io::Error::from), body))
        });
        Ok(ObjectBody {
            size,
            body: Box::pin(body),
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<u64>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(output) => object_size("HeadObject", output.content_length()).map(Some),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|error| error.is_not_found()) =>
            {
                Ok(None)
            }
            Err(error) => Err(backend_error("HeadObject", error)),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|error| backend_error("DeleteObject", error))?;
        Ok(())
    }

    fn supports_presigned_urls(&self) -> bool {
        true
    }

    async fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        content_length: u64,
        expires_in: Duration,
    ) -> Result<PresignedRequest> {
        if !key.is_upload() {
            return Err(Error::InvalidKey(key.to_string()));
        }
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .content_length(to_i64(content_length))
            .presigned(presigning_config(expires_in)?)
            .await
            .map_err(|error| backend_error("presigning PutObject", error))?;
        Ok(presigned_request(&request, expires_in))
    }

    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        overrides: &ResponseOverrides,
    ) -> Result<PresignedRequest> {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .set_response_content_type(overrides.content_type.clone())
            .set_response_content_disposition(overrides.content_disposition.clone())
            .presigned(presigning_config(expires_in)?)
            .await
            .map_err(|error| backend_error("presigning GetObject", error))?;
        Ok(presigned_request(&request, expires_in))
    }

    async fn adopt_upload(
        &self,
        key: &ObjectKey,
        expected_size: u64,
        max_size: u64,
    ) -> Result<u64> {
        if !key.is_upload() {
            return Err(Error::InvalidKey(key.to_string()));
        }
        let size = self.head(key).await?.ok_or(Error::NotFound)?;
        let refusal = if size > max_size {
            Error::TooLarge { max_size }
        } else if size != expected_size {
            Error::SizeMismatch {
                expected: expected_size,
                actual: size,
            }
        } else {
            return Ok(size);
        };
        self.delete(key).await?;
        Err(refusal)
    }
}

/// A multipart upload to a `staging/` key, removed whatever happens: by
/// [`StagingUpload::remove`] when `put` finishes, or on drop when `put` is
/// abandoned midway (its future dropped), since then no code of ours runs.
struct StagingUpload {
    client: Client,
    bucket: String,
    key: ObjectKey,
    upload_id: String,
    /// Whether the upload became an object, which must then be deleted
    /// rather than the upload aborted.
    completed: bool,
    removed: bool,
}

impl StagingUpload {
    async fn remove(mut self) {
        self.removed = true;
        self.removal().await;
    }

    /// Aborts the upload or, once completed, deletes its object. Best effort:
    /// a failure leaves garbage under `staging/` for the bucket's lifecycle
    /// rule, not a wrong result, so it is logged rather than returned.
    fn removal(&self) -> impl Future<Output = ()> + Send + 'static {
        let (client, bucket, key, upload_id) = (
            self.client.clone(),
            self.bucket.clone(),
            self.key.clone(),
            self.upload_id.clone(),
        );
        let completed = self.completed;
        async move {
            let result = if completed {
                client
                    .delete_object()
                    .bucket(&bucket)
                    .key(key.as_str())
                    .send()
                    .await
                    .map(drop)
                    .map_err(|error| backend_error("DeleteObject", error))
            } else {
                client
                    .abort_multipart_upload()
                    .bucket(&bucket)
                    .key(key.as_str())
                    .upload_id(&upload_id)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|error| backend_error("AbortMultipartUpload", error))
            };
            if let Err(error) = result {
                tracing::warn!(%key, %error, "could not remove a staging upload");
            }
        }
    }
}

impl Drop for StagingUpload {
    fn drop(&mut self) {
        if !self.removed
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(self.removal());
        }
    }
}

/// Cuts a body into parts of exactly [`PART_SIZE`] bytes but the last,
/// counting and hashing it on the way. Holds one part at a time: chunks are
/// split at part boundaries so a buffer never outgrows its part.
struct PartReader {
    body: BodyStream,
    meter: BodyMeter,
    /// What is left of the chunk that crossed the last part boundary.
    carry: Bytes,
}

impl PartReader {
    /// The next part; shorter than [`PART_SIZE`] only at the end of the body.
    /// Call it again only after a full part.
    async fn next_part(&mut self) -> Result<Bytes> {
        let mut part = BytesMut::with_capacity(PART_SIZE);
        loop {
            let wanted = self.carry.len().min(PART_SIZE - part.len());
            part.extend_from_slice(&self.carry.split_to(wanted));
            if part.len() == PART_SIZE {
                return Ok(part.freeze());
            }
            let Some(chunk) = self.body.next().await else {
                return Ok(part.freeze());
            };
            let chunk = chunk.map_err(Error::Body)?;
            self.meter.update(&chunk)?;
            self.carry = chunk;
        }
    }
}

fn presigning_config(expires_in: Duration) -> Result<PresigningConfig> {
    if expires_in > MAX_PRESIGN_EXPIRY {
        return Err(Error::ExpiryTooLong {
            max: MAX_PRESIGN_EXPIRY,
        });
    }
    PresigningConfig::expires_in(expires_in)
        .map_err(|error| Error::Backend(format!("presigning: {error}")))
}

fn presigned_request(
    request: &aws_sdk_s3::presigning::PresignedRequest,
    expires_in: Duration,
) -> PresignedRequest {
    PresignedRequest {
        method: request.method().to_owned(),
        url: request.uri().to_owned(),
        headers: request
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
        expires_in,
    }
}

fn backend_error<E: std::error::Error + 'static>(operation: &str, error: SdkError<E>) -> Error {
    Error::Backend(format!("{operation}: {}", DisplayErrorContext(&error)))
}

fn object_size(operation: &str, content_length: Option<i64>) -> Result<u64> {
    content_length
        .and_then(|length| u64::try_from(length).ok())
        .ok_or_else(|| Error::Backend(format!("{operation}: response without a Content-Length")))
}

fn to_i64(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}
