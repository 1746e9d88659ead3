//! The rooms service: every room change is a signed PDU, built, authorised
//! and persisted through one path ([`Rooms::append`]), so events from
//! federation can later take the same road.

mod client_event;
mod create;
mod federated;
pub mod membership;
pub mod power;
mod read;
mod receive;
pub mod state;
pub mod visibility;
mod writer;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex},
};

use federation::{
    auth::{EventAuthorizer, StateMap},
    keys::SigningKey,
    pdu::{EventTemplate, Pdu, Placement, build_event, room_id_from_create, rules_for},
};
use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedServerName, RoomId,
    RoomVersionId, ServerName, UserId, events::StateEventType,
    room_version_rules::RoomVersionRules,
};
use serde_json::{Value, json};

pub use client_event::client_event;
pub use create::{CreateRoom, Preset};
pub use federated::{JoinedRoom, StateAndAuth, invite_state};
pub use read::{Direction, EventFilter, MessagesPage, Pagination};
pub use receive::{Reception, Relay};
use state::{Snapshot, States};

use crate::{
    auth::Authed,
    error::{Error, Result},
    storage::{Appended, NewEvent, RoomAfter, Store, StoredEvent},
    sync::Notifier,
};

/// A room change a client asks for, before the server places and signs it.
#[derive(Debug, Clone)]
pub struct Draft {
    pub kind: String,
    pub state_key: Option<String>,
    pub content: Value,
    pub redacts: Option<OwnedEventId>,
}

impl Draft {
    /// A state event.
    pub fn state(kind: &str, state_key: &str, content: Value) -> Draft {
        Draft {
            kind: kind.to_owned(),
            state_key: Some(state_key.to_owned()),
            content,
            redacts: None,
        }
    }

    /// A message-like event.
    pub fn message(kind: &str, content: Value) -> Draft {
        Draft {
            kind: kind.to_owned(),
            state_key: None,
            content,
            redacts: None,
        }
    }
}

/// A room being extended in memory: its rules, its current state (whole,
/// and the parsed events the auth rules need), and where the next event goes.
struct RoomCursor {
    room_id: Option<OwnedRoomId>,
    version: RoomVersionId,
    rules: RoomVersionRules,
    /// The auth-relevant state: create, power levels, join rules, and the
    /// membership of the users in `members`.
    state: StateMap,
    members: HashSet<String>,
    /// The room's forward extremities, shallowest first.
    head: Vec<OwnedEventId>,
    /// The state group after each forward extremity.
    head_groups: HashMap<OwnedEventId, String>,
    /// The greatest depth in the room.
    depth: u64,
    /// The room's last stored event (empty before the first).
    last_event: String,
    /// The room's current state.
    current: Arc<Snapshot>,
    /// The users joined to the room now: their servers receive its events.
    joined: HashSet<String>,
}

impl RoomCursor {
    /// A room of `version`, before its first event here.
    fn new(room_id: Option<OwnedRoomId>, version: RoomVersionId) -> Result<Self> {
        Ok(Self {
            room_id,
            rules: rules_for(&version)?,
            version,
            state: StateMap::new(),
            members: HashSet::new(),
            head: Vec::new(),
            head_groups: HashMap::new(),
            depth: 0,
            last_event: String::new(),
            current: Arc::default(),
            joined: HashSet::new(),
        })
    }

    /// The other servers with users in the room.
    fn other_servers(&self, own: &ServerName) -> BTreeSet<String> {
        self.joined
            .iter()
            .filter_map(|user| user.split_once(':').map(|(_, server)| server))
            .filter(|server| *server != own.as_str())
            .map(str::to_owned)
            .collect()
    }

    /// Records a membership event now in the room's current state.
    fn apply_membership(&mut self, pdu: &Pdu) {
        if pdu.kind.to_string() != "m.room.member" {
            return;
        }
        let Some(user) = &pdu.state_key else { return };
        let joined = pdu
            .content_value()
            .is_ok_and(|content| content["membership"] == "join");
        if joined {
            self.joined.insert(user.clone());
        } else {
            self.joined.remove(user);
        }
    }
}

