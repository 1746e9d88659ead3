//! The media repository: Matrix media ids over the `media` crate's store
//! (a directory, or an S3/R2 bucket), with quotas, asynchronous and direct
//! (presigned) uploads, and thumbnails made once and kept.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use media::{
    BodyStream, FsStore, MediaStore, ObjectBody, ObjectKey, S3Settings, S3Store, ThumbnailMethod,
    make_thumbnail,
};
use tokio_util::sync::CancellationToken;

use ruma::ServerName;

use crate::{
    auth::tokens::random_id,
    config::{Config, MediaBackend},
    error::{Error, Result},
    remote::Remote,
    storage::{MediaRow, Store, ThumbnailRow, now_ms},
};

/// How long an id reserved by `/create` waits for its upload.
const UNUSED_RESERVATION: Duration = Duration::from_secs(24 * 60 * 60);
/// Reserved ids a user may have waiting at once.
const MAX_PENDING_RESERVATIONS: i64 = 50;
/// How long a download may wait for an upload, whatever the client asks.
const MAX_DOWNLOAD_WAIT: Duration = Duration::from_secs(60);
/// The spec's default wait for a not-yet-uploaded download.
pub const DEFAULT_DOWNLOAD_WAIT: Duration = Duration::from_secs(20);
/// How often a waiting download looks again.
const UPLOAD_POLL: Duration = Duration::from_millis(100);
/// How long a presigned upload URL stays valid.
const DIRECT_UPLOAD_VALIDITY: Duration = Duration::from_secs(60 * 60);
/// Larger originals are not read into memory to make thumbnails.
const MAX_THUMBNAIL_SOURCE: u64 = 32 * 1024 * 1024;

/// The thumbnail sizes the server makes; a request gets the smallest of its
/// method that covers the requested size (else the largest), so each media
/// id has a few thumbnails at most.
const THUMBNAIL_SIZES: &[(u32, u32, ThumbnailMethod)] = &[
    (32, 32, ThumbnailMethod::Crop),
    (96, 96, ThumbnailMethod::Crop),
    (320, 240, ThumbnailMethod::Scale),
    (640, 480, ThumbnailMethod::Scale),
    (800, 600, ThumbnailMethod::Scale),
];

/// An upload as it arrives.
pub struct Upload {
    pub content_type: Option<String>,
    pub filename: Option<String>,
    /// The `Content-Length`, when the client sent one.
    pub length: Option<u64>,
    pub body: BodyStream,
}

/// Media being downloaded.
pub struct Download {
    pub content_type: String,
    pub filename: Option<String>,
    pub object: ObjectBody,
}

/// A presigned direct upload handed to a client.
pub struct DirectUpload {
    pub content_uri: String,
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub expires_at: i64,
}

/// The media repository service.
pub struct MediaRepo {
    store: Store,
    objects: Arc<dyn MediaStore>,
    server_name: String,
    max_upload_size: u64,
    quota: u64,
    stopping: CancellationToken,
    /// Where media of other servers is fetched from.
    remote: Arc<Remote>,
}

impl MediaRepo {
    /// Opens the configured media store (checking an S3 bucket answers).
    pub async fn open(
        config: &Config,
        store: Store,
        stopping: CancellationToken,
        remote: Arc<Remote>,
    ) -> Result<Self> {
        let objects: Arc<dyn MediaStore> = match config.media_backend {
            MediaBackend::Fs => Arc::new(FsStore::open(config.data_dir.join("media")).await?),
            MediaBackend::S3 => {
                let text = |value: &Option<String>| value.clone().unwrap_or_default();
                let s3 = S3Store::new(&S3Settings {
                    endpoint: text(&config.s3_endpoint),
                    bucket: text(&config.s3_bucket),
                    region: config.s3_region.clone(),
                    access_key_id: text(&config.s3_access_key_id),
                    secret_access_key: text(&config.s3_secret_access_key),
                    force_path_style: config.s3_force_path_style,
                });
                s3.check_bucket().await.map_err(|e| {
                    Error::Internal(format!("the S3 bucket cannot be reached: {e}"))
                })?;
                Arc::new(s3)
            }
        };
        Ok(Self {
            store,
            objects,
            server_name: config.server_name.clone(),
            max_upload_size: config.max_upload_size,
            quota: config.media_quota_bytes,
            stopping,
            remote,
        })
    }

