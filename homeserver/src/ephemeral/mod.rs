//! Ephemeral data: typing notifications (in memory, expiring), read
//! receipts (stored, with their own stream), to-device messages and presence. Both reach clients through the
//! `ephemeral` section of `/sync`.

mod presence;
mod receipts;
mod to_device;
mod typing;

pub use presence::{PRESENCE_STATES, Presence, presence_content};
pub use receipts::{ReceiptType, Receipts};
pub use to_device::{DeviceMessages, ToDevice};
pub use typing::Typing;
