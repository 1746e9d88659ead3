//! Server name resolution: every step of the spec with a fake resolver,
//! `.well-known` caching on a paused clock, and the real `.well-known` fetch
//! against a local HTTPS server.

use std::time::Duration;

use federation::{
    Error,
    client::ClientOptions,
    discovery::{Destination, Discovery, NetworkResolver, Resolver, SrvRecord},
};
use poem::{Response, Route, get, handler, http::StatusCode};

use crate::support::{FakeResolver, identity, serve_https, server_name};

/// Resolves `name` once, and says what was looked up for it.
async fn resolve(
    resolver: FakeResolver,
    name: &str,
) -> (federation::Result<Destination>, Vec<String>) {
    let log = resolver.log.clone();
    let result = Discovery::new(resolver).resolve(server_name(name)).await;
    (result, log.entries())
}

fn destination(connect_host: &str, port: u16, host_header: &str, tls_name: &str) -> Destination {
    Destination {
        connect_host: connect_host.into(),
        port,
        host_header: host_header.into(),
        tls_name: tls_name.into(),
    }
}

#[tokio::test]
async fn ip_literals_and_explicit_ports_connect_directly() {
    for (name, expected) in [
        (
            "192.0.2.1",
            destination("192.0.2.1", 8448, "192.0.2.1", "192.0.2.1"),
        ),
        (
            "192.0.2.1:1234",
            destination("192.0.2.1", 1234, "192.0.2.1:1234", "192.0.2.1"),
        ),
        (
            "[2001:db8::1]",
            destination("[2001:db8::1]", 8448, "[2001:db8::1]", "[2001:db8::1]"),
        ),
        (
            "[::1]:8449",
            destination("[::1]", 8449, "[::1]:8449", "[::1]"),
        ),
        (
            "example.org:1234",
            destination("example.org", 1234, "example.org:1234", "example.org"),
        ),
        (
            "example.org:443",
            destination("example.org", 443, "example.org:443", "example.org"),
        ),
    ] {
        // Even a delegation on offer is not asked for.
        let resolver = FakeResolver::default().delegate("example.org", "elsewhere.example");
        let (result, lookups) = resolve(resolver, name).await;
        assert_eq!(result.unwrap(), expected, "{name}");
        assert!(lookups.is_empty(), "{name}: {lookups:?}");
    }
}

#[tokio::test]
async fn delegation_to_an_ip_literal_or_an_explicit_port_connects_directly() {
    for (delegated, expected) in [
        (
            "192.0.2.7",
            destination("192.0.2.7", 8448, "192.0.2.7", "192.0.2.7"),
        ),
        (
            "192.0.2.7:9000",
            destination("192.0.2.7", 9000, "192.0.2.7:9000", "192.0.2.7"),
        ),
        (
            "[2001:db8::7]:8443",
            destination("[2001:db8::7]", 8443, "[2001:db8::7]:8443", "[2001:db8::7]"),
        ),
        (
            "matrix.example.net:443",
            destination(
                "matrix.example.net",
                443,
                "matrix.example.net:443",
                "matrix.example.net",
            ),
        ),
    ] {
        let resolver = FakeResolver::default()
            .delegate("example.org", delegated)
            .with_srv("_matrix-fed._tcp.matrix.example.net", "srv.example.net", 1);
        let (result, lookups) = resolve(resolver, "example.org").await;
        assert_eq!(result.unwrap(), expected, "{delegated}");
        assert_eq!(lookups, ["well-known example.org"], "{delegated}");
    }
}

