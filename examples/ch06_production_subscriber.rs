//! Chapter 6: a production Pub/Sub subscriber you can point at your own Redis.
//!
//! cargo run --release --example ch06_production_subscriber -- --help
//! cargo run --release --example ch06_production_subscriber -- --url redis://127.0.0.1:6379/ -c orders -c payments
//!
//! Without `--url`, it starts a throwaway redis-server, publishes numbered messages (and a
//! few bad ones) on its channels, shuts itself down and prints a RESULT line: a demo of the
//! whole life cycle. The subscriber itself is `lab::production`, the same code chapter 7
//! benchmarks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use lab::message::{Identity, Mark};
use lab::overflow::Overflow;
use lab::production::{Backoff, Config, Event, Rejected, Report};
use lab::{RedisServer, ResultLine, Tally};

// ANCHOR: args
/// A Redis Pub/Sub subscriber that reconnects, keeps order per channel, bounds its memory and
/// counts every message it could not handle.
#[derive(Parser, Debug)]
#[command(long_about = None)]
struct Args {
    /// Redis URL (redis://[user:password@]host:port[/db]); never printed with its password.
    /// Without it: demo mode, on a throwaway redis-server.
    #[arg(long)]
    url: Option<String>,
    /// A channel to subscribe to (repeat for more).
    #[arg(short, long = "channel")]
    channels: Vec<String>,
    /// A pattern to subscribe to, e.g. 'orders.*' (repeat for more).
    #[arg(short, long = "pattern")]
    patterns: Vec<String>,
    /// Workers handling messages in parallel; one channel always goes to the same worker.
    #[arg(short, long, default_value_t = 2)]
    workers: usize,
    /// Messages each worker's queue holds before the overflow policy applies.
    #[arg(short, long, default_value_t = 10_000)]
    queue: usize,
    /// What a full queue does: drop-newest, drop-oldest or disconnect.
    #[arg(long, default_value = "drop-oldest")]
    overflow: Overflow,
    /// Time limit per message in the handler, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    timeout_ms: u64,
    /// Payloads larger than this many bytes are counted and skipped.
    #[arg(long, default_value_t = 1 << 20)]
    max_payload: usize,
    /// The publishers number their messages (`<seq>#...`, or `<name>:<epoch>:<seq>#...` with
    /// heartbeats, see chapter 3): count lost messages exactly, per publisher.
    #[arg(long)]
    numbered: bool,
    /// Simulated work per message: this many microseconds of CPU, on a blocking thread.
    #[arg(long, default_value_t = 0)]
    work_us: u64,
    /// Print the counters this often, in seconds (0: only at the end).
    #[arg(long, default_value_t = 5)]
    report_every: u64,
    /// At shutdown, how long the workers may take to drain their queues, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    drain_ms: u64,
    /// Keep retrying when the first connection fails (default: exit with an error).
    #[arg(long)]
    retry_at_start: bool,
    /// Give up after this many failed reconnection attempts in a row (default: never).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Longest wait between reconnection attempts, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    max_backoff_ms: u64,
    /// The Tokio runtime: current-thread avoids cross-thread wake-ups; multi-thread lets
    /// handlers use more than one core.
    #[arg(long, value_enum, default_value = "current-thread")]
    runtime: Runtime,
    /// Demo mode: messages per channel and publisher (default 100,000; 5,000 with --quick).
    #[arg(long)]
    demo_messages: Option<u64>,
    /// Demo mode: named publishers per channel, their messages interleaved.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    publishers: u64,
    /// Small demo (also LAB_QUICK=1).
    #[arg(long)]
    quick: bool,
    /// Measure how many bytes one queued message of this payload size holds, print it, exit
    /// (chapter 6's memory bound uses it).
    #[arg(long, hide = true)]
    measure_queued_bytes: Option<usize>,
}
// ANCHOR_END: args

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Runtime {
    CurrentThread,
    MultiThread,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(payload) = args.measure_queued_bytes {
        let bytes = lab::mem::measure_queued_msg_bytes(payload).context("no /proc here")?;
        println!("queued_bytes_per_msg={bytes:.0} payload={payload}");
        return Ok(());
    }
    let runtime = match args.runtime {
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
    .context("starting the Tokio runtime")?;
    match args.url.clone() {
        Some(url) => runtime.block_on(serve(args, url)),
        None => runtime.block_on(demo(args)),
    }
}

// ANCHOR: config
fn config(args: &Args, url: &str, channels: Vec<String>) -> Config {
    let mut config = Config::new(url, channels);
    config.patterns = args.patterns.clone();
    config.workers = args.workers;
    config.queue_capacity = args.queue;
    config.overflow = args.overflow;
    config.handler_timeout = Duration::from_millis(args.timeout_ms);
    config.max_payload = args.max_payload;
    config.numbered = args.numbered;
    config.retry_at_start = args.retry_at_start;
    config.max_reconnect_attempts = args.max_attempts;
    config.backoff = Backoff {
        max: Duration::from_millis(args.max_backoff_ms),
        ..Backoff::default()
    };
    config.drain_deadline = Duration::from_millis(args.drain_ms);
    // Connection events are rare: log each one. (Per-message problems only count.)
    config.on_event = Some(Arc::new(|event: &Event| eprintln!("event: {event}")));
    config
}
// ANCHOR_END: config

// ANCHOR: shutdown_signal
/// Completes on Ctrl-C or SIGTERM (what `docker stop`, systemd and Kubernetes send).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    eprintln!("shutting down: unsubscribing, draining the queues");
}
// ANCHOR_END: shutdown_signal

