use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tempfile::TempPath;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio_util::io::ReaderStream;

use crate::{
    BodyMeter, BodyStream, Error, MediaStore, ObjectBody, ObjectKey, PresignedRequest,
    ResponseOverrides, Result, StoredObject,
};

/// Where puts stream to before their hash, hence their final place, is known.
/// It sits inside the store so the final rename never crosses filesystems.
const TEMP_DIR: &str = "tmp";
/// Temp files older than this were left by a crash, not by a put in progress.
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 60 * 60);
const WRITE_BUFFER: usize = 256 * 1024;
const READ_CHUNK: usize = 64 * 1024;

/// A [`MediaStore`] in a local directory, laid out like the keys:
/// `<root>/content/ab/cd/abcd…`. Objects appear atomically: a put writes a
/// temp file, syncs it and renames it into place.
#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// Opens the store in `root`, creating the directory if needed, and removes
    /// temp files that crashed puts left behind more than a day ago.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let temp_dir = root.join(TEMP_DIR);
        tokio::fs::create_dir_all(&temp_dir).await?;
        remove_stale_temp_files(&temp_dir).await?;
        Ok(Self { root })
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(key.segments());
        path
    }
}

#[async_trait]
impl MediaStore for FsStore {
    async fn put(&self, mut body: BodyStream, max_size: u64) -> Result<StoredObject> {
        // Dropping `temp_path` (on error, or if this future is dropped) deletes the file.
        let (file, temp_path) = tempfile::Builder::new()
            .prefix("put-")
            .tempfile_in(self.root.join(TEMP_DIR))?
            .into_parts();
        let mut writer = BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(file));
        let mut meter = BodyMeter::new(max_size);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(Error::Body)?;
            meter.update(&chunk)?;
            writer.write_all(&chunk).await?;
        }
        writer.flush().await?;
        writer.into_inner().sync_all().await?;

        let (size, sha256) = meter.finish();
        let key = ObjectKey::content(&sha256)?;
        let target = self.path(&key);
        tokio::task::spawn_blocking(move || move_into_place(temp_path, &target))
            .await
            .map_err(io::Error::other)??;
        Ok(StoredObject { key, size, sha256 })
    }

    async fn get(&self, key: &ObjectKey) -> Result<ObjectBody> {
        let file = tokio::fs::File::open(self.path(key))
            .await
            .map_err(not_found_or_io)?;
        let size = file.metadata().await?.len();
        Ok(ObjectBody {
            size,
            body: Box::pin(ReaderStream::with_capacity(file, READ_CHUNK)),
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.path(key)).await {
            Ok(metadata) => Ok(Some(metadata.len())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)).await {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error.into()),
            _ => Ok(()),
        }
    }

    fn supports_presigned_urls(&self) -> bool {
        false
    }

    async fn presign_put(
        &self,
        _: &ObjectKey,
        _: &str,
        _: u64,
        _: Duration,
    ) -> Result<PresignedRequest> {
        Err(Error::Unsupported("presigned URLs"))
    }

    async fn presign_get(
        &self,
        _: &ObjectKey,
        _: Duration,
        _: &ResponseOverrides,
    ) -> Result<PresignedRequest> {
        Err(Error::Unsupported("presigned URLs"))
    }

    async fn adopt_upload(&self, _: &ObjectKey, _: u64, _: u64) -> Result<u64> {
        Err(Error::Unsupported("direct uploads"))
    }
}

/// Renames the finished temp file to `target`, unless identical content is
/// already there, and makes the new directory entry durable.
fn move_into_place(temp_path: TempPath, target: &Path) -> io::Result<()> {
    if target.exists() {
        return Ok(());
    }
    let dir = target
        .parent()
        .ok_or_else(|| io::Error::other("content path without a directory"))?;
    std::fs::create_dir_all(dir)?;
    temp_path.persist(target).map_err(|error| error.error)?;
    std::fs::File::open(dir)?.sync_all()
}

async fn remove_stale_temp_files(temp_dir: &Path) -> Result<()> {
    let mut entries = tokio::fs::read_dir(temp_dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let modified = entry.metadata().await?.modified()?;
        if modified.elapsed().is_ok_and(|age| age > STALE_TEMP_AGE) {
            // Another instance sharing the directory may be removing it too.
            match tokio::fs::remove_file(entry.path()).await {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error.into()),
                _ => {}
            }
        }
    }
    Ok(())
}

fn not_found_or_io(error: io::Error) -> Error {
    if error.kind() == io::ErrorKind::NotFound {
        Error::NotFound
    } else {
        Error::Io(error)
    }
}
