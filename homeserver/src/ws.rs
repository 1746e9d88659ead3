//! The WebSocket at `/_teatime/ws`: a faster door into the same streams as
//! `/sync`. Each socket holds a sync token; whenever the notifier reports a
//! change in one of the user's rooms, the socket runs the incremental sync
//! from its token and sends the result as frames. A slow client therefore
//! gets larger batches, never an unbounded queue: nothing is buffered per
//! socket beyond the frames being written.
//!
//! Frames are JSON text `{"type": ...}`; the protocol is described in
//! `docs/websocket.md`.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use poem::{
    IntoResponse, Request, Response, handler,
    http::header,
    web::{
        Data,
        websocket::{CloseCode, Message, WebSocket, WebSocketStream},
    },
};
use ruma::EventId;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sfu::{IceCandidate, ParticipantsChanged, Signal, SignalMessage};
use tokio::sync::{
    broadcast::{self, error::RecvError},
    mpsc,
};

use crate::{
    auth::Authed,
    directory::parse_room_id,
    ephemeral::ReceiptType,
    error::{Error, Result},
    servers,
    state::AppState,
    sync::{Change, SyncFilter, SyncRequest, SyncToken},
};

/// How long a client has to authenticate after connecting.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeline events per room a socket catches up with at once.
const CATCH_UP_LIMIT: usize = 1000;
/// The largest frame a client may send.
const MAX_FRAME_BYTES: usize = 128 * 1024;
/// Read buffer per socket.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Frames a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum ClientFrame {
    #[serde(rename = "auth")]
    Auth {
        token: String,
        since: Option<String>,
    },
    #[serde(rename = "message.send")]
    MessageSend {
        room_id: String,
        txn_id: String,
        content: Map<String, Value>,
        event_type: Option<String>,
    },
    #[serde(rename = "typing.start")]
    TypingStart {
        room_id: String,
        timeout_ms: Option<u64>,
    },
    #[serde(rename = "typing.stop")]
    TypingStop { room_id: String },
    #[serde(rename = "room.join")]
    RoomJoin {
        room: String,
        via: Option<Vec<String>>,
    },
    #[serde(rename = "room.leave")]
    RoomLeave { room_id: String },
    #[serde(rename = "receipt.send")]
    ReceiptSend { room_id: String, event_id: String },
    #[serde(rename = "call.join")]
    CallJoin { room_id: String, sdp: String },
    #[serde(rename = "call.answer")]
    CallAnswer { room_id: String, sdp: String },
    #[serde(rename = "call.candidate")]
    CallCandidate {
        room_id: String,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
    },
    #[serde(rename = "call.leave")]
    CallLeave { room_id: String },
    #[serde(rename = "ping")]
    Ping,
}

/// The `type` of every frame a client may send.
const CLIENT_FRAMES: &[&str] = &[
    "auth",
    "message.send",
    "typing.start",
    "typing.stop",
    "room.join",
    "room.leave",
    "receipt.send",
    "call.join",
    "call.answer",
    "call.candidate",
    "call.leave",
    "ping",
];

/// The calls this socket joined (room -> session) and the queue the SFU's
/// messages for them arrive on.
struct SocketCalls {
    signals: mpsc::UnboundedSender<Signal>,
    joined: HashMap<String, u64>,
}

impl SocketCalls {
    /// Leaves the calls of rooms the user is no longer joined to (or all).
    async fn leave_except(&mut self, state: &AppState, user_id: &str, keep: &HashSet<String>) {
        let gone: Vec<(String, u64)> = self
            .joined
            .iter()
            .filter(|(room, _)| !keep.contains(*room))
            .map(|(room, session)| (room.clone(), *session))
            .collect();
        for (room, session) in gone {
            self.joined.remove(&room);
            state.calls.leave(user_id, &room, session).await;
        }
    }
}

/// The frame telling a client what the SFU has for it, if any.
fn signal_frame(calls: &mut SocketCalls, signal: Signal) -> Option<Value> {
    let room_id = signal.room;
    match signal.message {
        SignalMessage::Offer { sdp } => {
            Some(json!({ "type": "call.offer", "room_id": room_id, "sdp": sdp }))
        }
        SignalMessage::Candidate(candidate) => Some(json!({
            "type": "call.candidate",
            "room_id": room_id,
            "candidate": candidate.candidate,
            "sdp_mid": candidate.sdp_mid,
            "sdp_mline_index": candidate.sdp_mline_index,
        })),
        // Out of the call: its connection failed, or another join of the
        // user (another device, a reconnect) replaced this one.
        SignalMessage::Ended { session } => {
            if calls.joined.get(&room_id) != Some(&session) {
                return None;
            }
            calls.joined.remove(&room_id);
            Some(json!({ "type": "call.ended", "room_id": room_id }))
        }
    }
}

