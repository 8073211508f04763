//! Chapter 9: kill a master under a sharded subscriber and watch what happens to its channels.
//!
//! A 6-node cluster (3 masters, 3 replicas). One sharded channel per shard, one SPUBLISH per
//! channel every few milliseconds, one cluster subscriber (redis 1.8.1, RESP3, push sender)
//! whose messages go through `lab::gaps::DetectGaps`, one per channel. A master is killed
//! (SIGKILL) while messages flow; its replica takes over a few seconds later. Four runs:
//!
//! - `failover-library-only`: the application trusts the library to resubscribe;
//! - `failover-app-resubscribe`: the application resubscribes when the library tells it a
//!   connection dropped (the `Disconnection` push);
//! - `failover-library-after-command`: the application does not resubscribe, but sends one
//!   ordinary command for a key of the failed slot on the subscriber's connection after the
//!   promotion (does that make the library look at the new topology?);
//! - `restart-library-only`: the dead master comes back on its own address instead.
//!
//! cargo run --example ch09_failover [-- --quick]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

/// What one channel's subscriber saw.
#[derive(Debug)]
struct ChannelReport {
    tally_seqs: Vec<u64>,
    noticed: u64,
    /// When each message arrived, relative to the start of the run.
    arrivals: Vec<(u64, Duration)>,
}

/// What the publisher of one channel was told by the server.
#[derive(Debug, Default)]
struct PublishLog {
    /// The reply of each SPUBLISH, in sequence order: `Some(n)` subscribers, `None` an error.
    replies: Vec<Option<u64>>,
    /// The longest wait for one reply.
    max_latency: Duration,
}

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
    // ANCHOR: cluster
    // 3 masters with 1 replica each, on free loopback ports; every node stops on drop.
    // Starting polls the nodes for seconds: a blocking thread does it.
    let mut cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1)).await??;
    // ANCHOR_END: cluster
    println!(
        "cluster of {} nodes settled in {:.1?}",
        cluster.ports().len(),
        cluster.settled_in()
    );
    let rate_per_channel = lab::scaled(500.0, 300.0);
    let tail = Duration::from_millis(lab::scaled(5_000, 1_000));

    // A replica takes over, three times (each time from a master that never failed before);
    // then a master dies and comes back on its own address.
    for (scenario, fault, reaction) in [
        ("failover-library-only", Fault::Failover, Reaction::Nothing),
        (
            "failover-app-resubscribe",
            Fault::Failover,
            Reaction::Resubscribe,
        ),
        (
            "failover-library-after-command",
            Fault::Failover,
            Reaction::CommandAfterPromotion,
        ),
        ("restart-library-only", Fault::Restart, Reaction::Nothing),
    ] {
        run(
            &mut cluster,
            scenario,
            fault,
            reaction,
            rate_per_channel,
            tail,
        )
        .await?;
    }
    Ok(())
}

/// What happens to the victim master.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// SIGKILL, then started again at once on the same port (before anyone fails it over).
    Restart,
    /// SIGKILL, and it stays dead: its replica is promoted.
    Failover,
}

/// What the application does about it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reaction {
    /// Trust the library.
    Nothing,
    /// Subscribe again to every channel when a `Disconnection` push arrives.
    Resubscribe,
    /// No resubscription; after the promotion, one ordinary command for a key of the failed
    /// slot on the subscriber's connection.
    CommandAfterPromotion,
}

