//! Every `MediaStore` operation, on the filesystem store and on S3 (s3s-fs).

use std::time::Duration;

use crate::common::{MIB, TestStore, body_of, read_all, sha256_hex, test_bytes};
use bytes::Bytes;
use futures_util::StreamExt;
use media::{BodyStream, Error, ObjectKey};

/// Runs each listed test body against both backends.
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        mod fs {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(&crate::common::TestStore::fs().await).await;
            })*
        }
        mod s3 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(&crate::common::TestStore::s3().await).await;
            })*
        }
    };
}

on_both_stores!(
    small_body_round_trips,
    multipart_body_round_trips,
    body_of_exactly_one_part_round_trips,
    empty_body_round_trips,
    same_bytes_are_stored_once,
    body_at_the_limit_is_accepted,
    small_body_over_the_limit_leaves_nothing,
    large_body_over_the_limit_leaves_nothing,
    failing_body_leaves_nothing,
    head_get_and_delete,
);

async fn small_body_round_trips(test: &TestStore) {
    let bytes = test_bytes(100_000, 1);
    let stored = test
        .store
        .put(body_of(&bytes, 4096), 1_000_000)
        .await
        .unwrap();
    assert_eq!(stored.size, 100_000);
    assert_eq!(stored.sha256, sha256_hex(&bytes));
    assert_eq!(stored.key, ObjectKey::content(&stored.sha256).unwrap());
    assert_eq!(
        read_all(test.store.get(&stored.key).await.unwrap()).await,
        bytes
    );
    assert_eq!(test.contents().await, [stored.key.to_string()]);
}

/// Larger than two 8 MiB parts, in chunks that do not divide the part size.
async fn multipart_body_round_trips(test: &TestStore) {
    let bytes = test_bytes(20 * MIB + 123, 2);
    let stored = test
        .store
        .put(body_of(&bytes, 100_003), 64 * MIB as u64)
        .await
        .unwrap();
    assert_eq!(stored.size, bytes.len() as u64);
    assert_eq!(stored.sha256, sha256_hex(&bytes));
    assert_eq!(
        read_all(test.store.get(&stored.key).await.unwrap()).await,
        bytes
    );
    assert_eq!(test.contents().await, [stored.key.to_string()]);
}

/// Ends exactly at the S3 part boundary, where the last read is empty.
async fn body_of_exactly_one_part_round_trips(test: &TestStore) {
    let bytes = test_bytes(8 * MIB, 3);
    let stored = test
        .store
        .put(body_of(&bytes, MIB), 8 * MIB as u64)
        .await
        .unwrap();
    assert_eq!(stored.sha256, sha256_hex(&bytes));
    assert_eq!(
        read_all(test.store.get(&stored.key).await.unwrap()).await,
        bytes
    );
    assert_eq!(test.contents().await, [stored.key.to_string()]);
}

async fn empty_body_round_trips(test: &TestStore) {
    let stored = test.store.put(body_of(&[], 1), 10).await.unwrap();
    assert_eq!(stored.size, 0);
    assert_eq!(stored.sha256, sha256_hex(&[]));
    assert_eq!(test.store.head(&stored.key).await.unwrap(), Some(0));
    assert!(
        read_all(test.store.get(&stored.key).await.unwrap())
            .await
            .is_empty()
    );
}

async fn same_bytes_are_stored_once(test: &TestStore) {
    let small = test_bytes(5000, 4);
    let large = test_bytes(9 * MIB, 5);
    let first_small = test
        .store
        .put(body_of(&small, 1000), MIB as u64)
        .await
        .unwrap();
    let second_small = test
        .store
        .put(body_of(&small, 777), MIB as u64)
        .await
        .unwrap();
    let first_large = test
        .store
        .put(body_of(&large, 65536), 16 * MIB as u64)
        .await
        .unwrap();
    let second_large = test
        .store
        .put(body_of(&large, 100_000), 16 * MIB as u64)
        .await
        .unwrap();
    assert_eq!(first_small, second_small);
    assert_eq!(first_large, second_large);
    let mut expected = vec![first_small.key.to_string(), first_large.key.to_string()];
    expected.sort();
    assert_eq!(test.contents().await, expected);
    assert_eq!(
        read_all(test.store.get(&first_large.key).await.unwrap()).await,
        large
    );
}