/// `call.participants`: who is in the room's call, and the MediaStream id
/// (`a=msid`) each one's tracks arrive under.
fn participants_frame(change: &ParticipantsChanged) -> Value {
    let user_ids: Vec<&str> = change.participants.iter().map(|p| p.id.as_str()).collect();
    let streams: Map<String, Value> = change
        .participants
        .iter()
        .map(|p| (p.stream_id.clone(), Value::from(p.id.as_str())))
        .collect();
    json!({
        "type": "call.participants",
        "room_id": change.room,
        "user_ids": user_ids,
        "streams": streams,
    })
}

type Sink = SplitSink<WebSocketStream, Message>;

/// `call.participants` for each of `rooms` with a call going on, so a socket
/// that just connected (or a member who just joined) sees calls already under
/// way; later changes follow as they happen. `false` when the socket is gone.
async fn announce_calls<'a>(
    state: &AppState,
    sink: &mut Sink,
    rooms: impl Iterator<Item = &'a String>,
) -> bool {
    for room in rooms {
        let participants = state.calls.sfu().participants(room).await;
        if participants.is_empty() {
            continue;
        }
        let change = ParticipantsChanged {
            room: room.clone(),
            participants,
        };
        if !send(sink, &participants_frame(&change)).await {
            return false;
        }
    }
    true
}

fn error_frame(error: &Error, re: Option<&str>) -> Value {
    let mut frame = error.to_matrix_json();
    frame["type"] = "error".into();
    if let Some(re) = re {
        frame["re"] = re.into();
    }
    frame
}

async fn send(sink: &mut Sink, frame: &Value) -> bool {
    sink.send(Message::Text(frame.to_string())).await.is_ok()
}

fn bearer(req: &Request) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

