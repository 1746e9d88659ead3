//! Resolving a server name to where and how to connect (spec v1.19, "Resolving
//! server names"): an IP literal or explicit port connects directly; otherwise
//! `/.well-known/matrix/server` may delegate to another name, then SRV
//! records (`_matrix-fed._tcp`, then the deprecated `_matrix._tcp`), then port
//! 8448. The network lookups sit behind [`Resolver`], so the decisions are
//! testable without a network; [`NetworkResolver`] is the real one.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use hickory_resolver::{TokioResolver, proto::rr::RData};
use reqwest::header::{CACHE_CONTROL, HeaderMap};
use ruma::{OwnedServerName, ServerName};
use serde::Deserialize;
use tokio::time::Instant;

use crate::{Error, Result, client::ClientOptions};

/// The federation port when neither the server name nor SRV gives one.
pub const DEFAULT_PORT: u16 = 8448;

/// `.well-known` answers without `Cache-Control` are kept this long.
const WELL_KNOWN_DEFAULT_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);
/// The spec's recommended cap on any `.well-known` cache period.
const WELL_KNOWN_MAX_PERIOD: Duration = Duration::from_secs(48 * 60 * 60);
/// Floor for `Cache-Control` periods, so `no-store` or `max-age=0` cannot
/// make every request fetch `.well-known` again (Synapse does the same).
const WELL_KNOWN_MIN_PERIOD: Duration = Duration::from_secs(5 * 60);
/// A failed `.well-known` fetch is remembered this long, doubling with each
/// failure in a row up to [`WELL_KNOWN_MAX_ERROR_PERIOD`] (the spec asks
/// for at most an hour and exponential backoff).
const WELL_KNOWN_FIRST_ERROR_PERIOD: Duration = Duration::from_secs(2 * 60);
const WELL_KNOWN_MAX_ERROR_PERIOD: Duration = Duration::from_secs(60 * 60);
/// `.well-known` documents are tiny; anything bigger is not one.
const WELL_KNOWN_MAX_BYTES: usize = 64 * 1024;
/// Redirects followed when fetching `.well-known` (also ends redirect loops).
const WELL_KNOWN_MAX_REDIRECTS: usize = 5;
/// The port `.well-known` is served on: plain `https://<hostname>/`.
const HTTPS_PORT: u16 = 443;

/// Where to send a server's federation requests, and how to present them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The host to open the connection to: a DNS name or an IP address
    /// (IPv6 in brackets).
    pub connect_host: String,
    pub port: u16,
    /// The `Host` header of the requests.
    pub host_header: String,
    /// The name the server's certificate must be valid for, also sent as
    /// SNI unless it is an IP address. Differs from `connect_host` only when
    /// an SRV record points elsewhere.
    pub tls_name: String,
}

impl Destination {
    /// Straight to a name's host and port (8448 when it has none), with the
    /// whole name, port included, as the `Host` header.
    fn direct(name: &ServerName) -> Self {
        Destination {
            connect_host: name.host().to_owned(),
            port: name.port().unwrap_or(DEFAULT_PORT),
            host_header: name.to_string(),
            tls_name: name.host().to_owned(),
        }
    }
}

/// A valid `.well-known/matrix/server` answer.
#[derive(Debug, Clone)]
pub struct Delegation {
    /// `m.server`: the delegated server name, optionally with a port.
    pub server: OwnedServerName,
    /// How long the answer may be kept, from its `Cache-Control`; `None`
    /// when it did not say.
    pub max_age: Option<Duration>,
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target host without the trailing dot; `.` says the service is
    /// decidedly not available (RFC 2782).
    pub target: String,
}

/// The network lookups that discovery makes.
pub trait Resolver: Send + Sync {
    /// Fetches `https://<hostname>/.well-known/matrix/server`. Anything but
    /// a 200 answer with a valid `m.server` is an error.
    fn well_known(&self, hostname: &str) -> impl Future<Output = Result<Delegation>> + Send;

    /// The SRV records of `name` (such as `_matrix-fed._tcp.example.org`);
    /// empty when it has none.
    fn srv(&self, name: &str) -> impl Future<Output = Result<Vec<SrvRecord>>> + Send;
}

struct CachedWellKnown {
    delegated: Option<OwnedServerName>,
    expires: Instant,
    /// Failed fetches in a row, for the backoff.
    failures: u32,
}

/// Resolves server names, keeping `.well-known` answers (and failures) for
/// as long as the spec's caching rules allow.
pub struct Discovery<R> {
    resolver: R,
    well_known: Mutex<HashMap<String, CachedWellKnown>>,
}

impl<R: Resolver> Discovery<R> {
    pub fn new(resolver: R) -> Self {
        Discovery {
            resolver,
            well_known: Mutex::new(HashMap::new()),
        }
    }

