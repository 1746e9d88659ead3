//! TeaTime's call engine: a selective forwarding unit (SFU). Each call is
//! keyed by its room; each participant keeps one WebRTC peer connection to
//! the server, publishes its audio and video on it and receives everyone
//! else's. Packets are forwarded as they are (no decoding, no transcoding).
//!
//! The crate knows nothing of the homeserver: the caller hands in the
//! signalling a client sent ([`Sfu::join`] with an SDP offer, [`Sfu::answer`],
//! [`Sfu::add_candidate`], [`Sfu::leave`]) and forwards what comes out — the
//! per-participant [`Signal`]s (server offers when tracks come and go, ICE
//! candidates) and the room-wide [`ParticipantsChanged`] broadcast.
//!
//! Modules: [`config`] (sockets, ports, NAT), `room` (the per-call actor:
//! membership, renegotiation, teardown), `forward` (the RTP fan-out and key
//! frame requests), `peer` (building a peer connection), `codec` (Opus, VP8,
//! H.264), `ports` (the UDP port range).
//!
//! # Why webrtc-rs
//!
//! The two candidates were webrtc-rs 0.21 (an async layer over the Sans-I/O
//! `rtc` core) and str0m (Sans-I/O, SFU-minded). We chose webrtc-rs because:
//! the test and benchmark peers need a full client stack with a TURN client
//! (the relay test allocates through coturn), which str0m lacks, and one
//! stack for both sides halves what we compile and learn; its crypto provider
//! is selectable per connection, so it runs on aws-lc-rs like the rest of the
//! server and `ring` stays out of the build; and the measured forwarding cost
//! (`make bench-calls`, README "Benchmarks") meets the target — eight
//! participants, 56 forwarded streams, on one core. str0m's single-socket
//! design would forward with fewer copies and tasks; it remains the way out
//! if calls ever need to be much larger.

mod codec;
pub mod config;
mod error;
mod forward;
mod peer;
mod ports;
mod room;
#[cfg(feature = "testing")]
pub mod testing;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::{broadcast, mpsc, oneshot};
use webrtc::peer_connection::{PeerConnection, PeerConnectionEventHandler};

pub use codec::RtpCodecKind;
pub use config::{PortRange, SfuConfig};
pub use error::{Error, Result};
pub use room::MAX_PARTICIPANTS;

use crate::{
    peer::PeerPlacement,
    ports::{PortLease, PortPool},
    room::Command,
};

/// An ICE candidate, as the browser API and the signalling frames carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCandidate {
    /// The `candidate:...` attribute.
    pub candidate: String,
    /// The media section the candidate belongs to, by mid.
    pub sdp_mid: Option<String>,
    /// The media section the candidate belongs to, by index.
    pub sdp_mline_index: Option<u16>,
}

/// Something to tell one participant, about the call in `room`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// The call's room.
    pub room: String,
    /// What to tell.
    pub message: SignalMessage,
}

/// The messages the server sends a participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalMessage {
    /// A new offer (tracks came or went): answer with [`Sfu::answer`].
    Offer {
        /// The SDP offer.
        sdp: String,
    },
    /// One of the server's ICE candidates.
    Candidate(IceCandidate),
    /// The participant's `session` is out of the call: its connection
    /// failed, or it joined again elsewhere.
    Ended {
        /// The session that ended (as [`Joined::session`]).
        session: u64,
    },
}

/// One participant of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// The id the caller joined with.
    pub id: String,
    /// The MediaStream id (`a=msid`) this participant's tracks reach the
    /// others under, so clients can tell whose a track is.
    pub stream_id: String,
}

/// The participants of the call in `room`, after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantsChanged {
    /// The call's room.
    pub room: String,
    /// Everyone in the call now, ordered by id.
    pub participants: Vec<ParticipantInfo>,
}

/// A joined participant: the answer to its offer, and the session that
/// [`Sfu::leave`] takes (so a stale leave cannot end a newer join).
#[derive(Debug, Clone)]
pub struct Joined {
    /// The SDP answer.
    pub sdp: String,
    /// This join's session number.
    pub session: u64,
}

/// The SFU: all calls of this process.
#[derive(Clone)]
pub struct Sfu {
    shared: Arc<Shared>,
}

/// Changes published on the broadcast before receivers fall behind.
const CHANGES_CAPACITY: usize = 1024;

pub(crate) struct Shared {
    config: SfuConfig,
    /// Each running room's command queue. Commands are sent while this lock
    /// is held, so a room retiring under the same lock never drops one.
    rooms: Mutex<HashMap<String, mpsc::UnboundedSender<Command>>>,
    changes: broadcast::Sender<ParticipantsChanged>,
    ports: Arc<PortPool>,
    sessions: AtomicU64,
}

impl Sfu {
    /// An SFU placing its media sockets as `config` says.
    pub fn new(config: SfuConfig) -> Self {
        let (changes, _) = broadcast::channel(CHANGES_CAPACITY);
        Self {
            shared: Arc::new(Shared {
                config,
                rooms: Mutex::new(HashMap::new()),
                changes,
                ports: Arc::default(),
                sessions: AtomicU64::new(1),
            }),
        }
    }

