//! The room directory: local room aliases and the published room directory
//! (`/publicRooms`).
//!
//! Who may do what:
//! - creating an alias (`PUT /directory/room/{alias}`) needs the caller to be
//!   joined to the room; the alias must be on this server's name;
//! - deleting an alias needs its creator, or a joined member with the power to
//!   send `m.room.canonical_alias` state;
//! - listing a room's aliases needs a joined member (anyone when the room's
//!   history is `world_readable`);
//! - publishing or unpublishing a room needs a joined member with the power to
//!   send `m.room.canonical_alias` state (the check Synapse makes too).
//!
//! Aliases on other servers cannot be resolved yet (that needs federation):
//! they resolve to nothing.

mod public_rooms;

use std::sync::Arc;

use ruma::{OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, RoomVersionId, ServerName, UserId};

pub use public_rooms::{PublicRoomEntry, PublicRoomsPage, PublicRoomsQuery};

use crate::{
    auth::Authed,
    error::{Error, Result},
    remote::Remote,
    rooms::power,
    storage::{DirectoryRoom, Store},
};

/// What a room alias resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedAlias {
    pub room_id: OwnedRoomId,
    /// Servers that know the alias (so far only this one).
    pub servers: Vec<String>,
}

/// Room aliases and the published room directory over the store.
pub struct Directory {
    store: Store,
    server_name: OwnedServerName,
    /// Asks other servers for their published rooms.
    remote: Arc<Remote>,
}

/// Parses a room alias from a request.
pub fn parse_alias(alias: &str) -> Result<&RoomAliasId> {
    <&RoomAliasId>::try_from(alias)
        .map_err(|e| Error::InvalidParam(format!("invalid room alias: {e}")))
}

/// Parses a room id from a request.
pub fn parse_room_id(room_id: &str) -> Result<&RoomId> {
    <&RoomId>::try_from(room_id).map_err(|e| Error::InvalidParam(format!("invalid room id: {e}")))
}

impl Directory {
    /// The service for the server called `server_name`.
    pub fn new(store: Store, server_name: &str, remote: Arc<Remote>) -> Result<Self> {
        let server_name = ServerName::parse(server_name)
            .map_err(|e| Error::Internal(format!("server name: {e}")))?;
        Ok(Self {
            store,
            server_name,
            remote,
        })
    }

    /// This server's name: the domain of its aliases.
    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    /// Refuses aliases this server may not create: on another server's name,
    /// or with an empty localpart.
    fn check_local(&self, alias: &RoomAliasId) -> Result<()> {
        if alias.server_name() != self.server_name {
            return Err(Error::InvalidParam(format!(
                "room aliases on this server must end in :{}",
                self.server_name
            )));
        }
        if alias.alias().is_empty() {
            return Err(Error::InvalidParam("the room alias is empty".into()));
        }
        Ok(())
    }

    /// Checks that `alias` could be created now: local and not taken
    /// ([`Error::RoomInUse`]). For `createRoom`, before it creates the room.
    pub async fn check_alias_available(&self, alias: &RoomAliasId) -> Result<()> {
        self.check_local(alias)?;
        if self.store.room_alias(alias.as_str()).await?.is_some() {
            return Err(Error::RoomInUse);
        }
        Ok(())
    }

    /// Maps the local `alias` to `room_id`. Fails with `M_INVALID_PARAM` for an
    /// alias on another server's name and [`Error::RoomInUse`] when taken.
    pub async fn create_alias(
        &self,
        alias: &RoomAliasId,
        room_id: &RoomId,
        creator: &UserId,
    ) -> Result<()> {
        self.check_local(alias)?;
        if self
            .store
            .insert_room_alias(alias.as_str(), room_id.as_str(), creator.as_str())
            .await?
        {
            Ok(())
        } else {
            Err(Error::RoomInUse)
        }
    }

