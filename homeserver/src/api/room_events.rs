//! Room events: send, state, redact, and the read paths (`/messages`,
//! `/context`, `/event`, `/state`, `/members`, `/joined_members`).

use std::{collections::BTreeMap, sync::Arc};

use poem::web::Data;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use ruma::OwnedEventId;
use serde_json::{Map, Value};

use super::{AccessToken, Tag, parse_event_id};
use crate::{
    directory::parse_room_id,
    error::{Error, Result},
    rooms::{Direction, EventFilter, Pagination},
    servers::history,
    state::AppState,
};

type Content = BTreeMap<String, Value>;

#[derive(Object)]
struct EventIdResponse {
    event_id: String,
}

impl From<OwnedEventId> for EventIdResponse {
    fn from(event_id: OwnedEventId) -> Self {
        EventIdResponse {
            event_id: event_id.to_string(),
        }
    }
}

#[derive(Object)]
struct RedactRequest {
    #[oai(deserialize_with = "crate::api::strings_only")]
    reason: Option<String>,
}

#[derive(Object)]
struct MembersResponse {
    chunk: Vec<Value>,
}

#[derive(Object)]
struct RoomMember {
    display_name: Option<String>,
    avatar_url: Option<String>,
}

#[derive(Object)]
struct JoinedMembers {
    joined: BTreeMap<String, RoomMember>,
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct MessagesResponse {
    chunk: Vec<Value>,
    start: String,
    /// Absent when there is nothing further to read.
    end: Option<String>,
    state: Option<Vec<Value>>,
}

#[derive(Object)]
struct ContextResponse {
    event: Value,
    events_before: Vec<Value>,
    events_after: Vec<Value>,
    start: String,
    end: String,
    state: Vec<Value>,
}

fn object(content: Content) -> Value {
    Value::Object(content.into_iter().collect::<Map<String, Value>>())
}

/// Parses the `filter` query parameter: an inline `RoomEventFilter` as JSON.
fn parse_filter(filter: Option<&str>) -> Result<EventFilter> {
    let Some(filter) = filter else {
        return Ok(EventFilter::default());
    };
    let value: Value = serde_json::from_str(filter)
        .map_err(|e| Error::InvalidParam(format!("filter must be a JSON RoomEventFilter: {e}")))?;
    let strings = |key: &str| -> Option<Vec<String>> {
        value.get(key)?.as_array().map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
    };
    Ok(EventFilter {
        types: strings("types"),
        not_types: strings("not_types").unwrap_or_default(),
        senders: strings("senders"),
        not_senders: strings("not_senders").unwrap_or_default(),
        limit: value
            .get("limit")
            .and_then(Value::as_u64)
            .and_then(|l| usize::try_from(l).ok()),
        lazy_load_members: value
            .get("lazy_load_members")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// `format=event` returns the whole state event, `content` (default) just its content.
fn state_response(event: Value, format: Option<&str>) -> Result<Value> {
    match format {
        None | Some("content") => Ok(event["content"].clone()),
        Some("event") => Ok(event),
        Some(other) => Err(Error::InvalidParam(format!("unknown format {other}"))),
    }
}

pub struct RoomEventsApi;

#[OpenApi(tag = "Tag::Rooms")]
impl RoomEventsApi {
    /// # PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}
    /// Sends a message event. Retrying with the same transaction id returns the same event.
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/send/:event_type/:txn_id",
        method = "put",
        operation_id = "sendMessage"
    )]
    async fn send(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        event_type: Path<String>,
        txn_id: Path<String>,
        body: Json<Content>,
    ) -> Result<Json<EventIdResponse>> {
        let room_id = parse_room_id(&room_id.0)?;
        let event_id = state
            .rooms
            .send_message(room_id, &auth.0, &event_type.0, object(body.0), &txn_id.0)
            .await?;
        Ok(Json(event_id.into()))
    }

    /// # PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}
    /// Sets room state, e.g. `m.room.name` to rename a group.
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/state/:event_type/:state_key",
        method = "put",
        operation_id = "setRoomStateWithKey"
    )]
    async fn put_state(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        event_type: Path<String>,
        state_key: Path<String>,
        body: Json<Content>,
    ) -> Result<Json<EventIdResponse>> {
        let room_id = parse_room_id(&room_id.0)?;
        let event_id = state
            .rooms
            .send_state(
                room_id,
                &auth.0,
                &event_type.0,
                &state_key.0,
                object(body.0),
            )
            .await?;
        Ok(Json(event_id.into()))
    }

