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

use crate::{Error, Result, pdu::Pdu};

/// Events by id, as the caller loaded them.
pub type EventMap = HashMap<OwnedEventId, Arc<Pdu>>;

/// Every event reachable from `start` through `auth_events` (not `start`
/// itself unless reachable), among those in `events`; missing events end
/// their branch.
pub fn auth_chain<'a>(start: impl IntoIterator<Item = &'a EventId>, events: &EventMap) -> HashSet<OwnedEventId> {
    let mut chain = HashSet::new();
    let mut todo: Vec<&EventId> = start.into_iter().collect();
    while let Some(id) = todo.pop() {
        let Some(event) = events.get(id) else { continue };
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
fn conflicted_subgraph(conflicted: &HashSet<&EventId>, events: &EventMap) -> EventIdSet<OwnedEventId> {
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
                    || parents.iter().any(|p| leads.get(&**p).copied().unwrap_or(false));
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
        .map(|state| auth_chain(state.values().map(|id| &**id), events).into_iter().collect())
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
