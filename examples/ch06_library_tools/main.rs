//! Chapter 6: redis-rs's own tools through chapter 6's faults, side by side with
//! `lab::production`. The library's tools are a `ConnectionManager` (RESP3) that reconnects
//! and resubscribes by itself, with a push sender: a `broadcast` channel, or chapter 5's
//! bounded queue (`tools.rs`); a fourth design tunes the first as far as the library allows
//! (retry for ever, a PING every second). Every fault hits the subscribers at once, on one
//! lab-owned server, each on its own thread and runtime; every design ends each scenario with
//! a RESULT line (`scenario=<fault>/<design>`). The burst runs one process per design, for
//! its peak RSS.
//!
//! cargo run --example ch06_library_tools                                 # every fault (~2 min)
//! cargo run --example ch06_library_tools -- --scenario half-open         # one of them
//! cargo run --example ch06_library_tools -- --write-table                # and the chapter's table
//!
//! Debug builds, like the tests that check the table. Quick mode (`--quick`, LAB_QUICK=1)
//! without `--scenario` runs three short faults; the tests run each fault on its own. Every
//! server is lab-owned (the faults kill, stop and reconfigure it): REDIS_URL is not used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use lab::message::Identity;
use lab::{Pace, Publisher, RedisServer, ResultLine};

mod harness;
#[path = "../ch06_faults/misbehave.rs"]
mod misbehave;
mod proxy;
mod table;
mod tools;

use harness::{Design, Misbehave, Outcome, Setup, Subscriber, probe_channel};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// CLIENT KILL TYPE pubsub while a burst is on its way.
    ClientKill,
    /// SIGKILL redis-server, restart it on the same port 1 s later.
    Restart,
    /// SIGSTOP the server for 3 s (shorter than lab::production's PING timeout), then SIGCONT.
    Pause,
    /// SIGSTOP for 8 s (longer than the PING timeout) while a publisher sends 2,000/s.
    SilentServer,
    /// The connection goes silent for good without closing (a partition): a proxy stops
    /// forwarding what is open through it.
    HalfOpen,
    /// SIGKILL, restart 14 s later: longer than the ConnectionManager's retries last.
    LongOutage,
    /// A handler blocks the thread; Redis's output-buffer limit disconnects the subscriber.
    BufferLimit,
    /// The subscriber's user loses its channel permissions (Redis disconnects it), and gets
    /// them back 1 s later.
    AclRevoked,
    /// 1,000 bad payloads (not UTF-8, not numbered, oversized) among 100,000 good ones.
    BadPayloads,
    /// Shutdown in the middle of a paced burst, with a short drain deadline.
    Shutdown,
    /// `redis-benchmark -n 2000000 -P 64 -c 8 -q PUBLISH <channel> <128 bytes>` against a
    /// handler that needs 1 ms of CPU per message; one process per design (its peak RSS).
    Burst,
}

