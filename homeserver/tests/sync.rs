//! `/sync`: initial and incremental sync, long-polls that wake for new
//! messages, invites, leaves and account data, limited timelines, filters,
//! and rooms a user may not see.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, PASSWORD, TestServer, assert_error, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    initial_sync_shows_joined_rooms_and_invites,
    incremental_sync_returns_only_what_is_new,
    long_poll_wakes_for_a_message,
    long_poll_wakes_for_an_invite_and_account_data,
    leaving_shows_in_rooms_leave,
    limited_timeline_continues_with_messages,
    filters_by_id_and_inline,
    other_rooms_never_appear,
    typing_reaches_members_and_stops,
    receipts_unread_counts_and_read_markers,
    to_device_messages_arrive_once,
    long_poll_wakes_for_a_receipt,
    presence_is_shared_with_room_members,
);

async fn sync(server: &TestServer, token: &str, query: &str) -> Value {
    let (status, body) = server
        .get(&format!("/_matrix/client/v3/sync{query}"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn timeline_bodies(sync: &Value, room: &str) -> Vec<String> {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "m.room.message")
                .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn two_users(server: &TestServer) -> (String, String) {
    let alice = server.register("alice", PASSWORD).await.access_token;
    let bob = server.register("bob", PASSWORD).await.access_token;
    (alice, bob)
}

async fn initial_sync_shows_joined_rooms_and_invites(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let room = server
        .create_room(
            &alice,
            json!({ "name": "Tea", "invite": ["@bob:localhost"] }),
        )
        .await;
    server.say(&alice, &room, "hello").await;

    let initial = sync(&server, &alice, "").await;
    let next = initial["next_batch"].as_str().expect("next_batch");
    assert!(next.starts_with('s'), "{next}");
    let joined = &initial["rooms"]["join"][&room];
    assert_eq!(timeline_bodies(&initial, &room), vec!["hello"]);
    let kinds: Vec<&str> = joined["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds[0], "m.room.create",
        "the whole short history fits: {kinds:?}"
    );
    assert_eq!(joined["timeline"]["limited"], false);
    assert_eq!(
        joined["unread_notifications"],
        json!({ "highlight_count": 0, "notification_count": 0 })
    );

    let invited = sync(&server, &bob, "").await;
    let invite_state = invited["rooms"]["invite"][&room]["invite_state"]["events"]
        .as_array()
        .expect("invite");
    let kinds: Vec<&str> = invite_state
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"m.room.name") && kinds.contains(&"m.room.member"),
        "{kinds:?}"
    );
    assert!(
        invite_state.iter().all(|e| e.get("event_id").is_none()),
        "invite state is stripped"
    );
    assert!(invited["rooms"]["join"].as_object().unwrap().is_empty());
    let bad = server
        .get("/_matrix/client/v3/sync?since=garbage", Some(&alice))
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    server.finish().await;
}

async fn incremental_sync_returns_only_what_is_new(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    server.say(&alice, &room, "old").await;
    let first = sync(&server, &alice, "").await;
    let since = first["next_batch"].as_str().unwrap().to_owned();

    let nothing = sync(&server, &alice, &format!("?since={since}&timeout=0")).await;
    assert!(
        nothing["rooms"]["join"].as_object().unwrap().is_empty(),
        "{nothing}"
    );

    server.join(&bob, &room).await;
    server.say(&bob, &room, "new").await;
    let update = sync(&server, &alice, &format!("?since={since}")).await;
    assert_eq!(timeline_bodies(&update, &room), vec!["new"]);
    let joined = &update["rooms"]["join"][&room];
    assert_eq!(
        joined["timeline"]["events"][0]["type"], "m.room.member",
        "bob's join comes first"
    );
    assert_eq!(
        joined["state"]["events"],
        json!([]),
        "no gap, so no separate state"
    );

    // The room is new to bob: he gets its state and history.
    let bobs = sync(&server, &bob, "").await;
    assert!(timeline_bodies(&bobs, &room).contains(&"old".to_owned()));
    // next_batch of one sync continues exactly where it ended.
    let again = sync(
        &server,
        &alice,
        &format!(
            "?since={}&timeout=0",
            update["next_batch"].as_str().unwrap()
        ),
    )
    .await;
    assert!(
        again["rooms"]["join"].as_object().unwrap().is_empty(),
        "nothing repeated: {again}"
    );
    server.finish().await;
}

async fn long_poll_until(
    server: &TestServer,
    token: &str,
    since: &str,
    trigger: impl std::future::Future<Output = ()>,
) -> (Value, Duration) {
    let started = Instant::now();
    let query = format!("?since={since}&timeout=20000");
    let poll = sync(server, token, &query);
    let trigger = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.await;
    };
    let (body, ()) = tokio::join!(poll, trigger);
    (body, started.elapsed())
}

