//! Chapter 6: the production subscriber (`lab::production`) against the faults a service
//! meets, one scenario each, on lab-owned servers. Every scenario ends with a RESULT line;
//! `lost - noticed` must be 0 in all of them.
//!
//! cargo run --release --example ch06_faults                       # every scenario
//! cargo run --release --example ch06_faults -- --scenario restart # one of them
//!
//! The subscriber runs on its own current-thread runtime, in its own thread, as it would in
//! a service; the harness (publishers, fault injection, tallies) runs on another runtime.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use lab::overflow::Overflow;
use lab::production::{Config, Event, Rejected, Report};
use lab::{Pace, Publisher, RedisServer, ResultLine, Tally};
use redis::aio::MultiplexedConnection;

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

const CHANNELS: usize = 4;
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

/// What the harness sees of the subscriber: a tally per channel, filled by the handler, and
/// the subscriber's events with the time they happened.
#[derive(Default)]
struct Observed {
    tallies: Vec<Tally>,
    events: Vec<(Instant, String)>,
    subscribed: Vec<Instant>,
    /// True between a `Subscribed` event and the next `Disconnected`.
    connected: bool,
    /// The highest sequence number the handler saw, per channel.
    last_seq: Vec<Option<u64>>,
}

type Shared = Arc<Mutex<Observed>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Observed> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How the test handler misbehaves.
#[derive(Clone, Copy, Debug)]
enum Misbehave {
    Nothing,
    /// Never return for every `every`-th message of channel 0.
    Hang {
        every: u64,
    },
    /// Block the thread (not just the task) for `for_ms` at message `at` of channel 0.
    Block {
        at: u64,
        for_ms: u64,
    },
    /// Sleep 1 ms every `every` messages: a consumer slower than the burst.
    Slow {
        every: u64,
    },
}

/// The subscriber under test, running on its own thread and runtime.
struct Subscriber {
    shared: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<Report>>>,
}

