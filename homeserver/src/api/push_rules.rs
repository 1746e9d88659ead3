//! Push rules: so far only `GET /pushrules/`, answering the specification's
//! server-default rules (Matrix v1.19, "Predefined Rules"). Clients need it
//! before they start syncing (matrix-js-sdk does not sync without it). Users
//! cannot change their rules yet, so every user's ruleset is the default one
//! with their own user id filled in.

use poem_openapi::{Object, OpenApi, payload::Json};
use serde_json::{Value, json};

use super::{AccessToken, Tag};
use crate::error::Result;

/// A push condition (`PushCondition`): `kind` and the parameters that kind takes.
#[derive(Object, Clone, Debug)]
#[oai(skip_serializing_if_is_none)]
struct PushCondition {
    /// `event_match`, `event_property_is`, `event_property_contains`,
    /// `room_member_count`, `sender_notification_permission`, ...
    kind: String,
    /// The dot-separated event field (or, for
    /// `sender_notification_permission`, the power level notification key).
    key: Option<String>,
    /// The glob-style pattern of an `event_match` condition.
    pattern: Option<String>,
    /// The member count of a `room_member_count` condition, e.g. `"2"` or `">=3"`.
    is: Option<String>,
    /// The value of an `event_property_is` / `event_property_contains` condition.
    value: Option<Value>,
}

/// A push rule (`PushRule`).
#[derive(Object, Clone, Debug)]
#[oai(skip_serializing_if_is_none)]
struct PushRule {
    /// What to do when the rule matches: `"notify"` or `{"set_tweak": ...}` objects.
    actions: Vec<Value>,
    /// Whether this is a server-default rule.
    default: bool,
    /// Whether the rule is enabled.
    enabled: bool,
    /// The rule's id; server-default ids start with a dot.
    rule_id: String,
    /// The conditions, all of which must hold (override and underride rules).
    conditions: Option<Vec<PushCondition>>,
    /// The glob-style pattern matched against `content.body` (content rules).
    pattern: Option<String>,
}

/// A push ruleset: the rules of each kind, in priority order.
#[derive(Object, Clone, Debug)]
struct Ruleset {
    content: Vec<PushRule>,
    #[oai(rename = "override")]
    override_rules: Vec<PushRule>,
    room: Vec<PushRule>,
    sender: Vec<PushRule>,
    underride: Vec<PushRule>,
}

#[derive(Object)]
struct PushRules {
    /// The global ruleset, the only one the specification defines.
    global: Ruleset,
}

fn event_match(key: &str, pattern: &str) -> PushCondition {
    PushCondition {
        kind: "event_match".into(),
        key: Some(key.into()),
        pattern: Some(pattern.into()),
        is: None,
        value: None,
    }
}

fn event_property(kind: &str, key: &str, value: Value) -> PushCondition {
    PushCondition {
        kind: kind.into(),
        key: Some(key.into()),
        pattern: None,
        is: None,
        value: Some(value),
    }
}

fn room_member_count(is: &str) -> PushCondition {
    PushCondition {
        kind: "room_member_count".into(),
        key: None,
        pattern: None,
        is: Some(is.into()),
        value: None,
    }
}

fn sender_notification_permission(key: &str) -> PushCondition {
    PushCondition {
        kind: "sender_notification_permission".into(),
        key: Some(key.into()),
        pattern: None,
        is: None,
        value: None,
    }
}

fn rule(
    rule_id: &str,
    enabled: bool,
    conditions: Vec<PushCondition>,
    actions: Vec<Value>,
) -> PushRule {
    PushRule {
        actions,
        default: true,
        enabled,
        rule_id: rule_id.into(),
        conditions: Some(conditions),
        pattern: None,
    }
}

