//! Rooms: creation, membership and the authorisation rules, history
//! visibility on every read path, redaction, transaction ids, pagination,
//! and signed events that verify after a reload from the database.

mod common;

use common::{Backend, PASSWORD, TestServer, assert_error, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    presets_set_the_rules,
    direct_message_is_a_trusted_chat_with_one_invite,
    room_versions_10_11_12_and_unsupported,
    non_members_can_neither_send_nor_read,
    members_without_power_cannot_rename_kick_or_redact,
    kicked_and_banned_users_cannot_send_or_see_later_messages,
    invite_only_rooms_need_an_invite,
    history_visibility_is_honoured,
    redacted_content_is_stripped_on_every_read_path,
    transaction_ids_are_idempotent_per_device,
    pagination_returns_each_of_1000_messages_once_in_order,
    events_verify_after_a_reload,
    state_members_and_joined_rooms,
    context_shows_events_around_one,
    messages_filter_by_type_and_sender,
    leaving_and_forgetting,
);

async fn users(server: &TestServer) -> (String, String, String) {
    let alice = server.register("alice", PASSWORD).await.access_token;
    let bob = server.register("bob", PASSWORD).await.access_token;
    let carol = server.register("carol", PASSWORD).await.access_token;
    (alice, bob, carol)
}

async fn state_content(
    server: &TestServer,
    token: &str,
    room: &str,
    kind: &str,
) -> (StatusCode, Value) {
    server
        .get(
            &TestServer::room_path(room, &format!("state/{kind}/")),
            Some(token),
        )
        .await
}

fn bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

async fn presets_set_the_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, _, _) = users(&server).await;
    let private = server
        .create_room(
            &alice,
            json!({ "preset": "private_chat", "name": "Tea", "topic": "Earl Grey" }),
        )
        .await;
    let public = server
        .create_room(&alice, json!({ "visibility": "public" }))
        .await;
    let (_, rules) = state_content(&server, &alice, &private, "m.room.join_rules").await;
    assert_eq!(rules["join_rule"], "invite");
    let (_, rules) = state_content(&server, &alice, &public, "m.room.join_rules").await;
    assert_eq!(
        rules["join_rule"], "public",
        "visibility public defaults to public_chat"
    );
    let (_, name) = state_content(&server, &alice, &private, "m.room.name").await;
    assert_eq!(name, json!({ "name": "Tea" }));
    let (_, topic) = state_content(&server, &alice, &private, "m.room.topic").await;
    assert_eq!(topic["topic"], "Earl Grey");
    let (_, visibility) =
        state_content(&server, &alice, &private, "m.room.history_visibility").await;
    assert_eq!(visibility["history_visibility"], "shared");
    let (_, create) = state_content(&server, &alice, &private, "m.room.create").await;
    assert_eq!(
        create["room_version"], "12",
        "rooms default to the version Synapse creates"
    );
    assert!(
        private.starts_with('!') && !private.contains(':'),
        "v12 room ids are hashes: {private}"
    );

    let bad = server
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "preset": "secret_chat" }),
        )
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let no_token = server
        .post("/_matrix/client/v3/createRoom", None, json!({}))
        .await;
    assert_error(&no_token, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    server.finish().await;
}

