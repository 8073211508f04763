//! Chapter 1: the symptom. The same subscriber loop, run on an old redis-rs (0.25.5) and on the
//! current one (1.8.1), with a fresh `on_message()` stream on every turn of the loop ("loop")
//! and with one stream kept for the whole run ("long-lived").
//!
//! cargo run --example ch01_lost_messages                  # the whole table (about 20 s)
//! cargo run --example ch01_lost_messages -- --quick       # smaller runs, a few seconds
//! cargo run --example ch01_lost_messages -- --only long-lived-burst-0ms --messages 100000
//!
//! Every scenario gets a fresh channel and a fresh subscriber connection; a publisher on a
//! redis 1.8.1 connection sends numbered messages once the subscription is confirmed, so the
//! only thing that differs between two rows is how the subscriber reads.

// `aio::Connection` and `into_pubsub` are deprecated in the old releases: they are exactly what
// this chapter measures, so the deprecation warnings are expected here.
#![allow(deprecated)]

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use futures::StreamExt;
use lab::{Pace, Publisher, RedisServer, ResultLine, Tally};
use tokio::time::timeout;

/// Pub/Sub never says "that was the last message": a subscriber that has heard nothing for
/// this long stops and reports that it went quiet.
const QUIET: Duration = Duration::from_millis(1500);

#[derive(Parser, Debug)]
#[command(about = "Chapter 1: the loop pattern versus a long-lived stream, old and new redis-rs")]
struct Args {
    /// Run small experiments (CI runs every example this way).
    #[arg(long)]
    quick: bool,
    /// Messages per scenario (default: 1000; in quick mode 1000 for bursts with a 0 ms
    /// handler, 200 for the slower scenarios).
    #[arg(long)]
    messages: Option<u64>,
    /// Run only these scenarios (by name, e.g. `loop-burst-0ms`); repeat for several.
    #[arg(long)]
    only: Vec<String>,
    /// Run only this client (`redis-0.25.5` or `redis-1.8.1`).
    #[arg(long)]
    client: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Pattern {
    /// `loop { pubsub.on_message().next().await; handle().await }`
    Loop,
    /// `let mut stream = pubsub.on_message(); while let Some(msg) = stream.next().await { .. }`
    LongLived,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Version {
    Old,
    Current,
}

impl Version {
    fn client(self) -> &'static str {
        match self {
            Version::Old => lab::REDIS_0_25,
            Version::Current => lab::REDIS_CURRENT,
        }
    }
}

/// Why the subscriber stopped reading.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ending {
    /// Every message arrived.
    AllReceived,
    /// `next()` returned `None`: the stream ended, on a connection nobody closed.
    StreamEnded,
    /// Nothing arrived for [`QUIET`].
    Quiet,
}

