//! Test stores: an [`FsStore`] in a temp dir, and an [`S3Store`] talking to a
//! real `s3s-fs` server started on a free loopback port.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use bytes::Bytes;
use futures_util::StreamExt;
use media::testing::{ACCESS_KEY, S3Server, SECRET_KEY};
use media::{BodyStream, FsStore, MediaStore, ObjectBody, S3Settings, S3Store};
use tempfile::TempDir;

pub const BUCKET: &str = "teatime-media";
pub const MIB: usize = 1024 * 1024;

/// A store under test plus whatever keeps it alive, and a way to see
/// everything it holds, leftovers included.
pub struct TestStore {
    pub store: Box<dyn MediaStore>,
    backing: Backing,
}

enum Backing {
    Fs(TempDir),
    S3 {
        server: S3Server,
        client: aws_sdk_s3::Client,
    },
}

impl TestStore {
    pub async fn fs() -> Self {
        let dir = TempDir::new().expect("temp dir");
        let store = FsStore::open(dir.path()).await.expect("open fs store");
        Self {
            store: Box::new(store),
            backing: Backing::Fs(dir),
        }
    }

    pub async fn s3() -> Self {
        let server = S3Server::start();
        let settings = server.settings(BUCKET);
        let client = raw_client(&settings);
        client
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .expect("CreateBucket on s3s-fs");
        let store = S3Store::new(&settings);
        store
            .check_bucket()
            .await
            .expect("bucket exists after CreateBucket");
        Self {
            store: Box::new(store),
            backing: Backing::S3 { server, client },
        }
    }

    /// Every stored object key, plus any file a put in progress or a
    /// multipart upload leaves behind, sorted.
    pub async fn contents(&self) -> Vec<String> {
        let mut contents = match &self.backing {
            Backing::Fs(dir) => files_under(dir.path()),
            Backing::S3 { server, client } => {
                let listing = client
                    .list_objects_v2()
                    .bucket(BUCKET)
                    .send()
                    .await
                    .expect("ListObjectsV2");
                let mut contents: Vec<String> = listing
                    .contents()
                    .iter()
                    .filter_map(|object| object.key().map(str::to_owned))
                    .collect();
                // s3s-fs keeps multipart uploads as `.upload…` files in its root.
                contents.extend(
                    files_in(server.data_dir.path())
                        .into_iter()
                        .filter(|name| name.starts_with(".upload")),
                );
                contents
            }
        };
        contents.sort();
        contents
    }

    /// Waits up to five seconds for the store to hold exactly `expected`.
    pub async fn wait_for_contents(&self, expected: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let contents = self.contents().await;
            if contents == expected || Instant::now() > deadline {
                assert_eq!(contents, expected);
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A client of our own, for what the store does not offer: creating the
/// bucket and listing it.
fn raw_client(settings: &S3Settings) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&settings.endpoint)
        .region(Region::new(settings.region.clone()))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Paths of all files below `root`, relative to it, `/`-separated.
fn files_under(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let relative = path.strip_prefix(root).expect("below root");
                files.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    files
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// `len` deterministic, incompressible-looking bytes; `seed` picks which.
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// `bytes` as a body arriving in chunks of `chunk_size`.
pub fn body_of(bytes: &[u8], chunk_size: usize) -> BodyStream {
    let chunks: Vec<std::io::Result<Bytes>> = bytes
        .chunks(chunk_size)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    Box::pin(futures_util::stream::iter(chunks))
}

pub async fn read_all(object: ObjectBody) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut body = object.body;
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.expect("body chunk"));
    }
    assert_eq!(bytes.len() as u64, object.size, "size announced by get");
    bytes
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
