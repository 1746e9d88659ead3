//! Plain poem middleware around the API: what poem-openapi cannot express.
//!
//! CORS for browser clients on other origins; Matrix errors for every failure
//! (bad JSON, unknown route, wrong method, panics); the deprecated
//! `access_token` query parameter; request metrics.

use std::{sync::Arc, time::Instant};

use poem::{
    Endpoint, IntoResponse, Request, Response, Result,
    http::{HeaderValue, Method, StatusCode, header},
};
use poem_openapi::OperationId;
use tracing::Instrument;

use crate::{error::Error, metrics::Metrics};

/// Adds the CORS headers the spec asks for and answers preflight requests.
pub async fn cors<E: Endpoint>(next: E, req: Request) -> Result<Response> {
    let mut response = if req.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.call(req).await?.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("X-Requested-With, Content-Type, Authorization"),
    );
    Ok(response)
}

/// The header naming a request in the logs, taken from the client (or proxy)
/// when well-formed, otherwise made up, and echoed in the response.
const REQUEST_ID: &str = "x-request-id";

/// Runs each request in a log span carrying its id, method and path (never
/// the query string, which may hold an access token), and logs its outcome.
pub async fn request_ids<E: Endpoint>(next: E, req: Request) -> Result<Response> {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map_or_else(crate::auth::tokens::random_id, str::to_owned);
    let span = tracing::info_span!(
        "request",
        id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    async move {
        let started = Instant::now();
        let mut response = next.call(req).await?.into_response();
        let status = response.status().as_u16();
        let elapsed_ms = started.elapsed().as_millis();
        if response.status().is_server_error() {
            tracing::warn!(status, elapsed_ms, "request failed");
        } else {
            tracing::debug!(status, elapsed_ms, "request done");
        }
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        Ok(response)
    }
    .instrument(span)
    .await
}

/// The largest server-server request body: a transaction of 50 PDUs of
/// 64 KiB each, with EDUs.
const MAX_FEDERATION_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The server a signed server-server request came from, once its X-Matrix
/// signature checked out.
#[derive(Debug, Clone)]
pub struct VerifiedOrigin(pub ruma::OwnedServerName);

/// Checks the X-Matrix signature of server-server requests over their method,
/// target and body, and hands the verified origin on with the request. A bad
/// signature is refused here (401 `M_UNAUTHORIZED`).
pub async fn server_signatures<E: Endpoint>(next: E, mut req: Request) -> Result<Response> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            v.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("x-matrix"))
        })
        // Key endpoints need no signature; checking one would mean fetching
        // the sender's keys while it may be fetching ours.
        .filter(|_| req.uri().path().starts_with("/_matrix/federation/"))
        .map(str::to_owned);
    if let Some(authorization) = authorization {
        let state = req
            .data::<Arc<crate::state::AppState>>()
            .cloned()
            .ok_or_else(|| Error::Internal("application state missing".into()))?;
        let body = req
            .take_body()
            .into_bytes_limit(MAX_FEDERATION_BODY_BYTES.max(state.config.max_json_body_bytes))
            .await
            .map_err(|e| match e {
                poem::error::ReadBodyError::PayloadTooLarge => Error::TooLarge,
                other => Error::BadJson(format!("could not read the request body: {other}")),
            })?;
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
        let origin = state
            .remote
            .verify_request(&authorization, req.method(), &target, &body)
            .await?;
        if !state.policy.may_federate_with(&origin).await {
            return Err(
                Error::Forbidden(format!("this server does not federate with {origin}")).into(),
            );
        }
        state.sender.heard_from(&origin);
        req.extensions_mut().insert(VerifiedOrigin(origin));
        req.set_body(body);
    }
    Ok(next.call(req).await?.into_response())
}

/// Records every request's route, status and latency.
pub fn record_metrics<E: Endpoint + 'static>(
    metrics: Arc<Metrics>,
) -> impl Fn(E, Request) -> std::pin::Pin<Box<dyn Future<Output = Result<Response>> + Send>> + Send + Sync
{
    move |next: E, req: Request| {
        let metrics = metrics.clone();
        Box::pin(async move {
            let started = Instant::now();
            let method = req.method().to_string();
            let path_route = match req.uri().path() {
                p @ ("/healthz" | "/metrics" | "/openapi.json") => {
                    p.trim_start_matches('/').to_owned()
                }
                p if p.starts_with("/docs") => "docs".to_owned(),
                p if crate::web_client::serves(p) => "web_client".to_owned(),
                _ => "unmatched".to_owned(),
            };
            let response = next.call(req).await?.into_response();
            let route = response
                .data::<OperationId>()
                .map_or(path_route, |op| op.0.to_owned());
            metrics.observe(
                &route,
                &method,
                response.status().as_u16(),
                started.elapsed().as_secs_f64(),
            );
            Ok(response)
        })
    }
}

