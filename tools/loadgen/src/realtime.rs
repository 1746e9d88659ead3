//! Real-time delivery: how fast a message reaches everyone in a room over the
//! WebSocket (`ws-fanout`) or long-polling `/sync` (`sync-fanout`), and how
//! many idle WebSockets the server holds (`idle-sockets`).
//!
//! Fan-out: `--clients` users are registered and joined to one public room,
//! each listens (one WebSocket or one `/sync` loop per user), then the first
//! user sends `--messages` messages with `PUT /send`, one request at a time.
//! Each body is `<run marker> <index>`; the instant just before each PUT is
//! the send instant, and a listener stamps the instant each frame or `/sync`
//! response arrives, before parsing it. Latency is stamp minus send instant,
//! over every (listener, message) pair. Every listener must receive every
//! message exactly once and in send order.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt, TryStreamExt, stream};
use reqwest::{Client, Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{
    net::TcpStream,
    sync::{Notify, mpsc, oneshot, watch},
    task::JoinHandle,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};

use crate::{Run, User, encode, http_client, percentile_ms};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one message may take to reach every listener before the run is failed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Listeners keep reading this long after the last expected delivery, to catch duplicates.
const LINGER: Duration = Duration::from_millis(500);
/// Long-poll timeout of the `/sync` listeners.
const SYNC_TIMEOUT_MS: u64 = 30_000;
/// `/sync` filter: a timeline limit above any backlog a run builds.
const SYNC_FILTER: &str = r#"{"room":{"timeline":{"limit":1000}}}"#;
/// How long a `--pause-on-stdin` pause lasts at most.
pub(crate) const PAUSE_LIMIT: Duration = Duration::from_secs(120);

pub struct Settings {
    pub clients: usize,
    pub messages: usize,
    /// `None`: lockstep (each message once every listener has the previous one).
    pub interval: Option<Duration>,
    pub concurrency: usize,
    pub sockets_per_user: usize,
    pub ping_sample: usize,
    pub pause_on_stdin: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Via {
    WebSocket,
    Sync,
}

/// Registers `count` users through one shared HTTP client, `concurrency` at a time.
pub(crate) async fn register_users(
    run: &Run,
    http: &Client,
    tag: &str,
    count: usize,
    concurrency: usize,
) -> Result<Vec<User>> {
    stream::iter(0..count)
        .map(|n| {
            let (http, base) = (http.clone(), run.base.clone());
            let username = format!("{}-{tag}-{n}", run.prefix);
            async move { User::register_with(http, &base, &username).await }
        })
        .buffered(concurrency)
        .try_collect()
        .await
}

/// Opens a WebSocket and authenticates with the `auth` frame.
pub(crate) async fn connect(url: &str, token: &str) -> Result<Ws> {
    // Small buffers: thousands of sockets, little traffic each.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        connect_async_with_config(url, Some(config), true),
    )
    .await
    .context("WebSocket connect timed out after 30 s")?
    .context("WebSocket connect")?;
    ws.send(Message::text(
        json!({ "type": "auth", "token": token }).to_string(),
    ))
    .await?;
    let welcome = async {
        loop {
            let frame = ws.next().await.context("closed before auth.success")??;
            if let Message::Text(text) = frame {
                let frame: Value = serde_json::from_str(&text)?;
                match frame["type"].as_str() {
                    Some("auth.success") => return Ok(()),
                    Some("error") => bail!("auth refused: {frame}"),
                    _ => {}
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), welcome)
        .await
        .context("no auth.success within 10 s")??;
    Ok(ws)
}

pub(crate) fn ws_url(base: &str) -> String {
    let base = base
        .strip_prefix("http://")
        .map(|rest| format!("ws://{rest}"))
        .or_else(|| base.strip_prefix("https://").map(|r| format!("wss://{r}")))
        .unwrap_or_else(|| base.to_owned());
    format!("{base}/_teatime/ws")
}

/// What the listeners have received so far, for the sender and the main task.
struct Progress {
    listeners: usize,
    /// Listeners holding each message.
    per_message: Vec<AtomicUsize>,
    /// Listeners holding every message.
    complete: AtomicUsize,
    /// Woken when a message or a listener becomes complete.
    changed: Notify,
}

impl Progress {
    fn new(listeners: usize, messages: usize) -> Progress {
        Progress {
            listeners,
            per_message: (0..messages).map(|_| AtomicUsize::new(0)).collect(),
            complete: AtomicUsize::new(0),
            changed: Notify::new(),
        }
    }

    /// Waits until `done()` holds, at most `limit`; whether it holds.
    async fn wait(&self, limit: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !done() {
            if tokio::time::timeout_at(deadline, self.changed.notified())
                .await
                .is_err()
            {
                return done();
            }
        }
        true
    }
}

/// One listener's view: the message indices in arrival order, with arrival instants.
struct Tracker {
    marker: Arc<str>,
    progress: Arc<Progress>,
    seen: Vec<bool>,
    distinct: usize,
    arrivals: Vec<(usize, Instant)>,
    error: Option<String>,
}

impl Tracker {
    fn new(marker: Arc<str>, progress: Arc<Progress>) -> Tracker {
        let messages = progress.per_message.len();
        Tracker {
            marker,
            progress,
            seen: vec![false; messages],
            distinct: 0,
            arrivals: Vec::with_capacity(messages),
            error: None,
        }
    }

    /// Records `body` if it is one of this run's messages.
    fn record(&mut self, body: &str, at: Instant) {
        let Some(index) = body
            .strip_prefix(&*self.marker)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|rest| rest.parse::<usize>().ok())
        else {
            return;
        };
        self.arrivals.push((index, at));
        if index >= self.seen.len() || std::mem::replace(&mut self.seen[index], true) {
            return;
        }
        self.distinct += 1;
        let progress = &self.progress;
        let mut changed =
            progress.per_message[index].fetch_add(1, Ordering::Relaxed) + 1 == progress.listeners;
        if self.distinct == self.seen.len() {
            changed |= progress.complete.fetch_add(1, Ordering::Relaxed) + 1 == progress.listeners;
        }
        if changed {
            progress.changed.notify_one();
        }
    }
}

/// The parts of a server frame a listener reads.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    room_id: Option<String>,
    event: Option<FrameEvent>,
}

#[derive(Deserialize)]
struct FrameEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    content: Value,
}

