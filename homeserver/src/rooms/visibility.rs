//! History visibility: whether a user may see an event, per the spec's
//! algorithm, from the user's membership timeline and the room's
//! `m.room.history_visibility` timeline (both short, loaded once per read).

use serde_json::Value;

use crate::{
    error::Result,
    storage::{Store, StoredEvent},
};

/// What a user may see of one room.
pub struct Visibility {
    user_id: String,
    /// `(ordering, membership)`, oldest first.
    memberships: Vec<(i64, String)>,
    /// `(ordering, history_visibility)`, oldest first.
    settings: Vec<(i64, String)>,
}

impl Visibility {
    /// Loads the timelines `user_id` is judged by in `room_id`.
    pub async fn load(store: &Store, room_id: &str, user_id: &str) -> Result<Visibility> {
        let memberships = store.membership_history(room_id, user_id).await?;
        let settings = store
            .visibility_history(room_id)
            .await?
            .into_iter()
            .map(|(ordering, json)| {
                let setting = serde_json::from_str::<Value>(&json)
                    .ok()
                    .and_then(|event| {
                        event["content"]["history_visibility"]
                            .as_str()
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| "shared".to_owned());
                (ordering, setting)
            })
            .collect();
        Ok(Visibility {
            user_id: user_id.to_owned(),
            memberships,
            settings,
        })
    }

    /// Whether the user was ever in the room (or was invited to it).
    pub fn ever_member(&self) -> bool {
        !self.memberships.is_empty()
    }

    /// The user's latest membership and where it happened.
    pub fn latest_membership(&self) -> Option<&(i64, String)> {
        self.memberships.last()
    }

    fn setting_before(&self, ordering: i64) -> &str {
        self.settings
            .iter()
            .rev()
            .find(|(at, _)| *at < ordering)
            .map_or("shared", |(_, setting)| setting.as_str())
    }

    fn membership_before(&self, ordering: i64) -> Option<&str> {
        self.memberships
            .iter()
            .rev()
            .find(|(at, _)| *at < ordering)
            .map(|(_, m)| m.as_str())
    }

    /// Whether the room is readable by anyone at its latest setting.
    pub fn world_readable_now(&self) -> bool {
        self.settings
            .last()
            .is_some_and(|(_, s)| s == "world_readable")
    }

    /// The spec's "determine if a user can see an event".
    pub fn can_see(&self, event: &StoredEvent) -> bool {
        let ordering = event.stream_ordering;
        // Users always see the changes to their own membership.
        if event.event_type == "m.room.member"
            && event.state_key.as_deref() == Some(self.user_id.as_str())
        {
            return true;
        }
        let setting = self.setting_before(ordering);
        if setting == "world_readable" {
            return true;
        }
        let membership = self.membership_before(ordering);
        if membership == Some("join") {
            return true;
        }
        if setting == "shared"
            && self
                .memberships
                .iter()
                .any(|(at, m)| *at > ordering && m == "join")
        {
            return true;
        }
        setting == "invited" && membership == Some("invite")
    }
}
