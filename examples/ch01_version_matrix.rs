//! The version matrix (appendix): the loop pattern and the long-lived stream, on every redis
//! release this package pins and by every way of getting an async `PubSub` they offer.
//!
//! cargo run --example ch01_version_matrix             # 3 runs per cell
//! cargo run --example ch01_version_matrix -- --quick  # 1 run per cell
//! cargo run --example ch01_version_matrix -- --write  # 3 runs per cell, and rewrite
//!     src/generated/versions-matrix.md (the appendix's output) and
//!     src/generated/versions-boundary.md (the table of the appendix and chapter 1)
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
/// the `PubSub` types of the six crates differ (and 0.29.5's old one cannot be named).
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

/// The `client=` names of the releases the lab has no constant for (`lab` names 0.25.5,
/// 0.29.5 and 1.8.1).
const REDIS_0_26: &str = "redis-0.26.1";
const REDIS_0_27: &str = "redis-0.27.2";
const REDIS_2_0: &str = "redis-2.0.0-rc.2";

/// One row of the matrix: a release, and how a program gets its `PubSub` from it.
#[derive(Clone, Copy, Debug)]
enum Path {
    Old025Into,
    Old025Get,
    Old026Get,
    Old027Into,
    Old027Get,
    Old029Into,
    Old029Get,
    CurrentGet,
    Next20Get,
}

impl Path {
    const ALL: [Path; 9] = [
        Path::Old025Into,
        Path::Old025Get,
        Path::Old026Get,
        Path::Old027Into,
        Path::Old027Get,
        Path::Old029Into,
        Path::Old029Get,
        Path::CurrentGet,
        Path::Next20Get,
    ];

    /// The `client=` of the RESULT line. Where one release has two paths, the old path gets a
    /// suffix (0.25.5 predates `get_async_pubsub()` being a path of its own).
    fn client(self) -> String {
        match self {
            Path::Old025Into => lab::REDIS_0_25.into(),
            Path::Old025Get => format!("{}-get_async_pubsub", lab::REDIS_0_25),
            Path::Old026Get => REDIS_0_26.into(),
            Path::Old027Into => format!("{REDIS_0_27}-into_pubsub"),
            Path::Old027Get => REDIS_0_27.into(),
            Path::Old029Into => format!("{}-into_pubsub", lab::REDIS_0_29),
            Path::Old029Get => lab::REDIS_0_29.into(),
            Path::CurrentGet => lab::REDIS_CURRENT.into(),
            Path::Next20Get => REDIS_2_0.into(),
        }
    }

    /// The release, as the tables print it.
    fn release(self) -> &'static str {
        match self {
            Path::Old025Into | Path::Old025Get => "0.25.5",
            Path::Old026Get => "0.26.1",
            Path::Old027Into | Path::Old027Get => "0.27.2",
            Path::Old029Into | Path::Old029Get => "0.29.5",
            Path::CurrentGet => "1.8.1",
            Path::Next20Get => "2.0.0-rc.2",
        }
    }

    fn code(self) -> &'static str {
        match self {
            Path::Old025Into | Path::Old027Into | Path::Old029Into => {
                "get_async_connection().await?.into_pubsub()"
            }
            _ => "get_async_pubsub().await?",
        }
    }

    /// True for `Client::get_async_pubsub()`, the path whose code changed in 0.27 (#1144).
    fn is_get_async_pubsub(self) -> bool {
        self.code().starts_with("get_async_pubsub")
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
    let old_026 = redis_0_26::Client::open(url)?;
    let old_027 = redis_0_27::Client::open(url)?;
    let old_029 = redis_0_29::Client::open(url)?;
    let next_20 = redis_2_0::Client::open(url)?;
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
        (Path::Old026Get, true) => {
            measure!(client, old_026.get_async_pubsub().await?, loop_pattern)
        }
        (Path::Old026Get, false) => {
            measure!(client, old_026.get_async_pubsub().await?, long_lived)
        }
        (Path::Old027Into, true) => measure!(
            client,
            old_027.get_async_connection().await?.into_pubsub(),
            loop_pattern
        ),
        (Path::Old027Into, false) => measure!(
            client,
            old_027.get_async_connection().await?.into_pubsub(),
            long_lived
        ),
        (Path::Old027Get, true) => {
            measure!(client, old_027.get_async_pubsub().await?, loop_pattern)
        }
        (Path::Old027Get, false) => {
            measure!(client, old_027.get_async_pubsub().await?, long_lived)
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
        (Path::Next20Get, true) => {
            measure!(client, next_20.get_async_pubsub().await?, loop_pattern)
        }
        (Path::Next20Get, false) => {
            measure!(client, next_20.get_async_pubsub().await?, long_lived)
        }
    })
}
// ANCHOR_END: cell

/// Where `--write` puts the output the appendix includes, and the table chapter 1 includes.
const OUTPUT_PATH: &str = "src/generated/versions-matrix.md";
const TABLE_PATH: &str = "src/generated/versions-boundary.md";

