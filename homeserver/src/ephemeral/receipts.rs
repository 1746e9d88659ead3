//! Read receipts: clients say how far they have read; members see each
//! other's public receipts, and the user alone their private ones.

use std::sync::Arc;

use ruma::{EventId, RoomId};

use crate::{
    auth::Authed,
    error::{Error, Result},
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
}

impl Receipts {
    /// The service over `store`.
    pub fn new(store: Store, notifier: Arc<Notifier>) -> Self {
        Self { store, notifier }
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
        self.store.require_joined(room_id.as_str(), user_id).await?;
        let event = self
            .store
            .event(event_id.as_str())
            .await?
            .filter(|e| e.room_id == room_id.as_str())
            .ok_or_else(|| Error::NotFound("no such event in this room".into()))?;
        let thread = thread_id.filter(|t| *t != "main").unwrap_or_default();
        let stored = self
            .store
            .set_receipt(
                room_id.as_str(),
                user_id,
                receipt_type.as_str(),
                thread,
                event_id.as_str(),
                event.stream_ordering,
            )
            .await?;
        if stored.is_some() {
            self.notifier.publish(Change::Room {
                room_id: room_id.to_string(),
                member: None,
            });
        }
        Ok(())
    }
}
