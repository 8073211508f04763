//! Chapter 9, root cause: redis-rs's async cluster connection leaves a sharded subscription on
//! a dead master. Two subscribers (redis 1.8.1, 2.0.0-rc.2) on one channel; its master is
//! SIGKILLed, its replica promoted; later the dead master comes back, as a replica. One clock:
//! redis-rs's `log` at debug level (the logger below; the tag says which release's source
//! wrote the line), every push (a message only after a silence), the cluster's events.
//!
//! cargo run --example ch09_failover_root_cause [-- --quick]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use lab::cluster::RedisCluster;
use lab::{ResultLine, Tally};

const CLIENTS: [&str; 2] = [lab::REDIS_CURRENT, "redis-2.0.0-rc.2"];
static START: OnceLock<Instant> = OnceLock::new();
static LIVE: AtomicBool = AtomicBool::new(true);
/// Per release: reconnect attempts, slot refreshes.
static COUNTS: [[AtomicU64; 2]; 2] = [const { [const { AtomicU64::new(0) }; 2] }; 2];

/// One line of the timeline, seconds since the start.
macro_rules! say {
    ($($arg:tt)*) => {{
        let at = START.get_or_init(Instant::now).elapsed().as_secs_f64();
        println!("{at:7.3}s  {}", format_args!($($arg)*));
    }};
}

// ANCHOR: logger
/// redis-rs's `log` output on the same clock; counts reconnect attempts and slot refreshes.
struct LibraryLog;
impl log::Log for LibraryLog {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.target().starts_with("redis::")
    }
    fn log(&self, record: &log::Record) {
        let release = usize::from(record.file().is_some_and(|file| file.contains("redis-2.")));
        let text = record.args().to_string();
        if text.starts_with("repair_node") {
            COUNTS[release][0].fetch_add(1, Relaxed);
        } else if text.contains("beginning slot refresh") {
            COUNTS[release][1].fetch_add(1, Relaxed);
        }
        // (The WARN "Failed to connect to node" repeats each repair attempt's DEBUG line.)
        if LIVE.load(Relaxed) && !text.starts_with("Failed to connect") {
            let (who, level) = (CLIENTS[release], record.level());
            say!("{who} log {level}: {}", text.trim());
        }
    }
    fn flush(&self) {}
}
// ANCHOR_END: logger

/// A cluster subscriber on `$channel` (RESP3, a push sender, nothing else): logs each push
/// and returns the messages it receives, `(number, arrival)`.
macro_rules! subscriber {
    ($redis:ident, $release:expr, $urls:expr, $channel:expr) => {{
        use $redis::{PushKind, Value};
        let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
        let client = $redis::cluster::ClusterClientBuilder::new($urls)
            .use_protocol($redis::ProtocolVersion::RESP3)
            .push_sender(tx)
            .build()?;
        let mut con = client.get_async_connection().await?;
        con.ssubscribe(&$channel).await?;
        let (arrivals, name) = (Arc::new(Mutex::new(Vec::new())), CLIENTS[$release]);
        let seen = arrivals.clone();
        tokio::spawn(async move {
            let (_con, mut last) = (con, Instant::now());
            while let Some(push) = pushes.recv().await.filter(|_| LIVE.load(Relaxed)) {
                let (kind, silence) = (push.kind.clone(), last.elapsed());
                let Some(Value::BulkString(payload)) = push.data.get(1) else {
                    say!("{name} push {kind:?}");
                    continue;
                };
                let seq = lab::seq_of(payload).unwrap_or(u64::MAX);
                if kind == PushKind::SMessage && silence > Duration::from_millis(200) {
                    say!("{name} push SMessage {seq} after {silence:.1?} of silence");
                }
                last = Instant::now();
                seen.lock().unwrap().push((seq, last));
            }
        });
        arrivals
    }};
}

