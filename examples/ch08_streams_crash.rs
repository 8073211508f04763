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

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamMaxlen, StreamPendingCountReply,
    StreamPendingReply, StreamReadOptions, StreamReadReply,
};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

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

// ---------------------------------------------------------------------------------------
// The worker
// ---------------------------------------------------------------------------------------

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

// ANCHOR: handle_once
/// The work and its dedup marker, in one atomic step. `SET NX` succeeds only the first time
/// a message id is seen; only then does the work run. A worker killed after this script
/// but before its XACK gets the message redelivered, and the second run returns 0.
///
/// KEYS: 1 the message's dedup marker, 2 the effects hash, 3 the attempts hash,
/// 4 the dedup counter. ARGV: 1 the job's number, 2 the marker's TTL in seconds.
const HANDLE_ONCE: &str = r"
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  -- The work. In this lab it counts itself, so that the parent can check afterwards
  -- how many times each job's work happened.
  redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
  return 1
end
redis.call('INCR', KEYS[4])
return 0
";
// ANCHOR_END: handle_once

struct Worker {
    con: MultiplexedConnection,
    keys: Keys,
    name: String,
    claim_idle: Duration,
    /// The SHA1 of HANDLE_ONCE, loaded once with SCRIPT LOAD, run with EVALSHA.
    handle_once: String,
}

/// Why a handler refused a message. Left pending, the message comes back later.
#[derive(Debug)]
struct HandlerFailed(String);

impl Worker {
    // ANCHOR: worker_loop
    /// Read, handle, acknowledge, until `stop` is set. Each round first takes over messages
    /// that another consumer has held for longer than `claim_idle` (it probably died), then
    /// reads new ones.
    async fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        let keys = self.keys.clone();
        let mut claim_cursor = "0-0".to_string();
        let read_new = StreamReadOptions::default()
            .group(&keys.group, &self.name)
            .count(BATCH)
            // Well under the connection's response timeout: a blocked read is a reply too.
            .block(100);
        while !stop.load(Ordering::Relaxed) {
            // 1. Messages idle in someone's pending list for longer than claim_idle become
            //    ours; Redis counts this as another delivery. The cursor walks the pending
            //    list; "0-0" means it wrapped around.
            let claimed: StreamAutoClaimReply = self
                .con
                .xautoclaim_options(
                    &keys.stream,
                    &keys.group,
                    &self.name,
                    self.claim_idle.as_millis() as u64,
                    &claim_cursor,
                    StreamAutoClaimOptions::default().count(BATCH),
                )
                .await?;
            claim_cursor = claimed.next_stream_id;
            if !claimed.claimed.is_empty() {
                let deliveries = self.delivery_counts(&claimed.claimed).await?;
                self.process(claimed.claimed, &deliveries).await?;
            }

            // 2. Messages never delivered to anyone in the group (">").
            let reply: Option<StreamReadReply> = self
                .con
                .xread_options(&[&keys.stream], &[">"], &read_new)
                .await?;
            for stream in reply.map(|r| r.keys).unwrap_or_default() {
                // First delivery: no need to ask for the counter.
                self.process(stream.ids, &HashMap::new()).await?;
            }
        }
        Ok(())
    }
    // ANCHOR_END: worker_loop

    // ANCHOR: process
    /// Handle a batch, then acknowledge what was handled. A message over its delivery
    /// budget goes to the dead-letter stream; one whose handler failed stays pending and
    /// comes back after `claim_idle`.
    async fn process(
        &mut self,
        batch: Vec<StreamId>,
        deliveries: &HashMap<String, usize>,
    ) -> Result<()> {
        let mut handled = Vec::with_capacity(batch.len());
        for message in &batch {
            let delivered = deliveries.get(&message.id).copied().unwrap_or(1);
            if delivered > MAX_DELIVERIES {
                self.dead_letter(message, delivered).await?;
                continue;
            }
            match self.handle(message).await? {
                Ok(()) => handled.push(message.id.as_str()),
                Err(HandlerFailed(_why)) => {} // no XACK: it will be redelivered
            }
        }
        // XACK only after the work. Killed before this line, the whole batch is
        // redelivered: at-least-once, never at-most-once.
        if !handled.is_empty() {
            let _acked: usize = self
                .con
                .xack(&self.keys.stream, &self.keys.group, &handled)
                .await?;
        }
        Ok(())
    }
    // ANCHOR_END: process

    /// Run the handler on one message. The outer `Result` is a Redis error (stop the
    /// worker); the inner one is the handler's verdict.
    async fn handle(&mut self, message: &StreamId) -> Result<Result<(), HandlerFailed>> {
        let payload: Vec<u8> = message
            .get("payload")
            .with_context(|| format!("message {} has no payload field", message.id))?;
        let seq = lab::seq_of(&payload)
            .map_err(|error| anyhow::anyhow!("message {}: {error:?}", message.id))?;
        if message.contains_key("poison") {
            // A job this handler can never complete (bad data, a bug). Counted, then refused.
            let _: u64 = self.con.hincr(&self.keys.attempts, seq, 1).await?;
            return Ok(Err(HandlerFailed(format!("job {seq} is poison"))));
        }
        let _first_time: u64 = redis::cmd("EVALSHA")
            .arg(&self.handle_once)
            .arg(4)
            .arg(self.keys.dedup_marker(&message.id))
            .arg(&self.keys.effects)
            .arg(&self.keys.attempts)
            .arg(&self.keys.deduplicated)
            .arg(seq)
            .arg(DEDUP_TTL_SECS)
            .query_async(&mut self.con)
            .await?;
        Ok(Ok(()))
    }

    // ANCHOR: delivery_counts
    /// How many times each claimed message has been delivered, from the group's pending
    /// entries list (XPENDING's fourth field). XAUTOCLAIM has just added one.
    async fn delivery_counts(&mut self, batch: &[StreamId]) -> Result<HashMap<String, usize>> {
        let mut pipe = redis::pipe();
        for message in batch {
            pipe.xpending_count(
                &self.keys.stream,
                &self.keys.group,
                &message.id,
                &message.id,
                1,
            );
        }
        let replies: Vec<StreamPendingCountReply> = pipe.query_async(&mut self.con).await?;
        Ok(replies
            .into_iter()
            .flat_map(|reply| reply.ids)
            .map(|pending| (pending.id, pending.times_delivered))
            .collect())
    }
    // ANCHOR_END: delivery_counts

    // ANCHOR: dead_letter
    /// Park a message that failed too often: copy it to the dead-letter stream with why,
    /// and acknowledge it, in one MULTI/EXEC so that it is never in both places or neither.
    async fn dead_letter(&mut self, message: &StreamId, delivered: usize) -> Result<()> {
        let payload: Vec<u8> = message.get("payload").unwrap_or_default();
        let fields: [(&str, Vec<u8>); 4] = [
            ("id", message.id.clone().into_bytes()),
            ("payload", payload),
            ("deliveries", delivered.to_string().into_bytes()),
            ("consumer", self.name.clone().into_bytes()),
        ];
        redis::pipe()
            .atomic()
            .xadd(&self.keys.dead_letter, "*", &fields)
            .ignore()
            .xack(&self.keys.stream, &self.keys.group, &[&message.id])
            .ignore()
            .exec_async(&mut self.con)
            .await?;
        Ok(())
    }
    // ANCHOR_END: dead_letter
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

