//! Group commit: one task writes the events of every room, taking whatever
//! has queued up since its last commit into one transaction, so concurrent
//! senders share one fsync. Nobody is answered before their event is durable.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::{
    error::{Error, Result},
    storage::{Appended, NewEvent, Store},
    sync::{Change, Notifier},
};

/// What a committed event means to waiting syncs.
pub fn change_of(event: &NewEvent) -> Change {
    let member = event
        .state_key
        .clone()
        .filter(|_| event.event_type == "m.room.member");
    Change::Room {
        room_id: event.room_id.clone(),
        member,
    }
}

/// Events written in one transaction at most.
const MAX_BATCH: usize = 512;
/// Events waiting for the writer at most; senders wait for room beyond that.
const QUEUE: usize = 4096;

/// What became of a submitted event.
pub type Committed = Result<Appended>;

type Reply = oneshot::Sender<Committed>;

/// The handle senders submit events through.
#[derive(Clone)]
pub struct EventWriter {
    queue: mpsc::Sender<(NewEvent, Reply)>,
}

impl EventWriter {
    /// Starts the writer task over `store`.
    pub fn spawn(store: Store, notifier: Arc<Notifier>) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(store, notifier, receiver));
        Self { queue }
    }

    /// Queues `event`; the returned receiver answers once it is committed
    /// (with its stream position) or failed. Queue order is commit order.
    pub async fn submit(&self, event: NewEvent) -> Result<oneshot::Receiver<Committed>> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((event, reply))
            .await
            .map_err(|_| Error::Internal("the event writer has stopped".into()))?;
        Ok(answer)
    }
}

async fn write_loop(
    store: Store,
    notifier: Arc<Notifier>,
    mut receiver: mpsc::Receiver<(NewEvent, Reply)>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, replies): (Vec<NewEvent>, Vec<Reply>) = batch.drain(..).unzip();
        match store.append_events(&events).await {
            Ok(outcomes) => {
                let mut destinations = std::collections::BTreeSet::new();
                for (event, outcome) in events.iter().zip(&outcomes) {
                    if matches!(outcome, Appended::Stored(_)) {
                        notifier.publish(change_of(event));
                        destinations.extend(event.destinations.iter().cloned());
                    }
                }
                if !destinations.is_empty() {
                    notifier.publish(Change::Outbox(destinations.into_iter().collect()));
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A sender that went away no longer needs its answer.
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = events.len(), "committing events failed");
                for reply in replies {
                    let _ =
                        reply.send(Err(Error::Internal("the event could not be stored".into())));
                }
            }
        }
    }
}