/// A WebSocket listener: reads until `stop`.
async fn ws_listener(
    mut ws: Ws,
    room: Arc<str>,
    mut tracker: Tracker,
    mut stop: watch::Receiver<bool>,
) -> Tracker {
    loop {
        let frame = tokio::select! {
            frame = ws.next() => frame,
            _ = stop.changed() => break,
        };
        let at = Instant::now();
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(close))) => {
                tracker.error = Some(format!("socket closed by the server: {close:?}"));
                return tracker;
            }
            None => {
                tracker.error = Some("socket closed by the server".into());
                return tracker;
            }
            Some(Err(e)) => {
                tracker.error = Some(format!("socket failed: {e}"));
                return tracker;
            }
            Some(Ok(_)) => continue,
        };
        let frame: Frame = match serde_json::from_str(&text) {
            Ok(frame) => frame,
            Err(e) => {
                tracker.error = Some(format!("unreadable frame ({e}): {text}"));
                continue;
            }
        };
        if frame.kind == "error" {
            tracker.error = Some(format!("error frame: {text}"));
            continue;
        }
        if frame.kind != "message.new" || frame.room_id.as_deref() != Some(&*room) {
            continue;
        }
        if let Some(event) = frame.event.filter(|e| e.kind == "m.room.message")
            && let Some(body) = event.content["body"].as_str()
        {
            tracker.record(body, at);
        }
    }
    let _ = ws.close(None).await;
    tracker
}

/// A `/sync` listener: long-polls from `since` until `stop`.
async fn sync_listener(
    user: User,
    room: Arc<str>,
    mut since: String,
    mut tracker: Tracker,
    mut stop: watch::Receiver<bool>,
) -> Tracker {
    loop {
        let path = format!(
            "/sync?since={}&timeout={SYNC_TIMEOUT_MS}&filter={}",
            encode(&since),
            encode(SYNC_FILTER)
        );
        let reply = tokio::select! {
            reply = user.call(Method::GET, &path, None) => reply,
            _ = stop.changed() => break,
        };
        let at = Instant::now();
        let body = match reply {
            Ok((StatusCode::OK, body)) => body,
            Ok((status, body)) => {
                tracker.error = Some(format!("/sync: {status} {body}"));
                break;
            }
            Err(e) => {
                tracker.error = Some(format!("/sync: {e:#}"));
                break;
            }
        };
        let timeline = &body["rooms"]["join"][&*room]["timeline"];
        if timeline["limited"] == true {
            tracker.error = Some(format!("/sync returned a limited timeline after {since}"));
        }
        for event in timeline["events"].as_array().into_iter().flatten() {
            if event["type"] == "m.room.message"
                && let Some(text) = event["content"]["body"].as_str()
            {
                tracker.record(text, at);
            }
        }
        match body["next_batch"].as_str() {
            Some(next) => since = next.to_owned(),
            None => {
                tracker.error = Some(format!("/sync without next_batch: {body}"));
                break;
            }
        }
    }
    tracker
}

