//! Chapter 10: keyspace notifications are Pub/Sub, and lose like it. A subscriber that keeps a
//! copy of some keys (a local mirror) by following `__keyspace@0__:*` and
//! `__keyevent@0__:expired` never hears what changed while it was disconnected: after a
//! reconnection its copy is wrong for every key whose last change fell in the gap, for as
//! long as nobody touches that key again. The fix is a reconciliation pass after every
//! (re)subscribe: read the key space with SCAN and make the copy match it.
//!
//! Two subscribers follow the same writer side by side, in two phases: without faults, and
//! with three forced disconnections (`CLIENT KILL TYPE pubsub`). Both reconnect after the same
//! backoff and resubscribe; the naive one loads the key space once, at its first subscribe,
//! the reconciling one after every subscribe. At the end each copy is compared with the
//! server, key by key.
//!
//! It reconfigures the server (`notify-keyspace-events`) and kills clients, so it runs only on
//! a server the lab starts: with `REDIS_URL` set it refuses.
//!
//! cargo run --example ch10_keyspace

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use lab::ResultLine;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep, timeout};

/// How long a subscriber waits before it reconnects (its backoff): the writer goes on meanwhile.
const BACKOFF: Duration = Duration::from_millis(250);
/// The longest time-to-live the writer gives a key (`SET ... PX`).
const MAX_TTL_MS: u64 = 250;

/// What a subscriber believes the key space holds: key -> value; a key it believes absent is
/// not in the map.
type Mirror = BTreeMap<String, String>;

/// When a subscriber reads the whole key space.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Policy {
    /// Once, at its first subscribe; afterwards it follows the notifications.
    LoadOnce,
    /// After every subscribe, the first and each one after a reconnection.
    Reconcile,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::LoadOnce => "naive",
            Policy::Reconcile => "reconciling",
        }
    }
}

/// What a subscriber did, for its RESULT line.
#[derive(Debug, Default)]
struct Stats {
    mirror: Mirror,
    events: u64,
    subscribes: u64,
    /// Keys a reconciliation pass found wrong in the mirror (after the first load).
    repaired: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    // ANCHOR: refuse
    if let Some(url) = lab::server::redis_url_from_env() {
        bail!(
            "ch10_keyspace turns on keyspace notifications (CONFIG SET notify-keyspace-events) \
             and kills clients, and REDIS_URL points at {}: the book never reconfigures a \
             server it did not start. Unset REDIS_URL to let the lab start its own redis-server.",
            lab::redact::redact_url(&url)
        );
    }
    let mut server = lab::RedisServer::start()?;
    // K: __keyspace@<db>__ channels, E: __keyevent@<db>__ channels, A: every event class
    // (g$lshzxetd: generic, strings, ..., expired, evicted).
    server.config_set("notify-keyspace-events", "KEA")?;
    // ANCHOR_END: refuse
    println!(
        "Redis at {} with notify-keyspace-events KEA",
        server.display_url()
    );
    let client = lab::connect::open(server.url()).await?;

    let keys = lab::scaled(1_000, 300);
    let run_for = lab::scaled(Duration::from_millis(3_000), Duration::from_millis(1_200));
    println!(
        "{keys} keys; a writer SETs, DELs and SETs with a TTL (up to {MAX_TTL_MS} ms) for \
         {run_for:?}; subscribers reconnect after {BACKOFF:?}"
    );
    phase(&mut server, &client, "steady", keys, run_for, 0).await?;
    phase(&mut server, &client, "client-kill", keys, run_for, 3).await?;
    Ok(())
}

