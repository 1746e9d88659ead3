//! Rooms across TeaTime servers on loopback: joins through another server,
//! messages both ways, invites, kicks and bans of remote users, typing and
//! receipts, and delivery to a server that was down.

mod common;

use std::time::Duration;

use common::{Backend, PASSWORD, TestServer, client::eventually, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    remote_user_joins_and_messages_flow_both_ways,
    remote_invite_to_a_direct_message,
    kicked_and_banned_remote_users_stop_receiving,
    typing_receipts_and_to_device_cross_servers,
    history_is_backfilled_as_visibility_allows,
    a_server_that_was_down_gets_its_queue_once,
    partitioned_servers_converge,
    three_servers_share_a_room,
);

fn name_of(server: &TestServer) -> String {
    server.config().server_name.clone()
}

/// The JSON of every event of the room `server` stored (up to 1,000).
async fn stored_json(server: &TestServer, room_id: &str) -> Vec<String> {
    server
        .state()
        .store
        .room_events(
            room_id,
            homeserver::storage::EventRange::AtOrBefore(i64::MAX),
            1000,
        )
        .await
        .expect("stored events")
        .into_iter()
        .map(|e| e.json)
        .collect()
}

async fn remote_user_joins_and_messages_flow_both_ways(backend: Backend) {
    let a = TestServer::start_federating(backend).await;
    let b = TestServer::start_federating(backend).await;
    let alice = a.register("alice", PASSWORD).await;
    let bob = b.register("bob", PASSWORD).await;
    let room = a
        .create_room(
            &alice.access_token,
            json!({ "preset": "public_chat", "name": "Across", "room_alias_name": "across" }),
        )
        .await;
    a.say(&alice.access_token, &room, "before bob").await;

    // Bob joins through the alias, which his server resolves with alice's.
    let alias = format!("#across:{}", name_of(&a));
    let (status, joined) = b
        .post(
            &format!("/_matrix/client/v3/join/{}", encode(&alias)),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["room_id"], room.as_str());

    // Bob's server has the room's state; alice's sees bob joined.
    let (status, name) = b
        .get(
            &TestServer::room_path(&room, "state/m.room.name/"),
            Some(&bob.access_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{name}");
    assert_eq!(name["name"], "Across");
    assert_eq!(
        a.client(&alice)
            .membership_of(&room, &bob.user_id)
            .await
            .as_deref(),
        Some("join")
    );

    b.say(&bob.access_token, &room, "hello from b").await;
    a.say(&alice.access_token, &room, "hello from a").await;
    let on_a = eventually("bob's message on a", async || {
        let found = a.client(&alice).bodies(&room).await;
        found.contains(&"hello from b".to_owned()).then_some(found)
    })
    .await;
    let on_b = eventually("alice's message on b", async || {
        let found = b.client(&bob).bodies(&room).await;
        found.contains(&"hello from a".to_owned()).then_some(found)
    })
    .await;
    assert_eq!(
        on_a.iter().filter(|b| *b == "hello from b").count(),
        1,
        "delivered once: {on_a:?}"
    );
    assert!(on_b.contains(&"hello from b".to_owned()), "{on_b:?}");
    assert_eq!(on_b.iter().filter(|b| *b == "hello from a").count(), 1);

    // Bob's sync shows the room, its name and the messages.
    let (status, sync) = b
        .get("/_matrix/client/v3/sync", Some(&bob.access_token))
        .await;
    assert_eq!(status, StatusCode::OK);
    let joined_room = &sync["rooms"]["join"][&room];
    assert!(joined_room.is_object(), "{sync}");
    let mut seen: Vec<&Value> = joined_room["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    seen.extend(joined_room["timeline"]["events"].as_array().unwrap());
    assert!(
        seen.iter().any(|e| e["type"] == "m.room.name"),
        "{joined_room}"
    );
    assert!(
        seen.iter().any(|e| e["type"] == "m.room.create"),
        "{joined_room}"
    );
    a.finish().await;
    b.finish().await;
}

async fn remote_invite_to_a_direct_message(backend: Backend) {
    let a = TestServer::start_federating(backend).await;
    let b = TestServer::start_federating(backend).await;
    let alice = a.register("alice", PASSWORD).await;
    let bob = b.register("bob", PASSWORD).await;
    let room = a
        .create_room(
            &alice.access_token,
            json!({ "preset": "trusted_private_chat", "is_direct": true, "invite": [bob.user_id] }),
        )
        .await;

    // Bob's sync shows the invite, marked direct, from alice.
    let invite = eventually("the invite on b", async || {
        let (_, sync) = b
            .get("/_matrix/client/v3/sync", Some(&bob.access_token))
            .await;
        let invite = sync["rooms"]["invite"][&room]["invite_state"]["events"].clone();
        invite.is_array().then_some(invite)
    })
    .await;
    let own = invite
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str())
        .cloned()
        .expect("the invite itself");
    assert_eq!(own["content"]["membership"], "invite");
    assert_eq!(own["content"]["is_direct"], true);
    assert_eq!(own["sender"], alice.user_id.as_str());
    assert!(
        invite
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.create"),
        "{invite}"
    );

    // Accepting joins through alice's server.
    b.join(&bob.access_token, &room).await;
    b.say(&bob.access_token, &room, "hi alice").await;
    eventually("bob's message on a", async || {
        a.client(&alice)
            .bodies(&room)
            .await
            .contains(&"hi alice".to_owned())
            .then_some(())
    })
    .await;
    a.finish().await;
    b.finish().await;
}

async fn kicked_and_banned_remote_users_stop_receiving(backend: Backend) {
    let a = TestServer::start_federating(backend).await;
    let b = TestServer::start_federating(backend).await;
    let alice = a.register("alice", PASSWORD).await;
    let bob = b.register("bob", PASSWORD).await;
    let carol = b.register("carol", PASSWORD).await;
    let room = a
        .create_room(&alice.access_token, json!({ "preset": "public_chat" }))
        .await;
    for user in [&bob, &carol] {
        let (status, body) = b.client(user).join_via(&room, &name_of(&a)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    let (status, body) = a
        .post(
            &TestServer::room_path(&room, "kick"),
            Some(&alice.access_token),
            json!({ "user_id": bob.user_id, "reason": "out" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the kick on b", async || {
        (b.client(&carol)
            .membership_of(&room, &bob.user_id)
            .await
            .as_deref()
            == Some("leave"))
        .then_some(())
    })
    .await;
    // Bob can no longer send; carol still can.
    let (status, _) = b.send_text(&bob.access_token, &room, "still here?").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    b.say(&carol.access_token, &room, "carol stays").await;

    let (status, body) = a
        .post(
            &TestServer::room_path(&room, "ban"),
            Some(&alice.access_token),
            json!({ "user_id": carol.user_id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the ban on a", async || {
        (a.client(&alice)
            .membership_of(&room, &carol.user_id)
            .await
            .as_deref()
            == Some("ban"))
        .then_some(())
    })
    .await;
    a.say(&alice.access_token, &room, "after both left").await;
    // Nobody on b is in the room any more: the message never reaches it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _) = b
        .get(
            &TestServer::room_path(&room, "messages?dir=b"),
            Some(&carol.access_token),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "former members may read up to their leave"
    );
    assert!(
        !stored_json(&b, &room)
            .await
            .iter()
            .any(|json| json.contains("after both left")),
        "b received a message sent after its users left"
    );
    // Banned carol cannot join again (once b knows of the ban: until then,
    // joining a room b thinks she is in changes nothing and succeeds).
    eventually("the ban on b", async || {
        (b.client(&carol)
            .membership_of(&room, &carol.user_id)
            .await
            .as_deref()
            == Some("ban"))
        .then_some(())
    })
    .await;
    let (status, _) = b.client(&carol).join_via(&room, &name_of(&a)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    a.finish().await;
    b.finish().await;
}

async fn typing_receipts_and_to_device_cross_servers(backend: Backend) {
    let a = TestServer::start_federating(backend).await;
    let b = TestServer::start_federating(backend).await;
    let alice = a.register("alice", PASSWORD).await;
    let bob = b.register("bob", PASSWORD).await;
    let room = a
        .create_room(&alice.access_token, json!({ "preset": "public_chat" }))
        .await;
    let (status, body) = b.client(&bob).join_via(&room, &name_of(&a)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let event = a.say(&alice.access_token, &room, "read me").await;
    eventually("the message on b", async || {
        b.client(&bob)
            .bodies(&room)
            .await
            .contains(&"read me".to_owned())
            .then_some(())
    })
    .await;

    let (status, _) = b
        .put(
            &TestServer::room_path(&room, &format!("typing/{}", encode(&bob.user_id))),
            Some(&bob.access_token),
            json!({ "typing": true, "timeout": 10000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = b
        .post(
            &TestServer::room_path(&room, &format!("receipt/m.read/{}", encode(&event))),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    eventually("bob typing and his receipt on a", async || {
        let (_, sync) = a
            .get("/_matrix/client/v3/sync", Some(&alice.access_token))
            .await;
        let ephemeral = sync["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()?
            .clone();
        let typing = ephemeral.iter().any(|e| {
            e["type"] == "m.typing"
                && e["content"]["user_ids"]
                    .as_array()
                    .is_some_and(|u| u.contains(&json!(bob.user_id)))
        });
        let receipt = ephemeral.iter().any(|e| {
            e["type"] == "m.receipt" && e["content"][&event]["m.read"][&bob.user_id].is_object()
        });
        (typing && receipt).then_some(())
    })
    .await;

    // A to-device message to all of alice's devices, once.
    for _ in 0..2 {
        let (status, _) = b
            .put(
                "/_matrix/client/v3/sendToDevice/m.test/txn1",
                Some(&bob.access_token),
                json!({ "messages": { &alice.user_id: { "*": { "secret": "psst" } } } }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let delivered = eventually("the to-device message on a", async || {
        let (_, sync) = a
            .get("/_matrix/client/v3/sync", Some(&alice.access_token))
            .await;
        let events = sync["to_device"]["events"].as_array()?.clone();
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["sender"], bob.user_id.as_str());
    assert_eq!(delivered[0]["content"]["secret"], "psst");
    a.finish().await;
    b.finish().await;
}

async fn history_is_backfilled_as_visibility_allows(backend: Backend) {
    let a = TestServer::start_federating(backend).await;
    let b = TestServer::start_federating(backend).await;
    let alice = a.register("alice", PASSWORD).await;
    let bob = b.register("bob", PASSWORD).await;
    let shared = a
        .create_room(&alice.access_token, json!({ "preset": "public_chat" }))
        .await;
    let before: Vec<String> = (0..30).map(|n| format!("shared {n}")).collect();
    for text in &before {
        a.say(&alice.access_token, &shared, text).await;
    }
    let members_only = a
        .create_room(
            &alice.access_token,
            json!({
                "preset": "public_chat",
                "initial_state": [{
                    "type": "m.room.history_visibility",
                    "state_key": "",
                    "content": { "history_visibility": "joined" },
                }],
            }),
        )
        .await;
    a.say(&alice.access_token, &members_only, "secret before bob")
        .await;

    for room in [&shared, &members_only] {
        let (status, body) = b.client(&bob).join_via(room, &name_of(&a)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    a.say(&alice.access_token, &members_only, "after bob joined")
        .await;

    // Paging back through the shared room fetches its history from a.
    assert_eq!(b.client(&bob).bodies(&shared).await, before);
    let seen = eventually("the message after bob joined", async || {
        let seen = b.client(&bob).bodies(&members_only).await;
        seen.contains(&"after bob joined".to_owned())
            .then_some(seen)
    })
    .await;
    assert_eq!(seen, ["after bob joined"]);
    // A never even sent b the text bob was not allowed to see.
    assert!(
        !stored_json(&b, &members_only)
            .await
            .iter()
            .any(|json| json.contains("secret before bob")),
        "the hidden message reached b"
    );
    a.finish().await;
    b.finish().await;
}

async fn a_server_that_was_down_gets_its_queue_once(backend: Backend) {
    let a = TestServer::start_federating(backend).await;
    let mut b = TestServer::start_federating(backend).await;
    let alice = a.register("alice", PASSWORD).await;
    let bob = b.register("bob", PASSWORD).await;
    let room = a
        .create_room(&alice.access_token, json!({ "preset": "public_chat" }))
        .await;
    let (status, body) = b.client(&bob).join_via(&room, &name_of(&a)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    b.stop().await;
    let sent: Vec<String> = (0..60).map(|n| format!("while b was down {n}")).collect();
    for text in &sent {
        a.say(&alice.access_token, &room, text).await;
    }
    // An administrator of a sees the queue and the failures.
    a.make_admin(&alice.user_id).await;
    let failing = eventually("failures recorded for b", async || {
        let state = destination(&a, &alice.access_token, &name_of(&b)).await;
        (state["failures"].as_i64() >= Some(1)).then_some(state)
    })
    .await;
    assert_eq!(failing["queued"], 60, "{failing}");
    assert!(failing["last_error"].is_string(), "{failing}");
    b.start_again().await;

    let seen = eventually("the queued messages on b", async || {
        let seen = b.client(&bob).bodies(&room).await;
        (seen.len() >= sent.len()).then_some(seen)
    })
    .await;
    assert_eq!(seen, sent, "each message once, in order");
    let recovered = eventually("b's queue emptied", async || {
        let state = destination(&a, &alice.access_token, &name_of(&b)).await;
        (state["queued"] == 0 && state["failures"] == 0).then_some(state)
    })
    .await;
    assert!(recovered["last_success_ts"].is_i64(), "{recovered}");
    b.say(&bob.access_token, &room, "back").await;
    eventually("b's message on a", async || {
        a.client(&alice)
            .bodies(&room)
            .await
            .contains(&"back".to_owned())
            .then_some(())
    })
    .await;
    a.finish().await;
    b.finish().await;
}

/// What `server`'s admin API says about sending to `destination` (null: nothing).
async fn destination(server: &TestServer, admin: &str, destination: &str) -> Value {
    let (status, body) = server
        .get("/_teatime/admin/v1/federation/destinations", Some(admin))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .find(|d| d["destination"] == destination)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Replaces a server's federation deny list through its admin API.
async fn deny(server: &TestServer, admin: &str, servers: &[String]) {
    let (status, body) = server
        .put(
            "/_teatime/admin/v1/federation/rules",
            Some(admin),
            json!({ "allow": [], "deny": servers }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn room_name(server: &TestServer, token: &str, room_id: &str) -> Option<String> {
    let (status, body) = server
        .get(
            &TestServer::room_path(room_id, "state/m.room.name/"),
            Some(token),
        )
        .await;
    (status == StatusCode::OK).then(|| body["name"].as_str().unwrap_or_default().to_owned())
}

async fn partitioned_servers_converge(backend: Backend) {
    let a = TestServer::start_federating(backend).await;
    let b = TestServer::start_federating(backend).await;
    let alice = a.register("alice", PASSWORD).await;
    let bob = b.register("bob", PASSWORD).await;
    a.make_admin(&alice.user_id).await;
    b.make_admin(&bob.user_id).await;
    let room = a
        .create_room(
            &alice.access_token,
            json!({
                "preset": "public_chat",
                "name": "before",
                // Both may rename it.
                "power_level_content_override": { "events": { "m.room.name": 0 } },
            }),
        )
        .await;
    let (status, body) = b.client(&bob).join_via(&room, &name_of(&a)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The link goes down: each refuses the other.
    deny(&a, &alice.access_token, &[name_of(&b)]).await;
    deny(&b, &bob.access_token, &[name_of(&a)]).await;
    for (server, user, name) in [(&a, &alice, "named on a"), (&b, &bob, "named on b")] {
        let (status, body) = server
            .put(
                &TestServer::room_path(&room, "state/m.room.name/"),
                Some(&user.access_token),
                json!({ "name": name }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let mut expected = Vec::new();
    for n in 0..5 {
        for (server, user, side) in [(&a, &alice, "a"), (&b, &bob, "b")] {
            let text = format!("{side} during the split {n}");
            server.say(&user.access_token, &room, &text).await;
            expected.push(text);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        room_name(&a, &alice.access_token, &room).await.as_deref(),
        Some("named on a")
    );
    assert_eq!(
        room_name(&b, &bob.access_token, &room).await.as_deref(),
        Some("named on b")
    );

    // The link comes back: both end with the same state and every message.
    deny(&a, &alice.access_token, &[]).await;
    deny(&b, &bob.access_token, &[]).await;
    expected.sort();
    for (server, user) in [(&a, &alice), (&b, &bob)] {
        eventually("every message on both sides", async || {
            let mut seen = server.client(user).bodies(&room).await;
            seen.sort();
            (seen == expected).then_some(())
        })
        .await;
    }
    let name = eventually("one name on both sides", async || {
        let on_a = room_name(&a, &alice.access_token, &room).await?;
        let on_b = room_name(&b, &bob.access_token, &room).await?;
        (on_a == on_b).then_some(on_a)
    })
    .await;
    assert!(name == "named on a" || name == "named on b", "{name}");
    // A message after the merge refers to both forks and changes nothing.
    a.say(&alice.access_token, &room, "merged").await;
    eventually("the merge on b", async || {
        b.client(&bob)
            .bodies(&room)
            .await
            .contains(&"merged".to_owned())
            .then_some(())
    })
    .await;
    assert_eq!(room_name(&b, &bob.access_token, &room).await, Some(name));
    a.finish().await;
    b.finish().await;
}

async fn three_servers_share_a_room(backend: Backend) {
    let a = TestServer::start_federating(backend).await;
    let b = TestServer::start_federating(backend).await;
    let c = TestServer::start_federating(backend).await;
    let alice = a.register("alice", PASSWORD).await;
    let bob = b.register("bob", PASSWORD).await;
    let carol = c.register("carol", PASSWORD).await;
    let room = a
        .create_room(&alice.access_token, json!({ "preset": "public_chat" }))
        .await;
    for (server, user) in [(&b, &bob), (&c, &carol)] {
        let (status, body) = server.client(user).join_via(&room, &name_of(&a)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for (server, user, text) in [
        (&a, &alice, "from a"),
        (&b, &bob, "from b"),
        (&c, &carol, "from c"),
    ] {
        server.say(&user.access_token, &room, text).await;
    }
    for (server, user) in [(&a, &alice), (&b, &bob), (&c, &carol)] {
        eventually("every message on every server", async || {
            let seen = server.client(user).bodies(&room).await;
            ["from a", "from b", "from c"]
                .iter()
                .all(|text| seen.iter().filter(|s| s == text).count() == 1)
                .then_some(())
        })
        .await;
    }
    a.finish().await;
    b.finish().await;
    c.finish().await;
}
