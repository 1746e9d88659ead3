//! Filters: what a client wants `/sync` (and other read paths) to send,
//! uploaded once and then named by id.
//!
//! A filter is stored as the client sent it, unknown fields included, and
//! never changes afterwards. Only its owner may create, read or use it. The
//! fields the specification defines are checked for their type (and
//! `event_format` and `limit` for their value) before storing, so that a
//! stored filter is always one the read paths can apply; a field set to
//! `null` counts as absent. Filter ids are opaque strings to clients (here:
//! the decimal key of the row).

use serde_json::{Map, Value};

use crate::{
    auth::Authed,
    error::{Error, Result},
    storage::Store,
};

/// Filters over the store.
pub struct Filters {
    store: Store,
}

/// Checks that the request is about the caller's own filters.
fn own_user(authed: &Authed, user_id: &str) -> Result<()> {
    <&ruma::UserId>::try_from(user_id)
        .map_err(|e| Error::InvalidParam(format!("invalid user id: {e}")))?;
    if authed.user_id.as_str() != user_id {
        return Err(Error::Forbidden(
            "you may only create and read your own filters".into(),
        ));
    }
    Ok(())
}

/// The type a known field of a filter must have.
#[derive(Clone, Copy)]
enum Field {
    /// A JSON boolean.
    Bool,
    /// An integer greater than 0.
    PositiveInt,
    /// An array of strings.
    Strings,
    /// `"client"` or `"federation"`.
    EventFormat,
    /// A nested object with its own known fields.
    Object(&'static [(&'static str, Field)]),
}

/// `EventFilter` (for `account_data` and `presence`).
const EVENT_FILTER: &[(&str, Field)] = &[
    ("limit", Field::PositiveInt),
    ("not_senders", Field::Strings),
    ("not_types", Field::Strings),
    ("senders", Field::Strings),
    ("types", Field::Strings),
];

/// `RoomEventFilter`, and `StateFilter`, which has the same fields.
const ROOM_EVENT_FILTER: &[(&str, Field)] = &[
    ("limit", Field::PositiveInt),
    ("not_senders", Field::Strings),
    ("not_types", Field::Strings),
    ("senders", Field::Strings),
    ("types", Field::Strings),
    ("not_rooms", Field::Strings),
    ("rooms", Field::Strings),
    ("contains_url", Field::Bool),
    ("include_redundant_members", Field::Bool),
    ("lazy_load_members", Field::Bool),
    ("unread_thread_notifications", Field::Bool),
];

/// `RoomFilter`.
const ROOM_FILTER: &[(&str, Field)] = &[
    ("account_data", Field::Object(ROOM_EVENT_FILTER)),
    ("ephemeral", Field::Object(ROOM_EVENT_FILTER)),
    ("include_leave", Field::Bool),
    ("not_rooms", Field::Strings),
    ("rooms", Field::Strings),
    ("state", Field::Object(ROOM_EVENT_FILTER)),
    ("timeline", Field::Object(ROOM_EVENT_FILTER)),
];

/// `Filter`, the request body.
const FILTER: &[(&str, Field)] = &[
    ("account_data", Field::Object(EVENT_FILTER)),
    ("event_fields", Field::Strings),
    ("event_format", Field::EventFormat),
    ("presence", Field::Object(EVENT_FILTER)),
    ("room", Field::Object(ROOM_FILTER)),
];

/// Checks the known fields of `object` (at `path`, for messages); unknown
/// fields are left alone.
fn check_object(object: &Map<String, Value>, fields: &[(&str, Field)], path: &str) -> Result<()> {
    for (name, field) in fields {
        let value = match object.get(*name) {
            None | Some(Value::Null) => continue,
            Some(value) => value,
        };
        let path = if path.is_empty() {
            (*name).to_owned()
        } else {
            format!("{path}.{name}")
        };
        check_field(value, *field, &path)?;
    }
    Ok(())
}

fn check_field(value: &Value, field: Field, path: &str) -> Result<()> {
    let bad = |expected: &str| {
        Err(Error::BadJson(format!(
            "filter field {path} must be {expected}"
        )))
    };
    match field {
        Field::Bool if !value.is_boolean() => bad("a boolean"),
        Field::PositiveInt if !matches!(value.as_u64(), Some(1..)) => {
            bad("an integer greater than 0")
        }
        Field::Strings
            if !value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)) =>
        {
            bad("an array of strings")
        }
        Field::EventFormat if !matches!(value.as_str(), Some("client" | "federation")) => {
            bad("\"client\" or \"federation\"")
        }
        Field::Object(fields) => match value.as_object() {
            Some(object) => check_object(object, fields, path),
            None => bad("an object"),
        },
        _ => Ok(()),
    }
}

