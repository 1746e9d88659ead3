//! `teatime-loadgen`: drives a running TeaTime server with room traffic and
//! prints one line of results per scenario. It starts nothing itself.
//!
//! Room scenarios (all four by default, in this order):
//! - `sequential`: one client, one room, `--sends` sends one after another;
//! - `concurrent-rooms`: `--clients` clients, each in its own room, sharing
//!   `--sends` between them, one request at a time per client;
//! - `concurrent-room`: the same with all clients joined to one shared room;
//! - `messages`: `--message-requests` × `GET /messages?dir=b&limit=100` on the
//!   room written last (a room is filled first when run alone).
//!
//! Every send must answer 200 with an `event_id`. After each send scenario the
//! timelines are paged backwards through `/messages` and every acknowledged
//! event id must appear exactly once.
//!
//! Real-time scenarios (only when named; see `realtime.rs`):
//! - `ws-fanout`: `--clients` users in one room, each on a WebSocket; one of
//!   them sends `--messages` messages, and every socket must receive every one
//!   exactly once and in order; send-to-delivery latency percentiles;
//! - `sync-fanout`: the same with long-polling `/sync` clients;
//! - `idle-sockets`: `--clients` authenticated idle WebSockets held open, then
//!   checked with `ping` on a sample.
//!
//! Media scenarios (only when named; see `media.rs`): `media` (upload and
//! download throughput per `--file-mb` size) and `big-upload`.
//!
//! Calls (only when named; see `calls.rs`): `calls`, one call of each of the
//! `--participants` sizes through the SFU: forwarded packets/s, server CPU
//! per forwarded packet, latency added by the SFU.
//!
//! Federation (only when named; see `federation.rs`), between the server at
//! `--base` (A) and another at `--remote-base` (B) that federate:
//! `federation-backlog` (`--sends` messages queued on A for B while A's
//! administrator denies B, then the time B takes to receive them all) and
//! `big-join` (a user of B joins a room of A with `--members` members and
//! `--state-events` state events).
//!
//! Any error makes the exit status 1.

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

