//! Account data: per-user configuration the client stores on the server,
//! global or scoped to one room, only ever visible to that user.
//!
//! Content is any JSON object (bounded by the request body limit). Types the
//! server manages (`m.fully_read`, `m.push_rules`) cannot be set by clients
//! (405 `M_BAD_JSON`, as the spec requires); other services set them with
//! [`AccountData::set_for_user`]. A room's data may be set for any valid room
//! id: membership is not checked, as the data is private to its owner anyway.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::{
    auth::Authed,
    error::{Error, Result},
    storage::{GLOBAL_ACCOUNT_DATA, Store},
    sync::{Change, Notifier},
};

/// Account data types only the server may set.
pub const SERVER_MANAGED_TYPES: &[&str] = &["m.fully_read", "m.push_rules"];

/// The longest account data type, in bytes (the limit on event types).
const MAX_TYPE_BYTES: usize = 255;

/// Account data over the store.
pub struct AccountData {
    store: Store,
    notifier: Arc<Notifier>,
}

/// Checks that the request is about the caller's own account data and returns
/// the storage room id (empty for global data).
fn own_scope<'a>(authed: &Authed, user_id: &str, room_id: Option<&'a str>) -> Result<&'a str> {
    <&ruma::UserId>::try_from(user_id)
        .map_err(|e| Error::InvalidParam(format!("invalid user id: {e}")))?;
    if authed.user_id.as_str() != user_id {
        return Err(Error::Forbidden(
            "you may only access your own account data".into(),
        ));
    }
    match room_id {
        None => Ok(GLOBAL_ACCOUNT_DATA),
        Some(room_id) => {
            <&ruma::RoomId>::try_from(room_id).map_err(|e| {
                Error::InvalidParam(format!("{room_id} is not a valid room id: {e}"))
            })?;
            Ok(room_id)
        }
    }
}

fn check_type(data_type: &str) -> Result<()> {
    if data_type.is_empty() || data_type.len() > MAX_TYPE_BYTES {
        return Err(Error::InvalidParam(format!(
            "the account data type must be 1 to {MAX_TYPE_BYTES} bytes long"
        )));
    }
    Ok(())
}

impl AccountData {
    /// The service over `store`; writes wake the user's syncs through `notifier`.
    pub fn new(store: Store, notifier: Arc<Notifier>) -> Self {
        Self { store, notifier }
    }

    /// `PUT /user/{userId}[/rooms/{roomId}]/account_data/{type}`: replaces the
    /// caller's account data of `data_type`.
    pub async fn set(
        &self,
        authed: &Authed,
        user_id: &str,
        room_id: Option<&str>,
        data_type: &str,
        content: &Map<String, Value>,
    ) -> Result<()> {
        let room_id = own_scope(authed, user_id, room_id)?;
        check_type(data_type)?;
        if SERVER_MANAGED_TYPES.contains(&data_type) {
            return Err(Error::ServerManagedType(format!(
                "cannot set {data_type} through this API"
            )));
        }
        let content = serde_json::to_string(content)
            .map_err(|e| Error::Internal(format!("serializing account data: {e}")))?;
        self.store
            .set_account_data(user_id, room_id, data_type, &content)
            .await?;
        self.notifier.publish(Change::User(user_id.to_owned()));
        Ok(())
    }

    /// `GET /user/{userId}[/rooms/{roomId}]/account_data/{type}`: the caller's
    /// account data of `data_type` (`M_NOT_FOUND` when never set).
    pub async fn get(
        &self,
        authed: &Authed,
        user_id: &str,
        room_id: Option<&str>,
        data_type: &str,
    ) -> Result<Map<String, Value>> {
        let room_id = own_scope(authed, user_id, room_id)?;
        check_type(data_type)?;
        self.get_for_user(user_id, room_id, data_type)
            .await?
            .ok_or_else(|| Error::NotFound("account data not found".into()))
    }

    /// Sets account data on the server's own behalf (any type, including
    /// the server-managed ones); `room_id` is `None` for global data. Returns
    /// the write's stream position.
    pub async fn set_for_user(
        &self,
        user_id: &ruma::UserId,
        room_id: Option<&ruma::RoomId>,
        data_type: &str,
        content: &Map<String, Value>,
    ) -> Result<i64> {
        let content = serde_json::to_string(content)
            .map_err(|e| Error::Internal(format!("serializing account data: {e}")))?;
        let position = self
            .store
            .set_account_data(
                user_id.as_str(),
                room_id.map_or(GLOBAL_ACCOUNT_DATA, |r| r.as_str()),
                data_type,
                &content,
            )
            .await?;
        self.notifier.publish(Change::User(user_id.to_string()));
        Ok(position)
    }

    /// The stored account data of `data_type`; `room_id` is empty for global data.
    pub async fn get_for_user(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
    ) -> Result<Option<Map<String, Value>>> {
        let Some(text) = self.store.account_data(user_id, room_id, data_type).await? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Internal(format!("stored account data is not an object: {e}")))
    }
}
