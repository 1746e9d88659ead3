//! The API surface around the endpoints: discovery, CORS, error mapping,
//! body limits, health, metrics, the OpenAPI document, and concurrency.

mod common;

use common::{Backend, PASSWORD, TestServer, assert_error};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

on_both_backends!(
    versions_lists_supported_spec_versions,
    well_known_client_and_server,
    well_known_client_trims_the_configured_base_url,
    capabilities_need_a_token_and_list_the_capabilities,
    cors_headers_on_every_response,
    preflight_requests_are_answered_everywhere,
    unknown_paths_and_wrong_methods_are_unrecognized,
    malformed_json_is_not_json,
    wrongly_shaped_json_is_bad_json,
    oversized_bodies_are_too_large,
    json_bodies_need_no_content_type,
    refused_registrations_leave_the_username_free,
    healthz_reports_ok,
    metrics_count_requests_by_route_and_status,
    openapi_document_and_docs_page,
    concurrent_registrations_of_distinct_users_all_succeed,
    concurrent_registrations_of_one_username_have_one_winner,
);

const LOGIN: &str = "/_matrix/client/v3/login";
const REGISTER: &str = "/_matrix/client/v3/register";

/// A raw response: status, headers and body text.
struct Raw {
    status: StatusCode,
    headers: header::HeaderMap,
    text: String,
}

impl Raw {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("{name} header missing (status {})", self.status))
            .to_str()
            .expect("header is text")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text))
    }

    /// Asserts a Matrix error with a JSON body and JSON Content-Type.
    #[track_caller]
    fn assert_error(&self, status: StatusCode, errcode: &str) {
        assert!(
            self.header(header::CONTENT_TYPE)
                .starts_with("application/json"),
            "error Content-Type is {:?}",
            self.headers.get(header::CONTENT_TYPE)
        );
        assert_error(&(self.status, self.json()), status, errcode);
    }
}

/// Sends a request; `body` is sent verbatim with `content_type` when given.
async fn raw(
    server: &TestServer,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Option<&str>,
) -> Raw {
    let mut request = server
        .http
        .request(method, format!("{}{path}", server.base));
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    let response = request.send().await.expect("request sent");
    Raw {
        status: response.status(),
        headers: response.headers().clone(),
        text: response.text().await.expect("response body"),
    }
}

/// Sends a JSON-typed body verbatim.
async fn send_json_text(server: &TestServer, method: Method, path: &str, body: &str) -> Raw {
    raw(server, method, path, Some("application/json"), Some(body)).await
}

async fn assert_available(server: &TestServer, username: &str) {
    let (status, body) = server
        .get(
            &format!("/_matrix/client/v3/register/available?username={username}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{username} should be free: {body}");
    assert_eq!(body, json!({ "available": true }));
}

fn password_login(user: &str, password: &str) -> Value {
    json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": user },
        "password": password,
    })
}

async fn versions_lists_supported_spec_versions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let response = raw(&server, Method::GET, "/_matrix/client/versions", None, None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert!(
        response
            .header(header::CONTENT_TYPE)
            .starts_with("application/json")
    );
    let body = response.json();
    let versions = body["versions"].as_array().expect("versions is an array");
    for wanted in ["v1.1", "v1.19"] {
        assert!(
            versions.iter().any(|v| v == wanted),
            "{wanted} missing from {body}"
        );
    }
    assert!(
        versions.iter().all(Value::is_string),
        "versions are strings: {body}"
    );
    assert!(
        body["unstable_features"].is_object(),
        "unstable_features is an object: {body}"
    );
    // Needs no token, and ignores a bad one.
    let (status, _) = server
        .get("/_matrix/client/versions", Some("not-a-token"))
        .await;
    assert_eq!(status, StatusCode::OK);
    server.finish().await;
}

async fn well_known_client_and_server(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, client) = server.get("/.well-known/matrix/client", None).await;
    assert_eq!(status, StatusCode::OK, "{client}");
    let base_url = client["m.homeserver"]["base_url"]
        .as_str()
        .unwrap_or_else(|| panic!("m.homeserver.base_url is a string: {client}"));
    assert!(base_url.starts_with("http"), "{base_url}");
    assert!(!base_url.ends_with('/'), "{base_url}");

    let (status, server_doc) = server.get("/.well-known/matrix/server", None).await;
    assert_eq!(status, StatusCode::OK, "{server_doc}");
    // The federation port in use (the tests let the system choose it).
    let port = server.federation_addr().port();
    assert_eq!(
        server_doc,
        json!({ "m.server": format!("localhost:{port}") })
    );
    server.finish().await;
}

