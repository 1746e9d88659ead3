//! Room states by name: loading state groups (cached in memory), deriving
//! the group an event or a resolution makes, and resolving forks.

use std::{collections::HashMap, sync::Arc};

use federation::{
    pdu::Pdu,
    state::{EventMap, resolve},
};
use quick_cache::{Weighter, sync::Cache};
use ruma::{EventId, OwnedEventId, events::StateEventType, room_version_rules::RoomVersionRules};
use sha2::{Digest, Sha256};

use crate::{
    error::{Error, Result},
    storage::{NewStateGroup, StateIds, Store, merge_chain},
};

/// A state group in memory.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Its name; empty for the empty state (before a room's create event).
    pub id: String,
    pub chain_length: i64,
    pub state: StateIds,
}

/// A delta chain longer than this is cut by storing the whole state.
const MAX_CHAIN: i64 = 100;
/// State entries kept in memory, over all cached groups.
const CACHED_ENTRIES: u64 = 500_000;
/// Parsed events kept in memory for resolution and auth checks.
const CACHED_EVENTS: usize = 50_000;

#[derive(Clone)]
struct EntriesWeighter;

impl Weighter<String, Arc<Snapshot>> for EntriesWeighter {
    fn weight(&self, _: &String, snapshot: &Arc<Snapshot>) -> u64 {
        snapshot.state.len() as u64 + 1
    }
}

/// A change to a state: the key and the event now there (`None`: removed).
pub type StateChange = ((String, String), Option<String>);

/// Loads, derives and resolves room states.
pub struct States {
    store: Store,
    groups: Cache<String, Arc<Snapshot>, EntriesWeighter>,
    events: Cache<OwnedEventId, Arc<Pdu>>,
}

