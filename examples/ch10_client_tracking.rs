//! Chapter 10: client-side caching. Redis tells a client which cached keys changed
//! (`CLIENT TRACKING`, invalidation messages pushed on its RESP3 connection): that is Pub/Sub
//! too, and an invalidation lost in a gap is a *stale read*, served from the local cache for
//! as long as the entry lives.
//!
//! Five readers read through a cache, side by side:
//!
//! - `library-multiplexed`: redis-rs's own cache (`cache-aio`) on a `MultiplexedConnection`;
//! - `library-manager`: the same cache on a `ConnectionManager`, which reconnects;
//! - `tracking-naive`: a small cache over `CLIENT TRACKING on`, which reconnects and turns
//!   tracking on again, and keeps what it cached;
//! - `tracking-correct` and `tracking-bcast`: the same cache, flushed whenever the invalidation
//!   stream may have had a gap (a `Disconnection` push, a failed command, a reconnection), in
//!   the default mode and in `BCAST` mode.
//!
//! Probes (`probe-<fault>-<reader>`): each reader caches a key, then a fault (none, every
//! connection killed with `CLIENT KILL`, the server restarted), then one acknowledged write,
//! then reads for a second. Nothing else writes, so whatever goes stale goes stale because of
//! the fault. Load (`load-<fault>-<reader>`): a writer updates 50 keys with increasing
//! versions while the readers read them, the fault at a third of the run; `hot-key`: no
//! fault, two keys written as fast as the writer can.
//!
//! A stale read: a read that returns a value older than the last write acknowledged before the
//! read began, where a read begins with a round trip (`PING`) on the connection that carries
//! its invalidations (see `read_until_stopped`).
//!
//! It kills clients and restarts the server, so it runs only on a server the lab starts.
//!
//! cargo run --example ch10_client_tracking

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use lab::ResultLine;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::caching::CacheConfig;
use redis::{AsyncCommands, AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::mpsc::{self, UnboundedReceiver, error::TryRecvError};
use tokio::time::{Instant, sleep};

/// Keys the writer updates and the readers read.
const KEYS: usize = 50;
/// Keys in the hot-key phase, written as fast as the writer can.
const HOT_KEYS: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    ClientKill,
    Restart,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::None => "steady",
            Fault::ClientKill => "client-kill",
            Fault::Restart => "restart",
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    if let Some(url) = lab::server::redis_url_from_env() {
        bail!(
            "ch10_client_tracking kills clients and restarts the server, and REDIS_URL points \
             at {}: the book never does that to a server it did not start. Unset REDIS_URL to \
             let the lab start its own redis-server.",
            lab::redact::redact_url(&url)
        );
    }
    let mut server = lab::RedisServer::start()?;
    println!("Redis at {}", server.display_url());
    println!("Probes: each reader caches a key, then the fault, then one acknowledged write:");
    for fault in [Fault::None, Fault::ClientKill, Fault::Restart] {
        probe(&mut server, fault).await?;
    }
    let run_for = lab::scaled(Duration::from_secs(4), Duration::from_millis(1_500));
    println!(
        "Load: a writer updating one of {KEYS} keys about every millisecond (hot-key: one of \
         {HOT_KEYS}, as fast as it can), five readers, {run_for:?} per phase, the fault at a \
         third of it"
    );
    for fault in [Fault::None, Fault::ClientKill, Fault::Restart] {
        load(&mut server, fault, KEYS, true, run_for).await?;
    }
    load(&mut server, Fault::None, HOT_KEYS, false, run_for).await?;
    Ok(())
}

/// Kill every client connection but this one, or restart the server.
async fn inflict(
    server: &mut lab::RedisServer,
    client: &redis::Client,
    fault: Fault,
) -> Result<()> {
    match fault {
        Fault::None => {}
        Fault::ClientKill => {
            // The readers' connections (and the writer's, which retries): the invalidations
            // of every cached key go with them.
            let mut con = client.get_multiplexed_async_connection().await?;
            let _killed: u64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .arg("SKIPME")
                .arg("yes")
                .query_async(&mut con)
                .await?;
        }
        Fault::Restart => tokio::task::block_in_place(|| server.restart())?,
    }
    Ok(())
}

/// How long a probe keeps reading after the write.
const PROBE_FOR: Duration = Duration::from_millis(1_000);

