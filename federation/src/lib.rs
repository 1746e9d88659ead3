//! The Matrix Server-Server protocol as a library. It knows nothing of the
//! homeserver application; storage and delivery are the caller's.
//!
//! - [`acl`]: server name globs, room server ACLs.
//! - [`keys`]: the server's ed25519 signing key, kept in a file.
//! - [`pdu`]: building, hashing, signing, verifying and redacting PDUs, and
//!   the parsed [`pdu::Pdu`] the authorisation rules read.
//! - [`auth`]: the authorisation rules behind a trait of ours
//!   ([`auth::EventAuthorizer`]), implemented with ruma-state-res.
//! - [`state`]: state resolution v2 and auth-chain walks.
//! - [`server_keys`]: our signed key document, checking remote ones, and
//!   countersigning them as a notary.
//! - [`request_auth`]: X-Matrix request signatures, outbound and inbound.
//! - [`discovery`]: resolving a server name to where and how to connect.
//! - [`client`]: the HTTPS client that resolves, signs and sends requests.
//! - [`tls`]: a self-signed certificate for when none is configured.

pub mod acl;
pub mod auth;
pub mod client;
pub mod discovery;
pub mod keys;
pub mod pdu;
pub mod request_auth;
pub mod server_keys;
pub mod state;
pub mod tls;

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
    /// An inbound `Authorization` header that is not valid X-Matrix.
    #[error("malformed X-Matrix authorization: {0}")]
    MalformedAuthorization(String),
    /// An inbound request signed for another server.
    #[error("the request is for {destination}, not for this server")]
    WrongDestination { destination: String },
    /// An inbound request signed with a key we do not have for its origin.
    #[error("unknown signing key {key_id} of {server}")]
    UnknownKey { server: String, key_id: String },
    /// A request target or body that cannot be signed or checked.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A key document that is malformed or names another server.
    #[error("server keys of {server}: {reason}")]
    ServerKeys { server: String, reason: String },
    /// A server name that discovery could not turn into an address.
    #[error("cannot resolve server {server}: {reason}")]
    Discovery { server: String, reason: String },
    #[error("cannot set up the federation client: {0}")]
    ClientSetup(String),
    /// No usable answer: unreachable, TLS refused, timed out, not JSON.
    #[error("request to {destination} failed: {reason}")]
    Transport { destination: String, reason: String },
    /// The remote server answered with a non-2xx status; `errcode` when its
    /// body was a Matrix error.
    #[error("{destination} answered {status}: {} {message}", errcode.as_deref().unwrap_or("(no errcode)"))]
    Remote {
        destination: String,
        status: u16,
        errcode: Option<String>,
        message: String,
    },
    /// The self-signed certificate could not be made, read or stored.
    #[error("TLS certificate in {path}: {reason}")]
    Certificate { path: String, reason: String },
}

/// A `Result` with this crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
