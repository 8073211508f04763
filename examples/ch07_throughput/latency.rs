//! Latency at a steady, moderate rate (`--latency`): publish -> handler, timestamped
//! payloads, percentiles per design, and the latency table.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use lab::{RedisServer, ResultLine};
use redis::aio::MultiplexedConnection;

use crate::bench::Variant;
use crate::subscriber::{Subscriber, expect_line, start_subscriber};
use crate::table::{parse_stats, size_label, thousands};
use crate::{Args, measure};

/// Latency at a steady, moderate rate: publish -> handler.
pub struct LatencyRow {
    pub variant: Variant,
    pub size: usize,
    pub rate: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub result: ResultLine,
}

pub const LATENCY_SIZE: usize = 256;

pub const LATENCY_RATE: f64 = 10_000.0;

pub const LATENCY_DESIGNS: [Variant; 4] = [
    Variant::StreamMt,
    Variant::StreamMtTask,
    Variant::StreamCt,
    Variant::ProductionMt,
];

pub async fn measure_latency(
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

pub fn latency_table(rows: &[LatencyRow]) -> String {
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
pub async fn publish_timestamped(
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