/// Each reader caches its own key (value 1); then the fault; then the key is set to 2 and
/// acknowledged; then each reader reads it every 20 ms for `PROBE_FOR`. Nothing else writes,
/// so nothing can race: whatever goes stale here goes stale because of the fault.
async fn probe(server: &mut lab::RedisServer, fault: Fault) -> Result<()> {
    let prefix = format!("{}:", lab::unique_channel("ch10:probe"));
    let client = resp3_client(server)?;
    let mut writer = ConnectionManager::new(client.clone()).await?;
    let cached = Arc::new(tokio::sync::Barrier::new(ReaderKind::ALL.len() + 1));
    let written = Arc::new(tokio::sync::Barrier::new(ReaderKind::ALL.len() + 1));
    let mut tasks = Vec::new();
    for kind in ReaderKind::ALL {
        let key = format!("{prefix}{}", kind.name());
        let () = writer.set(&key, 1u64).await?;
        let mut reader = Reader::open(kind, &client, &prefix).await?;
        let (cached, written) = (cached.clone(), written.clone());
        tasks.push(tokio::spawn(async move {
            reader.get(&key).await?;
            reader.get(&key).await?; // now from the cache
            cached.wait().await;
            written.wait().await;
            let started = Instant::now();
            let mut counts = Counts::default();
            let mut first_fresh_ms = None;
            while started.elapsed() < PROBE_FOR {
                let _ = reader.ping().await;
                match reader.get(&key).await {
                    Ok(Some(2)) => {
                        counts.reads += 1;
                        first_fresh_ms.get_or_insert(started.elapsed().as_millis());
                    }
                    Ok(Some(_)) => {
                        counts.reads += 1;
                        counts.stale += 1;
                    }
                    Ok(None) => counts.missing += 1,
                    Err(_) => counts.errors += 1,
                }
                sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok((kind, counts, first_fresh_ms, reader))
        }));
    }
    cached.wait().await;
    inflict(server, &client, fault).await?;
    for kind in ReaderKind::ALL {
        let key = format!("{prefix}{}", kind.name());
        while writer.set::<_, _, ()>(&key, 2u64).await.is_err() {
            sleep(Duration::from_millis(10)).await;
        }
    }
    written.wait().await;
    for task in tasks {
        let (kind, counts, first_fresh_ms, reader) = task.await??;
        let scenario = format!("probe-{}-{}", fault.name(), kind.name());
        let mut line = ResultLine::new(
            &scenario,
            lab::REDIS_CURRENT,
            counts.reads,
            counts.reads - counts.stale,
            0,
        )
        .with("stale_reads", counts.stale)
        .with(
            "first_fresh_ms",
            first_fresh_ms.map_or("never".to_string(), |ms| ms.to_string()),
        )
        .with("errors", counts.errors);
        line = reader.with_counts(line);
        line.print();
    }
    Ok(())
}

fn resp3_client(server: &lab::RedisServer) -> Result<redis::Client> {
    Ok(redis::Client::open(format!(
        "{}?protocol=resp3",
        server.url()
    ))?)
}

/// Everything the writer has been told is done: the highest acknowledged version per key.
struct Acked(Vec<AtomicU64>);

impl Acked {
    fn snapshot(&self) -> Vec<u64> {
        self.0.iter().map(|v| v.load(Ordering::SeqCst)).collect()
    }
}

/// What one reader saw.
#[derive(Debug, Default)]
struct Counts {
    reads: u64,
    stale: u64,
    stale_keys: HashSet<usize>,
    /// Reads that found no value on the server (after a restart emptied it): not stale.
    missing: u64,
    errors: u64,
    last_stale_after_fault_ms: Option<u128>,
}

async fn load(
    server: &mut lab::RedisServer,
    fault: Fault,
    key_count: usize,
    paced: bool,
    run_for: Duration,
) -> Result<()> {
    let name = if paced { fault.name() } else { "hot-key" };
    let prefix = format!("{}:", lab::unique_channel("ch10:load"));
    let client = resp3_client(server)?;
    let keys: Arc<Vec<String>> = Arc::new((0..key_count).map(|i| format!("{prefix}{i}")).collect());
    let acked = Arc::new(Acked((0..key_count).map(|_| AtomicU64::new(0)).collect()));

    let mut writer_con = ConnectionManager::new(client.clone()).await?;
    let mut pipe = redis::pipe();
    for key in keys.iter() {
        pipe.set(key, 0u64).ignore();
    }
    pipe.exec_async(&mut writer_con).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let fault_at: Arc<std::sync::OnceLock<Instant>> = Arc::new(std::sync::OnceLock::new());
    let mut readers = Vec::new();
    for kind in ReaderKind::ALL {
        let reader = Reader::open(kind, &client, &prefix).await?;
        let (keys, acked, stop, fault_at) =
            (keys.clone(), acked.clone(), stop.clone(), fault_at.clone());
        readers.push(tokio::spawn(async move {
            read_until_stopped(reader, &keys, &acked, &stop, &fault_at).await
        }));
    }
    let writer = {
        let (keys, acked, stop) = (keys.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move { write(&mut writer_con, &keys, &acked, &stop, paced).await })
    };

    sleep(run_for / 3).await;
    let _ = fault_at.set(Instant::now());
    inflict(server, &client, fault).await?;
    sleep(run_for * 2 / 3).await;
    stop.store(true, Ordering::SeqCst);
    let writes = writer.await??;

    for task in readers {
        let (kind, counts, reader) = task.await??;
        let scenario = format!("load-{name}-{}", kind.name());
        let line = ResultLine::new(
            &scenario,
            lab::REDIS_CURRENT,
            counts.reads,
            counts.reads - counts.stale,
            0,
        )
        .with("stale_reads", counts.stale)
        .with("stale_keys", counts.stale_keys.len())
        .with(
            "last_stale_ms",
            counts
                .last_stale_after_fault_ms
                .map_or("-".to_string(), |ms| ms.to_string()),
        )
        .with("errors", counts.errors)
        .with("missing", counts.missing)
        .with("writes", writes);
        reader.with_counts(line).print();
    }
    Ok(())
}

/// Update random keys with increasing versions until told to stop; record each version once
/// the server has acknowledged it. A failed write (the server restarting) is retried.
async fn write(
    con: &mut ConnectionManager,
    keys: &[String],
    acked: &Acked,
    stop: &AtomicBool,
    paced: bool,
) -> Result<u64> {
    let mut version = 0;
    while !stop.load(Ordering::SeqCst) {
        version += 1;
        let i = fastrand::usize(0..keys.len());
        while con.set::<_, _, ()>(&keys[i], version).await.is_err() {
            sleep(Duration::from_millis(10)).await;
        }
        acked.0[i].fetch_max(version, Ordering::SeqCst);
        if paced {
            sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(version)
}

// ANCHOR: round
/// Read every key through the reader's cache, round after round, and count stale reads.
///
/// A read is stale when it returns a version older than the last write acknowledged before
/// the read began. The read begins with a round trip on the reader's own connection (`PING`):
/// Redis queues a key's invalidation on that connection before the reply to any later
/// command there, so by the time the PING is answered a cache that handles its
/// connection's messages in order has heard of every write acknowledged before it. What
/// this does not count is a read that overtakes an invalidation still in flight: no cache
/// can avoid those, and the next round trip ends them. If the PING fails, the connection is
/// gone and nothing more will ever be invalidated through it: an old value is then stale
/// for good.
async fn read_until_stopped(
    mut reader: Reader,
    keys: &[String],
    acked: &Acked,
    stop: &AtomicBool,
    fault_at: &std::sync::OnceLock<Instant>,
) -> Result<(ReaderKind, Counts, Reader)> {
    let mut counts = Counts::default();
    while !stop.load(Ordering::SeqCst) {
        let floor = acked.snapshot();
        if reader.ping().await.is_err() {
            counts.errors += 1;
        }
        for (i, key) in keys.iter().enumerate() {
            match reader.get(key).await {
                Ok(Some(version)) => {
                    counts.reads += 1;
                    if version < floor[i] {
                        counts.stale += 1;
                        counts.stale_keys.insert(i);
                        if let Some(at) = fault_at.get() {
                            counts.last_stale_after_fault_ms = Some(at.elapsed().as_millis());
                        }
                    }
                }
                Ok(None) => counts.missing += 1,
                Err(_) => counts.errors += 1,
            }
        }
        sleep(Duration::from_millis(2)).await;
    }
    Ok((reader.kind(), counts, reader))
}
// ANCHOR_END: round

#[derive(Clone, Copy, Debug, PartialEq)]
enum ReaderKind {
    LibraryMultiplexed,
    LibraryManager,
    TrackingNaive,
    TrackingCorrect,
    TrackingBcast,
}

impl ReaderKind {
    const ALL: [ReaderKind; 5] = [
        ReaderKind::LibraryMultiplexed,
        ReaderKind::LibraryManager,
        ReaderKind::TrackingNaive,
        ReaderKind::TrackingCorrect,
        ReaderKind::TrackingBcast,
    ];

    fn name(self) -> &'static str {
        match self {
            ReaderKind::LibraryMultiplexed => "library-multiplexed",
            ReaderKind::LibraryManager => "library-manager",
            ReaderKind::TrackingNaive => "tracking-naive",
            ReaderKind::TrackingCorrect => "tracking-correct",
            ReaderKind::TrackingBcast => "tracking-bcast",
        }
    }
}

/// One reader: the library's cache on either connection type, or `TrackingCache`.
enum Reader {
    Multiplexed(MultiplexedConnection),
    Manager(ConnectionManager),
    Own(ReaderKind, Box<TrackingCache>),
}

impl Reader {
    async fn open(kind: ReaderKind, client: &redis::Client, prefix: &str) -> Result<Self> {
        Ok(match kind {
            // ANCHOR: library
            ReaderKind::LibraryMultiplexed => {
                let config = AsyncConnectionConfig::new().set_cache_config(CacheConfig::new());
                let con = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Reader::Multiplexed(con)
            }
            ReaderKind::LibraryManager => {
                let config = ConnectionManagerConfig::new().set_cache_config(CacheConfig::new());
                let con = ConnectionManager::new_with_config(client.clone(), config).await?;
                Reader::Manager(con)
            }
            // ANCHOR_END: library
            ReaderKind::TrackingNaive => Reader::Own(
                kind,
                Box::new(TrackingCache::open(client, Tracking::Default, false).await?),
            ),
            ReaderKind::TrackingCorrect => Reader::Own(
                kind,
                Box::new(TrackingCache::open(client, Tracking::Default, true).await?),
            ),
            ReaderKind::TrackingBcast => Reader::Own(
                kind,
                Box::new(
                    TrackingCache::open(client, Tracking::Bcast(prefix.to_string()), true).await?,
                ),
            ),
        })
    }

    fn kind(&self) -> ReaderKind {
        match self {
            Reader::Multiplexed(_) => ReaderKind::LibraryMultiplexed,
            Reader::Manager(_) => ReaderKind::LibraryManager,
            Reader::Own(kind, _) => *kind,
        }
    }

    async fn ping(&mut self) -> Result<()> {
        match self {
            Reader::Multiplexed(con) => redis::cmd("PING").exec_async(con).await?,
            Reader::Manager(con) => redis::cmd("PING").exec_async(con).await?,
            Reader::Own(_, cache) => cache.ping().await?,
        }
        Ok(())
    }

    async fn get(&mut self, key: &str) -> Result<Option<u64>> {
        Ok(match self {
            Reader::Multiplexed(con) => con.get(key).await?,
            Reader::Manager(con) => con.get(key).await?,
            Reader::Own(_, cache) => cache.get(key).await?,
        })
    }

    /// Cache hits, and for `TrackingCache` its flushes and reconnections.
    fn with_counts(&self, line: ResultLine) -> ResultLine {
        let library_hits = |stats: Option<redis::caching::CacheStatistics>| {
            stats.map_or(0, |stats| stats.hit as u64)
        };
        match self {
            Reader::Multiplexed(con) => line.with("hits", library_hits(con.get_cache_statistics())),
            Reader::Manager(con) => line.with("hits", library_hits(con.get_cache_statistics())),
            Reader::Own(_, cache) => line
                .with("hits", cache.hits)
                .with("flushes", cache.flushes)
                .with("reconnects", cache.reconnects),
        }
    }
}

/// Which keys the server reports changes of.
#[derive(Clone, Debug)]
enum Tracking {
    /// The keys this connection has read (the server remembers them per client).
    Default,
    /// Every key under a prefix, read or not.
    Bcast(String),
}

// ANCHOR: cache
/// A client-side cache over `CLIENT TRACKING on` on one RESP3 connection: the invalidations
/// arrive on the same connection as the replies, and are handled before every lookup.
struct TrackingCache {
    client: redis::Client,
    tracking: Tracking,
    /// Forget everything when the invalidation stream may have had a gap.
    flush_on_gap: bool,
    con: Option<(MultiplexedConnection, UnboundedReceiver<PushInfo>)>,
    entries: HashMap<String, u64>,
    /// How many invalidations each key has had: a reply read while one arrived is not cached.
    invalidated: HashMap<String, u64>,
    /// Bumped by every flush, for the same reason.
    epoch: u64,
    flushes: u64,
    reconnects: u64,
    hits: u64,
}

impl TrackingCache {
    async fn open(client: &redis::Client, tracking: Tracking, flush_on_gap: bool) -> Result<Self> {
        let mut cache = Self {
            client: client.clone(),
            tracking,
            flush_on_gap,
            con: None,
            entries: HashMap::new(),
            invalidated: HashMap::new(),
            epoch: 0,
            flushes: 0,
            reconnects: 0,
            hits: 0,
        };
        cache.connect().await?;
        Ok(cache)
    }

    /// A new connection with tracking on. The previous one, if any, is gone: anything it
    /// did not tell us about is a gap.
    async fn connect(&mut self) -> Result<()> {
        let (tx, rx) = mpsc::unbounded_channel();
        let config = AsyncConnectionConfig::new().set_push_sender(tx);
        let mut con = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut on = redis::cmd("CLIENT");
        on.arg("TRACKING").arg("ON");
        if let Tracking::Bcast(prefix) = &self.tracking {
            on.arg("BCAST").arg("PREFIX").arg(prefix);
        }
        on.exec_async(&mut con).await?;
        self.con = Some((con, rx));
        Ok(())
    }

    /// The invalidation stream has (or may have) a gap: drop the connection, and the cache
    /// with it when `flush_on_gap`.
    fn gap(&mut self) {
        self.con = None;
        if self.flush_on_gap {
            self.entries.clear();
            self.epoch += 1;
            self.flushes += 1;
        }
    }

    /// Handle every push that has arrived: invalidations, and the library's `Disconnection`.
    fn drain(&mut self) {
        let Some((_, pushes)) = &mut self.con else {
            return;
        };
        let mut gap = false;
        loop {
            match pushes.try_recv() {
                Ok(push) if push.kind == PushKind::Invalidate => match push.data.first() {
                    Some(Value::Array(keys)) => {
                        for key in keys {
                            if let Ok(key) = redis::from_redis_value_ref::<String>(key) {
                                self.entries.remove(&key);
                                *self.invalidated.entry(key).or_default() += 1;
                            }
                        }
                    }
                    // FLUSHALL / FLUSHDB: every key.
                    _ => {
                        self.entries.clear();
                        self.epoch += 1;
                    }
                },
                Ok(push) if push.kind == PushKind::Disconnection => gap = true,
                Ok(_) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    gap = true;
                    break;
                }
            }
        }
        if gap {
            self.gap();
        }
    }

    /// The connection, after handling what arrived on it; a new one after a gap.
    async fn connection(&mut self) -> Result<&mut MultiplexedConnection> {
        self.drain();
        if self.con.is_none() {
            self.reconnects += 1;
            self.connect().await?;
        }
        Ok(&mut self.con.as_mut().expect("connected").0)
    }

    async fn ping(&mut self) -> Result<()> {
        let con = self.connection().await?;
        if let Err(error) = redis::cmd("PING").exec_async(con).await {
            self.gap(); // a failed command: the connection, and its invalidations, may be gone
            return Err(error.into());
        }
        self.drain();
        Ok(())
    }

    async fn get(&mut self, key: &str) -> Result<Option<u64>> {
        self.drain();
        if let Some(value) = self.entries.get(key) {
            self.hits += 1;
            return Ok(Some(*value));
        }
        let seen = (self.invalidated.get(key).copied(), self.epoch);
        let con = self.connection().await?;
        let value: Option<u64> = match con.get(key).await {
            Ok(value) => value,
            Err(error) => {
                self.gap();
                return Err(error.into());
            }
        };
        // An invalidation read while the GET was in flight may be for a write after it:
        // then the reply may already be old, and caching it would keep it for good.
        self.drain();
        if let Some(value) = value
            && self.con.is_some()
            && (self.invalidated.get(key).copied(), self.epoch) == seen
        {
            self.entries.insert(key.to_string(), value);
        }
        Ok(value)
    }
}
// ANCHOR_END: cache
