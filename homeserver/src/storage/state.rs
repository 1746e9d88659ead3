//! The `state_groups` and `state_group_entries` tables: room states as
//! chains of deltas, named by the event (or resolution) that made them.

use sqlx::{AnyConnection, Row};

use super::{Store, events::placeholders};
use crate::error::Result;

/// A state group about to be stored.
#[derive(Debug, Clone)]
pub struct NewStateGroup {
    pub group_id: String,
    pub room_id: String,
    /// `None`: `entries` hold the whole state.
    pub parent_id: Option<String>,
    pub chain_length: i64,
    /// `(type, state_key, event id)`; an empty event id removes the key.
    pub entries: Vec<(String, String, String)>,
}

/// One entry of a group or of one of its ancestors.
#[derive(Debug)]
pub struct ChainEntry {
    /// How far the group that holds it is from the chain's full snapshot.
    pub chain_length: i64,
    /// `(type, state_key, event id)`; `None` for a group without entries.
    pub entry: Option<(String, String, String)>,
}

/// Rows per multi-row statement.
const ROWS: usize = 256;

/// Stores groups (those already stored are left as they are: a group's
/// name fixes its content).
pub(super) async fn insert_state_groups(
    conn: &mut AnyConnection,
    groups: &[&NewStateGroup],
) -> Result<()> {
    for chunk in groups.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO state_groups (group_id, room_id, parent_id, chain_length) VALUES {} \
             ON CONFLICT (group_id) DO NOTHING",
            placeholders(conn, chunk.len(), 4)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for group in chunk {
            query = query
                .bind(&group.group_id)
                .bind(&group.room_id)
                .bind(&group.parent_id)
                .bind(group.chain_length);
        }
        query.execute(&mut *conn).await?;
    }
    let entries: Vec<(&str, &(String, String, String))> = groups
        .iter()
        .flat_map(|g| g.entries.iter().map(|e| (g.group_id.as_str(), e)))
        .collect();
    for chunk in entries.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id) VALUES {} \
             ON CONFLICT (group_id, event_type, state_key) DO NOTHING",
            placeholders(conn, chunk.len(), 4)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (group_id, (kind, key, event_id)) in chunk {
            query = query.bind(*group_id).bind(kind).bind(key).bind(event_id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

impl Store {
    /// The entries of a group and of its ancestors up to the chain's full
    /// snapshot, with the distance of each; empty for an unknown group.
    pub async fn state_group_chain(&self, group_id: &str) -> Result<Vec<ChainEntry>> {
        let rows = sqlx::query(
            "WITH RECURSIVE chain (group_id, parent_id, chain_length) AS ( \
                 SELECT group_id, parent_id, chain_length FROM state_groups WHERE group_id = $1 \
                 UNION ALL \
                 SELECT g.group_id, g.parent_id, g.chain_length FROM state_groups g \
                 JOIN chain c ON g.group_id = c.parent_id) \
             SELECT c.chain_length, e.event_type, e.state_key, e.event_id FROM chain c \
             LEFT JOIN state_group_entries e ON e.group_id = c.group_id",
        )
        .bind(group_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: Option<String> = row.try_get("event_type")?;
                let entry = match kind {
                    Some(kind) => Some((kind, row.try_get("state_key")?, row.try_get("event_id")?)),
                    None => None,
                };
                Ok(ChainEntry {
                    chain_length: row.try_get("chain_length")?,
                    entry,
                })
            })
            .collect()
    }
}

/// A room state: `(type, state_key)` to event id.
pub type StateIds = std::collections::HashMap<(String, String), String>;

/// The state a chain of entries adds up to, and the length of the group's
/// chain (the entries of nearer groups override those of farther ones).
pub fn merge_chain(mut entries: Vec<ChainEntry>) -> (StateIds, i64) {
    entries.sort_by_key(|e| e.chain_length);
    let chain_length = entries.last().map_or(0, |e| e.chain_length);
    let mut state = StateIds::with_capacity(entries.len());
    for (kind, key, event_id) in entries.into_iter().filter_map(|e| e.entry) {
        if event_id.is_empty() {
            state.remove(&(kind, key));
        } else {
            state.insert((kind, key), event_id);
        }
    }
    (state, chain_length)
}

impl Store {
    /// The state a group holds; empty for an unknown group.
    pub async fn state_group(&self, group_id: &str) -> Result<StateIds> {
        Ok(merge_chain(self.state_group_chain(group_id).await?).0)
    }
}
