//! Room creation and membership: createRoom, join, leave, invite, kick, ban,
//! unban, forget, joined_rooms.

use std::{collections::BTreeMap, sync::Arc};

use poem::web::Data;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use ruma::{RoomAliasId, ServerName};
use serde_json::{Map, Value};

use super::{AccessToken, Tag, parse_user_id, session::Empty};
use crate::{
    directory::parse_room_id,
    error::{Error, Result},
    rooms::{CreateRoom, Preset, membership::MembershipChange},
    servers::membership,
    state::AppState,
};

#[derive(Object)]
struct InitialStateEvent {
    #[oai(rename = "type", deserialize_with = "crate::api::strings_only")]
    kind: String,
    #[oai(deserialize_with = "crate::api::strings_only")]
    state_key: Option<String>,
    content: BTreeMap<String, Value>,
}

#[derive(Object)]
struct CreateRoomRequest {
    /// `public` lists the room in the directory; default `private`.
    #[oai(deserialize_with = "crate::api::strings_only")]
    visibility: Option<String>,
    /// Local part of an alias (`#name:server`) to create for the room.
    #[oai(deserialize_with = "crate::api::strings_only")]
    room_alias_name: Option<String>,
    #[oai(deserialize_with = "crate::api::strings_only")]
    name: Option<String>,
    #[oai(deserialize_with = "crate::api::strings_only")]
    topic: Option<String>,
    /// Users to invite.
    #[oai(deserialize_with = "crate::api::strings_only")]
    invite: Option<Vec<String>>,
    /// `10`, `11` or `12` (the default).
    #[oai(deserialize_with = "crate::api::strings_only")]
    room_version: Option<String>,
    creation_content: Option<BTreeMap<String, Value>>,
    initial_state: Option<Vec<InitialStateEvent>>,
    /// `private_chat`, `trusted_private_chat` or `public_chat`.
    #[oai(deserialize_with = "crate::api::strings_only")]
    preset: Option<String>,
    /// Mark the invites as direct chats.
    is_direct: Option<bool>,
    power_level_content_override: Option<BTreeMap<String, Value>>,
}

#[derive(Object)]
struct RoomIdResponse {
    room_id: String,
}

#[derive(Object)]
struct ReasonRequest {
    #[oai(deserialize_with = "crate::api::strings_only")]
    reason: Option<String>,
}

#[derive(Object)]
struct TargetRequest {
    #[oai(deserialize_with = "crate::api::strings_only")]
    user_id: String,
    #[oai(deserialize_with = "crate::api::strings_only")]
    reason: Option<String>,
}

#[derive(Object)]
struct JoinedRooms {
    joined_rooms: Vec<String>,
}

fn object(map: BTreeMap<String, Value>) -> Map<String, Value> {
    map.into_iter().collect()
}

fn reason(body: Json<Option<ReasonRequest>>) -> Option<String> {
    body.0.and_then(|b| b.reason)
}

impl CreateRoomRequest {
    fn into_domain(self, server_name: &str) -> Result<(CreateRoom, Option<String>)> {
        let public = match self.visibility.as_deref() {
            None | Some("private") => false,
            Some("public") => true,
            Some(other) => return Err(Error::BadJson(format!("unknown visibility {other}"))),
        };
        let preset = match self.preset.as_deref() {
            None => None,
            Some("private_chat") => Some(Preset::PrivateChat),
            Some("trusted_private_chat") => Some(Preset::TrustedPrivateChat),
            Some("public_chat") => Some(Preset::PublicChat),
            Some(other) => return Err(Error::BadJson(format!("unknown preset {other}"))),
        };
        let invite = self
            .invite
            .unwrap_or_default()
            .iter()
            .map(|u| parse_user_id(u))
            .collect::<Result<_>>()?;
        let alias = self
            .room_alias_name
            .map(|name| format!("#{name}:{server_name}"));
        let initial_state = self
            .initial_state
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                (
                    e.kind,
                    e.state_key.unwrap_or_default(),
                    Value::Object(object(e.content)),
                )
            })
            .collect();
        let request = CreateRoom {
            preset,
            public,
            name: self.name,
            topic: self.topic,
            invite,
            is_direct: self.is_direct.unwrap_or(false),
            room_version: self.room_version,
            creation_content: self.creation_content.map(object),
            initial_state,
            power_level_content_override: self.power_level_content_override.map(object),
            canonical_alias: alias.clone(),
        };
        Ok((request, alias))
    }
}

pub struct RoomsApi;

