//! Crash safety of room sends: several clients send messages as fast as they
//! can, the `teatime` process is killed with SIGKILL while sends are in
//! flight, and after a restart on the same data every event whose send was
//! acknowledged (200 with an `event_id`) must be in the room's timeline.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{PASSWORD, create_postgres_database, drop_postgres_database, encode, process::serve};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const SENDERS: usize = 8;
/// The server is killed after this long, or after this many acknowledged sends.
const SEND_FOR: Duration = Duration::from_secs(1);
const ENOUGH_ACKS: usize = 5_000;

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
            Ok((status, reply)) => panic!("send answered {status} before the kill: {reply}"),
            Err(_) => return, // the server was killed
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

async fn acknowledged_sends_survive_kill_9(envs: &[(&str, &str)]) {
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
    while started.elapsed() < SEND_FOR && acked.lock().unwrap().len() < ENOUGH_ACKS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    served.child.kill().expect("SIGKILL");
    served.child.wait().unwrap();
    for sender in senders {
        sender.await.expect("sender task");
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() >= 20,
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
        "{} of {} acknowledged events lost across kill -9, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "{} acknowledged sends before the kill, all present among {} timeline events",
        acked.len(),
        stored.len()
    );
}

#[tokio::test]
async fn sqlite_keeps_acknowledged_sends_across_kill_9() {
    acknowledged_sends_survive_kill_9(&[]).await;
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
    acknowledged_sends_survive_kill_9(&[("TEATIME_DATABASE_URL", &url)]).await;
}
