//! Room state resolution (v2, with the v12 refinements) over ruma-state-res,
//! and the auth-chain walks it and the federation endpoints need.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::{
    EventId, OwnedEventId,
    room_version_rules::RoomVersionRules,
    state_res::{self, StateMap, utils::event_id_set::EventIdSet},
};

use crate::{Error, Result, auth::EventAuthorizer, pdu::Pdu};

/// Events by id, as the caller loaded them.
pub type EventMap = HashMap<OwnedEventId, Arc<Pdu>>;

/// Every event reachable from `start` through `auth_events` (not `start`
/// itself unless reachable), among those in `events`; missing events end
/// their branch.
pub fn auth_chain<'a>(
    start: impl IntoIterator<Item = &'a EventId>,
    events: &EventMap,
) -> HashSet<OwnedEventId> {
    let mut chain = HashSet::new();
    let mut todo: Vec<&EventId> = start.into_iter().collect();
    while let Some(id) = todo.pop() {
        let Some(event) = events.get(id) else {
            continue;
        };
        for auth in &event.auth_events {
            if chain.insert(auth.clone()) {
                todo.push(auth);
            }
        }
    }
    chain
}

/// The events on an `auth_events` path from one conflicted event to
/// another (the v12 "conflicted state subgraph"), conflicted ones included.
fn conflicted_subgraph(
    conflicted: &HashSet<&EventId>,
    events: &EventMap,
) -> EventIdSet<OwnedEventId> {
    // leads[id]: whether some conflicted event is reachable from `id` (itself included).
    let mut leads: HashMap<&EventId, bool> = HashMap::new();
    for start in conflicted {
        // Iterative post-order walk, so deep auth chains cannot overflow the stack.
        let mut stack: Vec<(&EventId, bool)> = vec![(start, false)];
        while let Some((id, expanded)) = stack.pop() {
            if leads.contains_key(id) && !expanded {
                continue;
            }
            let parents: &[OwnedEventId] = events.get(id).map_or(&[], |e| &e.auth_events);
            if expanded {
                let reaches = conflicted.contains(id)
                    || parents
                        .iter()
                        .any(|p| leads.get(&**p).copied().unwrap_or(false));
                leads.insert(id, reaches);
            } else {
                leads.insert(id, conflicted.contains(id));
                stack.push((id, true));
                stack.extend(parents.iter().map(|p| (&**p, false)));
            }
        }
    }
    // Everything walked was reached from a conflicted event; keep what leads to one.
    leads
        .into_iter()
        .filter(|(_, reaches)| *reaches)
        .map(|(id, _)| id.to_owned())
        .collect()
}

/// The events of a room's `state` (as a server answering a join sent it)
/// that its `auth_chain` authorises: each event is checked against its own
/// auth events, in depth order, and one whose auth events failed fails too.
/// Refuses a state without a create event.
pub fn authorised_state(
    rules: &RoomVersionRules,
    state: Vec<Pdu>,
    auth_chain: &[Pdu],
) -> Result<Vec<Pdu>> {
    let mut all: Vec<&Pdu> = auth_chain.iter().chain(&state).collect();
    all.sort_by_key(|pdu| pdu.depth);
    // Since v12 the create event is not among auth events: the room id names it.
    let create = all
        .iter()
        .find(|pdu| pdu.kind.to_string() == "m.room.create" && pdu.state_key.as_deref() == Some(""))
        .copied();
    let mut accepted: HashMap<&EventId, &Pdu> = HashMap::with_capacity(all.len());
    for pdu in all {
        if accepted.contains_key(&*pdu.event_id) {
            continue;
        }
        let auth: Option<Vec<&Pdu>> = pdu
            .auth_events
            .iter()
            .map(|id| accepted.get(&**id).copied())
            .collect();
        let Some(auth) = auth else { continue };
        let by_key: crate::auth::StateMap = auth
            .into_iter()
            .chain(create.filter(|c| c.event_id != pdu.event_id))
            .filter_map(|e| {
                let key = e.state_key.clone()?;
                Some((
                    (ruma::events::StateEventType::from(e.kind.to_string()), key),
                    e.clone(),
                ))
            })
            .collect();
        if crate::auth::RumaAuthorizer
            .authorize(&rules.authorization, pdu, &by_key)
            .is_ok()
        {
            accepted.insert(&pdu.event_id, pdu);
        }
    }
    let kept: Vec<Pdu> = state
        .iter()
        .filter(|pdu| accepted.contains_key(&*pdu.event_id))
        .cloned()
        .collect();
    if !kept
        .iter()
        .any(|pdu| pdu.kind.to_string() == "m.room.create")
    {
        return Err(Error::Unauthorized(
            "the room's state has no valid create event".into(),
        ));
    }
    Ok(kept)
}

/// Resolves several states of one room into one. `events` must hold every
/// event of the states and their auth chains (what is missing is ignored,
/// as the algorithm ignores events it cannot check).
pub fn resolve(
    rules: &RoomVersionRules,
    states: &[&StateMap<OwnedEventId>],
    events: &EventMap,
) -> Result<StateMap<OwnedEventId>> {
    let auth_chains: Vec<EventIdSet<OwnedEventId>> = states
        .iter()
        .map(|state| {
            auth_chain(state.values().map(|id| &**id), events)
                .into_iter()
                .collect()
        })
        .collect();
    let state_res_rules = rules
        .state_res
        .v2_rules()
        .ok_or_else(|| Error::UnsupportedRoomVersion("state resolution v1".into()))?;
    state_res::resolve(
        &rules.authorization,
        state_res_rules,
        states.iter().copied(),
        auth_chains,
        |id: &EventId| events.get(id).cloned(),
        |conflicted: &StateMap<Vec<OwnedEventId>>| {
            let conflicted: HashSet<&EventId> =
                conflicted.values().flatten().map(|id| &**id).collect();
            Some(conflicted_subgraph(&conflicted, events))
        },
    )
    .map_err(|e| Error::Unauthorized(format!("state resolution: {e}")))
}
