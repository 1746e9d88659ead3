//! One user's view of a homeserver's Client-Server API, the same for TeaTime
//! and Synapse, so interop tests run one flow with either server in either role.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Session, TestServer, encode, send_json, synapse::Synapse};

/// How long an event may take to cross to another server on a loaded machine.
pub const CROSSING: Duration = Duration::from_secs(30);

/// Polls `check` until it returns `Some`, or fails with `what`.
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(started.elapsed() < CROSSING, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A logged-in user of one server.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    /// `http://127.0.0.1:<port>`: where the client API answers.
    pub base: String,
    pub token: String,
    pub user_id: String,
}

impl TestServer {
    pub fn client(&self, session: &Session) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            token: session.access_token.clone(),
            user_id: session.user_id.clone(),
        }
    }
}

impl Synapse {
    pub fn client(&self, session: &Session) -> Client {
        Client {
            http: self.http.clone(),
            base: self.client_base.clone(),
            token: session.access_token.clone(),
            user_id: session.user_id.clone(),
        }
    }
}

fn room_path(room_id: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/{rest}", encode(room_id))
}

impl Client {
    /// A raw authenticated GET (for bodies that are not JSON).
    pub async fn get_raw(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request")
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        send_json(
            &self.http,
            method,
            &format!("{}{path}", self.base),
            Some(&self.token),
            body,
        )
        .await
    }

    /// A request that must succeed; its JSON answer.
    pub async fn ok(&self, method: Method, path: &str, body: Value) -> Value {
        let (status, answer) = self.call(method.clone(), path, Some(body)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{method} {path} on {} failed: {answer}",
            self.base
        );
        answer
    }

    pub async fn create_room(&self, body: Value) -> String {
        let created = self
            .ok(Method::POST, "/_matrix/client/v3/createRoom", body)
            .await;
        created["room_id"].as_str().expect("room_id").to_owned()
    }

    /// `POST /join/{room}?server_name=via`.
    pub async fn join_via(&self, room: &str, via: &str) -> (StatusCode, Value) {
        let path = format!(
            "/_matrix/client/v3/join/{}?server_name={}",
            encode(room),
            encode(via)
        );
        self.call(Method::POST, &path, Some(json!({}))).await
    }

    /// Sends a text message; the answer of `PUT /send`.
    pub async fn send_text(&self, room_id: &str, text: &str) -> (StatusCode, Value) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static TXN: AtomicU64 = AtomicU64::new(0);
        let txn = TXN.fetch_add(1, Ordering::Relaxed);
        let path = room_path(room_id, &format!("send/m.room.message/c{txn}"));
        self.call(
            Method::PUT,
            &path,
            Some(json!({ "msgtype": "m.text", "body": text })),
        )
        .await
    }

    /// Sends a text message that must be accepted; its event id.
    pub async fn say(&self, room_id: &str, text: &str) -> String {
        let (status, body) = self.send_text(room_id, text).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "send on {} failed: {body}",
            self.base
        );
        body["event_id"].as_str().expect("event_id").to_owned()
    }

    /// The bodies of the `m.room.message` events the user can page back
    /// through, oldest first.
    pub async fn bodies(&self, room_id: &str) -> Vec<String> {
        let mut bodies = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let mut path = room_path(room_id, "messages?dir=b&limit=100");
            if let Some(from) = &from {
                path.push_str(&format!("&from={}", encode(from)));
            }
            let page = self.ok(Method::GET, &path, Value::Null).await;
            let chunk = page["chunk"].as_array().expect("chunk");
            bodies.extend(
                chunk
                    .iter()
                    .filter(|e| e["type"] == "m.room.message")
                    .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)),
            );
            match page["end"].as_str() {
                Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
                _ => break,
            }
        }
        bodies.reverse();
        bodies
    }

    /// Waits until the room's history on this server holds `text`; all bodies then.
    pub async fn sees(&self, room_id: &str, text: &str) -> Vec<String> {
        eventually(&format!("{text:?} on {}", self.base), async || {
            let bodies = self.bodies(room_id).await;
            bodies.iter().any(|b| b == text).then_some(bodies)
        })
        .await
    }

    /// The user's membership in the room per this server's current state.
    pub async fn membership_of(&self, room_id: &str, user_id: &str) -> Option<String> {
        let path = room_path(room_id, &format!("state/m.room.member/{}", encode(user_id)));
        let (status, body) = self.call(Method::GET, &path, None).await;
        (status == StatusCode::OK)
            .then(|| body["membership"].as_str().unwrap_or_default().to_owned())
    }

    /// Waits until this server says `user_id` has `membership` in the room.
    pub async fn sees_membership(&self, room_id: &str, user_id: &str, membership: &str) {
        eventually(
            &format!("{user_id} {membership} on {}", self.base),
            async || {
                (self.membership_of(room_id, user_id).await.as_deref() == Some(membership))
                    .then_some(())
            },
        )
        .await;
    }

    pub async fn set_typing(&self, room_id: &str, typing: bool) {
        let path = room_path(room_id, &format!("typing/{}", encode(&self.user_id)));
        self.ok(
            Method::PUT,
            &path,
            json!({ "typing": typing, "timeout": 20000 }),
        )
        .await;
    }

    /// Who types in the room, per a fresh /sync of this user.
    pub async fn typing_users(&self, room_id: &str) -> Vec<String> {
        let sync = self
            .ok(Method::GET, "/_matrix/client/v3/sync", Value::Null)
            .await;
        sync["rooms"]["join"][room_id]["ephemeral"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "m.typing")
            .flat_map(|e| {
                e["content"]["user_ids"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|u| u.as_str().map(str::to_owned))
            .collect()
    }

    /// Waits until this user's /sync shows `user_id` typing in the room (or not).
    pub async fn sees_typing(&self, room_id: &str, user_id: &str, typing: bool) {
        eventually(
            &format!("{user_id} typing={typing} on {}", self.base),
            async || {
                let users = self.typing_users(room_id).await;
                (users.iter().any(|u| u == user_id) == typing).then_some(())
            },
        )
        .await;
    }

    pub async fn kick(&self, room_id: &str, user_id: &str, reason: &str) {
        self.ok(
            Method::POST,
            &room_path(room_id, "kick"),
            json!({ "user_id": user_id, "reason": reason }),
        )
        .await;
    }
}
