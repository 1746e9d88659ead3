//! PDUs from other servers on their way into rooms: parsed, their
//! signatures and content hashes checked (on every core), the gaps in
//! their history and auth chains filled from the server that sent them.

use std::collections::{BTreeSet, HashSet};

use federation::pdu::{Pdu, parse_incoming, verify_incoming};
use poem::http::Method;
use ruma::{
    CanonicalJsonObject, OwnedEventId, OwnedServerName, RoomId, ServerName,
    room_version_rules::RoomVersionRules, signatures::PublicKeyMap,
};
use serde_json::{Value, json};

use crate::{
    error::{Error, Result},
    remote::{Remote, encode},
    rooms::{Reception, Relay, outlier_row},
    state::AppState,
};

/// Verifications below this many run on the calling thread.
const PARALLEL_FROM: usize = 64;
/// Events asked for at most when filling a gap before new events.
const MISSING_EVENTS_LIMIT: usize = 100;
/// Auth events fetched one by one at most for one batch.
const MAX_FETCHED_AUTH_EVENTS: usize = 200;

/// Parses and verifies PDUs of a room with `rules`: each one's id and
/// checked form (redacted if its content hash is wrong), or why it was dropped.
pub async fn verify_pdus(
    remote: &Remote,
    rules: &RoomVersionRules,
    jsons: Vec<CanonicalJsonObject>,
) -> Vec<Result<Pdu>> {
    let mut servers: BTreeSet<OwnedServerName> = BTreeSet::new();
    let parsed: Vec<Result<(OwnedEventId, CanonicalJsonObject)>> = jsons
        .into_iter()
        .map(|json| {
            let (event_id, needed) = parse_incoming(&json, rules)?;
            servers.extend(needed);
            Ok((event_id, json))
        })
        .collect();
    let servers: Vec<OwnedServerName> = servers.into_iter().collect();
    let keys = remote.public_keys(&servers).await;
    let rules = rules.clone();
    tokio::task::spawn_blocking(move || verify_all(parsed, &keys, &rules))
        .await
        .unwrap_or_else(|e| vec![Err(Error::Internal(format!("verification task: {e}")))])
}

fn verify_one(
    item: Result<(OwnedEventId, CanonicalJsonObject)>,
    keys: &PublicKeyMap,
    rules: &RoomVersionRules,
) -> Result<Pdu> {
    let (event_id, json) = item?;
    let checked = verify_incoming(json, keys, rules)
        .map_err(|e| Error::Forbidden(format!("event {event_id}: {e}")))?;
    Ok(Pdu::from_json(event_id, checked)?)
}

/// Signature checks dominate large joins: spread them over every core.
fn verify_all(
    items: Vec<Result<(OwnedEventId, CanonicalJsonObject)>>,
    keys: &PublicKeyMap,
    rules: &RoomVersionRules,
) -> Vec<Result<Pdu>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if items.len() < PARALLEL_FROM || threads == 1 {
        return items
            .into_iter()
            .map(|item| verify_one(item, keys, rules))
            .collect();
    }
    let chunk_size = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<_>> = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        chunks.push(items.by_ref().take(chunk_size).collect());
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|item| verify_one(item, keys, rules))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| {
                handle.join().unwrap_or_else(|_| {
                    vec![Err(Error::Internal("a verification thread failed".into()))]
                })
            })
            .collect()
    })
}

/// The rules of a room this server knows.
pub async fn room_rules(state: &AppState, room_id: &RoomId) -> Result<RoomVersionRules> {
    let room = state
        .store
        .room(room_id.as_str())
        .await?
        .ok_or_else(|| Error::NotFound(format!("this server is not in {room_id}")))?;
    let version = ruma::RoomVersionId::try_from(room.room_version.as_str())
        .map_err(|e| Error::Internal(format!("stored room version: {e}")))?;
    Ok(federation::pdu::rules_for(&version)?)
}

/// Takes the PDUs `origin` sent for `room_id` into the room; returns the
/// outcome for each PDU that could be identified.
pub async fn take_pdus(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    jsons: Vec<CanonicalJsonObject>,
    relay: Relay<'_>,
) -> Result<Vec<(OwnedEventId, Reception)>> {
    let rules = room_rules(state, room_id).await?;
    let mut outcomes = Vec::new();
    let mut pdus = Vec::with_capacity(jsons.len());
    for checked in verify_pdus(&state.remote, &rules, jsons).await {
        match checked {
            Ok(pdu) => pdus.push(pdu),
            Err(e) => tracing::info!(%origin, %room_id, error = %e, "PDU dropped"),
        }
    }
    fill_history_gaps(state, origin, room_id, &rules, &mut pdus).await?;
    fill_auth_gaps(state, origin, room_id, &rules, &pdus).await?;
    pdus.sort_by_key(|pdu| pdu.depth);
    outcomes.extend(state.rooms.receive_events(room_id, pdus, relay).await?);
    Ok(outcomes)
}

