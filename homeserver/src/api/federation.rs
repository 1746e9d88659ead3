//! The Server-Server API: server keys (our own, and other servers' as a
//! notary), the version, and queries from other servers. Served on the
//! federation listener (HTTPS) and on the client listener.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use poem::{Body, web::Data};
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::{Binary, Json, Response},
};
use ruma::ServerName;
use serde_json::Value;

use super::{ServerSignature, Tag, parse_user_id};
use crate::{
    auth::tokens::random_id,
    error::{Error, Result},
    media_repo::{DEFAULT_DOWNLOAD_WAIT, Download},
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

/// A federation media answer: `multipart/mixed` with the (empty) metadata
/// as JSON, then the file with its type and disposition, streamed.
fn multipart_media(download: Download) -> Response<Binary<Body>> {
    let boundary = random_id().replace(['-', '_'], "");
    let disposition =
        super::media::content_disposition(&download.content_type, download.filename.as_deref());
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\n\
         Content-Type: {}\r\nContent-Disposition: {disposition}\r\n\r\n",
        download.content_type
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let body = futures_util::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(download.object.body)
        .chain(futures_util::stream::once(
            async move { Ok(Bytes::from(tail)) },
        ));
    Response::new(Binary(Body::from_bytes_stream(body))).header(
        poem::http::header::CONTENT_TYPE,
        format!("multipart/mixed; boundary={boundary}"),
    )
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

    /// # GET /_matrix/federation/v1/media/download/{mediaId}
    /// Media of this server for another server (`multipart/mixed`).
    #[oai(
        path = "/_matrix/federation/v1/media/download/:media_id",
        method = "get",
        operation_id = "getContentFederation"
    )]
    async fn media_download(
        &self,
        state: Data<&Arc<AppState>>,
        _origin: ServerSignature,
        media_id: Path<String>,
        timeout_ms: Query<Option<u64>>,
    ) -> Result<Response<Binary<Body>>> {
        let wait = timeout_ms.map_or(DEFAULT_DOWNLOAD_WAIT, Duration::from_millis);
        let download = state
            .media
            .download(&state.config.server_name, &media_id.0, wait)
            .await?;
        Ok(multipart_media(download))
    }

    /// # GET /_matrix/federation/v1/media/thumbnail/{mediaId}
    /// A thumbnail of media of this server for another server (`multipart/mixed`).
    #[oai(
        path = "/_matrix/federation/v1/media/thumbnail/:media_id",
        method = "get",
        operation_id = "getContentThumbnailFederation"
    )]
    async fn media_thumbnail(
        &self,
        state: Data<&Arc<AppState>>,
        _origin: ServerSignature,
        media_id: Path<String>,
        width: Query<u32>,
        height: Query<u32>,
        method: Query<Option<String>>,
    ) -> Result<Response<Binary<Body>>> {
        let method = super::media::thumbnail_method(method.as_deref())?;
        let download = state
            .media
            .thumbnail(
                &state.config.server_name,
                &media_id.0,
                width.0,
                height.0,
                method,
                DEFAULT_DOWNLOAD_WAIT,
            )
            .await?;
        Ok(multipart_media(download))
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
