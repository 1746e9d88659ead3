//! The `calls` scenario: one call of N participants (for each N of
//! `--participants`) through the server's SFU, each publishing Opus-sized
//! audio and `--video-kbps` of video from a webrtc-rs peer on 127.0.0.1,
//! signalled over the WebSocket like any client. After every participant
//! receives every other's tracks and a warm-up second, it measures for
//! `--seconds`: the packets the subscribers receive (forwarded packets/s),
//! the server's CPU time per forwarded packet (`--server-pid`, from
//! /proc/PID/stat), and the one-way latency of the packets (each carries its
//! send time). The same latency is measured first between two peers
//! connected directly, so the SFU's added latency is the difference.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sfu::{
    RtpCodecKind,
    testing::{PeerOptions, TestPeer},
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    Run, User, http_client, percentile_ms,
    realtime::{Ws, connect, register_users, ws_url},
};

/// How long peers may take to connect and to receive each other.
const PATIENCE: Duration = Duration::from_secs(60);
/// Clock ticks per second of /proc/PID/stat (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

pub struct Settings {
    pub participants: Vec<usize>,
    pub video_kbps: u64,
    pub seconds: u64,
    pub server_pid: Option<u32>,
    pub concurrency: usize,
}

/// Runs every call size; `false` when one fell short.
pub async fn calls(run: &Run, settings: &Settings) -> Result<bool> {
    let direct = direct_latency(settings).await?;
    println!(
        "calls direct: one-way latency between two peers without the SFU p50 {:.2} ms p99 {:.2} ms",
        percentile_ms(&direct, 50.0),
        percentile_ms(&direct, 99.0)
    );
    let mut ok = true;
    for &size in &settings.participants {
        ok &= one_call(run, settings, size, &direct).await?;
    }
    Ok(ok)
}

/// Latency of packets between two peers connected straight to each other.
async fn direct_latency(settings: &Settings) -> Result<Vec<Duration>> {
    let mut sender = TestPeer::new(PeerOptions::loopback()).await?;
    let receiver = TestPeer::new(PeerOptions::loopback()).await?;
    sender.add_track(RtpCodecKind::Video).await?;
    let offer = sender.create_offer().await?;
    let answer = receiver.answer_offer(offer).await?;
    sender.set_answer(answer).await?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let step = Duration::from_millis(20);
    loop {
        for candidate in sender.take_candidates() {
            receiver.add_candidate(candidate).await?;
        }
        for candidate in receiver.take_candidates() {
            sender.add_candidate(candidate).await?;
        }
        if sender.connected(step).await.is_ok() && receiver.connected(step).await.is_ok() {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "direct peers did not connect"
        );
    }
    let _sending = sender.send_media(settings.video_kbps * 1000).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    receiver.record_latencies();
    tokio::time::sleep(Duration::from_secs(settings.seconds)).await;
    let mut latencies = receiver.take_latencies();
    latencies.sort();
    sender.close().await?;
    receiver.close().await?;
    ensure!(!latencies.is_empty(), "no packet between the direct peers");
    Ok(latencies)
}

struct Caller {
    peer: Arc<TestPeer>,
    pump: tokio::task::JoinHandle<()>,
    errors: mpsc::UnboundedReceiver<String>,
}