mod calls;
mod federation;
mod media;
mod realtime;

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "teatime-loadgen",
    about = "Room load against a running TeaTime server"
)]
struct Args {
    /// Base URL of the running server, e.g. http://127.0.0.1:8008.
    #[arg(long)]
    base: String,
    /// Scenarios to run, in order (default: the four room scenarios).
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    /// Sends per scenario (split evenly between the clients when concurrent).
    #[arg(long, default_value_t = 2000)]
    sends: usize,
    /// Clients in the concurrent scenarios; sockets or /sync clients in the real-time ones.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Requests in the `messages` scenario.
    #[arg(long, default_value_t = 200)]
    message_requests: usize,
    /// Messages sent in `ws-fanout` and `sync-fanout`.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Fan-out pacing: 0 sends each message once every client has the previous
    /// one; N sends one every N ms (one request at a time) whatever the delivery.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Registrations, joins and connections in flight at once during setup.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// `idle-sockets`: sockets sharing one user's access token.
    #[arg(long, default_value_t = 100)]
    sockets_per_user: usize,
    /// `idle-sockets`: sockets checked with `ping` (spread evenly).
    #[arg(long, default_value_t = 1000)]
    ping_sample: usize,
    /// `idle-sockets`: after the `phase=registered` and `phase=open` lines,
    /// `federation-backlog` after `phase=queued`, `big-join` after
    /// `phase=built`, wait for a line on stdin (at most 120 s, EOF goes on at
    /// once) so that a script can measure the server in between.
    #[arg(long)]
    pause_on_stdin: bool,
    /// `media`: file sizes in MB, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    file_mb: Vec<u64>,
    /// `big-upload`: the size of the one upload, in MB.
    #[arg(long, default_value_t = 1024)]
    big_upload_mb: u64,
    /// `calls`: call sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2,4,8")]
    participants: Vec<usize>,
    /// `calls`: video each participant sends, in kbit/s.
    #[arg(long, default_value_t = 1000)]
    video_kbps: u64,
    /// `calls`: seconds measured per call size.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// `calls`: the server's process id, to read its CPU time.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Federation scenarios: base URL of the second server (B), federating with `--base` (A).
    #[arg(long)]
    remote_base: Option<String>,
    /// `federation-backlog`: an access token of an administrator of A.
    #[arg(long)]
    admin_token: Option<String>,
    /// `federation-backlog`: how B's arrivals are seen.
    #[arg(long, value_enum, default_value_t = federation::Watch::Socket)]
    watch: federation::Watch,
    /// `big-join`: members of the room B joins (its creator included).
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// `big-join`: state events of the room B joins (members included).
    #[arg(long, default_value_t = 10000)]
    state_events: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Sequential,
    ConcurrentRooms,
    ConcurrentRoom,
    Messages,
    WsFanout,
    SyncFanout,
    IdleSockets,
    Media,
    BigUpload,
    Calls,
    FederationBacklog,
    BigJoin,
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    ensure!(args.clients > 0, "--clients must be at least 1");
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    ensure!(
        args.sockets_per_user > 0,
        "--sockets-per-user must be at least 1"
    );
    if args.scenarios.is_empty() {
        args.scenarios = vec![
            Scenario::Sequential,
            Scenario::ConcurrentRooms,
            Scenario::ConcurrentRoom,
            Scenario::Messages,
        ];
    }
    let settings = realtime::Settings {
        clients: args.clients,
        messages: args.messages,
        interval: (args.interval_ms > 0).then(|| Duration::from_millis(args.interval_ms)),
        concurrency: args.concurrency,
        sockets_per_user: args.sockets_per_user,
        ping_sample: args.ping_sample,
        pause_on_stdin: args.pause_on_stdin,
    };
    let media_settings = media::Settings {
        file_mb: args.file_mb.clone(),
        big_upload_mb: args.big_upload_mb,
        pause_on_stdin: args.pause_on_stdin,
    };
    let run = Run {
        base: args.base.trim_end_matches('/').to_owned(),
        prefix: format!(
            "loadgen{}",
            SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis()
        ),
    };
    // The room written last, for `messages`.
    let mut last_room: Option<(User, String)> = None;
    let mut failed = false;
    for scenario in &args.scenarios {
        let outcome = match scenario {
            Scenario::Sequential => {
                let clients = run.clients("seq", 1, false).await?;
                run.sends("sequential", clients, args.sends, &mut last_room)
                    .await?
            }
            Scenario::ConcurrentRooms => {
                let clients = run.clients("rooms", args.clients, false).await?;
                run.sends("concurrent-rooms", clients, args.sends, &mut last_room)
                    .await?
            }
            Scenario::ConcurrentRoom => {
                let clients = run.clients("room", args.clients, true).await?;
                run.sends("concurrent-room", clients, args.sends, &mut last_room)
                    .await?
            }
            Scenario::Messages => {
                if last_room.is_none() {
                    let clients = run.clients("msgs", 1, false).await?;
                    let filled = run
                        .sends("fill", clients, args.sends, &mut last_room)
                        .await?;
                    failed |= !filled.errors.is_empty();
                    filled.print();
                }
                let (user, room) = last_room.as_ref().expect("a room was written");
                messages(user, room, args.message_requests).await
            }
            Scenario::WsFanout => {
                failed |= !realtime::fanout(&run, &settings, realtime::Via::WebSocket).await?;
                continue;
            }
            Scenario::SyncFanout => {
                failed |= !realtime::fanout(&run, &settings, realtime::Via::Sync).await?;
                continue;
            }
            Scenario::IdleSockets => {
                failed |= !realtime::idle_sockets(&run, &settings).await?;
                continue;
            }
            Scenario::Media => {
                failed |= !media::throughput(&run, &media_settings).await?;
                continue;
            }
            Scenario::BigUpload => {
                failed |= !media::big_upload(&run, &media_settings).await?;
                continue;
            }
            Scenario::Calls => {
                let call_settings = calls::Settings {
                    participants: args.participants.clone(),
                    video_kbps: args.video_kbps,
                    seconds: args.seconds,
                    server_pid: args.server_pid,
                    concurrency: args.concurrency,
                };
                failed |= !calls::calls(&run, &call_settings).await?;
                continue;
            }
            Scenario::FederationBacklog | Scenario::BigJoin => {
                let federation_settings = federation::Settings {
                    remote_base: args
                        .remote_base
                        .as_deref()
                        .context("federation scenarios need --remote-base")?
                        .trim_end_matches('/')
                        .to_owned(),
                    admin_token: args.admin_token.clone(),
                    sends: args.sends,
                    clients: args.clients,
                    watch: args.watch,
                    members: args.members,
                    state_events: args.state_events,
                    concurrency: args.concurrency,
                    pause_on_stdin: args.pause_on_stdin,
                };
                failed |= !if *scenario == Scenario::BigJoin {
                    federation::big_join(&run, &federation_settings).await?
                } else {
                    federation::backlog(&run, &federation_settings).await?
                };
                continue;
            }
        };
        outcome.print();
        failed |= !outcome.errors.is_empty();
    }
    if failed {
        bail!("errors occurred (see above)");
    }
    Ok(())
}

