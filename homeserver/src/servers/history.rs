//! A room's history for other servers: single events, the state at an
//! event, auth chains, backfill and missing events — each event shown as
//! the asking server may see it (redacted where history visibility hides it).

use std::collections::{BinaryHeap, HashSet};

use federation::pdu::{Pdu, redacted};
use ruma::{EventId, OwnedEventId, RoomId, ServerName};
use serde_json::{Value, json};

use super::intake::room_rules;
use crate::{
    error::{Error, Result},
    state::AppState,
};

/// Events one backfill or missing-events answer holds at most.
const MAX_EVENTS: usize = 100;

/// Refuses servers without a user in the room (and those its ACL bars).
pub async fn require_participant(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
) -> Result<()> {
    if !state.policy.room_allows(room_id.as_str(), origin).await? {
        return Err(Error::Forbidden(format!(
            "{origin} is barred from this room"
        )));
    }
    let joined = state.store.joined_users(room_id.as_str()).await?;
    let suffix = format!(":{origin}");
    if joined.iter().any(|user| user.ends_with(&suffix)) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!("{origin} is not in this room")))
    }
}

/// Whether a user of `origin` could see `event` by the room's history
/// visibility at that point.
async fn visible_to(state: &AppState, origin: &ServerName, event: &Pdu) -> Result<bool> {
    let Some(group) = state.store.state_before(event.event_id.as_str()).await? else {
        // Outliers: state and auth events, which every participant needs.
        return Ok(true);
    };
    let snapshot = state.rooms.state_snapshot(&group).await?;
    let setting = match snapshot
        .state
        .get(&("m.room.history_visibility".to_owned(), String::new()))
    {
        Some(id) => {
            let events = state.rooms.stored_events(std::slice::from_ref(id)).await?;
            events
                .first()
                .and_then(|e| serde_json::from_str::<Value>(&e.json).ok())
                .and_then(|e| {
                    e["content"]["history_visibility"]
                        .as_str()
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "shared".to_owned())
        }
        None => "shared".to_owned(),
    };
    if matches!(setting.as_str(), "world_readable" | "shared") {
        return Ok(true);
    }
    let suffix = format!(":{origin}");
    let members: Vec<String> = snapshot
        .state
        .iter()
        .filter(|((kind, key), _)| kind == "m.room.member" && key.ends_with(&suffix))
        .map(|(_, id)| id.clone())
        .collect();
    for member in state.rooms.stored_events(&members).await? {
        let membership = serde_json::from_str::<Value>(&member.json)
            .ok()
            .and_then(|e| e["content"]["membership"].as_str().map(str::to_owned));
        match membership.as_deref() {
            Some("join") => return Ok(true),
            Some("invite") if setting == "invited" => return Ok(true),
            _ => {}
        }
    }
    Ok(false)
}

/// `event` as `origin` may see it.
async fn shown_to(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    event: &Pdu,
) -> Result<Value> {
    let json = if visible_to(state, origin, event).await? {
        event.json.clone()
    } else {
        redacted(&event.json, &room_rules(state, room_id).await?, None)?
    };
    serde_json::to_value(json).map_err(|e| Error::Internal(format!("event JSON: {e}")))
}

async fn load(state: &AppState, ids: &[String]) -> Result<Vec<(Pdu, String)>> {
    state
        .rooms
        .stored_events(ids)
        .await?
        .into_iter()
        .map(|stored| {
            let id = EventId::parse(&stored.event_id)
                .map_err(|e| Error::Internal(format!("stored event id: {e}")))?;
            Ok((Pdu::from_str(id, &stored.json)?, stored.room_id))
        })
        .collect()
}

/// `GET /event/{eventId}`.
pub async fn event(state: &AppState, origin: &ServerName, event_id: &EventId) -> Result<Value> {
    let (pdu, room_id) = load(state, &[event_id.to_string()])
        .await?
        .pop()
        .ok_or_else(|| Error::NotFound("no such event".into()))?;
    let room_id = <&RoomId>::try_from(room_id.as_str())
        .map_err(|e| Error::Internal(format!("stored room id: {e}")))?;
    require_participant(state, origin, room_id).await?;
    Ok(json!({
        "origin": state.remote.server_name().as_str(),
        "origin_server_ts": crate::storage::now_ms(),
        "pdus": [shown_to(state, origin, room_id, &pdu).await?],
    }))
}

/// `GET /state/{roomId}` and `/state_ids/{roomId}`: the state before
/// `event_id` and its auth chain, as events or as ids.
pub async fn state_at(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
    ids_only: bool,
) -> Result<Value> {
    require_participant(state, origin, room_id).await?;
    let at = state.rooms.state_and_auth_before(room_id, event_id).await?;
    let render = |list: &[std::sync::Arc<Pdu>]| -> Result<Vec<Value>> {
        list.iter()
            .map(|pdu| {
                if ids_only {
                    Ok(Value::String(pdu.event_id.to_string()))
                } else {
                    serde_json::to_value(&pdu.json).map_err(|e| Error::Internal(e.to_string()))
                }
            })
            .collect()
    };
    Ok(if ids_only {
        json!({ "pdu_ids": render(&at.state)?, "auth_chain_ids": render(&at.auth_chain)? })
    } else {
        json!({ "pdus": render(&at.state)?, "auth_chain": render(&at.auth_chain)? })
    })
}

/// `GET /event_auth/{roomId}/{eventId}`: the auth chain of an event.
pub async fn event_auth(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
) -> Result<Value> {
    require_participant(state, origin, room_id).await?;
    let chain = state.rooms.auth_chain_of(room_id, event_id).await?;
    let events = chain
        .iter()
        .map(|pdu| serde_json::to_value(&pdu.json).map_err(|e| Error::Internal(e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({ "auth_chain": events }))
}

/// Walks back from `from` through prev_events, deepest first, up to
/// `limit` events of the room, stopping at `stop`.
async fn walk_back(
    state: &AppState,
    room_id: &RoomId,
    from: &[OwnedEventId],
    stop: &HashSet<OwnedEventId>,
    include_start: bool,
    limit: usize,
) -> Result<Vec<Pdu>> {
    let mut queue: BinaryHeap<(u64, OwnedEventId)> = BinaryHeap::new();
    let mut seen: HashSet<OwnedEventId> = HashSet::new();
    let start: Vec<String> = from.iter().map(ToString::to_string).collect();
    for (pdu, room) in load(state, &start).await? {
        if room == room_id.as_str() && seen.insert(pdu.event_id.clone()) {
            if include_start {
                queue.push((pdu.depth, pdu.event_id.clone()));
            } else {
                for prev in &pdu.prev_events {
                    if seen.insert(prev.clone()) {
                        queue.push((pdu.depth.saturating_sub(1), prev.clone()));
                    }
                }
            }
        }
    }
    let mut found = Vec::new();
    while let Some((_, id)) = queue.pop() {
        if found.len() >= limit {
            break;
        }
        if stop.contains(&id) {
            continue;
        }
        let Some((pdu, room)) = load(state, &[id.to_string()]).await?.pop() else {
            continue;
        };
        if room != room_id.as_str() {
            continue;
        }
        for prev in &pdu.prev_events {
            if seen.insert(prev.clone()) {
                queue.push((pdu.depth.saturating_sub(1), prev.clone()));
            }
        }
        found.push(pdu);
    }
    Ok(found)
}

/// `GET /backfill/{roomId}`: up to `limit` events from `from` backwards.
pub async fn backfill(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    from: &[OwnedEventId],
    limit: usize,
) -> Result<Value> {
    require_participant(state, origin, room_id).await?;
    let events = walk_back(
        state,
        room_id,
        from,
        &HashSet::new(),
        true,
        limit.min(MAX_EVENTS),
    )
    .await?;
    let mut pdus = Vec::with_capacity(events.len());
    for event in &events {
        pdus.push(shown_to(state, origin, room_id, event).await?);
    }
    Ok(json!({
        "origin": state.remote.server_name().as_str(),
        "origin_server_ts": crate::storage::now_ms(),
        "pdus": pdus,
    }))
}

/// `POST /get_missing_events/{roomId}`: the events before `latest` that
/// the asking server lacks (it has `earliest`), oldest first.
pub async fn missing_events(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    earliest: &[OwnedEventId],
    latest: &[OwnedEventId],
    limit: usize,
    min_depth: u64,
) -> Result<Value> {
    require_participant(state, origin, room_id).await?;
    let stop: HashSet<OwnedEventId> = earliest.iter().cloned().collect();
    let mut events = walk_back(state, room_id, latest, &stop, false, limit.min(MAX_EVENTS)).await?;
    events.retain(|e| e.depth >= min_depth);
    events.sort_by_key(|e| e.depth);
    let mut shown = Vec::with_capacity(events.len());
    for event in &events {
        shown.push(shown_to(state, origin, room_id, event).await?);
    }
    Ok(json!({ "events": shown }))
}

/// Fetches older history of a room this server joined through another:
/// when the oldest event of its timeline here follows events it does not
/// have, asks a server in the room for up to `limit` events before it.
/// Returns whether anything new arrived.
pub async fn fetch_older(state: &AppState, room_id: &RoomId, limit: usize) -> Result<bool> {
    let Some(oldest) = state.store.oldest_timeline_event(room_id.as_str()).await? else {
        return Ok(false);
    };
    let id = EventId::parse(&oldest.event_id)
        .map_err(|e| Error::Internal(format!("stored event id: {e}")))?;
    let pdu = Pdu::from_str(id.clone(), &oldest.json)?;
    let prevs: Vec<&str> = pdu.prev_events.iter().map(|id| id.as_str()).collect();
    let known = state.store.placements(&prevs).await?;
    if prevs.iter().all(|id| known.contains_key(*id)) {
        return Ok(false);
    }
    let rules = room_rules(state, room_id).await?;
    let path = format!(
        "/_matrix/federation/v1/backfill/{}?v={}&limit={}",
        crate::remote::encode(room_id.as_str()),
        crate::remote::encode(id.as_str()),
        limit.min(MAX_EVENTS)
    );
    for server in super::membership::room_servers(state, room_id).await? {
        if server == state.remote.server_name() || !state.policy.may_federate_with(&server).await {
            continue;
        }
        let answer = match state
            .remote
            .request(&server, poem::http::Method::GET, &path, None)
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                tracing::info!(%room_id, %server, error = %e, "backfill failed");
                continue;
            }
        };
        let mut events: Vec<Pdu> = super::intake::verify_pdus(
            &state.remote,
            &rules,
            super::intake::object_list(&answer["pdus"]),
        )
        .await
        .into_iter()
        .filter_map(|checked| checked.ok())
        .filter(|pdu| pdu.room_id.as_deref().is_none_or(|r| r == room_id))
        .collect();
        // Newest first, so positions below the timeline keep the graph's order.
        events.sort_by_key(|pdu| std::cmp::Reverse(pdu.depth));
        let rows = events
            .iter()
            .map(|pdu| crate::rooms::history_row(pdu, room_id))
            .collect::<Result<Vec<_>>>()?;
        return Ok(state.store.store_backfilled(&rows).await? > 0);
    }
    Ok(false)
}
