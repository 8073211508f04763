//! Chapter 9 exercise: make a cluster subscriber survive a failover.
//!
//! redis 1.8.1 does not move a sharded subscription to the replica that replaces a dead
//! master. Write `classify` (what to do with one push of the cluster connection) and
//! `resubscribe_all` (subscribe to every channel again) so that `main`, which kills a master
//! under a channel publishing every 2 ms, prints `lost` equal to `noticed` and a few lost at
//! most, instead of everything after the kill.
//!
//! cargo run --example ch09_exercise
//! (the solution, with its tests: examples/ch09_solution.rs)

// Until the two functions are written, some imports are unused.
#![allow(unused)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use lab::cluster::RedisCluster;
use lab::gaps::DetectGaps;
use lab::{ResultLine, Tally};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

// ANCHOR: starter
/// What the subscriber does with one push from the cluster connection.
#[derive(Debug, PartialEq)]
enum Action {
    /// A sharded message: hand its payload to its channel's consumer.
    Deliver { channel: Vec<u8>, payload: Vec<u8> },
    /// The library lost a node connection: subscribe to every channel again.
    Resubscribe,
    /// Subscription confirmations and anything else.
    Ignore,
}

/// Look at `push.kind` and `push.data`: a sharded message is `PushKind::SMessage` with
/// `[channel, payload]` as bulk strings; the library sends `PushKind::Disconnection` when a
/// node connection drops.
fn classify(push: PushInfo) -> Action {
    todo!("Deliver for sharded messages, Resubscribe on Disconnection, Ignore the rest")
}

/// SSUBSCRIBE to every channel again. Remember: one SSUBSCRIBE over channels in different
/// slots is a CROSSSLOT error, and while the dead master is not replaced yet a call may fail.
async fn resubscribe_all(mut con: ClusterConnection, channels: Vec<String>) {
    todo!("subscribe to each channel, retrying with a backoff until it succeeds")
}
// ANCHOR_END: starter

#[tokio::main]
async fn main() -> Result<()> {
    RedisCluster::refuse_redis_url()?;
    let mut cluster = RedisCluster::start(3, 1)?;
    let channel = cluster
        .channels_per_shard("ch09:solution", 1)?
        .remove(0)
        .remove(0);
    let victim = cluster.master_of(&channel)?;

    let (push_tx, mut pushes) = mpsc::unbounded_channel();
    let client = ClusterClientBuilder::new(cluster.urls())
        .use_protocol(ProtocolVersion::RESP3)
        .push_sender(push_tx)
        .build()?;
    let mut subscriber = client.get_async_connection().await?;
    subscriber.ssubscribe(&channel).await?;

    // The router: every push goes through `classify`.
    let (messages_tx, messages_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let router = {
        let (subscriber, channels) = (subscriber.clone(), vec![channel.clone()]);
        tokio::spawn(async move {
            while let Some(push) = pushes.recv().await {
                match classify(push) {
                    Action::Deliver { payload, .. } => {
                        let _ = messages_tx.send(payload);
                    }
                    Action::Resubscribe => {
                        tokio::spawn(resubscribe_all(subscriber.clone(), channels.clone()));
                    }
                    Action::Ignore => {}
                }
            }
        })
    };

    // Publish every 2 ms; kill the master 1 s in; stop 2 s after a replica took over.
    let mut publisher = ClusterClientBuilder::new(cluster.urls())
        .overall_response_timeout(Some(Duration::from_secs(1)))
        .build()?
        .get_async_connection()
        .await?;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let publishing = {
        let channel = channel.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(2));
            let mut seq = 0u64;
            while stop_rx.try_recv().is_err() {
                ticks.tick().await;
                let _: redis::RedisResult<u64> = redis::cmd("SPUBLISH")
                    .arg(&channel)
                    .arg(lab::numbered(seq, 32))
                    .query_async(&mut publisher)
                    .await;
                seq += 1;
            }
            seq
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.kill(victim)?;
    let killed = Instant::now();
    tokio::task::block_in_place(|| cluster.wait_for_failover(victim, Duration::from_secs(30)))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(());
    let sent = publishing.await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    router.abort();

    // Count, and let the gap detector say what it noticed.
    let mut checked = DetectGaps::new(UnboundedReceiverStream::new(messages_rx), |p: &Vec<u8>| {
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
        "killed the master serving {channel} and waited {:.1?}; missing: {}",
        killed.elapsed(),
        tally.missing_summary(5)
    );
    ResultLine::from_tally("solution-failover", lab::REDIS_CURRENT, &tally, noticed).print();
    Ok(())
}