/// One registered user with its own connection pool.
#[derive(Clone)]
struct User {
    http: Client,
    base: String,
    token: String,
}

impl User {
    async fn register(base: &str, username: &str) -> Result<User> {
        User::register_with(http_client()?, base, username).await
    }

    /// Registers through `http`, a client shared with other users.
    async fn register_with(http: Client, base: &str, username: &str) -> Result<User> {
        let mut user = User {
            http,
            base: base.to_owned(),
            token: String::new(),
        };
        let body = json!({
            "username": username,
            "password": "loadgen password",
            "auth": { "type": "m.login.dummy" },
        });
        loop {
            let (status, reply) = user.call(Method::POST, "/register", Some(&body)).await?;
            if status == StatusCode::TOO_MANY_REQUESTS {
                // Servers limit registrations per address; raise TEATIME_REGISTRATION_BURST.
                let wait = reply["retry_after_ms"].as_u64().unwrap_or(1000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                continue;
            }
            ensure!(
                status == StatusCode::OK,
                "register {username}: {status} {reply}"
            );
            user.token = reply["access_token"]
                .as_str()
                .context("no access_token")?
                .to_owned();
            return Ok(user);
        }
    }

    /// A client API call (`path` after `/_matrix/client/v3`); any status is returned.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        self.request(method, &format!("/_matrix/client/v3{path}"), body)
            .await
    }

    /// A call to any path of the server (e.g. the admin API); any status is returned.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// A call that must answer 200; returns the body.
    async fn ok(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let (status, reply) = self.call(method, path, body).await?;
        ensure!(status == StatusCode::OK, "{path}: {status} {reply}");
        Ok(reply)
    }

    async fn create_room(&self, preset: &str) -> Result<String> {
        let body = json!({ "preset": preset, "name": "loadgen" });
        let reply = self.ok(Method::POST, "/createRoom", Some(&body)).await?;
        Ok(reply["room_id"].as_str().context("no room_id")?.to_owned())
    }

    async fn join(&self, room: &str) -> Result<()> {
        self.ok(
            Method::POST,
            &format!("/rooms/{}/join", encode(room)),
            Some(&json!({})),
        )
        .await?;
        Ok(())
    }

    /// Sends one `m.room.message`; the event id on a 200 with one, an error otherwise.
    async fn send(&self, room: &str, txn_id: &str) -> Result<String> {
        let body = json!({ "msgtype": "m.text", "body": format!("loadgen {txn_id}") });
        self.send_content(room, txn_id, &body).await
    }

