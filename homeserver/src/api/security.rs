//! The access-token security scheme: a bearer JWT checked against its live session.

use std::sync::Arc;

use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};

use crate::{auth::Authed, error::Error, state::AppState};

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
