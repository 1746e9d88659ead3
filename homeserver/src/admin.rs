//! Server administration: what the admin API and `teatime admin` share.
//! Account operations live on [`crate::accounts::Accounts`]; this module adds
//! listings, room shutdown, registration tokens and the federation lists.

use ruma::{OwnedDeviceId, RoomId, UserId};

use crate::{
    auth::{Authed, tokens::random_id},
    error::{Error, Result},
    state::AppState,
    storage::{DeviceRow, FederationRules, RegistrationTokenRow, RoomSummary, UserSummary},
};

/// The most entries one listing page returns.
pub const MAX_PAGE: i64 = 1000;

/// Rooms read per query while searching a listing.
const ROOM_SCAN_BATCH: i64 = 500;

/// An account with its devices.
#[derive(Debug, Clone)]
pub struct UserDetails {
    pub user: UserSummary,
    pub devices: Vec<DeviceRow>,
}

/// One page of a listing and where the next starts (`None`: it was the last).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_from: Option<String>,
}

/// What shutting a room down did.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Local users made to leave.
    pub removed: Vec<String>,
    pub purged: bool,
}

/// Refuses anyone but a server administrator (`M_FORBIDDEN`).
pub async fn require_admin(state: &AppState, authed: &Authed) -> Result<()> {
    let user = state.store.user(authed.user_id.as_str()).await?;
    if user.is_some_and(|u| u.is_admin && !u.deactivated) {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "you are not a server administrator".into(),
        ))
    }
}

fn page_limit(limit: Option<i64>) -> Result<i64> {
    match limit {
        None => Ok(100),
        Some(limit) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
        Some(_) => Err(Error::InvalidParam(format!(
            "limit must be between 1 and {MAX_PAGE}"
        ))),
    }
}

/// Accounts with their devices, by user id.
pub async fn list_users(
    state: &AppState,
    search: Option<&str>,
    from: Option<&str>,
    limit: Option<i64>,
) -> Result<Page<UserDetails>> {
    let limit = page_limit(limit)?;
    let users = state
        .store
        .list_users(search.filter(|s| !s.is_empty()), from, limit)
        .await?;
    let next_from = (users.len() as i64 == limit)
        .then(|| users.last().map(|u| u.user_id.clone()))
        .flatten();
    let mut items = Vec::with_capacity(users.len());
    for user in users {
        let devices = state.store.devices(&user.user_id).await?;
        items.push(UserDetails { user, devices });
    }
    Ok(Page { items, next_from })
}

