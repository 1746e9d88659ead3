//! The federation HTTP client: resolves the destination server
//! ([`crate::discovery`]), signs the request with X-Matrix
//! ([`crate::request_auth`]), sends it over HTTPS and returns the JSON answer.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use reqwest::{
    Method,
    dns::{Addrs, Name, Resolve, Resolving},
    header::{AUTHORIZATION, CONTENT_TYPE, HOST},
    redirect::Policy,
};
use ruma::{OwnedServerName, ServerName};
use serde::Deserialize;

use crate::{
    Error, Result,
    discovery::{Destination, Discovery, NetworkResolver, Resolver},
    keys::SigningKey,
    request_auth::{RequestParts, authorization_header},
};

/// How the client talks to other servers.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Check the other servers' TLS certificates. Turn off only on test
    /// networks whose servers have self-signed certificates
    /// (`TEATIME_FEDERATION_VERIFY_TLS=false`).
    pub verify_tls: bool,
    pub connect_timeout: Duration,
    /// The limit for a whole request: connecting, sending, reading the answer.
    pub request_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            verify_tls: true,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }
}

impl ClientOptions {
    /// An HTTPS client with these options, for federation requests and
    /// `.well-known` fetches. With `connect_to`, every connection goes to
    /// that host whatever the URL names (see [`ConnectTo`]).
    pub(crate) fn http_client(
        &self,
        redirects: Policy,
        connect_to: Option<&str>,
    ) -> Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("TeaTime/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .tls_danger_accept_invalid_certs(!self.verify_tls)
            // Federation is HTTPS only; this also refuses redirects to http://.
            .https_only(true)
            // The `Host` header must be the one discovery chose; HTTP/2
            // would send the URL's authority instead.
            .http1_only()
            .redirect(redirects);
        if let Some(host) = connect_to {
            builder = builder.dns_resolver(Arc::new(ConnectTo {
                host: host.to_owned(),
            }));
        }
        builder
            .build()
            .map_err(|e| Error::ClientSetup(error_chain(&e)))
    }
}

/// The largest JSON answer read from another server (room state for a join
/// of a large room is tens of megabytes).
const MAX_JSON_ANSWER: u64 = 64 * 1024 * 1024;

/// An answer read whole: its `Content-Type` and body.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

fn json_of(destination: &ServerName, answer: &RawAnswer) -> Result<serde_json::Value> {
    serde_json::from_slice(&answer.body).map_err(|e| Error::Transport {
        destination: destination.to_string(),
        reason: format!("the answer is not JSON: {e}"),
    })
}

/// Sends signed requests to other servers.
pub struct FederationClient<R = NetworkResolver> {
    server_name: OwnedServerName,
    key: Arc<SigningKey>,
    options: ClientOptions,
    http: reqwest::Client,
    discovery: Discovery<R>,
    /// Clients for destinations that an SRV record sends to another host than
    /// the one their certificate names, by (certificate name, connect host):
    /// the URL carries the certificate name, and each such client's DNS
    /// answers with the SRV target's addresses.
    srv_clients: Mutex<HashMap<(String, String), reqwest::Client>>,
}

impl FederationClient {
    /// A client for `server_name`, signing with `key`, finding servers over the network.
    pub fn new(
        server_name: OwnedServerName,
        key: Arc<SigningKey>,
        options: ClientOptions,
    ) -> Result<Self> {
        let resolver = NetworkResolver::new(&options)?;
        Self::with_resolver(server_name, key, options, resolver)
    }
}

impl<R: Resolver> FederationClient<R> {
    /// A client that finds servers with `resolver`.
    pub fn with_resolver(
        server_name: OwnedServerName,
        key: Arc<SigningKey>,
        options: ClientOptions,
        resolver: R,
    ) -> Result<Self> {
        // Federation endpoints answer; they do not redirect.
        let http = options.http_client(Policy::none(), None)?;
        Ok(FederationClient {
            server_name,
            key,
            options,
            http,
            discovery: Discovery::new(resolver),
            srv_clients: Mutex::new(HashMap::new()),
        })
    }

