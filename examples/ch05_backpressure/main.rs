//! Chapter 5: backpressure, measured. A publisher ten times faster than the handler, for a
//! few seconds, against a Redis whose Pub/Sub output buffer limit is small
//! (`client-output-buffer-limit pubsub 1mb 256kb 1`): where does the backlog go, and where
//! are messages lost?
//!
//! cargo run --example ch05_backpressure                  # every design, ~1 minute
//! cargo run --example ch05_backpressure -- --quick       # a few seconds
//! cargo run --example ch05_backpressure -- --write-chart # also src/generated/ch05-rss.md
//! cargo run --example ch05_backpressure -- --scenario queue-drop-oldest --capacity 500
//!
//! Each scenario runs in a child process of its own (this program, re-executed with
//! `--child`), so that the peak memory it reports belongs to one design only.
//!
//! The designs the chapter shows are in `designs.rs`, in the chapter's order. This file
//! parses the arguments and runs each scenario; `harness.rs` holds the child processes and
//! the RESULT line, `publisher.rs` the paced publisher, `chart.rs` the RSS chart and table.

mod chart;
mod designs;
mod harness;
mod publisher;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use lab::RedisServer;
use lab::gaps::Tracker;
use lab::mem::{RssSampler, peak_rss_mb, rss_mb};
use lab::overflow::{Overflow, bounded};

use chart::{format_samples, write_chart};
use designs::{
    Design, OmemWatcher, count_noticed, current_stream, handle_from_queue, old_slow_stream,
    supervise,
};
use harness::{
    Outcome, PROGRESS, collect_child, kill_subscribers_after, limit_memory, spawn_child,
    wait_for_subscriber, which_limit,
};
use publisher::start_publisher;

/// The small limit every scenario runs under by default: disconnect a subscriber at 1 MB of
/// backlog (the hard limit), or when it stays above 256 KB for 1 second (the soft limit).
/// Redis's default is `32mb 8mb 60`: the same story, only later.
const PUBSUB_LIMIT: &str = "1mb 256kb 1";

/// When nothing arrives for this long after the publisher finished, the run is over.
fn quiet() -> Duration {
    Duration::from_millis(lab::scaled(1500, 500))
}

#[derive(Parser, Debug, Clone)]
#[command(about = "Chapter 5: where a slow subscriber's backlog goes, measured")]
struct Args {
    /// A small, fast run (also LAB_QUICK=1).
    #[arg(long)]
    quick: bool,
    /// Run only these scenarios (comma-separated; default: all). Names: old-slow-stream,
    /// unbounded-slow, blocking-handler, queue-POLICY, resp3-POLICY, with POLICY one of
    /// drop-newest, drop-oldest, disconnect.
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<Scenario>,
    /// How long the publisher runs, in seconds (default 5; 0.5 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Messages per second the publisher sends.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// How long the handler takes per message, in milliseconds, while the publisher runs.
    #[arg(long, default_value_t = 1)]
    handler_ms: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 1024)]
    payload: usize,
    /// Capacity of the bounded queue of the recommended designs.
    #[arg(long, default_value_t = 1000)]
    capacity: usize,
    /// Scenario unbounded-capped: how much more memory (address space, MB) the subscriber
    /// process may use than it had at the start.
    #[arg(long, default_value_t = 48)]
    memory_cap_mb: u64,
    /// Kill the subscriber's connection (CLIENT KILL TYPE pubsub) this many seconds into the
    /// run, to see how each design notices a disconnect.
    #[arg(long)]
    kill_subscriber_at: Option<f64>,
    /// Publish everything at once (pipelined, as fast as Redis takes it) instead of at
    /// `--rate`: the burst that tells a bounded design from one that only looks bounded.
    #[arg(long)]
    burst: bool,
    /// The subscriber's Tokio runtime (blocking-handler always runs on current-thread).
    #[arg(long, value_enum, default_value = "multi-thread")]
    runtime: Runtime,
    /// The server's `client-output-buffer-limit pubsub` (hard, soft, seconds).
    #[arg(long, default_value = PUBSUB_LIMIT)]
    buffer_limit: String,
    /// Write the chart of this run's measurements to src/generated/ch05-rss.md.
    #[arg(long)]
    write_chart: bool,
    /// Internal: run one scenario in this process and print its RESULT line.
    #[arg(long, hide = true)]
    child: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Runtime {
    CurrentThread,
    MultiThread,
}

/// One experiment: a way of consuming the subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// redis 0.25.5, one long-lived `on_message` stream, slow async handler.
    OldSlowStream,
    /// redis 1.8.1, `get_async_pubsub`, slow async handler.
    UnboundedSlow,
    /// The same, in a process with a memory limit: what happens when it keeps going.
    UnboundedCapped,
    /// redis 1.8.1, blocking handler on a current-thread runtime.
    BlockingHandler,
    /// redis 1.8.1, RESP3: the push sender pushes into a bounded queue with this policy
    /// (the recommended design).
    Resp3(Overflow),
    /// redis 1.8.1: a reader task moves the stream into a bounded queue with this policy
    /// (the counter-example: the library's unbounded channel sits in front of the queue).
    Queue(Overflow),
}

