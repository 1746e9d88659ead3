//! Assembles the HTTP application and runs it until shutdown.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use poem::{
    EndpointExt, IntoResponse, Response, Route, Server, get, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, RustlsCertificate, RustlsConfig, TcpListener},
    middleware::CatchPanic,
    web::{Data, Json},
};
use serde_json::json;
use tokio::{sync::oneshot, task::JoinHandle};

use crate::{
    api,
    config::Config,
    error::{Error, Result},
    http,
    state::AppState,
    web_client,
};

/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long closing WebSockets may take once the HTTP drain is over.
const SOCKET_GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// The whole client-facing HTTP application.
pub fn endpoint(state: Arc<AppState>) -> impl poem::Endpoint<Output = Response> {
    let api = api::service();
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    let max_body = state.config.max_json_body_bytes;
    let metrics = state.metrics.clone();
    let web_dir = state.config.web_dir.clone();
    Route::new()
        .at("/healthz", get(healthz))
        .at("/metrics", get(metrics_text))
        .at("/_teatime/ws", get(crate::ws::websocket))
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .nest("/", api)
        .around(web_client::site(web_dir))
        .around(http::json_bodies(max_body))
        .around(http::server_signatures)
        .around(http::query_access_token)
        .around(http::trailing_slashes)
        .around(http::matrix_errors)
        .with(CatchPanic::new().with_handler(http::panic_response))
        .around(http::record_metrics(metrics))
        .around(http::request_ids)
        .around(http::cors)
        .data(state)
        .map_to_response()
}

#[handler]
async fn healthz(state: Data<&Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "database unavailable" })),
            )
                .into_response()
        }
    }
}

#[handler]
async fn metrics_text(state: Data<&Arc<AppState>>) -> Response {
    state
        .metrics
        .render()
        .with_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .into_response()
}

/// A server that is accepting connections.
pub struct RunningServer {
    /// Where the client API listens (the real port when configured with port 0).
    pub addr: SocketAddr,
    /// Where the federation API listens over HTTPS.
    pub federation_addr: SocketAddr,
    /// The shared state, for callers that need the store or services.
    pub state: Arc<AppState>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

/// The federation listener's certificate: self-signed, made on first start
/// and kept in the data dir (other servers check keys, not certificates, on
/// test networks; production deployments put a reverse proxy with a real
/// certificate in front, see infra/Caddyfile).
fn federation_tls(config: &Config) -> Result<RustlsConfig> {
    let server_name = ruma::ServerName::parse(&config.server_name)
        .map_err(|e| Error::Internal(format!("server name: {e}")))?;
    let identity = federation::tls::self_signed(&config.data_dir.join("tls"), &server_name)?;
    Ok(RustlsConfig::new().fallback(
        RustlsCertificate::new()
            .cert(identity.certificate_pem)
            .key(identity.private_key_pem),
    ))
}

/// Opens storage, binds the client and federation listeners and starts serving.
pub async fn start(mut config: Config) -> Result<RunningServer> {
    let listen = config.listen;
    let federation_listen = config.federation_listen;
    let tls = federation_tls(&config)?;
    let acceptor = TcpListener::bind(listen)
        .combine(TcpListener::bind(federation_listen).rustls(tls))
        .into_acceptor()
        .await
        .map_err(|e| {
            Error::Internal(format!(
                "cannot listen on {listen} and {federation_listen} (federation): {e}"
            ))
        })?;
    let addrs: Vec<SocketAddr> = acceptor
        .local_addr()
        .iter()
        .filter_map(|a| a.as_socket_addr().copied())
        .collect();
    let addr = addrs.first().copied().unwrap_or(listen);
    let federation_addr = addrs.get(1).copied().unwrap_or(federation_listen);
    // Ports the system chose (port 0) are the ones the server advertises.
    config.listen = addr;
    config.federation_listen = federation_addr;
    let state = AppState::open(config).await?;
    let (shutdown, stopped) = oneshot::channel::<()>();
    let app = endpoint(state.clone());
    let task = tokio::spawn(async move {
        Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, async { drop(stopped.await) }, Some(DRAIN_TIMEOUT))
            .await
    });
    Ok(RunningServer {
        addr,
        federation_addr,
        state,
        shutdown,
        task,
    })
}

impl RunningServer {
    /// Stops accepting, answers long-polls, closes WebSockets with a
    /// reconnect hint, lets in-flight requests finish, closes the database.
    pub async fn stop(self) -> Result<()> {
        self.state.stopping.cancel();
        // The server task may already have ended; then there is nobody to tell.
        let _ = self.shutdown.send(());
        let served = self
            .task
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        self.state.sockets.close();
        if tokio::time::timeout(SOCKET_GOODBYE_TIMEOUT, self.state.sockets.wait())
            .await
            .is_err()
        {
            tracing::warn!("some WebSockets did not close in time");
        }
        self.state.store.close().await;
        served.map_err(|e| Error::Internal(format!("server stopped with an error: {e}")))
    }
}
