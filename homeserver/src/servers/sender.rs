//! The federation sender: for each server this one owes events or EDUs, a
//! task sends transactions of up to 50 PDUs and 100 EDUs, in order, and
//! retries with exponential backoff. PDUs wait in the database (nothing is
//! lost when either side restarts; the receiver drops events it has), EDUs
//! (typing, receipts, to-device) in memory. With several instances, a lease
//! in the database makes one of them the sender for each destination.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use poem::http::Method;
use ruma::ServerName;
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast::error::RecvError};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    auth::tokens::random_id,
    remote::{Remote, encode},
    servers::policy::Policy,
    storage::{Store, now_ms},
    sync::{Change, Notifier},
};

/// PDUs in one transaction at most (the spec's limit).
const MAX_PDUS: i64 = 50;
/// EDUs in one transaction at most (the spec's limit).
const MAX_EDUS: usize = 100;
/// EDUs kept for a destination at most; the oldest go first.
const MAX_QUEUED_EDUS: usize = 1_000;
/// How long a lease lasts; the holder renews it as it sends.
const LEASE: Duration = Duration::from_secs(30);
/// The first retry waits this long; each failure doubles it.
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// What waits for one destination besides the PDUs in the database.
#[derive(Default)]
struct Queue {
    wake: Notify,
    edus: Mutex<VecDeque<Value>>,
    /// Waiting out a failure: a sign of life from the server (`retry_now`)
    /// ends the wait.
    backing_off: AtomicBool,
    retry_now: Notify,
}

struct Inner {
    store: Store,
    remote: Arc<Remote>,
    policy: Arc<Policy>,
    /// This instance's name in leases.
    instance: String,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    stopping: CancellationToken,
    tasks: TaskTracker,
    max_retry: Duration,
    next_txn: AtomicU64,
}

/// Sends what this server owes others.
#[derive(Clone)]
pub struct Sender {
    inner: Arc<Inner>,
}

