//! The SFU's one error type.

/// Why a call operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value the SFU cannot use.
    #[error("{0}")]
    Config(String),
    /// The client's SDP was refused (unparsable, or no usable media).
    #[error("invalid session description: {0}")]
    BadSdp(String),
    /// The participant is not in this room's call.
    #[error("not in this call")]
    NotInCall,
    /// An answer arrived while the server had no offer outstanding.
    #[error("no offer is waiting for an answer")]
    NoOfferOutstanding,
    /// The call has as many participants as it may.
    #[error("the call is full ({0} participants)")]
    CallFull(usize),
    /// Every port of the configured UDP range is taken.
    #[error("no free UDP port for media ({0})")]
    NoPort(String),
    /// The WebRTC stack failed.
    #[error("webrtc: {0}")]
    WebRtc(String),
}

impl From<webrtc::error::Error> for Error {
    fn from(error: webrtc::error::Error) -> Self {
        Error::WebRtc(error.to_string())
    }
}

/// A `Result` with the SFU's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