/// Asks `origin` for the events between what this server has of the room
/// and the new `pdus` whose prev_events it does not have, and adds them.
async fn fill_history_gaps(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    rules: &RoomVersionRules,
    pdus: &mut Vec<Pdu>,
) -> Result<()> {
    let batch: HashSet<&str> = pdus.iter().map(|p| p.event_id.as_str()).collect();
    let prevs: Vec<&str> = pdus
        .iter()
        .flat_map(|p| p.prev_events.iter().map(|id| id.as_str()))
        .filter(|id| !batch.contains(id))
        .collect();
    let known = state.store.placements(&prevs).await?;
    let latest: Vec<&str> = pdus
        .iter()
        .filter(|p| {
            p.prev_events
                .iter()
                .any(|id| !batch.contains(id.as_str()) && !known.contains_key(id.as_str()))
        })
        .map(|p| p.event_id.as_str())
        .collect();
    if latest.is_empty() {
        return Ok(());
    }
    let earliest: Vec<String> = state
        .store
        .extremities(room_id.as_str())
        .await?
        .into_iter()
        .map(|p| p.event_id)
        .collect();
    let body = json!({
        "earliest_events": earliest,
        "latest_events": latest,
        "limit": MISSING_EVENTS_LIMIT,
        "min_depth": 0,
    });
    let path = format!(
        "/_matrix/federation/v1/get_missing_events/{}",
        encode(room_id.as_str())
    );
    let answer = match state
        .remote
        .request(origin, Method::POST, &path, Some(&body))
        .await
    {
        Ok(answer) => answer,
        Err(e) => {
            tracing::info!(%origin, %room_id, error = %e, "missing events could not be fetched");
            return Ok(());
        }
    };
    let missing = object_list(&answer["events"]);
    for checked in verify_pdus(&state.remote, rules, missing).await {
        match checked {
            Ok(pdu) if pdu.room_id.as_deref().is_none_or(|r| r == room_id) => pdus.push(pdu),
            Ok(pdu) => tracing::info!(event_id = %pdu.event_id, "missing event of another room"),
            Err(e) => tracing::info!(%origin, error = %e, "missing event dropped"),
        }
    }
    Ok(())
}

/// Fetches from `origin` the auth events of `pdus` this server lacks (and
/// theirs), and keeps them as outliers.
async fn fill_auth_gaps(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    rules: &RoomVersionRules,
    pdus: &[Pdu],
) -> Result<()> {
    let batch: HashSet<&OwnedEventId> = pdus.iter().map(|p| &p.event_id).collect();
    let mut wanted: Vec<OwnedEventId> = pdus
        .iter()
        .flat_map(|p| p.auth_events.iter().cloned())
        .filter(|id| !batch.contains(id))
        .collect();
    let mut fetched = Vec::new();
    let mut asked = HashSet::new();
    while !wanted.is_empty() && asked.len() < MAX_FETCHED_AUTH_EVENTS {
        let ids: Vec<&str> = wanted.iter().map(|id| id.as_str()).collect();
        let known = state.store.placements(&ids).await?;
        let missing: Vec<OwnedEventId> = wanted
            .drain(..)
            .filter(|id| !known.contains_key(id.as_str()) && asked.insert(id.clone()))
            .collect();
        let mut jsons = Vec::new();
        for id in &missing {
            let path = format!("/_matrix/federation/v1/event/{}", encode(id.as_str()));
            match state.remote.request(origin, Method::GET, &path, None).await {
                Ok(answer) => jsons.extend(object_list(&answer["pdus"])),
                Err(e) => {
                    tracing::info!(%origin, event_id = %id, error = %e, "auth event not fetched")
                }
            }
        }
        for checked in verify_pdus(&state.remote, rules, jsons).await {
            match checked {
                Ok(pdu) => {
                    wanted.extend(pdu.auth_events.iter().cloned());
                    fetched.push(pdu);
                }
                Err(e) => tracing::info!(%origin, error = %e, "auth event dropped"),
            }
        }
    }
    if fetched.is_empty() {
        return Ok(());
    }
    let rows = fetched
        .iter()
        .map(|pdu| outlier_row(pdu, room_id))
        .collect::<Result<Vec<_>>>()?;
    state.store.store_outliers(&rows).await
}

/// The JSON objects of a list (anything else in it is skipped).
pub fn object_list(value: &Value) -> Vec<CanonicalJsonObject> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| serde_json::from_value(item.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}