#[tokio::test]
async fn delegation_without_a_port_goes_through_srv_of_the_delegated_name() {
    let delegated = || FakeResolver::default().delegate("example.org", "matrix.example.net");

    // Step 3.3: `_matrix-fed._tcp`; the certificate and Host stay the delegated name.
    let resolver = delegated()
        .with_srv(
            "_matrix-fed._tcp.matrix.example.net",
            "fed1.example.net",
            8443,
        )
        .with_srv("_matrix._tcp.matrix.example.net", "old.example.net", 1)
        .with_srv("_matrix-fed._tcp.example.org", "wrong.example.org", 2);
    let (result, lookups) = resolve(resolver, "example.org").await;
    assert_eq!(
        result.unwrap(),
        destination(
            "fed1.example.net",
            8443,
            "matrix.example.net",
            "matrix.example.net"
        )
    );
    assert_eq!(
        lookups,
        [
            "well-known example.org",
            "srv _matrix-fed._tcp.matrix.example.net"
        ]
    );

    // Step 3.4: the deprecated `_matrix._tcp`.
    let resolver = delegated().with_srv("_matrix._tcp.matrix.example.net", "old.example.net", 8444);
    let (result, lookups) = resolve(resolver, "example.org").await;
    assert_eq!(
        result.unwrap(),
        destination(
            "old.example.net",
            8444,
            "matrix.example.net",
            "matrix.example.net"
        )
    );
    assert_eq!(
        lookups,
        [
            "well-known example.org",
            "srv _matrix-fed._tcp.matrix.example.net",
            "srv _matrix._tcp.matrix.example.net"
        ]
    );

    // Step 3.5: no SRV, port 8448.
    let (result, _) = resolve(delegated(), "example.org").await;
    assert_eq!(
        result.unwrap(),
        destination(
            "matrix.example.net",
            8448,
            "matrix.example.net",
            "matrix.example.net"
        )
    );
}

#[tokio::test]
async fn without_delegation_srv_of_the_server_name_then_port_8448() {
    // Step 4.
    let resolver = FakeResolver::default()
        .with_srv("_matrix-fed._tcp.example.org", "fed.example.org", 443)
        .with_srv("_matrix._tcp.example.org", "old.example.org", 1);
    let (result, lookups) = resolve(resolver, "example.org").await;
    assert_eq!(
        result.unwrap(),
        destination("fed.example.org", 443, "example.org", "example.org")
    );
    assert_eq!(
        lookups,
        ["well-known example.org", "srv _matrix-fed._tcp.example.org"]
    );

    // Step 5.
    let resolver =
        FakeResolver::default().with_srv("_matrix._tcp.example.org", "old.example.org", 8450);
    let (result, _) = resolve(resolver, "example.org").await;
    assert_eq!(
        result.unwrap(),
        destination("old.example.org", 8450, "example.org", "example.org")
    );

    // Step 6.
    let (result, lookups) = resolve(FakeResolver::default(), "example.org").await;
    assert_eq!(
        result.unwrap(),
        destination("example.org", 8448, "example.org", "example.org")
    );
    assert_eq!(
        lookups,
        [
            "well-known example.org",
            "srv _matrix-fed._tcp.example.org",
            "srv _matrix._tcp.example.org"
        ]
    );
}

#[tokio::test]
async fn srv_records_are_chosen_by_priority_then_weight() {
    let mut resolver = FakeResolver::default();
    let record = |priority, weight, target: &str| SrvRecord {
        priority,
        weight,
        port: 8448,
        target: target.into(),
    };
    resolver.srv.insert(
        "_matrix-fed._tcp.example.org".into(),
        vec![
            record(20, 90, "backup.example.org"),
            record(10, 10, "light.example.org"),
            record(10, 60, "heavy.example.org"),
        ],
    );
    let (result, _) = resolve(resolver, "example.org").await;
    assert_eq!(result.unwrap().connect_host, "heavy.example.org");
}