impl Ending {
    fn as_str(self) -> &'static str {
        match self {
            Ending::AllReceived => "all-received",
            Ending::StreamEnded => "stream-ended",
            Ending::Quiet => "quiet",
        }
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
struct Scenario {
    pattern: Pattern,
    version: Version,
    /// `Pace::Burst` (pipelined, 1000 at a time) or a paced rate.
    pace: Pace,
    handler: Duration,
    messages: u64,
}

impl Scenario {
    fn name(&self) -> String {
        let pattern = match self.pattern {
            Pattern::Loop => "loop",
            Pattern::LongLived => "long-lived",
        };
        let publisher = match self.pace {
            Pace::Burst => "burst",
            _ => "paced",
        };
        format!("{pattern}-{publisher}-{}ms", self.handler.as_millis())
    }
}

// ANCHOR: handler
/// The application's work for one message. 0 ms: none at all (no `.await` either).
async fn handle(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}
// ANCHOR_END: handler

// ANCHOR: loop_old
/// redis 0.25.5, a new `on_message()` stream on every turn of the loop.
async fn loop_0_25(
    pubsub: &mut redis_0_25::aio::PubSub,
    tally: &mut Tally,
    handler: Duration,
) -> Result<Ending> {
    while tally.received() < tally.sent() {
        let next = timeout(QUIET, pubsub.on_message().next()).await;
        let Ok(next) = next else {
            return Ok(Ending::Quiet);
        };
        let Some(msg) = next else {
            return Ok(Ending::StreamEnded);
        };
        tally.record(lab::seq_of(msg.get_payload_bytes())?);
        handle(handler).await;
    }
    Ok(Ending::AllReceived)
}
// ANCHOR_END: loop_old

// ANCHOR: loop_current
/// redis 1.8.1, the very same loop.
async fn loop_current(
    pubsub: &mut redis::aio::PubSub,
    tally: &mut Tally,
    handler: Duration,
) -> Result<Ending> {
    while tally.received() < tally.sent() {
        let next = timeout(QUIET, pubsub.on_message().next()).await;
        let Ok(next) = next else {
            return Ok(Ending::Quiet);
        };
        let Some(msg) = next else {
            return Ok(Ending::StreamEnded);
        };
        tally.record(lab::seq_of(msg.get_payload_bytes())?);
        handle(handler).await;
    }
    Ok(Ending::AllReceived)
}
// ANCHOR_END: loop_current

// ANCHOR: long_lived_old
/// redis 0.25.5, one stream for the whole run.
async fn long_lived_0_25(
    pubsub: &mut redis_0_25::aio::PubSub,
    tally: &mut Tally,
    handler: Duration,
) -> Result<Ending> {
    let mut messages = pubsub.on_message();
    while tally.received() < tally.sent() {
        match timeout(QUIET, messages.next()).await {
            Ok(Some(msg)) => tally.record(lab::seq_of(msg.get_payload_bytes())?),
            Ok(None) => return Ok(Ending::StreamEnded),
            Err(_quiet) => return Ok(Ending::Quiet),
        }
        handle(handler).await;
    }
    Ok(Ending::AllReceived)
}
// ANCHOR_END: long_lived_old

/// redis 1.8.1, one stream for the whole run.
async fn long_lived_current(
    pubsub: &mut redis::aio::PubSub,
    tally: &mut Tally,
    handler: Duration,
) -> Result<Ending> {
    let mut messages = pubsub.on_message();
    while tally.received() < tally.sent() {
        match timeout(QUIET, messages.next()).await {
            Ok(Some(msg)) => tally.record(lab::seq_of(msg.get_payload_bytes())?),
            Ok(None) => return Ok(Ending::StreamEnded),
            Err(_quiet) => return Ok(Ending::Quiet),
        }
        handle(handler).await;
    }
    Ok(Ending::AllReceived)
}

// ANCHOR: subscribe_old
/// A subscriber on redis 0.25.5. (There, `client.get_async_pubsub()` is this very call: an
/// `aio::Connection` turned into a `PubSub`.)
async fn subscribe_0_25(url: &str, channel: &str) -> Result<redis_0_25::aio::PubSub> {
    let client = redis_0_25::Client::open(url)?;
    let mut pubsub = client.get_async_connection().await?.into_pubsub();
    // Returns once the server has confirmed the subscription.
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}
// ANCHOR_END: subscribe_old

/// Subscribe with the scenario's version, start the publisher once the subscription is
/// confirmed, read with the scenario's pattern.
async fn run(
    server: &RedisServer,
    client: &redis::Client,
    scenario: Scenario,
) -> Result<ResultLine> {
    let channel = lab::unique_channel("ch01:lost");
    let mut tally = Tally::new(scenario.messages);
    let publisher = Publisher::new(&channel)
        .payload_size(32)
        .pace(scenario.pace);
    let mut publisher_con = client.get_multiplexed_async_connection().await?;
    let seqs = 0..scenario.messages;

    let ending = match scenario.version {
        Version::Old => {
            let mut pubsub = subscribe_0_25(server.url(), &channel).await?;
            let publishing =
                tokio::spawn(async move { publisher.send(&mut publisher_con, seqs).await });
            let ending = match scenario.pattern {
                Pattern::Loop => loop_0_25(&mut pubsub, &mut tally, scenario.handler).await?,
                Pattern::LongLived => {
                    long_lived_0_25(&mut pubsub, &mut tally, scenario.handler).await?
                }
            };
            publishing.await??;
            ending
        }
        Version::Current => {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            let publishing =
                tokio::spawn(async move { publisher.send(&mut publisher_con, seqs).await });
            let ending = match scenario.pattern {
                Pattern::Loop => loop_current(&mut pubsub, &mut tally, scenario.handler).await?,
                Pattern::LongLived => {
                    long_lived_current(&mut pubsub, &mut tally, scenario.handler).await?
                }
            };
            publishing.await??;
            ending
        }
    };
    println!(
        "{:<11} {:<13} {:<6} {:>4} ms {:>7} {:>9} {:>7}  {:<13} missing: {}",
        match scenario.pattern {
            Pattern::Loop => "loop",
            Pattern::LongLived => "long-lived",
        },
        scenario.version.client(),
        match scenario.pace {
            Pace::Burst => "burst",
            _ => "paced",
        },
        scenario.handler.as_millis(),
        tally.sent(),
        tally.received(),
        tally.lost(),
        ending.as_str(),
        tally.missing_summary(3),
    );
    // noticed=0: none of these subscribers checks for gaps. The old loop does see `None`, but
    // that says "the stream ended", not "messages were lost" (see the chapter).
    Ok(
        ResultLine::from_tally(&scenario.name(), scenario.version.client(), &tally, 0)
            .with("stream_ended", ending == Ending::StreamEnded)
            .with("ended_by", ending.as_str())
            .with("handler_ms", scenario.handler.as_millis()),
    )
}

// ANCHOR: scenarios
/// Every combination: 2 versions x 2 patterns x (burst or paced publisher) x (0 or 1 ms handler).
fn scenarios(quick: bool, messages: Option<u64>) -> Vec<Scenario> {
    // About 1000 messages a second, sent a few at a time on every millisecond tick.
    let paced = Pace::Rate(1000.0);
    let mut scenarios = Vec::new();
    for version in [Version::Old, Version::Current] {
        for pattern in [Pattern::Loop, Pattern::LongLived] {
            for (pace, handler_ms) in [(Pace::Burst, 0), (Pace::Burst, 1), (paced, 0), (paced, 1)] {
                // Quick mode keeps the 1000-message burst (it is fast) and shrinks the rest.
                let slow = handler_ms > 0 || pace != Pace::Burst;
                let default = if quick && slow { 200 } else { 1000 };
                scenarios.push(Scenario {
                    pattern,
                    version,
                    pace,
                    handler: Duration::from_millis(handler_ms),
                    messages: messages.unwrap_or(default),
                });
            }
        }
    }
    scenarios
}
// ANCHOR_END: scenarios

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let quick = args.quick || lab::quick();
    let mut scenarios = scenarios(quick, args.messages);
    scenarios.retain(|s| args.only.is_empty() || args.only.contains(&s.name()));
    scenarios.retain(|s| {
        args.client
            .as_deref()
            .is_none_or(|c| c == s.version.client())
    });
    anyhow::ensure!(
        !scenarios.is_empty(),
        "no scenario matches --only {:?} --client {:?}; names look like loop-burst-0ms, \
         long-lived-paced-1ms; clients are {} and {}",
        args.only,
        args.client,
        lab::REDIS_0_25,
        lab::REDIS_CURRENT
    );

    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    println!(
        "{:<11} {:<13} {:<6} {:>7} {:>7} {:>9} {:>7}  {:<13}",
        "pattern", "client", "pub", "handler", "sent", "received", "lost", "ended by"
    );
    let mut results = Vec::new();
    for scenario in scenarios {
        let result = run(&server, &client, scenario).await.with_context(|| {
            format!(
                "scenario {} on {}",
                scenario.name(),
                scenario.version.client()
            )
        })?;
        results.push(result);
    }
    println!();
    for result in &results {
        result.print();
    }
    Ok(())
}
