//! One call: an actor task per room that owns the participants, their peer
//! connections and who receives whose tracks. Every change — a join, an
//! answer, a track arriving, a connection dying — is a command on the room's
//! queue, so signalling needs no locks; the packets themselves bypass the
//! actor (see [`crate::forward`]).

use std::{collections::BTreeMap, sync::Arc};

use tokio::{
    sync::{mpsc, oneshot},
    task::AbortHandle,
};
use webrtc::{
    media_stream::{
        MediaStreamTrack, track_local::static_rtp::TrackLocalStaticRTP, track_remote::TrackRemote,
    },
    peer_connection::{
        PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
        RTCPeerConnectionState, RTCSessionDescription,
    },
    rtp_transceiver::RtpSender,
};

use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};

use crate::{
    Error, IceCandidate, ParticipantInfo, ParticipantsChanged, Result, Shared, Signal,
    SignalMessage,
    forward::{self, Fanout, KeyFrameThrottle, Output},
    ports::PortLease,
};

/// The most participants one call may have: each one costs every other a
/// forwarded stream per track, so the cost grows with the square.
pub const MAX_PARTICIPANTS: usize = 16;

/// What a room's actor is asked to do.
pub(crate) enum Command {
    Join {
        participant: String,
        offer: String,
        signals: mpsc::UnboundedSender<Signal>,
        reply: oneshot::Sender<Result<(String, u64)>>,
    },
    Answer {
        participant: String,
        sdp: String,
        reply: oneshot::Sender<Result<()>>,
    },
    Candidate {
        participant: String,
        candidate: IceCandidate,
        reply: oneshot::Sender<Result<()>>,
    },
    Leave {
        participant: String,
        session: u64,
        reply: oneshot::Sender<()>,
    },
    Participants {
        reply: oneshot::Sender<Vec<ParticipantInfo>>,
    },
    /// A participant's connection delivered a new incoming track.
    TrackArrived {
        participant: String,
        session: u64,
        track: Arc<dyn TrackRemote>,
    },
    /// A participant's connection came up: its decoders need key frames.
    Connected { participant: String, session: u64 },
    /// A participant's connection failed (ICE gave up) or the client closed it.
    ConnectionLost { participant: String, session: u64 },
}

/// A track one participant sends, and who gets it.
struct Published {
    publisher: String,
    /// The publisher's MediaStream id, which subscribers see it under.
    stream_id: String,
    track: Arc<dyn TrackRemote>,
    ssrc: u32,
    codec: RTCRtpCodec,
    kind: RtpCodecKind,
    fanout: Arc<Fanout>,
    forwarder: AbortHandle,
    /// Paces the subscribers' key-frame requests passed to the publisher.
    key_frames: Arc<KeyFrameThrottle>,
}

/// Another participant's track, sent to this participant.
struct Subscription {
    source: Arc<Published>,
    sender: Arc<dyn RtpSender>,
    local: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    /// Negotiated and in the source's fanout.
    active: bool,
}

struct Participant {
    session: u64,
    stream_id: String,
    peer: Arc<dyn PeerConnection>,
    /// Released when the participant is dropped.
    port: Option<PortLease>,
    signals: mpsc::UnboundedSender<Signal>,
    published: Vec<Arc<Published>>,
    subscriptions: Vec<Subscription>,
    /// The server sent an offer and waits for the answer.
    offer_outstanding: bool,
    /// Tracks changed while an offer was outstanding: offer again after it.
    renegotiate: bool,
}

pub(crate) struct Room {
    name: String,
    shared: Arc<Shared>,
    /// Handed to the peer connections' event handlers.
    commands: mpsc::UnboundedSender<Command>,
    participants: BTreeMap<String, Participant>,
}

/// Runs a room until it is empty and nothing more is queued for it.
pub(crate) async fn run(
    name: String,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    mut queue: mpsc::UnboundedReceiver<Command>,
) {
    let mut room = Room {
        name,
        shared,
        commands,
        participants: BTreeMap::new(),
    };
    while let Some(command) = queue.recv().await {
        room.handle(command).await;
        if room.participants.is_empty() && room.shared.retire(&room.name, &room.commands, &queue) {
            break;
        }
    }
}