#[tokio::test]
async fn srv_refusals_and_dns_failures_are_errors() {
    let resolver = FakeResolver::default().with_srv("_matrix-fed._tcp.example.org", ".", 0);
    let (result, lookups) = resolve(resolver, "example.org").await;
    assert!(matches!(result, Err(Error::Discovery { .. })), "{result:?}");
    assert_eq!(
        lookups.len(),
        2,
        "the deprecated service is not tried: {lookups:?}"
    );

    let resolver = FakeResolver {
        failing_srv: vec!["_matrix-fed._tcp.example.org".into()],
        ..FakeResolver::default()
    };
    let (result, _) = resolve(resolver, "example.org").await;
    assert!(matches!(result, Err(Error::Discovery { .. })), "{result:?}");
}

#[tokio::test(start_paused = true)]
async fn well_known_answers_are_cached_for_their_max_age_or_a_day() {
    let mut resolver = FakeResolver::default()
        .delegate("example.org", "matrix.example.org:443")
        .delegate("example.com", "matrix.example.com:443");
    resolver.well_known.get_mut("example.com").unwrap().max_age = Some(Duration::from_secs(600));
    let log = resolver.log.clone();
    let discovery = Discovery::new(resolver);
    let fetches = |host: &str| log.count(&format!("well-known {host}"));
    let resolve = |name: &'static str| {
        let discovery = &discovery;
        async move { discovery.resolve(server_name(name)).await.unwrap() }
    };

    resolve("example.org").await;
    resolve("example.com").await;
    tokio::time::advance(Duration::from_secs(599)).await;
    resolve("example.org").await;
    resolve("example.com").await;
    assert_eq!((fetches("example.org"), fetches("example.com")), (1, 1));

    tokio::time::advance(Duration::from_secs(2)).await;
    resolve("example.com").await;
    assert_eq!(fetches("example.com"), 2, "max-age=600 has passed");

    // 601 s have passed: go to one second before the day is over.
    tokio::time::advance(Duration::from_secs(24 * 3600 - 601 - 1)).await;
    resolve("example.org").await;
    assert_eq!(fetches("example.org"), 1, "still within the day");
    tokio::time::advance(Duration::from_secs(2)).await;
    let destination = resolve("example.org").await;
    assert_eq!(fetches("example.org"), 2, "a day has passed");
    assert_eq!(destination.connect_host, "matrix.example.org");
}

#[tokio::test(start_paused = true)]
async fn well_known_failures_are_retried_with_backoff() {
    let resolver = FakeResolver::default();
    let log = resolver.log.clone();
    let discovery = Discovery::new(resolver);
    let fetches = || log.count("well-known");
    let resolve = || discovery.resolve(server_name("example.org"));
    let minutes = |n: u64| Duration::from_secs(n * 60);

    resolve().await.unwrap();
    tokio::time::advance(minutes(1)).await;
    resolve().await.unwrap();
    assert_eq!(fetches(), 1, "the failure is remembered for 2 minutes");
    tokio::time::advance(minutes(1) + Duration::from_secs(1)).await;
    resolve().await.unwrap();
    assert_eq!(fetches(), 2);
    tokio::time::advance(minutes(3)).await;
    resolve().await.unwrap();
    assert_eq!(
        fetches(),
        2,
        "the second failure is remembered for 4 minutes"
    );
    tokio::time::advance(minutes(1) + Duration::from_secs(1)).await;
    resolve().await.unwrap();
    assert_eq!(fetches(), 3);
    // SRV is asked every time: DNS caches it, not discovery.
    assert_eq!(log.count("srv _matrix-fed"), 5);
}

/// Serves `/.well-known/matrix/server` answers over HTTPS on a loopback port
/// and returns a [`NetworkResolver`] that fetches from it for `localhost`.
async fn well_known_server(dir: &std::path::Path, app: Route) -> NetworkResolver {
    let port = serve_https(&identity(dir, "localhost"), app).await;
    let options = ClientOptions {
        verify_tls: false,
        ..ClientOptions::default()
    };
    NetworkResolver::new(&options)
        .unwrap()
        .with_well_known_port(port)
}

