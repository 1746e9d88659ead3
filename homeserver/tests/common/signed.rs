//! Talking to a test server as another server would: HTTPS to its
//! federation listener (self-signed certificate) with X-Matrix signatures
//! made with any key, real or forged.

use federation::{
    keys::SigningKey,
    request_auth::{RequestParts, authorization_header},
};
use reqwest::{Method, StatusCode};
use ruma::ServerName;
use serde_json::Value;

use super::TestServer;

/// An HTTPS client for the test servers' self-signed certificates.
pub fn https() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .expect("client")
}

/// The server's name.
pub fn server_name(server: &TestServer) -> &ServerName {
    <&ServerName>::try_from(server.config().server_name.as_str()).expect("server name")
}

/// The server's own signing key, read from its data dir.
pub fn signing_key(server: &TestServer) -> SigningKey {
    SigningKey::load_or_generate(&server.config().data_dir.join("signing.key"))
        .expect("signing key")
}

/// Sends `method target` (with a JSON `body`) to `to`'s federation
/// listener, signed as `origin` with `key` for `destination`.
pub async fn signed_request(
    to: &TestServer,
    method: Method,
    target: &str,
    body: Option<&Value>,
    origin: &ServerName,
    destination: &ServerName,
    key: &SigningKey,
) -> (StatusCode, Value) {
    let bytes = body
        .map(|b| serde_json::to_vec(b).expect("JSON"))
        .unwrap_or_default();
    let authorization = authorization_header(
        key,
        origin,
        destination,
        RequestParts {
            method: &method,
            uri: target,
            body: &bytes,
        },
    )
    .expect("signed");
    let mut request = https()
        .request(method, format!("https://{}{target}", to.federation_addr()))
        .header("authorization", authorization);
    if body.is_some() {
        request = request
            .header("content-type", "application/json")
            .body(bytes);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}
