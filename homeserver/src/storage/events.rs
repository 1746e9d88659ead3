//! The `rooms`, `events`, `current_state`, `event_txns` and `forgotten_rooms`
//! tables: the room graph as this server accepted it.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row, any::AnyRow};

use super::{Store, now_ms};
use crate::error::{Error, Result};

/// A room as stored.
#[derive(Debug, Clone)]
pub struct RoomRow {
    pub room_id: String,
    pub room_version: String,
    pub head_event_id: String,
    pub head_depth: i64,
}

/// An event as stored, with its position in the stream.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub stream_ordering: i64,
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub event_type: String,
    pub state_key: Option<String>,
    pub membership: Option<String>,
    pub json: String,
}

/// An event about to be stored.
#[derive(Debug)]
pub struct NewEvent {
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub event_type: String,
    pub state_key: Option<String>,
    pub membership: Option<String>,
    pub depth: i64,
    pub origin_server_ts: i64,
    pub json: String,
    /// The room head this event was built on (empty for a room's first event).
    pub prev_event: String,
    /// `(user_id, device_id, txn_id)` of the request that sent it.
    pub txn: Option<(String, String, String)>,
    /// For a redaction that takes effect: the target and its redacted JSON.
    pub redaction: Option<(String, String)>,
}

/// A new room and the events that create it.
#[derive(Debug)]
pub struct NewRoom {
    pub room_id: String,
    pub room_version: String,
    pub creator: String,
}

const EVENT_COLUMNS: &str =
    "stream_ordering, event_id, room_id, sender, event_type, state_key, membership, json";

fn stored_event(row: &AnyRow) -> Result<StoredEvent> {
    Ok(StoredEvent {
        stream_ordering: row.try_get("stream_ordering")?,
        event_id: row.try_get("event_id")?,
        room_id: row.try_get("room_id")?,
        sender: row.try_get("sender")?,
        event_type: row.try_get("event_type")?,
        state_key: row.try_get("state_key")?,
        membership: row.try_get("membership")?,
        json: row.try_get("json")?,
    })
}

