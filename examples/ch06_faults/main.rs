//! Chapter 6: the production subscriber (`lab::production`) against the faults a service
//! meets, one scenario each, on lab-owned servers. Every scenario ends with a RESULT line;
//! `lost - noticed` must be 0 in all of them.
//!
//! cargo run --release --example ch06_faults                       # every scenario
//! cargo run --release --example ch06_faults -- --scenario restart # one of them
//!
//! The subscriber runs on its own current-thread runtime, in its own thread, as it would in
//! a service; the harness (publishers, fault injection, tallies) runs on another runtime.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use lab::overflow::Overflow;
use lab::production::{Config, Report};
use lab::{Pace, Publisher, RedisServer, ResultLine};
use redis::aio::MultiplexedConnection;

mod harness;
mod misbehave;
mod publishers;

use harness::{Misbehave, Subscriber};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// No fault: the baseline.
    Steady,
    /// CLIENT KILL TYPE pubsub while a burst is on its way.
    ClientKill,
    /// SIGKILL redis-server, restart it on the same port 1 s later.
    Restart,
    /// SIGSTOP the server for 3 s, then SIGCONT.
    Pause,
    /// A handler blocks the thread; Redis's output-buffer limit disconnects us.
    BufferLimit,
    /// A handler that never returns, every 1,000th message of one channel.
    Hang,
    /// 1,000 bad payloads (not UTF-8, malformed, oversized) among 100,000 good ones.
    BadPayloads,
    /// Shutdown asked for in the middle of a burst, with a short drain deadline.
    Shutdown,
    /// A slow handler, a small queue and the `disconnect` policy: drop the connection,
    /// let the queue drain, reconnect, report the gap.
    DisconnectPolicy,
    /// Three named publishers on one channel, one restarted; a small queue drops.
    ManyPublishers,
    /// Two bare-numbered `redis-cli --pipe` publishers on one channel.
    BarePublishers,
    /// SIGSTOP longer than the PING timeout, a publisher sending all along.
    SilentServer,
    /// `--overflow disconnect` with messages nobody numbered.
    UnnumberedDisconnect,
}

/// Chapter 6's faults, one RESULT line each.
#[derive(Parser, Debug)]
#[command(long_about = None)]
struct Args {
    /// Run only these scenarios (default: all).
    #[arg(long, value_enum)]
    scenario: Vec<Scenario>,
    /// Small runs (also LAB_QUICK=1).
    #[arg(long)]
    quick: bool,
}

pub const CHANNELS: usize = 4;
/// Fence messages published on every channel once the subscriber is back: any loss before
/// them shows up as a sequence gap, so nothing can be lost after the last message seen.
const FENCE: u64 = 10;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let scenarios = if args.scenario.is_empty() {
        Scenario::value_variants().to_vec()
    } else {
        args.scenario.clone()
    };
    for scenario in scenarios {
        let started = Instant::now();
        let line = run_scenario(scenario)
            .await
            .with_context(|| format!("scenario {scenario:?}"))?;
        println!("  ({:.1?})", started.elapsed());
        line.print();
    }
    Ok(())
}

fn channels() -> Vec<String> {
    let base = lab::unique_channel("ch06:faults");
    (0..CHANNELS).map(|i| format!("{base}:{i}")).collect()
}

/// The configuration every scenario starts from: numbered messages, 2 workers.
fn base_config(server: &RedisServer, channels: &[String]) -> Config {
    let mut config = Config::new(server.url(), channels.iter().cloned());
    config.numbered = true;
    // Our publishers start at 0 after the subscriber is up: a channel that loses
    // everything before its first message must show a gap too.
    config.first_seq = Some(0);
    config.workers = 2;
    config.ping_every = Duration::from_secs(1);
    config.ping_timeout = Duration::from_secs(5);
    config.handler_timeout = Duration::from_millis(100);
    config
}

/// Publish `seqs` on every channel at once, each channel on its own connection.
async fn publish_all(
    server: &RedisServer,
    channels: &[String],
    seqs: std::ops::Range<u64>,
    size: usize,
) -> Result<u64> {
    publish_all_paced(server, channels, seqs, size, Pace::Burst).await
}

