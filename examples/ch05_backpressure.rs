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

use std::fmt;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::{Stream, StreamExt};
use lab::gaps::{DetectGaps, Tracker};
use lab::mem::{RssSampler, peak_rss_mb, rss_mb};
use lab::message::{Identity, Mark};
use lab::overflow::{Overflow, Pushed, QueueReceiver, QueueSender, QueueStats, bounded};
use lab::push::Lost;
use lab::{PublishReport, Publisher, RedisServer, ResultLine, Tally};
use redis::Msg;
use tokio::sync::oneshot;

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

/// A finished child: its RESULT line and its RSS samples.
struct ChildRun {
    scenario: Scenario,
    result: ResultLine,
    samples: Vec<(f64, f64)>,
}

/// Start one scenario in a fresh process.
fn spawn_child(scenario: Scenario, args: &Args, seconds: f64) -> Result<std::process::Child> {
    let exe = std::env::current_exe().context("finding this program to re-run it")?;
    Command::new(exe)
        .args(["--child", "--scenario", &scenario.to_string()])
        .args([
            "--seconds",
            &seconds.to_string(),
            "--rate",
            &args.rate.to_string(),
        ])
        .args(["--handler-ms", &args.handler_ms.to_string()])
        .args(["--payload", &args.payload.to_string()])
        .args(["--capacity", &args.capacity.to_string()])
        .args(["--memory-cap-mb", &args.memory_cap_mb.to_string()])
        .args(args.burst.then_some("--burst"))
        .args(["--buffer-limit", &args.buffer_limit])
        .args([
            "--runtime",
            match args.runtime {
                Runtime::CurrentThread => "current-thread",
                Runtime::MultiThread => "multi-thread",
            },
        ])
        .args(
            args.kill_subscriber_at
                .map(|at| ["--kill-subscriber-at".to_string(), at.to_string()])
                .into_iter()
                .flatten(),
        )
        // One malloc arena: the memory limit then measures the heap, not reserved arenas.
        .env("MALLOC_ARENA_MAX", "1")
        .args((args.quick || lab::quick()).then_some("--quick"))
        .stdout(Stdio::piped())
        .spawn()
        .context("starting a child process")
}

