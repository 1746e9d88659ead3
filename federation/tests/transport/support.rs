//! Keys, a fake resolver and local HTTPS servers for the tests.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
};

use federation::{
    Error, Result,
    discovery::{Delegation, Resolver, SrvRecord},
    keys::SigningKey,
    tls::{self, TlsIdentity},
};
use poem::{
    Endpoint, EndpointExt, Server,
    listener::{Acceptor, Listener, RustlsCertificate, RustlsConfig, TcpListener},
};
use ruma::ServerName;
use tempfile::TempDir;

/// A fresh signing key in its own directory.
pub fn new_key() -> (TempDir, Arc<SigningKey>) {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::load_or_generate(&dir.path().join("signing.key")).unwrap();
    (dir, Arc::new(key))
}

/// A key from its seed, as Synapse stores keys.
pub fn key_from_seed(version: &str, seed: &str) -> (TempDir, SigningKey) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing.key");
    std::fs::write(&path, format!("ed25519 {version} {seed}\n")).unwrap();
    let key = SigningKey::load_or_generate(&path).unwrap();
    (dir, key)
}

/// The Synapse key behind gomatrixserverlib's recorded requests and key
/// document (fclient/request_test.go, keyring_test.go): server
/// `localhost:8800`, key `ed25519:a_Obwu`.
pub fn synapse_test_key() -> (TempDir, SigningKey) {
    key_from_seed("a_Obwu", "QJvXAPj0D9MUb1exkD8pIWmCvT1xajlsB8jRYz/G5HE")
}

pub fn server_name(name: &str) -> &ServerName {
    <&ServerName>::try_from(name).unwrap()
}

/// A self-signed certificate for `name`, in `dir`.
pub fn identity(dir: &Path, name: &str) -> TlsIdentity {
    tls::self_signed(dir, server_name(name)).unwrap()
}

/// Serves `app` over HTTPS with `identity` on a free loopback port, for the
/// rest of the test; returns the port.
pub async fn serve_https(identity: &TlsIdentity, app: impl Endpoint + 'static) -> u16 {
    let certificate = RustlsCertificate::new()
        .cert(identity.certificate_pem.clone())
        .key(identity.private_key_pem.clone());
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .rustls(RustlsConfig::new().fallback(certificate))
        .into_acceptor()
        .await
        .unwrap();
    let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app.map_to_response()));
    port
}

/// Answers from a table instead of the network, and records what was asked.
#[derive(Default)]
pub struct FakeResolver {
    /// `.well-known` answers by host name; a missing host is an error.
    pub well_known: HashMap<String, Delegation>,
    /// SRV records by name; a missing name has none.
    pub srv: HashMap<String, Vec<SrvRecord>>,
    /// SRV names whose lookup fails.
    pub failing_srv: Vec<String>,
    /// What was looked up; clone it before handing the resolver over.
    pub log: LookupLog,
}

/// The lookups a [`FakeResolver`] answered: `well-known <host>` or `srv <name>`.
#[derive(Clone, Default)]
pub struct LookupLog(Arc<Mutex<Vec<String>>>);

impl LookupLog {
    pub fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// How many entries start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.entries()
            .iter()
            .filter(|entry| entry.starts_with(prefix))
            .count()
    }

    fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }
}

impl FakeResolver {
    pub fn delegate(mut self, hostname: &str, to: &str) -> Self {
        self.well_known.insert(
            hostname.to_owned(),
            Delegation {
                server: to.try_into().unwrap(),
                max_age: None,
            },
        );
        self
    }

    pub fn with_srv(mut self, name: &str, target: &str, port: u16) -> Self {
        self.srv
            .entry(name.to_owned())
            .or_default()
            .push(SrvRecord {
                priority: 10,
                weight: 0,
                port,
                target: target.to_owned(),
            });
        self
    }
}

impl Resolver for FakeResolver {
    async fn well_known(&self, hostname: &str) -> Result<Delegation> {
        self.log.push(format!("well-known {hostname}"));
        self.well_known
            .get(hostname)
            .cloned()
            .ok_or_else(|| Error::Discovery {
                server: hostname.to_owned(),
                reason: "404".into(),
            })
    }

    async fn srv(&self, name: &str) -> Result<Vec<SrvRecord>> {
        self.log.push(format!("srv {name}"));
        if self.failing_srv.iter().any(|failing| failing == name) {
            return Err(Error::Discovery {
                server: name.to_owned(),
                reason: "SERVFAIL".into(),
            });
        }
        Ok(self.srv.get(name).cloned().unwrap_or_default())
    }
}