async fn one_call(
    run: &Run,
    settings: &Settings,
    size: usize,
    direct: &[Duration],
) -> Result<bool> {
    ensure!(size >= 2, "a call needs at least 2 participants");
    let http = http_client()?;
    let users = register_users(
        run,
        &http,
        &format!("call{size}"),
        size,
        settings.concurrency,
    )
    .await?;
    let room = users[0].create_room("public_chat").await?;
    for user in &users[1..] {
        user.join(&room).await?;
    }
    let mut callers = Vec::new();
    for user in &users {
        callers.push(join(run, user, &room).await?);
    }
    let mut sendings = Vec::new();
    for caller in &callers {
        caller.peer.connected(PATIENCE).await?;
        sendings.push(caller.peer.send_media(settings.video_kbps * 1000).await?);
    }
    // Every subscriber must get every other participant's audio and video.
    let streams = size * (size - 1) * 2;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let flowing: usize = callers
            .iter()
            .map(|c| c.peer.received().iter().filter(|t| t.packets > 0).count())
            .sum();
        if flowing >= streams {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{size} participants: only {flowing} of {streams} streams flow");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let packets = |callers: &[Caller]| -> u64 {
        callers
            .iter()
            .flat_map(|c| c.peer.received())
            .map(|t| t.packets)
            .sum()
    };
    for caller in &callers {
        caller.peer.record_latencies();
    }
    let cpu_before = settings.server_pid.map(server_cpu_seconds).transpose()?;
    let packets_before = packets(&callers);
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(settings.seconds)).await;
    let packets_after = packets(&callers);
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = settings.server_pid.map(server_cpu_seconds).transpose()?;
    let mut latencies: Vec<Duration> = callers
        .iter()
        .flat_map(|c| c.peer.take_latencies())
        .collect();
    latencies.sort();

    let forwarded = packets_after - packets_before;
    let per_second = forwarded as f64 / elapsed;
    let cpu = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => {
            let seconds = after - before;
            format!(
                "server CPU {:.0}% of a core, {:.1} µs per forwarded packet",
                100.0 * seconds / elapsed,
                1e6 * seconds / forwarded.max(1) as f64
            )
        }
        _ => "server CPU not measured (no --server-pid)".into(),
    };
    let (p50, p99) = (
        percentile_ms(&latencies, 50.0),
        percentile_ms(&latencies, 99.0),
    );
    let added = (
        p50 - percentile_ms(direct, 50.0),
        p99 - percentile_ms(direct, 99.0),
    );
    println!(
        "calls {size} participants: {} forwarded streams ({} video), {per_second:.0} forwarded packets/s, \
         {cpu}; latency p50 {p50:.2} ms p99 {p99:.2} ms, added by the SFU p50 {:.2} ms p99 {:.2} ms",
        streams,
        size * (size - 1),
        added.0,
        added.1
    );
    let mut ok = !latencies.is_empty();
    drop(sendings);
    for mut caller in callers {
        while let Ok(error) = caller.errors.try_recv() {
            println!("calls {size} participants: error: {error}");
            ok = false;
        }
        caller.peer.close().await?;
        caller.pump.abort();
    }
    Ok(ok)
}

/// Joins `user` to the room's call with audio and video.
async fn join(run: &Run, user: &User, room: &str) -> Result<Caller> {
    let ws = connect(&ws_url(&run.base), &user.token).await?;
    let mut peer = TestPeer::new(PeerOptions::loopback()).await?;
    peer.add_track(RtpCodecKind::Audio).await?;
    peer.add_track(RtpCodecKind::Video).await?;
    let offer = peer.create_offer().await?;
    let peer = Arc::new(peer);
    let (errors_tx, errors) = mpsc::unbounded_channel();
    let join = json!({ "type": "call.join", "room_id": room, "sdp": offer });
    let pump = tokio::spawn(pump(ws, peer.clone(), room.to_owned(), join, errors_tx));
    Ok(Caller { peer, pump, errors })
}

/// The client's side of signalling: sends the join, then applies the
/// server's frames and trickles candidates.
async fn pump(
    mut ws: Ws,
    peer: Arc<TestPeer>,
    room: String,
    join: Value,
    errors: mpsc::UnboundedSender<String>,
) {
    if ws.send(Message::text(join.to_string())).await.is_err() {
        let _ = errors.send("socket closed before call.join".into());
        return;
    }
    let mut trickle = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    _ => return,
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                if frame["type"] == "error" {
                    let _ = errors.send(frame.to_string());
                }
                match peer.on_frame(&room, &frame).await {
                    Ok(Some(reply)) => {
                        if ws.send(Message::text(reply.to_string())).await.is_err() { return }
                    }
                    Ok(None) => {}
                    Err(e) => { let _ = errors.send(e.to_string()); }
                }
            }
            _ = trickle.tick() => {
                for frame in peer.candidate_frames(&room) {
                    if ws.send(Message::text(frame.to_string())).await.is_err() { return }
                }
            }
        }
    }
}

/// User plus system CPU time the process has used, in seconds.
fn server_cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line (the state, field 3,
    // comes first after ')').
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .context("short /proc stat line")?
            .parse::<f64>()
            .context("bad /proc stat field")
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
}
