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
    directory::{PublicRoomEntry, PublicRoomsPage, PublicRoomsQuery},
    error::{Error, Result},
    storage::{Store, now_ms},
};
use federation::{
    client::{ClientOptions, FederationClient, RawAnswer},
    keys::SigningKey,
    request_auth::{RequestParts, parse_authorization, verify_request},
    server_keys::{RemoteServerKeys, add_notary_signature, our_server_keys, verify_server_keys},
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use poem::http::Method;
use ruma::{
    CanonicalJsonObject, MilliSecondsSinceUnixEpoch, OwnedServerName, ServerName, UserId,
    signatures::{PublicKeyMap, PublicKeySet},
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

    /// The public keys of `servers`, for checking event signatures; a
    /// server whose keys cannot be had is left out (its events then fail).
    pub async fn public_keys(&self, servers: &[OwnedServerName]) -> PublicKeyMap {
        let mut map = PublicKeyMap::new();
        for server in servers {
            if *server == self.server_name {
                map.insert(server.to_string(), self.own_public_keys());
                continue;
            }
            match self.keys_of(server, false).await {
                Ok(known) => {
                    map.insert(server.to_string(), known.keys);
                }
                Err(e) => tracing::info!(%server, error = %e, "no keys to check events with"),
            }
        }
        map
    }

    fn own_public_keys(&self) -> PublicKeySet {
        PublicKeySet::from([(
            self.key.key_id(),
            ruma::serde::Base64::new(self.key.pair().public_key().to_vec()),
        )])
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

    /// Sends a signed federation request to `destination` and returns its JSON answer.
    pub async fn request(
        &self,
        destination: &ServerName,
        method: Method,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        Ok(self
            .client
            .request_json(destination, method, path_and_query, body)
            .await?)
    }

    /// This server's name.
    pub fn server_name(&self) -> &ServerName {
        &self.server_name
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

impl Remote {
    /// A page of `server`'s published room directory
    /// (`POST /_matrix/federation/v1/publicRooms`).
    pub async fn public_rooms(
        &self,
        server: &ServerName,
        query: &PublicRoomsQuery,
    ) -> Result<PublicRoomsPage> {
        let mut filter = serde_json::Map::new();
        if let Some(term) = &query.generic_search_term {
            filter.insert("generic_search_term".into(), term.clone().into());
        }
        if let Some(types) = &query.room_types {
            filter.insert("room_types".into(), serde_json::json!(types));
        }
        let mut body = serde_json::json!({ "filter": filter });
        for (field, value) in [
            ("since", query.since.clone().map(Into::into)),
            ("limit", query.limit.map(Into::into)),
            (
                "third_party_instance_id",
                query.third_party_instance_id.clone().map(Into::into),
            ),
        ] {
            if let Some(value) = value {
                body[field] = value;
            }
        }
        let answer = self
            .client
            .request_json(
                server,
                Method::POST,
                "/_matrix/federation/v1/publicRooms",
                Some(&body),
            )
            .await
            .map_err(|e| {
                Error::BadGateway(format!("{server} did not list its public rooms: {e}"))
            })?;
        let page: RemotePublicRooms = serde_json::from_value(answer).map_err(|e| {
            Error::BadGateway(format!("{server} listed its public rooms wrongly: {e}"))
        })?;
        Ok(PublicRoomsPage {
            total_room_count_estimate: page
                .total_room_count_estimate
                .unwrap_or(i64::try_from(page.chunk.len()).unwrap_or(i64::MAX)),
            chunk: page.chunk,
            next_batch: page.next_batch,
            prev_batch: page.prev_batch,
        })
    }
}

/// Another server's `publicRooms` answer, as far as this server passes it on.
#[derive(serde::Deserialize)]
struct RemotePublicRooms {
    chunk: Vec<PublicRoomEntry>,
    next_batch: Option<String>,
    prev_batch: Option<String>,
    total_room_count_estimate: Option<i64>,
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

/// Everything but RFC 3986's unreserved characters is percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// Media fetched from its server.
#[derive(Debug)]
pub struct RemoteFile {
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub bytes: Vec<u8>,
}

/// Room for the multipart framing around a file.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

impl Remote {
    /// Fetches `media_id` from `server` (at most `max_bytes`): the federation
    /// media endpoint, or, for servers older than Matrix v1.11, the legacy
    /// unauthenticated download.
    pub async fn fetch_media(
        &self,
        server: &ServerName,
        media_id: &str,
        max_bytes: u64,
    ) -> Result<RemoteFile> {
        let path = format!("/_matrix/federation/v1/media/download/{media_id}");
        let unavailable = |e: federation::Error| match e {
            federation::Error::Remote {
                status: 404,
                message,
                ..
            } => Error::NotFound(message),
            other => Error::NotFound(format!("the media's server did not answer: {other}")),
        };
        match self
            .client
            .get_bytes(server, &path, true, max_bytes + MULTIPART_OVERHEAD)
            .await
        {
            Ok(answer) => parse_multipart_media(answer, max_bytes).await,
            Err(federation::Error::Remote {
                errcode: Some(errcode),
                ..
            }) if errcode == "M_UNRECOGNIZED" => {
                let legacy =
                    format!("/_matrix/media/v3/download/{server}/{media_id}?allow_remote=false");
                let answer = self
                    .client
                    .get_bytes(server, &legacy, false, max_bytes)
                    .await
                    .map_err(unavailable)?;
                Ok(RemoteFile {
                    content_type: answer.content_type,
                    filename: None,
                    bytes: answer.body,
                })
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// The file of a federation media answer: `multipart/mixed` with a JSON
/// metadata part, then the file (a `Location` part, which points elsewhere,
/// is not followed).
async fn parse_multipart_media(answer: RawAnswer, max_bytes: u64) -> Result<RemoteFile> {
    let malformed = |reason: String| Error::NotFound(format!("unusable media answer: {reason}"));
    // multer's own boundary parser accepts only multipart/form-data.
    let content_type = answer.content_type.unwrap_or_default();
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|param| param.strip_prefix("boundary="))
        .filter(|_| {
            content_type
                .to_ascii_lowercase()
                .starts_with("multipart/mixed")
        })
        .map(|boundary| boundary.trim_matches('"').to_owned())
        .ok_or_else(|| malformed(format!("expected multipart/mixed, got {content_type:?}")))?;
    let body = futures_util::stream::once(async move {
        Ok::<_, std::io::Error>(bytes::Bytes::from(answer.body))
    });
    let mut parts = multer::Multipart::new(body, boundary);
    let mut index = 0;
    while let Some(part) = parts
        .next_field()
        .await
        .map_err(|e| malformed(e.to_string()))?
    {
        index += 1;
        if index == 1 {
            continue; // the metadata, `{}` so far
        }
        let header = |name| {
            part.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if header(poem::http::header::LOCATION).is_some() {
            return Err(malformed("the file is elsewhere (a Location part)".into()));
        }
        let content_type = header(poem::http::header::CONTENT_TYPE);
        let filename = header(poem::http::header::CONTENT_DISPOSITION)
            .as_deref()
            .and_then(disposition_filename);
        let bytes = part.bytes().await.map_err(|e| malformed(e.to_string()))?;
        if bytes.len() as u64 > max_bytes {
            return Err(Error::TooLarge);
        }
        return Ok(RemoteFile {
            content_type,
            filename,
            bytes: bytes.to_vec(),
        });
    }
    Err(malformed("no file part".into()))
}

/// The file name of a `Content-Disposition` value (`filename*=utf-8''...`
/// preferred over `filename="..."`).
fn disposition_filename(disposition: &str) -> Option<String> {
    let params = disposition.split(';').map(str::trim);
    let mut plain = None;
    for param in params {
        if let Some(encoded) = param
            .strip_prefix("filename*=")
            .and_then(|v| v.split_once("''").map(|(_, name)| name))
        {
            return percent_decode(encoded);
        }
        if let Some(name) = param.strip_prefix("filename=") {
            plain = Some(name.trim_matches('"').to_owned());
        }
    }
    plain
}

fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(b) = input.next() {
        if b == b'%' {
            let hex = [input.next()?, input.next()?];
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::disposition_filename;

    #[test]
    fn file_names_come_from_either_form() {
        assert_eq!(
            disposition_filename("inline; filename*=utf-8''na%C3%AFve%20x.png").as_deref(),
            Some("naïve x.png")
        );
        assert_eq!(
            disposition_filename("attachment; filename=\"a.txt\"").as_deref(),
            Some("a.txt")
        );
        assert_eq!(disposition_filename("inline"), None);
        assert_eq!(disposition_filename("inline; filename*=utf-8''bad%2"), None);
    }
}
