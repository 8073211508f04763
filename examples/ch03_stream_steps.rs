//! Chapter 3: a stream, built up one adapter at a time, with the output after each step.
//!
//! A `Stream` is an async iterator: `poll_next` gives `Ready(Some(item))`, `Ready(None)` (the
//! end) or `Pending` (nothing yet; you will be woken). Adapters wrap a stream in another one,
//! and nothing at all happens until somebody polls the outermost one.
//!
//! cargo run --example ch03_stream_steps
//! cargo run --example ch03_stream_steps -- --quick

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::{Stream, StreamExt, stream};
use lab::{Pace, Publisher, RedisServer, ResultLine, Tally};

/// How long to wait for the next item before deciding the step is stuck.
const STALL: Duration = Duration::from_secs(10);

/// The next item, or an error if none comes within [`STALL`].
async fn next_or_stall<S: Stream + Unpin>(stream: &mut S) -> Result<Option<S::Item>> {
    tokio::time::timeout(STALL, stream.next())
        .await
        .context("no item within 10 s: the step is stuck")
}

/// Subscribers on this server see how many subscribers a channel has (`PUBSUB NUMSUB`).
async fn subscribers(con: &mut redis::aio::MultiplexedConnection, channel: &str) -> Result<u64> {
    let reply: (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(con)
        .await?;
    Ok(reply.1)
}

#[tokio::main]
async fn main() -> Result<()> {
    // ANCHOR: lazy
    // Step 0: adapters are lazy. Building the chain runs none of its closures.
    let polled = Arc::new(AtomicUsize::new(0));
    let counter = polled.clone();
    let mut doubled = stream::iter(1..=3).map(move |n| {
        counter.fetch_add(1, Ordering::Relaxed);
        n * 2
    });
    println!(
        "step 0, built:  map ran {} times",
        polled.load(Ordering::Relaxed)
    );
    let first = doubled.next().await;
    println!(
        "step 0, next(): {first:?}, map ran {} time",
        polled.load(Ordering::Relaxed)
    );
    // ANCHOR_END: lazy

    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let mut con = client.get_multiplexed_async_connection().await?;

    let channel_of_steps = lab::unique_channel("ch03:steps");
    let mut not_ours = 0;
    // The chain of steps 1-4 lives in this block: `pin!` below stores it in the block.
    let (seen, after_drop) = {
        // ANCHOR: source
        // Step 1: the source. `into_on_message` gives up the `PubSub` and returns a stream that
        // owns the connection's receiving end: it can be moved, returned, stored, wrapped.
        let channel = channel_of_steps.clone();
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        let messages = pubsub.into_on_message();
        // ANCHOR_END: source

        // Ten numbered messages, with two that are not numbered (someone else's) in between.
        Publisher::new(&channel).send(&mut con, 0..5).await?;
        redis::cmd("PUBLISH")
            .arg(&channel)
            .arg("hello")
            .exec_async(&mut con)
            .await?;
        redis::cmd("PUBLISH")
            .arg(&channel)
            .arg("world")
            .exec_async(&mut con)
            .await?;
        Publisher::new(&channel).send(&mut con, 5..10).await?;

        // ANCHOR: filter_map
        // Step 2: from messages to sequence numbers; the payloads that are not ours are skipped.
        let numbers = messages.filter_map(|msg| {
            let seq = lab::seq_of(msg.get_payload_bytes()).ok();
            not_ours += usize::from(seq.is_none());
            std::future::ready(seq)
        });
        // ANCHOR_END: filter_map

        // ANCHOR: filter
        // Step 3: keep the even ones. This predicate is an `async` block, and the future an
        // async block makes is not `Unpin`: `Filter` keeps it inside, so the whole chain is not
        // `Unpin` any more, and `next()` (which moves nothing, but needs to know nothing will)
        // refuses it. `pin!` pins the chain on this stack frame; from here on it cannot move.
        let evens = numbers.filter(|seq| {
            let even = seq % 2 == 0;
            async move { even }
        });
        let mut evens = pin!(evens);
        // ANCHOR_END: filter

        // ANCHOR: take
        // Step 4: `take(3)` ends the stream after three items: `None`, on a live connection.
        let mut first_three = evens.as_mut().take(3);
        let mut taken = Vec::new();
        while let Some(seq) = next_or_stall(&mut first_three).await? {
            taken.push(seq);
        }
        println!("step 4, take(3) of the evens: {taken:?}, then None");
        // ANCHOR_END: take

        // `take` only borrowed the chain (`as_mut()`), so the rest is still there.
        let mut rest = Vec::new();
        while rest.len() < 2 {
            match next_or_stall(&mut evens).await? {
                Some(seq) => rest.push(seq),
                None => break,
            }
        }
        println!("step 4, the chain goes on: {rest:?}");

        // ANCHOR: drop_chain
        // --snip--
        // What does dropping the chain drop? `evens` is not the chain: `pin!` moved the chain
        // into a hidden local of this block and gave us a `Pin<&mut _>` to it. Dropping that
        // reference drops nothing else.
        println!(
            "subscribers of the channel before drop:       {}",
            subscribers(&mut con, &channel).await?
        );
        // (Clippy knows: its `drop_non_drop` lint flags this line. We keep it to measure it.)
        #[allow(clippy::drop_non_drop)]
        drop(evens);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after_drop = subscribers(&mut con, &channel).await?;
        println!("subscribers after drop(evens):                {after_drop}");
        (taken.len() + rest.len(), after_drop)
    };
    // Here the block ends and the chain itself is dropped, with what it owns: the
    // `PubSubStream`, whose drop stops the task that reads the socket, which closes the
    // connection. The server forgets the subscriber.
    let mut after_scope = subscribers(&mut con, &channel_of_steps).await?;
    for _ in 0..20 {
        if after_scope == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after_scope = subscribers(&mut con, &channel_of_steps).await?;
    }
    println!("subscribers after the block that pinned it:   {after_scope}");
    // ANCHOR_END: drop_chain
    // The closure of step 2 borrowed `not_ours`; with the chain gone it can be read again.
    println!("payloads that were not ours: {not_ours}");
    ResultLine::new("steps-evens", lab::REDIS_CURRENT, 5, seen as u64, 0)
        .with("not_ours", not_ours)
        .with("subscribers_after_drop_ref", after_drop)
        .with("subscribers_after_scope", after_scope)
        .print();

    // ANCHOR: ready_chunks
    // Step 5: `ready_chunks(256)`: everything that is ready now, up to 256, as one Vec. A
    // chunk is never held back to fill up: a lone message is a chunk of one.
    let sent = lab::scaled(20_000, 2_000);
    let channel = lab::unique_channel("ch03:chunks");
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;
    let mut chunks = pubsub
        .into_on_message()
        .take(sent as usize)
        .ready_chunks(256);
    Publisher::new(&channel).send(&mut con, 0..sent).await?;
    let mut tally = Tally::new(sent);
    let mut sizes = Vec::new();
    while let Some(chunk) = next_or_stall(&mut chunks).await? {
        sizes.push(chunk.len());
        for msg in chunk {
            tally.record(lab::seq_of(msg.get_payload_bytes())?);
        }
    }
    // ANCHOR_END: ready_chunks
    print_sizes("step 5, ready_chunks(256) on a burst", &sizes);
    ResultLine::from_tally("steps-ready-chunks", lab::REDIS_CURRENT, &tally, 0)
        .with("chunks", sizes.len())
        .with("largest", sizes.iter().max().unwrap_or(&0))
        .print();

    // ANCHOR: chunks_timeout
    // Step 6: tokio-stream's `chunks_timeout(100, 20 ms)`: up to 100 items, but no item waits
    // more than 20 ms for its chunk to fill. For a trickle, this is what batches writes.
    let sent = lab::scaled(2_000, 400);
    let channel = lab::unique_channel("ch03:chunks-timeout");
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;
    let batched = tokio_stream::StreamExt::chunks_timeout(
        pubsub.into_on_message().take(sent as usize),
        100,
        Duration::from_millis(20),
    );
    // It holds a timer (`Sleep`), which is not `Unpin`: pin it again.
    let mut batched = pin!(batched);
    let paced = Publisher::new(&channel).pace(Pace::Rate(2_000.0));
    let mut publisher_con = con.clone();
    let publishing = tokio::spawn(async move { paced.send(&mut publisher_con, 0..sent).await });
    let mut tally = Tally::new(sent);
    let mut sizes = Vec::new();
    while let Some(chunk) = next_or_stall(&mut batched).await? {
        sizes.push(chunk.len());
        for msg in chunk {
            tally.record(lab::seq_of(msg.get_payload_bytes())?);
        }
    }
    // ANCHOR_END: chunks_timeout
    publishing.await??;
    print_sizes("step 6, chunks_timeout(100, 20ms) at 2,000 msg/s", &sizes);
    ResultLine::from_tally("steps-chunks-timeout", lab::REDIS_CURRENT, &tally, 0)
        .with("chunks", sizes.len())
        .with("largest", sizes.iter().max().unwrap_or(&0))
        .print();
    Ok(())
}

/// One line about chunk sizes: how many, the smallest, median and largest.
fn print_sizes(what: &str, sizes: &[usize]) {
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    let (min, median, max) = match sorted.as_slice() {
        [] => (0, 0, 0),
        s => (s[0], s[s.len() / 2], s[s.len() - 1]),
    };
    println!(
        "{what}: {} chunks, {} messages; sizes min {min}, median {median}, max {max}",
        sizes.len(),
        sizes.iter().sum::<usize>()
    );
}
