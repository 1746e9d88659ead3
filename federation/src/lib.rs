//! The Matrix Server-Server protocol as a library. It knows nothing of the
//! homeserver application; storage and delivery are the caller's.
//!
//! - [`keys`]: the server's ed25519 signing key, kept in a file.
//! - [`pdu`]: building, hashing, signing, verifying and redacting PDUs, and
//!   the parsed [`pdu::Pdu`] the authorisation rules read.
//! - [`auth`]: the authorisation rules behind a trait of ours
//!   ([`auth::EventAuthorizer`]), implemented with ruma-state-res.

pub mod auth;
pub mod keys;
pub mod pdu;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("signing key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    #[error("event JSON: {0}")]
    Json(#[from] ruma::signatures::JsonError),
    #[error("signature verification failed: {0}")]
    Verification(String),
    #[error("unsupported room version {0}")]
    UnsupportedRoomVersion(String),
    #[error("not authorised: {0}")]
    Unauthorized(String),
}

/// A `Result` with this crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
