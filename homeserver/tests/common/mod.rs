//! Test harness: a real TeaTime server on a random loopback port, backed by
//! SQLite in a temporary directory or by a fresh database on the PostgreSQL
//! server at 127.0.0.1:5432 (override with `TEATIME_TEST_POSTGRES_URL`).

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod client;
pub mod process;
pub mod signed;
pub mod synapse;

use std::{net::SocketAddr, path::PathBuf};

use homeserver::{
    config::Config,
    server::{self, RunningServer},
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};

/// Which database a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares each listed `async fn name(backend: Backend)` as two tests,
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::Backend::Postgres).await })*
        }
    };
}

fn postgres_admin_url() -> String {
    std::env::var("TEATIME_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates an empty database and returns its URL and name.
pub async fn create_postgres_database() -> (String, String) {
    sqlx::any::install_default_drivers();
    let admin_url = postgres_admin_url();
    let mut admin = sqlx::AnyConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is needed at {admin_url} for this test ({e}); start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
             or set TEATIME_TEST_POSTGRES_URL"
            )
        });
    let name = format!("teatime_test_{}", uuid_like());
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create test database");
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(base, _)| base);
    (format!("{base}/{name}"), name)
}

pub async fn drop_postgres_database(name: &str) {
    if let Ok(mut admin) = sqlx::AnyConnection::connect(&postgres_admin_url()).await {
        let _ = admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .await;
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The configuration tests start from: generous rate limits, random port.
pub fn test_config(data_dir: PathBuf) -> Config {
    Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        federation_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir,
        registration_burst: 10_000,
        login_failure_burst: 10_000,
        ..Config::default()
    }
}

/// A running server and an HTTP client for it.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub backend: Backend,
    server: Option<RunningServer>,
    config: Config,
    postgres_database: Option<String>,
    _data_dir: tempfile::TempDir,
}

/// What a successful login or registration returned.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub device_id: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
}

impl Session {
    fn from_json(body: &Value) -> Session {
        Session {
            user_id: body["user_id"].as_str().expect("user_id").to_owned(),
            device_id: body["device_id"].as_str().expect("device_id").to_owned(),
            access_token: body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            refresh_token: body["refresh_token"].as_str().map(str::to_owned),
        }
    }
}

impl TestServer {
    /// A server with the test defaults.
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    /// A server whose configuration `tweak` adjusts first. With
    /// `TEATIME_TEST_LOG` set (a `RUST_LOG`-style filter), servers log to stderr.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestServer {
        if let Ok(filter) = std::env::var("TEATIME_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(data_dir.path().to_path_buf());
        let postgres_database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let (url, name) = create_postgres_database().await;
                config.database_url = Some(url);
                Some(name)
            }
        };
        tweak(&mut config);
        let server = server::start(config.clone()).await.expect("server starts");
        TestServer {
            base: format!("http://{}", server.addr),
            http: reqwest::Client::new(),
            backend,
            server: Some(server),
            config,
            postgres_database,
            _data_dir: data_dir,
        }
    }

    /// A server that federates on loopback: its server name is
    /// `127.0.0.1:<federation port>`, so other servers reach it directly, and
    /// it accepts the self-signed certificates of the others.
    pub async fn start_federating(backend: Backend) -> TestServer {
        let port = process::free_port();
        Self::start_with(backend, |config| {
            config.server_name = format!("127.0.0.1:{port}");
            config.federation_listen = SocketAddr::from(([127, 0, 0, 1], port));
            config.federation_verify_tls = false;
            // A server that was down is tried again within seconds.
            config.federation_retry_max_secs = 2;
        })
        .await
    }

    /// The server's configuration (data dir, database URL, ...).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A second instance on the same database and data dir (token secret,
    /// signing key), as several instances behind a load balancer are run.
    /// Finishing it leaves the database to the first instance.
    pub async fn another_instance(&self) -> TestServer {
        let config = self.config.clone();
        let server = server::start(config.clone())
            .await
            .expect("second instance starts");
        TestServer {
            base: format!("http://{}", server.addr),
            http: reqwest::Client::new(),
            backend: self.backend,
            server: Some(server),
            config,
            postgres_database: None,
            _data_dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The running server's state and services.
    pub fn state(&self) -> &std::sync::Arc<homeserver::state::AppState> {
        &self.server.as_ref().expect("server running").state
    }

    /// Where the federation API listens (HTTPS).
    pub fn federation_addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .expect("server running")
            .federation_addr
    }

    /// Grants server administration, as `teatime admin set-admin` does.
    pub async fn make_admin(&self, user_id: &str) {
        self.state()
            .accounts
            .set_admin(user_id, true)
            .await
            .expect("user made administrator");
    }

    /// Stops and starts the server again on the same data (a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// Stops the server, keeping its data (and federation port) for [`Self::start_again`].
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("server stops cleanly");
        }
    }

    /// Starts a stopped server again on the same data.
    pub async fn start_again(&mut self) {
        let server = server::start(self.config.clone())
            .await
            .expect("server restarts");
        self.base = format!("http://{}", server.addr);
        self.server = Some(server);
    }

    /// Stops the server and drops its PostgreSQL database.
    pub async fn finish(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("server stops cleanly");
        }
        if let Some(name) = self.postgres_database.take() {
            drop_postgres_database(&name).await;
        }
    }

    /// Sends a request; `body` is JSON when given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        send_json(
            &self.http,
            method,
            &format!("{}{path}", self.base),
            token,
            body,
        )
        .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    /// Registers `username` through the `m.login.dummy` flow.
    pub async fn register(&self, username: &str, password: &str) -> Session {
        self.register_with(json!({ "username": username, "password": password }))
            .await
    }

    /// Registers with extra request fields (auth is added).
    pub async fn register_with(&self, mut body: Value) -> Session {
        body["auth"] = json!({ "type": "m.login.dummy" });
        let (status, body) = self.post("/_matrix/client/v3/register", None, body).await;
        assert_eq!(status, StatusCode::OK, "registration failed: {body}");
        Session::from_json(&body)
    }

    /// Tries to log in with a password: the status and body, whatever they are.
    pub async fn login_attempt(&self, user: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/_matrix/client/v3/login",
            None,
            json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": user },
                "password": password,
            }),
        )
        .await
    }

    /// Logs in with a password; panics unless it succeeds.
    pub async fn login(&self, user: &str, password: &str) -> Session {
        self.login_with(json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": user },
            "password": password,
        }))
        .await
    }

    /// Logs in with a full request body; panics unless it succeeds.
    pub async fn login_with(&self, body: Value) -> Session {
        let (status, body) = self.post("/_matrix/client/v3/login", None, body).await;
        assert_eq!(status, StatusCode::OK, "login failed: {body}");
        Session::from_json(&body)
    }

    /// `GET /account/whoami` with `token`.
    pub async fn whoami(&self, token: &str) -> (StatusCode, Value) {
        self.get("/_matrix/client/v3/account/whoami", Some(token))
            .await
    }
}