async fn run(
    cluster: &mut RedisCluster,
    scenario: &str,
    fault: Fault,
    reaction: Reaction,
    rate_per_channel: f64,
    tail: Duration,
) -> Result<()> {
    // One channel per shard; the victim is a master that still has a replica to take over.
    let channels: Vec<String> = cluster
        .channels_per_shard("ch09:fo", 1)?
        .into_iter()
        .flatten()
        .collect();
    let victim_port = match fault {
        Fault::Failover => cluster.master_with_replica()?,
        Fault::Restart => cluster.master_ports()?[0],
    };
    let replica_port = match fault {
        Fault::Failover => cluster.replica_of(victim_port)?,
        Fault::Restart => 0,
    };
    let victim_channel = {
        let mut found = None;
        for channel in &channels {
            if cluster.master_of(channel)? == victim_port {
                found = Some(channel.clone());
            }
        }
        found.context("no channel on the victim's shard")?
    };
    let urls = cluster.urls();
    let started = Instant::now();

    // ANCHOR: subscribe
    let (push_tx, push_rx) = mpsc::unbounded_channel::<PushInfo>();
    let client = ClusterClientBuilder::new(urls.clone())
        // Pushes (and so Pub/Sub on a cluster connection) need RESP3.
        .use_protocol(ProtocolVersion::RESP3)
        .push_sender(push_tx)
        .build()?;
    let mut subscriber = client.get_async_connection().await?;
    for channel in &channels {
        // One SSUBSCRIBE per channel: channels in different slots in one call fail with
        // CROSSSLOT. Each call is routed to the master serving the channel's slot.
        subscriber.ssubscribe(channel).await?;
    }
    // ANCHOR_END: subscribe

    // Route each channel's messages to its own stream, checked by its own gap detector.
    let mut senders = HashMap::new();
    let mut consumers = Vec::new();
    for channel in &channels {
        let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
        senders.insert(channel.clone().into_bytes(), tx);
        consumers.push((
            channel.clone(),
            tokio::spawn(consume(UnboundedReceiverStream::new(rx), started)),
        ));
    }
    let disconnections = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let router = tokio::spawn(route(
        push_rx,
        senders,
        subscriber.clone(),
        channels.clone(),
        reaction == Reaction::Resubscribe,
        started,
        disconnections.clone(),
    ));

    // Publishers: one task per channel, one SPUBLISH per tick, on their own cluster client.
    let publisher_client = ClusterClientBuilder::new(urls)
        // A SPUBLISH stuck on the dead master becomes an error after 1 s, and the next
        // message goes out, instead of this channel's publisher waiting out the failover.
        .overall_response_timeout(Some(Duration::from_secs(1)))
        .build()?;
    let publisher_con = publisher_client.get_async_connection().await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut publishers = Vec::new();
    for channel in &channels {
        publishers.push(tokio::spawn(publish(
            publisher_con.clone(),
            channel.clone(),
            rate_per_channel,
            stop.clone(),
        )));
    }

    // Let messages flow, kill the victim, wait for the cluster to be whole again, keep going.
    tokio::time::sleep(Duration::from_millis(lab::scaled(1_000, 500))).await;
    // ANCHOR: kill
    cluster.kill(victim_port)?;
    let killed_at = started.elapsed();
    let recovered_after = tokio::task::block_in_place(|| match fault {
        Fault::Restart => {
            cluster.restart(victim_port)?;
            cluster.wait_healthy(Duration::from_secs(30))
        }
        Fault::Failover => cluster.wait_for_failover(victim_port, Duration::from_secs(30)),
    })?;
    // ANCHOR_END: kill
    let mut command_at = None;
    if reaction == Reaction::CommandAfterPromotion {
        // EXISTS on a key named like the channel: same slot, so the library routes it to the
        // failed shard. Its result does not matter; what it makes the library do does.
        let _: redis::RedisResult<bool> = redis::cmd("EXISTS")
            .arg(&victim_channel)
            .query_async(&mut subscriber)
            .await;
        command_at = Some(started.elapsed() - killed_at);
    }
    tokio::time::sleep(tail).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let stopped_at = started.elapsed();
    let mut logs = HashMap::new();
    for (channel, publisher) in channels.iter().zip(publishers) {
        logs.insert(channel.clone(), publisher.await??);
    }
    // Pub/Sub never says "that was the last one": give the last messages time to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let holders = tokio::task::block_in_place(|| cluster.shard_subscribers(&victim_channel))?;
    router.abort();
    drop(subscriber);

    let mut total = ResultTotals::default();
    for (channel, consumer) in consumers {
        // The router is gone, so every stream ends and every consumer returns.
        let report = consumer.await?;
        let log = &logs[&channel];
        total.add(
            channel == victim_channel,
            &report,
            log,
            killed_at,
            stopped_at,
        );
    }
    let disconnections = disconnections.lock().unwrap().clone();
    println!(
        "{scenario}: killed the master on port {victim_port} at {killed_at:.1?}; {} \
         {recovered_after:.1?} later; Disconnection pushes at {disconnections:?}; \
         at the end, the subscription to its channel was on (port, clients): {holders:?}",
        match fault {
            Fault::Restart => "it was back".to_string(),
            Fault::Failover => format!("its replica (port {replica_port}) took over"),
        }
    );
    total
        .result(scenario)
        .with("lost_victim_shard", total.lost_victim)
        .with("lost_other_shards", total.lost_others)
        .with("gaps", total.gaps)
        .with("resumed_after_ms", total.resumed_after_ms())
        .with("recovered_after_ms", recovered_after.as_millis())
        .with(
            "command_after_ms",
            command_at.map_or("none".to_string(), |at| at.as_millis().to_string()),
        )
        .with("disconnect_pushes", disconnections.len())
        .with("silent_channels", total.silent_channels)
        .with("max_publish_ms", total.max_publish_latency.as_millis())
        .with("publish_errors", total.publish_errors)
        .with("replied_0", total.replied_zero)
        .with("replied_0_delivered", total.replied_zero_delivered)
        .with("replied_1_lost", total.replied_one_lost)
        .print();
    Ok(())
}