/// What one row of the matrix measured.
struct Row {
    path: Path,
    /// (sent, received, streams ended) of the loop pattern, then of the long-lived stream.
    looped: (u64, u64, u64),
    long_lived: (u64, u64, u64),
}

#[tokio::main]
async fn main() -> Result<()> {
    let write = std::env::args().any(|arg| arg == "--write");
    if write && lab::quick() {
        anyhow::bail!("--write keeps the full run (3 runs per cell): drop --quick");
    }
    let runs = lab::scaled(3, 1);
    let server = RedisServer::from_env()?;
    let client = lab::connect::open(server.url()).await?;

    let mut out = String::new();
    out.push_str(&format!("Redis at {}\n", server.display_url()));
    out.push_str(&format!(
        "{MESSAGES}-message burst, 0 ms handler, {runs} run(s) per cell: messages received per run\n\n"
    ));
    out.push_str(&format!(
        "{:<31} {:<45} {:<28} long-lived stream\n",
        "client", "how the PubSub was made", "loop pattern"
    ));
    print!("{out}");
    let mut results = Vec::new();
    let mut rows = Vec::new();
    for path in Path::ALL {
        let mut cells = Vec::new();
        let mut totals = Vec::new();
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
            totals.push((sent, received, ended));
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
        let line = format!(
            "{:<31} {:<45} {:<28} {}\n",
            path.client(),
            path.code(),
            cells[0],
            cells[1]
        );
        print!("{line}");
        out.push_str(&line);
        rows.push(Row {
            path,
            looped: totals[0],
            long_lived: totals[1],
        });
    }
    println!();
    out.push('\n');
    for result in &results {
        result.print();
        out.push_str(&format!("{result}\n"));
    }
    if write {
        let root = env!("CARGO_MANIFEST_DIR");
        std::fs::create_dir_all(format!("{root}/src/generated"))?;
        let command = "cargo run --example ch01_version_matrix -- --write";
        std::fs::write(
            format!("{root}/{OUTPUT_PATH}"),
            format!(
                "<!-- Written by `{command}`; do not edit. -->\n\n```text\n{}```\n",
                out.replace(&server.display_url(), "redis://127.0.0.1:PORT/")
            ),
        )?;
        std::fs::write(
            format!("{root}/{TABLE_PATH}"),
            boundary_table(&rows, runs, command),
        )?;
        println!("\nwrote {OUTPUT_PATH} and {TABLE_PATH}");
    }
    Ok(())
}

/// "loses (3 of 3000 received, ended x3)" or "loses nothing (3000 of 3000)".
fn verdict((sent, received, ended): (u64, u64, u64)) -> String {
    let ended = if ended > 0 {
        format!(", the stream ended {ended} times")
    } else {
        String::new()
    };
    if received == sent {
        format!("loses nothing ({received} of {sent})")
    } else {
        format!("**loses** ({received} of {sent} received{ended})")
    }
}

/// Chapter 1's table and the boundary sentence, from this run's numbers.
fn boundary_table(rows: &[Row], runs: u64, command: &str) -> String {
    let mut table = format!(
        "<!-- Written by `{command}`; do not edit. -->\n\n\
         | release | how the `PubSub` is made | the loop pattern | one long-lived stream |\n\
         |---|---|---|---|\n"
    );
    for row in rows {
        table.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            row.path.release(),
            row.path.code().trim_end_matches(".await?"),
            verdict(row.looped),
            verdict(row.long_lived)
        ));
    }
    // The boundary: the releases whose get_async_pubsub() loses with the loop, and the first
    // one after them that does not.
    let get: Vec<&Row> = rows
        .iter()
        .filter(|r| r.path.is_get_async_pubsub())
        .collect();
    let lossless = |row: &&Row| row.looped.0 == row.looped.1;
    let first = get.iter().position(lossless);
    let sentence = match first {
        Some(i) if i > 0 && get[i..].iter().all(lossless) => {
            let releases = |rows: &[&Row]| {
                let names: Vec<&str> = rows.iter().map(|r| r.path.release()).collect();
                match names.split_last() {
                    Some((last, [])) => last.to_string(),
                    Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                    None => "no later release".to_string(),
                }
            };
            format!(
                "Measured in this run ({runs} bursts of {MESSAGES} messages per cell): with \
                 `get_async_pubsub()`, the loop pattern loses on {}, and loses nothing from \
                 **{}** on ({} too).",
                releases(&get[..i]),
                get[i].path.release(),
                releases(&get[i + 1..]),
            )
        }
        _ => format!(
            "Measured in this run ({runs} bursts of {MESSAGES} per cell): no single release \
             separates the `get_async_pubsub()` rows that lose from those that do not; read \
             the rows."
        ),
    };
    table.push('\n');
    table.push_str(&sentence);
    table.push('\n');
    table
}
