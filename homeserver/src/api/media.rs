//! The media repository: uploads (plain, asynchronous, and presigned direct
//! uploads to S3), authenticated downloads and thumbnails, and the legacy
//! unauthenticated downloads when enabled.

// A handler's parameters are its endpoint's inputs, documented one by one.
#![allow(clippy::too_many_arguments)]

use std::{sync::Arc, time::Duration};

use poem::{Body, Request, http::header, web::Data};
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::{Binary, Json, Response},
};

use super::{AccessToken, Tag, session::Empty};
use crate::{
    error::{Error, Result},
    media_repo::{DEFAULT_DOWNLOAD_WAIT, Download, Upload},
    state::AppState,
};

#[derive(Object)]
struct ContentUri {
    content_uri: String,
}

#[derive(Object)]
struct Created {
    content_uri: String,
    /// When the reserved id lapses unless uploaded to (ms since the Unix epoch).
    unused_expires_at: i64,
}

#[derive(Object)]
struct MediaConfig {
    /// The largest upload accepted, in bytes.
    #[oai(rename = "m.upload.size")]
    upload_size: u64,
}

#[derive(Object)]
struct DirectUploadRequest {
    /// The Content-Type the client will send to the bucket.
    #[oai(deserialize_with = "crate::api::strings_only")]
    content_type: String,
    /// The exact size in bytes the client will send.
    size: u64,
    #[oai(deserialize_with = "crate::api::strings_only")]
    filename: Option<String>,
}

/// Where and how to send the bytes; then call `complete`.
#[derive(Object)]
struct DirectUploadGrant {
    content_uri: String,
    upload_url: String,
    upload_method: String,
    /// Headers to send exactly as given (they are signed).
    upload_headers: std::collections::BTreeMap<String, String>,
    /// When `upload_url` stops working (ms since the Unix epoch).
    expires_at: i64,
}

#[derive(Object)]
struct CompleteRequest {
    #[oai(deserialize_with = "crate::api::strings_only")]
    content_uri: String,
}

/// Types browsers may show inline; anything else downloads as an attachment.
const INLINE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "audio/mpeg",
    "audio/mp4",
    "audio/ogg",
    "audio/webm",
    "audio/wav",
    "audio/opus",
    "text/plain",
];

/// Served media never runs as a page of this origin, whatever it contains.
const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
     style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

pub(super) fn content_disposition(content_type: &str, filename: Option<&str>) -> String {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let kind = if INLINE_TYPES.contains(&essence.as_str()) {
        "inline"
    } else {
        "attachment"
    };
    match filename.filter(|name| !name.is_empty()) {
        // RFC 6266 / 8187: the name percent-encoded as UTF-8.
        Some(name) => {
            let encoded: String = name
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("{kind}; filename*=utf-8''{encoded}")
        }
        None => kind.to_owned(),
    }
}

fn file_response(download: Download, filename: Option<&str>) -> Response<Binary<Body>> {
    let disposition = content_disposition(
        &download.content_type,
        filename.or(download.filename.as_deref()),
    );
    let size = download.object.size;
    Response::new(Binary(Body::from_bytes_stream(download.object.body)))
        .header(header::CONTENT_TYPE, download.content_type)
        .header(header::CONTENT_LENGTH, size.to_string())
        .header(header::CONTENT_DISPOSITION, disposition)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .header("Cross-Origin-Resource-Policy", "cross-origin")
}

/// Serves a file, under `filename` when given (else its uploaded name).
async fn serve_file(
    state: &AppState,
    server_name: &str,
    media_id: &str,
    wait: Duration,
    filename: Option<&str>,
) -> Result<Response<Binary<Body>>> {
    let download = state.media.download(server_name, media_id, wait).await?;
    Ok(file_response(download, filename))
}

/// Serves the thumbnail of `(width, height, method)`.
async fn serve_thumbnail(
    state: &AppState,
    server_name: &str,
    media_id: &str,
    (width, height, method): (u32, u32, Option<&str>),
    wait: Duration,
) -> Result<Response<Binary<Body>>> {
    let method = thumbnail_method(method)?;
    let download = state
        .media
        .thumbnail(server_name, media_id, width, height, method, wait)
        .await?;
    Ok(file_response(download, None))
}

fn upload_of(req: &Request, filename: Option<String>, body: Binary<Body>) -> Upload {
    let text = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Upload {
        content_type: text(header::CONTENT_TYPE).filter(|t| !t.is_empty() && t.len() <= 255),
        filename: filename.filter(|name| !name.is_empty() && name.len() <= 255),
        length: text(header::CONTENT_LENGTH).and_then(|n| n.parse().ok()),
        body: Box::pin(body.0.into_bytes_stream()),
    }
}