/// The specification's server-default rules for a user, in the order the
/// specification lists them (which is their priority within each kind). The
/// legacy rules matching mentions in `body` (`.m.rule.contains_user_name`,
/// `.m.rule.contains_display_name`, `.m.rule.roomnotif`) were removed in
/// v1.17 and are not served.
fn server_default_rules(user_id: &str) -> Ruleset {
    let notify = || json!("notify");
    let sound = |value: &str| json!({ "set_tweak": "sound", "value": value });
    let highlight = || json!({ "set_tweak": "highlight" });
    let override_rules = vec![
        rule(".m.rule.master", false, vec![], vec![]),
        rule(
            ".m.rule.suppress_notices",
            true,
            vec![event_match("content.msgtype", "m.notice")],
            vec![],
        ),
        rule(
            ".m.rule.invite_for_me",
            true,
            vec![
                event_match("type", "m.room.member"),
                event_match("content.membership", "invite"),
                event_match("state_key", user_id),
            ],
            vec![notify(), sound("default")],
        ),
        rule(
            ".m.rule.member_event",
            true,
            vec![event_match("type", "m.room.member")],
            vec![],
        ),
        rule(
            ".m.rule.is_user_mention",
            true,
            vec![event_property(
                "event_property_contains",
                "content.m\\.mentions.user_ids",
                json!(user_id),
            )],
            vec![notify(), sound("default"), highlight()],
        ),
        rule(
            ".m.rule.is_room_mention",
            true,
            vec![
                event_property(
                    "event_property_is",
                    "content.m\\.mentions.room",
                    json!(true),
                ),
                sender_notification_permission("room"),
            ],
            vec![notify(), highlight()],
        ),
        rule(
            ".m.rule.tombstone",
            true,
            vec![
                event_match("type", "m.room.tombstone"),
                event_match("state_key", ""),
            ],
            vec![notify(), highlight()],
        ),
        rule(
            ".m.rule.reaction",
            true,
            vec![event_match("type", "m.reaction")],
            vec![],
        ),
        rule(
            ".m.rule.room.server_acl",
            true,
            vec![
                event_match("type", "m.room.server_acl"),
                event_match("state_key", ""),
            ],
            vec![],
        ),
        rule(
            ".m.rule.suppress_edits",
            true,
            vec![event_property(
                "event_property_is",
                "content.m\\.relates_to.rel_type",
                json!("m.replace"),
            )],
            vec![],
        ),
    ];
    let underride = vec![
        rule(
            ".m.rule.call",
            true,
            vec![event_match("type", "m.call.invite")],
            vec![notify(), sound("ring")],
        ),
        rule(
            ".m.rule.encrypted_room_one_to_one",
            true,
            vec![
                room_member_count("2"),
                event_match("type", "m.room.encrypted"),
            ],
            vec![notify(), sound("default")],
        ),
        rule(
            ".m.rule.room_one_to_one",
            true,
            vec![
                room_member_count("2"),
                event_match("type", "m.room.message"),
            ],
            vec![notify(), sound("default")],
        ),
        rule(
            ".m.rule.message",
            true,
            vec![event_match("type", "m.room.message")],
            vec![notify()],
        ),
        rule(
            ".m.rule.encrypted",
            true,
            vec![event_match("type", "m.room.encrypted")],
            vec![notify()],
        ),
    ];
    Ruleset {
        content: vec![],
        override_rules,
        room: vec![],
        sender: vec![],
        underride,
    }
}

pub struct PushRulesApi;

#[OpenApi(tag = "Tag::Push")]
impl PushRulesApi {
    /// # GET /_matrix/client/v3/pushrules/
    /// All of the caller's push rulesets: the `global` one, which holds the
    /// specification's server-default rules (users cannot change them yet).
    /// Reached with the trailing slash the specification gives it, and without.
    #[oai(
        path = "/_matrix/client/v3/pushrules",
        method = "get",
        operation_id = "getPushRules"
    )]
    async fn push_rules(&self, auth: AccessToken) -> Result<Json<PushRules>> {
        Ok(Json(PushRules {
            global: server_default_rules(auth.0.user_id.as_str()),
        }))
    }
}
