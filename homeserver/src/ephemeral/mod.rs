//! Ephemeral room data: typing notifications (in memory, expiring) and read
//! receipts (stored, with their own stream). Both reach clients through the
//! `ephemeral` section of `/sync`.

mod receipts;
mod typing;

pub use receipts::{ReceiptType, Receipts};
pub use typing::Typing;
