//! What every design shares: its name on the command line ([`Variant`]), what the parent
//! tells the child process ([`ChildArgs`]), and the [`Bench`] that waits for messages,
//! counts and times them, and reports to the parent.

use std::time::Duration;

use anyhow::Result;
use clap::ValueEnum;
use futures::{Stream, StreamExt};
use lab::Tally;
use redis::PushInfo;

use crate::measure;
use crate::variants::QUEUE_CAPACITY;

/// The subscriber designs the benchmark compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Variant {
    /// `redis-cli subscribe CHANNEL > /dev/null`: the C reference.
    Cli,
    /// Not a subscriber: read the socket and count bytes, parse nothing. How fast Redis can
    /// feed one connection here: the ceiling for every design.
    Raw,
    /// One long-lived `on_message()` stream on the default multi-thread runtime (chapter 4),
    /// read in `main` (the future `block_on` runs, as `#[tokio::main]` does).
    StreamMt,
    /// The same loop on the multi-thread runtime, inside a spawned task.
    StreamMtTask,
    /// The same stream on a current-thread runtime.
    StreamCt,
    /// The stream, batched with `ready_chunks(256)`, current-thread.
    ChunksCt,
    /// RESP3 push sender -> bounded queue with an overflow policy -> worker task (chapter 5's
    /// design 4), on the multi-thread runtime.
    PushQueueMt,
    /// The same on a current-thread runtime.
    PushQueueCt,
    /// Reader task -> bounded queue -> worker task, behind the stream of
    /// `get_async_pubsub()` (chapter 5's counter-example), on the multi-thread runtime.
    QueueMt,
    /// The same counter-example on a current-thread runtime.
    QueueCt,
    /// RESP3: a multiplexed connection with an unbounded push sender, current-thread.
    Resp3Ct,
    /// Chapter 6's production subscriber (`lab::production`, default configuration) on the
    /// multi-thread runtime.
    ProductionMt,
    /// The same on a current-thread runtime.
    ProductionCt,
}

impl Variant {
    /// Every design, in table order.
    pub const ALL: [Variant; 13] = [
        Variant::Cli,
        Variant::Raw,
        Variant::StreamMt,
        Variant::StreamMtTask,
        Variant::StreamCt,
        Variant::ChunksCt,
        Variant::PushQueueMt,
        Variant::PushQueueCt,
        Variant::QueueMt,
        Variant::QueueCt,
        Variant::Resp3Ct,
        Variant::ProductionMt,
        Variant::ProductionCt,
    ];

