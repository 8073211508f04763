//! Chapter 3 exercise: a `Stream` adapter that drops duplicates. Fill in `poll_next`.
//!
//! A subscription to a channel *and* a pattern that matches it delivers every message twice;
//! a subscriber that replays after reconnecting delivers some again. `DropDuplicates` passes
//! a numbered message only if its number is higher than every number seen from the same
//! publisher run (name and epoch), and counts what it dropped. A restarted publisher is a new
//! run: its messages are new, even though their numbers start again from 0.
//!
//! cargo run --example ch03_exercise   (the solution: examples/ch03_solution.rs)

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use lab::message::{Identity, Mark};
use lab::{Publisher, RedisServer, ResultLine, Tally};
use pin_project_lite::pin_project;

/// A publisher run: its name and epoch (`None`: bare numbers, one anonymous run).
type Run = Option<(String, u64)>;

pin_project! {
    /// Passes messages whose number is higher than any seen before from the same publisher
    /// run; drops the rest. Items without a number pass.
    pub struct DropDuplicates<S, F> {
        #[pin]
        inner: S,
        mark_of: F,
        highest: HashMap<Run, u64>,
        dropped: u64,
    }
}

impl<S, F> DropDuplicates<S, F>
where
    S: Stream,
    F: for<'a> FnMut(&'a S::Item) -> Option<Mark<'a>>,
{
    pub fn new(inner: S, mark_of: F) -> Self {
        Self {
            inner,
            mark_of,
            highest: HashMap::new(),
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
    F: for<'a> FnMut(&'a S::Item) -> Option<Mark<'a>>,
{
    type Item = S::Item;

    // ANCHOR: exercise
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        // TODO: poll `this.inner`. An item whose mark, `(this.mark_of)(&item)`, is not
        // `Some(Mark::Message { origin, seq })` passes. A message passes if `seq` is higher
        // than `this.highest` holds for its run (`origin` as a `Run`), and is remembered;
        // otherwise count it in `*this.dropped` and drop it. What must happen after dropping
        // one? Hint: `futures::ready!`, and `this.inner.as_mut()` to poll a pinned field more
        // than once.
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
    // The channel, and a pattern that matches it: Redis delivers every message twice.
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;
    pubsub.psubscribe(format!("{channel}*")).await?;
    let mut unique = DropDuplicates::new(pubsub.into_on_message(), |msg: &redis::Msg| {
        lab::mark_of(msg.get_payload_bytes()).ok()
    });

    // A publisher sends the first half, restarts (a new epoch) and sends everything.
    let mut con = client.get_multiplexed_async_connection().await?;
    let (before, after) = (Identity::new("orders"), Identity::new("orders"));
    Publisher::new(&channel)
        .named(before.clone())
        .send(&mut con, 0..sent / 2)
        .await?;
    Publisher::new(&channel)
        .named(after.clone())
        .send(&mut con, 0..sent)
        .await?;

    // The harness's own count, one tally per run.
    let (mut first_run, mut second_run) = (Tally::new(sent / 2), Tally::new(sent));
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), unique.next()).await
    {
        if let Ok(Mark::Message {
            origin: Some(origin),
            seq,
        }) = lab::mark_of(msg.get_payload_bytes())
        {
            match origin.epoch == before.epoch() {
                true => first_run.record(seq),
                false => second_run.record(seq),
            }
        }
    }
    let distinct = sent / 2 + sent;
    let passed = first_run.received() + second_run.received();
    let twice = first_run.duplicates() + second_run.duplicates();
    println!(
        "published {distinct} distinct messages, each delivered twice; passed {passed}, \
         dropped {}, duplicates passed {twice}",
        unique.dropped(),
    );
    ResultLine::new("dedup", lab::REDIS_CURRENT, distinct, passed, 0)
        .with("dropped", unique.dropped())
        .with("duplicates_passed", twice)
        .print();
    Ok(())
}
