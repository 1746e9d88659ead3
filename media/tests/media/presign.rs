//! Presigned URLs and direct uploads, checked by s3s-fs the way R2 checks them:
//! signature, expiry and signed headers.

use std::time::Duration;

use crate::common::{TestStore, body_of, read_all, test_bytes};
use media::{Error, MAX_PRESIGN_EXPIRY, ObjectKey, PresignedRequest, ResponseOverrides};
use reqwest::StatusCode;

const MINUTE: Duration = Duration::from_secs(60);

/// Performs a presigned request the way a client would: plain HTTP, no
/// credentials, exactly the headers it came with.
async fn perform(request: &PresignedRequest, body: Option<Vec<u8>>) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap();
    let mut builder = reqwest::Client::new().request(method, &request.url);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = body {
        builder = builder.body(body);
    }
    builder.send().await.expect("request to s3s-fs")
}

async fn upload_directly(test: &TestStore, id: &str, bytes: &[u8]) -> ObjectKey {
    let key = ObjectKey::upload(id).unwrap();
    let request = test
        .store
        .presign_put(&key, "image/png", bytes.len() as u64, MINUTE)
        .await
        .unwrap();
    let response = perform(&request, Some(bytes.to_vec())).await;
    assert!(
        response.status().is_success(),
        "presigned PUT: {}",
        response.status()
    );
    key
}

#[tokio::test]
async fn presigned_put_then_adopt() {
    let test = TestStore::s3().await;
    assert!(test.store.supports_presigned_urls());
    let bytes = test_bytes(70_000, 1);
    let key = ObjectKey::upload("direct-upload_1").unwrap();
    let request = test
        .store
        .presign_put(&key, "image/png", bytes.len() as u64, MINUTE)
        .await
        .unwrap();
    assert_eq!(request.method, "PUT");
    assert_eq!(request.expires_in, MINUTE);
    assert!(request.url.contains("X-Amz-Signature="), "{}", request.url);
    // Both are signed: a client cannot send another type or length.
    let has_header = |wanted: &str, expected: &str| {
        request
            .headers
            .iter()
            .any(|(name, value)| name == wanted && value == expected)
    };
    assert!(
        has_header("content-type", "image/png"),
        "{:?}",
        request.headers
    );
    assert!(
        has_header("content-length", "70000"),
        "{:?}",
        request.headers
    );

    let response = perform(&request, Some(bytes.clone())).await;
    assert!(
        response.status().is_success(),
        "presigned PUT: {}",
        response.status()
    );

    assert_eq!(
        test.store
            .adopt_upload(&key, bytes.len() as u64, 100_000)
            .await
            .unwrap(),
        70_000
    );
    assert_eq!(read_all(test.store.get(&key).await.unwrap()).await, bytes);
    assert_eq!(test.contents().await, [key.to_string()]);
}

#[tokio::test]
async fn adopt_refuses_and_deletes_wrong_sizes() {
    let test = TestStore::s3().await;

    let key = upload_directly(&test, "mismatch", &test_bytes(1000, 2)).await;
    let error = test
        .store
        .adopt_upload(&key, 999, 10_000)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::SizeMismatch {
                expected: 999,
                actual: 1000
            }
        ),
        "{error:?}"
    );
    assert_eq!(test.store.head(&key).await.unwrap(), None);

    let key = upload_directly(&test, "oversize", &test_bytes(1000, 3)).await;
    let error = test.store.adopt_upload(&key, 1000, 999).await.unwrap_err();
    assert!(
        matches!(error, Error::TooLarge { max_size: 999 }),
        "{error:?}"
    );
    assert_eq!(test.store.head(&key).await.unwrap(), None);

    let missing = ObjectKey::upload("never-uploaded").unwrap();
    assert!(matches!(
        test.store.adopt_upload(&missing, 10, 10).await,
        Err(Error::NotFound)
    ));
    assert!(test.contents().await.is_empty());
}

