//! Login, access tokens, refresh tokens and logout, against the real server.

mod common;

use std::time::Duration;

use common::{Backend, PASSWORD, TestServer, assert_error};
use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(
    login_flows_offer_password,
    login_with_identifier_localpart_and_legacy_user,
    wrong_password_and_unknown_user_are_forbidden,
    unsupported_login_requests_are_refused,
    failed_logins_are_rate_limited_per_user,
    missing_and_garbage_tokens_are_refused,
    access_token_query_parameter_is_accepted,
    logout_invalidates_the_token_at_once,
    logout_all_ends_every_session,
    login_again_on_a_device_replaces_its_session,
    refresh_rotates_tokens,
    reused_refresh_token_revokes_the_session,
    expired_access_token_is_a_soft_logout,
    tokens_survive_a_restart,
);

async fn login_flows_offer_password(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server.get("/_matrix/client/v3/login", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "flows": [{ "type": "m.login.password" }] }));
    server.finish().await;
}

async fn login_with_identifier_localpart_and_legacy_user(backend: Backend) {
    let server = TestServer::start(backend).await;
    let registered = server.register("alice", PASSWORD).await;

    let by_localpart = server.login("alice", PASSWORD).await;
    assert_eq!(by_localpart.user_id, "@alice:localhost");
    assert_ne!(
        by_localpart.device_id, registered.device_id,
        "each login is a new device"
    );
    assert!(by_localpart.refresh_token.is_none());

    let by_full_id = server.login("@alice:localhost", PASSWORD).await;
    assert_eq!(by_full_id.user_id, "@alice:localhost");

    let legacy = server
        .login_with(json!({ "type": "m.login.password", "user": "alice", "password": PASSWORD }))
        .await;
    assert_eq!(legacy.user_id, "@alice:localhost");

    let (status, whoami) = server.whoami(&by_localpart.access_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        whoami,
        json!({ "user_id": "@alice:localhost", "device_id": by_localpart.device_id, "is_guest": false })
    );

    let named = server
        .login_with(json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": "alice" },
            "password": PASSWORD,
            "device_id": "PHONE",
            "initial_device_display_name": "Alice's phone",
        }))
        .await;
    assert_eq!(named.device_id, "PHONE");
    let (_, device) = server
        .get(
            "/_matrix/client/v3/devices/PHONE",
            Some(&named.access_token),
        )
        .await;
    assert_eq!(device["display_name"], "Alice's phone");
    server.finish().await;
}

async fn wrong_password_and_unknown_user_are_forbidden(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("alice", PASSWORD).await;
    for user in ["alice", "nobody"] {
        let response = server
            .post(
                "/_matrix/client/v3/login",
                None,
                json!({
                    "type": "m.login.password",
                    "identifier": { "type": "m.id.user", "user": user },
                    "password": "wrong password",
                }),
            )
            .await;
        assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    server.finish().await;
}

async fn unsupported_login_requests_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token_login = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({ "type": "m.login.token", "token": "x" }),
        )
        .await;
    assert_error(&token_login, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    let email = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.thirdparty", "medium": "email", "address": "a@b.c" },
                "password": PASSWORD,
            }),
        )
        .await;
    assert_error(&email, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    let no_password = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" } }),
        )
        .await;
    assert_error(&no_password, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    server.finish().await;
}

