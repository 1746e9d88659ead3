//! Registration, password change, deactivation and user-interactive
//! authentication, against the real server.

mod common;

use common::{Backend, PASSWORD, TestServer, assert_error, password_auth};
use homeserver::config::RegistrationMode;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    registration_is_a_dummy_uia_flow,
    taken_and_invalid_usernames_are_refused_before_uia,
    registration_without_username_generates_one,
    registration_needs_a_password_and_refuses_guests,
    inhibit_login_creates_only_the_account,
    registration_uses_the_requested_device,
    registration_can_issue_a_refresh_token,
    username_availability,
    closed_registration_creates_nothing,
    token_registration_requires_the_token,
    registration_token_validity,
    token_validity_needs_token_registration,
    registrations_are_rate_limited_per_address,
    password_change_requires_the_current_password,
    password_change_logs_out_other_devices,
    password_change_can_keep_other_devices,
    password_auth_for_another_user_is_refused,
    deactivation_ends_the_account,
    deactivation_with_erase_clears_the_profile,
    uia_sessions_serve_one_purpose_and_user,
);

const REGISTER: &str = "/_matrix/client/v3/register";
const PASSWORD_CHANGE: &str = "/_matrix/client/v3/account/password";
const DEACTIVATE: &str = "/_matrix/client/v3/account/deactivate";

/// Asserts the 401 UIA challenge offering exactly `stages` (the answer to a
/// request without `auth`) and returns its session id.
#[track_caller]
fn assert_challenge(response: &(StatusCode, Value), stages: &[&str]) -> String {
    let (status, body) = response;
    assert_eq!(*status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["flows"], json!([{ "stages": stages }]), "{body}");
    assert_eq!(body["params"], json!({}), "{body}");
    let session = body["session"].as_str().expect("UIA session");
    assert!(!session.is_empty());
    session.to_owned()
}

/// Asserts a 401 UIA response whose last stage failed with `errcode`.
#[track_caller]
fn assert_failed_stage(response: &(StatusCode, Value), errcode: &str, session: &str) {
    let (status, body) = response;
    assert_eq!(*status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["errcode"], errcode, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(body["session"], session, "the session carries on: {body}");
    assert!(body["flows"].is_array(), "the flows are repeated: {body}");
}

async fn available(server: &TestServer, username: &str) -> (StatusCode, Value) {
    server
        .get(
            &format!("/_matrix/client/v3/register/available?username={username}"),
            None,
        )
        .await
}

async fn registration_is_a_dummy_uia_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let request = json!({ "username": "alice", "password": PASSWORD });
    let challenge = server.post(REGISTER, None, request.clone()).await;
    let session = assert_challenge(&challenge, &["m.login.dummy"]);
    let keys: Vec<&String> = challenge.1.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["flows", "params", "session"],
        "a fresh challenge has nothing else: {}",
        challenge.1
    );
    assert_eq!(
        available(&server, "alice").await.0,
        StatusCode::OK,
        "the challenge alone creates no account"
    );

    let mut complete = request;
    complete["auth"] = json!({ "type": "m.login.dummy", "session": session });
    let (status, body) = server.post(REGISTER, None, complete).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:localhost");
    let token = body["access_token"].as_str().expect("access_token");
    let device_id = body["device_id"].as_str().expect("device_id");
    assert!(!device_id.is_empty());
    assert!(
        body.get("refresh_token").is_none() && body.get("expires_in_ms").is_none(),
        "no refresh token unless asked: {body}"
    );

    let (status, whoami) = server.whoami(token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        whoami,
        json!({ "user_id": "@alice:localhost", "device_id": device_id, "is_guest": false })
    );
    // The password chosen at registration logs in.
    server.login("alice", PASSWORD).await;
    server.finish().await;
}

