//! Room aliases and the published room directory.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{
    Enum, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};

use super::{AccessToken, Tag, session::Empty};
use crate::{
    directory::{PublicRoomEntry, PublicRoomsPage, PublicRoomsQuery},
    error::{Error, Result},
    state::AppState,
};

#[derive(Object)]
struct SetAlias {
    /// The room the alias is to point at.
    #[oai(deserialize_with = "crate::api::strings_only")]
    room_id: String,
}

#[derive(Object)]
struct ResolvedAlias {
    room_id: String,
    /// Servers that know the alias.
    servers: Vec<String>,
}

#[derive(Object)]
struct LocalAliases {
    aliases: Vec<String>,
}

/// Whether a room is listed in the published room directory.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
enum Visibility {
    Public,
    Private,
}

#[derive(Object)]
struct RoomVisibility {
    visibility: Visibility,
}

#[derive(Object)]
struct SetRoomVisibility {
    /// The new visibility; `public` when absent.
    visibility: Option<Visibility>,
}

/// A room of the published room directory.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct PublicRoomsChunk {
    room_id: String,
    num_joined_members: i64,
    world_readable: bool,
    guest_can_join: bool,
    name: Option<String>,
    topic: Option<String>,
    canonical_alias: Option<String>,
    avatar_url: Option<String>,
    join_rule: Option<String>,
    room_type: Option<String>,
}

