//! The machinery of chapter 5's experiment: each scenario in a child process of its own
//! (its RESULT line, its RSS samples, its progress if it dies), the memory limit of
//! scenario unbounded-capped, a connection killed from outside, waiting for the subscriber,
//! and what one scenario measured, printed as its RESULT line.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lab::mem::rss_mb;
use lab::overflow::QueueStats;
use lab::{PublishReport, RedisServer, ResultLine, Tally};

use crate::chart::parse_samples;
use crate::{Args, Plan, Runtime, Scenario};

/// A finished child: its RESULT line and its RSS samples.
pub struct ChildRun {
    pub scenario: Scenario,
    pub result: ResultLine,
    pub samples: Vec<(f64, f64)>,
}

/// Start one scenario in a fresh process.
pub fn spawn_child(scenario: Scenario, args: &Args, seconds: f64) -> Result<std::process::Child> {
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
pub fn collect_child(scenario: Scenario, mut child: std::process::Child) -> Result<ChildRun> {
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

/// Messages published so far (for the progress lines of scenario unbounded-capped).
pub static PUBLISHED: AtomicU64 = AtomicU64::new(0);

/// Print progress lines: the parent needs them if this process dies.
pub static PROGRESS: AtomicBool = AtomicBool::new(false);

/// Every 100 ms, when asked to (scenario unbounded-capped), print how many messages were
/// published and received so far and the process's RSS: the parent needs them if this
/// process dies.
pub fn report_progress(last_progress: &mut std::time::Instant, tally: &Tally) {
    if PROGRESS.load(Ordering::Relaxed) && last_progress.elapsed() > Duration::from_millis(100) {
        *last_progress = std::time::Instant::now();
        println!(
            "PROGRESS {} {} {:.1}",
            PUBLISHED.load(Ordering::Relaxed),
            tally.received(),
            rss_mb().unwrap_or(0.0)
        );
    }
}

pub fn parse_progress(text: &str) -> Option<(u64, u64, f64)> {
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
pub fn limit_memory(extra_mb: u64) -> Result<()> {
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

/// `CLIENT KILL TYPE pubsub` after `delay`, from a thread of its own: what an operator, a
/// failover or a network fault does to a subscriber.
pub fn kill_subscribers_after(server: &RedisServer, delay: Duration) -> Result<()> {
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

/// Wait until `channel` has a subscriber (PUBSUB NUMSUB), so that the run starts with the
/// subscription in place.
pub async fn wait_for_subscriber(server: &RedisServer, channel: &str) -> Result<()> {
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

/// What one scenario measured.
#[derive(Debug, Default)]
pub struct Outcome {
    pub tally: Option<Tally>,
    pub publish: PublishReport,
    /// Lost messages the subscriber itself detected.
    pub noticed: u64,
    /// The subscription's stream ended before the run did: Redis disconnected us.
    pub disconnects: u64,
    /// Messages received but not yet handled when the publisher stopped.
    pub backlog_at_end: u64,
    /// The bounded queue's drops (recommended designs).
    pub dropped: u64,
    /// Messages missing between two that arrived (sequence gaps).
    pub gaps_missing: u64,
    /// Reconnect-and-resync rounds (policy `disconnect`).
    pub resyncs: u64,
    /// Peak queue length.
    pub max_queue: usize,
    /// Messages the reader took from the connection (queue designs: handled + dropped).
    pub read: Option<u64>,
}

impl Outcome {
    /// The queue's counters: what it dropped, how long it got, and what the reader pushed
    /// (every push is queued, dropped by the policy, or refused by `disconnect`).
    pub fn count_queue(&mut self, stats: &QueueStats) {
        self.dropped = stats.dropped();
        self.max_queue = stats.max_len;
        self.read = Some(stats.queued + stats.dropped_newest + stats.overflows);
    }

    pub fn print(
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
pub fn which_limit(log_line: &str, buffer_limit: &str) -> &'static str {
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
pub fn redis_bytes(text: &str) -> Option<u64> {
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

/// How many of the first `n` messages published arrived, and how many of the last `n`: which
/// end of the run a policy keeps (drop-newest keeps the oldest; drop-oldest the newest).
pub fn kept_at_ends(tally: &Tally, n: u64) -> (u64, u64) {
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
pub fn tail_lost(tally: &Tally) -> u64 {
    match tally.missing().last() {
        Some(range) if *range.end() + 1 == tally.sent() => range.end() - range.start() + 1,
        _ => 0,
    }
}
