//! Chapter 4: the subscribe race. Pub/Sub keeps no history: a message published before the
//! server has registered the subscription is delivered to nobody. A publisher that starts
//! too early loses the beginning; the fix is an order: subscribe, wait for the server's
//! confirmation, *then* tell the publisher to start.
//!
//! cargo run --example ch04_race
//! cargo run --example ch04_race -- --quick

use std::time::Duration;

use futures::StreamExt;
use lab::{Pace, PublishReport, Publisher, RedisServer, ResultLine, Tally};
use tokio::sync::oneshot;

/// The subscriber stops when nothing arrived for this long after the publisher finished.
const QUIET: Duration = Duration::from_millis(500);
/// How long the subscriber takes to start: 50 ms, about 250 messages at 5,000 a second.
const STARTUP: Duration = Duration::from_millis(50);

/// Read `messages` into a tally until the publisher is done and the channel is quiet.
async fn drain(
    mut messages: redis::aio::PubSubStream,
    sent: u64,
    publishing: tokio::task::JoinHandle<redis::RedisResult<PublishReport>>,
) -> anyhow::Result<(Tally, PublishReport)> {
    let mut tally = Tally::new(sent);
    loop {
        match tokio::time::timeout(QUIET, messages.next()).await {
            Ok(Some(msg)) => tally.record(lab::seq_of(msg.get_payload_bytes())?),
            Ok(None) => anyhow::bail!("the subscriber's connection closed"),
            Err(_quiet) if publishing.is_finished() => break,
            Err(_quiet) => {}
        }
    }
    Ok((tally, publishing.await??))
}

fn report(scenario: &str, tally: &Tally, published: &PublishReport) -> ResultLine {
    println!(
        "{scenario}: received {} of {}, missing {}; PUBLISH replied 0 (nobody subscribed) for {}",
        tally.received(),
        tally.sent(),
        tally.missing_summary(3),
        published.unheard
    );
    // Lost by the race means: one run of numbers at the very start, nothing after it.
    let missing = tally.missing();
    let prefix = missing.is_empty() || (missing.len() == 1 && *missing[0].start() == 0);
    ResultLine::from_tally(scenario, lab::REDIS_CURRENT, tally, 0)
        .with("unheard", published.unheard)
        .with("missing_is_prefix", prefix)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    // A steady 5,000 messages a second, so that "too early" is a measurable stretch of time.
    let sent = lab::scaled(2_000, 500);

    // ANCHOR: early
    // The race: the publisher starts, and the subscriber gets going at the same time.
    let channel = lab::unique_channel("ch04:race");
    let publisher_early = Publisher::new(&channel).pace(Pace::Rate(5_000.0));
    let mut con = client.get_multiplexed_async_connection().await?;
    let publishing = tokio::spawn(async move { publisher_early.send(&mut con, 0..sent).await });
    // The subscriber's own start-up (configuration, other connections) takes a moment...
    tokio::time::sleep(STARTUP).await;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?; // ...and everything published meanwhile is gone
    let (tally, published) = drain(pubsub.into_on_message(), sent, publishing).await?;
    // ANCHOR_END: early
    let early = report("early-publisher", &tally, &published);

    // ANCHOR: ordered
    // The fix: subscribe, wait for the confirmation, then signal the publisher.
    let channel = lab::unique_channel("ch04:race");
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let publisher_ordered = Publisher::new(&channel).pace(Pace::Rate(5_000.0));
    let mut con = client.get_multiplexed_async_connection().await?;
    let publishing = tokio::spawn(async move {
        // Waits for the subscriber; if it gave up (dropped the sender), publish nothing.
        if ready_rx.await.is_err() {
            return Ok(PublishReport::default());
        }
        publisher_ordered.send(&mut con, 0..sent).await
    });
    tokio::time::sleep(STARTUP).await; // the same start-up, now harmless
    let mut pubsub = client.get_async_pubsub().await?;
    // Returns when the server has confirmed the subscription (for every channel given, since
    // redis 1.8.0): from now on, every message published on the channel reaches us.
    pubsub.subscribe(&channel).await?;
    let _ = ready_tx.send(());
    let (tally, published) = drain(pubsub.into_on_message(), sent, publishing).await?;
    // ANCHOR_END: ordered
    let ordered = report("subscribe-then-signal", &tally, &published);

    early.print();
    ordered.print();
    Ok(())
}
