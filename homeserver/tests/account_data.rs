//! Account data, global and per room, against the real server; and the
//! account data stream positions in storage.

mod common;

use common::{Backend, PASSWORD, TestServer, assert_error, encode};
use homeserver::storage::{GLOBAL_ACCOUNT_DATA, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    global_account_data_round_trips_and_is_replaced_whole,
    room_account_data_is_separate_from_global_and_other_rooms,
    missing_account_data_is_not_found,
    other_users_account_data_is_forbidden,
    server_managed_types_cannot_be_set,
    content_must_be_a_json_object,
    malformed_ids_are_invalid_params,
    account_data_needs_a_token,
    oversized_content_is_too_large,
    account_data_survives_a_restart,
    stream_positions_increase_with_every_write,
);

fn global_path(user_id: &str, data_type: &str) -> String {
    format!(
        "/_matrix/client/v3/user/{}/account_data/{}",
        encode(user_id),
        encode(data_type)
    )
}

fn room_path(user_id: &str, room_id: &str, data_type: &str) -> String {
    format!(
        "/_matrix/client/v3/user/{}/rooms/{}/account_data/{}",
        encode(user_id),
        encode(room_id),
        encode(data_type)
    )
}

/// A syntactically valid room id; room account data does not need the room.
const ROOM_A: &str = "!roomA:localhost";
const ROOM_B: &str = "!roomB:localhost";

async fn global_account_data_round_trips_and_is_replaced_whole(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let token = Some(alice.access_token.as_str());
    let path = global_path(&alice.user_id, "org.example.config");

    let content =
        json!({ "theme": "dark", "nested": { "list": [1, 2, 3], "flag": true }, "n": null });
    let (status, body) = server.put(&path, token, content.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}));
    let (status, body) = server.get(&path, token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, content);

    // A second PUT replaces the content; it does not merge.
    let (status, _) = server.put(&path, token, json!({ "font": "serif" })).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = server.get(&path, token).await;
    assert_eq!(body, json!({ "font": "serif" }));

    // m.direct is ordinary account data.
    let direct = json!({ "@bob:localhost": ["!dm:localhost"] });
    let direct_path = global_path(&alice.user_id, "m.direct");
    let (status, _) = server.put(&direct_path, token, direct.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = server.get(&direct_path, token).await;
    assert_eq!(body, direct);

    // An empty object is valid content.
    let empty_path = global_path(&alice.user_id, "org.example.empty");
    let (status, _) = server.put(&empty_path, token, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.get(&empty_path, token).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));

    // Another device of the same user sees the same data.
    let phone = server.login("alice", PASSWORD).await;
    let (status, body) = server.get(&path, Some(&phone.access_token)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "font": "serif" })));
    server.finish().await;
}

