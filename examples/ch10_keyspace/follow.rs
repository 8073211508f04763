//! The chapter's subscriber: a copy of the key space kept from keyspace notifications,
//! through disconnections.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::sync::oneshot;
use tokio::time::sleep;

/// How long a subscriber waits before it reconnects (its backoff): the writer goes on meanwhile.
pub const BACKOFF: Duration = Duration::from_millis(250);

// ANCHOR: policy
/// What a subscriber believes the key space holds: key -> value; a key it believes absent is
/// not in the map.
pub type Mirror = BTreeMap<String, String>;

/// When a subscriber reads the whole key space.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Policy {
    /// Once, at its first subscribe; afterwards it follows the notifications.
    LoadOnce,
    /// After every subscribe, the first and each one after a reconnection.
    Reconcile,
}
// ANCHOR_END: policy

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::LoadOnce => "naive",
            Policy::Reconcile => "reconciling",
        }
    }
}

/// What a subscriber did, for its RESULT line.
#[derive(Debug, Default)]
pub struct Stats {
    pub mirror: Mirror,
    pub events: u64,
    pub subscribes: u64,
    /// Keys a reconciliation pass found wrong in the mirror (after the first load).
    pub repaired: u64,
}

// ANCHOR: follow
/// Keep a copy of every key under `prefix` from keyspace notifications, through
/// disconnections: reconnect after `BACKOFF`, subscribe again, then (by `policy`) read the
/// whole key space. Returns when it hears `marker` being set.
pub async fn follow(
    client: &redis::Client,
    prefix: &str,
    marker: &str,
    policy: Policy,
    ready: oneshot::Sender<()>,
) -> Result<Stats> {
    let mut con = client.get_multiplexed_async_connection().await?;
    let mut stats = Stats::default();
    let mut ready = Some(ready);
    loop {
        let mut pubsub = client.get_async_pubsub().await?;
        // Every change to our keys, and every expiry (its key is the payload).
        pubsub
            .psubscribe(format!("__keyspace@0__:{prefix}*"))
            .await?;
        pubsub.subscribe("__keyevent@0__:expired").await?;
        stats.subscribes += 1;
        // Only now, once the server has confirmed the subscriptions: any change after this
        // read is announced to us, so nothing falls between the two.
        if stats.subscribes == 1 || policy == Policy::Reconcile {
            let repaired = reconcile(&mut con, prefix, &mut stats.mirror).await?;
            if stats.subscribes > 1 {
                stats.repaired += repaired;
            }
        }
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            stats.events += 1;
            let key = match msg.get_channel_name().strip_prefix("__keyspace@0__:") {
                Some(key) => key.to_string(),
                None => msg.get_payload::<String>()?, // __keyevent@0__:expired
            };
            if key == marker {
                return Ok(stats);
            }
            if key.starts_with(prefix) {
                refresh(&mut con, &key, &mut stats.mirror).await?;
            }
        }
        // The stream ended: the server closed the connection. Back off, then start again.
        drop(messages);
        sleep(BACKOFF).await;
    }
}

/// A notification says that `key` changed, not what it holds now: read it.
async fn refresh(con: &mut MultiplexedConnection, key: &str, mirror: &mut Mirror) -> Result<()> {
    match con.get::<_, Option<String>>(key).await? {
        Some(value) => mirror.insert(key.to_string(), value),
        None => mirror.remove(key),
    };
    Ok(())
}
// ANCHOR_END: follow

// ANCHOR: reconcile
/// Make `mirror` match the server: SCAN every key under `prefix`, read them, and replace the
/// copy. Returns how many keys were wrong (changed, created or deleted behind our back).
async fn reconcile(
    con: &mut MultiplexedConnection,
    prefix: &str,
    mirror: &mut Mirror,
) -> Result<u64> {
    let mut found: Vec<String> = Vec::new();
    let mut scan = con.scan_match::<_, String>(format!("{prefix}*")).await?;
    while let Some(key) = scan.next_item().await {
        found.push(key?);
    }
    drop(scan);
    let mut server = Mirror::new();
    for chunk in found.chunks(500) {
        // MGET: a key deleted since SCAN saw it reads as nil, and stays out of the copy.
        let values: Vec<Option<String>> = con.mget(chunk).await?;
        for (key, value) in chunk.iter().zip(values) {
            if let Some(value) = value {
                server.insert(key.clone(), value);
            }
        }
    }
    let wrong_or_missing = server.iter().filter(|(k, v)| mirror.get(*k) != Some(v));
    let vanished = mirror.keys().filter(|k| !server.contains_key(*k));
    let repaired = (wrong_or_missing.count() + vanished.count()) as u64;
    *mirror = server;
    Ok(repaired)
}
// ANCHOR_END: reconcile
