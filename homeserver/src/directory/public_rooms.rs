//! The published room directory as `/publicRooms` pages it.
//!
//! Rooms are ordered by joined member count, largest first, then by room id.
//! Pagination tokens are opaque to clients: a direction and the sort key of the
//! room at the edge of the page the token came with, so a page continues
//! strictly after (or before) that room even when rooms come and go.

use std::cmp::Reverse;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::Value;

use crate::{
    error::{Error, Result},
    storage::PublishedRoom,
};

/// The most rooms one page holds, and the page size when none is asked for.
pub const MAX_LIMIT: usize = 500;

/// A `/publicRooms` request.
#[derive(Debug, Default, Clone)]
pub struct PublicRoomsQuery {
    pub limit: Option<i64>,
    pub since: Option<String>,
    /// The server whose directory is asked for; `None` is this server.
    pub server: Option<String>,
    /// Case-insensitive text to find in the name, topic or canonical alias (or
    /// the exact room id).
    pub generic_search_term: Option<String>,
    /// Only rooms of these types (`None` in the list: rooms without a type).
    pub room_types: Option<Vec<Option<String>>>,
    /// Rooms of one third-party network: this server bridges none.
    pub third_party_instance_id: Option<String>,
}

/// One room of the directory (also as another server lists it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct PublicRoomEntry {
    pub room_id: String,
    pub num_joined_members: i64,
    #[serde(default)]
    pub world_readable: bool,
    #[serde(default)]
    pub guest_can_join: bool,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub canonical_alias: Option<String>,
    pub avatar_url: Option<String>,
    pub join_rule: Option<String>,
    pub room_type: Option<String>,
}

/// A page of the directory.
#[derive(Debug, Clone)]
pub struct PublicRoomsPage {
    pub chunk: Vec<PublicRoomEntry>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    /// How many rooms match the request, over all pages.
    pub total_room_count_estimate: i64,
}

/// The sort key: most joined members first, then room id.
type Key = (Reverse<i64>, String);

fn key(entry: &PublicRoomEntry) -> Key {
    (Reverse(entry.num_joined_members), entry.room_id.clone())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The rooms after the key.
    Forward,
    /// The rooms before the key.
    Backward,
}

fn encode_token(direction: Direction, key: &Key) -> String {
    let d = match direction {
        Direction::Forward => 'n',
        Direction::Backward => 'p',
    };
    URL_SAFE_NO_PAD.encode(format!("{d}{}:{}", key.0.0, key.1))
}

fn decode_token(token: &str) -> Result<(Direction, Key)> {
    let invalid = || Error::InvalidParam("invalid pagination token".into());
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let direction = match text.chars().next() {
        Some('n') => Direction::Forward,
        Some('p') => Direction::Backward,
        _ => return Err(invalid()),
    };
    let (count, room_id) = text[1..].split_once(':').ok_or_else(invalid)?;
    let count = count.parse().map_err(|_| invalid())?;
    Ok((direction, (Reverse(count), room_id.to_owned())))
}

fn text(content: Option<&Value>, field: &str) -> Option<String> {
    content?[field]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn entry(room: PublishedRoom) -> PublicRoomEntry {
    let state = |t: &str| room.state.get(t);
    PublicRoomEntry {
        num_joined_members: room.num_joined_members,
        world_readable: text(state("m.room.history_visibility"), "history_visibility").as_deref()
            == Some("world_readable"),
        guest_can_join: text(state("m.room.guest_access"), "guest_access").as_deref()
            == Some("can_join"),
        name: text(state("m.room.name"), "name"),
        topic: text(state("m.room.topic"), "topic"),
        canonical_alias: text(state("m.room.canonical_alias"), "alias"),
        avatar_url: text(state("m.room.avatar"), "url"),
        join_rule: text(state("m.room.join_rules"), "join_rule"),
        room_type: text(state("m.room.create"), "type"),
        room_id: room.room_id,
    }
}

fn matches(entry: &PublicRoomEntry, query: &PublicRoomsQuery) -> bool {
    if let Some(types) = &query.room_types
        && !types.contains(&entry.room_type)
    {
        return false;
    }
    let Some(term) = query
        .generic_search_term
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return true;
    };
    let lowercase = term.to_lowercase();
    entry.room_id == term
        || [&entry.name, &entry.topic, &entry.canonical_alias]
            .into_iter()
            .flatten()
            .any(|field| field.to_lowercase().contains(&lowercase))
}