    /// # PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}
    /// Sets room state with an empty state key (also reached with a trailing slash).
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/state/:event_type",
        method = "put",
        operation_id = "setRoomState"
    )]
    async fn put_state_empty_key(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        event_type: Path<String>,
        body: Json<Content>,
    ) -> Result<Json<EventIdResponse>> {
        let room_id = parse_room_id(&room_id.0)?;
        let event_id = state
            .rooms
            .send_state(room_id, &auth.0, &event_type.0, "", object(body.0))
            .await?;
        Ok(Json(event_id.into()))
    }

    /// # GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/state/:event_type/:state_key",
        method = "get",
        operation_id = "getRoomStateWithKey"
    )]
    async fn get_state(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        event_type: Path<String>,
        state_key: Path<String>,
        format: Query<Option<String>>,
    ) -> Result<Json<Value>> {
        let room_id = parse_room_id(&room_id.0)?;
        let event = state
            .rooms
            .state_event(room_id, &auth.0.user_id, &event_type.0, &state_key.0)
            .await?;
        Ok(Json(state_response(event, format.0.as_deref())?))
    }

    /// # GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}
    /// State with an empty state key (also reached with a trailing slash).
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/state/:event_type",
        method = "get",
        operation_id = "getRoomState"
    )]
    async fn get_state_empty_key(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        event_type: Path<String>,
        format: Query<Option<String>>,
    ) -> Result<Json<Value>> {
        let room_id = parse_room_id(&room_id.0)?;
        let event = state
            .rooms
            .state_event(room_id, &auth.0.user_id, &event_type.0, "")
            .await?;
        Ok(Json(state_response(event, format.0.as_deref())?))
    }

    /// # GET /_matrix/client/v3/rooms/{roomId}/state
    /// The whole room state the user may see.
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/state",
        method = "get",
        operation_id = "getRoomStateEvents"
    )]
    async fn all_state(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
    ) -> Result<Json<Vec<Value>>> {
        Ok(Json(
            state
                .rooms
                .state(parse_room_id(&room_id.0)?, &auth.0.user_id)
                .await?,
        ))
    }

    /// # PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}
    /// Redacts an event: its content is stripped for everyone.
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/redact/:event_id/:txn_id",
        method = "put",
        operation_id = "redactEvent"
    )]
    async fn redact(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        event_id: Path<String>,
        txn_id: Path<String>,
        body: Json<Option<RedactRequest>>,
    ) -> Result<Json<EventIdResponse>> {
        let room_id = parse_room_id(&room_id.0)?;
        let target = parse_event_id(&event_id.0)?;
        let reason = body.0.and_then(|b| b.reason);
        let event_id = state
            .rooms
            .redact(room_id, &auth.0, target, reason, &txn_id.0)
            .await?;
        Ok(Json(event_id.into()))
    }

    /// # GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/event/:event_id",
        method = "get",
        operation_id = "getOneRoomEvent"
    )]
    async fn event(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        event_id: Path<String>,
    ) -> Result<Json<Value>> {
        let room_id = parse_room_id(&room_id.0)?;
        Ok(Json(
            state
                .rooms
                .event(room_id, &auth.0.user_id, parse_event_id(&event_id.0)?)
                .await?,
        ))
    }

    /// # GET /_matrix/client/v3/rooms/{roomId}/members
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/members",
        method = "get",
        operation_id = "getMembersByRoom"
    )]
    async fn members(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        membership: Query<Option<String>>,
        not_membership: Query<Option<String>>,
    ) -> Result<Json<MembersResponse>> {
        let room_id = parse_room_id(&room_id.0)?;
        let chunk = state
            .rooms
            .members(
                room_id,
                &auth.0.user_id,
                membership.0.as_deref(),
                not_membership.0.as_deref(),
            )
            .await?;
        Ok(Json(MembersResponse { chunk }))
    }

    /// # GET /_matrix/client/v3/rooms/{roomId}/joined_members
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/joined_members",
        method = "get",
        operation_id = "getJoinedMembersByRoom"
    )]
    async fn joined_members(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
    ) -> Result<Json<JoinedMembers>> {
        let room_id = parse_room_id(&room_id.0)?;
        let members = state.rooms.joined_members(room_id, &auth.0.user_id).await?;
        let joined = members
            .into_iter()
            .map(|(user_id, content)| {
                let text = |key: &str| content.get(key).and_then(Value::as_str).map(str::to_owned);
                (
                    user_id,
                    RoomMember {
                        display_name: text("displayname"),
                        avatar_url: text("avatar_url"),
                    },
                )
            })
            .collect();
        Ok(Json(JoinedMembers { joined }))
    }

    /// # GET /_matrix/client/v3/rooms/{roomId}/messages
    /// Paginates the timeline (`dir=b` backwards from `from`, `dir=f` forwards).
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/messages",
        method = "get",
        operation_id = "getRoomEvents"
    )]
    #[allow(clippy::too_many_arguments)] // one argument per query parameter of the spec
    async fn messages(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
        dir: Query<Option<String>>,
        limit: Query<Option<u32>>,
        filter: Query<Option<String>>,
    ) -> Result<Json<MessagesResponse>> {
        let room_id = parse_room_id(&room_id.0)?;
        let dir = match dir.0.as_deref() {
            Some("b") | None => Direction::Backward,
            Some("f") => Direction::Forward,
            Some(other) => {
                return Err(Error::InvalidParam(format!(
                    "dir must be b or f, not {other}"
                )));
            }
        };
        let request = Pagination {
            from: from.0,
            to: to.0,
            dir,
            limit: limit.0.map_or(10, |l| usize::try_from(l).unwrap_or(1000)),
            filter: parse_filter(filter.0.as_deref())?,
        };
        let mut page = state
            .rooms
            .messages(room_id, &auth.0.user_id, &request)
            .await?;
        // At the start of the room's history here: perhaps more is elsewhere.
        if request.dir == Direction::Backward
            && page.end.is_none()
            && history::fetch_older(&state, room_id, request.limit).await?
        {
            page = state
                .rooms
                .messages(room_id, &auth.0.user_id, &request)
                .await?;
        }
        let state_events = (!page.state.is_empty()).then_some(page.state);
        Ok(Json(MessagesResponse {
            chunk: page.chunk,
            start: page.start,
            end: page.end,
            state: state_events,
        }))
    }

    /// # GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}
    /// An event with the events around it.
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/context/:event_id",
        method = "get",
        operation_id = "getEventContext"
    )]
    async fn context(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        event_id: Path<String>,
        limit: Query<Option<u32>>,
        filter: Query<Option<String>>,
    ) -> Result<Json<ContextResponse>> {
        let room_id = parse_room_id(&room_id.0)?;
        let filter = parse_filter(filter.0.as_deref())?;
        let limit = limit.0.map_or(10, |l| usize::try_from(l).unwrap_or(100));
        let context = state
            .rooms
            .context(
                room_id,
                &auth.0.user_id,
                parse_event_id(&event_id.0)?,
                limit,
                &filter,
            )
            .await?;
        Ok(Json(ContextResponse {
            event: context.event,
            events_before: context.events_before,
            events_after: context.events_after,
            start: context.start,
            end: context.end,
            state: context.state,
        }))
    }
}