/// One phase: both subscribers follow one writer; `kills` disconnections spread over the run;
/// then every copy is compared with the server.
async fn phase(
    server: &mut lab::RedisServer,
    client: &redis::Client,
    scenario: &str,
    keys: u64,
    run_for: Duration,
    kills: u32,
) -> Result<()> {
    let prefix = format!("{}:", lab::unique_channel("ch10:ks"));
    let marker = format!("{prefix}done");
    let mut con = client.get_multiplexed_async_connection().await?;
    let mut pipe = redis::pipe();
    for i in 0..keys {
        pipe.set(key(&prefix, i), "v0").ignore();
    }
    pipe.exec_async(&mut con).await?;

    let mut subscribers = Vec::new();
    for policy in [Policy::LoadOnce, Policy::Reconcile] {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (client, prefix, marker) = (client.clone(), prefix.clone(), marker.clone());
        let task =
            tokio::spawn(async move { follow(&client, &prefix, &marker, policy, ready_tx).await });
        ready_rx
            .await
            .context("a subscriber failed before its first subscribe")?;
        subscribers.push((policy, task));
    }

    let writer = {
        let (mut con, prefix) = (con.clone(), prefix.clone());
        tokio::spawn(async move { write(&mut con, &prefix, keys, run_for).await })
    };
    let mut killed = 0;
    for n in 1..=kills {
        // The last kill falls at 80 % of the run, so the writer goes on for a while after it.
        sleep(run_for.mul_f64(0.8 / f64::from(kills))).await;
        killed += server.kill_pubsub_clients()?;
        println!("{scenario}: CLIENT KILL TYPE pubsub #{n}");
    }
    let changes = writer.await??;

    // Let every TTL run out, then touch each key so that the server expires (and announces)
    // the ones it has not expired yet; then write the marker: a subscriber that hears it has
    // handled every notification published before it.
    sleep(Duration::from_millis(MAX_TTL_MS + 50)).await;
    let mut pipe = redis::pipe();
    for i in 0..keys {
        pipe.exists(key(&prefix, i)).ignore();
    }
    pipe.exec_async(&mut con).await?;
    let () = con.set(&marker, "1").await?;

    let mut truth = Mirror::new();
    for i in 0..keys {
        let k = key(&prefix, i);
        if let Some(value) = con.get::<_, Option<String>>(&k).await? {
            truth.insert(k, value);
        }
    }
    for (policy, task) in subscribers {
        let stats = timeout(Duration::from_secs(20), task)
            .await
            .with_context(|| format!("{} subscriber never heard the marker", policy.name()))???;
        let missed = (0..keys)
            .map(|i| key(&prefix, i))
            .filter(|k| stats.mirror.get(k) != truth.get(k))
            .count() as u64;
        println!(
            "{scenario}/{}: {} notifications, {} subscribes, {missed} keys wrong in its copy",
            policy.name(),
            stats.events,
            stats.subscribes
        );
        ResultLine::new(
            &format!("{scenario}-{}", policy.name()),
            lab::REDIS_CURRENT,
            keys,
            keys - missed,
            0,
        )
        .with("missed_keys", missed)
        .with("changes", changes)
        .with("kills", killed)
        .with("subscribes", stats.subscribes)
        .with("events", stats.events)
        .with("repaired", stats.repaired)
        .print();
    }
    Ok(())
}

fn key(prefix: &str, i: u64) -> String {
    format!("{prefix}k:{i}")
}

/// Change random keys for `run_for`: SET a new value, DEL, or SET with a short TTL.
/// Returns how many changes it made.
async fn write(
    con: &mut MultiplexedConnection,
    prefix: &str,
    keys: u64,
    run_for: Duration,
) -> Result<u64> {
    let started = Instant::now();
    let mut version = 0;
    while started.elapsed() < run_for {
        version += 1;
        let k = key(prefix, fastrand::u64(0..keys));
        let value = format!("v{version}");
        match fastrand::u8(0..10) {
            0..=5 => con.set::<_, _, ()>(&k, &value).await?,
            6..=7 => con.del::<_, ()>(&k).await?,
            _ => {
                let ttl = fastrand::u64(50..=MAX_TTL_MS);
                con.pset_ex::<_, _, ()>(&k, &value, ttl).await?
            }
        }
        sleep(Duration::from_millis(1)).await;
    }
    Ok(version)
}

// ANCHOR: follow
/// Keep a copy of every key under `prefix` from keyspace notifications, through
/// disconnections: reconnect after `BACKOFF`, subscribe again, then (by `policy`) read the
/// whole key space. Returns when it hears `marker` being set.
async fn follow(
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
