//! Chapter 9: sharded Pub/Sub on a local Redis Cluster, with redis 1.8.1's cluster connection.
//!
//! 1. `sharded-all-shards`: numbered messages over channels on every shard, one cluster
//!    subscriber: does every message arrive?
//! 2. `throughput-1-shard` / `throughput-3-shards`: the same load with every channel in one
//!    slot (a hash tag) and spread over the three shards, side by side.
//! 3. `broadcast-publish` / `broadcast-spublish`: what classic PUBLISH costs the cluster (it
//!    is forwarded to every node) next to SPUBLISH (only the shard's own nodes).
//! 4. `spublish-reply-replica-subscriber`: what SPUBLISH's reply counts, with the subscriber
//!    on the shard's replica.
//!
//! cargo run --example ch09_sharded [-- --quick]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use lab::cluster::RedisCluster;
use lab::gaps::DetectGaps;
use lab::{Publisher, ResultLine, Tally};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

#[tokio::main]
async fn main() -> Result<()> {
    // Ctrl-C drops the experiment, and with it the cluster: no redis-server is left behind.
    tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the cluster's nodes were stopped"),
        result = experiment() => result,
    }
}

async fn experiment() -> Result<()> {
    RedisCluster::refuse_redis_url()?;
    let mut cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1)).await??;
    println!(
        "cluster of {} nodes (3 masters, 3 replicas) settled in {:.1?}",
        cluster.ports().len(),
        cluster.settled_in()
    );

    // 1. Every shard, every message: 4 channels on each of the 3 shards.
    let total = lab::scaled(100_000, 10_000);
    let channels: Vec<String> = cluster
        .channels_per_shard("ch09:all", 4)?
        .into_iter()
        .flatten()
        .collect();
    let run = run_load(&mut cluster, &channels, total, "SPUBLISH").await?;
    run.result("sharded-all-shards")
        .with("channels", channels.len())
        .with("shards", 3)
        .print();

    // 2. One shard against three, same channels count, same messages.
    let total = lab::scaled(300_000, 30_000);
    let one_shard: Vec<String> = (0..6)
        // `{...}`: only the hash tag is hashed, so every name lands in the same slot.
        .map(|n| lab::unique_channel(&format!("{{ch09-one}}:{n}")))
        .collect();
    let three_shards: Vec<String> = cluster
        .channels_per_shard("ch09:three", 2)?
        .into_iter()
        .flatten()
        .collect();
    for (scenario, channels) in [
        ("throughput-1-shard", &one_shard),
        ("throughput-3-shards", &three_shards),
    ] {
        let cpu_before = cpu_by_node(&mut cluster)?;
        let run = run_load(&mut cluster, channels, total, "SPUBLISH").await?;
        let (_, busiest) = cpu_used(&cpu_before, &cpu_by_node(&mut cluster)?);
        run.result(scenario)
            .with("channels", channels.len())
            .with("msg_per_s", run.msg_per_s())
            // The shard doing the most work: what a sharded cluster spreads out.
            .with("busiest_node_cpu_ms", (busiest * 1000.0) as u64)
            .print();
    }

    // 3. The cost of classic PUBLISH in a cluster.
    let total = lab::scaled(20_000, 2_000);
    for (scenario, command, counter) in [
        (
            "broadcast-publish",
            "PUBLISH",
            "cluster_stats_messages_publish_received",
        ),
        (
            "broadcast-spublish",
            "SPUBLISH",
            "cluster_stats_messages_publishshard_received",
        ),
    ] {
        let channels = cluster.channels_per_shard("ch09:cost", 1)?.remove(0);
        let bus_before = tokio::task::block_in_place(|| cluster.cluster_info_sum(counter))?;
        let cpu_before = cpu_by_node(&mut cluster)?;
        let run = run_load(&mut cluster, &channels, total, command).await?;
        let bus = tokio::task::block_in_place(|| cluster.cluster_info_sum(counter))? - bus_before;
        let (cpu, _) = cpu_used(&cpu_before, &cpu_by_node(&mut cluster)?);
        run.result(scenario)
            .with(
                "bus_msgs_per_publish",
                format!("{:.2}", bus as f64 / run.sent as f64),
            )
            .with(
                "cluster_cpu_us_per_msg",
                format!("{:.1}", cpu * 1e6 / run.sent as f64),
            )
            .with("msg_per_s", run.msg_per_s())
            .print();
    }

    // 4. What SPUBLISH's reply counts: subscribers on the node that ran it, nothing more.
    let sent = lab::scaled(10_000, 1_000);
    let channel = cluster
        .channels_per_shard("ch09:reply", 1)?
        .remove(0)
        .remove(0);
    let master = cluster.master_of(&channel)?;
    let replica = cluster.replica_of(master)?;
    let listening = {
        let channel = channel.clone();
        tokio::task::spawn_blocking(move || subscribe_on_node(replica, &channel, sent))
    };
    // Give the subscription time to be in place before the first message.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut publisher_con = ClusterClientBuilder::new(cluster.urls())
        .build()?
        .get_async_connection()
        .await?;
    let report = Publisher::new(&channel)
        .sharded()
        .send(&mut publisher_con, 0..sent)
        .await?;
    let tally = listening.await??;
    ResultLine::from_tally(
        "spublish-reply-replica-subscriber",
        lab::REDIS_CURRENT,
        &tally,
        0,
    )
    .with("replied_0", report.unheard)
    .with("replies_sum", report.queued_for)
    .print();
    Ok(())
}

