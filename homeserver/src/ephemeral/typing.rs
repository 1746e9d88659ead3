//! Who is typing where. Kept in memory: typing expires within seconds, so a
//! restart loses nothing worth keeping. Positions restart at 0 with the
//! process; a client token from before a restart gets the current state.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use ruma::RoomId;
use serde_json::json;

use crate::{
    auth::Authed,
    error::Result,
    servers::Sender,
    storage::Store,
    sync::{Change, Notifier},
};

/// The longest a client may claim to be typing without renewing.
pub const MAX_TYPING_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct RoomTyping {
    /// Typing users and the serial of their latest notice (for expiry).
    users: HashMap<String, u64>,
    /// The typing position of the room's latest change.
    changed_at: i64,
}

#[derive(Default)]
struct TypingState {
    position: i64,
    next_serial: u64,
    rooms: HashMap<String, RoomTyping>,
}

/// Typing notifications of every room on this server.
pub struct Typing {
    // A std mutex: the critical sections are map updates that never await.
    state: Mutex<TypingState>,
    notifier: Arc<Notifier>,
    store: Store,
    /// Tells the other servers in the room.
    sender: Sender,
}

impl Typing {
    /// No one typing anywhere yet.
    pub fn new(notifier: Arc<Notifier>, store: Store, sender: Sender) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(TypingState::default()),
            notifier,
            store,
            sender,
        })
    }

    /// `PUT /rooms/{roomId}/typing/{userId}` and the socket's `typing.*`:
    /// members of the room only.
    pub async fn update(
        self: &Arc<Self>,
        user: &Authed,
        room_id: &RoomId,
        typing: Option<Duration>,
    ) -> Result<()> {
        let user_id = user.user_id.as_str();
        self.store.require_joined(room_id.as_str(), user_id).await?;
        self.set(room_id.as_str(), user_id, typing);
        let mut content =
            json!({ "room_id": room_id, "user_id": user_id, "typing": typing.is_some() });
        if let Some(timeout) = typing {
            content["timeout"] = u64::try_from(timeout.as_millis())
                .unwrap_or(u64::MAX)
                .into();
        }
        let edu = json!({ "edu_type": "m.typing", "content": content });
        self.sender.queue_room_edu(room_id.as_str(), &edu).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TypingState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `user` started (`Some(timeout)`) or stopped (`None`) typing in
    /// `room`: recorded here and announced to every instance.
    pub fn set(self: &Arc<Self>, room: &str, user: &str, typing: Option<Duration>) {
        self.record(room, user, typing);
        let timeout_ms = typing.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        self.notifier.publish(Change::Typing {
            room_id: room.to_owned(),
            user_id: user.to_owned(),
            timeout_ms,
        });
    }

    /// Replays another instance's typing change here, then wakes local listeners.
    pub fn apply_remote(self: &Arc<Self>, room: &str, user: &str, typing: Option<Duration>) {
        if self.record(room, user, typing) {
            self.notifier.publish_local(Change::Room {
                room_id: room.to_owned(),
                member: None,
            });
        }
    }

    /// Updates the state; `true` when who is typing changed.
    fn record(self: &Arc<Self>, room: &str, user: &str, typing: Option<Duration>) -> bool {
        let mut state = self.lock();
        state.next_serial += 1;
        let serial = state.next_serial;
        state.position += 1;
        let position = state.position;
        let entry = state.rooms.entry(room.to_owned()).or_default();
        let changed = match typing {
            Some(timeout) => {
                let was_typing = entry.users.insert(user.to_owned(), serial).is_some();
                let expiry = Arc::clone(self);
                let (room, user) = (room.to_owned(), user.to_owned());
                tokio::spawn(async move {
                    tokio::time::sleep(timeout.min(MAX_TYPING_TIMEOUT)).await;
                    expiry.expire(&room, &user, serial);
                });
                !was_typing
            }
            None => entry.users.remove(user).is_some(),
        };
        if changed {
            entry.changed_at = position;
        }
        changed
    }

    /// Ends a typing notice unless it was renewed since.
    fn expire(&self, room: &str, user: &str, serial: u64) {
        let expired = {
            let mut state = self.lock();
            state.position += 1;
            let position = state.position;
            match state.rooms.get_mut(room) {
                Some(entry) if entry.users.get(user) == Some(&serial) => {
                    entry.users.remove(user);
                    entry.changed_at = position;
                    true
                }
                _ => false,
            }
        };
        if expired {
            // Every instance expires its own copy; only local listeners need waking.
            self.notifier.publish_local(Change::Room {
                room_id: room.to_owned(),
                member: None,
            });
        }
    }

    /// The latest typing position.
    pub fn position(&self) -> i64 {
        self.lock().position
    }

    /// Who is typing in `room`, when that last changed after position
    /// `since` and by `upto` (a later change is for the next sync), or when
    /// `since` is from before a restart.
    pub fn update_since(&self, room: &str, since: i64, upto: i64) -> Option<Vec<String>> {
        let state = self.lock();
        let entry = state.rooms.get(room)?;
        if (entry.changed_at > since && entry.changed_at <= upto) || since > state.position {
            let mut users: Vec<String> = entry.users.keys().cloned().collect();
            users.sort();
            Some(users)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn test_typing() -> Arc<Typing> {
        let store = Store::connect("sqlite::memory:", 1)
            .await
            .expect("in-memory database");
        let dir = tempfile::tempdir().expect("temp dir");
        let key = federation::keys::SigningKey::load_or_generate(&dir.path().join("key"))
            .expect("signing key");
        let config = crate::config::Config::default();
        let remote = Arc::new(
            crate::remote::Remote::new(&config, store.clone(), Arc::new(key)).expect("remote"),
        );
        let policy = Arc::new(crate::servers::Policy::new(store.clone(), &config));
        let sender = Sender::new(
            store.clone(),
            remote,
            policy,
            tokio_util::sync::CancellationToken::new(),
            Duration::from_secs(1),
        );
        Typing::new(Arc::new(Notifier::default()), store, sender)
    }

    #[tokio::test]
    async fn typing_starts_stops_and_expires() {
        let typing = test_typing().await;
        assert_eq!(typing.update_since("!r", 0, i64::MAX), None);
        typing.set("!r", "@a", Some(Duration::from_secs(30)));
        let after_start = typing.position();
        assert_eq!(
            typing.update_since("!r", 0, after_start - 1),
            None,
            "a change after upto waits for the next sync"
        );
        assert_eq!(
            typing.update_since("!r", 0, i64::MAX),
            Some(vec!["@a".to_owned()])
        );
        assert_eq!(
            typing.update_since("!r", after_start, i64::MAX),
            None,
            "nothing new since"
        );
        typing.set("!r", "@a", None);
        assert_eq!(
            typing.update_since("!r", after_start, i64::MAX),
            Some(vec![]),
            "stopping is news"
        );
        typing.set("!r", "@b", Some(Duration::from_millis(20)));
        let before_expiry = typing.position();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            typing.update_since("!r", before_expiry, i64::MAX),
            Some(vec![]),
            "expired"
        );
        assert!(
            typing.update_since("!r", i64::MAX, i64::MAX).is_some(),
            "a token from before a restart gets the state"
        );
    }

    #[tokio::test]
    async fn renewing_outlives_the_first_timeout() {
        let typing = test_typing().await;
        typing.set("!r", "@a", Some(Duration::from_millis(30)));
        tokio::time::sleep(Duration::from_millis(15)).await;
        typing.set("!r", "@a", Some(Duration::from_secs(30)));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(
            typing.update_since("!r", 0, i64::MAX),
            Some(vec!["@a".to_owned()])
        );
    }
}