/// Wait for a child, pass on what it printed, keep its RESULT line and RSS samples.
fn collect_child(scenario: Scenario, mut child: std::process::Child) -> Result<ChildRun> {
    let stdout = child.stdout.take().context("child stdout")?;
    let mut result = None;
    let mut samples = Vec::new();
    let mut progress = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(rest) = line.strip_prefix("SAMPLES ") {
            samples = parse_samples(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("PROGRESS ") {
            progress = parse_progress(rest);
            continue;
        }
        println!("{line}");
        if line.starts_with("RESULT ") {
            result = Some(line.parse::<ResultLine>()?);
        }
    }
    let status = child.wait()?;
    if !status.success() && result.is_none() && scenario == Scenario::UnboundedCapped {
        // The subscriber died: what it had handled is all that arrived; everything it had
        // received and not handled died with it. Nothing in it could notice anything.
        use std::os::unix::process::ExitStatusExt;
        let (published, handled, rss) = progress.unwrap_or((0, 0, 0.0));
        let line = ResultLine::new(
            &scenario.to_string(),
            scenario.client(),
            published,
            handled,
            0,
        )
        .with(
            "crashed",
            status
                .signal()
                .map_or("exit".into(), |s| format!("signal-{s}")),
        )
        .with("rss_last_mb", format!("{rss:.1}"));
        println!(
            "{scenario}: the subscriber process died ({status}) after handling {handled} of {published} published"
        );
        line.print();
        result = Some(line);
    } else if !status.success() {
        bail!("scenario {scenario} failed ({status})");
    }
    let result = result.with_context(|| format!("scenario {scenario} printed no RESULT line"))?;
    Ok(ChildRun {
        scenario,
        result,
        samples,
    })
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

/// What one scenario measured.
#[derive(Debug, Default)]
struct Outcome {
    tally: Option<Tally>,
    publish: PublishReport,
    /// Lost messages the subscriber itself detected.
    noticed: u64,
    /// The subscription's stream ended before the run did: Redis disconnected us.
    disconnects: u64,
    /// Messages received but not yet handled when the publisher stopped.
    backlog_at_end: u64,
    /// The bounded queue's drops (recommended designs).
    dropped: u64,
    /// Messages missing between two that arrived (sequence gaps).
    gaps_missing: u64,
    /// Reconnect-and-resync rounds (policy `disconnect`).
    resyncs: u64,
    /// Peak queue length.
    max_queue: usize,
    /// Messages the reader took from the connection (queue designs: handled + dropped).
    read: Option<u64>,
}

impl Outcome {
    /// The queue's counters: what it dropped, how long it got, and what the reader pushed
    /// (every push is queued, dropped by the policy, or refused by `disconnect`).
    fn count_queue(&mut self, stats: &QueueStats) {
        self.dropped = stats.dropped();
        self.max_queue = stats.max_len;
        self.read = Some(stats.queued + stats.dropped_newest + stats.overflows);
    }

    fn print(
        &self,
        scenario: Scenario,
        plan: Plan,
        rss: (f64, f64),
        max_omem: u64,
        limit: Option<&'static str>,
    ) {
        let (rss_start, rss_peak) = rss;
        let tally = self.tally.as_ref().expect("every scenario tallies");
        println!(
            "{scenario}: received {} of {}, missing: {}; PUBLISH replies: queued for {} \
             subscriber(s), {} heard by nobody",
            tally.received(),
            tally.sent(),
            tally.missing_summary(3),
            self.publish.queued_for,
            self.publish.unheard
        );
        ResultLine::from_tally(
            &scenario.to_string(),
            scenario.client(),
            tally,
            self.noticed,
        )
        .with("read", self.read.unwrap_or(tally.received()))
        .with("disconnects", self.disconnects)
        .with("gap_free_prefix", tally.is_gap_free_prefix())
        .with("tail_lost", tail_lost(tally))
        .with("oldest_kept", kept_at_ends(tally, plan.capacity as u64).0)
        .with("newest_kept", kept_at_ends(tally, plan.capacity as u64).1)
        .with("queued_for", self.publish.queued_for)
        .with("unheard", self.publish.unheard)
        .with("backlog_at_end", self.backlog_at_end)
        .with("dropped", self.dropped)
        .with("gaps_missing", self.gaps_missing)
        .with("resyncs", self.resyncs)
        .with("max_queue", self.max_queue)
        .with("max_omem_kb", max_omem / 1024)
        .with("limit_fired", limit.unwrap_or("none"))
        .with("rss_start_mb", format!("{rss_start:.1}"))
        .with("rss_peak_mb", format!("{rss_peak:.1}"))
        .with("rss_growth_mb", format!("{:.1}", rss_peak - rss_start))
        .print();
    }
}

/// Which output buffer limit closed the connection, from Redis's log line ("... omem=N ...
/// scheduled to be closed ASAP for overcoming of output buffer limits"): the hard one if the
/// buffer was at or above it then, else the soft one (above it for its seconds).
fn which_limit(log_line: &str, buffer_limit: &str) -> &'static str {
    let omem: Option<u64> = log_line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("omem=")?.parse().ok());
    let hard = buffer_limit.split_whitespace().next().and_then(redis_bytes);
    match (omem, hard) {
        (Some(omem), Some(hard)) if hard > 0 && omem >= hard => "hard",
        (Some(_), Some(_)) => "soft",
        _ => "unknown",
    }
}

