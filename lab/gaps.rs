//! Noticing lost messages: sequence gaps, per publisher, and what heartbeats say.
//!
//! Pub/Sub delivers the messages of one publisher connection in order, so when publishers
//! number their messages (`lab::message`), a jump in the numbers is a loss the subscriber can
//! *notice* instead of suffering silently. [`Tracker`] keeps the count for one channel: one
//! sequence per named publisher and run (epoch), and heartbeats that reveal a loss no later
//! message would show. [`DetectGaps`] wraps any stream in a tracker, reads each item's
//! [`Mark`] with a function you give it, yields `Err(Gap)` just before the first item after a
//! hole, and swallows heartbeats. Chapter 3 builds it; later chapters wrap their streams in
//! it, and `lab::production` uses a tracker per channel.
//!
//! ```
//! use futures::{StreamExt, stream};
//! use lab::gaps::{DetectGaps, Gap};
//! use lab::message::Mark;
//!
//! # futures::executor::block_on(async {
//! let arrived = stream::iter([0u64, 1, 4, 5, 9]);
//! let checked: Vec<Result<u64, Gap>> =
//!     DetectGaps::new(arrived, |&seq| Some(Mark::bare(seq))).collect().await;
//! assert_eq!(checked, [Ok(0), Ok(1), Err(Gap { first: 2, last: 3 }), Ok(4), Ok(5),
//!                      Err(Gap { first: 6, last: 8 }), Ok(9)]);
//! # });
//! ```
//!
//! What it counts, and what it refuses to guess:
//! - **`missing`** counts only messages it is sure were published and did not arrive. It never
//!   exceeds the real loss, whatever the publishers do.
//! - **`unknown_gaps`** counts events after which some loss *may* have happened but cannot be
//!   counted: a named publisher that restarted without its exit heartbeat being seen, or a
//!   number that went backwards (a restart, or another publisher on the channel).
//! - Messages lost after the last one that arrived are invisible without a heartbeat, and so
//!   is a lost beginning, unless you say where numbering starts ([`Tracker::starting_at`]).
//! - Bare numbers from several publishers on one channel are sorted into *lanes*, one per
//!   sequence that continues where another left off. That keeps `missing` at or below the
//!   real loss when they all start from the same number after the subscriber, but it cannot
//!   tell whose message was lost, and it undercounts. Name your publishers.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use pin_project_lite::pin_project;

use crate::message::{Mark, Origin};

/// Messages `first..=last` never arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub first: u64,
    pub last: u64,
}

impl Gap {
    /// How many messages the gap holds.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never true: a gap holds at least one message.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What a tracker has seen so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GapStats {
    /// Messages seen (numbered or not; heartbeats are not messages).
    pub items: u64,
    /// Gaps reported, by a later message or by a heartbeat.
    pub gaps: u64,
    /// Messages inside those gaps: the loss this subscriber noticed, and could count.
    pub missing: u64,
    /// Losses that may have happened but cannot be counted: a restart without a goodbye, a
    /// number that went backwards.
    pub unknown_gaps: u64,
    /// Numbers that went backwards, and new epochs of a publisher already seen: restarts, or
    /// another publisher using the same numbers.
    pub restarts: u64,
    /// Messages without a sequence number.
    pub unnumbered: u64,
    /// Heartbeats seen.
    pub heartbeats: u64,
}

/// At most this many bare-number lanes per channel; the one furthest behind goes first.
const MAX_LANES: usize = 16;

/// One run of a named publisher, as far as we have seen it.
struct Run {
    epoch: u64,
    /// The number expected next.
    next: u64,
    /// Its exit heartbeat arrived, and nothing was missing at that point.
    said_goodbye: bool,
}

/// The count for one channel. Feed it every [`Mark`] in the order the channel delivered
/// them; it answers with the gap each one reveals, if any.
#[derive(Default)]
pub struct Tracker {
    /// Named publishers: the run we are in, per name.
    runs: HashMap<String, Run>,
    /// Bare numbers: the number expected next, per lane.
    lanes: Vec<u64>,
    /// Where every sequence starts, if publishers start after the subscriber.
    first_seq: Option<u64>,
    stats: GapStats,
}

impl Tracker {
    /// A tracker that learns each sequence's start from its first message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every publisher (and every new run of one) numbers from `first`, and starts after the
    /// subscriber: a message or heartbeat above `first` as the first sign of a run reveals a
    /// gap too.
    pub fn starting_at(first: u64) -> Self {
        Self {
            first_seq: Some(first),
            ..Self::default()
        }
    }

    /// What has been seen so far.
    pub fn stats(&self) -> GapStats {
        self.stats
    }

    /// A message without a number went by.
    pub fn unnumbered(&mut self) {
        self.stats.items += 1;
        self.stats.unnumbered += 1;
    }

    /// Count one message or heartbeat; the gap it reveals, if any.
    pub fn observe(&mut self, mark: Mark<'_>) -> Option<Gap> {
        match mark {
            Mark::Message { origin: None, seq } => {
                self.stats.items += 1;
                self.bare(seq)
            }
            // Message `seq` arrived: `..seq` should have arrived before it.
            Mark::Message {
                origin: Some(origin),
                seq,
            } => {
                self.stats.items += 1;
                self.named(origin, seq, seq + 1, false)
            }
            // `..next` was published: all of it should have arrived by now.
            Mark::Heartbeat { origin, next, last } => {
                self.stats.heartbeats += 1;
                self.named(origin, next, next, last)
            }
        }
    }

