//! Chapter 6, "Bursts: the memory bound": the command-line subscriber
//! (`ch06_production_subscriber`, a child process) under two bursts far larger than its
//! queues, on both Tokio runtimes. One RESULT line per burst and runtime, with the
//! subscriber's own final counters and its peak RSS against the bound the chapter states.
//!
//! cargo run --example ch06_bursts                          # both bursts, both runtimes
//! cargo run --example ch06_bursts -- --burst backlog       # one of them
//! cargo run --example ch06_bursts -- --write-table         # src/generated/ch06-bursts.md
//!
//! The bursts:
//! - `redis-benchmark`: 2,000,000 unnumbered PUBLISH from 8 connections, 64 per pipeline,
//!   128-byte payloads (a tool nobody here wrote; package redis-tools);
//! - `backlog`: chapter 7's method. The subscriber is stopped (SIGSTOP) while 1,000,000
//!   numbered messages pile up in Redis (output buffer limit off), then released (SIGCONT).
//!
//! Both run on throwaway servers, never on `REDIS_URL`: they flood the server, and the
//! backlog needs `client-output-buffer-limit pubsub 0 0 0`.

use std::fmt::Write as _;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use lab::production::OUTCOMES;
use lab::report::thousands;
use lab::{RedisServer, ResultLine};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Burst {
    /// 2,000,000 PUBLISH from redis-benchmark (quick: 200,000).
    RedisBenchmark,
    /// SIGSTOP, 1,000,000 numbered messages queued in Redis, SIGCONT (quick: 100,000).
    Backlog,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Runtime {
    CurrentThread,
    MultiThread,
}

/// Chapter 6's bursts against the command-line subscriber.
#[derive(Parser, Debug)]
#[command(long_about = None)]
struct Args {
    /// Only these bursts (default: both).
    #[arg(long, value_enum)]
    burst: Vec<Burst>,
    /// Only these runtimes for the subscriber (default: both).
    #[arg(long, value_enum)]
    runtime: Vec<Runtime>,
    /// Write chapter 6's table (src/generated/ch06-bursts.md) from this run.
    #[arg(long)]
    write_table: bool,
    /// Small bursts (also LAB_QUICK=1).
    #[arg(long)]
    quick: bool,
}

/// What the subscriber runs with: 2 workers with queues of 10,000 (its defaults).
const QUEUE_CAPACITY: f64 = 20_000.0;
const PAYLOAD: usize = 128;
/// The chapter's bound: idle RSS + the queues' capacity × one queued message + this.
const SLACK_MB: f64 = 30.0;
/// ... and never more than this, whatever the measurement of one queued message says.
pub const ABSOLUTE_MB: f64 = 64.0;

fn main() -> Result<()> {
    let args = Args::parse();
    let bursts = pick(&args.burst, Burst::value_variants());
    let runtimes = pick(&args.runtime, Runtime::value_variants());
    if lab::server::redis_url_from_env().is_some() {
        println!("(REDIS_URL ignored: these bursts flood the server, so they use their own)");
    }
    // Measured in a fresh process, once: what the bound is built from.
    let queued_bytes = lab::mem::queued_msg_bytes(PAYLOAD)?;
    let started = Instant::now();
    let load_before = load();
    let mut lines = Vec::new();
    for &burst in &bursts {
        for &runtime in &runtimes {
            let report = match burst {
                Burst::RedisBenchmark => redis_benchmark(runtime)?,
                Burst::Backlog => backlog(runtime)?,
            };
            let line = result_line(burst, runtime, &report, queued_bytes)?;
            line.print();
            lines.push(line);
        }
    }
    if args.write_table {
        let took = started.elapsed();
        write_table(&lines, queued_bytes, took, (load_before, load()))?;
    }
    Ok(())
}

fn pick<T: Copy + PartialEq>(chosen: &[T], all: &[T]) -> Vec<T> {
    if chosen.is_empty() {
        all.to_vec()
    } else {
        chosen.to_vec()
    }
}

// ANCHOR: redis_benchmark
/// 2,000,000 PUBLISH from redis-benchmark against a handler that needs 1 ms of CPU per
/// message: far more than it can handle, sent faster than a debug build reads.
fn redis_benchmark(runtime: Runtime) -> Result<Report> {
    let server = RedisServer::start()?;
    let channel = lab::unique_channel("ch06:benchmark");
    let subscriber = Subscriber::start(
        &server,
        &channel,
        &["--work-us", "1000", "--drain-ms", "300"],
        runtime,
    )?;
    let port = server.port().context("a throwaway server has a port")?;
    let messages = lab::scaled(2_000_000, 200_000);
    let benchmark = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-n", &messages.to_string()])
        .args(["-P", "64", "-c", "8", "-q", "PUBLISH", &channel])
        .arg("x".repeat(PAYLOAD))
        .output()
        .context("running redis-benchmark (package redis-tools; ci/setup.sh installs it)")?;
    ensure!(benchmark.status.success(), "redis-benchmark: {benchmark:?}");
    std::thread::sleep(Duration::from_millis(500));
    let mut report = subscriber.stop()?;
    report.sent = messages;
    Ok(report)
}
// ANCHOR_END: redis_benchmark

/// Chapter 7's method: the subscriber stopped while the whole burst waits in Redis, then
/// released at once, so that its socket holds far more than its queues.
fn backlog(runtime: Runtime) -> Result<Report> {
    let server = RedisServer::builder()
        .config("client-output-buffer-limit", "pubsub 0 0 0")
        .start()?;
    let channel = lab::unique_channel("ch06:backlog");
    let args = ["--numbered", "--work-us", "200", "--drain-ms", "300"];
    let subscriber = Subscriber::start(&server, &channel, &args, runtime)?;
    let messages = lab::scaled(1_000_000, 100_000);
    kill(subscriber.pid(), Signal::SIGSTOP)?;
    let queued_for = tokio::runtime::Runtime::new()?.block_on(async {
        let mut con = lab::connect::open(server.url())
            .await?
            .get_multiplexed_async_connection()
            .await?;
        let publisher = lab::Publisher::new(&channel).payload_size(PAYLOAD);
        anyhow::Ok(publisher.send(&mut con, 0..messages).await?.queued_for)
    })?;
    ensure!(
        queued_for == messages,
        "queued for the subscriber: {queued_for}"
    );
    kill(subscriber.pid(), Signal::SIGCONT)?;
    wait_until_handed_over(&server)?;
    std::thread::sleep(Duration::from_millis(300));
    let mut report = subscriber.stop()?;
    report.sent = messages;
    Ok(report)
}

/// Redis has written everything out to the subscriber: its output buffer is empty.
fn wait_until_handed_over(server: &RedisServer) -> Result<()> {
    let mut con = server.client()?.get_connection()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut con)?;
        if list.contains(" omem=0 ") {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the backlog never drained: {list}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The subscriber's own final report (`final:`) and memory (`memory:`), as numbers.
#[derive(Debug, Default)]
struct Report {
    sent: u64,
    fields: std::collections::BTreeMap<String, f64>,
}

impl Report {
    fn get(&self, key: &str) -> Result<f64> {
        self.fields
            .get(key)
            .copied()
            .with_context(|| format!("the subscriber did not report {key}"))
    }
}

/// `received` is what reached the application: every outcome but the queue's drops and what
/// a shutdown abandoned. `noticed` is the subscriber's own count of loss (lab::production's
/// `Report::noticed`): those two, and the gaps in numbered messages. `read` is what came off
/// the socket. A disconnection by Redis in the middle of an unnumbered burst loses an
/// uncountable number, `sent - read`: an unknown gap, reported as one, so there `noticed`
/// stays below `lost`.
fn result_line(burst: Burst, runtime: Runtime, report: &Report, queued: f64) -> Result<ResultLine> {
    let mut handed_over = 0.0;
    for outcome in OUTCOMES {
        if !matches!(outcome, "dropped" | "abandoned") {
            handed_over += report.get(outcome)?;
        }
    }
    let noticed = report.get("missing")? + report.get("dropped")? + report.get("abandoned")?;
    let idle = report.get("rss_idle_mb")?;
    let bound = idle + QUEUE_CAPACITY * queued / 1_048_576.0 + SLACK_MB;
    let mut line = ResultLine::new(
        &format!("{}/{}", name(burst), name(runtime)),
        lab::REDIS_CURRENT,
        report.sent,
        handed_over as u64,
        noticed as u64,
    )
    .with("read", report.get("received")?);
    for key in OUTCOMES
        .iter()
        .chain(&["missing", "unknown_gaps", "reconnects"])
    {
        line = line.with(key, report.get(key)?);
    }
    Ok(line
        .with("rss_idle_mb", format!("{idle:.1}"))
        .with("rss_peak_mb", format!("{:.1}", report.get("rss_peak_mb")?))
        .with("bound_mb", format!("{:.1}", bound.min(ABSOLUTE_MB))))
}

fn name(value: impl ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// The command-line subscriber, as a child process on `channel`.
struct Subscriber {
    child: Child,
}

impl Subscriber {
    /// Start it and wait until Redis counts its subscription.
    fn start(server: &RedisServer, channel: &str, args: &[&str], runtime: Runtime) -> Result<Self> {
        let binary = lab::example::build("ch06_production_subscriber")?;
        let child = Command::new(binary)
            .args(["--url", server.url(), "-c", channel, "--report-every", "0"])
            .args(["--runtime", &name(runtime)])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ch06_production_subscriber")?;
        let subscriber = Subscriber { child };
        let mut con = server.client()?.get_connection()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query(&mut con)?;
            if counts.first().is_some_and(|(_, n)| *n == 1) {
                return Ok(subscriber);
            }
            if Instant::now() > deadline {
                let output = subscriber.stop_output();
                bail!("the subscriber never subscribed:\n{output}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// SIGTERM (it unsubscribes, drains and prints its final report), and read its
    /// `final:` and `memory:` lines.
    fn stop(self) -> Result<Report> {
        let output = self.stop_output();
        ensure!(
            !output.contains("panicked"),
            "the subscriber panicked:\n{output}"
        );
        let mut report = Report::default();
        for line in output.lines() {
            let Some(rest) = line
                .strip_prefix("final: ")
                .or_else(|| line.strip_prefix("memory: "))
            else {
                continue;
            };
            for (key, value) in rest.split_whitespace().filter_map(|p| p.split_once('=')) {
                if let Ok(number) = value.parse() {
                    report.fields.insert(key.to_string(), number);
                }
            }
        }
        ensure!(
            report.fields.contains_key("received"),
            "no final report:\n{output}"
        );
        Ok(report)
    }

    /// SIGTERM, wait, and everything it printed (stdout, then stderr).
    fn stop_output(mut self) -> String {
        let _ = kill(self.pid(), Signal::SIGTERM);
        let status = self.child.wait();
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut out);
        }
        format!("{out}(exit: {status:?})")
    }
}

/// Chapter 6's table, from this run's RESULT lines.
fn write_table(
    lines: &[ResultLine],
    queued_bytes: f64,
    took: Duration,
    load: (String, String),
) -> Result<()> {
    let command = "cargo run --example ch06_bursts -- --write-table";
    let mut out = format!("<!-- $ {command} -->\n\n");
    let _ = writeln!(
        out,
        "Measured with `{command}` ({:.0} s, debug build, 2 cores, load average {} before and \
         {} after). One queued message of {PAYLOAD} B takes {queued_bytes:.0} bytes.\n",
        took.as_secs_f64(),
        load.0,
        load.1
    );
    out.push_str("| burst | runtime | peak RSS (idle) | bound | read | dropped | reconnects |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for line in lines {
        let (burst, runtime) = line
            .scenario
            .split_once('/')
            .unwrap_or((&line.scenario, ""));
        let burst = match burst {
            "redis-benchmark" => format!("`redis-benchmark`, {}", thousands(line.sent)),
            _ => format!("SIGSTOP backlog, {}", thousands(line.sent)),
        };
        let field = |key: &str| line.get(key).unwrap_or("?").to_string();
        let count = |key: &str| {
            line.get_f64(key)
                .map(|n| thousands(n as u64))
                .unwrap_or_default()
        };
        let reconnects = match field("reconnects").as_str() {
            "0" => "0".to_string(),
            n => format!("{n} (unknown gaps: {})", field("unknown_gaps")),
        };
        let _ = writeln!(
            out,
            "| {burst} | {runtime} | {} MB ({}) | {} MB | {} | {} | {reconnects} |",
            field("rss_peak_mb"),
            field("rss_idle_mb"),
            field("bound_mb"),
            count("read"),
            count("dropped"),
        );
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/generated/ch06-bursts.md");
    std::fs::write(path, out).with_context(|| format!("writing {path}"))?;
    println!("wrote {path}");
    Ok(())
}

/// The 1-minute load average, for the table's note on noise.
fn load() -> String {
    lab::mem::load_average().map_or_else(|| "unknown".to_string(), |load| load.to_string())
}
