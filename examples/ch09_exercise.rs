//! Chapter 9 exercise: make a cluster subscriber survive a failover.
//!
//! redis 1.8.1 does not move a sharded subscription to the replica that replaces a dead
//! master. `classify` decides what to do with each push of the cluster connection;
//! `resubscribe_all` subscribes again to every channel when a node connection dropped. `main`
//! proves it on a real failover: a master is killed under a channel that publishes every 2 ms,
//! and `lost` must equal `noticed`, a few at most, instead of everything after the kill.
//!
//! The starter, examples/ch09_exercise.rs, is the solution, examples/ch09_solution.rs, with
//! `todo!()` where you write the code.
//!
//! cargo run --example ch09_exercise
//! cargo test --example ch09_exercise -- --include-ignored   (the solution's tests, on your code)
//! cargo run --example ch09_solution
//! cargo test --example ch09_solution

// Made from examples/ch09_solution.rs by `python3 ci/exercises.py generate`: book authors
// edit the solution and rerun it (CI checks that the two agree). Until the todo!()s
// are written, some parameters and imports are unused:
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

/// Looks at `push.kind` and `push.data`: a sharded message is `PushKind::SMessage` with
/// `[channel, payload]` as bulk strings; the library sends `PushKind::Disconnection` when a
/// node connection drops.
fn classify(push: PushInfo) -> Action {
    todo!("Deliver for sharded messages, Resubscribe on Disconnection, Ignore the rest")
}

/// SSUBSCRIBE each channel again: one call per channel (one SSUBSCRIBE over channels in
/// different slots is a CROSSSLOT error), retrying until it succeeds: while a master is dead
/// and not yet replaced, its slots may have nowhere to go.
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

// The solution's tests, each #[ignore]d until your code is written. Run them with
//     cargo test --example ch09_exercise -- --include-ignored
#[cfg(test)]
mod tests {
    use super::*;

    fn push(kind: PushKind, data: &[&[u8]]) -> PushInfo {
        PushInfo {
            kind,
            data: data.iter().map(|d| Value::BulkString(d.to_vec())).collect(),
        }
    }

    #[test]
    #[ignore = "needs your code: cargo test --example ch09_exercise -- --include-ignored"]
    fn messages_are_delivered_to_their_channel() {
        assert_eq!(
            classify(push(PushKind::SMessage, &[b"news", b"7#...."])),
            Action::Deliver {
                channel: b"news".to_vec(),
                payload: b"7#....".to_vec()
            }
        );
    }

    #[test]
    #[ignore = "needs your code: cargo test --example ch09_exercise -- --include-ignored"]
    fn a_disconnection_means_resubscribe_and_confirmations_are_ignored() {
        assert_eq!(
            classify(push(PushKind::Disconnection, &[])),
            Action::Resubscribe
        );
        assert_eq!(
            classify(PushInfo {
                kind: PushKind::SSubscribe,
                data: vec![Value::BulkString(b"news".to_vec()), Value::Int(1)],
            }),
            Action::Ignore
        );
        // A classic (non-sharded) message is not what this subscriber asked for.
        assert_eq!(
            classify(push(PushKind::Message, &[b"news", b"1#"])),
            Action::Ignore
        );
    }
}