/// Like [`publish_all`], each channel's publisher at `pace`.
async fn publish_all_paced(
    server: &RedisServer,
    channels: &[String],
    seqs: std::ops::Range<u64>,
    size: usize,
    pace: Pace,
) -> Result<u64> {
    let client = server.client()?;
    let mut tasks = Vec::new();
    for channel in channels {
        let mut con: MultiplexedConnection = client.get_multiplexed_async_connection().await?;
        let publisher = Publisher::new(channel).payload_size(size).pace(pace);
        let seqs = seqs.clone();
        tasks.push(tokio::spawn(
            async move { publisher.send(&mut con, seqs).await },
        ));
    }
    let mut sent = 0;
    for task in tasks {
        sent += task.await??.sent;
    }
    Ok(sent)
}

/// The RESULT line of a scenario where everything was published on every channel.
fn result(
    name: &str,
    subscriber: &Subscriber,
    report: &Report,
    sent_per_channel: u64,
) -> ResultLine {
    let (received, out_of_order) = subscriber.tally();
    subscriber.print_events();
    println!("  final: {report}");
    ResultLine::new(
        name,
        lab::REDIS_CURRENT,
        sent_per_channel * CHANNELS as u64,
        received,
        report.noticed(),
    )
    .with("reconnects", report.reconnects)
    .with("gaps", report.gaps)
    .with("out_of_order", out_of_order)
    .with("timed_out", report.timed_out)
    .with("bad_payload", report.bad_payload)
    .with("oversized", report.oversized)
    .with("processed", report.processed)
}