#[tokio::test]
async fn presigned_put_refuses_a_different_body_length() {
    let test = TestStore::s3().await;
    let key = ObjectKey::upload("longer").unwrap();
    let mut request = test
        .store
        .presign_put(&key, "image/png", 100, MINUTE)
        .await
        .unwrap();
    request
        .headers
        .retain(|(name, _)| !name.eq_ignore_ascii_case("content-length"));
    let response = perform(&request, Some(test_bytes(5000, 4))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(test.store.head(&key).await.unwrap(), None);
}

#[tokio::test]
async fn presigned_put_refuses_a_different_content_type() {
    let test = TestStore::s3().await;
    let key = ObjectKey::upload("retyped").unwrap();
    let mut request = test
        .store
        .presign_put(&key, "image/png", 10, MINUTE)
        .await
        .unwrap();
    for (name, value) in &mut request.headers {
        if name.eq_ignore_ascii_case("content-type") {
            *value = "text/html".to_owned();
        }
    }
    let response = perform(&request, Some(test_bytes(10, 5))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(test.store.head(&key).await.unwrap(), None);
}

#[tokio::test]
async fn presigned_put_only_to_upload_keys() {
    let test = TestStore::s3().await;
    let content_key = ObjectKey::content(&crate::common::sha256_hex(b"x")).unwrap();
    let put = test
        .store
        .presign_put(&content_key, "image/png", 1, MINUTE)
        .await;
    assert!(matches!(put, Err(Error::InvalidKey(_))), "{put:?}");
    let adopt = test.store.adopt_upload(&content_key, 1, 1).await;
    assert!(matches!(adopt, Err(Error::InvalidKey(_))), "{adopt:?}");
}

#[tokio::test]
async fn presigned_get_serves_the_object() {
    let test = TestStore::s3().await;
    let bytes = test_bytes(50_000, 6);
    let stored = test
        .store
        .put(body_of(&bytes, 8192), 1_000_000)
        .await
        .unwrap();
    let overrides = ResponseOverrides {
        content_type: Some("image/png".to_owned()),
        content_disposition: Some("inline; filename=\"cat.png\"".to_owned()),
    };
    let request = test
        .store
        .presign_get(&stored.key, MINUTE, &overrides)
        .await
        .unwrap();
    assert_eq!(request.method, "GET");
    // s3s-fs ignores the overrides, but they must be part of the signed URL.
    assert!(
        request.url.contains("response-content-type=image%2Fpng"),
        "{}",
        request.url
    );
    assert!(
        request.url.contains("response-content-disposition=inline"),
        "{}",
        request.url
    );

    let response = perform(&request, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), bytes);
}

#[tokio::test]
async fn expired_presigned_urls_are_refused() {
    let test = TestStore::s3().await;
    let stored = test
        .store
        .put(body_of(b"short-lived", 4), 100)
        .await
        .unwrap();
    let get = test
        .store
        .presign_get(&stored.key, Duration::from_secs(1), &Default::default())
        .await
        .unwrap();
    let key = ObjectKey::upload("late").unwrap();
    let put = test
        .store
        .presign_put(&key, "image/png", 4, Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;

    assert_eq!(perform(&get, None).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        perform(&put, Some(b"late".to_vec())).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(test.store.head(&key).await.unwrap(), None);
}

#[tokio::test]
async fn tampered_presigned_urls_are_refused() {
    let test = TestStore::s3().await;
    let secret = test.store.put(body_of(b"secret", 6), 100).await.unwrap();
    let public = test.store.put(body_of(b"public", 6), 100).await.unwrap();
    let request = test
        .store
        .presign_get(&public.key, MINUTE, &Default::default())
        .await
        .unwrap();

    let other_object = PresignedRequest {
        url: request
            .url
            .replace(public.key.as_str(), secret.key.as_str()),
        ..request.clone()
    };
    assert_eq!(
        perform(&other_object, None).await.status(),
        StatusCode::FORBIDDEN
    );

    let longer = PresignedRequest {
        url: request.url.replace("X-Amz-Expires=60", "X-Amz-Expires=600"),
        ..request.clone()
    };
    assert_ne!(longer.url, request.url);
    assert_eq!(perform(&longer, None).await.status(), StatusCode::FORBIDDEN);

    let signature_at = request.url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut forged = request.url.clone();
    let flipped = if &forged[signature_at..=signature_at] == "0" {
        "1"
    } else {
        "0"
    };
    forged.replace_range(signature_at..=signature_at, flipped);
    let forged = PresignedRequest {
        url: forged,
        ..request.clone()
    };
    assert_eq!(perform(&forged, None).await.status(), StatusCode::FORBIDDEN);

    assert_eq!(
        perform(&request, None)
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"public"
    );
}

#[tokio::test]
async fn presigned_urls_live_at_most_a_week() {
    let test = TestStore::s3().await;
    let key = ObjectKey::upload("forever").unwrap();
    let too_long = MAX_PRESIGN_EXPIRY + Duration::from_secs(1);
    let put = test.store.presign_put(&key, "image/png", 1, too_long).await;
    assert!(matches!(put, Err(Error::ExpiryTooLong { .. })), "{put:?}");
    let get = test
        .store
        .presign_get(&key, too_long, &Default::default())
        .await;
    assert!(matches!(get, Err(Error::ExpiryTooLong { .. })), "{get:?}");
    assert!(
        test.store
            .presign_get(&key, MAX_PRESIGN_EXPIRY, &Default::default())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn missing_bucket_fails_the_startup_check() {
    let server = media::testing::S3Server::start();
    let store = media::S3Store::new(&server.settings("no-such-bucket"));
    let error = store.check_bucket().await.unwrap_err();
    assert!(matches!(error, Error::Backend(_)), "{error:?}");
}
