//! Calls: the SFU running in this process, who may join a room's call, and
//! the ICE servers clients get — STUN, and TURN with time-limited credentials
//! in the TURN REST scheme coturn checks (`use-auth-secret`).
//!
//! A call's media and state live in the process its participants' sockets
//! reach; with several instances, a room's call participants must reach the
//! same instance (see the README's deployment notes).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::{Engine, engine::general_purpose::STANDARD};
use ruma::RoomId;
use serde_json::{Value, json};
use sfu::{IceCandidate, Joined, Sfu, Signal};
use tokio::sync::mpsc;

use crate::{
    auth::{Authed, ratelimit::FailureLimiter},
    config::Config,
    error::{Error, Result},
    storage::Store,
};

/// Joins a user may make at once, and how often one more is allowed: each
/// join builds a peer connection and holds a UDP port.
const JOIN_BURST: u32 = 10;
const JOIN_REFILL: Duration = Duration::from_secs(3);
/// TURN credential requests a user may make at once, then one per period.
const TURN_BURST: u32 = 20;
const TURN_REFILL: Duration = Duration::from_secs(1);

/// Time-limited TURN credentials and the URIs they are good for (the body of
/// `GET /voip/turnServer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    /// `<unix expiry>:<user_id>`.
    pub username: String,
    /// base64(HMAC-SHA1(secret, username)).
    pub password: String,
    pub uris: Vec<String>,
    /// Seconds the credentials stay valid.
    pub ttl: u64,
}

/// The TURN REST password for `username` under the shared `secret`.
pub fn turn_password(secret: &str, username: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    STANDARD.encode(hmac::sign(&key, username.as_bytes()).as_ref())
}

/// Mints TURN credentials for `user_id`, valid for `ttl` from `now`.
pub fn mint_turn_credentials(
    secret: &str,
    uris: &[String],
    ttl: Duration,
    user_id: &str,
    now: SystemTime,
) -> TurnCredentials {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let expiry = since_epoch.as_secs() + ttl.as_secs();
    let username = format!("{expiry}:{user_id}");
    TurnCredentials {
        password: turn_password(secret, &username),
        username,
        uris: uris.to_vec(),
        ttl: ttl.as_secs(),
    }
}

/// The calls service.
pub struct Calls {
    sfu: Sfu,
    store: Store,
    stun_uris: Vec<String>,
    turn_uris: Vec<String>,
    turn_secret: Option<String>,
    turn_ttl: Duration,
    joins: FailureLimiter,
    turn_requests: FailureLimiter,
}

impl Calls {
    /// The service with the configured SFU sockets and ICE servers.
    pub fn new(config: &Config, store: Store) -> Result<Self> {
        let sfu_config = config
            .sfu_config()
            .map_err(|e| Error::Internal(format!("SFU settings: {e}")))?;
        Ok(Self {
            sfu: Sfu::new(sfu_config),
            store,
            stun_uris: config.stun_uris(),
            turn_uris: config.turn_uris(),
            turn_secret: config.turn_secret.clone().filter(|s| !s.is_empty()),
            turn_ttl: Duration::from_secs(config.turn_ttl),
            joins: FailureLimiter::new(JOIN_BURST, JOIN_REFILL),
            turn_requests: FailureLimiter::new(TURN_BURST, TURN_REFILL),
        })
    }

    /// The SFU, for its participant-change broadcast.
    pub fn sfu(&self) -> &Sfu {
        &self.sfu
    }

    /// TURN credentials for `user_id` valid from `now` for the configured
    /// TTL, or `None` when no TURN server is configured.
    pub fn turn_credentials(&self, user_id: &str, now: SystemTime) -> Option<TurnCredentials> {
        let secret = self.turn_secret.as_deref()?;
        if self.turn_uris.is_empty() {
            return None;
        }
        Some(mint_turn_credentials(
            secret,
            &self.turn_uris,
            self.turn_ttl,
            user_id,
            now,
        ))
    }

    /// `GET /voip/turnServer`: the caller's TURN credentials (rate-limited).
    pub fn turn_server(&self, user: &Authed) -> Result<Option<TurnCredentials>> {
        let user_id = user.user_id.as_str();
        self.turn_requests
            .check_and_charge(user_id)
            .map_err(limit_exceeded)?;
        Ok(self.turn_credentials(user_id, SystemTime::now()))
    }

    /// The `ice_servers` of a `call.config` frame, in the browser's
    /// `RTCIceServer` shape.
    pub fn ice_servers(&self, user_id: &str) -> Value {
        let mut servers = Vec::new();
        if !self.stun_uris.is_empty() {
            servers.push(json!({ "urls": self.stun_uris }));
        }
        if let Some(turn) = self.turn_credentials(user_id, SystemTime::now()) {
            servers.push(json!({
                "urls": turn.uris,
                "username": turn.username,
                "credential": turn.password,
            }));
        }
        Value::Array(servers)
    }

    /// Joins the user to the room's call with its SDP offer: only joined
    /// members may. Later offers and candidates go to `signals`.
    pub async fn join(
        &self,
        user: &Authed,
        room_id: &RoomId,
        offer: String,
        signals: mpsc::UnboundedSender<Signal>,
    ) -> Result<Joined> {
        let user_id = user.user_id.as_str();
        self.store.require_joined(room_id.as_str(), user_id).await?;
        self.joins
            .check_and_charge(user_id)
            .map_err(limit_exceeded)?;
        Ok(self
            .sfu
            .join(room_id.as_str(), user_id, offer, signals)
            .await?)
    }

    /// The user's answer to the server's latest offer in the room's call.
    pub async fn answer(&self, user: &Authed, room_id: &RoomId, sdp: String) -> Result<()> {
        Ok(self
            .sfu
            .answer(room_id.as_str(), user.user_id.as_str(), sdp)
            .await?)
    }

    /// One of the user's ICE candidates for the room's call.
    pub async fn add_candidate(
        &self,
        user: &Authed,
        room_id: &RoomId,
        candidate: IceCandidate,
    ) -> Result<()> {
        Ok(self
            .sfu
            .add_candidate(room_id.as_str(), user.user_id.as_str(), candidate)
            .await?)
    }

    /// Takes the user's `session` out of the room's call.
    pub async fn leave(&self, user_id: &str, room_id: &str, session: u64) {
        self.sfu.leave(room_id, user_id, session).await;
    }
}

fn limit_exceeded(wait: Duration) -> Error {
    Error::LimitExceeded {
        retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed independently: printf '%s' USERNAME |
    // openssl dgst -sha1 -hmac SECRET -binary | base64
    #[test]
    fn turn_passwords_match_the_rest_scheme() {
        assert_eq!(
            turn_password("north", "1700003600:@alice:example.org"),
            "6cEh1+OSEPFM5XsksE7KvMgzX1c="
        );
        assert_eq!(
            turn_password("a shared secret", "1600000000:@bob:teatime.test"),
            "Jcm40PePjfn3k0mocVqFRUBrx1A="
        );
    }

    #[test]
    fn credentials_expire_after_the_ttl() {
        let uris = vec!["turn:turn.example.org:3478?transport=udp".to_owned()];
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let minted = mint_turn_credentials(
            "north",
            &uris,
            Duration::from_secs(3600),
            "@alice:example.org",
            now,
        );
        assert_eq!(
            minted,
            TurnCredentials {
                username: "1700003600:@alice:example.org".into(),
                password: "6cEh1+OSEPFM5XsksE7KvMgzX1c=".into(),
                uris,
                ttl: 3600,
            }
        );
    }
}