/// A size as redis.conf writes it: `1mb` is 1024 x 1024 bytes, `1m` 1,000,000.
fn redis_bytes(text: &str) -> Option<u64> {
    let text = text.to_ascii_lowercase();
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &text[digits.len()..] {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    Some(digits.parse::<u64>().ok()? * unit)
}

/// Messages published so far (for the progress lines of scenario unbounded-capped).
static PUBLISHED: AtomicU64 = AtomicU64::new(0);
/// Print progress lines: the parent needs them if this process dies.
static PROGRESS: AtomicBool = AtomicBool::new(false);

fn parse_progress(text: &str) -> Option<(u64, u64, f64)> {
    let mut words = text.split_whitespace();
    Some((
        words.next()?.parse().ok()?,
        words.next()?.parse().ok()?,
        words.next()?.parse().ok()?,
    ))
}

/// Limit this process's address space (`RLIMIT_AS`) to what it uses now plus `extra_mb`:
/// past it, allocations fail and a Rust program aborts (SIGABRT). A container's cgroup limit
/// ends the process differently, with the OOM killer's SIGKILL; the messages die either way.
fn limit_memory(extra_mb: u64) -> Result<()> {
    use nix::sys::resource::{Resource, setrlimit};
    let status = std::fs::read_to_string("/proc/self/status")?;
    let vm_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmSize:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .context("no VmSize in /proc/self/status")?;
    let limit = vm_kib * 1024 + extra_mb * 1024 * 1024;
    setrlimit(Resource::RLIMIT_AS, limit, limit).context("setrlimit(RLIMIT_AS)")?;
    Ok(())
}

/// How many of the first `n` messages published arrived, and how many of the last `n`: which
/// end of the run a policy keeps (drop-newest keeps the oldest; drop-oldest the newest).
fn kept_at_ends(tally: &Tally, n: u64) -> (u64, u64) {
    let n = n.min(tally.sent());
    let (mut oldest, mut newest) = (n, n);
    for range in tally.missing() {
        let (first, last) = (*range.start(), *range.end());
        // Overlap of the missing range with 0..n and with sent-n..sent.
        oldest -= (last + 1).min(n).saturating_sub(first.min(n));
        let start = tally.sent() - n;
        newest -= (last + 1).max(start).saturating_sub(first.max(start));
    }
    (oldest, newest)
}

/// How many of the last messages published are missing: what loss after the last message
/// that arrived looks like.
fn tail_lost(tally: &Tally) -> u64 {
    match tally.missing().last() {
        Some(range) if *range.end() + 1 == tally.sent() => range.end() - range.start() + 1,
        _ => 0,
    }
}

/// `CLIENT KILL TYPE pubsub` after `delay`, from a thread of its own: what an operator, a
/// failover or a network fault does to a subscriber.
fn kill_subscribers_after(server: &RedisServer, delay: Duration) -> Result<()> {
    let mut con = server.client()?.get_connection()?;
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let killed: redis::RedisResult<u64> = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut con);
        println!("killed {} subscriber connection(s)", killed.unwrap_or(0));
    });
    Ok(())
}

// ANCHOR: omem
/// Watches what Redis holds for subscribers: `CLIENT LIST TYPE pubsub` every 20 ms, the
/// largest `omem=` (output buffer bytes) seen. A thread with a blocking connection of its own,
/// so that it keeps watching even when the subscriber's runtime is blocked.
struct OmemWatcher {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl OmemWatcher {
    fn start(server: &RedisServer) -> Result<Self> {
        let mut con = server.client()?.get_connection()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut max = 0;
            while !stopped.load(Ordering::Relaxed) {
                let list: String = redis::cmd("CLIENT")
                    .arg("LIST")
                    .arg("TYPE")
                    .arg("pubsub")
                    .query(&mut con)
                    .unwrap_or_default();
                let omem = list
                    .split_whitespace()
                    .filter_map(|field| field.strip_prefix("omem=")?.parse::<u64>().ok());
                max = omem.fold(max, u64::max);
                std::thread::sleep(Duration::from_millis(20));
            }
            max
        });
        Ok(Self { stop, thread })
    }

    /// Stop watching; the largest output buffer seen, in bytes.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}
// ANCHOR_END: omem

// ---------------------------------------------------------------------------------------
// The publisher: its own thread and runtime, so that nothing the subscriber does (not even a
// handler that blocks its only thread) slows it down. Pub/Sub never slows a publisher down.