    /// The configuration in effect.
    pub fn config(&self) -> &SfuConfig {
        &self.shared.config
    }

    /// Every later change of any call's participants.
    pub fn subscribe(&self) -> broadcast::Receiver<ParticipantsChanged> {
        self.shared.changes.subscribe()
    }

    /// Joins `participant` to the call in `room` with its SDP `offer` and
    /// returns the answer. Later messages for the participant go to
    /// `signals`. Joining again replaces the participant's earlier connection.
    pub async fn join(
        &self,
        room: &str,
        participant: &str,
        offer: String,
        signals: mpsc::UnboundedSender<Signal>,
    ) -> Result<Joined> {
        let (reply, answer) = oneshot::channel();
        self.shared.send(
            room,
            true,
            Command::Join {
                participant: participant.to_owned(),
                offer,
                signals,
                reply,
            },
        )?;
        let (sdp, session) = answer.await.map_err(|_| gone())??;
        Ok(Joined { sdp, session })
    }

    /// Applies the participant's answer to the server's latest offer.
    pub async fn answer(&self, room: &str, participant: &str, sdp: String) -> Result<()> {
        let (reply, done) = oneshot::channel();
        self.shared.send(
            room,
            false,
            Command::Answer {
                participant: participant.to_owned(),
                sdp,
                reply,
            },
        )?;
        done.await.map_err(|_| gone())?
    }

    /// Adds one of the participant's ICE candidates.
    pub async fn add_candidate(
        &self,
        room: &str,
        participant: &str,
        candidate: IceCandidate,
    ) -> Result<()> {
        let (reply, done) = oneshot::channel();
        self.shared.send(
            room,
            false,
            Command::Candidate {
                participant: participant.to_owned(),
                candidate,
                reply,
            },
        )?;
        done.await.map_err(|_| gone())?
    }

    /// Takes the participant's `session` out of the call (nothing happens if
    /// it was replaced by a newer join).
    pub async fn leave(&self, room: &str, participant: &str, session: u64) {
        let (reply, done) = oneshot::channel();
        let command = Command::Leave {
            participant: participant.to_owned(),
            session,
            reply,
        };
        if self.shared.send(room, false, command).is_ok() {
            let _ = done.await;
        }
    }

    /// The participants of the call in `room` (none when there is no call).
    pub async fn participants(&self, room: &str) -> Vec<ParticipantInfo> {
        let (reply, list) = oneshot::channel();
        if self
            .shared
            .send(room, false, Command::Participants { reply })
            .is_err()
        {
            return Vec::new();
        }
        list.await.unwrap_or_default()
    }
}

fn gone() -> Error {
    Error::WebRtc("the call stopped".into())
}

impl Shared {
    /// Queues a command for the room, starting its actor if `start` (else
    /// a room without a call answers [`Error::NotInCall`]).
    fn send(self: &Arc<Self>, room: &str, start: bool, command: Command) -> Result<()> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let command = match rooms.get(room) {
            Some(queue) => match queue.send(command) {
                Ok(()) => return Ok(()),
                // The room's actor died (a bug): forget it, so the call can start anew.
                Err(mpsc::error::SendError(command)) => {
                    rooms.remove(room);
                    command
                }
            },
            None => command,
        };
        if !start {
            return Err(Error::NotInCall);
        }
        let (queue, commands) = mpsc::unbounded_channel();
        // Unbounded: commands come from this server's own signalling paths
        // (one per client frame, already size- and rate-limited upstream).
        let _ = queue.send(command);
        rooms.insert(room.to_owned(), queue.clone());
        tokio::spawn(room::run(room.to_owned(), self.clone(), queue, commands));
        Ok(())
    }

    /// Called by an empty room: removes it unless a command is waiting.
    fn retire(
        &self,
        room: &str,
        own: &mpsc::UnboundedSender<Command>,
        queue: &mpsc::UnboundedReceiver<Command>,
    ) -> bool {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if !queue.is_empty() {
            return false;
        }
        if rooms.get(room).is_some_and(|q| q.same_channel(own)) {
            rooms.remove(room);
        }
        true
    }

    fn next_session(&self) -> u64 {
        self.sessions.fetch_add(1, Ordering::Relaxed)
    }

    /// Builds a participant's peer connection on a free port of the range.
    async fn open_peer(
        &self,
        events: Arc<dyn PeerConnectionEventHandler>,
    ) -> Result<(Arc<dyn PeerConnection>, Option<PortLease>)> {
        let config = &self.config;
        let placement = |port| PeerPlacement {
            socket: SocketAddr::new(config.bind_ip, port),
            public_ip: config.public_ip,
            ice_servers: Vec::new(),
            relay_only: false,
        };
        let Some(range) = config.udp_ports else {
            return Ok((peer::build(placement(0), events).await?, None));
        };
        let mut last_error = None;
        for port in range.ports() {
            let Some(lease) = self.ports.take(port) else {
                continue;
            };
            match peer::build(placement(port), events.clone()).await {
                Ok(peer) => return Ok((peer, Some(lease))),
                // Most likely another process holds the port: try the next.
                Err(e) => last_error = Some(e),
            }
        }
        Err(Error::NoPort(
            last_error.map(|e| e.to_string()).unwrap_or_default(),
        ))
    }
}