async fn run_scenario(scenario: Scenario) -> Result<ResultLine> {
    let channels = channels();
    println!("scenario {scenario:?}:");
    match scenario {
        Scenario::Steady => {
            let server = RedisServer::start()?;
            let n = lab::scaled(50_000, 5_000);
            let sub = Subscriber::start(base_config(&server, &channels), n, Misbehave::Nothing)?;
            publish_all(&server, &channels, 0..n, 32).await?;
            sub.settle(n - 1, Duration::from_secs(2)).await;
            let mut sub = sub;
            let report = sub.finish()?;
            Ok(result("steady", &sub, &report, n))
        }
        // ANCHOR: client_kill
        Scenario::ClientKill => {
            let mut server = RedisServer::start()?;
            let n = lab::scaled(100_000, 20_000);
            let mut sub = Subscriber::start(
                base_config(&server, &channels),
                n + FENCE,
                Misbehave::Nothing,
            )?;
            let publishing = {
                let (server_url, channels) = (server.url().to_string(), channels.clone());
                tokio::spawn(async move {
                    let server = RedisServer::external(server_url)?;
                    publish_all(&server, &channels, 0..n, 32).await
                })
            };
            // Kill the subscriber's connection once a fifth of the burst has arrived.
            while sub.received() < n * CHANNELS as u64 / 5 && !publishing.is_finished() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let killed = server.kill_pubsub_clients()?;
            publishing.await??;
            sub.wait_subscriptions(2, Duration::from_secs(5)).await?;
            sub.wait_connected(Duration::from_secs(5)).await?;
            publish_all(&server, &channels, n..n + FENCE, 32).await?;
            sub.settle(n + FENCE - 1, Duration::from_secs(2)).await;
            let report = sub.finish()?;
            Ok(result("client-kill", &sub, &report, n + FENCE).with("killed", killed))
        }
        // ANCHOR_END: client_kill
        // ANCHOR: restart
        Scenario::Restart => {
            let mut server = RedisServer::start()?;
            let n = lab::scaled(100_000, 20_000);
            let mut sub = Subscriber::start(
                base_config(&server, &channels),
                n + FENCE,
                Misbehave::Nothing,
            )?;
            publish_all(&server, &channels, 0..n, 32).await?;
            // SIGKILL: whatever Redis had not written to the socket yet dies with it.
            server.kill()?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            server.restart()?;
            let back = Instant::now();
            let resubscribed = sub.wait_subscriptions(2, Duration::from_secs(10)).await?;
            let resubscribe_ms = resubscribed.saturating_duration_since(back).as_millis();
            publish_all(&server, &channels, n..n + FENCE, 32).await?;
            sub.settle(n + FENCE - 1, Duration::from_secs(2)).await;
            let report = sub.finish()?;
            Ok(result("restart", &sub, &report, n + FENCE)
                .with("resubscribed_ms_after_restart", resubscribe_ms))
        }
        // ANCHOR_END: restart
        Scenario::Pause => {
            let mut server = RedisServer::start()?;
            let n = lab::scaled(50_000, 10_000);
            let mut config = base_config(&server, &channels);
            // Room for the whole burst: this scenario is about the pause, not the queue. (A
            // loaded CI machine overflowed the default 10,000 after the resume: 5,085
            // dropped, counted.)
            config.queue_capacity = (n * CHANNELS as u64) as usize;
            let mut sub = Subscriber::start(config, n, Misbehave::Nothing)?;
            publish_all(&server, &channels, 0..n / 2, 32).await?;
            server.pause()?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            server.resume()?;
            publish_all(&server, &channels, n / 2..n, 32).await?;
            sub.settle(n - 1, Duration::from_secs(2)).await;
            let report = sub.finish()?;
            Ok(result("pause-3s", &sub, &report, n))
        }
        // ANCHOR: buffer_limit
        Scenario::BufferLimit => {
            // A small limit, and a handler that blocks the subscriber's only thread for
            // 500 ms: nobody reads the socket, Redis's buffer for us passes 256 KiB, and
            // Redis closes the connection.
            let server = RedisServer::builder()
                .config("client-output-buffer-limit", "pubsub 256kb 128kb 1")
                .start()?;
            let n = lab::scaled(5_000, 2_000);
            let misbehave = Misbehave::Block {
                at: 100,
                for_ms: 500,
            };
            let mut sub = Subscriber::start(base_config(&server, &channels), n + FENCE, misbehave)?;
            publish_all(&server, &channels, 0..n, 4096).await?;
            sub.wait_subscriptions(2, Duration::from_secs(10)).await?;
            sub.wait_connected(Duration::from_secs(5)).await?;
            publish_all(&server, &channels, n..n + FENCE, 4096).await?;
            sub.settle(n + FENCE - 1, Duration::from_secs(2)).await;
            let report = sub.finish()?;
            Ok(result("output-buffer-limit", &sub, &report, n + FENCE))
        }
        // ANCHOR_END: buffer_limit
        Scenario::Hang => {
            let server = RedisServer::start()?;
            let n = lab::scaled(20_000, 5_000);
            let every = 1_000;
            let mut config = base_config(&server, &channels);
            config.handler_timeout = Duration::from_millis(50);
            // Room for the whole burst: this scenario is about the timeout, not the queue.
            config.queue_capacity = (n * CHANNELS as u64) as usize;
            let mut sub = Subscriber::start(config, n, Misbehave::Hang { every })?;
            publish_all(&server, &channels, 0..n, 32).await?;
            sub.settle(n - 1, Duration::from_secs(2)).await;
            let report = sub.finish()?;
            Ok(result("hanging-handler", &sub, &report, n).with("hangs", n / every))
        }
        // ANCHOR: disconnect_policy
        Scenario::DisconnectPolicy => {
            let server = RedisServer::start()?;
            let n = lab::scaled(50_000, 10_000);
            let mut config = base_config(&server, &channels);
            config.overflow = Overflow::Disconnect;
            config.queue_capacity = 1_000;
            let mut sub = Subscriber::start(config, n + FENCE, Misbehave::Slow { every: 10 })?;
            publish_all(&server, &channels, 0..n, 32).await?;
            // Once the publishers are done, the queues drain and the subscriber comes back
            // for good: then the fence.
            sub.wait_subscriptions(2, Duration::from_secs(30)).await?;
            sub.wait_connected(Duration::from_secs(30)).await?;
            publish_all(&server, &channels, n..n + FENCE, 32).await?;
            sub.settle(n + FENCE - 1, Duration::from_secs(2)).await;
            let report = sub.finish()?;
            Ok(result("disconnect-policy", &sub, &report, n + FENCE)
                .with("dropped", report.dropped))
        }
        // ANCHOR_END: disconnect_policy
        Scenario::BadPayloads => bad_payloads(&channels).await,
        Scenario::Shutdown => shutdown_mid_burst(&channels).await,
        Scenario::ManyPublishers => publishers::many_publishers().await,
        Scenario::BarePublishers => publishers::bare_publishers().await,
        Scenario::SilentServer => publishers::silent_server().await,
        Scenario::UnnumberedDisconnect => publishers::unnumbered_disconnect().await,
    }
}

