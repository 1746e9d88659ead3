//! `POST /createRoom`: the create event, the creator's join, power levels,
//! the preset's rules, initial state, name, topic and invites, all built in
//! memory and stored in one transaction.

use federation::pdu::rules_for;
use ruma::{
    OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, room_version_rules::RoomIdFormatVersion,
};
use serde_json::{Map, Value, json};

use super::{Draft, RoomCursor, Rooms};
use crate::{
    auth::Authed,
    error::{Error, Result},
    storage::NewRoom,
};

/// The room presets of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    PrivateChat,
    TrustedPrivateChat,
    PublicChat,
}

/// A parsed `POST /createRoom` request.
#[derive(Debug, Default)]
pub struct CreateRoom {
    pub preset: Option<Preset>,
    /// `public` puts the room in the directory (and defaults the preset to `public_chat`).
    pub public: bool,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
    pub room_version: Option<String>,
    pub creation_content: Option<Map<String, Value>>,
    /// `(type, state_key, content)` events to set after the preset's.
    pub initial_state: Vec<(String, String, Value)>,
    pub power_level_content_override: Option<Map<String, Value>>,
    /// The full alias (`#name:server`) to point at the room, already reserved by the caller.
    pub canonical_alias: Option<String>,
}

/// The power levels every new room starts from (as other homeservers set them).
fn default_power_levels(creator: &str, list_creator: bool, preset: Preset) -> Map<String, Value> {
    let mut users = Map::new();
    if list_creator {
        users.insert(creator.to_owned(), 100.into());
    }
    let invite = if preset == Preset::PublicChat { 50 } else { 0 };
    let levels = json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": invite,
        "historical": 100,
    });
    match levels {
        Value::Object(levels) => levels,
        _ => Map::new(),
    }
}

impl Rooms {
    /// Creates a room and returns its id.
    pub async fn create_room(&self, creator: &Authed, request: CreateRoom) -> Result<OwnedRoomId> {
        let version = match &request.room_version {
            Some(version) => RoomVersionId::try_from(version.as_str())
                .map_err(|_| Error::UnsupportedRoomVersion(version.clone()))?,
            None => self.default_version.clone(),
        };
        let rules =
            rules_for(&version).map_err(|_| Error::UnsupportedRoomVersion(version.to_string()))?;
        let preset = request.preset.unwrap_or(if request.public {
            Preset::PublicChat
        } else {
            Preset::PrivateChat
        });
        let sender = &creator.user_id;
        let privileged_creators = rules.authorization.explicitly_privilege_room_creators;

        let mut create_content = request.creation_content.clone().unwrap_or_default();
        create_content.insert("room_version".into(), version.as_str().into());
        if rules.authorization.use_room_create_sender {
            create_content.remove("creator");
        } else {
            create_content.insert("creator".into(), sender.as_str().into());
        }
        // In rooms that privilege creators, a trusted chat's invitees become
        // co-creators; earlier versions give them power level 100 instead.
        if privileged_creators && preset == Preset::TrustedPrivateChat && !request.invite.is_empty()
        {
            let invitees: Vec<Value> = request.invite.iter().map(|u| u.as_str().into()).collect();
            create_content.insert("additional_creators".into(), invitees.into());
        }

        let mut levels = default_power_levels(sender.as_str(), !privileged_creators, preset);
        if !privileged_creators
            && preset == Preset::TrustedPrivateChat
            && let Some(Value::Object(users)) = levels.get_mut("users")
        {
            for invitee in &request.invite {
                users.insert(invitee.to_string(), 100.into());
            }
        }
        if let Some(overrides) = request.power_level_content_override.clone() {
            levels.extend(overrides);
        }

        let profile = self.store.user(sender.as_str()).await?;
        let mut join = json!({ "membership": "join" });
        if let Some(user) = &profile {
            if let Some(name) = &user.displayname {
                join["displayname"] = name.clone().into();
            }
            if let Some(avatar) = &user.avatar_url {
                join["avatar_url"] = avatar.clone().into();
            }
        }

        let mut drafts = vec![
            Draft::state("m.room.create", "", Value::Object(create_content)),
            Draft::state("m.room.member", sender.as_str(), join),
            Draft::state("m.room.power_levels", "", Value::Object(levels)),
        ];
        if let Some(alias) = &request.canonical_alias {
            drafts.push(Draft::state(
                "m.room.canonical_alias",
                "",
                json!({ "alias": alias }),
            ));
        }
        let join_rule = if preset == Preset::PublicChat {
            "public"
        } else {
            "invite"
        };
        drafts.push(Draft::state(
            "m.room.join_rules",
            "",
            json!({ "join_rule": join_rule }),
        ));
        drafts.push(Draft::state(
            "m.room.history_visibility",
            "",
            json!({ "history_visibility": "shared" }),
        ));
        if preset != Preset::PublicChat {
            drafts.push(Draft::state(
                "m.room.guest_access",
                "",
                json!({ "guest_access": "can_join" }),
            ));
        }
        for (kind, state_key, content) in request.initial_state {
            if matches!(kind.as_str(), "m.room.create" | "m.room.member") {
                return Err(Error::BadJson(format!(
                    "initial_state cannot contain {kind}"
                )));
            }
            drafts.push(Draft::state(&kind, &state_key, content));
        }
        if let Some(name) = request.name {
            drafts.push(Draft::state("m.room.name", "", json!({ "name": name })));
        }
        if let Some(topic) = request.topic {
            drafts.push(Draft::state("m.room.topic", "", json!({ "topic": topic })));
        }
        for invitee in &request.invite {
            let mut content = json!({ "membership": "invite" });
            if request.is_direct {
                content["is_direct"] = true.into();
            }
            drafts.push(Draft::state("m.room.member", invitee.as_str(), content));
        }

        // Version 12 derives the room id from the create event; earlier ones mint one.
        let room_id = match rules.room_id_format {
            RoomIdFormatVersion::V1 => Some(
                RoomId::parse(format!(
                    "!{}:{}",
                    crate::auth::tokens::random_id(),
                    self.server_name
                ))
                .map_err(|e| Error::Internal(e.to_string()))?,
            ),
            _ => None,
        };
        let mut cursor = RoomCursor::new(room_id, version.clone())?;
        let mut events = Vec::with_capacity(drafts.len());
        for draft in &drafts {
            events.push(self.next_event(&mut cursor, sender, draft)?.1);
        }
        let room_id = cursor
            .room_id
            .clone()
            .ok_or_else(|| Error::Internal("no room id".into()))?;
        let room = NewRoom {
            room_id: room_id.to_string(),
            room_version: version.to_string(),
            creator: sender.to_string(),
        };
        self.store.create_room(&room, &events).await?;
        for event in &events {
            self.notifier.publish(super::writer::change_of(event));
        }
        tracing::info!(%room_id, creator = %sender, %version, "room created");
        Ok(room_id)
    }
}
