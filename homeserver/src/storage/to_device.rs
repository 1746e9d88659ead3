//! The `to_device_messages` queue and its stream.

use sqlx::Row;

use super::{Store, now_ms};
use crate::error::Result;

/// One message for one device.
#[derive(Debug, Clone)]
pub struct ToDeviceMessage {
    pub user_id: String,
    pub device_id: String,
    pub sender: String,
    pub event_type: String,
    pub content: String,
}

impl Store {
    /// Queues `messages` under one stream position, unless the sender's
    /// transaction id was used before. Returns the position, or `None` for a
    /// repeated transaction.
    pub async fn send_to_devices(
        &self,
        sender: (&str, &str),
        txn_id: &str,
        messages: &[ToDeviceMessage],
    ) -> Result<Option<i64>> {
        let mut tx = self.begin_write().await?;
        let fresh = sqlx::query(
            "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, device_id, txn_id) DO NOTHING",
        )
        .bind(sender.0)
        .bind(sender.1)
        .bind(txn_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if fresh == 0 {
            return Ok(None);
        }
        let stream_id: i64 = sqlx::query(
            "UPDATE stream_positions SET position = position + 1 WHERE stream = 'to_device' RETURNING position",
        )
        .fetch_one(&mut *tx)
        .await?
        .try_get("position")?;
        for message in messages {
            sqlx::query(
                "INSERT INTO to_device_messages (stream_id, user_id, device_id, sender, event_type, content) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, device_id, stream_id) DO NOTHING",
            )
            .bind(stream_id)
            .bind(&message.user_id)
            .bind(&message.device_id)
            .bind(&message.sender)
            .bind(&message.event_type)
            .bind(&message.content)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(stream_id))
    }

    /// The device's messages after `since` up to `upto`, oldest first.
    pub async fn to_device_messages(
        &self,
        user_id: &str,
        device_id: &str,
        since: i64,
        upto: i64,
    ) -> Result<Vec<ToDeviceMessage>> {
        let rows = sqlx::query(
            "SELECT user_id, device_id, sender, event_type, content FROM to_device_messages \
             WHERE user_id = $1 AND device_id = $2 AND stream_id > $3 AND stream_id <= $4 ORDER BY stream_id",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(since)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ToDeviceMessage {
                    user_id: row.try_get("user_id")?,
                    device_id: row.try_get("device_id")?,
                    sender: row.try_get("sender")?,
                    event_type: row.try_get("event_type")?,
                    content: row.try_get("content")?,
                })
            })
            .collect()
    }

    /// Forgets the device's messages up to `upto`: it synced past them.
    pub async fn acknowledge_to_device(
        &self,
        user_id: &str,
        device_id: &str,
        upto: i64,
    ) -> Result<()> {
        // Almost every sync has nothing to forget: a read first keeps those
        // syncs from queueing for SQLite's one writer behind the event writes.
        let acknowledged = sqlx::query(
            "SELECT 1 FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3 LIMIT 1",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(upto)
        .fetch_optional(&self.pool)
        .await?;
        if acknowledged.is_none() {
            return Ok(());
        }
        sqlx::query("DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3")
            .bind(user_id)
            .bind(device_id)
            .bind(upto)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
