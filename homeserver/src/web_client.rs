//! Serves the browser client (`client-web/dist`) at `/`, so one process is
//! the whole product.
//!
//! Every path outside the server's own (`/_matrix`, `/_teatime` and every
//! other `/_...` namespace, `/.well-known`, `/openapi.json`, `/docs`,
//! `/healthz`, `/metrics`) belongs to the client: files of the built directory, and `index.html` for the
//! client's own routes (single-page application). API paths never reach this
//! module, so unknown API paths still answer `M_UNRECOGNIZED`.

use std::path::{Path, PathBuf};

use poem::{
    Endpoint, IntoResponse, Request, Response, Result,
    endpoint::StaticFilesEndpoint,
    http::{HeaderValue, Method, StatusCode, header},
};

/// Path prefixes the server answers itself, besides every `/_...` namespace
/// (`/_matrix`, `/_teatime`, and those of other servers such as `/_synapse`,
/// which clients probe and should find unrecognised rather than a web page).
const SERVER_PREFIXES: &[&str] = &[
    "/.well-known",
    "/openapi.json",
    "/docs",
    "/healthz",
    "/metrics",
];

/// Where Vite puts content-hashed files: their names change with their
/// content, so browsers may keep them forever.
const HASHED_ASSETS: &str = "/assets/";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Everything else (index.html above all) is revalidated on each load, so a
/// new build is picked up at once.
const REVALIDATE: &str = "no-cache";

/// What the client's pages may load: its own scripts and styles (inline
/// style attributes for avatar colours), images from blob URLs (authenticated
/// media), and requests to any homeserver, over HTTP or WebSocket. No framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; media-src 'self' blob:; \
     connect-src 'self' http: https: ws: wss:; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Sent with every file of the client.
const PAGE_HEADERS: [(header::HeaderName, &str); 3] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// Whether `path` belongs to the web client rather than to the server.
pub fn serves(path: &str) -> bool {
    !path.starts_with("/_")
        && !SERVER_PREFIXES.iter().any(|prefix| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// Middleware in front of the API: `GET`/`HEAD` requests for the client's
/// paths are answered from `web_dir`, everything else goes on to the API.
pub fn site<E: Endpoint + 'static>(
    web_dir: PathBuf,
) -> impl Fn(E, Request) -> std::pin::Pin<Box<dyn Future<Output = Result<Response>> + Send>> + Send + Sync
{
    move |next: E, req: Request| {
        let web_dir = web_dir.clone();
        Box::pin(async move {
            let is_read = matches!(*req.method(), Method::GET | Method::HEAD);
            if is_read && serves(req.uri().path()) {
                Ok(serve(&web_dir, req).await)
            } else {
                Ok(next.call(req).await?.into_response())
            }
        })
    }
}

/// A file of the built client, `index.html` for the client's routes, or a
/// page saying the client is not built.
async fn serve(web_dir: &Path, mut req: Request) -> Response {
    let index = web_dir.join("index.html");
    if !index.is_file() {
        return not_built(web_dir);
    }
    let head = req.method() == Method::HEAD;
    // The static-file endpoint answers GET only; HEAD is GET without a body.
    req.set_method(Method::GET);
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let files = StaticFilesEndpoint::new(web_dir).index_file("index.html");
    let mut response = match files.call(req).await {
        Ok(found) => found,
        // A missing asset stays 404 (a script tag must not receive HTML);
        // any other path is a route of the client.
        Err(e) if e.status() == StatusCode::NOT_FOUND && !path.starts_with(HASHED_ASSETS) => {
            let mut index_request = Request::builder().uri_str("/").finish();
            *index_request.headers_mut() = headers;
            files
                .call(index_request)
                .await
                .unwrap_or_else(|e| e.into_response())
        }
        Err(e) => e.into_response(),
    };
    if response.status().is_success() {
        let cache = if path.starts_with(HASHED_ASSETS) {
            IMMUTABLE
        } else {
            REVALIDATE
        };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        for (name, value) in PAGE_HEADERS {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if head {
        response.set_body(());
    }
    response
}

fn not_built(web_dir: &Path) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>TeaTime</title></head><body>\
         <h1>TeaTime</h1><p>The web client is not built: there is no \
         <code>index.html</code> in <code>{}</code>.</p>\
         <p>Build it with <code>make run</code> (or <code>npm ci &amp;&amp; npm run build</code> \
         in <code>client-web/</code>), or point <code>TEATIME_WEB_DIR</code> at a built client. \
         The Matrix API is available either way.</p></body></html>",
        html_escape(&web_dir.display().to_string())
    );
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, REVALIDATE)
        .body(page)
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_prefixes_are_not_the_clients() {
        for path in [
            "/_matrix/client/versions",
            "/_matrix",
            "/_matrixish",
            "/_synapse/admin/v1/users",
            "/_teatime/ws",
            "/.well-known/matrix/client",
            "/openapi.json",
            "/docs",
            "/docs/index.html",
            "/healthz",
            "/metrics",
        ] {
            assert!(!serves(path), "{path}");
        }
        for path in [
            "/",
            "/index.html",
            "/assets/index-abc.js",
            "/rooms/!a:b",
            "/docsearch",
            "/metrics2",
        ] {
            assert!(serves(path), "{path}");
        }
    }
}
