//! Chapter 7: how fast ONE subscriber receives on one channel, design by design, next to
//! `redis-cli`, with CPU time per message and memory, each design in a process of its own.
//!
//! cargo run --release --example ch07_throughput -- --write-table   # the book's table (~3 min)
//! cargo run --release --example ch07_throughput -- --help           # fewer sizes, designs, runs
//! LAB_QUICK=1 cargo run --example ch07_throughput                   # seconds; what CI runs
//!
//! Method (the chapter explains why): for each payload size and each run, every design in
//! turn subscribes in a fresh process, which is then stopped (SIGSTOP); the publisher fills
//! Redis's output buffer for it with N messages (limit off); the clock starts at SIGCONT and
//! stops when the subscriber has handled all N. That measures the subscriber alone, with the
//! publisher not competing for the two cores. `redis-cli` cannot say "done", so it is timed by
//! the bytes it has printed to `/dev/null` (`wchar` in `/proc/<pid>/io`).

mod measure;
mod variants;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use lab::{Publisher, RedisServer, ResultLine};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use variants::{ChildArgs, Variant};

/// Where `--write-table` writes the table that the chapter includes.
const TABLE_PATH: &str = "src/generated/ch07-throughput.md";
/// And the paragraph that says whether the chapter's goals were met in that run.
const GOALS_PATH: &str = "src/generated/ch07-goals.md";
/// The command that regenerates it, as the chapter and the table say.
const TABLE_COMMAND: &str = "cargo run --release --example ch07_throughput -- --write-table";

#[derive(Parser, Debug)]
#[command(about = "Chapter 7: one subscriber's throughput, design by design, next to redis-cli")]
struct Args {
    /// Write the table to src/generated/ch07-throughput.md (full runs only)
    #[arg(long)]
    write_table: bool,
    /// A small, fast run (also LAB_QUICK=1): what CI runs
    #[arg(long)]
    quick: bool,
    /// Runs per design and payload size (the table shows the median)
    #[arg(long)]
    runs: Option<usize>,
    /// Payload sizes in bytes, comma-separated
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Measure only these designs (redis-cli is always measured: ratios need it)
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Vec<Variant>,
    /// Multiply the number of messages per run by this
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Skip the latency measurement
    #[arg(long)]
    no_latency: bool,
    /// Run each subscriber process under this command, e.g.
    /// "valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p" (for profiling)
    #[arg(long)]
    wrap: Option<String>,

    // Set by the benchmark when it starts one subscriber process.
    #[arg(long, hide = true, value_enum)]
    variant: Option<Variant>,
    #[arg(long, hide = true)]
    url: Option<String>,
    #[arg(long, hide = true)]
    channel: Option<String>,
    #[arg(long, hide = true)]
    count: Option<u64>,
    #[arg(long, hide = true)]
    size: Option<usize>,
    #[arg(long, hide = true)]
    latency: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(variant) = args.variant {
        // A subscriber process: run one design and report to the parent on stdout.
        return variants::run_child(ChildArgs {
            variant,
            url: args.url.context("--variant needs --url")?,
            channel: args.channel.context("--variant needs --channel")?,
            count: args.count.context("--variant needs --count")?,
            size: args.size.unwrap_or(0),
            latency: args.latency,
        });
    }
    // The parent mostly waits: one thread is enough, and leaves the cores to what we measure.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(benchmark(args))
}

/// Messages per run for a payload size: enough for a drain of roughly half a second.
fn messages_for(size: usize, scale: f64) -> u64 {
    let full = match size {
        0..=64 => 400_000,
        65..=1024 => 200_000,
        _ => 40_000,
    };
    let count = lab::scaled(full, (full / 200).max(200)) as f64 * scale;
    (count as u64).max(1)
}

/// One design's drain, measured.
#[derive(Clone, Debug, Default)]
struct Sample {
    secs: f64,
    received: u64,
    noticed: u64,
    cpu_s: f64,
    // How fast Redis took the PUBLISH commands (pipelined) while the subscriber was stopped.
    publish_rate: f64,
    // Voluntary context switches: a thread slept and had to be woken.
    sleeps: Option<u64>,
    peak_rss_mb: Option<f64>,
    // Resident memory once subscribed, before the backlog arrived.
    idle_rss_mb: Option<f64>,
}

