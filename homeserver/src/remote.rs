//! Other servers: our key document, their keys (fetched, checked and kept),
//! the verification of their signed requests, and the queries we send them.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    accounts::Profile,
    config::Config,
    error::{Error, Result},
    storage::{Store, now_ms},
};
use federation::{
    client::{ClientOptions, FederationClient},
    keys::SigningKey,
    request_auth::{RequestParts, parse_authorization, verify_request},
    server_keys::{RemoteServerKeys, add_notary_signature, our_server_keys, verify_server_keys},
};
use poem::http::Method;
use ruma::{
    CanonicalJsonObject, MilliSecondsSinceUnixEpoch, OwnedServerName, ServerName, UserId,
    signatures::PublicKeySet,
};

/// How long our key document tells others to trust it before asking again.
const OWN_KEYS_VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);

/// A server whose request names a key we do not know is asked for its keys
/// again at most this often, so forged key ids cannot make us flood it.
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// A server's keys as checked, until when they are trusted, and when we last
/// asked the server for them.
#[derive(Clone)]
struct KnownKeys {
    keys: PublicKeySet,
    document: CanonicalJsonObject,
    trusted_until_ms: i64,
    fetched: Option<Instant>,
}

/// Talks to other servers on this server's behalf.
pub struct Remote {
    server_name: OwnedServerName,
    key: Arc<SigningKey>,
    client: FederationClient,
    store: Store,
    known: Mutex<HashMap<OwnedServerName, KnownKeys>>,
}

fn unauthorized(error: impl std::fmt::Display) -> Error {
    Error::Unauthorized(format!("invalid X-Matrix signature: {error}"))
}

impl Remote {
    /// The service for `config`'s server, signing with `key`.
    pub fn new(config: &Config, store: Store, key: Arc<SigningKey>) -> Result<Self> {
        let server_name = ServerName::parse(&config.server_name)
            .map_err(|e| Error::Internal(format!("server name: {e}")))?;
        let options = ClientOptions {
            verify_tls: config.federation_verify_tls,
            ..ClientOptions::default()
        };
        let client = FederationClient::new(server_name.clone(), key.clone(), options)?;
        Ok(Self {
            server_name,
            key,
            client,
            store,
            known: Mutex::new(HashMap::new()),
        })
    }

    /// Our signed key document, as `GET /_matrix/key/v2/server` serves it.
    pub fn own_key_document(&self) -> Result<CanonicalJsonObject> {
        let valid_until = MilliSecondsSinceUnixEpoch::from_system_time(
            std::time::SystemTime::now() + OWN_KEYS_VALIDITY,
        )
        .ok_or_else(|| Error::Internal("the clock is out of range".into()))?;
        Ok(our_server_keys(
            &self.server_name,
            &self.key,
            BTreeMap::new(),
            valid_until,
        )?)
    }

    /// Asks `server` for its key document and keeps it once it checks out.
    async fn fetch_keys(&self, server: &ServerName) -> Result<KnownKeys> {
        let answer = self
            .client
            .get_unsigned_json(server, "/_matrix/key/v2/server")
            .await?;
        let document: CanonicalJsonObject = serde_json::from_value(answer)
            .map_err(|e| Error::Internal(format!("key document of {server}: {e}")))?;
        let checked = verify_server_keys(document, server, MilliSecondsSinceUnixEpoch::now())?;
        let known = known_keys(&checked, Some(Instant::now()));
        let text = serde_json::to_string(&checked.document)
            .map_err(|e| Error::Internal(format!("key document: {e}")))?;
        self.store
            .put_server_key_document(server.as_str(), &text, known.trusted_until_ms)
            .await?;
        self.remember(server, known.clone());
        Ok(known)
    }

    fn remember(&self, server: &ServerName, known: KnownKeys) {
        let mut cache = self.known.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(server.to_owned(), known);
    }

