//! Client peers for tests and benchmarks: a webrtc-rs peer connection that
//! publishes generated audio and video and counts what it receives. Each
//! packet it sends carries its send time, so a receiver in the same process
//! measures the one-way latency through the SFU. [`TestPeer::on_frame`] and
//! [`TestPeer::candidate_frames`] play the client's side of TeaTime's call
//! signalling frames (docs/websocket.md).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};
use rtc::{
    rtp,
    rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters},
};
use tokio::sync::{mpsc, watch};
use webrtc::{
    media_stream::{
        MediaStreamTrack,
        track_local::{TrackLocal, TrackLocalEvent, static_rtp::TrackLocalStaticRTP},
        track_remote::{TrackRemote, TrackRemoteEvent},
    },
    peer_connection::{
        PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCIceServer,
        RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription,
    },
    rtp_transceiver::RtpSender,
};

use crate::{
    Error, IceCandidate, Result, RtpCodecKind,
    codec::Codec,
    forward,
    peer::{self, PeerPlacement},
};

/// Send times are nanoseconds since this instant (one per process).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// How a test peer reaches the server.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// The address its socket binds (tests: 127.0.0.1).
    pub bind_ip: IpAddr,
    /// STUN/TURN servers: `(urls, username, credential)`.
    pub ice_servers: Vec<(Vec<String>, String, String)>,
    /// Gather and use relay (TURN) candidates only.
    pub relay_only: bool,
}

impl PeerOptions {
    /// A peer on the loopback address with no ICE servers.
    pub fn loopback() -> Self {
        Self {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            ice_servers: Vec::new(),
            relay_only: false,
        }
    }
}

/// What arrived on one received track.
#[derive(Debug, Clone)]
pub struct ReceivedTrack {
    /// The MediaStream id the server sent it under (its publisher's).
    pub stream_id: String,
    /// Audio or video.
    pub kind: RtpCodecKind,
    /// RTP packets received.
    pub packets: u64,
    /// When the last packet arrived.
    pub last_packet: Option<Instant>,
}

struct Published {
    track: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    kind: RtpCodecKind,
    ssrc: u32,
}

#[derive(Default)]
struct Inbox {
    tracks: HashMap<String, ReceivedTrack>,
    /// The received tracks themselves, by track id (to send feedback on).
    remote: HashMap<String, Arc<dyn TrackRemote>>,
    /// Key-frame requests (PLI, FIR) that reached this peer's video tracks.
    key_frame_requests: u64,
    /// One-way latencies of received packets, while recording.
    latencies: Option<Vec<Duration>>,
}

/// A client peer connection.
pub struct TestPeer {
    peer: Arc<dyn PeerConnection>,
    candidates: Mutex<mpsc::UnboundedReceiver<IceCandidate>>,
    state: watch::Receiver<RTCPeerConnectionState>,
    inbox: Arc<Mutex<Inbox>>,
    published: Vec<Published>,
}

