//! What the subscriber counts: the final [`Report`], and the counters behind it, each with
//! one writer, readable at any time.

use super::*;

// ANCHOR: report
/// The subscriber's counters. `noticed()` is every message it knows it lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Messages read from the connection.
    pub received: u64,
    /// Handled successfully.
    pub processed: u64,
    /// Dropped by a full queue (policy drop-newest / drop-oldest / disconnect).
    pub dropped: u64,
    /// The handler took longer than the timeout.
    pub timed_out: u64,
    /// The handler said the payload was bad (not UTF-8, not parseable).
    pub bad_payload: u64,
    /// Larger than `max_payload`: never handed to a handler.
    pub oversized: u64,
    /// The handler failed or panicked.
    pub failed: u64,
    /// Queued but not handled when the shutdown deadline passed.
    pub abandoned: u64,
    /// Connections lost and re-established.
    pub reconnects: u64,
    /// Sequence gaps seen (numbered publishers).
    pub gaps: u64,
    /// Messages inside those gaps.
    pub missing: u64,
    /// Losses that may have happened but cannot be counted: reconnections when publishers do
    /// not number their messages, and publishers that restarted without a goodbye.
    pub unknown_gaps: u64,
    /// Heartbeats read (named publishers); not messages, not in `received`.
    pub heartbeats: u64,
    /// The longest any worker queue has been.
    pub max_queue: u64,
}

impl Report {
    /// Messages the subscriber knows it lost: sequence gaps, queue drops, shutdown leftovers.
    pub fn noticed(&self) -> u64 {
        self.missing + self.dropped + self.abandoned
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} processed={} dropped={} timed_out={} bad_payload={} oversized={} \
             failed={} abandoned={} reconnects={} gaps={} missing={} unknown_gaps={} \
             heartbeats={} max_queue={}",
            self.received,
            self.processed,
            self.dropped,
            self.timed_out,
            self.bad_payload,
            self.oversized,
            self.failed,
            self.abandoned,
            self.reconnects,
            self.gaps,
            self.missing,
            self.unknown_gaps,
            self.heartbeats,
            self.max_queue
        )
    }
}
// ANCHOR_END: report

/// Every outcome a message read can have, as [`Report`]'s `Display` names them: its
/// `received` is their sum.
pub const OUTCOMES: [&str; 7] = [
    "processed",
    "dropped",
    "timed_out",
    "bad_payload",
    "oversized",
    "failed",
    "abandoned",
];

/// A counter with exactly one writer (one task) and any number of readers. The writer
/// loads and stores instead of using `fetch_add`: no locked instruction on the hot path, and
/// readers still see a value that is at most a moment old.
#[derive(Default)]
pub(super) struct Counter(AtomicU64);

impl Counter {
    pub(super) fn add(&self, n: u64) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The reading side's counters. `received`, `oversized`, `gaps`, `missing`, `restarts` and
/// `heartbeats` are written only under the intake's lock (so by one read loop at a time),
/// `reconnects` and `unknown_gaps` only by the supervisor: each counter has one writer at a
/// time.
#[derive(Default)]
pub(super) struct ReaderCounters {
    pub(super) received: Counter,
    pub(super) oversized: Counter,
    pub(super) reconnects: Counter,
    pub(super) gaps: Counter,
    pub(super) missing: Counter,
    /// Publishers restarted without a goodbye: unknown gaps found in the numbers.
    pub(super) restarts: Counter,
    pub(super) heartbeats: Counter,
    /// Reconnections that nothing numbered can account for.
    pub(super) unknown_gaps: Counter,
}

/// One worker's counters, on their own cache line so workers on different threads do not
/// slow each other down.
#[derive(Default)]
#[repr(align(64))]
pub(super) struct WorkerCounters {
    pub(super) processed: Counter,
    pub(super) timed_out: Counter,
    pub(super) bad_payload: Counter,
    pub(super) failed: Counter,
}

pub(super) struct Shared {
    pub(super) reader: ReaderCounters,
    pub(super) workers: Vec<WorkerCounters>,
    pub(super) abandoned: Counter,
    pub(super) subscribed: AtomicBool,
}

/// The sending side of the worker queues, kept to read their counters.
pub(super) type Queues = Arc<Vec<QueueSender<Msg>>>;

pub(super) fn snapshot(shared: &Shared, queues: &Queues) -> Report {
    let mut report = Report {
        received: shared.reader.received.get(),
        oversized: shared.reader.oversized.get(),
        reconnects: shared.reader.reconnects.get(),
        gaps: shared.reader.gaps.get(),
        missing: shared.reader.missing.get(),
        unknown_gaps: shared.reader.unknown_gaps.get() + shared.reader.restarts.get(),
        heartbeats: shared.reader.heartbeats.get(),
        abandoned: shared.abandoned.get(),
        ..Report::default()
    };
    for worker in &shared.workers {
        report.processed += worker.processed.get();
        report.timed_out += worker.timed_out.get();
        report.bad_payload += worker.bad_payload.get();
        report.failed += worker.failed.get();
    }
    for queue in queues.iter() {
        let stats = queue.stats();
        report.dropped += stats.dropped();
        report.max_queue = report.max_queue.max(stats.max_len as u64);
    }
    report
}
