//! Stopping under load: several clients send messages as fast as they can,
//! the `teatime` process is killed with SIGKILL (a crash) or stopped with
//! SIGTERM (a graceful stop) while sends are in flight, and after a restart
//! on the same data every event whose send was acknowledged (200 with an
//! `event_id`) must be in the room's timeline. A graceful stop must also
//! answer the long-poll in flight, close WebSockets with a reconnect hint
//! (1012) and exit 0 within its drain bound.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{PASSWORD, create_postgres_database, drop_postgres_database, encode, process::serve};
use futures_util::{SinkExt, StreamExt};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const SENDERS: usize = 8;
/// The server is stopped after this long (once at least `MIN_ACKS` sends were
/// acknowledged, however loaded the machine is), or after `ENOUGH_ACKS`.
const SEND_FOR: Duration = Duration::from_secs(1);
const MIN_ACKS: usize = 20;
const ENOUGH_ACKS: usize = 5_000;
/// A server that acknowledges fewer than `MIN_ACKS` sends in this long is broken.
const MIN_ACKS_WITHIN: Duration = Duration::from_secs(30);
/// The server drains within 10 s of SIGTERM; allow for a loaded machine.
const STOP_BOUND: Duration = Duration::from_secs(13);

/// How the server is stopped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Kill9,
    Sigterm,
}

/// A client API request; any status is returned with the JSON body.
async fn call(
    http: &Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Result<(StatusCode, Value)> {
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    // A body cut off by the kill is an error: that send was not acknowledged.
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Posts to the client API and returns the body; panics unless it answers 200.
async fn post_ok(base: &str, path: &str, token: Option<&str>, body: Value) -> Value {
    let url = format!("{base}/_matrix/client/v3{path}");
    let (status, body) = call(
        &Client::new(),
        reqwest::Method::POST,
        url,
        token,
        Some(body),
    )
    .await
    .expect("request");
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// Sends messages one after another until a request fails (the server is
/// gone), recording the event id of every acknowledged send.
async fn send_until_failure(
    base: String,
    token: String,
    room: String,
    sender: usize,
    acked: Arc<Mutex<Vec<String>>>,
) {
    let http = Client::new();
    for n in 0.. {
        let url = format!(
            "{base}/_matrix/client/v3/rooms/{}/send/m.room.message/s{sender}-{n}",
            encode(&room)
        );
        let body = json!({ "msgtype": "m.text", "body": format!("sender {sender} message {n}") });
        match call(&http, reqwest::Method::PUT, url, Some(&token), Some(body)).await {
            Ok((StatusCode::OK, reply)) => {
                let id = reply["event_id"].as_str().expect("200 carries an event_id");
                acked.lock().unwrap().push(id.to_owned());
            }
            Ok((status, reply)) => panic!("send answered {status} before the stop: {reply}"),
            Err(_) => return, // the server is gone
        }
    }
}

/// Every event id in the room's timeline, paging `/messages` backwards.
async fn timeline(base: &str, token: &str, room: &str) -> Vec<String> {
    let http = Client::new();
    let mut ids = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let mut url = format!(
            "{base}/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000",
            encode(room)
        );
        if let Some(from) = &from {
            url += &format!("&from={}", encode(from));
        }
        let (status, page) = call(&http, reqwest::Method::GET, url, Some(token), None)
            .await
            .expect("request");
        assert_eq!(status, StatusCode::OK, "/messages: {page}");
        let chunk = page["chunk"].as_array().expect("chunk");
        ids.extend(
            chunk
                .iter()
                .map(|e| e["event_id"].as_str().expect("event_id").to_owned()),
        );
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => return ids,
        }
    }
}

/// Opens a WebSocket for `token` and waits for `auth.success`.
async fn open_socket(
    base: &str,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("{}/_teatime/ws", base.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    socket
        .send(Message::text(
            json!({ "type": "auth", "token": token }).to_string(),
        ))
        .await
        .expect("auth sent");
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                assert_ne!(frame["type"], "error", "{frame}");
                if frame["type"] == "auth.success" {
                    return socket;
                }
            }
            other => panic!("socket ended before auth.success: {other:?}"),
        }
    }
}

