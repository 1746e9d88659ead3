//! The WebSocket at `/_teatime/ws`: authentication, live `message.new` in
//! order, resuming from a token with nothing missed or repeated, sending,
//! typing between sockets, and rooms a socket must never see.

mod common;

use std::time::Duration;

use common::{Backend, PASSWORD, TestServer};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async, tungstenite::Message};

on_both_backends!(
    authenticates_by_frame_or_header,
    delivers_messages_live_and_in_order,
    resumes_from_a_token_exactly_once,
    sends_messages_and_joins_rooms,
    typing_reaches_other_sockets,
    never_shows_rooms_the_user_is_not_in,
    to_device_messages_reach_the_socket,
);

struct Socket(WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>);

impl Socket {
    async fn connect(server: &TestServer) -> Socket {
        let url = format!("{}/_teatime/ws", server.base.replace("http://", "ws://"));
        let (socket, _) = connect_async(url).await.expect("websocket connects");
        Socket(socket)
    }

    /// Connects and authenticates with an `auth` frame; returns the `auth.success` frame.
    async fn login(server: &TestServer, token: &str, since: Option<&str>) -> (Socket, Value) {
        let mut socket = Socket::connect(server).await;
        let mut auth = json!({ "type": "auth", "token": token });
        if let Some(since) = since {
            auth["since"] = since.into();
        }
        socket.send(auth).await;
        let welcome = socket.next().await.expect("auth reply");
        assert_eq!(welcome["type"], "auth.success", "{welcome}");
        (socket, welcome)
    }

    async fn send(&mut self, frame: Value) {
        self.0
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("frame sent");
    }

    /// The next text frame, or `None` if none comes within two seconds.
    async fn next(&mut self) -> Option<Value> {
        loop {
            match tokio::time::timeout(Duration::from_secs(2), self.0.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Some(serde_json::from_str(&text).expect("JSON frame"));
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Err(_) => return None,
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) => return None,
            }
        }
    }

    /// The next frame of `kind`, skipping others.
    async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self
                .next()
                .await
                .unwrap_or_else(|| panic!("no {kind} frame arrived"));
            if frame["type"] == kind {
                return frame;
            }
        }
    }
}

async fn two_users(server: &TestServer) -> (String, String) {
    let alice = server.register("alice", PASSWORD).await.access_token;
    let bob = server.register("bob", PASSWORD).await.access_token;
    (alice, bob)
}

async fn authenticates_by_frame_or_header(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, _) = two_users(&server).await;
    let (_, welcome) = Socket::login(&server, &alice, None).await;
    assert_eq!(welcome["user_id"], "@alice:localhost");
    assert!(welcome["device_id"].is_string());
    assert!(welcome["token"].as_str().unwrap().starts_with('s'));

    let mut bad = Socket::connect(&server).await;
    bad.send(json!({ "type": "auth", "token": "nonsense" }))
        .await;
    let error = bad.next().await.expect("error frame");
    assert_eq!(
        (error["type"].as_str(), error["errcode"].as_str()),
        (Some("error"), Some("M_UNKNOWN_TOKEN"))
    );
    assert!(
        bad.next().await.is_none(),
        "the socket closes after a bad token"
    );

    let mut unauthenticated = Socket::connect(&server).await;
    unauthenticated.send(json!({ "type": "ping" })).await;
    assert_eq!(
        unauthenticated.next().await.expect("error")["errcode"],
        "M_MISSING_TOKEN"
    );

    // The token may come in the upgrade request instead.
    let url = format!("{}/_teatime/ws", server.base.replace("http://", "ws://"));
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {alice}").parse().unwrap());
    let (socket, _) = connect_async(request).await.expect("header auth");
    let mut socket = Socket(socket);
    assert_eq!(
        socket.next().await.expect("welcome")["type"],
        "auth.success"
    );
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("Authorization", "Bearer nonsense".parse().unwrap());
    let refused = connect_async(request).await;
    assert!(
        matches!(refused, Err(tokio_tungstenite::tungstenite::Error::Http(ref r)) if r.status() == StatusCode::UNAUTHORIZED.as_u16()),
        "a bad header token is refused before the upgrade"
    );
    server.finish().await;
}

async fn delivers_messages_live_and_in_order(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob, &room).await;
    let (mut socket, _) = Socket::login(&server, &bob, None).await;
    for n in 0..5 {
        server.say(&alice, &room, &format!("live {n}")).await;
    }
    for n in 0..5 {
        let frame = socket.next_of("message.new").await;
        assert_eq!(frame["room_id"], room.as_str());
        assert_eq!(
            frame["event"]["content"]["body"],
            format!("live {n}"),
            "in order"
        );
        assert!(frame["token"].as_str().unwrap().starts_with('s'));
    }
    server.finish().await;
}

