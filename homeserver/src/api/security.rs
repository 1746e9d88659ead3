//! The access-token security scheme: a bearer JWT checked against its live session.

use std::sync::Arc;

use poem::Request;
use poem_openapi::{
    SecurityScheme,
    auth::{ApiKey, Bearer},
};
use ruma::OwnedServerName;

use crate::{auth::Authed, error::Error, http::VerifiedOrigin, state::AppState};

/// An authenticated request: `Authorization: Bearer <access token>` (or the
/// deprecated `access_token` query parameter).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_access_token")]
pub struct AccessToken(pub Authed);

async fn check_access_token(req: &Request, bearer: Bearer) -> poem::Result<Authed> {
    let state = req
        .data::<Arc<AppState>>()
        .ok_or_else(|| Error::Internal("application state missing".into()))?;
    Ok(state
        .sessions
        .authenticate(&bearer.token, super::client_ip(req))
        .await?)
}

/// The access token of a server administrator: anyone else gets 403
/// `M_FORBIDDEN` (and a missing or bad token 401, as everywhere).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_admin_token")]
pub struct AdminToken(pub Authed);

async fn check_admin_token(req: &Request, bearer: Bearer) -> poem::Result<Authed> {
    let authed = check_access_token(req, bearer).await?;
    let state = req
        .data::<Arc<AppState>>()
        .ok_or_else(|| Error::Internal("application state missing".into()))?;
    crate::admin::require_admin(state, &authed).await?;
    Ok(authed)
}

/// A server-server request signed by its origin server:
/// `Authorization: X-Matrix origin="...",destination="...",key="...",sig="..."`
/// over the method, target and body (checked before the handler runs).
#[derive(SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "Authorization",
    key_in = "header",
    checker = "check_server_signature"
)]
pub struct ServerSignature(pub OwnedServerName);

async fn check_server_signature(req: &Request, _header: ApiKey) -> poem::Result<OwnedServerName> {
    req.extensions()
        .get::<VerifiedOrigin>()
        .map(|origin| origin.0.clone())
        .ok_or_else(|| Error::Unauthorized("an X-Matrix signed request is required".into()).into())
}
