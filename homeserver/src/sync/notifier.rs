//! In-process notifications that something a client syncs has been
//! committed. Long-polls and (later) WebSockets wait on them; a Redis-backed
//! implementation will carry them between instances.

use tokio::sync::broadcast;

/// Changes buffered per subscriber; a slower one is told it lagged and resyncs.
const CAPACITY: usize = 4096;

/// A committed change that may matter to someone's sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new event in a room; `member` is the user a membership event is about.
    Room {
        room_id: String,
        member: Option<String>,
    },
    /// A change only this user sees (account data).
    User(String),
}

/// Publishes changes to every waiting sync.
pub struct Notifier {
    sender: broadcast::Sender<Change>,
}

impl Default for Notifier {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Notifier {
    /// Announces a committed change (nobody listening is fine).
    pub fn publish(&self, change: Change) {
        let _ = self.sender.send(change);
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }
}