#[handler]
fn delegating() -> Response {
    Response::builder()
        .header("Cache-Control", "public, max-age=600")
        .content_type("application/json")
        .body(r#"{"m.server": "matrix.example.org:8448", "other": true}"#)
}

#[handler]
fn without_cache_control() -> Response {
    Response::builder()
        .content_type("application/json")
        .body(r#"{"m.server": "[::1]"}"#)
}

#[handler]
fn redirect() -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header("Location", "/delegation")
        .finish()
}

#[handler]
fn redirect_loop() -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header("Location", "/.well-known/matrix/server")
        .finish()
}

#[handler]
fn not_found() -> Response {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .body(r#"{"errcode": "M_NOT_FOUND"}"#)
}

#[handler]
fn not_json() -> Response {
    Response::builder().body("<html>hello</html>")
}

#[handler]
fn no_server() -> Response {
    Response::builder().body(r#"{"m.homeserver": "x"}"#)
}

#[handler]
fn bad_server_name() -> Response {
    Response::builder().body(r#"{"m.server": "not a server name"}"#)
}

#[handler]
fn huge() -> Response {
    Response::builder().body(format!(
        r#"{{"m.server": "a.example", "padding": "{}"}}"#,
        "x".repeat(100_000)
    ))
}

#[tokio::test]
async fn the_network_resolver_reads_well_known_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let path = "/.well-known/matrix/server";

    let resolver = well_known_server(dir.path(), Route::new().at(path, get(delegating))).await;
    let delegation = resolver.well_known("localhost").await.unwrap();
    assert_eq!(delegation.server, "matrix.example.org:8448");
    assert_eq!(delegation.max_age, Some(Duration::from_secs(600)));

    let resolver = well_known_server(
        dir.path(),
        Route::new().at(path, get(without_cache_control)),
    )
    .await;
    let delegation = resolver.well_known("localhost").await.unwrap();
    assert_eq!(delegation.server, "[::1]");
    assert_eq!(delegation.max_age, None);

    let resolver = well_known_server(
        dir.path(),
        Route::new()
            .at(path, get(redirect))
            .at("/delegation", get(delegating)),
    )
    .await;
    let delegation = resolver.well_known("localhost").await.unwrap();
    assert_eq!(delegation.server, "matrix.example.org:8448");
}

#[tokio::test]
async fn unusable_well_known_answers_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = "/.well-known/matrix/server";
    for (what, app) in [
        ("404", Route::new().at(path, get(not_found))),
        ("not JSON", Route::new().at(path, get(not_json))),
        ("no m.server", Route::new().at(path, get(no_server))),
        (
            "bad server name",
            Route::new().at(path, get(bad_server_name)),
        ),
        ("too big", Route::new().at(path, get(huge))),
        ("redirect loop", Route::new().at(path, get(redirect_loop))),
    ] {
        let resolver = well_known_server(dir.path(), app).await;
        let result = resolver.well_known("localhost").await;
        assert!(
            matches!(result, Err(Error::Discovery { .. })),
            "{what}: {result:?}"
        );
    }

    // Nothing listening at all.
    let unused_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = ClientOptions {
        verify_tls: false,
        ..ClientOptions::default()
    };
    let resolver = NetworkResolver::new(&options)
        .unwrap()
        .with_well_known_port(unused_port);
    let result = resolver.well_known("127.0.0.1").await;
    assert!(matches!(result, Err(Error::Discovery { .. })), "{result:?}");
}

#[tokio::test]
async fn certificates_are_checked_unless_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let port = serve_https(
        &identity(dir.path(), "localhost"),
        Route::new().at("/.well-known/matrix/server", get(delegating)),
    )
    .await;
    let resolver = NetworkResolver::new(&ClientOptions::default())
        .unwrap()
        .with_well_known_port(port);
    let result = resolver.well_known("localhost").await;
    let Err(Error::Discovery { reason, .. }) = result else {
        panic!("a self-signed certificate was accepted: {result:?}");
    };
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
}