async fn direct_message_is_a_trusted_chat_with_one_invite(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob, _) = users(&server).await;
    let dm = server
        .create_room(&alice, json!({ "preset": "trusted_private_chat", "is_direct": true, "invite": ["@bob:localhost"] }))
        .await;
    let (status, invite) = server
        .get(
            &TestServer::room_path(&dm, "state/m.room.member/@bob:localhost"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{invite}");
    assert_eq!(invite, json!({ "membership": "invite", "is_direct": true }));
    // In v12 the invitee of a trusted chat is a co-creator.
    let (_, create) = state_content(&server, &alice, &dm, "m.room.create").await;
    assert_eq!(create["additional_creators"], json!(["@bob:localhost"]));
    server.join(&bob, &dm).await;
    server.say(&bob, &dm, "hi alice").await;
    let (_, levels) = state_content(&server, &alice, &dm, "m.room.power_levels").await;
    assert!(
        levels["users"].get("@alice:localhost").is_none(),
        "v12 creators are not listed: {levels}"
    );
    // Marking the DM for clients is ordinary account data.
    let (status, _) = server
        .put(
            "/_matrix/client/v3/user/@alice:localhost/account_data/m.direct",
            Some(&alice),
            json!({ "@bob:localhost": [dm] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server.finish().await;
}

async fn room_versions_10_11_12_and_unsupported(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob, _) = users(&server).await;
    for version in ["10", "11", "12"] {
        let room = server
            .create_room(&alice, json!({ "room_version": version, "preset": "trusted_private_chat", "invite": ["@bob:localhost"] }))
            .await;
        let (_, create) = state_content(&server, &alice, &room, "m.room.create").await;
        assert_eq!(create["room_version"], version);
        assert_eq!(
            create.get("creator").is_some(),
            version == "10",
            "creator field only before v11: {create}"
        );
        server.join(&bob, &room).await;
        server.say(&bob, &room, "hello").await;
        // Alice (creator) may rename in every version; the trusted invitee too.
        let rename = server
            .put(
                &TestServer::room_path(&room, "state/m.room.name/"),
                Some(&bob),
                json!({ "name": format!("v{version}") }),
            )
            .await;
        assert_eq!(
            rename.0,
            StatusCode::OK,
            "trusted invitee has creator power in v{version}: {}",
            rename.1
        );
    }
    let unsupported = server
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "room_version": "9" }),
        )
        .await;
    assert_error(
        &unsupported,
        StatusCode::BAD_REQUEST,
        "M_UNSUPPORTED_ROOM_VERSION",
    );
    server.finish().await;
}

