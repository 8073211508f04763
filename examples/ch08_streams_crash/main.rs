//! Chapter 8: Redis Streams for at-least-once delivery, tested by killing a worker.
//!
//! Three worker processes share one consumer group. The parent adds numbered jobs to a
//! stream and SIGKILLs one worker in the middle of a batch, three times, restarting it under a
//! new name each time, as a supervisor would. Afterwards it checks, from what the workers
//! wrote to Redis, that every job's work happened exactly once: the surviving workers took
//! over what the dead one left pending (XAUTOCLAIM), and a dedup marker written atomically
//! with the work turned each redelivery into a no-op.
//!
//! A second scenario adds "poison" jobs whose handler always fails: after `MAX_DELIVERIES`
//! deliveries they are moved to a dead-letter stream instead of being retried forever.
//!
//! cargo run --release --example ch08_streams_crash
//! cargo run --release --example ch08_streams_crash -- --messages 100000 --kills 3
//!
//! The worker is this same program, started with `--consumer NAME` (the parent re-executes
//! itself), so that a kill is a real `kill -9` of a process holding unacknowledged messages.
//!
//! What the chapter shows is in `worker.rs` (a worker: read, claim, handle once, acknowledge,
//! dead-letter) and `supervisor.rs` (the producer and the crash test). `judge.rs` reads
//! what the workers left in Redis; this file holds the arguments, a worker process's start
//! and the dead-letter scenario.

mod judge;
mod supervisor;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::io::AsyncReadExt;

use judge::{create_group, outcome, wait_until};
use supervisor::{crash_scenario, produce, spawn_worker, stop_workers};
use worker::{HANDLE_ONCE, Worker};

/// How many messages one XREADGROUP or XAUTOCLAIM hands a worker.
const BATCH: usize = 100;

/// A message delivered more often than this goes to the dead-letter stream unhandled.
const MAX_DELIVERIES: usize = 3;

/// How long a dedup marker lives: longer than any message can wait for a redelivery.
const DEDUP_TTL_SECS: u64 = 24 * 3600;

/// Where workers find the server: an environment variable, so that a password in the URL
/// never shows up in `ps`.
const URL_VAR: &str = "LAB_CH08_URL";

#[derive(Parser, Debug)]
#[command(about = "Redis Streams: consumer groups, a crash test and a dead-letter stream")]
struct Args {
    /// Jobs in the crash scenario (default 100,000; 10,000 with --quick).
    #[arg(long)]
    messages: Option<u64>,
    /// How many times the crash scenario kills a worker.
    #[arg(long, default_value_t = 3)]
    kills: usize,
    /// Which scenario to run: crash, dead-letter or all.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// A message pending this long (ms) is taken over by another worker.
    #[arg(long, default_value_t = 500)]
    claim_idle_ms: u64,
    /// Small, fast runs (also LAB_QUICK=1).
    #[arg(long)]
    quick: bool,
    /// Run as a worker with this consumer name (used by the parent, not by hand).
    #[arg(long, hide = true)]
    consumer: Option<String>,
    #[arg(long, hide = true)]
    stream: Option<String>,
    #[arg(long, hide = true)]
    group: Option<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(name) = &args.consumer {
        return worker_main(&args, name).await;
    }
    let run_crash = matches!(args.scenario.as_str(), "all" | "crash");
    let run_dead_letter = matches!(args.scenario.as_str(), "all" | "dead-letter");
    ensure!(
        run_crash || run_dead_letter,
        "--scenario must be crash, dead-letter or all, not {:?}",
        args.scenario
    );
    ensure!(
        args.claim_idle_ms >= 50,
        "--claim-idle-ms must be at least 50"
    );

    let server = lab::RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let claim_idle = Duration::from_millis(args.claim_idle_ms);

    if run_crash {
        let messages = args.messages.unwrap_or(lab::scaled(100_000, 10_000));
        ensure!(messages > 0, "--messages must be at least 1");
        crash_scenario(&server, &client, messages, args.kills, claim_idle).await?;
    }
    if run_dead_letter {
        let messages = lab::scaled(10_000, 2_000);
        dead_letter_scenario(&server, &client, messages, claim_idle).await?;
    }
    Ok(())
}

/// The keys one run uses, all derived from the stream's name.
#[derive(Clone, Debug)]
struct Keys {
    stream: String,
    group: String,
    dead_letter: String,
    /// Per-job count of how often its work happened (the lab's "work").
    effects: String,
    /// Per-job count of how often the handler was called (deliveries that reached it).
    attempts: String,
    /// How many deliveries the dedup marker turned into no-ops.
    deduplicated: String,
}

impl Keys {
    fn new(stream: &str, group: &str) -> Self {
        Self {
            stream: stream.to_string(),
            group: group.to_string(),
            dead_letter: format!("{stream}:dead"),
            effects: format!("{stream}:effects"),
            attempts: format!("{stream}:attempts"),
            deduplicated: format!("{stream}:deduplicated"),
        }
    }

