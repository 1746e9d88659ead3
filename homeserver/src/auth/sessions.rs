//! Device sessions: issuing tokens at login and refresh, and checking the
//! access token of every request.
//!
//! A JWT proves who signed it, not that its session is still alive, so every
//! check also consults the session: from a cache that logout, refresh and
//! device deletion update at once, or from the database on a miss.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use quick_cache::sync::Cache;
use ruma::{OwnedDeviceId, OwnedUserId};

use super::tokens::{self, Claims, TokenKeys, TokenRejection};
use crate::{
    error::{Error, Result},
    storage::{DeviceRow, NewDevice, RefreshOutcome, Store, now_ms},
    sync::{Change, Notifier},
};

/// Sessions kept in memory; more fall back to the database.
const CACHED_SESSIONS: usize = 100_000;
/// How stale a device's "last seen" may get before it is written again.
const LAST_SEEN_RESOLUTION_MS: i64 = 60_000;

/// The authenticated bearer of a request.
#[derive(Debug, Clone)]
pub struct Authed {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub session_id: String,
}

/// Tokens handed to a client at login, registration or refresh.
#[derive(Debug)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in_ms: Option<u64>,
}

struct LiveSession {
    authed: Authed,
    generation: i64,
    last_seen_ms: AtomicI64,
}

/// Issues and checks tokens for device sessions.
pub struct Sessions {
    store: Store,
    notifier: Arc<Notifier>,
    keys: TokenKeys,
    access_lifetime: Duration,
    cache: Cache<String, Arc<LiveSession>>,
}

/// A login about to be stored: the device row to write and the tokens to return once it is.
pub struct PendingLogin {
    pub session_id: String,
    pub device_id: String,
    pub refresh_hash: Option<String>,
    pub tokens: IssuedTokens,
}

impl PendingLogin {
    /// The device row this login creates.
    pub fn device<'a>(
        &'a self,
        user_id: &'a str,
        display_name: Option<&'a str>,
        ip: Option<&'a str>,
    ) -> NewDevice<'a> {
        NewDevice {
            user_id,
            device_id: &self.device_id,
            display_name,
            session_id: &self.session_id,
            refresh_token_hash: self.refresh_hash.as_deref(),
            ip,
        }
    }
}

impl Sessions {
    /// Sessions over `store`, with tokens signed by `keys`.
    pub fn new(
        store: Store,
        keys: TokenKeys,
        access_lifetime: Duration,
        notifier: Arc<Notifier>,
    ) -> Self {
        Self {
            store,
            keys,
            access_lifetime,
            notifier,
            cache: Cache::new(CACHED_SESSIONS),
        }
    }

    /// Prepares a login: a new session id and its tokens. Nothing is valid
    /// until the caller stores `PendingLogin::device`.
    pub fn prepare_login(
        &self,
        user_id: &str,
        device_id: Option<String>,
        refreshable: bool,
    ) -> Result<PendingLogin> {
        let session_id = tokens::random_id();
        let device_id = device_id.unwrap_or_else(tokens::random_device_id);
        let refresh_token = refreshable.then(tokens::new_refresh_token);
        let tokens = self.issue(user_id, &device_id, &session_id, 0, refresh_token)?;
        Ok(PendingLogin {
            refresh_hash: tokens
                .refresh_token
                .as_deref()
                .map(tokens::refresh_token_hash),
            session_id,
            device_id,
            tokens,
        })
    }

    fn issue(
        &self,
        user_id: &str,
        device_id: &str,
        session_id: &str,
        generation: i64,
        refresh_token: Option<String>,
    ) -> Result<IssuedTokens> {
        let now = now_ms();
        let now_secs = now / 1000;
        let lifetime_ms = u64::try_from(self.access_lifetime.as_millis()).unwrap_or(u64::MAX);
        let expires_in_ms = refresh_token.is_some().then_some(lifetime_ms);
        let claims = Claims {
            sub: user_id.to_owned(),
            dev: device_id.to_owned(),
            sid: session_id.to_owned(),
            generation,
            iat: now_secs,
            // Rounded up to the next whole second, so the token lives at
            // least the `expires_in_ms` the client is told.
            exp: expires_in_ms.map(|ms| {
                now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
                    .saturating_add(999)
                    / 1000
            }),
        };
        Ok(IssuedTokens {
            access_token: self.keys.sign(&claims)?,
            refresh_token,
            expires_in_ms,
        })
    }

