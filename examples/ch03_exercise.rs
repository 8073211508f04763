//! Chapter 3 exercise: a `Stream` adapter that drops duplicates. Write `poll_next`.
//!
//! A subscription to a channel *and* a pattern that matches it delivers every message twice;
//! a subscriber that replays after reconnecting delivers some again. `DropDuplicates` passes
//! a numbered message only if its number is higher than every number seen from the same
//! publisher run (name and epoch), and counts what it dropped. A restarted publisher is a new
//! run: its messages are new, even though their numbers start again from 0.
//!
//! The starter, examples/ch03_exercise.rs, is the solution, examples/ch03_solution.rs, with
//! `todo!()` where you write the code.
//!
//! cargo run --example ch03_exercise
//! cargo test --example ch03_exercise -- --include-ignored   (the solution's tests, on your code)
//! cargo test --example ch03_solution

// Made from examples/ch03_solution.rs by `python3 ci/exercises.py generate`: book authors
// edit the solution and rerun it (CI checks that the two agree). Until the todo!()s
// are written, some parameters and imports are unused:
#![allow(unused)]

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
        let mut this = self.project();
        // An item whose mark, `(this.mark_of)(&item)`, is not `Some(Mark::Message { origin,
        // seq })` passes. A message passes if `seq` is higher than `this.highest` holds for its
        // run (`origin` as a `Run`), and is remembered; otherwise it is counted in
        // `*this.dropped` and dropped. What must happen after dropping one? (`futures::ready!`
        // helps, and `this.inner.as_mut()` polls a pinned field more than once.)
        todo!("poll this.inner; pass or drop each item")
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

// The solution's tests, each #[ignore]d until your code is written. Run them with
//     cargo test --example ch03_exercise -- --include-ignored
#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn payloads(marks: &[(&Identity, u64)]) -> Vec<Vec<u8>> {
        marks
            .iter()
            .map(|(who, seq)| who.message(*seq, 0))
            .collect()
    }

    fn mark(payload: &Vec<u8>) -> Option<Mark<'_>> {
        lab::mark_of(payload).ok()
    }

    #[tokio::test]
    #[ignore = "needs your code: cargo test --example ch03_exercise -- --include-ignored"]
    async fn passes_each_message_of_each_run_once_in_order() {
        let (a, b) = (Identity::with_epoch("a", 1), Identity::with_epoch("a", 2));
        let items = payloads(&[
            (&a, 0),
            (&a, 0),
            (&a, 1),
            (&b, 0),
            (&a, 1),
            (&b, 0),
            (&b, 1),
        ]);
        let mut unique = DropDuplicates::new(stream::iter(items), mark);
        let mut out = Vec::new();
        while let Some(payload) = unique.next().await {
            out.push(payload);
        }
        // The restart (epoch 2) starts again from 0: new messages, not duplicates.
        assert_eq!(out, payloads(&[(&a, 0), (&a, 1), (&b, 0), (&b, 1)]));
        assert_eq!(unique.dropped(), 3);
    }

    #[tokio::test]
    #[ignore = "needs your code: cargo test --example ch03_exercise -- --include-ignored"]
    async fn a_dropped_item_does_not_stall_the_stream() {
        // Items that come later, through a channel: after dropping a duplicate, the adapter
        // must keep polling, or the task is never woken for the next one.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut unique = DropDuplicates::new(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
            mark,
        );
        tx.send(lab::numbered(1, 0)).unwrap();
        assert_eq!(unique.next().await, Some(lab::numbered(1, 0)));
        tx.send(lab::numbered(1, 0)).unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send(lab::numbered(2, 0)).unwrap();
        });
        let next = tokio::time::timeout(Duration::from_secs(5), unique.next()).await;
        assert_eq!(
            next.expect("the adapter stalled after a drop"),
            Some(lab::numbered(2, 0))
        );
        assert_eq!(unique.dropped(), 1);
    }
}