// ANCHOR: bad_payloads
/// 100,000 good messages and 1,000 bad ones in between: a third not UTF-8, a third not
/// numbered, a third larger than `max_payload`.
async fn bad_payloads(channels: &[String]) -> Result<ResultLine> {
    let server = RedisServer::start()?;
    let (good, bad) = (100_000u64, 1_000u64);
    let per_channel = good / CHANNELS as u64;
    let mut config = base_config(&server, channels);
    config.max_payload = 8 * 1024;
    // Room for the whole burst: this scenario is about payloads, not the queue. (With the
    // default 10,000 a slow CI machine overflowed it, rightly, and failed the test.)
    config.queue_capacity = (good + bad) as usize;
    let mut sub = Subscriber::start(config, per_channel, Misbehave::Nothing)?;
    let mut con = server.client()?.get_multiplexed_async_connection().await?;
    let bad_sent = lab::publish::with_bad_payloads(&mut con, channels, per_channel, bad).await?;
    sub.settle(per_channel - 1, Duration::from_secs(2)).await;
    let report = sub.finish()?;
    Ok(result("bad-payloads", &sub, &report, per_channel).with("bad_sent", bad_sent))
}
// ANCHOR_END: bad_payloads

// ANCHOR: shutdown
/// Shutdown while a burst is arriving and the handler is behind: everything that reached
/// the subscriber is either processed or counted (dropped, abandoned at the deadline).
async fn shutdown_mid_burst(channels: &[String]) -> Result<ResultLine> {
    let server = RedisServer::start()?;
    let n = lab::scaled(100_000, 25_000);
    let mut config = base_config(&server, channels);
    config.drain_deadline = Duration::from_millis(200);
    config.queue_capacity = 5_000;
    let mut sub = Subscriber::start(config, n, Misbehave::Slow { every: 10 })?;
    let publishing = {
        let (server_url, channels) = (server.url().to_string(), channels.to_vec());
        // Fast, but paced: a burst taking about a second (quick) or four (full), so that the
        // shutdown below lands in the middle of it even on a machine fast enough to read an
        // unpaced burst completely before the handlers have seen a few thousand messages.
        tokio::spawn(async move {
            let server = RedisServer::external(server_url)?;
            publish_all_paced(&server, &channels, 0..n, 32, Pace::Rate(25_000.0)).await
        })
    };
    while sub.received() < 2_000 && !publishing.is_finished() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let report = sub.finish()?;
    publishing.await??;
    let (handled, out_of_order) = sub.tally();
    sub.print_events();
    println!("  final: {report}");
    // Here `sent` is what reached the subscriber before it stopped, `received` what the
    // handler saw: the difference must be exactly what the report owns up to.
    Ok(ResultLine::new(
        "shutdown-mid-burst",
        lab::REDIS_CURRENT,
        report.received - report.bad_payload - report.oversized,
        handled,
        report.noticed(),
    )
    .with("out_of_order", out_of_order)
    .with("processed", report.processed)
    .with("dropped", report.dropped)
    .with("abandoned", report.abandoned)
    .with("published", n * CHANNELS as u64))
}
// ANCHOR_END: shutdown
