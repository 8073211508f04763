//! Chapter 3 exercise: a `Stream` adapter that drops duplicates. Fill in `poll_next`.
//!
//! A publisher that restarts from 0, or a subscriber that reconnects and replays, delivers
//! numbers it delivered before. `DropDuplicates` passes an item only if its number is higher
//! than every number seen so far, and counts what it dropped.
//!
//! cargo run --example ch03_exercise   (the solution: examples/ch03_solution.rs)

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use lab::{Publisher, RedisServer, ResultLine, Tally};
use pin_project_lite::pin_project;

pin_project! {
    /// Passes items whose number is higher than any seen before; drops the rest.
    pub struct DropDuplicates<S, F> {
        #[pin]
        inner: S,
        seq_of: F,
        highest: Option<u64>,
        dropped: u64,
    }
}

impl<S, F> DropDuplicates<S, F>
where
    S: Stream,
    F: FnMut(&S::Item) -> u64,
{
    pub fn new(inner: S, seq_of: F) -> Self {
        Self {
            inner,
            seq_of,
            highest: None,
            dropped: 0,
        }
    }

    /// How many items were dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl<S, F> Stream for DropDuplicates<S, F>
where
    S: Stream,
    F: FnMut(&S::Item) -> u64,
{
    type Item = S::Item;

    // ANCHOR: exercise
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        // TODO: poll `this.inner`; pass an item whose number, `(this.seq_of)(&item)`, is
        // higher than `*this.highest` (and remember it); drop the others and count them in
        // `*this.dropped`. What must happen after dropping one? Hint: `futures::ready!`, and
        // `this.inner.as_mut()` to poll a pinned field more than once.
        let _ = (this, cx);
        todo!("chapter 3 exercise")
    }
    // ANCHOR_END: exercise
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let sent = lab::scaled(10_000, 1_000);
    let channel = lab::unique_channel("ch03:dedup");
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;
    let mut unique = DropDuplicates::new(pubsub.into_on_message(), |msg: &redis::Msg| {
        lab::seq_of(msg.get_payload_bytes()).unwrap_or(0)
    });

    // A publisher that sends the first half, restarts from 0, and sends everything.
    let mut con = client.get_multiplexed_async_connection().await?;
    let publisher = Publisher::new(&channel);
    publisher.send(&mut con, 0..sent / 2).await?;
    publisher.send(&mut con, 0..sent).await?;

    let mut tally = Tally::new(sent);
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), unique.next()).await
    {
        tally.record(lab::seq_of(msg.get_payload_bytes())?);
    }
    println!(
        "published {} messages, {sent} distinct; passed {}, dropped {}, duplicates passed {}",
        sent / 2 + sent,
        tally.received(),
        unique.dropped(),
        tally.duplicates()
    );
    ResultLine::from_tally("dedup", lab::REDIS_CURRENT, &tally, 0)
        .with("dropped", unique.dropped())
        .with("duplicates_passed", tally.duplicates())
        .print();
    Ok(())
}
