//! Several instances on one PostgreSQL database, sharing changes through the
//! Redis server at 127.0.0.1:6379 (override with `TEATIME_TEST_REDIS_URL`):
//! they must act as one server.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, PASSWORD, TestServer};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::{connect_async, tungstenite::Message};

fn redis_url() -> String {
    std::env::var("TEATIME_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn two_instances() -> (TestServer, TestServer) {
    let url = redis_url();
    let address = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    if tokio::net::TcpStream::connect(&address).await.is_err() {
        panic!(
            "Redis is needed at {url} for this test; start it with `redis-server --daemonize yes --bind 127.0.0.1 \
             --port 6379 --save '' --appendonly no` or set TEATIME_TEST_REDIS_URL"
        );
    }
    let first = TestServer::start_with(Backend::Postgres, |config| {
        config.redis_url = Some(url.clone())
    })
    .await;
    let second = first.another_instance().await;
    (first, second)
}

/// Waits for the next text frame of `kind` on the socket.
async fn next_of(
    socket: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
    kind: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} frame within 10 s"));
        if let Some(Ok(Message::Text(text))) = frame {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == kind {
                return value;
            }
        } else if frame.is_none() {
            panic!("socket closed before a {kind} frame");
        }
    }
}

#[tokio::test]
async fn a_message_sent_through_one_instance_reaches_a_socket_on_another() {
    let (one, two) = two_instances().await;
    let alice = one.register("alice", PASSWORD).await.access_token;
    let bob = two.register("bob", PASSWORD).await.access_token;
    let room = one
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    two.join(&bob, &room).await;

    let url = format!("{}/_teatime/ws", two.base.replace("http://", "ws://"));
    let (mut socket, _) = connect_async(url).await.expect("socket on instance two");
    socket
        .send(Message::Text(
            json!({ "type": "auth", "token": bob }).to_string().into(),
        ))
        .await
        .unwrap();
    next_of(&mut socket, "auth.success").await;

    one.say(&alice, &room, "from instance one").await;
    let frame = next_of(&mut socket, "message.new").await;
    assert_eq!(frame["event"]["content"]["body"], "from instance one");

    // Typing, kept in memory, crosses instances too.
    let (status, _) = one
        .put(
            &TestServer::room_path(&room, "typing/@alice:localhost"),
            Some(&alice),
            json!({ "typing": true, "timeout": 10000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let typing = next_of(&mut socket, "typing").await;
    assert_eq!(typing["user_ids"], json!(["@alice:localhost"]));
    two.finish().await;
    one.finish().await;
}

#[tokio::test]
async fn a_long_poll_on_one_instance_wakes_for_a_message_on_another() {
    let (one, two) = two_instances().await;
    let alice = one.register("alice", PASSWORD).await.access_token;
    let bob = one.register("bob", PASSWORD).await.access_token;
    let room = one
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    one.join(&bob, &room).await;
    let (_, initial) = two.get("/_matrix/client/v3/sync", Some(&bob)).await;
    let since = initial["next_batch"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let path = format!("/_matrix/client/v3/sync?since={since}&timeout=20000");
    let poll = two.get(&path, Some(&bob));
    let send = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        one.say(&alice, &room, "wake up over there").await;
    };
    let ((status, body), ()) = tokio::join!(poll, send);
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woke for the message, not the timeout"
    );
    assert!(body.to_string().contains("wake up over there"), "{body}");
    two.finish().await;
    one.finish().await;
}

#[tokio::test]
async fn a_logout_on_one_instance_ends_the_token_on_another() {
    let (one, two) = two_instances().await;
    let alice = one.register("alice", PASSWORD).await.access_token;
    // Instance two has the session cached after a first use.
    assert_eq!(two.whoami(&alice).await.0, StatusCode::OK);
    let (status, _) = one
        .post("/_matrix/client/v3/logout", Some(&alice), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = two.whoami(&alice).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(body["errcode"], "M_UNKNOWN_TOKEN");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instance two still accepts the token after logout"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    two.finish().await;
    one.finish().await;
}