impl States {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            groups: Cache::with_weighter(1024, CACHED_ENTRIES, EntriesWeighter),
            events: Cache::new(CACHED_EVENTS),
        }
    }

    /// The state group `id` (the empty state for an empty id).
    pub async fn load(&self, id: &str) -> Result<Arc<Snapshot>> {
        if id.is_empty() {
            return Ok(Arc::default());
        }
        if let Some(snapshot) = self.groups.get(id) {
            return Ok(snapshot);
        }
        let chain = self.store.state_group_chain(id).await?;
        if chain.is_empty() {
            return Err(Error::Internal(format!("unknown state group {id}")));
        }
        let (state, chain_length) = merge_chain(chain);
        let snapshot = Arc::new(Snapshot {
            id: id.to_owned(),
            chain_length,
            state,
        });
        self.groups.insert(id.to_owned(), snapshot.clone());
        Ok(snapshot)
    }

    /// The group named `id` that `changes` make of `parent`, in memory and
    /// as it is to be stored (a delta, or the whole state when the chain
    /// grew long).
    pub fn derive(
        &self,
        room_id: &str,
        id: String,
        parent: &Snapshot,
        changes: &[StateChange],
    ) -> (Arc<Snapshot>, NewStateGroup) {
        let mut state = parent.state.clone();
        for (key, event_id) in changes {
            match event_id {
                Some(event_id) => state.insert(key.clone(), event_id.clone()),
                None => state.remove(key),
            };
        }
        let whole = parent.id.is_empty() || parent.chain_length + 1 >= MAX_CHAIN;
        let (parent_id, chain_length, entries) = if whole {
            let entries = state
                .iter()
                .map(|((kind, key), id)| (kind.clone(), key.clone(), id.clone()))
                .collect();
            (None, 0, entries)
        } else {
            let entries = changes
                .iter()
                .map(|((kind, key), id)| {
                    (kind.clone(), key.clone(), id.clone().unwrap_or_default())
                })
                .collect();
            (Some(parent.id.clone()), parent.chain_length + 1, entries)
        };
        let snapshot = Arc::new(Snapshot {
            id: id.clone(),
            chain_length,
            state,
        });
        self.groups.insert(id.clone(), snapshot.clone());
        let group = NewStateGroup {
            group_id: id,
            room_id: room_id.to_owned(),
            parent_id,
            chain_length,
            entries,
        };
        (snapshot, group)
    }

    /// Parsed events by id, from memory or the database; those this server
    /// does not have are left out.
    pub async fn events(&self, ids: &[&EventId]) -> Result<EventMap> {
        let mut found = EventMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match self.events.get(*id) {
                Some(pdu) => {
                    found.insert((*id).to_owned(), pdu);
                }
                None => missing.push(id.to_string()),
            }
        }
        for stored in self.store.events_by_id(&missing).await? {
            let event_id = EventId::parse(&stored.event_id)
                .map_err(|e| Error::Internal(format!("stored event id: {e}")))?;
            let pdu = Arc::new(Pdu::from_str(event_id.clone(), &stored.json)?);
            self.events.insert(event_id.clone(), pdu.clone());
            found.insert(event_id, pdu);
        }
        Ok(found)
    }

    /// Remembers a parsed event (one just built or received).
    pub fn remember(&self, pdu: Arc<Pdu>) {
        self.events.insert(pdu.event_id.clone(), pdu);
    }

    /// `ids` and every event in their auth chains that this server has.
    pub async fn with_auth_chains(&self, ids: Vec<&EventId>) -> Result<EventMap> {
        let mut all = self.events(&ids).await?;
        let mut frontier: Vec<OwnedEventId> = all
            .values()
            .flat_map(|pdu| pdu.auth_events.iter().cloned())
            .collect();
        while !frontier.is_empty() {
            frontier.retain(|id| !all.contains_key(id));
            frontier.sort_unstable();
            frontier.dedup();
            let refs: Vec<&EventId> = frontier.iter().map(|id| &**id).collect();
            let found = self.events(&refs).await?;
            frontier = found
                .values()
                .flat_map(|pdu| pdu.auth_events.iter().cloned())
                .collect();
            if found.is_empty() {
                break;
            }
            all.extend(found);
        }
        Ok(all)
    }

    /// The state of a room whose forks end in `snapshots` (one may hold
    /// `new_event`, not stored yet), and the name of the group that holds
    /// it: the one group when they agree, else a new group named by what
    /// was resolved (returned for storing).
    pub async fn resolve(
        &self,
        room_id: &str,
        rules: &RoomVersionRules,
        snapshots: &[Arc<Snapshot>],
        new_event: Option<&Pdu>,
    ) -> Result<(Arc<Snapshot>, Option<NewStateGroup>)> {
        let Some(first) = snapshots.first() else {
            return Ok((Arc::default(), None));
        };
        if snapshots
            .iter()
            .all(|s| s.id == first.id || s.state == first.state)
        {
            return Ok((first.clone(), None));
        }
        let mut names: Vec<&str> = snapshots.iter().map(|s| s.id.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let id = resolved_group_name(&names);
        let maps: Vec<HashMap<(StateEventType, String), OwnedEventId>> = snapshots
            .iter()
            .map(|s| typed_state(&s.state))
            .collect::<Result<_>>()?;
        let ids: Vec<&EventId> = maps
            .iter()
            .flat_map(|m| m.values().map(|id| &**id))
            .collect();
        let mut events = self.with_auth_chains(ids).await?;
        // An event being placed is in no store yet.
        if let Some(pdu) = new_event {
            events.insert(pdu.event_id.clone(), Arc::new(pdu.clone()));
        }
        let map_refs: Vec<&HashMap<(StateEventType, String), OwnedEventId>> = maps.iter().collect();
        let resolved = resolve(rules, &map_refs, &events)?;
        let resolved: StateIds = resolved
            .into_iter()
            .map(|((kind, key), id)| ((kind.to_string(), key), id.to_string()))
            .collect();
        let changes = diff(first, &resolved);
        let (snapshot, group) = self.derive(room_id, id, first, &changes);
        Ok((snapshot, Some(group)))
    }
}

/// What turns `from` into `to`.
pub fn diff(from: &Snapshot, to: &StateIds) -> Vec<StateChange> {
    let mut changes: Vec<StateChange> = to
        .iter()
        .filter(|(key, id)| from.state.get(*key) != Some(*id))
        .map(|(key, id)| (key.clone(), Some(id.clone())))
        .collect();
    changes.extend(
        from.state
            .keys()
            .filter(|key| !to.contains_key(*key))
            .map(|key| (key.clone(), None)),
    );
    changes
}

/// The group name of a resolution of the groups `names` (sorted): resolution
/// is deterministic, so the same inputs always make the same state.
fn resolved_group_name(names: &[&str]) -> String {
    let mut hash = Sha256::new();
    for name in names {
        hash.update(name.as_bytes());
        hash.update([0]);
    }
    use base64::Engine;
    format!(
        "~{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash.finalize()[..18])
    )
}

fn typed_state(state: &StateIds) -> Result<HashMap<(StateEventType, String), OwnedEventId>> {
    state
        .iter()
        .map(|((kind, key), id)| {
            let id = EventId::parse(id)
                .map_err(|e| Error::Internal(format!("state event id {id}: {e}")))?;
            Ok(((StateEventType::from(kind.as_str()), key.clone()), id))
        })
        .collect()
}
