//! Chapter 8 exercise: take over what a crashed consumer left pending. Write `take_over`.
//!
//! The starter, examples/ch08_exercise.rs, is the solution, examples/ch08_solution.rs, with
//! `todo!()` where you write the code.
//!
//! cargo test --example ch08_exercise -- --include-ignored   (the solution's tests, on your code)
//! cargo run --example ch08_solution
//! cargo test --example ch08_solution

// Made from examples/ch08_solution.rs by `python3 ci/exercises.py generate`: book authors
// edit the solution and rerun it (CI checks that the two agree). Until the todo!()s
// are written, some parameters and imports are unused:
#![allow(unused)]

use std::time::Duration;

use anyhow::{Context, Result};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamPendingCountReply, StreamReadOptions,
    StreamReadReply,
};

/// A message taken over from another consumer.
#[derive(Debug)]
pub struct TakenOver {
    pub id: String,
    pub payload: Vec<u8>,
    /// How many times the group has delivered it, this time included.
    pub deliveries: usize,
}

// ANCHOR: starter
/// Take over up to `count` messages that other consumers of `group` have held for at least
/// `min_idle` without acknowledging them, and say how often each was delivered.
///
/// `xautoclaim_options` (XAUTOCLAIM) moves idle pending messages to `consumer`;
/// `xpending_count` (XPENDING with a range) reports each message's `times_delivered`.
pub async fn take_over(
    con: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
    consumer: &str,
    min_idle: Duration,
    count: usize,
) -> Result<Vec<TakenOver>> {
    todo!("XAUTOCLAIM, then the delivery count of each message")
}
// ANCHOR_END: starter

/// Read up to `count` new messages for `consumer` (XREADGROUP `>`); ids and payloads.
pub async fn read_new(
    con: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
    consumer: &str,
    count: usize,
) -> Result<Vec<(String, Vec<u8>)>> {
    let options = StreamReadOptions::default()
        .group(group, consumer)
        .count(count)
        .block(100);
    let reply: Option<StreamReadReply> = con.xread_options(&[stream], &[">"], &options).await?;
    Ok(reply
        .into_iter()
        .flat_map(|r| r.keys)
        .flat_map(|k| k.ids)
        .map(|m| {
            let payload: Vec<u8> = m.get("payload").unwrap_or_default();
            (m.id, payload)
        })
        .collect())
}

#[tokio::main]
async fn main() -> Result<()> {
    let server = lab::RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let stream = lab::unique_channel("ch08:exercise");
    let sent = 1_000u64;
    let () = con.xgroup_create_mkstream(&stream, "g", "$").await?;
    for seq in 0..sent {
        let _: String = con
            .xadd(&stream, "*", &[("payload", lab::numbered(seq, 16))])
            .await?;
    }
    // Consumer "a" reads 100 messages and dies before acknowledging any of them.
    let lost_with_a = read_new(&mut con, &stream, "g", "a", 100).await?.len();
    let mut tally = lab::Tally::new(sent);
    // Consumer "b" handles the rest...
    loop {
        let batch = read_new(&mut con, &stream, "g", "b", 500).await?;
        if batch.is_empty() {
            break;
        }
        let ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
        for (_, payload) in &batch {
            tally.record(lab::seq_of(payload).context("not a numbered payload")?);
        }
        let _: usize = con.xack(&stream, "g", &ids).await?;
    }
    // ...and, once a's messages have been idle long enough, takes them over.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let taken = take_over(
        &mut con,
        &stream,
        "g",
        "b",
        Duration::from_millis(100),
        1000,
    )
    .await?;
    for message in &taken {
        tally.record(lab::seq_of(&message.payload).context("not a numbered payload")?);
        let _: usize = con.xack(&stream, "g", &[&message.id]).await?;
    }
    println!(
        "a died holding {lost_with_a}; b took over {} (delivery count {:?})",
        taken.len(),
        taken.first().map(|m| m.deliveries)
    );
    lab::ResultLine::from_tally("exercise-take-over", lab::REDIS_CURRENT, &tally, 0)
        .with("taken_over", taken.len())
        .print();
    Ok(())
}

// The solution's tests, each #[ignore]d until your code is written. Run them with
//     cargo test --example ch08_exercise -- --include-ignored
#[cfg(test)]
mod tests {
    use super::*;

    async fn setup(n: u64) -> (lab::RedisServer, MultiplexedConnection, String) {
        let server = lab::RedisServer::start().unwrap();
        let client = server.client().unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let stream = lab::unique_channel("ch08:exercise-test");
        let () = con.xgroup_create_mkstream(&stream, "g", "$").await.unwrap();
        for seq in 0..n {
            let _: String = con
                .xadd(&stream, "*", &[("payload", lab::numbered(seq, 16))])
                .await
                .unwrap();
        }
        (server, con, stream)
    }

    #[tokio::test]
    #[ignore = "needs your code: cargo test --example ch08_exercise -- --include-ignored"]
    async fn takes_over_what_a_dead_consumer_held_with_its_delivery_count() {
        let (_server, mut con, stream) = setup(20).await;
        let held = read_new(&mut con, &stream, "g", "dead", 10).await.unwrap();
        assert_eq!(held.len(), 10);
        tokio::time::sleep(Duration::from_millis(120)).await;
        let idle = Duration::from_millis(100);
        let taken = take_over(&mut con, &stream, "g", "alive", idle, 100)
            .await
            .unwrap();
        let ids: Vec<&str> = taken.iter().map(|m| m.id.as_str()).collect();
        let held_ids: Vec<&str> = held.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, held_ids);
        assert!(taken.iter().all(|m| m.deliveries == 2));
        assert_eq!(lab::seq_of(&taken[0].payload), Ok(0));
    }

    #[tokio::test]
    #[ignore = "needs your code: cargo test --example ch08_exercise -- --include-ignored"]
    async fn leaves_messages_that_are_not_idle_long_enough() {
        let (_server, mut con, stream) = setup(5).await;
        read_new(&mut con, &stream, "g", "busy", 5).await.unwrap();
        let idle = Duration::from_secs(60);
        let taken = take_over(&mut con, &stream, "g", "alive", idle, 100)
            .await
            .unwrap();
        assert!(taken.is_empty());
    }
}
