//! The Server-Server API: server keys (our own, and other servers' as a
//! notary), the version, and queries from other servers. Served on the
//! federation listener (HTTPS) and on the client listener.

use std::{collections::BTreeMap, sync::Arc};

use poem::web::Data;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use ruma::ServerName;
use serde_json::Value;

use super::{ServerSignature, Tag, parse_user_id};
use crate::{
    error::{Error, Result},
    state::AppState,
};

/// The most servers one key query may ask about.
const MAX_KEY_QUERY_SERVERS: usize = 100;

#[derive(Object)]
struct ServerVersion {
    server: ServerSoftware,
}

#[derive(Object)]
struct ServerSoftware {
    name: String,
    version: String,
}

/// Key documents, each signed by its server (and by us, for others' keys).
#[derive(Object)]
struct ServerKeysAnswer {
    server_keys: Vec<Value>,
}

#[derive(Object)]
struct KeyQuery {
    /// Server name -> key id -> criteria (`minimum_valid_until_ts`).
    server_keys: BTreeMap<String, Value>,
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct RemoteProfile {
    displayname: Option<String>,
    avatar_url: Option<String>,
}

fn parse_server_name(name: &str) -> Result<&ServerName> {
    <&ServerName>::try_from(name)
        .map_err(|e| Error::InvalidParam(format!("invalid server name {name:?}: {e}")))
}

async fn key_documents<'a>(
    state: &AppState,
    servers: impl Iterator<Item = &'a ServerName>,
) -> Result<Json<ServerKeysAnswer>> {
    let mut server_keys = Vec::new();
    for server in servers {
        if let Some(document) = state.remote.notarised_key_document(server).await? {
            server_keys.push(
                serde_json::to_value(document)
                    .map_err(|e| Error::Internal(format!("key document: {e}")))?,
            );
        }
    }
    Ok(Json(ServerKeysAnswer { server_keys }))
}

pub struct FederationApi;

#[OpenApi(tag = "Tag::Federation")]
impl FederationApi {
    /// # GET /_matrix/federation/v1/version
    /// The server's software and version.
    #[oai(
        path = "/_matrix/federation/v1/version",
        method = "get",
        operation_id = "getServerVersion"
    )]
    async fn version(&self) -> Json<ServerVersion> {
        Json(ServerVersion {
            server: ServerSoftware {
                name: "TeaTime".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
        })
    }

    /// # GET /_matrix/key/v2/server
    /// This server's signing keys, signed by itself.
    #[oai(
        path = "/_matrix/key/v2/server",
        method = "get",
        operation_id = "getServerKey"
    )]
    async fn server_keys(&self, state: Data<&Arc<AppState>>) -> Result<Json<Value>> {
        let document = state.remote.own_key_document()?;
        Ok(Json(serde_json::to_value(document).map_err(|e| {
            Error::Internal(format!("key document: {e}"))
        })?))
    }

    /// # GET /_matrix/key/v2/query/{serverName}
    /// Another server's keys, fetched by this server and countersigned (notary).
    #[oai(
        path = "/_matrix/key/v2/query/:server_name",
        method = "get",
        operation_id = "perspectivesKeyQuery"
    )]
    async fn query_keys(
        &self,
        state: Data<&Arc<AppState>>,
        server_name: Path<String>,
    ) -> Result<Json<ServerKeysAnswer>> {
        let server = parse_server_name(&server_name.0)?;
        key_documents(&state, std::iter::once(server)).await
    }

    /// # POST /_matrix/key/v2/query
    /// Several servers' keys, fetched by this server and countersigned (notary).
    #[oai(
        path = "/_matrix/key/v2/query",
        method = "post",
        operation_id = "queryKeys"
    )]
    async fn query_many_keys(
        &self,
        state: Data<&Arc<AppState>>,
        body: Json<KeyQuery>,
    ) -> Result<Json<ServerKeysAnswer>> {
        if body.0.server_keys.len() > MAX_KEY_QUERY_SERVERS {
            return Err(Error::InvalidParam(format!(
                "at most {MAX_KEY_QUERY_SERVERS} servers per query"
            )));
        }
        let servers = body
            .0
            .server_keys
            .keys()
            .map(|name| parse_server_name(name))
            .collect::<Result<Vec<_>>>()?;
        key_documents(&state, servers.into_iter()).await
    }

    /// # GET /_matrix/federation/v1/query/profile
    /// The profile of a user of this server, for another server.
    #[oai(
        path = "/_matrix/federation/v1/query/profile",
        method = "get",
        operation_id = "queryProfile"
    )]
    async fn query_profile(
        &self,
        state: Data<&Arc<AppState>>,
        _origin: ServerSignature,
        user_id: Query<String>,
        field: Query<Option<String>>,
    ) -> Result<Json<RemoteProfile>> {
        let user_id = parse_user_id(&user_id.0)?;
        if user_id.server_name().as_str() != state.config.server_name {
            return Err(Error::NotFound("the user is not on this server".into()));
        }
        let profile = state.accounts.profile(user_id.as_str()).await?;
        let (displayname, avatar_url) = match field.as_deref() {
            None => (profile.displayname, profile.avatar_url),
            Some("displayname") => (profile.displayname, None),
            Some("avatar_url") => (None, profile.avatar_url),
            Some(other) => {
                return Err(Error::InvalidParam(format!(
                    "unknown profile field {other:?}"
                )));
            }
        };
        Ok(Json(RemoteProfile {
            displayname,
            avatar_url,
        }))
    }
}