/// SSUBSCRIBE to `channel` on one node (here: a replica, which serves sharded Pub/Sub for its
/// master's slots) with a plain connection, and count the messages until `expected` or 2 s of
/// silence.
fn subscribe_on_node(port: u16, channel: &str, expected: u64) -> Result<Tally> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut con = client.get_connection()?;
    con.send_packed_command(&redis::cmd("SSUBSCRIBE").arg(channel).get_packed_command())?;
    con.recv_response().context("SSUBSCRIBE on the replica")?;
    con.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut tally = Tally::new(expected);
    while tally.received() < expected {
        let Ok(Value::Array(parts)) = con.recv_response() else {
            break; // 2 s without a message, or the connection closed
        };
        if let Some(Value::BulkString(payload)) = parts.get(2) {
            tally.record(lab::seq_of(payload)?);
        }
    }
    Ok(tally)
}

/// CPU seconds (user + system) used so far by each running node.
fn cpu_by_node(cluster: &mut RedisCluster) -> Result<Vec<(u16, f64)>> {
    tokio::task::block_in_place(|| cluster.cpu_by_node())
}

/// CPU seconds each node used between two readings: (all nodes summed, the busiest node).
fn cpu_used(before: &[(u16, f64)], after: &[(u16, f64)]) -> (f64, f64) {
    let deltas: Vec<f64> = after
        .iter()
        .map(|(port, now)| {
            let then = before
                .iter()
                .find(|(p, _)| p == port)
                .map_or(0.0, |(_, t)| *t);
            now - then
        })
        .collect();
    (
        deltas.iter().sum(),
        deltas.iter().copied().fold(0.0, f64::max),
    )
}

/// What one load run saw.
struct LoadRun {
    sent: u64,
    received: u64,
    noticed: u64,
    took: Duration,
    /// `Disconnection` pushes: a node connection of the subscriber dropped.
    disconnects: u64,
}

impl LoadRun {
    fn result(&self, scenario: &str) -> ResultLine {
        ResultLine::new(
            scenario,
            lab::REDIS_CURRENT,
            self.sent,
            self.received,
            self.noticed,
        )
        .with("disconnects", self.disconnects)
    }

    fn msg_per_s(&self) -> u64 {
        (self.received as f64 / self.took.as_secs_f64()) as u64
    }
}

// ANCHOR: subscriber
/// A cluster connection subscribed to `channels`, and the receiver of its pushes.
async fn subscribe(
    urls: Vec<String>,
    channels: &[String],
    command: &str,
) -> Result<(ClusterConnection, mpsc::UnboundedReceiver<PushInfo>)> {
    let (push_tx, push_rx) = mpsc::unbounded_channel();
    let client = ClusterClientBuilder::new(urls)
        // Without RESP3, `build()` succeeds and the first SSUBSCRIBE fails.
        .use_protocol(ProtocolVersion::RESP3)
        .push_sender(push_tx)
        .build()?;
    let mut con = client.get_async_connection().await?;
    for channel in channels {
        // One call per channel: one SSUBSCRIBE over several slots is a CROSSSLOT error.
        match command {
            "SPUBLISH" => con.ssubscribe(channel).await?,
            _ => con.subscribe(channel).await?,
        }
    }
    Ok((con, push_rx))
}
// ANCHOR_END: subscriber

