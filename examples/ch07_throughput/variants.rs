//! The subscribers under test, each run in a process of its own (`--variant NAME`).
//!
//! Every design does the same work per message: read the sequence number from the payload and
//! record it in a [`Tally`] (the "handler"). What differs is how the message gets from the
//! socket to that handler: which runtime, whether it crosses a thread, a queue or a batch.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use futures::{Stream, StreamExt};
use lab::Tally;
use lab::overflow::{Overflow, bounded};
use redis::{PushInfo, PushKind, Value};

use crate::measure;

/// The subscriber designs the benchmark compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Variant {
    /// `redis-cli subscribe CHANNEL > /dev/null`: the C reference.
    Cli,
    /// One long-lived `on_message()` stream on the default multi-thread runtime (chapter 4),
    /// read in `main` (the future `block_on` runs, as `#[tokio::main]` does).
    StreamMt,
    /// The same loop on the multi-thread runtime, inside a spawned task.
    StreamMtTask,
    /// The same stream on a current-thread runtime.
    StreamCt,
    /// The stream, batched with `ready_chunks(256)`, current-thread.
    ChunksCt,
    /// Reader task -> bounded queue with an overflow policy -> worker task (chapter 5),
    /// on the multi-thread runtime.
    QueueMt,
    /// The same queue design on a current-thread runtime.
    QueueCt,
    /// RESP3: a multiplexed connection with an unbounded push sender, current-thread.
    Resp3Ct,
}

impl Variant {
    /// Every design, in table order.
    pub const ALL: [Variant; 8] = [
        Variant::Cli,
        Variant::StreamMt,
        Variant::StreamMtTask,
        Variant::StreamCt,
        Variant::ChunksCt,
        Variant::QueueMt,
        Variant::QueueCt,
        Variant::Resp3Ct,
    ];

    /// The name on the command line and in RESULT lines.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Cli => "cli",
            Variant::StreamMt => "stream-mt",
            Variant::StreamMtTask => "stream-mt-task",
            Variant::StreamCt => "stream-ct",
            Variant::ChunksCt => "chunks-ct",
            Variant::QueueMt => "queue-mt",
            Variant::QueueCt => "queue-ct",
            Variant::Resp3Ct => "resp3-ct",
        }
    }

    /// What the table calls it.
    pub fn describe(self) -> &'static str {
        match self {
            Variant::Cli => "`redis-cli subscribe ch > /dev/null` (C)",
            Variant::StreamMt => "`on_message()` stream in `main`, multi-thread runtime",
            Variant::StreamMtTask => "`on_message()` stream in a spawned task, multi-thread",
            Variant::StreamCt => "`on_message()` stream, current-thread runtime",
            Variant::ChunksCt => "`ready_chunks(256)`, current-thread",
            Variant::QueueMt => "bounded queue (ch. 5) + worker, multi-thread",
            Variant::QueueCt => "bounded queue (ch. 5) + worker, current-thread",
            Variant::Resp3Ct => "RESP3 push sender (unbounded), current-thread",
        }
    }

    /// The `client=` of its RESULT lines.
    pub fn client(self) -> &'static str {
        match self {
            Variant::Cli => "redis-cli",
            _ => lab::REDIS_CURRENT,
        }
    }

    /// True for the designs that run on a multi-thread runtime.
    pub fn multi_thread(self) -> bool {
        matches!(
            self,
            Variant::StreamMt | Variant::StreamMtTask | Variant::QueueMt
        )
    }
}

/// What the parent told the child process.
pub struct ChildArgs {
    pub variant: Variant,
    pub url: String,
    pub channel: String,
    pub count: u64,
    pub latency: bool,
}