    /// The largest upload accepted.
    pub fn max_upload_size(&self) -> u64 {
        self.max_upload_size
    }

    fn content_uri(&self, media_id: &str) -> String {
        format!("mxc://{}/{media_id}", self.server_name)
    }

    /// How many more bytes `user` may upload (within the upload size limit);
    /// `M_TOO_LARGE` when `announced` does not fit.
    async fn upload_allowance(&self, user: &str, announced: Option<u64>) -> Result<u64> {
        if announced.is_some_and(|n| n > self.max_upload_size) {
            return Err(Error::TooLarge);
        }
        if self.quota == 0 {
            return Ok(self.max_upload_size);
        }
        let used = u64::try_from(self.store.media_usage(user).await?).unwrap_or(0);
        let left = self.quota.saturating_sub(used);
        if left == 0 || announced.is_some_and(|n| n > left) {
            return Err(Error::Forbidden(format!(
                "this upload would exceed your media quota of {} bytes",
                self.quota
            )));
        }
        Ok(left.min(self.max_upload_size))
    }

    /// Streams the bytes into the store; returns the size and content key.
    async fn store_bytes(
        &self,
        user: &str,
        length: Option<u64>,
        body: BodyStream,
    ) -> Result<(i64, String)> {
        let max = self.upload_allowance(user, length).await?;
        let stored = self.objects.put(body, max).await?;
        let size = i64::try_from(stored.size).map_err(|_| Error::TooLarge)?;
        Ok((size, stored.key.as_str().to_owned()))
    }

    /// `POST /_matrix/media/v3/upload`: stores the bytes, returns the `mxc://` URI.
    pub async fn upload(&self, user: &str, upload: Upload) -> Result<String> {
        let (size, key) = self.store_bytes(user, upload.length, upload.body).await?;
        let media_id = random_id();
        self.store
            .insert_media(&MediaRow {
                media_id: media_id.clone(),
                uploader: user.to_owned(),
                content_type: upload.content_type,
                filename: upload.filename,
                size: Some(size),
                object_key: Some(key),
                announced_size: None,
                unused_expires_ts: None,
            })
            .await?;
        Ok(self.content_uri(&media_id))
    }

    /// `POST /_matrix/media/v1/create`: reserves a media id for a later upload.
    pub async fn create(&self, user: &str) -> Result<(String, i64)> {
        if self.store.pending_media_count(user).await? >= MAX_PENDING_RESERVATIONS {
            return Err(Error::LimitExceeded {
                retry_after_ms: 60_000,
            });
        }
        let media_id = random_id();
        let expires = now_ms() + UNUSED_RESERVATION.as_millis() as i64;
        self.store
            .insert_media(&MediaRow {
                media_id: media_id.clone(),
                uploader: user.to_owned(),
                content_type: None,
                filename: None,
                size: None,
                object_key: None,
                announced_size: None,
                unused_expires_ts: Some(expires),
            })
            .await?;
        Ok((self.content_uri(&media_id), expires))
    }

    /// A local media id `user` reserved and may still upload to.
    async fn reservation(&self, user: &str, server_name: &str, media_id: &str) -> Result<MediaRow> {
        let row = self
            .local_media(server_name, media_id)
            .await?
            .ok_or_else(|| Error::NotFound("unknown media id".into()))?;
        if row.uploader != user {
            return Err(Error::Forbidden("this media id is not yours".into()));
        }
        if row.size.is_some() {
            return Err(Error::CannotOverwriteMedia);
        }
        if row.unused_expires_ts.is_some_and(|ts| ts <= now_ms()) {
            return Err(Error::NotFound("the media id reservation expired".into()));
        }
        Ok(row)
    }

