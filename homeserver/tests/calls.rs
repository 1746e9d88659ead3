//! Calls through the in-process SFU, driven by real WebRTC peers (webrtc-rs,
//! from the `sfu` crate's `testing` module) on 127.0.0.1 with signalling on
//! the WebSocket: three participants exchange audio and video, a leaver's
//! tracks disappear, another room's call stays apart, non-members are
//! refused, and a peer restricted to TURN relays connects through coturn with
//! credentials the server minted.
//!
//! The media tests run on SQLite only: the database only answers the
//! membership check, which the refusal test covers on both backends.

mod common;

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{Backend, TestServer, process::free_port};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sfu::{
    RtpCodecKind,
    testing::{PeerOptions, ReceivedTrack, TestPeer},
};
use tokio::sync::mpsc;
use tokio_tungstenite::{connect_async, tungstenite::Message};

on_both_backends!(non_members_cannot_join_a_call);

/// Video rate the test peers send: enough packets to see, little CPU.
const TEST_VIDEO_BPS: u64 = 200_000;
/// How long a condition may take to come true.
const PATIENCE: Duration = Duration::from_secs(20);

async fn start_server(
    backend: Backend,
    tweak: impl FnOnce(&mut homeserver::config::Config),
) -> TestServer {
    TestServer::start_with(backend, |config| {
        // Gather on loopback only, so every packet stays on this machine.
        config.sfu_bind_ip = IpAddr::from([127, 0, 0, 1]);
        tweak(config);
    })
    .await
}

/// A participant: its WebSocket (pumped by a task that answers offers and
/// exchanges candidates) and its peer connection.
struct Participant {
    user_id: String,
    peer: Arc<TestPeer>,
    /// Every frame the server sent, as the pump saw it.
    frames: mpsc::UnboundedReceiver<Value>,
    /// Frames to send on the socket.
    outgoing: mpsc::UnboundedSender<Value>,
    /// The `call.candidate` frames the client sent.
    sent_candidates: Arc<Mutex<Vec<Value>>>,
    /// The `call.config` frame the join brought.
    config: Value,
    /// Kept for the participant's lifetime; dropping it stops the media.
    sending: Option<sfu::testing::Sending>,
    pump: tokio::task::JoinHandle<()>,
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_socket(server: &TestServer, token: &str) -> WsStream {
    let url = format!("{}/_teatime/ws", server.base.replace("http://", "ws://"));
    let (mut socket, _) = connect_async(url).await.expect("websocket connects");
    let auth = json!({ "type": "auth", "token": token });
    socket
        .send(Message::Text(auth.to_string().into()))
        .await
        .expect("auth sent");
    loop {
        let frame = next_frame(&mut socket).await.expect("auth reply");
        if frame["type"] == "auth.success" {
            return socket;
        }
    }
}

async fn next_frame(socket: &mut WsStream) -> Option<Value> {
    loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                return Some(serde_json::from_str(&text).expect("JSON frame"));
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Err(_) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Plays the client's side of signalling until the socket closes: applies
/// the server's answers, offers and candidates, trickles the peer's own
/// candidates, and passes every frame on to the test.
async fn pump(
    mut socket: WsStream,
    peer: Arc<TestPeer>,
    room_id: String,
    frames: mpsc::UnboundedSender<Value>,
    mut outgoing: mpsc::UnboundedReceiver<Value>,
    sent: Arc<Mutex<Vec<Value>>>,
) {
    let mut trickle = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            frame = socket.next() => {
                let Some(Ok(Message::Text(text))) = frame else {
                    if matches!(frame, Some(Ok(_))) { continue }
                    return;
                };
                let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                let reply = peer.on_frame(&room_id, &frame).await.expect("signalling applies");
                if let Some(reply) = reply
                    && socket.send(Message::Text(reply.to_string().into())).await.is_err()
                {
                    return;
                }
                let _ = frames.send(frame);
            }
            Some(frame) = outgoing.recv() => {
                if socket.send(Message::Text(frame.to_string().into())).await.is_err() {
                    return;
                }
            }
            _ = trickle.tick() => {
                for frame in peer.candidate_frames(&room_id) {
                    if socket.send(Message::Text(frame.to_string().into())).await.is_err() {
                        return;
                    }
                    sent.lock().expect("sent candidates").push(frame);
                }
            }
        }
    }
}

