//! `/sync`: everything that changed for a user since a token, or a first
//! snapshot without one; waits (long-polls) until something does.
//!
//! Streams: room events (by `stream_ordering`) and account data (by its own
//! stream position); a [`SyncToken`] records both.

mod notifier;
mod token;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

pub use notifier::{Change, Notifier};
use serde_json::{Value, json};
pub use token::SyncToken;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::{
    ephemeral::{Typing, presence_content},
    error::Result,
    rooms::{EventFilter, client_event, visibility::Visibility},
    storage::{AccountDataRow, GLOBAL_ACCOUNT_DATA, Store, StoredEvent},
};

/// Timeline events per room unless a filter says otherwise.
const DEFAULT_TIMELINE_LIMIT: usize = 10;
/// The longest a long-poll waits.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// What the client asked for.
#[derive(Debug, Default, Clone)]
pub struct SyncRequest {
    /// The syncing device, whose to-device messages come along.
    pub device_id: String,
    pub since: Option<SyncToken>,
    pub timeout: Duration,
    pub full_state: bool,
    pub filter: SyncFilter,
    /// Unread counts and presence, which `/sync` returns and the WebSocket
    /// does not send.
    pub counts_and_presence: bool,
}

/// The parts of a sync filter this server applies.
#[derive(Debug, Default, Clone)]
pub struct SyncFilter {
    /// Timeline events per room.
    pub timeline_limit: Option<usize>,
    /// Type and sender filters for timeline events.
    pub timeline: EventFilter,
    /// Only the members who sent timeline events (and the user) in `state`.
    pub lazy_load_members: bool,
    /// Include rooms the user left in an initial sync.
    pub include_leave: bool,
}

/// A room's timeline in a sync response.
#[derive(Debug, Default)]
pub struct Timeline {
    pub events: Vec<Value>,
    /// The stream position of each event in `events`.
    pub positions: Vec<i64>,
    pub limited: bool,
    /// A `/messages` token for the events before these.
    pub prev_batch: String,
}

/// A joined (or left) room in a sync response.
#[derive(Debug, Default)]
pub struct RoomUpdate {
    pub timeline: Timeline,
    pub state: Vec<Value>,
    pub account_data: Vec<Value>,
    /// `m.typing` and `m.receipt` events.
    pub ephemeral: Vec<Value>,
    /// Messages from others since the user's read receipt (or join).
    pub unread: i64,
}

/// A sync response.
#[derive(Debug, Default)]
pub struct SyncResult {
    pub next_batch: String,
    pub join: BTreeMap<String, RoomUpdate>,
    pub invite: BTreeMap<String, Vec<Value>>,
    pub leave: BTreeMap<String, RoomUpdate>,
    pub account_data: Vec<Value>,
    pub to_device: Vec<Value>,
    /// `m.presence` events of the user and their contacts.
    pub presence: Vec<Value>,
}

impl SyncResult {
    fn is_empty(&self) -> bool {
        self.join.is_empty()
            && self.invite.is_empty()
            && self.leave.is_empty()
            && self.account_data.is_empty()
            && self.to_device.is_empty()
            && self.presence.is_empty()
    }
}

/// Which events of a room a sync shows.
#[derive(Debug, Clone, Copy)]
struct TimelineRange {
    /// The client has not seen the room: show its (visible) history.
    new_to_client: bool,
    since: Option<SyncToken>,
    /// The last stream position to include.
    upto: i64,
}

/// Computes sync responses.
pub struct Syncer {
    store: Store,
    notifier: Arc<Notifier>,
    typing: Arc<Typing>,
    stopping: CancellationToken,
}

fn account_data_event(row: &AccountDataRow) -> Value {
    let content: Value = serde_json::from_str(&row.content).unwrap_or_else(|_| json!({}));
    json!({ "type": row.data_type, "content": content })
}

impl Syncer {
    /// The service over `store` and `typing`, woken by `notifier`.
    /// Long-polls end early once `stopping` is cancelled (at shutdown).
    pub fn new(
        store: Store,
        notifier: Arc<Notifier>,
        typing: Arc<Typing>,
        stopping: CancellationToken,
    ) -> Self {
        Self {
            store,
            notifier,
            typing,
            stopping,
        }
    }

