//! The `rooms`, `events`, `current_state`, `event_txns` and `forgotten_rooms`
//! tables: the room graph as this server accepted it.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row, any::AnyRow};

use super::{Backend, NewStateGroup, Store, insert_state_groups, now_ms};
use crate::error::{Error, Result};

/// A room as stored.
#[derive(Debug, Clone)]
pub struct RoomRow {
    pub room_id: String,
    pub room_version: String,
    pub head_event_id: String,
    pub head_depth: i64,
    /// The group of the room's current state.
    pub state_group: Option<String>,
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

/// Where a stored event sits in its room's graph.
#[derive(Debug, Clone)]
pub struct Placed {
    pub event_id: String,
    pub depth: i64,
    /// The state group after it; `None` for an outlier whose state is unknown.
    pub state_after: Option<String>,
    /// Received for its state or auth chain (or soft-failed), not in the timeline.
    pub outlier: bool,
}

fn placed(row: &AnyRow) -> Result<Placed> {
    Ok(Placed {
        event_id: row.try_get("event_id")?,
        depth: row.try_get("depth")?,
        state_after: row.try_get("state_after")?,
        outlier: row.try_get::<i64, _>("outlier")? != 0,
    })
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
    /// The room's last stored event this one was placed after (empty for a
    /// room's first event): it is stored only if that is still the last.
    pub prev_event: String,
    /// `(user_id, device_id, txn_id)` of the request that sent it.
    pub txn: Option<(String, String, String)>,
    /// For a redaction that takes effect: the target and its redacted JSON.
    pub redaction: Option<(String, String)>,
    /// The state groups before and after the event.
    pub state_before: String,
    pub state_after: String,
    /// State groups that appear with this event, stored before it.
    pub new_groups: Vec<NewStateGroup>,
    /// The room once this event is in it.
    pub room_after: RoomAfter,
    /// Kept out of the timeline (a negative position, below every sync token).
    pub outlier: bool,
    /// Other servers to send it to.
    pub destinations: Vec<String>,
}

/// A room's graph and state after an event.
#[derive(Debug, Clone, Default)]
pub struct RoomAfter {
    /// Events nothing refers to yet.
    pub extremities: Vec<String>,
    /// The group of the room's current state.
    pub state_group: String,
    /// The greatest depth of the room's events.
    pub depth: i64,
    /// Changes to the current state: `(type, state_key, event id)`, `None` removing the key.
    pub changes: Vec<(String, String, Option<String>)>,
}

/// A new room and the events that create it.
#[derive(Debug)]
pub struct NewRoom {
    pub room_id: String,
    pub room_version: String,
    pub creator: String,
}

/// The columns [`stored_event`] reads.
pub(super) const EVENT_COLUMNS: &str =
    "stream_ordering, event_id, room_id, sender, event_type, state_key, membership, json";

pub(super) fn stored_event(row: &AnyRow) -> Result<StoredEvent> {
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

/// Placeholders for `rows` rows of `columns` values, numbered in order:
/// `($1, $2), ($3, $4)` for PostgreSQL, `(?, ?), (?, ?)` for SQLite, which
/// binds anonymous parameters directly but looks each numbered one up by
/// name in a list (quadratic in the parameters of a multi-row statement).
pub(super) fn placeholders(conn: &AnyConnection, rows: usize, columns: usize) -> String {
    let anonymous = conn.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME;
    (0..rows)
        .map(|row| {
            let values: Vec<String> = (1..=columns)
                .map(|c| {
                    if anonymous {
                        "?".to_owned()
                    } else {
                        format!("${}", row * columns + c)
                    }
                })
                .collect();
            format!("({})", values.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows per multi-row statement (keeps bind parameters under every limit).
const ROWS_PER_STATEMENT: usize = 256;

/// Splits `events` into statements of at most `ROWS_PER_STATEMENT` rows and
/// about `max_bytes` of event JSON each (a single larger event goes alone).
fn statement_chunks<'a>(events: &'a [&'a NewEvent], max_bytes: usize) -> Vec<&'a [&'a NewEvent]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, event) in events.iter().enumerate() {
        let full =
            i - start == ROWS_PER_STATEMENT || (i > start && bytes + event.json.len() > max_bytes);
        if full {
            chunks.push(&events[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += event.json.len();
    }
    if start < events.len() {
        chunks.push(&events[start..]);
    }
    chunks
}

/// Stores events, their state, transaction ids, redactions and the rooms'
/// new heads with a few multi-row statements (each statement is a round trip
/// to the database). Returns each event's stream position, in order.
async fn insert_events(
    conn: &mut AnyConnection,
    events: &[&NewEvent],
    max_bytes: usize,
) -> Result<Vec<i64>> {
    let groups: Vec<&NewStateGroup> = events.iter().flat_map(|e| &e.new_groups).collect();
    insert_state_groups(conn, &groups).await?;
    let (outliers, timeline): (Vec<&NewEvent>, Vec<&NewEvent>) =
        events.iter().partition(|e| e.outlier);
    let mut positions: HashMap<String, i64> = HashMap::with_capacity(events.len());
    insert_event_rows(conn, &timeline, max_bytes, None, &mut positions).await?;
    insert_outlier_rows(conn, &outliers, max_bytes, &mut positions).await?;

    apply_room_changes(conn, events).await?;
    queue_for_servers(conn, events, &positions).await?;

    let txns: Vec<(&NewEvent, &(String, String, String))> = events
        .iter()
        .filter_map(|e| e.txn.as_ref().map(|t| (*e, t)))
        .collect();
    let now = now_ms();
    for chunk in txns.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO event_txns (user_id, device_id, txn_id, event_id, created_ts) VALUES {}",
            placeholders(conn, chunk.len(), 5)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (event, (user_id, device_id, txn_id)) in chunk {
            query = query
                .bind(user_id)
                .bind(device_id)
                .bind(txn_id)
                .bind(&event.event_id)
                .bind(now);
        }
        query.execute(&mut *conn).await?;
    }

    for event in events {
        if let Some((target, redacted_json)) = &event.redaction {
            sqlx::query("UPDATE events SET json = $1, redacted_by = $2 WHERE event_id = $3")
                .bind(redacted_json)
                .bind(&event.event_id)
                .bind(target)
                .execute(&mut *conn)
                .await?;
        }
    }

    // The new head of each room: its last event here, all set in one statement.
    let mut heads: Vec<&NewEvent> = Vec::new();
    for event in events.iter().rev().copied() {
        if !heads.iter().any(|h| h.room_id == event.room_id) {
            heads.push(event);
        }
    }
    for chunk in heads.chunks(ROWS_PER_STATEMENT) {
        let cases = |column: usize| -> String {
            let arms: Vec<String> = (0..chunk.len())
                .map(|i| format!("WHEN ${} THEN ${}", i * 4 + 1, i * 4 + column))
                .collect();
            arms.join(" ")
        };
        let rooms: Vec<String> = (0..chunk.len())
            .map(|i| format!("${}", i * 4 + 1))
            .collect();
        let sql = format!(
            "UPDATE rooms SET head_event_id = CASE room_id {} END, head_depth = CASE room_id {} END, \
             state_group = CASE room_id {} END WHERE room_id IN ({})",
            cases(2),
            cases(3),
            cases(4),
            rooms.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for head in chunk {
            query = query
                .bind(&head.room_id)
                .bind(&head.event_id)
                .bind(head.room_after.depth)
                .bind(&head.room_after.state_group);
        }
        query.execute(&mut *conn).await?;
    }
    set_extremities(conn, &heads).await?;
    events
        .iter()
        .map(|e| {
            positions
                .get(&e.event_id)
                .copied()
                .ok_or_else(|| Error::Internal(format!("no stream position for {}", e.event_id)))
        })
        .collect()
}

/// Inserts events (outliers, or history fetched from other servers) at
/// positions below every other event's, in the order given.
async fn insert_outlier_rows(
    conn: &mut AnyConnection,
    events: &[&NewEvent],
    max_bytes: usize,
    positions: &mut HashMap<String, i64>,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let lowest: Option<i64> = sqlx::query_scalar("SELECT MIN(stream_ordering) FROM events")
        .fetch_one(&mut *conn)
        .await?;
    let below = lowest.unwrap_or(0).min(0);
    insert_event_rows(conn, events, max_bytes, Some(below), positions).await
}

/// Inserts event rows and records their positions: timeline events get the
/// next ones, outliers (with `below`) the ones under `below`, descending.
async fn insert_event_rows(
    conn: &mut AnyConnection,
    events: &[&NewEvent],
    max_bytes: usize,
    below: Option<i64>,
    positions: &mut HashMap<String, i64>,
) -> Result<()> {
    // Events placed below the timeline's start have no known state here:
    // their state columns stay NULL.
    let (state_columns, columns) = if below.is_some() {
        ("outlier, stream_ordering", 11)
    } else {
        ("state_before, state_after", 11)
    };
    let mut next_outlier = below.unwrap_or(0);
    for chunk in statement_chunks(events, max_bytes) {
        let sql = format!(
            "INSERT INTO events (event_id, room_id, sender, event_type, state_key, membership, depth, \
             origin_server_ts, json, {state_columns}) VALUES {} \
             RETURNING event_id, stream_ordering",
            placeholders(conn, chunk.len(), columns)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for event in chunk {
            query = query
                .bind(&event.event_id)
                .bind(&event.room_id)
                .bind(&event.sender)
                .bind(&event.event_type)
                .bind(&event.state_key)
                .bind(&event.membership)
                .bind(event.depth)
                .bind(event.origin_server_ts)
                .bind(&event.json);
            query = if below.is_some() {
                next_outlier -= 1;
                query.bind(i64::from(event.outlier)).bind(next_outlier)
            } else {
                query.bind(&event.state_before).bind(&event.state_after)
            };
        }
        for row in query.fetch_all(&mut *conn).await? {
            positions.insert(row.try_get("event_id")?, row.try_get("stream_ordering")?);
        }
    }
    Ok(())
}

/// Puts each event in the federation outbox of its destinations.
async fn queue_for_servers(
    conn: &mut AnyConnection,
    events: &[&NewEvent],
    positions: &HashMap<String, i64>,
) -> Result<()> {
    let rows: Vec<(&str, i64, &str)> = events
        .iter()
        .filter_map(|e| positions.get(&e.event_id).map(|p| (e, *p)))
        .flat_map(|(e, position)| {
            e.destinations
                .iter()
                .map(move |d| (d.as_str(), position, e.event_id.as_str()))
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO federation_outbox (destination, stream_ordering, event_id) VALUES {}",
            placeholders(conn, chunk.len(), 3)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (destination, position, event_id) in chunk {
            query = query.bind(*destination).bind(*position).bind(*event_id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Applies the events' changes to their rooms' current state, in order:
/// only each key's final value is written (a statement must not touch a
/// row twice), its membership read from the event it names.
async fn apply_room_changes(conn: &mut AnyConnection, events: &[&NewEvent]) -> Result<()> {
    let mut last: HashMap<(&str, &str, &str), Option<&str>> = HashMap::new();
    for event in events {
        for (kind, key, event_id) in &event.room_after.changes {
            last.insert(
                (event.room_id.as_str(), kind.as_str(), key.as_str()),
                event_id.as_deref(),
            );
        }
    }
    let set: Vec<&str> = last.values().filter_map(|id| *id).collect();
    for chunk in set.chunks(ROWS_PER_STATEMENT) {
        let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "INSERT INTO current_state (room_id, event_type, state_key, event_id, membership) \
             SELECT room_id, event_type, state_key, event_id, membership FROM events \
             WHERE event_id IN ({}) ON CONFLICT (room_id, event_type, state_key) \
             DO UPDATE SET event_id = excluded.event_id, membership = excluded.membership",
            params.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for event_id in chunk {
            query = query.bind(*event_id);
        }
        query.execute(&mut *conn).await?;
    }
    for ((room_id, kind, key), _) in last.iter().filter(|(_, id)| id.is_none()) {
        sqlx::query(
            "DELETE FROM current_state WHERE room_id = $1 AND event_type = $2 AND state_key = $3",
        )
        .bind(*room_id)
        .bind(*kind)
        .bind(*key)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Replaces the forward extremities of each room `heads` (one event per room) names.
async fn set_extremities(conn: &mut AnyConnection, heads: &[&NewEvent]) -> Result<()> {
    for chunk in heads.chunks(ROWS_PER_STATEMENT) {
        let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "DELETE FROM room_extremities WHERE room_id IN ({})",
            params.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for head in chunk {
            query = query.bind(&head.room_id);
        }
        query.execute(&mut *conn).await?;
    }
    let rows: Vec<(&str, &str)> = heads
        .iter()
        .flat_map(|head| {
            head.room_after
                .extremities
                .iter()
                .map(|id| (head.room_id.as_str(), id.as_str()))
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO room_extremities (room_id, event_id) VALUES {}",
            placeholders(conn, chunk.len(), 2)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (room_id, event_id) in chunk {
            query = query.bind(*room_id).bind(*event_id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// What `Store::append_events` did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Stored at this stream position.
    Stored(i64),
    /// Its transaction id was used before: the event that request made.
    Duplicate(String),
    /// It does not extend its room's head: not stored.
    Stale,
}

/// The stored head of each room `events` belong to.
async fn room_heads(
    conn: &mut AnyConnection,
    events: &[NewEvent],
) -> Result<HashMap<String, String>> {
    let mut rooms: Vec<&str> = events.iter().map(|e| e.room_id.as_str()).collect();
    rooms.sort_unstable();
    rooms.dedup();
    let mut heads = HashMap::with_capacity(rooms.len());
    for chunk in rooms.chunks(ROWS_PER_STATEMENT) {
        let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT room_id, head_event_id FROM rooms WHERE room_id IN ({})",
            params.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for room in chunk {
            query = query.bind(*room);
        }
        for row in query.fetch_all(&mut *conn).await? {
            heads.insert(row.try_get("room_id")?, row.try_get("head_event_id")?);
        }
    }
    Ok(heads)
}

/// The events already sent with the transaction ids of `events`.
async fn known_txns(
    conn: &mut AnyConnection,
    events: &[NewEvent],
) -> Result<HashMap<(String, String, String), String>> {
    let txns: Vec<&(String, String, String)> =
        events.iter().filter_map(|e| e.txn.as_ref()).collect();
    let mut known = HashMap::new();
    for chunk in txns.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT user_id, device_id, txn_id, event_id FROM event_txns \
             WHERE (user_id, device_id, txn_id) IN (VALUES {})",
            placeholders(conn, chunk.len(), 3)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (user_id, device_id, txn_id) in chunk {
            query = query.bind(user_id).bind(device_id).bind(txn_id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let key = (
                row.try_get("user_id")?,
                row.try_get("device_id")?,
                row.try_get("txn_id")?,
            );
            known.insert(key, row.try_get("event_id")?);
        }
    }
    Ok(known)
}

impl Store {
    /// How much event JSON one multi-row statement carries at most. sqlx 0.9.0
    /// no longer sets TCP_NODELAY (sqlx issue #4335, fixed upstream but not
    /// yet released), so a statement too large for one write stalls ~40 ms on
    /// Nagle and delayed ACKs; PostgreSQL statements stay small until then.
    fn max_statement_bytes(&self) -> usize {
        match self.backend {
            Backend::Sqlite => usize::MAX,
            Backend::Postgres => 8 * 1024,
        }
    }

    /// Creates a room with its first events, all or nothing.
    pub async fn create_room(&self, room: &NewRoom, events: &[NewEvent]) -> Result<Vec<i64>> {
        let first = events
            .first()
            .ok_or_else(|| Error::Internal("a room needs events".into()))?;
        let mut tx = self.begin_write().await?;
        // A room known only from an invite (no graph yet) becomes the real one.
        let created = sqlx::query(
            "INSERT INTO rooms (room_id, room_version, creator, head_event_id, head_depth, created_ts) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room_id) DO UPDATE \
             SET room_version = excluded.room_version, creator = excluded.creator \
             WHERE NOT EXISTS (SELECT 1 FROM room_extremities x WHERE x.room_id = excluded.room_id)",
        )
        .bind(&room.room_id)
        .bind(&room.room_version)
        .bind(&room.creator)
        .bind(&first.event_id)
        .bind(first.depth)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if created.rows_affected() != 1 {
            return Err(Error::Conflict(format!("room {} exists", room.room_id)));
        }
        let events: Vec<&NewEvent> = events.iter().collect();
        let orderings = insert_events(&mut tx, &events, self.max_statement_bytes()).await?;
        tx.commit().await?;
        Ok(orderings)
    }

    /// Records the membership of a user of this server in a room this
    /// server is not in (an invite from another server, or leaving one): a
    /// room without graph, the event in the user's timeline, and the state
    /// the inviting server showed (kept while the user is invited).
    pub async fn keep_remote_membership(
        &self,
        room: &NewRoom,
        event: &NewEvent,
        invite_state: Option<&str>,
    ) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO rooms (room_id, room_version, creator, head_event_id, head_depth, created_ts) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room_id) DO NOTHING",
        )
        .bind(&room.room_id)
        .bind(&room.room_version)
        .bind(&room.creator)
        .bind(&event.event_id)
        .bind(event.depth)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let mut positions = HashMap::new();
        insert_event_rows(
            &mut tx,
            &[event],
            self.max_statement_bytes(),
            None,
            &mut positions,
        )
        .await?;
        apply_room_changes(&mut tx, &[event]).await?;
        let user = event.state_key.as_deref().unwrap_or_default();
        match invite_state {
            Some(invite_state) => sqlx::query(
                "INSERT INTO remote_invites (room_id, user_id, invite_state) VALUES ($1, $2, $3) \
                 ON CONFLICT (room_id, user_id) DO UPDATE SET invite_state = excluded.invite_state",
            )
            .bind(&room.room_id)
            .bind(user)
            .bind(invite_state),
            None => sqlx::query("DELETE FROM remote_invites WHERE room_id = $1 AND user_id = $2")
                .bind(&room.room_id)
                .bind(user),
        }
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        positions
            .get(&event.event_id)
            .copied()
            .ok_or_else(|| Error::Internal("no stream position for the membership".into()))
    }

    /// The room state another server showed with its invite of `user_id`.
    pub async fn remote_invite_state(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT invite_state FROM remote_invites WHERE room_id = $1 AND user_id = $2",
        )
        .bind(room_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Appends events to their rooms in one transaction. An event is stored
    /// only if it extends its room's head (as stored, or as extended by the
    /// events before it here) and its transaction id is new.
    pub async fn append_events(&self, events: &[NewEvent]) -> Result<Vec<Appended>> {
        let mut tx = self.begin_write().await?;
        let mut known = known_txns(&mut tx, events).await?;
        let mut heads = room_heads(&mut tx, events).await?;
        let mut outcomes = Vec::with_capacity(events.len());
        let mut accepted = Vec::with_capacity(events.len());
        for event in events {
            if let Some(earlier) = event.txn.as_ref().and_then(|txn| known.get(txn)) {
                outcomes.push(Some(Appended::Duplicate(earlier.clone())));
                continue;
            }
            let head = heads.get_mut(event.room_id.as_str());
            match head {
                Some(head) if *head == event.prev_event => {
                    head.clone_from(&event.event_id);
                    if let Some(txn) = &event.txn {
                        known.insert(txn.clone(), event.event_id.clone());
                    }
                    accepted.push(event);
                    outcomes.push(None);
                }
                _ => outcomes.push(Some(Appended::Stale)),
            }
        }
        let mut positions = insert_events(&mut tx, &accepted, self.max_statement_bytes())
            .await?
            .into_iter();
        tx.commit().await?;
        Ok(outcomes
            .into_iter()
            .map(|outcome| {
                outcome
                    .unwrap_or_else(|| positions.next().map_or(Appended::Stale, Appended::Stored))
            })
            .collect())
    }

    /// Stores events received for their state or auth chain (outliers);
    /// those already stored are left as they are.
    pub async fn store_outliers(&self, events: &[NewEvent]) -> Result<()> {
        self.store_backfilled(events).await.map(|_| ())
    }

    /// Stores a room's older history fetched from another server (`events`
    /// newest first), below every event here, as outliers are stored;
    /// returns how many were new.
    pub async fn store_backfilled(&self, events: &[NewEvent]) -> Result<usize> {
        let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        let known = self.placements(&ids).await?;
        let mut seen = std::collections::HashSet::new();
        let new: Vec<&NewEvent> = events
            .iter()
            .filter(|e| !known.contains_key(&e.event_id) && seen.insert(e.event_id.as_str()))
            .collect();
        let mut tx = self.begin_write().await?;
        let mut positions = HashMap::new();
        insert_outlier_rows(&mut tx, &new, self.max_statement_bytes(), &mut positions).await?;
        tx.commit().await?;
        Ok(new.len())
    }

    /// The room's oldest event in its timeline here.
    pub async fn oldest_timeline_event(&self, room_id: &str) -> Result<Option<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND outlier = 0 \
             ORDER BY stream_ordering LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stored_event).transpose()
    }

    /// The room, if this server knows it.
    pub async fn room(&self, room_id: &str) -> Result<Option<RoomRow>> {
        let row = sqlx::query(
            "SELECT room_id, room_version, head_event_id, head_depth, state_group FROM rooms \
             WHERE room_id = $1",
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
                state_group: row.try_get("state_group")?,
            })
        })
        .transpose()
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

    /// The room's state after the event at `ordering` (the last event of
    /// the room's timeline at or before it).
    pub async fn state_at(&self, room_id: &str, ordering: i64) -> Result<Vec<StoredEvent>> {
        let group: Option<Option<String>> = sqlx::query_scalar(
            "SELECT state_after FROM events WHERE room_id = $1 AND stream_ordering <= $2 \
             AND outlier = 0 ORDER BY stream_ordering DESC LIMIT 1",
        )
        .bind(room_id)
        .bind(ordering)
        .fetch_optional(&self.pool)
        .await?;
        let Some(Some(group)) = group else {
            return Ok(Vec::new());
        };
        let ids: Vec<String> = self.state_group(&group).await?.into_values().collect();
        self.events_by_id(&ids).await
    }

    /// The state group before a stored event (`None` for outliers).
    pub async fn state_before(&self, event_id: &str) -> Result<Option<String>> {
        let group: Option<Option<String>> =
            sqlx::query_scalar("SELECT state_before FROM events WHERE event_id = $1")
                .bind(event_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(group.flatten())
    }

    /// The room's state before a stored event (empty for outliers).
    pub async fn state_before_event(&self, event_id: &str) -> Result<Vec<StoredEvent>> {
        let Some(group) = self.state_before(event_id).await? else {
            return Ok(Vec::new());
        };
        let ids: Vec<String> = self.state_group(&group).await?.into_values().collect();
        self.events_by_id(&ids).await
    }

    /// The events among `ids` this server has, in stream order.
    pub async fn events_by_id(&self, ids: &[String]) -> Result<Vec<StoredEvent>> {
        let mut events = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN ({})",
                params.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                events.push(stored_event(&row)?);
            }
        }
        events.sort_by_key(|e| e.stream_ordering);
        Ok(events)
    }

    /// The room's forward extremities, shallowest first.
    pub async fn extremities(&self, room_id: &str) -> Result<Vec<Placed>> {
        let rows = sqlx::query(
            "SELECT e.event_id, e.depth, e.state_after, e.outlier FROM room_extremities x \
             JOIN events e ON e.event_id = x.event_id WHERE x.room_id = $1 ORDER BY e.depth",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(placed).collect()
    }

    /// Where the events among `ids` this server has sit in their room's graph.
    pub async fn placements(&self, ids: &[&str]) -> Result<HashMap<String, Placed>> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT event_id, depth, state_after, outlier FROM events WHERE event_id IN ({})",
                params.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.pool).await? {
                let placed = placed(&row)?;
                found.insert(placed.event_id.clone(), placed);
            }
        }
        Ok(found)
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
             AND outlier = 0 ORDER BY stream_ordering {order} LIMIT $3"
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

    /// `Ok` when the user is joined to the room, 403 `M_FORBIDDEN` otherwise.
    pub async fn require_joined(&self, room_id: &str, user_id: &str) -> Result<()> {
        if self.membership(room_id, user_id).await?.as_deref() == Some("join") {
            Ok(())
        } else {
            Err(crate::error::Error::Forbidden(
                "you are not joined to this room".into(),
            ))
        }
    }

    /// The users joined to the room.
    pub async fn joined_users(&self, room_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT state_key FROM current_state WHERE room_id = $1 \
             AND event_type = 'm.room.member' AND membership = 'join'",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(bytes: usize) -> NewEvent {
        NewEvent {
            event_id: String::new(),
            room_id: String::new(),
            sender: String::new(),
            event_type: String::new(),
            state_key: None,
            membership: None,
            depth: 0,
            origin_server_ts: 0,
            json: "x".repeat(bytes),
            prev_event: String::new(),
            txn: None,
            redaction: None,
            state_before: String::new(),
            state_after: String::new(),
            new_groups: Vec::new(),
            room_after: RoomAfter::default(),
            outlier: false,
            destinations: Vec::new(),
        }
    }

    #[test]
    fn statements_are_bounded_by_rows_and_bytes() {
        let events: Vec<NewEvent> = (0..10).map(|_| event(1000)).collect();
        let refs: Vec<&NewEvent> = events.iter().collect();
        let sizes: Vec<usize> = statement_chunks(&refs, 3000)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, vec![3, 3, 3, 1]);
        assert_eq!(statement_chunks(&refs, usize::MAX).len(), 1);
        let big = [event(10_000)];
        let big_refs: Vec<&NewEvent> = big.iter().collect();
        assert_eq!(
            statement_chunks(&big_refs, 3000).len(),
            1,
            "an oversized event goes alone"
        );
        let many: Vec<NewEvent> = (0..600).map(|_| event(1)).collect();
        let many_refs: Vec<&NewEvent> = many.iter().collect();
        let sizes: Vec<usize> = statement_chunks(&many_refs, usize::MAX)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, vec![256, 256, 88]);
        assert!(statement_chunks(&[], 10).is_empty());
    }
}
