//! Whom this server federates with: the configured allow and deny lists
//! and the ones administrators edit at run time, and each room's server ACL.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use federation::acl::{glob_matches, host_of, server_acl_allows};
use ruma::ServerName;

use crate::{
    config::Config,
    error::Result,
    storage::{FederationRules, Store},
};

/// How long the lists administrators edit are read from memory (other
/// instances' edits apply within this).
const RULES_TTL: Duration = Duration::from_secs(5);

/// The federation policy.
pub struct Policy {
    store: Store,
    configured: FederationRules,
    cached: Mutex<Option<(Instant, FederationRules)>>,
}

impl Policy {
    pub fn new(store: Store, config: &Config) -> Self {
        Self {
            store,
            configured: FederationRules {
                allow: config.federation_allow.clone(),
                deny: config.federation_deny.clone(),
            },
            cached: Mutex::new(None),
        }
    }

    async fn edited_rules(&self) -> Result<FederationRules> {
        if let Some((at, rules)) = &*self.cached.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < RULES_TTL
        {
            return Ok(rules.clone());
        }
        let rules = self.store.federation_rules().await?;
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), rules.clone()));
        Ok(rules)
    }

    /// The lists changed: read them again.
    pub fn rules_changed(&self) {
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether this server talks to `server` at all. A deny pattern always
    /// wins; with allow patterns, only matching servers are let in.
    pub async fn may_federate_with(&self, server: &ServerName) -> bool {
        let edited = match self.edited_rules().await {
            Ok(rules) => rules,
            Err(e) => {
                tracing::warn!(error = %e, "federation rules unreadable; refusing");
                return false;
            }
        };
        // Patterns match the whole name or its host alone.
        let (name, host) = (server.as_str(), host_of(server.as_str()));
        let matches = |patterns: &[String]| {
            patterns
                .iter()
                .any(|p| glob_matches(p, name) || glob_matches(p, host))
        };
        if matches(&self.configured.deny) || matches(&edited.deny) {
            return false;
        }
        let allow_lists = [&self.configured.allow, &edited.allow];
        allow_lists.iter().all(|list| list.is_empty())
            || allow_lists.iter().any(|list| matches(list))
    }

    /// Whether `server` may take part in `room_id` by its server ACL
    /// (rooms without one let everyone in).
    pub async fn room_allows(&self, room_id: &str, server: &ServerName) -> Result<bool> {
        let acl = self
            .store
            .current_state(room_id, Some("m.room.server_acl"))
            .await?
            .into_iter()
            .find(|e| e.state_key.as_deref() == Some(""));
        let Some(acl) = acl else {
            return Ok(true);
        };
        let event: serde_json::Value = serde_json::from_str(&acl.json)
            .map_err(|e| crate::error::Error::Internal(format!("stored event: {e}")))?;
        Ok(server_acl_allows(&event["content"], server.as_str()))
    }
}
