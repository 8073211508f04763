//! The version matrix (appendix): the loop pattern and the long-lived stream, on every redis
//! release this package pins and by every way of getting an async `PubSub` they offer.
//!
//! cargo run --example ch01_version_matrix            # 3 runs per cell
//! cargo run --example ch01_version_matrix -- --quick # 1 run per cell
//!
//! Each cell: a fresh subscriber, a 1000-message pipelined burst published (on a redis 1.8.1
//! connection) once the subscription is confirmed, a handler that does nothing.

// The old paths are deprecated in 0.29.5; measuring them is the point.
#![allow(deprecated)]

use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use lab::{Publisher, RedisServer, ResultLine, Tally};
use tokio::time::timeout;

/// Stop reading when nothing has arrived for this long.
const QUIET: Duration = Duration::from_millis(1500);
/// Messages per run.
const MESSAGES: u64 = 1000;

/// Why a run stopped reading.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ending {
    AllReceived,
    StreamEnded,
    Quiet,
}

// ANCHOR: patterns
/// The loop pattern: `on_message()` anew for every message. A macro, not a function, because
/// the `PubSub` types of the three crates differ (and 0.29.5's old one cannot be named).
macro_rules! loop_pattern {
    ($pubsub:ident, $tally:ident) => {
        loop {
            if $tally.received() == $tally.sent() {
                break Ending::AllReceived;
            }
            match timeout(QUIET, $pubsub.on_message().next()).await {
                Ok(Some(msg)) => $tally.record(lab::seq_of(msg.get_payload_bytes())?),
                Ok(None) => break Ending::StreamEnded,
                Err(_quiet) => break Ending::Quiet,
            }
        }
    };
}

/// One stream for the whole run.
macro_rules! long_lived {
    ($pubsub:ident, $tally:ident) => {{
        let mut messages = $pubsub.on_message();
        loop {
            if $tally.received() == $tally.sent() {
                break Ending::AllReceived;
            }
            match timeout(QUIET, messages.next()).await {
                Ok(Some(msg)) => $tally.record(lab::seq_of(msg.get_payload_bytes())?),
                Ok(None) => break Ending::StreamEnded,
                Err(_quiet) => break Ending::Quiet,
            }
        }
    }};
}
// ANCHOR_END: patterns

/// Subscribe with `$connect` (an expression giving a `PubSub`), publish the burst, read with
/// `$pattern`. Evaluates to (tally, ending).
macro_rules! measure {
    ($client:ident, $connect:expr, $pattern:ident) => {{
        let channel = lab::unique_channel("matrix");
        let mut pubsub = $connect;
        pubsub.subscribe(&channel).await?;
        let publisher = Publisher::new(&channel).payload_size(32);
        let mut con = $client.get_multiplexed_async_connection().await?;
        let publishing = tokio::spawn(async move { publisher.send(&mut con, 0..MESSAGES).await });
        let mut tally = Tally::new(MESSAGES);
        let ending = $pattern!(pubsub, tally);
        publishing.await??;
        (tally, ending)
    }};
}

/// One row of the matrix: how a program gets its `PubSub`.
#[derive(Clone, Copy, Debug)]
enum Path {
    Old025Into,
    Old025Get,
    Old029Into,
    Old029Get,
    CurrentGet,
}

impl Path {
    const ALL: [Path; 5] = [
        Path::Old025Into,
        Path::Old025Get,
        Path::Old029Into,
        Path::Old029Get,
        Path::CurrentGet,
    ];

    /// The `client=` of the RESULT line. Where one release has two paths, the old path gets a
    /// suffix.
    fn client(self) -> String {
        match self {
            Path::Old025Into => lab::REDIS_0_25.into(),
            Path::Old025Get => format!("{}-get_async_pubsub", lab::REDIS_0_25),
            Path::Old029Into => format!("{}-into_pubsub", lab::REDIS_0_29),
            Path::Old029Get => lab::REDIS_0_29.into(),
            Path::CurrentGet => lab::REDIS_CURRENT.into(),
        }
    }

    fn code(self) -> &'static str {
        match self {
            Path::Old025Into | Path::Old029Into => "get_async_connection().await?.into_pubsub()",
            _ => "get_async_pubsub().await?",
        }
    }
}

// ANCHOR: cell
/// One run of one cell of the matrix.
async fn run(
    path: Path,
    url: &str,
    client: &redis::Client,
    looped: bool,
) -> Result<(Tally, Ending)> {
    let old_025 = redis_0_25::Client::open(url)?;
    let old_029 = redis_0_29::Client::open(url)?;
    Ok(match (path, looped) {
        (Path::Old025Into, true) => measure!(
            client,
            old_025.get_async_connection().await?.into_pubsub(),
            loop_pattern
        ),
        (Path::Old025Into, false) => measure!(
            client,
            old_025.get_async_connection().await?.into_pubsub(),
            long_lived
        ),
        (Path::Old025Get, true) => {
            measure!(client, old_025.get_async_pubsub().await?, loop_pattern)
        }
        (Path::Old025Get, false) => {
            measure!(client, old_025.get_async_pubsub().await?, long_lived)
        }
        (Path::Old029Into, true) => measure!(
            client,
            old_029.get_async_connection().await?.into_pubsub(),
            loop_pattern
        ),
        (Path::Old029Into, false) => measure!(
            client,
            old_029.get_async_connection().await?.into_pubsub(),
            long_lived
        ),
        (Path::Old029Get, true) => {
            measure!(client, old_029.get_async_pubsub().await?, loop_pattern)
        }
        (Path::Old029Get, false) => {
            measure!(client, old_029.get_async_pubsub().await?, long_lived)
        }
        (Path::CurrentGet, true) => {
            measure!(client, client.get_async_pubsub().await?, loop_pattern)
        }
        (Path::CurrentGet, false) => {
            measure!(client, client.get_async_pubsub().await?, long_lived)
        }
    })
}
// ANCHOR_END: cell

#[tokio::main]
async fn main() -> Result<()> {
    let runs = lab::scaled(3, 1);
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;

    println!(
        "{MESSAGES}-message burst, 0 ms handler, {runs} run(s) per cell: messages received per run\n"
    );
    println!(
        "{:<31} {:<45} {:<28} long-lived stream",
        "client", "how the PubSub was made", "loop pattern"
    );
    let mut results = Vec::new();
    for path in Path::ALL {
        let mut cells = Vec::new();
        for looped in [true, false] {
            let (mut sent, mut received, mut ended) = (0, 0, 0);
            let mut per_run = Vec::new();
            for _ in 0..runs {
                let (tally, ending) = run(path, server.url(), &client, looped)
                    .await
                    .with_context(|| format!("{} ({})", path.client(), path.code()))?;
                sent += tally.sent();
                received += tally.received();
                ended += u64::from(ending == Ending::StreamEnded);
                per_run.push(tally.received().to_string());
            }
            let mut cell = per_run.join(", ");
            if ended > 0 {
                cell.push_str(&format!(" (ended x{ended})"));
            }
            cells.push(cell);
            let scenario = if looped {
                "loop-burst-0ms"
            } else {
                "long-lived-burst-0ms"
            };
            results.push(
                ResultLine::new(scenario, &path.client(), sent, received, 0)
                    .with("runs", runs)
                    .with("streams_ended", ended),
            );
        }
        println!(
            "{:<31} {:<45} {:<28} {}",
            path.client(),
            path.code(),
            cells[0],
            cells[1]
        );
    }
    println!();
    for result in &results {
        result.print();
    }
    Ok(())
}