// ---------------------------------------------------------------------------------------
// The parent: producer, supervisor, judge
// ---------------------------------------------------------------------------------------

/// A worker process and the pipe whose closing tells it to stop.
struct WorkerProcess {
    name: String,
    child: Child,
}

fn spawn_worker(url: &str, keys: &Keys, name: &str, claim_idle: Duration) -> Result<WorkerProcess> {
    let exe = std::env::current_exe().context("finding this program to start a worker")?;
    let child = Command::new(exe)
        .args([
            "--consumer",
            name,
            "--stream",
            &keys.stream,
            "--group",
            &keys.group,
        ])
        .args(["--claim-idle-ms", &claim_idle.as_millis().to_string()])
        .env(URL_VAR, url)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting worker {name}"))?;
    Ok(WorkerProcess {
        name: name.to_string(),
        child,
    })
}

/// Close every worker's stdin and wait for it to finish its batch and exit.
async fn stop_workers(workers: Vec<WorkerProcess>) -> Result<()> {
    for mut worker in workers {
        drop(worker.child.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(10), worker.child.wait())
            .await
            .with_context(|| format!("worker {} did not stop within 10 s", worker.name))??;
        ensure!(status.success(), "worker {} failed ({status})", worker.name);
    }
    Ok(())
}

/// Make the stream and its consumer group (reading from the start).
async fn create_group(con: &mut MultiplexedConnection, keys: &Keys) -> Result<()> {
    let () = con
        .xgroup_create_mkstream(&keys.stream, &keys.group, "0")
        .await
        .context("XGROUP CREATE")?;
    Ok(())
}

