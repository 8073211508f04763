//! Chapter 4: `split()` into a sink and a stream, to change subscriptions while the stream is
//! read. A consumer task reads a 100,000-message burst on one channel; meanwhile another task
//! subscribes to ten other channels one at a time, through a clone of the sink, hears one
//! marker message on each, and unsubscribes again. Nothing on the main channel may be lost.
//!
//! cargo run --example ch04_split            # 100,000 messages
//! cargo run --example ch04_split -- --quick # 20,000

use std::time::Duration;

use futures::StreamExt;
use lab::gaps::DetectGaps;
use lab::{Publisher, RedisServer, ResultLine, Tally};

/// The consumer stops when nothing arrived for this long.
const QUIET: Duration = Duration::from_secs(1);
/// How many other channels are subscribed (and unsubscribed) during the burst.
const RESUBSCRIPTIONS: usize = 10;

/// What the consumer heard: the main channel's tally, the gaps it noticed, the markers.
struct Heard {
    tally: Tally,
    noticed: u64,
    markers: Vec<String>,
}

// ANCHOR: consumer
async fn consume(
    messages: redis::aio::PubSubStream,
    main_channel: String,
    sent: u64,
) -> anyhow::Result<Heard> {
    let on_main = |msg: &redis::Msg| msg.get_channel_name() == main_channel;
    // Only the main channel is numbered 0..sent; markers pass through unchecked.
    let mut checked = DetectGaps::new(messages, |msg: &redis::Msg| {
        on_main(msg)
            .then(|| lab::mark_of(msg.get_payload_bytes()).ok())
            .flatten()
    })
    .starting_at(0);
    let mut heard = Heard {
        tally: Tally::new(sent),
        noticed: 0,
        markers: Vec::new(),
    };
    while let Ok(Some(item)) = tokio::time::timeout(QUIET, checked.next()).await {
        match item {
            Ok(msg) if on_main(&msg) => heard.tally.record(lab::seq_of(msg.get_payload_bytes())?),
            Ok(marker) => heard.markers.push(marker.get_channel_name().to_string()),
            Err(gap) => eprintln!("gap: {}-{}", gap.first, gap.last),
        }
    }
    heard.noticed = checked.stats().missing;
    Ok(heard)
}
// ANCHOR_END: consumer

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let sent = lab::scaled(100_000, 20_000);
    let main_channel = lab::unique_channel("ch04:split:main");

    // ANCHOR: split
    let (mut sink, stream) = client.get_async_pubsub().await?.split();
    sink.subscribe(&main_channel).await?;
    let consumer = tokio::spawn(consume(stream, main_channel.clone(), sent));
    // ANCHOR_END: split

    let mut con = client.get_multiplexed_async_connection().await?;
    let mut publisher_con = con.clone();
    let burst = Publisher::new(&main_channel);
    let publishing = tokio::spawn(async move { burst.send(&mut publisher_con, 0..sent).await });

    // ANCHOR: dynamic
    // The sink is `Clone`: any task can change the subscriptions while the stream is read.
    let mut during_burst = 0;
    for i in 0..RESUBSCRIPTIONS {
        let extra = lab::unique_channel("ch04:split:extra");
        during_burst += usize::from(!publishing.is_finished());
        sink.subscribe(&extra).await?; // returns once the server confirmed it...
        // ...so this marker is certain to reach us
        redis::cmd("PUBLISH")
            .arg(&extra)
            .arg(format!("marker {i}"))
            .exec_async(&mut con)
            .await?;
        sink.unsubscribe(&extra).await?;
    }
    // ANCHOR_END: dynamic

    let published = publishing.await??;
    let heard = consumer.await??;

    // ANCHOR: sink_after_stream
    // The consumer has returned, and dropped the stream: that stopped the reader task, and
    // the sink has nobody left to talk to.
    let after = match sink.subscribe(&main_channel).await {
        Ok(()) => "ok".to_string(),
        Err(error) => format!("error ({error})"),
    };
    println!("sink.subscribe after the stream was dropped: {after}");
    // ANCHOR_END: sink_after_stream
    println!(
        "published {} on the main channel in {:.1?}; {RESUBSCRIPTIONS} subscribe/unsubscribe \
         rounds, {during_burst} of them begun while the burst was still being published",
        published.sent, published.elapsed
    );
    println!(
        "main channel: received {}, missing: {}; markers heard: {} of {RESUBSCRIPTIONS}",
        heard.tally.received(),
        heard.tally.missing_summary(3),
        heard.markers.len()
    );
    ResultLine::from_tally(
        "split-resubscribe",
        lab::REDIS_CURRENT,
        &heard.tally,
        heard.noticed,
    )
    .with("resubscriptions", RESUBSCRIPTIONS)
    .with("during_burst", during_burst)
    .with("markers", heard.markers.len())
    .with(
        "sink_after_stream_drop",
        if after == "ok" { "ok" } else { "error" },
    )
    .print();
    Ok(())
}
