//! The `receipts` table and its stream: who has read how far in each room.

use sqlx::Row;

use super::{Store, now_ms};
use crate::error::Result;

/// One stored receipt.
#[derive(Debug, Clone)]
pub struct ReceiptRow {
    pub user_id: String,
    pub receipt_type: String,
    pub thread_id: String,
    pub event_id: String,
    pub ts: i64,
}

impl Store {
    /// Records that `user_id` has read up to `event_id` (at `event_ordering`).
    /// A receipt never moves backwards: an older event changes nothing and
    /// returns `None`; otherwise the receipt's stream position.
    pub async fn set_receipt(
        &self,
        room_id: &str,
        user_id: &str,
        receipt_type: &str,
        thread_id: &str,
        event_id: &str,
        event_ordering: i64,
    ) -> Result<Option<i64>> {
        let mut tx = self.begin_write().await?;
        let current: Option<i64> = sqlx::query_scalar(
            "SELECT event_ordering FROM receipts WHERE room_id = $1 AND user_id = $2 \
             AND receipt_type = $3 AND thread_id = $4",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(receipt_type)
        .bind(thread_id)
        .fetch_optional(&mut *tx)
        .await?;
        if current.is_some_and(|current| current >= event_ordering) {
            return Ok(None);
        }
        let stream_id: i64 = sqlx::query(
            "UPDATE stream_positions SET position = position + 1 WHERE stream = 'receipts' RETURNING position",
        )
        .fetch_one(&mut *tx)
        .await?
        .try_get("position")?;
        sqlx::query(
            "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, event_ordering, ts, stream_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET event_id = excluded.event_id, \
             event_ordering = excluded.event_ordering, ts = excluded.ts, stream_id = excluded.stream_id",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(receipt_type)
        .bind(thread_id)
        .bind(event_id)
        .bind(event_ordering)
        .bind(now_ms())
        .bind(stream_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(stream_id))
    }

    /// Receipts of a room set after stream position `since` up to `upto`.
    pub async fn receipts_since(
        &self,
        room_id: &str,
        since: i64,
        upto: i64,
    ) -> Result<Vec<ReceiptRow>> {
        let rows = sqlx::query(
            "SELECT user_id, receipt_type, thread_id, event_id, ts FROM receipts \
             WHERE room_id = $1 AND stream_id > $2 AND stream_id <= $3 ORDER BY stream_id",
        )
        .bind(room_id)
        .bind(since)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ReceiptRow {
                    user_id: row.try_get("user_id")?,
                    receipt_type: row.try_get("receipt_type")?,
                    thread_id: row.try_get("thread_id")?,
                    event_id: row.try_get("event_id")?,
                    ts: row.try_get("ts")?,
                })
            })
            .collect()
    }

    /// How far the user has read in the room: the stream position of their
    /// latest (public or private) read receipt, if any.
    pub async fn read_up_to(&self, room_id: &str, user_id: &str) -> Result<Option<i64>> {
        let position: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(event_ordering) FROM receipts WHERE room_id = $1 AND user_id = $2 \
             AND receipt_type IN ('m.read', 'm.read.private')",
        )
        .bind(room_id)
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(position)
    }

    /// Messages from others in the room after `after` (for unread counts).
    pub async fn unread_messages(&self, room_id: &str, user_id: &str, after: i64) -> Result<i64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM events WHERE room_id = $1 AND stream_ordering > $2 AND sender <> $3 \
             AND event_type IN ('m.room.message', 'm.room.encrypted')",
        )
        .bind(room_id)
        .bind(after)
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }
}
