//! Read receipts: clients say how far they have read; members see each
//! other's public receipts, and the user alone their private ones.

use std::sync::Arc;

use ruma::{EventId, RoomId, UserId};
use serde_json::json;

use crate::{
    auth::Authed,
    error::{Error, Result},
    servers::Sender,
    storage::Store,
    sync::{Change, Notifier},
};

/// Receipt types a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptType {
    Read,
    ReadPrivate,
}

impl ReceiptType {
    /// The spec's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptType::Read => "m.read",
            ReceiptType::ReadPrivate => "m.read.private",
        }
    }
}

/// Stores receipts and wakes the syncs of the room's members.
pub struct Receipts {
    store: Store,
    notifier: Arc<Notifier>,
    /// Tells the other servers in the room of public receipts.
    sender: Sender,
}

impl Receipts {
    /// The service over `store`.
    pub fn new(store: Store, notifier: Arc<Notifier>, sender: Sender) -> Self {
        Self {
            store,
            notifier,
            sender,
        }
    }

    /// Records that `user_id` (a member of the room, of this server or
    /// another) read up to `event_id`; `true` when that moved the receipt.
    pub async fn record(
        &self,
        room_id: &str,
        user_id: &UserId,
        receipt_type: &str,
        event_id: &EventId,
        thread_id: Option<&str>,
    ) -> Result<bool> {
        if self
            .store
            .membership(room_id, user_id.as_str())
            .await?
            .as_deref()
            != Some("join")
        {
            return Err(Error::Forbidden("not a member of the room".into()));
        }
        let event = self
            .store
            .event(event_id.as_str())
            .await?
            .filter(|e| e.room_id == room_id)
            .ok_or_else(|| Error::NotFound("no such event in this room".into()))?;
        let thread = thread_id.filter(|t| *t != "main").unwrap_or_default();
        let stored = self
            .store
            .set_receipt(
                room_id,
                user_id.as_str(),
                receipt_type,
                thread,
                event_id.as_str(),
                event.stream_ordering,
            )
            .await?;
        if stored.is_some() {
            self.notifier.publish(Change::Room {
                room_id: room_id.to_owned(),
                member: None,
            });
        }
        Ok(stored.is_some())
    }

    /// `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`: the user has
    /// read up to `event_id`. Receipts never move backwards.
    pub async fn send(
        &self,
        authed: &Authed,
        room_id: &RoomId,
        receipt_type: ReceiptType,
        event_id: &EventId,
        thread_id: Option<&str>,
    ) -> Result<()> {
        let user_id = authed.user_id.as_str();
        let stored = self
            .record(
                room_id.as_str(),
                &authed.user_id,
                receipt_type.as_str(),
                event_id,
                thread_id,
            )
            .await?;
        if stored && receipt_type == ReceiptType::Read {
            let mut data = json!({ "ts": crate::storage::now_ms() });
            if let Some(thread) = thread_id {
                data["thread_id"] = thread.into();
            }
            let edu = json!({
                "edu_type": "m.receipt",
                "content": { room_id.as_str(): { "m.read": { user_id: {
                    "data": data,
                    "event_ids": [event_id],
                } } } },
            });
            self.sender.queue_room_edu(room_id.as_str(), &edu).await?;
        }
        Ok(())
    }
}
