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

mod follow;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use lab::ResultLine;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep, timeout};

use follow::{BACKOFF, Mirror, Policy, follow};

/// The longest time-to-live the writer gives a key (`SET ... PX`).
const MAX_TTL_MS: u64 = 250;

#[tokio::main]
async fn main() -> Result<()> {
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
