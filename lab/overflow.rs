//! A bounded queue with an explicit overflow policy: where a slow subscriber's backlog goes
//! once you decide it must not grow without limit.
//!
//! Pub/Sub has no backpressure to the publisher: when the handler falls behind, the backlog
//! piles up somewhere (Redis's output buffer for the connection, the kernel's socket buffers,
//! the client library's unbounded channel) and, when that place fills, messages are lost.
//! Chapter 5 follows the backlog and ends with this queue: the subscriber's reader drains the
//! connection promptly and [`push`](QueueSender::push)es every message here; the queue holds
//! at most `capacity` items and, when full, applies the [`Overflow`] policy *you* chose and
//! counts what it dropped. The reader never waits, so the connection is always drained, Redis
//! never disconnects a slow handler, and memory stays bounded.
//!
//! ```
//! use lab::overflow::{bounded, Overflow, Pushed};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let (tx, mut rx) = bounded(2, Overflow::DropOldest);
//! assert!(matches!(tx.push(1), Pushed::Queued));
//! assert!(matches!(tx.push(2), Pushed::Queued));
//! assert!(matches!(tx.push(3), Pushed::DroppedOldest(1))); // full: 1 makes room for 3
//! tx.close();
//! assert_eq!(rx.recv().await, Some(2));
//! assert_eq!(rx.recv().await, Some(3));
//! assert_eq!(rx.recv().await, None); // closed and drained
//! assert_eq!(tx.stats().dropped(), 1);
//! # });
//! ```
//!
//! Design, for speed (chapter 7 pushes a million messages a second through it): one
//! `Mutex<VecDeque>` held for a few instructions at a time, never across an `.await`; the
//! receiver is woken only when the queue goes from empty to non-empty, so a receiver that is
//! behind takes item after item without a single wake-up; no allocation per message beyond
//! the item itself (the `VecDeque` is allocated once, at full capacity).

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

// ANCHOR: policy
/// What [`QueueSender::push`] does when the queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Keep what is queued, drop the message being pushed: the handler sees the *oldest*
    /// messages of a burst. Right when the first events matter (e.g. a state change that
    /// later ones repeat).
    DropNewest,
    /// Drop the oldest queued message to make room: the handler sees the *newest* messages.
    /// Right for "latest value wins" data (prices, positions, presence).
    DropOldest,
    /// Drop nothing silently: report [`Pushed::Overflowed`], and the caller drops the
    /// connection and resynchronises from the source of truth. Right when every message
    /// matters and a gap means "reload".
    Disconnect,
}
// ANCHOR_END: policy

impl Overflow {
    /// Every policy, in the order the book compares them.
    pub const ALL: [Overflow; 3] = [
        Overflow::DropNewest,
        Overflow::DropOldest,
        Overflow::Disconnect,
    ];