async fn body_at_the_limit_is_accepted(test: &TestStore) {
    let bytes = test_bytes(1000, 6);
    let stored = test.store.put(body_of(&bytes, 300), 1000).await.unwrap();
    assert_eq!(stored.size, 1000);
}

async fn small_body_over_the_limit_leaves_nothing(test: &TestStore) {
    let bytes = test_bytes(1001, 7);
    let error = test
        .store
        .put(body_of(&bytes, 300), 1000)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::TooLarge { max_size: 1000 }),
        "{error:?}"
    );
    assert!(test.contents().await.is_empty());
}

/// Overruns after the first S3 part went up, so a multipart upload must be aborted.
async fn large_body_over_the_limit_leaves_nothing(test: &TestStore) {
    let bytes = test_bytes(20 * MIB, 8);
    let max_size = 12 * MIB as u64;
    let error = test
        .store
        .put(body_of(&bytes, 65536), max_size)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::TooLarge { max_size: limit } if limit == max_size),
        "{error:?}"
    );
    assert!(test.contents().await.is_empty());
}

async fn failing_body_leaves_nothing(test: &TestStore) {
    let first_part = Bytes::from(test_bytes(9 * MIB, 9));
    let body: BodyStream = Box::pin(futures_util::stream::iter([
        Ok(first_part),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ]));
    let error = test.store.put(body, 64 * MIB as u64).await.unwrap_err();
    assert!(
        matches!(&error, Error::Body(inner) if inner.kind() == std::io::ErrorKind::ConnectionReset),
        "{error:?}"
    );
    assert!(test.contents().await.is_empty());
}

async fn head_get_and_delete(test: &TestStore) {
    let bytes = test_bytes(3000, 10);
    let stored = test
        .store
        .put(body_of(&bytes, 1000), MIB as u64)
        .await
        .unwrap();
    assert_eq!(test.store.head(&stored.key).await.unwrap(), Some(3000));

    test.store.delete(&stored.key).await.unwrap();
    assert_eq!(test.store.head(&stored.key).await.unwrap(), None);
    assert!(matches!(
        test.store.get(&stored.key).await,
        Err(Error::NotFound)
    ));
    test.store
        .delete(&stored.key)
        .await
        .expect("deleting a missing object succeeds");
    assert!(test.contents().await.is_empty());

    let never_stored = ObjectKey::upload("never-stored").unwrap();
    assert_eq!(test.store.head(&never_stored).await.unwrap(), None);
    assert!(matches!(
        test.store.get(&never_stored).await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn fs_store_refuses_presigning() {
    let test = TestStore::fs().await;
    let key = ObjectKey::upload("direct").unwrap();
    assert!(!test.store.supports_presigned_urls());
    let put = test
        .store
        .presign_put(&key, "image/png", 10, Duration::from_secs(60))
        .await;
    assert!(matches!(put, Err(Error::Unsupported(_))), "{put:?}");
    let get = test
        .store
        .presign_get(&key, Duration::from_secs(60), &Default::default())
        .await;
    assert!(matches!(get, Err(Error::Unsupported(_))), "{get:?}");
    assert!(matches!(
        test.store.adopt_upload(&key, 10, 10).await,
        Err(Error::Unsupported(_))
    ));
}

/// A put abandoned midway (its future dropped, as when a request is cancelled)
/// still leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_put_leaves_nothing() {
    for test in [TestStore::fs().await, TestStore::s3().await] {
        let first_part = Ok(Bytes::from(test_bytes(9 * MIB, 11)));
        let stalled: BodyStream = Box::pin(
            futures_util::stream::iter([first_part]).chain(futures_util::stream::pending()),
        );
        let put = tokio::time::timeout(
            Duration::from_secs(2),
            test.store.put(stalled, 64 * MIB as u64),
        )
        .await;
        assert!(put.is_err(), "the put should still be waiting for its body");
        test.wait_for_contents(&[]).await;
    }
}
