//! Read paths: state, members, single events, `/messages` and `/context`,
//! every one filtered by history visibility.

use std::collections::HashSet;

use ruma::{EventId, RoomId, UserId};
use serde_json::Value;

use super::{Rooms, client_event, visibility::Visibility};
use crate::{
    error::{Error, Result},
    storage::{EventRange, StoredEvent},
};

/// Pagination direction of `/messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Backward,
    Forward,
}

/// The parts of a `RoomEventFilter` this server applies.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub types: Option<Vec<String>>,
    pub not_types: Vec<String>,
    pub senders: Option<Vec<String>>,
    pub not_senders: Vec<String>,
    pub limit: Option<usize>,
    pub lazy_load_members: bool,
}

/// `*` at the end of a filter type matches any suffix.
fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

impl EventFilter {
    /// Whether the event passes the filter.
    pub fn matches(&self, event: &StoredEvent) -> bool {
        let kind = event.event_type.as_str();
        self.types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| type_matches(t, kind)))
            && !self.not_types.iter().any(|t| type_matches(t, kind))
            && self
                .senders
                .as_ref()
                .is_none_or(|senders| senders.contains(&event.sender))
            && !self.not_senders.contains(&event.sender)
    }
}

/// One page of `/messages`.
#[derive(Debug)]
pub struct MessagesPage {
    pub chunk: Vec<Value>,
    pub start: String,
    pub end: Option<String>,
    pub state: Vec<Value>,
}

/// `/context`'s answer.
#[derive(Debug)]
pub struct Context {
    pub event: Value,
    pub events_before: Vec<Value>,
    pub events_after: Vec<Value>,
    pub start: String,
    pub end: String,
    pub state: Vec<Value>,
}

/// One scan through a room's timeline.
#[derive(Debug, Clone, Copy)]
struct Scan {
    dir: Direction,
    /// Where to start (a position between events).
    position: i64,
    /// A position not to cross.
    stop: Option<i64>,
    limit: usize,
}

/// A `/messages` request.
#[derive(Debug, Clone)]
pub struct Pagination {
    pub from: Option<String>,
    pub to: Option<String>,
    pub dir: Direction,
    pub limit: usize,
    pub filter: EventFilter,
}

/// Pagination tokens: a position between events, `t<stream ordering>`.
fn token(position: i64) -> String {
    format!("t{position}")
}

fn parse_token(token: &str) -> Result<i64> {
    // A sync token's event position is a position between events too.
    if token.starts_with('s') {
        return Ok(crate::sync::SyncToken::parse(token)?.events);
    }
    token
        .strip_prefix('t')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::InvalidParam("malformed pagination token".into()))
}

/// Rows read per query while filling a page; pages stop after this many rows scanned.
const BATCH: i64 = 100;
const MAX_SCANNED: usize = 20_000;

impl Rooms {
    /// The user's view of the room; 403 for users who were never in it
    /// (unless it is world-readable).
    async fn viewer(&self, room_id: &RoomId, user_id: &UserId) -> Result<Visibility> {
        let visibility = Visibility::load(&self.store, room_id.as_str(), user_id.as_str()).await?;
        if visibility.ever_member() || visibility.world_readable_now() {
            Ok(visibility)
        } else {
            Err(Error::Forbidden("you are not a member of this room".into()))
        }
    }

    /// Current state for members; the state when they left for former ones.
    async fn visible_state(&self, room_id: &RoomId, user_id: &UserId) -> Result<Vec<StoredEvent>> {
        let visibility = self.viewer(room_id, user_id).await?;
        match visibility.latest_membership() {
            Some((_, membership)) if membership == "join" => {
                self.store.current_state(room_id.as_str(), None).await
            }
            Some((ordering, _)) if !visibility.world_readable_now() => {
                self.store.state_at(room_id.as_str(), *ordering).await
            }
            _ => self.store.current_state(room_id.as_str(), None).await,
        }
    }

    /// `GET /rooms/{roomId}/state`.
    pub async fn state(&self, room_id: &RoomId, user_id: &UserId) -> Result<Vec<Value>> {
        self.visible_state(room_id, user_id)
            .await?
            .iter()
            .map(client_event)
            .collect()
    }

