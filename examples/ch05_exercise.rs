//! Chapter 5 exercise: a reader that drains any stream into a bounded queue, never waits, and
//! accounts for every item. Write `drain_into`.
//!
//! The starter, examples/ch05_exercise.rs, is the solution, examples/ch05_solution.rs, with
//! `todo!()` where you write the code.
//!
//! cargo run --example ch05_exercise
//! cargo test --example ch05_exercise -- --include-ignored   (the solution's tests, on your code)
//! cargo test --example ch05_solution

// Made from examples/ch05_solution.rs by `python3 ci/exercises.py generate`: book authors
// edit the solution and rerun it (CI checks that the two agree). Until the todo!()s
// are written, some parameters and imports are unused:
#![allow(unused)]

use futures::{Stream, StreamExt};
use lab::overflow::{Overflow, Pushed, QueueSender, bounded};

/// Why [`drain_into`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The stream ended (for a subscription: the connection is gone).
    StreamEnded,
    /// Policy `Disconnect` and the queue was full: the caller must drop the connection and
    /// resync. The refused item's sequence number is here, for the log.
    Overflowed,
    /// The queue was closed: the application is shutting down.
    QueueClosed,
}

/// What [`drain_into`] did with every item it read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Items read from the stream.
    pub read: u64,
    /// Items the policy dropped (the pushed one, or an older one it evicted).
    pub dropped: u64,
}

// ANCHOR: exercise
/// Move every item of `stream` into `queue` as soon as it arrives. Never waits for the
/// handler: a full queue is the policy's business, and every drop is counted.
///
/// - `Pushed::DroppedNewest` / `DroppedOldest`: count a drop and carry on;
/// - `Pushed::Overflowed` (policy `Disconnect`): count a drop and stop with `End::Overflowed`;
/// - `Pushed::Closed`: stop with `End::QueueClosed`;
/// - the stream ends: `End::StreamEnded`.
pub async fn drain_into<T, S>(mut stream: S, queue: &QueueSender<T>) -> (Drained, End)
where
    S: Stream<Item = T> + Unpin,
{
    todo!("read the stream, push each item, count what the policy dropped")
}
// ANCHOR_END: exercise

#[tokio::main(flavor = "current_thread")]
async fn main() {
    for policy in Overflow::ALL {
        let (queue, mut handler) = bounded(3, policy);
        let (drained, end) = drain_into(futures::stream::iter(0..10), &queue).await;
        let kept: Vec<i32> = std::iter::from_fn(|| handler.try_recv()).collect();
        println!("{policy:>11}: read {drained:?}, ended {end:?}, handler gets {kept:?}");
    }
}

// The solution's tests, each #[ignore]d until your code is written. Run them with
//     cargo test --example ch05_exercise -- --include-ignored
#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    async fn run(policy: Overflow) -> (Drained, End, Vec<u32>, u64) {
        let (queue, mut handler) = bounded(3, policy);
        let (drained, end) = drain_into(stream::iter(0..10u32), &queue).await;
        let kept = std::iter::from_fn(|| handler.try_recv()).collect();
        (drained, end, kept, queue.stats().dropped())
    }

    #[tokio::test]
    #[ignore = "needs your code: cargo test --example ch05_exercise -- --include-ignored"]
    async fn drop_oldest_keeps_the_newest() {
        let (drained, end, kept, dropped) = run(Overflow::DropOldest).await;
        assert_eq!(kept, [7, 8, 9]);
        assert_eq!(
            drained,
            Drained {
                read: 10,
                dropped: 7
            }
        );
        assert_eq!((end, dropped), (End::StreamEnded, 7));
    }

    #[tokio::test]
    #[ignore = "needs your code: cargo test --example ch05_exercise -- --include-ignored"]
    async fn drop_newest_keeps_the_oldest() {
        let (drained, end, kept, dropped) = run(Overflow::DropNewest).await;
        assert_eq!(kept, [0, 1, 2]);
        assert_eq!(
            drained,
            Drained {
                read: 10,
                dropped: 7
            }
        );
        assert_eq!((end, dropped), (End::StreamEnded, 7));
    }

    #[tokio::test]
    #[ignore = "needs your code: cargo test --example ch05_exercise -- --include-ignored"]
    async fn disconnect_stops_at_the_first_overflow() {
        let (drained, end, kept, dropped) = run(Overflow::Disconnect).await;
        assert_eq!(kept, [0, 1, 2]);
        assert_eq!(
            drained,
            Drained {
                read: 4,
                dropped: 1
            }
        );
        assert_eq!((end, dropped), (End::Overflowed, 1));
    }

    #[tokio::test]
    #[ignore = "needs your code: cargo test --example ch05_exercise -- --include-ignored"]
    async fn a_closed_queue_stops_the_reader() {
        let (queue, _handler) = bounded::<u32>(3, Overflow::DropOldest);
        queue.close();
        let (drained, end) = drain_into(stream::iter(0..10u32), &queue).await;
        assert_eq!((drained.read, end), (1, End::QueueClosed));
    }
}