async fn failed_logins_are_rate_limited_per_user(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.login_failure_burst = 3;
        config.login_failure_refill_secs = 60;
    })
    .await;
    server.register("alice", PASSWORD).await;
    server.register("bob", PASSWORD).await;
    let attempt = |user: &'static str, password: &'static str| {
        let server = &server;
        async move { server.login_attempt(user, password).await }
    };
    for _ in 0..3 {
        assert_error(
            &attempt("alice", "wrong").await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
    }
    let limited = attempt("alice", PASSWORD).await;
    assert_error(&limited, StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED");
    let retry = limited.1["retry_after_ms"]
        .as_u64()
        .expect("retry_after_ms");
    assert!(retry > 0 && retry <= 60_000, "retry_after_ms = {retry}");

    // The raw response also carries Retry-After.
    let response = server
        .http
        .post(format!("{}/_matrix/client/v3/login", server.base))
        .json(&json!({ "type": "m.login.password", "user": "alice", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));

    // Another user is not affected by alice's failures.
    assert_eq!(attempt("bob", PASSWORD).await.0, StatusCode::OK);
    server.finish().await;
}

async fn missing_and_garbage_tokens_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let missing = server.get("/_matrix/client/v3/account/whoami", None).await;
    assert_error(&missing, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    let garbage = server.whoami("not-a-token").await;
    assert_error(&garbage, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_eq!(garbage.1["soft_logout"], false);

    // A well-formed token signed with another server's key.
    let other = TestServer::start(Backend::Sqlite).await;
    let foreign = other.register("alice", PASSWORD).await;
    server.register("alice", PASSWORD).await;
    let forged = server.whoami(&foreign.access_token).await;
    assert_error(&forged, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    other.finish().await;
    server.finish().await;
}

async fn access_token_query_parameter_is_accepted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let path = format!(
        "/_matrix/client/v3/account/whoami?access_token={}",
        alice.access_token
    );
    let (status, body) = server.get(&path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:localhost");
    server.finish().await;
}

async fn logout_invalidates_the_token_at_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    let other = server.login("alice", PASSWORD).await;
    assert_eq!(server.whoami(&alice.access_token).await.0, StatusCode::OK);

    let (status, body) = server
        .post(
            "/_matrix/client/v3/logout",
            Some(&alice.access_token),
            json!({}),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let after = server.whoami(&alice.access_token).await;
    assert_error(&after, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_eq!(after.1["soft_logout"], false);

    // The device went with the session; the other login is untouched.
    let (_, devices) = server
        .get("/_matrix/client/v3/devices", Some(&other.access_token))
        .await;
    let ids: Vec<&str> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![other.device_id.as_str()]);
    server.finish().await;
}

async fn logout_all_ends_every_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = server.register("alice", PASSWORD).await;
    let second = server.login("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let (status, _) = server
        .post(
            "/_matrix/client/v3/logout/all",
            Some(&second.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for token in [&first.access_token, &second.access_token] {
        assert_error(
            &server.whoami(token).await,
            StatusCode::UNAUTHORIZED,
            "M_UNKNOWN_TOKEN",
        );
    }
    assert_eq!(
        server.whoami(&bob.access_token).await.0,
        StatusCode::OK,
        "other users keep their sessions"
    );
    let again = server.login("alice", PASSWORD).await;
    assert_eq!(server.whoami(&again.access_token).await.0, StatusCode::OK);
    server.finish().await;
}

async fn login_again_on_a_device_replaces_its_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("alice", PASSWORD).await;
    let body = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": "alice" },
        "password": PASSWORD,
        "device_id": "LAPTOP",
    });
    let first = server.login_with(body.clone()).await;
    let second = server.login_with(body).await;
    assert_eq!(second.device_id, "LAPTOP");
    assert_error(
        &server.whoami(&first.access_token).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    assert_eq!(server.whoami(&second.access_token).await.0, StatusCode::OK);
    server.finish().await;
}

async fn login_with_refresh(server: &TestServer) -> common::Session {
    server
        .login_with(json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": "alice" },
            "password": PASSWORD,
            "refresh_token": true,
        }))
        .await
}

async fn refresh_rotates_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("alice", PASSWORD).await;
    let (status, body) = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({ "type": "m.login.password", "user": "alice", "password": PASSWORD, "refresh_token": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["expires_in_ms"], 5 * 60 * 1000);
    let refresh = body["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    let access = body["access_token"].as_str().unwrap().to_owned();

    let (status, rotated) = server
        .post(
            "/_matrix/client/v3/refresh",
            None,
            json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_access = rotated["access_token"].as_str().unwrap();
    let new_refresh = rotated["refresh_token"].as_str().unwrap();
    assert!(rotated["expires_in_ms"].as_u64().unwrap() > 0);
    assert_ne!(new_access, access);
    assert_ne!(new_refresh, refresh);

    let (status, whoami) = server.whoami(new_access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        whoami["device_id"], body["device_id"],
        "refresh keeps the device"
    );
    assert_error(
        &server.whoami(&access).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );

    // The new refresh token works in turn.
    let (status, _) = server
        .post(
            "/_matrix/client/v3/refresh",
            None,
            json!({ "refresh_token": new_refresh }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let unknown = server
        .post(
            "/_matrix/client/v3/refresh",
            None,
            json!({ "refresh_token": "ttr_unknown" }),
        )
        .await;
    assert_error(&unknown, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    server.finish().await;
}

async fn reused_refresh_token_revokes_the_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("alice", PASSWORD).await;
    let session = login_with_refresh(&server).await;
    let first_refresh = session.refresh_token.clone().unwrap();
    let (_, rotated) = server
        .post(
            "/_matrix/client/v3/refresh",
            None,
            json!({ "refresh_token": first_refresh }),
        )
        .await;
    let live_access = rotated["access_token"].as_str().unwrap().to_owned();
    assert_eq!(server.whoami(&live_access).await.0, StatusCode::OK);

    // Someone replays the spent token: refused, and the whole session is revoked.
    let replay = server
        .post(
            "/_matrix/client/v3/refresh",
            None,
            json!({ "refresh_token": first_refresh }),
        )
        .await;
    assert_error(&replay, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_error(
        &server.whoami(&live_access).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let next = server
        .post(
            "/_matrix/client/v3/refresh",
            None,
            json!({ "refresh_token": rotated["refresh_token"] }),
        )
        .await;
    assert_error(&next, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    server.finish().await;
}

async fn expired_access_token_is_a_soft_logout(backend: Backend) {
    let server =
        TestServer::start_with(backend, |config| config.access_token_lifetime_ms = 1000).await;
    server.register("alice", PASSWORD).await;
    let session = login_with_refresh(&server).await;
    assert_eq!(server.whoami(&session.access_token).await.0, StatusCode::OK);
    // Expiry has one-second resolution; wait past the next full second.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = server.whoami(&session.access_token).await;
    assert_error(&expired, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_eq!(expired.1["soft_logout"], true);

    let (status, rotated) = server
        .post(
            "/_matrix/client/v3/refresh",
            None,
            json!({ "refresh_token": session.refresh_token }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an expired access token can still be refreshed"
    );
    assert_eq!(
        server
            .whoami(rotated["access_token"].as_str().unwrap())
            .await
            .0,
        StatusCode::OK
    );
    server.finish().await;
}

async fn tokens_survive_a_restart(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let alice = server.register("alice", PASSWORD).await;
    server.restart().await;
    let (status, body) = server.whoami(&alice.access_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.login("alice", PASSWORD).await;
    server.finish().await;
}