/// State types the authorisation rules read; the cursor keeps only these.
fn is_auth_state(kind: &str) -> bool {
    matches!(
        kind,
        "m.room.create"
            | "m.room.power_levels"
            | "m.room.join_rules"
            | "m.room.member"
            | "m.room.third_party_invite"
    )
}

/// Rooms whose cursors stay cached; idle ones beyond this are dropped.
const MAX_CACHED_CURSORS: usize = 10_000;

/// How often an event is rebuilt when it lost a race for the room's head.
const MAX_ATTEMPTS: usize = 3;

/// The most prev_events a new event refers to.
const MAX_PREV_EVENTS: usize = 10;

/// The largest event this server accepts from a client (the spec's PDU limit).
const MAX_EVENT_BYTES: usize = 65_536;

/// Builds, authorises and stores room events.
pub struct Rooms {
    store: Store,
    key: Arc<SigningKey>,
    server_name: OwnedServerName,
    authorizer: Box<dyn EventAuthorizer>,
    default_version: RoomVersionId,
    writer: writer::EventWriter,
    notifier: Arc<Notifier>,
    states: States,
    // Events of one room are built one at a time on the room's cursor (its
    // head and auth state, cached between events), so each local event's
    // only prev_event is the head. A std mutex: the map lookup never awaits.
    cursors: Mutex<HashMap<OwnedRoomId, CursorSlot>>,
}

type CursorSlot = Arc<tokio::sync::Mutex<Option<RoomCursor>>>;

impl Rooms {
    /// The service over `store`, signing as `server_name` with `key`.
    pub fn new(
        store: Store,
        key: Arc<SigningKey>,
        server_name: OwnedServerName,
        authorizer: Box<dyn EventAuthorizer>,
        notifier: Arc<Notifier>,
    ) -> Self {
        Self {
            writer: writer::EventWriter::spawn(store.clone(), notifier.clone()),
            notifier,
            states: States::new(store.clone()),
            store,
            key,
            server_name,
            authorizer,
            default_version: RoomVersionId::V12,
            cursors: Mutex::new(HashMap::new()),
        }
    }