/// Run one design in this process, on the runtime it is measured on.
pub fn run_child(args: ChildArgs) -> Result<()> {
    // ANCHOR: runtime
    // The runtime is part of the design being measured, so each process builds its own:
    // `#[tokio::main]` would give every design the multi-thread runtime.
    let runtime = if args.variant.multi_thread() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
    .enable_all()
    .build()?;
    // ANCHOR_END: runtime
    runtime.block_on(async move {
        let client = redis::Client::open(args.url.as_str()).context("child: bad URL")?;
        let bench = Bench::new(args.count, args.latency);
        let channel = args.channel.as_str();
        match args.variant {
            Variant::Cli => bail!("redis-cli is not a Rust variant"),
            Variant::StreamMt | Variant::StreamCt => plain_stream(&client, channel, bench).await,
            // ANCHOR: spawned
            Variant::StreamMtTask => {
                // The same loop, but as a task: it runs on a worker thread, like the task
                // that reads the socket, instead of on the thread that called `block_on`.
                let channel = channel.to_string();
                tokio::spawn(async move { plain_stream(&client, &channel, bench).await }).await?
            }
            // ANCHOR_END: spawned
            Variant::ChunksCt => chunks(&client, channel, bench).await,
            Variant::QueueMt | Variant::QueueCt => queue(&client, channel, bench).await,
            Variant::Resp3Ct => resp3(&client, channel, bench).await,
        }
    })
}

// ANCHOR: plain
/// Chapter 4's subscriber: one long-lived stream, the handler called on each message.
async fn plain_stream(client: &redis::Client, channel: &str, mut bench: Bench) -> Result<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let mut messages = pubsub.on_message();
    bench.ready();
    while !bench.finished(0) {
        let Some(msg) = bench.next(&mut messages).await else {
            break; // the stream ended or went quiet
        };
        bench.handle(msg.get_payload_bytes());
    }
    bench.done(0)
}
// ANCHOR_END: plain

// ANCHOR: chunks
/// The same stream, taking whatever messages are ready at once (up to 256) as one batch.
async fn chunks(client: &redis::Client, channel: &str, mut bench: Bench) -> Result<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let mut batches = pubsub.on_message().ready_chunks(256);
    bench.ready();
    while !bench.finished(0) {
        let Some(batch) = bench.next(&mut batches).await else {
            break;
        };
        for msg in &batch {
            bench.handle(msg.get_payload_bytes());
        }
    }
    bench.done(0)
}
// ANCHOR_END: chunks

// ANCHOR: queue
/// Chapter 5's design: a reader task drains the stream into a bounded queue that drops (and
/// counts) when full; a worker task runs the handler.
async fn queue(client: &redis::Client, channel: &str, mut bench: Bench) -> Result<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let mut messages = pubsub.into_on_message();
    let (tx, mut rx) = bounded(QUEUE_CAPACITY, Overflow::DropNewest);
    let count = bench.count;
    let mut idle = Idle::default();
    bench.ready();
    let reader = tokio::spawn(async move {
        // The reader never waits for the handler: `push` returns at once, queued or dropped.
        for _ in 0..count {
            let Some(msg) = idle.next(&mut messages).await else {
                break;
            };
            let _dropped_and_counted = tx.push(msg);
        }
        tx.close(); // the worker drains what is queued, then sees `None`
        tx.stats().dropped()
    });
    while let Some(msg) = rx.recv().await {
        bench.handle(msg.get_payload_bytes());
    }
    let dropped = reader.await?;
    bench.done(dropped)
}
// ANCHOR_END: queue

/// Room for a burst: 64k messages (a few MB at these payload sizes).
const QUEUE_CAPACITY: usize = 65_536;

// ANCHOR: resp3
/// RESP3: no dedicated Pub/Sub connection; the multiplexed connection hands every push
/// (messages, subscribe confirmations, a disconnection notice) to a sender we give it.
async fn resp3(client: &redis::Client, channel: &str, mut bench: Bench) -> Result<()> {
    let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel::<PushInfo>();
    let config = redis::AsyncConnectionConfig::new().set_push_sender(tx);
    let resp3 = redis::Client::open(with_resp3(client))?;
    let mut con = resp3
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    con.subscribe(channel).await?;
    bench.ready();
    while !bench.finished(0) {
        let Some(push) = bench.next_push(&mut pushes).await else {
            break;
        };
        match (push.kind, push.data.get(1)) {
            (PushKind::Message, Some(Value::BulkString(payload))) => bench.handle(payload),
            (PushKind::Disconnection, _) => break,
            _ => {} // subscribe confirmations
        }
    }
    bench.done(0)
}
// ANCHOR_END: resp3

/// The client's URL with `protocol=resp3`.
fn with_resp3(client: &redis::Client) -> String {
    let info = client.get_connection_info();
    format!("redis://{}/?protocol=resp3", info.addr())
}

