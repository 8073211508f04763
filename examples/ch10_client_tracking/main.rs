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

mod cache;
mod library;
mod readers;
mod stale;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use lab::ResultLine;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::time::{Instant, sleep};

use readers::{Reader, ReaderKind};
use stale::{Acked, Counts, read_until_stopped};

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
    let mut results = Vec::new();
    println!("Probes: each reader caches a key, then the fault, then one acknowledged write:");
    for fault in [Fault::None, Fault::ClientKill, Fault::Restart] {
        results.extend(probe(&mut server, fault).await?);
    }
    let run_for = lab::scaled(Duration::from_secs(4), Duration::from_millis(1_500));
    println!(
        "Load: a writer updating one of {KEYS} keys about every millisecond (hot-key: one of \
         {HOT_KEYS}, as fast as it can), five readers, {run_for:?} per phase, the fault at a \
         third of it"
    );
    for fault in [Fault::None, Fault::ClientKill, Fault::Restart] {
        results.extend(load(&mut server, fault, KEYS, true, run_for).await?);
    }
    results.extend(load(&mut server, Fault::None, HOT_KEYS, false, run_for).await?);
    print_tables(&results);
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
async fn probe(server: &mut lab::RedisServer, fault: Fault) -> Result<Vec<ResultLine>> {
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
    let mut results = Vec::new();
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
        results.push(line);
    }
    Ok(results)
}

fn resp3_client(server: &lab::RedisServer) -> Result<redis::Client> {
    Ok(redis::Client::open(format!(
        "{}?protocol=resp3",
        server.url()
    ))?)
}

async fn load(
    server: &mut lab::RedisServer,
    fault: Fault,
    key_count: usize,
    paced: bool,
    run_for: Duration,
) -> Result<Vec<ResultLine>> {
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

    let mut results = Vec::new();
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
        let line = reader.with_counts(line);
        line.print();
        results.push(line);
    }
    Ok(results)
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

/// The chapter's two tables: stale reads per reader and phase, probes then load.
fn print_tables(results: &[ResultLine]) {
    let cell = |scenario: String| {
        let Ok(r) = lab::report::find(results, &scenario, lab::REDIS_CURRENT) else {
            return "?".to_string();
        };
        let stale = lab::report::thousands(r.lost);
        let mut cell = format!("{stale} of {}", lab::report::thousands(r.sent));
        if r.get("first_fresh_ms") == Some("never") {
            cell.push_str(", never fresh");
        }
        if let Some(flushes) = r.get("flushes").filter(|f| *f != "0") {
            cell.push_str(&format!(", {flushes} flush"));
        }
        cell
    };
    println!();
    println!("| reader | probe: steady | probe: client-kill | probe: restart |");
    println!("|---|---|---|---|");
    for kind in ReaderKind::ALL {
        let row: Vec<String> = [Fault::None, Fault::ClientKill, Fault::Restart]
            .iter()
            .map(|fault| cell(format!("probe-{}-{}", fault.name(), kind.name())))
            .collect();
        println!("| `{}` | {} |", kind.name(), row.join(" | "));
    }
    println!();
    println!("| reader | load: steady | load: client-kill | load: restart | load: hot-key |");
    println!("|---|---|---|---|---|");
    for kind in ReaderKind::ALL {
        let row: Vec<String> = ["steady", "client-kill", "restart", "hot-key"]
            .iter()
            .map(|phase| cell(format!("load-{phase}-{}", kind.name())))
            .collect();
        println!("| `{}` | {} |", kind.name(), row.join(" | "));
    }
}