/// Checks that `filter` is a `Filter` object as far as its known fields go.
pub fn validate(filter: &Value) -> Result<()> {
    let Some(object) = filter.as_object() else {
        return Err(Error::BadJson("a filter must be a JSON object".into()));
    };
    check_object(object, FILTER, "")
}

impl Filters {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// `POST /user/{userId}/filter`: stores a filter of the caller and
    /// returns its new id.
    pub async fn create(&self, authed: &Authed, user_id: &str, filter: Value) -> Result<String> {
        own_user(authed, user_id)?;
        validate(&filter)?;
        let text = serde_json::to_string(&filter)
            .map_err(|e| Error::Internal(format!("serializing a filter: {e}")))?;
        self.store.create_filter(user_id, &text).await
    }

    /// `GET /user/{userId}/filter/{filterId}`: one of the caller's filters
    /// (`M_NOT_FOUND` when they have none of that id).
    pub async fn get_own(&self, authed: &Authed, user_id: &str, filter_id: &str) -> Result<Value> {
        own_user(authed, user_id)?;
        self.get(user_id, filter_id)
            .await?
            .ok_or_else(|| Error::NotFound("unknown filter".into()))
    }

    /// The filter `filter_id` of `user_id`, as uploaded; `None` when that user
    /// has no filter of that id (another user's id included). For read paths
    /// that already know `user_id` is the caller.
    pub async fn get(&self, user_id: &str, filter_id: &str) -> Result<Option<Value>> {
        let Some(text) = self.store.filter(user_id, filter_id).await? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Internal(format!("stored filter is not JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::validate;
    use crate::error::Error;

    #[test]
    fn valid_filters_pass_with_unknown_fields_and_nulls() {
        for filter in [
            json!({}),
            json!({
                "event_format": "client",
                "event_fields": ["type", "content.body"],
                "account_data": { "limit": 1, "types": ["m.*"] },
                "presence": { "not_senders": ["@a:hs"] },
                "room": {
                    "rooms": ["!r:hs"],
                    "include_leave": false,
                    "timeline": { "limit": 10, "lazy_load_members": true, "org.x": [1] },
                    "state": { "lazy_load_members": true, "include_redundant_members": false },
                    "ephemeral": { "not_types": ["m.typing"] },
                    "account_data": { "not_rooms": [] },
                    "org.example.extra": 5,
                },
                "org.example.unknown": { "limit": "any" },
            }),
            json!({ "event_format": "federation", "room": { "timeline": { "limit": null } } }),
            json!({ "room": null, "presence": null }),
        ] {
            validate(&filter).unwrap_or_else(|e| panic!("{filter} rejected: {e}"));
        }
    }

    #[test]
    fn wrongly_typed_known_fields_are_bad_json() {
        for (filter, path) in [
            (json!([]), ""),
            (json!("filter"), ""),
            (json!({ "event_format": "matrix" }), "event_format"),
            (json!({ "event_format": 1 }), "event_format"),
            (json!({ "event_fields": "type" }), "event_fields"),
            (json!({ "event_fields": ["type", 1] }), "event_fields"),
            (json!({ "presence": { "limit": 0 } }), "presence.limit"),
            (
                json!({ "account_data": { "limit": -3 } }),
                "account_data.limit",
            ),
            (
                json!({ "room": { "timeline": { "limit": 2.5 } } }),
                "room.timeline.limit",
            ),
            (
                json!({ "room": { "timeline": { "limit": "10" } } }),
                "room.timeline.limit",
            ),
            (
                json!({ "room": { "state": { "lazy_load_members": "yes" } } }),
                "room.state.lazy_load_members",
            ),
            (
                json!({ "room": { "ephemeral": { "senders": "@a:hs" } } }),
                "room.ephemeral.senders",
            ),
            (
                json!({ "room": { "include_leave": 1 } }),
                "room.include_leave",
            ),
            (json!({ "room": { "rooms": [null] } }), "room.rooms"),
            (json!({ "room": [] }), "room"),
            (json!({ "room": { "timeline": true } }), "room.timeline"),
        ] {
            match validate(&filter) {
                Err(Error::BadJson(message)) => assert!(
                    message.contains(&format!("field {path} ")) || path.is_empty(),
                    "{filter}: {message} does not name {path}"
                ),
                other => panic!("{filter}: expected BadJson, got {other:?}"),
            }
        }
    }
}