async fn well_known_client_trims_the_configured_base_url(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.public_baseurl = Some("https://matrix.example.org/".into());
    })
    .await;
    let (status, client) = server.get("/.well-known/matrix/client", None).await;
    assert_eq!(status, StatusCode::OK, "{client}");
    assert_eq!(
        client,
        json!({ "m.homeserver": { "base_url": "https://matrix.example.org" } })
    );
    server.finish().await;
}

async fn capabilities_need_a_token_and_list_the_capabilities(backend: Backend) {
    let server = TestServer::start(backend).await;
    let missing = server.get("/_matrix/client/v3/capabilities", None).await;
    assert_error(&missing, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    let garbage = server
        .get("/_matrix/client/v3/capabilities", Some("garbage"))
        .await;
    assert_error(&garbage, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");

    let alice = server.register("alice", PASSWORD).await;
    let (status, body) = server
        .get("/_matrix/client/v3/capabilities", Some(&alice.access_token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let capabilities = &body["capabilities"];
    assert_eq!(
        capabilities["m.change_password"],
        json!({ "enabled": true }),
        "{body}"
    );
    assert_eq!(
        capabilities["m.set_displayname"],
        json!({ "enabled": true }),
        "{body}"
    );
    assert_eq!(
        capabilities["m.set_avatar_url"],
        json!({ "enabled": true }),
        "{body}"
    );
    assert_eq!(
        capabilities["m.3pid_changes"],
        json!({ "enabled": false }),
        "{body}"
    );
    server.finish().await;
}

#[track_caller]
fn assert_cors(response: &Raw, what: &str) {
    let context = format!("{what} (status {})", response.status);
    assert_eq!(
        response
            .headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .and_then(|v| v.to_str().ok()),
        Some("*"),
        "Access-Control-Allow-Origin on {context}"
    );
    let list = |name: header::HeaderName| -> Vec<String> {
        response
            .headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{name} missing on {context}"))
            .split(',')
            .map(|item| item.trim().to_ascii_lowercase())
            .collect()
    };
    let methods = list(header::ACCESS_CONTROL_ALLOW_METHODS);
    for method in ["get", "post", "put", "delete", "options"] {
        assert!(
            methods.iter().any(|m| m == method),
            "{method} missing from Access-Control-Allow-Methods {methods:?} on {context}"
        );
    }
    let headers = list(header::ACCESS_CONTROL_ALLOW_HEADERS);
    for name in ["authorization", "content-type"] {
        assert!(
            headers.iter().any(|h| h == name),
            "{name} missing from Access-Control-Allow-Headers {headers:?} on {context}"
        );
    }
}

async fn cors_headers_on_every_response(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.max_json_body_bytes = 1024;
    })
    .await;
    let big = format!("{{\"padding\":\"{}\"}}", "x".repeat(4096));
    let cases: Vec<(&str, Raw, StatusCode)> = vec![
        (
            "versions",
            raw(&server, Method::GET, "/_matrix/client/versions", None, None).await,
            StatusCode::OK,
        ),
        (
            "well-known",
            raw(
                &server,
                Method::GET,
                "/.well-known/matrix/client",
                None,
                None,
            )
            .await,
            StatusCode::OK,
        ),
        (
            "unknown path",
            raw(&server, Method::GET, "/_matrix/client/v3/nope", None, None).await,
            StatusCode::NOT_FOUND,
        ),
        (
            "path outside the API",
            raw(&server, Method::POST, "/definitely/not/here", None, None).await,
            StatusCode::NOT_FOUND,
        ),
        (
            "missing token",
            raw(
                &server,
                Method::GET,
                "/_matrix/client/v3/capabilities",
                None,
                None,
            )
            .await,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong method",
            raw(
                &server,
                Method::DELETE,
                "/_matrix/client/versions",
                None,
                None,
            )
            .await,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "not JSON",
            send_json_text(&server, Method::POST, LOGIN, "{not json").await,
            StatusCode::BAD_REQUEST,
        ),
        (
            "too large",
            send_json_text(&server, Method::POST, LOGIN, &big).await,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "forbidden login",
            send_json_text(
                &server,
                Method::POST,
                LOGIN,
                &password_login("nobody", "wrong").to_string(),
            )
            .await,
            StatusCode::FORBIDDEN,
        ),
        (
            "healthz",
            raw(&server, Method::GET, "/healthz", None, None).await,
            StatusCode::OK,
        ),
        (
            "metrics",
            raw(&server, Method::GET, "/metrics", None, None).await,
            StatusCode::OK,
        ),
        (
            "openapi",
            raw(&server, Method::GET, "/openapi.json", None, None).await,
            StatusCode::OK,
        ),
    ];
    for (what, response, status) in &cases {
        assert_eq!(response.status, *status, "{what}: {}", response.text);
        assert_cors(response, what);
    }
    server.finish().await;
}

async fn preflight_requests_are_answered_everywhere(backend: Backend) {
    let server = TestServer::start(backend).await;
    for path in [
        "/_matrix/client/versions",
        LOGIN,
        REGISTER,
        "/_matrix/client/v3/account/whoami",
        "/_matrix/client/v3/devices/SOMEDEVICE",
        "/.well-known/matrix/client",
        "/_matrix/client/v3/no/such/endpoint",
        "/not/matrix/at/all",
    ] {
        let response = server
            .http
            .request(Method::OPTIONS, format!("{}{path}", server.base))
            .header(header::ORIGIN, "https://app.example.com")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization, content-type",
            )
            .send()
            .await
            .expect("preflight sent");
        let response = Raw {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.expect("preflight body"),
        };
        assert!(
            response.status.is_success(),
            "preflight to {path}: {} {}",
            response.status,
            response.text
        );
        assert_cors(&response, &format!("OPTIONS {path}"));
    }
    server.finish().await;
}

async fn unknown_paths_and_wrong_methods_are_unrecognized(backend: Backend) {
    let server = TestServer::start(backend).await;
    for (method, path) in [
        (Method::GET, "/_matrix/client/v3/no/such/endpoint"),
        (Method::POST, "/_matrix/client/v3/no/such/endpoint"),
        (Method::GET, "/_matrix/client/v9/login"),
        (Method::GET, "/_teatime/nothing-here"),
        (Method::POST, "/nothing-here"),
    ] {
        raw(&server, method.clone(), path, None, None)
            .await
            .assert_error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
    }
    for (method, path) in [
        (Method::DELETE, "/_matrix/client/versions"),
        (Method::POST, "/_matrix/client/versions"),
        (Method::PUT, LOGIN),
        (Method::DELETE, LOGIN),
        (Method::GET, "/_matrix/client/v3/logout"),
    ] {
        let response = raw(&server, method.clone(), path, None, None).await;
        response.assert_error(StatusCode::METHOD_NOT_ALLOWED, "M_UNRECOGNIZED");
    }
    // With a JSON body too: the method is wrong whatever the body.
    send_json_text(
        &server,
        Method::PUT,
        LOGIN,
        &password_login("a", "b").to_string(),
    )
    .await
    .assert_error(StatusCode::METHOD_NOT_ALLOWED, "M_UNRECOGNIZED");
    server.finish().await;
}

async fn malformed_json_is_not_json(backend: Backend) {
    let server = TestServer::start(backend).await;
    let register_body = json!({
        "username": "alice",
        "password": PASSWORD,
        "auth": { "type": "m.login.dummy" },
    })
    .to_string();
    let truncated_register = &register_body[..register_body.len() - 1];
    let truncated_login = password_login("alice", PASSWORD).to_string();
    let truncated_login = &truncated_login[..truncated_login.len() - 1];
    for (path, body) in [
        (LOGIN, "{not json"),
        (LOGIN, truncated_login),
        (LOGIN, "type=m.login.password&user=alice"),
        (LOGIN, "{\"type\": \"m.login.password\",}"),
        (REGISTER, "{not json"),
        (REGISTER, truncated_register),
        (REGISTER, "\u{7f}\u{0}binary"),
    ] {
        let response = send_json_text(&server, Method::POST, path, body).await;
        response.assert_error(StatusCode::BAD_REQUEST, "M_NOT_JSON");
    }
    // The account was not created by any of those.
    assert_available(&server, "alice").await;
    server.finish().await;
}

async fn wrongly_shaped_json_is_bad_json(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("alice", PASSWORD).await;
    let login_bodies = [
        json!({ "type": ["x"], "identifier": { "type": "m.id.user", "user": "alice" }, "password": PASSWORD }),
        json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": 5 }),
        json!({ "type": "m.login.password", "identifier": "alice", "password": PASSWORD }),
        json!({ "type": "m.login.password", "user": "alice", "password": PASSWORD, "refresh_token": "yes" }),
        json!([password_login("alice", PASSWORD)]),
        json!("m.login.password"),
        json!(42),
        json!(null),
    ];
    for body in login_bodies {
        let response = send_json_text(&server, Method::POST, LOGIN, &body.to_string()).await;
        response.assert_error(StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }
    let register_bodies = [
        json!({ "username": 5, "password": PASSWORD, "auth": { "type": "m.login.dummy" } }),
        json!({ "username": "bob", "password": ["x"], "auth": { "type": "m.login.dummy" } }),
        json!({ "username": "bob", "password": PASSWORD, "auth": "m.login.dummy" }),
        json!({ "username": "bob", "password": PASSWORD, "auth": { "type": "m.login.dummy" }, "inhibit_login": "no" }),
        json!([{ "username": "bob", "password": PASSWORD, "auth": { "type": "m.login.dummy" } }]),
    ];
    for body in register_bodies {
        let response = send_json_text(&server, Method::POST, REGISTER, &body.to_string()).await;
        response.assert_error(StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }
    // Alice's real credentials still work after the refused attempts.
    server.login("alice", PASSWORD).await;
    server.finish().await;
}

async fn oversized_bodies_are_too_large(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.max_json_body_bytes = 1024;
    })
    .await;
    server.register("alice", PASSWORD).await;
    let padded = |size: usize| {
        let mut body = password_login("alice", PASSWORD);
        let base_len = body.to_string().len() + r#","padding":"""#.len();
        body["padding"] = "x".repeat(size - base_len).into();
        let text = body.to_string();
        assert_eq!(text.len(), size);
        text
    };
    // Just under the limit is accepted ...
    let fits = send_json_text(&server, Method::POST, LOGIN, &padded(1000)).await;
    assert_eq!(fits.status, StatusCode::OK, "{}", fits.text);
    // ... just over and far over are not.
    for size in [1025, 4096, 64 * 1024] {
        let response = send_json_text(&server, Method::POST, LOGIN, &padded(size)).await;
        response.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    }
    // Not even when the body is not JSON, nor for registration.
    let junk = "y".repeat(8192);
    send_json_text(&server, Method::POST, LOGIN, &junk)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    let mut register = json!({
        "username": "bob",
        "password": PASSWORD,
        "auth": { "type": "m.login.dummy" },
    });
    register["padding"] = "z".repeat(4096).into();
    send_json_text(&server, Method::POST, REGISTER, &register.to_string())
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    assert_available(&server, "bob").await;
    server.finish().await;
}

async fn json_bodies_need_no_content_type(backend: Backend) {
    let server = TestServer::start(backend).await;
    let register = json!({
        "username": "alice",
        "password": PASSWORD,
        "auth": { "type": "m.login.dummy" },
    })
    .to_string();
    let registered = raw(&server, Method::POST, REGISTER, None, Some(&register)).await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.text);
    assert_eq!(registered.json()["user_id"], "@alice:localhost");

    let login = password_login("alice", PASSWORD).to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let response = raw(&server, Method::POST, LOGIN, content_type, Some(&login)).await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "login with Content-Type {content_type:?}: {}",
            response.text
        );
        let token = response.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned();
        let (status, whoami) = server.whoami(&token).await;
        assert_eq!(status, StatusCode::OK, "{whoami}");
        assert_eq!(whoami["user_id"], "@alice:localhost");
    }
    // Malformed JSON is still refused as such, whatever the Content-Type says.
    raw(
        &server,
        Method::POST,
        LOGIN,
        Some("text/plain"),
        Some("{oops"),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "M_NOT_JSON");
    raw(&server, Method::POST, LOGIN, None, Some("{oops"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_NOT_JSON");
    server.finish().await;
}

async fn refused_registrations_leave_the_username_free(backend: Backend) {
    let server = TestServer::start(backend).await;
    let good = json!({
        "username": "carol",
        "password": PASSWORD,
        "auth": { "type": "m.login.dummy" },
    });
    let good_text = good.to_string();
    send_json_text(
        &server,
        Method::POST,
        REGISTER,
        &good_text[..good_text.len() - 2],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "M_NOT_JSON");
    assert_available(&server, "carol").await;

    let mut wrong_shape = good.clone();
    wrong_shape["password"] = json!(12345);
    send_json_text(&server, Method::POST, REGISTER, &wrong_shape.to_string())
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let mut wrong_shape = good.clone();
    wrong_shape["device_id"] = json!({ "id": "X" });
    send_json_text(&server, Method::POST, REGISTER, &wrong_shape.to_string())
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_BAD_JSON");
    send_json_text(&server, Method::POST, REGISTER, &json!([good]).to_string())
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_BAD_JSON");
    assert_available(&server, "carol").await;

    // And nobody can log in as the user that was never created.
    let login = server
        .post(LOGIN, None, password_login("carol", PASSWORD))
        .await;
    assert_error(&login, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // The well-formed request then succeeds.
    let carol = server.register("carol", PASSWORD).await;
    assert_eq!(carol.user_id, "@carol:localhost");
    server.finish().await;
}

async fn healthz_reports_ok(backend: Backend) {
    let server = TestServer::start(backend).await;
    let response = raw(&server, Method::GET, "/healthz", None, None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(response.json(), json!({ "status": "ok" }));
    server.finish().await;
}

/// The value of the sample whose line starts with `series ` (labels included).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

async fn metrics_count_requests_by_route_and_status(backend: Backend) {
    let server = TestServer::start(backend).await;
    for _ in 0..3 {
        let (status, _) = server.get("/_matrix/client/versions", None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = server
        .get("/_matrix/client/v3/no/such/endpoint", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.get("/_matrix/client/v3/capabilities", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let response = raw(&server, Method::GET, "/metrics", None, None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let content_type = response.header(header::CONTENT_TYPE);
    assert!(
        content_type.starts_with("text/plain")
            || content_type.starts_with("application/openmetrics-text"),
        "Prometheus text format, not {content_type}"
    );
    let text = &response.text;
    assert!(
        text.contains("# TYPE teatime_http_requests counter"),
        "{text}"
    );
    let versions = sample(
        text,
        r#"teatime_http_requests_total{route="versions",method="GET",status="200"}"#,
    )
    .unwrap_or_else(|| panic!("no versions counter in\n{text}"));
    assert!(versions >= 3.0, "versions counted {versions} times\n{text}");
    let unmatched = sample(
        text,
        r#"teatime_http_requests_total{route="unmatched",method="GET",status="404"}"#,
    )
    .unwrap_or_else(|| panic!("no unmatched 404 counter in\n{text}"));
    assert!(unmatched >= 1.0, "{text}");
    let unauthorized = sample(
        text,
        r#"teatime_http_requests_total{route="capabilities",method="GET",status="401"}"#,
    )
    .unwrap_or_else(|| panic!("no capabilities 401 counter in\n{text}"));
    assert!(unauthorized >= 1.0, "{text}");
    let buckets: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("teatime_http_request_duration_seconds_bucket"))
        .collect();
    assert!(
        buckets
            .iter()
            .any(|line| line.contains(r#"route="versions""#) && line.contains(r#"le="+Inf""#)),
        "no +Inf bucket for versions in\n{text}"
    );
    let versions_count = text
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix("teatime_http_request_duration_seconds_count{")?;
            (rest.contains(r#"route="versions""#) && rest.contains(r#"method="GET""#))
                .then(|| rest.rsplit(' ').next()?.parse::<f64>().ok())
                .flatten()
        })
        .unwrap_or_else(|| panic!("no latency count for versions in\n{text}"));
    assert!(versions_count >= 3.0, "{text}");

    // The counter goes up with further requests.
    server.get("/_matrix/client/versions", None).await;
    let (_, later) = server.get("/metrics", None).await;
    let later = later.as_str().expect("metrics are text").to_owned();
    let again = sample(
        &later,
        r#"teatime_http_requests_total{route="versions",method="GET",status="200"}"#,
    )
    .expect("versions counter");
    assert!(again >= versions + 1.0, "{versions} -> {again}");
    server.finish().await;
}

async fn openapi_document_and_docs_page(backend: Backend) {
    let server = TestServer::start(backend).await;
    let response = raw(&server, Method::GET, "/openapi.json", None, None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let spec = response.json();
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "openapi version: {}",
        spec["openapi"]
    );
    let paths = spec["paths"].as_object().expect("paths is an object");
    for path in [
        LOGIN,
        REGISTER,
        "/_matrix/client/versions",
        "/_matrix/client/v3/capabilities",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys()
        );
    }
    assert!(paths[LOGIN]["post"].is_object(), "POST login documented");
    assert!(
        paths[REGISTER]["post"].is_object(),
        "POST register documented"
    );

    let mut served = Vec::new();
    for path in ["/docs", "/docs/"] {
        let response = raw(&server, Method::GET, path, None, None).await;
        let is_html = response
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        if response.status == StatusCode::OK && is_html {
            assert!(
                response.text.to_ascii_lowercase().contains("<html"),
                "{path} is an HTML page: {}",
                response.text
            );
            served.push(path);
        }
    }
    assert!(!served.is_empty(), "neither /docs nor /docs/ serves HTML");
    server.finish().await;
}

async fn concurrent_registrations_of_distinct_users_all_succeed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let http = server.http.clone();
        let url = format!("{}{REGISTER}", server.base);
        tasks.spawn(async move {
            let response = http
                .post(url)
                .json(&json!({
                    "username": format!("user{i}"),
                    "password": PASSWORD,
                    "auth": { "type": "m.login.dummy" },
                }))
                .send()
                .await
                .expect("request sent");
            let status = response.status();
            let body: Value = response.json().await.expect("JSON body");
            (i, status, body)
        });
    }
    let mut tokens = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let (i, status, body) = result.expect("task finished");
        assert_eq!(status, StatusCode::OK, "user{i}: {body}");
        assert_eq!(body["user_id"], format!("@user{i}:localhost"));
        tokens.push((
            i,
            body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
        ));
    }
    assert_eq!(tokens.len(), 20);
    let mut distinct: Vec<&str> = tokens.iter().map(|(_, t)| t.as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 20, "every session has its own token");
    for (i, token) in &tokens {
        let (status, whoami) = server.whoami(token).await;
        assert_eq!(status, StatusCode::OK, "{whoami}");
        assert_eq!(whoami["user_id"], format!("@user{i}:localhost"));
    }
    for i in 0..20 {
        server.login(&format!("user{i}"), PASSWORD).await;
    }
    server.finish().await;
}

async fn concurrent_registrations_of_one_username_have_one_winner(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let http = server.http.clone();
        let url = format!("{}{REGISTER}", server.base);
        tasks.spawn(async move {
            let response = http
                .post(url)
                .json(&json!({
                    "username": "contested",
                    "password": format!("password number {i}"),
                    "auth": { "type": "m.login.dummy" },
                }))
                .send()
                .await
                .expect("request sent");
            let status = response.status();
            let body: Value = response.json().await.expect("JSON body");
            (i, status, body)
        });
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let (i, status, body) = result.expect("task finished");
        if status == StatusCode::OK {
            winners.push((i, body));
        } else {
            assert_error(&(status, body), StatusCode::BAD_REQUEST, "M_USER_IN_USE");
            losers.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner: {winners:?}");
    assert_eq!(losers.len(), 9);
    let (winner, body) = &winners[0];
    assert_eq!(body["user_id"], "@contested:localhost");
    let (status, whoami) = server
        .whoami(body["access_token"].as_str().expect("access_token"))
        .await;
    assert_eq!(status, StatusCode::OK, "{whoami}");
    assert_eq!(whoami["user_id"], "@contested:localhost");

    // The winner's password is the account's; no loser overwrote it.
    server
        .login("contested", &format!("password number {winner}"))
        .await;
    for loser in losers {
        let response = server
            .post(
                LOGIN,
                None,
                password_login("contested", &format!("password number {loser}")),
            )
            .await;
        assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    let taken = server
        .get(
            "/_matrix/client/v3/register/available?username=contested",
            None,
        )
        .await;
    assert_error(&taken, StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    server.finish().await;
}