    fn dedup_marker(&self, id: &str) -> String {
        format!("{}:done:{id}", self.stream)
    }
}

/// A connection that waits up to 10 s for a reply. redis 1.x gives up after 500 ms by
/// default, which a busy machine exceeds (a 100,000-field HGETALL, a worker's batch while
/// three processes share two cores); a timed-out command is an error, not a retry.
async fn patient_connection(client: &redis::Client) -> Result<MultiplexedConnection> {
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// A worker process: consume until stdin closes (the parent's way of saying "stop").
async fn worker_main(args: &Args, name: &str) -> Result<()> {
    let url = std::env::var(URL_VAR)
        .with_context(|| format!("a worker needs the server's URL in {URL_VAR}"))?;
    let stream = args.stream.as_deref().context("a worker needs --stream")?;
    let group = args.group.as_deref().context("a worker needs --group")?;
    let client = lab::connect::open(&url).await?;
    let mut con = patient_connection(&client).await?;
    let handle_once: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(HANDLE_ONCE)
        .query_async(&mut con)
        .await
        .context("SCRIPT LOAD")?;
    let mut worker = Worker {
        con,
        keys: Keys::new(stream, group),
        name: name.to_string(),
        claim_idle: Duration::from_millis(args.claim_idle_ms),
        handle_once,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop_on_eof = stop.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        let mut stdin = tokio::io::stdin();
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        stop_on_eof.store(true, Ordering::Relaxed);
    });
    worker
        .run(&stop)
        .await
        .with_context(|| format!("worker {name}"))
}

async fn dead_letter_scenario(
    server: &lab::RedisServer,
    client: &redis::Client,
    messages: u64,
    claim_idle: Duration,
) -> Result<()> {
    let mut con = patient_connection(client).await?;
    let keys = Keys::new(&lab::unique_channel("ch08:jobs"), "workers");
    create_group(&mut con, &keys).await?;
    // One job in 500 is poison: its handler always fails.
    let is_poison = |seq: u64| seq % 500 == 250;
    let poison = (0..messages).filter(|&seq| is_poison(seq)).count() as u64;
    println!(
        "dead letters: {messages} jobs, {poison} of them poison, 3 workers, at most \
         {MAX_DELIVERIES} deliveries each"
    );
    let workers = (1..=3)
        .map(|n| spawn_worker(server.url(), &keys, &format!("worker-{n}"), claim_idle))
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    produce(
        patient_connection(client).await?,
        keys.clone(),
        0..messages,
        messages as usize,
        is_poison,
    )
    .await?;
    wait_until(&mut con, &keys, Duration::from_secs(60), |p| {
        p.handled + p.dead_lettered >= messages
    })
    .await?;
    let elapsed = started.elapsed();
    stop_workers(workers).await?;
    let result = outcome(&mut con, &keys).await?;

    // What the dead-letter stream says about each parked job.
    let parked: redis::streams::StreamRangeReply = con.xrange_all(&keys.dead_letter).await?;
    let attempts: HashMap<u64, u64> = con.hgetall(&keys.attempts).await?;
    let mut poison_attempts = Vec::new();
    for entry in &parked.ids {
        let payload: Vec<u8> = entry.get("payload").unwrap_or_default();
        let seq = lab::seq_of(&payload)
            .map_err(|error| anyhow::anyhow!("dead letter {}: {error:?}", entry.id))?;
        poison_attempts.push(attempts.get(&seq).copied().unwrap_or(0));
    }
    if let Some(first) = parked.ids.first() {
        let deliveries: String = first.get("deliveries").unwrap_or_default();
        let id: String = first.get("id").unwrap_or_default();
        println!(
            "  first dead letter: original id {id}, parked on delivery {deliveries}, \
             after {} failed handler calls",
            poison_attempts[0]
        );
    }
    let min_attempts = poison_attempts.iter().copied().min().unwrap_or(0);
    let max_attempts = poison_attempts.iter().copied().max().unwrap_or(0);
    println!(
        "  {} jobs handled, {} dead-lettered in {elapsed:.1?}; handler calls per poison \
         job: {min_attempts}..={max_attempts}",
        result.handled, result.dead_lettered
    );
    // Accounted for = handled, or parked with its reason: nothing vanished.
    lab::ResultLine::new(
        "dead-letter",
        lab::REDIS_CURRENT,
        messages,
        result.handled + result.dead_lettered,
        0,
    )
    .with("handled", result.handled)
    .with("poison", poison)
    .with("dead_lettered", result.dead_lettered)
    .with("max_deliveries", MAX_DELIVERIES)
    .with("min_attempts_per_poison", min_attempts)
    .with("max_attempts_per_poison", max_attempts)
    .with("twice", result.twice)
    .with("pending", result.pending)
    .print();
    Ok(())
}