/// Publish `total` numbered messages split over the channels, all channels at once (one
/// publisher task per channel, pipelined bursts), and count what one cluster subscriber
/// receives. `command` is SPUBLISH (subscribe with SSUBSCRIBE) or PUBLISH (SUBSCRIBE).
async fn run_load(
    cluster: &mut RedisCluster,
    channels: &[String],
    total: u64,
    command: &str,
) -> Result<LoadRun> {
    let n = channels.len() as u64;
    let share = |i: usize| total / n + u64::from((i as u64) < total % n);
    let urls = cluster.urls();
    let (subscriber, mut pushes) = subscribe(urls.clone(), channels, command).await?;

    // ANCHOR: demux
    // Each channel gets its own stream and its own gap detector: sequence numbers are per
    // channel, and only messages of one channel (one shard) are ordered with each other.
    let mut routes = HashMap::new();
    let mut counters = Vec::new();
    for (i, channel) in channels.iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
        routes.insert(channel.as_bytes().to_vec(), tx);
        counters.push(tokio::spawn(count(
            UnboundedReceiverStream::new(rx),
            share(i),
        )));
    }
    // The router also remembers when the last push came, and counts dropped connections.
    let last_push = Arc::new(Mutex::new(Instant::now()));
    let disconnects = Arc::new(AtomicU64::new(0));
    let router = {
        let (last_push, disconnects) = (last_push.clone(), disconnects.clone());
        tokio::spawn(async move {
            while let Some(push) = pushes.recv().await {
                *last_push.lock().unwrap() = Instant::now();
                match (push.kind, push.data.as_slice()) {
                    (
                        PushKind::SMessage | PushKind::Message,
                        [Value::BulkString(channel), Value::BulkString(payload)],
                    ) => {
                        if let Some(tx) = routes.get(channel) {
                            let _ = tx.send(payload.clone());
                        }
                    }
                    (PushKind::Disconnection, _) => {
                        disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        })
    };
    // ANCHOR_END: demux

    let publisher_con = ClusterClientBuilder::new(urls)
        .build()?
        .get_async_connection()
        .await?;
    let started = Instant::now();
    let mut publishers = Vec::new();
    for (i, channel) in channels.iter().enumerate() {
        let mut publisher = Publisher::new(channel).payload_size(32);
        let messages = share(i);
        if command == "SPUBLISH" {
            publisher = publisher.sharded();
        }
        let mut con = publisher_con.clone();
        publishers.push(tokio::spawn(async move {
            publisher.send(&mut con, 0..messages).await
        }));
    }
    let mut sent = 0;
    for publisher in publishers {
        sent += publisher.await?.context("publishing")?.sent;
    }
    // Pub/Sub never says "that was the last one": wait until every channel has all of its
    // messages, or nothing at all came for 2 s. Then stop the router: its senders are
    // dropped, so every channel's stream ends once drained.
    while !counters.iter().all(|counter| counter.is_finished())
        && last_push.lock().unwrap().elapsed() < Duration::from_secs(2)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    router.abort();
    let mut received = 0;
    let mut noticed = 0;
    let mut last_arrival = started;
    for counter in counters {
        let (tally, gaps_noticed, last) = counter.await?;
        received += tally.received();
        noticed += gaps_noticed;
        last_arrival = last_arrival.max(last);
    }
    drop(subscriber);
    Ok(LoadRun {
        sent,
        received,
        noticed,
        took: last_arrival - started,
        disconnects: disconnects.load(Ordering::Relaxed),
    })
}

/// Count one channel's messages until all arrived or its stream ends.
async fn count(messages: UnboundedReceiverStream<Vec<u8>>, expected: u64) -> (Tally, u64, Instant) {
    let mut checked = DetectGaps::new(messages, |p: &Vec<u8>| lab::mark_of(p).ok()).starting_at(0);
    let mut tally = Tally::new(expected);
    let mut noticed = 0;
    let mut last = Instant::now();
    while tally.received() < expected {
        match checked.next().await {
            Some(Ok(payload)) => {
                if let Ok(seq) = lab::seq_of(&payload) {
                    tally.record(seq);
                    last = Instant::now();
                }
            }
            Some(Err(gap)) => noticed += gap.len(),
            None => break,
        }
    }
    (tally, noticed, last)
}
