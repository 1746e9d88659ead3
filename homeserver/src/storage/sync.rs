//! Queries `/sync` reads: a user's memberships, which rooms changed in a
//! range of the event stream, and the events of a room in a range.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use super::{
    Store, StoredEvent,
    events::{EVENT_COLUMNS, stored_event},
};
use crate::error::Result;

/// A user's current membership in one room.
#[derive(Debug, Clone)]
pub struct MembershipRow {
    pub room_id: String,
    pub membership: String,
    /// Where the membership event is in the stream.
    pub stream_ordering: i64,
}

impl Store {
    /// The position of the latest committed event (0 before any).
    pub async fn events_position(&self) -> Result<i64> {
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(stream_ordering) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(max.unwrap_or(0))
    }

    /// The latest position of each stream kept in `stream_positions`
    /// (account data, receipts, to-device, presence), in one query.
    pub async fn stream_positions(&self) -> Result<HashMap<String, i64>> {
        let rows = sqlx::query("SELECT stream, position FROM stream_positions")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("stream")?, row.try_get("position")?)))
            .collect()
    }

    /// Every room the user has a current membership in.
    pub async fn user_memberships(&self, user_id: &str) -> Result<Vec<MembershipRow>> {
        let rows = sqlx::query(
            "SELECT cs.room_id, cs.membership, e.stream_ordering FROM current_state cs \
             JOIN events e ON e.event_id = cs.event_id \
             WHERE cs.event_type = 'm.room.member' AND cs.state_key = $1",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(MembershipRow {
                    room_id: row.try_get("room_id")?,
                    membership: row
                        .try_get::<Option<String>, _>("membership")?
                        .unwrap_or_default(),
                    stream_ordering: row.try_get("stream_ordering")?,
                })
            })
            .collect()
    }

    /// Rooms with events after `after` up to `upto`.
    pub async fn rooms_changed(&self, after: i64, upto: i64) -> Result<HashSet<String>> {
        let rooms: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT room_id FROM events WHERE stream_ordering > $1 AND stream_ordering <= $2",
        )
        .bind(after)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        Ok(rooms.into_iter().collect())
    }

    /// The latest `limit` events of a room after `after` up to `upto`, newest first.
    pub async fn latest_room_events(
        &self,
        room_id: &str,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND stream_ordering > $2 \
             AND stream_ordering <= $3 ORDER BY stream_ordering DESC LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id)
            .bind(after)
            .bind(upto)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_event).collect()
    }

    /// The state events of a room after `after` and before `before`, oldest first.
    pub async fn state_events_between(
        &self,
        room_id: &str,
        after: i64,
        before: i64,
    ) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND state_key IS NOT NULL \
             AND stream_ordering > $2 AND stream_ordering < $3 ORDER BY stream_ordering"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id)
            .bind(after)
            .bind(before)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_event).collect()
    }
}
