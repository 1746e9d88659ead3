//! What server administration reads and changes: account and room listings,
//! blocked rooms and their purge, registration tokens, federation rules.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::{AssertSqlSafe, Row, any::AnyRow};

use super::{Store, now_ms};
use crate::error::{Error, Result};

/// One account in an administrator's listing.
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub user_id: String,
    pub displayname: Option<String>,
    pub is_admin: bool,
    pub deactivated: bool,
    pub created_ts: i64,
}

/// One room in an administrator's listing.
#[derive(Debug, Clone)]
pub struct RoomSummary {
    pub room_id: String,
    pub room_version: String,
    pub creator: String,
    pub published: bool,
    pub blocked: bool,
    pub created_ts: i64,
    pub joined_members: i64,
    /// The content of the room's current `m.room.name`, `m.room.topic`,
    /// `m.room.canonical_alias` and `m.room.join_rules` events, by type.
    pub state: HashMap<String, Value>,
    /// The user ids of the joined members, sorted.
    pub joined: Vec<String>,
}

/// A registration token with its use count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationTokenRow {
    pub token: String,
    /// `None`: unlimited.
    pub uses_allowed: Option<i64>,
    pub completed: i64,
    /// `None`: never expires.
    pub expiry_ts: Option<i64>,
}