// ANCHOR: produce
/// Add jobs `seqs` to the stream, 1000 XADDs per pipeline. `MAXLEN ~ cap` keeps the stream
/// from growing without bound; `~` lets Redis trim whole internal nodes, which is much
/// cheaper than trimming to the exact length. Trimming ignores consumer groups: the cap
/// must stay above the largest backlog, or unread and pending messages are deleted.
async fn produce(
    mut con: MultiplexedConnection,
    keys: Keys,
    seqs: std::ops::Range<u64>,
    cap: usize,
    is_poison: impl Fn(u64) -> bool,
) -> Result<()> {
    let seqs: Vec<u64> = seqs.collect();
    for chunk in seqs.chunks(1000) {
        let mut pipe = redis::pipe();
        for &seq in chunk {
            let mut fields = vec![("payload", lab::numbered(seq, 32))];
            if is_poison(seq) {
                fields.push(("poison", b"1".to_vec()));
            }
            pipe.xadd_maxlen(&keys.stream, StreamMaxlen::Approx(cap), "*", &fields)
                .ignore();
        }
        pipe.exec_async(&mut con).await.context("XADD")?;
    }
    Ok(())
}
// ANCHOR_END: produce

/// What the workers left in Redis, read by the parent.
#[derive(Debug, Default)]
struct Outcome {
    /// Jobs whose work happened at least once.
    handled: u64,
    /// Jobs whose work happened more than once (must be 0).
    twice: u64,
    /// Handler calls in total (first deliveries and redeliveries).
    handler_calls: u64,
    /// Jobs delivered to the handler more than once.
    redelivered: u64,
    /// Deliveries the dedup marker turned into no-ops.
    deduplicated: u64,
    /// Entries in the dead-letter stream.
    dead_lettered: u64,
    /// Messages still pending (delivered, not acknowledged) in the group.
    pending: u64,
}

async fn outcome(con: &mut MultiplexedConnection, keys: &Keys) -> Result<Outcome> {
    let effects: HashMap<u64, u64> = con.hgetall(&keys.effects).await?;
    let attempts: HashMap<u64, u64> = con.hgetall(&keys.attempts).await?;
    let deduplicated: Option<u64> = con.get(&keys.deduplicated).await?;
    let dead_lettered: u64 = con.xlen(&keys.dead_letter).await?;
    let pending: StreamPendingReply = con.xpending(&keys.stream, &keys.group).await?;
    Ok(Outcome {
        handled: effects.len() as u64,
        twice: effects.values().filter(|&&n| n > 1).count() as u64,
        handler_calls: attempts.values().sum(),
        redelivered: attempts.values().filter(|&&n| n > 1).count() as u64,
        deduplicated: deduplicated.unwrap_or(0),
        dead_lettered,
        pending: pending.count() as u64,
    })
}

/// Progress, cheap enough to poll: jobs handled, parked, and messages pending.
#[derive(Clone, Copy, Debug)]
struct Progress {
    handled: u64,
    dead_lettered: u64,
    pending: u64,
}

async fn progress(con: &mut MultiplexedConnection, keys: &Keys) -> Result<Progress> {
    let (handled, dead_lettered, pending): (u64, u64, StreamPendingReply) = redis::pipe()
        .hlen(&keys.effects)
        .xlen(&keys.dead_letter)
        .xpending(&keys.stream, &keys.group)
        .query_async(con)
        .await?;
    Ok(Progress {
        handled,
        dead_lettered,
        pending: pending.count() as u64,
    })
}

