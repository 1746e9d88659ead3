//! Room aliases and the published room directory, against the real server.

mod common;

use common::{Backend, PASSWORD, Session, TestServer, assert_error, encode};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    alias_lifecycle,
    alias_creation_is_checked,
    alias_deletion_needs_the_creator_or_power,
    local_aliases_need_membership_unless_world_readable,
    create_room_with_alias_and_public_visibility,
    visibility_is_read_by_anyone_and_set_by_the_powerful,
    public_rooms_show_published_rooms_with_their_state,
    public_rooms_paginate_in_a_stable_order,
    public_rooms_search_and_filters,
);

fn alias_path(alias: &str) -> String {
    format!("/_matrix/client/v3/directory/room/{}", encode(alias))
}

fn aliases_path(room_id: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/aliases", encode(room_id))
}

fn visibility_path(room_id: &str) -> String {
    format!("/_matrix/client/v3/directory/list/room/{}", encode(room_id))
}

const PUBLIC_ROOMS: &str = "/_matrix/client/v3/publicRooms";

/// Creates a room; panics unless it succeeds.
async fn create_room(server: &TestServer, user: &Session, body: Value) -> String {
    let (status, response) = server
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&user.access_token),
            body,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "createRoom failed: {response}");
    response["room_id"].as_str().expect("room_id").to_owned()
}

/// Joins a room; panics unless it succeeds.
async fn join(server: &TestServer, user: &Session, room_id: &str) {
    let (status, response) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{}/join", encode(room_id)),
            Some(&user.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "join failed: {response}");
}

async fn leave(server: &TestServer, user: &Session, room_id: &str) {
    let (status, response) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", encode(room_id)),
            Some(&user.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "leave failed: {response}");
}

async fn delete(server: &TestServer, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    server.call(Method::DELETE, path, token, None).await
}

/// The room ids of a `/publicRooms` response, in order.
fn room_ids(body: &Value) -> Vec<String> {
    body["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunk in {body}"))
        .iter()
        .map(|room| room["room_id"].as_str().expect("room_id").to_owned())
        .collect()
}