    /// The name used on command lines and in RESULT lines: `drop-newest`, `drop-oldest`,
    /// `disconnect`.
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::DropNewest => "drop-newest",
            Overflow::DropOldest => "drop-oldest",
            Overflow::Disconnect => "disconnect",
        }
    }
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy name that is not one of `drop-newest`, `drop-oldest`, `disconnect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseOverflowError(String);

impl fmt::Display for ParseOverflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown overflow policy {:?}: expected drop-newest, drop-oldest or disconnect",
            self.0
        )
    }
}

impl std::error::Error for ParseOverflowError {}

impl FromStr for Overflow {
    type Err = ParseOverflowError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Overflow::ALL
            .into_iter()
            .find(|policy| policy.as_str() == s)
            .ok_or_else(|| ParseOverflowError(s.to_owned()))
    }
}

// ANCHOR: pushed
/// What became of a pushed item. Every variant but `Queued` hands the dropped item back, so
/// the caller can log it, count it, or read its sequence number.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a full queue drops messages: look at what push returned"]
pub enum Pushed<T> {
    /// The item is in the queue.
    Queued,
    /// Policy `DropNewest`, queue full: this item (the one pushed) was dropped.
    DroppedNewest(T),
    /// Policy `DropOldest`, queue full: the pushed item is queued, this one (the oldest) was
    /// dropped to make room.
    DroppedOldest(T),
    /// Policy `Disconnect`, queue full: the pushed item was not queued. The caller must drop
    /// the connection and resync; messages published until then are lost too.
    Overflowed(T),
    /// The queue was closed (or the receiver dropped): the item was not queued.
    Closed(T),
}
// ANCHOR_END: pushed

impl<T> Pushed<T> {
    /// True for `Queued`.
    pub fn is_queued(&self) -> bool {
        matches!(self, Pushed::Queued)
    }

    /// The item that was dropped, if any (`None` for `Queued`).
    pub fn dropped(self) -> Option<T> {
        match self {
            Pushed::Queued => None,
            Pushed::DroppedNewest(item)
            | Pushed::DroppedOldest(item)
            | Pushed::Overflowed(item)
            | Pushed::Closed(item) => Some(item),
        }
    }
}

/// Counters kept by the queue; read them with [`QueueSender::stats`] or
/// [`QueueReceiver::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Items that entered the queue (including ones later dropped by `DropOldest`).
    pub queued: u64,
    /// Items refused by `DropNewest` because the queue was full.
    pub dropped_newest: u64,
    /// Queued items evicted by `DropOldest` to make room.
    pub dropped_oldest: u64,
    /// Items refused by `Disconnect` because the queue was full.
    pub overflows: u64,
    /// The longest the queue has been.
    pub max_len: usize,
}

impl QueueStats {
    /// Every item the queue dropped, whatever the policy.
    pub fn dropped(&self) -> u64 {
        self.dropped_newest + self.dropped_oldest + self.overflows
    }
}

struct State<T> {
    items: VecDeque<T>,
    // `close()` was called or every sender is gone: no more pushes, the receiver drains.
    closed: bool,
    // The receiver is gone: pushes return `Closed` at once instead of filling a dead queue.
    receiver_gone: bool,
    stats: QueueStats,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    // Wakes the receiver. `notify_one` stores a permit when the receiver is not waiting yet,
    // so a push that lands between "queue is empty" and "wait" is not missed.
    ready: Notify,
    capacity: usize,
    policy: Overflow,
    senders: AtomicUsize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock, but if a caller's panic ever poisoned it, the
        // queue's state is still consistent: carry on rather than spread the panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Create a queue holding at most `capacity` items, applying `policy` when full.
///
/// # Panics
///
/// If `capacity` is 0 (like `tokio::sync::mpsc::channel`): a queue that can hold nothing
/// would drop every message.
pub fn bounded<T>(capacity: usize, policy: Overflow) -> (QueueSender<T>, QueueReceiver<T>) {
    assert!(
        capacity > 0,
        "lab::overflow::bounded: capacity must be at least 1"
    );
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity),
            closed: false,
            receiver_gone: false,
            stats: QueueStats::default(),
        }),
        ready: Notify::new(),
        capacity,
        policy,
        senders: AtomicUsize::new(1),
    });
    (
        QueueSender {
            shared: Arc::clone(&shared),
        },
        QueueReceiver { shared },
    )
}

/// The pushing half: cheap to clone, usable from any thread or task.
pub struct QueueSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        // The last sender closes the queue, so the receiver drains and then sees `None`
        // instead of waiting forever.
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close();
        }
    }
}

impl<T> fmt::Debug for QueueSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueSender")
            .field("capacity", &self.shared.capacity)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

