//! The `account_data` table: per-user configuration, global or per room, and
//! the `account_data` stream that numbers its writes for `/sync`.

use sqlx::Row;

use super::Store;
use crate::error::Result;

/// The `room_id` of global account data.
pub const GLOBAL_ACCOUNT_DATA: &str = "";

/// One account data entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDataRow {
    /// The room it is scoped to; empty for global account data.
    pub room_id: String,
    pub data_type: String,
    /// The JSON object, as text.
    pub content: String,
    /// The stream position of the write that last set it.
    pub stream_id: i64,
}

impl Store {
    /// Sets (replacing any previous content) one account data entry of
    /// `user_id`; `room_id` is [`GLOBAL_ACCOUNT_DATA`] for global data. Returns the stream
    /// position of this write, greater than that of every earlier write.
    pub async fn set_account_data(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
        content: &str,
    ) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        // The row lock taken here is held until commit, so concurrent writers
        // get their positions in the order they commit.
        let stream_id: i64 = sqlx::query(
            "UPDATE stream_positions SET position = position + 1 \
             WHERE stream = 'account_data' RETURNING position",
        )
        .fetch_one(&mut *tx)
        .await?
        .try_get("position")?;
        sqlx::query(
            "INSERT INTO account_data (user_id, room_id, data_type, content, stream_id) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id, room_id, data_type) \
             DO UPDATE SET content = excluded.content, stream_id = excluded.stream_id",
        )
        .bind(user_id)
        .bind(room_id)
        .bind(data_type)
        .bind(content)
        .bind(stream_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(stream_id)
    }

    /// The content (JSON text) of one account data entry, if set.
    pub async fn account_data(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
    ) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT content FROM account_data \
             WHERE user_id = $1 AND room_id = $2 AND data_type = $3",
        )
        .bind(user_id)
        .bind(room_id)
        .bind(data_type)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok(row.try_get("content")?)).transpose()
    }

    /// Every account data entry of `user_id` (global and per room) last set
    /// after stream position `since`, oldest write first. `since = 0` gives all.
    pub async fn account_data_since(
        &self,
        user_id: &str,
        since: i64,
    ) -> Result<Vec<AccountDataRow>> {
        let rows = sqlx::query(
            "SELECT room_id, data_type, content, stream_id FROM account_data \
             WHERE user_id = $1 AND stream_id > $2 ORDER BY stream_id",
        )
        .bind(user_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AccountDataRow {
                    room_id: row.try_get("room_id")?,
                    data_type: row.try_get("data_type")?,
                    content: row.try_get("content")?,
                    stream_id: row.try_get("stream_id")?,
                })
            })
            .collect()
    }

    /// The position of the latest account data write (0 before the first).
    pub async fn account_data_position(&self) -> Result<i64> {
        let row =
            sqlx::query("SELECT position FROM stream_positions WHERE stream = 'account_data'")
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get("position")?)
    }
}