// ANCHOR: handler
/// The handler: the payload must be UTF-8 (and numbered, with `--numbered`); then `work_us`
/// of work. Bad input is rejected and counted, never unwrapped.
async fn handle(msg: redis::Msg, numbered: bool, work_us: u64) -> Result<(), Rejected> {
    let text = std::str::from_utf8(msg.get_payload_bytes()).map_err(|_| Rejected::BadPayload)?;
    if numbered {
        lab::seq_of(text.as_bytes()).map_err(|_| Rejected::BadPayload)?;
    }
    work(work_us).await;
    Ok(())
}

/// Simulated work: `work_us` microseconds of CPU. It runs on a blocking thread, as real CPU
/// work in a handler should: a busy loop on the runtime's own thread would stall everything
/// else on it (chapter 5's blocking handler). A `sleep` would not do either: the timer wheel
/// rounds it up to a whole millisecond.
async fn work(work_us: u64) {
    if work_us == 0 {
        return;
    }
    let busy = move || {
        let until = Instant::now() + Duration::from_micros(work_us);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    };
    let _ = tokio::task::spawn_blocking(busy).await;
}
// ANCHOR_END: handler

/// Print the counters every `every` seconds until `run` ends.
async fn with_reports<T>(
    every: u64,
    progress: impl Fn() -> Option<Report>,
    run: impl std::future::Future<Output = T>,
) -> T {
    if every == 0 {
        return run.await;
    }
    tokio::pin!(run);
    let mut tick = tokio::time::interval(Duration::from_secs(every));
    tick.tick().await;
    loop {
        tokio::select! {
            out = &mut run => return out,
            _ = tick.tick() => if let Some(report) = progress() {
                println!("stats: {report}");
            },
        }
    }
}

// ANCHOR: serve
/// Service mode: subscribe until Ctrl-C or SIGTERM, then print the final counters.
async fn serve(args: Args, url: String) -> Result<()> {
    anyhow::ensure!(
        !args.channels.is_empty() || !args.patterns.is_empty(),
        "give at least one --channel or --pattern"
    );
    let config = config(&args, &url, args.channels.clone());
    println!(
        "subscribing to {:?} {:?} at {}",
        config.channels,
        config.patterns,
        lab::redact::redact_url(&url)
    );
    let (numbered, work_us) = (args.numbered, args.work_us);
    let running = lab::production::start(config, move |msg| handle(msg, numbered, work_us)).await?;
    let rss_idle_mb = lab::mem::rss_mb().unwrap_or(0.0);
    // Counters every few seconds until Ctrl-C or SIGTERM.
    with_reports(
        args.report_every,
        || Some(running.snapshot()),
        shutdown_signal(),
    )
    .await;
    let report = running.shutdown().await?;
    println!("final: {report}");
    print_memory(rss_idle_mb);
    Ok(())
}
// ANCHOR_END: serve

/// Peak memory next to memory once subscribed: what a burst cost (chapter 6's burst tests
/// read this line).
fn print_memory(rss_idle_mb: f64) {
    let peak = lab::mem::peak_rss_mb().unwrap_or(0.0);
    println!("memory: rss_idle_mb={rss_idle_mb:.1} rss_peak_mb={peak:.1}");
}

