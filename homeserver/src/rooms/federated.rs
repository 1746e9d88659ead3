//! What rooms spanning servers need of the rooms service: membership
//! templates for other servers' users (`make_join`, `make_leave`), events
//! built here but completed elsewhere (invites), the state and auth chain
//! at an event, and entering a room another server holds.

use std::{collections::HashSet, sync::Arc};

use federation::{
    pdu::{EventTemplate, Pdu, Placement, event_json},
    state::auth_chain,
};
use ruma::{
    CanonicalJsonObject, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, RoomVersionId,
    UserId,
};
use serde_json::Value;

use super::{
    Draft, RoomCursor, Rooms, client_event, new_event, outlier_row, parse_event_id, state::Snapshot,
};
use crate::{
    error::{Error, Result},
    storage::{NewRoom, Store, StoredEvent},
};

/// State types shown (stripped) to invitees.
const INVITE_STATE_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
];

fn stripped(event: &StoredEvent) -> Result<Value> {
    let full = client_event(event)?;
    Ok(serde_json::json!({
        "type": full["type"],
        "state_key": full["state_key"],
        "content": full["content"],
        "sender": full["sender"],
    }))
}

/// The stripped state of a room an invitee sees (with their own membership
/// when `user_id` is given): what another server sent with its invite, or
/// the room's current state here.
pub async fn invite_state(
    store: &Store,
    room_id: &str,
    user_id: Option<&str>,
) -> Result<Vec<Value>> {
    let current = store.current_state(room_id, None).await?;
    let own = |e: &&StoredEvent| {
        e.event_type == "m.room.member" && user_id.is_some() && e.state_key.as_deref() == user_id
    };
    if let Some(user) = user_id
        && let Some(text) = store.remote_invite_state(room_id, user).await?
    {
        let mut shown: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
        for event in current.iter().filter(own) {
            shown.push(stripped(event)?);
        }
        return Ok(shown);
    }
    current
        .iter()
        .filter(|e| INVITE_STATE_TYPES.contains(&e.event_type.as_str()) || own(e))
        .map(stripped)
        .collect()
}

/// The state of a room at an event and the auth chain behind it.
pub struct StateAndAuth {
    pub state: Vec<Arc<Pdu>>,
    pub auth_chain: Vec<Arc<Pdu>>,
}

/// What a server joining a room sent back (`send_join`), checked.
pub struct JoinedRoom {
    pub version: RoomVersionId,
    pub join: Pdu,
    pub state: Vec<Pdu>,
    pub auth_chain: Vec<Pdu>,
}

/// The name of the state group before `event_id`, when that state came
/// from another server whole (a join).
fn before_group_name(event_id: &EventId) -> String {
    format!("<{event_id}")
}

impl Rooms {
    /// An unsigned membership event of `user` (of another server) for the
    /// room's current head, checked against the room's rules as if made:
    /// what `make_join` and `make_leave` hand out.
    pub async fn membership_template(
        &self,
        room_id: &RoomId,
        user: &UserId,
        membership: &str,
        content: Value,
    ) -> Result<(RoomVersionId, CanonicalJsonObject)> {
        let slot = self.cursor_slot(room_id);
        let mut guard = slot.lock().await;
        let cursor = match guard.as_mut() {
            Some(cursor) => cursor,
            None => guard.insert(self.load_cursor(room_id).await?),
        };
        self.load_members(cursor, &[user.as_str()]).await?;
        let mut content = content;
        content["membership"] = membership.into();
        let draft = Draft::state("m.room.member", user.as_str(), content);
        let json = self.template_on(cursor, user, &draft)?;
        // Check it as if it were signed: the rules do not read signatures.
        let event_id = federation::pdu::event_id_of(&json, &cursor.rules)?;
        let probe = Pdu::from_json(event_id, json.clone())?;
        self.authorizer
            .authorize(&cursor.rules.authorization, &probe, &cursor.state)?;
        Ok((cursor.version.clone(), json))
    }

    /// The unsigned JSON of the next event of `cursor` (it does not move).
    fn template_on(
        &self,
        cursor: &RoomCursor,
        sender: &UserId,
        draft: &Draft,
    ) -> Result<CanonicalJsonObject> {
        let content_raw = serde_json::value::to_raw_value(&draft.content)
            .map_err(|e| Error::BadJson(e.to_string()))?;
        let auth_events = self.auth_events_on(cursor, sender, draft, &content_raw)?;
        Ok(event_json(
            EventTemplate {
                room_id: cursor.room_id.as_deref(),
                sender,
                kind: &draft.kind,
                state_key: draft.state_key.as_deref(),
                content: draft.content.clone(),
                redacts: None,
            },
            Placement {
                prev_events: &cursor.head
                    [cursor.head.len().saturating_sub(super::MAX_PREV_EVENTS)..],
                auth_events: &auth_events,
                depth: cursor.depth + 1,
                origin_server_ts: MilliSecondsSinceUnixEpoch::now(),
            },
            &cursor.rules,
        )?)
    }

