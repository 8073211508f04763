//! What chapter 7 shows of the benchmark: the server it runs against, and one run of one
//! design (subscribe, stop, pre-fill, resume, time the drain). `subscriber.rs` starts the
//! subscriber processes; `measure.rs` reads their CPU time, memory and output from `/proc`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lab::{Publisher, RedisServer};
use nix::sys::signal::Signal;
use redis::aio::MultiplexedConnection;

use crate::bench::Variant;
use crate::subscriber::{Subscriber, expect_line, start_subscriber};
use crate::table::parse_stats;
use crate::{Args, Sample, measure};

// ANCHOR: server
/// Output buffer limit off: a subscriber that is stopped while N messages are published
/// must get all N later, not be disconnected.
pub fn start_server() -> Result<RedisServer> {
    let server = RedisServer::builder()
        .config("client-output-buffer-limit", "pubsub 0 0 0")
        .start_or_env()?;
    Ok(server)
}
// ANCHOR_END: server

// ANCHOR: drain
/// One run of one design: subscribe, stop, pre-fill, resume, time the drain.
pub async fn drain_once(
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