    /// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`: the bytes of a reserved id.
    pub async fn upload_to(
        &self,
        user: &str,
        server_name: &str,
        media_id: &str,
        upload: Upload,
    ) -> Result<()> {
        let row = self.reservation(user, server_name, media_id).await?;
        if row.announced_size.is_some() {
            return Err(Error::Forbidden(
                "this media id is for a direct upload".into(),
            ));
        }
        let (size, key) = self.store_bytes(user, upload.length, upload.body).await?;
        if !self
            .store
            .set_media_content(
                media_id,
                upload.content_type.as_deref(),
                upload.filename.as_deref(),
                size,
                &key,
            )
            .await?
        {
            return Err(Error::CannotOverwriteMedia);
        }
        Ok(())
    }

    /// `POST /_teatime/media/v1/upload_url`: a presigned PUT straight to the bucket.
    pub async fn direct_upload(
        &self,
        user: &str,
        content_type: &str,
        size: u64,
        filename: Option<String>,
    ) -> Result<DirectUpload> {
        if !self.objects.supports_presigned_urls() {
            return Err(Error::Unrecognized {
                status: poem::http::StatusCode::NOT_FOUND,
            });
        }
        if content_type.is_empty() || content_type.len() > 255 {
            return Err(Error::InvalidParam("content_type is required".into()));
        }
        if self.store.pending_media_count(user).await? >= MAX_PENDING_RESERVATIONS {
            return Err(Error::LimitExceeded {
                retry_after_ms: 60_000,
            });
        }
        self.upload_allowance(user, Some(size)).await?;
        let media_id = random_id();
        let key = ObjectKey::upload(&media_id)?;
        let presigned = self
            .objects
            .presign_put(&key, content_type, size, DIRECT_UPLOAD_VALIDITY)
            .await?;
        let expires_at = now_ms() + DIRECT_UPLOAD_VALIDITY.as_millis() as i64;
        self.store
            .insert_media(&MediaRow {
                media_id: media_id.clone(),
                uploader: user.to_owned(),
                content_type: Some(content_type.to_owned()),
                filename,
                size: None,
                object_key: None,
                announced_size: Some(i64::try_from(size).map_err(|_| Error::TooLarge)?),
                unused_expires_ts: Some(expires_at),
            })
            .await?;
        Ok(DirectUpload {
            content_uri: self.content_uri(&media_id),
            url: presigned.url,
            method: presigned.method,
            headers: presigned.headers,
            expires_at,
        })
    }

    /// `POST /_teatime/media/v1/complete`: checks the object the client put in
    /// the bucket and serves it from now on.
    pub async fn complete(&self, user: &str, content_uri: &str) -> Result<()> {
        let (server_name, media_id) = parse_mxc(content_uri)?;
        let row = self.reservation(user, server_name, media_id).await?;
        let Some(announced) = row.announced_size else {
            return Err(Error::Forbidden(
                "this media id is not a direct upload".into(),
            ));
        };
        let key = ObjectKey::upload(media_id)?;
        let announced = u64::try_from(announced).unwrap_or(0);
        let size = self
            .objects
            .adopt_upload(&key, announced, self.max_upload_size)
            .await
            .map_err(|e| match e {
                media::Error::NotFound => {
                    Error::NotFound("nothing was uploaded to the URL yet".into())
                }
                other => other.into(),
            })?;
        let size = i64::try_from(size).map_err(|_| Error::TooLarge)?;
        if !self
            .store
            .set_media_content(media_id, None, None, size, key.as_str())
            .await?
        {
            return Err(Error::CannotOverwriteMedia);
        }
        Ok(())
    }

    /// The row of a media id of this server (`None` for unknown ids).
    async fn local_media(&self, server_name: &str, media_id: &str) -> Result<Option<MediaRow>> {
        if server_name != self.server_name {
            return Err(Error::Forbidden("this media is not of this server".into()));
        }
        if !is_media_id(media_id) {
            return Err(Error::NotFound("unknown media id".into()));
        }
        self.store.media(media_id).await
    }