/// `GET /_teatime/ws`: upgrades to the WebSocket. A bearer token in the
/// upgrade request authenticates at once (an invalid one is refused before
/// the upgrade); otherwise the first frame must be `auth`.
#[handler]
pub async fn websocket(req: &Request, ws: WebSocket, state: Data<&Arc<AppState>>) -> Response {
    let state = Arc::clone(state.0);
    let ip = req
        .remote_addr()
        .as_socket_addr()
        .map(|a| a.ip().to_string());
    let authed = match bearer(req) {
        Some(token) => match state.sessions.authenticate(&token, ip).await {
            Ok(authed) => Some(authed),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let since = req
        .uri()
        .query()
        .and_then(|query| crate::http::form_value(query, "since"));
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        // tungstenite's default 128 KiB read buffer per socket would cost
        // over a gigabyte for 10,000 idle connections; frames are small.
        .read_buffer_size(READ_BUFFER_BYTES);
    let sockets = state.sockets.clone();
    ws.config(config)
        .on_upgrade(move |socket| sockets.track_future(serve(state, socket, authed, since)))
        .into_response()
}

/// Waits for the `auth` frame.
async fn authenticate(
    state: &AppState,
    stream: &mut futures_util::stream::SplitStream<WebSocketStream>,
) -> Result<(Authed, Option<String>)> {
    let frame = tokio::time::timeout(AUTH_TIMEOUT, stream.next())
        .await
        .map_err(|_| Error::MissingToken)?
        .ok_or(Error::MissingToken)?
        .map_err(|_| Error::MissingToken)?;
    let Message::Text(text) = frame else {
        return Err(Error::NotJson("frames are JSON text".into()));
    };
    match serde_json::from_str::<ClientFrame>(&text) {
        Ok(ClientFrame::Auth { token, since }) => {
            Ok((state.sessions.authenticate(&token, None).await?, since))
        }
        Ok(_) => Err(Error::MissingToken),
        Err(e) => Err(Error::BadJson(format!("expected an auth frame: {e}"))),
    }
}

async fn serve(
    state: Arc<AppState>,
    socket: WebSocketStream,
    authed: Option<Authed>,
    since: Option<String>,
) {
    let (mut sink, mut stream) = socket.split();
    let (authed, since) = match authed {
        Some(authed) => (authed, since),
        None => match authenticate(&state, &mut stream).await {
            Ok(authenticated) => authenticated,
            Err(e) => {
                send(&mut sink, &error_frame(&e, Some("auth"))).await;
                let _ = sink.close().await;
                return;
            }
        },
    };
    // Subscribe before reading positions, so no change slips between them.
    let changes = state.syncer.subscribe();
    let participants = state.calls.sfu().subscribe();
    let start = match since.as_deref().map(SyncToken::parse).transpose() {
        Ok(Some(token)) => Ok(token),
        Ok(None) => state.syncer.current_token().await,
        Err(e) => Err(e),
    };
    let mut position = match start {
        Ok(position) => position,
        Err(e) => {
            send(&mut sink, &error_frame(&e, Some("auth"))).await;
            let _ = sink.close().await;
            return;
        }
    };
    let user_id = authed.user_id.to_string();
    let welcome = json!({
        "type": "auth.success",
        "user_id": user_id,
        "device_id": authed.device_id.as_str(),
        "token": position.to_string(),
    });
    if !send(&mut sink, &welcome).await {
        return;
    }
    let rooms = match deliver(&state, &mut sink, &authed, &mut position).await {
        Ok(rooms) => rooms.unwrap_or_default(),
        Err(()) => return,
    };
    if !announce_calls(&state, &mut sink, rooms.iter()).await {
        return;
    }
    let (signals, signal_queue) = mpsc::unbounded_channel();
    let mut calls = SocketCalls {
        signals,
        joined: HashMap::new(),
    };
    let socket = Socket {
        state: &state,
        authed: &authed,
        sink: &mut sink,
        stream: &mut stream,
        calls: &mut calls,
        signal_queue,
        changes,
        participants,
        rooms,
        position,
    };
    let close = socket.converse().await;
    // A closed socket leaves its calls.
    calls
        .leave_except(&state, authed.user_id.as_str(), &HashSet::new())
        .await;
    if close {
        let _ = sink.close().await;
    }
}

/// An authenticated socket's conversation.
struct Socket<'a> {
    state: &'a Arc<AppState>,
    authed: &'a Authed,
    sink: &'a mut Sink,
    stream: &'a mut futures_util::stream::SplitStream<WebSocketStream>,
    calls: &'a mut SocketCalls,
    signal_queue: mpsc::UnboundedReceiver<Signal>,
    changes: broadcast::Receiver<Change>,
    participants: broadcast::Receiver<ParticipantsChanged>,
    /// The rooms the user is joined to.
    rooms: HashSet<String>,
    position: SyncToken,
}

impl Socket<'_> {
    /// Serves frames both ways until the socket ends; `true` when the
    /// socket is still open and should be closed.
    async fn converse(mut self) -> bool {
        let state = self.state;
        let user_id = self.authed.user_id.to_string();
        loop {
            tokio::select! {
                () = state.stopping.cancelled() => {
                    // 1012 (service restart): reconnect, resuming from the last token.
                    let goodbye = Message::Close(Some((
                        CloseCode::Restart,
                        "the server is restarting; reconnect with your last token".into(),
                    )));
                    let _ = self.sink.send(goodbye).await;
                    return false;
                }
                frame = self.stream.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Binary(_))) => {
                            let error = Error::NotJson("frames are JSON text".into());
                            if !send(self.sink, &error_frame(&error, None)).await { return true }
                            continue;
                        }
                        _ => return true,
                    };
                    for reply in handle(state, self.authed, self.calls, &text).await {
                        if !send(self.sink, &reply).await { return false }
                    }
                }
                Some(signal) = self.signal_queue.recv() => {
                    if let Some(frame) = signal_frame(self.calls, signal)
                        && !send(self.sink, &frame).await
                    {
                        return false;
                    }
                }
                change = self.participants.recv() => {
                    match change {
                        Ok(change) if self.rooms.contains(&change.room) => {
                            if !send(self.sink, &participants_frame(&change)).await { return false }
                        }
                        Ok(_) => {}
                        Err(RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "socket missed call participant changes");
                        }
                        Err(RecvError::Closed) => return true,
                    }
                }
                change = self.changes.recv() => {
                    let relevant = match change {
                        Ok(Change::Room { room_id, member }) => {
                            self.rooms.contains(&room_id) || member.as_deref() == Some(user_id.as_str())
                        }
                        Ok(Change::User(user)) => user == user_id,
                        Ok(Change::Typing { room_id, .. }) => self.rooms.contains(&room_id),
                        Ok(Change::SessionsEnded(_) | Change::Outbox(_)) => false,
                        Ok(Change::Missed) => true,
                        Err(RecvError::Lagged(_)) => true,
                        Err(RecvError::Closed) => return true,
                    };
                    if relevant {
                        match deliver(state, self.sink, self.authed, &mut self.position).await {
                            Ok(Some(now_in)) => {
                                let entered: Vec<&String> = now_in.difference(&self.rooms).collect();
                                if !announce_calls(state, self.sink, entered.into_iter()).await {
                                    return false;
                                }
                                self.rooms = now_in;
                                // Members who left (or were kicked) leave the call too.
                                self.calls.leave_except(state, &user_id, &self.rooms).await;
                            }
                            Ok(None) => {}
                            Err(()) => return false,
                        }
                    }
                }
            }
        }
    }
}

