//! The device list and user profiles, against the real server.

mod common;

use common::{Backend, PASSWORD, Session, TestServer, assert_error, password_auth};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    devices_lists_every_login,
    devices_are_private_to_their_user,
    renaming_a_device,
    deleting_a_device_needs_the_password,
    delete_devices_deletes_several,
    deleting_another_users_device_id_touches_nothing,
    new_profile_has_the_localpart_as_displayname,
    profile_updates_are_visible,
    profiles_of_others_are_read_only,
    avatar_url_must_be_mxc,
    unknown_and_malformed_user_ids,
    user_id_in_the_path_may_be_percent_encoded,
    writes_need_a_token,
);

fn device_path(device_id: &str) -> String {
    format!("/_matrix/client/v3/devices/{device_id}")
}

async fn device_ids(server: &TestServer, token: &str) -> Vec<String> {
    let (status, body) = server.get("/_matrix/client/v3/devices", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut ids: Vec<String> = body["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["device_id"].as_str().expect("device_id").to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    ids.sort();
    ids
}

async fn login_named(server: &TestServer, user: &str, device_id: &str, name: &str) -> Session {
    server
        .login_with(json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": user },
            "password": PASSWORD,
            "device_id": device_id,
            "initial_device_display_name": name,
        }))
        .await
}

fn now_ms() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(elapsed.as_millis()).unwrap()
}