    /// Sends one `m.room.message` with `content`; the event id on a 200 with one.
    async fn send_content(&self, room: &str, txn_id: &str, content: &Value) -> Result<String> {
        let path = format!(
            "/rooms/{}/send/m.room.message/{}",
            encode(room),
            encode(txn_id)
        );
        let reply = self.ok(Method::PUT, &path, Some(content)).await?;
        Ok(reply["event_id"]
            .as_str()
            .context("200 without event_id")?
            .to_owned())
    }

    /// One page of `/messages`.
    async fn messages_page(&self, room: &str, from: Option<&str>, limit: u32) -> Result<Value> {
        let mut path = format!("/rooms/{}/messages?dir=b&limit={limit}", encode(room));
        if let Some(from) = from {
            path += &format!("&from={}", encode(from));
        }
        self.ok(Method::GET, &path, None).await
    }

    /// Every event id of the room's timeline, newest first, paging backwards.
    async fn timeline(&self, room: &str) -> Result<Vec<String>> {
        Ok(self
            .timeline_events(room)
            .await?
            .iter()
            .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
            .collect())
    }

    /// Every event of the room's timeline, newest first, paging backwards.
    async fn timeline_events(&self, room: &str) -> Result<Vec<Value>> {
        let mut events = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let mut page = self.messages_page(room, from.as_deref(), 1000).await?;
            let chunk = page["chunk"].as_array_mut().context("no chunk")?;
            let empty = chunk.is_empty();
            events.append(chunk);
            match page["end"].as_str() {
                Some(end) if !empty => from = Some(end.to_owned()),
                _ => return Ok(events),
            }
        }
    }
}

