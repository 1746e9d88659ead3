//! Typing notifications, read receipts and read markers.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use poem::web::Data;
use poem_openapi::{Object, OpenApi, param::Path, payload::Json};
use ruma::EventId;
use serde_json::{Map, Value};

use super::{AccessToken, Tag, parse_event_id, session::Empty};
use crate::{
    directory::parse_room_id,
    ephemeral::ReceiptType,
    error::{Error, Result},
    state::AppState,
};

#[derive(Object)]
struct TypingRequest {
    typing: bool,
    /// How long the user is typing for, in milliseconds (default 30 s, at most 120 s).
    timeout: Option<u64>,
}

#[derive(Object)]
struct ReceiptRequest {
    /// The thread the receipt is for; absent or `main` for the main timeline.
    #[oai(deserialize_with = "crate::api::strings_only")]
    thread_id: Option<String>,
}

#[derive(Object)]
struct ReadMarkers {
    #[oai(rename = "m.fully_read", deserialize_with = "crate::api::strings_only")]
    fully_read: Option<String>,
    #[oai(rename = "m.read", deserialize_with = "crate::api::strings_only")]
    read: Option<String>,
    #[oai(
        rename = "m.read.private",
        deserialize_with = "crate::api::strings_only"
    )]
    read_private: Option<String>,
}

/// Sets the `m.fully_read` marker: room account data the server manages.
async fn set_fully_read(
    state: &AppState,
    auth: &AccessToken,
    room_id: &ruma::RoomId,
    event_id: &EventId,
) -> Result<()> {
    let user_id = auth.0.user_id.as_str();
    state
        .store
        .require_joined(room_id.as_str(), user_id)
        .await?;
    let content: Map<String, Value> = [("event_id".to_owned(), Value::from(event_id.as_str()))]
        .into_iter()
        .collect();
    state
        .account_data
        .set_for_user(&auth.0.user_id, Some(room_id), "m.fully_read", &content)
        .await?;
    Ok(())
}

#[derive(Object)]
struct SendToDevice {
    /// User id to device id (or `*`) to message content.
    messages: BTreeMap<String, BTreeMap<String, Value>>,
}

#[derive(Object)]
struct SetPresence {
    /// `online`, `unavailable` or `offline`.
    #[oai(deserialize_with = "crate::api::strings_only")]
    presence: String,
    #[oai(deserialize_with = "crate::api::strings_only")]
    status_msg: Option<String>,
}

pub struct EphemeralApi;

#[OpenApi(tag = "Tag::Sync")]
impl EphemeralApi {
    /// # PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}
    /// Says the user is (or stopped) typing in the room.
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/typing/:user_id",
        method = "put",
        operation_id = "setTyping"
    )]
    async fn typing(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        user_id: Path<String>,
        body: Json<TypingRequest>,
    ) -> Result<Json<Empty>> {
        let room_id = parse_room_id(&room_id.0)?;
        let me = auth.0.user_id.as_str();
        if user_id.0 != me {
            return Err(Error::Forbidden(
                "you can only set your own typing state".into(),
            ));
        }

        let timeout = body
            .0
            .typing
            .then(|| Duration::from_millis(body.0.timeout.unwrap_or(30_000)));
        state.typing.update(&auth.0, room_id, timeout).await?;
        Ok(Json(Empty {}))
    }

    /// # POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}
    /// Records how far the user has read (`m.read`, `m.read.private` or `m.fully_read`).
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/receipt/:receipt_type/:event_id",
        method = "post",
        operation_id = "postReceipt"
    )]
    async fn receipt(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        receipt_type: Path<String>,
        event_id: Path<String>,
        body: Json<Option<ReceiptRequest>>,
    ) -> Result<Json<Empty>> {
        let room_id = parse_room_id(&room_id.0)?;
        let event_id = parse_event_id(&event_id.0)?;
        let thread = body.0.and_then(|b| b.thread_id);
        let kind = match receipt_type.0.as_str() {
            "m.read" => ReceiptType::Read,
            "m.read.private" => ReceiptType::ReadPrivate,
            "m.fully_read" => {
                set_fully_read(&state, &auth, room_id, event_id).await?;
                return Ok(Json(Empty {}));
            }
            other => return Err(Error::InvalidParam(format!("unknown receipt type {other}"))),
        };
        state
            .receipts
            .send(&auth.0, room_id, kind, event_id, thread.as_deref())
            .await?;
        Ok(Json(Empty {}))
    }

    /// # PUT /_matrix/client/v3/presence/{userId}/status
    /// Sets the user's own presence.
    #[oai(
        path = "/_matrix/client/v3/presence/:user_id/status",
        method = "put",
        operation_id = "setPresence"
    )]
    async fn set_presence(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        user_id: Path<String>,
        body: Json<SetPresence>,
    ) -> Result<Json<Empty>> {
        let body = body.0;
        state
            .presence
            .set(
                &auth.0,
                &user_id.0,
                &body.presence,
                body.status_msg.as_deref(),
            )
            .await?;
        Ok(Json(Empty {}))
    }

    /// # GET /_matrix/client/v3/presence/{userId}/status
    /// A user's presence (one's own, or of someone sharing a room).
    #[oai(
        path = "/_matrix/client/v3/presence/:user_id/status",
        method = "get",
        operation_id = "getPresence"
    )]
    async fn get_presence(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        user_id: Path<String>,
    ) -> Result<Json<Value>> {
        Ok(Json(state.presence.get(&auth.0, &user_id.0).await?))
    }

    /// # PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}
    /// Sends messages straight to devices; a repeated transaction id sends nothing.
    #[oai(
        path = "/_matrix/client/v3/sendToDevice/:event_type/:txn_id",
        method = "put",
        operation_id = "sendToDevice"
    )]
    async fn send_to_device(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        event_type: Path<String>,
        txn_id: Path<String>,
        body: Json<SendToDevice>,
    ) -> Result<Json<Empty>> {
        state
            .to_device
            .send(&auth.0, &event_type.0, &txn_id.0, body.0.messages)
            .await?;
        Ok(Json(Empty {}))
    }

    /// # POST /_matrix/client/v3/rooms/{roomId}/read_markers
    /// Sets the fully-read marker and read receipts at once.
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/read_markers",
        method = "post",
        operation_id = "setReadMarker"
    )]
    async fn read_markers(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        body: Json<ReadMarkers>,
    ) -> Result<Json<Empty>> {
        let room_id = parse_room_id(&room_id.0)?;
        let body = body.0;
        if let Some(event_id) = &body.fully_read {
            set_fully_read(&state, &auth, room_id, parse_event_id(event_id)?).await?;
        }
        for (kind, event_id) in [
            (ReceiptType::Read, &body.read),
            (ReceiptType::ReadPrivate, &body.read_private),
        ] {
            if let Some(event_id) = event_id {
                state
                    .receipts
                    .send(&auth.0, room_id, kind, parse_event_id(event_id)?, None)
                    .await?;
            }
        }
        Ok(Json(Empty {}))
    }
}