async fn resumes_from_a_token_exactly_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob, &room).await;
    let (mut socket, _) = Socket::login(&server, &bob, None).await;
    server.say(&alice, &room, "seen").await;
    let last = socket.next_of("message.new").await;
    let token = last["token"].as_str().unwrap().to_owned();
    drop(socket);
    for n in 0..3 {
        server.say(&alice, &room, &format!("missed {n}")).await;
    }
    let (mut socket, _) = Socket::login(&server, &bob, Some(&token)).await;
    for n in 0..3 {
        let frame = socket.next_of("message.new").await;
        assert_eq!(frame["event"]["content"]["body"], format!("missed {n}"));
    }
    server.say(&alice, &room, "after").await;
    let frame = socket.next_of("message.new").await;
    assert_eq!(
        frame["event"]["content"]["body"], "after",
        "nothing repeated, nothing missed"
    );
    let bad = Socket::login_raw(&server, &bob, "s-garbage").await;
    assert_eq!(bad["errcode"], "M_INVALID_PARAM");
    server.finish().await;
}

impl Socket {
    async fn login_raw(server: &TestServer, token: &str, since: &str) -> Value {
        let mut socket = Socket::connect(server).await;
        socket
            .send(json!({ "type": "auth", "token": token, "since": since }))
            .await;
        socket.next().await.expect("a reply")
    }
}

async fn sends_messages_and_joins_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let room = server
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "room_alias_name": "lobby" }),
        )
        .await;
    let (mut socket, _) = Socket::login(&server, &bob, None).await;
    socket
        .send(json!({ "type": "room.join", "room": "#lobby:localhost" }))
        .await;
    assert_eq!(
        socket.next_of("room.joined").await["room_id"],
        room.as_str()
    );
    let send = json!({ "type": "message.send", "room_id": room, "txn_id": "w1", "content": { "msgtype": "m.text", "body": "over the socket" } });
    socket.send(send.clone()).await;
    let sent = socket.next_of("message.sent").await;
    assert_eq!(sent["txn_id"], "w1");
    socket.send(send).await;
    let again = socket.next_of("message.sent").await;
    assert_eq!(
        again["event_id"], sent["event_id"],
        "same idempotency as REST"
    );
    let history = server.all_messages(&alice, &room).await;
    let bodies: Vec<&str> = history
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, vec!["over the socket"]);

    socket.send(json!({ "type": "ping" })).await;
    assert_eq!(socket.next_of("pong").await["type"], "pong");
    socket.send(json!({ "type": "teleport" })).await;
    let unknown = socket.next_of("error").await;
    assert_eq!(
        (unknown["errcode"].as_str(), unknown["re"].as_str()),
        (Some("M_UNRECOGNIZED"), Some("teleport"))
    );
    socket.0.send(Message::Text("{oops".into())).await.unwrap();
    assert_eq!(socket.next_of("error").await["errcode"], "M_NOT_JSON");
    let private = server
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    socket.send(json!({ "type": "message.send", "room_id": private, "txn_id": "w2", "content": { "body": "x" } })).await;
    let refused = socket.next_of("error").await;
    assert_eq!(
        (refused["errcode"].as_str(), refused["re"].as_str()),
        (Some("M_FORBIDDEN"), Some("w2"))
    );
    socket
        .send(json!({ "type": "room.leave", "room_id": room }))
        .await;
    assert_eq!(socket.next_of("room.left").await["room_id"], room.as_str());
    server.finish().await;
}

async fn typing_reaches_other_sockets(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob, &room).await;
    let (mut alices, _) = Socket::login(&server, &alice, None).await;
    let (mut bobs, _) = Socket::login(&server, &bob, None).await;
    alices
        .send(json!({ "type": "typing.start", "room_id": room, "timeout_ms": 10000 }))
        .await;
    let typing = bobs.next_of("typing").await;
    assert_eq!(
        typing,
        json!({ "type": "typing", "room_id": room, "user_ids": ["@alice:localhost"] })
    );
    alices
        .send(json!({ "type": "typing.stop", "room_id": room }))
        .await;
    assert_eq!(bobs.next_of("typing").await["user_ids"], json!([]));
    server.finish().await;
}

async fn never_shows_rooms_the_user_is_not_in(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let shared = server
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob, &shared).await;
    let private = server
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    let (mut socket, _) = Socket::login(&server, &bob, None).await;
    server.say(&alice, &private, "secret").await;
    server
        .put(
            &TestServer::room_path(&private, "typing/@alice:localhost"),
            Some(&alice),
            json!({ "typing": true }),
        )
        .await;
    server.say(&alice, &shared, "public").await;
    let frame = socket.next().await.expect("a frame");
    assert_eq!(frame["type"], "message.new", "{frame}");
    assert_eq!(
        frame["event"]["content"]["body"], "public",
        "the private room's events never arrive"
    );
    server.finish().await;
}

async fn to_device_messages_reach_the_socket(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let (mut socket, welcome) = Socket::login(&server, &bob, None).await;
    let device = welcome["device_id"].as_str().unwrap().to_owned();
    let (status, _) = server
        .put(
            "/_matrix/client/v3/sendToDevice/m.call.invite/ws1",
            Some(&alice),
            json!({ "messages": { "@bob:localhost": { device: { "offer": "sdp" } } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let frame = socket.next_of("to_device").await;
    assert_eq!(
        frame["events"],
        json!([{ "sender": "@alice:localhost", "type": "m.call.invite", "content": { "offer": "sdp" } }])
    );
    server.finish().await;
}