impl Room {
    async fn handle(&mut self, command: Command) {
        match command {
            Command::Join {
                participant,
                offer,
                signals,
                reply,
            } => {
                let _ = reply.send(self.join(participant, offer, signals).await);
            }
            Command::Answer {
                participant,
                sdp,
                reply,
            } => {
                let _ = reply.send(self.answer(&participant, sdp).await);
            }
            Command::Candidate {
                participant,
                candidate,
                reply,
            } => {
                let _ = reply.send(self.add_candidate(&participant, candidate).await);
            }
            Command::Leave {
                participant,
                session,
                reply,
            } => {
                if self.is_current(&participant, session) {
                    self.remove(&participant, false).await;
                }
                let _ = reply.send(());
            }
            Command::Participants { reply } => {
                let _ = reply.send(self.participant_list());
            }
            Command::TrackArrived {
                participant,
                session,
                track,
            } => {
                if self.is_current(&participant, session) {
                    self.publish(&participant, track).await;
                }
            }
            Command::Connected {
                participant,
                session,
            } => {
                if let Some(p) = self.participants.get(&participant)
                    && p.session == session
                {
                    for subscription in p.subscriptions.iter().filter(|s| s.active) {
                        if subscription.source.kind == RtpCodecKind::Video {
                            forward::request_key_frame(
                                &subscription.source.track,
                                subscription.source.ssrc,
                            )
                            .await;
                        }
                    }
                }
            }
            Command::ConnectionLost {
                participant,
                session,
            } => {
                if self.is_current(&participant, session) {
                    tracing::info!(room = %self.name, %participant, "call connection lost");
                    self.remove(&participant, true).await;
                }
            }
        }
    }

    fn is_current(&self, participant: &str, session: u64) -> bool {
        self.participants
            .get(participant)
            .is_some_and(|p| p.session == session)
    }

    async fn join(
        &mut self,
        id: String,
        offer: String,
        signals: mpsc::UnboundedSender<Signal>,
    ) -> Result<(String, u64)> {
        // Joining again (another device, a reconnect) replaces the earlier connection.
        if self.participants.contains_key(&id) {
            self.remove(&id, true).await;
        }
        if self.participants.len() >= MAX_PARTICIPANTS {
            return Err(Error::CallFull(MAX_PARTICIPANTS));
        }
        let offer =
            RTCSessionDescription::offer(offer).map_err(|e| Error::BadSdp(e.to_string()))?;
        let session = self.shared.next_session();
        let events = Arc::new(PeerEvents {
            room: self.name.clone(),
            participant: id.clone(),
            session,
            commands: self.commands.clone(),
            signals: signals.clone(),
        });
        let (peer, port) = self.shared.open_peer(events).await?;
        let answer = match negotiate_answer(&peer, offer).await {
            Ok(answer) => answer,
            Err(e) => {
                close(peer, port);
                return Err(e);
            }
        };
        let mut participant = Participant {
            session,
            stream_id: format!("p{session}"),
            peer,
            port,
            signals,
            published: Vec::new(),
            subscriptions: Vec::new(),
            offer_outstanding: false,
            renegotiate: false,
        };
        let sources: Vec<Arc<Published>> = self
            .participants
            .values()
            .flat_map(|p| p.published.iter().cloned())
            .collect();
        for source in sources {
            if let Err(e) = subscribe(&mut participant, source).await {
                tracing::warn!(room = %self.name, participant = %id, error = %e, "subscribe failed");
            }
        }
        let needs_offer = !participant.subscriptions.is_empty();
        self.participants.insert(id.clone(), participant);
        if needs_offer {
            self.offer(&id).await;
        }
        self.announce();
        Ok((answer, session))
    }

    async fn answer(&mut self, id: &str, sdp: String) -> Result<()> {
        let participant = self.participants.get_mut(id).ok_or(Error::NotInCall)?;
        if !participant.offer_outstanding {
            return Err(Error::NoOfferOutstanding);
        }
        let answer =
            RTCSessionDescription::answer(sdp).map_err(|e| Error::BadSdp(e.to_string()))?;
        participant
            .peer
            .set_remote_description(answer)
            .await
            .map_err(|e| Error::BadSdp(e.to_string()))?;
        participant.offer_outstanding = false;
        for subscription in participant.subscriptions.iter_mut().filter(|s| !s.active) {
            activate(id, subscription).await;
        }
        if std::mem::take(&mut participant.renegotiate) {
            self.offer(id).await;
        }
        Ok(())
    }

    async fn add_candidate(&mut self, id: &str, candidate: IceCandidate) -> Result<()> {
        let participant = self.participants.get(id).ok_or(Error::NotInCall)?;
        let init = RTCIceCandidateInit {
            candidate: candidate.candidate,
            sdp_mid: candidate.sdp_mid,
            sdp_mline_index: candidate.sdp_mline_index,
            ..RTCIceCandidateInit::default()
        };
        participant
            .peer
            .add_ice_candidate(init)
            .await
            .map_err(|e| Error::BadSdp(format!("candidate: {e}")))
    }

