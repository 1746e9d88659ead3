//! What only the filesystem store does: its directory layout, atomic
//! placement and cleaning up after crashed puts.

use std::fs::{File, FileTimes};
use std::time::{Duration, SystemTime};

use media::{FsStore, MediaStore, ObjectKey};
use tempfile::TempDir;

use crate::common::{body_of, read_all, test_bytes};

#[tokio::test]
async fn objects_live_in_sharded_directories() {
    let dir = TempDir::new().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    let bytes = test_bytes(10_000, 1);
    let stored = store.put(body_of(&bytes, 1024), 1_000_000).await.unwrap();

    let path = dir
        .path()
        .join("content")
        .join(&stored.sha256[..2])
        .join(&stored.sha256[2..4])
        .join(&stored.sha256);
    assert_eq!(std::fs::read(path).unwrap(), bytes);
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0,
        "temp file left behind"
    );
}

#[tokio::test]
async fn upload_keys_map_inside_the_store() {
    let dir = TempDir::new().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    std::fs::create_dir(dir.path().join("uploads")).unwrap();
    std::fs::write(dir.path().join("uploads/placed"), b"placed by hand").unwrap();

    let key = ObjectKey::upload("placed").unwrap();
    assert_eq!(store.head(&key).await.unwrap(), Some(14));
    assert_eq!(
        read_all(store.get(&key).await.unwrap()).await,
        b"placed by hand"
    );
    store.delete(&key).await.unwrap();
    assert!(!dir.path().join("uploads/placed").exists());
}

#[tokio::test]
async fn opening_removes_temp_files_of_crashed_puts() {
    let dir = TempDir::new().unwrap();
    drop(FsStore::open(dir.path()).await.unwrap());
    let stale = dir.path().join("tmp/put-crashed");
    let fresh = dir.path().join("tmp/put-in-progress");
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 60 * 60);
    File::create(&stale)
        .unwrap()
        .set_times(FileTimes::new().set_modified(two_days_ago))
        .unwrap();
    File::create(&fresh).unwrap();

    FsStore::open(dir.path()).await.unwrap();
    assert!(!stale.exists());
    assert!(
        fresh.exists(),
        "a put in progress elsewhere keeps its temp file"
    );
}