impl Participant {
    /// Connects a socket, offers audio and video with `call.join`, waits for
    /// `call.config` and the connection, then starts sending media.
    async fn join(
        server: &TestServer,
        session: &common::Session,
        room_id: &str,
        options: PeerOptions,
    ) -> Participant {
        let socket = open_socket(server, &session.access_token).await;
        let mut peer = TestPeer::new(options).await.expect("peer builds");
        peer.add_track(RtpCodecKind::Audio)
            .await
            .expect("audio track");
        peer.add_track(RtpCodecKind::Video)
            .await
            .expect("video track");
        let offer = peer.create_offer().await.expect("offer");
        let peer = Arc::new(peer);
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        outgoing
            .send(json!({ "type": "call.join", "room_id": room_id, "sdp": offer }))
            .expect("pump running");
        let sent_candidates = Arc::new(Mutex::new(Vec::new()));
        let pump = tokio::spawn(pump(
            socket,
            peer.clone(),
            room_id.to_owned(),
            frames_tx,
            outgoing_rx,
            sent_candidates.clone(),
        ));
        let mut participant = Participant {
            user_id: session.user_id.clone(),
            peer,
            frames,
            outgoing,
            sent_candidates,
            config: Value::Null,
            sending: None,
            pump,
        };
        let config = participant.next_of("call.config").await;
        assert_eq!(config["room_id"], room_id, "{config}");
        assert!(config["ice_servers"].is_array(), "{config}");
        participant.config = config;
        participant
            .peer
            .connected(PATIENCE)
            .await
            .expect("peer connects to the SFU");
        participant.sending = Some(
            participant
                .peer
                .send_media(TEST_VIDEO_BPS)
                .await
                .expect("media starts"),
        );
        participant
    }

    /// The next frame of `kind`, skipping others.
    async fn next_of(&mut self, kind: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.frames.recv()).await {
                Ok(Some(frame)) if frame["type"] == kind => return frame,
                Ok(Some(_)) => continue,
                _ => panic!("{}: no {kind} frame arrived", self.user_id),
            }
        }
    }

    /// Waits for a `call.participants` frame of `room_id` listing exactly
    /// `users`; returns its stream id -> user map.
    async fn participants_become(
        &mut self,
        room_id: &str,
        users: &[&str],
    ) -> HashMap<String, String> {
        let wanted: BTreeSet<&str> = users.iter().copied().collect();
        loop {
            let frame = self.next_of("call.participants").await;
            if frame["room_id"] != room_id {
                continue;
            }
            let listed: BTreeSet<&str> = frame["user_ids"]
                .as_array()
                .expect("user_ids")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            if listed == wanted {
                return frame["streams"]
                    .as_object()
                    .expect("streams")
                    .iter()
                    .map(|(stream, user)| {
                        (stream.clone(), user.as_str().unwrap_or_default().to_owned())
                    })
                    .collect();
            }
        }
    }

    fn send(&self, frame: Value) {
        self.outgoing.send(frame).expect("pump running");
    }

    fn received(&self) -> Vec<ReceivedTrack> {
        self.peer.received()
    }

    async fn hang_up(self) {
        drop(self.sending);
        let _ = self.peer.close().await;
        self.pump.abort();
    }
}

/// Waits until `check` holds, or fails with `what`.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `tracks` hold audio and video with packets from each of `from`
/// (stream ids) and nothing from anyone else.
fn receives_exactly(tracks: &[ReceivedTrack], from: &[&str], min_packets: u64) -> bool {
    let senders_ok = tracks
        .iter()
        .all(|t| t.packets == 0 || from.contains(&t.stream_id.as_str()));
    let each_ok = from.iter().all(|stream| {
        [RtpCodecKind::Audio, RtpCodecKind::Video]
            .iter()
            .all(|kind| {
                tracks
                    .iter()
                    .any(|t| t.stream_id == *stream && t.kind == *kind && t.packets >= min_packets)
            })
    });
    senders_ok && each_ok
}

fn packets_from(tracks: &[ReceivedTrack], stream: &str) -> u64 {
    tracks
        .iter()
        .filter(|t| t.stream_id == stream)
        .map(|t| t.packets)
        .sum()
}

fn stream_of(streams: &HashMap<String, String>, user: &str) -> String {
    streams
        .iter()
        .find(|(_, u)| u.as_str() == user)
        .map(|(s, _)| s.clone())
        .unwrap_or_else(|| panic!("{user} has no stream"))
}