fn wait(timeout_ms: Option<u64>) -> Duration {
    timeout_ms.map_or(DEFAULT_DOWNLOAD_WAIT, Duration::from_millis)
}

pub(super) fn thumbnail_method(method: Option<&str>) -> Result<media::ThumbnailMethod> {
    match method {
        None | Some("scale") => Ok(media::ThumbnailMethod::Scale),
        Some("crop") => Ok(media::ThumbnailMethod::Crop),
        Some(other) => Err(Error::InvalidParam(format!(
            "method must be crop or scale, not {other:?}"
        ))),
    }
}

/// Legacy unauthenticated media: 404 `M_NOT_FOUND` unless enabled, as the spec
/// asks of servers that froze these endpoints.
fn legacy_allowed(state: &AppState) -> Result<()> {
    if state.config.legacy_media_download {
        Ok(())
    } else {
        Err(Error::NotFound(
            "unauthenticated media is disabled; use /_matrix/client/v1/media".into(),
        ))
    }
}

pub struct MediaApi;

#[OpenApi(tag = "Tag::Media")]
impl MediaApi {
    /// # POST /_matrix/media/v3/upload
    /// Uploads a file (the body, with its Content-Type) and returns its `mxc://` URI.
    #[oai(
        path = "/_matrix/media/v3/upload",
        method = "post",
        operation_id = "uploadContent"
    )]
    async fn upload(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        req: &Request,
        filename: Query<Option<String>>,
        body: Binary<Body>,
    ) -> Result<Json<ContentUri>> {
        let upload = upload_of(req, filename.0, body);
        let content_uri = state.media.upload(auth.0.user_id.as_str(), upload).await?;
        Ok(Json(ContentUri { content_uri }))
    }

    /// # POST /_matrix/media/v1/create
    /// Reserves an `mxc://` URI to upload to later.
    #[oai(
        path = "/_matrix/media/v1/create",
        method = "post",
        operation_id = "createContent"
    )]
    async fn create(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
    ) -> Result<Json<Created>> {
        let (content_uri, unused_expires_at) = state.media.create(auth.0.user_id.as_str()).await?;
        Ok(Json(Created {
            content_uri,
            unused_expires_at,
        }))
    }

    /// # PUT /_matrix/media/v3/upload/{serverName}/{mediaId}
    /// Uploads the bytes of a reserved `mxc://` URI.
    #[oai(
        path = "/_matrix/media/v3/upload/:server_name/:media_id",
        method = "put",
        operation_id = "uploadContentToMXC"
    )]
    async fn upload_to(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        req: &Request,
        server_name: Path<String>,
        media_id: Path<String>,
        filename: Query<Option<String>>,
        body: Binary<Body>,
    ) -> Result<Json<Empty>> {
        let upload = upload_of(req, filename.0, body);
        state
            .media
            .upload_to(auth.0.user_id.as_str(), &server_name.0, &media_id.0, upload)
            .await?;
        Ok(Json(Empty {}))
    }

    /// # GET /_matrix/client/v1/media/config
    /// The media repository's limits.
    #[oai(
        path = "/_matrix/client/v1/media/config",
        method = "get",
        operation_id = "getConfigAuthed"
    )]
    async fn config(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: AccessToken,
    ) -> Result<Json<MediaConfig>> {
        Ok(Json(MediaConfig {
            upload_size: state.media.max_upload_size(),
        }))
    }

    /// # GET /_matrix/client/v1/media/download/{serverName}/{mediaId}
    /// Downloads a file; waits up to `timeout_ms` for an upload in progress.
    #[oai(
        path = "/_matrix/client/v1/media/download/:server_name/:media_id",
        method = "get",
        operation_id = "getContentAuthed"
    )]
    async fn download(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: AccessToken,
        server_name: Path<String>,
        media_id: Path<String>,
        timeout_ms: Query<Option<u64>>,
    ) -> Result<Response<Binary<Body>>> {
        serve_file(&state, &server_name, &media_id, wait(timeout_ms.0), None).await
    }

    /// # GET /_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}
    /// Downloads a file under the given file name.
    #[oai(
        path = "/_matrix/client/v1/media/download/:server_name/:media_id/:file_name",
        method = "get",
        operation_id = "getContentOverrideNameAuthed"
    )]
    async fn download_as(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: AccessToken,
        server_name: Path<String>,
        media_id: Path<String>,
        file_name: Path<String>,
        timeout_ms: Query<Option<u64>>,
    ) -> Result<Response<Binary<Body>>> {
        serve_file(
            &state,
            &server_name,
            &media_id,
            wait(timeout_ms.0),
            Some(&file_name),
        )
        .await
    }

    /// # GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}
    /// A thumbnail of an image (`method` `scale` or `crop`), made once and kept.
    #[oai(
        path = "/_matrix/client/v1/media/thumbnail/:server_name/:media_id",
        method = "get",
        operation_id = "getContentThumbnailAuthed"
    )]
    async fn thumbnail(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: AccessToken,
        server_name: Path<String>,
        media_id: Path<String>,
        width: Query<u32>,
        height: Query<u32>,
        method: Query<Option<String>>,
        timeout_ms: Query<Option<u64>>,
    ) -> Result<Response<Binary<Body>>> {
        let size = (width.0, height.0, method.as_deref());
        serve_thumbnail(&state, &server_name, &media_id, size, wait(timeout_ms.0)).await
    }

    /// # GET /_matrix/media/v3/download/{serverName}/{mediaId}
    /// Deprecated unauthenticated download: 404 unless `legacy_media_download` is on.
    #[oai(
        path = "/_matrix/media/v3/download/:server_name/:media_id",
        method = "get",
        operation_id = "getContent",
        deprecated
    )]
    async fn legacy_download(
        &self,
        state: Data<&Arc<AppState>>,
        server_name: Path<String>,
        media_id: Path<String>,
        timeout_ms: Query<Option<u64>>,
    ) -> Result<Response<Binary<Body>>> {
        legacy_allowed(&state)?;
        serve_file(&state, &server_name, &media_id, wait(timeout_ms.0), None).await
    }

    /// # GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}
    /// Deprecated unauthenticated thumbnail: 404 unless `legacy_media_download` is on.
    #[oai(
        path = "/_matrix/media/v3/thumbnail/:server_name/:media_id",
        method = "get",
        operation_id = "getContentThumbnail",
        deprecated
    )]
    async fn legacy_thumbnail(
        &self,
        state: Data<&Arc<AppState>>,
        server_name: Path<String>,
        media_id: Path<String>,
        width: Query<u32>,
        height: Query<u32>,
        method: Query<Option<String>>,
    ) -> Result<Response<Binary<Body>>> {
        legacy_allowed(&state)?;
        let size = (width.0, height.0, method.as_deref());
        serve_thumbnail(&state, &server_name, &media_id, size, DEFAULT_DOWNLOAD_WAIT).await
    }

    /// # POST /_teatime/media/v1/upload_url
    /// With the S3 backend: a presigned URL to send the bytes straight to the
    /// bucket (exactly `size` bytes of `content_type`, with `upload_headers`),
    /// then `POST /_teatime/media/v1/complete`. Nothing is served before that.
    /// 404 `M_UNRECOGNIZED` on servers that keep media on disk.
    #[oai(
        path = "/_teatime/media/v1/upload_url",
        method = "post",
        operation_id = "createDirectUpload"
    )]
    async fn direct_upload(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        body: Json<DirectUploadRequest>,
    ) -> Result<Json<DirectUploadGrant>> {
        let body = body.0;
        let grant = state
            .media
            .direct_upload(
                auth.0.user_id.as_str(),
                &body.content_type,
                body.size,
                body.filename,
            )
            .await?;
        Ok(Json(DirectUploadGrant {
            content_uri: grant.content_uri,
            upload_url: grant.url,
            upload_method: grant.method,
            upload_headers: grant.headers.into_iter().collect(),
            expires_at: grant.expires_at,
        }))
    }

    /// # POST /_teatime/media/v1/complete
    /// Checks the object of a direct upload (it exists, has the announced size,
    /// is within the limit) and serves it from now on.
    #[oai(
        path = "/_teatime/media/v1/complete",
        method = "post",
        operation_id = "completeDirectUpload"
    )]
    async fn complete(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        body: Json<CompleteRequest>,
    ) -> Result<Json<ContentUri>> {
        let content_uri = body.0.content_uri;
        state
            .media
            .complete(auth.0.user_id.as_str(), &content_uri)
            .await?;
        Ok(Json(ContentUri { content_uri }))
    }
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn only_safe_types_are_inline() {
        assert_eq!(content_disposition("image/png", None), "inline");
        assert_eq!(
            content_disposition("IMAGE/JPEG; charset=x", Some("a b.jpg")),
            "inline; filename*=utf-8''a%20b.jpg"
        );
        assert_eq!(content_disposition("text/html", None), "attachment");
        assert_eq!(content_disposition("image/svg+xml", None), "attachment");
        assert_eq!(
            content_disposition("application/pdf", Some("naïve\".pdf")),
            "attachment; filename*=utf-8''na%C3%AFve%22.pdf"
        );
    }
}
