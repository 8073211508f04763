//! Unit tests of `lab::gaps` (the gap detector and the per-channel tracker), in a file of
//! their own so that `lab/gaps.rs` holds the code chapter 3 shows and little else.

use super::*;
use crate::message::Identity;
use futures::{StreamExt, executor::block_on, stream};

#[test]
fn reports_exactly_the_holes_of_a_sequence() {
    // 0..100 with known holes: 10, 20-29, 99 (trailing loss: invisible).
    let arrived: Vec<u64> = (0..100)
        .filter(|seq| *seq != 10 && !(20..30).contains(seq) && *seq != 99)
        .collect();
    let mut checked = DetectGaps::new(stream::iter(arrived), |&seq| Some(Mark::bare(seq)));
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
        (stats.items, stats.gaps, stats.missing, stats.unknown_gaps),
        (88, 2, 11, 0)
    );
}

#[test]
fn starting_at_sees_a_lost_beginning_and_unnumbered_items_pass() {
    let items = stream::iter([Some(3u64), None, Some(4)]);
    let out: Vec<_> = block_on(
        DetectGaps::new(items, |item: &Option<u64>| item.map(Mark::bare))
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

#[test]
fn heartbeats_reveal_a_lost_tail_once_and_are_swallowed() {
    let me = Identity::with_epoch("p", 1);
    let payloads = vec![
        me.message(0, 0),
        me.message(1, 0),
        me.heartbeat(2, false), // nothing missing: swallowed
        me.heartbeat(5, true),  // 2, 3, 4 never came: the only sign of it
    ];
    let mut checked = DetectGaps::new(stream::iter(payloads), |payload: &Vec<u8>| {
        crate::message::mark_of(payload).ok()
    });
    let out: Vec<Result<Vec<u8>, Gap>> = block_on((&mut checked).collect());
    assert_eq!(
        out,
        [
            Ok(me.message(0, 0)),
            Ok(me.message(1, 0)),
            Err(Gap { first: 2, last: 4 })
        ]
    );
    let stats = checked.stats();
    assert_eq!((stats.items, stats.heartbeats, stats.missing), (2, 2, 3));
}

#[test]
fn a_message_after_a_heartbeat_gap_is_not_counted_again() {
    let me = Identity::with_epoch("p", 1);
    let mut tracker = Tracker::starting_at(0);
    assert_eq!(tracker.observe(me.origin().message(0)), None);
    let gap = tracker.observe(Mark::Heartbeat {
        origin: me.origin(),
        next: 4,
        last: false,
    });
    assert_eq!(gap, Some(Gap { first: 1, last: 3 }));
    assert_eq!(tracker.observe(me.origin().message(4)), None);
    assert_eq!(tracker.stats().missing, 3);
}

#[test]
fn publishers_are_counted_apart_and_a_restart_is_not_a_loss() {
    let (a, b) = (Identity::with_epoch("a", 1), Identity::with_epoch("b", 1));
    let b_again = Identity::with_epoch("b", 2);
    let mut tracker = Tracker::starting_at(0);
    let mut gaps = Vec::new();
    let mut see = |mark| gaps.extend(tracker.observe(mark));
    for seq in 0..100 {
        see(a.origin().message(seq));
        if seq < 50 {
            see(b.origin().message(seq));
        }
    }
    // b exits cleanly and restarts from 0: not a gap, not an unknown one either.
    see(Mark::Heartbeat {
        origin: b.origin(),
        next: 50,
        last: true,
    });
    for seq in (0..10).filter(|seq| *seq != 7) {
        see(b_again.origin().message(seq));
    }
    assert_eq!(gaps, [Gap { first: 7, last: 7 }]);
    let stats = tracker.stats();
    assert_eq!(
        (stats.missing, stats.restarts, stats.unknown_gaps),
        (1, 1, 0)
    );
}

#[test]
fn a_restart_without_goodbye_is_an_unknown_gap_and_backwards_is_never_missing() {
    let first = Identity::with_epoch("p", 1);
    let mut tracker = Tracker::new();
    for seq in 0..10 {
        tracker.observe(first.origin().message(seq));
    }
    tracker.observe(Identity::with_epoch("p", 2).origin().message(0));
    tracker.observe(Identity::with_epoch("p", 2).origin().message(0));
    for seq in [5, 0, 1] {
        tracker.observe(Mark::bare(seq));
    }
    let stats = tracker.stats();
    assert_eq!(stats.missing, 0);
    // The new epoch, the duplicate, and the bare number going back to 0.
    assert_eq!(stats.unknown_gaps, 3, "{stats:?}");
}

/// What happened on a random channel, and the tracker that watched it.
struct RandomChannel {
    lost: u64,
    /// Lost at the end of a run that ended without a heartbeat: nobody can see those.
    invisible: u64,
    restarts_without_goodbye: u64,
    tracker: Tracker,
}

/// Publishers numbering from 0, interleaved at random, some messages lost at random, some
/// publishers restarting (named ones say goodbye first, half the time, and at the end).
fn random_channel(seed: u64, named: bool) -> RandomChannel {
    let mut rng = fastrand::Rng::with_seed(seed);
    let publishers = rng.usize(1..=4);
    let names: Vec<String> = (0..publishers).map(|p| format!("p{p}")).collect();
    let mut epochs = vec![0u64; publishers];
    let mut next = vec![0u64; publishers];
    // Lost since the publisher's last message that arrived.
    let mut trailing = vec![0u64; publishers];
    let starts: Vec<usize> = (0..publishers).map(|_| rng.usize(0..200)).collect();
    let loss_rate = rng.f64() * 0.3;
    let mut channel = RandomChannel {
        lost: 0,
        invisible: 0,
        restarts_without_goodbye: 0,
        tracker: Tracker::starting_at(0),
    };
    let goodbye = |channel: &mut RandomChannel, p: usize, next: u64, epoch: u64| {
        let origin = Origin {
            publisher: &names[p],
            epoch,
        };
        let last = true;
        channel
            .tracker
            .observe(Mark::Heartbeat { origin, next, last });
    };
    for step in 0..2_000 {
        let p = rng.usize(0..publishers);
        if step < starts[p] {
            continue;
        }
        if rng.f64() < 0.002 {
            if named && rng.bool() {
                goodbye(&mut channel, p, next[p], epochs[p]);
            } else {
                channel.invisible += trailing[p];
                channel.restarts_without_goodbye += 1;
            }
            (epochs[p], next[p], trailing[p]) = (epochs[p] + 1, 0, 0);
            continue;
        }
        let seq = next[p];
        next[p] += 1;
        if rng.f64() < loss_rate {
            channel.lost += 1;
            trailing[p] += 1;
            continue;
        }
        trailing[p] = 0;
        let origin = Origin {
            publisher: &names[p],
            epoch: epochs[p],
        };
        let mark = if named {
            origin.message(seq)
        } else {
            Mark::bare(seq)
        };
        channel.tracker.observe(mark);
    }
    for p in 0..publishers {
        if named {
            goodbye(&mut channel, p, next[p], epochs[p]);
        } else {
            channel.invisible += trailing[p];
        }
    }
    channel
}

#[test]
fn bare_numbers_from_many_publishers_never_count_more_than_was_lost() {
    for seed in 0..3_000 {
        let channel = random_channel(seed, false);
        let (lost, stats) = (channel.lost, channel.tracker.stats());
        assert!(stats.missing <= lost, "seed {seed}: lost {lost}, {stats:?}");
    }
}

/// The rule "a number that goes backwards starts a new epoch", alone: one expected number
/// per channel, reset on every step back. What the tracker would count without lanes.
fn one_sequence_missing(seqs: &[u64]) -> u64 {
    let (mut next, mut missing) = (0, 0);
    for &seq in seqs {
        if seq > next {
            missing += seq - next;
        }
        next = seq + 1;
    }
    missing
}

#[test]
fn without_lanes_interleaved_bare_publishers_invent_losses() {
    // Two publishers from 0, interleaved at random, nothing lost.
    let mut rng = fastrand::Rng::with_seed(7);
    let (mut a, mut b, mut seqs) = (0u64, 0u64, Vec::new());
    while a < 1_000 || b < 1_000 {
        let next = if (rng.bool() && a < 1_000) || b == 1_000 {
            &mut a
        } else {
            &mut b
        };
        seqs.push(*next);
        *next += 1;
    }
    let mut tracker = Tracker::starting_at(0);
    for &seq in &seqs {
        tracker.observe(Mark::bare(seq));
    }
    assert_eq!(tracker.stats().missing, 0, "{:?}", tracker.stats());
    let invented = one_sequence_missing(&seqs);
    println!("one sequence: {invented} missing, of 2,000 sent and 0 lost");
    assert!(
        invented > 2_000,
        "one sequence counted only {invented} missing of 0 lost"
    );
}

#[test]
fn named_publishers_with_heartbeats_are_counted_exactly() {
    for seed in 0..3_000 {
        let channel = random_channel(seed, true);
        let stats = channel.tracker.stats();
        let context = format!("seed {seed}: lost {}, {stats:?}", channel.lost);
        assert_eq!(stats.missing, channel.lost - channel.invisible, "{context}");
        assert!(
            stats.unknown_gaps <= channel.restarts_without_goodbye,
            "{context}"
        );
    }
}