async fn devices_lists_every_login(backend: Backend) {
    let server = TestServer::start(backend).await;
    let before = now_ms();
    let first = server
        .register_with(json!({
            "username": "alice",
            "password": PASSWORD,
            "initial_device_display_name": "Laptop",
        }))
        .await;
    let second = login_named(&server, "alice", "PHONE", "Phone").await;
    let third = server.login("alice", PASSWORD).await;
    server.register("bob", PASSWORD).await;

    let (status, body) = server
        .get("/_matrix/client/v3/devices", Some(&second.access_token))
        .await;
    let after = now_ms();
    assert_eq!(status, StatusCode::OK, "{body}");
    let devices = body["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 3, "alice's three logins only: {body}");
    for (session, name) in [
        (&first, Some("Laptop")),
        (&second, Some("Phone")),
        (&third, None),
    ] {
        let device = devices
            .iter()
            .find(|d| d["device_id"] == session.device_id.as_str())
            .unwrap_or_else(|| panic!("{} is listed: {body}", session.device_id));
        match name {
            Some(name) => assert_eq!(device["display_name"], name),
            None => assert!(
                device["display_name"].is_null(),
                "no name was given: {device}"
            ),
        }
        assert_eq!(device["last_seen_ip"], "127.0.0.1", "{device}");
        let seen = device["last_seen_ts"].as_i64().expect("last_seen_ts");
        assert!(
            (before - 1000..=after + 1000).contains(&seen),
            "last_seen_ts {seen} not in [{before}, {after}]"
        );
    }

    // Each device can be fetched on its own, with the same fields.
    let (status, device) = server
        .get(&device_path("PHONE"), Some(&first.access_token))
        .await;
    assert_eq!(status, StatusCode::OK, "{device}");
    assert_eq!(device["device_id"], "PHONE");
    assert_eq!(device["display_name"], "Phone");
    assert_eq!(device["last_seen_ip"], "127.0.0.1");
    assert!(device["last_seen_ts"].is_i64(), "{device}");
    server.finish().await;
}

async fn devices_are_private_to_their_user(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server
        .register_with(json!({ "username": "bob", "password": PASSWORD, "device_id": "BOBPHONE" }))
        .await;
    assert_error(
        &server
            .get(&device_path("NOSUCHDEVICE"), Some(&alice.access_token))
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .get(&device_path("BOBPHONE"), Some(&alice.access_token))
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_eq!(
        device_ids(&server, &alice.access_token).await,
        sorted(&[&alice.device_id])
    );
    let (status, _) = server
        .get(&device_path("BOBPHONE"), Some(&bob.access_token))
        .await;
    assert_eq!(status, StatusCode::OK);
    server.finish().await;
}

async fn renaming_a_device(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    login_named(&server, "alice", "PHONE", "Phone").await;
    let bob = server
        .register_with(json!({
            "username": "bob",
            "password": PASSWORD,
            "device_id": "BOBPHONE",
            "initial_device_display_name": "Bob's phone",
        }))
        .await;
    let token = alice.access_token.as_str();

    // Any of the user's devices, not only the calling one.
    let (status, body) = server
        .put(
            &device_path("PHONE"),
            Some(token),
            json!({ "display_name": "Work phone" }),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (_, device) = server.get(&device_path("PHONE"), Some(token)).await;
    assert_eq!(device["display_name"], "Work phone");

    // Omitting display_name leaves it unchanged (spec: "If not given, the
    // display name is unchanged").
    let (status, _) = server
        .put(&device_path("PHONE"), Some(token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, device) = server.get(&device_path("PHONE"), Some(token)).await;
    assert_eq!(device["display_name"], "Work phone");

    let longest = "é".repeat(256);
    let (status, _) = server
        .put(
            &device_path("PHONE"),
            Some(token),
            json!({ "display_name": longest }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "256 characters are allowed");
    let too_long = server
        .put(
            &device_path("PHONE"),
            Some(token),
            json!({ "display_name": "x".repeat(257) }),
        )
        .await;
    assert_error(&too_long, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let (_, device) = server.get(&device_path("PHONE"), Some(token)).await;
    assert_eq!(device["display_name"], longest.as_str());

    for unknown in ["NOSUCHDEVICE", "BOBPHONE"] {
        let response = server
            .put(
                &device_path(unknown),
                Some(token),
                json!({ "display_name": "mine now" }),
            )
            .await;
        assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    }
    assert_error(
        &server.get(&device_path("NOSUCHDEVICE"), Some(token)).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let (_, device) = server
        .get(&device_path("BOBPHONE"), Some(&bob.access_token))
        .await;
    assert_eq!(device["display_name"], "Bob's phone");
    server.finish().await;
}

/// Starts UIA on `DELETE /devices/{id}` and returns the session.
async fn delete_challenge(server: &TestServer, token: &str, device_id: &str) -> String {
    let (status, body) = server
        .call(
            Method::DELETE,
            &device_path(device_id),
            Some(token),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["flows"], json!([{ "stages": ["m.login.password"] }]));
    assert_eq!(body["params"], json!({}));
    body["session"].as_str().expect("session").to_owned()
}

async fn delete_device(
    server: &TestServer,
    token: &str,
    device_id: &str,
    auth: Value,
) -> (StatusCode, Value) {
    server
        .call(
            Method::DELETE,
            &device_path(device_id),
            Some(token),
            Some(json!({ "auth": auth })),
        )
        .await
}

async fn deleting_a_device_needs_the_password(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let phone = login_named(&server, "alice", "PHONE", "Phone").await;
    let token = alice.access_token.as_str();

    let session = delete_challenge(&server, token, "PHONE").await;
    let wrong = delete_device(
        &server,
        token,
        "PHONE",
        password_auth("alice", "wrong", Some(&session)),
    )
    .await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED, "{}", wrong.1);
    assert_eq!(wrong.1["errcode"], "M_FORBIDDEN");
    assert_eq!(wrong.1["session"], session.as_str());
    assert_eq!(
        server.whoami(&phone.access_token).await.0,
        StatusCode::OK,
        "a failed attempt deletes nothing"
    );

    let (status, body) = delete_device(
        &server,
        token,
        "PHONE",
        password_auth("alice", PASSWORD, Some(&session)),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_error(
        &server.whoami(&phone.access_token).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    assert_eq!(server.whoami(token).await.0, StatusCode::OK);
    assert_eq!(
        device_ids(&server, token).await,
        sorted(&[&alice.device_id])
    );
    assert_error(
        &server.get(&device_path("PHONE"), Some(token)).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    // Deleting it again succeeds ("had been removed previously").
    let (status, _) = delete_device(
        &server,
        token,
        "PHONE",
        password_auth("alice", PASSWORD, None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Deleting the calling device ends the caller's own session.
    let (status, _) = delete_device(
        &server,
        token,
        &alice.device_id,
        password_auth("alice", PASSWORD, None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &server.whoami(token).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    server.finish().await;
}

async fn delete_devices_deletes_several(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let one = login_named(&server, "alice", "ONE", "One").await;
    let two = login_named(&server, "alice", "TWO", "Two").await;
    let three = login_named(&server, "alice", "THREE", "Three").await;
    let token = alice.access_token.as_str();
    let request = json!({ "devices": ["ONE", "TWO", "NEVERSEEN"] });

    let (status, challenge) = server
        .post(
            "/_matrix/client/v3/delete_devices",
            Some(token),
            request.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    assert_eq!(
        challenge["flows"],
        json!([{ "stages": ["m.login.password"] }])
    );
    let session = challenge["session"].as_str().expect("session");
    for session in [&one, &two, &three] {
        assert_eq!(server.whoami(&session.access_token).await.0, StatusCode::OK);
    }

    let mut authed = request;
    authed["auth"] = password_auth("alice", PASSWORD, Some(session));
    let (status, body) = server
        .post("/_matrix/client/v3/delete_devices", Some(token), authed)
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    for session in [&one, &two] {
        assert_error(
            &server.whoami(&session.access_token).await,
            StatusCode::UNAUTHORIZED,
            "M_UNKNOWN_TOKEN",
        );
    }
    assert_eq!(server.whoami(&three.access_token).await.0, StatusCode::OK);
    assert_eq!(server.whoami(token).await.0, StatusCode::OK);
    assert_eq!(
        device_ids(&server, token).await,
        sorted(&[alice.device_id.as_str(), "THREE"])
    );
    server.finish().await;
}

async fn deleting_another_users_device_id_touches_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server
        .register_with(json!({ "username": "bob", "password": PASSWORD, "device_id": "SHARED" }))
        .await;
    let alice_shared = login_named(&server, "alice", "SHARED", "Alice's").await;

    let (status, _) = delete_device(
        &server,
        &alice.access_token,
        "SHARED",
        password_auth("alice", PASSWORD, None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &server.whoami(&alice_shared.access_token).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let (status, whoami) = server.whoami(&bob.access_token).await;
    assert_eq!(status, StatusCode::OK, "bob's device of the same id lives");
    assert_eq!(whoami["device_id"], "SHARED");

    let (status, _) = server
        .post(
            "/_matrix/client/v3/delete_devices",
            Some(&alice.access_token),
            json!({ "devices": ["SHARED"], "auth": password_auth("alice", PASSWORD, None) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.whoami(&bob.access_token).await.0, StatusCode::OK);
    assert_eq!(
        device_ids(&server, &bob.access_token).await,
        ["SHARED".to_owned()]
    );
    server.finish().await;
}

const ALICE_PROFILE: &str = "/_matrix/client/v3/profile/@alice:localhost";

async fn new_profile_has_the_localpart_as_displayname(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("alice", PASSWORD).await;
    let (status, profile) = server.get(ALICE_PROFILE, None).await;
    assert_eq!(status, StatusCode::OK, "profiles are public: {profile}");
    assert_eq!(profile, json!({ "displayname": "alice" }));
    let (status, body) = server
        .get(&format!("{ALICE_PROFILE}/displayname"), None)
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "displayname": "alice" }))
    );
    // No avatar yet: v1.19 answers 404 for a profile field that is not set.
    assert_error(
        &server
            .get(&format!("{ALICE_PROFILE}/avatar_url"), None)
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    server.finish().await;
}

async fn profile_updates_are_visible(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let token = alice.access_token.as_str();

    let (status, body) = server
        .put(
            &format!("{ALICE_PROFILE}/displayname"),
            Some(token),
            json!({ "displayname": "Alice Liddell" }),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (status, body) = server
        .put(
            &format!("{ALICE_PROFILE}/avatar_url"),
            Some(token),
            json!({ "avatar_url": "mxc://localhost/abc" }),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));

    let expected = json!({ "displayname": "Alice Liddell", "avatar_url": "mxc://localhost/abc" });
    // Seen by anyone: anonymous, another user, and alice herself.
    for viewer in [None, Some(bob.access_token.as_str()), Some(token)] {
        let (status, profile) = server.get(ALICE_PROFILE, viewer).await;
        assert_eq!((status, profile), (StatusCode::OK, expected.clone()));
    }
    let (_, body) = server
        .get(&format!("{ALICE_PROFILE}/displayname"), None)
        .await;
    assert_eq!(body, json!({ "displayname": "Alice Liddell" }));
    let (_, body) = server
        .get(&format!("{ALICE_PROFILE}/avatar_url"), None)
        .await;
    assert_eq!(body, json!({ "avatar_url": "mxc://localhost/abc" }));

    // Changing one field leaves the other alone; bob's profile is untouched.
    let (status, _) = server
        .put(
            &format!("{ALICE_PROFILE}/avatar_url"),
            Some(token),
            json!({ "avatar_url": "mxc://localhost/def" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, profile) = server.get(ALICE_PROFILE, None).await;
    assert_eq!(
        profile,
        json!({ "displayname": "Alice Liddell", "avatar_url": "mxc://localhost/def" })
    );
    let (_, bob_profile) = server
        .get("/_matrix/client/v3/profile/@bob:localhost", None)
        .await;
    assert_eq!(bob_profile, json!({ "displayname": "bob" }));
    server.finish().await;
}

async fn profiles_of_others_are_read_only(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    for (field, value) in [
        ("displayname", "Mallory"),
        ("avatar_url", "mxc://localhost/evil"),
    ] {
        let response = server
            .put(
                &format!("{ALICE_PROFILE}/{field}"),
                Some(&bob.access_token),
                json!({ field: value }),
            )
            .await;
        assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    // Nor someone who does not exist (yet).
    let response = server
        .put(
            "/_matrix/client/v3/profile/@carol:localhost/displayname",
            Some(&bob.access_token),
            json!({ "displayname": "Carol" }),
        )
        .await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (_, profile) = server.get(ALICE_PROFILE, None).await;
    assert_eq!(profile, json!({ "displayname": "alice" }));
    let (_, profile) = server
        .get("/_matrix/client/v3/profile/@bob:localhost", None)
        .await;
    assert_eq!(profile, json!({ "displayname": "bob" }));
    server.finish().await;
}

async fn avatar_url_must_be_mxc(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let token = alice.access_token.as_str();
    let (status, _) = server
        .put(
            &format!("{ALICE_PROFILE}/avatar_url"),
            Some(token),
            json!({ "avatar_url": "mxc://localhost/good" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for bad in [
        "https://example.org/avatar.png",
        "http://localhost/abc",
        "localhost/abc",
        "MXC://localhost/abc",
        "mxc://localhost/a b",
    ] {
        let response = server
            .put(
                &format!("{ALICE_PROFILE}/avatar_url"),
                Some(token),
                json!({ "avatar_url": bad }),
            )
            .await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    let (_, body) = server
        .get(&format!("{ALICE_PROFILE}/avatar_url"), None)
        .await;
    assert_eq!(body, json!({ "avatar_url": "mxc://localhost/good" }));
    server.finish().await;
}

async fn unknown_and_malformed_user_ids(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    for user in ["@nobody:localhost", "@alice:elsewhere.example"] {
        for suffix in ["", "/displayname", "/avatar_url"] {
            let response = server
                .get(
                    &format!("/_matrix/client/v3/profile/{user}{suffix}"),
                    Some(&alice.access_token),
                )
                .await;
            assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
        }
    }
    for user in ["notauserid", "alice", "@alice", "%40", "alice:localhost"] {
        for suffix in ["", "/displayname", "/avatar_url"] {
            let response = server
                .get(&format!("/_matrix/client/v3/profile/{user}{suffix}"), None)
                .await;
            assert_eq!(
                response.0,
                StatusCode::BAD_REQUEST,
                "{user}{suffix}: {}",
                response.1
            );
            assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
        }
        let response = server
            .put(
                &format!("/_matrix/client/v3/profile/{user}/displayname"),
                Some(&alice.access_token),
                json!({ "displayname": "x" }),
            )
            .await;
        assert_eq!(
            response.0,
            StatusCode::BAD_REQUEST,
            "{user}: {}",
            response.1
        );
    }
    server.finish().await;
}

async fn user_id_in_the_path_may_be_percent_encoded(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let encoded = "/_matrix/client/v3/profile/%40alice%3Alocalhost";
    let partly = "/_matrix/client/v3/profile/%40alice:localhost";

    for path in [encoded, partly, ALICE_PROFILE] {
        let (status, profile) = server.get(path, None).await;
        assert_eq!(
            (status, profile),
            (StatusCode::OK, json!({ "displayname": "alice" })),
            "GET {path}"
        );
    }
    let (status, body) = server
        .put(
            &format!("{encoded}/displayname"),
            Some(&alice.access_token),
            json!({ "displayname": "Encoded" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = server
        .get(&format!("{ALICE_PROFILE}/displayname"), None)
        .await;
    assert_eq!(body, json!({ "displayname": "Encoded" }));

    let (status, body) = server
        .put(
            &format!("{ALICE_PROFILE}/avatar_url"),
            Some(&alice.access_token),
            json!({ "avatar_url": "mxc://localhost/raw" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = server.get(&format!("{encoded}/avatar_url"), None).await;
    assert_eq!(body, json!({ "avatar_url": "mxc://localhost/raw" }));
    server.finish().await;
}

async fn writes_need_a_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let device = device_path(&alice.device_id);
    let requests: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::PUT,
            format!("{ALICE_PROFILE}/displayname"),
            Some(json!({ "displayname": "anonymous" })),
        ),
        (
            Method::PUT,
            format!("{ALICE_PROFILE}/avatar_url"),
            Some(json!({ "avatar_url": "mxc://localhost/anonymous" })),
        ),
        (
            Method::PUT,
            device.clone(),
            Some(json!({ "display_name": "anonymous" })),
        ),
        (Method::GET, "/_matrix/client/v3/devices".into(), None),
        (Method::GET, device.clone(), None),
        (
            Method::DELETE,
            device.clone(),
            Some(json!({ "auth": password_auth("alice", PASSWORD, None) })),
        ),
        (
            Method::POST,
            "/_matrix/client/v3/delete_devices".into(),
            Some(json!({
                "devices": [alice.device_id],
                "auth": password_auth("alice", PASSWORD, None),
            })),
        ),
    ];
    for (method, path, body) in requests {
        let response = server.call(method.clone(), &path, None, body).await;
        assert_error(&response, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    }
    let (_, profile) = server.get(ALICE_PROFILE, None).await;
    assert_eq!(profile, json!({ "displayname": "alice" }));
    let (status, device) = server.get(&device, Some(&alice.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{device}");
    assert!(device["display_name"].is_null(), "{device}");
    server.finish().await;
}