/// Reads the socket until it closes; returns the close code.
async fn close_code(
    mut socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<u16> {
    while let Some(frame) = socket.next().await {
        match frame {
            Ok(Message::Close(close)) => return close.map(|c| u16::from(c.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

async fn acknowledged_sends_survive(envs: &[(&str, &str)], stop: Stop) {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), envs).await;
    let credentials =
        json!({ "username": "crash", "password": PASSWORD, "auth": { "type": "m.login.dummy" } });
    let registered = post_ok(&served.base, "/register", None, credentials).await;
    let token = registered["access_token"].as_str().unwrap().to_owned();
    let room = post_ok(
        &served.base,
        "/createRoom",
        Some(&token),
        json!({ "preset": "private_chat", "name": "crash" }),
    )
    .await["room_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A bystander in no room: its long-poll waits for the whole timeout
    // unless the stop answers it, and its sockets see only the goodbye.
    let bystander = post_ok(
        &served.base,
        "/register",
        None,
        json!({ "username": "bystander", "password": PASSWORD, "auth": { "type": "m.login.dummy" } }),
    )
    .await;
    let bystander = bystander["access_token"].as_str().unwrap().to_owned();
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(open_socket(&served.base, &token).await);
        sockets.push(open_socket(&served.base, &bystander).await);
    }
    let (status, initial) = call(
        &Client::new(),
        reqwest::Method::GET,
        format!("{}/_matrix/client/v3/sync?timeout=0", served.base),
        Some(&bystander),
        None,
    )
    .await
    .expect("initial sync");
    assert_eq!(status, StatusCode::OK, "{initial}");
    let long_poll_url = format!(
        "{}/_matrix/client/v3/sync?timeout=60000&since={}",
        served.base,
        encode(initial["next_batch"].as_str().unwrap())
    );
    let long_poll = tokio::spawn({
        let bystander = bystander.clone();
        async move {
            let http = Client::new();
            call(
                &http,
                reqwest::Method::GET,
                long_poll_url,
                Some(&bystander),
                None,
            )
            .await
        }
    });

    let acked = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            tokio::spawn(send_until_failure(
                served.base.clone(),
                token.clone(),
                room.clone(),
                sender,
                acked.clone(),
            ))
        })
        .collect();
    let started = Instant::now();
    loop {
        let count = acked.lock().unwrap().len();
        if count >= ENOUGH_ACKS || (count >= MIN_ACKS && started.elapsed() >= SEND_FOR) {
            break;
        }
        assert!(
            started.elapsed() < MIN_ACKS_WITHIN,
            "only {count} sends acknowledged in {MIN_ACKS_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match stop {
        Stop::Kill9 => {
            served.child.kill().expect("SIGKILL");
            served.child.wait().unwrap();
        }
        Stop::Sigterm => {
            let stopping = Instant::now();
            let pid = served.child.id().to_string();
            let signalled = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill runs");
            assert!(signalled.success());
            let status = loop {
                if let Some(status) = served.child.try_wait().unwrap() {
                    break status;
                }
                assert!(
                    stopping.elapsed() < STOP_BOUND,
                    "teatime did not stop within {STOP_BOUND:?} of SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            assert!(status.success(), "a graceful stop exits 0, got {status}");
            let (status, body) = long_poll
                .await
                .unwrap()
                .expect("the long-poll in flight is answered, not cut off");
            assert_eq!(status, StatusCode::OK, "{body}");
            assert!(
                stopping.elapsed() < Duration::from_secs(5),
                "the long-poll held the drain: {:?}",
                stopping.elapsed()
            );
            for socket in sockets.drain(..) {
                assert_eq!(close_code(socket).await, Some(1012), "reconnect hint");
            }
        }
    }
    for sender in senders {
        sender.await.expect("sender task");
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() >= MIN_ACKS,
        "too few sends acknowledged before the kill to mean anything: {}",
        acked.len()
    );

    let restarted = serve(dir.path(), envs).await;
    let login = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": "crash" },
        "password": PASSWORD,
    });
    let logged_in = post_ok(&restarted.base, "/login", None, login).await;
    let token = logged_in["access_token"].as_str().unwrap();
    let stored = timeline(&restarted.base, token, &room).await;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &stored {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let mut missing = Vec::new();
    for id in &acked {
        match counts.get(id.as_str()).copied().unwrap_or(0) {
            1 => {}
            0 => missing.push(id.as_str()),
            n => panic!("acknowledged event {id} appears {n} times in /messages"),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events lost across the stop, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "{} acknowledged sends before the stop, all present among {} timeline events",
        acked.len(),
        stored.len()
    );
}

#[tokio::test]
async fn sqlite_keeps_acknowledged_sends_across_kill_9() {
    acknowledged_sends_survive(&[], Stop::Kill9).await;
}

#[tokio::test]
async fn sqlite_sigterm_drains_requests_and_sockets() {
    acknowledged_sends_survive(&[], Stop::Sigterm).await;
}

/// A fresh PostgreSQL database, dropped even when the test panics.
struct PostgresDatabase(String);

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let name = self.0.clone();
        // Drop runs inside the test's runtime, so the async drop gets its own.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .expect("runtime")
                .block_on(drop_postgres_database(&name));
        })
        .join();
    }
}

#[tokio::test]
async fn postgres_keeps_acknowledged_sends_across_kill_9() {
    let (url, name) = create_postgres_database().await;
    let _database = PostgresDatabase(name);
    acknowledged_sends_survive(&[("TEATIME_DATABASE_URL", &url)], Stop::Kill9).await;
}

#[tokio::test]
async fn postgres_sigterm_drains_requests_and_sockets() {
    let (url, name) = create_postgres_database().await;
    let _database = PostgresDatabase(name);
    acknowledged_sends_survive(&[("TEATIME_DATABASE_URL", &url)], Stop::Sigterm).await;
}
