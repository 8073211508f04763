//! What a stale read is, and the reader loop that counts them.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use tokio::time::{Instant, sleep};

use crate::readers::{Reader, ReaderKind};

/// Everything the writer has been told is done: the highest acknowledged version per key.
pub struct Acked(pub Vec<AtomicU64>);

impl Acked {
    pub fn snapshot(&self) -> Vec<u64> {
        self.0.iter().map(|v| v.load(Ordering::SeqCst)).collect()
    }
}

/// What one reader saw.
#[derive(Debug, Default)]
pub struct Counts {
    pub reads: u64,
    pub stale: u64,
    pub stale_keys: HashSet<usize>,
    /// Reads that found no value on the server (after a restart emptied it): not stale.
    pub missing: u64,
    pub errors: u64,
    pub last_stale_after_fault_ms: Option<u128>,
}

// ANCHOR: round
/// Read every key through the reader's cache, round after round, and count stale reads.
///
/// A read is stale when it returns a version older than the last write acknowledged before
/// the read began. The read begins with a round trip on the reader's own connection (`PING`):
/// Redis queues a key's invalidation on that connection before the reply to any later
/// command there, so by the time the PING is answered a cache that handles its
/// connection's messages in order has heard of every write acknowledged before it. What
/// this does not count is a read that overtakes an invalidation still in flight: no cache
/// can avoid those, and the next round trip ends them. If the PING fails, the connection is
/// gone and nothing more will ever be invalidated through it: an old value is then stale
/// for good.
pub async fn read_until_stopped(
    mut reader: Reader,
    keys: &[String],
    acked: &Acked,
    stop: &AtomicBool,
    fault_at: &OnceLock<Instant>,
) -> Result<(ReaderKind, Counts, Reader)> {
    let mut counts = Counts::default();
    while !stop.load(Ordering::SeqCst) {
        let floor = acked.snapshot();
        if reader.ping().await.is_err() {
            counts.errors += 1;
        }
        for (i, key) in keys.iter().enumerate() {
            match reader.get(key).await {
                Ok(Some(version)) => {
                    counts.reads += 1;
                    if version < floor[i] {
                        counts.stale += 1;
                        counts.stale_keys.insert(i);
                        if let Some(at) = fault_at.get() {
                            counts.last_stale_after_fault_ms = Some(at.elapsed().as_millis());
                        }
                    }
                }
                Ok(None) => counts.missing += 1,
                Err(_) => counts.errors += 1,
            }
        }
        sleep(Duration::from_millis(2)).await;
    }
    Ok((reader.kind(), counts, reader))
}
// ANCHOR_END: round
