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

mod faults;
mod harness;
#[path = "../ch06_faults/misbehave.rs"]
mod misbehave;
mod probes;
mod proxy;
mod scenarios;
mod side_by_side;
mod table;
mod tools;

use harness::{Design, Misbehave, Outcome, Setup, Subscriber, probe_channel};
use probes::*;
use scenarios::*;
use side_by_side::*;

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
