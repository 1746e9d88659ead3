//! Filters against the real server (`POST /user/{userId}/filter`,
//! `GET /user/{userId}/filter/{filterId}`); and the filter store and service
//! `/sync` reads them through.

mod common;

use common::{Backend, PASSWORD, TestServer, assert_error, encode};
use homeserver::{filters::Filters, storage::Store};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    filters_round_trip_as_uploaded,
    every_creation_gets_a_new_id,
    other_users_filters_are_forbidden_or_not_found,
    unknown_filter_ids_are_not_found,
    invalid_filters_are_bad_json,
    filters_need_a_token,
    filters_survive_a_restart,
    store_and_service_keep_filters_per_user,
);

fn create_path(user_id: &str) -> String {
    format!("/_matrix/client/v3/user/{}/filter", encode(user_id))
}

fn get_path(user_id: &str, filter_id: &str) -> String {
    format!(
        "/_matrix/client/v3/user/{}/filter/{}",
        encode(user_id),
        encode(filter_id)
    )
}

/// Uploads a filter; panics unless it succeeds; returns its id.
async fn create(server: &TestServer, user_id: &str, token: &str, filter: Value) -> String {
    let (status, body) = server
        .post(&create_path(user_id), Some(token), filter)
        .await;
    assert_eq!(status, StatusCode::OK, "filter upload failed: {body}");
    let id = body["filter_id"].as_str().expect("filter_id is a string");
    assert!(
        !id.is_empty() && !id.starts_with('{'),
        "the spec forbids the id {id:?}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    id.to_owned()
}

/// A filter using every field the spec defines, plus unknown ones.
fn full_filter() -> Value {
    json!({
        "event_format": "client",
        "event_fields": ["type", "content", "sender"],
        "account_data": { "limit": 5, "types": ["m.direct"], "not_types": ["m.push_rules"] },
        "presence": { "not_senders": ["@spam:localhost"], "senders": [] },
        "room": {
            "rooms": ["!a:localhost", "!b:localhost"],
            "not_rooms": ["!c:localhost"],
            "include_leave": true,
            "timeline": {
                "limit": 20,
                "types": ["m.room.*"],
                "not_senders": ["@x:localhost"],
                "contains_url": false,
                "lazy_load_members": true,
                "unread_thread_notifications": true,
                "org.example.timeline_extra": { "deep": [1, 2.5, null, "s"] },
            },
            "state": { "lazy_load_members": true, "include_redundant_members": false },
            "ephemeral": { "types": ["m.receipt", "m.typing"] },
            "account_data": { "limit": 1 },
        },
        "org.example.unknown": { "kept": true },
        "ünïcode": "välue",
    })
}

async fn filters_round_trip_as_uploaded(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let token = alice.access_token.as_str();

    let filter = full_filter();
    let id = create(&server, &alice.user_id, token, filter.clone()).await;
    let (status, body) = server
        .get(&get_path(&alice.user_id, &id), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, filter, "unknown fields and values survive unchanged");

    // The empty filter, and explicit nulls, are valid filters too.
    for filter in [
        json!({}),
        json!({ "room": { "timeline": { "limit": null } }, "presence": null }),
        json!({ "event_format": "federation" }),
    ] {
        let id = create(&server, &alice.user_id, token, filter.clone()).await;
        let (status, body) = server
            .get(&get_path(&alice.user_id, &id), Some(token))
            .await;
        assert_eq!((status, body), (StatusCode::OK, filter));
    }

    // Another device of the same user reads the same filter.
    let phone = server.login("alice", PASSWORD).await;
    let (status, body) = server
        .get(&get_path(&alice.user_id, &id), Some(&phone.access_token))
        .await;
    assert_eq!((status, body), (StatusCode::OK, full_filter()));
    server.finish().await;
}

async fn every_creation_gets_a_new_id(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let a = alice.access_token.as_str();

    // The same body twice is two filters, not one.
    let same = json!({ "room": { "timeline": { "limit": 10 } } });
    let first = create(&server, &alice.user_id, a, same.clone()).await;
    let second = create(&server, &alice.user_id, a, same.clone()).await;
    let other = create(
        &server,
        &alice.user_id,
        a,
        json!({ "presence": { "limit": 1 } }),
    )
    .await;
    let bobs = create(&server, &bob.user_id, &bob.access_token, same.clone()).await;
    let mut ids = vec![first.clone(), second.clone(), other.clone(), bobs.clone()];
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        4,
        "ids were reused: {first} {second} {other} {bobs}"
    );

    // Each id names its own filter.
    for (id, expected) in [
        (&first, same.clone()),
        (&second, same.clone()),
        (&other, json!({ "presence": { "limit": 1 } })),
    ] {
        let (status, body) = server.get(&get_path(&alice.user_id, id), Some(a)).await;
        assert_eq!((status, body), (StatusCode::OK, expected), "filter {id}");
    }

    // Concurrent uploads get distinct ids as well.
    let uploads = (0..8).map(|i| {
        let server = &server;
        let user_id = alice.user_id.clone();
        async move { create(server, &user_id, a, json!({ "org.example.n": i })).await }
    });
    let concurrent: Vec<String> = futures_util::future::join_all(uploads).await;
    for (i, id) in concurrent.iter().enumerate() {
        assert!(!ids.contains(id), "{id} reused");
        let (status, body) = server.get(&get_path(&alice.user_id, id), Some(a)).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({ "org.example.n": i }))
        );
    }
    let mut unique = concurrent.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        8,
        "concurrent ids were shared: {concurrent:?}"
    );
    server.finish().await;
}