async fn taken_and_invalid_usernames_are_refused_before_uia(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;

    // Without auth: the spec wants these checks before the UIA challenge.
    let taken = server
        .post(
            REGISTER,
            None,
            json!({ "username": "alice", "password": "other" }),
        )
        .await;
    assert_error(&taken, StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    // With auth it fails the same way, and alice's account is untouched.
    let taken = server
        .post(
            REGISTER,
            None,
            json!({ "username": "alice", "password": "other", "auth": { "type": "m.login.dummy" } }),
        )
        .await;
    assert_error(&taken, StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    assert_error(
        &server.login_attempt("alice", "other").await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_eq!(server.whoami(&alice.access_token).await.0, StatusCode::OK);

    for username in ["Alice", "BOB", "al ice", "al!ce", "a:b", "émile", "a@b", ""] {
        for auth in [None, Some(json!({ "type": "m.login.dummy" }))] {
            let mut body = json!({ "username": username, "password": PASSWORD });
            if let Some(auth) = auth {
                body["auth"] = auth;
            }
            let response = server.post(REGISTER, None, body).await;
            assert_eq!(
                (response.0, &response.1["errcode"]),
                (StatusCode::BAD_REQUEST, &json!("M_INVALID_USERNAME")),
                "username {username:?}: {}",
                response.1
            );
        }
    }
    // Nothing was created under the lower-cased name either.
    assert_eq!(available(&server, "bob").await.0, StatusCode::OK);
    server.finish().await;
}

async fn registration_without_username_generates_one(backend: Backend) {
    let server = TestServer::start(backend).await;
    let session = server.register_with(json!({ "password": PASSWORD })).await;
    let localpart = session
        .user_id
        .strip_prefix('@')
        .and_then(|rest| rest.strip_suffix(":localhost"))
        .unwrap_or_else(|| panic!("a local user id: {}", session.user_id));
    assert!(!localpart.is_empty());
    assert!(
        localpart
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=-/+".contains(&b)),
        "a valid localpart: {localpart}"
    );
    let (status, whoami) = server.whoami(&session.access_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(whoami["user_id"], session.user_id.as_str());
    let again = server.login(&session.user_id, PASSWORD).await;
    assert_eq!(again.user_id, session.user_id);
    assert_error(
        &available(&server, localpart).await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );

    let other = server.register_with(json!({ "password": PASSWORD })).await;
    assert_ne!(other.user_id, session.user_id, "each one is new");
    server.finish().await;
}

async fn registration_needs_a_password_and_refuses_guests(backend: Backend) {
    let server = TestServer::start(backend).await;
    let no_password = server
        .post(
            REGISTER,
            None,
            json!({ "username": "alice", "auth": { "type": "m.login.dummy" } }),
        )
        .await;
    assert_error(&no_password, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    assert_eq!(available(&server, "alice").await.0, StatusCode::OK);

    for auth in [json!(null), json!({ "type": "m.login.dummy" })] {
        let guest = server
            .post(
                &format!("{REGISTER}?kind=guest"),
                None,
                json!({ "username": "guest", "password": PASSWORD, "auth": auth }),
            )
            .await;
        assert_error(&guest, StatusCode::FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN");
    }
    assert_eq!(available(&server, "guest").await.0, StatusCode::OK);

    // `kind=user` is the default, spelled out.
    let (status, body) = server
        .post(
            &format!("{REGISTER}?kind=user"),
            None,
            json!({ "username": "user", "password": PASSWORD, "auth": { "type": "m.login.dummy" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@user:localhost");
    server.finish().await;
}

async fn inhibit_login_creates_only_the_account(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server
        .post(
            REGISTER,
            None,
            json!({
                "username": "alice",
                "password": PASSWORD,
                "inhibit_login": true,
                "refresh_token": true,
                "auth": { "type": "m.login.dummy" },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "user_id": "@alice:localhost" }));

    let session = server.login("alice", PASSWORD).await;
    let (status, devices) = server
        .get("/_matrix/client/v3/devices", Some(&session.access_token))
        .await;
    assert_eq!(status, StatusCode::OK);
    let devices = devices["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "registration made no device: {devices:?}");
    assert_eq!(devices[0]["device_id"], session.device_id.as_str());
    server.finish().await;
}

async fn registration_uses_the_requested_device(backend: Backend) {
    let server = TestServer::start(backend).await;
    let session = server
        .register_with(json!({
            "username": "alice",
            "password": PASSWORD,
            "device_id": "MYPHONE",
            "initial_device_display_name": "Alice's phone",
        }))
        .await;
    assert_eq!(session.device_id, "MYPHONE");
    let (status, device) = server
        .get(
            "/_matrix/client/v3/devices/MYPHONE",
            Some(&session.access_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{device}");
    assert_eq!(device["device_id"], "MYPHONE");
    assert_eq!(device["display_name"], "Alice's phone");
    let (_, whoami) = server.whoami(&session.access_token).await;
    assert_eq!(whoami["device_id"], "MYPHONE");
    server.finish().await;
}

async fn registration_can_issue_a_refresh_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server
        .post(
            REGISTER,
            None,
            json!({
                "username": "alice",
                "password": PASSWORD,
                "refresh_token": true,
                "auth": { "type": "m.login.dummy" },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in_ms"], 5 * 60 * 1000);
    let refresh = body["refresh_token"].as_str().expect("refresh_token");
    let access = body["access_token"].as_str().expect("access_token");
    assert_eq!(server.whoami(access).await.0, StatusCode::OK);

    let (status, rotated) = server
        .post(
            "/_matrix/client/v3/refresh",
            None,
            json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the refresh token works: {rotated}");
    let (_, whoami) = server
        .whoami(rotated["access_token"].as_str().unwrap())
        .await;
    assert_eq!(whoami["device_id"], body["device_id"]);
    server.finish().await;
}

async fn username_availability(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = available(&server, "alice").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "available": true }))
    );
    server.register("alice", PASSWORD).await;
    assert_error(
        &available(&server, "alice").await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );
    for invalid in ["Alice", "al%20ice", "al!ce", "%C3%A9mile"] {
        assert_error(
            &available(&server, invalid).await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_USERNAME",
        );
    }
    let (status, body) = available(&server, "bob").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "available": true }))
    );
    server.finish().await;
}

async fn closed_registration_creates_nothing(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.registration = RegistrationMode::Closed;
    })
    .await;
    for auth in [json!(null), json!({ "type": "m.login.dummy" })] {
        let response = server
            .post(
                REGISTER,
                None,
                json!({ "username": "alice", "password": PASSWORD, "auth": auth }),
            )
            .await;
        assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    assert_error(
        &server.login_attempt("alice", PASSWORD).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    server.finish().await;
}

const REGISTRATION_TOKEN: &str = "s3cret-token";

async fn start_token_gated(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |config| {
        config.registration = RegistrationMode::Token;
        config.registration_token = Some(REGISTRATION_TOKEN.into());
    })
    .await
}

async fn token_registration_requires_the_token(backend: Backend) {
    let server = start_token_gated(backend).await;
    let request = json!({ "username": "alice", "password": PASSWORD });
    let session = assert_challenge(
        &server.post(REGISTER, None, request.clone()).await,
        &["m.login.registration_token"],
    );

    // The open server's stage does not get through.
    let mut dummy = request.clone();
    dummy["auth"] = json!({ "type": "m.login.dummy", "session": session });
    let response = server.post(REGISTER, None, dummy).await;
    assert_eq!(response.0, StatusCode::UNAUTHORIZED, "{}", response.1);

    for wrong in [json!("wrong-token"), json!(null), json!("")] {
        let mut attempt = request.clone();
        attempt["auth"] = json!({
            "type": "m.login.registration_token",
            "token": wrong,
            "session": session,
        });
        let response = server.post(REGISTER, None, attempt).await;
        assert_failed_stage(&response, "M_FORBIDDEN", &session);
    }
    assert_error(
        &server.login_attempt("alice", PASSWORD).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    let mut right = request;
    right["auth"] = json!({
        "type": "m.login.registration_token",
        "token": REGISTRATION_TOKEN,
        "session": session,
    });
    let (status, body) = server.post(REGISTER, None, right).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:localhost");
    assert_eq!(
        server
            .whoami(body["access_token"].as_str().unwrap())
            .await
            .0,
        StatusCode::OK
    );
    server.finish().await;
}

const VALIDITY: &str = "/_matrix/client/v1/register/m.login.registration_token/validity";

async fn registration_token_validity(backend: Backend) {
    let server = start_token_gated(backend).await;
    let (status, body) = server
        .get(&format!("{VALIDITY}?token={REGISTRATION_TOKEN}"), None)
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "valid": true })));
    for other in ["wrong-token", "S3CRET-TOKEN", "s3cret-token2"] {
        let (status, body) = server.get(&format!("{VALIDITY}?token={other}"), None).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({ "valid": false })),
            "token {other}"
        );
    }
    let long = "a".repeat(65);
    for malformed in ["has%20space", "", long.as_str(), "%C3%A9"] {
        assert_error(
            &server
                .get(&format!("{VALIDITY}?token={malformed}"), None)
                .await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        );
    }
    server.finish().await;
}

async fn token_validity_needs_token_registration(backend: Backend) {
    // A closed server permits no registration, so every token is refused with 403.
    let closed = TestServer::start_with(backend, |config| {
        config.registration = RegistrationMode::Closed;
        config.registration_token = Some(REGISTRATION_TOKEN.into());
    })
    .await;
    let response = closed
        .get(&format!("{VALIDITY}?token={REGISTRATION_TOKEN}"), None)
        .await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    closed.finish().await;

    // An open server registers without tokens: even a configured one is not in force.
    let open = TestServer::start_with(backend, |config| {
        config.registration = RegistrationMode::Open;
        config.registration_token = Some(REGISTRATION_TOKEN.into());
    })
    .await;
    let (status, body) = open
        .get(&format!("{VALIDITY}?token={REGISTRATION_TOKEN}"), None)
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "valid": false })));
    open.finish().await;
}