struct ClientEvents {
    candidates: mpsc::UnboundedSender<IceCandidate>,
    state: watch::Sender<RTCPeerConnectionState>,
    inbox: Arc<Mutex<Inbox>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for ClientEvents {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.candidates.send(IceCandidate {
                candidate: init.candidate,
                sdp_mid: None,
                sdp_mline_index: Some(0),
            });
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let id = track.track_id().await.to_string();
        let stream_id = track.stream_id().await.to_string();
        let kind = track.kind().await;
        let inbox = self.inbox.clone();
        inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remote
            .insert(id.clone(), track.clone());
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(packet) => {
                        record(&inbox, &id, &stream_id, kind, &packet)
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

fn record(
    inbox: &Mutex<Inbox>,
    id: &str,
    stream_id: &str,
    kind: RtpCodecKind,
    packet: &rtp::Packet,
) {
    let now = Instant::now();
    let mut inbox = inbox.lock().unwrap_or_else(|e| e.into_inner());
    let entry = inbox
        .tracks
        .entry(id.to_owned())
        .or_insert_with(|| ReceivedTrack {
            stream_id: stream_id.to_owned(),
            kind,
            packets: 0,
            last_packet: None,
        });
    entry.packets += 1;
    entry.last_packet = Some(now);
    if let (Some(latencies), Some(sent)) = (inbox.latencies.as_mut(), sent_at(&packet.payload)) {
        latencies.push(now.saturating_duration_since(sent));
    }
}

fn sent_at(payload: &[u8]) -> Option<Instant> {
    let nanos = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
    Some(epoch() + Duration::from_nanos(nanos))
}

impl TestPeer {
    /// A peer connection with no tracks yet.
    pub async fn new(options: PeerOptions) -> Result<Self> {
        let (candidates_tx, candidates) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let events = Arc::new(ClientEvents {
            candidates: candidates_tx,
            state: state_tx,
            inbox: inbox.clone(),
        });
        let ice_servers = options
            .ice_servers
            .into_iter()
            .map(|(urls, username, credential)| RTCIceServer {
                urls,
                username,
                credential,
            })
            .collect();
        let placement = PeerPlacement {
            socket: SocketAddr::new(options.bind_ip, 0),
            public_ip: None,
            ice_servers,
            relay_only: options.relay_only,
        };
        let peer = peer::build(placement, events).await?;
        Ok(Self {
            peer,
            candidates: Mutex::new(candidates),
            state,
            inbox,
            published: Vec::new(),
        })
    }

    /// Adds a track to publish: Opus audio or VP8 video.
    pub async fn add_track(&mut self, kind: RtpCodecKind) -> Result<()> {
        let codec = Codec::for_kind(kind);
        let ssrc = rand::random::<u32>();
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            format!("client-{ssrc}"),
            format!("{kind}-{ssrc}"),
            format!("{kind}"),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: codec.parameters().rtp_codec,
                ..Default::default()
            }],
        )));
        let sender = self
            .peer
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await?;
        self.published.push(Published {
            track,
            sender,
            kind,
            ssrc,
        });
        Ok(())
    }

    /// Creates the offer a client sends with `call.join`.
    pub async fn create_offer(&self) -> Result<String> {
        let offer = self.peer.create_offer(None).await?;
        self.peer.set_local_description(offer).await?;
        self.local_sdp().await
    }

    /// Applies the server's answer.
    pub async fn set_answer(&self, sdp: String) -> Result<()> {
        let answer = RTCSessionDescription::answer(sdp)?;
        Ok(self.peer.set_remote_description(answer).await?)
    }

    /// Applies a server offer (renegotiation) and returns the answer.
    pub async fn answer_offer(&self, sdp: String) -> Result<String> {
        let offer = RTCSessionDescription::offer(sdp)?;
        self.peer.set_remote_description(offer).await?;
        let answer = self.peer.create_answer(None).await?;
        self.peer.set_local_description(answer).await?;
        self.local_sdp().await
    }

    async fn local_sdp(&self) -> Result<String> {
        self.peer
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| Error::WebRtc("no local description".into()))
    }

    /// The server's latest session description.
    pub async fn remote_sdp(&self) -> Option<String> {
        self.peer.remote_description().await.map(|d| d.sdp)
    }

    /// Adds one of the server's candidates.
    pub async fn add_candidate(&self, candidate: IceCandidate) -> Result<()> {
        let init = RTCIceCandidateInit {
            candidate: candidate.candidate,
            sdp_mid: candidate.sdp_mid,
            sdp_mline_index: candidate.sdp_mline_index,
            ..RTCIceCandidateInit::default()
        };
        Ok(self.peer.add_ice_candidate(init).await?)
    }

    /// The local candidates gathered since the last call.
    pub fn take_candidates(&self) -> Vec<IceCandidate> {
        let mut queue = self.candidates.lock().unwrap_or_else(|e| e.into_inner());
        std::iter::from_fn(|| queue.try_recv().ok()).collect()
    }

    /// The connection's state now.
    pub fn state(&self) -> RTCPeerConnectionState {
        *self.state.borrow()
    }

    /// Waits until the connection is up; fails on failure or after `limit`.
    pub async fn connected(&self, limit: Duration) -> Result<()> {
        let mut state = self.state.clone();
        let wait = state.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed
            )
        });
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(s)) if *s == RTCPeerConnectionState::Connected => Ok(()),
            Ok(_) => Err(Error::WebRtc("the connection failed".into())),
            Err(_) => Err(Error::WebRtc(format!(
                "not connected after {limit:?} (state {})",
                self.state()
            ))),
        }
    }

    /// Starts sending generated media on every track until the returned
    /// handle is dropped: audio as 50 packets/s of 80 bytes (an Opus voice),
    /// video as packets of 1,000 bytes adding up to `video_bits_per_second`.
    pub async fn send_media(&self, video_bits_per_second: u64) -> Result<Sending> {
        let mut tasks = Vec::new();
        for published in &self.published {
            let parameters = published.sender.get_parameters().await?;
            let mime = Codec::for_kind(published.kind)
                .parameters()
                .rtp_codec
                .mime_type;
            let payload_type = parameters
                .rtp_parameters
                .codecs
                .iter()
                .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(&mime))
                .map(|c| c.payload_type)
                .ok_or_else(|| Error::WebRtc(format!("{mime} not negotiated")))?;
            let plan = match published.kind {
                RtpCodecKind::Audio => Plan {
                    payload_bytes: 80,
                    interval: Duration::from_millis(20),
                    clock_step: 960,
                    packets_per_frame: 1,
                },
                _ => {
                    let per_second = (video_bits_per_second / 8_000).max(1);
                    Plan {
                        payload_bytes: 1000,
                        interval: Duration::from_nanos(1_000_000_000 / per_second),
                        clock_step: 3000,
                        packets_per_frame: 4,
                    }
                }
            };
            let track = published.track.clone();
            let ssrc = published.ssrc;
            if published.kind == RtpCodecKind::Video {
                let counter = count_key_frame_requests(track.clone(), self.inbox.clone());
                tasks.push(tokio::spawn(counter).abort_handle());
            }
            tasks.push(tokio::spawn(send_loop(track, ssrc, payload_type, plan)).abort_handle());
        }
        Ok(Sending { tasks })
    }

    /// What arrived so far, per received track.
    pub fn received(&self) -> Vec<ReceivedTrack> {
        let inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        inbox.tracks.values().cloned().collect()
    }

    /// Key-frame requests that reached this peer's video since it started sending.
    pub fn key_frame_requests(&self) -> u64 {
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .key_frame_requests
    }

    /// Asks, as a decoder does, for a key frame of each received video track
    /// of the stream (RTCP PLI to the server).
    pub async fn request_key_frame(&self, stream_id: &str) -> Result<()> {
        let tracks: Vec<Arc<dyn TrackRemote>> = {
            let inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
            inbox
                .tracks
                .iter()
                .filter(|(_, t)| t.stream_id == stream_id && t.kind == RtpCodecKind::Video)
                .filter_map(|(id, _)| inbox.remote.get(id).cloned())
                .collect()
        };
        if tracks.is_empty() {
            return Err(Error::WebRtc(format!("no video received from {stream_id}")));
        }
        for track in tracks {
            if let Some(ssrc) = track.ssrcs().await.first().copied() {
                forward::request_key_frame(&track, ssrc).await;
            }
        }
        Ok(())
    }

    /// Starts (or restarts) recording one-way latencies of received packets.
    pub fn record_latencies(&self) {
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .latencies = Some(Vec::new());
    }

    /// The latencies recorded since [`record_latencies`](Self::record_latencies).
    pub fn take_latencies(&self) -> Vec<Duration> {
        let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        inbox.latencies.take().unwrap_or_default()
    }

    /// Applies a server frame of the room's call (`call.answer`,
    /// `call.offer`, `call.candidate`) and returns the frame to reply with,
    /// if any. Other frames are ignored.
    pub async fn on_frame(
        &self,
        room_id: &str,
        frame: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>> {
        if frame["room_id"] != room_id {
            return Ok(None);
        }
        let sdp = || {
            frame["sdp"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| Error::BadSdp(format!("no sdp in {frame}")))
        };
        match frame["type"].as_str() {
            Some("call.answer") => self.set_answer(sdp()?).await.map(|()| None),
            Some("call.offer") => {
                let answer = self.answer_offer(sdp()?).await?;
                Ok(Some(serde_json::json!({
                    "type": "call.answer",
                    "room_id": room_id,
                    "sdp": answer,
                })))
            }
            Some("call.candidate") => {
                let candidate = IceCandidate {
                    candidate: frame["candidate"]
                        .as_str()
                        .ok_or_else(|| Error::BadSdp(format!("no candidate in {frame}")))?
                        .to_owned(),
                    sdp_mid: frame["sdp_mid"].as_str().map(str::to_owned),
                    sdp_mline_index: frame["sdp_mline_index"]
                        .as_u64()
                        .and_then(|i| u16::try_from(i).ok()),
                };
                self.add_candidate(candidate).await.map(|()| None)
            }
            _ => Ok(None),
        }
    }

    /// `call.candidate` frames for the local candidates gathered since the
    /// last call.
    pub fn candidate_frames(&self, room_id: &str) -> Vec<serde_json::Value> {
        self.take_candidates()
            .into_iter()
            .map(|candidate| {
                serde_json::json!({
                    "type": "call.candidate",
                    "room_id": room_id,
                    "candidate": candidate.candidate,
                    "sdp_mid": candidate.sdp_mid,
                    "sdp_mline_index": candidate.sdp_mline_index,
                })
            })
            .collect()
    }

    /// Closes the connection.
    pub async fn close(&self) -> Result<()> {
        Ok(self.peer.close().await?)
    }
}

