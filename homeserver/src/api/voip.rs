//! VoIP: the TURN server credentials clients use for calls.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{Object, OpenApi, payload::Json};

use super::{AccessToken, Tag};
use crate::{error::Result, state::AppState};

/// TURN credentials, or an empty object when the server offers no TURN.
#[derive(Object)]
struct TurnServer {
    /// The username to use (`<expiry>:<user_id>`).
    #[oai(skip_serializing_if_is_none)]
    username: Option<String>,
    /// The password to use.
    #[oai(skip_serializing_if_is_none)]
    password: Option<String>,
    /// The TURN URIs (`turn:` / `turns:`).
    #[oai(skip_serializing_if_is_none)]
    uris: Option<Vec<String>>,
    /// Seconds the credentials stay valid.
    #[oai(skip_serializing_if_is_none)]
    ttl: Option<u64>,
}

pub struct VoipApi;

#[OpenApi(tag = "Tag::Voip")]
impl VoipApi {
    /// # GET /_matrix/client/v3/voip/turnServer
    /// Time-limited credentials for the server's TURN relays (the TURN REST
    /// scheme: HMAC-SHA1 of `<expiry>:<user_id>` under the secret shared with
    /// the TURN server). An empty object when no TURN server is configured.
    /// Rate-limited per user (429 `M_LIMIT_EXCEEDED`).
    #[oai(
        path = "/_matrix/client/v3/voip/turnServer",
        method = "get",
        operation_id = "getTurnServer"
    )]
    async fn turn_server(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
    ) -> Result<Json<TurnServer>> {
        let credentials = state.calls.turn_server(&auth.0)?;
        Ok(Json(match credentials {
            Some(c) => TurnServer {
                username: Some(c.username),
                password: Some(c.password),
                uris: Some(c.uris),
                ttl: Some(c.ttl),
            },
            None => TurnServer {
                username: None,
                password: None,
                uris: None,
                ttl: None,
            },
        }))
    }
}
