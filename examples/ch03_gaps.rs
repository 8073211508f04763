//! Chapter 3: our own `Stream` adapter at work. `lab::gaps::DetectGaps` wraps the message
//! stream, reads each message's sequence number and yields `Err(Gap)` where numbers are
//! missing, so the subscriber *notices* a loss instead of suffering it silently.
//!
//! The publisher leaves out known numbers (holes) on purpose; the harness's tally and the
//! adapter must agree on every hole the adapter can see.
//!
//! cargo run --example ch03_gaps
//! cargo run --example ch03_gaps -- --quick

use std::ops::RangeInclusive;
use std::time::Duration;

use futures::StreamExt;
use lab::gaps::{DetectGaps, Gap};
use lab::{Publisher, RedisServer, ResultLine, Tally};

/// The subscriber stops when nothing arrived for this long.
const QUIET: Duration = Duration::from_millis(500);

/// Publish `0..sent` except the numbers in `holes`, in order.
async fn publish_with_holes(
    client: &redis::Client,
    channel: &str,
    sent: u64,
    holes: &[RangeInclusive<u64>],
) -> anyhow::Result<()> {
    let mut con = client.get_multiplexed_async_connection().await?;
    let publisher = Publisher::new(channel);
    let mut next = 0;
    for hole in holes {
        publisher.send(&mut con, next..*hole.start()).await?;
        next = hole.end() + 1;
    }
    publisher.send(&mut con, next..sent).await?;
    Ok(())
}

/// Subscribe, publish with `holes`, and read everything through `DetectGaps`.
async fn run(
    client: &redis::Client,
    scenario: &str,
    sent: u64,
    holes: &[RangeInclusive<u64>],
) -> anyhow::Result<ResultLine> {
    let channel = lab::unique_channel("ch03:gaps");
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;

    // ANCHOR: wrap
    // Every message's number comes from its payload; a payload that is not numbered passes
    // through unchecked. Numbering starts at 0, so a lost beginning is a gap too.
    let mut checked = DetectGaps::new(pubsub.into_on_message(), |msg: &redis::Msg| {
        lab::mark_of(msg.get_payload_bytes()).ok()
    })
    .starting_at(0);
    // ANCHOR_END: wrap

    publish_with_holes(client, &channel, sent, holes).await?;

    // ANCHOR: read
    let mut tally = Tally::new(sent); // the harness's count, independent of the adapter
    let mut reported: Vec<Gap> = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(QUIET, checked.next()).await {
        match item {
            Ok(msg) => tally.record(lab::seq_of(msg.get_payload_bytes())?),
            Err(gap) => {
                println!(
                    "  {scenario}: gap {}-{} ({} messages)",
                    gap.first,
                    gap.last,
                    gap.len()
                );
                reported.push(gap);
            }
        }
    }
    let stats = checked.stats();
    // ANCHOR_END: read
    println!(
        "  {scenario}: the tally misses {}; the adapter reported {} gaps, {} messages",
        tally.missing_summary(5),
        stats.gaps,
        stats.missing
    );
    Ok(
        ResultLine::from_tally(scenario, lab::REDIS_CURRENT, &tally, stats.missing)
            .with("gaps", stats.gaps)
            .with(
                "reported",
                ranges(reported.iter().map(|gap| gap.first..=gap.last)),
            )
            .with("tally_missing", ranges(tally.missing().into_iter())),
    )
}

/// Ranges as `0-1,100-199,1000-1000` (`none` when empty), for the RESULT line.
fn ranges(ranges: impl Iterator<Item = RangeInclusive<u64>>) -> String {
    let text: Vec<String> = ranges
        .map(|range| format!("{}-{}", range.start(), range.end()))
        .collect();
    if text.is_empty() {
        "none".into()
    } else {
        text.join(",")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let sent = lab::scaled(100_000, 5_000);

    // ANCHOR: holes
    // Holes at the start, inside, and one single message: each is followed by a message
    // that arrives, so the adapter can see all of them.
    let inside = [0..=1, 100..=199, 1_000..=1_000];
    // The last ten messages never arrive: nothing follows them, so nothing shows the gap.
    let trailing = [sent - 10..=sent - 1];
    // ANCHOR_END: holes

    let results = [
        run(&client, "gaps-inside", sent, &inside).await?,
        run(&client, "gaps-trailing", sent, &trailing).await?,
    ];
    for result in &results {
        result.print();
    }
    Ok(())
}
