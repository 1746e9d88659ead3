//! The PubSub every live path listens to: "something was committed".
//! In memory for one process; with Redis, every change is also published
//! to the other processes sharing the database, so they act as one server.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::error::{Error, Result};

/// Changes buffered per subscriber; a slower one is told it lagged and resyncs.
const CAPACITY: usize = 4096;
/// The Redis channel the instances share.
const CHANNEL: &str = "teatime:changes";

/// A committed change that may matter to someone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A new event, receipt or typing notice in a room; `member` is the user
    /// a membership event is about.
    Room {
        room_id: String,
        member: Option<String>,
    },
    /// A change only this user sees (account data, to-device messages).
    User(String),
    /// These login sessions ended: their tokens must fail everywhere.
    SessionsEnded(Vec<String>),
    /// Someone started (`Some(ms)`) or stopped typing (kept in memory, so
    /// other instances replay it).
    Typing {
        room_id: String,
        user_id: String,
        timeout_ms: Option<u64>,
    },
    /// Events were queued for these other servers.
    Outbox(Vec<String>),
    /// Changes from other instances may have been lost (Redis reconnected):
    /// listeners must assume anything changed.
    Missed,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    from: String,
    change: Change,
}

/// Publishes changes to this process's listeners and, with Redis, to the
/// other processes.
pub struct Notifier {
    local: broadcast::Sender<Change>,
    /// Changes that came from other instances only.
    remote: broadcast::Sender<Change>,
    outbox: Option<mpsc::UnboundedSender<Change>>,
}

impl Default for Notifier {
    fn default() -> Self {
        Self {
            local: broadcast::channel(CAPACITY).0,
            remote: broadcast::channel(CAPACITY).0,
            outbox: None,
        }
    }
}

impl Notifier {
    /// A notifier shared through the Redis server at `url`.
    pub async fn redis(url: &str) -> Result<Notifier> {
        let client =
            redis::Client::open(url).map_err(|e| Error::Internal(format!("redis url: {e}")))?;
        let publisher = redis::aio::ConnectionManager::new(client.clone())
            .await
            .map_err(|e| Error::Internal(format!("cannot reach redis at {url}: {e}")))?;
        let instance = crate::auth::tokens::random_id();
        let notifier = Notifier {
            outbox: None,
            ..Notifier::default()
        };
        let (outbox, pending) = mpsc::unbounded_channel();
        tokio::spawn(publish_loop(publisher, instance.clone(), pending));
        tokio::spawn(subscribe_loop(
            client,
            instance,
            notifier.local.clone(),
            notifier.remote.clone(),
        ));
        Ok(Notifier {
            outbox: Some(outbox),
            ..notifier
        })
    }

    /// Announces a committed change (nobody listening is fine).
    pub fn publish(&self, change: Change) {
        if let Some(outbox) = &self.outbox {
            let _ = outbox.send(change.clone());
        }
        let _ = self.local.send(change);
    }

    /// Wakes this process's listeners only (for changes replayed from
    /// another instance).
    pub fn publish_local(&self, change: Change) {
        let _ = self.local.send(change);
    }

    /// Every change from now on, local and remote.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.local.subscribe()
    }

    /// Changes other instances made, from now on.
    pub fn subscribe_remote(&self) -> broadcast::Receiver<Change> {
        self.remote.subscribe()
    }
}

async fn publish_loop(
    mut connection: redis::aio::ConnectionManager,
    instance: String,
    mut pending: mpsc::UnboundedReceiver<Change>,
) {
    while let Some(change) = pending.recv().await {
        let Ok(message) = serde_json::to_string(&Envelope {
            from: instance.clone(),
            change,
        }) else {
            continue;
        };
        if let Err(e) =
            redis::AsyncCommands::publish::<_, _, ()>(&mut connection, CHANNEL, message).await
        {
            tracing::warn!(error = %e, "could not publish a change to redis");
        }
    }
}

async fn subscribe_loop(
    client: redis::Client,
    instance: String,
    local: broadcast::Sender<Change>,
    remote: broadcast::Sender<Change>,
) {
    use futures_util::StreamExt;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(e) = pubsub.subscribe(CHANNEL).await {
                    tracing::warn!(error = %e, "could not subscribe to redis");
                } else {
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(text) = message.get_payload::<String>() else {
                            continue;
                        };
                        let Ok(envelope) = serde_json::from_str::<Envelope>(&text) else {
                            continue;
                        };
                        if envelope.from != instance {
                            // Typing is applied by the typing service first,
                            // which then wakes the local listeners itself.
                            if !matches!(envelope.change, Change::Typing { .. }) {
                                let _ = local.send(envelope.change.clone());
                            }
                            let _ = remote.send(envelope.change);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "redis unreachable; retrying"),
        }
        let _ = remote.send(Change::Missed);
        let _ = local.send(Change::Missed);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