impl Scenario {
    const ALL: [Scenario; 10] = [
        Scenario::OldSlowStream,
        Scenario::UnboundedSlow,
        Scenario::UnboundedCapped,
        Scenario::BlockingHandler,
        Scenario::Resp3(Overflow::DropNewest),
        Scenario::Resp3(Overflow::DropOldest),
        Scenario::Resp3(Overflow::Disconnect),
        Scenario::Queue(Overflow::DropNewest),
        Scenario::Queue(Overflow::DropOldest),
        Scenario::Queue(Overflow::Disconnect),
    ];

    fn client(self) -> &'static str {
        match self {
            Scenario::OldSlowStream => lab::REDIS_0_25,
            _ => lab::REDIS_CURRENT,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scenario::OldSlowStream => f.write_str("old-slow-stream"),
            Scenario::UnboundedSlow => f.write_str("unbounded-slow"),
            Scenario::UnboundedCapped => f.write_str("unbounded-capped"),
            Scenario::BlockingHandler => f.write_str("blocking-handler"),
            Scenario::Queue(policy) => write!(f, "queue-{policy}"),
            Scenario::Resp3(policy) => write!(f, "resp3-{policy}"),
        }
    }
}

impl FromStr for Scenario {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let scenario = match s {
            "old-slow-stream" => Scenario::OldSlowStream,
            "unbounded-slow" => Scenario::UnboundedSlow,
            "unbounded-capped" => Scenario::UnboundedCapped,
            "blocking-handler" => Scenario::BlockingHandler,
            _ => match (s.strip_prefix("queue-"), s.strip_prefix("resp3-")) {
                (Some(policy), _) => Scenario::Queue(policy.parse()?),
                (_, Some(policy)) => Scenario::Resp3(policy.parse()?),
                _ => bail!(
                    "unknown scenario {s:?}: expected old-slow-stream, unbounded-slow, \
                     blocking-handler, queue-POLICY or resp3-POLICY"
                ),
            },
        };
        Ok(scenario)
    }
}

/// The sizes of one run, the same in the parent and in every child.
#[derive(Clone, Copy, Debug)]
struct Plan {
    messages: u64,
    rate: f64,
    handler: Duration,
    payload: usize,
    capacity: usize,
    memory_cap_mb: u64,
    kill_subscriber_at: Option<f64>,
    burst: bool,
}