/// Sends everything after `position` and moves it forward; returns the rooms
/// the user is in (`None` when the sync failed and the client was told).
/// `Err` when the socket is gone.
async fn deliver(
    state: &AppState,
    sink: &mut Sink,
    authed: &Authed,
    position: &mut SyncToken,
) -> Result<Option<HashSet<String>>, ()> {
    let user_id = authed.user_id.as_str();
    let request = SyncRequest {
        // Sockets send neither unread counts nor presence.
        counts_and_presence: false,
        device_id: authed.device_id.to_string(),
        since: Some(*position),
        timeout: Duration::ZERO,
        full_state: false,
        filter: SyncFilter {
            timeline_limit: Some(CATCH_UP_LIMIT),
            ..SyncFilter::default()
        },
    };
    let (mut result, rooms) = match state.syncer.sync_once(user_id, &request).await {
        Ok(synced) => synced,
        Err(e) => {
            tracing::warn!(error = %e, "websocket sync failed");
            return if send(sink, &error_frame(&e, None)).await {
                Ok(None)
            } else {
                Err(())
            };
        }
    };
    let next = SyncToken::parse(&result.next_batch).map_err(|_| ())?;

    for (room_id, invite_state) in std::mem::take(&mut result.invite) {
        if !send(
            sink,
            &json!({ "type": "invite", "room_id": room_id, "invite_state": invite_state }),
        )
        .await
        {
            return Err(());
        }
    }
    // Timeline events of every room, in stream order. A room new to the
    // client brings its history in /sync; the socket sends only what is new.
    let mut events: Vec<(i64, String, Value)> = Vec::new();
    for (room_id, update) in result.join.iter_mut().chain(result.leave.iter_mut()) {
        let timeline = std::mem::take(&mut update.timeline.events);
        for (event, at) in timeline
            .into_iter()
            .zip(update.timeline.positions.iter().copied())
        {
            if at > position.events {
                events.push((at, room_id.clone(), event));
            }
        }
    }
    events.sort_by_key(|(at, _, _)| *at);
    for (at, room_id, event) in events {
        let resume = SyncToken {
            events: at,
            ..*position
        };
        let own_membership = event["type"] == "m.room.member" && event["state_key"] == user_id;
        let membership = event["content"]["membership"].clone();
        let frame = json!({ "type": "message.new", "room_id": room_id, "event": event, "token": resume.to_string() });
        if !send(sink, &frame).await {
            return Err(());
        }
        if own_membership
            && !send(
                sink,
                &json!({ "type": "membership", "room_id": room_id, "membership": membership }),
            )
            .await
        {
            return Err(());
        }
    }
    for (room_id, update) in &result.join {
        for event in &update.ephemeral {
            let frame = match event["type"].as_str() {
                Some("m.typing") => {
                    json!({ "type": "typing", "room_id": room_id, "user_ids": event["content"]["user_ids"] })
                }
                Some("m.receipt") => {
                    json!({ "type": "receipt", "room_id": room_id, "content": event["content"] })
                }
                _ => continue,
            };
            if !send(sink, &frame).await {
                return Err(());
            }
        }
    }
    if !result.to_device.is_empty()
        && !send(
            sink,
            &json!({ "type": "to_device", "events": result.to_device }),
        )
        .await
    {
        return Err(());
    }
    *position = next;
    Ok(Some(rooms))
}

/// Carries out one client frame and returns the frames to answer with.
async fn handle(
    state: &AppState,
    authed: &Authed,
    calls: &mut SocketCalls,
    text: &str,
) -> Vec<Value> {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => return vec![error_frame(&Error::NotJson(format!("not JSON: {e}")), None)],
    };
    let kind = value["type"].as_str().unwrap_or_default().to_owned();
    let frame: ClientFrame = match serde_json::from_value(value) {
        Ok(frame) => frame,
        Err(e) => {
            let error = if CLIENT_FRAMES.contains(&kind.as_str()) {
                Error::BadJson(e.to_string())
            } else {
                Error::Unrecognized {
                    status: poem::http::StatusCode::BAD_REQUEST,
                }
            };
            return vec![error_frame(&error, Some(&kind))];
        }
    };
    let re = match &frame {
        ClientFrame::MessageSend { txn_id, .. } => txn_id.clone(),
        _ => kind,
    };
    match carry_out(state, authed, calls, frame).await {
        Ok(reply) => reply,
        Err(e) => vec![error_frame(&e, Some(&re))],
    }
}

