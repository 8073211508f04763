//! Running the lab: start a throwaway Redis, subscribe, publish numbered messages, count what
//! arrived, and print the RESULT line that every experiment in this book ends with.
//!
//! cargo run --example ch00_first_result

use std::time::Duration;

use futures::StreamExt;
use lab::{Publisher, RedisServer, ResultLine, Tally};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // ANCHOR: server
    // A redis-server of our own on a free port (or the one in REDIS_URL), gone when dropped.
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    // ANCHOR_END: server

    let sent = lab::scaled(10_000, 1_000);
    let channel = lab::unique_channel("lab:hello");

    // ANCHOR: subscribe
    let mut pubsub = client.get_async_pubsub().await?;
    // Returns once the server has confirmed the subscription: from here on, nothing
    // published on the channel can pass us by.
    pubsub.subscribe(&channel).await?;
    let mut messages = pubsub.on_message();
    // ANCHOR_END: subscribe

    // ANCHOR: publish
    let mut publisher_con = client.get_multiplexed_async_connection().await?;
    let publisher = Publisher::new(&channel).payload_size(32);
    let publishing = tokio::spawn(async move { publisher.send(&mut publisher_con, 0..sent).await });
    // ANCHOR_END: publish

    // ANCHOR: tally
    let mut tally = Tally::new(sent);
    while tally.received() < sent {
        // Pub/Sub never says "that was the last one": stop when nothing came for a while.
        match tokio::time::timeout(Duration::from_secs(2), messages.next()).await {
            Ok(Some(msg)) => tally.record(lab::seq_of(msg.get_payload_bytes())?),
            Ok(None) => break, // the connection closed
            Err(_quiet) => break,
        }
    }
    let report = publishing.await??;
    println!(
        "published {} messages in {:.1?}; received {}, missing: {}",
        report.sent,
        report.elapsed,
        tally.received(),
        tally.missing_summary(5)
    );
    ResultLine::from_tally("first-run", lab::REDIS_CURRENT, &tally, 0)
        .with("out_of_order", tally.out_of_order())
        .print();
    // ANCHOR_END: tally
    Ok(())
}
