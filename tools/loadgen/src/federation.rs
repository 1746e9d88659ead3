//! Federation between two running servers that federate: A (`--base`) and
//! B (`--remote-base`). Server names are read from the users' ids.
//!
//! `federation-backlog`: `--clients` users of A share a public room, a user
//! of B joins it through A and listens on B's WebSocket. A's administrator
//! (`--admin-token`) denies B in A's federation rules, A's users send
//! `--sends` messages (all clients at once), and nothing may reach B. After
//! the `phase=queued` line (and, with `--pause-on-stdin`, a line on stdin, so
//! that a script can look at A's queue) the rules are restored and the clock
//! runs from that request until B has the last of the messages: A sends its
//! backlog in transactions of up to 50 PDUs, so the rate is B's inbound rate
//! of such transactions. `--watch socket` (the default) sees the arrivals on
//! the reader's WebSocket, where every acknowledged message must arrive
//! exactly once; `--watch messages` polls B's `/messages` instead (every
//! 20 ms, back to the newest event already seen), which writes nothing on
//! B, whereas each incremental sync of a socket also acknowledges to-device
//! messages, a write that competes with the incoming events for SQLite's
//! lock. Either way every acknowledged message must then be stored
//! exactly once in B's `/messages`, and B must hold no other message.
//!
//! `big-join`: `--members` users of A (the creator included) join a public
//! room, its creator sets `org.teatime.bench` state events with distinct
//! state keys until the room has `--state-events` state events (line
//! `phase=built`, then the `--pause-on-stdin` pause), then a user of B joins
//! it through A: the wall time of that join request (line `phase=joined`),
//! and B's `GET /state` must hold exactly A's.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use clap::ValueEnum;
use futures_util::{StreamExt, TryStreamExt, stream};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    Run, User, encode, http_client,
    realtime::{self, PAUSE_LIMIT, Ws, print_errors},
    send_split,
};

/// How `federation-backlog` sees B's arrivals.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Watch {
    /// The `message.new` frames of the reader's WebSocket.
    Socket,
    /// Polls of `/messages`.
    Messages,
}

pub struct Settings {
    pub remote_base: String,
    pub admin_token: Option<String>,
    pub sends: usize,
    pub clients: usize,
    pub watch: Watch,
    pub members: usize,
    pub state_events: usize,
    pub concurrency: usize,
    pub pause_on_stdin: bool,
}

/// The backlog fails when nothing new reaches B for this long.
const STALL_LIMIT: Duration = Duration::from_secs(60);
/// How long B is watched after the last expected message, to catch duplicates.
const LINGER: Duration = Duration::from_millis(500);
/// The pause between two polls of `--watch messages`.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Events per page of those polls: about one transaction's worth, so that a
/// poll formats little more than the events that are new to it.
const POLL_PAGE: u32 = 50;
/// How long A's denial must hold B's messages back before the queue is looked at.
const DENIED_WAIT: Duration = Duration::from_millis(500);

/// The server part of `user`'s id.
async fn server_name(user: &User) -> Result<String> {
    let reply = user.ok(Method::GET, "/account/whoami", None).await?;
    let user_id = reply["user_id"]
        .as_str()
        .context("whoami without user_id")?;
    Ok(user_id
        .split_once(':')
        .context("a user id without server name")?
        .1
        .to_owned())
}

/// `POST /join/{room}?server_name=`: joins a room of another server through it.
async fn join_via(user: &User, room: &str, server: &str) -> Result<()> {
    let path = format!("/join/{}?server_name={}", encode(room), encode(server));
    user.ok(Method::POST, &path, Some(&json!({}))).await?;
    Ok(())
}

/// The room's current state events, as `user` sees them.
async fn state_events(user: &User, room: &str) -> Result<Vec<Value>> {
    let reply = user
        .ok(Method::GET, &format!("/rooms/{}/state", encode(room)), None)
        .await?;
    match reply {
        Value::Array(events) => Ok(events),
        other => bail!("/state is not a list: {other}"),
    }
}