    /// Where to reach `server_name`, and with which `Host` and certificate name.
    pub async fn resolve(&self, server_name: &ServerName) -> Result<Destination> {
        // Steps 1 and 2: an IP literal or an explicit port.
        if server_name.is_ip_literal() || server_name.port().is_some() {
            return Ok(Destination::direct(server_name));
        }
        // Step 3: delegation through `.well-known`.
        if let Some(delegated) = self.delegation(server_name.host()).await {
            // Steps 3.1 and 3.2.
            if delegated.is_ip_literal() || delegated.port().is_some() {
                return Ok(Destination::direct(&delegated));
            }
            // Steps 3.3 to 3.5.
            return self.srv_or_default_port(delegated.host()).await;
        }
        // Steps 4 to 6.
        self.srv_or_default_port(server_name.host()).await
    }

    /// SRV records for `hostname`, the registered service first, else
    /// `hostname:8448`; the request presents `hostname` either way.
    async fn srv_or_default_port(&self, hostname: &str) -> Result<Destination> {
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            let name = format!("{service}.{hostname}");
            let Some(record) = preferred(self.resolver.srv(&name).await?) else {
                continue;
            };
            if record.target == "." {
                return Err(Error::Discovery {
                    server: hostname.to_owned(),
                    reason: format!("{name} says there is no such service"),
                });
            }
            return Ok(Destination {
                connect_host: record.target,
                port: record.port,
                host_header: hostname.to_owned(),
                tls_name: hostname.to_owned(),
            });
        }
        Ok(Destination {
            connect_host: hostname.to_owned(),
            port: DEFAULT_PORT,
            host_header: hostname.to_owned(),
            tls_name: hostname.to_owned(),
        })
    }

    /// The `.well-known` delegation of `hostname`, from the cache while it is fresh.
    async fn delegation(&self, hostname: &str) -> Option<OwnedServerName> {
        let failures = match self.cache().get(hostname) {
            Some(entry) if entry.expires > Instant::now() => return entry.delegated.clone(),
            Some(entry) => entry.failures,
            None => 0,
        };
        let entry = match self.resolver.well_known(hostname).await {
            Ok(delegation) => CachedWellKnown {
                expires: Instant::now() + well_known_period(delegation.max_age),
                delegated: Some(delegation.server),
                failures: 0,
            },
            Err(error) => {
                tracing::debug!(hostname, %error, "no usable /.well-known/matrix/server");
                let failures = failures.saturating_add(1);
                CachedWellKnown {
                    delegated: None,
                    expires: Instant::now() + well_known_error_period(failures),
                    failures,
                }
            }
        };
        let delegated = entry.delegated.clone();
        self.cache().insert(hostname.to_owned(), entry);
        delegated
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<String, CachedWellKnown>> {
        // A panic elsewhere cannot leave an entry half-written: keep using it.
        self.well_known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The record to use: the lowest priority, then the heaviest weight. RFC
/// 2782 picks among equal priorities at random by weight; a fixed choice
/// keeps connections to one host and the behaviour testable.
fn preferred(records: Vec<SrvRecord>) -> Option<SrvRecord> {
    records
        .into_iter()
        .min_by_key(|record| (record.priority, std::cmp::Reverse(record.weight)))
}

fn well_known_period(max_age: Option<Duration>) -> Duration {
    max_age.map_or(WELL_KNOWN_DEFAULT_PERIOD, |age| {
        age.clamp(WELL_KNOWN_MIN_PERIOD, WELL_KNOWN_MAX_PERIOD)
    })
}

/// 2 minutes after the first failure, doubling up to an hour.
fn well_known_error_period(failures: u32) -> Duration {
    WELL_KNOWN_FIRST_ERROR_PERIOD
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(WELL_KNOWN_MAX_ERROR_PERIOD)
}

/// `max-age` from `Cache-Control`, zero for `no-store` and `no-cache`.
fn cache_max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    let directives = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|directive| directive.trim().to_ascii_lowercase());
    for directive in directives {
        if directive == "no-store" || directive == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(seconds) = directive.strip_prefix("max-age=")
            && let Ok(seconds) = seconds.trim_matches('"').parse()
        {
            max_age = Some(Duration::from_secs(seconds));
        }
    }
    max_age
}

#[derive(Deserialize)]
struct WellKnownServer {
    #[serde(rename = "m.server")]
    server: OwnedServerName,
}

/// Discovery over the network: `.well-known` over HTTPS, SRV through the
/// system's DNS configuration (`/etc/resolv.conf`).
pub struct NetworkResolver {
    http: reqwest::Client,
    /// Why there is no DNS resolver, when the system has no usable
    /// configuration: reported by SRV lookups only, so servers named by IP
    /// address or with a port still work.
    dns: Result<TokioResolver, String>,
    well_known_port: u16,
}