/// Poll until `done(progress)` holds and nothing is pending, or `limit` passes.
async fn wait_until(
    con: &mut MultiplexedConnection,
    keys: &Keys,
    limit: Duration,
    done: impl Fn(&Progress) -> bool,
) -> Result<Progress> {
    let deadline = Instant::now() + limit;
    loop {
        let now = progress(con, keys).await?;
        if (done(&now) && now.pending == 0) || Instant::now() > deadline {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many messages `consumer` holds: delivered to it, not acknowledged.
async fn pending_of(con: &mut MultiplexedConnection, keys: &Keys, consumer: &str) -> Result<usize> {
    let pending: StreamPendingReply = con.xpending(&keys.stream, &keys.group).await?;
    Ok(match pending {
        StreamPendingReply::Data(data) => data
            .consumers
            .iter()
            .find(|c| c.name == consumer)
            .map_or(0, |c| c.pending),
        _ => 0, // Empty (and any future variant): nothing pending
    })
}

/// What a killed worker held: messages delivered to it and not acknowledged, and how many
/// of those it had already handled (their dedup marker exists).
async fn held_by(
    con: &mut MultiplexedConnection,
    keys: &Keys,
    consumer: &str,
) -> Result<(u64, u64)> {
    let pending: StreamPendingCountReply = con
        .xpending_consumer_count(&keys.stream, &keys.group, "-", "+", 10 * BATCH, consumer)
        .await?;
    let mut handled = 0;
    for entry in &pending.ids {
        let exists: bool = con.exists(keys.dedup_marker(&entry.id)).await?;
        handled += u64::from(exists);
    }
    Ok((pending.ids.len() as u64, handled))
}

async fn crash_scenario(
    server: &lab::RedisServer,
    client: &redis::Client,
    messages: u64,
    kills: usize,
    claim_idle: Duration,
) -> Result<()> {
    let mut con = patient_connection(client).await?;
    let keys = Keys::new(&lab::unique_channel("ch08:jobs"), "workers");
    create_group(&mut con, &keys).await?;
    println!(
        "crash test: {messages} jobs, 3 workers, worker 3 killed {kills} times \
         (claim idle {claim_idle:?})"
    );

    // ANCHOR: crash
    let mut workers = vec![
        spawn_worker(server.url(), &keys, "worker-1", claim_idle)?,
        spawn_worker(server.url(), &keys, "worker-2", claim_idle)?,
        spawn_worker(server.url(), &keys, "worker-3.0", claim_idle)?,
    ];
    let started = Instant::now();
    let producer = tokio::spawn(produce(
        patient_connection(client).await?,
        keys.clone(),
        0..messages,
        messages as usize,
        |_| false,
    ));

    let mut kill_reports = Vec::new();
    let mut restarts = 0;
    'kills: for kill in 1..=kills {
        // Let the work get along: kill k comes after k / (kills + 1) of the jobs are done...
        let target = messages * kill as u64 / (kills as u64 + 1);
        while progress(&mut con, &keys).await?.handled < target {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        loop {
            // ...while the victim holds delivered, unacknowledged messages: mid-batch.
            let mut victim = workers.pop().context("no worker to kill")?;
            while pending_of(&mut con, &keys, &victim.name).await? == 0 {
                if progress(&mut con, &keys).await?.handled >= messages {
                    // Too few jobs left to catch the victim holding any: stop killing.
                    workers.push(victim);
                    break 'kills;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            victim.child.kill().await?; // SIGKILL: no cleanup, no XACK, no goodbye
            let (held, already_handled) = held_by(&mut con, &keys, &victim.name).await?;
            println!(
                "  kill {kill}: SIGKILL {} at {:.1?}, holding {held} unacknowledged messages, \
                 {already_handled} of them already handled{}",
                victim.name,
                started.elapsed(),
                if held == 0 {
                    " (between batches: again)"
                } else {
                    ""
                }
            );
            // The supervisor starts a replacement under a new name; the old name's pending
            // messages are taken over by XAUTOCLAIM, by whichever worker gets there first.
            restarts += 1;
            workers.push(spawn_worker(
                server.url(),
                &keys,
                &format!("worker-3.{restarts}"),
                claim_idle,
            )?);
            if held > 0 {
                kill_reports.push((held, already_handled));
                break;
            }
            // The worker acknowledged its batch between our look and the signal: that kill
            // was between batches, which tests nothing. Kill its successor instead.
        }
    }
    producer.await??;
    let limit = Duration::from_secs(120);
    wait_until(&mut con, &keys, limit, |p| p.handled >= messages).await?;
    let elapsed = started.elapsed();
    stop_workers(workers).await?;
    let result = outcome(&mut con, &keys).await?;
    // ANCHOR_END: crash

    // Killed with part of its batch handled: the hardest case for "exactly once".
    let partly_handled = kill_reports
        .iter()
        .filter(|&&(held, handled)| handled > 0 && handled < held)
        .count();
    println!(
        "  {} of {messages} jobs handled in {elapsed:.1?}; {} handler calls; {} jobs \
         delivered more than once; {} redeliveries deduplicated; {} jobs whose work ran twice",
        result.handled, result.handler_calls, result.redelivered, result.deduplicated, result.twice
    );
    lab::ResultLine::new(
        &format!("crash-{kills}-kills"),
        lab::REDIS_CURRENT,
        messages,
        result.handled,
        0,
    )
    .with("kills", kill_reports.len())
    .with("mid_batch_kills", kill_reports.len())
    .with("partly_handled_kills", partly_handled)
    .with("kill_signals", restarts)
    .with(
        "held_at_kill",
        kill_reports.iter().map(|r| r.0).sum::<u64>(),
    )
    .with(
        "handled_unacked_at_kill",
        kill_reports.iter().map(|r| r.1).sum::<u64>(),
    )
    .with("redelivered", result.redelivered)
    .with("deduplicated", result.deduplicated)
    .with("twice", result.twice)
    .with("dead_lettered", result.dead_lettered)
    .with("pending", result.pending)
    .with(
        "msg_per_s",
        format!("{:.0}", messages as f64 / elapsed.as_secs_f64()),
    )
    .print();
    Ok(())
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