    // ANCHOR: named
    /// `origin` says that messages `..until` were published, and `then` comes next.
    fn named(&mut self, origin: Origin<'_>, until: u64, then: u64, goodbye: bool) -> Option<Gap> {
        let start = self.first_seq.unwrap_or(until);
        let fresh = Run {
            epoch: origin.epoch,
            next: start,
            said_goodbye: false,
        };
        let run = match self.runs.get_mut(origin.publisher) {
            Some(run) if run.epoch == origin.epoch => run,
            Some(run) => {
                // A new run of a publisher we know. If the old run said goodbye, we saw all
                // of it; otherwise its last messages may be lost, and nobody can count them.
                self.stats.restarts += 1;
                if !run.said_goodbye {
                    self.stats.unknown_gaps += 1;
                }
                *run = fresh;
                run
            }
            None => self
                .runs
                .entry(origin.publisher.to_string())
                .or_insert(fresh),
        };
        let expected = run.next;
        run.next = then;
        run.said_goodbye = goodbye;
        if until < expected {
            // Backwards in the same run: a duplicate, or a restart that kept its epoch.
            // Never `missing`: count again from here.
            self.stats.restarts += 1;
            self.stats.unknown_gaps += 1;
            return None;
        }
        self.gap(expected, until)
    }
    // ANCHOR_END: named

    // ANCHOR: bare
    /// A bare number: continue the lane that expects it, or the one closest below it;
    /// below every lane, it starts a new one (a restart, or another publisher).
    fn bare(&mut self, seq: u64) -> Option<Gap> {
        if self.lanes.is_empty() {
            self.lanes.push(self.first_seq.unwrap_or(seq));
        }
        if let Some(lane) = self.lanes.iter_mut().find(|next| **next == seq) {
            *lane = seq + 1;
            return None;
        }
        if let Some(lane) = self.lanes.iter_mut().filter(|next| **next < seq).max() {
            let expected = std::mem::replace(lane, seq + 1);
            return self.gap(expected, seq);
        }
        self.stats.restarts += 1;
        self.stats.unknown_gaps += 1;
        if self.lanes.len() == MAX_LANES {
            // Forget the lane furthest behind: only ever fewer gaps, never more.
            let furthest_behind = (0..self.lanes.len()).min_by_key(|&i| self.lanes[i]);
            self.lanes.swap_remove(furthest_behind.unwrap_or(0));
        }
        self.lanes.push(seq + 1);
        None
    }
    // ANCHOR_END: bare

    /// Messages `expected..until` are missing (none if the range is empty).
    fn gap(&mut self, expected: u64, until: u64) -> Option<Gap> {
        if until <= expected {
            return None;
        }
        self.stats.gaps += 1;
        self.stats.missing += until - expected;
        Some(Gap {
            first: expected,
            last: until - 1,
        })
    }
}

// ANCHOR: struct
pin_project! {
    /// Wraps a stream; see the [module docs](self).
    pub struct DetectGaps<S: Stream, F> {
        // The wrapped stream may not be `Unpin` (many async streams are not), so we keep it
        // pinned and reach it through a pin projection.
        #[pin]
        inner: S,
        mark_of: F,
        tracker: Tracker,
        // An item that followed a gap: we reported the gap first, the item comes next.
        held: Option<<S as Stream>::Item>,
    }
}
// ANCHOR_END: struct

impl<S, F> DetectGaps<S, F>
where
    S: Stream,
    F: for<'a> FnMut(&'a S::Item) -> Option<Mark<'a>>,
{
    /// Watch `inner`, reading each item's mark with `mark_of` (`None`: not numbered).
    pub fn new(inner: S, mark_of: F) -> Self {
        Self {
            inner,
            mark_of,
            tracker: Tracker::new(),
            held: None,
        }
    }

    /// Publishers number from `first` and start after the subscriber: see
    /// [`Tracker::starting_at`].
    pub fn starting_at(mut self, first: u64) -> Self {
        self.tracker.first_seq = Some(first);
        self
    }

    /// What has been seen so far.
    pub fn stats(&self) -> GapStats {
        self.tracker.stats()
    }
}

// ANCHOR: poll_next
impl<S, F> Stream for DetectGaps<S, F>
where
    S: Stream,
    F: for<'a> FnMut(&'a S::Item) -> Option<Mark<'a>>,
{
    type Item = Result<S::Item, Gap>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        // The item behind a gap we just reported goes out first.
        if let Some(item) = this.held.take() {
            return Poll::Ready(Some(Ok(item)));
        }
        // A loop: a heartbeat is swallowed, and then we must ask the inner stream again.
        loop {
            // `Pending` means the inner stream registered our waker: we return `Pending`
            // too, and the runtime polls us again when there is more.
            let Some(item) = futures::ready!(this.inner.as_mut().poll_next(cx)) else {
                return Poll::Ready(None);
            };
            let Some(mark) = (this.mark_of)(&item) else {
                this.tracker.unnumbered();
                return Poll::Ready(Some(Ok(item)));
            };
            let is_message = matches!(mark, Mark::Message { .. });
            match (this.tracker.observe(mark), is_message) {
                (None, true) => return Poll::Ready(Some(Ok(item))),
                (Some(gap), true) => {
                    *this.held = Some(item);
                    return Poll::Ready(Some(Err(gap)));
                }
                // A heartbeat is not a message: report what it revealed, pass nothing on.
                (Some(gap), false) => return Poll::Ready(Some(Err(gap))),
                (None, false) => continue,
            }
        }
    }
}
// ANCHOR_END: poll_next

#[cfg(test)]
#[path = "gaps_tests.rs"]
mod tests;