async fn registrations_are_rate_limited_per_address(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.registration_burst = 2;
        config.registration_refill_secs = 60;
    })
    .await;
    // Challenges and refused requests cost nothing; only registrations do.
    for _ in 0..3 {
        assert_eq!(
            server
                .post(
                    REGISTER,
                    None,
                    json!({ "username": "alice", "password": PASSWORD })
                )
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
    }
    server.register("alice", PASSWORD).await;
    assert_error(
        &server
            .post(
                REGISTER,
                None,
                json!({ "username": "alice", "password": PASSWORD, "auth": { "type": "m.login.dummy" } }),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );
    server.register("bob", PASSWORD).await;

    for auth in [json!({ "type": "m.login.dummy" }), json!(null)] {
        let limited = server
            .post(
                REGISTER,
                None,
                json!({ "username": "carol", "password": PASSWORD, "auth": auth }),
            )
            .await;
        assert_error(&limited, StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED");
        let retry = limited.1["retry_after_ms"]
            .as_u64()
            .expect("retry_after_ms");
        assert!(retry > 0 && retry <= 60_000, "retry_after_ms = {retry}");
    }
    let (status, body) = available(&server, "carol").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "available": true })),
        "the refused registration created nothing"
    );
    // Logging in is not registering: existing users are unaffected.
    server.login("alice", PASSWORD).await;
    server.finish().await;
}