/// Waits for the next item: without limit for the first one (the process may sit stopped
/// while the parent publishes), then at most [`Idle::QUIET`] between items, so that a lost
/// message ends the run instead of hanging it.
#[derive(Default)]
pub struct Idle {
    started: bool,
}

impl Idle {
    const QUIET: Duration = Duration::from_secs(5);

    pub async fn next<S: Stream + Unpin>(&mut self, stream: &mut S) -> Option<S::Item> {
        self.wait(stream.next()).await
    }

    pub async fn wait<T>(&mut self, next: impl Future<Output = Option<T>>) -> Option<T> {
        if !self.started {
            self.started = true;
            return next.await;
        }
        tokio::time::timeout(Self::QUIET, next).await.ok().flatten()
    }
}

/// The handler every design calls, and the process's measurements.
pub struct Bench {
    count: u64,
    tally: Tally,
    bad_payloads: u64,
    idle: Idle,
    // Latency mode: publish -> handler, in microseconds, one entry per message.
    latencies: Option<Vec<u64>>,
    cpu_at_ready: Duration,
    sleeps_at_ready: u64,
}

impl Bench {
    pub fn new(count: u64, latency: bool) -> Self {
        Self {
            count,
            tally: Tally::new(count),
            bad_payloads: 0,
            idle: Idle::default(),
            latencies: latency.then(|| Vec::with_capacity(count as usize)),
            cpu_at_ready: Duration::ZERO,
            sleeps_at_ready: 0,
        }
    }

    /// Subscribed: start counting CPU time and tell the parent (which then publishes).
    pub fn ready(&mut self) {
        self.cpu_at_ready = measure::own_cpu();
        self.sleeps_at_ready = measure::own_sleeps();
        println!("READY");
    }

    /// The next item of `stream`, or `None` when it ended or stayed quiet too long.
    pub async fn next<S: Stream + Unpin>(&mut self, stream: &mut S) -> Option<S::Item> {
        self.idle.next(stream).await
    }

    /// The same for a Tokio channel receiver.
    async fn next_push(
        &mut self,
        pushes: &mut tokio::sync::mpsc::UnboundedReceiver<PushInfo>,
    ) -> Option<PushInfo> {
        self.idle.wait(pushes.recv()).await
    }

    /// The handler: read the sequence number, record it.
    #[inline]
    pub fn handle(&mut self, payload: &[u8]) {
        match lab::seq_of(payload) {
            Ok(seq) => self.tally.record(seq),
            Err(_) => self.bad_payloads += 1,
        }
        if let Some(latencies) = &mut self.latencies
            && let Some(sent_ns) = sent_at(payload)
        {
            let now = measure::unix_nanos();
            latencies.push(now.saturating_sub(sent_ns) / 1_000);
        }
    }

    /// True once every message arrived or was reported dropped.
    pub fn finished(&self, noticed: u64) -> bool {
        self.tally.received() + noticed >= self.count
    }

    /// Tell the parent we are done (it stops the clock when it reads `DONE`), then report.
    pub fn done(self, noticed: u64) -> Result<()> {
        println!("DONE");
        let cpu = measure::own_cpu().saturating_sub(self.cpu_at_ready);
        let sleeps = measure::own_sleeps().saturating_sub(self.sleeps_at_ready);
        let mut stats = format!(
            "STATS received={} noticed={} bad={} cpu_s={:.6} sleeps={sleeps} peak_rss_mb={:.1} \
             out_of_order={}",
            self.tally.received(),
            noticed,
            self.bad_payloads,
            cpu.as_secs_f64(),
            lab::mem::peak_rss_mb().unwrap_or(0.0),
            self.tally.out_of_order(),
        );
        if let Some(mut latencies) = self.latencies {
            latencies.sort_unstable();
            let at = |q: f64| {
                latencies
                    .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
                    .copied()
                    .unwrap_or(0)
            };
            stats += &format!(" p50_us={} p99_us={} max_us={}", at(0.5), at(0.99), at(1.0));
        }
        println!("{stats}");
        Ok(())
    }
}

/// Latency payloads are `<seq>#<unix nanos>#....`: the publisher's clock when it sent them.
fn sent_at(payload: &[u8]) -> Option<u64> {
    let rest = &payload[payload.iter().position(|&b| b == b'#')? + 1..];
    let digits = &rest[..rest.iter().position(|&b| b == b'#')?];
    std::str::from_utf8(digits).ok()?.parse().ok()
}
