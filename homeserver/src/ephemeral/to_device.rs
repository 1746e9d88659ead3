//! To-device messages: sent straight to devices (key sharing, call
//! signalling), queued until the device syncs past them.

use std::{collections::BTreeMap, sync::Arc};

use ruma::UserId;
use serde_json::{Value, json};

use crate::{
    auth::Authed,
    error::{Error, Result},
    servers::Sender,
    storage::{Store, ToDeviceMessage},
    sync::{Change, Notifier},
};

/// Messages to one user: device id (or `*` for all) to content.
pub type DeviceMessages = BTreeMap<String, BTreeMap<String, Value>>;

/// Queues to-device messages and wakes the recipients' syncs; messages for
/// users of other servers go to those servers.
pub struct ToDevice {
    store: Store,
    notifier: Arc<Notifier>,
    server_name: String,
    sender: Sender,
}

impl ToDevice {
    /// The service for users of `server_name`.
    pub fn new(store: Store, notifier: Arc<Notifier>, server_name: String, sender: Sender) -> Self {
        Self {
            store,
            notifier,
            server_name,
            sender,
        }
    }

    /// `PUT /sendToDevice/{eventType}/{txnId}`. A repeated transaction id
    /// delivers nothing again.
    pub async fn send(
        &self,
        sender: &Authed,
        event_type: &str,
        txn_id: &str,
        messages: DeviceMessages,
    ) -> Result<()> {
        let mut local = DeviceMessages::new();
        let mut remote: BTreeMap<String, DeviceMessages> = BTreeMap::new();
        for (user_id, devices) in messages {
            let user = UserId::parse(&user_id)
                .map_err(|e| Error::InvalidParam(format!("invalid user id {user_id}: {e}")))?;
            if devices.values().any(|content| !content.is_object()) {
                return Err(Error::BadJson("each message must be a JSON object".into()));
            }
            if user.server_name().as_str() == self.server_name {
                local.insert(user_id, devices);
            } else {
                remote
                    .entry(user.server_name().to_string())
                    .or_default()
                    .insert(user_id, devices);
            }
        }
        let device = sender.device_id.as_str();
        let fresh = self
            .deliver((sender.user_id.as_str(), device), event_type, txn_id, local)
            .await?;
        if fresh {
            for (server, messages) in remote {
                let edu = json!({
                    "edu_type": "m.direct_to_device",
                    "content": {
                        "sender": sender.user_id,
                        "type": event_type,
                        "message_id": format!("{device}:{txn_id}"),
                        "messages": messages,
                    },
                });
                self.sender.queue_edu([server.as_str()], &edu);
            }
        }
        Ok(())
    }

    /// Messages another server forwards from `sender` to users of this one
    /// (a repeated `message_id` delivers nothing again).
    pub async fn receive_remote(
        &self,
        sender: &UserId,
        event_type: &str,
        message_id: &str,
        messages: &Value,
    ) -> Result<()> {
        let messages: DeviceMessages = serde_json::from_value(messages.clone())
            .map_err(|e| Error::BadJson(format!("to-device messages: {e}")))?;
        let ours = messages
            .into_iter()
            .filter(|(user, _)| {
                UserId::parse(user).is_ok_and(|u| u.server_name().as_str() == self.server_name)
            })
            .collect();
        self.deliver((sender.as_str(), ""), event_type, message_id, ours)
            .await?;
        Ok(())
    }

    /// Queues messages for local users under the sender's transaction id;
    /// `false` when that id was used before.
    async fn deliver(
        &self,
        sender: (&str, &str),
        event_type: &str,
        txn_id: &str,
        messages: DeviceMessages,
    ) -> Result<bool> {
        let mut queued = Vec::new();
        let mut recipients = Vec::new();
        for (user_id, devices) in messages {
            for (device_id, content) in devices {
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
                        sender: sender.0.to_owned(),
                        event_type: event_type.to_owned(),
                        content: content.clone(),
                    });
                }
            }
            recipients.push(user_id);
        }
        let stored = self.store.send_to_devices(sender, txn_id, &queued).await?;
        if stored.is_some() {
            for user_id in recipients {
                self.notifier.publish(Change::User(user_id));
            }
        }
        Ok(stored.is_some())
    }
}
