//! RTP forwarding: each published track has one task that reads its packets
//! and writes them, unchanged but for SSRC and payload type, to every
//! subscriber's copy of the track. No decoding, no transcoding.

use std::sync::{Arc, RwLock};

use rtc::{rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication, rtp};
use webrtc::media_stream::{
    track_local::{TrackLocal, static_rtp::TrackLocalStaticRTP},
    track_remote::{TrackRemote, TrackRemoteEvent},
};

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