/// The page of `rooms` that `query` asks for.
pub(super) fn page(rooms: Vec<PublishedRoom>, query: &PublicRoomsQuery) -> Result<PublicRoomsPage> {
    let limit = match query.limit {
        None => MAX_LIMIT,
        Some(n) if n >= 1 => usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
        Some(_) => return Err(Error::InvalidParam("limit must be at least 1".into())),
    };
    let since = query.since.as_deref().map(decode_token).transpose()?;
    let mut entries: Vec<PublicRoomEntry> = if query.third_party_instance_id.is_some() {
        Vec::new()
    } else {
        rooms
            .into_iter()
            .map(entry)
            .filter(|e| matches(e, query))
            .collect()
    };
    entries.sort_by_cached_key(key);
    let (start, end) = match since {
        None => (0, limit.min(entries.len())),
        Some((Direction::Forward, after)) => {
            let start = entries.partition_point(|e| key(e) <= after);
            (start, (start + limit).min(entries.len()))
        }
        Some((Direction::Backward, before)) => {
            let end = entries.partition_point(|e| key(e) < before);
            (end.saturating_sub(limit), end)
        }
    };
    let total = i64::try_from(entries.len()).unwrap_or(i64::MAX);
    let next_batch = (end < entries.len() && end > start)
        .then(|| encode_token(Direction::Forward, &key(&entries[end - 1])));
    let prev_batch = (start > 0 && end > start)
        .then(|| encode_token(Direction::Backward, &key(&entries[start])));
    let chunk = entries.drain(start..end).collect();
    Ok(PublicRoomsPage {
        chunk,
        next_batch,
        prev_batch,
        total_room_count_estimate: total,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn room(id: &str, joined: i64, name: Option<&str>) -> PublishedRoom {
        let mut state = HashMap::new();
        if let Some(name) = name {
            state.insert("m.room.name".to_owned(), json!({ "name": name }));
        }
        PublishedRoom {
            room_id: id.to_owned(),
            num_joined_members: joined,
            state,
        }
    }

    fn ids(page: &PublicRoomsPage) -> Vec<&str> {
        page.chunk.iter().map(|e| e.room_id.as_str()).collect()
    }

    fn rooms() -> Vec<PublishedRoom> {
        vec![
            room("!c:hs", 1, None),
            room("!a:hs", 3, Some("Tea")),
            room("!b:hs", 1, Some("Coffee")),
            room("!d:hs", 5, None),
        ]
    }

    #[test]
    fn pages_forward_and_back_in_a_stable_order() {
        let query = |since: Option<String>| PublicRoomsQuery {
            limit: Some(2),
            since,
            ..Default::default()
        };
        let first = page(rooms(), &query(None)).unwrap();
        assert_eq!(ids(&first), ["!d:hs", "!a:hs"]);
        assert!(first.prev_batch.is_none());
        assert_eq!(first.total_room_count_estimate, 4);
        let second = page(rooms(), &query(first.next_batch.clone())).unwrap();
        assert_eq!(ids(&second), ["!b:hs", "!c:hs"]);
        assert!(second.next_batch.is_none());
        let back = page(rooms(), &query(second.prev_batch.clone())).unwrap();
        assert_eq!(ids(&back), ["!d:hs", "!a:hs"]);
        assert!(back.prev_batch.is_none());
        assert_eq!(back.next_batch, first.next_batch);
    }

    #[test]
    fn filters_and_rejects_bad_requests() {
        let query = PublicRoomsQuery {
            generic_search_term: Some("cOFF".into()),
            ..Default::default()
        };
        let found = page(rooms(), &query).unwrap();
        assert_eq!(ids(&found), ["!b:hs"]);
        assert_eq!(found.total_room_count_estimate, 1);
        let bad_token = PublicRoomsQuery {
            since: Some("garbage!".into()),
            ..Default::default()
        };
        assert!(matches!(
            page(rooms(), &bad_token),
            Err(Error::InvalidParam(_))
        ));
        let bad_limit = PublicRoomsQuery {
            limit: Some(0),
            ..Default::default()
        };
        assert!(matches!(
            page(rooms(), &bad_limit),
            Err(Error::InvalidParam(_))
        ));
    }
}