#[OpenApi(tag = "Tag::Rooms")]
impl RoomsApi {
    /// # POST /_matrix/client/v3/createRoom
    /// Creates a room: a group (`private_chat`), a direct message
    /// (`trusted_private_chat` with `is_direct` and one invite) or a public room.
    #[oai(
        path = "/_matrix/client/v3/createRoom",
        method = "post",
        operation_id = "createRoom"
    )]
    async fn create_room(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        body: Json<CreateRoomRequest>,
    ) -> Result<Json<RoomIdResponse>> {
        let (request, alias) = body.0.into_domain(&state.config.server_name)?;
        let alias = alias
            .map(|a| {
                RoomAliasId::parse(&a)
                    .map_err(|e| Error::InvalidParam(format!("invalid room alias: {e}")))
            })
            .transpose()?;
        if let Some(alias) = &alias {
            state.directory.check_alias_available(alias).await?;
        }
        let public = request.public;
        let room_id = membership::create_room(&state, &auth.0, request).await?;
        if let Some(alias) = &alias {
            state
                .directory
                .create_alias(alias, &room_id, &auth.0.user_id)
                .await?;
        }
        if public {
            state.directory.set_published(&room_id, true).await?;
        }
        Ok(Json(RoomIdResponse {
            room_id: room_id.to_string(),
        }))
    }

    /// # POST /_matrix/client/v3/join/{roomIdOrAlias}
    /// Joins a room by id or by alias.
    #[oai(
        path = "/_matrix/client/v3/join/:room_id_or_alias",
        method = "post",
        operation_id = "joinRoomByIdOrAlias"
    )]
    async fn join_by_id_or_alias(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id_or_alias: Path<String>,
        /// Servers to join through (the current name of the parameter).
        via: Query<Option<Vec<String>>>,
        /// Servers to join through (its older name).
        server_name: Query<Option<Vec<String>>>,
        body: Json<Option<ReasonRequest>>,
    ) -> Result<Json<RoomIdResponse>> {
        let (room_id, mut servers) = membership::resolve_room(&state, &room_id_or_alias.0).await?;
        for name in via.0.into_iter().chain(server_name.0).flatten() {
            servers
                .push(ServerName::parse(&name).map_err(|e| {
                    Error::InvalidParam(format!("invalid server name {name}: {e}"))
                })?);
        }
        membership::join(&state, &auth.0, &room_id, &servers, reason(body)).await?;
        Ok(Json(RoomIdResponse {
            room_id: room_id.to_string(),
        }))
    }

    /// # POST /_matrix/client/v3/rooms/{roomId}/join
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/join",
        method = "post",
        operation_id = "joinRoom"
    )]
    async fn join(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        body: Json<Option<ReasonRequest>>,
    ) -> Result<Json<RoomIdResponse>> {
        let room_id = parse_room_id(&room_id.0)?;
        membership::join(&state, &auth.0, room_id, &[], reason(body)).await?;
        Ok(Json(RoomIdResponse {
            room_id: room_id.to_string(),
        }))
    }

    /// # POST /_matrix/client/v3/rooms/{roomId}/leave
    /// Leaves a room, or rejects an invite.
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/leave",
        method = "post",
        operation_id = "leaveRoom"
    )]
    async fn leave(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        body: Json<Option<ReasonRequest>>,
    ) -> Result<Json<Empty>> {
        membership::leave(&state, &auth.0, parse_room_id(&room_id.0)?, reason(body)).await?;
        Ok(Json(Empty {}))
    }

    /// # POST /_matrix/client/v3/rooms/{roomId}/forget
    /// Forgets a room the user has left.
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/forget",
        method = "post",
        operation_id = "forgetRoom"
    )]
    async fn forget(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
    ) -> Result<Json<Empty>> {
        state
            .rooms
            .forget(parse_room_id(&room_id.0)?, &auth.0)
            .await?;
        Ok(Json(Empty {}))
    }

    /// # POST /_matrix/client/v3/rooms/{roomId}/invite
    /// Invites a user (adds a member to a group).
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/invite",
        method = "post",
        operation_id = "inviteUser"
    )]
    async fn invite(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        body: Json<TargetRequest>,
    ) -> Result<Json<Empty>> {
        change(&state, &auth, &room_id, body.0, MembershipChange::Invite).await
    }

    /// # POST /_matrix/client/v3/rooms/{roomId}/kick
    /// Removes a member.
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/kick",
        method = "post",
        operation_id = "kickUser"
    )]
    async fn kick(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        body: Json<TargetRequest>,
    ) -> Result<Json<Empty>> {
        change(&state, &auth, &room_id, body.0, MembershipChange::Kick).await
    }

    /// # POST /_matrix/client/v3/rooms/{roomId}/ban
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/ban",
        method = "post",
        operation_id = "banUser"
    )]
    async fn ban(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        body: Json<TargetRequest>,
    ) -> Result<Json<Empty>> {
        change(&state, &auth, &room_id, body.0, MembershipChange::Ban).await
    }

    /// # POST /_matrix/client/v3/rooms/{roomId}/unban
    #[oai(
        path = "/_matrix/client/v3/rooms/:room_id/unban",
        method = "post",
        operation_id = "unbanUser"
    )]
    async fn unban(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        room_id: Path<String>,
        body: Json<TargetRequest>,
    ) -> Result<Json<Empty>> {
        change(&state, &auth, &room_id, body.0, MembershipChange::Unban).await
    }

    /// # GET /_matrix/client/v3/joined_rooms
    #[oai(
        path = "/_matrix/client/v3/joined_rooms",
        method = "get",
        operation_id = "getJoinedRooms"
    )]
    async fn joined_rooms(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
    ) -> Result<Json<JoinedRooms>> {
        Ok(Json(JoinedRooms {
            joined_rooms: state.rooms.joined_rooms(&auth.0.user_id).await?,
        }))
    }
}

async fn change(
    state: &AppState,
    auth: &AccessToken,
    room_id: &str,
    body: TargetRequest,
    change: MembershipChange,
) -> Result<Json<Empty>> {
    let target = parse_user_id(&body.user_id)?;
    let room_id = parse_room_id(room_id)?;
    match change {
        MembershipChange::Invite => {
            membership::invite(state, &auth.0, room_id, &target, body.reason).await?;
        }
        _ => {
            state
                .rooms
                .change_membership(room_id, &auth.0, &target, change, body.reason)
                .await?;
        }
    }
    Ok(Json(Empty {}))
}