impl Plan {
    fn pace(&self) -> String {
        if self.burst {
            "in one burst".into()
        } else {
            format!("at {}/s", self.rate)
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let quick = args.quick || lab::quick();
    let seconds = args.seconds.unwrap_or(if quick { 0.5 } else { 5.0 });
    if !(seconds > 0.0 && args.rate >= 1.0 && args.capacity > 0) {
        bail!("--seconds and --rate must be positive and --capacity at least 1");
    }
    let plan = Plan {
        messages: (seconds * args.rate) as u64,
        rate: args.rate,
        handler: Duration::from_millis(args.handler_ms),
        payload: args.payload.max(32),
        capacity: args.capacity,
        memory_cap_mb: args.memory_cap_mb,
        kill_subscriber_at: args.kill_subscriber_at,
        burst: args.burst,
    };
    if args.child {
        let [scenario] = args.scenario[..] else {
            bail!("--child runs exactly one --scenario");
        };
        return run_child(scenario, plan, args.runtime, &args.buffer_limit);
    }
    let scenarios = if args.scenario.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenario.clone()
    };
    println!(
        "publisher: {} messages of {} B {}; handler: {:?} per message; queue capacity {}; \
         runtime: {:?}; server: client-output-buffer-limit pubsub {}",
        plan.messages,
        plan.payload,
        plan.pace(),
        plan.handler,
        plan.capacity,
        args.runtime,
        args.buffer_limit,
    );
    let mut runs = Vec::new();
    if quick {
        // Quick mode only checks that everything runs: all scenarios at once.
        let children: Vec<_> = scenarios
            .iter()
            .map(|&scenario| Ok((scenario, spawn_child(scenario, &args, seconds)?)))
            .collect::<Result<_>>()?;
        for (scenario, child) in children {
            runs.push(collect_child(scenario, child)?);
        }
    } else {
        // One at a time, so that the scenarios do not compete for the CPU.
        for scenario in scenarios {
            runs.push(collect_child(
                scenario,
                spawn_child(scenario, &args, seconds)?,
            )?);
        }
    }
    if args.write_chart {
        let path = write_chart(&runs, plan, &args.buffer_limit)?;
        println!("wrote {path}");
    }
    Ok(())
}

fn run_child(scenario: Scenario, plan: Plan, runtime: Runtime, buffer_limit: &str) -> Result<()> {
    // The blocking handler is only a problem on a runtime with one thread: that is the
    // point of the scenario. Everything else runs on the runtime asked for.
    let runtime = match (scenario, runtime) {
        (Scenario::BlockingHandler, _) | (_, Runtime::CurrentThread) => {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        }
        (_, Runtime::MultiThread) => tokio::runtime::Runtime::new()?,
    };
    runtime.block_on(async move {
        // A child may die on purpose (the memory-capped scenario aborts): its server must
        // not outlive it, and Drop does not run on an abort.
        let server = RedisServer::builder()
            .config(
                "client-output-buffer-limit",
                &format!("pubsub {buffer_limit}"),
            )
            .die_with_parent()
            .start_or_env()?;
        println!("--- {scenario}: Redis at {}", server.display_url());
        let channel = lab::unique_channel("ch05:backpressure");
        let sampler = RssSampler::start(Duration::from_millis(100));
        let omem = OmemWatcher::start(&server)?;
        if let Some(at) = plan.kill_subscriber_at {
            kill_subscribers_after(&server, Duration::from_secs_f64(at))?;
        }
        let rss_start = rss_mb().unwrap_or(0.0);
        let outcome = match scenario {
            Scenario::OldSlowStream => old_slow_stream(&server, &channel, plan).await?,
            Scenario::UnboundedSlow => current_stream(&server, &channel, plan, false).await?,
            Scenario::UnboundedCapped => {
                limit_memory(plan.memory_cap_mb)?;
                PROGRESS.store(true, Ordering::Relaxed);
                current_stream(&server, &channel, plan, false).await?
            }
            Scenario::BlockingHandler => current_stream(&server, &channel, plan, true).await?,
            Scenario::Queue(policy) => queue_design(&server, &channel, plan, policy).await?,
            Scenario::Resp3(policy) => resp3_design(&server, &channel, plan, policy).await?,
        };
        let samples = sampler.finish().await;
        let max_omem = omem.finish();
        let rss_peak = peak_rss_mb().unwrap_or(0.0);
        // Which limit fired, in Redis's words: its log line gives the buffer at that moment.
        let closed = server.log_lines("output buffer limits");
        for line in &closed {
            println!("server log: {}", line.trim());
        }
        let limit = closed.first().map(|line| which_limit(line, buffer_limit));
        outcome.print(scenario, plan, (rss_start, rss_peak), max_omem, limit);
        println!("SAMPLES {}", format_samples(&samples));
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// The queue designs, wired up: a supervised reader (the push sender or the stream) into a
// bounded queue, the handler on the other side, and what each one noticed.

async fn queue_design(
    server: &RedisServer,
    channel: &str,
    plan: Plan,
    policy: Overflow,
) -> Result<Outcome> {
    let client = lab::connect::open(server.url()).await?;
    let (queue, received) = bounded(plan.capacity, policy);
    let tracker = Arc::new(Mutex::new(Tracker::starting_at(0)));
    let resyncs = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn(supervise(
        Design::Stream,
        client,
        channel.to_string(),
        queue.clone(),
        tracker.clone(),
        resyncs.clone(),
    ));
    // Wait until the reader has subscribed before publishing: Pub/Sub keeps no history.
    wait_for_subscriber(server, channel).await?;
    let publishing = start_publisher(server.url(), channel, plan);
    let mut outcome = handle_from_queue(received, publishing, plan).await?;
    count_noticed(&mut outcome, &tracker).await;
    reader.abort();
    outcome.resyncs = resyncs.load(Ordering::Relaxed);
    outcome.count_queue(&queue.stats());
    outcome.noticed += outcome.dropped;
    Ok(outcome)
}

async fn resp3_design(
    server: &RedisServer,
    channel: &str,
    plan: Plan,
    policy: Overflow,
) -> Result<Outcome> {
    let client = lab::push::resp3(&lab::connect::open(server.url()).await?)?;
    let (queue, received) = bounded(plan.capacity, policy);
    let tracker = Arc::new(Mutex::new(Tracker::starting_at(0)));
    let resyncs = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn(supervise(
        Design::PushSender,
        client,
        channel.to_string(),
        queue.clone(),
        tracker.clone(),
        resyncs.clone(),
    ));
    wait_for_subscriber(server, channel).await?;
    let publishing = start_publisher(server.url(), channel, plan);
    let mut outcome = handle_from_queue(received, publishing, plan).await?;
    count_noticed(&mut outcome, &tracker).await;
    reader.abort();
    outcome.resyncs = resyncs.load(Ordering::Relaxed);
    outcome.count_queue(&queue.stats());
    outcome.noticed += outcome.dropped;
    Ok(outcome)
}
