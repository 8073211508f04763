//! Chapter 9 exercise (Sentinel): a subscriber that follows a failover.
//!
//! redis-rs 1.8.1 asks the Sentinels for the primary once, when it connects: a subscriber on
//! the primary never hears again after a failover. `new_primary` reads a Sentinel's
//! `+switch-master` announcement; `deliver_until_switch` hands over the messages until one
//! names a new primary. `main` proves it on a real failover: the primary is SIGKILLed under a
//! channel that publishes every 2 ms, and `lost` must equal `noticed` (what was published
//! between the promotion and the announcement), instead of everything after the kill.
//!
//! The starter, examples/ch09_sentinel_exercise.rs, is this solution with `todo!()` where you
//! write the code.
//!
//! cargo run --example ch09_sentinel_exercise
//! cargo test --example ch09_sentinel_exercise -- --include-ignored   (the solution's tests, on your code)
//! cargo run --example ch09_sentinel_solution
//! cargo test --example ch09_sentinel_solution

// Made from examples/ch09_sentinel_solution.rs by `python3 ci/exercises.py generate`: book authors
// edit the solution and rerun it (CI checks that the two agree). Until the todo!()s
// are written, some parameters and imports are unused:
#![allow(unused)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{Stream, StreamExt};
use lab::gaps::DetectGaps;
use lab::sentinel::{SERVICE, SentinelDeployment};
use lab::{ResultLine, Tally};
use redis::Msg;
use redis::sentinel::{SentinelClient, SentinelServerType};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio_stream::wrappers::UnboundedReceiverStream;

// ANCHOR: starter
/// The new primary's URL, `redis://<ip>:<port>/`, if `event` (the payload of a
/// `+switch-master` message: `<name> <old-ip> <old-port> <new-ip> <new-port>`) is about
/// `service`; `None` for another service's failover or anything else.
fn new_primary(event: &str, service: &str) -> Option<String> {
    todo!("split on spaces; for `service`, the last two fields make the URL")
}

/// Hand every message's payload to `out` until an event of `events` names a new primary for
/// [`SERVICE`]; return its URL. When the primary dies, `messages` ends: keep waiting for the
/// announcement.
async fn deliver_until_switch(
    messages: &mut (impl Stream<Item = Msg> + Unpin),
    events: &mut (impl Stream<Item = Msg> + Unpin),
    out: &UnboundedSender<Vec<u8>>,
) -> Result<String> {
    todo!("select! over both streams: forward payloads; return when new_primary says so")
}
// ANCHOR_END: starter

/// Listen to `+switch-master` first, subscribe on the primary the Sentinels name, and move
/// to each new primary `deliver_until_switch` returns.
async fn follow(
    sentinels: Vec<String>,
    channel: String,
    out: UnboundedSender<Vec<u8>>,
) -> Result<()> {
    let mut sentinel =
        SentinelClient::build(sentinels, SERVICE.into(), None, SentinelServerType::Master)?;
    let mut events = sentinel
        .async_get_sentinel_client()
        .await?
        .get_async_pubsub()
        .await?;
    events.subscribe("+switch-master").await?;
    let mut events = events.into_on_message();
    let mut primary = sentinel.async_get_client().await?;
    loop {
        let pubsub = loop {
            if let Ok(mut pubsub) = primary.get_async_pubsub().await
                && pubsub.subscribe(&channel).await.is_ok()
            {
                break pubsub;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut messages = pubsub.into_on_message();
        let url = deliver_until_switch(&mut messages, &mut events, &out).await?;
        primary = redis::Client::open(url)?;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut deployment = SentinelDeployment::start()?;
    let channel = lab::unique_channel("ch09:sentinel-solution");
    let primary = deployment.primary_port()?;

    let (out, delivered) = mpsc::unbounded_channel();
    let subscriber = tokio::spawn(follow(deployment.sentinel_urls(), channel.clone(), out));
    let mut con = redis::Client::open(SentinelDeployment::url_of(primary))?
        .get_multiplexed_async_connection()
        .await?;
    while redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&channel)
        .query_async::<(String, u64)>(&mut con)
        .await?
        .1
        == 0
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Publish every 2 ms to whichever server says it is the primary; kill the primary 1 s in,
    // stop 2 s after the Sentinels agree on the new one.
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = tokio::spawn(publish(deployment.server_ports(), channel, stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    deployment.kill(primary)?;
    let killed = Instant::now();
    tokio::task::block_in_place(|| deployment.wait_for_failover(primary, Duration::from_secs(15)))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = publishing.await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    subscriber.abort();

    // Count, and let the gap detector say what it noticed.
    let mut checked = DetectGaps::new(UnboundedReceiverStream::new(delivered), |p: &Vec<u8>| {
        lab::mark_of(p).ok()
    })
    .starting_at(0);
    let mut tally = Tally::new(sent);
    let mut noticed = 0;
    while let Ok(Some(next)) =
        tokio::time::timeout(Duration::from_millis(200), checked.next()).await
    {
        match next {
            Ok(payload) => tally.record(lab::seq_of(&payload).context("a payload")?),
            Err(gap) => noticed += gap.len(),
        }
    }
    println!(
        "killed the primary (port {primary}) and waited {:.1?}; missing: {}",
        killed.elapsed(),
        tally.missing_summary(5)
    );
    ResultLine::from_tally(
        "sentinel-solution-failover",
        lab::REDIS_CURRENT,
        &tally,
        noticed,
    )
    .print();
    Ok(())
}

/// PUBLISH numbered messages every 2 ms to the server that says `ROLE` master, until `stop`;
/// returns how many were published (a message no server accepted is sent again).
async fn publish(servers: Vec<u16>, channel: String, stop: Arc<AtomicBool>) -> u64 {
    let mut seq = 0u64;
    let mut con = None;
    while !stop.load(Ordering::Relaxed) {
        if con.is_none() {
            con = primary_connection(&servers).await;
        }
        if let Some(connection) = con.as_mut() {
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(&channel).arg(lab::numbered(seq, 32));
            let publish = publish.exec_async(connection);
            match tokio::time::timeout(Duration::from_millis(500), publish).await {
                Ok(Ok(())) => seq += 1,
                _ => con = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    seq
}

async fn primary_connection(servers: &[u16]) -> Option<redis::aio::MultiplexedConnection> {
    for &port in servers {
        let role_is_master = SentinelDeployment::role_of(port).is_ok_and(|role| role == "master");
        if role_is_master {
            let client = redis::Client::open(SentinelDeployment::url_of(port)).ok()?;
            return client.get_multiplexed_async_connection().await.ok();
        }
    }
    None
}

// The solution's tests, each #[ignore]d until your code is written. Run them with
//     cargo test --example ch09_sentinel_exercise -- --include-ignored
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs your code: cargo test --example ch09_sentinel_exercise -- --include-ignored"]
    fn a_switch_of_this_service_names_the_new_primary() {
        assert_eq!(
            new_primary("lab 127.0.0.1 7000 127.0.0.1 7001", "lab"),
            Some("redis://127.0.0.1:7001/".to_string())
        );
    }

    #[test]
    #[ignore = "needs your code: cargo test --example ch09_sentinel_exercise -- --include-ignored"]
    fn another_service_or_another_message_is_not_a_switch() {
        assert_eq!(
            new_primary("billing 10.0.0.1 6379 10.0.0.2 6379", "lab"),
            None
        );
        assert_eq!(new_primary("lab 127.0.0.1 7000", "lab"), None);
        assert_eq!(new_primary("", "lab"), None);
    }
}