    /// The media's row once its bytes are there, waiting up to `wait` for an
    /// upload in progress (then `M_NOT_YET_UPLOADED`).
    async fn uploaded(
        &self,
        server_name: &str,
        media_id: &str,
        wait: Duration,
    ) -> Result<MediaRow> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_DOWNLOAD_WAIT);
        loop {
            let row = self
                .local_media(server_name, media_id)
                .await?
                .filter(|row| row.size.is_some() || row.unused_expires_ts > Some(now_ms()))
                .ok_or_else(|| Error::NotFound("unknown media id".into()))?;
            if row.size.is_some() {
                return Ok(row);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::NotYetUploaded);
            }
            tokio::select! {
                () = self.stopping.cancelled() => return Err(Error::NotYetUploaded),
                () = tokio::time::sleep(UPLOAD_POLL) => {}
            }
        }
    }

    /// Media of another server: kept here after the first fetch.
    async fn remote_media(&self, server_name: &str, media_id: &str) -> Result<MediaRow> {
        let server = ServerName::parse(server_name)
            .map_err(|_| Error::NotFound("unknown media id".into()))?;
        if !is_media_id(media_id) {
            return Err(Error::NotFound("unknown media id".into()));
        }
        if let Some(row) = self.store.remote_media(server_name, media_id).await? {
            return Ok(row);
        }
        let file = self
            .remote
            .fetch_media(&server, media_id, self.max_upload_size)
            .await?;
        let size = file.bytes.len() as u64;
        let body: BodyStream = Box::pin(futures_util::stream::once(async move {
            Ok(Bytes::from(file.bytes))
        }));
        let stored = self.objects.put(body, size).await?;
        self.store
            .insert_remote_media(
                server_name,
                media_id,
                file.content_type.as_deref(),
                file.filename.as_deref(),
                i64::try_from(stored.size).map_err(|_| Error::TooLarge)?,
                stored.key.as_str(),
            )
            .await?;
        self.store
            .remote_media(server_name, media_id)
            .await?
            .ok_or_else(|| Error::Internal("remote media vanished after it was kept".into()))
    }

    /// The row of media with its bytes here: local (waiting up to `wait`
    /// for an upload in progress) or fetched from its server.
    async fn available(
        &self,
        server_name: &str,
        media_id: &str,
        wait: Duration,
    ) -> Result<MediaRow> {
        if server_name == self.server_name {
            self.uploaded(server_name, media_id, wait).await
        } else {
            self.remote_media(server_name, media_id).await
        }
    }

    /// `GET /_matrix/client/v1/media/download/...`.
    pub async fn download(
        &self,
        server_name: &str,
        media_id: &str,
        wait: Duration,
    ) -> Result<Download> {
        let row = self.available(server_name, media_id, wait).await?;
        let key = stored_key(&row)?;
        Ok(Download {
            content_type: row
                .content_type
                .unwrap_or_else(|| "application/octet-stream".into()),
            filename: row.filename,
            object: self.objects.get(&key).await?,
        })
    }

    /// `GET /_matrix/client/v1/media/thumbnail/...`: made on first request, then kept.
    pub async fn thumbnail(
        &self,
        server_name: &str,
        media_id: &str,
        width: u32,
        height: u32,
        method: ThumbnailMethod,
        wait: Duration,
    ) -> Result<Download> {
        if width == 0 || height == 0 {
            return Err(Error::InvalidParam(
                "width and height must be positive".into(),
            ));
        }
        let row = self.available(server_name, media_id, wait).await?;
        let (width, height, method) = thumbnail_size(width, height, method);
        let method_name = match method {
            ThumbnailMethod::Crop => "crop",
            ThumbnailMethod::Scale => "scale",
        };
        let kept = match self
            .store
            .thumbnail(&row.media_id, width, height, method_name)
            .await?
        {
            Some(kept) => kept,
            None => {
                let made = self.make_thumbnail(&row, width, height, method).await?;
                self.store
                    .insert_thumbnail(&row.media_id, width, height, method_name, &made)
                    .await?;
                made
            }
        };
        let key: ObjectKey = kept.object_key.parse()?;
        Ok(Download {
            content_type: kept.content_type,
            filename: None,
            object: self.objects.get(&key).await?,
        })
    }

    async fn make_thumbnail(
        &self,
        row: &MediaRow,
        width: u32,
        height: u32,
        method: ThumbnailMethod,
    ) -> Result<ThumbnailRow> {
        let size = u64::try_from(row.size.unwrap_or(0)).unwrap_or(0);
        if size > MAX_THUMBNAIL_SOURCE {
            return Err(Error::Unknown(
                "the media is too large to make a thumbnail of".into(),
            ));
        }
        let content_type = row.content_type.clone().unwrap_or_default();
        let original = read_all(self.objects.get(&stored_key(row)?).await?).await?;
        // Decoding and resizing is CPU work: keep it off the async threads.
        let thumbnail = tokio::task::spawn_blocking(move || {
            make_thumbnail(&original, &content_type, width, height, method)
        })
        .await
        .map_err(|e| Error::Internal(format!("thumbnailing stopped: {e}")))??;
        let thumbnail_size = thumbnail.bytes.len() as u64;
        let body: BodyStream = Box::pin(futures_util::stream::once(async move {
            Ok(Bytes::from(thumbnail.bytes))
        }));
        let stored = self.objects.put(body, thumbnail_size).await?;
        Ok(ThumbnailRow {
            content_type: thumbnail.content_type.to_owned(),
            object_key: stored.key.as_str().to_owned(),
            size: i64::try_from(stored.size).unwrap_or(i64::MAX),
        })
    }
}

