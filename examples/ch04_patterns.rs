//! Chapter 4: pattern subscriptions. `psubscribe("sensors:*")` hears every channel that
//! matches, and each message says which pattern and which channel it came by. A channel
//! that is subscribed both by name and by a matching pattern gets every message twice.
//!
//! cargo run --example ch04_patterns
//! cargo run --example ch04_patterns -- --quick

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use lab::{Publisher, RedisServer, ResultLine, Tally};

/// The subscriber stops when nothing arrived for this long.
const QUIET: Duration = Duration::from_millis(500);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let per_channel = lab::scaled(10_000, 1_000);
    // A prefix of our own, so that runs against a shared server do not hear each other.
    let prefix = lab::unique_channel("ch04:sensors");
    let rooms = ["kitchen", "hall", "attic"];

    // ANCHOR: psubscribe
    let mut pubsub = client.get_async_pubsub().await?;
    let pattern = format!("{prefix}:*");
    pubsub.psubscribe(&pattern).await?;
    // The kitchen is also subscribed by name: its messages will come twice.
    let kitchen = format!("{prefix}:kitchen");
    pubsub.subscribe(&kitchen).await?;
    let mut messages = pubsub.into_on_message();
    // ANCHOR_END: psubscribe

    let mut con = client.get_multiplexed_async_connection().await?;
    for room in rooms {
        let channel = format!("{prefix}:{room}");
        Publisher::new(&channel)
            .send(&mut con, 0..per_channel)
            .await?;
    }

    // ANCHOR: read
    // One tally per (how it came, channel): by pattern or by name.
    let mut tallies: BTreeMap<(String, String), Tally> = BTreeMap::new();
    while let Ok(Some(msg)) = tokio::time::timeout(QUIET, messages.next()).await {
        // `pmessage`s carry the pattern that matched; plain `message`s do not.
        let via = if msg.from_pattern() {
            format!("pattern {}", msg.get_pattern::<String>()?)
        } else {
            "name".to_string()
        };
        let room = msg.get_channel_name().rsplit(':').next().unwrap_or("?");
        let tally = tallies
            .entry((via, room.to_string()))
            .or_insert_with(|| Tally::new(per_channel));
        tally.record(lab::seq_of(msg.get_payload_bytes())?);
    }
    // ANCHOR_END: read

    for ((via, room), tally) in &tallies {
        let via = via.replace(&prefix, "PREFIX");
        println!(
            "{room:<8} by {via:<18} received {:>6} of {per_channel}, missing: {}",
            tally.received(),
            tally.missing_summary(3)
        );
    }
    let total: u64 = tallies.values().map(Tally::received).sum();
    let none = Tally::new(0);
    for room in rooms {
        let tally = tallies
            .iter()
            .find(|((via, r), _)| via.starts_with("pattern") && r == room)
            .map(|(_, tally)| tally)
            .unwrap_or(&none);
        ResultLine::new(
            &format!("psubscribe-{room}"),
            lab::REDIS_CURRENT,
            per_channel,
            tally.received(),
            0,
        )
        .print();
    }
    let kitchen_by_name = tallies
        .get(&("name".to_string(), "kitchen".to_string()))
        .map_or(0, Tally::received);
    let kitchen_deliveries: u64 = tallies
        .iter()
        .filter(|((_, room), _)| room == "kitchen")
        .map(|(_, tally)| tally.received())
        .sum();
    ResultLine::new(
        "subscribe-and-psubscribe",
        lab::REDIS_CURRENT,
        per_channel,
        kitchen_by_name,
        0,
    )
    .with("kitchen_deliveries", kitchen_deliveries)
    .with("deliveries_in_all", total)
    .print();
    Ok(())
}