/// What the table and the RESULT lines say about one design at one payload size.
struct Summary {
    variant: Variant,
    size: usize,
    sent: u64,
    received: u64,
    noticed: u64,
    median: f64,
    min: f64,
    max: f64,
    cpu_ns_per_msg: f64,
    sleeps_per_1k: Option<f64>,
    peak_rss_mb: Option<f64>,
    ratio_vs_cli: f64,
    /// Designs the book calls bounded: the largest peak RSS above the bound in any run
    /// (negative: below it), with the bound of that run.
    over_bound_mb: Option<(f64, f64)>,
}

async fn benchmark(args: Args) -> Result<()> {
    let quick = args.quick || lab::quick();
    ensure!(
        !(quick && args.write_table),
        "--write-table needs a full run: the book's table must not come from quick mode"
    );
    ensure!(args.scale > 0.0, "--scale must be positive");
    let runs = args.runs.unwrap_or(if quick { 1 } else { 3 }).max(1);
    let sizes = args.sizes.clone().unwrap_or_else(|| vec![16, 256, 4096]);
    ensure!(!sizes.is_empty(), "--sizes needs at least one size");
    ensure!(
        sizes.iter().all(|&size| size >= 16),
        "payload sizes must be at least 16 bytes: room for the sequence number (--sizes {sizes:?})"
    );
    let designs: Vec<Variant> = Variant::ALL
        .into_iter()
        .filter(|v| *v == Variant::Cli || args.only.is_empty() || args.only.contains(v))
        .collect();

    // ANCHOR: server
    // Output buffer limit off: a subscriber that is stopped while N messages are published
    // must get all N later, not be disconnected.
    let server = RedisServer::builder()
        .config("client-output-buffer-limit", "pubsub 0 0 0")
        .start_or_env()?;
    // ANCHOR_END: server
    let client = lab::connect::open(server.url()).await?;
    let mut publisher_con = client.get_multiplexed_async_connection().await?;
    let redis_version = redis_version(&mut publisher_con).await?;
    let load_before = lab::mem::load_average();
    println!(
        "Redis {redis_version} at {}; {}; load average {}",
        server.display_url(),
        measure::machine(),
        load_before.map_or("?".into(), |load| format!("{load:.2}"))
    );
    if cfg!(debug_assertions) && !quick {
        println!("note: a debug build; the book's numbers come from --release");
    }

    let mut samples: BTreeMap<(usize, usize), Vec<Sample>> = BTreeMap::new();
    let started = Instant::now();
    for &size in &sizes {
        let count = messages_for(size, args.scale);
        for run in 1..=runs {
            for (index, &variant) in designs.iter().enumerate() {
                let sample = drain_once(&server, &mut publisher_con, &args, variant, size, count)
                    .await
                    .with_context(|| format!("{} at {size} B, run {run}", variant.name()))?;
                println!(
                    "  {size:>5} B  run {run}/{runs}  {:<10} {:>10.0} msg/s  cpu {:>7.0} ns/msg  received {}/{count}",
                    variant.name(),
                    sample.received as f64 / sample.secs,
                    sample.cpu_s * 1e9 / count as f64,
                    sample.received
                );
                samples.entry((size, index)).or_default().push(sample);
            }
        }
    }

    let summaries = summarize(&designs, &sizes, &samples, &args)?;
    // What a live publisher could feed: Redis's pipelined PUBLISH rate, per payload size.
    let publish_rates: Vec<(usize, f64)> = sizes
        .iter()
        .map(|&size| {
            let rates = samples
                .iter()
                .filter(|((s, _), _)| *s == size)
                .flat_map(|(_, runs)| runs.iter().map(|run| run.publish_rate))
                .collect();
            (size, median_min_max(rates).0)
        })
        .collect();
    println!();
    print!("{}", throughput_tables(&summaries, &publish_rates, &args));
    for summary in &summaries {
        summary_result(summary).print();
    }

    println!("{}", goals(&summaries));

    let latency = if args.no_latency {
        Vec::new()
    } else {
        measure_latency(&server, &mut publisher_con, &args).await?
    };
    if !latency.is_empty() {
        println!();
        print!("{}", latency_table(&latency));
    }
    for row in &latency {
        row.result.print();
    }

    let elapsed = started.elapsed();
    println!("benchmark took {:.0?}", elapsed);
    if args.write_table {
        let load_after = lab::mem::load_average();
        let mut page = String::new();
        writeln!(
            page,
            "<!-- Generated by `{TABLE_COMMAND}`: do not edit by hand. -->\n"
        )?;
        writeln!(
            page,
            "Measured on {} with `{TABLE_COMMAND}` ({:.0} s): {}; Redis {redis_version}; \
             load average {} before and {} after the run. Median of {runs} runs per cell, \
             min-max in brackets; MB/s counts payload bytes.\n",
            measure::today_utc(),
            elapsed.as_secs_f64(),
            measure::machine(),
            load_before.map_or("?".into(), |load| format!("{load:.1}")),
            load_after.map_or("?".into(), |load| format!("{load:.1}")),
        )?;
        page += &throughput_tables(&summaries, &publish_rates, &args);
        if !latency.is_empty() {
            page += "\n";
            page += &latency_table(&latency);
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(TABLE_PATH);
        std::fs::create_dir_all(path.parent().context("table path has no parent")?)?;
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {TABLE_PATH}");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOALS_PATH);
        std::fs::write(&path, goals(&summaries))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {GOALS_PATH}");
    }
    Ok(())
}

async fn redis_version(con: &mut MultiplexedConnection) -> Result<String> {
    let info: String = redis::cmd("INFO").arg("server").query_async(con).await?;
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_string())
}

