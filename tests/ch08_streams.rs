//! Chapter 8's claims: Pub/Sub is at-most-once; a Streams consumer group with XACK after the
//! work, XAUTOCLAIM and a dedup marker handles every message exactly once through worker
//! crashes; poison messages end in a dead-letter stream after a bounded number of deliveries;
//! and the comparison table's rows. Each test runs the chapter's example and reads its RESULT
//! lines, so the book's numbers and these assertions come from the same code.

use lab::report::find;
use lab::{REDIS_CURRENT, ResultLine};

fn run(example: &str, args: &[&str]) -> Vec<ResultLine> {
    let run = lab::example::run_with_env(example, args, &[("LAB_QUICK", "1")]).unwrap();
    let results = run.results().unwrap();
    println!("{}", run.stdout());
    results
}

fn extra(result: &ResultLine, key: &str) -> u64 {
    result.get_f64(key).unwrap() as u64
}

/// 100,000 jobs, 3 worker processes, one SIGKILLed mid-batch three times: every job's work
/// happened exactly once, nothing is left pending, nothing was parked.
#[test]
fn crash_test_100k_jobs_three_kills_none_lost_none_twice() {
    let results = run(
        "ch08_streams_crash",
        &[
            "--scenario",
            "crash",
            "--messages",
            "100000",
            "--kills",
            "3",
        ],
    );
    let crash = find(&results, "crash-3-kills", REDIS_CURRENT).unwrap();
    assert_eq!(crash.sent, 100_000);
    assert_eq!(crash.lost, 0, "{crash}");
    assert_eq!(extra(crash, "twice"), 0, "work ran twice: {crash}");
    assert_eq!(extra(crash, "pending"), 0, "{crash}");
    assert_eq!(extra(crash, "dead_lettered"), 0, "{crash}");
    assert_eq!(extra(crash, "kills"), 3);
    // The kills really hit a worker holding unacknowledged messages, some of them already
    // handled: without the dedup marker those would have run twice.
    assert!(extra(crash, "held_at_kill") > 0, "{crash}");
    assert_eq!(extra(crash, "mid_batch_kills"), 3, "{crash}");
    assert!(extra(crash, "handled_unacked_at_kill") > 0, "{crash}");
    assert!(extra(crash, "redelivered") > 0, "{crash}");
    assert!(extra(crash, "deduplicated") > 0, "{crash}");
    assert!(
        extra(crash, "deduplicated") >= extra(crash, "handled_unacked_at_kill"),
        "{crash}"
    );
}

/// A job whose handler always fails is delivered MAX_DELIVERIES (3) times, then parked in
/// the dead-letter stream; every other job is handled once.
#[test]
fn poison_jobs_go_to_the_dead_letter_stream_after_three_deliveries() {
    let results = run("ch08_streams_crash", &["--scenario", "dead-letter"]);
    let dead = find(&results, "dead-letter", REDIS_CURRENT).unwrap();
    let poison = extra(dead, "poison");
    assert!(poison > 0);
    assert_eq!(dead.lost, 0, "{dead}");
    assert_eq!(extra(dead, "dead_lettered"), poison, "{dead}");
    assert_eq!(extra(dead, "handled"), dead.sent - poison, "{dead}");
    assert_eq!(extra(dead, "min_attempts_per_poison"), 3, "{dead}");
    assert_eq!(extra(dead, "max_attempts_per_poison"), 3, "{dead}");
    assert_eq!(extra(dead, "twice"), 0, "{dead}");
    assert_eq!(extra(dead, "pending"), 0, "{dead}");
}

/// A subscriber away for 200 ms loses what was published meanwhile (the PUBLISH replies
/// said 0 subscribers for those), notices the gap, recovers none; a Streams consumer away
/// for the same 200 ms loses nothing.
#[test]
fn pubsub_loses_what_was_published_while_away_streams_does_not() {
    let results = run("ch08_at_most_once", &[]);
    let pubsub = find(&results, "pubsub-away-200ms", REDIS_CURRENT).unwrap();
    let unheard = extra(pubsub, "unheard");
    // 200 ms at 10,000 msg/s is ~2,000 messages; reconnecting adds a little.
    assert!(unheard > 500, "{pubsub}");
    assert!(pubsub.lost >= unheard, "{pubsub}");
    assert!(pubsub.lost < unheard + 1_000, "{pubsub}");
    assert_eq!(pubsub.noticed, pubsub.lost, "the gap is noticed: {pubsub}");
    assert_eq!(extra(pubsub, "recovered"), 0);

    let streams = find(&results, "streams-away-200ms", REDIS_CURRENT).unwrap();
    assert_eq!(streams.sent, pubsub.sent);
    assert_eq!(streams.lost, 0, "{streams}");
}