async fn room_account_data_is_separate_from_global_and_other_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let token = Some(alice.access_token.as_str());
    let kind = "org.example.room.config";

    let (status, _) = server
        .put(
            &global_path(&alice.user_id, kind),
            token,
            json!({ "scope": "global" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // No inheritance: the room has none of this type yet.
    assert_error(
        &server
            .get(&room_path(&alice.user_id, ROOM_A, kind), token)
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    let (status, body) = server
        .put(
            &room_path(&alice.user_id, ROOM_A, kind),
            token,
            json!({ "scope": "A" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}));
    let (status, _) = server
        .put(
            &room_path(&alice.user_id, ROOM_B, kind),
            token,
            json!({ "scope": "B" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (_, a) = server
        .get(&room_path(&alice.user_id, ROOM_A, kind), token)
        .await;
    let (_, b) = server
        .get(&room_path(&alice.user_id, ROOM_B, kind), token)
        .await;
    let (_, global) = server.get(&global_path(&alice.user_id, kind), token).await;
    assert_eq!(a, json!({ "scope": "A" }));
    assert_eq!(b, json!({ "scope": "B" }));
    assert_eq!(
        global,
        json!({ "scope": "global" }),
        "room data leaves global data alone"
    );

    // Overwriting one room's data leaves the other's.
    let (status, _) = server
        .put(
            &room_path(&alice.user_id, ROOM_A, kind),
            token,
            json!({ "scope": "A2" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, a) = server
        .get(&room_path(&alice.user_id, ROOM_A, kind), token)
        .await;
    let (_, b) = server
        .get(&room_path(&alice.user_id, ROOM_B, kind), token)
        .await;
    assert_eq!(a, json!({ "scope": "A2" }));
    assert_eq!(b, json!({ "scope": "B" }));

    // m.tag is ordinary room account data.
    let tags = json!({ "tags": { "m.favourite": { "order": 0.5 } } });
    let (status, _) = server
        .put(
            &room_path(&alice.user_id, ROOM_A, "m.tag"),
            token,
            tags.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = server
        .get(&room_path(&alice.user_id, ROOM_A, "m.tag"), token)
        .await;
    assert_eq!(body, tags);
    server.finish().await;
}

async fn missing_account_data_is_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let token = Some(alice.access_token.as_str());
    assert_error(
        &server
            .get(&global_path(&alice.user_id, "org.example.none"), token)
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .get(
                &room_path(&alice.user_id, ROOM_A, "org.example.none"),
                token,
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    // Data is per user: bob's data of the same type is not alice's.
    let (status, _) = server
        .put(
            &global_path(&bob.user_id, "org.example.mine"),
            Some(&bob.access_token),
            json!({ "owner": "bob" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &server
            .get(&global_path(&alice.user_id, "org.example.mine"), token)
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    // Server-managed types can be read; never set, they are not found.
    assert_error(
        &server
            .get(&room_path(&alice.user_id, ROOM_A, "m.fully_read"), token)
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    server.finish().await;
}

async fn other_users_account_data_is_forbidden(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let kind = "org.example.secret";
    let (status, _) = server
        .put(
            &global_path(&alice.user_id, kind),
            Some(&alice.access_token),
            json!({ "s": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .put(
            &room_path(&alice.user_id, ROOM_A, kind),
            Some(&alice.access_token),
            json!({ "s": 2 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let bob_token = Some(bob.access_token.as_str());
    for path in [
        global_path(&alice.user_id, kind),
        room_path(&alice.user_id, ROOM_A, kind),
    ] {
        assert_error(
            &server.get(&path, bob_token).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
        assert_error(
            &server
                .put(&path, bob_token, json!({ "s": "overwritten" }))
                .await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
    }
    // A user that does not exist at all is not the caller either.
    assert_error(
        &server
            .get(&global_path("@nobody:localhost", kind), bob_token)
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    // Alice's data is untouched.
    let (_, body) = server
        .get(
            &global_path(&alice.user_id, kind),
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(body, json!({ "s": 1 }));
    let (_, body) = server
        .get(
            &room_path(&alice.user_id, ROOM_A, kind),
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(body, json!({ "s": 2 }));
    server.finish().await;
}

async fn server_managed_types_cannot_be_set(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let token = Some(alice.access_token.as_str());
    for kind in ["m.fully_read", "m.push_rules"] {
        for path in [
            global_path(&alice.user_id, kind),
            room_path(&alice.user_id, ROOM_A, kind),
        ] {
            let response = server.put(&path, token, json!({ "event_id": "$x" })).await;
            assert_error(&response, StatusCode::METHOD_NOT_ALLOWED, "M_BAD_JSON");
            // Nothing was stored.
            assert_error(
                &server.get(&path, token).await,
                StatusCode::NOT_FOUND,
                "M_NOT_FOUND",
            );
        }
    }
    server.finish().await;
}

async fn content_must_be_a_json_object(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let token = Some(alice.access_token.as_str());
    let global = global_path(&alice.user_id, "org.example.shape");
    let room = room_path(&alice.user_id, ROOM_A, "org.example.shape");
    for path in [&global, &room] {
        for content in [
            json!([1, 2]),
            json!("text"),
            json!(5),
            json!(true),
            Value::Null,
        ] {
            let response = server.put(path, token, content.clone()).await;
            assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
        }
        let response = server
            .http
            .put(format!("{}{path}", server.base))
            .bearer_auth(&alice.access_token)
            .body("{not json")
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON error body");
        assert_error(&(status, body), StatusCode::BAD_REQUEST, "M_NOT_JSON");
        assert_error(
            &server.get(path, token).await,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        );
    }
    server.finish().await;
}

async fn malformed_ids_are_invalid_params(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let token = Some(alice.access_token.as_str());
    let kind = "org.example.ids";
    for room in ["not-a-room", "@alice:localhost", "#alias:localhost"] {
        let path = room_path(&alice.user_id, room, kind);
        assert_error(
            &server.put(&path, token, json!({ "a": 1 })).await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        );
        assert_error(
            &server.get(&path, token).await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        );
    }
    assert_error(
        &server.get(&global_path("alice", kind), token).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let long_type = "t".repeat(256);
    assert_error(
        &server
            .put(
                &global_path(&alice.user_id, &long_type),
                token,
                json!({ "a": 1 }),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    server.finish().await;
}

async fn account_data_needs_a_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let global = global_path(&alice.user_id, "org.example.auth");
    let room = room_path(&alice.user_id, ROOM_A, "org.example.auth");
    for path in [&global, &room] {
        assert_error(
            &server.get(path, None).await,
            StatusCode::UNAUTHORIZED,
            "M_MISSING_TOKEN",
        );
        assert_error(
            &server.put(path, None, json!({ "a": 1 })).await,
            StatusCode::UNAUTHORIZED,
            "M_MISSING_TOKEN",
        );
        assert_error(
            &server.get(path, Some("garbage")).await,
            StatusCode::UNAUTHORIZED,
            "M_UNKNOWN_TOKEN",
        );
    }
    // After logout the old token no longer reaches the data.
    let (status, _) = server
        .put(&global, Some(&alice.access_token), json!({ "a": 1 }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .post(
            "/_matrix/client/v3/logout",
            Some(&alice.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &server.get(&global, Some(&alice.access_token)).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    server.finish().await;
}

async fn oversized_content_is_too_large(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.max_json_body_bytes = 4096).await;
    let alice = server.register("alice", PASSWORD).await;
    let token = Some(alice.access_token.as_str());
    let path = global_path(&alice.user_id, "org.example.big");
    let fits = json!({ "blob": "x".repeat(3000) });
    let (status, _) = server.put(&path, token, fits.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &server
            .put(&path, token, json!({ "blob": "x".repeat(5000) }))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    let (_, body) = server.get(&path, token).await;
    assert_eq!(body, fits, "the refused write changed nothing");
    server.finish().await;
}

async fn account_data_survives_a_restart(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let global = global_path(&alice.user_id, "org.example.persist");
    let room = room_path(&alice.user_id, ROOM_A, "org.example.persist");
    let token = Some(alice.access_token.as_str());
    assert_eq!(
        server.put(&global, token, json!({ "g": 1 })).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.put(&room, token, json!({ "r": 1 })).await.0,
        StatusCode::OK
    );
    server.restart().await;
    let token = Some(alice.access_token.as_str());
    assert_eq!(
        server.get(&global, token).await,
        (StatusCode::OK, json!({ "g": 1 }))
    );
    assert_eq!(
        server.get(&room, token).await,
        (StatusCode::OK, json!({ "r": 1 }))
    );
    server.finish().await;
}

/// Every write, including a rewrite of an existing entry, takes a new and
/// greater stream position; `account_data_since` returns what changed.
async fn stream_positions_increase_with_every_write(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, database) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()),
            None,
        ),
        Backend::Postgres => {
            let (url, name) = common::create_postgres_database().await;
            (url, Some(name))
        }
    };
    let store = Store::connect(&url, 8).await.expect("store opens");
    assert_eq!(store.account_data_position().await.unwrap(), 0);

    let a = store
        .set_account_data("@a:hs", GLOBAL_ACCOUNT_DATA, "t1", r#"{"v":1}"#)
        .await
        .unwrap();
    let b = store
        .set_account_data("@a:hs", "!r:hs", "t1", r#"{"v":2}"#)
        .await
        .unwrap();
    let c = store
        .set_account_data("@a:hs", GLOBAL_ACCOUNT_DATA, "t1", r#"{"v":3}"#)
        .await
        .unwrap();
    assert!(0 < a && a < b && b < c, "positions {a} {b} {c}");
    assert_eq!(store.account_data_position().await.unwrap(), c);
    assert_eq!(
        store
            .account_data("@a:hs", GLOBAL_ACCOUNT_DATA, "t1")
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"v":3}"#)
    );

    let changed = store.account_data_since("@a:hs", a).await.unwrap();
    let summary: Vec<(&str, i64)> = changed
        .iter()
        .map(|row| (row.room_id.as_str(), row.stream_id))
        .collect();
    assert_eq!(
        summary,
        [("!r:hs", b), ("", c)],
        "the rewrite moved the global entry"
    );
    assert_eq!(store.account_data_since("@a:hs", 0).await.unwrap().len(), 2);
    assert!(
        store
            .account_data_since("@a:hs", c)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .account_data_since("@other:hs", 0)
            .await
            .unwrap()
            .is_empty()
    );

    // Concurrent writers all get distinct positions.
    let writes = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .set_account_data(&format!("@u{i}:hs"), GLOBAL_ACCOUNT_DATA, "t", "{}")
                .await
                .unwrap()
        })
    });
    let mut positions = Vec::new();
    for write in writes {
        positions.push(write.await.unwrap());
    }
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(positions.len(), 16, "positions were shared: {positions:?}");
    assert!(positions[0] > c);
    assert_eq!(store.account_data_position().await.unwrap(), c + 16);

    store.close().await;
    if let Some(name) = database {
        common::drop_postgres_database(&name).await;
    }
}