async fn long_poll_wakes_for_a_message(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob, &room).await;
    let since = sync(&server, &bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let (body, waited) = long_poll_until(&server, &bob, &since, async {
        server.say(&alice, &room, "wake up").await;
    })
    .await;
    assert_eq!(timeline_bodies(&body, &room), vec!["wake up"]);
    assert!(
        waited < Duration::from_secs(10),
        "the long-poll woke for the message, not the timeout: {waited:?}"
    );

    // A message in a room bob is not in does not end his long-poll early.
    let other = server.create_room(&alice, json!({})).await;
    let since = body["next_batch"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let quiet = {
        let query = format!("?since={since}&timeout=1500");
        let poll = sync(&server, &bob, &query);
        let noise = async { server.say(&alice, &other, "not for bob").await };
        tokio::join!(poll, noise).0
    };
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "woke for another room"
    );
    assert!(
        quiet["rooms"]["join"].as_object().unwrap().is_empty(),
        "{quiet}"
    );
    server.finish().await;
}

async fn long_poll_wakes_for_an_invite_and_account_data(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let since = sync(&server, &bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let (body, waited) = long_poll_until(&server, &bob, &since, async {
        server
            .create_room(&alice, json!({ "invite": ["@bob:localhost"] }))
            .await;
    })
    .await;
    assert_eq!(
        body["rooms"]["invite"].as_object().unwrap().len(),
        1,
        "{body}"
    );
    assert!(waited < Duration::from_secs(10), "{waited:?}");

    let since = body["next_batch"].as_str().unwrap().to_owned();
    let (body, waited) = long_poll_until(&server, &bob, &since, async {
        let (status, _) = server
            .put(
                "/_matrix/client/v3/user/@bob:localhost/account_data/m.direct",
                Some(&bob),
                json!({ "@alice:localhost": ["!x:localhost"] }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    })
    .await;
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(
        body["account_data"]["events"],
        json!([{ "type": "m.direct", "content": { "@alice:localhost": ["!x:localhost"] } }])
    );
    server.finish().await;
}

async fn leaving_shows_in_rooms_leave(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob, &room).await;
    let since = sync(&server, &bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    server.say(&alice, &room, "before the kick").await;
    server
        .post(
            &TestServer::room_path(&room, "kick"),
            Some(&alice),
            json!({ "user_id": "@bob:localhost" }),
        )
        .await;
    server.say(&alice, &room, "after the kick").await;
    let body = sync(&server, &bob, &format!("?since={since}")).await;
    let left = &body["rooms"]["leave"][&room]["timeline"]["events"];
    let kinds: Vec<&str> = left
        .as_array()
        .expect("left room")
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["m.room.message", "m.room.member"],
        "up to and including the kick"
    );
    assert!(!body.to_string().contains("after the kick"));
    assert!(body["rooms"]["join"].get(&room).is_none());
    server.finish().await;
}

async fn limited_timeline_continues_with_messages(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, _) = two_users(&server).await;
    let room = server.create_room(&alice, json!({ "name": "busy" })).await;
    let since = sync(&server, &alice, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 0..15 {
        server.say(&alice, &room, &format!("m{n}")).await;
    }
    server
        .put(
            &TestServer::room_path(&room, "state/m.room.topic/"),
            Some(&alice),
            json!({ "topic": "in the gap" }),
        )
        .await;
    for n in 15..20 {
        server.say(&alice, &room, &format!("m{n}")).await;
    }
    let filter = encode(&json!({ "room": { "timeline": { "limit": 5 } } }).to_string());
    let body = sync(&server, &alice, &format!("?since={since}&filter={filter}")).await;
    let joined = &body["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], true);
    assert_eq!(
        timeline_bodies(&body, &room),
        vec!["m15", "m16", "m17", "m18", "m19"]
    );
    let state: Vec<&str> = joined["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        state,
        vec!["m.room.topic"],
        "state changes in the gap come as state"
    );
    let prev = joined["timeline"]["prev_batch"].as_str().unwrap();
    let (_, page) = server
        .get(
            &TestServer::room_path(&room, &format!("messages?dir=b&limit=3&from={prev}")),
            Some(&alice),
        )
        .await;
    let bodies: Vec<&str> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(
        bodies,
        vec!["m14", "m13"],
        "prev_batch continues right before the timeline (the topic sits between)"
    );
    server.finish().await;
}

async fn filters_by_id_and_inline(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob, &room).await;
    server.say(&alice, &room, "from alice").await;
    server.say(&bob, &room, "from bob").await;
    let (status, created) = server
        .post(
            "/_matrix/client/v3/user/@alice:localhost/filter",
            Some(&alice),
            json!({ "room": { "timeline": { "senders": ["@bob:localhost"] }, "state": { "lazy_load_members": true } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let filter_id = created["filter_id"].as_str().unwrap();
    let body = sync(
        &server,
        &alice,
        &format!("?filter={filter_id}&full_state=true"),
    )
    .await;
    assert_eq!(timeline_bodies(&body, &room), vec!["from bob"]);
    let inline = encode(
        &json!({ "room": { "timeline": { "not_types": ["m.room.member"], "limit": 2 } } })
            .to_string(),
    );
    let body = sync(&server, &alice, &format!("?filter={inline}")).await;
    assert_eq!(
        timeline_bodies(&body, &room),
        vec!["from alice", "from bob"]
    );
    let unknown = server
        .get("/_matrix/client/v3/sync?filter=999999", Some(&alice))
        .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    server.finish().await;
}

async fn other_rooms_never_appear(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let since = sync(&server, &bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let private = server
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    server.say(&alice, &private, "secret").await;
    let body = sync(&server, &bob, &format!("?since={since}&timeout=200")).await;
    assert!(!body.to_string().contains(&private), "{body}");
    assert!(!body.to_string().contains("secret"));
    let initial = sync(&server, &bob, "").await;
    assert!(!initial.to_string().contains(&private));
    server.finish().await;
}

fn ephemeral<'a>(sync: &'a Value, room: &str, kind: &str) -> Option<&'a Value> {
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == kind)
        .map(|e| &e["content"])
}

async fn typing_reaches_members_and_stops(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let carol = server.register("carol", PASSWORD).await.access_token;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob, &room).await;
    let since = sync(&server, &bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let typing_path = TestServer::room_path(&room, "typing/@alice:localhost");
    let (body, waited) = long_poll_until(&server, &bob, &since, async {
        let (status, _) = server
            .put(
                &typing_path,
                Some(&alice),
                json!({ "typing": true, "timeout": 30000 }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    })
    .await;
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(
        ephemeral(&body, &room, "m.typing"),
        Some(&json!({ "user_ids": ["@alice:localhost"] }))
    );

    let since = body["next_batch"].as_str().unwrap().to_owned();
    server
        .put(&typing_path, Some(&alice), json!({ "typing": false }))
        .await;
    let stopped = sync(&server, &bob, &format!("?since={since}")).await;
    assert_eq!(
        ephemeral(&stopped, &room, "m.typing"),
        Some(&json!({ "user_ids": [] }))
    );

    let for_someone_else = server
        .put(&typing_path, Some(&bob), json!({ "typing": true }))
        .await;
    assert_error(&for_someone_else, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let outsider = server
        .put(
            &TestServer::room_path(&room, "typing/@carol:localhost"),
            Some(&carol),
            json!({ "typing": true }),
        )
        .await;
    assert_error(&outsider, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // A short timeout ends by itself.
    let since = stopped["next_batch"].as_str().unwrap().to_owned();
    server
        .put(
            &typing_path,
            Some(&alice),
            json!({ "typing": true, "timeout": 200 }),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let expired = sync(&server, &bob, &format!("?since={since}")).await;
    assert_eq!(
        ephemeral(&expired, &room, "m.typing"),
        Some(&json!({ "user_ids": [] })),
        "{expired}"
    );
    server.finish().await;
}

async fn receipts_unread_counts_and_read_markers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob, &room).await;
    let first = server.say(&alice, &room, "one").await;
    let second = server.say(&alice, &room, "two").await;
    let bobs = sync(&server, &bob, "").await;
    assert_eq!(
        bobs["rooms"]["join"][&room]["unread_notifications"]["notification_count"],
        2
    );
    let alice_since = sync(&server, &alice, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let receipt = |kind: &'static str, event: String| {
        let server = &server;
        let bob = bob.clone();
        let room = room.clone();
        async move {
            let path = TestServer::room_path(&room, &format!("receipt/{kind}/{}", encode(&event)));
            server.post(&path, Some(&bob), json!({})).await
        }
    };
    assert_eq!(receipt("m.read", second.clone()).await.0, StatusCode::OK);
    let seen = sync(&server, &alice, &format!("?since={alice_since}")).await;
    let content = ephemeral(&seen, &room, "m.receipt").expect("receipt");
    assert!(
        content[&second]["m.read"]["@bob:localhost"]["ts"].is_u64(),
        "{content}"
    );
    let bobs = sync(&server, &bob, "").await;
    assert_eq!(
        bobs["rooms"]["join"][&room]["unread_notifications"]["notification_count"], 0,
        "read up to the latest"
    );

    // Receipts do not move backwards; private ones are for their owner.
    let since = seen["next_batch"].as_str().unwrap().to_owned();
    assert_eq!(receipt("m.read", first.clone()).await.0, StatusCode::OK);
    let third = server.say(&alice, &room, "three").await;
    assert_eq!(
        receipt("m.read.private", third.clone()).await.0,
        StatusCode::OK
    );
    let after = sync(&server, &alice, &format!("?since={since}")).await;
    assert!(
        ephemeral(&after, &room, "m.receipt").is_none(),
        "neither the older nor the private receipt: {after}"
    );
    let bobs = sync(&server, &bob, "").await;
    let content = ephemeral(&bobs, &room, "m.receipt").expect("bob sees his own");
    assert!(
        content[&third]["m.read.private"]["@bob:localhost"].is_object(),
        "{content}"
    );

    let bad_type = receipt("m.seen", third.clone()).await;
    assert_error(&bad_type, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let unknown = receipt("m.read", "$nope".to_owned()).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    let markers = server
        .post(
            &TestServer::room_path(&room, "read_markers"),
            Some(&bob),
            json!({ "m.fully_read": third }),
        )
        .await;
    assert_eq!(markers.0, StatusCode::OK, "{}", markers.1);
    let bobs = sync(&server, &bob, "").await;
    let data = &bobs["rooms"]["join"][&room]["account_data"]["events"];
    assert_eq!(
        data,
        &json!([{ "type": "m.fully_read", "content": { "event_id": third } }])
    );
    server.finish().await;
}

async fn to_device_messages_arrive_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let bob_laptop = server.login("bob", PASSWORD).await;
    let (_, whoami) = server.whoami(&bob).await;
    let bob_phone = whoami["device_id"].as_str().unwrap().to_owned();
    let since = sync(&server, &bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let path = "/_matrix/client/v3/sendToDevice/m.room_key_request/k1";
    let body = json!({ "messages": { "@bob:localhost": { bob_phone.clone(): { "secret": 1 } } } });
    let (body_after, waited) = long_poll_until(&server, &bob, &since, async {
        let (status, reply) = server.put(path, Some(&alice), body.clone()).await;
        assert_eq!((status, reply), (StatusCode::OK, json!({})));
    })
    .await;
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(
        body_after["to_device"]["events"],
        json!([{ "sender": "@alice:localhost", "type": "m.room_key_request", "content": { "secret": 1 } }])
    );
    // The laptop did not get the phone's message.
    let laptop = sync(&server, &bob_laptop.access_token, "").await;
    assert_eq!(laptop["to_device"]["events"], json!([]));

    // A retried transaction sends nothing; syncing past a message removes it.
    server.put(path, Some(&alice), body.clone()).await;
    let next = body_after["next_batch"].as_str().unwrap().to_owned();
    let after = sync(&server, &bob, &format!("?since={next}&timeout=0")).await;
    assert_eq!(
        after["to_device"]["events"],
        json!([]),
        "delivered once: {after}"
    );
    let again = sync(&server, &bob, &format!("?since={next}&timeout=0")).await;
    assert_eq!(again["to_device"]["events"], json!([]));

    // `*` reaches every device of the user.
    server
        .put(
            "/_matrix/client/v3/sendToDevice/m.dummy/k2",
            Some(&alice),
            json!({ "messages": { "@bob:localhost": { "*": { "n": 2 } } } }),
        )
        .await;
    let laptop = sync(
        &server,
        &bob_laptop.access_token,
        &format!("?since={}", laptop["next_batch"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        laptop["to_device"]["events"][0]["content"],
        json!({ "n": 2 })
    );
    let phone = sync(
        &server,
        &bob,
        &format!("?since={}", after["next_batch"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        phone["to_device"]["events"][0]["content"],
        json!({ "n": 2 })
    );

    server.finish().await;
}

async fn long_poll_wakes_for_a_receipt(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob, &room).await;
    let event = server.say(&alice, &room, "read me").await;
    let since = sync(&server, &alice, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let receipt_path = TestServer::room_path(&room, &format!("receipt/m.read/{}", encode(&event)));
    let (body, waited) = long_poll_until(&server, &alice, &since, async {
        let (status, _) = server.post(&receipt_path, Some(&bob), json!({})).await;
        assert_eq!(status, StatusCode::OK);
    })
    .await;
    assert!(
        waited < Duration::from_secs(10),
        "woke for the receipt: {waited:?}"
    );
    let content = ephemeral(&body, &room, "m.receipt").expect("the receipt");
    assert!(
        content[&event]["m.read"]["@bob:localhost"].is_object(),
        "{content}"
    );
    server.finish().await;
}

async fn presence_is_shared_with_room_members(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, bob) = two_users(&server).await;
    let carol = server.register("carol", PASSWORD).await.access_token;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob, &room).await;

    // Syncing marks a user online; set_presence says otherwise.
    sync(&server, &bob, "").await;
    let (status, bobs) = server
        .get(
            "/_matrix/client/v3/presence/@bob:localhost/status",
            Some(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{bobs}");
    assert_eq!(
        (
            bobs["presence"].as_str(),
            bobs["currently_active"].as_bool()
        ),
        (Some("online"), Some(true))
    );
    sync(&server, &bob, "?set_presence=offline").await;
    let (_, bobs) = server
        .get(
            "/_matrix/client/v3/presence/@bob:localhost/status",
            Some(&alice),
        )
        .await;
    assert_eq!(bobs["presence"], "offline");

    let since = sync(&server, &alice, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let presence_path = "/_matrix/client/v3/presence/@bob:localhost/status";
    let (body, waited) = long_poll_until(&server, &alice, &since, async {
        let (status, _) = server
            .put(
                presence_path,
                Some(&bob),
                json!({ "presence": "unavailable", "status_msg": "brb" }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    })
    .await;
    assert!(
        waited < Duration::from_secs(10),
        "woke for a contact's presence: {waited:?}"
    );
    let bobs: Vec<&Value> = body["presence"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["sender"] == "@bob:localhost")
        .collect();
    assert_eq!(bobs.len(), 1, "{body}");
    assert_eq!(bobs[0]["type"], "m.presence");
    assert_eq!(
        (
            bobs[0]["content"]["presence"].as_str(),
            bobs[0]["content"]["status_msg"].as_str()
        ),
        (Some("unavailable"), Some("brb"))
    );

    // Strangers see nothing; nobody sets someone else's presence.
    let stranger = server.get(presence_path, Some(&carol)).await;
    assert_error(&stranger, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let carols = sync(&server, &carol, "").await;
    assert!(
        !carols["presence"].to_string().contains("@bob:localhost"),
        "{carols}"
    );
    let impersonation = server
        .put(
            presence_path,
            Some(&alice),
            json!({ "presence": "offline" }),
        )
        .await;
    assert_error(&impersonation, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let bad_state = server
        .put(presence_path, Some(&bob), json!({ "presence": "asleep" }))
        .await;
    assert_error(&bad_state, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let bad_sync = server
        .get("/_matrix/client/v3/sync?set_presence=asleep", Some(&bob))
        .await;
    assert_error(&bad_sync, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    server.finish().await;
}
