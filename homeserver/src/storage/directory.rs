//! The `room_aliases` table and the published room directory: which rooms are
//! listed, and the current state the directory shows and checks.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::Row;

use super::{Store, now_ms};
use crate::error::Result;

/// One local room alias as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRow {
    pub alias: String,
    pub room_id: String,
    pub creator: String,
}

/// What the directory needs to know about a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryRoom {
    pub room_id: String,
    pub room_version: String,
    pub creator: String,
    /// Listed in the published room directory.
    pub published: bool,
}

/// A room of the published room directory with the state it is shown with.
#[derive(Debug, Clone)]
pub struct PublishedRoom {
    pub room_id: String,
    pub num_joined_members: i64,
    /// The content of each of the room's current state events with state key
    /// `""` of the types a directory entry shows (`m.room.create`, `m.room.name`,
    /// `m.room.topic`, `m.room.avatar`, `m.room.canonical_alias`,
    /// `m.room.join_rules`, `m.room.history_visibility`, `m.room.guest_access`),
    /// by type.
    pub state: HashMap<String, Value>,
}

impl Store {
    /// Maps `alias` to `room_id`. Returns `false` (changing nothing) when the
    /// alias is taken.
    pub async fn insert_room_alias(
        &self,
        alias: &str,
        room_id: &str,
        creator: &str,
    ) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO room_aliases (alias, room_id, creator, created_ts) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (alias) DO NOTHING",
        )
        .bind(alias)
        .bind(room_id)
        .bind(creator)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted > 0)
    }

    /// The local alias, if it exists.
    pub async fn room_alias(&self, alias: &str) -> Result<Option<AliasRow>> {
        let row = sqlx::query("SELECT alias, room_id, creator FROM room_aliases WHERE alias = $1")
            .bind(alias)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(AliasRow {
                alias: row.try_get("alias")?,
                room_id: row.try_get("room_id")?,
                creator: row.try_get("creator")?,
            })
        })
        .transpose()
    }

    /// Removes the alias. Returns `false` when it did not exist.
    pub async fn delete_room_alias(&self, alias: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM room_aliases WHERE alias = $1")
            .bind(alias)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    /// The local aliases of a room, in alphabetical order.
    pub async fn room_aliases(&self, room_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias")
            .bind(room_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(row.try_get("alias")?)).collect()
    }

    /// The room, if this server knows it.
    pub async fn directory_room(&self, room_id: &str) -> Result<Option<DirectoryRoom>> {
        let row = sqlx::query(
            "SELECT room_id, room_version, creator, published FROM rooms WHERE room_id = $1",
        )
        .bind(room_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(DirectoryRoom {
                room_id: row.try_get("room_id")?,
                room_version: row.try_get("room_version")?,
                creator: row.try_get("creator")?,
                published: row.try_get::<i64, _>("published")? != 0,
            })
        })
        .transpose()
    }

    /// Lists the room in (or removes it from) the published room directory.
    /// Returns `false` when the room is unknown.
    pub async fn set_room_published(&self, room_id: &str, published: bool) -> Result<bool> {
        let updated = sqlx::query("UPDATE rooms SET published = $1 WHERE room_id = $2")
            .bind(i64::from(published))
            .bind(room_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(updated > 0)
    }

    /// The full JSON of a current state event of the room, if there is one.
    pub async fn directory_state_event(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<Value>> {
        let row = sqlx::query(
            "SELECT e.json FROM current_state c JOIN events e ON e.event_id = c.event_id \
             WHERE c.room_id = $1 AND c.event_type = $2 AND c.state_key = $3",
        )
        .bind(room_id)
        .bind(event_type)
        .bind(state_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| parse_event(&row.try_get::<String, _>("json")?))
            .transpose()
    }

    /// Every published room with its joined member count and directory state
    /// (unordered).
    pub async fn published_rooms(&self) -> Result<Vec<PublishedRoom>> {
        let rooms = sqlx::query(
            "SELECT r.room_id, \
               (SELECT COUNT(*) FROM current_state c \
                 WHERE c.room_id = r.room_id AND c.event_type = 'm.room.member' \
                   AND c.membership = 'join') AS joined \
             FROM rooms r WHERE r.published = 1",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut published = HashMap::with_capacity(rooms.len());
        for row in &rooms {
            let room_id: String = row.try_get("room_id")?;
            let joined: i64 = row.try_get("joined")?;
            published.insert(
                room_id.clone(),
                PublishedRoom {
                    room_id,
                    num_joined_members: joined,
                    state: HashMap::new(),
                },
            );
        }
        if published.is_empty() {
            return Ok(Vec::new());
        }
        let state = sqlx::query(
            "SELECT c.room_id, c.event_type, e.json \
             FROM current_state c \
             JOIN rooms r ON r.room_id = c.room_id \
             JOIN events e ON e.event_id = c.event_id \
             WHERE r.published = 1 AND c.state_key = '' AND c.event_type IN \
               ('m.room.create', 'm.room.name', 'm.room.topic', 'm.room.avatar', \
                'm.room.canonical_alias', 'm.room.join_rules', \
                'm.room.history_visibility', 'm.room.guest_access')",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in &state {
            let room_id: String = row.try_get("room_id")?;
            let event_type: String = row.try_get("event_type")?;
            let event = parse_event(&row.try_get::<String, _>("json")?)?;
            // A room published between the two queries has no entry; it shows
            // up in the next listing.
            if let Some(room) = published.get_mut(&room_id)
                && let Some(content) = event.get("content")
            {
                room.state.insert(event_type, content.clone());
            }
        }
        Ok(published.into_values().collect())
    }
}

fn parse_event(json: &str) -> Result<Value> {
    serde_json::from_str(json)
        .map_err(|e| crate::error::Error::Internal(format!("stored event is not JSON: {e}")))
}
