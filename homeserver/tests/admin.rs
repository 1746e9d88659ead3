//! The admin API (`/_teatime/admin/v1`), against the real server.

mod common;

use common::{Backend, PASSWORD, Session, TestServer, assert_error, encode};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    only_administrators_reach_the_admin_api,
    administrators_create_and_list_users,
    passwords_deactivation_and_admin_rights,
    rooms_are_listed_with_members_and_servers,
    shutting_a_room_down_removes_members_and_blocks_it,
    registration_tokens_gate_registration,
    federation_lists_are_edited_at_run_time,
);

const ADMIN: &str = "/_teatime/admin/v1";

/// Registers `name` and makes them a server administrator.
async fn administrator(server: &TestServer, name: &str) -> Session {
    let session = server.register(name, PASSWORD).await;
    server.make_admin(&session.user_id).await;
    session
}

async fn admin_call(
    server: &TestServer,
    admin: &Session,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    server
        .call(
            method,
            &format!("{ADMIN}{path}"),
            Some(&admin.access_token),
            body,
        )
        .await
}

/// Sends a request and panics unless it succeeds.
async fn admin_ok(
    server: &TestServer,
    admin: &Session,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let (status, body) = admin_call(server, admin, method, path, body).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

async fn only_administrators_reach_the_admin_api(backend: Backend) {
    let server = TestServer::start(backend).await;
    let user = server.register("mallory", PASSWORD).await;
    let other = server.register("victim", PASSWORD).await;
    let room_id = server.create_room(&other.access_token, json!({})).await;
    let user_path = format!("/users/{}", encode(&other.user_id));
    let room_path = format!("/rooms/{}", encode(&room_id));
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/users".into(), None),
        (
            Method::POST,
            "/users".into(),
            Some(json!({ "username": "sneaky", "password": PASSWORD, "admin": true })),
        ),
        (Method::GET, user_path.clone(), None),
        (
            Method::POST,
            format!("{user_path}/password"),
            Some(json!({ "new_password": "owned" })),
        ),
        (
            Method::POST,
            format!("{user_path}/deactivate"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("{user_path}/reactivate"),
            Some(json!({ "password": "owned" })),
        ),
        (
            Method::PUT,
            format!("/users/{}/admin", encode(&user.user_id)),
            Some(json!({ "admin": true })),
        ),
        (Method::GET, "/rooms".into(), None),
        (Method::GET, room_path.clone(), None),
        (
            Method::POST,
            format!("{room_path}/shutdown"),
            Some(json!({ "purge": true })),
        ),
        (Method::GET, "/federation/rules".into(), None),
        (
            Method::PUT,
            "/federation/rules".into(),
            Some(json!({ "allow": ["evil.org"], "deny": [] })),
        ),
        (Method::GET, "/federation/destinations".into(), None),
        (Method::GET, "/registration_tokens".into(), None),
        (
            Method::POST,
            "/registration_tokens".into(),
            Some(json!({ "token": "letmein" })),
        ),
        (Method::DELETE, "/registration_tokens/letmein".into(), None),
    ];
    for (method, path, body) in &routes {
        let response = admin_call(&server, &user, method.clone(), path, body.clone()).await;
        assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
        let anonymous = server
            .call(
                method.clone(),
                &format!("{ADMIN}{path}"),
                None,
                body.clone(),
            )
            .await;
        assert_error(&anonymous, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    }
    // Nothing the refused requests asked for happened.
    assert_eq!(server.whoami(&other.access_token).await.0, StatusCode::OK);
    assert_eq!(
        server.login_attempt("victim", PASSWORD).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.login_attempt("sneaky", PASSWORD).await.0,
        StatusCode::FORBIDDEN
    );
    server.join(&other.access_token, &room_id).await;

    // The same user, once made administrator, gets through.
    server.make_admin(&user.user_id).await;
    admin_ok(&server, &user, Method::GET, "/users", None).await;
    server.finish().await;
}

async fn administrators_create_and_list_users(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = administrator(&server, "boss").await;
    let created = admin_ok(
        &server,
        &admin,
        Method::POST,
        "/users",
        Some(json!({ "username": "alice", "password": PASSWORD })),
    )
    .await;
    assert_eq!(created["user_id"], "@alice:localhost");
    assert_eq!(created["admin"], false);
    assert_eq!(created["devices"], json!([]));
    let alice = server.login("alice", PASSWORD).await;

    // Without a password nobody can log in.
    admin_ok(
        &server,
        &admin,
        Method::POST,
        "/users",
        Some(json!({ "username": "nopass" })),
    )
    .await;
    assert_error(
        &server.login_attempt("nopass", "").await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let taken = admin_call(
        &server,
        &admin,
        Method::POST,
        "/users",
        Some(json!({ "username": "alice", "password": PASSWORD })),
    )
    .await;
    assert_error(&taken, StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    let invalid = admin_call(
        &server,
        &admin,
        Method::POST,
        "/users",
        Some(json!({ "username": "Not Valid", "password": PASSWORD })),
    )
    .await;
    assert_error(&invalid, StatusCode::BAD_REQUEST, "M_INVALID_USERNAME");

    let details = admin_ok(
        &server,
        &admin,
        Method::GET,
        &format!("/users/{}", encode("@alice:localhost")),
        None,
    )
    .await;
    let devices = details["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{details}");
    assert_eq!(devices[0]["device_id"], alice.device_id.as_str());
    assert!(details["creation_ts"].as_i64().unwrap() > 0);

    // Pages of two, in user id order, until next_from runs out.
    let mut seen = Vec::new();
    let mut path = "/users?limit=2".to_owned();
    loop {
        let page = admin_ok(&server, &admin, Method::GET, &path, None).await;
        let users = page["users"].as_array().unwrap();
        assert!(users.len() <= 2);
        seen.extend(
            users
                .iter()
                .map(|u| u["user_id"].as_str().unwrap().to_owned()),
        );
        match page["next_from"].as_str() {
            Some(next) => path = format!("/users?limit=2&from={}", encode(next)),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["@alice:localhost", "@boss:localhost", "@nopass:localhost"]
    );
    let found = admin_ok(&server, &admin, Method::GET, "/users?search=LIC", None).await;
    assert_eq!(found["users"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["users"][0]["user_id"], "@alice:localhost");
    let none = admin_ok(&server, &admin, Method::GET, "/users?search=%25", None).await;
    assert_eq!(none["users"], json!([]), "a % is taken literally");

    assert_error(
        &admin_call(
            &server,
            &admin,
            Method::GET,
            &format!("/users/{}", encode("@ghost:localhost")),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &admin_call(&server, &admin, Method::GET, "/users/not-a-user-id", None).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &admin_call(&server, &admin, Method::GET, "/users?limit=0", None).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    server.finish().await;
}

async fn passwords_deactivation_and_admin_rights(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = administrator(&server, "boss").await;
    let bob = server.register("bob", PASSWORD).await;
    let bob_path = format!("/users/{}", encode(&bob.user_id));

    admin_ok(
        &server,
        &admin,
        Method::POST,
        &format!("{bob_path}/password"),
        Some(json!({ "new_password": "new secret" })),
    )
    .await;
    assert_error(
        &server.whoami(&bob.access_token).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    assert_eq!(
        server.login_attempt("bob", PASSWORD).await.0,
        StatusCode::FORBIDDEN
    );
    let bob = server.login("bob", "new secret").await;

    admin_ok(
        &server,
        &admin,
        Method::POST,
        &format!("{bob_path}/deactivate"),
        Some(json!({})),
    )
    .await;
    assert_error(
        &server.whoami(&bob.access_token).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &server.login_attempt("bob", "new secret").await,
        StatusCode::FORBIDDEN,
        "M_USER_DEACTIVATED",
    );
    let listed = admin_ok(&server, &admin, Method::GET, &bob_path, None).await;
    assert_eq!(listed["deactivated"], true);
    assert_error(
        &admin_call(
            &server,
            &admin,
            Method::POST,
            &format!("{bob_path}/password"),
            Some(json!({ "new_password": "x" })),
        )
        .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    admin_ok(
        &server,
        &admin,
        Method::POST,
        &format!("{bob_path}/reactivate"),
        Some(json!({ "password": "third" })),
    )
    .await;
    let bob = server.login("bob", "third").await;
    assert_error(
        &admin_call(
            &server,
            &admin,
            Method::POST,
            &format!("{bob_path}/reactivate"),
            Some(json!({ "password": "third" })),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    // Administration rights take effect at once, both ways.
    admin_ok(
        &server,
        &admin,
        Method::PUT,
        &format!("{bob_path}/admin"),
        Some(json!({ "admin": true })),
    )
    .await;
    admin_ok(&server, &bob, Method::GET, "/users", None).await;
    admin_ok(
        &server,
        &admin,
        Method::PUT,
        &format!("{bob_path}/admin"),
        Some(json!({ "admin": false })),
    )
    .await;
    assert_error(
        &admin_call(&server, &bob, Method::GET, "/users", None).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &admin_call(
            &server,
            &admin,
            Method::PUT,
            &format!("/users/{}/admin", encode("@ghost:localhost")),
            Some(json!({ "admin": true })),
        )
        .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    server.finish().await;
}

async fn rooms_are_listed_with_members_and_servers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = administrator(&server, "boss").await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let tea = server
        .create_room(
            &alice.access_token,
            json!({ "name": "Tea lovers", "topic": "oolong", "preset": "public_chat",
                    "room_alias_name": "tea", "visibility": "public" }),
        )
        .await;
    server.join(&bob.access_token, &tea).await;
    let quiet = server
        .create_room(&bob.access_token, json!({ "name": "Quiet" }))
        .await;

    let listed = admin_ok(&server, &admin, Method::GET, "/rooms", None).await;
    let rooms = listed["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 2, "{listed}");
    let entry = rooms.iter().find(|r| r["room_id"] == tea.as_str()).unwrap();
    assert_eq!(entry["name"], "Tea lovers");
    assert_eq!(entry["topic"], "oolong");
    assert_eq!(entry["canonical_alias"], "#tea:localhost");
    assert_eq!(entry["join_rule"], "public");
    assert_eq!(entry["public"], true);
    assert_eq!(entry["blocked"], false);
    assert_eq!(entry["joined_members"], 2);
    assert_eq!(entry["servers"], json!(["localhost"]));
    assert_eq!(entry["creator"], alice.user_id.as_str());
    assert!(entry.get("members").is_none());

    let found = admin_ok(&server, &admin, Method::GET, "/rooms?search=lovers", None).await;
    assert_eq!(found["rooms"].as_array().unwrap().len(), 1);
    assert_eq!(found["rooms"][0]["room_id"], tea.as_str());
    let by_alias = admin_ok(&server, &admin, Method::GET, "/rooms?search=%23TEA", None).await;
    assert_eq!(by_alias["rooms"][0]["room_id"], tea.as_str());
    let first = admin_ok(&server, &admin, Method::GET, "/rooms?limit=1", None).await;
    let next = first["next_from"].as_str().expect("a second page");
    let second = admin_ok(
        &server,
        &admin,
        Method::GET,
        &format!("/rooms?limit=1&from={}", encode(next)),
        None,
    )
    .await;
    assert_ne!(first["rooms"][0]["room_id"], second["rooms"][0]["room_id"]);

    let details = admin_ok(
        &server,
        &admin,
        Method::GET,
        &format!("/rooms/{}", encode(&quiet)),
        None,
    )
    .await;
    assert_eq!(details["name"], "Quiet");
    assert_eq!(details["members"], json!([bob.user_id]));
    assert_error(
        &admin_call(
            &server,
            &admin,
            Method::GET,
            &format!("/rooms/{}", encode("!nowhere:localhost")),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    server.finish().await;
}

async fn shutting_a_room_down_removes_members_and_blocks_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = administrator(&server, "boss").await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let carol = server.register("carol", PASSWORD).await;
    let room = server
        .create_room(&alice.access_token, json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob.access_token, &room).await;
    server.say(&bob.access_token, &room, "spam").await;
    let (status, _) = server
        .post(
            &TestServer::room_path(&room, "invite"),
            Some(&alice.access_token),
            json!({ "user_id": carol.user_id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let shutdown = admin_ok(
        &server,
        &admin,
        Method::POST,
        &format!("/rooms/{}/shutdown", encode(&room)),
        Some(json!({ "reason": "spam" })),
    )
    .await;
    let mut removed: Vec<&str> = shutdown["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        [
            alice.user_id.as_str(),
            bob.user_id.as_str(),
            carol.user_id.as_str()
        ]
    );
    assert_eq!(shutdown["purged"], false);
    for user in [&alice, &bob] {
        let (_, joined) = server
            .get("/_matrix/client/v3/joined_rooms", Some(&user.access_token))
            .await;
        assert_eq!(joined["joined_rooms"], json!([]), "{}", user.user_id);
    }
    // The leave events carry the reason.
    let (_, member) = server
        .get(
            &TestServer::room_path(&room, &format!("state/m.room.member/{}", bob.user_id)),
            Some(&bob.access_token),
        )
        .await;
    assert_eq!(member["membership"], "leave");
    assert_eq!(member["reason"], "spam");
    // Nobody gets back in, by joining or by invitation.
    let rejoin = server
        .post(
            &TestServer::room_path(&room, "join"),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_error(&rejoin, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let details = admin_ok(
        &server,
        &admin,
        Method::GET,
        &format!("/rooms/{}", encode(&room)),
        None,
    )
    .await;
    assert_eq!(details["blocked"], true);
    assert_eq!(details["joined_members"], 0);

    // Purging deletes the room itself.
    let purged = admin_ok(
        &server,
        &admin,
        Method::POST,
        &format!("/rooms/{}/shutdown", encode(&room)),
        Some(json!({ "purge": true })),
    )
    .await;
    assert_eq!(purged["removed"], json!([]));
    assert_eq!(purged["purged"], true);
    assert_error(
        &admin_call(
            &server,
            &admin,
            Method::GET,
            &format!("/rooms/{}", encode(&room)),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let listed = admin_ok(&server, &admin, Method::GET, "/rooms", None).await;
    assert_eq!(listed["rooms"], json!([]));
    let messages = server
        .get(
            &TestServer::room_path(&room, "messages?dir=b"),
            Some(&bob.access_token),
        )
        .await;
    assert_ne!(messages.0, StatusCode::OK, "{}", messages.1);
    // The server goes on working for everyone.
    let fresh = server.create_room(&alice.access_token, json!({})).await;
    server.say(&alice.access_token, &fresh, "still here").await;
    server.finish().await;
}

async fn registration_tokens_gate_registration(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.registration = homeserver::config::RegistrationMode::Token;
    })
    .await;
    // Registration needs a token now: the administrator is made directly.
    server
        .state()
        .accounts
        .create_user("boss", Some(PASSWORD.into()), true)
        .await
        .unwrap();
    let admin = server.login("boss", PASSWORD).await;
    let created = admin_ok(
        &server,
        &admin,
        Method::POST,
        "/registration_tokens",
        Some(json!({ "token": "tea-party", "uses_allowed": 1 })),
    )
    .await;
    assert_eq!(
        created,
        json!({ "token": "tea-party", "uses_allowed": 1, "completed": 0 })
    );
    let random = admin_ok(
        &server,
        &admin,
        Method::POST,
        "/registration_tokens",
        Some(json!({})),
    )
    .await;
    assert!(!random["token"].as_str().unwrap().is_empty());
    assert_error(
        &admin_call(
            &server,
            &admin,
            Method::POST,
            "/registration_tokens",
            Some(json!({ "token": "tea-party" })),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    for bad in [json!({ "token": "no spaces" }), json!({ "expiry_time": 1 })] {
        assert_error(
            &admin_call(
                &server,
                &admin,
                Method::POST,
                "/registration_tokens",
                Some(bad),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        );
    }
    let validity = |token: &str| {
        format!("/_matrix/client/v1/register/m.login.registration_token/validity?token={token}")
    };
    assert_eq!(
        server.get(&validity("tea-party"), None).await.1["valid"],
        true
    );
    assert_eq!(
        server.get(&validity("nonsense"), None).await.1["valid"],
        false
    );

    let register = |username: &str| {
        json!({
            "username": username,
            "password": PASSWORD,
            "auth": { "type": "m.login.registration_token", "token": "tea-party" },
        })
    };
    let (status, body) = server
        .post("/_matrix/client/v3/register", None, register("guest1"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Its one use is spent.
    let (status, body) = server
        .post("/_matrix/client/v3/register", None, register("guest2"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        server.get(&validity("tea-party"), None).await.1["valid"],
        false
    );
    let listed = admin_ok(&server, &admin, Method::GET, "/registration_tokens", None).await;
    let tokens = listed["registration_tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0]["token"], "tea-party");
    assert_eq!(tokens[0]["completed"], 1);

    let random_token = random["token"].as_str().unwrap();
    admin_ok(
        &server,
        &admin,
        Method::DELETE,
        &format!("/registration_tokens/{random_token}"),
        None,
    )
    .await;
    assert_eq!(
        server.get(&validity(random_token), None).await.1["valid"],
        false
    );
    assert_error(
        &admin_call(
            &server,
            &admin,
            Method::DELETE,
            &format!("/registration_tokens/{random_token}"),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    server.finish().await;
}

async fn federation_lists_are_edited_at_run_time(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = administrator(&server, "boss").await;
    let empty = admin_ok(&server, &admin, Method::GET, "/federation/rules", None).await;
    assert_eq!(empty, json!({ "allow": [], "deny": [] }));
    let rules = json!({ "allow": ["*.corp.example", "partner.org"], "deny": ["bad.corp.example"] });
    let set = admin_ok(
        &server,
        &admin,
        Method::PUT,
        "/federation/rules",
        Some(rules.clone()),
    )
    .await;
    assert_eq!(set, rules);
    let bad = admin_call(
        &server,
        &admin,
        Method::PUT,
        "/federation/rules",
        Some(json!({ "allow": ["ok.org", "not a name/"], "deny": [] })),
    )
    .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let unchanged = admin_ok(&server, &admin, Method::GET, "/federation/rules", None).await;
    assert_eq!(unchanged, rules);
    let cleared = admin_ok(
        &server,
        &admin,
        Method::PUT,
        "/federation/rules",
        Some(json!({ "allow": [], "deny": [] })),
    )
    .await;
    assert_eq!(cleared, json!({ "allow": [], "deny": [] }));
    server.finish().await;
}
