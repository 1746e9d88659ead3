//! The browser client served at `/` from `web_dir`: files with their content
//! types and cache headers, `index.html` for the client's routes, a page when
//! the client is not built, and the server's own paths left untouched.

mod common;

use common::{Backend, TestServer};
use reqwest::{Method, StatusCode, header};

const INDEX: &str = "<!doctype html><title>TeaTime test client</title>";
const SCRIPT: &str = "console.log('teatime');";

/// Status, headers and body text of a response.
struct Fetched(StatusCode, header::HeaderMap, String);

fn header_of(headers: &header::HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn fetch(server: &TestServer, method: Method, path: &str) -> Fetched {
    let response = server
        .http
        .request(method, format!("{}{path}", server.base))
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    let headers = response.headers().clone();
    Fetched(
        status,
        headers,
        response.text().await.expect("response body"),
    )
}

/// A server whose web dir holds an index, a hashed script and a stylesheet;
/// beside the web dir lies a file that must never be served.
async fn server_with_client() -> (TestServer, tempfile::TempDir) {
    let root = tempfile::tempdir().expect("temp dir");
    let web_dir = root.path().join("dist");
    std::fs::create_dir_all(web_dir.join("assets")).expect("assets dir");
    std::fs::write(web_dir.join("index.html"), INDEX).expect("index");
    std::fs::write(web_dir.join("assets/index-Ab12Cd.js"), SCRIPT).expect("script");
    std::fs::write(web_dir.join("assets/index-Ef34Gh.css"), "body{}").expect("css");
    std::fs::write(web_dir.join("favicon.svg"), "<svg/>").expect("icon");
    std::fs::write(root.path().join("secret.txt"), "do not serve").expect("secret");
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.web_dir = web_dir;
    })
    .await;
    (server, root)
}

#[tokio::test]
async fn serves_files_with_content_types_and_cache_headers() {
    let (server, _root) = server_with_client().await;

    let index = fetch(&server, Method::GET, "/").await;
    assert_eq!(index.0, StatusCode::OK);
    assert_eq!(index.2, INDEX);
    assert!(header_of(&index.1, header::CONTENT_TYPE).starts_with("text/html"));
    assert_eq!(header_of(&index.1, header::CACHE_CONTROL), "no-cache");
    let policy = header_of(&index.1, header::CONTENT_SECURITY_POLICY);
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(
        header_of(&index.1, header::X_CONTENT_TYPE_OPTIONS),
        "nosniff"
    );

    let script = fetch(&server, Method::GET, "/assets/index-Ab12Cd.js").await;
    assert_eq!(script.0, StatusCode::OK);
    assert_eq!(script.2, SCRIPT);
    assert!(
        header_of(&script.1, header::CONTENT_TYPE).contains("javascript"),
        "{:?}",
        script.1
    );
    assert_eq!(
        header_of(&script.1, header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );

    let css = fetch(&server, Method::GET, "/assets/index-Ef34Gh.css").await;
    assert!(header_of(&css.1, header::CONTENT_TYPE).starts_with("text/css"));
    let icon = fetch(&server, Method::GET, "/favicon.svg").await;
    assert!(header_of(&icon.1, header::CONTENT_TYPE).starts_with("image/svg+xml"));
    assert_eq!(header_of(&icon.1, header::CACHE_CONTROL), "no-cache");

    let head = fetch(&server, Method::HEAD, "/").await;
    assert_eq!(head.0, StatusCode::OK);
    assert!(head.2.is_empty());
    server.finish().await;
}

#[tokio::test]
async fn client_routes_get_the_index_and_missing_assets_do_not() {
    let (server, _root) = server_with_client().await;
    for path in ["/rooms", "/room/!abc:example.org", "/login?next=%2F"] {
        let page = fetch(&server, Method::GET, path).await;
        assert_eq!(page.0, StatusCode::OK, "{path}");
        assert_eq!(page.2, INDEX, "{path}");
        assert_eq!(
            header_of(&page.1, header::CACHE_CONTROL),
            "no-cache",
            "{path}"
        );
    }
    let missing = fetch(&server, Method::GET, "/assets/index-gone.js").await;
    assert_eq!(missing.0, StatusCode::NOT_FOUND);
    assert_ne!(missing.2, INDEX);
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
    ] {
        let escaped = fetch(&server, Method::GET, path).await;
        assert!(
            !escaped.2.contains("do not serve"),
            "{path} escaped the web dir"
        );
    }
    server.finish().await;
}

#[tokio::test]
async fn the_servers_own_paths_are_not_shadowed() {
    let (server, _root) = server_with_client().await;
    for (path, content_type) in [
        ("/_matrix/client/versions", "application/json"),
        ("/.well-known/matrix/client", "application/json"),
        ("/openapi.json", "application/json"),
        ("/healthz", "application/json"),
        ("/metrics", "application/openmetrics-text"),
    ] {
        let response = fetch(&server, Method::GET, path).await;
        assert_eq!(response.0, StatusCode::OK, "{path}: {}", response.2);
        assert!(
            header_of(&response.1, header::CONTENT_TYPE).starts_with(content_type),
            "{path}: {:?}",
            response.1
        );
    }
    let docs = fetch(&server, Method::GET, "/docs").await;
    assert_eq!(docs.0, StatusCode::OK);
    assert_ne!(docs.2, INDEX, "/docs is the API browser");

    for (method, path) in [
        (Method::GET, "/_matrix/client/v3/no/such/endpoint"),
        (Method::GET, "/_matrix/unknown"),
        (Method::GET, "/_teatime/unknown"),
        (Method::GET, "/_synapse/admin/v1/server_version"),
        (Method::GET, "/.well-known/unknown"),
        (Method::POST, "/rooms"),
    ] {
        let response = fetch(&server, method.clone(), path).await;
        assert_eq!(response.0, StatusCode::NOT_FOUND, "{method} {path}");
        let body: serde_json::Value = serde_json::from_str(&response.2)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", response.2));
        assert_eq!(body["errcode"], "M_UNRECOGNIZED", "{method} {path}");
    }
    // The WebSocket path is the server's even without an upgrade.
    let socket = fetch(&server, Method::GET, "/_teatime/ws").await;
    assert_ne!(socket.2, INDEX);
    server.finish().await;
}

#[tokio::test]
async fn an_unbuilt_client_gets_a_page_saying_so() {
    let root = tempfile::tempdir().expect("temp dir");
    let web_dir = root.path().join("not-built");
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.web_dir = web_dir;
    })
    .await;
    for path in ["/", "/room/!abc:example.org"] {
        let page = fetch(&server, Method::GET, path).await;
        assert_eq!(page.0, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(header_of(&page.1, header::CONTENT_TYPE).starts_with("text/html"));
        assert!(page.2.contains("not built"), "{}", page.2);
    }
    let (status, body) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.finish().await;
}
