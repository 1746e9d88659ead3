//! `GET /pushrules/`: the specification's server-default push rules (Matrix
//! v1.19, "Predefined Rules"), per user, against the real server.

mod common;

use common::{Backend, PASSWORD, TestServer, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    push_rules_are_the_spec_server_defaults,
    push_rules_name_the_caller,
    push_rules_need_a_token,
);

const PATH: &str = "/_matrix/client/v3/pushrules/";

/// The rule ids of one kind, in order.
fn ids(ruleset: &Value, kind: &str) -> Vec<String> {
    ruleset[kind]
        .as_array()
        .unwrap_or_else(|| panic!("{kind} is not an array: {ruleset}"))
        .iter()
        .map(|rule| rule["rule_id"].as_str().expect("rule_id").to_owned())
        .collect()
}

fn find<'a>(ruleset: &'a Value, kind: &str, rule_id: &str) -> &'a Value {
    ruleset[kind]
        .as_array()
        .and_then(|rules| rules.iter().find(|rule| rule["rule_id"] == rule_id))
        .unwrap_or_else(|| panic!("no {kind} rule {rule_id} in {ruleset}"))
}

async fn push_rules_are_the_spec_server_defaults(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let (status, body) = server.get(PATH, Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let object = body.as_object().expect("an object");
    assert_eq!(object.keys().collect::<Vec<_>>(), ["global"], "{body}");
    let global = &body["global"];

    // Every kind is present; only override and underride have default rules,
    // in the order the specification lists them.
    for kind in ["content", "room", "sender"] {
        assert_eq!(global[kind], json!([]), "{kind}: {global}");
    }
    assert_eq!(
        ids(global, "override"),
        [
            ".m.rule.master",
            ".m.rule.suppress_notices",
            ".m.rule.invite_for_me",
            ".m.rule.member_event",
            ".m.rule.is_user_mention",
            ".m.rule.is_room_mention",
            ".m.rule.tombstone",
            ".m.rule.reaction",
            ".m.rule.room.server_acl",
            ".m.rule.suppress_edits",
        ]
    );
    assert_eq!(
        ids(global, "underride"),
        [
            ".m.rule.call",
            ".m.rule.encrypted_room_one_to_one",
            ".m.rule.room_one_to_one",
            ".m.rule.message",
            ".m.rule.encrypted",
        ]
    );
    for kind in ["override", "underride"] {
        for rule in global[kind].as_array().unwrap() {
            assert_eq!(rule["default"], json!(true), "{rule}");
            assert!(rule["conditions"].is_array(), "{rule}");
            assert!(rule["actions"].is_array(), "{rule}");
            assert!(rule.get("pattern").is_none(), "{rule}");
        }
    }

    // A few definitions in full, exactly as the specification gives them.
    assert_eq!(
        *find(global, "override", ".m.rule.master"),
        json!({
            "rule_id": ".m.rule.master",
            "default": true,
            "enabled": false,
            "conditions": [],
            "actions": []
        })
    );
    assert_eq!(
        *find(global, "override", ".m.rule.suppress_notices"),
        json!({
            "rule_id": ".m.rule.suppress_notices",
            "default": true,
            "enabled": true,
            "conditions": [
                { "kind": "event_match", "key": "content.msgtype", "pattern": "m.notice" }
            ],
            "actions": []
        })
    );
    assert_eq!(
        *find(global, "override", ".m.rule.is_room_mention"),
        json!({
            "rule_id": ".m.rule.is_room_mention",
            "default": true,
            "enabled": true,
            "conditions": [
                { "kind": "event_property_is", "key": "content.m\\.mentions.room", "value": true },
                { "kind": "sender_notification_permission", "key": "room" }
            ],
            "actions": ["notify", { "set_tweak": "highlight" }]
        })
    );
    assert_eq!(
        *find(global, "override", ".m.rule.suppress_edits"),
        json!({
            "rule_id": ".m.rule.suppress_edits",
            "default": true,
            "enabled": true,
            "conditions": [{
                "kind": "event_property_is",
                "key": "content.m\\.relates_to.rel_type",
                "value": "m.replace"
            }],
            "actions": []
        })
    );
    assert_eq!(
        *find(global, "underride", ".m.rule.call"),
        json!({
            "rule_id": ".m.rule.call",
            "default": true,
            "enabled": true,
            "conditions": [{ "key": "type", "kind": "event_match", "pattern": "m.call.invite" }],
            "actions": ["notify", { "set_tweak": "sound", "value": "ring" }]
        })
    );
    assert_eq!(
        *find(global, "underride", ".m.rule.room_one_to_one"),
        json!({
            "rule_id": ".m.rule.room_one_to_one",
            "default": true,
            "enabled": true,
            "conditions": [
                { "kind": "room_member_count", "is": "2" },
                { "kind": "event_match", "key": "type", "pattern": "m.room.message" }
            ],
            "actions": ["notify", { "set_tweak": "sound", "value": "default" }]
        })
    );
    assert_eq!(
        *find(global, "underride", ".m.rule.message"),
        json!({
            "rule_id": ".m.rule.message",
            "default": true,
            "enabled": true,
            "conditions": [{ "kind": "event_match", "key": "type", "pattern": "m.room.message" }],
            "actions": ["notify"]
        })
    );
    server.finish().await;
}

async fn push_rules_name_the_caller(backend: Backend) {
    let server = TestServer::start(backend).await;
    for name in ["alice", "bob"] {
        let session = server.register(name, PASSWORD).await;
        let (status, body) = server.get(PATH, Some(&session.access_token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let global = &body["global"];
        assert_eq!(
            *find(global, "override", ".m.rule.invite_for_me"),
            json!({
                "rule_id": ".m.rule.invite_for_me",
                "default": true,
                "enabled": true,
                "conditions": [
                    { "key": "type", "kind": "event_match", "pattern": "m.room.member" },
                    { "key": "content.membership", "kind": "event_match", "pattern": "invite" },
                    { "key": "state_key", "kind": "event_match", "pattern": session.user_id }
                ],
                "actions": ["notify", { "set_tweak": "sound", "value": "default" }]
            })
        );
        assert_eq!(
            *find(global, "override", ".m.rule.is_user_mention"),
            json!({
                "rule_id": ".m.rule.is_user_mention",
                "default": true,
                "enabled": true,
                "conditions": [{
                    "kind": "event_property_contains",
                    "key": "content.m\\.mentions.user_ids",
                    "value": session.user_id
                }],
                "actions": [
                    "notify",
                    { "set_tweak": "sound", "value": "default" },
                    { "set_tweak": "highlight" }
                ]
            })
        );
    }
    server.finish().await;
}

async fn push_rules_need_a_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    assert_error(
        &server.get(PATH, None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &server.get(PATH, Some("garbage")).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    server.finish().await;
}
