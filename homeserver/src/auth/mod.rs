//! Authentication: password hashing, access and refresh tokens, the per-request
//! session check, and rate limits for failed attempts.

pub mod passwords;
pub mod ratelimit;
pub mod sessions;
pub mod tokens;

pub use sessions::{Authed, IssuedTokens, Sessions};