impl From<PublicRoomEntry> for PublicRoomsChunk {
    fn from(e: PublicRoomEntry) -> Self {
        Self {
            room_id: e.room_id,
            num_joined_members: e.num_joined_members,
            world_readable: e.world_readable,
            guest_can_join: e.guest_can_join,
            name: e.name,
            topic: e.topic,
            canonical_alias: e.canonical_alias,
            avatar_url: e.avatar_url,
            join_rule: e.join_rule,
            room_type: e.room_type,
        }
    }
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct PublicRoomsResponse {
    chunk: Vec<PublicRoomsChunk>,
    /// Fetches the next page; absent on the last page.
    next_batch: Option<String>,
    /// Fetches the previous page; absent on the first page.
    prev_batch: Option<String>,
    /// How many rooms match, over all pages.
    total_room_count_estimate: Option<i64>,
}

impl From<PublicRoomsPage> for PublicRoomsResponse {
    fn from(page: PublicRoomsPage) -> Self {
        Self {
            chunk: page.chunk.into_iter().map(Into::into).collect(),
            next_batch: page.next_batch,
            prev_batch: page.prev_batch,
            total_room_count_estimate: Some(page.total_room_count_estimate),
        }
    }
}

#[derive(Object)]
struct PublicRoomsFilter {
    /// Text to find in the room name, topic or canonical alias.
    #[oai(deserialize_with = "crate::api::strings_only")]
    generic_search_term: Option<String>,
    /// Only rooms of these types; `null` stands for rooms without a type.
    #[oai(deserialize_with = "crate::api::strings_only")]
    room_types: Option<Vec<Option<String>>>,
}

#[derive(Object)]
pub(crate) struct PublicRoomsRequest {
    /// The most rooms to return.
    limit: Option<i64>,
    /// A `next_batch` or `prev_batch` token of an earlier response.
    #[oai(deserialize_with = "crate::api::strings_only")]
    since: Option<String>,
    filter: Option<PublicRoomsFilter>,
    /// Include rooms of all bridged networks (this server bridges none).
    include_all_networks: Option<bool>,
    /// Only rooms of this bridged network (this server bridges none).
    #[oai(deserialize_with = "crate::api::strings_only")]
    third_party_instance_id: Option<String>,
}

impl PublicRoomsRequest {
    /// The query this request makes of `server`'s directory (`None`: this server's).
    pub(crate) fn into_query(self, server: Option<String>) -> PublicRoomsQuery {
        // This server bridges no networks: including all of them changes nothing.
        let _ = self.include_all_networks;
        let (generic_search_term, room_types) = self
            .filter
            .map_or((None, None), |f| (f.generic_search_term, f.room_types));
        PublicRoomsQuery {
            limit: self.limit,
            since: self.since,
            server,
            generic_search_term,
            room_types,
            third_party_instance_id: self.third_party_instance_id,
        }
    }
}

pub struct DirectoryApi;

#[OpenApi(tag = "Tag::RoomDirectory")]
impl DirectoryApi {
    /// # PUT /_matrix/client/v3/directory/room/{roomAlias}
    /// Creates an alias on this server for a room the caller is joined to
    /// (409 when the alias exists).
    #[oai(
        path = "/_matrix/client/v3/directory/room/:room_alias",
        method = "put",
        operation_id = "setRoomAlias"
    )]
    async fn set_room_alias(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_alias: Path<String>,
        body: Json<SetAlias>,
    ) -> Result<Json<Empty>> {
        state
            .directory
            .put_alias(&auth.0, &room_alias.0, &body.0.room_id)
            .await?;
        Ok(Json(Empty {}))
    }

    /// # GET /_matrix/client/v3/directory/room/{roomAlias}
    /// The room an alias points at.
    #[oai(
        path = "/_matrix/client/v3/directory/room/:room_alias",
        method = "get",
        operation_id = "getRoomIdByAlias"
    )]
    async fn get_room_alias(
        &self,
        state: Data<&Arc<AppState>>,
        room_alias: Path<String>,
    ) -> Result<Json<ResolvedAlias>> {
        let resolved = state.directory.lookup_alias(&room_alias.0).await?;
        Ok(Json(ResolvedAlias {
            room_id: resolved.room_id.to_string(),
            servers: resolved.servers,
        }))
    }

    /// # DELETE /_matrix/client/v3/directory/room/{roomAlias}
    /// Removes an alias: allowed to its creator and to joined members with the
    /// power to send `m.room.canonical_alias` state.
    #[oai(
        path = "/_matrix/client/v3/directory/room/:room_alias",
        method = "delete",
        operation_id = "deleteRoomAlias"
    )]
    async fn delete_room_alias(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_alias: Path<String>,
    ) -> Result<Json<Empty>> {
        state.directory.delete_alias(&auth.0, &room_alias.0).await?;
        Ok(Json(Empty {}))
    }

    /// # GET /_matrix/client/v3/rooms/{roomId}/aliases
    /// The room's aliases on this server, for its joined members.
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/aliases",
        method = "get",
        operation_id = "getLocalAliases"
    )]
    async fn local_aliases(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
    ) -> Result<Json<LocalAliases>> {
        let aliases = state.directory.local_aliases(&auth.0, &room_id.0).await?;
        Ok(Json(LocalAliases { aliases }))
    }

    /// # GET /_matrix/client/v3/directory/list/room/{roomId}
    /// Whether the room is listed in the published room directory.
    #[oai(
        path = "/_matrix/client/v3/directory/list/room/:room_id",
        method = "get",
        operation_id = "getRoomVisibilityOnDirectory"
    )]
    async fn room_visibility(
        &self,
        state: Data<&Arc<AppState>>,
        room_id: Path<String>,
    ) -> Result<Json<RoomVisibility>> {
        let published = state.directory.is_published(&room_id.0).await?;
        Ok(Json(RoomVisibility {
            visibility: if published {
                Visibility::Public
            } else {
                Visibility::Private
            },
        }))
    }

    /// # PUT /_matrix/client/v3/directory/list/room/{roomId}
    /// Lists the room in, or removes it from, the published room directory:
    /// allowed to joined members with the power to send
    /// `m.room.canonical_alias` state.
    #[oai(
        path = "/_matrix/client/v3/directory/list/room/:room_id",
        method = "put",
        operation_id = "setRoomVisibilityOnDirectory"
    )]
    async fn set_room_visibility(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        body: Json<SetRoomVisibility>,
    ) -> Result<Json<Empty>> {
        let publish = body.0.visibility.unwrap_or(Visibility::Public) == Visibility::Public;
        state
            .directory
            .set_visibility(&auth.0, &room_id.0, publish)
            .await?;
        Ok(Json(Empty {}))
    }

    /// # GET /_matrix/client/v3/publicRooms
    /// A page of the published room directory, rooms with the most joined
    /// members first. Needs no access token for this server's directory;
    /// another server's (`server`) is listed through the POST form, for
    /// users with an access token (401 `M_MISSING_TOKEN` here).
    #[oai(
        path = "/_matrix/client/v3/publicRooms",
        method = "get",
        operation_id = "getPublicRooms"
    )]
    async fn public_rooms(
        &self,
        state: Data<&Arc<AppState>>,
        limit: Query<Option<i64>>,
        since: Query<Option<String>>,
        server: Query<Option<String>>,
    ) -> Result<Json<PublicRoomsResponse>> {
        // Asking another server costs this one a federation request: only
        // for users with an access token, through the POST form.
        if server
            .0
            .as_deref()
            .is_some_and(|server| server != state.directory.server_name().as_str())
        {
            return Err(Error::MissingToken);
        }
        let page = state
            .directory
            .public_rooms(PublicRoomsQuery {
                limit: limit.0,
                since: since.0,
                ..PublicRoomsQuery::default()
            })
            .await?;
        Ok(Json(page.into()))
    }

    /// # POST /_matrix/client/v3/publicRooms
    /// A page of the published room directory, filtered: this server's, or
    /// with `server` another's, fetched over federation (502 when it does
    /// not answer).
    #[oai(
        path = "/_matrix/client/v3/publicRooms",
        method = "post",
        operation_id = "queryPublicRooms"
    )]
    async fn query_public_rooms(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: AccessToken,
        server: Query<Option<String>>,
        body: Json<PublicRoomsRequest>,
    ) -> Result<Json<PublicRoomsResponse>> {
        let page = state
            .directory
            .public_rooms(body.0.into_query(server.0))
            .await?;
        Ok(Json(page.into()))
    }
}