/// `GET /sync?timeout=0`: the `next_batch` to start long-polling from.
async fn initial_sync(user: &User) -> Result<String> {
    let path = format!("/sync?timeout=0&filter={}", encode(SYNC_FILTER));
    let body = user.ok(Method::GET, &path, None).await?;
    Ok(body["next_batch"]
        .as_str()
        .context("/sync without next_batch")?
        .to_owned())
}

/// The sender: one PUT at a time; send instants (`None`: not acknowledged),
/// acknowledgement latencies, errors. Stops at the first failure.
async fn send_all(
    sender: &User,
    room: &str,
    marker: &str,
    settings: &Settings,
    progress: &Progress,
) -> (Vec<Option<Instant>>, Vec<Duration>, Vec<String>) {
    let count = settings.messages;
    let (mut sent, mut acks, mut errors) = (vec![None; count], Vec::with_capacity(count), vec![]);
    let start = tokio::time::Instant::now();
    for (index, sent_at) in sent.iter_mut().enumerate() {
        if let Some(interval) = settings.interval {
            tokio::time::sleep_until(start + interval * index as u32).await;
        }
        let content = json!({ "msgtype": "m.text", "body": format!("{marker} {index}") });
        let at = Instant::now();
        if let Err(e) = sender
            .send_content(room, &format!("{marker}-{index}"), &content)
            .await
        {
            errors.push(format!("send {index}: {e:#}"));
            break;
        }
        acks.push(at.elapsed());
        *sent_at = Some(at);
        if settings.interval.is_none() {
            let arrived = &progress.per_message[index];
            let everywhere = || arrived.load(Ordering::Relaxed) >= progress.listeners;
            if !progress.wait(DELIVERY_TIMEOUT, everywhere).await {
                errors.push(format!(
                    "message {index} reached {} of {} listeners within {DELIVERY_TIMEOUT:?}; sending stopped",
                    arrived.load(Ordering::Relaxed),
                    progress.listeners
                ));
                break;
            }
        }
    }
    (sent, acks, errors)
}