/// Turns every error into its Matrix response, keeping the operation id for metrics.
pub async fn matrix_errors<E: Endpoint>(next: E, req: Request) -> Result<Response> {
    match next.call(req).await {
        Ok(response) => Ok(response.into_response()),
        Err(err) => {
            let operation = err.data::<OperationId>().copied();
            let mut response = Error::from_poem(err).into_response();
            if let Some(operation) = operation {
                response.set_data(operation);
            }
            Ok(response)
        }
    }
}

/// The response for a request that panicked: the panic goes to the log, a
/// plain Matrix 500 to the client.
pub fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    Error::Internal("request handler panicked".into()).into_response()
}

/// Paths the specification spells with a trailing slash, which the router
/// only knows without it: `/rooms/{roomId}/state/{eventType}/` names the
/// state with an empty key (routed as `/state/{eventType}`), and
/// `/pushrules/` is routed as `/pushrules`.
pub async fn trailing_slashes<E: Endpoint>(next: E, mut req: Request) -> Result<Response> {
    let path = req.uri().path();
    if path.starts_with("/_matrix/client/")
        && path.ends_with('/')
        && (is_state_type_path(path) || is_push_rules_path(path))
    {
        let trimmed = path.trim_end_matches('/');
        let rebuilt = match req.uri().query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_owned(),
        };
        if let Ok(uri) = rebuilt.parse() {
            *req.uri_mut() = uri;
        }
    }
    Ok(next.call(req).await?.into_response())
}

/// `.../rooms/{roomId}/state/{eventType}/`: the segment before the type is `state`.
fn is_state_type_path(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_end_matches('/').rsplit('/').take(3).collect();
    matches!(segments.as_slice(), [_, "state", _])
}

/// `/_matrix/client/{version}/pushrules/`.
fn is_push_rules_path(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_end_matches('/').rsplit('/').take(4).collect();
    matches!(segments.as_slice(), ["pushrules", _, "client", "_matrix"])
}

/// Moves a deprecated `?access_token=` query parameter into the
/// `Authorization` header, so one security scheme serves both.
pub async fn query_access_token<E: Endpoint>(next: E, mut req: Request) -> Result<Response> {
    if !req.headers().contains_key(header::AUTHORIZATION)
        && let Some(query) = req.uri().query()
        && let Some(token) = form_value(query, "access_token")
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        req.headers_mut().insert(header::AUTHORIZATION, value);
    }
    Ok(next.call(req).await?.into_response())
}

/// The value of `key` in a URL query string (not percent-decoded).
pub(crate) fn form_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.to_owned())
    })
}

/// Client API bodies: bounded in size, rejected with `M_NOT_JSON` unless they
/// are JSON, and treated as JSON whatever Content-Type the client sent.
pub fn json_bodies<E: Endpoint + 'static>(
    max_bytes: usize,
) -> impl Fn(E, Request) -> std::pin::Pin<Box<dyn Future<Output = Result<Response>> + Send>> + Send + Sync
{
    move |next: E, mut req: Request| {
        Box::pin(async move {
            let has_body = matches!(
                *req.method(),
                Method::POST | Method::PUT | Method::DELETE | Method::PATCH
            );
            let path = req.uri().path();
            if has_body && (path.starts_with("/_matrix/client/") || path.starts_with("/_teatime/"))
            {
                let body =
                    req.take_body()
                        .into_bytes_limit(max_bytes)
                        .await
                        .map_err(|e| match e {
                            poem::error::ReadBodyError::PayloadTooLarge => Error::TooLarge,
                            other => {
                                Error::NotJson(format!("could not read the request body: {other}"))
                            }
                        })?;
                if !body.is_empty()
                    && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err()
                {
                    return Err(Error::NotJson("the request body is not valid JSON".into()).into());
                }
                req.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                req.set_body(body);
            }
            Ok(next.call(req).await?.into_response())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::form_value;

    #[test]
    fn recognises_state_paths_with_an_empty_key() {
        assert!(super::is_state_type_path(
            "/_matrix/client/v3/rooms/!r:x/state/m.room.name/"
        ));
        assert!(!super::is_state_type_path(
            "/_matrix/client/v3/rooms/!r:x/state/"
        ));
        assert!(!super::is_state_type_path(
            "/_matrix/client/v3/rooms/!r:x/send/m.room.message/"
        ));
    }

    #[test]
    fn recognises_the_push_rules_path() {
        assert!(super::is_push_rules_path("/_matrix/client/v3/pushrules/"));
        assert!(!super::is_push_rules_path(
            "/_matrix/client/v3/pushrules/global/"
        ));
        assert!(!super::is_push_rules_path(
            "/_matrix/client/v3/x/pushrules/"
        ));
    }

    #[test]
    fn finds_query_values() {
        assert_eq!(
            form_value("a=1&access_token=xyz", "access_token").as_deref(),
            Some("xyz")
        );
        assert_eq!(form_value("access_tokenx=1", "access_token"), None);
    }
}
