//! The media repository against the real server: on disk and on a real
//! S3-compatible server (s3s-fs, which checks signatures like R2), with
//! SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use common::{Backend, PASSWORD, Session, TestServer, assert_error};
use homeserver::config::MediaBackend;
use media::testing::S3Server;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

/// Declares each `async fn name(media: MediaServer)` as three tests: on disk
/// with SQLite and PostgreSQL, and on S3 with SQLite.
macro_rules! on_each_store {
    ($($name:ident),* $(,)?) => {
        mod disk_sqlite {
            $(#[tokio::test] async fn $name() {
                super::$name(super::MediaServer::start(super::Backend::Sqlite, super::MediaBackend::Fs, |_| {}).await).await
            })*
        }
        mod disk_postgres {
            $(#[tokio::test] async fn $name() {
                super::$name(super::MediaServer::start(super::Backend::Postgres, super::MediaBackend::Fs, |_| {}).await).await
            })*
        }
        mod s3_sqlite {
            $(#[tokio::test] async fn $name() {
                super::$name(super::MediaServer::start(super::Backend::Sqlite, super::MediaBackend::S3, |_| {}).await).await
            })*
        }
    };
}

on_each_store!(
    uploads_round_trip_with_safe_headers,
    downloads_need_a_token_and_a_real_id,
    thumbnails_of_png_and_jpeg_are_made_once,
    asynchronous_uploads_wait_and_never_overwrite,
    direct_uploads_go_to_the_bucket_when_there_is_one,
);

const BUCKET: &str = "teatime-media";

/// A server with a user, and the S3 server behind it if any.
struct MediaServer {
    server: TestServer,
    user: Session,
    s3: Option<S3Server>,
}

impl MediaServer {
    async fn start(
        backend: Backend,
        store: MediaBackend,
        tweak: impl FnOnce(&mut homeserver::config::Config),
    ) -> MediaServer {
        let s3 = (store == MediaBackend::S3).then(|| {
            let s3 = S3Server::start();
            s3.create_bucket(BUCKET);
            s3
        });
        let server = TestServer::start_with(backend, |config| {
            config.media_backend = store;
            if let Some(s3) = &s3 {
                let settings = s3.settings(BUCKET);
                config.s3_endpoint = Some(settings.endpoint);
                config.s3_bucket = Some(settings.bucket);
                config.s3_access_key_id = Some(settings.access_key_id);
                config.s3_secret_access_key = Some(settings.secret_access_key);
                config.s3_force_path_style = true;
            }
            tweak(config);
        })
        .await;
        let user = server.register("uploader", PASSWORD).await;
        MediaServer { server, user, s3 }
    }