    /// `server`'s keys, from memory, the database, or the server itself.
    /// With `refresh`, asks the server again unless it was asked recently.
    async fn keys_of(&self, server: &ServerName, refresh: bool) -> Result<KnownKeys> {
        let cached = {
            let cache = self.known.lock().unwrap_or_else(|e| e.into_inner());
            cache.get(server).cloned()
        };
        let now = now_ms();
        let recently_fetched = |known: &KnownKeys| {
            known
                .fetched
                .is_some_and(|at| at.elapsed() < REFETCH_INTERVAL)
        };
        if let Some(known) = cached {
            if known.trusted_until_ms > now && (!refresh || recently_fetched(&known)) {
                return Ok(known);
            }
        } else if !refresh
            && let Some((text, trusted_until_ms)) =
                self.store.server_key_document(server.as_str()).await?
            && trusted_until_ms > now
        {
            let document: CanonicalJsonObject = serde_json::from_str(&text)
                .map_err(|e| Error::Internal(format!("kept key document: {e}")))?;
            let checked = verify_server_keys(document, server, MilliSecondsSinceUnixEpoch::now())?;
            let known = KnownKeys {
                trusted_until_ms,
                ..known_keys(&checked, None)
            };
            self.remember(server, known.clone());
            return Ok(known);
        }
        self.fetch_keys(server).await
    }

    /// Checks an X-Matrix signed request and returns the server that sent it;
    /// `M_UNAUTHORIZED` unless the signature is valid for this server.
    pub async fn verify_request(
        &self,
        authorization: &str,
        method: &Method,
        uri: &str,
        body: &[u8],
    ) -> Result<OwnedServerName> {
        let auth = parse_authorization(authorization).map_err(unauthorized)?;
        if auth.origin == self.server_name {
            return Err(unauthorized("a request from outside names this server"));
        }
        let parts = RequestParts { method, uri, body };
        let keys = self
            .keys_of(&auth.origin, false)
            .await
            .map_err(unauthorized)?;
        match verify_request(&auth, parts, &self.server_name, &keys.keys) {
            Ok(()) => Ok(auth.origin),
            // Perhaps a new key: ask the origin again (at most once a minute).
            Err(federation::Error::UnknownKey { .. }) => {
                let keys = self
                    .keys_of(&auth.origin, true)
                    .await
                    .map_err(unauthorized)?;
                verify_request(&auth, parts, &self.server_name, &keys.keys)
                    .map_err(unauthorized)?;
                Ok(auth.origin)
            }
            Err(e) => Err(unauthorized(e)),
        }
    }

    /// Key documents for `/_matrix/key/v2/query`: ours, or another server's
    /// countersigned by us as a notary. `None` when it cannot be had.
    pub async fn notarised_key_document(
        &self,
        server: &ServerName,
    ) -> Result<Option<CanonicalJsonObject>> {
        if server == self.server_name {
            return self.own_key_document().map(Some);
        }
        let mut document = match self.keys_of(server, false).await {
            Ok(known) => known.document,
            Err(e) => {
                tracing::info!(%server, error = %e, "no keys for a key query");
                return Ok(None);
            }
        };
        add_notary_signature(&mut document, &self.server_name, &self.key)?;
        Ok(Some(document))
    }

    /// A remote user's profile, asked of their server.
    pub async fn profile(&self, user_id: &UserId) -> Result<Profile> {
        let path = format!(
            "/_matrix/federation/v1/query/profile?user_id={}",
            encode(user_id.as_str())
        );
        let answer = self
            .client
            .request_json(user_id.server_name(), Method::GET, &path, None)
            .await
            .map_err(|e| match e {
                federation::Error::Remote {
                    status: 404,
                    message,
                    ..
                } => Error::NotFound(message),
                // Nothing can be said of a user whose server cannot be asked.
                other => Error::NotFound(format!("the user's server did not answer: {other}")),
            })?;
        let text = |field: &str| answer[field].as_str().map(str::to_owned);
        Ok(Profile {
            displayname: text("displayname"),
            avatar_url: text("avatar_url"),
        })
    }
}

fn known_keys(checked: &RemoteServerKeys, fetched: Option<Instant>) -> KnownKeys {
    let trusted_until_ms = i64::try_from(u64::from(checked.trusted_until.get())).unwrap_or(0);
    KnownKeys {
        keys: checked.public_keys(),
        document: checked.document.clone(),
        trusted_until_ms,
        fetched,
    }
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