#[tokio::main]
async fn main() -> Result<()> {
    RedisCluster::refuse_redis_url()?;
    log::set_logger(&LibraryLog).map_err(|error| anyhow!("{error}"))?;
    log::set_max_level(log::LevelFilter::Debug);
    let mut cluster = tokio::task::spawn_blocking(|| -> Result<RedisCluster> {
        let mut cluster = RedisCluster::start(3, 1)?;
        cluster.wait_replicas_listed(Duration::from_secs(30))?; // so that clients know them
        Ok(cluster)
    })
    .await??;
    let (victim, urls) = (cluster.master_with_replica()?, cluster.urls());
    let replica = cluster.replica_of(victim)?;
    let channel = loop {
        let name = lab::unique_channel("ch09:rc");
        if cluster.master_of(&name)? == victim {
            break name;
        }
    };
    say!("6 nodes; {channel} is on master :{victim}, replica :{replica}");
    let arrivals = [
        subscriber!(redis, 0, urls.clone(), channel),
        subscriber!(redis_2_0, 1, urls, channel),
    ];
    let (stop, channels) = (Arc::new(AtomicBool::new(false)), [channel.clone()]);
    let publisher = std::thread::spawn({
        let (stop, every) = (stop.clone(), Duration::from_millis(5));
        move || lab::cluster::spublish_paced([victim, replica], &channels, every, &stop)[0]
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    say!("SIGKILL master :{victim}");
    cluster.kill(victim)?;
    // From here on the master is dead; what it wrote before lands within a few ms (one CI run
    // counted a message that arrived as the kill happened as "heard during the failover").
    let killed = Instant::now() + Duration::from_millis(50);
    tokio::task::block_in_place(|| -> Result<()> {
        cluster.wait_promoted(replica, Duration::from_secs(30))?;
        say!("ROLE on :{replica} says master: promoted");
        cluster.wait_for_failover(victim, Duration::from_secs(30))?;
        say!("every node agrees: :{replica} serves the slots of :{victim}");
        Ok(())
    })?;
    tokio::time::sleep(Duration::from_millis(lab::scaled(3_000, 700))).await;
    let holders = tokio::task::block_in_place(|| cluster.shard_subscribers(&channel))?;
    say!("PUBSUB SHARDNUMSUB on every node, (port, subscribers): {holders:?}");
    tokio::task::block_in_place(|| cluster.restart(victim))?;
    let returned = Instant::now();
    say!(":{victim} started again: it rejoins as a replica of :{replica}");
    let deadline = returned + Duration::from_secs(10);
    let heard = |a: &Mutex<Vec<(u64, Instant)>>| a.lock().unwrap().iter().any(|m| m.1 > returned);
    while !arrivals.iter().all(|a| heard(a)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(lab::scaled(2_000, 300))).await;
    let back = tokio::task::block_in_place(|| cluster.shard_subscribers(&channel))?;
    say!("PUBSUB SHARDNUMSUB on every node, (port, subscribers): {back:?}");
    stop.store(true, Relaxed);
    let sent = publisher.join().expect("the publisher does not panic");
    tokio::time::sleep(Duration::from_millis(300)).await; // the last messages
    LIVE.store(false, Relaxed);
    for (release, arrivals) in arrivals.iter().enumerate() {
        let arrivals = arrivals.lock().unwrap().clone();
        let mut tally = Tally::new(sent);
        arrivals.iter().for_each(|&(seq, _)| tally.record(seq));
        let heard = arrivals
            .iter()
            .filter(|(_, at)| (killed..returned).contains(at));
        let resumed = match arrivals.iter().find(|(_, at)| *at > returned) {
            Some((_, at)) => (*at - returned).as_millis().to_string(),
            None => "never".into(),
        };
        // noticed=0: this subscriber has no gap detector; the losses are silent.
        ResultLine::from_tally("failover-library-only", CLIENTS[release], &tally, 0)
            .with("heard_during_failover", heard.count())
            .with("subscribed_during_failover", holders.len())
            .with("reconnect_attempts", COUNTS[release][0].load(Relaxed))
            .with("slot_refreshes", COUNTS[release][1].load(Relaxed))
            .with("resumed_after_return_ms", resumed)
            .print();
    }
    Ok(())
}