    /// A participant's new track: forward it, and offer it to everyone else.
    async fn publish(&mut self, id: &str, track: Arc<dyn TrackRemote>) {
        let Some(ssrc) = track.ssrcs().await.first().copied() else {
            return;
        };
        let Some(codec) = track.codec(ssrc).await else {
            return;
        };
        let kind = track.kind().await;
        let Some(stream_id) = self.participants.get(id).map(|p| p.stream_id.clone()) else {
            return;
        };
        let fanout = Arc::new(Fanout::default());
        let forwarder =
            tokio::spawn(forward::forward(track.clone(), fanout.clone())).abort_handle();
        let published = Arc::new(Published {
            publisher: id.to_owned(),
            stream_id,
            track,
            ssrc,
            codec,
            kind,
            fanout,
            forwarder,
            key_frames: Arc::default(),
        });
        tracing::debug!(room = %self.name, participant = %id, ssrc, mime = %published.codec.mime_type, "track published");
        let Some(publisher) = self.participants.get_mut(id) else {
            return;
        };
        publisher.published.push(published.clone());
        let others: Vec<String> = self
            .participants
            .keys()
            .filter(|other| other.as_str() != id)
            .cloned()
            .collect();
        for other in others {
            let Some(subscriber) = self.participants.get_mut(&other) else {
                continue;
            };
            match subscribe(subscriber, published.clone()).await {
                Ok(()) => self.offer(&other).await,
                Err(e) => {
                    tracing::warn!(room = %self.name, participant = %other, error = %e, "subscribe failed");
                }
            }
        }
    }

    /// Sends the participant a new offer, or notes that one is due once the
    /// outstanding one is answered.
    async fn offer(&mut self, id: &str) {
        let Some(participant) = self.participants.get_mut(id) else {
            return;
        };
        if participant.offer_outstanding {
            participant.renegotiate = true;
            return;
        }
        match negotiate_offer(&participant.peer).await {
            Ok(sdp) => {
                participant.offer_outstanding = true;
                let _ = participant.signals.send(Signal {
                    room: self.name.clone(),
                    message: SignalMessage::Offer { sdp },
                });
            }
            Err(e) => {
                tracing::warn!(room = %self.name, participant = %id, error = %e, "renegotiation failed");
            }
        }
    }

    /// Takes a participant out of the call: stops its tracks, withdraws them
    /// from everyone else and closes its connection.
    async fn remove(&mut self, id: &str, tell_participant: bool) {
        let Some(gone) = self.participants.remove(id) else {
            return;
        };
        for published in &gone.published {
            published.forwarder.abort();
        }
        for subscription in &gone.subscriptions {
            subscription.source.fanout.remove(id);
        }
        if tell_participant {
            let _ = gone.signals.send(Signal {
                room: self.name.clone(),
                message: SignalMessage::Ended {
                    session: gone.session,
                },
            });
        }
        close(gone.peer, gone.port);
        let others: Vec<String> = self.participants.keys().cloned().collect();
        for other in others {
            let Some(subscriber) = self.participants.get_mut(&other) else {
                continue;
            };
            let (withdrawn, kept) = std::mem::take(&mut subscriber.subscriptions)
                .into_iter()
                .partition::<Vec<_>, _>(|s| s.source.publisher == id);
            subscriber.subscriptions = kept;
            if withdrawn.is_empty() {
                continue;
            }
            for subscription in withdrawn {
                if let Err(e) = subscriber.peer.remove_track(&subscription.sender).await {
                    tracing::debug!(error = %e, "remove_track failed");
                }
            }
            self.offer(&other).await;
        }
        self.announce();
    }

    fn participant_list(&self) -> Vec<ParticipantInfo> {
        self.participants
            .iter()
            .map(|(id, p)| ParticipantInfo {
                id: id.clone(),
                stream_id: p.stream_id.clone(),
            })
            .collect()
    }

    fn announce(&self) {
        // No receivers is fine: nobody is listening for participant changes.
        let _ = self.shared.changes.send(ParticipantsChanged {
            room: self.name.clone(),
            participants: self.participant_list(),
        });
    }
}

/// Applies the client's offer and returns the answer.
async fn negotiate_answer(
    peer: &Arc<dyn PeerConnection>,
    offer: RTCSessionDescription,
) -> Result<String> {
    peer.set_remote_description(offer)
        .await
        .map_err(|e| Error::BadSdp(e.to_string()))?;
    let answer = peer.create_answer(None).await?;
    peer.set_local_description(answer).await?;
    local_sdp(peer).await
}