impl NetworkResolver {
    /// `options` gives the TLS verification and timeouts of `.well-known` fetches.
    pub fn new(options: &ClientOptions) -> Result<Self> {
        let http = options.http_client(
            reqwest::redirect::Policy::limited(WELL_KNOWN_MAX_REDIRECTS),
            None,
        )?;
        let dns = TokioResolver::builder_tokio()
            .and_then(|builder| builder.build())
            .map_err(|e| e.to_string());
        Ok(NetworkResolver {
            http,
            dns,
            well_known_port: HTTPS_PORT,
        })
    }

    /// Fetches `.well-known` from `port` instead of 443. For tests only: they
    /// serve it on a free loopback port, where 443 would need privileges and
    /// clash between tests. Real servers always serve it on 443.
    pub fn with_well_known_port(mut self, port: u16) -> Self {
        self.well_known_port = port;
        self
    }
}

impl Resolver for NetworkResolver {
    async fn well_known(&self, hostname: &str) -> Result<Delegation> {
        let failed = |reason: String| Error::Discovery {
            server: hostname.to_owned(),
            reason: format!("/.well-known/matrix/server: {reason}"),
        };
        let url = if self.well_known_port == HTTPS_PORT {
            format!("https://{hostname}/.well-known/matrix/server")
        } else {
            format!(
                "https://{hostname}:{}/.well-known/matrix/server",
                self.well_known_port
            )
        };
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| failed(crate::client::error_chain(&e)))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(failed(format!("status {}", response.status())));
        }
        let max_age = cache_max_age(response.headers());
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failed(crate::client::error_chain(&e)))?
        {
            if body.len() + chunk.len() > WELL_KNOWN_MAX_BYTES {
                return Err(failed(format!("larger than {WELL_KNOWN_MAX_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let document: WellKnownServer =
            serde_json::from_slice(&body).map_err(|e| failed(e.to_string()))?;
        Ok(Delegation {
            server: document.server,
            max_age,
        })
    }

    async fn srv(&self, name: &str) -> Result<Vec<SrvRecord>> {
        let failed = |reason: String| Error::Discovery {
            server: name.to_owned(),
            reason: format!("SRV lookup: {reason}"),
        };
        let dns = self.dns.as_ref().map_err(|e| failed(e.clone()))?;
        // The trailing dot makes the name absolute, so no search domain is tried.
        match dns.srv_lookup(format!("{name}.")).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::SRV(srv) => Some(SrvRecord {
                        priority: srv.priority,
                        weight: srv.weight,
                        port: srv.port,
                        target: if srv.target.is_root() {
                            ".".to_owned()
                        } else {
                            srv.target.to_utf8().trim_end_matches('.').to_owned()
                        },
                    }),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(failed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn cache_control_is_read() {
        let max_age = |values: &[&str]| cache_max_age(&headers(values));
        assert_eq!(max_age(&[]), None);
        assert_eq!(max_age(&["public"]), None);
        assert_eq!(
            max_age(&["public, max-age=3600"]),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(max_age(&["Max-Age=\"60\""]), Some(Duration::from_secs(60)));
        assert_eq!(max_age(&["max-age=soon"]), None);
        assert_eq!(max_age(&["max-age=60", "no-store"]), Some(Duration::ZERO));
        assert_eq!(max_age(&["no-cache"]), Some(Duration::ZERO));
    }

    #[test]
    fn cache_periods_follow_the_spec() {
        assert_eq!(well_known_period(None), WELL_KNOWN_DEFAULT_PERIOD);
        assert_eq!(
            well_known_period(Some(Duration::from_secs(3600))),
            Duration::from_secs(3600)
        );
        assert_eq!(
            well_known_period(Some(Duration::ZERO)),
            WELL_KNOWN_MIN_PERIOD
        );
        assert_eq!(
            well_known_period(Some(Duration::from_secs(30 * 24 * 3600))),
            WELL_KNOWN_MAX_PERIOD
        );
        let errors: Vec<u64> = (1..=7)
            .map(|failures| well_known_error_period(failures).as_secs() / 60)
            .collect();
        assert_eq!(errors, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(
            well_known_error_period(u32::MAX),
            WELL_KNOWN_MAX_ERROR_PERIOD
        );
    }

    #[test]
    fn the_preferred_srv_record_has_the_lowest_priority_then_the_most_weight() {
        let record = |priority, weight, target: &str| SrvRecord {
            priority,
            weight,
            port: 8448,
            target: target.into(),
        };
        assert_eq!(preferred(Vec::new()), None);
        let chosen = preferred(vec![
            record(20, 100, "backup"),
            record(10, 5, "light"),
            record(10, 50, "heavy"),
        ]);
        assert_eq!(chosen.unwrap().target, "heavy");
    }
}