    async fn finish(self) {
        self.server.finish().await;
        drop(self.s3);
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base)
    }

    /// Uploads `bytes`; returns the status and JSON body.
    async fn upload(&self, bytes: Vec<u8>, content_type: &str, query: &str) -> (StatusCode, Value) {
        let response = self
            .server
            .http
            .post(self.url(&format!("/_matrix/media/v3/upload{query}")))
            .bearer_auth(&self.user.access_token)
            .header(header::CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await
            .expect("upload sent");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn upload_ok(&self, bytes: Vec<u8>, content_type: &str) -> String {
        let (status, body) = self.upload(bytes, content_type, "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["content_uri"]
            .as_str()
            .expect("content_uri")
            .to_owned()
    }

    /// `GET` of a media path with the user's token.
    async fn get(&self, path: &str) -> reqwest::Response {
        self.server
            .http
            .get(self.url(path))
            .bearer_auth(&self.user.access_token)
            .send()
            .await
            .expect("request sent")
    }

    async fn download(&self, content_uri: &str, query: &str) -> reqwest::Response {
        let server_and_id = content_uri.strip_prefix("mxc://").expect("mxc URI");
        self.get(&format!(
            "/_matrix/client/v1/media/download/{server_and_id}{query}"
        ))
        .await
    }
}

async fn error_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn header_of<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn uploads_round_trip_with_safe_headers(media: MediaServer) {
    let text = b"hello, media".to_vec();
    let (status, body) = media
        .upload(text.clone(), "text/plain", "?filename=notes%20(1).txt")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let content_uri = body["content_uri"].as_str().unwrap();
    assert!(content_uri.starts_with("mxc://localhost/"), "{content_uri}");
    let response = media.download(content_uri, "").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_of(&response, "content-type"), "text/plain");
    assert_eq!(
        header_of(&response, "content-disposition"),
        "inline; filename*=utf-8''notes%20%281%29.txt"
    );
    assert_eq!(header_of(&response, "x-content-type-options"), "nosniff");
    assert!(header_of(&response, "content-security-policy").contains("sandbox"));
    assert_eq!(response.bytes().await.unwrap().as_ref(), text.as_slice());

    // Active content is never shown inline, and the name can be chosen.
    let page = media
        .upload_ok(b"<script>alert(1)</script>".to_vec(), "text/html")
        .await;
    let response = media.download(&page, "/page.html").await;
    assert_eq!(
        header_of(&response, "content-disposition"),
        "attachment; filename*=utf-8''page.html"
    );

    // Identical bytes are kept once (the second upload is a new id).
    let again = media.upload_ok(text.clone(), "text/plain").await;
    assert_ne!(again, content_uri);
    assert_eq!(
        media
            .download(&again, "")
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        text.as_slice()
    );

    // A large upload streams through intact.
    let large: Vec<u8> = (0..9 * 1024 * 1024).map(|n| (n % 251) as u8).collect();
    let large_uri = media
        .upload_ok(large.clone(), "application/octet-stream")
        .await;
    let response = media.download(&large_uri, "").await;
    assert_eq!(
        header_of(&response, "content-length"),
        large.len().to_string()
    );
    assert!(response.bytes().await.unwrap().as_ref() == large.as_slice());

    let config = media.get("/_matrix/client/v1/media/config").await;
    let config: Value = config.json().await.unwrap();
    assert_eq!(config["m.upload.size"], 50 * 1024 * 1024);
    media.finish().await;
}

async fn downloads_need_a_token_and_a_real_id(media: MediaServer) {
    let content_uri = media.upload_ok(b"private".to_vec(), "text/plain").await;
    let server_and_id = content_uri.strip_prefix("mxc://").unwrap();
    let anonymous = media
        .server
        .http
        .get(media.url(&format!(
            "/_matrix/client/v1/media/download/{server_and_id}"
        )))
        .send()
        .await
        .unwrap();
    assert_error(
        &error_of(anonymous).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    // The legacy unauthenticated endpoints are off by default.
    let legacy = media
        .server
        .http
        .get(media.url(&format!("/_matrix/media/v3/download/{server_and_id}")))
        .send()
        .await
        .unwrap();
    assert_error(
        &error_of(legacy).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    for missing in [
        "/_matrix/client/v1/media/download/localhost/nosuchmedia",
        "/_matrix/client/v1/media/download/localhost/bad.id",
        "/_matrix/client/v1/media/download/elsewhere.example/abc",
    ] {
        let response = media.get(missing).await;
        assert_error(
            &error_of(response).await,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        );
    }
    // An id that is a path matches no route at all.
    for traversal in [
        "/_matrix/client/v1/media/download/localhost/..%2F..%2Fsigning.key",
        "/_matrix/client/v1/media/download/localhost/../../signing.key",
        "/_matrix/client/v1/media/download/localhost/%2E%2E",
    ] {
        let response = media.get(traversal).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{traversal}");
    }
    let anonymous_upload = media
        .server
        .http
        .post(media.url("/_matrix/media/v3/upload"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(
        &error_of(anonymous_upload).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    media.finish().await;
}

fn gradient(width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    })
}

fn encoded(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    gradient(width, height)
        .write_to(&mut bytes, format)
        .expect("encode test image");
    bytes.into_inner()
}

async fn thumbnails_of_png_and_jpeg_are_made_once(media: MediaServer) {
    let png = media
        .upload_ok(encoded(640, 480, image::ImageFormat::Png), "image/png")
        .await;
    let jpeg = media
        .upload_ok(encoded(1200, 900, image::ImageFormat::Jpeg), "image/jpeg")
        .await;
    let thumbnail = |uri: &str, query: &str| {
        let server_and_id = uri.strip_prefix("mxc://").unwrap().to_owned();
        let query = query.to_owned();
        let media = &media;
        async move {
            media
                .get(&format!(
                    "/_matrix/client/v1/media/thumbnail/{server_and_id}?{query}"
                ))
                .await
        }
    };
    for (uri, query, content_type, size) in [
        (
            &png,
            "width=96&height=96&method=crop",
            "image/png",
            (96, 96),
        ),
        (
            &png,
            "width=300&height=200&method=scale",
            "image/png",
            (320, 240),
        ),
        (
            &jpeg,
            "width=32&height=32&method=crop",
            "image/jpeg",
            (32, 32),
        ),
        (&jpeg, "width=600&height=400", "image/jpeg", (640, 480)),
    ] {
        for _ in 0..2 {
            let response = thumbnail(uri, query).await;
            assert_eq!(response.status(), StatusCode::OK, "{query}");
            assert_eq!(header_of(&response, "content-type"), content_type);
            let bytes = response.bytes().await.unwrap();
            let decoded = image::load_from_memory(&bytes).expect("a thumbnail decodes");
            assert_eq!((decoded.width(), decoded.height()), size, "{query}");
        }
    }
    // Each size was made once and kept.
    let png_id = png.rsplit('/').next().unwrap();
    let state = media.server.state();
    assert!(
        state
            .store
            .thumbnail(png_id, 96, 96, "crop")
            .await
            .unwrap()
            .is_some()
    );

    let text = media.upload_ok(b"not an image".to_vec(), "image/png").await;
    let refused = thumbnail(&text, "width=32&height=32").await;
    assert_error(
        &error_of(refused).await,
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN",
    );
    let bad_method = thumbnail(&png, "width=32&height=32&method=stretch").await;
    assert_error(
        &error_of(bad_method).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    media.finish().await;
}

async fn asynchronous_uploads_wait_and_never_overwrite(media: MediaServer) {
    let (status, created) = media
        .server
        .post(
            "/_matrix/media/v1/create",
            Some(&media.user.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let content_uri = created["content_uri"].as_str().unwrap().to_owned();
    assert!(created["unused_expires_at"].as_i64().unwrap() > 0);

    let early = media.download(&content_uri, "?timeout_ms=200").await;
    assert_error(
        &error_of(early).await,
        StatusCode::GATEWAY_TIMEOUT,
        "M_NOT_YET_UPLOADED",
    );
    // A download that waits gets the bytes as soon as they arrive.
    let waiting = {
        let http = media.server.http.clone();
        let url = media.url(&format!(
            "/_matrix/client/v1/media/download/{}?timeout_ms=10000",
            content_uri.strip_prefix("mxc://").unwrap()
        ));
        let token = media.user.access_token.clone();
        tokio::spawn(async move {
            let response = http.get(url).bearer_auth(token).send().await.unwrap();
            (response.status(), response.bytes().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let put_path = format!(
        "/_matrix/media/v3/upload/{}",
        content_uri.strip_prefix("mxc://").unwrap()
    );
    let put = |token: String, body: &'static [u8]| {
        let request = media
            .server
            .http
            .put(media.url(&put_path))
            .bearer_auth(token)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(body);
        async move { error_of(request.send().await.unwrap()).await }
    };
    let intruder = media.server.register("intruder", PASSWORD).await;
    assert_error(
        &put(intruder.access_token.clone(), b"not yours").await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let (status, body) = put(media.user.access_token.clone(), b"arrived later").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, bytes) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes.as_ref(), b"arrived later");
    assert_error(
        &put(media.user.access_token.clone(), b"overwrite").await,
        StatusCode::CONFLICT,
        "M_CANNOT_OVERWRITE_MEDIA",
    );
    media.finish().await;
}

async fn direct_uploads_go_to_the_bucket_when_there_is_one(media: MediaServer) {
    let token = media.user.access_token.clone();
    let bytes = b"straight to the bucket".to_vec();
    let (status, grant) = media
        .server
        .post(
            "/_teatime/media/v1/upload_url",
            Some(&token),
            json!({ "content_type": "text/plain", "size": bytes.len(), "filename": "direct.txt" }),
        )
        .await;
    if media.s3.is_none() {
        assert_error(&(status, grant), StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
        media.finish().await;
        return;
    }
    assert_eq!(status, StatusCode::OK, "{grant}");
    let content_uri = grant["content_uri"].as_str().unwrap().to_owned();
    let complete = || {
        media.server.post(
            "/_teatime/media/v1/complete",
            Some(&token),
            json!({ "content_uri": content_uri }),
        )
    };
    // Completing before the bytes are there finds nothing.
    assert_error(&complete().await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // The client sends the bytes itself, with exactly the headers it was given.
    let mut put = reqwest::Client::new().request(
        grant["upload_method"].as_str().unwrap().parse().unwrap(),
        grant["upload_url"].as_str().unwrap(),
    );
    for (name, value) in grant["upload_headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    let uploaded = put.body(bytes.clone()).send().await.unwrap();
    assert!(
        uploaded.status().is_success(),
        "{:?}",
        uploaded.text().await
    );

    // Nothing is served before `complete`.
    let early = media.download(&content_uri, "?timeout_ms=100").await;
    assert_error(
        &error_of(early).await,
        StatusCode::GATEWAY_TIMEOUT,
        "M_NOT_YET_UPLOADED",
    );
    let (status, body) = complete().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response = media.download(&content_uri, "").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_of(&response, "content-disposition"),
        "inline; filename*=utf-8''direct.txt"
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());
    assert_error(
        &complete().await,
        StatusCode::CONFLICT,
        "M_CANNOT_OVERWRITE_MEDIA",
    );

    let too_big = media
        .server
        .post(
            "/_teatime/media/v1/upload_url",
            Some(&token),
            json!({ "content_type": "video/mp4", "size": 60 * 1024 * 1024 }),
        )
        .await;
    assert_error(&too_big, StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    media.finish().await;
}

on_both_backends!(limits_and_quotas_refuse_and_keep_nothing);

async fn limits_and_quotas_refuse_and_keep_nothing(backend: Backend) {
    let media = MediaServer::start(backend, MediaBackend::Fs, |config| {
        config.max_upload_size = 1000;
        config.media_quota_bytes = 1500;
    })
    .await;
    let config: Value = media
        .get("/_matrix/client/v1/media/config")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(config["m.upload.size"], 1000);
    assert_error(
        &media
            .upload(vec![1; 2000], "application/octet-stream", "")
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    // Without a Content-Length the limit is enforced while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..20).map(|_| Ok(vec![7; 100])).collect();
    let streamed = media
        .server
        .http
        .post(media.url("/_matrix/media/v3/upload"))
        .bearer_auth(&media.user.access_token)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_error(
        &error_of(streamed).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    let state = media.server.state();
    assert_eq!(
        state.store.media_usage(&media.user.user_id).await.unwrap(),
        0,
        "refused uploads leave nothing"
    );
    media
        .upload_ok(vec![2; 1000], "application/octet-stream")
        .await;
    assert_error(
        &media
            .upload(vec![3; 600], "application/octet-stream", "")
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    media
        .upload_ok(vec![4; 500], "application/octet-stream")
        .await;
    assert_eq!(
        state.store.media_usage(&media.user.user_id).await.unwrap(),
        1500
    );
    media.finish().await;
}
