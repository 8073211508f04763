//! Chapter 3 exercise, solved: a `Stream` adapter that drops duplicates.
//!
//! A publisher that restarts from 0, or a subscriber that reconnects and replays, delivers
//! numbers it delivered before. `DropDuplicates` passes an item only if its number is higher
//! than every number seen so far, and counts what it dropped.
//!
//! cargo run --example ch03_solution
//! cargo test --example ch03_solution

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

// ANCHOR: solution
impl<S, F> Stream for DropDuplicates<S, F>
where
    S: Stream,
    F: FnMut(&S::Item) -> u64,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        // A loop, not one poll: after dropping an item we must ask the inner stream again.
        // Returning `Pending` here instead would be a bug: nobody registered a waker for
        // *this* wait, so the task could sleep forever with items ready.
        loop {
            let Some(item) = futures::ready!(this.inner.as_mut().poll_next(cx)) else {
                return Poll::Ready(None);
            };
            let seq = (this.seq_of)(&item);
            if this.highest.is_some_and(|highest| seq <= highest) {
                *this.dropped += 1;
                continue;
            }
            *this.highest = Some(seq);
            return Poll::Ready(Some(item));
        }
    }
}
// ANCHOR_END: solution

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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    #[tokio::test]
    async fn passes_each_number_once_in_order() {
        let items = stream::iter([0u64, 1, 2, 0, 1, 2, 3, 3, 4]);
        let mut unique = DropDuplicates::new(items, |&n| n);
        let mut out = Vec::new();
        while let Some(n) = unique.next().await {
            out.push(n);
        }
        assert_eq!(out, [0, 1, 2, 3, 4]);
        assert_eq!(unique.dropped(), 4);
    }

    #[tokio::test]
    async fn a_dropped_item_does_not_stall_the_stream() {
        // Items that come later, through a channel: after dropping `1`, the adapter must
        // keep polling, or the task is never woken for `2`.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut unique = DropDuplicates::new(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
            |&n: &u64| n,
        );
        tx.send(1).unwrap();
        assert_eq!(unique.next().await, Some(1));
        tx.send(1).unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send(2).unwrap();
        });
        let next = tokio::time::timeout(Duration::from_secs(5), unique.next()).await;
        assert_eq!(next.expect("the adapter stalled after a drop"), Some(2));
        assert_eq!(unique.dropped(), 1);
    }
}
