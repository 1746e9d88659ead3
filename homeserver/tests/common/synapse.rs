//! Synapse as a federation peer: one Synapse per test, started through
//! `scripts/synapse.sh` (which installs it into a virtualenv outside the
//! clone on first use) on free loopback ports, killed when dropped.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Session, process::free_port, send_json};

/// How long Synapse may take to answer after it was started (about 5 s on
/// an idle 2-core machine; tests run several at once).
const STARTUP_LIMIT: Duration = Duration::from_secs(90);

/// Tries at starting, each on new ports: a port found free may be taken by
/// another test before Synapse binds it.
const START_ATTEMPTS: usize = 3;

/// A running Synapse, killed when dropped.
pub struct Synapse {
    /// `localhost:<federation port>`.
    pub server_name: String,
    /// The client API: `http://127.0.0.1:<client port>`.
    pub client_base: String,
    /// The federation and key API: `https://127.0.0.1:<federation port>`.
    pub federation_base: String,
    pub http: reqwest::Client,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/synapse.sh")
}

/// The last lines of Synapse's log, for failure messages.
fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Installs Synapse if it is not yet (`scripts/synapse.sh install`).
fn install() {
    let output = Command::new(script())
        .arg("install")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
    assert!(
        output.status.success(),
        "`scripts/synapse.sh install` could not install Synapse ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Synapse {
    /// Starts a fresh Synapse and waits until both its listeners answer.
    pub async fn start() -> Synapse {
        install();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start().await {
                Ok(synapse) => return synapse,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "Synapse did not start through `scripts/synapse.sh run` ({START_ATTEMPTS} tries); \
             run it by hand to see why. Last try:\n{}",
            failures.pop().unwrap_or_default()
        );
    }

    async fn try_start() -> Result<Synapse, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let federation_port = free_port();
        let client_port = free_port();
        let log_path = dir.path().join("synapse.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        // Spawned from the test's own thread: Synapse stops when the thread
        // that started it ends (see `run` in the script).
        let child = Command::new(script())
            .arg("run")
            .arg(dir.path())
            .arg(federation_port.to_string())
            .arg(client_port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", script().display()))?;
        let mut synapse = Synapse {
            server_name: format!("localhost:{federation_port}"),
            client_base: format!("http://127.0.0.1:{client_port}"),
            federation_base: format!("https://127.0.0.1:{federation_port}"),
            http: reqwest::Client::builder()
                .tls_danger_accept_invalid_certs(true)
                .build()
                .expect("client"),
            child,
            log: log_path.clone(),
            _dir: dir,
        };
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            if synapse.answers().await {
                return Ok(synapse);
            }
            if let Ok(Some(status)) = synapse.child.try_wait() {
                return Err(format!(
                    "Synapse exited ({status}):\n{}",
                    log_tail(&log_path, 30)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Synapse did not answer within {STARTUP_LIMIT:?}:\n{}",
                    log_tail(&log_path, 30)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn answers(&self) -> bool {
        let ok = |url: String| {
            let http = self.http.clone();
            async move {
                http.get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK)
            }
        };
        ok(format!("{}/_matrix/client/versions", self.client_base)).await
            && ok(format!("{}/_matrix/key/v2/server", self.federation_base)).await
    }

    /// A client API request (`path` from `/_matrix/...`).
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
            &format!("{}{path}", self.client_base),
            token,
            body,
        )
        .await
    }

    /// A request to the federation listener (HTTPS), unsigned.
    pub async fn federation_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        send_json(
            &self.http,
            method,
            &format!("{}{path}", self.federation_base),
            None,
            body,
        )
        .await
    }

    /// Registers `username` through open registration (`m.login.dummy`).
    pub async fn register(&self, username: &str, password: &str) -> Session {
        let (status, body) = self
            .call(
                Method::POST,
                "/_matrix/client/v3/register",
                None,
                Some(json!({
                    "username": username,
                    "password": password,
                    "auth": { "type": "m.login.dummy" },
                })),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "Synapse registration failed: {body}"
        );
        Session::from_json(&body)
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what Synapse said about it.
        if std::thread::panicking() {
            eprintln!(
                "--- the end of Synapse's log ({}) ---\n{}",
                self.server_name,
                log_tail(&self.log, 60)
            );
        }
    }
}