impl Scenario {
    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// redis-rs's ConnectionManager and push senders through chapter 6's faults, next to
/// lab::production.
#[derive(Parser, Debug)]
#[command(long_about = None)]
struct Args {
    /// Run only these faults (default: all; quick mode: client-kill, restart, bad-payloads).
    #[arg(long, value_enum)]
    scenario: Vec<Scenario>,
    /// Run only these designs (default: all three, side by side).
    #[arg(long, value_enum)]
    design: Vec<Design>,
    /// The Tokio runtime of the burst's subscriber (the other faults run every design on a
    /// current-thread runtime of its own).
    #[arg(long, value_enum, default_value = "current-thread")]
    runtime: Runtime,
    /// Small runs (also LAB_QUICK=1).
    #[arg(long)]
    quick: bool,
    /// Run every fault (and the burst on both runtimes), then write the chapter's table to
    /// src/generated/ch06-library-tools.md.
    #[arg(long)]
    write_table: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Runtime {
    CurrentThread,
    MultiThread,
}

pub const CHANNELS: usize = 4;
/// Fence messages published on every channel once the subscribers are back (or the wait
/// for them is over): anything lost before them shows as a sequence gap.
const FENCE: u64 = 10;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let designs = if args.design.is_empty() {
        Design::ALL.to_vec()
    } else {
        args.design.clone()
    };
    let scenarios = match (args.scenario.is_empty(), lab::quick() && !args.write_table) {
        (false, _) => args.scenario.clone(),
        (true, true) => vec![
            Scenario::ClientKill,
            Scenario::Restart,
            Scenario::BadPayloads,
        ],
        (true, false) => Scenario::value_variants().to_vec(),
    };
    let (load_before, run_started) = (table::load_average(), Instant::now());
    let mut all = Vec::new();
    for scenario in scenarios {
        let started = Instant::now();
        println!("scenario {}:", scenario.name());
        let lines = if scenario == Scenario::Burst {
            let runtimes: &[Runtime] = match args.write_table {
                true => &[Runtime::CurrentThread, Runtime::MultiThread],
                false => std::slice::from_ref(&args.runtime),
            };
            let mut lines = Vec::new();
            for &runtime in runtimes {
                lines.extend(burst(&designs, runtime).await?);
            }
            lines
        } else {
            run_scenario(scenario, &designs)
                .await
                .with_context(|| format!("scenario {}", scenario.name()))?
        };
        println!("  ({:.1?})", started.elapsed());
        for line in &lines {
            line.print();
        }
        all.extend(lines);
    }
    if args.write_table {
        let command = "cargo run --example ch06_library_tools -- --write-table";
        let load = (load_before, table::load_average());
        table::write(&all, command, run_started.elapsed(), load)?;
    }
    Ok(())
}

fn channels(base: &str) -> Vec<String> {
    (0..CHANNELS).map(|i| format!("{base}:{i}")).collect()
}

/// Named publishers, one per channel, numbering from 0 with heartbeats.
fn publishers(channels: &[String]) -> Vec<Publisher> {
    channels
        .iter()
        .enumerate()
        .map(|(i, channel)| Publisher::new(channel).named(Identity::new(&format!("p{i}"))))
        .collect()
}

/// Publish `seqs` from every publisher at once, each on its own connection; with `goodbye`,
/// each ends with its last heartbeat.
async fn publish(
    url: &str,
    publishers: &[Publisher],
    seqs: std::ops::Range<u64>,
    goodbye: bool,
) -> Result<u64> {
    let client = redis::Client::open(url)?;
    let mut tasks = Vec::new();
    for publisher in publishers {
        let mut con = client.get_multiplexed_async_connection().await?;
        let (publisher, seqs) = (publisher.clone(), seqs.clone());
        tasks.push(tokio::spawn(async move {
            let end = seqs.end;
            let sent = publisher.send(&mut con, seqs).await?.sent;
            if goodbye {
                publisher.goodbye(&mut con, end).await?;
            }
            anyhow::Ok(sent)
        }));
    }
    let mut sent = 0;
    for task in tasks {
        sent += task.await??;
    }
    Ok(sent)
}

/// What the server says about each design's probe channel: how many connections are
/// subscribed to it, sampled every 2 ms from the moment the query is sent.
/// When each sample's query was sent, and the count per design.
type Samples = Arc<Mutex<Vec<(Instant, Vec<u64>)>>>;

struct Probes {
    samples: Samples,
    designs: Vec<Design>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Probes {
    fn start(url: &str, base: &str, designs: &[Design]) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let names: Vec<String> = designs.iter().map(|d| probe_channel(base, *d)).collect();
        let samples: Samples = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&samples);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        // On a thread and runtime of its own, so that a busy harness does not delay it.
        let thread = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let mut con = None;
                while !stopped.load(Ordering::Relaxed) {
                    let sent_at = Instant::now();
                    if let Some(counts) = sample(&client, &mut con, &names).await {
                        recorded
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push((sent_at, counts));
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            });
        });
        Ok(Self {
            samples,
            designs: designs.to_vec(),
            stop,
            thread: Some(thread),
        })
    }

    /// The first moment at or after `since` when the server counted more than `above`
    /// subscriptions to `design`'s probe.
    fn first_above(&self, design: Design, since: Instant, above: u64) -> Option<Instant> {
        let index = self.designs.iter().position(|d| *d == design)?;
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples
            .iter()
            .find(|(at, counts)| *at >= since && counts[index] > above)
            .map(|(at, _)| *at)
    }

    /// The first moment at or after `since` when `design` was not subscribed at all.
    fn first_zero(&self, design: Design, since: Instant) -> Option<Instant> {
        let index = self.designs.iter().position(|d| *d == design)?;
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples
            .iter()
            .find(|(at, counts)| *at >= since && counts[index] == 0)
            .map(|(at, _)| *at)
    }

    /// Wait until every design is subscribed again (more than `above` subscriptions at or
    /// after `since`), or `limit` passed; how long each took, from `since`.
    async fn wait_resubscribed(
        &self,
        since: Instant,
        above: u64,
        limit: Duration,
    ) -> HashMap<Design, Option<Duration>> {
        loop {
            let found: HashMap<Design, Option<Duration>> = self
                .designs
                .iter()
                .map(|d| (*d, self.first_above(*d, since, above).map(|at| at - since)))
                .collect();
            if found.values().all(Option::is_some) || since.elapsed() > limit {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `PUBSUB NUMSUB` of `names`; `None` when the server does not answer within 100 ms.
async fn sample(
    client: &redis::Client,
    con: &mut Option<redis::aio::MultiplexedConnection>,
    names: &[String],
) -> Option<Vec<u64>> {
    if con.is_none() {
        let connect = client.get_multiplexed_async_connection();
        match tokio::time::timeout(Duration::from_millis(100), connect).await {
            Ok(Ok(connected)) => *con = Some(connected),
            _ => return None,
        }
    }
    let connection = con.as_mut()?;
    let mut numsub = redis::cmd("PUBSUB");
    numsub.arg("NUMSUB").arg(names);
    let query = numsub.query_async::<Vec<(String, u64)>>(connection);
    match tokio::time::timeout(Duration::from_millis(100), query).await {
        Ok(Ok(pairs)) => Some(pairs.into_iter().map(|(_, n)| n).collect()),
        Ok(Err(_)) => {
            *con = None;
            None
        }
        Err(_) => None,
    }
}

/// The three subscribers of one scenario, and what the server says about them.
struct SideBySide {
    subscribers: Vec<Subscriber>,
    probes: Probes,
    started: Instant,
}

impl SideBySide {
    fn start(designs: &[Design], setup: &Setup, admin_url: &str) -> Result<Self> {
        let probes = Probes::start(admin_url, &setup.probe_base, designs)?;
        let subscribers = designs
            .iter()
            .map(|design| Subscriber::start(*design, setup))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            subscribers,
            probes,
            started: Instant::now(),
        })
    }

    /// The fewest distinct messages any design has handled.
    fn least_received(&self) -> u64 {
        self.subscribers
            .iter()
            .map(|s| s.tally().0)
            .min()
            .unwrap_or(0)
    }

    /// The most distinct messages any design has handled.
    fn most_received(&self) -> u64 {
        self.subscribers
            .iter()
            .map(|s| s.tally().0)
            .max()
            .unwrap_or(0)
    }

    /// Wait until every design saw message `last` on every channel, or nothing new came
    /// for `quiet`.
    async fn settle(&self, last: u64, quiet: Duration) {
        let total = || -> u64 { self.subscribers.iter().map(|s| s.handled().0).sum() };
        let mut progress = (total(), Instant::now());
        loop {
            if self.subscribers.iter().all(|s| s.saw_everywhere(last)) {
                return;
            }
            let now = total();
            if now != progress.0 {
                progress = (now, Instant::now());
            } else if progress.1.elapsed() > quiet {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stop every design at once, then collect each one's counters.
    fn finish(mut self) -> Result<Vec<(Subscriber, Outcome)>> {
        for subscriber in &mut self.subscribers {
            subscriber.stop();
        }
        let mut finished = Vec::new();
        for mut subscriber in self.subscribers.drain(..) {
            let outcome = subscriber.finish()?;
            finished.push((subscriber, outcome));
        }
        Ok(finished)
    }
}

/// How a fault went for one design, beyond the counts.
#[derive(Clone, Copy, Default)]
struct Recovery {
    /// A reconnection was needed (the server dropped or lost the subscription).
    needed: bool,
    /// How long until the server had the subscription again, if it did.
    resubscribed: Option<Duration>,
}

/// The RESULT line of one design in a scenario where `sent` messages were published.
fn result(
    scenario: Scenario,
    subscriber: &Subscriber,
    outcome: &Outcome,
    sent: u64,
    recovery: Recovery,
    since: Instant,
) -> ResultLine {
    let (received, out_of_order) = subscriber.tally();
    let (told_disconnected, told_resubscribed) = subscriber.told();
    println!("  {}:", subscriber.design.name());
    subscriber.print_events(since);
    let mut line = ResultLine::new(
        &format!("{}/{}", scenario.name(), subscriber.design.name()),
        lab::REDIS_CURRENT,
        sent,
        received,
        outcome.noticed,
    )
    .with("out_of_order", out_of_order)
    .with("missing", outcome.missing)
    .with("dropped", outcome.dropped)
    .with("lagged", outcome.lagged)
    .with("abandoned", outcome.abandoned)
    .with("unknown_gaps", outcome.unknown_gaps)
    .with("heartbeats", outcome.heartbeats)
    .with("told_disconnected", told_disconnected)
    .with("told_resubscribed", told_resubscribed);
    if recovery.needed {
        line = match recovery.resubscribed {
            Some(after) => line
                .with("resubscribed", "yes")
                .with("resubscribed_ms", after.as_millis()),
            None => line.with("resubscribed", "no"),
        };
    }
    if let Some(reconnects) = outcome.reconnects {
        line = line.with("reconnects", reconnects);
    }
    if subscriber.design == Design::ManagerTuned {
        line = line.with("pings_failed", outcome.pings_failed);
    }
    line
}

fn base_setup(url: &str, base: &str, room: u64) -> Setup {
    Setup {
        url: url.to_string(),
        channels: channels(base),
        probe_base: base.to_string(),
        capacity: 10_000,
        misbehave: Misbehave::Nothing,
        drain: Duration::from_secs(1),
        numbered: true,
        room,
        max_payload: 1 << 20,
    }
}

/// From when a design's resubscription is timed.
#[derive(Clone, Copy)]
enum Since {
    /// From this moment, once the server holds more than `stale` subscriptions of it (the
    /// ones it still keeps for connections that went silent).
    At { at: Instant, stale: u64 },
    /// From the moment the server dropped the design's subscription, after `at`.
    OwnDrop { at: Instant },
}

/// A fault scenario in progress: the subscribers, side by side, and their publishers (named,
/// one per channel, numbering from 0 with heartbeats).
struct Run {
    scenario: Scenario,
    side: SideBySide,
    publishers: Vec<Publisher>,
    /// Where the publishers and the probes connect (the server itself, never a proxy).
    url: String,
}

impl Run {
    fn start(
        scenario: Scenario,
        designs: &[Design],
        server_url: &str,
        setup: &Setup,
        payload: usize,
    ) -> Result<Self> {
        Ok(Self {
            scenario,
            side: SideBySide::start(designs, setup, server_url)?,
            publishers: publishers(&setup.channels)
                .into_iter()
                .map(|p| p.payload_size(payload))
                .collect(),
            url: server_url.to_string(),
        })
    }

    async fn publish(&self, seqs: std::ops::Range<u64>) -> Result<u64> {
        publish(&self.url, &self.publishers, seqs, false).await
    }

    /// After the fault: wait up to `limit` for every design to be subscribed again, publish
    /// the fence (`n..n + FENCE`) and the goodbyes, and read every design's counts.
    async fn end(self, since: Since, limit: Duration, n: u64) -> Result<Vec<ResultLine>> {
        let resubscribed: HashMap<Design, Option<Duration>> = match since {
            Since::At { at, stale } => self.side.probes.wait_resubscribed(at, stale, limit).await,
            Since::OwnDrop { at } => {
                let deadline = Instant::now() + limit;
                loop {
                    let found: HashMap<Design, Option<Duration>> = self
                        .side
                        .subscribers
                        .iter()
                        .map(|s| {
                            let probes = &self.side.probes;
                            let back = probes.first_zero(s.design, at).and_then(|dropped| {
                                probes
                                    .first_above(s.design, dropped, 0)
                                    .map(|back| back - dropped)
                            });
                            (s.design, back)
                        })
                        .collect();
                    if found.values().all(Option::is_some) || Instant::now() > deadline {
                        break found;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        publish(&self.url, &self.publishers, n..n + FENCE, true).await?;
        self.side
            .settle(n + FENCE - 1, Duration::from_secs(2))
            .await;
        let started = self.side.started;
        let finished = self.side.finish()?;
        let sent = (n + FENCE) * CHANNELS as u64;
        Ok(finished
            .iter()
            .map(|(subscriber, outcome)| {
                let recovery = Recovery {
                    needed: true,
                    resubscribed: resubscribed.get(&subscriber.design).copied().flatten(),
                };
                result(self.scenario, subscriber, outcome, sent, recovery, started)
            })
            .collect())
    }
}

async fn run_scenario(scenario: Scenario, designs: &[Design]) -> Result<Vec<ResultLine>> {
    let base = lab::unique_channel("ch06:tools");
    match scenario {
        // ANCHOR: client_kill
        Scenario::ClientKill => {
            let mut server = RedisServer::start()?;
            let n = lab::scaled(100_000, 20_000);
            let setup = base_setup(server.url(), &base, n + FENCE);
            let run = Run::start(scenario, designs, server.url(), &setup, 32)?;
            let killed_at = {
                let publishing = run.publish(0..n);
                tokio::pin!(publishing);
                // Kill every subscriber's connection once the fastest has read a fifth of
                // the burst: the rest is on its way (in Redis's output buffers, if the
                // publishers are done).
                let (mut done, deadline) = (false, Instant::now() + Duration::from_secs(10));
                while run.side.most_received() < n * CHANNELS as u64 / 5
                    && Instant::now() < deadline
                {
                    tokio::select! {
                        sent = &mut publishing, if !done => { sent?; done = true; }
                        () = tokio::time::sleep(Duration::from_millis(1)) => {}
                    }
                }
                let killed_at = Instant::now();
                server.kill_pubsub_clients()?;
                if !done {
                    publishing.await?;
                }
                killed_at
            };
            let since = Since::At {
                at: killed_at,
                stale: 0,
            };
            run.end(since, Duration::from_secs(10), n).await
        }
        // ANCHOR_END: client_kill
        Scenario::Restart => {
            let mut server = RedisServer::start()?;
            let n = lab::scaled(100_000, 20_000);
            let setup = base_setup(server.url(), &base, n + FENCE);
            let run = Run::start(scenario, designs, server.url(), &setup, 32)?;
            run.publish(0..n).await?;
            server.kill()?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            server.restart()?;
            let since = Since::At {
                at: Instant::now(),
                stale: 0,
            };
            run.end(since, Duration::from_secs(10), n).await
        }
        // ANCHOR: long_outage
        Scenario::LongOutage => {
            // The ConnectionManager's defaults: 6 retries, 100 ms doubling, each delay
            // stretched by up to 100 % (jitter): it gives up after 6.3 to 12.6 s.
            let mut server = RedisServer::start()?;
            let n = lab::scaled(20_000, 5_000);
            let setup = base_setup(server.url(), &base, n + FENCE);
            let run = Run::start(scenario, designs, server.url(), &setup, 32)?;
            run.publish(0..n).await?;
            server.kill()?;
            tokio::time::sleep(Duration::from_secs(14)).await;
            server.restart()?;
            let since = Since::At {
                at: Instant::now(),
                stale: 0,
            };
            run.end(since, Duration::from_secs(3), n).await
        }
        // ANCHOR_END: long_outage
        Scenario::Pause => {
            let mut server = RedisServer::start()?;
            let n = lab::scaled(50_000, 10_000);
            let setup = base_setup(server.url(), &base, n + FENCE);
            let side = SideBySide::start(designs, &setup, server.url())?;
            let publishers = publishers(&setup.channels);
            publish(server.url(), &publishers, 0..n / 2, false).await?;
            server.pause()?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            server.resume()?;
            publish(server.url(), &publishers, n / 2..n + FENCE, true).await?;
            side.settle(n + FENCE - 1, Duration::from_secs(2)).await;
            no_fault_needed(scenario, side, (n + FENCE) * CHANNELS as u64)
        }
        Scenario::SilentServer => silent_server(designs, &base).await,
        Scenario::HalfOpen => half_open(designs, &base).await,
        // ANCHOR: buffer_limit
        Scenario::BufferLimit => {
            // A small limit, and a handler that blocks its subscriber's only thread for
            // 500 ms: nobody reads the socket, Redis's buffer passes 256 KiB, and Redis
            // closes the connection.
            let server = RedisServer::builder()
                .config("client-output-buffer-limit", "pubsub 256kb 128kb 1")
                .start()?;
            let n = lab::scaled(5_000, 2_000);
            let mut setup = base_setup(server.url(), &base, n + FENCE);
            setup.misbehave = Misbehave::Block {
                at: 100,
                for_ms: 500,
            };
            let run = Run::start(scenario, designs, server.url(), &setup, 4096)?;
            let started = Instant::now();
            run.publish(0..n).await?;
            run.end(Since::OwnDrop { at: started }, Duration::from_secs(10), n)
                .await
        }
        // ANCHOR_END: buffer_limit
        Scenario::AclRevoked => acl_revoked(designs, &base).await,
        Scenario::BadPayloads => bad_payloads(designs, &base).await,
        Scenario::Shutdown => shutdown_mid_burst(designs, &base).await,
        Scenario::Burst => bail!("the burst runs in processes of its own"),
    }
}

/// RESULT lines of a scenario in which no design had to reconnect.
fn no_fault_needed(scenario: Scenario, side: SideBySide, sent: u64) -> Result<Vec<ResultLine>> {
    let started = side.started;
    let finished = side.finish()?;
    Ok(finished
        .iter()
        .map(|(s, o)| result(scenario, s, o, sent, Recovery::default(), started))
        .collect())
}

// ANCHOR: silent_server
/// The server stops (SIGSTOP) for 8 s, longer than lab::production's PING timeout (5 s),
/// while a named publisher sends 2,000 messages a second on channel 0; its PUBLISH commands
/// wait in the stopped server's socket. Does anybody notice the silence?
async fn silent_server(designs: &[Design], base: &str) -> Result<Vec<ResultLine>> {
    let mut server = RedisServer::start()?;
    let silence = Duration::from_secs(8);
    let rate = 2_000.0;
    let n = (rate * (3.0 + silence.as_secs_f64() + 2.0)) as u64;
    let setup = base_setup(server.url(), base, n);
    let side = SideBySide::start(designs, &setup, server.url())?;
    let publisher = Publisher::new(&setup.channels[0])
        .named(Identity::new("steady"))
        .pace(Pace::Rate(rate));
    let publishing = lab::publish::spawn_patient(publisher, &server.client()?, n).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped_at = Instant::now();
    server.pause()?;
    tokio::time::sleep(silence).await;
    server.resume()?;
    let sent = publishing.await??;
    let deadline = Instant::now() + Duration::from_secs(5);
    while side.subscribers.iter().any(|s| s.tally().0 < sent) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stopped_at;
    let started = side.started;
    let finished = side.finish()?;
    Ok(finished
        .iter()
        .map(|(s, o)| {
            // A reconnection: lab::production counts it; redis-rs pushes a `Disconnection`
            // to the library designs' sender whenever a connection ends.
            let reconnected = o.reconnects.unwrap_or(0) + s.told().0 > 0;
            result(
                Scenario::SilentServer,
                s,
                o,
                sent,
                Recovery::default(),
                started,
            )
            .with("reconnected", if reconnected { "yes" } else { "no" })
            .with("silence_s", silence.as_secs())
        })
        .collect())
}
// ANCHOR_END: silent_server

// ANCHOR: half_open
/// The subscribers' connections go silent for good, without closing: a proxy between them
/// and Redis stops forwarding what is open through it (new connections pass).
async fn half_open(designs: &[Design], base: &str) -> Result<Vec<ResultLine>> {
    let server = RedisServer::start()?;
    let port = server.port().context("needs a lab-owned server")?;
    let proxy = proxy::Proxy::start(port).await?;
    let n = lab::scaled(20_000, 5_000);
    let setup = base_setup(&proxy.url(), base, n + FENCE);
    let run = Run::start(Scenario::HalfOpen, designs, server.url(), &setup, 32)?;
    run.publish(0..n / 2).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen_at = Instant::now();
    proxy.freeze_open_connections();
    run.publish(n / 2..n).await?;
    // The server still counts each frozen connection as a subscriber: one stale each.
    let since = Since::At {
        at: frozen_at,
        stale: 1,
    };
    run.end(since, Duration::from_secs(8), n).await
}
// ANCHOR_END: half_open

// ANCHOR: acl_revoked
/// The subscribers' user loses its channel permissions: Redis disconnects them, and every
/// SUBSCRIBE is refused (NOPERM) until the permissions come back, 1 s later.
async fn acl_revoked(designs: &[Design], base: &str) -> Result<Vec<ResultLine>> {
    let server = RedisServer::start()?;
    let port = server.port().context("needs a lab-owned server")?;
    let mut admin = server.client()?.get_multiplexed_async_connection().await?;
    let acl = |rules: &[&str]| {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg("subscriber").arg(rules);
        cmd
    };
    acl(&["on", ">s3cret", "~*", "&*", "+@all"])
        .exec_async(&mut admin)
        .await?;
    let url = format!("redis://subscriber:s3cret@127.0.0.1:{port}/");
    let n = lab::scaled(20_000, 5_000);
    let setup = base_setup(&url, base, n + FENCE);
    let run = Run::start(Scenario::AclRevoked, designs, server.url(), &setup, 32)?;
    run.publish(0..n).await?;
    acl(&["resetchannels"]).exec_async(&mut admin).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    acl(&["allchannels"]).exec_async(&mut admin).await?;
    let since = Since::At {
        at: Instant::now(),
        stale: 0,
    };
    run.end(since, Duration::from_secs(3), n).await
}
// ANCHOR_END: acl_revoked

/// 100,000 good messages and 1,000 bad ones in between: a third not UTF-8, a third not
/// numbered, a third larger than lab::production's `max_payload` (8 KiB).
async fn bad_payloads(designs: &[Design], base: &str) -> Result<Vec<ResultLine>> {
    let server = RedisServer::start()?;
    let (good, bad) = (100_000u64, 1_000u64);
    let per_channel = good / CHANNELS as u64;
    let mut setup = base_setup(server.url(), base, per_channel);
    setup.max_payload = 8 * 1024;
    // Room for the whole burst: this scenario is about payloads, not the queue.
    setup.capacity = (good + bad) as usize;
    let side = SideBySide::start(designs, &setup, server.url())?;
    let mut con = server.client()?.get_multiplexed_async_connection().await?;
    let bad_sent =
        lab::publish::with_bad_payloads(&mut con, &setup.channels, per_channel, bad).await?;
    side.settle(per_channel - 1, Duration::from_secs(2)).await;
    let started = side.started;
    let finished = side.finish()?;
    Ok(finished
        .iter()
        .map(|(s, o)| {
            let (_, rejected) = s.handled();
            result(
                Scenario::BadPayloads,
                s,
                o,
                good,
                Recovery::default(),
                started,
            )
            .with("bad_sent", bad_sent)
            .with("bad_counted", rejected + o.oversized)
        })
        .collect())
}

/// Shutdown while a paced burst arrives and the handler is behind: everything that reached
/// a subscriber must be handled or counted (dropped, lagged, abandoned).
async fn shutdown_mid_burst(designs: &[Design], base: &str) -> Result<Vec<ResultLine>> {
    let server = RedisServer::start()?;
    let n = lab::scaled(100_000, 25_000);
    let mut setup = base_setup(server.url(), base, n);
    setup.drain = Duration::from_millis(200);
    setup.capacity = 5_000;
    setup.misbehave = Misbehave::Slow { every: 10 };
    let side = SideBySide::start(designs, &setup, server.url())?;
    const RATE: f64 = 25_000.0; // per channel
    let publishing = {
        let (url, channels) = (server.url().to_string(), setup.channels.clone());
        tokio::spawn(async move {
            // Bare numbers from 0, no heartbeats: what reached a subscriber is its highest
            // number + 1 on each channel.
            let bare: Vec<Publisher> = channels
                .iter()
                .map(|c| Publisher::new(c).pace(Pace::Rate(RATE)))
                .collect();
            publish(&url, &bare, 0..n, false).await
        })
    };
    // A quarter of the way into the burst, for every design: waiting for each to have
    // handled 2,000 (as chapter 6's own scenario does) waited for the slowest, and a design
    // that lags behind a broadcast channel could reach it only after the burst was over.
    while side.least_received() == 0 && !publishing.is_finished() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(n as f64 / RATE / 4.0)).await;
    let started = side.started;
    let finished = side.finish()?;
    publishing.await??;
    Ok(finished
        .iter()
        .map(|(s, o)| {
            result(
                Scenario::Shutdown,
                s,
                o,
                o.reached,
                Recovery::default(),
                started,
            )
            .with("published", n * CHANNELS as u64)
        })
        .collect())
}

// ANCHOR: burst
/// The burst: one process per design (this program again, with `--design`), so that each
/// peak RSS belongs to one design.
async fn burst(designs: &[Design], runtime: Runtime) -> Result<Vec<ResultLine>> {
    let runtime_name = runtime
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    if let [design] = designs {
        return Ok(vec![burst_one(*design, runtime, &runtime_name).await?]);
    }
    let me = std::env::current_exe()?;
    // The memory bound of chapter 6: what one queued 128-byte message holds, measured in a
    // fresh process.
    let bytes = lab::mem::queued_msg_bytes(128)?;
    let mut lines = Vec::new();
    for design in designs {
        let output = tokio::process::Command::new(&me)
            .args(["--scenario", "burst", "--design", design.name()])
            .args(["--runtime", &runtime_name])
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success(),
            "the burst of {} failed ({}):\n{stdout}\n{}",
            design.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        for line in stdout.lines().filter(|l| !l.starts_with("RESULT ")) {
            println!("{line}");
        }
        for line in lab::parse_results(&stdout)? {
            // lab::production has two workers' queues; the library designs one queue, or one
            // broadcast channel, of the same capacity.
            let capacity = match design {
                Design::Production => 2.0 * 10_000.0,
                _ => 10_000.0,
            };
            let idle = line.get_f64("rss_idle_mb")?;
            let bound = idle + capacity * bytes / 1_048_576.0 + 30.0;
            lines.push(line.with("bound_mb", format!("{bound:.1}")));
        }
    }
    Ok(lines)
}

/// 2,000,000 PUBLISH from `redis-benchmark` (8 connections, 64 per pipeline, 128 bytes, no
/// numbers) against one design whose handler needs 1 ms of CPU per message.
async fn burst_one(design: Design, runtime: Runtime, runtime_name: &str) -> Result<ResultLine> {
    let server = RedisServer::start()?;
    let base = lab::unique_channel("ch06:tools-burst");
    let messages = 2_000_000u64;
    let mut setup = base_setup(server.url(), &base, 1);
    setup.channels.truncate(1);
    setup.numbered = false;
    setup.misbehave = Misbehave::Work { us: 1_000 };
    setup.drain = Duration::from_millis(300);
    let multi_thread = runtime == Runtime::MultiThread;
    let mut subscriber = Subscriber::start_on(design, &setup, multi_thread)?;
    let port = server
        .port()
        .context("needs a lab-owned server")?
        .to_string();
    let benchmark = tokio::process::Command::new("redis-benchmark")
        .args([
            "-p",
            &port,
            "-n",
            &messages.to_string(),
            "-P",
            "64",
            "-c",
            "8",
            "-q",
        ])
        .args(["PUBLISH", &setup.channels[0], &"x".repeat(128)])
        .output()
        .await
        .context("running redis-benchmark (package redis-tools; ci/setup.sh installs it)")?;
    ensure!(
        benchmark.status.success(),
        "redis-benchmark failed: {benchmark:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcome = tokio::task::spawn_blocking(move || {
        let outcome = subscriber.finish();
        (subscriber, outcome)
    });
    let (subscriber, outcome) = outcome.await?;
    let outcome = outcome?;
    let peak = lab::mem::peak_rss_mb().unwrap_or(0.0);
    // What the server says it did: each output-buffer disconnection is a line of its log.
    let server_disconnects = server.log_lines("output buffer limits").len();
    let (handled, _) = subscriber.handled();
    let (told_disconnected, _) = subscriber.told();
    println!("  {} on {runtime_name}: {outcome:?}", design.name());
    let mut line = ResultLine::new(
        &format!("burst-{runtime_name}/{}", design.name()),
        lab::REDIS_CURRENT,
        messages,
        handled.min(messages),
        outcome.noticed,
    )
    .with("rss_idle_mb", format!("{:.1}", outcome.rss_idle_mb))
    .with("rss_peak_mb", format!("{peak:.1}"))
    .with("dropped", outcome.dropped)
    .with("lagged", outcome.lagged)
    .with("abandoned", outcome.abandoned)
    .with("unknown_gaps", outcome.unknown_gaps)
    .with("told_disconnected", told_disconnected)
    .with("server_disconnects", server_disconnects);
    if let Some(reconnects) = outcome.reconnects {
        line = line.with("reconnects", reconnects);
    }
    Ok(line)
}
// ANCHOR_END: burst
