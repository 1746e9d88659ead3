//! The `presence` table and its stream.

use sqlx::{Row, any::AnyRow};

use super::{Store, now_ms};
use crate::error::Result;

/// One user's presence as stored.
#[derive(Debug, Clone)]
pub struct PresenceRow {
    pub user_id: String,
    pub state: String,
    pub status_msg: Option<String>,
    pub last_active_ts: i64,
}

fn presence_row(row: &AnyRow) -> Result<PresenceRow> {
    Ok(PresenceRow {
        user_id: row.try_get("user_id")?,
        state: row.try_get("state")?,
        status_msg: row.try_get("status_msg")?,
        last_active_ts: row.try_get("last_active_ts")?,
    })
}

impl Store {
    /// Sets the user's presence (and marks them active now).
    pub async fn set_presence(
        &self,
        user_id: &str,
        state: &str,
        status_msg: Option<&str>,
    ) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let stream_id: i64 = sqlx::query(
            "UPDATE stream_positions SET position = position + 1 WHERE stream = 'presence' RETURNING position",
        )
        .fetch_one(&mut *tx)
        .await?
        .try_get("position")?;
        sqlx::query(
            "INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_id) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg, \
             last_active_ts = excluded.last_active_ts, stream_id = excluded.stream_id",
        )
        .bind(user_id)
        .bind(state)
        .bind(status_msg)
        .bind(now_ms())
        .bind(stream_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(stream_id)
    }

    /// The user's stored presence.
    pub async fn presence(&self, user_id: &str) -> Result<Option<PresenceRow>> {
        let row = sqlx::query(
            "SELECT user_id, state, status_msg, last_active_ts FROM presence WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(presence_row).transpose()
    }

    /// Presence changes after `since` up to `upto` of the user and everyone
    /// who shares a joined room with them.
    pub async fn presence_of_contacts(
        &self,
        user_id: &str,
        since: i64,
        upto: i64,
    ) -> Result<Vec<PresenceRow>> {
        let rows = sqlx::query(
            "SELECT user_id, state, status_msg, last_active_ts FROM presence \
             WHERE stream_id > $1 AND stream_id <= $2 AND (user_id = $3 OR user_id IN ( \
                 SELECT other.state_key FROM current_state mine JOIN current_state other \
                 ON other.room_id = mine.room_id AND other.event_type = 'm.room.member' AND other.membership = 'join' \
                 WHERE mine.event_type = 'm.room.member' AND mine.state_key = $3 AND mine.membership = 'join')) \
             ORDER BY stream_id",
        )
        .bind(since)
        .bind(upto)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(presence_row).collect()
    }

    /// Whether the two users are joined to a common room.
    pub async fn share_a_room(&self, user: &str, other: &str) -> Result<bool> {
        let shared = sqlx::query(
            "SELECT 1 FROM current_state a JOIN current_state b ON a.room_id = b.room_id \
             WHERE a.event_type = 'm.room.member' AND a.state_key = $1 AND a.membership = 'join' \
             AND b.event_type = 'm.room.member' AND b.state_key = $2 AND b.membership = 'join' LIMIT 1",
        )
        .bind(user)
        .bind(other)
        .fetch_optional(&self.pool)
        .await?;
        Ok(shared.is_some())
    }
}
