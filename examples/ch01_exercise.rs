//! Chapter 1 exercise: the subscriber below runs on redis 0.25.5, where calling `on_message()`
//! for every message loses most of a burst. Make `consume` receive every message.
//!
//! The starter, examples/ch01_exercise.rs, is the solution, examples/ch01_solution.rs, with
//! `todo!()` where you write the code.
//!
//! cargo run --example ch01_exercise
//! cargo test --example ch01_exercise -- --include-ignored   (the solution's test, on your code)
//! cargo test --example ch01_solution

// Made from examples/ch01_solution.rs by `python3 ci/exercises.py generate`: book authors
// edit the solution and rerun it (CI checks that the two agree). Until the todo!()s
// are written, some parameters and imports are unused:
#![allow(unused)]
// `aio::Connection` is deprecated in 0.25.5; the exercise is about that old release.
#![allow(deprecated)]

use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use lab::{Publisher, RedisServer, ResultLine, Tally};

// ANCHOR: starter
/// Receives the messages numbered `0..expected` from `pubsub`, or stops when nothing arrived
/// for a second or the stream ended.
///
/// The loop from the chapter loses most of a burst on redis 0.25.5:
///
///     let mut tally = Tally::new(expected);
///     while tally.received() < expected {
///         match timeout(Duration::from_secs(1), pubsub.on_message().next()).await {
///             Ok(Some(msg)) => tally.record(lab::seq_of(msg.get_payload_bytes())?),
///             Ok(None) | Err(_) => break,
///         }
///     }
///     Ok(tally)
async fn consume(pubsub: &mut redis_0_25::aio::PubSub, expected: u64) -> Result<Tally> {
    todo!("read every message through one long-lived stream")
}
// ANCHOR_END: starter

/// Subscribes with redis 0.25.5, publishes a burst of `sent` messages, consumes them.
async fn burst(server: &RedisServer, sent: u64) -> Result<Tally> {
    let channel = lab::unique_channel("ch01:exercise");
    let mut pubsub = redis_0_25::Client::open(server.url())?
        .get_async_connection()
        .await?
        .into_pubsub();
    pubsub.subscribe(&channel).await?;
    let client = lab::connect::open(server.url()).await?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let publisher = Publisher::new(&channel);
    let publishing = tokio::spawn(async move { publisher.send(&mut con, 0..sent).await });
    let tally = consume(&mut pubsub, sent).await?;
    publishing.await??;
    Ok(tally)
}

#[tokio::main]
async fn main() -> Result<()> {
    let server = RedisServer::from_env()?;
    let tally = burst(&server, 1000).await?;
    println!("missing: {}", tally.missing_summary(5));
    ResultLine::from_tally("exercise-burst-0ms", lab::REDIS_0_25, &tally, 0).print();
    Ok(())
}

// The solution's tests, each #[ignore]d until your code is written. Run them with
//     cargo test --example ch01_exercise -- --include-ignored
#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[ignore = "needs your code: cargo test --example ch01_exercise -- --include-ignored"]
    async fn a_long_lived_stream_on_0_25_receives_the_whole_burst() {
        let server = RedisServer::start().unwrap();
        let tally = burst(&server, 1000).await.unwrap();
        assert_eq!(tally.lost(), 0, "missing: {}", tally.missing_summary(5));
    }
}