async fn non_members_can_neither_send_nor_read(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, _, carol) = users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    let event = server.say(&alice, &room, "secret").await;
    assert_error(
        &server.send_text(&carol, &room, "let me in").await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    for path in [
        TestServer::room_path(&room, "messages?dir=b"),
        TestServer::room_path(&room, "state"),
        TestServer::room_path(&room, "state/m.room.create/"),
        TestServer::room_path(&room, "members"),
        TestServer::room_path(&room, "joined_members"),
        TestServer::room_path(&room, &format!("context/{}", encode(&event))),
    ] {
        assert_error(
            &server.get(&path, Some(&carol)).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
    }
    let event_path = TestServer::room_path(&room, &format!("event/{}", encode(&event)));
    let single = server.get(&event_path, Some(&carol)).await;
    assert!(
        single.0 == StatusCode::FORBIDDEN || single.0 == StatusCode::NOT_FOUND,
        "{:?}",
        single
    );
    let unknown = server.send_text(&alice, "!nosuchroom:localhost", "x").await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    server.finish().await;
}

async fn members_without_power_cannot_rename_kick_or_redact(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob, carol) = users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat", "name": "Group" }))
        .await;
    server.join(&bob, &room).await;
    server.join(&carol, &room).await;
    let alices = server.say(&alice, &room, "from alice").await;
    let bobs = server.say(&bob, &room, "from bob").await;

    let rename = server
        .put(
            &TestServer::room_path(&room, "state/m.room.name/"),
            Some(&bob),
            json!({ "name": "Bob's" }),
        )
        .await;
    assert_error(&rename, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (_, name) = state_content(&server, &alice, &room, "m.room.name").await;
    assert_eq!(name["name"], "Group", "a refused rename changes nothing");

    let kick = server
        .post(
            &TestServer::room_path(&room, "kick"),
            Some(&bob),
            json!({ "user_id": "@carol:localhost" }),
        )
        .await;
    assert_error(&kick, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let ban = server
        .post(
            &TestServer::room_path(&room, "ban"),
            Some(&bob),
            json!({ "user_id": "@carol:localhost" }),
        )
        .await;
    assert_error(&ban, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    let redact_other = server
        .put(
            &TestServer::room_path(&room, &format!("redact/{}/r1", encode(&alices))),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_error(&redact_other, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let redact_own = server
        .put(
            &TestServer::room_path(&room, &format!("redact/{}/r2", encode(&bobs))),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(
        redact_own.0,
        StatusCode::OK,
        "users may redact their own events: {}",
        redact_own.1
    );

    // The creator (room admin) may do all of it.
    let rename = server
        .put(
            &TestServer::room_path(&room, "state/m.room.name/"),
            Some(&alice),
            json!({ "name": "Renamed" }),
        )
        .await;
    assert_eq!(rename.0, StatusCode::OK);
    let kick = server
        .post(
            &TestServer::room_path(&room, "kick"),
            Some(&alice),
            json!({ "user_id": "@carol:localhost" }),
        )
        .await;
    assert_eq!(kick.0, StatusCode::OK, "{}", kick.1);
    server.finish().await;
}

async fn kicked_and_banned_users_cannot_send_or_see_later_messages(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob, carol) = users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat", "name": "Before" }))
        .await;
    server.join(&bob, &room).await;
    server.join(&carol, &room).await;
    server.say(&alice, &room, "while bob was here").await;
    let kick = server
        .post(
            &TestServer::room_path(&room, "kick"),
            Some(&alice),
            json!({ "user_id": "@bob:localhost", "reason": "spam" }),
        )
        .await;
    assert_eq!(kick.0, StatusCode::OK);
    let after_kick = server.say(&alice, &room, "after bob left").await;
    server
        .put(
            &TestServer::room_path(&room, "state/m.room.name/"),
            Some(&alice),
            json!({ "name": "After" }),
        )
        .await;

    assert_error(
        &server.send_text(&bob, &room, "still here?").await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let seen = bodies(&server.all_messages(&bob, &room).await);
    assert!(seen.contains(&"while bob was here".to_owned()), "{seen:?}");
    assert!(
        !seen.contains(&"after bob left".to_owned()),
        "kicked users must not see later messages: {seen:?}"
    );
    let later = server
        .get(
            &TestServer::room_path(&room, &format!("event/{}", encode(&after_kick))),
            Some(&bob),
        )
        .await;
    assert_error(&later, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let (_, name) = state_content(&server, &bob, &room, "m.room.name").await;
    assert_eq!(
        name["name"], "Before",
        "former members see the state as it was when they left"
    );

    let ban = server
        .post(
            &TestServer::room_path(&room, "ban"),
            Some(&alice),
            json!({ "user_id": "@carol:localhost" }),
        )
        .await;
    assert_eq!(ban.0, StatusCode::OK);
    assert_error(
        &server.send_text(&carol, &room, "hello?").await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let rejoin = server
        .post(
            &TestServer::room_path(&room, "join"),
            Some(&carol),
            json!({}),
        )
        .await;
    assert_error(&rejoin, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let unban = server
        .post(
            &TestServer::room_path(&room, "unban"),
            Some(&alice),
            json!({ "user_id": "@carol:localhost" }),
        )
        .await;
    assert_eq!(unban.0, StatusCode::OK);
    server.join(&carol, &room).await;
    server.say(&carol, &room, "back").await;
    let unban_again = server
        .post(
            &TestServer::room_path(&room, "unban"),
            Some(&alice),
            json!({ "user_id": "@carol:localhost" }),
        )
        .await;
    assert_error(&unban_again, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    server.finish().await;
}

async fn invite_only_rooms_need_an_invite(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob, carol) = users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    let uninvited = server
        .post(
            &TestServer::room_path(&room, "join"),
            Some(&carol),
            json!({}),
        )
        .await;
    assert_error(&uninvited, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let invite = server
        .post(
            &TestServer::room_path(&room, "invite"),
            Some(&alice),
            json!({ "user_id": "@bob:localhost" }),
        )
        .await;
    assert_eq!(invite.0, StatusCode::OK, "{}", invite.1);
    // Private chats let members invite (invite level 0).
    server.join(&bob, &room).await;
    let invite = server
        .post(
            &TestServer::room_path(&room, "invite"),
            Some(&bob),
            json!({ "user_id": "@carol:localhost" }),
        )
        .await;
    assert_eq!(invite.0, StatusCode::OK, "{}", invite.1);
    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/join/{}", encode(&room)),
            Some(&carol),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["room_id"].as_str()),
        (StatusCode::OK, Some(room.as_str()))
    );
    let bad_user = server
        .post(
            &TestServer::room_path(&room, "invite"),
            Some(&alice),
            json!({ "user_id": "not-a-user" }),
        )
        .await;
    assert_error(&bad_user, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    server.finish().await;
}

async fn history_visibility_is_honoured(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob, carol) = users(&server).await;
    for (setting, invited_sees, joiner_sees_earlier, outsider_reads) in [
        ("shared", false, true, false),
        ("invited", true, false, false),
        ("joined", false, false, false),
        ("world_readable", true, true, true),
    ] {
        let room = server
            .create_room(
                &alice,
                json!({ "preset": "public_chat", "initial_state": [{
                    "type": "m.room.history_visibility", "content": { "history_visibility": setting }
                }] }),
            )
            .await;
        server.say(&alice, &room, "before invite").await;
        server
            .post(
                &TestServer::room_path(&room, "invite"),
                Some(&alice),
                json!({ "user_id": "@bob:localhost" }),
            )
            .await;
        server.say(&alice, &room, "while invited").await;

        let outsider = server
            .get(
                &TestServer::room_path(&room, "messages?dir=b"),
                Some(&carol),
            )
            .await;
        assert_eq!(
            outsider.0 == StatusCode::OK,
            outsider_reads,
            "{setting}: outsider read {:?}",
            outsider
        );

        let seen_invited = bodies(&server.all_messages(&bob, &room).await);
        assert_eq!(
            seen_invited.contains(&"while invited".to_owned()),
            invited_sees,
            "{setting}: {seen_invited:?}"
        );
        server.join(&bob, &room).await;
        server.say(&alice, &room, "after join").await;
        let seen = bodies(&server.all_messages(&bob, &room).await);
        assert!(
            seen.contains(&"after join".to_owned()),
            "{setting}: {seen:?}"
        );
        assert_eq!(
            seen.contains(&"before invite".to_owned()),
            joiner_sees_earlier,
            "{setting}: {seen:?}"
        );
        // Bob leaves: later messages are hidden again (unless world readable).
        server
            .post(
                &TestServer::room_path(&room, "leave"),
                Some(&bob),
                json!({}),
            )
            .await;
        server.say(&alice, &room, "after leave").await;
        let seen = bodies(&server.all_messages(&bob, &room).await);
        assert_eq!(
            seen.contains(&"after leave".to_owned()),
            setting == "world_readable",
            "{setting}: {seen:?}"
        );
        assert!(
            seen.contains(&"after join".to_owned()),
            "{setting}: {seen:?}"
        );
    }
    server.finish().await;
}

async fn redacted_content_is_stripped_on_every_read_path(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob, _) = users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob, &room).await;
    let secret = server.say(&bob, &room, "my password is hunter2").await;
    server.say(&bob, &room, "oops").await;
    let redaction = server
        .put(
            &TestServer::room_path(&room, &format!("redact/{}/x1", encode(&secret))),
            Some(&alice),
            json!({ "reason": "leak" }),
        )
        .await;
    assert_eq!(redaction.0, StatusCode::OK, "{}", redaction.1);
    let redaction_id = redaction.1["event_id"].as_str().unwrap().to_owned();

    let check = |event: &Value, path: &str| {
        assert_eq!(event["event_id"], secret.as_str(), "{path}");
        assert_eq!(
            event["content"],
            json!({}),
            "{path}: content must be stripped: {event}"
        );
        assert_eq!(
            event["unsigned"]["redacted_because"]["event_id"],
            redaction_id.as_str(),
            "{path}: {event}"
        );
    };
    let (_, single) = server
        .get(
            &TestServer::room_path(&room, &format!("event/{}", encode(&secret))),
            Some(&bob),
        )
        .await;
    check(&single, "event");
    let messages = server.all_messages(&bob, &room).await;
    let in_messages = messages
        .iter()
        .find(|e| e["event_id"] == secret.as_str())
        .expect("still in the timeline");
    check(in_messages, "messages");
    let (_, context) = server
        .get(
            &TestServer::room_path(&room, &format!("context/{}", encode(&secret))),
            Some(&alice),
        )
        .await;
    check(&context["event"], "context");
    let redaction_event = messages
        .iter()
        .find(|e| e["event_id"] == redaction_id.as_str())
        .expect("redaction in timeline");
    assert_eq!(redaction_event["content"]["redacts"], secret.as_str());
    assert_eq!(
        redaction_event["redacts"],
        secret.as_str(),
        "also at the top level for older clients"
    );
    assert!(
        !serde_json::to_string(&messages)
            .unwrap()
            .contains("hunter2")
    );
    server.finish().await;
}

async fn transaction_ids_are_idempotent_per_device(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, _, _) = users(&server).await;
    let laptop = server.login("alice", PASSWORD).await.access_token;
    let room = server.create_room(&alice, json!({})).await;
    let path = TestServer::room_path(&room, "send/m.room.message/same-txn");
    let body = json!({ "msgtype": "m.text", "body": "once" });
    let (_, first) = server.put(&path, Some(&alice), body.clone()).await;
    let (_, again) = server.put(&path, Some(&alice), body.clone()).await;
    assert_eq!(first["event_id"], again["event_id"]);
    let (_, other_device) = server.put(&path, Some(&laptop), body).await;
    assert_ne!(
        first["event_id"], other_device["event_id"],
        "transaction ids are per device"
    );
    assert_eq!(
        bodies(&server.all_messages(&alice, &room).await),
        vec!["once", "once"]
    );
    let state_type = server
        .put(
            &TestServer::room_path(&room, "send/m.room.member/t9"),
            Some(&alice),
            json!({ "membership": "join" }),
        )
        .await;
    assert_error(&state_type, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let float = server
        .put(
            &TestServer::room_path(&room, "send/m.room.message/t10"),
            Some(&alice),
            json!({ "body": "x", "n": 1.5 }),
        )
        .await;
    assert_error(&float, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    server.finish().await;
}

async fn pagination_returns_each_of_1000_messages_once_in_order(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, _, _) = users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    let mut sent = Vec::new();
    for n in 0..1000 {
        sent.push(server.say(&alice, &room, &format!("message {n}")).await);
    }
    let backwards: Vec<String> = server
        .all_messages(&alice, &room)
        .await
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        backwards, sent,
        "backward pagination: every message once, in order"
    );

    let mut forwards = Vec::new();
    let mut from = "t0".to_owned();
    loop {
        let path = TestServer::room_path(&room, &format!("messages?dir=f&limit=37&from={from}"));
        let (status, page) = server.get(&path, Some(&alice)).await;
        assert_eq!(status, StatusCode::OK);
        let chunk = page["chunk"].as_array().unwrap();
        assert!(chunk.len() <= 37);
        forwards.extend(
            chunk
                .iter()
                .filter(|e| e["type"] == "m.room.message")
                .map(|e| e["event_id"].as_str().unwrap().to_owned()),
        );
        match page["end"].as_str() {
            Some(end) => from = end.to_owned(),
            None => break,
        }
    }
    assert_eq!(
        forwards, sent,
        "forward pagination: every message once, in order"
    );
    let bad = server
        .get(
            &TestServer::room_path(&room, "messages?dir=b&from=garbage"),
            Some(&alice),
        )
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let bad_dir = server
        .get(
            &TestServer::room_path(&room, "messages?dir=x"),
            Some(&alice),
        )
        .await;
    assert_error(&bad_dir, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    server.finish().await;
}

async fn events_verify_after_a_reload(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let (alice, bob, _) = users(&server).await;
    let mut rooms = Vec::new();
    for version in ["10", "11", "12"] {
        let room = server
            .create_room(
                &alice,
                json!({ "room_version": version, "preset": "public_chat", "name": "signed" }),
            )
            .await;
        server.join(&bob, &room).await;
        server.say(&bob, &room, "signed message").await;
        rooms.push((room, version));
    }
    server.restart().await;

    let key = federation::keys::SigningKey::load_or_generate(
        &server.config().data_dir.join("signing.key"),
    )
    .unwrap();
    let store = homeserver::storage::Store::connect(&server.config().database_url(), 2)
        .await
        .unwrap();
    for (room, version) in rooms {
        let rules = federation::pdu::rules_for(&version.try_into().unwrap()).unwrap();
        let events = store
            .room_events(&room, homeserver::storage::EventRange::After(0), 1000)
            .await
            .unwrap();
        assert!(
            events.len() >= 7,
            "create, join, power levels, rules, visibility, name, join, message"
        );
        for event in events {
            let json: ruma::CanonicalJsonObject = serde_json::from_str(&event.json).unwrap();
            federation::pdu::verify(
                &json,
                "localhost",
                &key.key_id(),
                &key.public_key_base64(),
                &rules,
            )
            .unwrap_or_else(|e| panic!("{} in v{version} does not verify: {e}", event.event_id));
            assert_eq!(
                federation::pdu::event_id_of(&json, &rules)
                    .unwrap()
                    .as_str(),
                event.event_id,
                "id is the reference hash"
            );
            for field in [
                "auth_events",
                "prev_events",
                "depth",
                "hashes",
                "signatures",
            ] {
                assert!(json.contains_key(field), "{field} in {}", event.event_id);
            }
        }
    }
    store.close().await;
    server.finish().await;
}

async fn state_members_and_joined_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob, carol) = users(&server).await;
    let room = server
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "invite": ["@carol:localhost"] }),
        )
        .await;
    server.join(&bob, &room).await;
    let (status, state) = server
        .get(&TestServer::room_path(&room, "state"), Some(&bob))
        .await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = state
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for kind in [
        "m.room.create",
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.member",
    ] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
    let (_, members) = server
        .get(&TestServer::room_path(&room, "members"), Some(&bob))
        .await;
    assert_eq!(members["chunk"].as_array().unwrap().len(), 3);
    let (_, joined) = server
        .get(
            &TestServer::room_path(&room, "members?membership=join"),
            Some(&bob),
        )
        .await;
    assert_eq!(joined["chunk"].as_array().unwrap().len(), 2);
    let (_, not_joined) = server
        .get(
            &TestServer::room_path(&room, "members?not_membership=join"),
            Some(&bob),
        )
        .await;
    assert_eq!(not_joined["chunk"][0]["state_key"], "@carol:localhost");
    let (_, joined_members) = server
        .get(
            &TestServer::room_path(&room, "joined_members"),
            Some(&alice),
        )
        .await;
    assert_eq!(
        joined_members["joined"]["@bob:localhost"]["display_name"],
        "bob"
    );
    assert!(joined_members["joined"].get("@carol:localhost").is_none());
    assert_error(
        &server
            .get(
                &TestServer::room_path(&room, "joined_members"),
                Some(&carol),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let (_, rooms) = server
        .get("/_matrix/client/v3/joined_rooms", Some(&bob))
        .await;
    assert_eq!(rooms, json!({ "joined_rooms": [room] }));
    let (_, rooms) = server
        .get("/_matrix/client/v3/joined_rooms", Some(&carol))
        .await;
    assert_eq!(
        rooms,
        json!({ "joined_rooms": [] }),
        "invites are not joins"
    );
    let (status, event) = server
        .get(
            &TestServer::room_path(&room, "state/m.room.join_rules/?format=event"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(event["type"], "m.room.join_rules");
    assert_eq!(event["room_id"], room.as_str());
    let missing = server
        .get(
            &TestServer::room_path(&room, "state/m.room.topic/"),
            Some(&bob),
        )
        .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    // Membership through the state endpoint obeys the same rules: Bob may
    // not remove Alice; Alice (the creator) may remove Bob.
    let bob_kicks_alice = server
        .put(
            &TestServer::room_path(&room, "state/m.room.member/@alice:localhost"),
            Some(&bob),
            json!({ "membership": "leave" }),
        )
        .await;
    assert_error(&bob_kicks_alice, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let member_via_state = server
        .put(
            &TestServer::room_path(&room, "state/m.room.member/@bob:localhost"),
            Some(&alice),
            json!({ "membership": "leave" }),
        )
        .await;
    assert_eq!(member_via_state.0, StatusCode::OK, "{}", member_via_state.1);
    let (_, rooms) = server
        .get("/_matrix/client/v3/joined_rooms", Some(&bob))
        .await;
    assert_eq!(rooms, json!({ "joined_rooms": [] }));
    server.finish().await;
}

async fn context_shows_events_around_one(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, _, _) = users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for n in 0..9 {
            ids.push(server.say(&alice, &room, &format!("m{n}")).await);
        }
        ids
    };
    let (status, context) = server
        .get(
            &TestServer::room_path(&room, &format!("context/{}?limit=4", encode(&ids[4]))),
            Some(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{context}");
    assert_eq!(context["event"]["event_id"], ids[4].as_str());
    let before: Vec<&str> = context["events_before"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let after: Vec<&str> = context["events_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        before,
        vec![ids[3].as_str(), ids[2].as_str()],
        "events_before: newest first"
    );
    assert_eq!(after, vec![ids[5].as_str(), ids[6].as_str()]);
    assert!(
        context["state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.create")
    );
    // Paginating from `end` continues right after the last event shown.
    let end = context["end"].as_str().unwrap();
    let (_, next) = server
        .get(
            &TestServer::room_path(&room, &format!("messages?dir=f&limit=1&from={end}")),
            Some(&alice),
        )
        .await;
    assert_eq!(next["chunk"][0]["event_id"], ids[7].as_str());
    let unknown = server
        .get(
            &TestServer::room_path(&room, "context/$unknown"),
            Some(&alice),
        )
        .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    server.finish().await;
}

async fn messages_filter_by_type_and_sender(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob, _) = users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob, &room).await;
    server.say(&alice, &room, "a1").await;
    server.say(&bob, &room, "b1").await;
    server.say(&alice, &room, "a2").await;
    let filter = encode(
        &json!({ "types": ["m.room.message"], "senders": ["@alice:localhost"] }).to_string(),
    );
    let (status, page) = server
        .get(
            &TestServer::room_path(&room, &format!("messages?dir=b&filter={filter}")),
            Some(&bob),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(bodies(page["chunk"].as_array().unwrap()), vec!["a2", "a1"]);
    let filter = encode(&json!({ "not_types": ["m.room.*"] }).to_string());
    let (_, page) = server
        .get(
            &TestServer::room_path(&room, &format!("messages?dir=b&filter={filter}")),
            Some(&bob),
        )
        .await;
    assert!(page["chunk"].as_array().unwrap().is_empty(), "{page}");
    let filter = encode(&json!({ "lazy_load_members": true, "limit": 1 }).to_string());
    let (_, page) = server
        .get(
            &TestServer::room_path(&room, &format!("messages?dir=b&filter={filter}")),
            Some(&bob),
        )
        .await;
    assert_eq!(page["chunk"].as_array().unwrap().len(), 1);
    assert_eq!(
        page["state"][0]["state_key"], "@alice:localhost",
        "the sender's membership comes along: {page}"
    );
    let bad = server
        .get(
            &TestServer::room_path(&room, "messages?dir=b&filter=notjson"),
            Some(&bob),
        )
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    server.finish().await;
}

async fn leaving_and_forgetting(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob, _) = users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob, &room).await;
    let forget_joined = server
        .post(
            &TestServer::room_path(&room, "forget"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_error(&forget_joined, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    let leave = server
        .post(
            &TestServer::room_path(&room, "leave"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(leave.0, StatusCode::OK);
    let (_, rooms) = server
        .get("/_matrix/client/v3/joined_rooms", Some(&bob))
        .await;
    assert_eq!(rooms["joined_rooms"], json!([]));
    let forget = server
        .post(
            &TestServer::room_path(&room, "forget"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(forget.0, StatusCode::OK);
    // Invites can be rejected by leaving.
    let private = server
        .create_room(&alice, json!({ "invite": ["@bob:localhost"] }))
        .await;
    let reject = server
        .post(
            &TestServer::room_path(&private, "leave"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(reject.0, StatusCode::OK);
    let (_, member) = server
        .get(
            &TestServer::room_path(&private, "state/m.room.member/@bob:localhost"),
            Some(&alice),
        )
        .await;
    assert_eq!(member["membership"], "leave");
    server.finish().await;
}