/// The federation allow and deny lists (server name patterns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FederationRules {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// `$start, $start+1, ...`: `count` placeholders for an `IN (...)` list.
fn placeholders(start: usize, count: usize) -> String {
    (start..start + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The columns of [`RoomSummary`] read from `rooms r`, before a `WHERE`.
const ROOM_SUMMARY: &str = "SELECT r.room_id, r.room_version, r.creator, r.published, \
     r.created_ts, \
     (SELECT COUNT(*) FROM current_state c WHERE c.room_id = r.room_id \
       AND c.event_type = 'm.room.member' AND c.membership = 'join') AS joined_members, \
     (SELECT COUNT(*) FROM blocked_rooms b WHERE b.room_id = r.room_id) AS blocked \
     FROM rooms r";

/// Tables whose rows belong to one room, emptied when a room is purged
/// (after `event_txns`, which names events, not rooms).
const ROOM_TABLES: &[&str] = &[
    "events",
    "current_state",
    "forgotten_rooms",
    "room_aliases",
    "receipts",
    "account_data",
    "rooms",
];

impl Store {
    /// Accounts ordered by user id, after `from` (exclusive), at most `limit`.
    /// `search` matches (case-insensitively) part of the user id or display name.
    pub async fn list_users(
        &self,
        search: Option<&str>,
        from: Option<&str>,
        limit: i64,
    ) -> Result<Vec<UserSummary>> {
        let mut sql = String::from(
            "SELECT user_id, displayname, is_admin, deactivated, created_ts FROM users \
             WHERE user_id > $1",
        );
        if search.is_some() {
            sql.push_str(
                " AND (LOWER(user_id) LIKE $3 ESCAPE '\\' \
                 OR LOWER(COALESCE(displayname, '')) LIKE $3 ESCAPE '\\')",
            );
        }
        sql.push_str(" ORDER BY user_id LIMIT $2");
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(from.unwrap_or_default())
            .bind(limit);
        if let Some(search) = search {
            query = query.bind(like_pattern(search));
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(user_summary).collect()
    }

    /// One account as an administrator sees it, if it exists.
    pub async fn user_summary(&self, user_id: &str) -> Result<Option<UserSummary>> {
        let row = sqlx::query(
            "SELECT user_id, displayname, is_admin, deactivated, created_ts FROM users \
             WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_summary).transpose()
    }

    /// Every user with a membership in the room and that membership.
    pub async fn current_members(&self, room_id: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT state_key, membership FROM current_state \
             WHERE room_id = $1 AND event_type = 'm.room.member' ORDER BY state_key",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("state_key")?, row.try_get("membership")?)))
            .collect()
    }

    /// Clears the deactivation of an account and gives it a password.
    /// Returns `false` when there is no such account.
    pub async fn reactivate_user(&self, user_id: &str, password_hash: &str) -> Result<bool> {
        let updated =
            sqlx::query("UPDATE users SET deactivated = 0, password_hash = $1 WHERE user_id = $2")
                .bind(password_hash)
                .bind(user_id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(updated > 0)
    }

    /// Rooms ordered by room id, after `from` (exclusive), at most `limit`.
    pub async fn list_rooms(&self, from: Option<&str>, limit: i64) -> Result<Vec<RoomSummary>> {
        let sql = format!("{ROOM_SUMMARY} WHERE r.room_id > $1 ORDER BY r.room_id LIMIT $2");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(from.unwrap_or_default())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut rooms = rows.iter().map(room_summary).collect::<Result<Vec<_>>>()?;
        self.fill_room_details(&mut rooms).await?;
        Ok(rooms)
    }

    /// One room as an administrator sees it, if it exists.
    pub async fn room_summary(&self, room_id: &str) -> Result<Option<RoomSummary>> {
        let sql = format!("{ROOM_SUMMARY} WHERE r.room_id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(room_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut rooms = vec![room_summary(&row)?];
        self.fill_room_details(&mut rooms).await?;
        Ok(rooms.pop())
    }

    /// Adds the summary state and joined members to `rooms`.
    async fn fill_room_details(&self, rooms: &mut [RoomSummary]) -> Result<()> {
        if rooms.is_empty() {
            return Ok(());
        }
        let ids = placeholders(1, rooms.len());
        let by_id: HashMap<String, usize> = rooms
            .iter()
            .enumerate()
            .map(|(n, room)| (room.room_id.clone(), n))
            .collect();
        let state_sql = format!(
            "SELECT c.room_id, c.event_type, e.json FROM current_state c \
             JOIN events e ON e.event_id = c.event_id \
             WHERE c.room_id IN ({ids}) AND c.state_key = '' AND c.event_type IN \
               ('m.room.name', 'm.room.topic', 'm.room.canonical_alias', 'm.room.join_rules')"
        );
        let mut query = sqlx::query(AssertSqlSafe(state_sql));
        for room in rooms.iter() {
            query = query.bind(room.room_id.clone());
        }
        for row in query.fetch_all(&self.pool).await? {
            let room_id: String = row.try_get("room_id")?;
            let json: String = row.try_get("json")?;
            let event: Value = serde_json::from_str(&json)
                .map_err(|e| Error::Internal(format!("stored event is not JSON: {e}")))?;
            if let Some(&n) = by_id.get(&room_id) {
                rooms[n]
                    .state
                    .insert(row.try_get("event_type")?, event["content"].clone());
            }
        }
        let members_sql = format!(
            "SELECT room_id, state_key FROM current_state \
             WHERE room_id IN ({ids}) AND event_type = 'm.room.member' AND membership = 'join' \
             ORDER BY state_key"
        );
        let mut query = sqlx::query(AssertSqlSafe(members_sql));
        for room in rooms.iter() {
            query = query.bind(room.room_id.clone());
        }
        for row in query.fetch_all(&self.pool).await? {
            let room_id: String = row.try_get("room_id")?;
            if let Some(&n) = by_id.get(&room_id) {
                rooms[n].joined.push(row.try_get("state_key")?);
            }
        }
        Ok(())
    }

    /// Marks the room blocked: nobody may join it again.
    pub async fn block_room(&self, room_id: &str, blocked_by: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO blocked_rooms (room_id, blocked_by, blocked_ts) VALUES ($1, $2, $3) \
             ON CONFLICT (room_id) DO NOTHING",
        )
        .bind(room_id)
        .bind(blocked_by)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether an administrator blocked the room.
    pub async fn room_blocked(&self, room_id: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM blocked_rooms WHERE room_id = $1")
            .bind(room_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Deletes everything this server keeps about the room (but keeps it
    /// blocked), in one transaction.
    pub async fn purge_room(&self, room_id: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "DELETE FROM event_txns WHERE event_id IN \
             (SELECT event_id FROM events WHERE room_id = $1)",
        )
        .bind(room_id)
        .execute(&mut *tx)
        .await?;
        for table in ROOM_TABLES {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE room_id = $1"
            )))
            .bind(room_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores a new registration token; `false` when it exists already.
    pub async fn create_registration_token(&self, token: &RegistrationTokenRow) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO registration_tokens (token, uses_allowed, completed, expiry_ts, created_ts) \
             VALUES ($1, $2, 0, $3, $4) ON CONFLICT (token) DO NOTHING",
        )
        .bind(&token.token)
        .bind(token.uses_allowed)
        .bind(token.expiry_ts)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted > 0)
    }

    /// Every registration token, oldest first.
    pub async fn registration_tokens(&self) -> Result<Vec<RegistrationTokenRow>> {
        let rows = sqlx::query(
            "SELECT token, uses_allowed, completed, expiry_ts FROM registration_tokens \
             ORDER BY created_ts, token",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RegistrationTokenRow {
                    token: row.try_get("token")?,
                    uses_allowed: row.try_get("uses_allowed")?,
                    completed: row.try_get("completed")?,
                    expiry_ts: row.try_get("expiry_ts")?,
                })
            })
            .collect()
    }

    /// Revokes a registration token; `false` when there was none.
    pub async fn delete_registration_token(&self, token: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM registration_tokens WHERE token = $1")
            .bind(token)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    /// Whether the token exists, has not expired and has uses left.
    pub async fn registration_token_valid(&self, token: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM registration_tokens WHERE token = $1 \
             AND (uses_allowed IS NULL OR completed < uses_allowed) \
             AND (expiry_ts IS NULL OR expiry_ts > $2)",
        )
        .bind(token)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Uses up one use of the token, atomically; `false` when it is not valid.
    pub async fn use_registration_token(&self, token: &str) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE registration_tokens SET completed = completed + 1 WHERE token = $1 \
             AND (uses_allowed IS NULL OR completed < uses_allowed) \
             AND (expiry_ts IS NULL OR expiry_ts > $2)",
        )
        .bind(token)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    /// The federation allow and deny lists, sorted.
    pub async fn federation_rules(&self) -> Result<FederationRules> {
        let rows = sqlx::query(
            "SELECT rule, server_pattern FROM federation_rules ORDER BY server_pattern",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut rules = FederationRules::default();
        for row in &rows {
            let pattern: String = row.try_get("server_pattern")?;
            match row.try_get::<String, _>("rule")?.as_str() {
                "allow" => rules.allow.push(pattern),
                _ => rules.deny.push(pattern),
            }
        }
        Ok(rules)
    }

    /// Replaces both federation lists in one transaction.
    pub async fn set_federation_rules(&self, rules: &FederationRules) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM federation_rules")
            .execute(&mut *tx)
            .await?;
        for (rule, patterns) in [("allow", &rules.allow), ("deny", &rules.deny)] {
            for pattern in patterns {
                sqlx::query(
                    "INSERT INTO federation_rules (rule, server_pattern) VALUES ($1, $2) \
                     ON CONFLICT (rule, server_pattern) DO NOTHING",
                )
                .bind(rule)
                .bind(pattern)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

fn user_summary(row: &AnyRow) -> Result<UserSummary> {
    Ok(UserSummary {
        user_id: row.try_get("user_id")?,
        displayname: row.try_get("displayname")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        deactivated: row.try_get::<i64, _>("deactivated")? != 0,
        created_ts: row.try_get("created_ts")?,
    })
}

fn room_summary(row: &AnyRow) -> Result<RoomSummary> {
    Ok(RoomSummary {
        room_id: row.try_get("room_id")?,
        room_version: row.try_get("room_version")?,
        creator: row.try_get("creator")?,
        published: row.try_get::<i64, _>("published")? != 0,
        blocked: row.try_get::<i64, _>("blocked")? != 0,
        created_ts: row.try_get("created_ts")?,
        joined_members: row.try_get("joined_members")?,
        state: HashMap::new(),
        joined: Vec::new(),
    })
}

/// A `LIKE` pattern matching `search` anywhere, with `%`, `_` and `\` taken
/// literally.
fn like_pattern(search: &str) -> String {
    let mut pattern = String::with_capacity(search.len() + 2);
    pattern.push('%');
    for c in search.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}