async fn change_password(
    server: &TestServer,
    token: &str,
    new_password: &str,
    extra: Value,
    auth: Option<Value>,
) -> (StatusCode, Value) {
    let mut body = json!({ "new_password": new_password });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    if let Some(auth) = auth {
        body["auth"] = auth;
    }
    server.post(PASSWORD_CHANGE, Some(token), body).await
}

async fn password_change_requires_the_current_password(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let token = alice.access_token.as_str();

    let challenge = change_password(&server, token, "new password", json!({}), None).await;
    let session = assert_challenge(&challenge, &["m.login.password"]);

    let wrong = change_password(
        &server,
        token,
        "new password",
        json!({}),
        Some(password_auth(&alice.user_id, "wrong", Some(&session))),
    )
    .await;
    assert_failed_stage(&wrong, "M_FORBIDDEN", &session);
    // Unchanged so far.
    server.login("alice", PASSWORD).await;
    assert_error(
        &server.login_attempt("alice", "new password").await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    // The same session can still be completed with the right password.
    let (status, body) = change_password(
        &server,
        token,
        "new password",
        json!({}),
        Some(password_auth("alice", PASSWORD, Some(&session))),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_error(
        &server.login_attempt("alice", PASSWORD).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    server.login("alice", "new password").await;
    assert_eq!(server.whoami(token).await.0, StatusCode::OK);

    // Without a session id: a single-stage flow completes at once.
    let (status, _) = change_password(
        &server,
        token,
        "third password",
        json!({}),
        Some(password_auth("@alice:localhost", "new password", None)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    server.login("alice", "third password").await;

    // No token at all.
    let anonymous = server
        .post(
            PASSWORD_CHANGE,
            None,
            json!({ "new_password": "x", "auth": password_auth("alice", "third password", None) }),
        )
        .await;
    assert_error(&anonymous, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    server.login("alice", "third password").await;
    server.finish().await;
}

async fn password_change_logs_out_other_devices(backend: Backend) {
    let server = TestServer::start(backend).await;
    let current = server.register("alice", PASSWORD).await;
    let other = server.login("alice", PASSWORD).await;
    let another = server.login("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;

    let (status, _) = change_password(
        &server,
        &current.access_token,
        "new password",
        json!({}),
        Some(password_auth("alice", PASSWORD, None)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for token in [&other.access_token, &another.access_token] {
        assert_error(
            &server.whoami(token).await,
            StatusCode::UNAUTHORIZED,
            "M_UNKNOWN_TOKEN",
        );
    }
    assert_eq!(
        server.whoami(&current.access_token).await.0,
        StatusCode::OK,
        "the device that changed the password stays logged in"
    );
    assert_eq!(server.whoami(&bob.access_token).await.0, StatusCode::OK);
    let (_, devices) = server
        .get("/_matrix/client/v3/devices", Some(&current.access_token))
        .await;
    assert_eq!(
        devices["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["device_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [current.device_id.as_str()],
        "the other devices are gone too"
    );
    server.finish().await;
}

async fn password_change_can_keep_other_devices(backend: Backend) {
    let server = TestServer::start(backend).await;
    let current = server.register("alice", PASSWORD).await;
    let other = server.login("alice", PASSWORD).await;
    let (status, _) = change_password(
        &server,
        &current.access_token,
        "new password",
        json!({ "logout_devices": false }),
        Some(password_auth("alice", PASSWORD, None)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.whoami(&current.access_token).await.0, StatusCode::OK);
    assert_eq!(server.whoami(&other.access_token).await.0, StatusCode::OK);
    server.login("alice", "new password").await;
    assert_error(
        &server.login_attempt("alice", PASSWORD).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    server.finish().await;
}

async fn password_auth_for_another_user_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", "bob's password").await;
    let alice_other = server.login("alice", PASSWORD).await;

    // Alice's token, Bob's (correct) credentials.
    for user in ["bob", "@bob:localhost"] {
        let session = assert_challenge(
            &change_password(&server, &alice.access_token, "hijacked", json!({}), None).await,
            &["m.login.password"],
        );
        let response = change_password(
            &server,
            &alice.access_token,
            "hijacked",
            json!({}),
            Some(password_auth(user, "bob's password", Some(&session))),
        )
        .await;
        assert_failed_stage(&response, "M_FORBIDDEN", &session);
    }
    // Deactivation and device deletion refuse it the same way.
    let deactivate = server
        .post(
            DEACTIVATE,
            Some(&alice.access_token),
            json!({ "auth": password_auth("bob", "bob's password", None) }),
        )
        .await;
    assert_eq!(deactivate.0, StatusCode::UNAUTHORIZED, "{}", deactivate.1);
    assert_eq!(deactivate.1["errcode"], "M_FORBIDDEN");
    let delete = server
        .post(
            "/_matrix/client/v3/delete_devices",
            Some(&alice.access_token),
            json!({
                "devices": [alice_other.device_id],
                "auth": password_auth("bob", "bob's password", None),
            }),
        )
        .await;
    assert_eq!(delete.0, StatusCode::UNAUTHORIZED, "{}", delete.1);
    assert_eq!(delete.1["errcode"], "M_FORBIDDEN");

    // Nothing changed for anyone.
    for user in ["alice", "bob"] {
        assert_error(
            &server.login_attempt(user, "hijacked").await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
    }
    server.login("alice", PASSWORD).await;
    server.login("bob", "bob's password").await;
    for token in [
        &alice.access_token,
        &alice_other.access_token,
        &bob.access_token,
    ] {
        assert_eq!(server.whoami(token).await.0, StatusCode::OK);
    }
    server.finish().await;
}

async fn deactivation_ends_the_account(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let other = server.login("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;

    let session = assert_challenge(
        &server
            .post(DEACTIVATE, Some(&alice.access_token), json!({}))
            .await,
        &["m.login.password"],
    );
    let wrong = server
        .post(
            DEACTIVATE,
            Some(&alice.access_token),
            json!({ "auth": password_auth("alice", "wrong", Some(&session)) }),
        )
        .await;
    assert_failed_stage(&wrong, "M_FORBIDDEN", &session);
    assert_eq!(server.whoami(&alice.access_token).await.0, StatusCode::OK);

    let (status, body) = server
        .post(
            DEACTIVATE,
            Some(&alice.access_token),
            json!({ "auth": password_auth("alice", PASSWORD, Some(&session)) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The server binds no third-party ids, so there is nothing to unbind; the
    // spec says the result "must be `success`" in that case.
    assert_eq!(body, json!({ "id_server_unbind_result": "success" }));

    for token in [&alice.access_token, &other.access_token] {
        assert_error(
            &server.whoami(token).await,
            StatusCode::UNAUTHORIZED,
            "M_UNKNOWN_TOKEN",
        );
    }
    let login = server.login_attempt("alice", PASSWORD).await;
    assert_eq!(login.0, StatusCode::FORBIDDEN, "{}", login.1);
    assert_eq!(login.1["errcode"], "M_USER_DEACTIVATED", "{}", login.1);
    assert_error(
        &server
            .post(
                REGISTER,
                None,
                json!({ "username": "alice", "password": PASSWORD, "auth": { "type": "m.login.dummy" } }),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );
    assert_error(
        &available(&server, "alice").await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );
    assert_eq!(
        server.whoami(&bob.access_token).await.0,
        StatusCode::OK,
        "other users are untouched"
    );
    server.finish().await;
}

async fn deactivation_with_erase_clears_the_profile(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let token = alice.access_token.as_str();
    for (field, value) in [
        ("displayname", "Alice Liddell"),
        ("avatar_url", "mxc://localhost/alice"),
    ] {
        let (status, _) = server
            .put(
                &format!("/_matrix/client/v3/profile/@alice:localhost/{field}"),
                Some(token),
                json!({ field: value }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, profile) = server
        .get("/_matrix/client/v3/profile/@alice:localhost", None)
        .await;
    assert_eq!(profile["displayname"], "Alice Liddell");

    let (status, body) = server
        .post(
            DEACTIVATE,
            Some(token),
            json!({ "erase": true, "auth": password_auth("alice", PASSWORD, None) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(
        &server.whoami(token).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );

    let (status, profile) = server
        .get("/_matrix/client/v3/profile/@alice:localhost", None)
        .await;
    assert!(
        status == StatusCode::OK || status == StatusCode::NOT_FOUND,
        "{status} {profile}"
    );
    assert!(profile.get("displayname").is_none(), "{profile}");
    assert!(profile.get("avatar_url").is_none(), "{profile}");
    for field in ["displayname", "avatar_url"] {
        assert_error(
            &server
                .get(
                    &format!("/_matrix/client/v3/profile/@alice:localhost/{field}"),
                    None,
                )
                .await,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        );
    }
    server.finish().await;
}

async fn uia_sessions_serve_one_purpose_and_user(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let alice_auth = |session: &str| password_auth("alice", PASSWORD, Some(session));

    // A registration session is no good for a password change.
    let registration = assert_challenge(
        &server
            .post(
                REGISTER,
                None,
                json!({ "username": "carol", "password": PASSWORD }),
            )
            .await,
        &["m.login.dummy"],
    );
    let response = change_password(
        &server,
        &alice.access_token,
        "new password",
        json!({}),
        Some(alice_auth(&registration)),
    )
    .await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_UNKNOWN");

    // A password-change session is no good for deactivation or device deletion...
    let password_session = assert_challenge(
        &change_password(
            &server,
            &alice.access_token,
            "new password",
            json!({}),
            None,
        )
        .await,
        &["m.login.password"],
    );
    let response = server
        .post(
            DEACTIVATE,
            Some(&alice.access_token),
            json!({ "auth": alice_auth(&password_session) }),
        )
        .await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    let response = server
        .post(
            "/_matrix/client/v3/delete_devices",
            Some(&alice.access_token),
            json!({ "devices": [alice.device_id], "auth": alice_auth(&password_session) }),
        )
        .await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    assert_eq!(server.whoami(&alice.access_token).await.0, StatusCode::OK);

    // ...nor for another user's password change, even with that user's password.
    let response = change_password(
        &server,
        &bob.access_token,
        "new password",
        json!({}),
        Some(password_auth("bob", PASSWORD, Some(&password_session))),
    )
    .await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_UNKNOWN");

    // Session ids that were never issued.
    for unknown in ["no-such-session", ""] {
        let response = change_password(
            &server,
            &alice.access_token,
            "new password",
            json!({}),
            Some(alice_auth(unknown)),
        )
        .await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_UNKNOWN");
        let response = server
            .post(
                REGISTER,
                None,
                json!({
                    "username": "carol",
                    "password": PASSWORD,
                    "auth": { "type": "m.login.dummy", "session": unknown },
                }),
            )
            .await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    }
    server.login("alice", PASSWORD).await;
    server.login("bob", PASSWORD).await;
    assert_eq!(available(&server, "carol").await.0, StatusCode::OK);

    // The sessions were not spent by the refusals: each still serves its own purpose.
    let (status, _) = change_password(
        &server,
        &alice.access_token,
        "new password",
        json!({}),
        Some(alice_auth(&password_session)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // A completed session is spent.
    let response = change_password(
        &server,
        &alice.access_token,
        "newer password",
        json!({}),
        Some(password_auth(
            "alice",
            "new password",
            Some(&password_session),
        )),
    )
    .await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    server.login("alice", "new password").await;

    let (status, body) = server
        .post(
            REGISTER,
            None,
            json!({
                "username": "carol",
                "password": PASSWORD,
                "auth": { "type": "m.login.dummy", "session": registration },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.finish().await;
}
