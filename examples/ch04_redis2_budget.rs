//! Moving to redis 2.0 (appendix): the `PubSubStream` no longer spends Tokio's cooperative
//! budget. In 1.8.1 it reads a Tokio mpsc receiver, which makes the task yield after 128 items
//! per poll; in 2.0 it reads a `futures_channel` receiver (redis-rs #2529), which never does.
//!
//! cargo run --example ch04_redis2_budget            # 100,000-message backlog
//! cargo run --example ch04_redis2_budget -- --quick # 20,000
//! cargo run --example ch04_redis2_budget -- --write # 100,000, and rewrite
//!     src/generated/redis2-budget.md (the appendix's output)
//!
//! Every scenario runs on a current-thread runtime (one thread for every task, as in many
//! services and in `#[tokio::test]`), with a backlog already waiting in the stream's channel:
//! - `ready-chunks`: `ready_chunks(1024)` over the backlog: how large a batch gets;
//! - `busy-loop`: a `while let Some(msg) = stream.next().await` loop that awaits nothing else,
//!   beside a task that wants to run every millisecond: the longest it waited;
//! - `busy-loop-consume-budget`: the same loop with `consume_budget().await` per message.

use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use lab::{Publisher, RedisServer, ResultLine, Tally};

/// The `client=` name of redis 2.0.0-rc.2 (the lab names only the releases it is built with).
const REDIS_2_0: &str = "redis-2.0.0-rc.2";

/// Subscribe with `$redis` (a crate), publish `$sent` messages, and wait until the background
/// task has moved them all into the stream's channel. Evaluates to the `PubSubStream`.
macro_rules! backlog {
    ($redis:ident, $url:expr, $publisher_con:expr, $sent:expr) => {{
        let channel = lab::unique_channel("ch04:budget");
        let mut pubsub = $redis::Client::open($url)?.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        let stream = pubsub.into_on_message();
        Publisher::new(&channel)
            .send($publisher_con, 0..$sent)
            .await?;
        // The background task runs while we sleep: the backlog moves into the channel.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream
    }};
}

// ANCHOR: ready_chunks
/// The largest batch `ready_chunks(1024)` makes of a backlog.
macro_rules! largest_ready_chunk {
    ($stream:expr, $tally:expr) => {{
        let mut chunks = $stream.ready_chunks(1024);
        let mut largest = 0;
        while $tally.received() < $tally.sent() {
            let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(2), chunks.next()).await
            else {
                break;
            };
            largest = largest.max(chunk.len());
            for msg in chunk {
                $tally.record(lab::seq_of(msg.get_payload_bytes())?);
            }
        }
        largest
    }};
}
// ANCHOR_END: ready_chunks

// ANCHOR: busy_loop
/// A consumer that awaits nothing but the stream. With `$yield_every_128` it spends Tokio's
/// budget itself, one unit per message, as 1.8.1's stream did for it.
macro_rules! busy_loop {
    ($stream:expr, $tally:expr, $yield_every_128:expr) => {{
        let mut stream = $stream;
        while $tally.received() < $tally.sent() {
            let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(2), stream.next()).await
            else {
                break;
            };
            $tally.record(lab::seq_of(msg.get_payload_bytes())?);
            if $yield_every_128 {
                tokio::task::coop::consume_budget().await;
            }
        }
    }};
}
// ANCHOR_END: busy_loop

/// A task that wants to run every millisecond: it records when it ran.
fn start_ticker() -> (Arc<Mutex<Vec<Instant>>>, tokio::task::JoinHandle<()>) {
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let shared = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            shared.lock().unwrap().push(Instant::now());
        }
    });
    (ticks, ticker)
}

/// How often the ticker ran between `start` and `end`, and the longest it went without
/// running over that time (up to its first run after `end`).
fn ticker_during(ticks: &[Instant], start: Instant, end: Instant) -> (usize, Duration) {
    let inside = ticks.iter().filter(|&&t| t >= start && t <= end).count();
    let mut points = vec![start];
    points.extend(ticks.iter().copied().filter(|&t| t >= start && t <= end));
    points.extend(ticks.iter().copied().find(|&t| t > end));
    let worst = points
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    (inside, worst)
}

/// The three scenarios for one release.
macro_rules! scenarios {
    ($redis:ident, $client:expr, $url:expr, $publisher_con:expr, $sent:expr, $results:expr) => {{
        let mut tally = Tally::new($sent);
        let stream = backlog!($redis, $url, $publisher_con, $sent);
        let largest = largest_ready_chunk!(stream, tally);
        $results.push(
            ResultLine::from_tally("ready-chunks", $client, &tally, 0).with("largest", largest),
        );
        for consume_budget in [false, true] {
            let mut tally = Tally::new($sent);
            let stream = backlog!($redis, $url, $publisher_con, $sent);
            let (ticks, ticker) = start_ticker();
            tokio::time::sleep(Duration::from_millis(5)).await;
            let started = Instant::now();
            busy_loop!(stream, tally, consume_budget);
            let ended = Instant::now();
            tokio::time::sleep(Duration::from_millis(5)).await; // the ticker's next run
            ticker.abort();
            let (ran, worst) = ticker_during(&ticks.lock().unwrap(), started, ended);
            let scenario = if consume_budget {
                "busy-loop-consume-budget"
            } else {
                "busy-loop"
            };
            $results.push(
                ResultLine::from_tally(scenario, $client, &tally, 0)
                    .with(
                        "drain_ms",
                        format!("{:.1}", (ended - started).as_secs_f64() * 1e3),
                    )
                    .with("ticker_runs", ran)
                    .with(
                        "ticker_worst_wait_ms",
                        format!("{:.1}", worst.as_secs_f64() * 1e3),
                    ),
            );
        }
    }};
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let mut publisher_con = client.get_multiplexed_async_connection().await?;
    let sent = lab::scaled(100_000, 20_000);
    let url = server.url();

    let mut results = Vec::new();
    scenarios!(
        redis,
        lab::REDIS_CURRENT,
        url,
        &mut publisher_con,
        sent,
        results
    );
    scenarios!(redis_2_0, REDIS_2_0, url, &mut publisher_con, sent, results);

    let mut out = format!(
        "a backlog of {sent} messages in the stream's channel, on a current-thread runtime:\n\n"
    );
    out.push_str(&format!(
        "{:<18} {:<26} {:>8} {:>14} {:>9} {:>12} {:>19}\n",
        "client",
        "scenario",
        "received",
        "largest chunk",
        "drain ms",
        "ticker runs",
        "ticker waited (ms)"
    ));
    for r in &results {
        out.push_str(&format!(
            "{:<18} {:<26} {:>8} {:>14} {:>9} {:>12} {:>19}\n",
            r.client,
            r.scenario,
            r.received,
            r.get("largest").unwrap_or("-"),
            r.get("drain_ms").unwrap_or("-"),
            r.get("ticker_runs").unwrap_or("-"),
            r.get("ticker_worst_wait_ms").unwrap_or("-"),
        ));
    }
    out.push('\n');
    for r in &results {
        out.push_str(&format!("{r}\n"));
    }
    print!("{out}");
    if std::env::args().any(|arg| arg == "--write") {
        anyhow::ensure!(!lab::quick(), "--write keeps the full run: drop --quick");
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/generated/redis2-budget.md"
        );
        let command = "cargo run --example ch04_redis2_budget -- --write";
        std::fs::write(
            path,
            format!("<!-- Written by `{command}`; do not edit. -->\n\n```text\n{out}```\n"),
        )?;
        println!("\nwrote src/generated/redis2-budget.md");
    }
    Ok(())
}