async fn alias_lifecycle(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    let token = Some(alice.access_token.as_str());

    let (status, body) = server
        .put(
            &alias_path("#tea:localhost"),
            token,
            json!({ "room_id": room }),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    // Anyone, even without a token, resolves it.
    let (status, body) = server.get(&alias_path("#tea:localhost"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "room_id": room, "servers": ["localhost"] }));

    // A taken alias is a conflict, whichever room it is asked for.
    let other = create_room(&server, &alice, json!({})).await;
    for target in [&room, &other] {
        assert_error(
            &server
                .put(
                    &alias_path("#tea:localhost"),
                    token,
                    json!({ "room_id": target }),
                )
                .await,
            StatusCode::CONFLICT,
            "M_UNKNOWN",
        );
    }
    let (_, body) = server.get(&alias_path("#tea:localhost"), None).await;
    assert_eq!(
        body["room_id"],
        room.as_str(),
        "the conflict changed nothing"
    );

    // Any non-empty localpart without ':' is allowed, Unicode included.
    let (status, body) = server
        .put(
            &alias_path("#Café ☕:localhost"),
            token,
            json!({ "room_id": room }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .get(&aliases_path(&room), Some(&alice.access_token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "aliases": ["#Café ☕:localhost", "#tea:localhost"] })
    );
    let (_, body) = server.get(&alias_path("#Café ☕:localhost"), None).await;
    assert_eq!(body["room_id"], room.as_str());
    assert_error(
        &server.get(&alias_path("#café ☕:localhost"), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    // Others can join through the alias.
    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/join/{}", encode("#tea:localhost")),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], room.as_str());

    // Aliases outlive a restart.
    server.restart().await;
    let (_, body) = server.get(&alias_path("#tea:localhost"), None).await;
    assert_eq!(body["room_id"], room.as_str());

    let token = Some(alice.access_token.as_str());
    let (status, body) = delete(&server, &alias_path("#tea:localhost"), token).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_error(
        &server.get(&alias_path("#tea:localhost"), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &delete(&server, &alias_path("#tea:localhost"), token).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let (_, body) = server.get(&aliases_path(&room), token).await;
    assert_eq!(body, json!({ "aliases": ["#Café ☕:localhost"] }));

    // A deleted alias is free again, for another room too.
    let (status, _) = server
        .put(
            &alias_path("#tea:localhost"),
            token,
            json!({ "room_id": other }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = server.get(&alias_path("#tea:localhost"), None).await;
    assert_eq!(body["room_id"], other.as_str());

    // Unknown and remote aliases are not found; malformed ones are invalid.
    assert_error(
        &server.get(&alias_path("#nothing:localhost"), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .get(&alias_path("#tea:elsewhere.example"), None)
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    for bad in ["tea:localhost", "#tea", "!room:localhost"] {
        assert_error(
            &server.get(&alias_path(bad), None).await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        );
    }
    server.finish().await;
}

async fn alias_creation_is_checked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    let token = Some(alice.access_token.as_str());

    for bad in ["tea:localhost", "#tea", "#:localhost", "#tea:example.org"] {
        assert_error(
            &server
                .put(&alias_path(bad), token, json!({ "room_id": room }))
                .await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        );
    }
    let long = format!("#{}:localhost", "a".repeat(250));
    assert_error(
        &server
            .put(&alias_path(&long), token, json!({ "room_id": room }))
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server
            .put(
                &alias_path("#a:localhost"),
                token,
                json!({ "room_id": "not-a-room" }),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server
            .put(
                &alias_path("#a:localhost"),
                token,
                json!({ "room_id": "!unknown:localhost" }),
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    for body in [json!({}), json!({ "room_id": 5 }), json!(["!x:localhost"])] {
        assert_error(
            &server.put(&alias_path("#a:localhost"), token, body).await,
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
        );
    }
    assert_error(
        &server
            .put(
                &alias_path("#a:localhost"),
                None,
                json!({ "room_id": room }),
            )
            .await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    // Only joined members may point aliases at a room.
    let bob_token = Some(bob.access_token.as_str());
    assert_error(
        &server
            .put(
                &alias_path("#bob:localhost"),
                bob_token,
                json!({ "room_id": room }),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    join(&server, &bob, &room).await;
    let (status, _) = server
        .put(
            &alias_path("#bob:localhost"),
            bob_token,
            json!({ "room_id": room }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    leave(&server, &bob, &room).await;
    assert_error(
        &server
            .put(
                &alias_path("#bob2:localhost"),
                bob_token,
                json!({ "room_id": room }),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    // None of the refused requests created anything.
    for alias in ["#a:localhost", "#:localhost", "#bob2:localhost"] {
        assert_error(
            &server.get(&alias_path(alias), None).await,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        );
    }
    let (_, body) = server.get(&aliases_path(&room), token).await;
    assert_eq!(body, json!({ "aliases": ["#bob:localhost"] }));
    server.finish().await;
}

async fn alias_deletion_needs_the_creator_or_power(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let carol = server.register("carol", PASSWORD).await;
    // Version 12 rooms give the creator unlimited power without a power level;
    // earlier versions list the creator with 100.
    for (version, users) in [
        (
            "11",
            json!({ "@alice:localhost": 100, "@carol:localhost": 50 }),
        ),
        ("12", json!({ "@carol:localhost": 50 })),
    ] {
        let room = create_room(
            &server,
            &alice,
            json!({
                "preset": "public_chat",
                "room_version": version,
                "power_level_content_override": { "users": users },
            }),
        )
        .await;
        join(&server, &bob, &room).await;
        join(&server, &carol, &room).await;
        let alias = |name: &str| format!("#{name}-v{version}:localhost");
        for (user, name) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
            let (status, body) = server
                .put(
                    &alias_path(&alias(name)),
                    Some(&user.access_token),
                    json!({ "room_id": room }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        // Bob (power 0) may delete only his own alias.
        for name in ["alice", "carol"] {
            assert_error(
                &delete(&server, &alias_path(&alias(name)), Some(&bob.access_token)).await,
                StatusCode::FORBIDDEN,
                "M_FORBIDDEN",
            );
        }
        let (status, _) =
            delete(&server, &alias_path(&alias("bob")), Some(&bob.access_token)).await;
        assert_eq!(status, StatusCode::OK, "room version {version}");
        // Carol (50, enough for m.room.canonical_alias) may delete alice's.
        let (status, body) = delete(
            &server,
            &alias_path(&alias("alice")),
            Some(&carol.access_token),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "room version {version}: {body}");
        // The creator may delete carol's.
        let (status, body) = delete(
            &server,
            &alias_path(&alias("carol")),
            Some(&alice.access_token),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "room version {version}: {body}");
        let (_, body) = server
            .get(&aliases_path(&room), Some(&alice.access_token))
            .await;
        assert_eq!(body, json!({ "aliases": [] }), "room version {version}");

        // Power counts only while joined; being the alias's creator counts always.
        let (status, _) = server
            .put(
                &alias_path(&alias("carol2")),
                Some(&carol.access_token),
                json!({ "room_id": room }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = server
            .put(
                &alias_path(&alias("alice2")),
                Some(&alice.access_token),
                json!({ "room_id": room }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        leave(&server, &carol, &room).await;
        assert_error(
            &delete(
                &server,
                &alias_path(&alias("alice2")),
                Some(&carol.access_token),
            )
            .await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
        let (status, _) = delete(
            &server,
            &alias_path(&alias("carol2")),
            Some(&carol.access_token),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "room version {version}");
        let (_, body) = server
            .get(&aliases_path(&room), Some(&alice.access_token))
            .await;
        assert_eq!(body, json!({ "aliases": [alias("alice2")] }));
        assert_error(
            &delete(&server, &alias_path(&alias("alice2")), None).await,
            StatusCode::UNAUTHORIZED,
            "M_MISSING_TOKEN",
        );
    }
    server.finish().await;
}

async fn local_aliases_need_membership_unless_world_readable(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    let (status, _) = server
        .put(
            &alias_path("#one:localhost"),
            Some(&alice.access_token),
            json!({ "room_id": room }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let bob_token = Some(bob.access_token.as_str());
    assert_error(
        &server.get(&aliases_path(&room), bob_token).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    join(&server, &bob, &room).await;
    let (status, body) = server.get(&aliases_path(&room), bob_token).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "aliases": ["#one:localhost"] }))
    );
    leave(&server, &bob, &room).await;
    assert_error(
        &server.get(&aliases_path(&room), bob_token).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    // Unknown rooms look like rooms one is not in; malformed ids are invalid.
    assert_error(
        &server
            .get(&aliases_path("!unknown:localhost"), bob_token)
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server.get(&aliases_path("not-a-room"), bob_token).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server.get(&aliases_path(&room), None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );

    // A world-readable room's aliases are anyone's to list.
    let open = create_room(
        &server,
        &alice,
        json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": { "history_visibility": "world_readable" },
            }],
        }),
    )
    .await;
    let (status, body) = server.get(&aliases_path(&open), bob_token).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "aliases": [] })));
    server.finish().await;
}

async fn create_room_with_alias_and_public_visibility(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let room = create_room(
        &server,
        &alice,
        json!({ "room_alias_name": "lobby", "visibility": "public", "name": "Lobby" }),
    )
    .await;
    let (status, body) = server.get(&alias_path("#lobby:localhost"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], room.as_str());
    let (_, body) = server.get(&visibility_path(&room), None).await;
    assert_eq!(body, json!({ "visibility": "public" }));
    let (_, body) = server.get(PUBLIC_ROOMS, None).await;
    assert_eq!(room_ids(&body), [room.as_str()]);
    assert_eq!(body["chunk"][0]["canonical_alias"], "#lobby:localhost");

    // The alias is taken now: a second room cannot have it, and is not created.
    let response = server
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice.access_token),
            json!({ "room_alias_name": "lobby", "visibility": "public", "name": "Second" }),
        )
        .await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_ROOM_IN_USE");
    let (_, body) = server.get(PUBLIC_ROOMS, None).await;
    assert_eq!(room_ids(&body), [room.as_str()]);
    let (_, body) = server
        .get("/_matrix/client/v3/joined_rooms", Some(&alice.access_token))
        .await;
    assert_eq!(body["joined_rooms"], json!([room]));

    // A private room (the default) is not published.
    let private = create_room(&server, &alice, json!({ "name": "Hidden" })).await;
    let (_, body) = server.get(&visibility_path(&private), None).await;
    assert_eq!(body, json!({ "visibility": "private" }));
    let (_, body) = server.get(PUBLIC_ROOMS, None).await;
    assert_eq!(room_ids(&body), [room]);
    server.finish().await;
}

async fn visibility_is_read_by_anyone_and_set_by_the_powerful(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    let path = visibility_path(&room);

    let (status, body) = server.get(&path, None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "visibility": "private" }))
    );

    // Not joined, then joined without power: refused.
    let bob_token = Some(bob.access_token.as_str());
    assert_error(
        &server
            .put(&path, bob_token, json!({ "visibility": "public" }))
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    join(&server, &bob, &room).await;
    assert_error(
        &server
            .put(&path, bob_token, json!({ "visibility": "public" }))
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let (_, body) = server.get(&path, None).await;
    assert_eq!(body, json!({ "visibility": "private" }));

    let token = Some(alice.access_token.as_str());
    let (status, body) = server
        .put(&path, token, json!({ "visibility": "public" }))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (_, body) = server.get(&path, None).await;
    assert_eq!(body, json!({ "visibility": "public" }));
    let (_, body) = server.get(PUBLIC_ROOMS, None).await;
    assert_eq!(room_ids(&body), [room.as_str()]);

    // Bob still cannot unpublish it.
    assert_error(
        &server
            .put(&path, bob_token, json!({ "visibility": "private" }))
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let (status, _) = server
        .put(&path, token, json!({ "visibility": "private" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = server.get(&path, None).await;
    assert_eq!(body, json!({ "visibility": "private" }));
    let (_, body) = server.get(PUBLIC_ROOMS, None).await;
    assert_eq!(room_ids(&body), Vec::<String>::new());
    // An absent visibility means public.
    let (status, _) = server.put(&path, token, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = server.get(&path, None).await;
    assert_eq!(body, json!({ "visibility": "public" }));

    assert_error(
        &server
            .put(&path, token, json!({ "visibility": "secret" }))
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_error(
        &server
            .put(&path, None, json!({ "visibility": "private" }))
            .await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    let unknown = visibility_path("!unknown:localhost");
    assert_error(
        &server.get(&unknown, None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .put(&unknown, token, json!({ "visibility": "public" }))
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.get(&visibility_path("not-a-room"), None).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    server.finish().await;
}

async fn public_rooms_show_published_rooms_with_their_state(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let carol = server.register("carol", PASSWORD).await;

    let big = create_room(
        &server,
        &alice,
        json!({
            "visibility": "public",
            "preset": "public_chat",
            "name": "Big room",
            "topic": "Everything",
            "room_alias_name": "big",
            "initial_state": [{
                "type": "m.room.avatar",
                "state_key": "",
                "content": { "url": "mxc://localhost/avatar" },
            }],
        }),
    )
    .await;
    join(&server, &bob, &big).await;
    join(&server, &carol, &big).await;
    let open = create_room(
        &server,
        &alice,
        json!({
            "visibility": "public",
            "preset": "public_chat",
            "initial_state": [
                { "type": "m.room.history_visibility", "state_key": "",
                  "content": { "history_visibility": "world_readable" } },
                { "type": "m.room.guest_access", "state_key": "",
                  "content": { "guest_access": "can_join" } },
            ],
        }),
    )
    .await;
    join(&server, &bob, &open).await;
    let space = create_room(
        &server,
        &alice,
        json!({
            "visibility": "public",
            "preset": "public_chat",
            "name": "A space",
            "creation_content": { "type": "m.space" },
        }),
    )
    .await;
    // Private rooms stay out of the directory.
    create_room(&server, &alice, json!({ "name": "Big secret" })).await;

    let (status, body) = server.get(PUBLIC_ROOMS, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["chunk"][0],
        json!({
            "room_id": big,
            "num_joined_members": 3,
            "world_readable": false,
            "guest_can_join": false,
            "name": "Big room",
            "topic": "Everything",
            "canonical_alias": "#big:localhost",
            "avatar_url": "mxc://localhost/avatar",
            "join_rule": "public",
        })
    );
    assert_eq!(
        body["chunk"][1],
        json!({
            "room_id": open,
            "num_joined_members": 2,
            "world_readable": true,
            "guest_can_join": true,
            "join_rule": "public",
        })
    );
    assert_eq!(
        body["chunk"][2],
        json!({
            "room_id": space,
            "num_joined_members": 1,
            "world_readable": false,
            "guest_can_join": false,
            "name": "A space",
            "join_rule": "public",
            "room_type": "m.space",
        })
    );
    assert_eq!(body["chunk"].as_array().map(Vec::len), Some(3));
    assert_eq!(body["total_room_count_estimate"], 3);
    assert!(
        body.get("next_batch").is_none() && body.get("prev_batch").is_none(),
        "{body}"
    );

    // Counts follow membership: with two members gone the big room sorts last.
    leave(&server, &bob, &big).await;
    leave(&server, &carol, &big).await;
    let (_, body) = server.get(PUBLIC_ROOMS, None).await;
    assert_eq!(body["chunk"][0]["room_id"], open.as_str());
    assert_eq!(body["chunk"][0]["num_joined_members"], 2);
    let mut ones = vec![big.clone(), space.clone()];
    ones.sort();
    assert_eq!(room_ids(&body)[1..], ones);

    // The authenticated POST form answers the same.
    let (status, posted) = server
        .post(PUBLIC_ROOMS, Some(&alice.access_token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{posted}");
    assert_eq!(posted, body);
    server.finish().await;
}

async fn public_rooms_paginate_in_a_stable_order(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let mut rooms = Vec::new();
    for i in 0..5 {
        let body = json!({ "visibility": "public", "name": format!("Room {i}") });
        rooms.push(create_room(&server, &alice, body).await);
    }
    // Every room has one member: the order is by room id.
    rooms.sort();

    let page = |since: Option<&str>| {
        let mut path = format!("{PUBLIC_ROOMS}?limit=2");
        if let Some(since) = since {
            path.push_str(&format!("&since={}", encode(since)));
        }
        path
    };
    let (status, first) = server.get(&page(None), None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(room_ids(&first), rooms[0..2]);
    assert_eq!(first["total_room_count_estimate"], 5);
    assert!(first.get("prev_batch").is_none());
    let next = first["next_batch"].as_str().expect("next_batch");

    let (_, second) = server.get(&page(Some(next)), None).await;
    assert_eq!(room_ids(&second), rooms[2..4]);
    let next = second["next_batch"].as_str().expect("next_batch");
    let prev = second["prev_batch"].as_str().expect("prev_batch");

    let (_, third) = server.get(&page(Some(next)), None).await;
    assert_eq!(room_ids(&third), rooms[4..5]);
    assert!(third.get("next_batch").is_none(), "last page: {third}");
    let back = third["prev_batch"].as_str().expect("prev_batch");

    let (_, again) = server.get(&page(Some(back)), None).await;
    assert_eq!(room_ids(&again), rooms[2..4]);
    let (_, start) = server.get(&page(Some(prev)), None).await;
    assert_eq!(room_ids(&start), rooms[0..2]);
    assert!(start.get("prev_batch").is_none());

    // The POST form takes the same tokens.
    let (status, posted) = server
        .post(
            PUBLIC_ROOMS,
            Some(&alice.access_token),
            json!({ "limit": 2, "since": second["next_batch"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{posted}");
    assert_eq!(room_ids(&posted), rooms[4..5]);

    // A room unpublished between pages does not disturb the next page.
    let (status, _) = server
        .put(
            &visibility_path(&rooms[1]),
            Some(&alice.access_token),
            json!({ "visibility": "private" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, after) = server
        .get(&page(Some(first["next_batch"].as_str().unwrap())), None)
        .await;
    assert_eq!(room_ids(&after), rooms[2..4]);

    // Without a limit every room comes at once.
    let (_, all) = server.get(PUBLIC_ROOMS, None).await;
    let published = [&rooms[0], &rooms[2], &rooms[3], &rooms[4]].map(String::clone);
    assert_eq!(room_ids(&all), published);

    for bad in [
        format!("{PUBLIC_ROOMS}?since=garbage"),
        format!("{PUBLIC_ROOMS}?limit=0"),
        format!("{PUBLIC_ROOMS}?limit=-3"),
        format!("{PUBLIC_ROOMS}?limit=many"),
    ] {
        assert_error(
            &server.get(&bad, None).await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        );
    }
    server.finish().await;
}

async fn public_rooms_search_and_filters(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let tea = create_room(
        &server,
        &alice,
        json!({ "visibility": "public", "name": "Tea Lovers", "topic": "Oolong and more" }),
    )
    .await;
    let coffee = create_room(
        &server,
        &alice,
        json!({ "visibility": "public", "name": "Coffee", "room_alias_name": "espresso" }),
    )
    .await;
    let space = create_room(
        &server,
        &alice,
        json!({ "visibility": "public", "name": "Drinks", "creation_content": { "type": "m.space" } }),
    )
    .await;
    let token = Some(alice.access_token.as_str());
    let search = |term: &str| json!({ "filter": { "generic_search_term": term } });

    for (term, expected) in [
        ("tea", vec![&tea]),         // name, case-insensitive
        ("OOLONG", vec![&tea]),      // topic
        ("espresso", vec![&coffee]), // canonical alias
        (tea.as_str(), vec![&tea]),  // exact room id
        ("nothing like this", vec![]),
    ] {
        let (status, body) = server.post(PUBLIC_ROOMS, token, search(term)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(room_ids(&body), expected, "search {term:?}");
        assert_eq!(
            body["total_room_count_estimate"],
            expected.len(),
            "search {term:?}"
        );
    }

    let (_, body) = server
        .post(
            PUBLIC_ROOMS,
            token,
            json!({ "filter": { "room_types": ["m.space"] } }),
        )
        .await;
    assert_eq!(room_ids(&body), [space.as_str()]);
    let (_, body) = server
        .post(
            PUBLIC_ROOMS,
            token,
            json!({ "filter": { "room_types": [null] } }),
        )
        .await;
    let mut plain = vec![tea.clone(), coffee.clone()];
    plain.sort();
    assert_eq!(room_ids(&body), plain);

    // No bridged networks here.
    let (status, body) = server
        .post(
            PUBLIC_ROOMS,
            token,
            json!({ "third_party_instance_id": "irc" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(room_ids(&body), Vec::<String>::new());
    let (_, body) = server
        .post(PUBLIC_ROOMS, token, json!({ "include_all_networks": true }))
        .await;
    assert_eq!(room_ids(&body).len(), 3);

    // Our own server may be named; another's directory (fetched over
    // federation, tests/synapse_rooms.rs) needs an access token.
    let (status, body) = server
        .get(&format!("{PUBLIC_ROOMS}?server=localhost"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(room_ids(&body).len(), 3);
    assert_error(
        &server
            .get(&format!("{PUBLIC_ROOMS}?server=other.example"), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &server
            .post(
                &format!("{PUBLIC_ROOMS}?server=not%20a%20server"),
                token,
                json!({}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    assert_error(
        &server.post(PUBLIC_ROOMS, None, json!({})).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &server
            .post(
                PUBLIC_ROOMS,
                token,
                json!({ "filter": { "generic_search_term": 5 } }),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    server.finish().await;
}