async fn carry_out(
    state: &AppState,
    authed: &Authed,
    calls: &mut SocketCalls,
    frame: ClientFrame,
) -> Result<Vec<Value>> {
    match frame {
        ClientFrame::Auth { .. } => Err(Error::Unknown("already authenticated".into())),
        ClientFrame::MessageSend {
            room_id,
            txn_id,
            content,
            event_type,
        } => {
            let room_id = parse_room_id(&room_id)?;
            let kind = event_type.as_deref().unwrap_or("m.room.message");
            let event_id = state
                .rooms
                .send_message(room_id, authed, kind, Value::Object(content), &txn_id)
                .await?;
            Ok(vec![
                json!({ "type": "message.sent", "txn_id": txn_id, "event_id": event_id }),
            ])
        }
        ClientFrame::TypingStart {
            room_id,
            timeout_ms,
        } => {
            let timeout = Duration::from_millis(timeout_ms.unwrap_or(30_000));
            state
                .typing
                .update(authed, parse_room_id(&room_id)?, Some(timeout))
                .await?;
            Ok(Vec::new())
        }
        ClientFrame::TypingStop { room_id } => {
            state
                .typing
                .update(authed, parse_room_id(&room_id)?, None)
                .await?;
            Ok(Vec::new())
        }
        ClientFrame::RoomJoin { room, via } => {
            let (room_id, mut servers) = servers::membership::resolve_room(state, &room).await?;
            for name in via.into_iter().flatten() {
                servers.push(ruma::ServerName::parse(&name).map_err(|e| {
                    Error::InvalidParam(format!("invalid server name {name}: {e}"))
                })?);
            }
            servers::membership::join(state, authed, &room_id, &servers, None).await?;
            Ok(vec![json!({ "type": "room.joined", "room_id": room_id })])
        }
        ClientFrame::RoomLeave { room_id } => {
            let room_id = parse_room_id(&room_id)?;
            servers::membership::leave(state, authed, room_id, None).await?;
            Ok(vec![json!({ "type": "room.left", "room_id": room_id })])
        }
        ClientFrame::ReceiptSend { room_id, event_id } => {
            let event_id = <&EventId>::try_from(event_id.as_str())
                .map_err(|e| Error::InvalidParam(format!("invalid event id: {e}")))?;
            state
                .receipts
                .send(
                    authed,
                    parse_room_id(&room_id)?,
                    ReceiptType::Read,
                    event_id,
                    None,
                )
                .await?;
            Ok(Vec::new())
        }
        ClientFrame::CallJoin { room_id, sdp } => {
            let room_id = parse_room_id(&room_id)?;
            let joined = state
                .calls
                .join(authed, room_id, sdp, calls.signals.clone())
                .await?;
            calls.joined.insert(room_id.to_string(), joined.session);
            let ice_servers = state.calls.ice_servers(authed.user_id.as_str());
            Ok(vec![
                json!({ "type": "call.config", "room_id": room_id, "ice_servers": ice_servers }),
                json!({ "type": "call.answer", "room_id": room_id, "sdp": joined.sdp }),
            ])
        }
        ClientFrame::CallAnswer { room_id, sdp } => {
            state
                .calls
                .answer(authed, parse_room_id(&room_id)?, sdp)
                .await?;
            Ok(Vec::new())
        }
        ClientFrame::CallCandidate {
            room_id,
            candidate,
            sdp_mid,
            sdp_mline_index,
        } => {
            let candidate = IceCandidate {
                candidate,
                sdp_mid,
                sdp_mline_index,
            };
            state
                .calls
                .add_candidate(authed, parse_room_id(&room_id)?, candidate)
                .await?;
            Ok(Vec::new())
        }
        ClientFrame::CallLeave { room_id } => {
            let room_id = parse_room_id(&room_id)?;
            let session = calls
                .joined
                .remove(room_id.as_str())
                .ok_or(Error::Call(sfu::Error::NotInCall))?;
            state
                .calls
                .leave(authed.user_id.as_str(), room_id.as_str(), session)
                .await;
            Ok(Vec::new())
        }
        ClientFrame::Ping => Ok(vec![json!({ "type": "pong" })]),
    }
}
