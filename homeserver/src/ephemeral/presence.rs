//! Presence: whether users are online. Members of a common room see each
//! other's presence; syncing marks a user online (unless the client says
//! otherwise), refreshed at most once a minute.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::{
    auth::Authed,
    error::{Error, Result},
    storage::{PresenceRow, Store, now_ms},
    sync::{Change, Notifier},
};

/// How stale "last active" may get before a sync refreshes it.
const ACTIVITY_RESOLUTION_MS: i64 = 60_000;
/// Active this recently counts as `currently_active`.
const CURRENTLY_ACTIVE_MS: i64 = 5 * 60_000;

/// The presence states of the spec.
pub const PRESENCE_STATES: &[&str] = &["online", "unavailable", "offline"];

/// Stores presence and wakes the syncs of the user's contacts.
pub struct Presence {
    store: Store,
    notifier: Arc<Notifier>,
}

/// A presence row as the spec's `m.presence` content.
pub fn presence_content(row: &PresenceRow) -> Value {
    let ago = (now_ms() - row.last_active_ts).max(0);
    let mut content = json!({
        "presence": row.state,
        "last_active_ago": ago,
        "currently_active": row.state == "online" && ago < CURRENTLY_ACTIVE_MS,
    });
    if let Some(message) = &row.status_msg {
        content["status_msg"] = message.clone().into();
    }
    content
}

impl Presence {
    /// The service over `store`.
    pub fn new(store: Store, notifier: Arc<Notifier>) -> Self {
        Self { store, notifier }
    }

    async fn store_and_announce(
        &self,
        user_id: &str,
        state: &str,
        status_msg: Option<&str>,
    ) -> Result<()> {
        self.store.set_presence(user_id, state, status_msg).await?;
        for room_id in self.store.joined_rooms(user_id).await? {
            self.notifier.publish(Change::Room {
                room_id,
                member: None,
            });
        }
        self.notifier.publish(Change::User(user_id.to_owned()));
        Ok(())
    }

    /// Presence another server reports for one of its users.
    pub async fn apply_remote(
        &self,
        user_id: &str,
        state: &str,
        status_msg: Option<&str>,
    ) -> Result<()> {
        if !PRESENCE_STATES.contains(&state) {
            return Err(Error::InvalidParam(format!("unknown presence {state}")));
        }
        self.store_and_announce(user_id, state, status_msg).await
    }

    /// `PUT /presence/{userId}/status`: only one's own.
    pub async fn set(
        &self,
        authed: &Authed,
        user_id: &str,
        state: &str,
        status_msg: Option<&str>,
    ) -> Result<()> {
        if authed.user_id.as_str() != user_id {
            return Err(Error::Forbidden(
                "you can only set your own presence".into(),
            ));
        }
        if !PRESENCE_STATES.contains(&state) {
            return Err(Error::InvalidParam(format!("unknown presence {state}")));
        }
        self.store_and_announce(user_id, state, status_msg).await
    }

    /// `GET /presence/{userId}/status`: one's own, or of someone sharing a room.
    pub async fn get(&self, authed: &Authed, user_id: &str) -> Result<Value> {
        let me = authed.user_id.as_str();
        if me != user_id && !self.store.share_a_room(me, user_id).await? {
            return Err(Error::Forbidden("you share no room with this user".into()));
        }
        match self.store.presence(user_id).await? {
            Some(row) => Ok(presence_content(&row)),
            None if self.store.user_exists(user_id).await? => Ok(json!({ "presence": "offline" })),
            None => Err(Error::NotFound("unknown user".into())),
        }
    }

    /// A sync by the user: marks them `set_presence` (default online) when
    /// that changes their state or their activity is over a minute old.
    pub async fn on_sync(&self, user_id: &str, set_presence: Option<&str>) -> Result<()> {
        let state = set_presence.unwrap_or("online");
        let current = self.store.presence(user_id).await?;
        let fresh = current.as_ref().is_some_and(|row| {
            row.state == state && now_ms() - row.last_active_ts < ACTIVITY_RESOLUTION_MS
        });
        if fresh {
            return Ok(());
        }
        let status_msg = current.and_then(|row| row.status_msg);
        self.store_and_announce(user_id, state, status_msg.as_deref())
            .await
    }
}
