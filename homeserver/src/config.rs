//! Server configuration: a TOML file overridden by `TEATIME_*` environment
//! variables, with defaults that need no configuration at all.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// Who may create accounts through `POST /register`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    /// Anyone, with the `m.login.dummy` stage.
    Open,
    /// Anyone holding the registration token (`m.login.registration_token`).
    Token,
    /// Nobody; accounts are created by an administrator.
    Closed,
}

/// Where uploaded media is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaBackend {
    /// A directory in the data dir.
    Fs,
    /// An S3-compatible bucket (Cloudflare R2, AWS, MinIO, ...).
    S3,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The complete, validated configuration. Field names are the TOML keys; the
/// environment variable for each is `TEATIME_` + the upper-cased name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Matrix server name: the part after `:` in user ids.
    pub server_name: String,
    /// Client-Server API listener.
    pub listen: SocketAddr,
    /// Server-Server API listener (HTTPS); advertised in `/.well-known/matrix/server`.
    pub federation_listen: SocketAddr,
    /// Base URL clients use to reach this server; advertised in `/.well-known/matrix/client`.
    pub public_baseurl: Option<String>,
    /// Where the server keeps its files (SQLite database, signing keys).
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default: SQLite file in the data dir.
    pub database_url: Option<String>,
    /// `redis://...`: share changes with the other instances using the same
    /// database; unset: one instance, in-memory notifications.
    pub redis_url: Option<String>,
    /// Upper bound of the database connection pool.
    pub database_max_connections: u32,
    /// Who may register.
    pub registration: RegistrationMode,
    /// A token accepted when `registration = "token"`, beside those an
    /// administrator creates (`/_teatime/admin/v1/registration_tokens`).
    pub registration_token: Option<String>,
    /// Secret for signing access tokens (HS256); default: generated and kept in the data dir.
    pub token_secret: Option<String>,
    /// Lifetime of access tokens issued together with a refresh token.
    pub access_token_lifetime_ms: u64,
    /// Failed logins allowed in a burst, per user and per client address.
    pub login_failure_burst: u32,
    /// Seconds after which one more failed login is allowed again.
    pub login_failure_refill_secs: u64,
    /// Registration attempts allowed in a burst per client address.
    pub registration_burst: u32,
    /// Seconds after which one more registration is allowed again.
    pub registration_refill_secs: u64,
    /// Largest JSON request body accepted by the client API.
    pub max_json_body_bytes: usize,
    /// `text` or `json` log lines.
    pub log_format: LogFormat,
    /// Check other servers' TLS certificates (turn off only on test networks).
    pub federation_verify_tls: bool,
    /// Server name patterns (`*` and `?` globs): when any is set, only
    /// matching servers federate with this one. Comma-separated in the environment.
    #[serde(deserialize_with = "name_list")]
    pub federation_allow: Vec<String>,
    /// Server name patterns this server never federates with (deny wins).
    #[serde(deserialize_with = "name_list")]
    pub federation_deny: Vec<String>,
    /// The longest wait between attempts to reach a server that fails.
    pub federation_retry_max_secs: u64,
    /// `fs` (the data dir) or `s3` (the `s3_*` settings).
    pub media_backend: MediaBackend,
    /// The S3 endpoint URL, e.g. `https://<account>.r2.cloudflarestorage.com`.
    pub s3_endpoint: Option<String>,
    pub s3_bucket: Option<String>,
    /// `auto` for Cloudflare R2.
    pub s3_region: String,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
    /// Address buckets as `endpoint/bucket` rather than `bucket.endpoint`.
    pub s3_force_path_style: bool,
    /// Largest upload in bytes (larger: 413 `M_TOO_LARGE`).
    pub max_upload_size: u64,
    /// Bytes of media each user may upload in all; 0: no limit.
    pub media_quota_bytes: u64,
    /// Serve the unauthenticated `/_matrix/media/v3/download|thumbnail`
    /// endpoints (deprecated by the spec since v1.11).
    pub legacy_media_download: bool,
    /// The built browser client served at `/` (Vite's output directory).
    pub web_dir: PathBuf,
    /// STUN servers offered to clients for calls, separated by commas
    /// (`stun:turn.example.org:3478`).
    pub stun_uris: String,
    /// TURN servers offered to clients for calls, separated by commas
    /// (`turn:turn.example.org:3478?transport=udp`); they need `turn_secret`.
    pub turn_uris: String,
    /// The secret shared with coturn (`static-auth-secret`) from which
    /// time-limited TURN credentials are derived.
    pub turn_secret: Option<String>,
    /// Seconds TURN credentials stay valid.
    pub turn_ttl: u64,
    /// UDP ports for call media, `first-last` (one per participant); unset:
    /// any ephemeral port.
    pub sfu_udp_ports: Option<String>,
    /// The address call media sockets bind to and gather candidates on
    /// (`0.0.0.0`: every non-loopback interface).
    pub sfu_bind_ip: IpAddr,
    /// The address announced for call media when the server is behind 1:1 NAT.
    pub sfu_public_ip: Option<IpAddr>,
}

