//! What arrived: the harness's own count, independent of what the subscriber believes.

use std::ops::RangeInclusive;

/// Counts the messages `0..sent` as they arrive.
///
/// `received` counts distinct sequence numbers, so `lost() == sent - received` holds even
/// when some messages arrive twice.
#[derive(Clone, Debug)]
pub struct Tally {
    sent: u64,
    seen: Vec<bool>,
    received: u64,
    duplicates: u64,
    out_of_order: u64,
    unexpected: u64,
    highest: Option<u64>,
}

impl Tally {
    /// A tally for messages numbered `0..sent`.
    pub fn new(sent: u64) -> Self {
        Self {
            sent,
            seen: vec![false; sent as usize],
            received: 0,
            duplicates: 0,
            out_of_order: 0,
            unexpected: 0,
            highest: None,
        }
    }

    /// Record that message `seq` arrived.
    pub fn record(&mut self, seq: u64) {
        let Some(seen) = self.seen.get_mut(seq as usize) else {
            self.unexpected += 1;
            return;
        };
        if *seen {
            self.duplicates += 1;
            return;
        }
        *seen = true;
        self.received += 1;
        match self.highest {
            Some(highest) if seq < highest => self.out_of_order += 1,
            _ => self.highest = Some(seq),
        }
    }

    /// Count the messages of another tally of the same run (e.g. one per worker) in this one.
    /// Order across tallies is not known, so only each tally's own out-of-order count is kept.
    pub fn merge(&mut self, other: &Tally) {
        assert_eq!(self.sent, other.sent, "merging tallies of different runs");
        for (seq, &seen) in other.seen.iter().enumerate() {
            if seen {
                if self.seen[seq] {
                    self.duplicates += 1;
                } else {
                    self.seen[seq] = true;
                    self.received += 1;
                }
            }
        }
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.unexpected += other.unexpected;
        self.highest = self.highest.max(other.highest);
    }

    /// How many messages were published.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// How many distinct messages of `0..sent` arrived.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// `sent - received`.
    pub fn lost(&self) -> u64 {
        self.sent - self.received
    }

    /// Messages that arrived again after their first arrival.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Messages that arrived after a higher-numbered one.
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }

    /// Numbers outside `0..sent`: not part of this run.
    pub fn unexpected(&self) -> u64 {
        self.unexpected
    }

    /// The missing sequence numbers, as inclusive ranges: `[3..=3, 10..=99]`.
    pub fn missing(&self) -> Vec<RangeInclusive<u64>> {
        let mut ranges = Vec::new();
        let mut start = None;
        for (seq, &seen) in self.seen.iter().enumerate() {
            let seq = seq as u64;
            match (seen, start) {
                (false, None) => start = Some(seq),
                (true, Some(first)) => {
                    ranges.push(first..=seq - 1);
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(first) = start {
            ranges.push(first..=self.sent - 1);
        }
        ranges
    }

    /// True when what arrived is `0..received` exactly: nothing missing before the last
    /// message that arrived (what a disconnect leaves behind).
    pub fn is_gap_free_prefix(&self) -> bool {
        self.seen[..self.received as usize].iter().all(|&seen| seen)
    }

    /// The missing ranges in a short, printable form: `3, 10-99` (at most `limit` ranges).
    pub fn missing_summary(&self, limit: usize) -> String {
        let missing = self.missing();
        let mut parts: Vec<String> = missing
            .iter()
            .take(limit)
            .map(|range| {
                if range.start() == range.end() {
                    range.start().to_string()
                } else {
                    format!("{}-{}", range.start(), range.end())
                }
            })
            .collect();
        if missing.len() > limit {
            parts.push(format!("... ({} ranges in all)", missing.len()));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_losses_duplicates_and_order() {
        let mut tally = Tally::new(10);
        for seq in [0, 1, 2, 5, 4, 4, 9, 42] {
            tally.record(seq);
        }
        assert_eq!(tally.received(), 6);
        assert_eq!(tally.lost(), 4);
        assert_eq!(tally.duplicates(), 1);
        assert_eq!(tally.out_of_order(), 1);
        assert_eq!(tally.unexpected(), 1);
        assert_eq!(tally.missing(), vec![3..=3, 6..=8]);
        assert_eq!(tally.missing_summary(1), "3, ... (2 ranges in all)");
        assert!(!tally.is_gap_free_prefix());
    }

    #[test]
    fn prefix_and_merge() {
        let mut first = Tally::new(6);
        let mut second = Tally::new(6);
        [0, 2].into_iter().for_each(|seq| first.record(seq));
        [1, 2].into_iter().for_each(|seq| second.record(seq));
        first.merge(&second);
        assert_eq!(first.received(), 3);
        assert_eq!(first.duplicates(), 1);
        assert!(first.is_gap_free_prefix());
        assert_eq!(first.missing(), vec![3..=5]);
        assert_eq!(Tally::new(0).missing_summary(3), "none");
    }
}