async fn other_users_filters_are_forbidden_or_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let filter = json!({ "room": { "rooms": ["!secret:localhost"] } });
    let alices = create(&server, &alice.user_id, &alice.access_token, filter.clone()).await;
    let bob_token = Some(bob.access_token.as_str());

    // A path naming another user is forbidden, for reading and for creating.
    assert_error(
        &server
            .get(&get_path(&alice.user_id, &alices), bob_token)
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .post(&create_path(&alice.user_id), bob_token, json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    // So is a user who does not exist, or lives on another server.
    for user in ["@nobody:localhost", "@alice:elsewhere.example"] {
        assert_error(
            &server.get(&get_path(user, &alices), bob_token).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
        assert_error(
            &server.post(&create_path(user), bob_token, json!({})).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
    }
    // A path that is no user id at all is an invalid parameter.
    assert_error(
        &server.get(&get_path("alice", &alices), bob_token).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server
            .post(&create_path("alice"), bob_token, json!({}))
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    // Alice's filter id under bob's own path is not one of bob's filters.
    assert_error(
        &server
            .get(&get_path(&bob.user_id, &alices), bob_token)
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    // Alice still has it, unchanged.
    let (status, body) = server
        .get(
            &get_path(&alice.user_id, &alices),
            Some(&alice.access_token),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, filter));
    server.finish().await;
}

async fn unknown_filter_ids_are_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let token = Some(alice.access_token.as_str());
    // Before any filter exists.
    assert_error(
        &server.get(&get_path(&alice.user_id, "1"), token).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let id = create(&server, &alice.user_id, &alice.access_token, json!({})).await;
    let next: i64 = id.parse().expect("this server's ids are decimal");
    // Ids are opaque: only the exact string handed out names the filter.
    for unknown in [
        (next + 1000).to_string(),
        format!("0{id}"),
        format!("+{id}"),
        format!("{id} "),
        format!("{id}.0"),
        "-1".to_owned(),
        "not-a-number".to_owned(),
        "99999999999999999999999".to_owned(),
        "{\"room\":{}}".to_owned(),
    ] {
        assert_error(
            &server.get(&get_path(&alice.user_id, &unknown), token).await,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        );
    }
    let (status, _) = server.get(&get_path(&alice.user_id, &id), token).await;
    assert_eq!(status, StatusCode::OK);
    server.finish().await;
}

async fn invalid_filters_are_bad_json(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let token = Some(alice.access_token.as_str());
    let path = create_path(&alice.user_id);

    let invalid = [
        // Not an object.
        json!([]),
        json!("filter"),
        json!(7),
        json!(true),
        Value::Null,
        // Values the spec does not allow.
        json!({ "event_format": "matrix" }),
        json!({ "event_format": "" }),
        json!({ "room": { "timeline": { "limit": 0 } } }),
        json!({ "room": { "state": { "limit": -5 } } }),
        json!({ "presence": { "limit": 1.5 } }),
        // Known fields of the wrong type.
        json!({ "event_format": 1 }),
        json!({ "account_data": { "limit": "10" } }),
        json!({ "event_fields": "type" }),
        json!({ "event_fields": ["type", 3] }),
        json!({ "room": { "rooms": "!a:localhost" } }),
        json!({ "room": { "include_leave": "yes" } }),
        json!({ "room": { "timeline": { "lazy_load_members": 1 } } }),
        json!({ "room": { "ephemeral": { "types": [null] } } }),
        json!({ "room": { "timeline": [] } }),
        json!({ "room": "all" }),
        json!({ "presence": false }),
    ];
    for body in invalid {
        let response = server.post(&path, token, body.clone()).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }

    // Text that is not JSON at all.
    let response = server
        .http
        .post(format!("{}{path}", server.base))
        .bearer_auth(&alice.access_token)
        .body("{not json")
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON error body");
    assert_error(&(status, body), StatusCode::BAD_REQUEST, "M_NOT_JSON");

    // Validation looks at known fields only: the same shapes are fine under
    // fields the spec does not define.
    let unknown = json!({ "org.example": { "limit": 0, "event_format": "matrix" } });
    let id = create(
        &server,
        &alice.user_id,
        &alice.access_token,
        unknown.clone(),
    )
    .await;
    let (status, body) = server.get(&get_path(&alice.user_id, &id), token).await;
    assert_eq!((status, body), (StatusCode::OK, unknown));
    server.finish().await;
}

async fn filters_need_a_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let id = create(&server, &alice.user_id, &alice.access_token, json!({})).await;
    assert_error(
        &server
            .post(&create_path(&alice.user_id), None, json!({}))
            .await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &server.get(&get_path(&alice.user_id, &id), None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &server
            .get(&get_path(&alice.user_id, &id), Some("not-a-token"))
            .await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    server.finish().await;
}

async fn filters_survive_a_restart(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let token = alice.access_token.clone();
    let before = create(&server, &alice.user_id, &token, full_filter()).await;
    server.restart().await;
    let (status, body) = server
        .get(&get_path(&alice.user_id, &before), Some(&token))
        .await;
    assert_eq!((status, body), (StatusCode::OK, full_filter()));
    // Ids are not handed out again after a restart.
    let after = create(&server, &alice.user_id, &token, json!({})).await;
    assert_ne!(before, after);
    let (status, body) = server
        .get(&get_path(&alice.user_id, &before), Some(&token))
        .await;
    assert_eq!((status, body), (StatusCode::OK, full_filter()));
    server.finish().await;
}

/// The store keeps each filter under its owner; the service `/sync` uses
/// returns it parsed, and nothing for another user's id.
async fn store_and_service_keep_filters_per_user(backend: Backend) {
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
    let a = store
        .create_filter("@a:hs", r#"{"room":{"timeline":{"limit":3}}}"#)
        .await
        .unwrap();
    let b = store.create_filter("@b:hs", "{}").await.unwrap();
    assert_ne!(a, b);
    assert_eq!(
        store.filter("@a:hs", &a).await.unwrap().as_deref(),
        Some(r#"{"room":{"timeline":{"limit":3}}}"#)
    );
    assert_eq!(store.filter("@b:hs", &a).await.unwrap(), None);
    assert_eq!(store.filter("@a:hs", &b).await.unwrap(), None);
    assert_eq!(store.filter("@a:hs", "nope").await.unwrap(), None);

    let filters = Filters::new(store.clone());
    assert_eq!(
        filters.get("@a:hs", &a).await.unwrap(),
        Some(json!({ "room": { "timeline": { "limit": 3 } } }))
    );
    assert_eq!(filters.get("@b:hs", &b).await.unwrap(), Some(json!({})));
    assert_eq!(filters.get("@b:hs", &a).await.unwrap(), None);

    // Concurrent creations all get distinct ids.
    let creates = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .create_filter(&format!("@u{i}:hs"), &format!("{{\"n\":{i}}}"))
                .await
                .unwrap()
        })
    });
    let mut ids = Vec::new();
    for create in creates {
        ids.push(create.await.unwrap());
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            filters.get(&format!("@u{i}:hs"), id).await.unwrap(),
            Some(json!({ "n": i }))
        );
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 16, "ids were shared: {ids:?}");

    store.close().await;
    if let Some(name) = database {
        common::drop_postgres_database(&name).await;
    }
}
