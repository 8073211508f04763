//! The smallest subscriber built only from redis-rs's own tools: a `ConnectionManager`
//! (RESP3) that reconnects and resubscribes by itself (`set_automatic_resubscription`), with
//! a push sender, in two variants:
//!
//! - (a) a `tokio::sync::broadcast::Sender<PushInfo>`: bounded, keeps the newest pushes, and
//!   tells a receiver that fell behind how many it missed (`Lagged(n)`);
//! - (b) chapter 5's bounded queue behind `lab::push::to_queue`: the policy you chose, every
//!   drop counted.
//!
//! Nothing else: no PING, no reconnection loop, no supervisor of our own. What each fault
//! costs these two, next to `lab::production`, is what `main.rs` measures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Msg, PushInfo, PushKind};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

/// A client for `url` that speaks RESP3 (a push sender needs it), or a clear error.
fn resp3_client(url: &str) -> Result<redis::Client> {
    let client = redis::Client::open(url)
        .with_context(|| format!("not a valid Redis URL: {}", lab::redact::redact_url(url)))?;
    lab::push::resp3(&client).map_err(|error| lab::connect::describe(&error, url))
}

// ANCHOR: broadcast
/// Variant (a): the library's `ConnectionManager` (`config`: its defaults, or
/// [`retry_forever`]), resubscribing by itself, its pushes in a `broadcast` channel of
/// `capacity` pushes.
pub async fn with_broadcast(
    url: &str,
    channels: &[String],
    capacity: usize,
    config: ConnectionManagerConfig,
) -> Result<(ConnectionManager, broadcast::Receiver<PushInfo>)> {
    let (pushes, receiver) = broadcast::channel(capacity);
    let config = config
        .set_automatic_resubscription()
        .set_push_sender(pushes);
    let mut manager = ConnectionManager::new_with_config(resp3_client(url)?, config)
        .await
        .map_err(|error| lab::connect::describe(&error, url))?;
    manager.subscribe(channels).await?;
    Ok((manager, receiver))
}
// ANCHOR_END: broadcast

/// What the application is told by variant (a)'s pushes, with when.
#[derive(Default)]
pub struct Told {
    /// `Disconnection` pushes: "the connection was lost" (nothing about how many messages).
    pub disconnections: AtomicU64,
    /// The first subscribe confirmation after each `Disconnection`: "subscribed again".
    pub resubscriptions: AtomicU64,
    /// Pushes a slow receiver missed (`Lagged(n)`): every kind of push, not only messages.
    pub lagged: AtomicU64,
    /// Unsubscribe confirmations (at shutdown).
    pub unsubscribed: AtomicU64,
    /// PINGs through the manager that failed ([`ping_every`]).
    pub pings_failed: AtomicU64,
    /// What happened, and when: for the harness's timeline.
    pub log: Mutex<Vec<(Instant, String)>>,
}

impl Told {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn note(&self, counter: &AtomicU64, n: u64, what: &str) {
        counter.fetch_add(n, Ordering::Relaxed);
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.push((Instant::now(), what.to_string()));
    }

    fn disconnected(&self) {
        self.note(&self.disconnections, 1, "Disconnection push");
    }

    fn resubscribed(&self) {
        self.note(
            &self.resubscriptions,
            1,
            "subscribe confirmation after a Disconnection",
        );
    }

    fn lagged(&self, n: u64) {
        self.note(&self.lagged, n, &format!("Lagged({n})"));
    }
}

// ANCHOR: broadcast_loop
/// The receiving loop of variant (a): every message to `handle`, every `Lagged(n)` counted.
/// It ends only when the channel closes (the manager is gone) or `handle` says stop.
pub async fn receive<F, Fut>(
    mut receiver: broadcast::Receiver<PushInfo>,
    told: &Told,
    mut handle: F,
) where
    F: FnMut(Msg) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut reconnecting = false;
    loop {
        match receiver.recv().await {
            Ok(push) => match push.kind {
                PushKind::Message => {
                    if let Some(msg) = Msg::from_push_info(push)
                        && !handle(msg).await
                    {
                        return;
                    }
                }
                // Made by redis-rs when a connection ends; the manager reconnects.
                PushKind::Disconnection => {
                    told.disconnected();
                    reconnecting = true;
                }
                // The manager's resubscription is confirmed like any SUBSCRIBE.
                PushKind::Subscribe if reconnecting => {
                    told.resubscribed();
                    reconnecting = false;
                }
                PushKind::Unsubscribe => {
                    told.unsubscribed.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            },
            // The channel overwrote `n` pushes this receiver had not read: counted, not ended.
            Err(RecvError::Lagged(n)) => told.lagged(n),
            Err(RecvError::Closed) => return,
        }
    }
}
// ANCHOR_END: broadcast_loop

// ANCHOR: queue
/// Variant (b): the same manager, its pushes through `lab::push::to_queue` (chapter 5): each
/// message goes to `accept`, which pushes it into a bounded queue and never waits.
pub async fn with_queue<F>(
    url: &str,
    channels: &[String],
    accept: F,
) -> Result<(ConnectionManager, lab::push::ConnectionWatch)>
where
    F: Fn(Msg) -> bool + Send + Sync + 'static,
{
    let (pushes, watch) = lab::push::to_queue(accept);
    let config = ConnectionManagerConfig::new()
        .set_automatic_resubscription()
        .set_push_sender(pushes);
    let mut manager = ConnectionManager::new_with_config(resp3_client(url)?, config)
        .await
        .map_err(|error| lab::connect::describe(&error, url))?;
    manager.subscribe(channels).await?;
    Ok((manager, watch))
}
// ANCHOR_END: queue

// ANCHOR: tuned
/// The manager's reconnection, tuned: by default it gives up after 6 retries (100 ms
/// doubling, jitter up to +100 %: 6.3 to 12.6 s) and never tries again by itself; this
/// retries for ever, at most about 1 s apart (2 s with the jitter).
pub fn retry_forever() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(usize::MAX)
        .set_max_delay(Duration::from_secs(1))
}
// ANCHOR_END: tuned

// ANCHOR: ping
/// What an application can add to the manager without writing a supervisor of its own: a
/// PING every `every`. A command that finds the connection gone makes the manager reconnect
/// (and resubscribe); one that times out does not.
pub async fn ping_every(mut manager: ConnectionManager, every: Duration, told: Arc<Told>) {
    loop {
        tokio::time::sleep(every).await;
        let pong = redis::cmd("PING").query_async::<String>(&mut manager).await;
        if let Err(error) = pong {
            told.note(&told.pings_failed, 1, &format!("PING failed: {error}"));
        }
    }
}
// ANCHOR_END: ping