/// `ws-fanout` or `sync-fanout`; prints one line, returns whether it passed.
pub async fn fanout(run: &Run, settings: &Settings, via: Via) -> Result<bool> {
    let name = match via {
        Via::WebSocket => "ws-fanout",
        Via::Sync => "sync-fanout",
    };
    let (clients, messages) = (settings.clients, settings.messages);
    let setup = Instant::now();
    let http = http_client()?;
    let tag = format!("{name}-{clients}");
    let users = register_users(run, &http, &tag, clients, settings.concurrency).await?;
    let room = users[0].create_room("public_chat").await?;
    stream::iter(&users[1..])
        .map(|user| user.join(&room))
        .buffer_unordered(settings.concurrency)
        .try_collect::<Vec<()>>()
        .await?;

    let marker: Arc<str> = format!("{}-{tag}", run.prefix).into();
    let room: Arc<str> = room.into();
    let progress = Arc::new(Progress::new(clients, messages));
    let (stop, stopped) = watch::channel(false);
    let tracker = || Tracker::new(marker.clone(), progress.clone());
    let listeners: Vec<JoinHandle<Tracker>> = match via {
        Via::WebSocket => {
            let url = ws_url(&run.base);
            let sockets: Vec<Ws> = stream::iter(&users)
                .map(|user| connect(&url, &user.token))
                .buffered(settings.concurrency)
                .try_collect()
                .await?;
            sockets
                .into_iter()
                .map(|ws| tokio::spawn(ws_listener(ws, room.clone(), tracker(), stopped.clone())))
                .collect()
        }
        Via::Sync => {
            let since: Vec<String> = stream::iter(&users)
                .map(initial_sync)
                .buffered(settings.concurrency)
                .try_collect()
                .await?;
            users
                .iter()
                .zip(since)
                .map(|(user, since)| {
                    tokio::spawn(sync_listener(
                        user.clone(),
                        room.clone(),
                        since,
                        tracker(),
                        stopped.clone(),
                    ))
                })
                .collect()
        }
    };
    let setup_secs = setup.elapsed().as_secs_f64();
    // Let every listener reach its read or long-poll before the first send.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let (sent, acks, mut errors) = send_all(&users[0], &room, &marker, settings, &progress).await;
    let all_there = || progress.complete.load(Ordering::Relaxed) >= clients;
    if errors.is_empty() && !progress.wait(DELIVERY_TIMEOUT, all_there).await {
        errors.push(format!(
            "{} of {clients} listeners had every message {DELIVERY_TIMEOUT:?} after the last send",
            progress.complete.load(Ordering::Relaxed)
        ));
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(LINGER).await;
    let _ = stop.send(true);

    let (mut latencies, mut missing, mut duplicates, mut out_of_order, mut listener_errors) =
        (Vec::with_capacity(clients * messages), 0, 0, 0, 0);
    for (n, listener) in listeners.into_iter().enumerate() {
        let tracker = tokio::time::timeout(Duration::from_secs(30), listener)
            .await
            .context("a listener did not stop")??;
        if let Some(error) = tracker.error {
            listener_errors += 1;
            errors.push(format!("listener {n}: {error}"));
        }
        let mut seen = vec![false; messages];
        let mut next = 0;
        for (index, at) in tracker.arrivals {
            if index >= messages || seen[index] {
                duplicates += 1;
                continue;
            }
            if index != next {
                out_of_order += 1;
            }
            seen[index] = true;
            next = index + 1;
            if let Some(sent) = sent[index] {
                latencies.push(at.saturating_duration_since(sent));
            }
        }
        missing += seen.iter().filter(|seen| !**seen).count();
    }
    if missing > 0 {
        errors.push(format!("{missing} (listener, message) deliveries missing"));
    }
    if duplicates > 0 {
        errors.push(format!("{duplicates} deliveries duplicated"));
    }
    if out_of_order > 0 {
        errors.push(format!("{out_of_order} deliveries out of order"));
    }
    latencies.sort();
    let mut acks = acks;
    acks.sort();
    let pacing = match settings.interval {
        None => "lockstep".to_owned(),
        Some(interval) => format!("{}ms", interval.as_millis()),
    };
    println!(
        "{name:<16} clients={clients} messages={messages} pacing={pacing} deliveries={}/{} \
         missing={missing} duplicates={duplicates} out_of_order={out_of_order} \
         listener_errors={listener_errors} errors={} p50={:.2}ms p99={:.2}ms max={:.2}ms \
         send_p50={:.2}ms send_p99={:.2}ms secs={:.2} setup_secs={setup_secs:.1}",
        latencies.len(),
        clients * messages,
        errors.len(),
        percentile_ms(&latencies, 50.0),
        percentile_ms(&latencies, 99.0),
        percentile_ms(&latencies, 100.0),
        percentile_ms(&acks, 50.0),
        percentile_ms(&acks, 99.0),
        elapsed.as_secs_f64(),
    );
    print_errors(name, &errors);
    Ok(errors.is_empty())
}

/// A ping request to an idle socket: answered with the round trip.
type PingRequest = oneshot::Sender<Duration>;

/// An idle socket's task and the way to ping it.
type Held = (mpsc::Sender<PingRequest>, JoinHandle<Result<(), String>>);

/// Holds one idle socket: answers nothing, pings on request, closes when
/// `pings` closes. `Err` if the server closed or broke the socket first.
async fn idle_socket(mut ws: Ws, mut pings: mpsc::Receiver<PingRequest>) -> Result<(), String> {
    let mut pending: Option<(Instant, PingRequest)> = None;
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                    if frame["type"] == "pong"
                        && let Some((at, reply)) = pending.take()
                    {
                        let _ = reply.send(at.elapsed());
                    }
                }
                Some(Ok(Message::Close(close))) => return Err(format!("closed by the server: {close:?}")),
                None => return Err("closed by the server".into()),
                Some(Err(e)) => return Err(format!("socket failed: {e}")),
                Some(Ok(_)) => {}
            },
            request = pings.recv() => match request {
                Some(reply) => {
                    let at = Instant::now();
                    if let Err(e) = ws.send(Message::text(r#"{"type":"ping"}"#)).await {
                        return Err(format!("ping failed: {e}"));
                    }
                    pending = Some((at, reply));
                }
                None => {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
            },
        }
    }
}