/// A subscriber process being measured.
enum Subscriber {
    Cli(std::process::Child),
    Rust {
        child: Child,
        lines: Box<Lines<BufReader<ChildStdout>>>,
    },
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // On an error half-way, never leave a stopped redis-cli behind (the Rust subscribers
        // are killed on drop by Tokio: `kill_on_drop`). SIGKILL also ends a stopped process.
        if let Subscriber::Cli(child) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Subscriber {
    fn pid(&self) -> Result<u32> {
        match self {
            Subscriber::Cli(child) => Ok(child.id()),
            Subscriber::Rust { child, .. } => child.id().context("subscriber already exited"),
        }
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pid()? as i32), signal)
            .with_context(|| format!("sending {signal} to the subscriber"))
    }
}

/// Start a subscriber process and return once it is subscribed.
async fn start_subscriber(
    server: &RedisServer,
    args: &Args,
    variant: Variant,
    channel: &str,
    count: u64,
    size: usize,
    latency: bool,
) -> Result<Subscriber> {
    let port = server
        .port()
        .context("the benchmark needs a lab-owned server")?;
    if variant == Variant::Cli {
        let child = std::process::Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "subscribe",
                channel,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-cli (install it with ci/setup.sh)")?;
        // redis-cli cannot tell us it is subscribed: ask the server.
        let mut con = server.client()?.get_multiplexed_async_connection().await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, subscribers): (String, u64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query_async(&mut con)
                .await?;
            if subscribers == 1 {
                return Ok(Subscriber::Cli(child));
            }
            ensure!(
                Instant::now() < deadline,
                "redis-cli did not subscribe within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let exe = std::env::current_exe()?;
    let mut command = match &args.wrap {
        Some(wrap) => {
            let mut words = wrap.split_whitespace();
            let mut command = Command::new(words.next().context("--wrap is empty")?);
            command.args(words).arg(exe);
            command
        }
        None => Command::new(exe),
    };
    command
        .args(["--variant", variant.name(), "--url", server.url()])
        .args(["--channel", channel, "--count", &count.to_string()])
        .args(["--size", &size.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if latency {
        command.arg("--latency");
    }
    let mut child = command.spawn().context("starting a subscriber process")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    expect_line(&mut lines, "READY", Duration::from_secs(60)).await?;
    Ok(Subscriber::Rust {
        child,
        lines: Box::new(lines),
    })
}

/// Read the child's output until a line starting with `prefix`; return that line.
async fn expect_line(
    lines: &mut Lines<BufReader<ChildStdout>>,
    prefix: &str,
    within: Duration,
) -> Result<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.starts_with(prefix) => return Ok(line),
            Ok(Ok(Some(_other))) => continue,
            Ok(Ok(None)) => bail!("the subscriber exited before printing {prefix}"),
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => bail!("the subscriber did not print {prefix} within {within:?}"),
        }
    }
}

// ANCHOR: drain
/// One run of one design: subscribe, stop, pre-fill, resume, time the drain.
async fn drain_once(
    server: &RedisServer,
    publisher_con: &mut MultiplexedConnection,
    args: &Args,
    variant: Variant,
    size: usize,
    count: u64,
) -> Result<Sample> {
    let channel = lab::unique_channel("ch07:drain");
    let mut subscriber =
        start_subscriber(server, args, variant, &channel, count, size, false).await?;
    subscriber.signal(Signal::SIGSTOP)?;
    // While the subscriber is stopped, every message waits in its output buffer in Redis.
    let published = Publisher::new(&channel)
        .payload_size(size)
        .send(publisher_con, 0..count)
        .await?;
    ensure!(
        published.queued_for == count,
        "Redis queued {} of {count} messages for the subscriber",
        published.queued_for
    );
    let publish_rate = count as f64 / published.elapsed.as_secs_f64();
    let pid = subscriber.pid()?;
    let (written_before, cpu_before) = (measure::bytes_written(pid), measure::cpu_of(pid));
    let sleeps_before = measure::sleeps_of(pid);
    let resumed = Instant::now();
    subscriber.signal(Signal::SIGCONT)?;
    let sample = match &mut subscriber {
        Subscriber::Rust { lines, child } => {
            // The subscriber prints DONE as soon as its handler has seen the last message.
            expect_line(lines, "DONE", Duration::from_secs(300)).await?;
            let secs = resumed.elapsed().as_secs_f64();
            let stats = parse_stats(&expect_line(lines, "STATS", Duration::from_secs(30)).await?)?;
            let status = child.wait().await?;
            ensure!(status.success(), "the subscriber failed: {status}");
            Sample {
                secs,
                received: stats.get("received")?,
                noticed: stats.get("noticed")?,
                cpu_s: stats.get("cpu_s")?,
                publish_rate,
                sleeps: stats.get("sleeps").ok(),
                peak_rss_mb: stats.get("peak_rss_mb").ok(),
                idle_rss_mb: stats.get("idle_rss_mb").ok(),
            }
        }
        Subscriber::Cli(_) => {
            // Done when redis-cli has printed (to /dev/null) every message.
            let per_message = measure::cli_output_len(&channel, size);
            let expected = per_message * count;
            let before = written_before
                .context("redis-cli is timed by /proc/<pid>/io, which needs Linux")?;
            let mut written = 0;
            let mut last_progress = Instant::now();
            let secs = loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let now = measure::bytes_written(pid).unwrap_or(before) - before;
                if now >= expected {
                    written = now;
                    break resumed.elapsed().as_secs_f64();
                }
                if now > written {
                    written = now;
                    last_progress = Instant::now();
                } else if last_progress.elapsed() > Duration::from_secs(5) {
                    break last_progress.duration_since(resumed).as_secs_f64();
                }
            };
            let cpu_s = match (cpu_before, measure::cpu_of(pid)) {
                (Some(before), Some(after)) => (after - before).as_secs_f64(),
                _ => f64::NAN,
            };
            let sleeps = match (sleeps_before, measure::sleeps_of(pid)) {
                (Some(before), Some(after)) => Some(after.saturating_sub(before)),
                _ => None,
            };
            let peak_rss_mb = measure::peak_rss_mb_of(pid);
            Sample {
                secs,
                received: (written / per_message).min(count),
                noticed: 0, // redis-cli notices nothing
                cpu_s,
                publish_rate,
                sleeps,
                peak_rss_mb,
                idle_rss_mb: None,
            }
        }
    };
    Ok(sample)
}
// ANCHOR_END: drain