/// An admin API call (`path` after `/_teatime/admin/v1`) that must answer 200.
async fn admin_ok(admin: &User, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
    let (status, reply) = admin
        .request(method, &format!("/_teatime/admin/v1{path}"), body)
        .await?;
    ensure!(status == StatusCode::OK, "admin {path}: {status} {reply}");
    Ok(reply)
}

/// Reads B's socket: the id and arrival instant of every `m.room.message`
/// of `room`, until the receiver goes away; `Err` if the socket fails first.
async fn arrivals(
    mut ws: Ws,
    room: String,
    found: mpsc::UnboundedSender<(String, Instant)>,
) -> Result<()> {
    while let Some(frame) = ws.next().await {
        let at = Instant::now();
        match frame? {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text)?;
                match frame["type"].as_str() {
                    Some("message.new")
                        if frame["room_id"] == room.as_str()
                            && frame["event"]["type"] == "m.room.message" =>
                    {
                        let id = frame["event"]["event_id"]
                            .as_str()
                            .context("message.new without event_id")?;
                        if found.send((id.to_owned(), at)).is_err() {
                            return Ok(());
                        }
                    }
                    Some("error") => bail!("error frame: {text}"),
                    _ => {}
                }
            }
            Message::Close(close) => bail!("socket closed by the server: {close:?}"),
            _ => {}
        }
    }
    bail!("socket closed by the server")
}

