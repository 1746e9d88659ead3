//! The federation transport pieces, tested through the public API: request
//! signatures, server keys, discovery, TLS certificates, and the HTTPS client
//! against real local servers. One test binary, so it links once.

mod client;
mod discovery;
mod request_auth;
mod server_keys;
mod support;
mod tls;