/// An HTTP client for loopback: no proxy, 60 s per request.
fn http_client() -> Result<Client> {
    Ok(Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Percent-encodes a path segment (room ids contain `!` and `:`).
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Run {
    base: String,
    prefix: String,
}

impl Run {
    /// Registers `count` users; each gets its own room, or all join the first one's.
    async fn clients(
        &self,
        tag: &str,
        count: usize,
        shared_room: bool,
    ) -> Result<Vec<(User, String)>> {
        let mut clients = Vec::with_capacity(count);
        let mut shared: Option<String> = None;
        for n in 0..count {
            let user = User::register(&self.base, &format!("{}-{tag}-{n}", self.prefix)).await?;
            let room = match &shared {
                Some(room) => {
                    user.join(room).await?;
                    room.clone()
                }
                None => user.create_room("public_chat").await?,
            };
            if shared_room {
                shared = Some(room.clone());
            }
            clients.push((user, room));
        }
        Ok(clients)
    }

    /// Sends `total` messages split between `clients`, each client sending
    /// one at a time, then checks the acknowledged events through `/messages`.
    async fn sends(
        &self,
        name: &str,
        clients: Vec<(User, String)>,
        total: usize,
        last_room: &mut Option<(User, String)>,
    ) -> Result<Outcome> {
        let started = Instant::now();
        let results = send_split(&clients, total).await?;
        let mut outcome = Outcome::new(name, "sends");
        let mut acked: HashMap<String, Vec<String>> = HashMap::new();
        for ((_, room), (latencies, ids, errors)) in clients.iter().zip(results) {
            outcome.latencies.extend(latencies);
            outcome.errors.extend(errors);
            acked.entry(room.clone()).or_default().extend(ids);
        }
        outcome.elapsed = started.elapsed();

        // Every acknowledged event exactly once in its room's timeline.
        let mut checked = 0;
        for (user, room) in &clients {
            let Some(ids) = acked.remove(room) else {
                continue;
            };
            let mut seen: HashMap<String, usize> = HashMap::new();
            for id in user.timeline(room).await? {
                *seen.entry(id).or_default() += 1;
            }
            for id in ids {
                match seen.get(&id).copied().unwrap_or(0) {
                    1 => checked += 1,
                    0 => outcome.errors.push(format!(
                        "acknowledged {id} missing from /messages of {room}"
                    )),
                    n => outcome
                        .errors
                        .push(format!("acknowledged {id} appears {n} times in {room}")),
                }
            }
        }
        outcome.checked = Some(checked);
        *last_room = clients.into_iter().next();
        Ok(outcome)
    }
}

/// One client's sends: latencies and event ids of the acknowledged ones, errors.
type Sent = (Vec<Duration>, Vec<String>, Vec<String>);

/// Sends `total` messages split between `clients`, all clients at once, each
/// one request at a time; the outcome of each client, in order.
async fn send_split(clients: &[(User, String)], total: usize) -> Result<Vec<Sent>> {
    let count = clients.len();
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(n, (user, room))| {
            let share = total / count + usize::from(n < total % count);
            tokio::spawn(send_loop(user.clone(), room.clone(), share))
        })
        .collect();
    let mut results = Vec::with_capacity(count);
    for task in tasks {
        results.push(task.await?);
    }
    Ok(results)
}

/// One client's sends, one after another.
async fn send_loop(user: User, room: String, count: usize) -> Sent {
    let (mut latencies, mut ids, mut errors) =
        (Vec::with_capacity(count), Vec::with_capacity(count), vec![]);
    for n in 0..count {
        let started = Instant::now();
        match user.send(&room, &format!("txn{n}")).await {
            Ok(id) => {
                latencies.push(started.elapsed());
                ids.push(id);
            }
            Err(e) => errors.push(format!("send: {e:#}")),
        }
    }
    (latencies, ids, errors)
}

/// `requests` × `GET /messages?dir=b&limit=100`, one after another.
async fn messages(user: &User, room: &str, requests: usize) -> Outcome {
    let mut outcome = Outcome::new("messages", "requests");
    let started = Instant::now();
    for _ in 0..requests {
        let request = Instant::now();
        match user.messages_page(room, None, 100).await {
            Ok(page) if page["chunk"].as_array().is_some_and(|c| !c.is_empty()) => {
                outcome.latencies.push(request.elapsed())
            }
            Ok(page) => outcome
                .errors
                .push(format!("messages: empty chunk: {page}")),
            Err(e) => outcome.errors.push(format!("messages: {e:#}")),
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// The measurements of one scenario.
struct Outcome {
    name: String,
    unit: &'static str,
    latencies: Vec<Duration>,
    errors: Vec<String>,
    elapsed: Duration,
    checked: Option<usize>,
}

impl Outcome {
    fn new(name: &str, unit: &'static str) -> Outcome {
        Outcome {
            name: name.to_owned(),
            unit,
            latencies: vec![],
            errors: vec![],
            elapsed: Duration::ZERO,
            checked: None,
        }
    }

    /// One line of `key=value` results on stdout; the first errors on stderr.
    fn print(&self) {
        let mut latencies = self.latencies.clone();
        latencies.sort();
        let ok = latencies.len();
        let rate = ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON);
        let checked = self
            .checked
            .map(|n| format!(" checked={n}"))
            .unwrap_or_default();
        println!(
            "{:<16} {}={ok} errors={} secs={:.2} rate={rate:.0}/s p50={:.2}ms p99={:.2}ms{checked}",
            self.name,
            self.unit,
            self.errors.len(),
            self.elapsed.as_secs_f64(),
            percentile_ms(&latencies, 50.0),
            percentile_ms(&latencies, 99.0),
        );
        for error in self.errors.iter().take(5) {
            eprintln!("  {}: {error}", self.name);
        }
        if self.errors.len() > 5 {
            eprintln!(
                "  {}: … and {} more errors",
                self.name,
                self.errors.len() - 5
            );
        }
    }
}

/// Nearest-rank percentile of sorted latencies, in milliseconds.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}