impl Sender {
    /// A sender that waits at most `max_retry` between attempts.
    pub fn new(
        store: Store,
        remote: Arc<Remote>,
        policy: Arc<Policy>,
        stopping: CancellationToken,
        max_retry: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                remote,
                policy,
                instance: random_id(),
                queues: Mutex::new(HashMap::new()),
                stopping,
                tasks: TaskTracker::new(),
                max_retry,
                next_txn: AtomicU64::new(0),
            }),
        }
    }

    /// Starts sending what the database holds for other servers, then
    /// whatever is queued later (announced through `notifier`).
    pub async fn start(&self, notifier: &Notifier) -> crate::error::Result<()> {
        let mut changes = notifier.subscribe();
        for destination in self.inner.store.outbox_destinations().await? {
            self.wake(&destination);
        }
        let sender = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = sender.inner.stopping.cancelled() => break,
                    change = changes.recv() => match change {
                        Ok(Change::Outbox(destinations)) => {
                            for destination in destinations {
                                sender.wake(&destination);
                            }
                        }
                        // Perhaps announcements were lost: look at every queue.
                        Ok(Change::Missed) | Err(RecvError::Lagged(_)) => {
                            if let Ok(all) = sender.inner.store.outbox_destinations().await {
                                for destination in all {
                                    sender.wake(&destination);
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(RecvError::Closed) => break,
                    },
                }
            }
        });
        Ok(())
    }

    /// The destination's queue, starting its task if it has none.
    fn queue(&self, destination: &str) -> Arc<Queue> {
        let mut queues = self.inner.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queue) = queues.get(destination) {
            return queue.clone();
        }
        let queue = Arc::new(Queue::default());
        queues.insert(destination.to_owned(), queue.clone());
        let inner = self.inner.clone();
        let name = destination.to_owned();
        let task_queue = queue.clone();
        self.inner
            .tasks
            .spawn(async move { send_loop(inner, name, task_queue).await });
        queue
    }

    /// Something new waits for `destination`.
    pub fn wake(&self, destination: &str) {
        if destination != self.inner.remote.server_name().as_str() {
            self.queue(destination).wake.notify_one();
        }
    }

    /// Looks at every queue again (the federation rules changed).
    pub fn wake_all(&self) {
        let queues: Vec<Arc<Queue>> = {
            let queues = self.inner.queues.lock().unwrap_or_else(|e| e.into_inner());
            queues.values().cloned().collect()
        };
        for queue in queues {
            queue.wake.notify_one();
            queue.retry_now.notify_one();
        }
    }

    /// Queues an EDU for each of `destinations`.
    pub fn queue_edu<'a>(&self, destinations: impl IntoIterator<Item = &'a str>, edu: &Value) {
        for destination in destinations {
            if destination == self.inner.remote.server_name().as_str() {
                continue;
            }
            let queue = self.queue(destination);
            {
                let mut edus = queue.edus.lock().unwrap_or_else(|e| e.into_inner());
                if edus.len() >= MAX_QUEUED_EDUS {
                    edus.pop_front();
                }
                edus.push_back(edu.clone());
            }
            queue.wake.notify_one();
        }
    }

    /// Queues an EDU for the other servers with users in `room_id`.
    pub async fn queue_room_edu(&self, room_id: &str, edu: &Value) -> crate::error::Result<()> {
        let users = self.inner.store.joined_users(room_id).await?;
        let servers: std::collections::BTreeSet<&str> = users
            .iter()
            .filter_map(|user| user.split_once(':').map(|(_, server)| server))
            .collect();
        self.queue_edu(servers, edu);
        Ok(())
    }

    /// `origin` reached us: if sending to it was failing, try again now.
    pub fn heard_from(&self, origin: &ServerName) {
        let queue = {
            let queues = self.inner.queues.lock().unwrap_or_else(|e| e.into_inner());
            queues.get(origin.as_str()).cloned()
        };
        if let Some(queue) = queue
            && queue.backing_off.load(Ordering::SeqCst)
        {
            queue.retry_now.notify_one();
        }
    }

    /// Waits for the sending tasks to notice the server is stopping.
    pub async fn stopped(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

/// One transaction: the PDUs (with the position of the last) and EDUs.
struct Batch {
    pdus: Vec<Value>,
    upto: Option<i64>,
    edus: Vec<Value>,
}

async fn next_batch(
    inner: &Inner,
    destination: &str,
    queue: &Queue,
) -> crate::error::Result<Batch> {
    let rows = inner.store.outbox_batch(destination, MAX_PDUS).await?;
    let upto = rows.last().map(|(position, _)| *position);
    let pdus = rows
        .into_iter()
        .filter_map(|(_, json)| serde_json::from_str(&json).ok())
        .collect();
    let edus = {
        let mut edus = queue.edus.lock().unwrap_or_else(|e| e.into_inner());
        let take = edus.len().min(MAX_EDUS);
        edus.drain(..take).collect()
    };
    Ok(Batch { pdus, upto, edus })
}

/// Sends to one destination for as long as the server runs.
async fn send_loop(inner: Arc<Inner>, destination: String, queue: Arc<Queue>) {
    let Ok(server) = <&ServerName>::try_from(destination.as_str()) else {
        tracing::warn!(%destination, "not a server name; nothing is sent to it");
        return;
    };
    loop {
        let now = now_ms();
        let retry_at = match inner.store.destination_backoff(&destination).await {
            Ok((_, retry_at)) => retry_at,
            Err(e) => {
                tracing::warn!(%destination, error = %e, "federation queue unreadable");
                now + 1_000
            }
        };
        if retry_at > now {
            queue.backing_off.store(true, Ordering::SeqCst);
            let wait = Duration::from_millis(u64::try_from(retry_at - now).unwrap_or(0));
            tokio::select! {
                () = inner.stopping.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = queue.retry_now.notified() => {}
            }
            queue.backing_off.store(false, Ordering::SeqCst);
        }
        let leased = inner
            .store
            .lease_destination(
                &destination,
                &inner.instance,
                now_ms(),
                now_ms() + millis(LEASE),
            )
            .await
            .unwrap_or(false);
        if !leased {
            // Another instance sends to this server; look again later.
            tokio::select! {
                () = inner.stopping.cancelled() => return,
                () = tokio::time::sleep(LEASE / 2) => continue,
            }
        }
        let batch = match next_batch(&inner, &destination, &queue).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(%destination, error = %e, "federation queue unreadable");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.pdus.is_empty() && batch.edus.is_empty() {
            let _ = inner
                .store
                .release_destination(&destination, &inner.instance)
                .await;
            tokio::select! {
                () = inner.stopping.cancelled() => return,
                () = queue.wake.notified() => continue,
                // Another instance may have queued events and lost its lease.
                () = tokio::time::sleep(LEASE) => continue,
            }
        }
        if !inner.policy.may_federate_with(server).await {
            tracing::info!(%destination, "federation with this server is not allowed; its queue waits");
            tokio::select! {
                () = inner.stopping.cancelled() => return,
                () = queue.wake.notified() => continue,
                () = tokio::time::sleep(LEASE) => continue,
            }
        }
        let outcome = send_transaction(&inner, server, &batch).await;
        tracing::debug!(%destination, pdus = batch.pdus.len(), edus = batch.edus.len(), ok = outcome.is_ok(), "transaction sent");
        let now = now_ms();
        match outcome {
            Ok(()) => {
                if let Some(upto) = batch.upto
                    && let Err(e) = inner.store.outbox_delivered(&destination, upto).await
                {
                    tracing::warn!(%destination, error = %e, "delivered events stay queued");
                }
                let _ = inner.store.record_attempt(&destination, None, now).await;
            }
            Err(error) => {
                let (failures, _) = inner
                    .store
                    .destination_backoff(&destination)
                    .await
                    .unwrap_or((0, 0));
                let failures = failures + 1;
                let wait = backoff(failures, inner.max_retry);
                tracing::info!(%destination, failures, retry_in_ms = millis(wait), %error, "transaction failed");
                let failure = Some((failures, now + millis(wait), error.as_str()));
                let _ = inner.store.record_attempt(&destination, failure, now).await;
                // Typing and receipts go stale; later ones replace them.
                let mut edus = queue.edus.lock().unwrap_or_else(|e| e.into_inner());
                for edu in batch.edus.into_iter().rev() {
                    if edus.len() < MAX_QUEUED_EDUS {
                        edus.push_front(edu);
                    }
                }
            }
        }
    }
}

async fn send_transaction(inner: &Inner, server: &ServerName, batch: &Batch) -> Result<(), String> {
    let txn_id = format!(
        "{}-{}",
        now_ms(),
        inner.next_txn.fetch_add(1, Ordering::Relaxed)
    );
    let body = json!({
        "origin": inner.remote.server_name().as_str(),
        "origin_server_ts": now_ms(),
        "pdus": batch.pdus,
        "edus": batch.edus,
    });
    let path = format!("/_matrix/federation/v1/send/{}", encode(&txn_id));
    let answer = inner
        .remote
        .request(server, Method::PUT, &path, Some(&body))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(results) = answer["pdus"].as_object() {
        for (event_id, result) in results {
            if let Some(error) = result.get("error") {
                tracing::info!(destination = %server, %event_id, %error, "a sent event was refused");
            }
        }
    }
    Ok(())
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The wait after `failures` failures in a row: doubling, up to `max`.
fn backoff(failures: i64, max: Duration) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    FIRST_RETRY
        .saturating_mul(2_u32.saturating_pow(doublings))
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let max = Duration::from_secs(60);
        assert_eq!(backoff(1, max), Duration::from_millis(500));
        assert_eq!(backoff(2, max), Duration::from_secs(1));
        assert_eq!(backoff(4, max), Duration::from_secs(4));
        assert_eq!(backoff(20, max), max);
        assert_eq!(backoff(1_000, max), max);
    }
}
