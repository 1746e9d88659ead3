//! Membership changes: join, leave, invite, kick, ban, unban, forget.

use ruma::{OwnedEventId, RoomId, UserId};
use serde_json::{Value, json};

use super::{Draft, Rooms};
use crate::{
    auth::Authed,
    error::{Error, Result},
};

/// A membership change one user makes for another (or themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    Invite,
    Kick,
    Ban,
    Unban,
}

impl Rooms {
    /// The content of `user_id`'s membership event: their profile with a join.
    pub async fn member_content(
        &self,
        user_id: &UserId,
        membership: &str,
        reason: Option<String>,
    ) -> Result<Value> {
        let mut content = json!({ "membership": membership });
        if membership == "join"
            && let Some(user) = self.store.user(user_id.as_str()).await?
        {
            if let Some(name) = user.displayname {
                content["displayname"] = name.into();
            }
            if let Some(avatar) = user.avatar_url {
                content["avatar_url"] = avatar.into();
            }
        }
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        Ok(content)
    }

    /// Nobody joins or is invited to a room an administrator shut down.
    async fn refuse_blocked(&self, room_id: &RoomId) -> Result<()> {
        if self.store.room_blocked(room_id.as_str()).await? {
            return Err(Error::Forbidden(
                "this room was shut down by a server administrator".into(),
            ));
        }
        Ok(())
    }

    /// `POST /rooms/{roomId}/join` and `/join/{roomIdOrAlias}` for a room on this server.
    pub async fn join(
        &self,
        room_id: &RoomId,
        user: &Authed,
        reason: Option<String>,
    ) -> Result<OwnedEventId> {
        self.refuse_blocked(room_id).await?;
        // Joining again while joined changes nothing but the profile fields; allowed by the rules.
        let content = self.member_content(&user.user_id, "join", reason).await?;
        let event_id = self
            .append(
                room_id,
                user,
                Draft::state("m.room.member", user.user_id.as_str(), content),
                None,
            )
            .await?;
        self.store
            .unforget_room(user.user_id.as_str(), room_id.as_str())
            .await?;
        Ok(event_id)
    }

    /// `POST /rooms/{roomId}/leave` (also rejects an invite).
    pub async fn leave(
        &self,
        room_id: &RoomId,
        user: &Authed,
        reason: Option<String>,
    ) -> Result<OwnedEventId> {
        let content = self.member_content(&user.user_id, "leave", reason).await?;
        self.append(
            room_id,
            user,
            Draft::state("m.room.member", user.user_id.as_str(), content),
            None,
        )
        .await
    }

    /// `POST /rooms/{roomId}/invite|kick|ban|unban`.
    pub async fn change_membership(
        &self,
        room_id: &RoomId,
        sender: &Authed,
        target: &UserId,
        change: MembershipChange,
        reason: Option<String>,
    ) -> Result<OwnedEventId> {
        let current = self
            .store
            .membership(room_id.as_str(), target.as_str())
            .await?;
        let membership = match change {
            MembershipChange::Invite => {
                self.refuse_blocked(room_id).await?;
                "invite"
            }
            MembershipChange::Ban => "ban",
            MembershipChange::Kick => {
                // Kicking someone who is not in the room is not a kick.
                if !matches!(current.as_deref(), Some("join" | "invite" | "knock")) {
                    return Err(Error::Forbidden("the user is not in the room".into()));
                }
                "leave"
            }
            MembershipChange::Unban => {
                if current.as_deref() != Some("ban") {
                    return Err(Error::Forbidden("the user is not banned".into()));
                }
                "leave"
            }
        };
        let content = self.member_content(target, membership, reason).await?;
        self.append(
            room_id,
            sender,
            Draft::state("m.room.member", target.as_str(), content),
            None,
        )
        .await
    }

    /// `POST /rooms/{roomId}/forget`: only once the user is no longer in the room.
    pub async fn forget(&self, room_id: &RoomId, user: &Authed) -> Result<()> {
        match self
            .store
            .membership(room_id.as_str(), user.user_id.as_str())
            .await?
            .as_deref()
        {
            Some("join" | "invite" | "knock") => {
                Err(Error::Unknown("leave the room before forgetting it".into()))
            }
            Some(_) => {
                self.store
                    .forget_room(user.user_id.as_str(), room_id.as_str())
                    .await
            }
            None => Err(Error::NotFound("you were never in this room".into())),
        }
    }
}