/// One account with its devices.
pub async fn user_details(state: &AppState, user_id: &str) -> Result<UserDetails> {
    let user = state
        .store
        .user_summary(user_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no account {user_id} on this server")))?;
    let devices = state.store.devices(user_id).await?;
    Ok(UserDetails { user, devices })
}

/// Rooms by room id; `search` matches part of the id, name or canonical alias.
pub async fn list_rooms(
    state: &AppState,
    search: Option<&str>,
    from: Option<&str>,
    limit: Option<i64>,
) -> Result<Page<RoomSummary>> {
    let limit = page_limit(limit)?;
    let search = search.filter(|s| !s.is_empty()).map(str::to_lowercase);
    let mut items = Vec::new();
    let mut cursor = from.map(str::to_owned);
    loop {
        let batch = state
            .store
            .list_rooms(cursor.as_deref(), ROOM_SCAN_BATCH)
            .await?;
        let exhausted = (batch.len() as i64) < ROOM_SCAN_BATCH;
        for room in batch {
            cursor = Some(room.room_id.clone());
            if search.as_deref().is_none_or(|s| room_matches(&room, s)) {
                items.push(room);
                if items.len() as i64 == limit {
                    return Ok(Page {
                        items,
                        next_from: cursor,
                    });
                }
            }
        }
        if exhausted {
            return Ok(Page {
                items,
                next_from: None,
            });
        }
    }
}

fn room_matches(room: &RoomSummary, search: &str) -> bool {
    let field = |kind: &str, key: &str| {
        room.state
            .get(kind)
            .and_then(|content| content[key].as_str())
            .map(str::to_lowercase)
    };
    room.room_id.to_lowercase().contains(search)
        || field("m.room.name", "name").is_some_and(|name| name.contains(search))
        || field("m.room.canonical_alias", "alias").is_some_and(|alias| alias.contains(search))
}

/// One room.
pub async fn room_details(state: &AppState, room_id: &str) -> Result<RoomSummary> {
    state
        .store
        .room_summary(room_id)
        .await?
        .ok_or_else(|| Error::NotFound("unknown room".into()))
}

/// Makes every local member leave the room (invites are rejected), blocks it
/// against joining again and, with `purge`, deletes what the server keeps of it.
pub async fn shutdown_room(
    state: &AppState,
    room_id: &RoomId,
    by: &str,
    reason: Option<String>,
    purge: bool,
) -> Result<Shutdown> {
    room_details(state, room_id.as_str()).await?;
    state.store.block_room(room_id.as_str(), by).await?;
    let mut removed = Vec::new();
    for (user_id, membership) in state.store.current_members(room_id.as_str()).await? {
        if !matches!(membership.as_str(), "join" | "invite" | "knock") {
            continue;
        }
        let Ok(user_id) = UserId::parse(&user_id) else {
            continue;
        };
        if user_id.server_name().as_str() != state.config.server_name {
            continue;
        }
        let member = Authed {
            user_id: user_id.clone(),
            device_id: OwnedDeviceId::from("TEATIME_ADMIN"),
            session_id: String::new(),
        };
        state.rooms.leave(room_id, &member, reason.clone()).await?;
        removed.push(user_id.to_string());
    }
    if purge {
        state.rooms.purge(room_id).await?;
    }
    tracing::info!(%room_id, %by, removed = removed.len(), purge, "room shut down");
    Ok(Shutdown {
        removed,
        purged: purge,
    })
}

/// The longest registration token (the spec's limit).
const MAX_TOKEN_CHARS: usize = 64;

/// Creates a registration token (a random one unless `token` is given).
pub async fn create_registration_token(
    state: &AppState,
    token: Option<String>,
    uses_allowed: Option<i64>,
    expiry_ts: Option<i64>,
) -> Result<RegistrationTokenRow> {
    let token = token.unwrap_or_else(|| random_id().chars().take(16).collect());
    let well_formed = !token.is_empty()
        && token.len() <= MAX_TOKEN_CHARS
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'));
    if !well_formed {
        return Err(Error::InvalidParam(format!(
            "a token is 1 to {MAX_TOKEN_CHARS} characters of A-Z, a-z, 0-9, . _ ~ -"
        )));
    }
    if uses_allowed.is_some_and(|n| n < 0) {
        return Err(Error::InvalidParam(
            "uses_allowed must not be negative".into(),
        ));
    }
    if expiry_ts.is_some_and(|ts| ts <= crate::storage::now_ms()) {
        return Err(Error::InvalidParam(
            "expiry_time must be in the future".into(),
        ));
    }
    let row = RegistrationTokenRow {
        token,
        uses_allowed,
        completed: 0,
        expiry_ts,
    };
    if !state.store.create_registration_token(&row).await? {
        return Err(Error::InvalidParam("this token exists already".into()));
    }
    Ok(row)
}

/// Revokes a registration token.
pub async fn revoke_registration_token(state: &AppState, token: &str) -> Result<()> {
    if state.store.delete_registration_token(token).await? {
        Ok(())
    } else {
        Err(Error::NotFound("no such registration token".into()))
    }
}

/// Replaces the federation allow and deny lists after checking every pattern.
pub async fn set_federation_rules(state: &AppState, rules: FederationRules) -> Result<()> {
    for pattern in rules.allow.iter().chain(&rules.deny) {
        let well_formed = !pattern.is_empty()
            && pattern.len() <= 255
            && pattern
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '*' | '?'));
        if !well_formed {
            return Err(Error::InvalidParam(format!(
                "not a server name pattern: {pattern:?}"
            )));
        }
    }
    state.store.set_federation_rules(&rules).await?;
    state.policy.rules_changed();
    // Queues held back by the old rules may go now.
    state.sender.wake_all();
    tracing::info!(
        allow = rules.allow.len(),
        deny = rules.deny.len(),
        "federation rules replaced"
    );
    Ok(())
}

impl FederationRules {
    /// Whether this server federates with `server_name`: a deny pattern
    /// always refuses; with any allow pattern, only matching servers pass.
    pub fn allows(&self, server_name: &str) -> bool {
        let matching = |patterns: &[String]| patterns.iter().any(|p| glob_matches(p, server_name));
        !matching(&self.deny) && (self.allow.is_empty() || matching(&self.allow))
    }
}

/// `*` matches any run of characters, case-insensitively (server names are).
fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_matches("example.org", "example.org"));
        assert!(glob_matches("example.org", "EXAMPLE.org"));
        assert!(!glob_matches("example.org", "example.org.evil"));
        assert!(glob_matches("*.example.org", "chat.example.org"));
        assert!(!glob_matches("*.example.org", "example.org"));
        assert!(glob_matches("*", "anything:8448"));
        assert!(glob_matches("a*b*c", "a-b-c"));
        assert!(!glob_matches("a*b*c", "a-c-b"));
        assert!(!glob_matches("ab*ba", "aba"));
    }

    #[test]
    fn deny_wins_and_allow_restricts() {
        let open = FederationRules::default();
        assert!(open.allows("anyone.org"));
        let rules = FederationRules {
            allow: vec!["*.corp.example".into(), "partner.org".into()],
            deny: vec!["bad.corp.example".into()],
        };
        assert!(rules.allows("chat.corp.example"));
        assert!(rules.allows("partner.org"));
        assert!(!rules.allows("bad.corp.example"));
        assert!(!rules.allows("elsewhere.org"));
        let deny_only = FederationRules {
            allow: vec![],
            deny: vec!["spam.*".into()],
        };
        assert!(deny_only.allows("fine.org"));
        assert!(!deny_only.allows("spam.net"));
    }
}