/// Polls B's `/messages`: the id of every new `m.room.message` of `room`,
/// stamped with the end of the poll that found it, until the receiver goes
/// away. Each poll pages back from the newest event to the newest one an
/// earlier poll saw.
async fn polled_arrivals(
    user: User,
    room: String,
    found: mpsc::UnboundedSender<(String, Instant)>,
) -> Result<()> {
    let mut known = HashSet::new();
    loop {
        let (mut from, mut new) = (None::<String>, vec![]);
        'pages: loop {
            let page = user
                .messages_page(&room, from.as_deref(), POLL_PAGE)
                .await?;
            let chunk = page["chunk"].as_array().context("no chunk")?;
            for event in chunk {
                let id = event["event_id"].as_str().context("an event without id")?;
                if !known.insert(id.to_owned()) {
                    break 'pages;
                }
                if event["type"] == "m.room.message" {
                    new.push(id.to_owned());
                }
            }
            match page["end"].as_str() {
                Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
                _ => break,
            }
        }
        let at = Instant::now();
        for id in new.into_iter().rev() {
            if found.send((id, at)).is_err() {
                return Ok(());
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `federation-backlog`; prints two lines, returns whether it passed.
pub async fn backlog(run: &Run, settings: &Settings) -> Result<bool> {
    let name = "federation-backlog";
    let admin = User {
        http: http_client()?,
        base: run.base.clone(),
        token: settings
            .admin_token
            .clone()
            .context("federation-backlog needs --admin-token (an administrator of --base)")?,
    };
    let mut stdin = settings.pause_on_stdin.then(realtime::stdin_lines);
    let setup = Instant::now();

    // A's senders share one public room; B's reader joins it through A.
    let senders = run.clients("backlog", settings.clients, true).await?;
    let room = senders[0].1.clone();
    let a_name = server_name(&senders[0].0).await?;
    let reader = User::register(
        &settings.remote_base,
        &format!("{}-backlog-reader", run.prefix),
    )
    .await?;
    let b_name = server_name(&reader).await?;
    ensure!(
        a_name != b_name,
        "--base and --remote-base are one server ({a_name})"
    );
    join_via(&reader, &room, &a_name).await?;
    let (found, mut arrived) = mpsc::unbounded_channel();
    let listener = match settings.watch {
        Watch::Socket => {
            let url = realtime::ws_url(&settings.remote_base);
            let ws = realtime::connect(&url, &reader.token).await?;
            tokio::spawn(arrivals(ws, room.clone(), found))
        }
        Watch::Messages => tokio::spawn(polled_arrivals(reader.clone(), room.clone(), found)),
    };
    let watch = match settings.watch {
        Watch::Socket => "socket",
        Watch::Messages => "messages",
    };

    // A holds back whatever it owes B.
    let rules = admin_ok(&admin, Method::GET, "/federation/rules", None).await?;
    let mut denied = rules.clone();
    denied["deny"]
        .as_array_mut()
        .context("federation rules without a deny list")?
        .push(json!(b_name));
    admin_ok(&admin, Method::PUT, "/federation/rules", Some(&denied)).await?;
    let setup_secs = setup.elapsed().as_secs_f64();

    let mut errors = vec![];
    let started = Instant::now();
    let mut acked = HashSet::with_capacity(settings.sends);
    for (_, ids, send_errors) in send_split(&senders, settings.sends).await? {
        acked.extend(ids);
        errors.extend(send_errors);
    }
    let send_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(DENIED_WAIT).await;
    let mut leaked = 0;
    while arrived.try_recv().is_ok() {
        leaked += 1;
    }
    if leaked > 0 {
        errors.push(format!("{leaked} messages reached B while A denied it"));
    }
    println!(
        "{name:<16} phase=queued watch={watch} destination={b_name} room={room} sent={} send_secs={send_secs:.2} \
         send_rate={:.0}/s setup_secs={setup_secs:.1} errors={}",
        acked.len(),
        acked.len() as f64 / send_secs.max(f64::EPSILON),
        errors.len(),
    );
    if let Some(lines) = stdin.as_mut() {
        let _ = tokio::time::timeout(PAUSE_LIMIT, lines.recv()).await;
    }

    // Allowed again: the clock runs until B has every message.
    let lifted = Instant::now();
    admin_ok(&admin, Method::PUT, "/federation/rules", Some(&rules)).await?;
    let (mut seen, mut received) = (HashMap::<String, usize>::new(), 0);
    let (mut first, mut last) = (None, None);
    while received < acked.len() {
        match tokio::time::timeout(STALL_LIMIT, arrived.recv()).await {
            Ok(Some((id, at))) => {
                first.get_or_insert(at);
                let expected = acked.contains(&id);
                let times = seen.entry(id).or_default();
                *times += 1;
                if *times == 1 && expected {
                    received += 1;
                    last = Some(at);
                }
            }
            Ok(None) => break,
            Err(_) => {
                errors.push(format!(
                    "B ({watch}) had {received} of {} messages, then nothing new for {STALL_LIMIT:?}",
                    acked.len()
                ));
                break;
            }
        }
    }
    let elapsed = last.map(|at| at.saturating_duration_since(lifted));
    let first_ms = first.map(|at| at.saturating_duration_since(lifted).as_secs_f64() * 1000.0);
    tokio::time::sleep(LINGER).await;
    while let Ok((id, _)) = arrived.try_recv() {
        *seen.entry(id).or_default() += 1;
    }
    if listener.is_finished() {
        match listener.await {
            Ok(Err(e)) => errors.push(format!("watching B ({watch}): {e:#}")),
            Err(e) => errors.push(format!("watching B ({watch}): {e}")),
            Ok(Ok(())) => {}
        }
    } else {
        listener.abort();
    }

    // Exactly the acknowledged messages, each once, as watched and in B's store.
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    let unexpected = seen.keys().filter(|id| !acked.contains(*id)).count();
    let missing = acked.iter().filter(|id| !seen.contains_key(*id)).count();
    let mut stored: HashMap<String, usize> = HashMap::new();
    for event in reader.timeline_events(&room).await? {
        if event["type"] == "m.room.message"
            && let Some(id) = event["event_id"].as_str()
        {
            *stored.entry(id.to_owned()).or_default() += 1;
        }
    }
    let stored_total: usize = stored.values().sum();
    let stored_ok = acked
        .iter()
        .filter(|id| stored.get(*id) == Some(&1))
        .count();
    for (what, count) in [
        ("seen more than once on B", duplicates),
        ("seen on B but never acknowledged by A", unexpected),
        ("missing on B", missing),
    ] {
        if count > 0 {
            errors.push(format!("{count} messages {what}"));
        }
    }
    if stored_total != acked.len() || stored_ok != acked.len() {
        errors.push(format!(
            "B's /messages holds {stored_total} messages, {stored_ok} of the {} acknowledged exactly once",
            acked.len()
        ));
    }
    let secs = elapsed.map_or(f64::NAN, |e| e.as_secs_f64());
    println!(
        "{name:<16} phase=delivered watch={watch} pdus={} received={received} stored={stored_total} duplicates={duplicates} \
         missing={missing} unexpected={unexpected} secs={secs:.3} rate={:.0}/s first_ms={:.1} errors={}",
        acked.len(),
        acked.len() as f64 / secs,
        first_ms.unwrap_or(f64::NAN),
        errors.len(),
    );
    print_errors(name, &errors);
    Ok(errors.is_empty())
}

/// `big-join`; prints two lines, returns whether it passed.
pub async fn big_join(run: &Run, settings: &Settings) -> Result<bool> {
    let name = "big-join";
    ensure!(settings.members > 0, "--members must be at least 1");
    let setup = Instant::now();
    let http = http_client()?;
    let users = realtime::register_users(
        run,
        &http,
        "bigjoin",
        settings.members,
        settings.concurrency,
    )
    .await?;
    let creator = &users[0];
    let room = creator.create_room("public_chat").await?;
    stream::iter(&users[1..])
        .map(|user| user.join(&room))
        .buffer_unordered(settings.concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    let members_secs = setup.elapsed().as_secs_f64();

    // The creator's state events fill the room up to `--state-events`.
    let before = state_events(creator, &room).await?.len();
    ensure!(
        before <= settings.state_events,
        "the room has {before} state events with its members alone, more than --state-events"
    );
    let custom = settings.state_events - before;
    let filling = Instant::now();
    stream::iter(0..custom)
        .map(|n| {
            let path = format!("/rooms/{}/state/org.teatime.bench/key{n}", encode(&room));
            async move {
                creator
                    .ok(Method::PUT, &path, Some(&json!({ "n": n })))
                    .await
            }
        })
        .buffer_unordered(settings.concurrency)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let fill_secs = filling.elapsed().as_secs_f64();
    let on_a = state_events(creator, &room).await?.len();
    ensure!(
        on_a == settings.state_events,
        "A's room has {on_a} state events, not {}",
        settings.state_events
    );
    let a_name = server_name(creator).await?;
    let joiner =
        User::register(&settings.remote_base, &format!("{}-bigjoin-b", run.prefix)).await?;
    println!(
        "{name:<16} phase=built members={} state_events={on_a} setup_secs={:.1} \
         members_secs={members_secs:.1} state_rate={:.0}/s",
        settings.members,
        setup.elapsed().as_secs_f64(),
        custom as f64 / fill_secs.max(f64::EPSILON),
    );
    if settings.pause_on_stdin {
        let mut lines = realtime::stdin_lines();
        let _ = tokio::time::timeout(PAUSE_LIMIT, lines.recv()).await;
    }

    let mut errors = vec![];
    let started = Instant::now();
    let joined = join_via(&joiner, &room, &a_name).await;
    let join_secs = started.elapsed().as_secs_f64();
    let (mut on_b, mut members_on_b) = (0, 0);
    match joined {
        Ok(()) => {
            let state = state_events(&joiner, &room).await?;
            on_b = state.len();
            members_on_b = state
                .iter()
                .filter(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "join")
                .count();
            let on_a = state_events(creator, &room).await?.len();
            if on_b != on_a || on_a != settings.state_events + 1 {
                errors.push(format!(
                    "B reports {on_b} state events, A {on_a}, expected {}",
                    settings.state_events + 1
                ));
            }
            if members_on_b != settings.members + 1 {
                errors.push(format!(
                    "B reports {members_on_b} joined members, expected {}",
                    settings.members + 1
                ));
            }
        }
        Err(e) => errors.push(format!("join through A: {e:#}")),
    }
    println!(
        "{name:<16} phase=joined members={} state_events={} join_secs={join_secs:.3} \
         state_on_b={on_b} members_on_b={members_on_b} errors={}",
        settings.members,
        settings.state_events,
        errors.len(),
    );
    print_errors(name, &errors);
    Ok(errors.is_empty())
}
