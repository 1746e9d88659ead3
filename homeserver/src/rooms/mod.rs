//! The rooms service: every room change is a signed PDU, built, authorised
//! and persisted through one path ([`Rooms::append`]), so events from
//! federation can later take the same road.

mod client_event;
mod create;
pub mod membership;
pub mod power;
mod read;
pub mod visibility;
mod writer;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use federation::{
    auth::{EventAuthorizer, StateMap},
    keys::SigningKey,
    pdu::{EventTemplate, Pdu, Placement, build_event, room_id_from_create, rules_for},
};
use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedServerName, RoomId,
    RoomVersionId, UserId, events::StateEventType, room_version_rules::RoomVersionRules,
};
use serde_json::{Value, json};

pub use client_event::client_event;
pub use create::{CreateRoom, Preset};
pub use read::{Direction, EventFilter, MessagesPage, Pagination};

use crate::{
    auth::Authed,
    error::{Error, Result},
    storage::{Appended, NewEvent, Store, StoredEvent},
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

/// A room being extended in memory: its rules, the state the auth rules
/// need, and where the next event goes.
struct RoomCursor {
    room_id: Option<OwnedRoomId>,
    rules: RoomVersionRules,
    /// The auth-relevant state: create, power levels, join rules, and the
    /// membership of the users in `members`.
    state: StateMap,
    members: HashSet<String>,
    head: Vec<OwnedEventId>,
    depth: u64,
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

    /// Builds the next event of `cursor` and checks it against the rules.
    fn next_event(&self, cursor: &mut RoomCursor, sender: &UserId, draft: &Draft) -> Result<Pdu> {
        let content_text =
            serde_json::to_string(&draft.content).map_err(|e| Error::BadJson(e.to_string()))?;
        if content_text.len() > MAX_EVENT_BYTES {
            return Err(Error::TooLarge);
        }
        let content_raw = serde_json::value::RawValue::from_string(content_text)
            .map_err(|e| Error::BadJson(e.to_string()))?;
        let auth_types = self.authorizer.auth_types(
            &cursor.rules.authorization,
            &draft.kind,
            sender,
            draft.state_key.as_deref(),
            &content_raw,
        )?;
        let auth_events: Vec<OwnedEventId> = auth_types
            .iter()
            .filter_map(|key| cursor.state.get(key))
            .map(|pdu| pdu.event_id.clone())
            .collect();
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
                prev_events: &cursor.head,
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
        if cursor.room_id.is_none() {
            cursor.room_id = Some(room_id_from_create(&pdu.event_id)?);
        }
        if let Some(state_key) = pdu
            .state_key
            .as_ref()
            .filter(|_| is_auth_state(&draft.kind))
        {
            if draft.kind == "m.room.member" {
                cursor.members.insert(state_key.clone());
            }
            let key = (StateEventType::from(draft.kind.as_str()), state_key.clone());
            cursor.state.insert(key, pdu.clone());
        }
        cursor.head = vec![pdu.event_id.clone()];
        cursor.depth += 1;
        Ok(pdu)
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
        let mut cursor = RoomCursor {
            room_id: Some(room_id.to_owned()),
            rules: rules_for(&version)?,
            state: StateMap::new(),
            members: HashSet::new(),
            head: vec![parse_event_id(&room.head_event_id)?],
            depth: u64::try_from(room.head_depth).unwrap_or_default(),
        };
        for stored in self.store.auth_state(room_id.as_str()).await? {
            let key = (
                StateEventType::from(stored.event_type.as_str()),
                stored.state_key.clone().unwrap_or_default(),
            );
            cursor.state.insert(key, parse_stored(&stored)?);
        }
        Ok(cursor)
    }

    /// Adds the memberships of `users` to the cursor's state. Users it has
    /// not seen have no event pending, so storage is current for them.
    async fn load_members(
        &self,
        room_id: &RoomId,
        cursor: &mut RoomCursor,
        users: &[&str],
    ) -> Result<()> {
        for user in users {
            if cursor.members.contains(*user) {
                continue;
            }
            if let Some(stored) = self
                .store
                .current_state_event(room_id.as_str(), "m.room.member", user)
                .await?
            {
                cursor.state.insert(
                    (StateEventType::RoomMember, (*user).to_owned()),
                    parse_stored(&stored)?,
                );
            }
            cursor.members.insert((*user).to_owned());
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
                self.load_members(room_id, cursor, &[user_id, target])
                    .await?;
                let redaction = match &draft.redacts {
                    Some(target) => {
                        self.check_redaction(room_id, sender, target, cursor)
                            .await?
                    }
                    None => None,
                };
                let prev_event = cursor
                    .head
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let pdu = self.next_event(cursor, &sender.user_id, &draft)?;
                let mut event = new_event(&pdu, room_id)?;
                event.prev_event = prev_event;
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
    })
}
