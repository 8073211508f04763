//! Chapter 1 exercise: the subscriber below runs on redis 0.25.5, where calling `on_message()`
//! for every message loses most of a burst. Make `consume` receive every message.
//!
//! cargo run --example ch01_exercise
//! (the solution, with its test: examples/ch01_solution.rs)

// `aio::Connection` is deprecated in 0.25.5; the exercise is about that old release.
#![allow(deprecated)]
// Until `consume` is written, some imports and parameters are unused.
#![allow(unused)]

use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use lab::{Publisher, RedisServer, ResultLine, Tally};

// ANCHOR: starter
/// Receives the messages numbered `0..expected` from `pubsub`, or stops when nothing arrived
/// for a second or the stream ended.
///
/// This is the loop from the chapter, and it loses most of a burst on redis 0.25.5:
///
///     let mut tally = Tally::new(expected);
///     while tally.received() < expected {
///         match timeout(Duration::from_secs(1), pubsub.on_message().next()).await {
///             Ok(Some(msg)) => tally.record(lab::seq_of(msg.get_payload_bytes())?),
///             Ok(None) | Err(_) => break,
///         }
///     }
///     Ok(tally)
///
/// Rewrite it so that the test in `ch01_solution.rs` passes: 0 lost of a 1000-message burst.
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
