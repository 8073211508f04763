//! Chapter 4: the long-lived stream, owned. `into_on_message()` turns the `PubSub` into a
//! `PubSubStream` that owns the receiving end: it can move into a task of its own, be stored
//! in a struct, be returned from a function. The consumer task below counts a burst, and
//! wraps the stream in chapter 3's `DetectGaps` so that it would notice a loss itself.
//!
//! cargo run --example ch04_into_on_message            # 100,000 messages
//! cargo run --example ch04_into_on_message -- --quick # 5,000

use std::time::Duration;

use futures::StreamExt;
use lab::gaps::DetectGaps;
use lab::{Publisher, RedisServer, ResultLine, Tally};

/// The consumer stops when nothing arrived for this long.
const QUIET: Duration = Duration::from_secs(1);

// ANCHOR: consumer
/// A consumer that owns its stream: `'static`, so it can be spawned.
async fn consume(messages: redis::aio::PubSubStream, sent: u64) -> anyhow::Result<(Tally, u64)> {
    let mut checked = DetectGaps::new(messages, |msg: &redis::Msg| {
        lab::mark_of(msg.get_payload_bytes()).ok()
    })
    .starting_at(0);
    let mut tally = Tally::new(sent);
    while let Ok(Some(item)) = tokio::time::timeout(QUIET, checked.next()).await {
        match item {
            Ok(msg) => tally.record(lab::seq_of(msg.get_payload_bytes())?),
            Err(gap) => eprintln!("gap: {}-{}", gap.first, gap.last),
        }
    }
    Ok((tally, checked.stats().missing))
}
// ANCHOR_END: consumer

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let sent = lab::scaled(100_000, 5_000);
    let channel = lab::unique_channel("ch04:owned");

    // ANCHOR: spawn
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;
    // `into_on_message` consumes the PubSub: no borrow is left behind, so the stream can
    // move into another task. (The subscribing half is dropped: this consumer's channels
    // are fixed. `split()` keeps both halves.)
    let consumer = tokio::spawn(consume(pubsub.into_on_message(), sent));
    // ANCHOR_END: spawn

    let mut con = client.get_multiplexed_async_connection().await?;
    let published = Publisher::new(&channel).send(&mut con, 0..sent).await?;
    let (tally, noticed) = consumer.await??;
    println!(
        "published {} in {:.1?}; the consumer task received {}, missing: {}",
        published.sent,
        published.elapsed,
        tally.received(),
        tally.missing_summary(3)
    );
    ResultLine::from_tally("into-on-message", lab::REDIS_CURRENT, &tally, noticed)
        .with("out_of_order", tally.out_of_order())
        .print();
    Ok(())
}