/// The checkout's built client, found from where this crate was compiled, so
/// `make run` serves it with no configuration.
const DEFAULT_WEB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../client-web/dist");

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: "localhost".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8008)),
            federation_listen: SocketAddr::from(([127, 0, 0, 1], 8448)),
            public_baseurl: None,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            redis_url: None,
            database_max_connections: 16,
            registration: RegistrationMode::Open,
            registration_token: None,
            token_secret: None,
            access_token_lifetime_ms: 5 * 60 * 1000,
            login_failure_burst: 5,
            login_failure_refill_secs: 10,
            registration_burst: 10,
            registration_refill_secs: 6,
            max_json_body_bytes: 1024 * 1024,
            log_format: LogFormat::Text,
            federation_verify_tls: true,
            federation_allow: Vec::new(),
            federation_deny: Vec::new(),
            federation_retry_max_secs: 600,
            media_backend: MediaBackend::Fs,
            s3_endpoint: None,
            s3_bucket: None,
            s3_region: "auto".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_force_path_style: false,
            max_upload_size: 50 * 1024 * 1024,
            media_quota_bytes: 10 * 1024 * 1024 * 1024,
            legacy_media_download: false,
            web_dir: PathBuf::from(DEFAULT_WEB_DIR),
            stun_uris: String::new(),
            turn_uris: String::new(),
            turn_secret: None,
            turn_ttl: 24 * 60 * 60,
            sfu_udp_ports: None,
            sfu_bind_ip: IpAddr::from([0, 0, 0, 0]),
            sfu_public_ip: None,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Config {
    /// Defaults, then the TOML file (if any), then `TEATIME_*` variables.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let mut ignored = TEXT_KEYS.to_vec();
        ignored.push("config");
        let figment = figment
            .merge(Env::prefixed("TEATIME_").ignore(&ignored))
            .merge(Serialized::defaults(text_overrides()));
        Self::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = ruma::ServerName::parse(&self.server_name) {
            return Err(invalid("server_name", e));
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                "must start with sqlite: or postgres://",
            ));
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(invalid(
                "redis_url",
                "must start with redis:// or rediss://",
            ));
        }
        if self.media_backend == MediaBackend::S3 {
            for (key, value) in [
                ("s3_endpoint", &self.s3_endpoint),
                ("s3_bucket", &self.s3_bucket),
                ("s3_access_key_id", &self.s3_access_key_id),
                ("s3_secret_access_key", &self.s3_secret_access_key),
            ] {
                if value.as_deref().is_none_or(str::is_empty) {
                    return Err(invalid(key, "required when media_backend = \"s3\""));
                }
            }
        }
        if self.federation_retry_max_secs == 0 {
            return Err(invalid("federation_retry_max_secs", "must be at least 1"));
        }
        if self.max_upload_size == 0 {
            return Err(invalid("max_upload_size", "must be at least 1"));
        }
        if self.database_max_connections == 0 {
            return Err(invalid("database_max_connections", "must be at least 1"));
        }
        if self.access_token_lifetime_ms < 1000 {
            return Err(invalid("access_token_lifetime_ms", "must be at least 1000"));
        }
        self.validate_calls()?;
        for (key, value) in [
            ("login_failure_burst", u64::from(self.login_failure_burst)),
            ("login_failure_refill_secs", self.login_failure_refill_secs),
            ("registration_burst", u64::from(self.registration_burst)),
            ("registration_refill_secs", self.registration_refill_secs),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        Ok(())
    }

    fn validate_calls(&self) -> Result<(), ConfigError> {
        for (key, uris, schemes) in [
            ("stun_uris", self.stun_uris(), ["stun:", "stuns:"]),
            ("turn_uris", self.turn_uris(), ["turn:", "turns:"]),
        ] {
            if let Some(bad) = uris
                .iter()
                .find(|uri| !schemes.iter().any(|scheme| uri.starts_with(scheme)))
            {
                return Err(invalid(
                    key,
                    format!("`{bad}` does not start with {}", schemes.join(" or ")),
                ));
            }
        }
        if !self.turn_uris().is_empty() && self.turn_secret.as_deref().is_none_or(str::is_empty) {
            return Err(invalid("turn_secret", "required when turn_uris is set"));
        }
        if self.turn_ttl < 60 {
            return Err(invalid("turn_ttl", "must be at least 60 (seconds)"));
        }
        self.sfu_config().map_err(|e| invalid("sfu_udp_ports", e))?;
        Ok(())
    }

    /// The STUN URIs offered to clients.
    pub fn stun_uris(&self) -> Vec<String> {
        split_list(&self.stun_uris)
    }

    /// The TURN URIs offered to clients.
    pub fn turn_uris(&self) -> Vec<String> {
        split_list(&self.turn_uris)
    }

    /// Where the SFU puts its media sockets.
    pub fn sfu_config(&self) -> Result<sfu::SfuConfig, sfu::Error> {
        let udp_ports = self
            .sfu_udp_ports
            .as_deref()
            .filter(|ports| !ports.trim().is_empty())
            .map(str::parse)
            .transpose()?;
        Ok(sfu::SfuConfig {
            bind_ip: self.sfu_bind_ip,
            udp_ports,
            public_ip: self.sfu_public_ip,
        })
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("teatime.db").display()
            )
        })
    }

    /// The client base URL in effect: the configured one, else the listener's
    /// address (the server name's host when it listens on all addresses).
    pub fn public_baseurl(&self) -> String {
        let url = self.public_baseurl.clone().unwrap_or_else(|| {
            if self.listen.ip().is_unspecified() {
                format!("http://{}:{}", self.server_host(), self.listen.port())
            } else {
                format!("http://{}", self.listen)
            }
        });
        url.trim_end_matches('/').to_owned()
    }

    /// The host part of the server name, without any port (`[::1]` stays bracketed).
    pub fn server_host(&self) -> &str {
        let name = self.server_name.as_str();
        match name.find(']') {
            Some(end) if name.starts_with('[') => &name[..=end],
            _ => name.split(':').next().unwrap_or(name),
        }
    }
}

