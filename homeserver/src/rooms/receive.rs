//! Events from other servers into rooms this server is in: authorised
//! against their auth events, the state before them and the room's current
//! state (the spec's three checks), placed in the room's graph (resolving
//! forks) and stored through the same writer as local events.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use federation::{auth::StateMap, pdu::Pdu};
use ruma::{EventId, OwnedEventId, RoomId, ServerName, events::StateEventType};

use super::{MAX_ATTEMPTS, RoomCursor, Rooms, new_event, parse_event_id, state::diff};
use crate::{
    error::{Error, Result},
    storage::{Appended, NewEvent},
};

/// Events keyed by `(type, state_key)`, as the auth rules read state.
fn by_key<'a>(events: impl Iterator<Item = &'a Arc<Pdu>>) -> StateMap {
    events
        .filter_map(|e| {
            let key = e.state_key.clone()?;
            Some((
                (StateEventType::from(e.kind.to_string()), key),
                (**e).clone(),
            ))
        })
        .collect()
}

/// What became of an event from another server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reception {
    /// Now part of the room.
    Stored,
    /// Already here.
    Known,
    /// Valid, but not allowed by the room's current state: kept out of the
    /// timeline and the room's forks.
    SoftFailed,
    /// Not allowed by its auth events or the state before it; not stored.
    Rejected(String),
}

/// Which other servers this server sends events it takes in.
#[derive(Debug, Clone, Copy)]
pub enum Relay<'a> {
    /// None: the server that made them sends them to the room.
    Nobody,
    /// Every server in the room but this one: the joins and leaves other
    /// servers make through this one, and events this server made but
    /// another co-signed (invites).
    AllBut(&'a ServerName),
}

impl Rooms {
    /// Takes `pdus` (signatures and hashes already checked, each one's
    /// prev and auth events stored or earlier in the list) into the room.
    pub async fn receive_events(
        &self,
        room_id: &RoomId,
        pdus: Vec<Pdu>,
        relay: Relay<'_>,
    ) -> Result<Vec<(OwnedEventId, Reception)>> {
        let mut outcomes: HashMap<OwnedEventId, Reception> = HashMap::new();
        let mut pending: Vec<Pdu> = pdus;
        for _ in 0..MAX_ATTEMPTS {
            let submitted = self
                .submit_received(room_id, &pending, relay, &mut outcomes)
                .await?;
            let mut stale = HashSet::new();
            for (event_id, committed) in submitted {
                let reception = match committed.await {
                    Ok(Ok(Appended::Stored(_))) => outcomes
                        .get(&event_id)
                        .cloned()
                        .unwrap_or(Reception::Stored),
                    Ok(Ok(Appended::Duplicate(_))) => Reception::Known,
                    Ok(Ok(Appended::Stale)) => {
                        stale.insert(event_id);
                        continue;
                    }
                    Ok(Err(e)) => {
                        self.reset_cursor(room_id).await;
                        return Err(e);
                    }
                    Err(_) => {
                        self.reset_cursor(room_id).await;
                        return Err(Error::Internal("the event writer has stopped".into()));
                    }
                };
                outcomes.insert(event_id, reception);
            }
            if stale.is_empty() {
                break;
            }
            // Another writer moved the room on: reload it and place these again.
            self.reset_cursor(room_id).await;
            pending.retain(|pdu| stale.contains(&pdu.event_id));
            for id in &stale {
                outcomes.remove(id);
            }
        }
        Ok(outcomes.into_iter().collect())
    }

