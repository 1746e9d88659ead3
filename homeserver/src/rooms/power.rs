//! Power levels as the server itself enforces them (the authorisation rules
//! enforce them too, inside the `federation` crate): who may redact others'
//! events, who may change a room's aliases and directory listing.

use serde_json::Value;

/// The parts of a room's current state a power check reads.
pub struct RoomAuth<'a> {
    /// Whether the room version ranks its creators above every power level (v12+).
    pub privileged_creators: bool,
    /// The room's creator, as recorded when the room was created.
    pub creator: &'a str,
    /// The `m.room.create` event (the whole event).
    pub create: Option<&'a Value>,
    /// The content of the `m.room.power_levels` event.
    pub power_levels: Option<&'a Value>,
}

/// An integer power level field: a JSON integer, or (room versions before 10)
/// a string holding one.
fn level(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn is_creator(room: &RoomAuth<'_>, user_id: &str) -> bool {
    let Some(create) = room.create else {
        return room.creator == user_id;
    };
    create["sender"].as_str() == Some(user_id)
        || create["content"]["additional_creators"]
            .as_array()
            .is_some_and(|creators| creators.iter().any(|c| c.as_str() == Some(user_id)))
}

/// The user's power level; privileged creators rank above every level.
pub fn user_level(room: &RoomAuth<'_>, user_id: &str) -> i64 {
    if room.privileged_creators && is_creator(room, user_id) {
        return i64::MAX;
    }
    match room.power_levels {
        Some(levels) => level(levels["users"].get(user_id))
            .or_else(|| level(levels.get("users_default")))
            .unwrap_or(0),
        // Without a power levels event the creator has 100, everyone else 0.
        None if is_creator(room, user_id) => 100,
        None => 0,
    }
}

/// Whether `user_id` has the power to send a state event of `event_type`.
pub fn may_send_state(room: &RoomAuth<'_>, user_id: &str, event_type: &str) -> bool {
    let required = match room.power_levels {
        Some(levels) => level(levels["events"].get(event_type))
            .or_else(|| level(levels.get("state_default")))
            .unwrap_or(50),
        // Without a power levels event, state events need level 0.
        None => 0,
    };
    user_level(room, user_id) >= required
}

/// Whether `user_id` may redact other users' events.
pub fn may_redact(room: &RoomAuth<'_>, user_id: &str) -> bool {
    let required = room
        .power_levels
        .and_then(|levels| level(levels.get("redact")))
        .unwrap_or(50);
    user_level(room, user_id) >= required
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{RoomAuth, may_redact, may_send_state};

    fn room<'a>(
        version: &'a str,
        create: &'a serde_json::Value,
        levels: Option<&'a serde_json::Value>,
    ) -> RoomAuth<'a> {
        RoomAuth {
            privileged_creators: version == "12",
            creator: "@alice:hs",
            create: Some(create),
            power_levels: levels,
        }
    }

    #[test]
    fn power_levels_decide() {
        let create = json!({ "sender": "@alice:hs", "content": {} });
        let levels = json!({
            "users": { "@alice:hs": 100, "@mod:hs": "50" },
            "events": { "m.room.canonical_alias": 50 },
            "state_default": 100,
        });
        let r = room("10", &create, Some(&levels));
        assert!(may_send_state(&r, "@alice:hs", "m.room.canonical_alias"));
        assert!(may_send_state(&r, "@mod:hs", "m.room.canonical_alias"));
        assert!(
            !may_send_state(&r, "@mod:hs", "m.room.topic"),
            "state_default applies"
        );
        assert!(!may_send_state(&r, "@bob:hs", "m.room.canonical_alias"));
    }

    #[test]
    fn defaults_when_fields_are_missing() {
        let create = json!({ "sender": "@alice:hs", "content": {} });
        let levels = json!({ "users_default": 50 });
        let r = room("10", &create, Some(&levels));
        assert!(
            may_send_state(&r, "@bob:hs", "m.room.canonical_alias"),
            "state_default is 50"
        );
        let levels = json!({});
        let r = room("10", &create, Some(&levels));
        assert!(
            !may_send_state(&r, "@alice:hs", "m.room.canonical_alias"),
            "creator has no special power before v12"
        );
        let r = room("10", &create, None);
        assert!(
            may_send_state(&r, "@bob:hs", "m.room.canonical_alias"),
            "no power levels: state needs 0"
        );
    }

    #[test]
    fn creators_are_privileged_from_room_version_12() {
        let create =
            json!({ "sender": "@alice:hs", "content": { "additional_creators": ["@carol:hs"] } });
        let levels = json!({ "users": {}, "state_default": 50 });
        let r = room("12", &create, Some(&levels));
        assert!(may_send_state(&r, "@alice:hs", "m.room.canonical_alias"));
        assert!(may_send_state(&r, "@carol:hs", "m.room.canonical_alias"));
        assert!(!may_send_state(&r, "@bob:hs", "m.room.canonical_alias"));
        let r = room("11", &create, Some(&levels));
        assert!(!may_send_state(&r, "@carol:hs", "m.room.canonical_alias"));
    }

    #[test]
    fn redaction_needs_the_redact_level() {
        let create = json!({ "sender": "@alice:hs", "content": {} });
        let levels = json!({ "users": { "@mod:hs": 50 }, "redact": 50 });
        let r = room("11", &create, Some(&levels));
        assert!(may_redact(&r, "@mod:hs"));
        assert!(!may_redact(&r, "@bob:hs"));
        let r = room("11", &create, None);
        assert!(
            may_redact(&r, "@alice:hs"),
            "without power levels the creator has 100"
        );
        assert!(!may_redact(&r, "@bob:hs"));
    }
}
