//! The client event format: what clients see of a PDU.

use serde_json::{Map, Value};

use crate::{
    error::{Error, Result},
    storage::{StoredEvent, now_ms},
};

/// Top-level PDU fields clients see.
const CLIENT_FIELDS: &[&str] = &[
    "content",
    "origin_server_ts",
    "sender",
    "state_key",
    "type",
    "redacts",
];

/// The client-visible fields of a PDU, with its id and room.
pub fn client_fields(
    pdu: &Map<String, Value>,
    event_id: &str,
    room_id: &str,
) -> Map<String, Value> {
    let mut out = Map::new();
    for field in CLIENT_FIELDS {
        if let Some(value) = pdu.get(*field) {
            out.insert((*field).to_owned(), value.clone());
        }
    }
    out.insert("event_id".into(), event_id.into());
    out.insert("room_id".into(), room_id.into());
    // Room version 11 moved `redacts` into the content; clients written
    // before it read the top level, so it is served in both places.
    if !out.contains_key("redacts")
        && let Some(redacts) = pdu
            .get("content")
            .and_then(|c| c.get("redacts"))
            .filter(|_| pdu.get("type") == Some(&Value::from("m.room.redaction")))
    {
        out.insert("redacts".into(), redacts.clone());
    }
    out
}

/// A stored event in the client-server format.
pub fn client_event(event: &StoredEvent) -> Result<Value> {
    let pdu: Map<String, Value> = serde_json::from_str(&event.json)
        .map_err(|e| Error::Internal(format!("stored event: {e}")))?;
    let mut out = client_fields(&pdu, &event.event_id, &event.room_id);
    let mut unsigned = match pdu.get("unsigned") {
        Some(Value::Object(unsigned)) => unsigned.clone(),
        _ => Map::new(),
    };
    if let Some(ts) = pdu.get("origin_server_ts").and_then(Value::as_i64) {
        unsigned.insert("age".into(), (now_ms() - ts).max(0).into());
    }
    out.insert("unsigned".into(), Value::Object(unsigned));
    Ok(Value::Object(out))
}
