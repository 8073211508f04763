//! Chapter 5 exercise (starter): write a reader that drains any stream into a bounded queue, never
//! waits, and accounts for every item.
//!
//! Fill in `drain_into`, then: cargo run --example ch05_exercise
//! The solution, with its tests: examples/ch05_solution.rs

use futures::Stream;
#[allow(unused_imports)]
use futures::StreamExt;
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
    let _ = (&mut stream, queue, Pushed::<T>::Queued);
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