/// Lines of stdin, read on a thread of its own; the channel closes at EOF.
pub(crate) fn stdin_lines() -> mpsc::Receiver<()> {
    let (lines, receiver) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
            if lines.blocking_send(()).is_err() {
                break;
            }
        }
    });
    receiver
}

/// `idle-sockets`; prints three lines, returns whether it passed.
pub async fn idle_sockets(run: &Run, settings: &Settings) -> Result<bool> {
    let name = "idle-sockets";
    let sockets = settings.clients;
    let mut stdin = settings.pause_on_stdin.then(stdin_lines);
    let mut pause = async || {
        if let Some(lines) = stdin.as_mut() {
            let _ = tokio::time::timeout(PAUSE_LIMIT, lines.recv()).await;
        }
    };

    let started = Instant::now();
    let http = http_client()?;
    let user_count = sockets.div_ceil(settings.sockets_per_user);
    let users = register_users(run, &http, name, user_count, settings.concurrency).await?;
    println!(
        "{name:<16} phase=registered users={user_count} secs={:.1}",
        started.elapsed().as_secs_f64()
    );
    pause().await;

    let started = Instant::now();
    let url = ws_url(&run.base);
    let mut errors = vec![];
    let mut held: Vec<Held> = Vec::with_capacity(sockets);
    let mut connections = stream::iter(0..sockets)
        .map(|n| connect(&url, &users[n % user_count].token))
        .buffer_unordered(settings.concurrency);
    while let Some(connected) = connections.next().await {
        match connected {
            Ok(ws) => {
                let (pings, requests) = mpsc::channel(1);
                held.push((pings, tokio::spawn(idle_socket(ws, requests))));
            }
            Err(e) => errors.push(format!("connect: {e:#}")),
        }
    }
    drop(connections);
    let open_secs = started.elapsed().as_secs_f64();
    println!(
        "{name:<16} phase=open sockets={} errors={} secs={open_secs:.1} rate={:.0}/s",
        held.len(),
        errors.len(),
        held.len() as f64 / open_secs.max(f64::EPSILON),
    );
    print_errors(name, &errors);
    pause().await;

    // Still alive: no socket task has ended, and a sample answers `ping`.
    let closed = held.iter().filter(|(_, task)| task.is_finished()).count();
    let step = (held.len() / settings.ping_sample.max(1)).max(1);
    let (mut pinged, mut round_trips) = (0, vec![]);
    for (pings, _) in held.iter().step_by(step) {
        pinged += 1;
        let (reply, answer) = oneshot::channel();
        if pings.send(reply).await.is_err() {
            continue;
        }
        match tokio::time::timeout(Duration::from_secs(10), answer).await {
            Ok(Ok(round_trip)) => round_trips.push(round_trip),
            _ => errors.push("no pong within 10 s".into()),
        }
    }
    let mut failures = 0;
    for (n, (pings, task)) in held.into_iter().enumerate() {
        drop(pings);
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                failures += 1;
                errors.push(format!("socket {n}: {e}"));
            }
            Ok(Err(e)) => bail!("socket task: {e}"),
            Err(_) => errors.push(format!("socket {n} did not close within 10 s")),
        }
    }
    round_trips.sort();
    let pongs = round_trips.len();
    if pongs < pinged {
        errors.push(format!("{} pings unanswered", pinged - pongs));
    }
    println!(
        "{name:<16} phase=checked sockets={sockets} closed_before_check={closed} failed={failures} pinged={pinged} pongs={pongs} \
         p50={:.2}ms p99={:.2}ms errors={}",
        percentile_ms(&round_trips, 50.0),
        percentile_ms(&round_trips, 99.0),
        errors.len(),
    );
    print_errors(name, &errors);
    Ok(errors.is_empty())
}

/// The first errors on stderr.
pub(crate) fn print_errors(name: &str, errors: &[String]) {
    for error in errors.iter().take(5) {
        eprintln!("  {name}: {error}");
    }
    if errors.len() > 5 {
        eprintln!("  {name}: … and {} more errors", errors.len() - 5);
    }
}