/// Keys whose values are text. figment's environment provider would read
/// `TEATIME_REGISTRATION_TOKEN=12345` as a number, so these are taken verbatim.
const TEXT_KEYS: &[&str] = &[
    "server_name",
    "public_baseurl",
    "data_dir",
    "database_url",
    "redis_url",
    "registration_token",
    "token_secret",
    "s3_endpoint",
    "s3_bucket",
    "s3_region",
    "s3_access_key_id",
    "s3_secret_access_key",
    "federation_allow",
    "federation_deny",
    "web_dir",
    "stun_uris",
    "turn_uris",
    "turn_secret",
    "sfu_udp_ports",
];

/// The entries of a comma-separated list.
fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(str::to_owned)
        .collect()
}

fn text_overrides() -> BTreeMap<&'static str, String> {
    TEXT_KEYS
        .iter()
        .filter_map(|key| {
            let value = std::env::var(format!("TEATIME_{}", key.to_uppercase())).ok()?;
            Some((*key, value))
        })
        .collect()
}

/// A list of names: a TOML array, or comma-separated text (the environment).
fn name_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        Text(String),
        List(Vec<String>),
    }
    let names = match Names::deserialize(deserializer)? {
        Names::Text(text) => text.split(',').map(str::to_owned).collect(),
        Names::List(list) => list,
    };
    Ok(names
        .into_iter()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect())
}