    /// A room named by its id or by one of its aliases.
    pub async fn resolve_room(&self, id_or_alias: &str) -> Result<OwnedRoomId> {
        if id_or_alias.starts_with('#') {
            let alias = parse_alias(id_or_alias)?;
            self.resolve_alias(alias)
                .await?
                .ok_or_else(|| Error::NotFound("unknown room alias".into()))
        } else {
            Ok(parse_room_id(id_or_alias)?.to_owned())
        }
    }

    /// The room an alias points at; `None` when there is no such local alias
    /// (aliases of other servers are not resolved yet).
    pub async fn resolve_alias(&self, alias: &RoomAliasId) -> Result<Option<OwnedRoomId>> {
        if alias.server_name() != self.server_name {
            return Ok(None);
        }
        let Some(row) = self.store.room_alias(alias.as_str()).await? else {
            return Ok(None);
        };
        let room_id = RoomId::parse(&row.room_id)
            .map_err(|e| Error::Internal(format!("stored room id: {e}")))?;
        Ok(Some(room_id))
    }

    /// Lists the room in (`true`) or removes it from the published room
    /// directory, without permission checks. `M_NOT_FOUND` for an unknown room.
    pub async fn set_published(&self, room_id: &RoomId, published: bool) -> Result<()> {
        if self
            .store
            .set_room_published(room_id.as_str(), published)
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound("room not found".into()))
        }
    }

    /// `PUT /directory/room/{roomAlias}`: a joined member maps a new alias to
    /// the room. A taken alias is a 409.
    pub async fn put_alias(&self, authed: &Authed, alias: &str, room_id: &str) -> Result<()> {
        let alias = parse_alias(alias)?;
        let room_id = parse_room_id(room_id)?;
        self.check_local(alias)?;
        self.known_room(room_id).await?;
        self.require_joined(room_id, &authed.user_id).await?;
        self.create_alias(alias, room_id, &authed.user_id)
            .await
            .map_err(|e| match e {
                Error::RoomInUse => Error::Conflict(format!("room alias {alias} already exists")),
                other => other,
            })
    }

    /// `GET /directory/room/{roomAlias}`.
    pub async fn lookup_alias(&self, alias: &str) -> Result<ResolvedAlias> {
        let alias = parse_alias(alias)?;
        let room_id = self
            .resolve_alias(alias)
            .await?
            .ok_or_else(|| Error::NotFound(format!("room alias {alias} not found")))?;
        Ok(ResolvedAlias {
            room_id,
            servers: vec![self.server_name.to_string()],
        })
    }

    /// `DELETE /directory/room/{roomAlias}`: by the alias's creator, or by a
    /// joined member who may send `m.room.canonical_alias` state.
    pub async fn delete_alias(&self, authed: &Authed, alias: &str) -> Result<()> {
        let alias = parse_alias(alias)?;
        let not_found = || Error::NotFound(format!("room alias {alias} not found"));
        if alias.server_name() != self.server_name {
            return Err(not_found());
        }
        let row = self
            .store
            .room_alias(alias.as_str())
            .await?
            .ok_or_else(not_found)?;
        if row.creator != authed.user_id.as_str() {
            let room = self.store.directory_room(&row.room_id).await?;
            let allowed = match room {
                Some(room) => {
                    self.is_joined(&room.room_id, &authed.user_id).await?
                        && self
                            .may_send_state(&room, &authed.user_id, "m.room.canonical_alias")
                            .await?
                }
                None => false,
            };
            if !allowed {
                return Err(Error::Forbidden(
                    "only the alias's creator or a room moderator may delete it".into(),
                ));
            }
        }
        if self.store.delete_room_alias(alias.as_str()).await? {
            Ok(())
        } else {
            // Deleted by a concurrent request.
            Err(not_found())
        }
    }

    /// `GET /rooms/{roomId}/aliases`: the room's local aliases, for joined
    /// members (and anyone when its history is `world_readable`).
    pub async fn local_aliases(&self, authed: &Authed, room_id: &str) -> Result<Vec<String>> {
        let room_id = parse_room_id(room_id)?;
        if !self.is_joined(room_id.as_str(), &authed.user_id).await?
            && !self.world_readable(room_id).await?
        {
            return Err(Error::Forbidden("you are not a member of the room".into()));
        }
        self.store.room_aliases(room_id.as_str()).await
    }

    /// `GET /directory/list/room/{roomId}`: whether the room is published.
    pub async fn is_published(&self, room_id: &str) -> Result<bool> {
        let room_id = parse_room_id(room_id)?;
        Ok(self.known_room(room_id).await?.published)
    }

    /// `PUT /directory/list/room/{roomId}`: publishes or unpublishes the room,
    /// for joined members who may send `m.room.canonical_alias` state.
    pub async fn set_visibility(
        &self,
        authed: &Authed,
        room_id: &str,
        publish: bool,
    ) -> Result<()> {
        let room_id = parse_room_id(room_id)?;
        let room = self.known_room(room_id).await?;
        self.require_joined(room_id, &authed.user_id).await?;
        if !self
            .may_send_state(&room, &authed.user_id, "m.room.canonical_alias")
            .await?
        {
            return Err(Error::Forbidden(
                "you do not have the power to change this room's directory visibility".into(),
            ));
        }
        self.set_published(room_id, publish).await
    }

    /// `GET`/`POST /publicRooms`: a page of the published room directory,
    /// this server's or, with `server`, another's (over federation).
    pub async fn public_rooms(&self, query: PublicRoomsQuery) -> Result<PublicRoomsPage> {
        if let Some(server) = query.server.as_deref()
            && server != self.server_name.as_str()
        {
            let server = ServerName::parse(server)
                .map_err(|e| Error::InvalidParam(format!("invalid server name: {e}")))?;
            return self.remote.public_rooms(&server, &query).await;
        }
        self.local_public_rooms(&query).await
    }

    /// A page of this server's published room directory (also what other
    /// servers get from `/_matrix/federation/v1/publicRooms`).
    pub async fn local_public_rooms(&self, query: &PublicRoomsQuery) -> Result<PublicRoomsPage> {
        let rooms = self.store.published_rooms().await?;
        public_rooms::page(rooms, query)
    }

    async fn known_room(&self, room_id: &RoomId) -> Result<DirectoryRoom> {
        self.store
            .directory_room(room_id.as_str())
            .await?
            .ok_or_else(|| Error::NotFound("room not found".into()))
    }

    async fn is_joined(&self, room_id: &str, user_id: &UserId) -> Result<bool> {
        Ok(self
            .store
            .membership(room_id, user_id.as_str())
            .await?
            .as_deref()
            == Some("join"))
    }

    async fn require_joined(&self, room_id: &RoomId, user_id: &UserId) -> Result<()> {
        self.store
            .require_joined(room_id.as_str(), user_id.as_str())
            .await
    }

    async fn world_readable(&self, room_id: &RoomId) -> Result<bool> {
        let event = self
            .store
            .directory_state_event(room_id.as_str(), "m.room.history_visibility", "")
            .await?;
        Ok(event
            .as_ref()
            .and_then(|e| e["content"]["history_visibility"].as_str())
            == Some("world_readable"))
    }

    /// Whether the room's current power levels let `user_id` send a state
    /// event of `event_type`.
    async fn may_send_state(
        &self,
        room: &DirectoryRoom,
        user_id: &UserId,
        event_type: &str,
    ) -> Result<bool> {
        let create = self
            .store
            .directory_state_event(&room.room_id, "m.room.create", "")
            .await?;
        let power_levels = self
            .store
            .directory_state_event(&room.room_id, "m.room.power_levels", "")
            .await?;
        let privileged_creators = RoomVersionId::try_from(room.room_version.as_str())
            .ok()
            .and_then(|version| version.rules())
            .is_some_and(|rules| rules.authorization.explicitly_privilege_room_creators);
        Ok(power::may_send_state(
            &power::RoomAuth {
                privileged_creators,
                creator: &room.creator,
                create: create.as_ref(),
                power_levels: power_levels.as_ref().map(|e| &e["content"]),
            },
            user_id.as_str(),
            event_type,
        ))
    }
}