/// Counts the key-frame requests the server sends about `track`.
async fn count_key_frame_requests(track: Arc<TrackLocalStaticRTP>, inbox: Arc<Mutex<Inbox>>) {
    while let Some(event) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        let requests = packets
            .iter()
            .filter(|p| forward::is_key_frame_request(p.as_ref()))
            .count();
        inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .key_frame_requests += requests as u64;
    }
}

/// Media being sent; stops when dropped.
pub struct Sending {
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Sending {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Plan {
    payload_bytes: usize,
    interval: Duration,
    /// RTP clock ticks per frame.
    clock_step: u32,
    packets_per_frame: u16,
}

async fn send_loop(track: Arc<TrackLocalStaticRTP>, ssrc: u32, payload_type: u8, plan: Plan) {
    let mut ticker = tokio::time::interval(plan.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sequence_number: u16 = rand::random();
    let mut timestamp: u32 = rand::random();
    let filler = vec![0x5a; plan.payload_bytes.saturating_sub(8)];
    for n in 0u64.. {
        ticker.tick().await;
        let in_frame = (n % u64::from(plan.packets_per_frame)) as u16;
        let mut payload = BytesMut::with_capacity(plan.payload_bytes);
        let nanos = u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX);
        payload.put_u64(nanos);
        payload.put_slice(&filler);
        let packet = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                marker: in_frame + 1 == plan.packets_per_frame,
                payload_type,
                sequence_number,
                timestamp,
                ssrc,
                ..Default::default()
            },
            payload: Bytes::from(payload),
        };
        if track.write_rtp(packet).await.is_err() {
            // Not bound (yet, or any more): keep the clock going.
            tokio::task::yield_now().await;
        }
        sequence_number = sequence_number.wrapping_add(1);
        if in_frame + 1 == plan.packets_per_frame {
            timestamp = timestamp.wrapping_add(plan.clock_step);
        }
    }
}