impl<T> QueueSender<T> {
    // ANCHOR: push
    /// Offer `item` to the queue. Never waits: when the queue is full the policy decides, at
    /// once, what is dropped, and the result says which item it was.
    pub fn push(&self, item: T) -> Pushed<T> {
        let mut state = self.shared.lock();
        if state.closed || state.receiver_gone {
            return Pushed::Closed(item);
        }
        let was_empty = state.items.is_empty();
        let outcome = if state.items.len() < self.shared.capacity {
            state.items.push_back(item);
            state.stats.queued += 1;
            Pushed::Queued
        } else {
            match self.shared.policy {
                Overflow::DropNewest => {
                    state.stats.dropped_newest += 1;
                    Pushed::DroppedNewest(item)
                }
                Overflow::DropOldest => {
                    // Full means non-empty (capacity >= 1), so there is an oldest item.
                    let oldest = state.items.pop_front();
                    state.items.push_back(item);
                    state.stats.queued += 1;
                    state.stats.dropped_oldest += 1;
                    match oldest {
                        Some(oldest) => Pushed::DroppedOldest(oldest),
                        None => Pushed::Queued,
                    }
                }
                Overflow::Disconnect => {
                    state.stats.overflows += 1;
                    Pushed::Overflowed(item)
                }
            }
        };
        let len = state.items.len();
        state.stats.max_len = state.stats.max_len.max(len);
        drop(state);
        // Wake the receiver only when it may be waiting: when the queue was empty. A receiver
        // that is behind finds the next item without being woken.
        if was_empty && len > 0 {
            self.shared.ready.notify_one();
        }
        outcome
    }
    // ANCHOR_END: push

    /// The queue's counters so far.
    pub fn stats(&self) -> QueueStats {
        self.shared.lock().stats
    }

    /// Stop accepting items. The receiver still gets what is queued, then `None`.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
    }

    /// The policy this queue applies when full.
    pub fn policy(&self) -> Overflow {
        self.shared.policy
    }

    /// The most items the queue holds.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Items waiting now.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// True when no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once the queue is closed or its receiver is gone.
    pub fn is_closed(&self) -> bool {
        let state = self.shared.lock();
        state.closed || state.receiver_gone
    }
}

/// The receiving half: one per queue.
pub struct QueueReceiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_gone = true;
        // Nobody will read these: free their memory now rather than when the last sender goes.
        state.items.clear();
    }
}

impl<T> fmt::Debug for QueueReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueReceiver")
            .field("capacity", &self.shared.capacity)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

impl<T> QueueReceiver<T> {
    // ANCHOR: recv
    /// The next item, waiting if none is queued; `None` once the queue is closed and drained.
    ///
    /// Cancel-safe: an item is taken from the queue only in the same step that returns it,
    /// so dropping this future (in a `select!`, on a timeout) loses nothing.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            // Register interest before looking, so a push between the look and the wait
            // still wakes us (and `notify_one` keeps a permit if we are not waiting yet).
            let ready = self.shared.ready.notified();
            {
                let mut state = self.shared.lock();
                if let Some(item) = state.items.pop_front() {
                    return Some(item);
                }
                if state.closed {
                    return None;
                }
            }
            ready.await;
        }
    }
    // ANCHOR_END: recv

    /// The next item if one is queued now, without waiting.
    pub fn try_recv(&mut self) -> Option<T> {
        self.shared.lock().items.pop_front()
    }

    /// Wait for at least one item, then move up to `limit` queued items into `buffer` under a
    /// single lock. Returns how many were moved; 0 means closed and drained (or `limit` 0).
    /// Cancel-safe like [`recv`](Self::recv).
    pub async fn recv_many(&mut self, buffer: &mut Vec<T>, limit: usize) -> usize {
        if limit == 0 {
            return 0;
        }
        loop {
            let ready = self.shared.ready.notified();
            {
                let mut state = self.shared.lock();
                if !state.items.is_empty() {
                    let n = limit.min(state.items.len());
                    buffer.extend(state.items.drain(..n));
                    return n;
                }
                if state.closed {
                    return 0;
                }
            }
            ready.await;
        }
    }

    /// Items waiting now.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// True when no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The queue's counters so far.
    pub fn stats(&self) -> QueueStats {
        self.shared.lock().stats
    }

    /// Stop accepting items from the senders; what is queued can still be received.
    pub fn close(&mut self) {
        self.shared.lock().closed = true;
    }
}

#[cfg(test)]
#[path = "overflow_tests.rs"]
mod tests;
