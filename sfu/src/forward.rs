//! RTP forwarding: each published track has one task that reads its packets
//! and writes them, unchanged but for SSRC and payload type, to every
//! subscriber's copy of the track. No decoding, no transcoding. Key-frame
//! requests travel the other way: from a subscriber's decoder to the publisher.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use rtc::{
    interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket},
    rtcp::{
        self,
        payload_feedbacks::{
            full_intra_request::FullIntraRequest, picture_loss_indication::PictureLossIndication,
        },
    },
    rtp,
    sansio::Protocol,
    shared::error::Error,
};
use webrtc::media_stream::{
    track_local::{TrackLocal, TrackLocalEvent, static_rtp::TrackLocalStaticRTP},
    track_remote::{TrackRemote, TrackRemoteEvent},
};

/// The least time between two subscriber key-frame requests passed to one
/// publisher: every subscriber's decoder asks several times a second while it
/// waits, and each key frame costs the publisher's uplink.
const KEY_FRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);

/// One subscriber's copy of a published track.
pub(crate) struct Output {
    pub subscriber: String,
    pub track: Arc<TrackLocalStaticRTP>,
    /// The SSRC the subscriber's sender announced.
    pub ssrc: u32,
    /// The payload type the subscriber negotiated for the track's codec.
    pub payload_type: u8,
}

/// The subscribers of one published track.
#[derive(Default)]
pub(crate) struct Fanout {
    // Replaced whole on change and cloned per packet, so the forwarding loop
    // never holds the lock while it awaits a write. A std lock: the critical
    // sections never await.
    outputs: RwLock<Arc<Vec<Arc<Output>>>>,
}

impl Fanout {
    pub(crate) fn add(&self, output: Output) {
        let mut outputs = self.outputs.write().unwrap_or_else(|e| e.into_inner());
        let mut next = outputs.as_ref().clone();
        next.retain(|o| o.subscriber != output.subscriber);
        next.push(Arc::new(output));
        *outputs = Arc::new(next);
    }

    pub(crate) fn remove(&self, subscriber: &str) {
        let mut outputs = self.outputs.write().unwrap_or_else(|e| e.into_inner());
        let mut next = outputs.as_ref().clone();
        next.retain(|o| o.subscriber != subscriber);
        *outputs = Arc::new(next);
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Output>>> {
        self.outputs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Reads the published track until it ends, forwarding every RTP packet.
pub(crate) async fn forward(track: Arc<dyn TrackRemote>, fanout: Arc<Fanout>) {
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => forward_packet(packet, &fanout).await,
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}

async fn forward_packet(mut packet: rtp::Packet, fanout: &Fanout) {
    // Header extension ids are negotiated per connection; the subscriber's
    // leg adds its own, so the publisher's are dropped rather than remapped.
    packet.header.extension = false;
    packet.header.extension_profile = 0;
    packet.header.extensions.clear();
    for output in fanout.snapshot().iter() {
        let mut copy = packet.clone();
        copy.header.ssrc = output.ssrc;
        copy.header.payload_type = output.payload_type;
        // An unbound track (its subscriber is renegotiating or leaving)
        // refuses the write; the packet is simply not delivered there.
        let _ = output.track.write_rtp(copy).await;
    }
}

/// Passes subscribers' key-frame requests (PLI, FIR) up to the application,
/// where [`relay_key_frame_requests`] hands them to the publisher. Inbound RTCP
/// otherwise ends inside the interceptor chain; everything else still does.
#[derive(Default)]
pub(crate) struct KeyFrameRequests {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

pub(crate) fn is_key_frame_request(packet: &dyn rtcp::Packet) -> bool {
    let packet = packet.as_any();
    packet.is::<PictureLossIndication>() || packet.is::<FullIntraRequest>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyFrameRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut message: TaggedPacket) -> Result<(), Error> {
        if let Packet::Rtcp(packets) = &message.message.packet
            && packets.iter().any(|p| is_key_frame_request(p.as_ref()))
        {
            message.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(message);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, message: TaggedPacket) -> Result<(), Error> {
        self.write.push_back(message);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyFrameRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// When a publisher's track was last asked for a key frame on behalf of a
/// subscriber.
#[derive(Default)]
pub(crate) struct KeyFrameThrottle(Mutex<Option<Instant>>);

impl KeyFrameThrottle {
    /// Whether a request may go to the publisher now (and notes that it did).
    fn admit(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < KEY_FRAME_REQUEST_INTERVAL) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// Until the subscriber's copy of a track is unbound, passes the key-frame
/// requests its decoder sends (a lost key frame, a decoder that just started)
/// to the publisher of `source`, at most one per
/// [`KEY_FRAME_REQUEST_INTERVAL`] for all its subscribers together.
pub(crate) async fn relay_key_frame_requests(
    copy: Arc<TrackLocalStaticRTP>,
    source: Arc<dyn TrackRemote>,
    source_ssrc: u32,
    throttle: Arc<KeyFrameThrottle>,
) {
    while let Some(event) = copy.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        if packets.iter().any(|p| is_key_frame_request(p.as_ref())) && throttle.admit() {
            request_key_frame(&source, source_ssrc).await;
        }
    }
}

/// Asks the publisher of `track` for a key frame (RTCP PLI), so a new
/// subscriber can start decoding at once.
pub(crate) async fn request_key_frame(track: &Arc<dyn TrackRemote>, media_ssrc: u32) {
    let pli = PictureLossIndication {
        sender_ssrc: 0,
        media_ssrc,
    };
    if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
        tracing::debug!(error = %e, "key frame request not sent");
    }
}