// ANCHOR: route
/// Reads the cluster connection's pushes: messages go to their channel's stream; a
/// `Disconnection` push (sent by the library when a node connection drops) triggers a
/// resubscription when `resubscribe` is on.
async fn route(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    channels_tx: HashMap<Vec<u8>, mpsc::UnboundedSender<Vec<u8>>>,
    subscriber: ClusterConnection,
    channels: Vec<String>,
    resubscribe: bool,
    started: Instant,
    disconnections: Arc<Mutex<Vec<Duration>>>,
) {
    while let Some(push) = pushes.recv().await {
        match (push.kind, push.data.as_slice()) {
            (PushKind::SMessage, [Value::BulkString(channel), Value::BulkString(payload)]) => {
                if let Some(tx) = channels_tx.get(channel) {
                    let _ = tx.send(payload.clone());
                }
            }
            (PushKind::Disconnection, _) => {
                disconnections.lock().unwrap().push(started.elapsed());
                if resubscribe {
                    // Don't block the router: messages of the healthy shards keep flowing.
                    tokio::spawn(resubscribe_all(subscriber.clone(), channels.clone()));
                }
            }
            _ => {} // subscribe confirmations and other pushes
        }
    }
}

/// SSUBSCRIBE every channel again, each until it succeeds: while the failed master is not
/// replaced, its slots may have nowhere to go. Subscribing again to a channel the
/// connection already has is harmless.
async fn resubscribe_all(mut subscriber: ClusterConnection, channels: Vec<String>) {
    for channel in channels {
        let mut backoff = Duration::from_millis(50);
        while subscriber.ssubscribe(&channel).await.is_err() {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}
// ANCHOR_END: route

/// One channel's consumer: counts what arrives and what its gap detector reports.
async fn consume(messages: UnboundedReceiverStream<Vec<u8>>, started: Instant) -> ChannelReport {
    // ANCHOR: gaps
    let mut checked =
        DetectGaps::new(messages, |payload: &Vec<u8>| lab::mark_of(payload).ok()).starting_at(0);
    let mut report = ChannelReport {
        tally_seqs: Vec::new(),
        noticed: 0,
        arrivals: Vec::new(),
    };
    while let Some(next) = checked.next().await {
        match next {
            Ok(payload) => {
                if let Ok(seq) = lab::seq_of(&payload) {
                    report.tally_seqs.push(seq);
                    report.arrivals.push((seq, started.elapsed()));
                }
            }
            // The subscriber itself sees these messages were lost.
            Err(gap) => report.noticed += gap.len(),
        }
    }
    // ANCHOR_END: gaps
    report
}

/// SPUBLISH numbered messages on `channel` at `rate` per second until `stop`; record every
/// reply. An error does not stop the publisher: it is recorded, and the next number goes out.
async fn publish(
    mut con: ClusterConnection,
    channel: String,
    rate: f64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<PublishLog> {
    let mut log = PublishLog::default();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut seq = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        ticks.tick().await;
        let sent_at = Instant::now();
        // ANCHOR: spublish
        let reply: redis::RedisResult<u64> = redis::cmd("SPUBLISH")
            .arg(&channel)
            .arg(lab::numbered(seq, 32))
            .query_async(&mut con)
            .await;
        // ANCHOR_END: spublish
        log.max_latency = log.max_latency.max(sent_at.elapsed());
        log.replies.push(reply.ok());
        seq += 1;
    }
    Ok(log)
}

/// Sums over the channels of a run.
#[derive(Default)]
struct ResultTotals {
    sent: u64,
    received: u64,
    noticed: u64,
    gaps: u64,
    lost_victim: u64,
    lost_others: u64,
    resumed_after: Option<Duration>,
    publish_errors: u64,
    replied_zero: u64,
    replied_zero_delivered: u64,
    replied_one_lost: u64,
    silent_channels: u64,
    max_publish_latency: Duration,
}

impl ResultTotals {
    fn add(
        &mut self,
        victim: bool,
        report: &ChannelReport,
        log: &PublishLog,
        killed_at: Duration,
        stopped_at: Duration,
    ) {
        // A channel that said nothing in the last second while its publisher kept sending:
        // the subscriber can see that much without any sequence number.
        let last_arrival = report.arrivals.last().map_or(Duration::ZERO, |(_, at)| *at);
        if last_arrival + Duration::from_secs(1) < stopped_at {
            self.silent_channels += 1;
        }
        self.max_publish_latency = self.max_publish_latency.max(log.max_latency);
        let sent = log.replies.len() as u64;
        let mut tally = Tally::new(sent);
        for &seq in &report.tally_seqs {
            tally.record(seq);
        }
        let delivered: std::collections::HashSet<u64> = report.tally_seqs.iter().copied().collect();
        self.sent += sent;
        self.received += tally.received();
        self.noticed += report.noticed.min(tally.lost());
        self.gaps += tally.missing().len() as u64;
        if victim {
            self.lost_victim += tally.lost();
            // When the victim's channel came back: the first arrival after the first hole,
            // or, with no hole, the first arrival after the kill.
            self.resumed_after = match tally.missing().first() {
                Some(hole) => report.arrivals.iter().find(|(seq, _)| seq > hole.end()),
                None => report.arrivals.iter().find(|(_, at)| *at > killed_at),
            }
            .map(|(_, at)| at.saturating_sub(killed_at));
        } else {
            self.lost_others += tally.lost();
        }
        for (seq, reply) in log.replies.iter().enumerate() {
            let seq = seq as u64;
            match reply {
                None => self.publish_errors += 1,
                Some(0) => {
                    self.replied_zero += 1;
                    if delivered.contains(&seq) {
                        self.replied_zero_delivered += 1;
                    }
                }
                Some(_) => {
                    if !delivered.contains(&seq) {
                        self.replied_one_lost += 1;
                    }
                }
            }
        }
    }

    fn resumed_after_ms(&self) -> String {
        match self.resumed_after {
            Some(after) => after.as_millis().to_string(),
            None => "never".into(),
        }
    }

    fn result(&self, scenario: &str) -> ResultLine {
        ResultLine::new(
            scenario,
            lab::REDIS_CURRENT,
            self.sent,
            self.received,
            self.noticed,
        )
    }
}