    /// Checks and places each event on the room's cursor and hands it to the
    /// writer; returns the commits to wait for. Outcomes decided without
    /// storing go straight into `outcomes`.
    async fn submit_received(
        &self,
        room_id: &RoomId,
        pdus: &[Pdu],
        relay: Relay<'_>,
        outcomes: &mut HashMap<OwnedEventId, Reception>,
    ) -> Result<
        Vec<(
            OwnedEventId,
            tokio::sync::oneshot::Receiver<super::writer::Committed>,
        )>,
    > {
        let slot = self.cursor_slot(room_id);
        let mut guard = slot.lock().await;
        let cursor = match guard.as_mut() {
            Some(cursor) => cursor,
            None => guard.insert(self.load_cursor(room_id).await?),
        };
        let ids: Vec<&str> = pdus
            .iter()
            .flat_map(|pdu| {
                std::iter::once(pdu.event_id.as_str())
                    .chain(pdu.prev_events.iter().map(|id| id.as_str()))
            })
            .collect();
        let mut placed: HashMap<String, Option<String>> = self
            .store
            .placements(&ids)
            .await?
            .into_iter()
            .map(|(id, p)| (id, p.state_after))
            .collect();
        let mut submitted = Vec::new();
        for pdu in pdus {
            if placed.contains_key(pdu.event_id.as_str()) {
                outcomes.insert(pdu.event_id.clone(), Reception::Known);
                continue;
            }
            let servers_before = cursor.other_servers(&self.server_name);
            let (reception, mut event) =
                match self.check_received(cursor, room_id, pdu, &placed).await {
                    Ok(checked) => checked,
                    Err(Error::Forbidden(reason) | Error::Internal(reason)) => {
                        tracing::info!(event_id = %pdu.event_id, %reason, "event rejected");
                        outcomes.insert(pdu.event_id.clone(), Reception::Rejected(reason));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
            if let Relay::AllBut(except) = relay
                && reception == Reception::Stored
            {
                let mut servers = servers_before;
                servers.extend(cursor.other_servers(&self.server_name));
                servers.remove(except.as_str());
                event.destinations = servers.into_iter().collect();
            }
            tracing::debug!(
                event_id = %pdu.event_id,
                ?reception,
                forks = cursor.head.len(),
                changes = event.room_after.changes.len(),
                "event placed"
            );
            placed.insert(event.event_id.clone(), Some(event.state_after.clone()));
            self.states.remember(Arc::new(pdu.clone()));
            outcomes.insert(pdu.event_id.clone(), reception);
            submitted.push((pdu.event_id.clone(), self.writer.submit(event).await?));
        }
        Ok(submitted)
    }

    /// The three authorisation checks of one event and, unless it is
    /// rejected, its row (the cursor moved past it).
    async fn check_received(
        &self,
        cursor: &mut RoomCursor,
        room_id: &RoomId,
        pdu: &Pdu,
        placed: &HashMap<String, Option<String>>,
    ) -> Result<(Reception, NewEvent)> {
        if pdu.room_id.as_deref().is_some_and(|r| r != room_id) {
            return Err(Error::Forbidden("the event is for another room".into()));
        }
        let rules = cursor.rules.clone();
        // 1. Against its own auth events.
        let auth_refs: Vec<&EventId> = pdu.auth_events.iter().map(|id| &**id).collect();
        let auth_events = self.states.events(&auth_refs).await?;
        if auth_events.len() < pdu.auth_events.len() {
            return Err(Error::Forbidden(
                "some of its auth events are unknown".into(),
            ));
        }
        // Since v12 the create event is not among the auth events: the room id names it.
        let create_key = (StateEventType::RoomCreate, String::new());
        let create = cursor.state.get(&create_key).cloned();
        let with_create = |mut state: StateMap| {
            if let Some(create) = &create {
                state
                    .entry(create_key.clone())
                    .or_insert_with(|| create.clone());
            }
            state
        };
        self.authorizer
            .authorize(
                &rules.authorization,
                pdu,
                &with_create(by_key(auth_events.values())),
            )
            .map_err(|e| Error::Forbidden(format!("not allowed by its auth events: {e}")))?;

        // 2. Against the state before it: its prev_events' states, resolved.
        let mut before_states = Vec::with_capacity(pdu.prev_events.len());
        for prev in &pdu.prev_events {
            let group = match (cursor.head_groups.get(prev), placed.get(prev.as_str())) {
                (Some(group), _) | (None, Some(Some(group))) => group.clone(),
                _ => {
                    return Err(Error::Forbidden(format!(
                        "the state at prev_event {prev} is unknown"
                    )));
                }
            };
            before_states.push(self.states.load(&group).await?);
        }
        let (before, resolved) = self
            .states
            .resolve(room_id.as_str(), &rules, &before_states, None)
            .await?;
        let needed = self.authorizer.auth_types(
            &rules.authorization,
            &pdu.kind.to_string(),
            &pdu.sender,
            pdu.state_key.as_deref(),
            &pdu.content,
        )?;
        let mut needed: Vec<(String, String)> = needed
            .into_iter()
            .map(|(kind, key)| (kind.to_string(), key))
            .collect();
        needed.push(("m.room.create".into(), String::new()));
        let before_ids = needed
            .iter()
            .filter_map(|key| before.state.get(key))
            .map(|id| parse_event_id(id))
            .collect::<Result<Vec<_>>>()?;
        let before_refs: Vec<&EventId> = before_ids.iter().map(|id| &**id).collect();
        let before_events = self.states.events(&before_refs).await?;
        self.authorizer
            .authorize(
                &rules.authorization,
                pdu,
                &with_create(by_key(before_events.values())),
            )
            .map_err(|e| Error::Forbidden(format!("not allowed by the state before it: {e}")))?;

        // 3. Against the room's current state: failing only soft-fails it.
        let target = pdu
            .state_key
            .as_deref()
            .filter(|_| pdu.kind.to_string() == "m.room.member");
        let mut users = vec![pdu.sender.as_str()];
        users.extend(target);
        self.load_members(cursor, &users).await?;
        let soft_failed = self
            .authorizer
            .authorize(&rules.authorization, pdu, &cursor.state)
            .is_err();

        let mut event = new_event(pdu, room_id)?;
        event.prev_event = std::mem::replace(&mut cursor.last_event, event.event_id.clone());
        event.state_before = before.id.clone();
        event.new_groups.extend(resolved);
        let after = match &pdu.state_key {
            Some(state_key) => {
                let changes = [(
                    (event.event_type.clone(), state_key.clone()),
                    Some(event.event_id.clone()),
                )];
                let (after, group) =
                    self.states
                        .derive(room_id.as_str(), event.event_id.clone(), &before, &changes);
                event.new_groups.push(group);
                after
            }
            None => before,
        };
        event.state_after = after.id.clone();
        if soft_failed {
            event.outlier = true;
        } else {
            self.extend_forks(cursor, room_id, pdu, after, &mut event)
                .await?;
        }
        event.room_after.extremities = cursor.head.iter().map(ToString::to_string).collect();
        event.room_after.state_group = cursor.current.id.clone();
        event.room_after.depth = i64::try_from(cursor.depth).unwrap_or(i64::MAX);
        let reception = if soft_failed {
            tracing::info!(event_id = %pdu.event_id, "event soft-failed");
            Reception::SoftFailed
        } else {
            Reception::Stored
        };
        Ok((reception, event))
    }

    /// Makes `pdu` a forward extremity in place of its prev_events and
    /// recomputes the room's current state over the open forks.
    async fn extend_forks(
        &self,
        cursor: &mut RoomCursor,
        room_id: &RoomId,
        pdu: &Pdu,
        after: Arc<super::state::Snapshot>,
        event: &mut NewEvent,
    ) -> Result<()> {
        for prev in &pdu.prev_events {
            cursor.head.retain(|id| id != prev);
            cursor.head_groups.remove(prev);
        }
        cursor.head.push(pdu.event_id.clone());
        cursor
            .head_groups
            .insert(pdu.event_id.clone(), after.id.clone());
        cursor.depth = cursor.depth.max(pdu.depth);
        let current = if cursor.head.len() == 1 {
            after
        } else {
            let mut forks = Vec::with_capacity(cursor.head.len());
            for id in &cursor.head {
                let group = cursor.head_groups.get(id).cloned().unwrap_or_default();
                forks.push(self.states.load(&group).await?);
            }
            let (current, resolved) = self
                .states
                .resolve(room_id.as_str(), &cursor.rules, &forks, Some(pdu))
                .await?;
            event.new_groups.extend(resolved);
            current
        };
        let changes = diff(&cursor.current, &current.state);
        cursor.current = current;
        self.apply_membership_changes(cursor, &changes, pdu).await?;
        let own = pdu
            .state_key
            .as_ref()
            .map(|key| (pdu.kind.to_string(), key.clone()));
        let auth_keys: Vec<(String, String)> = changes
            .iter()
            .map(|(key, _)| key.clone())
            .filter(|key| Some(key) != own.as_ref())
            .filter(|(kind, key)| {
                super::is_auth_state(kind)
                    && (kind != "m.room.member" || cursor.members.contains(key))
            })
            .collect();
        self.load_auth_events(cursor, &auth_keys).await?;
        if let Some((kind, key)) = own
            && super::is_auth_state(&kind)
            && cursor.current.state.get(&(kind.clone(), key.clone()))
                == Some(&pdu.event_id.to_string())
        {
            if kind == "m.room.member" {
                cursor.members.insert(key.clone());
            }
            cursor
                .state
                .insert((StateEventType::from(kind.as_str()), key), pdu.clone());
        }
        event.room_after.changes = changes
            .into_iter()
            .map(|((kind, key), id)| (kind, key, id))
            .collect();
        Ok(())
    }

    /// Keeps the cursor's joined users in step with state changes.
    async fn apply_membership_changes(
        &self,
        cursor: &mut RoomCursor,
        changes: &[super::state::StateChange],
        new: &Pdu,
    ) -> Result<()> {
        let mut ids = Vec::new();
        for ((_, user), id) in changes
            .iter()
            .filter(|((kind, _), _)| kind == "m.room.member")
        {
            match id {
                Some(id) if id == new.event_id.as_str() => cursor.apply_membership(new),
                Some(id) => ids.push(parse_event_id(id)?),
                None => {
                    cursor.joined.remove(user);
                }
            }
        }
        let refs: Vec<&EventId> = ids.iter().map(|id| &**id).collect();
        for pdu in self.states.events(&refs).await?.values() {
            cursor.apply_membership(pdu);
        }
        Ok(())
    }
}