    /// Sends `method path_and_query` with an optional JSON `body` to
    /// `destination`, signed as this server, and returns the JSON answer.
    /// `path_and_query` is the request target as sent, percent-encoded
    /// (`/_matrix/federation/v1/...`). A non-2xx answer is
    /// [`Error::Remote`] with its status and Matrix `errcode`.
    pub async fn request_json(
        &self,
        destination: &ServerName,
        method: Method,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let answer = self
            .send(
                destination,
                method,
                path_and_query,
                body,
                true,
                MAX_JSON_ANSWER,
            )
            .await?;
        json_of(destination, &answer)
    }

    /// `GET path_and_query` of `destination` without a signature, for the
    /// endpoints that need none (`/_matrix/key/v2/server`). Signing a key
    /// fetch would make the other server fetch our keys first, and if it
    /// signed that fetch too, the two would wait on each other for ever.
    pub async fn get_unsigned_json(
        &self,
        destination: &ServerName,
        path_and_query: &str,
    ) -> Result<serde_json::Value> {
        let answer = self
            .send(
                destination,
                Method::GET,
                path_and_query,
                None,
                false,
                MAX_JSON_ANSWER,
            )
            .await?;
        json_of(destination, &answer)
    }

    /// `GET path_and_query` of `destination` (signed or not) for its raw
    /// answer, at most `max_bytes` long: media, which is not JSON.
    pub async fn get_bytes(
        &self,
        destination: &ServerName,
        path_and_query: &str,
        signed: bool,
        max_bytes: u64,
    ) -> Result<RawAnswer> {
        self.send(
            destination,
            Method::GET,
            path_and_query,
            None,
            signed,
            max_bytes,
        )
        .await
    }

    async fn send(
        &self,
        destination: &ServerName,
        method: Method,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
        signed: bool,
        max_bytes: u64,
    ) -> Result<RawAnswer> {
        let target = self.discovery.resolve(destination).await?;
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let url = format!(
            "https://{}:{}{path_and_query}",
            target.tls_name, target.port
        );
        let mut request = self
            .http_for(&target)?
            .request(method.clone(), url)
            .header(HOST, &target.host_header);
        if signed {
            let authorization = authorization_header(
                &self.key,
                &self.server_name,
                destination,
                RequestParts {
                    method: &method,
                    uri: path_and_query,
                    body: body.as_deref().unwrap_or_default(),
                },
            )?;
            request = request.header(AUTHORIZATION, authorization);
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }

        let failed = |reason: String| Error::Transport {
            destination: destination.to_string(),
            reason,
        };
        let mut response = request.send().await.map_err(|e| failed(error_chain(&e)))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failed(error_chain(&e)))?
        {
            if (body.len() + chunk.len()) as u64 > max_bytes {
                return Err(failed(format!(
                    "the answer is larger than {max_bytes} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(remote_error(destination, status.as_u16(), &body));
        }
        Ok(RawAnswer { content_type, body })
    }

    fn http_for(&self, target: &Destination) -> Result<reqwest::Client> {
        if target.connect_host == target.tls_name {
            return Ok(self.http.clone());
        }
        let mut clients = self
            .srv_clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (target.tls_name.clone(), target.connect_host.clone());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = self
            .options
            .http_client(Policy::none(), Some(&target.connect_host))?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// DNS for one SRV destination: whatever name the URL has, connect to the
/// SRV target's addresses (the URL's port still applies).
struct ConnectTo {
    host: String,
}

impl Resolve for ConnectTo {
    fn resolve(&self, _name: Name) -> Resolving {
        let host = self
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Box::pin(async move {
            let addresses = tokio::net::lookup_host((host, 0)).await?;
            Ok(Box::new(addresses) as Addrs)
        })
    }
}

#[derive(Deserialize)]
struct MatrixError {
    errcode: String,
    #[serde(default)]
    error: String,
}

/// The longest piece of a non-Matrix error body kept in the error.
const MAX_ERROR_TEXT: usize = 200;

fn remote_error(destination: &ServerName, status: u16, body: &[u8]) -> Error {
    let (errcode, message) = match serde_json::from_slice::<MatrixError>(body) {
        Ok(error) => (Some(error.errcode), error.error),
        Err(_) => (
            None,
            String::from_utf8_lossy(body)
                .chars()
                .take(MAX_ERROR_TEXT)
                .collect(),
        ),
    };
    Error::Remote {
        destination: destination.to_string(),
        status,
        errcode,
        message,
    }
}

/// An error with its causes, which is where reqwest says what went wrong
/// (refused connection, certificate problem, timeout).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