fn start_publisher(
    url: &str,
    channel: &str,
    plan: Plan,
) -> oneshot::Receiver<Result<PublishReport>> {
    let (done, report) = oneshot::channel();
    let url = url.to_string();
    // A named publisher with heartbeats (chapter 3): what it says on the channel is all a
    // subscriber can know about what was sent.
    let publisher = Publisher::new(channel)
        .named(Identity::new("ch05"))
        .payload_size(plan.payload)
        .pipeline_len(PUBLISH_BATCH as usize);
    std::thread::spawn(move || {
        let result = (|| -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = redis::Client::open(url.as_str())?;
                let mut con = client.get_multiplexed_async_connection().await?;
                let report = publish_paced(&publisher, &mut con, plan).await;
                let sent = report.as_ref().map_or(0, |report| report.sent);
                let _ = done.send(report);
                // A long-lived publisher keeps saying how much it sent, until the process
                // ends: a subscriber that lost the tail, or reconnected late, learns it so.
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    publisher.heartbeat(&mut con, sent).await?;
                }
            })
        })();
        if let Err(error) = result {
            eprintln!("publisher: {error:#}");
        }
    });
    report
}

/// At most this many PUBLISH commands in one pipeline: when the publisher falls behind its
/// rate (a busy machine), it catches up in small batches, so that its own memory stays
/// small and does not blur the subscriber's.
const PUBLISH_BATCH: u64 = 100;