    /// Checks an access token; `ip` is recorded as the device's last address.
    pub async fn authenticate(&self, token: &str, ip: Option<String>) -> Result<Authed> {
        let claims = match self.keys.verify(token, now_ms() / 1000) {
            Ok(claims) => claims,
            Err(TokenRejection::Invalid) => return Err(Error::UnknownToken { soft_logout: false }),
            Err(TokenRejection::Expired { sid }) => {
                // Soft logout only if a refresh or re-login could resume the session.
                let alive = self.live_session(&sid).await?.is_some();
                return Err(Error::UnknownToken { soft_logout: alive });
            }
        };
        let session = self
            .live_session(&claims.sid)
            .await?
            .filter(|s| {
                s.generation == claims.generation && s.authed.user_id.as_str() == claims.sub
            })
            .ok_or(Error::UnknownToken { soft_logout: false })?;
        let now = now_ms();
        let last_seen = session.last_seen_ms.load(Ordering::Relaxed);
        if now - last_seen > LAST_SEEN_RESOLUTION_MS
            && session
                .last_seen_ms
                .compare_exchange(last_seen, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let store = self.store.clone();
            let sid = claims.sid.clone();
            tokio::spawn(async move {
                if let Err(e) = store.touch_session(&sid, now, ip.as_deref()).await {
                    tracing::warn!(error = %e, "could not record device last-seen");
                }
            });
        }
        Ok(session.authed.clone())
    }

    async fn live_session(&self, session_id: &str) -> Result<Option<Arc<LiveSession>>> {
        if let Some(session) = self.cache.get(session_id) {
            return Ok(Some(session));
        }
        let Some(row) = self.store.session(session_id).await? else {
            return Ok(None);
        };
        let session = Arc::new(live_session_from(row)?);
        self.cache.insert(session_id.to_owned(), session.clone());
        Ok(Some(session))
    }

    /// Spends a refresh token and issues the next pair.
    pub async fn refresh(&self, refresh_token: &str) -> Result<IssuedTokens> {
        let next = tokens::new_refresh_token();
        let outcome = self
            .store
            .use_refresh_token(
                &tokens::refresh_token_hash(refresh_token),
                &tokens::refresh_token_hash(&next),
            )
            .await?;
        match outcome {
            RefreshOutcome::Unknown => Err(Error::UnknownToken { soft_logout: false }),
            RefreshOutcome::Reused { session_id } => {
                tracing::warn!("a spent refresh token was presented again; its session is revoked");
                self.forget(&[session_id]);
                Err(Error::UnknownToken { soft_logout: false })
            }
            RefreshOutcome::Rotated(row) => {
                self.forget(std::slice::from_ref(&row.session_id));
                self.issue(
                    &row.user_id,
                    &row.device_id,
                    &row.session_id,
                    row.token_generation,
                    Some(next),
                )
            }
        }
    }

    /// Ends sessions here and on every other instance: their tokens fail from now on.
    pub fn forget(&self, session_ids: &[String]) {
        self.forget_here(session_ids);
        if !session_ids.is_empty() {
            self.notifier
                .publish(Change::SessionsEnded(session_ids.to_vec()));
        }
    }

    /// Drops ended sessions from this instance's cache.
    pub fn forget_here(&self, session_ids: &[String]) {
        for sid in session_ids {
            self.cache.remove(sid);
        }
    }

    /// Drops every cached session (when ends announced elsewhere may have
    /// been missed); they are read from the database again.
    pub fn forget_all_here(&self) {
        self.cache.clear();
    }
}

fn live_session_from(row: DeviceRow) -> Result<LiveSession> {
    let user_id = OwnedUserId::try_from(row.user_id)
        .map_err(|e| Error::Internal(format!("stored user id is invalid: {e}")))?;
    Ok(LiveSession {
        authed: Authed {
            user_id,
            device_id: row.device_id.into(),
            session_id: row.session_id,
        },
        generation: row.token_generation,
        last_seen_ms: AtomicI64::new(row.last_seen_ts.unwrap_or(0)),
    })
}