async fn insert_events(conn: &mut AnyConnection, events: &[&NewEvent]) -> Result<Vec<i64>> {
    let mut orderings = Vec::with_capacity(events.len());
    for event in events {
        let ordering: i64 = sqlx::query_scalar(
            "INSERT INTO events (event_id, room_id, sender, event_type, state_key, membership, \
             depth, origin_server_ts, json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             RETURNING stream_ordering",
        )
        .bind(&event.event_id)
        .bind(&event.room_id)
        .bind(&event.sender)
        .bind(&event.event_type)
        .bind(&event.state_key)
        .bind(&event.membership)
        .bind(event.depth)
        .bind(event.origin_server_ts)
        .bind(&event.json)
        .fetch_one(&mut *conn)
        .await?;
        if let Some(state_key) = &event.state_key {
            sqlx::query(
                "INSERT INTO current_state (room_id, event_type, state_key, event_id, membership) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id, event_type, state_key) \
                 DO UPDATE SET event_id = excluded.event_id, membership = excluded.membership",
            )
            .bind(&event.room_id)
            .bind(&event.event_type)
            .bind(state_key)
            .bind(&event.event_id)
            .bind(&event.membership)
            .execute(&mut *conn)
            .await?;
        }
        if let Some((user_id, device_id, txn_id)) = &event.txn {
            sqlx::query(
                "INSERT INTO event_txns (user_id, device_id, txn_id, event_id, created_ts) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(txn_id)
            .bind(&event.event_id)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?;
        }
        if let Some((target, redacted_json)) = &event.redaction {
            sqlx::query("UPDATE events SET json = $1, redacted_by = $2 WHERE event_id = $3")
                .bind(redacted_json)
                .bind(&event.event_id)
                .bind(target)
                .execute(&mut *conn)
                .await?;
        }
        orderings.push(ordering);
    }
    // The new head of each room: its last event here.
    let mut heads: Vec<&NewEvent> = Vec::new();
    for event in events.iter().rev().copied() {
        if !heads.iter().any(|h| h.room_id == event.room_id) {
            heads.push(event);
        }
    }
    for head in heads {
        sqlx::query("UPDATE rooms SET head_event_id = $1, head_depth = $2 WHERE room_id = $3")
            .bind(&head.event_id)
            .bind(head.depth)
            .bind(&head.room_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(orderings)
}

impl Store {
    /// Creates a room with its first events, all or nothing.
    pub async fn create_room(&self, room: &NewRoom, events: &[NewEvent]) -> Result<Vec<i64>> {
        let first = events
            .first()
            .ok_or_else(|| Error::Internal("a room needs events".into()))?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO rooms (room_id, room_version, creator, head_event_id, head_depth, created_ts) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&room.room_id)
        .bind(&room.room_version)
        .bind(&room.creator)
        .bind(&first.event_id)
        .bind(first.depth)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let events: Vec<&NewEvent> = events.iter().collect();
        let orderings = insert_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(orderings)
    }

    /// Appends events to their rooms in one transaction. An event is stored
    /// only if it extends its room's head (as stored, or as extended by the
    /// events before it here); the others get `None` and change nothing.
    pub async fn append_events(&self, events: &[NewEvent]) -> Result<Vec<Option<i64>>> {
        let mut tx = self.begin_write().await?;
        let mut heads: HashMap<&str, Option<String>> = HashMap::new();
        let mut accepted = Vec::with_capacity(events.len());
        let mut extends = Vec::with_capacity(events.len());
        for event in events {
            if !heads.contains_key(event.room_id.as_str()) {
                let head: Option<String> =
                    sqlx::query_scalar("SELECT head_event_id FROM rooms WHERE room_id = $1")
                        .bind(&event.room_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                heads.insert(&event.room_id, head);
            }
            let head = heads
                .get_mut(event.room_id.as_str())
                .and_then(Option::as_mut);
            let ok = head.is_some_and(|head| {
                let ok = *head == event.prev_event;
                if ok {
                    head.clone_from(&event.event_id);
                }
                ok
            });
            extends.push(ok);
            if ok {
                accepted.push(event);
            }
        }
        let mut orderings = insert_events(&mut tx, &accepted).await?.into_iter();
        tx.commit().await?;
        Ok(extends
            .into_iter()
            .map(|ok| if ok { orderings.next() } else { None })
            .collect())
    }

    /// The room, if this server knows it.
    pub async fn room(&self, room_id: &str) -> Result<Option<RoomRow>> {
        let row = sqlx::query(
            "SELECT room_id, room_version, head_event_id, head_depth FROM rooms WHERE room_id = $1",
        )
        .bind(room_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(RoomRow {
                room_id: row.try_get("room_id")?,
                room_version: row.try_get("room_version")?,
                head_event_id: row.try_get("head_event_id")?,
                head_depth: row.try_get("head_depth")?,
            })
        })
        .transpose()
    }

    /// The room-wide current state the authorisation rules read: create,
    /// power levels and join rules (memberships are read one by one).
    pub async fn auth_state(&self, room_id: &str) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN (SELECT event_id FROM current_state \
             WHERE room_id = $1 AND event_type IN ('m.room.create', 'm.room.power_levels', \
             'm.room.join_rules', 'm.room.third_party_invite'))"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_event).collect()
    }

    /// The room's current state, or one type of it.
    pub async fn current_state(
        &self,
        room_id: &str,
        event_type: Option<&str>,
    ) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN (SELECT event_id FROM current_state \
             WHERE room_id = $1 AND ($2 = '' OR event_type = $2)) ORDER BY stream_ordering"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id)
            .bind(event_type.unwrap_or(""))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_event).collect()
    }

    /// One current state event.
    pub async fn current_state_event(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = (SELECT event_id FROM current_state \
             WHERE room_id = $1 AND event_type = $2 AND state_key = $3)"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id)
            .bind(event_type)
            .bind(state_key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stored_event).transpose()
    }

    /// The room's state after the event at `ordering` (rooms are linear on
    /// this server: the latest event of each type and key up to that point).
    pub async fn state_at(&self, room_id: &str, ordering: i64) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE room_id = $1 AND state_key IS NOT NULL \
             AND stream_ordering = (SELECT MAX(stream_ordering) FROM events l WHERE l.room_id = $1 \
             AND l.event_type = e.event_type AND l.state_key = e.state_key AND l.stream_ordering <= $2) \
             ORDER BY stream_ordering"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id)
            .bind(ordering)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_event).collect()
    }

    /// One event by id.
    pub async fn event(&self, event_id: &str) -> Result<Option<StoredEvent>> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stored_event).transpose()
    }

    /// Up to `limit` events of a room strictly after `after` (ascending) or
    /// at or before `at_or_before` (descending).
    pub async fn room_events(
        &self,
        room_id: &str,
        range: EventRange,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        let (condition, order, bound) = match range {
            EventRange::After(after) => ("stream_ordering > $2", "ASC", after),
            EventRange::AtOrBefore(at) => ("stream_ordering <= $2", "DESC", at),
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND {condition} \
             ORDER BY stream_ordering {order} LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id)
            .bind(bound)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_event).collect()
    }

    /// Every membership the user has had in the room, oldest first: `(ordering, membership)`.
    pub async fn membership_history(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT stream_ordering, membership FROM events WHERE event_type = 'm.room.member' \
             AND state_key = $1 AND room_id = $2 ORDER BY stream_ordering",
        )
        .bind(user_id)
        .bind(room_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("stream_ordering")?, row.try_get("membership")?)))
            .collect()
    }

    /// Every `m.room.history_visibility` event of the room, oldest first: `(ordering, json)`.
    pub async fn visibility_history(&self, room_id: &str) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT stream_ordering, json FROM events WHERE room_id = $1 \
             AND event_type = 'm.room.history_visibility' AND state_key = '' ORDER BY stream_ordering",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("stream_ordering")?, row.try_get("json")?)))
            .collect()
    }

    /// The user's current membership in the room.
    pub async fn membership(&self, room_id: &str, user_id: &str) -> Result<Option<String>> {
        let membership: Option<Option<String>> = sqlx::query_scalar(
            "SELECT membership FROM current_state WHERE room_id = $1 \
             AND event_type = 'm.room.member' AND state_key = $2",
        )
        .bind(room_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(membership.flatten())
    }

    /// Rooms the user is joined to.
    pub async fn joined_rooms(&self, user_id: &str) -> Result<Vec<String>> {
        let rooms = sqlx::query_scalar(
            "SELECT room_id FROM current_state WHERE event_type = 'm.room.member' \
             AND state_key = $1 AND membership = 'join' ORDER BY room_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rooms)
    }

    /// The event a transaction id already produced.
    pub async fn txn_event(
        &self,
        user_id: &str,
        device_id: &str,
        txn_id: &str,
    ) -> Result<Option<String>> {
        let event_id = sqlx::query_scalar(
            "SELECT event_id FROM event_txns WHERE user_id = $1 AND device_id = $2 AND txn_id = $3",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(txn_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(event_id)
    }

    /// Records that the user forgot the room.
    pub async fn forget_room(&self, user_id: &str, room_id: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO forgotten_rooms (user_id, room_id) VALUES ($1, $2) \
             ON CONFLICT (user_id, room_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(room_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Undoes `forget_room` when the user joins again.
    pub async fn unforget_room(&self, user_id: &str, room_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM forgotten_rooms WHERE user_id = $1 AND room_id = $2")
            .bind(user_id)
            .bind(room_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Which events of a room to read.
#[derive(Debug, Clone, Copy)]
pub enum EventRange {
    /// Strictly after this position, oldest first.
    After(i64),
    /// At or before this position, newest first.
    AtOrBefore(i64),
}

impl Store {
    /// The position of the room's latest event (0 for none).
    pub async fn room_max_ordering(&self, room_id: &str) -> Result<i64> {
        let max: Option<i64> =
            sqlx::query_scalar("SELECT MAX(stream_ordering) FROM events WHERE room_id = $1")
                .bind(room_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(max.unwrap_or(0))
    }
}