/// Demo mode: a throwaway server; named publishers with numbered messages, heartbeats and a
/// few bad payloads; a RESULT line summed over channels and publishers.
async fn demo(args: Args) -> Result<()> {
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let channels = if args.channels.is_empty() {
        let base = lab::unique_channel("ch06:demo");
        (0..4).map(|i| format!("{base}:{i}")).collect()
    } else {
        args.channels.clone()
    };
    let per_publisher = args
        .demo_messages
        .unwrap_or_else(|| lab::scaled(100_000, 5_000));
    let publishers: Vec<Identity> = (0..args.publishers)
        .map(|k| Identity::new(&format!("demo-{k}")))
        .collect();
    let mut config = config(&args, server.url(), channels.clone());
    config.numbered = true;
    config.first_seq = Some(0);

    // The demo's handler also records what arrived, per channel and publisher, so the
    // harness can count losses.
    let slots = channels.len() * publishers.len();
    let tallies = Arc::new(Mutex::new(vec![Tally::new(per_publisher); slots]));
    let slot_of = Arc::new(DemoSlots::new(&channels, &publishers));
    let (seen, work_us) = (Arc::clone(&tallies), args.work_us);
    let handler = move |msg: redis::Msg| {
        let (seen, slot_of) = (Arc::clone(&seen), Arc::clone(&slot_of));
        async move {
            let text =
                std::str::from_utf8(msg.get_payload_bytes()).map_err(|_| Rejected::BadPayload)?;
            let mark = lab::mark_of(text.as_bytes()).map_err(|_| Rejected::BadPayload)?;
            if let Some((slot, seq)) = slot_of.of(msg.get_channel_name(), mark) {
                seen.lock().unwrap_or_else(PoisonError::into_inner)[slot].record(seq);
            }
            work(work_us).await;
            Ok(())
        }
    };
    let running = lab::production::start(config, handler).await?;

    // Publish on every channel, the publishers interleaved, with a bad payload every 1,000
    // messages; then each publisher's goodbye heartbeat, on the same connection.
    let mut con = server.client()?.get_multiplexed_async_connection().await?;
    let started = std::time::Instant::now();
    let mut bad = 0u64;
    for chunk_start in (0..per_publisher).step_by(500) {
        let mut pipe = redis::pipe();
        for seq in chunk_start..(chunk_start + 500).min(per_publisher) {
            for channel in &channels {
                for publisher in &publishers {
                    pipe.cmd("PUBLISH")
                        .arg(channel)
                        .arg(publisher.message(seq, 32))
                        .ignore();
                }
            }
            if seq % 1_000 == 999 {
                pipe.cmd("PUBLISH")
                    .arg(&channels[0])
                    .arg(&b"\xff\xfe not UTF-8"[..])
                    .ignore();
                bad += 1;
            }
        }
        pipe.query_async::<()>(&mut con).await?;
    }
    let mut goodbyes = redis::pipe();
    for channel in &channels {
        for publisher in &publishers {
            goodbyes
                .cmd("PUBLISH")
                .arg(channel)
                .arg(publisher.heartbeat(per_publisher, true))
                .ignore();
        }
    }
    goodbyes.query_async::<()>(&mut con).await?;
    let expected = per_publisher * slots as u64;
    let received = || {
        tallies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(Tally::received)
            .sum::<u64>()
    };
    // Wait for the handler to catch up (or for two quiet seconds).
    let mut last = (received(), std::time::Instant::now());
    while last.0 < expected && last.1.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = received();
        if now != last.0 {
            last = (now, std::time::Instant::now());
        }
    }
    let elapsed = started.elapsed();
    println!("stats: {}", running.snapshot());
    let report = running.shutdown().await?;
    println!("final: {report}");
    // Every message counts, the bad ones too: the subscriber cannot tell a bad message it
    // dropped from a good one, and counts both as lost.
    let received = received() + report.bad_payload;
    ResultLine::new(
        "demo",
        lab::REDIS_CURRENT,
        expected + bad,
        received,
        report.noticed(),
    )
    .with("publishers", publishers.len())
    .with("unknown_gaps", report.unknown_gaps)
    .with("bad_payload", report.bad_payload)
    .with("bad_sent", bad)
    .with("workers", args.workers)
    .with(
        "msg_per_s",
        (report.received as f64 / elapsed.as_secs_f64()).round(),
    )
    .with("elapsed_s", format!("{:.2}", elapsed.as_secs_f64()))
    .print();
    Ok(())
}

/// Which tally a demo message belongs to: one per channel and publisher.
struct DemoSlots {
    channels: HashMap<String, usize>,
    publishers: HashMap<(String, u64), usize>,
}

impl DemoSlots {
    fn new(channels: &[String], publishers: &[Identity]) -> Self {
        Self {
            channels: channels.iter().cloned().zip(0..).collect(),
            publishers: publishers
                .iter()
                .map(|p| (p.publisher().to_string(), p.epoch()))
                .zip(0..)
                .collect(),
        }
    }

    /// The tally and sequence number of a message; `None` for anything else.
    fn of(&self, channel: &str, mark: Mark<'_>) -> Option<(usize, u64)> {
        let Mark::Message {
            origin: Some(origin),
            seq,
        } = mark
        else {
            return None;
        };
        let channel = self.channels.get(channel)?;
        let publisher = self
            .publishers
            .get(&(origin.publisher.to_string(), origin.epoch))?;
        Some((channel * self.publishers.len() + publisher, seq))
    }
}
