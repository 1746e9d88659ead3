//! The `media` and `media_thumbnails` tables: local media ids and where their
//! bytes are kept.

use sqlx::{Row, any::AnyRow};

use super::{Store, now_ms};
use crate::error::Result;

/// One local media id.
#[derive(Debug, Clone)]
pub struct MediaRow {
    pub media_id: String,
    pub uploader: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    /// `None` until the bytes are there.
    pub size: Option<i64>,
    pub object_key: Option<String>,
    /// For a direct upload: the size the client announced.
    pub announced_size: Option<i64>,
    /// For an id reserved by `/create`: when the reservation lapses.
    pub unused_expires_ts: Option<i64>,
}

/// A thumbnail kept for a media id.
#[derive(Debug, Clone)]
pub struct ThumbnailRow {
    pub content_type: String,
    pub object_key: String,
    pub size: i64,
}

const MEDIA_COLUMNS: &str = "media_id, uploader, content_type, filename, size, object_key, \
                             announced_size, unused_expires_ts";

fn media_from_row(row: &AnyRow) -> Result<MediaRow> {
    Ok(MediaRow {
        media_id: row.try_get("media_id")?,
        uploader: row.try_get("uploader")?,
        content_type: row.try_get("content_type")?,
        filename: row.try_get("filename")?,
        size: row.try_get("size")?,
        object_key: row.try_get("object_key")?,
        announced_size: row.try_get("announced_size")?,
        unused_expires_ts: row.try_get("unused_expires_ts")?,
    })
}

impl Store {
    /// Records a media id; `row.size` and `row.object_key` are set when its
    /// bytes are already stored.
    pub async fn insert_media(&self, row: &MediaRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO media (media_id, uploader, content_type, filename, size, object_key, \
             announced_size, unused_expires_ts, created_ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&row.media_id)
        .bind(&row.uploader)
        .bind(&row.content_type)
        .bind(&row.filename)
        .bind(row.size)
        .bind(&row.object_key)
        .bind(row.announced_size)
        .bind(row.unused_expires_ts)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A local media id, uploaded or not.
    pub async fn media(&self, media_id: &str) -> Result<Option<MediaRow>> {
        let sql = format!("SELECT {MEDIA_COLUMNS} FROM media WHERE media_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(media_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(media_from_row).transpose()
    }

    /// Records the bytes of a media id that had none. Returns `false` when
    /// they were set meanwhile (the first upload wins).
    pub async fn set_media_content(
        &self,
        media_id: &str,
        content_type: Option<&str>,
        filename: Option<&str>,
        size: i64,
        object_key: &str,
    ) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE media SET content_type = COALESCE($1, content_type), \
             filename = COALESCE($2, filename), size = $3, object_key = $4, \
             unused_expires_ts = NULL WHERE media_id = $5 AND size IS NULL",
        )
        .bind(content_type)
        .bind(filename)
        .bind(size)
        .bind(object_key)
        .bind(media_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    /// Bytes the user has uploaded or announced, for the quota.
    pub async fn media_usage(&self, uploader: &str) -> Result<i64> {
        let used: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(SUM(COALESCE(size, announced_size, 0)) AS BIGINT) FROM media \
             WHERE uploader = $1",
        )
        .bind(uploader)
        .fetch_one(&self.pool)
        .await?;
        Ok(used.unwrap_or(0))
    }

    /// Media ids the user reserved with `/create` that are still waiting.
    pub async fn pending_media_count(&self, uploader: &str) -> Result<i64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM media WHERE uploader = $1 AND size IS NULL \
             AND unused_expires_ts > $2",
        )
        .bind(uploader)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }

    /// Media of another server kept here, as a row keyed `server/mediaId`.
    pub async fn remote_media(
        &self,
        server_name: &str,
        media_id: &str,
    ) -> Result<Option<MediaRow>> {
        let row = sqlx::query(
            "SELECT content_type, filename, size, object_key FROM remote_media \
             WHERE server_name = $1 AND media_id = $2",
        )
        .bind(server_name)
        .bind(media_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(MediaRow {
                media_id: format!("{server_name}/{media_id}"),
                uploader: String::new(),
                content_type: row.try_get("content_type")?,
                filename: row.try_get("filename")?,
                size: Some(row.try_get("size")?),
                object_key: Some(row.try_get("object_key")?),
                announced_size: None,
                unused_expires_ts: None,
            })
        })
        .transpose()
    }

    /// Keeps the bytes of another server's media (the first fetch wins).
    pub async fn insert_remote_media(
        &self,
        server_name: &str,
        media_id: &str,
        content_type: Option<&str>,
        filename: Option<&str>,
        size: i64,
        object_key: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO remote_media \
             (server_name, media_id, content_type, filename, size, object_key, fetched_ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (server_name, media_id) DO NOTHING",
        )
        .bind(server_name)
        .bind(media_id)
        .bind(content_type)
        .bind(filename)
        .bind(size)
        .bind(object_key)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A kept thumbnail of a media id (`server/mediaId` for remote media).
    pub async fn thumbnail(
        &self,
        media_id: &str,
        width: u32,
        height: u32,
        method: &str,
    ) -> Result<Option<ThumbnailRow>> {
        let row = sqlx::query(
            "SELECT content_type, object_key, size FROM media_thumbnails \
             WHERE media_id = $1 AND width = $2 AND height = $3 AND method = $4",
        )
        .bind(media_id)
        .bind(i64::from(width))
        .bind(i64::from(height))
        .bind(method)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(ThumbnailRow {
                content_type: row.try_get("content_type")?,
                object_key: row.try_get("object_key")?,
                size: row.try_get("size")?,
            })
        })
        .transpose()
    }

    /// Keeps a thumbnail (a concurrent twin of it is kept only once).
    pub async fn insert_thumbnail(
        &self,
        media_id: &str,
        width: u32,
        height: u32,
        method: &str,
        thumbnail: &ThumbnailRow,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO media_thumbnails \
             (media_id, width, height, method, content_type, object_key, size) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (media_id, width, height, method) DO NOTHING",
        )
        .bind(media_id)
        .bind(i64::from(width))
        .bind(i64::from(height))
        .bind(method)
        .bind(&thumbnail.content_type)
        .bind(&thumbnail.object_key)
        .bind(thumbnail.size)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