/// Publish `0..plan.messages` at `plan.rate` per second (or all at once, with `--burst`).
async fn publish_paced(
    publisher: &Publisher,
    con: &mut redis::aio::MultiplexedConnection,
    plan: Plan,
) -> Result<PublishReport> {
    if plan.burst {
        let report = publisher.send(con, 0..plan.messages).await?;
        PUBLISHED.store(report.sent, Ordering::Relaxed);
        return Ok(report);
    }
    let started = std::time::Instant::now();
    let mut total = PublishReport::default();
    let mut next = 0;
    while next < plan.messages {
        let due = ((started.elapsed().as_secs_f64() * plan.rate) as u64 + 1).min(plan.messages);
        if due > next {
            let end = due.min(next + PUBLISH_BATCH);
            let report = publisher.send(con, next..end).await?;
            total.sent += report.sent;
            PUBLISHED.store(total.sent, Ordering::Relaxed);
            total.queued_for += report.queued_for;
            total.unheard += report.unheard;
            next = end;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// The handler: takes `plan.handler` per message while the publisher runs. To keep each run
/// short, it becomes instant once the publisher has stopped, so what is left drains quickly
/// and we can count it.
async fn handle(plan: Plan, publishing: bool) {
    if publishing && !plan.handler.is_zero() {
        tokio::time::sleep(plan.handler).await;
    }
}

fn payload(msg: &Msg) -> &[u8] {
    msg.get_payload_bytes()
}

/// Read `stream` with a handler, until it ends or is quiet after the publisher stopped.
/// `blocking`: the handler blocks the thread instead of awaiting.
async fn consume<S, M>(
    stream: S,
    payload: for<'a> fn(&'a M) -> &'a [u8],
    publishing: oneshot::Receiver<Result<PublishReport>>,
    plan: Plan,
    blocking: bool,
) -> Result<Outcome>
where
    S: Stream<Item = M> + Unpin,
{
    let mut tally = Tally::new(plan.messages);
    let mut outcome = Outcome::default();
    // Chapter 3's detector: gaps between messages, and what heartbeats say (it swallows them).
    let mut checked =
        DetectGaps::new(stream, |msg: &M| lab::mark_of(payload(msg)).ok()).starting_at(0);
    let mut publishing = Some(publishing);
    let mut last_progress = std::time::Instant::now();
    loop {
        if let Some(done) = publishing.as_mut().and_then(|rx| rx.try_recv().ok()) {
            outcome.publish = done?;
            outcome.backlog_at_end = plan.messages.saturating_sub(tally.received());
            publishing = None;
        }
        if PROGRESS.load(Ordering::Relaxed) && last_progress.elapsed() > Duration::from_millis(100)
        {
            last_progress = std::time::Instant::now();
            println!(
                "PROGRESS {} {} {:.1}",
                PUBLISHED.load(Ordering::Relaxed),
                tally.received(),
                rss_mb().unwrap_or(0.0)
            );
        }
        let next = match tokio::time::timeout(quiet(), checked.next()).await {
            Ok(next) => next,
            Err(_quiet) if publishing.is_none() => break,
            Err(_quiet) => continue,
        };
        match next {
            Some(Ok(msg)) => {
                if let Ok(seq) = lab::seq_of(payload(&msg)) {
                    tally.record(seq);
                }
                if blocking && publishing.is_some() {
                    std::thread::sleep(plan.handler); // a synchronous call: the thread is busy
                } else {
                    handle(plan, publishing.is_some()).await;
                }
            }
            // ANCHOR: stream_end
            None => {
                // The stream's item is a message, not a Result: a disconnect looks exactly
                // like the end of the stream. Nothing says how many messages went with it.
                outcome.disconnects += 1;
                break;
            }
            // ANCHOR_END: stream_end
            // A gap: chapter 3's detector counted it (`checked.stats()` below).
            Some(Err(_gap)) => {}
        }
    }
    if let Some(rx) = publishing {
        outcome.publish = rx.await.context("publisher thread")??;
    }
    outcome.gaps_missing = checked.stats().missing;
    // What the subscriber noticed: the holes between messages that arrived, and what the
    // heartbeats it still heard said. After a disconnect it hears nothing more.
    outcome.noticed = outcome.gaps_missing;
    outcome.tally = Some(tally);
    Ok(outcome)
}

// ---------------------------------------------------------------------------------------
// Design 1: the old release (0.25.5), one long-lived stream, a slow handler. The client reads
// the socket only when the stream is polled, so the backlog stays in Redis, and Redis
// disconnects us at the output buffer limit.

async fn old_slow_stream(server: &RedisServer, channel: &str, plan: Plan) -> Result<Outcome> {
    // ANCHOR: old_stream
    let client = redis_0_25::Client::open(server.url())?;
    #[allow(deprecated)] // the old API, on purpose: this is how 0.25 subscribed
    let mut pubsub = client.get_async_connection().await?.into_pubsub();
    pubsub.subscribe(channel).await?;
    let messages = pubsub.on_message(); // one stream for the whole run, as it should be
    // ANCHOR_END: old_stream
    let publishing = start_publisher(server.url(), channel, plan);
    fn payload(msg: &redis_0_25::Msg) -> &[u8] {
        msg.get_payload_bytes()
    }
    consume(messages, payload, publishing, plan, false).await
}

// ---------------------------------------------------------------------------------------
// Designs 2 and 3: the current release. A background task reads the socket into an
// unbounded channel. With a slow *async* handler the reader keeps up, Redis never sees a
// backlog, and the client's memory grows instead. With a *blocking* handler on a
// current-thread runtime, the reader task never runs, and Redis disconnects us again.

async fn current_stream(
    server: &RedisServer,
    channel: &str,
    plan: Plan,
    blocking: bool,
) -> Result<Outcome> {
    let client = lab::connect::open(server.url()).await?;
    // ANCHOR: current_stream
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let messages = pubsub.into_on_message(); // drained by redis-rs's own task, unbounded
    // ANCHOR_END: current_stream
    let publishing = start_publisher(server.url(), channel, plan);
    consume(messages, payload, publishing, plan, blocking).await
}

// ---------------------------------------------------------------------------------------
// The counter-example: the same bounded queue, behind the stream of `get_async_pubsub()`. A
// reader task moves each message from the stream into the queue and never waits. Under a
// paced publisher it looks bounded. But redis-rs's own task decodes the socket into an
// unbounded channel *in front of* the stream, and under a burst, on a current-thread runtime,
// that task runs far more often than our reader: the burst lands in the unbounded channel.

// ANCHOR: reader
/// Subscribe and move every message of the stream into `queue`. Returns when the queue
/// refuses a message under policy `Disconnect` (dropping the subscription, so that Redis stops
/// buffering for us), when the queue is closed, or when the connection ends.
async fn read_into_queue(
    client: &redis::Client,
    channel: &str,
    queue: &QueueSender<Msg>,
    tracker: &Mutex<Tracker>,
) -> Result<Lost> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let mut messages = pubsub.into_on_message();
    while let Some(msg) = messages.next().await {
        match take_in(tracker, queue, msg) {
            // A heartbeat, or a full queue under a drop policy: the queue dropped one message
            // and counted it.
            None | Some(Pushed::Queued | Pushed::DroppedNewest(_) | Pushed::DroppedOldest(_)) => {}
            // A full queue under `Disconnect`: stop reading, the caller resyncs.
            Some(Pushed::Overflowed(_)) => return Ok(Lost::Overflow),
            Some(Pushed::Closed(_)) => break,
        }
    }
    Ok(Lost::Closed)
}
// ANCHOR_END: reader

// ANCHOR: take_in
/// What every reader does with a message before the queue: count it with chapter 3's
/// tracker (a heartbeat stops here: no queue policy may drop it), then queue it. The tracker
/// outlives connections, so a gap across a reconnect is counted too. `None`: a heartbeat.
fn take_in(tracker: &Mutex<Tracker>, queue: &QueueSender<Msg>, msg: Msg) -> Option<Pushed<Msg>> {
    let mut tracker = tracker.lock().unwrap_or_else(PoisonError::into_inner);
    match lab::mark_of(msg.get_payload_bytes()) {
        Ok(mark @ Mark::Heartbeat { .. }) => {
            tracker.observe(mark);
            return None;
        }
        Ok(mark) => {
            tracker.observe(mark);
        }
        Err(_) => tracker.unnumbered(),
    }
    drop(tracker);
    Some(queue.push(msg))
}
// ANCHOR_END: take_in

/// How a design reads the subscription into the queue.
#[derive(Clone, Copy)]
enum Design {
    /// RESP3 push sender (design 4).
    PushSender,
    /// The stream of `get_async_pubsub()`, read by a task (the counter-example).
    Stream,
}

// ANCHOR: supervise
/// Keep a reader running until the application aborts it: subscribe again after a lost
/// connection at once, and after an overflow once the handler has emptied the queue (at
/// once, it would overflow again). Messages published in between are lost; the tracker
/// notices them as a sequence gap at the next message or heartbeat (and a real application
/// reloads its state from the source of truth).
async fn supervise(
    design: Design,
    client: redis::Client,
    channel: String,
    queue: QueueSender<Msg>,
    tracker: Arc<Mutex<Tracker>>,
    resyncs: Arc<AtomicU64>,
) {
    loop {
        let read = match design {
            Design::PushSender => subscribe_into_queue(&client, &channel, &queue, &tracker).await,
            Design::Stream => read_into_queue(&client, &channel, &queue, &tracker).await,
        };
        if queue.is_closed() {
            return;
        }
        match read {
            Ok(Lost::Closed) => {}
            Ok(Lost::Overflow) => {
                while !queue.is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            // Could not even subscribe: wait a little before trying again.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        resyncs.fetch_add(1, Ordering::Relaxed);
    }
}
// ANCHOR_END: supervise

/// The handler side, shared by the queue designs: take messages from the queue, handle each
/// one. (The reader counted them on the way in.)
async fn handle_from_queue(
    mut queue: QueueReceiver<Msg>,
    publishing: oneshot::Receiver<Result<PublishReport>>,
    plan: Plan,
) -> Result<Outcome> {
    let mut tally = Tally::new(plan.messages);
    let mut outcome = Outcome::default();
    let mut publishing = Some(publishing);
    loop {
        if let Some(done) = publishing.as_mut().and_then(|rx| rx.try_recv().ok()) {
            outcome.publish = done?;
            outcome.backlog_at_end = plan.messages.saturating_sub(tally.received());
            publishing = None;
        }
        // ANCHOR: handler
        match tokio::time::timeout(quiet(), queue.recv()).await {
            Ok(Some(msg)) => {
                if let Ok(seq) = lab::seq_of(msg.get_payload_bytes()) {
                    tally.record(seq); // the harness's count
                }
                handle(plan, publishing.is_some()).await;
            }
            // The queue was closed: the connection behind it is gone.
            Ok(None) => {
                outcome.disconnects += 1;
                break;
            }
            // Quiet for a while after the publisher stopped: the run is over.
            Err(_quiet) if publishing.is_none() => break,
            Err(_quiet) => {}
        }
        // ANCHOR_END: handler
    }
    if let Some(rx) = publishing {
        outcome.publish = rx.await.context("publisher thread")??;
    }
    outcome.tally = Some(tally);
    Ok(outcome)
}

async fn queue_design(
    server: &RedisServer,
    channel: &str,
    plan: Plan,
    policy: Overflow,
) -> Result<Outcome> {
    let client = lab::connect::open(server.url()).await?;
    // ANCHOR: queue_design
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
    // ANCHOR_END: queue_design
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

// ANCHOR: noticed
/// What a queue design noticed: the tracker's gaps (lost in Redis or on the way, found
/// between two messages or by a heartbeat), and, added by the caller, what its own queue
/// dropped. Each lost message is in exactly one of the two: the tracker saw every message the
/// queue dropped arrive.
async fn count_noticed(outcome: &mut Outcome, tracker: &Mutex<Tracker>) {
    let stats = || {
        tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stats()
    };
    // The handler went quiet; the publisher's next heartbeat (every 100 ms) brings the last
    // word on what was sent, even if the reader resubscribed after the publisher finished.
    let heard = stats().heartbeats;
    for _ in 0..200 {
        if stats().heartbeats > heard {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    outcome.gaps_missing = stats().missing;
    outcome.noticed = outcome.gaps_missing;
}
// ANCHOR_END: noticed

/// Wait until `channel` has a subscriber (PUBSUB NUMSUB), so that the run starts with the
/// subscription in place.
async fn wait_for_subscriber(server: &RedisServer, channel: &str) -> Result<()> {
    let mut con = server.client()?.get_multiplexed_async_connection().await?;
    for _ in 0..500 {
        let (_, subscribers): (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async::<Vec<(String, u64)>>(&mut con)
            .await?
            .pop()
            .context("PUBSUB NUMSUB replied nothing")?;
        if subscribers > 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("the reader did not subscribe to {channel} within 5 s")
}

// ---------------------------------------------------------------------------------------
// Design 4, bounded by construction: RESP3, and no stream at all. The connection hands every
// push to a sender we give it, synchronously, from its read loop, before it reads the next
// one; ours puts it in the bounded queue (`lab::push`). Nothing can pile up in front of the
// queue, whatever the runtime and however large the burst.

// ANCHOR: resp3
/// Subscribe on a RESP3 connection whose push sender moves every message into `queue`.
/// Returns when the connection is lost, or when the queue refuses a message under policy
/// `Disconnect` (then dropping the connection, so that Redis stops buffering for us).
async fn subscribe_into_queue(
    client: &redis::Client,
    channel: &str,
    queue: &QueueSender<Msg>,
    tracker: &Arc<Mutex<Tracker>>,
) -> Result<Lost> {
    let (queue, tracker) = (queue.clone(), tracker.clone());
    let (sender, mut connection) = lab::push::to_queue(move |msg| {
        // Counted and queued, or dropped by the policy and counted by the queue: keep
        // reading. Only a full queue under `Disconnect` gives the connection up.
        !matches!(take_in(&tracker, &queue, msg), Some(Pushed::Overflowed(_)))
    });
    let config = redis::AsyncConnectionConfig::new().set_push_sender(sender);
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    con.subscribe(channel).await?;
    let lost = connection.lost().await;
    connection.close();
    Ok(lost)
}
// ANCHOR_END: resp3

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

// ---------------------------------------------------------------------------------------
// The chart: RSS over time for the unbounded design and a bounded one, and peak growth for
// every scenario, as mermaid `xychart-beta` blocks the chapter includes.

fn format_samples(samples: &[(f64, f64)]) -> String {
    samples
        .iter()
        .map(|(t, mb)| format!("{t:.2}:{mb:.1}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_samples(text: &str) -> Vec<(f64, f64)> {
    text.split(',')
        .filter_map(|pair| {
            let (t, mb) = pair.split_once(':')?;
            Some((t.parse().ok()?, mb.parse().ok()?))
        })
        .collect()
}

/// The sample in force at time `t`: the last one taken at or before it.
fn at(samples: &[(f64, f64)], t: f64) -> f64 {
    samples
        .iter()
        .take_while(|(time, _)| *time <= t + 1e-9)
        .last()
        .or(samples.first())
        .map_or(0.0, |(_, mb)| *mb)
}

fn write_chart(runs: &[ChildRun], plan: Plan, buffer_limit: &str) -> Result<String> {
    use std::fmt::Write as _;
    let lines: Vec<&ChildRun> = runs
        .iter()
        .filter(|run| {
            matches!(
                run.scenario,
                Scenario::UnboundedSlow | Scenario::Resp3(Overflow::DropOldest)
            )
        })
        .collect();
    let mut md = String::new();
    writeln!(
        md,
        "<!-- Generated by `cargo run --example ch05_backpressure -- --write-chart`. \
         Do not edit. -->"
    )?;
    let end = lines
        .iter()
        .flat_map(|run| run.samples.last().map(|(t, _)| *t))
        .fold(0.0, f64::max);
    if !lines.is_empty() && end > 0.0 {
        let step = 0.5;
        let times: Vec<f64> = (0..=(end / step) as usize)
            .map(|i| i as f64 * step)
            .collect();
        let top = lines
            .iter()
            .flat_map(|run| run.samples.iter().map(|(_, mb)| *mb))
            .fold(10.0, f64::max);
        let top = ((top * 1.1) / 10.0).ceil() * 10.0;
        writeln!(md, "\n```mermaid\nxychart-beta")?;
        let names: Vec<String> = lines.iter().map(|run| run.scenario.to_string()).collect();
        writeln!(
            md,
            "    title \"Subscriber RSS (MB) over time: {}\"",
            names.join(" vs ")
        )?;
        let labels: Vec<String> = times.iter().map(|t| format!("\"{t:.1}\"")).collect();
        writeln!(md, "    x-axis \"seconds\" [{}]", labels.join(", "))?;
        writeln!(md, "    y-axis \"RSS (MB)\" 0 --> {top}")?;
        for run in &lines {
            let values: Vec<String> = times
                .iter()
                .map(|t| format!("{:.1}", at(&run.samples, *t)))
                .collect();
            writeln!(md, "    line [{}]", values.join(", "))?;
        }
        writeln!(md, "```")?;
    }
    writeln!(
        md,
        "\n| scenario | client | received of sent | lost | noticed | disconnects | dropped by \
         the queue | PUBLISH said queued for | PUBLISH replied 0 | Redis output buffer peak | \
         peak RSS growth |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    for run in runs {
        let r = &run.result;
        let value = |key: &str| r.get(key).unwrap_or("-").to_string();
        writeln!(
            md,
            "| `{}` | {} | {} of {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.client,
            r.received,
            r.sent,
            r.lost,
            r.noticed,
            r.get("disconnects")
                .or(r.get("crashed").map(|_| "crashed"))
                .unwrap_or("-"),
            value("dropped"),
            value("queued_for"),
            value("unheard"),
            r.get("max_omem_kb")
                .map(|kb| format!("{kb} KB"))
                .unwrap_or("-".into()),
            r.get("rss_growth_mb")
                .map(|mb| format!("{mb} MB"))
                .or(r
                    .get("rss_last_mb")
                    .map(|mb| format!("died at {mb} MB RSS")))
                .unwrap_or_default(),
        )?;
    }
    writeln!(
        md,
        "\nPublisher: {} messages of {} B {}; handler {:?} per message while it runs; queue \
         capacity {}; `client-output-buffer-limit pubsub {buffer_limit}`.",
        plan.messages,
        plan.payload,
        plan.pace(),
        plan.handler,
        plan.capacity
    )?;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/generated/ch05-rss.md");
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/src/generated"))?;
    std::fs::write(path, md).with_context(|| format!("writing {path}"))?;
    Ok("src/generated/ch05-rss.md".into())
}