    /// A signed event of this server's user for the room, checked against
    /// the current state but not placed: another server completes it first
    /// (an invite its user must co-sign). Returns it with the room's version.
    pub async fn event_to_complete(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        draft: Draft,
    ) -> Result<(RoomVersionId, Pdu)> {
        let slot = self.cursor_slot(room_id);
        let mut guard = slot.lock().await;
        let cursor = match guard.as_mut() {
            Some(cursor) => cursor,
            None => guard.insert(self.load_cursor(room_id).await?),
        };
        let target = draft.state_key.clone().unwrap_or_default();
        self.load_members(cursor, &[sender.as_str(), target.as_str()])
            .await?;
        let json = self.template_on(cursor, sender, &draft)?;
        let pdu =
            federation::pdu::sign_event(json, self.server_name.as_str(), &self.key, &cursor.rules)?;
        self.authorizer
            .authorize(&cursor.rules.authorization, &pdu, &cursor.state)?;
        Ok((cursor.version.clone(), pdu))
    }

    /// The state before `event_id` (a stored event of the room) and the auth
    /// chain of that state and of the event.
    pub async fn state_and_auth_before(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<StateAndAuth> {
        let stored = self
            .store
            .event(event_id.as_str())
            .await?
            .filter(|e| e.room_id == room_id.as_str())
            .ok_or_else(|| Error::NotFound("no such event in this room".into()))?;
        let group = self
            .store
            .state_before(event_id.as_str())
            .await?
            .ok_or_else(|| Error::NotFound("the state at this event is not known here".into()))?;
        let snapshot = self.states.load(&group).await?;
        let event = Pdu::from_str(parse_event_id(&stored.event_id)?, &stored.json)?;
        self.state_and_auth(&snapshot, &event.auth_events).await
    }

    /// A state group (for other servers' history requests).
    pub async fn state_snapshot(&self, group: &str) -> Result<Arc<Snapshot>> {
        self.states.load(group).await
    }

    /// The auth chain of a stored event of the room.
    pub async fn auth_chain_of(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Vec<Arc<Pdu>>> {
        let events = self.states.with_auth_chains(vec![event_id]).await?;
        match events.get(event_id) {
            Some(event) if event.room_id.as_deref().is_none_or(|r| r == room_id) => {}
            _ => return Err(Error::NotFound("no such event in this room".into())),
        }
        let chain = auth_chain([event_id], &events);
        Ok(chain
            .iter()
            .filter_map(|id| events.get(id).cloned())
            .collect())
    }

    /// The events of `snapshot` and the auth chain of them and of `also`.
    async fn state_and_auth(
        &self,
        snapshot: &Snapshot,
        also: &[OwnedEventId],
    ) -> Result<StateAndAuth> {
        let ids = snapshot
            .state
            .values()
            .map(|id| parse_event_id(id))
            .collect::<Result<Vec<_>>>()?;
        let mut roots: Vec<&EventId> = ids.iter().map(|id| &**id).collect();
        roots.extend(also.iter().map(|id| &**id));
        let events = self.states.with_auth_chains(roots.clone()).await?;
        let state_ids: HashSet<&EventId> = ids.iter().map(|id| &**id).collect();
        let chain = auth_chain(roots, &events);
        let state = ids
            .iter()
            .filter_map(|id| events.get(id).cloned())
            .collect();
        let auth_chain = chain
            .iter()
            .filter(|id| !state_ids.contains(&***id))
            .filter_map(|id| events.get(id).cloned())
            .collect();
        Ok(StateAndAuth { state, auth_chain })
    }

    /// Stores a room this server enters through another (a join): its
    /// state and auth chain as outliers, then the join as the first event
    /// of its timeline here.
    pub async fn enter_remote_room(&self, room_id: &RoomId, joined: JoinedRoom) -> Result<()> {
        let create = joined
            .state
            .iter()
            .find(|pdu| pdu.kind.to_string() == "m.room.create")
            .ok_or_else(|| Error::BadGateway("the room's state has no create event".into()))?;
        let slot = self.cursor_slot(room_id);
        let mut guard = slot.lock().await;
        let before_state = joined
            .state
            .iter()
            .filter_map(|pdu| {
                let key = pdu.state_key.clone()?;
                Some(((pdu.kind.to_string(), key), Some(pdu.event_id.to_string())))
            })
            .collect::<Vec<_>>();
        let (before, before_group) = self.states.derive(
            room_id.as_str(),
            before_group_name(&joined.join.event_id),
            &Snapshot::default(),
            &before_state,
        );
        let mut rows = Vec::with_capacity(joined.state.len() + joined.auth_chain.len() + 1);
        let ids: Vec<&str> = joined
            .auth_chain
            .iter()
            .chain(&joined.state)
            .map(|pdu| pdu.event_id.as_str())
            .collect();
        // Some may be here already (the invite that led to this join).
        let known = self.store.placements(&ids).await?;
        let mut seen: HashSet<OwnedEventId> = known
            .keys()
            .filter_map(|id| EventId::parse(id).ok())
            .collect();
        for pdu in joined.auth_chain.iter().chain(&joined.state) {
            if seen.insert(pdu.event_id.clone()) {
                rows.push(outlier_row(pdu, room_id)?);
            }
        }
        let mut cursor = RoomCursor::new(Some(room_id.to_owned()), joined.version.clone())?;
        cursor.current = before;
        let mut join = self.place(&mut cursor, room_id, &joined.join)?;
        join.new_groups.insert(0, before_group);
        // Every key is new here: the whole state becomes the current state.
        join.room_after.changes = cursor
            .current
            .state
            .iter()
            .map(|((kind, key), id)| (kind.clone(), key.clone(), Some(id.clone())))
            .collect();
        rows.push(join);
        let room = NewRoom {
            room_id: room_id.to_string(),
            room_version: joined.version.to_string(),
            creator: create.sender.to_string(),
        };
        self.store.create_room(&room, &rows).await?;
        // Loaded afresh, with the whole state, when next needed.
        *guard = None;
        if let Some(event) = rows.last() {
            self.notifier.publish(super::writer::change_of(event));
        }
        Ok(())
    }

    /// The key this server signs events with.
    pub fn signing_key(&self) -> &federation::keys::SigningKey {
        &self.key
    }

    /// Records the membership of a user of this server in a room it is not
    /// in, as another server reported it (an invite, with the state it
    /// showed), or as this server's user changed it there (leaving).
    pub async fn keep_remote_membership(
        &self,
        room_id: &RoomId,
        version: &RoomVersionId,
        pdu: &Pdu,
        invite_state: Option<&Value>,
    ) -> Result<()> {
        let mut row = new_event(pdu, room_id)?;
        let user = pdu.state_key.clone().unwrap_or_default();
        row.room_after.changes = vec![(
            "m.room.member".into(),
            user.clone(),
            Some(row.event_id.clone()),
        )];
        let room = NewRoom {
            room_id: room_id.to_string(),
            room_version: version.to_string(),
            creator: pdu.sender.to_string(),
        };
        let invite_state = invite_state
            .map(|state| serde_json::to_string(state).map_err(|e| Error::Internal(e.to_string())))
            .transpose()?;
        self.store
            .keep_remote_membership(&room, &row, invite_state.as_deref())
            .await?;
        self.notifier.publish(super::writer::change_of(&row));
        Ok(())
    }

    /// A leave of `user` signed here and kept only here: refusing an invite
    /// when the inviting server cannot be reached.
    pub fn local_only_leave(
        &self,
        room_id: &RoomId,
        user: &UserId,
        version: &RoomVersionId,
    ) -> Result<Pdu> {
        let rules = federation::pdu::rules_for(version)?;
        Ok(federation::pdu::build_event(
            EventTemplate {
                room_id: Some(room_id),
                sender: user,
                kind: "m.room.member",
                state_key: Some(user.as_str()),
                content: serde_json::json!({ "membership": "leave" }),
                redacts: None,
            },
            Placement {
                prev_events: &[],
                auth_events: &[],
                depth: 1,
                origin_server_ts: MilliSecondsSinceUnixEpoch::now(),
            },
            self.server_name.as_str(),
            &self.key,
            &rules,
        )?)
    }

    /// The stripped state of the room an invitee is shown: what the
    /// inviting server sent, or the room's current state here.
    pub async fn stripped_state(&self, room_id: &RoomId) -> Result<Vec<Value>> {
        invite_state(&self.store, room_id.as_str(), None).await
    }

    /// Stored events of the room by id (for `/event` and history requests).
    pub async fn stored_events(&self, ids: &[String]) -> Result<Vec<StoredEvent>> {
        self.store.events_by_id(ids).await
    }
}
