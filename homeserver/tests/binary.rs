//! The `teatime` binary itself: zero-configuration start, configuration
//! errors, the committed OpenAPI document, durability of acknowledged writes
//! across `kill -9`, and `teatime admin` (graceful stop under load: crash.rs).

mod common;

use std::{
    path::Path,
    process::{Command, Output},
};

use common::{
    PASSWORD, create_postgres_database, drop_postgres_database,
    process::{serve, serve_logging_to, teatime},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_teatime");

async fn post(base: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn register(base: &str, username: &str) -> (StatusCode, Value) {
    post(
        base,
        "/_matrix/client/v3/register",
        json!({ "username": username, "password": PASSWORD, "auth": { "type": "m.login.dummy" } }),
    )
    .await
}

async fn login(base: &str, username: &str) -> StatusCode {
    post(
        base,
        "/_matrix/client/v3/login",
        json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": username }, "password": PASSWORD }),
    )
    .await
    .0
}

fn run(command: &mut Command) -> Output {
    command.output().expect("teatime runs")
}

#[tokio::test]
async fn starts_with_no_configuration() {
    let dir = tempfile::tempdir().unwrap();
    // Only the port is chosen, so parallel tests do not collide on 8008.
    let served = serve(dir.path(), &[]).await;
    let (status, body) = register(&served.base, "alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["user_id"], "@alice:localhost",
        "server name defaults to localhost"
    );
    assert!(
        dir.path().join("data/teatime.db").exists(),
        "SQLite database in ./data"
    );
    assert!(
        dir.path().join("data/token_secret").exists(),
        "token secret kept in ./data"
    );
}

#[test]
fn invalid_configuration_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "server_name = \"example.org\"\nlisen = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let output = run(teatime(dir.path()).args(["serve", "--config", "bad.toml"]));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("lisen"),
        "stderr names the unknown key: {stderr}"
    );

    let output = run(teatime(dir.path())
        .arg("serve")
        .env("TEATIME_REGISTRATION", "sometimes"));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
    assert!(
        stderr.contains("registration"),
        "stderr names the bad variable: {stderr}"
    );

    let output = run(teatime(dir.path()).args(["serve", "--config", "missing.toml"]));
    assert_eq!(
        output.status.code(),
        Some(2),
        "a missing config file is an error"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created when the configuration is refused"
    );
}

#[test]
fn committed_openapi_document_is_current() {
    let output = run(Command::new(BIN).arg("openapi"));
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/teatime.json");
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        printed == committed,
        "openapi/teatime.json is stale: run `make openapi` and commit the result"
    );
    let document: Value = serde_json::from_str(&printed).expect("the document is JSON");
    assert!(document["paths"]["/_matrix/client/v3/register"]["post"].is_object());
}

