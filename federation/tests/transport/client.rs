//! The federation client against local HTTPS servers with self-signed
//! certificates and verification off: the test-network setup. The servers
//! check each request's X-Matrix header with `verify_request`.

use std::sync::{Arc, OnceLock};

use federation::{
    Error,
    client::{ClientOptions, FederationClient},
    discovery::NetworkResolver,
    keys::SigningKey,
    request_auth::{RequestParts, parse_authorization, verify_request},
};
use poem::{EndpointExt, Request, Response, Route, handler, http::StatusCode, web::Data};
use reqwest::Method;
use ruma::{OwnedServerName, serde::Base64, signatures::PublicKeySet};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{FakeResolver, identity, new_key, serve_https, server_name};

/// A server that answers federation requests for `name`, accepting those
/// signed by `client_keys`.
struct Peer {
    name: OnceLock<OwnedServerName>,
    /// Its `.well-known/matrix/server` delegation, if any.
    delegated_to: OnceLock<String>,
    client_keys: PublicKeySet,
}

fn json_response(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

/// Echoes what it verified, or fails as the path asks: `.../forbidden`
/// (a Matrix error), `.../bad-gateway` (a plain one), `.../not-json`.
#[handler]
fn federation_endpoint(request: &Request, body: Vec<u8>, Data(peer): Data<&Arc<Peer>>) -> Response {
    let uri = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let verified = parse_authorization(request.header("authorization").unwrap_or_default())
        .and_then(|auth| {
            let parts = RequestParts {
                method: request.method(),
                uri,
                body: &body,
            };
            verify_request(&auth, parts, peer.name.get().unwrap(), &peer.client_keys)?;
            Ok(auth)
        });
    let path = request.uri().path();
    match verified {
        Err(error) => json_response(
            StatusCode::UNAUTHORIZED,
            json!({ "errcode": "M_UNAUTHORIZED", "error": error.to_string() }),
        ),
        Ok(_) if path.ends_with("/forbidden") => json_response(
            StatusCode::FORBIDDEN,
            json!({ "errcode": "M_FORBIDDEN", "error": "not in this room" }),
        ),
        Ok(_) if path.ends_with("/bad-gateway") => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body("upstream went away"),
        Ok(_) if path.ends_with("/not-json") => Response::builder().body("<html></html>"),
        Ok(auth) => json_response(
            StatusCode::OK,
            json!({
                "origin": auth.origin,
                "host": request.header("host"),
                "method": request.method().as_str(),
                "uri": uri,
                "content": serde_json::from_slice::<Value>(&body).ok(),
            }),
        ),
    }
}

#[handler]
fn well_known(Data(peer): Data<&Arc<Peer>>) -> Response {
    match peer.delegated_to.get() {
        Some(server) => json_response(StatusCode::OK, json!({ "m.server": server })),
        None => Response::builder().status(StatusCode::NOT_FOUND).finish(),
    }
}

/// A peer accepting requests signed with `client_key`, on a loopback port.
async fn start_peer(dir: &TempDir, client_key: &SigningKey) -> (Arc<Peer>, u16) {
    let peer = Arc::new(Peer {
        name: OnceLock::new(),
        delegated_to: OnceLock::new(),
        client_keys: PublicKeySet::from([(
            client_key.key_id(),
            Base64::parse(client_key.public_key_base64()).unwrap(),
        )]),
    });
    let app = Route::new()
        .at("/.well-known/matrix/server", well_known)
        .at("/_matrix/*path", federation_endpoint)
        .data(peer.clone());
    let port = serve_https(&identity(dir.path(), "localhost"), app).await;
    (peer, port)
}

fn test_network() -> ClientOptions {
    ClientOptions {
        verify_tls: false,
        ..ClientOptions::default()
    }
}

fn origin() -> OwnedServerName {
    "origin.test".try_into().unwrap()
}

/// A client and a peer named `127.0.0.1:<port>`, found without any lookup.
async fn direct_setup() -> (TempDir, FederationClient, OwnedServerName) {
    let dir = tempfile::tempdir().unwrap();
    let (key, peer_name) = {
        let (_key_dir, key) = new_key();
        let (peer, port) = start_peer(&dir, &key).await;
        let name: OwnedServerName = format!("127.0.0.1:{port}").try_into().unwrap();
        peer.name.set(name.clone()).unwrap();
        (key, name)
    };
    let client = FederationClient::new(origin(), key, test_network()).unwrap();
    (dir, client, peer_name)
}

#[tokio::test]
async fn signed_requests_reach_a_server_named_by_address_and_port() {
    let (_dir, client, peer) = direct_setup().await;
    let uri = "/_matrix/federation/v1/send/txn%201?limit=10&alias=%23room%3Aorigin.test";
    let body = json!({ "origin": "origin.test", "pdus": [], "edus": [{ "edu_type": "m.typing" }] });
    let answer = client
        .request_json(&peer, Method::PUT, uri, Some(&body))
        .await
        .unwrap();
    assert_eq!(answer["origin"], "origin.test");
    assert_eq!(answer["host"], peer.as_str());
    assert_eq!(answer["method"], "PUT");
    assert_eq!(answer["uri"], uri);
    assert_eq!(answer["content"], body);

    let answer = client
        .request_json(&peer, Method::GET, "/_matrix/federation/v1/version", None)
        .await
        .unwrap();
    assert_eq!(answer["method"], "GET");
    assert_eq!(answer["content"], Value::Null);
}

#[tokio::test]
async fn error_answers_keep_their_status_and_errcode() {
    let (_dir, client, peer) = direct_setup().await;
    let result = client
        .request_json(&peer, Method::GET, "/_matrix/federation/v1/forbidden", None)
        .await;
    assert!(
        matches!(
            &result,
            Err(Error::Remote { status: 403, errcode: Some(errcode), message, .. })
                if errcode == "M_FORBIDDEN" && message == "not in this room"
        ),
        "{result:?}"
    );

    let result = client
        .request_json(
            &peer,
            Method::GET,
            "/_matrix/federation/v1/bad-gateway",
            None,
        )
        .await;
    assert!(
        matches!(
            &result,
            Err(Error::Remote { status: 502, errcode: None, message, .. }) if message == "upstream went away"
        ),
        "{result:?}"
    );

    let result = client
        .request_json(&peer, Method::GET, "/_matrix/federation/v1/not-json", None)
        .await;
    assert!(matches!(result, Err(Error::Transport { .. })), "{result:?}");

    let result = client
        .request_json(&peer, Method::GET, "no-leading-slash", None)
        .await;
    assert!(
        matches!(result, Err(Error::InvalidRequest(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_server_that_does_not_know_our_key_refuses_us() {
    let dir = tempfile::tempdir().unwrap();
    let (_stranger_dir, stranger) = new_key();
    let (peer, port) = start_peer(&dir, &stranger).await;
    let peer_name: OwnedServerName = format!("127.0.0.1:{port}").try_into().unwrap();
    peer.name.set(peer_name.clone()).unwrap();
    let (_key_dir, key) = new_key();
    let client = FederationClient::new(origin(), key, test_network()).unwrap();

    let result = client
        .request_json(
            &peer_name,
            Method::GET,
            "/_matrix/federation/v1/version",
            None,
        )
        .await;
    assert!(
        matches!(
            &result,
            Err(Error::Remote { status: 401, errcode: Some(errcode), message, .. })
                if errcode == "M_UNAUTHORIZED" && message.contains("unknown signing key")
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn certificates_are_verified_by_default_and_unreachable_servers_are_transport_errors() {
    let (_dir, _client, peer) = direct_setup().await;
    let (_key_dir, key) = new_key();
    let verifying = FederationClient::new(origin(), key.clone(), ClientOptions::default()).unwrap();
    let result = verifying
        .request_json(&peer, Method::GET, "/_matrix/federation/v1/version", None)
        .await;
    let Err(Error::Transport { reason, .. }) = result else {
        panic!("a self-signed certificate was accepted: {result:?}");
    };
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");

    let unused_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = FederationClient::new(origin(), key, test_network()).unwrap();
    let result = client
        .request_json(
            server_name(&format!("127.0.0.1:{unused_port}")),
            Method::GET,
            "/_matrix/federation/v1/version",
            None,
        )
        .await;
    assert!(matches!(result, Err(Error::Transport { .. })), "{result:?}");
}

#[tokio::test]
async fn well_known_delegation_is_followed_over_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let (_key_dir, key) = new_key();
    let (peer, port) = start_peer(&dir, &key).await;
    // Signed for `localhost`, the name before delegation; sent to the
    // delegated `127.0.0.1:<port>`, which is also the Host header.
    peer.name.set("localhost".try_into().unwrap()).unwrap();
    peer.delegated_to.set(format!("127.0.0.1:{port}")).unwrap();
    let resolver = NetworkResolver::new(&test_network())
        .unwrap()
        .with_well_known_port(port);
    let client = FederationClient::with_resolver(origin(), key, test_network(), resolver).unwrap();

    let answer = client
        .request_json(
            server_name("localhost"),
            Method::POST,
            "/_matrix/federation/v1/user/keys/query",
            Some(&json!({ "device_keys": {} })),
        )
        .await
        .unwrap();
    assert_eq!(answer["host"], format!("127.0.0.1:{port}"));
    assert_eq!(answer["content"], json!({ "device_keys": {} }));
}

#[tokio::test]
async fn srv_targets_get_the_connection_and_the_server_name_the_host_header() {
    let dir = tempfile::tempdir().unwrap();
    let (_key_dir, key) = new_key();
    let (peer, port) = start_peer(&dir, &key).await;
    // `srv-only.test` has no address at all: only the SRV target, resolved
    // by the system's DNS, can get the connection there.
    peer.name.set("srv-only.test".try_into().unwrap()).unwrap();
    let resolver =
        FakeResolver::default().with_srv("_matrix-fed._tcp.srv-only.test", "localhost", port);
    let client = FederationClient::with_resolver(origin(), key, test_network(), resolver).unwrap();

    for _ in 0..2 {
        let answer = client
            .request_json(
                server_name("srv-only.test"),
                Method::GET,
                "/_matrix/federation/v1/version",
                None,
            )
            .await
            .unwrap();
        assert_eq!(answer["host"], "srv-only.test");
        assert_eq!(answer["origin"], "origin.test");
    }
}

#[tokio::test]
async fn requests_can_run_on_any_thread() {
    fn assert_send<T: Send>(_: &T) {}
    let (_key_dir, key) = new_key();
    let client = FederationClient::new(origin(), key, test_network()).unwrap();
    let request = client.request_json(
        server_name("example.org"),
        Method::GET,
        "/_matrix/federation/v1/version",
        None,
    );
    assert_send(&request);
}
