//! The codecs a call may carry. The SFU never transcodes: a subscriber gets a
//! track only in the codec its publisher sends, so everyone offers the same
//! small set — Opus for audio; VP8 and H.264 (where a browser prefers it) for
//! video.

pub use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters};

/// One codec of the call, with the payload type browsers usually give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Opus,
    Vp8,
    /// H.264 constrained baseline, packetization mode 1 (Chrome and Safari).
    H264ConstrainedBaseline,
    /// H.264 baseline, packetization mode 1 (Firefox).
    H264Baseline,
}

impl Codec {
    pub(crate) const ALL: [Codec; 4] = [
        Codec::Opus,
        Codec::Vp8,
        Codec::H264ConstrainedBaseline,
        Codec::H264Baseline,
    ];

    /// The codec test peers publish a track of `kind` in.
    #[cfg(feature = "testing")]
    pub(crate) fn for_kind(kind: RtpCodecKind) -> Codec {
        match kind {
            RtpCodecKind::Audio => Codec::Opus,
            _ => Codec::Vp8,
        }
    }

    pub(crate) fn kind(self) -> RtpCodecKind {
        match self {
            Codec::Opus => RtpCodecKind::Audio,
            _ => RtpCodecKind::Video,
        }
    }

    pub(crate) fn parameters(self) -> RTCRtpCodecParameters {
        let (mime_type, clock_rate, channels, fmtp, payload_type) = match self {
            Codec::Opus => ("audio/opus", 48_000, 2, "minptime=10;useinbandfec=1", 111),
            Codec::Vp8 => ("video/VP8", 90_000, 0, "", 96),
            Codec::H264ConstrainedBaseline => (
                "video/H264",
                90_000,
                0,
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
                102,
            ),
            Codec::H264Baseline => (
                "video/H264",
                90_000,
                0,
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
                108,
            ),
        };
        let rtcp_feedback = match self.kind() {
            RtpCodecKind::Video => [
                ("goog-remb", ""),
                ("ccm", "fir"),
                ("nack", ""),
                ("nack", "pli"),
            ]
            .into_iter()
            .map(|(typ, parameter)| RTCPFeedback {
                typ: typ.into(),
                parameter: parameter.into(),
            })
            .collect(),
            _ => Vec::new(),
        };
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: mime_type.into(),
                clock_rate,
                channels,
                sdp_fmtp_line: fmtp.into(),
                rtcp_feedback,
            },
            payload_type,
        }
    }
}
