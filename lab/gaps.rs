//! A `Stream` adapter that notices lost messages: sequence gaps.
//!
//! Pub/Sub delivers the messages of one connection in order, so when the publisher numbers
//! them, a jump in the numbers is a loss the subscriber can *notice* instead of suffering
//! silently. [`DetectGaps`] wraps any stream, reads a sequence number from each item with a
//! function you give it, and yields `Err(Gap)` just before the first item after a hole.
//! Chapter 3 builds it; later chapters wrap their streams in it.
//!
//! ```
//! use futures::{StreamExt, stream};
//! use lab::gaps::{DetectGaps, Gap};
//!
//! # futures::executor::block_on(async {
//! let arrived = stream::iter([0u64, 1, 4, 5, 9]);
//! let checked: Vec<Result<u64, Gap>> = DetectGaps::new(arrived, |&seq| Some(seq)).collect().await;
//! assert_eq!(checked, [Ok(0), Ok(1), Err(Gap { first: 2, last: 3 }), Ok(4), Ok(5),
//!                      Err(Gap { first: 6, last: 8 }), Ok(9)]);
//! # });
//! ```
//!
//! What it cannot see: messages lost after the last one that arrived (nothing follows them),
//! and the first message's predecessors, unless you tell it where numbering starts
//! ([`DetectGaps::starting_at`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use pin_project_lite::pin_project;

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

/// What the adapter has seen so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GapStats {
    /// Items passed through (numbered or not).
    pub items: u64,
    /// Gaps reported.
    pub gaps: u64,
    /// Messages inside those gaps: the loss this subscriber noticed.
    pub missing: u64,
    /// Items whose number was lower than expected (a duplicate, or a restarted publisher).
    pub behind: u64,
    /// Items without a sequence number (the function returned `None`).
    pub unnumbered: u64,
}

// ANCHOR: struct
pin_project! {
    /// Wraps a stream; see the [module docs](self).
    pub struct DetectGaps<S: Stream, F> {
        // The wrapped stream may not be `Unpin` (many async streams are not), so we keep it
        // pinned and reach it through a pin projection.
        #[pin]
        inner: S,
        seq_of: F,
        // The number we expect next; `None` until the first numbered item.
        next: Option<u64>,
        // An item that followed a gap: we reported the gap first, the item comes next.
        held: Option<<S as Stream>::Item>,
        stats: GapStats,
    }
}
// ANCHOR_END: struct

impl<S, F> DetectGaps<S, F>
where
    S: Stream,
    F: FnMut(&S::Item) -> Option<u64>,
{
    /// Watch `inner`, reading each item's number with `seq_of`.
    pub fn new(inner: S, seq_of: F) -> Self {
        Self {
            inner,
            seq_of,
            next: None,
            held: None,
            stats: GapStats::default(),
        }
    }

    /// Also report a gap before the first item if it is not numbered `first`.
    pub fn starting_at(mut self, first: u64) -> Self {
        self.next = Some(first);
        self
    }

    /// What has been seen so far.
    pub fn stats(&self) -> GapStats {
        self.stats
    }

    /// The number expected next, if any item was numbered yet.
    pub fn expected_next(&self) -> Option<u64> {
        self.next
    }
}

// ANCHOR: poll_next
impl<S, F> Stream for DetectGaps<S, F>
where
    S: Stream,
    F: FnMut(&S::Item) -> Option<u64>,
{
    type Item = Result<S::Item, Gap>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        // The item behind a gap we just reported goes out first.
        if let Some(item) = this.held.take() {
            return Poll::Ready(Some(Ok(item)));
        }
        // Ask the inner stream. `Pending` means it registered our waker: we return
        // `Pending` too, and the runtime polls us again when there is more.
        let Some(item) = futures::ready!(this.inner.poll_next(cx)) else {
            return Poll::Ready(None);
        };
        this.stats.items += 1;
        let Some(seq) = (this.seq_of)(&item) else {
            this.stats.unnumbered += 1;
            return Poll::Ready(Some(Ok(item)));
        };
        let expected = this.next.unwrap_or(seq);
        if seq < expected {
            this.stats.behind += 1;
            return Poll::Ready(Some(Ok(item)));
        }
        *this.next = Some(seq + 1);
        if seq == expected {
            return Poll::Ready(Some(Ok(item)));
        }
        let gap = Gap {
            first: expected,
            last: seq - 1,
        };
        this.stats.gaps += 1;
        this.stats.missing += gap.len();
        *this.held = Some(item);
        Poll::Ready(Some(Err(gap)))
    }
}
// ANCHOR_END: poll_next

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{StreamExt, executor::block_on, stream};

    #[test]
    fn reports_exactly_the_holes_of_a_sequence() {
        // 0..100 with known holes: 10, 20-29, 99 (trailing loss: invisible), and a duplicate.
        let arrived: Vec<u64> = (0..100)
            .filter(|seq| *seq != 10 && !(20..30).contains(seq) && *seq != 99)
            .chain([50])
            .collect();
        let mut checked = DetectGaps::new(stream::iter(arrived), |&seq| Some(seq));
        let gaps: Vec<Gap> = block_on(async {
            let mut gaps = Vec::new();
            while let Some(next) = checked.next().await {
                if let Err(gap) = next {
                    gaps.push(gap);
                }
            }
            gaps
        });
        assert_eq!(
            gaps,
            [
                Gap {
                    first: 10,
                    last: 10
                },
                Gap {
                    first: 20,
                    last: 29
                }
            ]
        );
        let stats = checked.stats();
        assert_eq!(
            (stats.items, stats.gaps, stats.missing, stats.behind),
            (89, 2, 11, 1)
        );
    }

    #[test]
    fn starting_at_sees_a_lost_beginning_and_unnumbered_items_pass() {
        let items = stream::iter([Some(3u64), None, Some(4)]);
        let out: Vec<_> = block_on(
            DetectGaps::new(items, |item: &Option<u64>| *item)
                .starting_at(0)
                .collect(),
        );
        assert_eq!(
            out,
            [
                Err(Gap { first: 0, last: 2 }),
                Ok(Some(3)),
                Ok(None),
                Ok(Some(4))
            ]
        );
    }
}