impl Subscriber {
    fn start(config: Config, sent_per_channel: u64, misbehave: Misbehave) -> Result<Self> {
        let shared: Shared = Arc::new(Mutex::new(Observed {
            tallies: (0..CHANNELS)
                .map(|_| Tally::new(sent_per_channel))
                .collect(),
            last_seq: vec![None; CHANNELS],
            ..Observed::default()
        }));
        let mut config = config;
        let events = Arc::clone(&shared);
        config.on_event = Some(Arc::new(move |event: &Event| {
            let mut observed = lock(&events);
            match event {
                Event::Subscribed { .. } => {
                    observed.subscribed.push(Instant::now());
                    observed.connected = true;
                }
                Event::Disconnected { .. } => observed.connected = false,
                _ => {}
            }
            observed.events.push((Instant::now(), event.to_string()));
        }));
        let handler_shared = Arc::clone(&shared);
        // ANCHOR: handler
        // The handler a service would write: decode, validate, then do the work. A payload
        // it cannot use is rejected (counted), never unwrapped.
        let handler = move |msg: redis::Msg| {
            let shared = Arc::clone(&handler_shared);
            async move {
                let text = std::str::from_utf8(msg.get_payload_bytes())
                    .map_err(|_| Rejected::BadPayload)?;
                let seq = lab::seq_of(text.as_bytes()).map_err(|_| Rejected::BadPayload)?;
                let channel = channel_index(msg.get_channel_name()).ok_or(Rejected::BadPayload)?;
                {
                    let mut observed = lock(&shared);
                    observed.tallies[channel].record(seq);
                    let last = &mut observed.last_seq[channel];
                    *last = (*last).max(Some(seq));
                }
                misbehave_on(misbehave, channel, seq).await;
                Ok(())
            }
        };
        // ANCHOR_END: handler
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || -> Result<Report> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let running = lab::production::start(config, handler).await;
                let _ = ready_tx.send(());
                let running = running?;
                let _ = stop_rx.await;
                running.shutdown().await
            })
        });
        // Wait until subscribed (or failed): messages published from now on are heard.
        let _ = ready_rx.recv();
        let mut subscriber = Self {
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        if subscriber
            .thread
            .as_ref()
            .is_some_and(|thread| thread.is_finished())
        {
            subscriber.finish()?;
            bail!("the subscriber stopped at once");
        }
        Ok(subscriber)
    }

    fn received(&self) -> u64 {
        lock(&self.shared).tallies.iter().map(Tally::received).sum()
    }

    /// Wait until every channel's handler saw message `last`, or nothing new came for `quiet`.
    async fn settle(&self, last: u64, quiet: Duration) {
        let mut progress = (self.received(), Instant::now());
        loop {
            if lock(&self.shared)
                .last_seq
                .iter()
                .all(|seen| *seen >= Some(last))
            {
                return;
            }
            let now = self.received();
            if now != progress.0 {
                progress = (now, Instant::now());
            } else if progress.1.elapsed() > quiet {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Wait until the subscriber is subscribed on a live connection.
    async fn wait_connected(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while !lock(&self.shared).connected {
            if Instant::now() > deadline {
                bail!("the subscriber was not connected within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Wait until the subscriber subscribed `count` times in all (first time included).
    async fn wait_subscriptions(&self, count: usize, limit: Duration) -> Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = lock(&self.shared).subscribed.get(count - 1) {
                return Ok(*at);
            }
            if Instant::now() > deadline {
                bail!("the subscriber did not subscribe again within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Shut down; the final report.
    fn finish(&mut self) -> Result<Report> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(report)) => report,
            Some(Err(_)) => bail!("the subscriber thread panicked"),
            None => bail!("already finished"),
        }
    }

    /// Distinct messages the handler saw, over all channels, and how many came out of order.
    fn tally(&self) -> (u64, u64) {
        let observed = lock(&self.shared);
        let received = observed.tallies.iter().map(Tally::received).sum();
        let out_of_order = observed.tallies.iter().map(Tally::out_of_order).sum();
        (received, out_of_order)
    }

    fn print_events(&self) {
        let observed = lock(&self.shared);
        let start = observed.events.first().map(|(at, _)| *at);
        for (at, event) in observed.events.iter().take(12) {
            let since = start.map(|s| at.duration_since(s)).unwrap_or_default();
            println!("  [{:>7.3}s] {event}", since.as_secs_f64());
        }
        if observed.events.len() > 12 {
            println!("  ... {} events in all", observed.events.len());
        }
    }
}

async fn misbehave_on(misbehave: Misbehave, channel: usize, seq: u64) {
    match misbehave {
        Misbehave::Hang { every } if channel == 0 && seq % every == every - 1 => {
            std::future::pending::<()>().await
        }
        Misbehave::Block { at, for_ms } if channel == 0 && seq == at => {
            // Deliberately wrong: blocking the runtime's only thread stops the reader too.
            std::thread::sleep(Duration::from_millis(for_ms))
        }
        Misbehave::Slow { every } if seq.is_multiple_of(every) => {
            tokio::time::sleep(Duration::from_millis(1)).await
        }
        _ => {}
    }
}

/// Channel names end in `:<index>`.
fn channel_index(name: &str) -> Option<usize> {
    name.rsplit(':')
        .next()?
        .parse()
        .ok()
        .filter(|i| *i < CHANNELS)
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
            let mut sub =
                Subscriber::start(base_config(&server, &channels), n, Misbehave::Nothing)?;
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
    let mut pipe = redis::pipe();
    let mut bad_sent = 0;
    for seq in 0..per_channel {
        for channel in channels {
            pipe.cmd("PUBLISH")
                .arg(channel)
                .arg(lab::numbered(seq, 32))
                .ignore();
            if bad_sent < bad && seq % 100 == 50 {
                let payload = match bad_sent % 3 {
                    0 => vec![0xff, 0xfe, 0xfd, b'#'],
                    1 => b"{\"not\": \"numbered\"}".to_vec(),
                    _ => vec![b'x'; 8 * 1024 + 1],
                };
                pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                bad_sent += 1;
            }
        }
        if seq % 250 == 249 || seq + 1 == per_channel {
            pipe.query_async::<()>(&mut con).await?;
            pipe.clear();
        }
    }
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