/// `STATS key=value ...` from a subscriber process.
struct Stats(Vec<(String, String)>);

impl Stats {
    fn get<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        let value = self
            .0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .with_context(|| format!("the subscriber reported no {key}="))?;
        value
            .parse()
            .ok()
            .with_context(|| format!("the subscriber reported {key}={value}"))
    }
}

fn parse_stats(line: &str) -> Result<Stats> {
    Ok(Stats(
        line.split_whitespace()
            .skip(1)
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    ))
}

fn median_min_max(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

fn summarize(
    designs: &[Variant],
    sizes: &[usize],
    samples: &BTreeMap<(usize, usize), Vec<Sample>>,
    args: &Args,
) -> Result<Vec<Summary>> {
    let mut summaries = Vec::new();
    for &size in sizes {
        let count = messages_for(size, args.scale);
        // Measured in a fresh process, once per size.
        let queued_bytes = lab::mem::queued_msg_bytes(size)?;
        let mut cli_median = f64::NAN;
        for (index, &variant) in designs.iter().enumerate() {
            let runs = &samples[&(size, index)];
            let rates = runs.iter().map(|s| s.received as f64 / s.secs).collect();
            let (median, min, max) = median_min_max(rates);
            if variant == Variant::Cli {
                cli_median = median;
            }
            let cpu: Vec<f64> = runs.iter().map(|s| s.cpu_s * 1e9 / count as f64).collect();
            let rss = runs.iter().filter_map(|s| s.peak_rss_mb).reduce(f64::max);
            let sleeps: Vec<f64> = runs
                .iter()
                .filter_map(|s| s.sleeps)
                .map(|n| n as f64 * 1000.0 / count as f64)
                .collect();
            let over_bound_mb = variant.queue_capacity().and_then(|capacity| {
                runs.iter()
                    .filter_map(|s| {
                        let bound =
                            s.idle_rss_mb? + capacity as f64 * queued_bytes / 1_048_576.0 + 30.0;
                        Some((s.peak_rss_mb? - bound, bound))
                    })
                    .max_by(|a, b| a.0.total_cmp(&b.0))
            });
            summaries.push(Summary {
                variant,
                size,
                sent: count * runs.len() as u64,
                received: runs.iter().map(|s| s.received).sum(),
                noticed: runs.iter().map(|s| s.noticed).sum(),
                median,
                min,
                max,
                cpu_ns_per_msg: median_min_max(cpu).0,
                sleeps_per_1k: (!sleeps.is_empty()).then(|| median_min_max(sleeps).0),
                peak_rss_mb: rss,
                ratio_vs_cli: median / cli_median,
                over_bound_mb,
            });
        }
    }
    Ok(summaries)
}

fn summary_result(summary: &Summary) -> ResultLine {
    ResultLine::new(
        &format!("drain-{}B-{}", summary.size, summary.variant.name()),
        summary.variant.client(),
        summary.sent,
        summary.received,
        summary.noticed,
    )
    .with("msg_per_s", format!("{:.0}", summary.median))
    .with("min_msg_per_s", format!("{:.0}", summary.min))
    .with("max_msg_per_s", format!("{:.0}", summary.max))
    .with(
        "mb_per_s",
        format!("{:.1}", summary.median * summary.size as f64 / 1e6),
    )
    .with("cpu_ns_per_msg", format!("{:.0}", summary.cpu_ns_per_msg))
    .with(
        "sleeps_per_1k",
        summary
            .sleeps_per_1k
            .map_or("-".into(), |n| format!("{n:.1}")),
    )
    .with("ratio_vs_cli", format!("{:.2}", summary.ratio_vs_cli))
    .with(
        "peak_rss_mb",
        summary
            .peak_rss_mb
            .map_or("-".into(), |mb| format!("{mb:.1}")),
    )
    .with(
        "rss_bound_mb",
        summary
            .over_bound_mb
            .map_or("-".into(), |(_, bound)| format!("{bound:.1}")),
    )
    .with(
        "within_bound",
        summary
            .over_bound_mb
            .map_or("-", |(over, _)| if over <= 0.0 { "true" } else { "false" }),
    )
}

/// The chapter's goals, checked against this run: the production subscriber at least 1.0x
/// redis-cli at every size, the fastest design at least 1.2x at 16 B.
fn goals(summaries: &[Summary]) -> String {
    let range = |values: Vec<f64>| {
        let (_, min, max) = median_min_max(values);
        format!("{min:.2}-{max:.2}x")
    };
    let verdict = |met: bool| if met { "**met**" } else { "**not met**" };
    let mut out = String::from("In this run, ");
    let mut all_met = true;
    for variant in [Variant::ProductionMt, Variant::ProductionCt] {
        let rows: Vec<&Summary> = summaries.iter().filter(|s| s.variant == variant).collect();
        if rows.is_empty() {
            continue;
        }
        let cli_cpu = |size: usize| {
            summaries
                .iter()
                .find(|s| s.variant == Variant::Cli && s.size == size)
                .map_or(f64::NAN, |s| s.cpu_ns_per_msg)
        };
        all_met &= rows.iter().all(|s| s.ratio_vs_cli >= 1.0);
        let _ = write!(
            out,
            "the {} reached {} of redis-cli's messages per second across the payload sizes, \
             using {} its CPU time per message; ",
            variant.describe(),
            range(rows.iter().map(|s| s.ratio_vs_cli).collect()),
            range(
                rows.iter()
                    .map(|s| s.cpu_ns_per_msg / cli_cpu(s.size))
                    .collect()
            ),
        );
    }
    let _ = write!(
        out,
        "the goal of at least 1.0x at every size is {}. ",
        verdict(all_met)
    );
    let fastest = summaries
        .iter()
        .filter(|s| s.size == 16 && !matches!(s.variant, Variant::Cli | Variant::Raw))
        .max_by(|a, b| a.ratio_vs_cli.total_cmp(&b.ratio_vs_cli));
    if let Some(fastest) = fastest {
        let _ = write!(
            out,
            "The fastest Rust design at 16 B was the {} at {:.2}x: the goal of 1.2x is {}.",
            fastest.variant.describe(),
            fastest.ratio_vs_cli,
            verdict(fastest.ratio_vs_cli >= 1.2)
        );
    }
    let bounded: Vec<&Summary> = summaries
        .iter()
        .filter(|s| s.over_bound_mb.is_some())
        .collect();
    if !bounded.is_empty() {
        let within = bounded
            .iter()
            .all(|s| s.over_bound_mb.is_some_and(|(over, _)| over <= 0.0));
        let peaks: Vec<f64> = bounded.iter().filter_map(|s| s.peak_rss_mb).collect();
        let (_, low, high) = median_min_max(peaks);
        let _ = write!(
            out,
            " Memory: the designs the book calls bounded (the push sender into a bounded queue \
             and the production subscriber, on both runtimes) peaked at {low:.1}-{high:.1} MiB; \
             staying within idle + queue capacity x bytes per queued message + 30 MB at every \
             size is {}.",
            verdict(within)
        );
    }
    out.push('\n');
    out
}

fn size_label(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn thousands(value: f64) -> String {
    lab::report::thousands(value.round() as u64)
}

fn throughput_tables(summaries: &[Summary], publish_rates: &[(usize, f64)], args: &Args) -> String {
    let mut out = String::new();
    for &(size, publish_rate) in publish_rates {
        let count = messages_for(size, args.scale);
        let _ = writeln!(
            out,
            "**{} payloads**, {} messages per run; Redis took the pipelined PUBLISH commands \
             at {} msg/s (median)\n\n\
             | subscriber | msg/s (min-max) | MB/s | CPU ns/msg | sleeps/1k msg | peak RSS MiB | vs redis-cli | lost / noticed |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|",
            size_label(size),
            thousands(count as f64),
            thousands(publish_rate)
        );
        for s in summaries.iter().filter(|s| s.size == size) {
            let _ = writeln!(
                out,
                "| {} | {} ({}-{}) | {:.1} | {:.0} | {} | {} | {:.2}x | {} / {} |",
                s.variant.describe(),
                thousands(s.median),
                thousands(s.min),
                thousands(s.max),
                s.median * size as f64 / 1e6,
                s.cpu_ns_per_msg,
                s.sleeps_per_1k.map_or("-".into(), |n| format!("{n:.1}")),
                s.peak_rss_mb.map_or("-".into(), |mb| format!("{mb:.1}")),
                s.ratio_vs_cli,
                s.sent - s.received,
                s.noticed
            );
        }
        out.push('\n');
    }
    out
}

/// Latency at a steady, moderate rate: publish -> handler.
struct LatencyRow {
    variant: Variant,
    size: usize,
    rate: f64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    result: ResultLine,
}

const LATENCY_SIZE: usize = 256;
const LATENCY_RATE: f64 = 10_000.0;
const LATENCY_DESIGNS: [Variant; 4] = [
    Variant::StreamMt,
    Variant::StreamMtTask,
    Variant::StreamCt,
    Variant::ProductionMt,
];

async fn measure_latency(
    server: &RedisServer,
    publisher_con: &mut MultiplexedConnection,
    args: &Args,
) -> Result<Vec<LatencyRow>> {
    let count = ((lab::scaled(30_000, 500) as f64 * args.scale) as u64).max(1);
    let mut rows = Vec::new();
    for variant in LATENCY_DESIGNS {
        if !args.only.is_empty() && !args.only.contains(&variant) {
            continue;
        }
        let channel = lab::unique_channel("ch07:latency");
        let mut subscriber =
            start_subscriber(server, args, variant, &channel, count, LATENCY_SIZE, true).await?;
        let queued =
            publish_timestamped(publisher_con, &channel, LATENCY_SIZE, count, LATENCY_RATE).await?;
        ensure!(queued == count, "Redis queued {queued} of {count} messages");
        let Subscriber::Rust { lines, child } = &mut subscriber else {
            bail!("latency is measured for Rust subscribers only");
        };
        expect_line(lines, "DONE", Duration::from_secs(60)).await?;
        let stats = parse_stats(&expect_line(lines, "STATS", Duration::from_secs(30)).await?)?;
        ensure!(child.wait().await?.success(), "the subscriber failed");
        let received: u64 = stats.get("received")?;
        let noticed: u64 = stats.get("noticed")?;
        let (p50_us, p99_us, max_us) = (
            stats.get("p50_us")?,
            stats.get("p99_us")?,
            stats.get("max_us")?,
        );
        let result = ResultLine::new(
            &format!("latency-{LATENCY_SIZE}B-{}", variant.name()),
            variant.client(),
            count,
            received,
            noticed,
        )
        .with("rate", LATENCY_RATE)
        .with("p50_us", p50_us)
        .with("p99_us", p99_us)
        .with("max_us", max_us);
        rows.push(LatencyRow {
            variant,
            size: LATENCY_SIZE,
            rate: LATENCY_RATE,
            p50_us,
            p99_us,
            max_us,
            result,
        });
    }
    Ok(rows)
}

fn latency_table(rows: &[LatencyRow]) -> String {
    let mut out = String::new();
    if let Some(first) = rows.first() {
        let _ = writeln!(
            out,
            "**Latency**, publish -> handler, {} payloads at {} msg/s, {} messages\n\n\
             | subscriber | p50 µs | p99 µs | max µs | lost / noticed |\n|---|---:|---:|---:|---:|",
            size_label(first.size),
            thousands(first.rate),
            thousands(first.result.sent as f64)
        );
    }
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} / {} |",
            row.variant.describe(),
            row.p50_us,
            row.p99_us,
            row.max_us,
            row.result.lost,
            row.result.noticed
        );
    }
    out
}

/// Publish `count` messages at `rate` per second, each carrying the wall-clock time it was
/// sent: `<seq>#<unix nanos>#...`. (The lab's `Publisher` numbers messages but does not
/// timestamp them.) Returns how many were queued for a subscriber.
async fn publish_timestamped(
    con: &mut MultiplexedConnection,
    channel: &str,
    size: usize,
    count: u64,
    rate: f64,
) -> Result<u64> {
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    let (mut next, mut queued) = (0, 0);
    while next < count {
        ticks.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as u64 + 1).min(count);
        if due <= next {
            continue;
        }
        let mut pipe = redis::pipe();
        for seq in next..due {
            let mut payload = format!("{seq}#{}#", measure::unix_nanos()).into_bytes();
            payload.resize(payload.len().max(size), b'.');
            pipe.cmd("PUBLISH").arg(channel).arg(payload);
        }
        let replies: Vec<u64> = pipe.query_async(con).await?;
        queued += replies.iter().sum::<u64>();
        next = due;
    }
    Ok(queued)
}