fn stored_key(row: &MediaRow) -> Result<ObjectKey> {
    let key = row
        .object_key
        .as_deref()
        .ok_or_else(|| Error::Internal("uploaded media without an object key".into()))?;
    Ok(key.parse()?)
}

async fn read_all(object: ObjectBody) -> Result<Vec<u8>> {
    use futures_util::TryStreamExt;
    let mut bytes = Vec::with_capacity(usize::try_from(object.size).unwrap_or(0));
    let mut body = object.body;
    while let Some(chunk) = body.try_next().await.map_err(media::Error::Io)? {
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The kept size that serves a request for `width`x`height` by `method`.
fn thumbnail_size(width: u32, height: u32, method: ThumbnailMethod) -> (u32, u32, ThumbnailMethod) {
    let candidates: Vec<_> = THUMBNAIL_SIZES
        .iter()
        .filter(|(_, _, m)| *m == method)
        .collect();
    candidates
        .iter()
        .find(|(w, h, _)| *w >= width && *h >= height)
        .or(candidates.last())
        .map_or((width, height, method), |size| **size)
}

/// Media ids are what this server makes: URL-safe base64 characters.
fn is_media_id(media_id: &str) -> bool {
    !media_id.is_empty()
        && media_id.len() <= 255
        && media_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// Splits `mxc://server/mediaId`.
pub fn parse_mxc(uri: &str) -> Result<(&str, &str)> {
    uri.strip_prefix("mxc://")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(server, id)| !server.is_empty() && is_media_id(id))
        .ok_or_else(|| Error::InvalidParam(format!("not a media URI: {uri}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnail_requests_snap_to_kept_sizes() {
        use ThumbnailMethod::{Crop, Scale};
        assert_eq!(thumbnail_size(10, 10, Crop), (32, 32, Crop));
        assert_eq!(thumbnail_size(64, 50, Crop), (96, 96, Crop));
        assert_eq!(thumbnail_size(500, 500, Crop), (96, 96, Crop));
        assert_eq!(thumbnail_size(300, 200, Scale), (320, 240, Scale));
        assert_eq!(thumbnail_size(321, 100, Scale), (640, 480, Scale));
        assert_eq!(thumbnail_size(4000, 4000, Scale), (800, 600, Scale));
    }

    #[test]
    fn media_uris_are_checked() {
        assert_eq!(
            parse_mxc("mxc://example.org/abc_D-1").unwrap(),
            ("example.org", "abc_D-1")
        );
        for bad in [
            "http://x/y",
            "mxc://",
            "mxc://x/",
            "mxc:///y",
            "mxc://x/../y",
            "mxc://x/a/b",
        ] {
            assert!(parse_mxc(bad).is_err(), "{bad}");
        }
    }
}
