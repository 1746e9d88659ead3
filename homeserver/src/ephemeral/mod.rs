//! Ephemeral data: typing notifications (in memory, expiring), read
//! receipts (stored, with their own stream) and to-device messages. Both reach clients through the
//! `ephemeral` section of `/sync`.

mod receipts;
mod to_device;
mod typing;

pub use receipts::{ReceiptType, Receipts};
pub use to_device::{DeviceMessages, ToDevice};
pub use typing::Typing;