/// Registers a user, kills the process without warning right after the
/// acknowledgement, and checks the account exists after a restart.
async fn acknowledged_registration_survives_kill_9(envs: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), envs).await;
    for n in 0..5 {
        let (status, body) = register(&served.base, &format!("user{n}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    served.child.kill().expect("SIGKILL");
    served.child.wait().unwrap();
    let restarted = serve(dir.path(), envs).await;
    for n in 0..5 {
        assert_eq!(
            login(&restarted.base, &format!("user{n}")).await,
            StatusCode::OK,
            "user{n} survived"
        );
    }
}

#[tokio::test]
async fn sqlite_keeps_acknowledged_writes_across_kill_9() {
    acknowledged_registration_survives_kill_9(&[]).await;
}

#[tokio::test]
async fn postgres_keeps_acknowledged_writes_across_kill_9() {
    let (url, name) = create_postgres_database().await;
    acknowledged_registration_survives_kill_9(&[("TEATIME_DATABASE_URL", &url)]).await;
    drop_postgres_database(&name).await;
}

#[tokio::test]
async fn admin_create_user_makes_the_first_administrator() {
    let dir = tempfile::tempdir().unwrap();
    let create = |args: &[&str]| {
        run(teatime(dir.path())
            .args(["admin", "create-user"])
            .args(args)
            .env("TEATIME_REGISTRATION", "closed"))
    };
    let output = create(&["root", "--password", PASSWORD, "--admin"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "created @root:localhost (administrator)"
    );
    let output = create(&["plain", "--password", PASSWORD]);
    assert!(output.status.success());

    let taken = create(&["root", "--password", "other"]);
    assert!(!taken.status.success());
    assert!(
        String::from_utf8_lossy(&taken.stderr).contains("taken"),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    let invalid = create(&["Not Valid", "--password", PASSWORD]);
    assert!(!invalid.status.success());

    let url = format!(
        "sqlite://{}?mode=rw",
        dir.path().join("data/teatime.db").display()
    );
    let store = homeserver::storage::Store::connect(&url, 1).await.unwrap();
    assert!(
        store
            .user("@root:localhost")
            .await
            .unwrap()
            .expect("root")
            .is_admin
    );
    assert!(
        !store
            .user("@plain:localhost")
            .await
            .unwrap()
            .expect("plain")
            .is_admin
    );
    store.close().await;

    // The server, registration closed, lets the new administrator in.
    let served = serve(dir.path(), &[("TEATIME_REGISTRATION", "closed")]).await;
    assert_eq!(login(&served.base, "root").await, StatusCode::OK);
    assert_eq!(
        register(&served.base, "someone").await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn admin_commands_manage_accounts_tokens_and_federation() {
    let dir = tempfile::tempdir().unwrap();
    let admin = |args: &[&str]| {
        let output = run(teatime(dir.path())
            .arg("admin")
            .args(args)
            .env("TEATIME_REGISTRATION", "token"));
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let json_of = |(ok, out, err): (bool, String, String)| -> Value {
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    assert!(admin(&["create-user", "alice", "--password", PASSWORD]).0);
    assert!(admin(&["create-user", "bob"]).0);
    let users = json_of(admin(&["list-users", "--search", "ali"]));
    assert_eq!(users["users"][0]["user_id"], "@alice:localhost");
    assert_eq!(users["users"].as_array().unwrap().len(), 1);

    assert!(admin(&["set-admin", "alice"]).0);
    assert_eq!(json_of(admin(&["user", "@alice:localhost"]))["admin"], true);
    assert!(admin(&["set-admin", "alice", "--revoke"]).0);
    assert_eq!(json_of(admin(&["user", "alice"]))["admin"], false);
    assert!(admin(&["reset-password", "bob", "--password", PASSWORD]).0);
    let (ok, _, err) = admin(&["deactivate", "@ghost:localhost"]);
    assert!(!ok && err.contains("no account"), "{err}");

    let token = json_of(admin(&[
        "create-registration-token",
        "--token",
        "cli-token",
        "--uses-allowed",
        "1",
    ]));
    assert_eq!(token["token"], "cli-token");
    let rules = json_of(admin(&["set-federation-rules", "--deny", "spam.example"]));
    assert_eq!(rules, json!({ "allow": [], "deny": ["spam.example"] }));
    assert!(!admin(&["set-federation-rules", "--allow", "bad name"]).0);
    assert_eq!(json_of(admin(&["federation-rules"])), rules);

    // The server honours what the commands stored.
    let served = serve(dir.path(), &[("TEATIME_REGISTRATION", "token")]).await;
    assert_eq!(login(&served.base, "bob").await, StatusCode::OK);
    let (status, body) = post(
        &served.base,
        "/_matrix/client/v3/register",
        json!({ "username": "carol", "password": PASSWORD,
                "auth": { "type": "m.login.registration_token", "token": "cli-token" } }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    drop(served);
    let tokens = json_of(admin(&["registration-tokens"]));
    assert_eq!(tokens["registration_tokens"][0]["completed"], 1);
    assert!(admin(&["revoke-registration-token", "cli-token"]).0);
    assert!(!admin(&["revoke-registration-token", "cli-token"]).0);
}

/// Every secret a client hands over or is handed in one session, used in
/// every way the API allows, must stay out of a debug-level log; each log
/// line is JSON and the request lines carry a request id.
#[tokio::test]
async fn logs_are_structured_and_keep_secrets_out() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("teatime.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let password = "Sekrit-Passw0rd-do-not-log";
    let served = serve_logging_to(
        dir.path(),
        &[("TEATIME_LOG_FORMAT", "json"), ("RUST_LOG", "debug")],
        log,
    )
    .await;
    let (status, registered) = post(
        &served.base,
        "/_matrix/client/v3/register",
        json!({ "username": "secretive", "password": password, "refresh_token": true,
                "auth": { "type": "m.login.dummy" } }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{registered}");
    let access_token = registered["access_token"].as_str().unwrap().to_owned();
    let refresh_token = registered["refresh_token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let whoami = format!("{}/_matrix/client/v3/account/whoami", served.base);
    let by_query = http
        .get(format!("{whoami}?access_token={access_token}"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), StatusCode::OK);
    assert_eq!(by_query.headers()["x-request-id"], "trace-me-42");
    let by_header = http
        .get(&whoami)
        .bearer_auth(&access_token)
        .send()
        .await
        .unwrap();
    assert!(
        !by_header.headers()["x-request-id"].is_empty(),
        "a request id is made up when none is given"
    );
    let (status, refreshed) = post(
        &served.base,
        "/_matrix/client/v3/refresh",
        json!({ "refresh_token": refresh_token }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let wrong_login = post(
        &served.base,
        "/_matrix/client/v3/login",
        json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "secretive" },
                "password": format!("{password}-wrong") }),
    )
    .await;
    assert_eq!(wrong_login.0, StatusCode::FORBIDDEN);
    drop(served);

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.lines().count() > 5,
        "debug logging produced too little to mean anything: {log}"
    );
    for line in log.lines() {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(entry["level"].is_string(), "{line}");
    }
    assert!(
        log.contains("trace-me-42"),
        "the client's request id appears in the log"
    );
    let secrets = [
        password,
        access_token.as_str(),
        refresh_token.as_str(),
        refreshed["access_token"].as_str().unwrap(),
        refreshed["refresh_token"].as_str().unwrap(),
    ];
    for secret in secrets {
        // Tokens are long: a fragment is enough to count as a leak.
        let fragment = &secret[secret.len().saturating_sub(20)..];
        assert!(
            !log.contains(fragment),
            "a secret reached the log: ...{fragment}"
        );
    }
}

/// Several instances started at once on a fresh PostgreSQL database apply
/// each migration exactly once and all come up healthy.
#[tokio::test]
async fn instances_starting_together_migrate_once() {
    let (url, name) = create_postgres_database().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let envs = [("TEATIME_DATABASE_URL", url.as_str())];
    let instances =
        futures_util::future::join_all(dirs.iter().map(|dir| serve(dir.path(), &envs))).await;
    for instance in &instances {
        assert_eq!(
            reqwest::get(format!("{}/healthz", instance.base))
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    drop(instances);
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let (applied, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT version) FROM _sqlx_migrations")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(applied, distinct, "a migration was applied twice");
    assert!(applied >= 8, "only {applied} migrations recorded");
    drop(db);
    drop_postgres_database(&name).await;
}