    /// `GET /rooms/{roomId}/state/{eventType}/{stateKey}`: the event in client format.
    pub async fn state_event(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        kind: &str,
        state_key: &str,
    ) -> Result<Value> {
        let state = self.visible_state(room_id, user_id).await?;
        let event = state
            .iter()
            .find(|e| e.event_type == kind && e.state_key.as_deref() == Some(state_key))
            .ok_or_else(|| Error::NotFound("no such state event".into()))?;
        client_event(event)
    }

    /// `GET /rooms/{roomId}/members`, optionally filtered by membership.
    pub async fn members(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        membership: Option<&str>,
        not_membership: Option<&str>,
    ) -> Result<Vec<Value>> {
        let state = self.visible_state(room_id, user_id).await?;
        state
            .iter()
            .filter(|e| e.event_type == "m.room.member")
            .filter(|e| membership.is_none_or(|m| e.membership.as_deref() == Some(m)))
            .filter(|e| not_membership.is_none_or(|m| e.membership.as_deref() != Some(m)))
            .map(client_event)
            .collect()
    }

    /// `GET /rooms/{roomId}/joined_members`: `(user_id, content)` of each joined member.
    pub async fn joined_members(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Vec<(String, Value)>> {
        self.store
            .require_joined(room_id.as_str(), user_id.as_str())
            .await?;
        let members = self
            .store
            .current_state(room_id.as_str(), Some("m.room.member"))
            .await?;
        members
            .iter()
            .filter(|e| e.membership.as_deref() == Some("join"))
            .map(|e| {
                Ok((
                    e.state_key.clone().unwrap_or_default(),
                    client_event(e)?["content"].clone(),
                ))
            })
            .collect()
    }

    /// `GET /joined_rooms`.
    pub async fn joined_rooms(&self, user_id: &UserId) -> Result<Vec<String>> {
        self.store.joined_rooms(user_id.as_str()).await
    }

    /// An event of the room the user may see; 404 otherwise.
    async fn visible_event(
        &self,
        room_id: &RoomId,
        visibility: &Visibility,
        event_id: &EventId,
    ) -> Result<StoredEvent> {
        self.store
            .event(event_id.as_str())
            .await?
            .filter(|e| e.room_id == room_id.as_str() && visibility.can_see(e))
            .ok_or_else(|| Error::NotFound("event not found".into()))
    }

    /// `GET /rooms/{roomId}/event/{eventId}`: 404 unless the user may see it.
    pub async fn event(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        event_id: &EventId,
    ) -> Result<Value> {
        let visibility = self.viewer(room_id, user_id).await?;
        let event = self.visible_event(room_id, &visibility, event_id).await?;
        client_event(&event)
    }

    /// Collects up to `scan.limit` visible, matching events from `scan.position`
    /// in `scan.dir`, not crossing `scan.stop`. Returns the events and the
    /// position after the last one, or `None` when nothing further can be seen.
    async fn page(
        &self,
        room_id: &RoomId,
        visibility: &Visibility,
        filter: &EventFilter,
        scan: Scan,
    ) -> Result<(Vec<StoredEvent>, Option<i64>)> {
        let Scan {
            dir,
            mut position,
            stop,
            limit,
        } = scan;
        let mut events = Vec::new();
        let mut scanned = 0;
        loop {
            let range = match dir {
                Direction::Backward => EventRange::AtOrBefore(position),
                Direction::Forward => EventRange::After(position),
            };
            let batch = self
                .store
                .room_events(room_id.as_str(), range, BATCH)
                .await?;
            let exhausted = batch.len() < usize::try_from(BATCH).unwrap_or(usize::MAX);
            for event in batch {
                let beyond = stop.is_some_and(|stop| match dir {
                    Direction::Backward => event.stream_ordering <= stop,
                    Direction::Forward => event.stream_ordering > stop,
                });
                if beyond {
                    return Ok((events, None));
                }
                position = match dir {
                    Direction::Backward => event.stream_ordering - 1,
                    Direction::Forward => event.stream_ordering,
                };
                if visibility.can_see(&event) && filter.matches(&event) {
                    events.push(event);
                    if events.len() == limit {
                        return Ok((events, Some(position)));
                    }
                }
            }
            scanned += usize::try_from(BATCH).unwrap_or(0);
            if exhausted {
                return Ok((events, None));
            }
            if scanned >= MAX_SCANNED {
                return Ok((events, Some(position)));
            }
        }
    }

    /// The membership events of the senders of `events`, for lazy-loading clients.
    async fn sender_members(&self, room_id: &RoomId, events: &[StoredEvent]) -> Result<Vec<Value>> {
        let senders: HashSet<&str> = events.iter().map(|e| e.sender.as_str()).collect();
        let members = self
            .store
            .current_state(room_id.as_str(), Some("m.room.member"))
            .await?;
        members
            .iter()
            .filter(|e| e.state_key.as_deref().is_some_and(|k| senders.contains(k)))
            .map(client_event)
            .collect()
    }

    /// `GET /rooms/{roomId}/messages`.
    pub async fn messages(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        request: &Pagination,
    ) -> Result<MessagesPage> {
        let visibility = self.viewer(room_id, user_id).await?;
        let filter = &request.filter;
        let start = match (&request.from, request.dir) {
            (Some(from), _) => parse_token(from)?,
            (None, Direction::Backward) => self.store.room_max_ordering(room_id.as_str()).await?,
            (None, Direction::Forward) => 0,
        };
        let stop = request.to.as_deref().map(parse_token).transpose()?;
        let limit = filter.limit.unwrap_or(request.limit).clamp(1, 1000);
        let scan = Scan {
            dir: request.dir,
            position: start,
            stop,
            limit,
        };
        let (events, end) = self.page(room_id, &visibility, filter, scan).await?;
        let state = if filter.lazy_load_members {
            self.sender_members(room_id, &events).await?
        } else {
            vec![]
        };
        Ok(MessagesPage {
            chunk: events.iter().map(client_event).collect::<Result<_>>()?,
            start: token(start),
            end: end.map(token),
            state,
        })
    }

    /// `GET /rooms/{roomId}/context/{eventId}`.
    pub async fn context(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        event_id: &EventId,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<Context> {
        let visibility = self.viewer(room_id, user_id).await?;
        let event = self.visible_event(room_id, &visibility, event_id).await?;
        let limit = filter.limit.unwrap_or(limit).min(100);
        let before_limit = limit / 2;
        let after_limit = limit - before_limit;
        let at = event.stream_ordering;
        let (before, start) = if before_limit == 0 {
            (vec![], Some(at - 1))
        } else {
            let scan = Scan {
                dir: Direction::Backward,
                position: at - 1,
                stop: None,
                limit: before_limit,
            };
            self.page(room_id, &visibility, filter, scan).await?
        };
        let (after, end) = if after_limit == 0 {
            (vec![], Some(at))
        } else {
            let scan = Scan {
                dir: Direction::Forward,
                position: at,
                stop: None,
                limit: after_limit,
            };
            self.page(room_id, &visibility, filter, scan).await?
        };
        let last_after = after.last().map_or(at, |e| e.stream_ordering);
        let state = self.visible_state(room_id, user_id).await?;
        Ok(Context {
            event: client_event(&event)?,
            events_before: before.iter().map(client_event).collect::<Result<_>>()?,
            events_after: after.iter().map(client_event).collect::<Result<_>>()?,
            start: token(start.unwrap_or(0)),
            end: token(end.unwrap_or(last_after)),
            state: state.iter().map(client_event).collect::<Result<_>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        assert_eq!(parse_token(&token(42)).unwrap(), 42);
        assert_eq!(
            parse_token("s42_7_1_0_0_0").unwrap(),
            42,
            "sync tokens work as pagination tokens"
        );
        assert!(parse_token("s42").is_err());
        assert!(parse_token("t").is_err());
    }

    #[test]
    fn filter_types_support_wildcards() {
        let event = |kind: &str, sender: &str| StoredEvent {
            stream_ordering: 1,
            event_id: "$e".into(),
            room_id: "!r:x".into(),
            sender: sender.into(),
            event_type: kind.into(),
            state_key: None,
            membership: None,
            json: "{}".into(),
        };
        let filter = EventFilter {
            types: Some(vec!["m.room.*".into()]),
            not_senders: vec!["@b:x".into()],
            ..Default::default()
        };
        assert!(filter.matches(&event("m.room.message", "@a:x")));
        assert!(!filter.matches(&event("m.reaction", "@a:x")));
        assert!(!filter.matches(&event("m.room.message", "@b:x")));
    }
}