fn invalid(key: &'static str, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
// figment::Jail closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in_jail(jail: &Jail, toml: Option<&str>) -> Result<Config, ConfigError> {
        let file = toml.map(|body| {
            jail.create_file("teatime.toml", body)
                .expect("write config file");
            std::path::PathBuf::from("teatime.toml")
        });
        Config::load(file.as_deref())
    }

    #[test]
    fn defaults_need_no_configuration() {
        Jail::expect_with(|jail| {
            let config = load_in_jail(jail, None).expect("defaults load");
            assert_eq!(config.server_name, "localhost");
            assert_eq!(config.listen.to_string(), "127.0.0.1:8008");
            assert_eq!(config.registration, RegistrationMode::Open);
            assert!(config.web_dir.ends_with("client-web/dist"));
            assert!(
                config
                    .database_url()
                    .starts_with("sqlite://./data/teatime.db")
            );
            Ok(())
        });
    }

    #[test]
    fn base_url_and_host_are_derived_from_listener_and_server_name() {
        let mut config = Config::default();
        assert_eq!(config.public_baseurl(), "http://127.0.0.1:8008");
        config.listen = "0.0.0.0:9000".parse().unwrap();
        config.server_name = "chat.example.org:8448".into();
        assert_eq!(config.server_host(), "chat.example.org");
        assert_eq!(config.public_baseurl(), "http://chat.example.org:9000");
        config.server_name = "[::1]:8448".into();
        assert_eq!(config.server_host(), "[::1]");
        config.public_baseurl = Some("https://matrix.example.org/".into());
        assert_eq!(config.public_baseurl(), "https://matrix.example.org");
    }

    #[test]
    fn environment_overrides_the_file() {
        Jail::expect_with(|jail| {
            jail.set_env("TEATIME_SERVER_NAME", "example.org");
            jail.set_env("TEATIME_REGISTRATION", "closed");
            let config = load_in_jail(
                jail,
                Some("server_name = \"file.example\"\nlisten = \"127.0.0.1:9000\"\n"),
            )
            .expect("config loads");
            assert_eq!(config.server_name, "example.org");
            assert_eq!(config.listen.port(), 9000);
            assert_eq!(config.registration, RegistrationMode::Closed);
            Ok(())
        });
    }

    #[test]
    fn numeric_looking_strings_stay_strings() {
        Jail::expect_with(|jail| {
            jail.set_env("TEATIME_REGISTRATION", "token");
            jail.set_env("TEATIME_REGISTRATION_TOKEN", "12345");
            let config = load_in_jail(jail, None).expect("config loads");
            assert_eq!(config.registration_token.as_deref(), Some("12345"));
            Ok(())
        });
    }

    #[test]
    fn federation_lists_come_from_text_or_arrays() {
        Jail::expect_with(|jail| {
            jail.set_env("TEATIME_FEDERATION_DENY", "evil.org, *.evil.org,");
            let config = load_in_jail(jail, Some("federation_allow = [\"partner.org\"]\n"))
                .expect("config loads");
            assert_eq!(config.federation_deny, ["evil.org", "*.evil.org"]);
            assert_eq!(config.federation_allow, ["partner.org"]);
            Ok(())
        });
    }

    #[test]
    fn call_settings_come_from_the_environment() {
        Jail::expect_with(|jail| {
            jail.set_env(
                "TEATIME_TURN_URIS",
                "turn:turn.example.org:3478?transport=udp, turns:turn.example.org:5349",
            );
            jail.set_env("TEATIME_TURN_SECRET", "12345");
            jail.set_env("TEATIME_STUN_URIS", "stun:turn.example.org:3478");
            jail.set_env("TEATIME_TURN_TTL", "3600");
            jail.set_env("TEATIME_SFU_UDP_PORTS", "50000-50100");
            jail.set_env("TEATIME_SFU_BIND_IP", "10.0.0.5");
            jail.set_env("TEATIME_SFU_PUBLIC_IP", "203.0.113.10");
            let config = load_in_jail(jail, None).expect("config loads");
            assert_eq!(
                config.turn_uris(),
                [
                    "turn:turn.example.org:3478?transport=udp",
                    "turns:turn.example.org:5349"
                ]
            );
            assert_eq!(config.stun_uris(), ["stun:turn.example.org:3478"]);
            assert_eq!(config.turn_secret.as_deref(), Some("12345"));
            assert_eq!(config.turn_ttl, 3600);
            let sfu = config.sfu_config().expect("SFU settings");
            assert_eq!(
                sfu.udp_ports.map(|r| r.to_string()).as_deref(),
                Some("50000-50100")
            );
            assert_eq!(sfu.bind_ip.to_string(), "10.0.0.5");
            assert_eq!(
                sfu.public_ip.map(|ip| ip.to_string()).as_deref(),
                Some("203.0.113.10")
            );
            Ok(())
        });
    }

    #[test]
    fn bad_call_settings_name_their_key() {
        for (key, value, named) in [
            ("TEATIME_TURN_URIS", "http://turn.example.org", "turn_uris"),
            ("TEATIME_TURN_URIS", "turn:turn.example.org", "turn_secret"),
            ("TEATIME_STUN_URIS", "turn:x", "stun_uris"),
            ("TEATIME_SFU_UDP_PORTS", "50100-50000", "sfu_udp_ports"),
            ("TEATIME_TURN_TTL", "5", "turn_ttl"),
            ("TEATIME_SFU_BIND_IP", "not-an-ip", "sfu_bind_ip"),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env(key, value);
                let err = load_in_jail(jail, None).unwrap_err();
                let message = err.to_string().to_lowercase();
                assert!(message.contains(named), "{key}={value}: {err}");
                Ok(())
            });
        }
    }

    #[test]
    fn errors_name_the_bad_key() {
        Jail::expect_with(|jail| {
            let err = load_in_jail(jail, Some("lisen = \"127.0.0.1:1\"\n")).unwrap_err();
            assert!(err.to_string().contains("lisen"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("TEATIME_LISTEN", "not-an-address");
            let err = load_in_jail(jail, None).unwrap_err();
            assert!(err.to_string().to_lowercase().contains("listen"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("TEATIME_SERVER_NAME", "bad name!");
            let err = load_in_jail(jail, None).unwrap_err();
            assert!(err.to_string().contains("server_name"), "{err}");
            Ok(())
        });
    }
}