/// The comparison table: who gets messages sent while no consumer was there, fan-out,
/// history kept on the server, and that every transport moved messages.
#[test]
fn comparison_pubsub_streams_list() {
    let results = run("ch08_compare", &[]);
    let pubsub = find(&results, "compare-pubsub", REDIS_CURRENT).unwrap();
    let streams = find(&results, "compare-streams", REDIS_CURRENT).unwrap();
    let list = find(&results, "compare-list-blmove", REDIS_CURRENT).unwrap();
    let n = pubsub.sent;
    let fanout_n = n.min(10_000);

    // A consumer that was not there gets nothing from Pub/Sub, everything from the others.
    assert_eq!(pubsub.received, 0, "{pubsub}");
    assert_eq!(streams.received, n, "{streams}");
    assert_eq!(list.received, n, "{list}");

    // Fan-out: every subscriber and every consumer group gets a copy; list consumers split.
    assert_eq!(extra(pubsub, "fanout_copies"), 2 * fanout_n, "{pubsub}");
    assert_eq!(extra(streams, "fanout_copies"), 2 * fanout_n, "{streams}");
    assert_eq!(extra(list, "fanout_copies"), fanout_n, "{list}");

    // Server memory: waiting messages cost memory in Streams and lists, not in Pub/Sub;
    // after consumption the stream keeps its history and the list is empty.
    let kb = |result: &ResultLine, key: &str| result.get_f64(key).unwrap();
    let bytes_per_msg = |kb: f64| kb * 1024.0 / n as f64;
    assert!(bytes_per_msg(kb(streams, "waiting_kb")) > 30.0, "{streams}");
    assert!(bytes_per_msg(kb(list, "waiting_kb")) > 30.0, "{list}");
    assert!(
        kb(pubsub, "waiting_kb") < kb(streams, "waiting_kb") / 4.0,
        "{pubsub}"
    );
    assert!(
        kb(streams, "retained_kb") > kb(streams, "waiting_kb") / 2.0,
        "{streams}"
    );
    assert!(
        kb(list, "retained_kb") < kb(list, "waiting_kb") / 2.0,
        "{list}"
    );

    for result in [pubsub, streams, list] {
        assert!(result.get_f64("msg_per_s").unwrap() > 100.0, "{result}");
    }

    // Both consumers that read by command read in batches (XREADGROUP COUNT 1000; BLMOVE and
    // LMOVEs in one pipeline), not one message per round trip: on average at least 10
    // messages per read, counting the empty reads while the consumer waits.
    for result in [streams, list] {
        assert!(extra(result, "reads") > 0, "{result}");
        assert!(extra(result, "reads") * 10 <= n, "{result}");
    }
}

/// `MAXLEN = 1000` keeps exactly 1000 entries; `MAXLEN ~ 1000` keeps at least 1000 and less
/// than one more internal node (stream-node-max-entries, 100 by default). Trimming ignores
/// consumer groups: pending entries are deleted, and XAUTOCLAIM reports them as deleted.
#[test]
fn maxlen_trimming_exact_approx_and_pending_entries() {
    let results = run("ch08_trimming", &[]);
    let exact = find(&results, "maxlen-exact", REDIS_CURRENT).unwrap();
    let approx = find(&results, "maxlen-approx", REDIS_CURRENT).unwrap();
    assert_eq!(extra(exact, "xlen"), 1_000, "{exact}");
    let approx_len = extra(approx, "xlen");
    assert!((1_000..1_100).contains(&approx_len), "{approx}");
    let behind = find(&results, "trimmed-while-pending", REDIS_CURRENT).unwrap();
    assert_eq!(behind.sent, 500);
    assert_eq!(
        behind.lost, 500,
        "every pending entry was trimmed: {behind}"
    );
    assert_eq!(
        behind.noticed, 500,
        "XAUTOCLAIM reports each as deleted: {behind}"
    );
}