    /// `GET /sync`: returns at once with anything new (or for an initial
    /// sync), else waits up to `timeout` for something to arrive.
    pub async fn sync(&self, user_id: &str, request: &SyncRequest) -> Result<SyncResult> {
        // Subscribe before reading, so nothing committed meanwhile is missed.
        let mut changes = self.notifier.subscribe();
        let deadline = tokio::time::Instant::now() + request.timeout.min(MAX_TIMEOUT);
        loop {
            let (result, rooms) = self.sync_once(user_id, request).await?;
            if !result.is_empty()
                || request.since.is_none()
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(result);
            }
            // Wait for a change that concerns this user, or the deadline.
            loop {
                let change = tokio::select! {
                    // Answer now, so the shutdown drain need not wait out the timeout.
                    () = self.stopping.cancelled() => return Ok(result),
                    change = tokio::time::timeout_at(deadline, changes.recv()) => match change {
                        Err(_) => return Ok(result),
                        Ok(change) => change,
                    },
                };
                let relevant = match change {
                    Ok(Change::Room { room_id, member }) => {
                        rooms.contains(&room_id) || member.as_deref() == Some(user_id)
                    }
                    Ok(Change::User(user)) => user == user_id,
                    Ok(Change::Typing { room_id, .. }) => rooms.contains(&room_id),
                    Ok(Change::SessionsEnded(_) | Change::Outbox(_)) => false,
                    Ok(Change::Missed) => true,
                    // Missed some changes: look again.
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return Ok(result),
                };
                if relevant {
                    break;
                }
            }
        }
    }

    /// Committed changes from now on (for live connections).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.notifier.subscribe()
    }

    /// The current position of every stream.
    pub async fn current_token(&self) -> Result<SyncToken> {
        let streams = self.store.stream_positions().await?;
        let position = |stream: &str| streams.get(stream).copied().unwrap_or(0);
        Ok(SyncToken {
            events: self.store.events_position().await?,
            account_data: position("account_data"),
            receipts: position("receipts"),
            typing: self.typing.position(),
            to_device: position("to_device"),
            presence: position("presence"),
        })
    }

    /// One pass without waiting: the response for the current positions,
    /// and the rooms the user is in (whose changes concern them).
    pub async fn sync_once(
        &self,
        user_id: &str,
        request: &SyncRequest,
    ) -> Result<(SyncResult, HashSet<String>)> {
        let upto = self.current_token().await?;
        let since = request.since;
        let memberships = self.store.user_memberships(user_id).await?;
        let changed = match since {
            Some(since) => Some(self.store.rooms_changed(since.events, upto.events).await?),
            None => None,
        };
        let account_data = self
            .store
            .account_data_since(user_id, since.map_or(0, |s| s.account_data))
            .await?;
        let mut room_account_data: HashMap<&str, Vec<Value>> = HashMap::new();
        let mut result = SyncResult {
            next_batch: upto.to_string(),
            ..Default::default()
        };
        for row in account_data
            .iter()
            .filter(|row| row.stream_id <= upto.account_data)
        {
            if row.room_id == GLOBAL_ACCOUNT_DATA {
                result.account_data.push(account_data_event(row));
            } else {
                room_account_data
                    .entry(row.room_id.as_str())
                    .or_default()
                    .push(account_data_event(row));
            }
        }

        // Messages up to `since` reached the device: they can go.
        let device = request.device_id.as_str();
        if let Some(since) = since {
            self.store
                .acknowledge_to_device(user_id, device, since.to_device)
                .await?;
        }
        let to_device_since = since.map_or(0, |s| s.to_device);
        for message in self
            .store
            .to_device_messages(user_id, device, to_device_since, upto.to_device)
            .await?
        {
            let content: Value =
                serde_json::from_str(&message.content).unwrap_or_else(|_| json!({}));
            result.to_device.push(
                json!({ "sender": message.sender, "type": message.event_type, "content": content }),
            );
        }

        let presence_since = since.map_or(0, |s| s.presence);
        let presence = if request.counts_and_presence {
            self.store
                .presence_of_contacts(user_id, presence_since, upto.presence)
                .await?
        } else {
            Vec::new()
        };
        for row in presence {
            let content = presence_content(&row);
            result
                .presence
                .push(json!({ "type": "m.presence", "sender": row.user_id, "content": content }));
        }

        let mut rooms = HashSet::new();
        for membership in memberships
            .iter()
            .filter(|m| m.stream_ordering <= upto.events)
        {
            let room = membership.room_id.as_str();
            let new_since_token = since.is_none_or(|s| membership.stream_ordering > s.events);
            match membership.membership.as_str() {
                "join" => {
                    rooms.insert(membership.room_id.clone());
                    let changed_here = changed.as_ref().is_none_or(|c| c.contains(room));
                    let room_data = room_account_data.remove(room).unwrap_or_default();
                    let seen_since = since.filter(|_| !new_since_token);
                    let ephemeral = self.ephemeral(room, user_id, seen_since, upto).await?;
                    if !(new_since_token
                        || changed_here
                        || request.full_state
                        || !room_data.is_empty()
                        || !ephemeral.is_empty())
                    {
                        continue;
                    }
                    let range = TimelineRange {
                        new_to_client: new_since_token,
                        since,
                        upto: upto.events,
                    };
                    let full = new_since_token || request.full_state;
                    let mut update = self
                        .room_update(user_id, room, range, full, &request.filter)
                        .await?;
                    update.account_data = room_data;
                    update.ephemeral = ephemeral;
                    if request.counts_and_presence {
                        let read_up_to = self.store.read_up_to(room, user_id).await?;
                        let read_from = read_up_to.unwrap_or(0).max(membership.stream_ordering);
                        update.unread =
                            self.store.unread_messages(room, user_id, read_from).await?;
                    }
                    result.join.insert(room.to_owned(), update);
                }
                "invite" if new_since_token => {
                    result
                        .invite
                        .insert(room.to_owned(), self.invite_state(room, user_id).await?);
                }
                "leave" | "ban"
                    if new_since_token && (since.is_some() || request.filter.include_leave) =>
                {
                    // Up to the leave; a client that saw the room before sees only what followed.
                    let range = TimelineRange {
                        new_to_client: since.is_none(),
                        since,
                        upto: membership.stream_ordering,
                    };
                    let update = self
                        .room_update(user_id, room, range, false, &request.filter)
                        .await?;
                    result.leave.insert(room.to_owned(), update);
                }
                _ => {}
            }
        }
        Ok((result, rooms))
    }

    /// A room's timeline in `range`, with the state before it.
    async fn room_update(
        &self,
        user_id: &str,
        room: &str,
        range: TimelineRange,
        full_state: bool,
        filter: &SyncFilter,
    ) -> Result<RoomUpdate> {
        let limit = filter
            .timeline_limit
            .unwrap_or(DEFAULT_TIMELINE_LIMIT)
            .clamp(1, 1000);
        let TimelineRange {
            new_to_client,
            since,
            upto,
        } = range;
        let after = if new_to_client {
            0
        } else {
            since.map_or(0, |s| s.events)
        };
        let visibility = Visibility::load(&self.store, room, user_id).await?;
        let limit_rows = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let mut events: Vec<StoredEvent> = self
            .store
            .latest_room_events(room, after, upto, limit_rows)
            .await?
            .into_iter()
            .filter(|e| visibility.can_see(e))
            .collect();
        let limited = events.len() > limit;
        events.truncate(limit);
        events.reverse();
        let timeline_events: Vec<StoredEvent> = events
            .into_iter()
            .filter(|e| filter.timeline.matches(e))
            .collect();
        let start = timeline_events
            .first()
            .map_or(upto + 1, |e| e.stream_ordering);

        let state_events = if full_state {
            match timeline_events.first() {
                Some(first) => self.store.state_before_event(&first.event_id).await?,
                None => self.store.state_at(room, start - 1).await?,
            }
        } else if limited {
            latest_per_key(self.store.state_events_between(room, after, start).await?)
        } else {
            Vec::new()
        };
        let senders: HashSet<&str> = timeline_events.iter().map(|e| e.sender.as_str()).collect();
        let state = state_events
            .iter()
            .filter(|e| {
                !filter.lazy_load_members
                    || e.event_type != "m.room.member"
                    || e.state_key
                        .as_deref()
                        .is_some_and(|k| k == user_id || senders.contains(k))
            })
            .map(client_event)
            .collect::<Result<_>>()?;
        Ok(RoomUpdate {
            timeline: Timeline {
                events: timeline_events
                    .iter()
                    .map(client_event)
                    .collect::<Result<_>>()?,
                positions: timeline_events.iter().map(|e| e.stream_ordering).collect(),
                limited,
                prev_batch: format!("t{}", start - 1),
            },
            state,
            ..Default::default()
        })
    }

    /// Typing and receipt changes of a room after `since` (all of them when `None`).
    async fn ephemeral(
        &self,
        room: &str,
        user_id: &str,
        since: Option<SyncToken>,
        upto: SyncToken,
    ) -> Result<Vec<Value>> {
        let mut events = Vec::new();
        if let Some(users) =
            self.typing
                .update_since(room, since.map_or(0, |s| s.typing), upto.typing)
        {
            events.push(json!({ "type": "m.typing", "content": { "user_ids": users } }));
        }
        let receipts = self
            .store
            .receipts_since(room, since.map_or(0, |s| s.receipts), upto.receipts)
            .await?;
        let mut content = serde_json::Map::new();
        // Private receipts are for their owner only.
        let visible = receipts
            .iter()
            .filter(|r| r.receipt_type != "m.read.private" || r.user_id == user_id);
        for receipt in visible {
            let mut entry = json!({ "ts": receipt.ts });
            if !receipt.thread_id.is_empty() {
                entry["thread_id"] = receipt.thread_id.clone().into();
            }
            let by_type = content
                .entry(receipt.event_id.clone())
                .or_insert_with(|| json!({}));
            by_type[&receipt.receipt_type][&receipt.user_id] = entry;
        }
        if !content.is_empty() {
            events.push(json!({ "type": "m.receipt", "content": content }));
        }
        Ok(events)
    }

    /// The stripped state an invitee sees, with the invite itself.
    async fn invite_state(&self, room: &str, user_id: &str) -> Result<Vec<Value>> {
        crate::rooms::invite_state(&self.store, room, Some(user_id)).await
    }
}

/// The last event of each (type, state key), in stream order.
fn latest_per_key(events: Vec<StoredEvent>) -> Vec<StoredEvent> {
    let mut seen: HashSet<(String, Option<String>)> = HashSet::new();
    let mut kept: Vec<StoredEvent> = Vec::new();
    for event in events.into_iter().rev() {
        if seen.insert((event.event_type.clone(), event.state_key.clone())) {
            kept.push(event);
        }
    }
    kept.reverse();
    kept
}