    fn cursor_slot(&self, room_id: &RoomId) -> CursorSlot {
        let mut cursors = self.cursors.lock().unwrap_or_else(|e| e.into_inner());
        if cursors.len() >= MAX_CACHED_CURSORS && !cursors.contains_key(room_id) {
            // Drop the cursors nobody holds; they are reloaded when needed.
            cursors.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        cursors.entry(room_id.to_owned()).or_default().clone()
    }

    /// Forgets a room's cached cursor; the next event reloads it from storage.
    async fn reset_cursor(&self, room_id: &RoomId) {
        *self.cursor_slot(room_id).lock().await = None;
    }

    /// Deletes everything stored about the room and forgets its cursor.
    pub async fn purge(&self, room_id: &RoomId) -> Result<()> {
        let slot = self.cursor_slot(room_id);
        let mut cursor = slot.lock().await;
        self.store.purge_room(room_id.as_str()).await?;
        *cursor = None;
        Ok(())
    }

    /// The events of the cursor's state that authorise `draft` by `sender`.
    fn auth_events_on(
        &self,
        cursor: &RoomCursor,
        sender: &UserId,
        draft: &Draft,
        content: &serde_json::value::RawValue,
    ) -> Result<Vec<OwnedEventId>> {
        let auth_types = self.authorizer.auth_types(
            &cursor.rules.authorization,
            &draft.kind,
            sender,
            draft.state_key.as_deref(),
            content,
        )?;
        Ok(auth_types
            .iter()
            .filter_map(|key| cursor.state.get(key))
            .map(|pdu| pdu.event_id.clone())
            .collect())
    }

    /// Builds the next event of `cursor`, checks it against the rules and
    /// places it: the cursor moves past it.
    fn next_event(
        &self,
        cursor: &mut RoomCursor,
        sender: &UserId,
        draft: &Draft,
    ) -> Result<(Pdu, NewEvent)> {
        let content_text =
            serde_json::to_string(&draft.content).map_err(|e| Error::BadJson(e.to_string()))?;
        if content_text.len() > MAX_EVENT_BYTES {
            return Err(Error::TooLarge);
        }
        let content_raw = serde_json::value::RawValue::from_string(content_text)
            .map_err(|e| Error::BadJson(e.to_string()))?;
        let auth_events = self.auth_events_on(cursor, sender, draft, &content_raw)?;
        let pdu = build_event(
            EventTemplate {
                room_id: cursor.room_id.as_deref(),
                sender,
                kind: &draft.kind,
                state_key: draft.state_key.as_deref(),
                content: draft.content.clone(),
                redacts: draft.redacts.as_deref(),
            },
            Placement {
                // The deepest forks, when many are open.
                prev_events: &cursor.head[cursor.head.len().saturating_sub(MAX_PREV_EVENTS)..],
                auth_events: &auth_events,
                depth: cursor.depth + 1,
                origin_server_ts: MilliSecondsSinceUnixEpoch::now(),
            },
            self.server_name.as_str(),
            &self.key,
            &cursor.rules,
        )?;
        if pdu.json.len() > MAX_EVENT_BYTES {
            return Err(Error::TooLarge);
        }
        self.authorizer
            .authorize(&cursor.rules.authorization, &pdu, &cursor.state)?;
        let room_id = match &cursor.room_id {
            Some(room_id) => room_id.clone(),
            None => room_id_from_create(&pdu.event_id)?,
        };
        cursor.room_id = Some(room_id.clone());
        let event = self.place(cursor, &room_id, &pdu)?;
        Ok((pdu, event))
    }

    /// The row of an authorised event that extends every fork of the
    /// cursor's room (or starts it), and the cursor moved past it.
    fn place(&self, cursor: &mut RoomCursor, room_id: &RoomId, pdu: &Pdu) -> Result<NewEvent> {
        let mut event = new_event(pdu, room_id)?;
        // The servers in the room before and after it: a kicked user's server hears of it.
        let mut destinations = cursor.other_servers(&self.server_name);
        event.prev_event = std::mem::replace(&mut cursor.last_event, event.event_id.clone());
        event.state_before = cursor.current.id.clone();
        if let Some(state_key) = &pdu.state_key {
            let key = (pdu.kind.to_string(), state_key.clone());
            let changes = [(key.clone(), Some(event.event_id.clone()))];
            let (after, group) = self.states.derive(
                room_id.as_str(),
                event.event_id.clone(),
                &cursor.current,
                &changes,
            );
            cursor.current = after;
            event.new_groups.push(group);
            event
                .room_after
                .changes
                .push((key.0, key.1, Some(event.event_id.clone())));
            cursor.apply_membership(pdu);
            if is_auth_state(&event.event_type) {
                if event.event_type == "m.room.member" {
                    cursor.members.insert(state_key.clone());
                }
                let typed = (
                    StateEventType::from(event.event_type.as_str()),
                    state_key.clone(),
                );
                cursor.state.insert(typed, pdu.clone());
            }
        }
        cursor.depth = cursor.depth.max(pdu.depth);
        event.state_after = cursor.current.id.clone();
        // Its prev_events were the deepest forks; any others stay open.
        for prev in &pdu.prev_events {
            cursor.head.retain(|id| id != prev);
            cursor.head_groups.remove(prev);
        }
        cursor.head.push(pdu.event_id.clone());
        cursor
            .head_groups
            .insert(pdu.event_id.clone(), event.state_after.clone());
        event.room_after.extremities = cursor.head.iter().map(ToString::to_string).collect();
        event.room_after.state_group = cursor.current.id.clone();
        event.room_after.depth = i64::try_from(cursor.depth).unwrap_or(i64::MAX);
        destinations.extend(cursor.other_servers(&self.server_name));
        event.destinations = destinations.into_iter().collect();
        Ok(event)
    }

    /// Loads what building the next event of an existing room needs.
    async fn load_cursor(&self, room_id: &RoomId) -> Result<RoomCursor> {
        let room = self
            .store
            .room(room_id.as_str())
            .await?
            .ok_or_else(|| Error::NotFound("unknown room".into()))?;
        let version = RoomVersionId::try_from(room.room_version.as_str())
            .map_err(|e| Error::Internal(format!("stored room version: {e}")))?;
        let mut cursor = RoomCursor::new(Some(room_id.to_owned()), version)?;
        for placed in self.store.extremities(room_id.as_str()).await? {
            let event_id = parse_event_id(&placed.event_id)?;
            cursor
                .head_groups
                .insert(event_id.clone(), placed.state_after.unwrap_or_default());
            cursor.head.push(event_id);
            cursor.depth = cursor
                .depth
                .max(u64::try_from(placed.depth).unwrap_or_default());
        }
        cursor.depth = cursor
            .depth
            .max(u64::try_from(room.head_depth).unwrap_or_default());
        cursor.last_event = room.head_event_id;
        cursor.joined = self
            .store
            .joined_users(room_id.as_str())
            .await?
            .into_iter()
            .collect();
        cursor.current = self
            .states
            .load(room.state_group.as_deref().unwrap_or_default())
            .await?;
        let room_wide: Vec<(String, String)> = cursor
            .current
            .state
            .keys()
            .filter(|(kind, _)| kind != "m.room.member" && is_auth_state(kind))
            .cloned()
            .collect();
        self.load_auth_events(&mut cursor, &room_wide).await?;
        Ok(cursor)
    }

    /// Adds the memberships of `users` to the cursor's auth state.
    async fn load_members(&self, cursor: &mut RoomCursor, users: &[&str]) -> Result<()> {
        let keys: Vec<(String, String)> = users
            .iter()
            .filter(|user| !cursor.members.contains(**user))
            .map(|user| ("m.room.member".to_owned(), (*user).to_owned()))
            .collect();
        self.load_auth_events(cursor, &keys).await
    }

    /// Sets the cursor's auth state for `keys` to the events its current
    /// state holds there (memberships among them are then known).
    async fn load_auth_events(
        &self,
        cursor: &mut RoomCursor,
        keys: &[(String, String)],
    ) -> Result<()> {
        let ids = keys
            .iter()
            .filter_map(|key| cursor.current.state.get(key))
            .map(|id| parse_event_id(id))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&EventId> = ids.iter().map(|id| &**id).collect();
        let events = self.states.events(&refs).await?;
        for key in keys {
            let typed = (StateEventType::from(key.0.as_str()), key.1.clone());
            let event = cursor
                .current
                .state
                .get(key)
                .and_then(|id| EventId::parse(id).ok())
                .and_then(|id| events.get(&id));
            match event {
                Some(pdu) => cursor.state.insert(typed, (**pdu).clone()),
                None => cursor.state.remove(&typed),
            };
            if key.0 == "m.room.member" {
                cursor.members.insert(key.1.clone());
            }
        }
        Ok(())
    }

    /// The one path for a local event into an existing room: build, sign and
    /// authorise it on the room's cursor, then hand it to the group-commit
    /// writer and answer once it is durable.
    async fn append(
        &self,
        room_id: &RoomId,
        sender: &Authed,
        draft: Draft,
        txn_id: Option<&str>,
    ) -> Result<OwnedEventId> {
        for _ in 0..MAX_ATTEMPTS {
            let (event_id, committed) = {
                let slot = self.cursor_slot(room_id);
                let mut guard = slot.lock().await;
                let user_id = sender.user_id.as_str();
                let cursor = match guard.as_mut() {
                    Some(cursor) => cursor,
                    None => guard.insert(self.load_cursor(room_id).await?),
                };
                let target = draft
                    .state_key
                    .as_deref()
                    .filter(|_| draft.kind == "m.room.member")
                    .unwrap_or(user_id);
                self.load_members(cursor, &[user_id, target]).await?;
                let redaction = match &draft.redacts {
                    Some(target) => {
                        self.check_redaction(room_id, sender, target, cursor)
                            .await?
                    }
                    None => None,
                };
                let (pdu, mut event) = self.next_event(cursor, &sender.user_id, &draft)?;
                event.txn = txn_id.map(|t| {
                    (
                        user_id.to_owned(),
                        sender.device_id.to_string(),
                        t.to_owned(),
                    )
                });
                if let Some((target, stored)) = redaction {
                    event.redaction = Some((
                        target.to_string(),
                        self.redacted_json(&pdu, room_id, &stored, cursor)?,
                    ));
                }
                (pdu.event_id, self.writer.submit(event).await?)
            };
            match committed.await {
                Ok(Ok(Appended::Stored(_))) => return Ok(event_id),
                // A retried request answers with the event it made before (the
                // cursor moved past the event just dropped, so it is reloaded).
                Ok(Ok(Appended::Duplicate(earlier))) => {
                    self.reset_cursor(room_id).await;
                    return parse_event_id(&earlier);
                }
                // Built on an event that failed to commit: rebuild on the stored head.
                Ok(Ok(Appended::Stale)) => self.reset_cursor(room_id).await,
                Ok(Err(e)) => {
                    self.reset_cursor(room_id).await;
                    return Err(e);
                }
                Err(_) => {
                    self.reset_cursor(room_id).await;
                    return Err(Error::Internal("the event writer has stopped".into()));
                }
            }
        }
        Err(Error::Internal("the room is too busy; try again".into()))
    }

    /// The stored form of `stored` once `redaction` takes effect.
    fn redacted_json(
        &self,
        redaction: &Pdu,
        room_id: &RoomId,
        stored: &StoredEvent,
        cursor: &RoomCursor,
    ) -> Result<String> {
        // Clients read `unsigned.redacted_because` as a client-format event.
        let pdu_fields = match serde_json::to_value(&redaction.json).map_err(internal)? {
            Value::Object(fields) => fields,
            _ => return Err(Error::Internal("a PDU is an object".into())),
        };
        let because =
            client_event::client_fields(&pdu_fields, redaction.event_id.as_str(), room_id.as_str());
        let because = serde_json::from_value(Value::Object(because)).map_err(internal)?;
        let redacted =
            federation::pdu::redacted(&parse_stored(stored)?.json, &cursor.rules, Some(because))?;
        serde_json::to_string(&redacted).map_err(internal)
    }

    /// Redactions need the `redact` power level unless users redact their own
    /// events (checked by the server, not the auth rules, since v3). Returns
    /// the event to redact, when it exists in this room.
    async fn check_redaction(
        &self,
        room_id: &RoomId,
        sender: &Authed,
        target: &EventId,
        cursor: &RoomCursor,
    ) -> Result<Option<(OwnedEventId, StoredEvent)>> {
        let stored = self
            .store
            .event(target.as_str())
            .await?
            .filter(|e| e.room_id == room_id.as_str());
        let Some(stored) = stored else {
            return Ok(None);
        };
        if stored.sender != sender.user_id.as_str() {
            let create = cursor
                .state
                .get(&(StateEventType::RoomCreate, String::new()));
            let create = create
                .map(|pdu| serde_json::to_value(&pdu.json))
                .transpose()
                .map_err(internal)?;
            let levels = cursor
                .state
                .get(&(StateEventType::RoomPowerLevels, String::new()));
            let levels = levels.map(Pdu::content_value).transpose()?;
            let room = power::RoomAuth {
                privileged_creators: cursor
                    .rules
                    .authorization
                    .explicitly_privilege_room_creators,
                creator: create
                    .as_ref()
                    .and_then(|c| c["sender"].as_str())
                    .unwrap_or_default(),
                create: create.as_ref(),
                power_levels: levels.as_ref(),
            };
            if !power::may_redact(&room, sender.user_id.as_str()) {
                return Err(Error::Forbidden(
                    "you may only redact your own events".into(),
                ));
            }
        }
        Ok(Some((target.to_owned(), stored)))
    }

    /// `PUT /rooms/{roomId}/send/{eventType}/{txnId}`.
    pub async fn send_message(
        &self,
        room_id: &RoomId,
        sender: &Authed,
        kind: &str,
        content: Value,
        txn_id: &str,
    ) -> Result<OwnedEventId> {
        if is_state_only(kind) {
            return Err(Error::BadJson(format!(
                "{kind} is a state event; use the state endpoint"
            )));
        }
        self.append(room_id, sender, Draft::message(kind, content), Some(txn_id))
            .await
    }

    /// `PUT /rooms/{roomId}/state/{eventType}/{stateKey}`. Membership may be
    /// set here too (as other homeservers allow); the auth rules judge it.
    pub async fn send_state(
        &self,
        room_id: &RoomId,
        sender: &Authed,
        kind: &str,
        state_key: &str,
        content: Value,
    ) -> Result<OwnedEventId> {
        if kind == "m.room.create" {
            return Err(Error::Forbidden(
                "a room has exactly one create event".into(),
            ));
        }
        self.append(
            room_id,
            sender,
            Draft::state(kind, state_key, content),
            None,
        )
        .await
    }

    /// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`.
    pub async fn redact(
        &self,
        room_id: &RoomId,
        sender: &Authed,
        target: &EventId,
        reason: Option<String>,
        txn_id: &str,
    ) -> Result<OwnedEventId> {
        let mut content = json!({});
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        let draft = Draft {
            kind: "m.room.redaction".into(),
            state_key: None,
            content,
            redacts: Some(target.to_owned()),
        };
        self.append(room_id, sender, draft, Some(txn_id)).await
    }
}

/// Event types that only make sense as state.
fn is_state_only(kind: &str) -> bool {
    matches!(
        kind,
        "m.room.create"
            | "m.room.member"
            | "m.room.power_levels"
            | "m.room.join_rules"
            | "m.room.name"
            | "m.room.topic"
            | "m.room.history_visibility"
            | "m.room.canonical_alias"
            | "m.room.avatar"
    )
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

fn parse_event_id(id: &str) -> Result<OwnedEventId> {
    EventId::parse(id).map_err(|e| Error::Internal(format!("stored event id {id}: {e}")))
}

/// Parses a stored event.
fn parse_stored(stored: &StoredEvent) -> Result<Pdu> {
    Ok(Pdu::from_str(
        parse_event_id(&stored.event_id)?,
        &stored.json,
    )?)
}

/// The row that keeps `pdu` as an outlier: known for its state or auth
/// chain, not part of the timeline.
pub fn outlier_row(pdu: &Pdu, room_id: &RoomId) -> Result<NewEvent> {
    let mut event = new_event(pdu, room_id)?;
    event.outlier = true;
    Ok(event)
}

/// The row that keeps `pdu` as older history of the room's timeline.
pub fn history_row(pdu: &Pdu, room_id: &RoomId) -> Result<NewEvent> {
    new_event(pdu, room_id)
}

/// The row that stores `pdu`.
fn new_event(pdu: &Pdu, room_id: &RoomId) -> Result<NewEvent> {
    let membership = if pdu.kind.to_string() == "m.room.member" {
        pdu.content_value()?
            .get("membership")
            .and_then(Value::as_str)
            .map(str::to_owned)
    } else {
        None
    };
    Ok(NewEvent {
        event_id: pdu.event_id.to_string(),
        room_id: room_id.to_string(),
        sender: pdu.sender.to_string(),
        event_type: pdu.kind.to_string(),
        state_key: pdu.state_key.clone(),
        membership,
        depth: i64::try_from(pdu.depth).unwrap_or(i64::MAX),
        origin_server_ts: pdu.origin_server_ts.get().into(),
        json: serde_json::to_string(&pdu.json).map_err(internal)?,
        prev_event: String::new(),
        txn: None,
        redaction: None,
        state_before: String::new(),
        state_after: String::new(),
        new_groups: Vec::new(),
        room_after: RoomAfter::default(),
        outlier: false,
        destinations: Vec::new(),
    })
}