async fn negotiate_offer(peer: &Arc<dyn PeerConnection>) -> Result<String> {
    let offer = peer.create_offer(None).await?;
    peer.set_local_description(offer).await?;
    local_sdp(peer).await
}

async fn local_sdp(peer: &Arc<dyn PeerConnection>) -> Result<String> {
    peer.local_description()
        .await
        .map(|description| description.sdp)
        .ok_or_else(|| Error::WebRtc("no local description".into()))
}

/// Adds a copy of `source` to the participant's connection (sent once the
/// next offer is answered).
async fn subscribe(participant: &mut Participant, source: Arc<Published>) -> Result<()> {
    let ssrc = rand::random::<u32>();
    let track = MediaStreamTrack::new(
        source.stream_id.clone(),
        format!("{}-{}", source.kind, source.ssrc),
        format!("{}-{}", source.publisher, source.kind),
        source.kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: source.codec.clone(),
            ..Default::default()
        }],
    );
    let local = Arc::new(TrackLocalStaticRTP::new(track));
    let sender = participant.peer.add_track(local.clone()).await?;
    participant.subscriptions.push(Subscription {
        source,
        sender,
        local,
        ssrc,
        active: false,
    });
    Ok(())
}

/// Starts forwarding a negotiated subscription and asks its publisher for a
/// key frame, so the subscriber's decoder can start.
async fn activate(subscriber: &str, subscription: &mut Subscription) {
    subscription.active = true;
    let parameters = match subscription.sender.get_parameters().await {
        Ok(parameters) => parameters,
        Err(e) => {
            tracing::debug!(error = %e, "sender parameters unavailable");
            return;
        }
    };
    let wanted = &subscription.source.codec;
    let codecs = &parameters.rtp_parameters.codecs;
    let negotiated = codecs
        .iter()
        .find(|c| {
            c.rtp_codec
                .mime_type
                .eq_ignore_ascii_case(&wanted.mime_type)
                && c.rtp_codec.sdp_fmtp_line == wanted.sdp_fmtp_line
        })
        .or_else(|| {
            codecs.iter().find(|c| {
                c.rtp_codec
                    .mime_type
                    .eq_ignore_ascii_case(&wanted.mime_type)
            })
        });
    let Some(codec) = negotiated else {
        tracing::info!(subscriber, mime = %wanted.mime_type, "subscriber cannot receive this codec");
        return;
    };
    subscription.source.fanout.add(Output {
        subscriber: subscriber.to_owned(),
        track: subscription.local.clone(),
        ssrc: subscription.ssrc,
        payload_type: codec.payload_type,
    });
    if subscription.source.kind == RtpCodecKind::Video {
        let source = &subscription.source;
        // This first request may be lost (the subscriber's SRTP is not always
        // ready yet); the subscriber's decoder then asks again itself.
        forward::request_key_frame(&source.track, source.ssrc).await;
        tokio::spawn(forward::relay_key_frame_requests(
            subscription.local.clone(),
            source.track.clone(),
            source.ssrc,
            source.key_frames.clone(),
        ));
    }
}

/// Closes a connection in the background and frees its port afterwards.
fn close(peer: Arc<dyn PeerConnection>, port: Option<PortLease>) {
    tokio::spawn(async move {
        if let Err(e) = peer.close().await {
            tracing::debug!(error = %e, "closing a call connection");
        }
        drop(port);
    });
}

/// A participant's connection events, turned into room commands. The driver
/// awaits these handlers, so they only queue and never wait on the room.
struct PeerEvents {
    room: String,
    participant: String,
    session: u64,
    commands: mpsc::UnboundedSender<Command>,
    signals: mpsc::UnboundedSender<Signal>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerEvents {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let Ok(init) = event.candidate.to_json() else {
            return;
        };
        // With BUNDLE every m-line shares the one transport: the first.
        let candidate = IceCandidate {
            candidate: init.candidate,
            sdp_mid: None,
            sdp_mline_index: Some(0),
        };
        let _ = self.signals.send(Signal {
            room: self.room.clone(),
            message: SignalMessage::Candidate(candidate),
        });
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.commands.send(Command::TrackArrived {
            participant: self.participant.clone(),
            session: self.session,
            track,
        });
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let (participant, session) = (self.participant.clone(), self.session);
        let command = match state {
            RTCPeerConnectionState::Connected => Command::Connected {
                participant,
                session,
            },
            // Closed by the client (DTLS close_notify) or given up by ICE; a
            // close of our own concerns a session the room no longer has.
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                Command::ConnectionLost {
                    participant,
                    session,
                }
            }
            _ => return,
        };
        let _ = self.commands.send(command);
    }
}