    /// The name on the command line and in RESULT lines.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Cli => "cli",
            Variant::Raw => "raw",
            Variant::StreamMt => "stream-mt",
            Variant::StreamMtTask => "stream-mt-task",
            Variant::StreamCt => "stream-ct",
            Variant::ChunksCt => "chunks-ct",
            Variant::PushQueueMt => "push-queue-mt",
            Variant::PushQueueCt => "push-queue-ct",
            Variant::QueueMt => "queue-mt",
            Variant::QueueCt => "queue-ct",
            Variant::Resp3Ct => "resp3-ct",
            Variant::ProductionMt => "production-mt",
            Variant::ProductionCt => "production-ct",
        }
    }

    /// What the table calls it.
    pub fn describe(self) -> &'static str {
        match self {
            Variant::Cli => "`redis-cli subscribe ch > /dev/null` (C)",
            Variant::Raw => "raw socket read, no parsing (the ceiling of this method)",
            Variant::StreamMt => "`on_message()` stream in `main`, multi-thread runtime",
            Variant::StreamMtTask => "`on_message()` stream in a spawned task, multi-thread",
            Variant::StreamCt => "`on_message()` stream, current-thread runtime",
            Variant::ChunksCt => "`ready_chunks(256)`, current-thread",
            Variant::PushQueueMt => {
                "push sender into a bounded queue (ch. 5) + worker, multi-thread"
            }
            Variant::PushQueueCt => {
                "push sender into a bounded queue (ch. 5) + worker, current-thread"
            }
            Variant::QueueMt => {
                "bounded queue behind the library's unbounded channel (counter-example), \
                 multi-thread"
            }
            Variant::QueueCt => {
                "bounded queue behind the library's unbounded channel (counter-example), \
                 current-thread"
            }
            Variant::Resp3Ct => "RESP3 push sender (unbounded), current-thread",
            Variant::ProductionMt => "production subscriber (ch. 6), multi-thread",
            Variant::ProductionCt => "production subscriber (ch. 6), current-thread",
        }
    }

    /// The `client=` of its RESULT lines.
    pub fn client(self) -> &'static str {
        match self {
            Variant::Cli => "redis-cli",
            Variant::Raw => "raw-socket",
            _ => lab::REDIS_CURRENT,
        }
    }

    /// How many messages the design's queues hold, for the designs the book calls bounded:
    /// their memory bound is idle + this x bytes per queued message + 30 MB.
    pub fn queue_capacity(self) -> Option<usize> {
        match self {
            Variant::PushQueueMt | Variant::PushQueueCt => Some(QUEUE_CAPACITY),
            Variant::ProductionMt | Variant::ProductionCt => {
                let defaults = lab::production::Config::new("redis://unused", ["unused"]);
                Some(defaults.workers * defaults.queue_capacity)
            }
            _ => None,
        }
    }

    /// True for the designs that run on a multi-thread runtime.
    pub fn multi_thread(self) -> bool {
        matches!(
            self,
            Variant::StreamMt
                | Variant::StreamMtTask
                | Variant::PushQueueMt
                | Variant::QueueMt
                | Variant::ProductionMt
        )
    }
}

/// What the parent told the child process.
pub struct ChildArgs {
    pub variant: Variant,
    pub url: String,
    pub channel: String,
    pub count: u64,
    pub size: usize,
    pub latency: bool,
}

/// Waits for the next item: without limit for the first one (the process may sit stopped
/// while the parent publishes), then at most [`Idle::QUIET`] between items, so that a lost
/// message ends the run instead of hanging it.
#[derive(Default)]
pub struct Idle {
    started: bool,
}

impl Idle {
    pub const QUIET: Duration = Duration::from_secs(5);

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
    pub count: u64,
    pub tally: Tally,
    pub bad_payloads: u64,
    pub idle: Idle,
    // Latency mode: publish -> handler, in microseconds, one entry per message.
    pub latencies: Option<Vec<u64>>,
    pub cpu_at_ready: Duration,
    pub sleeps_at_ready: u64,
    pub idle_rss_mb: f64,
    // The raw reader counts bytes, not numbered messages: it sets this instead of the tally.
    pub counted: Option<u64>,
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
            idle_rss_mb: 0.0,
            counted: None,
        }
    }

    /// Subscribed: start counting CPU time and tell the parent (which then publishes).
    pub fn ready(&mut self) {
        self.cpu_at_ready = measure::own_cpu();
        self.sleeps_at_ready = measure::own_sleeps();
        self.idle_rss_mb = lab::mem::rss_mb().unwrap_or(0.0);
        println!("READY");
    }

    /// The next item of `stream`, or `None` when it ended or stayed quiet too long.
    pub async fn next<S: Stream + Unpin>(&mut self, stream: &mut S) -> Option<S::Item> {
        self.idle.next(stream).await
    }

    /// The same for a Tokio channel receiver.
    pub async fn next_push(
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
             idle_rss_mb={:.1} out_of_order={}",
            self.counted.unwrap_or(self.tally.received()),
            noticed,
            self.bad_payloads,
            cpu.as_secs_f64(),
            lab::mem::peak_rss_mb().unwrap_or(0.0),
            self.idle_rss_mb,
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
pub fn sent_at(payload: &[u8]) -> Option<u64> {
    let rest = &payload[payload.iter().position(|&b| b == b'#')? + 1..];
    let digits = &rest[..rest.iter().position(|&b| b == b'#')?];
    std::str::from_utf8(digits).ok()?.parse().ok()
}