async fn shared_room(server: &TestServer, members: &[&common::Session]) -> String {
    let room_id = server
        .create_room(&members[0].access_token, json!({ "preset": "public_chat" }))
        .await;
    for member in &members[1..] {
        server.join(&member.access_token, &room_id).await;
    }
    room_id
}

#[tokio::test]
async fn three_participants_exchange_media_and_leavers_disappear() {
    let server = start_server(Backend::Sqlite, |_| {}).await;
    let alice = server.register("alice", common::PASSWORD).await;
    let bob = server.register("bob", common::PASSWORD).await;
    let carol = server.register("carol", common::PASSWORD).await;
    let dave = server.register("dave", common::PASSWORD).await;
    let erin = server.register("erin", common::PASSWORD).await;
    let room = shared_room(&server, &[&alice, &bob, &carol]).await;
    let other_room = shared_room(&server, &[&dave, &erin]).await;

    // A member who is not in the call watches the participants change.
    let mut watcher = open_socket(&server, &carol.access_token).await;

    let mut a = Participant::join(&server, &alice, &room, PeerOptions::loopback()).await;
    let mut b = Participant::join(&server, &bob, &room, PeerOptions::loopback()).await;
    let mut c = Participant::join(&server, &carol, &room, PeerOptions::loopback()).await;
    let everyone = [
        alice.user_id.as_str(),
        bob.user_id.as_str(),
        carol.user_id.as_str(),
    ];
    let streams = a.participants_become(&room, &everyone).await;
    b.participants_become(&room, &everyone).await;
    c.participants_become(&room, &everyone).await;
    let (sa, sb, sc) = (
        stream_of(&streams, &alice.user_id),
        stream_of(&streams, &bob.user_id),
        stream_of(&streams, &carol.user_id),
    );
    loop {
        let frame = next_frame(&mut watcher)
            .await
            .expect("watcher sees call.participants");
        if frame["type"] == "call.participants"
            && frame["user_ids"].as_array().map(Vec::len) == Some(1)
        {
            assert_eq!(frame["user_ids"][0], alice.user_id.as_str(), "{frame}");
            assert_eq!(frame["room_id"], room.as_str(), "{frame}");
            break;
        }
    }

    // A second call in another room, at the same time.
    let mut d = Participant::join(&server, &dave, &other_room, PeerOptions::loopback()).await;
    let e = Participant::join(&server, &erin, &other_room, PeerOptions::loopback()).await;

    // Everyone receives the other two's audio and video, and only theirs.
    for (who, from) in [(&a, [&sb, &sc]), (&b, [&sa, &sc]), (&c, [&sa, &sb])] {
        let from = [from[0].as_str(), from[1].as_str()];
        eventually(&format!("{} receives {from:?}", who.user_id), || {
            receives_exactly(&who.received(), &from, 30)
        })
        .await;
    }
    eventually("the other room's participants receive each other", || {
        d.received().iter().any(|t| t.packets > 30) && e.received().iter().any(|t| t.packets > 30)
    })
    .await;
    let room_streams: BTreeSet<&str> = [sa.as_str(), sb.as_str(), sc.as_str()].into();
    for who in [&a, &b, &c] {
        assert!(
            who.received()
                .iter()
                .all(|t| room_streams.contains(t.stream_id.as_str())),
            "{} received a track from another call: {:?}",
            who.user_id,
            who.received()
        );
    }
    for who in [&d, &e] {
        assert!(
            who.received()
                .iter()
                .all(|t| !room_streams.contains(t.stream_id.as_str())),
            "{} received a track of the first room's call",
            who.user_id
        );
    }
    // call.participants of the other room never reached the first room's sockets.
    while let Ok(frame) = a.frames.try_recv() {
        assert_ne!(frame["room_id"], other_room.as_str(), "{frame}");
    }

    // Carol leaves: her tracks vanish from the others' sessions and stop.
    for who in [&a, &b] {
        let sdp = who.peer.remote_sdp().await.unwrap_or_default();
        assert!(
            sdp.contains(&format!("msid:{sc} ")),
            "carol's tracks are not offered: {sdp}"
        );
    }
    c.send(json!({ "type": "call.leave", "room_id": room }));
    let remaining = [alice.user_id.as_str(), bob.user_id.as_str()];
    a.participants_become(&room, &remaining).await;
    b.participants_become(&room, &remaining).await;
    for who in [&a, &b] {
        let mut gone = false;
        let deadline = Instant::now() + PATIENCE;
        while !gone {
            assert!(
                Instant::now() < deadline,
                "{}: carol's tracks stay offered",
                who.user_id
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            let sdp = who.peer.remote_sdp().await.unwrap_or_default();
            gone = !sdp.contains(&format!("msid:{sc} "));
        }
    }
    let before = [
        packets_from(&a.received(), &sc),
        packets_from(&b.received(), &sc),
    ];
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = [
        packets_from(&a.received(), &sc),
        packets_from(&b.received(), &sc),
    ];
    assert_eq!(
        before, after,
        "carol's packets keep arriving after she left"
    );
    // The others still hear each other.
    let ab_before = packets_from(&a.received(), &sb);
    eventually("alice still receives bob", || {
        packets_from(&a.received(), &sb) > ab_before + 10
    })
    .await;
    // Leaving twice is an error, not a crash.
    c.send(json!({ "type": "call.leave", "room_id": room }));
    let error = c.next_of("error").await;
    assert_eq!(error["errcode"], "M_NOT_FOUND", "{error}");

    // A socket that closes leaves its calls.
    b.hang_up().await;
    a.participants_become(&room, &[alice.user_id.as_str()])
        .await;

    // A connection that ends while its socket stays open (the client's DTLS
    // close, or ICE consent failing after about 10 s) removes its participant.
    e.peer.close().await.expect("erin's peer closes");
    d.participants_become(&other_room, &[dave.user_id.as_str()])
        .await;

    for p in [a, c, d, e] {
        p.hang_up().await;
    }
    server.finish().await;
}

/// The next `call.participants` frame on a plain (non-calling) socket.
async fn next_participants(socket: &mut WsStream) -> Value {
    loop {
        let frame = next_frame(socket)
            .await
            .expect("a call.participants frame arrives");
        if frame["type"] == "call.participants" {
            return frame;
        }
    }
}

/// Sockets learn of a call already going on: one that connects during it,
/// and one whose user joins the room during it.
#[tokio::test]
async fn calls_under_way_are_announced_to_newcomers() {
    let server = start_server(Backend::Sqlite, |_| {}).await;
    let alice = server.register("alice", common::PASSWORD).await;
    let bob = server.register("bob", common::PASSWORD).await;
    let carol = server.register("carol", common::PASSWORD).await;
    let room = shared_room(&server, &[&alice, &bob]).await;
    let mut a = Participant::join(&server, &alice, &room, PeerOptions::loopback()).await;
    a.participants_become(&room, &[alice.user_id.as_str()])
        .await;

    let mut late = open_socket(&server, &bob.access_token).await;
    let frame = next_participants(&mut late).await;
    assert_eq!(frame["room_id"], room.as_str(), "{frame}");
    assert_eq!(frame["user_ids"], json!([alice.user_id]), "{frame}");

    let mut newcomer = open_socket(&server, &carol.access_token).await;
    server.join(&carol.access_token, &room).await;
    let frame = next_participants(&mut newcomer).await;
    assert_eq!(frame["room_id"], room.as_str(), "{frame}");
    assert_eq!(frame["user_ids"], json!([alice.user_id]), "{frame}");
}

/// Joining a call again (another device) replaces the earlier connection,
/// whose socket is told with `call.ended`.
#[tokio::test]
async fn a_second_join_ends_the_first() {
    let server = start_server(Backend::Sqlite, |_| {}).await;
    let alice = server.register("alice", common::PASSWORD).await;
    let room = shared_room(&server, &[&alice]).await;
    let mut first = Participant::join(&server, &alice, &room, PeerOptions::loopback()).await;
    let other_device = server.login("alice", common::PASSWORD).await;
    let mut second =
        Participant::join(&server, &other_device, &room, PeerOptions::loopback()).await;
    let ended = first.next_of("call.ended").await;
    assert_eq!(ended["room_id"], room.as_str(), "{ended}");
    // The second connection is the one in the call; it leaves normally.
    second.send(json!({ "type": "call.leave", "room_id": room }));
    second.participants_become(&room, &[]).await;
    first.send(json!({ "type": "call.leave", "room_id": room }));
    let error = first.next_of("error").await;
    assert_eq!(error["errcode"], "M_NOT_FOUND", "{error}");
}

/// A subscriber's decoder that lost its place asks for a key frame: the SFU
/// passes the request on to the publisher, paced so that a burst of
/// requests costs the publisher only a few key frames.
#[tokio::test]
async fn subscribers_key_frame_requests_reach_the_publisher() {
    let server = start_server(Backend::Sqlite, |_| {}).await;
    let alice = server.register("alice", common::PASSWORD).await;
    let bob = server.register("bob", common::PASSWORD).await;
    let room = shared_room(&server, &[&alice, &bob]).await;
    let mut a = Participant::join(&server, &alice, &room, PeerOptions::loopback()).await;
    let b = Participant::join(&server, &bob, &room, PeerOptions::loopback()).await;
    let both = [alice.user_id.as_str(), bob.user_id.as_str()];
    let streams = a.participants_become(&room, &both).await;
    let alice_stream = stream_of(&streams, &alice.user_id);
    eventually("bob receives alice's video", || {
        b.received()
            .iter()
            .any(|t| t.stream_id == alice_stream && t.kind == RtpCodecKind::Video && t.packets > 30)
    })
    .await;
    // The SFU's own requests when bob's subscription started are done by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = a.peer.key_frame_requests();

    for _ in 0..20 {
        b.peer
            .request_key_frame(&alice_stream)
            .await
            .expect("bob asks for a key frame");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually("alice is asked for a key frame", || {
        a.peer.key_frame_requests() > before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let passed = a.peer.key_frame_requests() - before;
    assert!(
        passed <= 8,
        "{passed} of bob's 20 requests in one second reached alice: not paced"
    );
}

/// The next `error` frame; no call frame may come before it.
async fn next_error(socket: &mut WsStream) -> Value {
    loop {
        let frame = next_frame(socket).await.expect("a reply");
        if frame["type"] == "error" {
            return frame;
        }
        assert!(
            !frame["type"]
                .as_str()
                .unwrap_or_default()
                .starts_with("call."),
            "a refused join got {frame}"
        );
    }
}

async fn assert_no_call(server: &TestServer, room: &str) {
    let participants = server.state().calls.sfu().participants(room).await;
    assert!(participants.is_empty(), "{participants:?}");
}

async fn non_members_cannot_join_a_call(backend: Backend) {
    let server = start_server(backend, |_| {}).await;
    let alice = server.register("alice", common::PASSWORD).await;
    let mallory = server.register("mallory", common::PASSWORD).await;
    let room = shared_room(&server, &[&alice]).await;

    let mut socket = open_socket(&server, &mallory.access_token).await;
    let mut peer = TestPeer::new(PeerOptions::loopback()).await.expect("peer");
    peer.add_track(RtpCodecKind::Audio).await.expect("track");
    let offer = peer.create_offer().await.expect("offer");
    let join = json!({ "type": "call.join", "room_id": room, "sdp": offer });
    socket
        .send(Message::Text(join.to_string().into()))
        .await
        .expect("sent");
    let error = next_error(&mut socket).await;
    assert_eq!(error["errcode"], "M_FORBIDDEN", "{error}");
    assert_eq!(error["re"], "call.join", "{error}");
    // Nobody joined: the room has no call.
    assert_no_call(&server, &room).await;

    // A member's garbage SDP is refused too, and changes nothing.
    let mut member = open_socket(&server, &alice.access_token).await;
    let bad = json!({ "type": "call.join", "room_id": room, "sdp": "v=0 nonsense" });
    member
        .send(Message::Text(bad.to_string().into()))
        .await
        .expect("sent");
    let error = next_error(&mut member).await;
    assert_eq!(error["errcode"], "M_INVALID_PARAM", "{error}");
    assert_no_call(&server, &room).await;
    let _ = peer.close().await;
    server.finish().await;
}

/// coturn on loopback, as RECIPES.md runs it; stopped when dropped.
struct Coturn {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Coturn {
    fn start(secret: &str) -> Coturn {
        let binary = ["/usr/bin/turnserver", "/usr/sbin/turnserver"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .unwrap_or_else(|| {
                panic!("turnserver (Debian package coturn) is not installed: run scripts/install-test-deps.sh")
            });
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let relay_first = free_port();
        let child = Command::new(binary)
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                &format!("--min-port={relay_first}"),
                &format!("--max-port={}", relay_first.saturating_add(50)),
                "--realm=test.local",
                "--use-auth-secret",
                &format!("--static-auth-secret={secret}"),
                "--fingerprint",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--allow-loopback-peers",
                &format!("--userdb={}", dir.path().join("turndb").display()),
                &format!("--pidfile={}", dir.path().join("turn.pid").display()),
                "--log-file=stdout",
                "--simple-log",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver starts");
        Coturn {
            child,
            port,
            _dir: dir,
        }
    }

    /// Waits until coturn answers on its UDP port (a STUN binding request).
    async fn ready(&self) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("udp");
        // A STUN binding request: type 0x0001, length 0, magic cookie, id.
        let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        request.extend_from_slice(&[7; 12]);
        let deadline = Instant::now() + PATIENCE;
        loop {
            socket
                .send_to(&request, ("127.0.0.1", self.port))
                .await
                .expect("stun sent");
            let mut buf = [0u8; 512];
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await
            {
                return;
            }
            assert!(Instant::now() < deadline, "coturn did not answer STUN");
        }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_relay_only_peer_connects_through_coturn() {
    let secret = "relay-test-secret";
    let coturn = Coturn::start(secret);
    coturn.ready().await;
    let turn_uri = format!("turn:127.0.0.1:{}?transport=udp", coturn.port);
    let server = start_server(Backend::Sqlite, |config| {
        config.turn_uris = turn_uri.clone();
        config.turn_secret = Some(secret.into());
        config.stun_uris = format!("stun:127.0.0.1:{}", coturn.port);
    })
    .await;
    let alice = server.register("alice", common::PASSWORD).await;
    let bob = server.register("bob", common::PASSWORD).await;
    let room = shared_room(&server, &[&alice, &bob]).await;

    // The client asks for TURN credentials first, as browsers must before
    // they create their peer connection.
    let (status, turn) = server
        .get(
            "/_matrix/client/v3/voip/turnServer",
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{turn}");
    assert_eq!(turn["uris"], json!([turn_uri]), "{turn}");
    let username = turn["username"].as_str().expect("username").to_owned();
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    assert_eq!(user, alice.user_id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let expiry: u64 = expiry.parse().expect("numeric expiry");
    assert!(
        expiry > now && expiry <= now + server.config().turn_ttl + 5,
        "{turn}"
    );
    let relay_only = PeerOptions {
        ice_servers: vec![(
            vec![turn_uri.clone()],
            username,
            turn["password"].as_str().expect("password").to_owned(),
        )],
        relay_only: true,
        ..PeerOptions::loopback()
    };

    let mut a = Participant::join(&server, &alice, &room, relay_only).await;
    let mut b = Participant::join(&server, &bob, &room, PeerOptions::loopback()).await;
    let streams = a
        .participants_become(&room, &[alice.user_id.as_str(), bob.user_id.as_str()])
        .await;
    b.participants_become(&room, &[alice.user_id.as_str(), bob.user_id.as_str()])
        .await;
    let (sa, sb) = (
        stream_of(&streams, &alice.user_id),
        stream_of(&streams, &bob.user_id),
    );
    // Alice offered relay candidates only.
    let sent: Vec<String> = a
        .sent_candidates
        .lock()
        .expect("sent candidates")
        .iter()
        .map(|frame| frame["candidate"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(!sent.is_empty(), "alice sent no candidates");
    assert!(sent.iter().all(|c| c.contains(" typ relay")), "{sent:?}");
    eventually("media flows both ways through the relay", || {
        receives_exactly(&a.received(), &[sb.as_str()], 30)
            && receives_exactly(&b.received(), &[sa.as_str()], 30)
    })
    .await;

    // call.config carries the STUN server and freshly minted TURN
    // credentials of the same scheme, for the next connection.
    let servers = a.config["ice_servers"].as_array().expect("ice_servers");
    assert_eq!(
        servers[0]["urls"],
        json!([format!("stun:127.0.0.1:{}", coturn.port)])
    );
    assert_eq!(servers[1]["urls"], json!([turn_uri]));
    let username = servers[1]["username"].as_str().expect("username");
    assert!(
        username.ends_with(&format!(":{}", alice.user_id)),
        "{username}"
    );
    assert_eq!(
        servers[1]["credential"],
        homeserver::calls::turn_password(secret, username).as_str()
    );

    a.hang_up().await;
    b.hang_up().await;
    drop(coturn);
    server.finish().await;
}

#[tokio::test]
async fn turn_server_endpoint_without_turn_is_empty() {
    let server = start_server(Backend::Sqlite, |_| {}).await;
    let alice = server.register("alice", common::PASSWORD).await;
    let (status, body) = server
        .get(
            "/_matrix/client/v3/voip/turnServer",
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}));
    let (status, _) = server.get("/_matrix/client/v3/voip/turnServer", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.finish().await;
}
