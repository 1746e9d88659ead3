//! The authorisation rules, behind a trait of ours so the implementation
//! (today ruma-state-res) can be vendored or replaced.

use std::collections::HashMap;

use ruma::{
    EventId, UserId,
    events::{StateEventType, TimelineEventType},
    room_version_rules::AuthorizationRules,
    state_res::{
        auth_types_for_event, check_state_dependent_auth_rules, check_state_independent_auth_rules,
    },
};
use serde_json::value::RawValue;

use crate::{Error, Result, pdu::Pdu};

/// Room state keyed by `(type, state_key)`.
pub type StateMap = HashMap<(StateEventType, String), Pdu>;

/// Decides whether an event may enter a room.
pub trait EventAuthorizer: Send + Sync {
    /// The `(type, state_key)` pairs whose current events become the new event's `auth_events`.
    fn auth_types(
        &self,
        rules: &AuthorizationRules,
        kind: &str,
        sender: &UserId,
        state_key: Option<&str>,
        content: &RawValue,
    ) -> Result<Vec<(StateEventType, String)>>;

    /// Checks `event` against its auth events and the room `state` before it.
    /// `state` must hold every auth event (and the create event).
    fn authorize(&self, rules: &AuthorizationRules, event: &Pdu, state: &StateMap) -> Result<()>;
}

/// The authorisation rules as ruma-state-res implements them.
pub struct RumaAuthorizer;

impl EventAuthorizer for RumaAuthorizer {
    fn auth_types(
        &self,
        rules: &AuthorizationRules,
        kind: &str,
        sender: &UserId,
        state_key: Option<&str>,
        content: &RawValue,
    ) -> Result<Vec<(StateEventType, String)>> {
        let kind = TimelineEventType::from(kind);
        auth_types_for_event(&kind, sender, state_key, content, rules).map_err(Error::InvalidEvent)
    }

    fn authorize(&self, rules: &AuthorizationRules, event: &Pdu, state: &StateMap) -> Result<()> {
        let by_id: HashMap<&EventId, &Pdu> =
            state.values().map(|pdu| (&*pdu.event_id, pdu)).collect();
        check_state_independent_auth_rules(rules, event, |id: &EventId| by_id.get(id).copied())
            .map_err(Error::Unauthorized)?;
        check_state_dependent_auth_rules(rules, event, |kind: &StateEventType, key: &str| {
            state.get(&(kind.clone(), key.to_owned()))
        })
        .map_err(Error::Unauthorized)
    }
}
