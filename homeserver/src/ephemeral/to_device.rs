//! To-device messages: sent straight to devices (key sharing, call
//! signalling), queued until the device syncs past them.

use std::{collections::BTreeMap, sync::Arc};

use ruma::UserId;
use serde_json::Value;

use crate::{
    auth::Authed,
    error::{Error, Result},
    storage::{Store, ToDeviceMessage},
    sync::{Change, Notifier},
};

/// Messages to one user: device id (or `*` for all) to content.
pub type DeviceMessages = BTreeMap<String, BTreeMap<String, Value>>;

/// Queues to-device messages and wakes the recipients' syncs.
pub struct ToDevice {
    store: Store,
    notifier: Arc<Notifier>,
    server_name: String,
}

impl ToDevice {
    /// The service for users of `server_name`.
    pub fn new(store: Store, notifier: Arc<Notifier>, server_name: String) -> Self {
        Self {
            store,
            notifier,
            server_name,
        }
    }

    /// `PUT /sendToDevice/{eventType}/{txnId}`. A repeated transaction id
    /// delivers nothing again. Users of other servers are not reachable
    /// before federation and are refused.
    pub async fn send(
        &self,
        sender: &Authed,
        event_type: &str,
        txn_id: &str,
        messages: DeviceMessages,
    ) -> Result<()> {
        let mut queued = Vec::new();
        let mut recipients = Vec::new();
        for (user_id, devices) in messages {
            let user = UserId::parse(&user_id)
                .map_err(|e| Error::InvalidParam(format!("invalid user id {user_id}: {e}")))?;
            if user.server_name().as_str() != self.server_name {
                return Err(Error::Forbidden(format!(
                    "{user_id} is on another server; federation is not available yet"
                )));
            }
            for (device_id, content) in devices {
                if !content.is_object() {
                    return Err(Error::BadJson("each message must be a JSON object".into()));
                }
                let content =
                    serde_json::to_string(&content).map_err(|e| Error::Internal(e.to_string()))?;
                let targets = if device_id == "*" {
                    self.store
                        .devices(&user_id)
                        .await?
                        .into_iter()
                        .map(|d| d.device_id)
                        .collect()
                } else {
                    vec![device_id]
                };
                for device_id in targets {
                    queued.push(ToDeviceMessage {
                        user_id: user_id.clone(),
                        device_id,
                        sender: sender.user_id.to_string(),
                        event_type: event_type.to_owned(),
                        content: content.clone(),
                    });
                }
            }
            recipients.push(user_id);
        }
        let device = sender.device_id.as_str();
        let stored = self
            .store
            .send_to_devices((sender.user_id.as_str(), device), txn_id, &queued)
            .await?;
        if stored.is_some() {
            for user_id in recipients {
                self.notifier.publish(Change::User(user_id));
            }
        }
        Ok(())
    }
}
