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
//!
//! What the chapter shows: `drain.rs` (the server and one run) and `variants.rs` (the designs).
//! The rest is the benchmark's machinery: `subscriber.rs` starts and stops the subscriber
//! processes, `bench.rs` is what every design shares in its process, `measure.rs` reads
//! `/proc`, `table.rs` and `latency.rs` write the tables and the RESULT lines.

mod bench;
mod drain;
mod latency;
mod measure;
mod subscriber;
mod table;
mod variants;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use redis::aio::MultiplexedConnection;

use bench::{ChildArgs, Variant};
use drain::{drain_once, start_server};
use latency::{latency_table, measure_latency};
use table::{goals, median_min_max, summarize, summary_result, throughput_tables};
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

    let server = start_server()?;
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
