//! Transactions other servers send (`PUT /_matrix/federation/v1/send`):
//! their PDUs into rooms, their EDUs (typing, receipts, presence,
//! to-device messages) to the services that keep them.

use std::{collections::BTreeMap, time::Duration};

use ruma::{CanonicalJsonObject, EventId, OwnedEventId, RoomId, ServerName, UserId};
use serde_json::{Map, Value, json};

use super::intake::{room_rules, take_pdus};
use crate::{
    error::{Error, Result},
    rooms::{Reception, Relay},
    state::AppState,
};

/// PDUs and EDUs in one transaction at most (the spec's limits).
const MAX_PDUS: usize = 50;
const MAX_EDUS: usize = 100;
/// The longest typing notice another server may set.
const MAX_TYPING: Duration = Duration::from_secs(120);

/// Processes a transaction from `origin`; the answer maps each PDU's id
/// to `{}` or `{"error": ...}`.
pub async fn receive_transaction(
    state: &AppState,
    origin: &ServerName,
    body: &Value,
) -> Result<Value> {
    if body["origin"]
        .as_str()
        .is_some_and(|o| o != origin.as_str())
    {
        return Err(Error::Forbidden(
            "the transaction's origin is not the sender".into(),
        ));
    }
    let pdus = body["pdus"].as_array().map_or(&[][..], Vec::as_slice);
    let edus = body["edus"].as_array().map_or(&[][..], Vec::as_slice);
    if pdus.len() > MAX_PDUS || edus.len() > MAX_EDUS {
        return Err(Error::BadJson(format!(
            "a transaction holds at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs"
        )));
    }
    let mut by_room: BTreeMap<String, Vec<CanonicalJsonObject>> = BTreeMap::new();
    for pdu in pdus {
        let Some(room_id) = pdu["room_id"].as_str() else {
            continue;
        };
        if let Ok(object) = serde_json::from_value::<CanonicalJsonObject>(pdu.clone()) {
            by_room.entry(room_id.to_owned()).or_default().push(object);
        }
    }
    let mut results = Map::new();
    tracing::debug!(%origin, pdus = pdus.len(), edus = edus.len(), "transaction received");
    for (room_id, jsons) in by_room {
        let outcomes = match receive_room_pdus(state, origin, &room_id, jsons.clone()).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::info!(%origin, %room_id, error = %e, "PDUs refused");
                let rules = match <&RoomId>::try_from(room_id.as_str()) {
                    Ok(room) => room_rules(state, room).await.ok(),
                    Err(_) => None,
                };
                ids_of(&jsons, &rules)
                    .into_iter()
                    .map(|id| (id, Reception::Rejected(e.to_string())))
                    .collect()
            }
        };
        for (event_id, reception) in outcomes {
            let result = match reception {
                Reception::Rejected(reason) => json!({ "error": reason }),
                _ => json!({}),
            };
            results.insert(event_id.to_string(), result);
        }
    }
    for edu in edus {
        if let Err(e) = receive_edu(state, origin, edu).await {
            tracing::info!(%origin, edu_type = %edu["edu_type"], error = %e, "EDU dropped");
        }
    }
    Ok(json!({ "pdus": results }))
}

/// The ids of PDUs of a room with `rules`, where they can be computed.
fn ids_of(
    jsons: &[CanonicalJsonObject],
    rules: &Option<ruma::room_version_rules::RoomVersionRules>,
) -> Vec<OwnedEventId> {
    let Some(rules) = rules else {
        return Vec::new();
    };
    jsons
        .iter()
        .filter_map(|json| federation::pdu::event_id_of(json, rules).ok())
        .collect()
}

async fn receive_room_pdus(
    state: &AppState,
    origin: &ServerName,
    room_id: &str,
    jsons: Vec<CanonicalJsonObject>,
) -> Result<Vec<(OwnedEventId, Reception)>> {
    let room_id = <&RoomId>::try_from(room_id)
        .map_err(|e| Error::BadJson(format!("invalid room id: {e}")))?;
    if !state.policy.room_allows(room_id.as_str(), origin).await? {
        return Err(Error::Forbidden(format!(
            "{origin} is not allowed in {room_id} by its server ACL"
        )));
    }
    take_pdus(state, origin, room_id, jsons, Relay::Nobody).await
}

/// A user of `origin` (EDUs speak only for their own server's users).
fn user_of<'a>(origin: &ServerName, value: &'a Value) -> Result<&'a UserId> {
    user_named(origin, value.as_str().unwrap_or_default())
}

fn user_named<'a>(origin: &ServerName, name: &'a str) -> Result<&'a UserId> {
    let user = <&UserId>::try_from(name).map_err(|_| Error::BadJson("invalid user id".into()))?;
    if user.server_name() != origin {
        return Err(Error::Forbidden(format!(
            "{user} is not a user of {origin}"
        )));
    }
    Ok(user)
}

async fn receive_edu(state: &AppState, origin: &ServerName, edu: &Value) -> Result<()> {
    let content = &edu["content"];
    match edu["edu_type"].as_str().unwrap_or_default() {
        "m.typing" => {
            let user = user_of(origin, &content["user_id"])?;
            let room_id = content["room_id"].as_str().unwrap_or_default();
            if !state.policy.room_allows(room_id, origin).await?
                || state
                    .store
                    .membership(room_id, user.as_str())
                    .await?
                    .as_deref()
                    != Some("join")
            {
                return Err(Error::Forbidden("not a member of the room".into()));
            }
            let typing = content["typing"].as_bool().unwrap_or(false);
            let timeout = content["timeout"]
                .as_u64()
                .map_or(Duration::from_secs(30), Duration::from_millis)
                .min(MAX_TYPING);
            state
                .typing
                .set(room_id, user.as_str(), typing.then_some(timeout));
        }
        "m.receipt" => {
            for (room_id, types) in content.as_object().into_iter().flatten() {
                if !state.policy.room_allows(room_id, origin).await? {
                    continue;
                }
                for (receipt_type, users) in types.as_object().into_iter().flatten() {
                    for (user, receipt) in users.as_object().into_iter().flatten() {
                        let user = user_named(origin, user)?;
                        let thread = receipt["data"]["thread_id"].as_str();
                        for event_id in receipt["event_ids"].as_array().into_iter().flatten() {
                            let Some(event_id) = event_id
                                .as_str()
                                .and_then(|id| <&EventId>::try_from(id).ok())
                            else {
                                continue;
                            };
                            state
                                .receipts
                                .record(room_id, user, receipt_type, event_id, thread)
                                .await?;
                        }
                    }
                }
            }
        }
        "m.presence" => {
            for update in content["push"].as_array().into_iter().flatten() {
                let user = user_of(origin, &update["user_id"])?;
                let presence = update["presence"].as_str().unwrap_or("offline");
                state
                    .presence
                    .apply_remote(user.as_str(), presence, update["status_msg"].as_str())
                    .await?;
            }
        }
        "m.direct_to_device" => {
            let sender = user_of(origin, &content["sender"])?;
            let event_type = content["type"].as_str().unwrap_or_default();
            let message_id = content["message_id"].as_str().unwrap_or_default();
            state
                .to_device
                .receive_remote(sender, event_type, message_id, &content["messages"])
                .await?;
        }
        // This server keeps no end-to-end device lists yet: nothing to update.
        "m.device_list_update" | "m.signing_key_update" => {}
        other => tracing::debug!(%origin, edu_type = other, "EDU of an unknown type ignored"),
    }
    Ok(())
}
