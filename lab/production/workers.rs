//! The workers: one per queue, each handles its channels' messages in order, with a timeout
//! and a panic guard around the handler.

use super::*;

// ANCHOR: worker
/// One worker: its channels' messages, in order, each with a time limit.
pub(super) async fn worker<H, Fut>(
    mut queue: QueueReceiver<Msg>,
    mut handler: H,
    limit: Duration,
    shared: Arc<Shared>,
    index: usize,
) where
    H: FnMut(Msg) -> Fut,
    Fut: Future<Output = Result<(), Rejected>>,
{
    let counters = &shared.workers[index];
    let mut batch = Vec::with_capacity(64);
    // One lock per batch, not per message; `0` means closed and drained.
    while queue.recv_many(&mut batch, 64).await > 0 {
        for msg in batch.drain(..) {
            // A panicking handler must not take the worker (and its channels) down with it.
            let mut handled = pin!(AssertUnwindSafe(handler(msg)).catch_unwind());
            // Most handlers finish without waiting: poll once, and start the clock (a timer
            // in the runtime) only for those that wait.
            let outcome = match futures::poll!(handled.as_mut()) {
                Poll::Ready(outcome) => Some(outcome),
                Poll::Pending => tokio::time::timeout(limit, handled).await.ok(),
            };
            match outcome {
                Some(Ok(Ok(()))) => counters.processed.add(1),
                Some(Ok(Err(Rejected::BadPayload))) => counters.bad_payload.add(1),
                // A handler error, or a panic caught above.
                Some(Ok(Err(Rejected::Failed(_))) | Err(_)) => counters.failed.add(1),
                // The handler's future is dropped here: a hung handler is abandoned, not
                // waited on. (A handler that *blocks the thread* cannot be stopped this way:
                // run blocking work with `spawn_blocking`.)
                None => counters.timed_out.add(1),
            }
        }
    }
}
// ANCHOR_END: worker