/// Sends a request to `url` with an optional bearer `token` and JSON `body`;
/// the answer's status and JSON (a string when it is not JSON, null when empty).
pub async fn send_json(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let text = response.text().await.expect("response body");
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, json)
}

/// A PNG picture of `width` x `height` pixels (a gradient).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 40])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("encode");
    bytes.into_inner()
}

/// URL-encodes a path segment (room ids contain `!` and `:`; event ids `$`).
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl TestServer {
    /// Creates a room; panics unless it succeeds.
    pub async fn create_room(&self, token: &str, body: Value) -> String {
        let (status, body) = self
            .post("/_matrix/client/v3/createRoom", Some(token), body)
            .await;
        assert_eq!(status, StatusCode::OK, "createRoom failed: {body}");
        body["room_id"].as_str().expect("room_id").to_owned()
    }

    /// `PUT /send` of an `m.room.message` with a fresh transaction id.
    pub async fn send_text(&self, token: &str, room_id: &str, text: &str) -> (StatusCode, Value) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static TXN: AtomicU64 = AtomicU64::new(0);
        let txn = TXN.fetch_add(1, Ordering::Relaxed);
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/t{txn}",
            encode(room_id)
        );
        self.put(
            &path,
            Some(token),
            json!({ "msgtype": "m.text", "body": text }),
        )
        .await
    }

    /// Sends a text message; panics unless it succeeds; returns the event id.
    pub async fn say(&self, token: &str, room_id: &str, text: &str) -> String {
        let (status, body) = self.send_text(token, room_id, text).await;
        assert_eq!(status, StatusCode::OK, "send failed: {body}");
        body["event_id"].as_str().expect("event_id").to_owned()
    }

    /// A room path: `/_matrix/client/v3/rooms/{room}/{rest}`.
    pub fn room_path(room_id: &str, rest: &str) -> String {
        format!("/_matrix/client/v3/rooms/{}/{rest}", encode(room_id))
    }

    /// Joins a room by id; panics unless it succeeds.
    pub async fn join(&self, token: &str, room_id: &str) {
        let (status, body) = self
            .post(&Self::room_path(room_id, "join"), Some(token), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "join failed: {body}");
    }

    /// Every event of the room the user can page through backwards, oldest first.
    pub async fn all_messages(&self, token: &str, room_id: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let mut path = Self::room_path(room_id, "messages?dir=b&limit=100");
            if let Some(from) = &from {
                path.push_str(&format!("&from={from}"));
            }
            let (status, page) = self.get(&path, Some(token)).await;
            assert_eq!(status, StatusCode::OK, "messages failed: {page}");
            events.extend(page["chunk"].as_array().expect("chunk").iter().cloned());
            match page["end"].as_str() {
                Some(end) => from = Some(end.to_owned()),
                None => break,
            }
        }
        events.reverse();
        events
    }
}

/// Asserts a Matrix error response.
#[track_caller]
pub fn assert_error(response: &(StatusCode, Value), status: StatusCode, errcode: &str) {
    assert_eq!(
        response.0, status,
        "unexpected status, body: {}",
        response.1
    );
    assert_eq!(
        response.1["errcode"], errcode,
        "unexpected errcode, body: {}",
        response.1
    );
    assert!(
        response.1["error"].is_string(),
        "Matrix errors carry a message: {}",
        response.1
    );
}

/// The password used by tests that do not care about it.
pub const PASSWORD: &str = "correct horse battery staple";

/// The UIA `auth` object for `m.login.password`.
pub fn password_auth(user_id: &str, password: &str, session: Option<&str>) -> Value {
    let mut auth = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": user_id },
        "password": password,
    });
    if let Some(session) = session {
        auth["session"] = session.into();
    }
    auth
}
