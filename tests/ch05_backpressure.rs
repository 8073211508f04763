//! Chapter 5's claims, checked by running `examples/ch05_backpressure.rs` (each scenario in
//! its own process, against its own redis-server with `client-output-buffer-limit pubsub 1mb
//! 256kb 1`) and reading its RESULT lines: the numbers the chapter shows and the numbers
//! checked here come from the same program.
//!
//! Bounds come from repeated runs on a noisy 2-core machine, with a wide margin.

use anyhow::Result;
use lab::ResultLine;
use lab::report::find;

/// Run some scenarios of the example for `seconds` and return their RESULT lines.
fn run(scenarios: &str, seconds: &str) -> Result<Vec<ResultLine>> {
    lab::example::run(
        "ch05_backpressure",
        &["--scenario", scenarios, "--seconds", seconds],
    )?
    .results()
}

fn number(result: &ResultLine, key: &str) -> f64 {
    result
        .get_f64(key)
        .unwrap_or_else(|error| panic!("{error:#}"))
}

/// Old release, long-lived stream, slow handler: Redis disconnects the subscriber, the
/// stream just ends (`None`), what arrived is a gap-free prefix, and the server had counted
/// more messages as delivered than arrived.
#[test]
fn old_release_slow_handler_is_disconnected_and_the_stream_just_ends() -> Result<()> {
    let results = run("old-slow-stream", "2")?;
    let r = find(&results, "old-slow-stream", lab::REDIS_0_25)?;
    assert_eq!(number(r, "disconnects"), 1.0, "{r}");
    // Redis's log line says which limit closed it: the buffer was past the 1 MB hard limit
    // (at 10 MB/s published, the soft limit's second never comes).
    assert_eq!(r.get("limit_fired"), Some("hard"), "{r}");
    assert_eq!(r.get("gap_free_prefix"), Some("true"), "{r}");
    assert!(r.lost > r.sent / 4, "most of the run is lost: {r}");
    // PUBLISH replies counted messages as queued for our subscriber that never arrived.
    assert!(number(r, "queued_for") > r.received as f64, "{r}");
    // And after the disconnect, PUBLISH replied 0: nobody was listening.
    assert!(number(r, "unheard") > 0.0, "{r}");
    // The subscriber noticed none of it: no gap, the loss is all after the last message.
    assert_eq!(r.noticed, 0, "{r}");
    Ok(())
}

/// Current release, slow async handler: nothing lost, no disconnect, memory grows instead.
#[test]
fn current_release_slow_async_handler_grows_memory_instead() -> Result<()> {
    let results = run("unbounded-slow", "2")?;
    let r = find(&results, "unbounded-slow", lab::REDIS_CURRENT)?;
    assert_eq!(number(r, "disconnects"), 0.0, "{r}");
    assert_eq!(r.lost, 0, "{r}");
    // Redis held no backlog: the client read everything at once.
    assert!(number(r, "max_omem_kb") < 512.0, "{r}");
    // About 18,000 messages of 1 KB waiting in the client at the end of 2 s.
    assert!(number(r, "backlog_at_end") > 5_000.0, "{r}");
    assert!(number(r, "rss_growth_mb") > 10.0, "{r}");
    Ok(())
}

/// Current release, blocking handler on a current-thread runtime: the reader task starves,
/// Redis disconnects the subscriber, and the stream ends.
#[test]
fn current_release_blocking_handler_is_disconnected() -> Result<()> {
    let results = run("blocking-handler", "2")?;
    let r = find(&results, "blocking-handler", lab::REDIS_CURRENT)?;
    assert_eq!(number(r, "disconnects"), 1.0, "{r}");
    assert_eq!(r.get("limit_fired"), Some("hard"), "{r}");
    assert_eq!(r.get("gap_free_prefix"), Some("true"), "{r}");
    assert!(r.lost > r.sent / 4, "{r}");
    assert_eq!(r.noticed, 0, "{r}");
    Ok(())
}

/// The bounded designs under a paced publisher, each overflow policy, with the RESP3 push
/// sender (design 4) and with the reader behind the stream (the counter-example, which
/// looks bounded here): no disconnect by Redis, peak memory bounded, and every lost message
/// noticed.
#[test]
fn bounded_queue_bounds_memory_and_notices_every_loss() -> Result<()> {
    let scenarios = [
        "resp3-drop-newest",
        "resp3-drop-oldest",
        "resp3-disconnect",
        "queue-drop-newest",
        "queue-drop-oldest",
        "queue-disconnect",
    ];
    let results = run(&scenarios.join(","), "2")?;
    for scenario in scenarios {
        let r = find(&results, scenario, lab::REDIS_CURRENT)?;
        assert!(
            r.lost > 0,
            "the handler is 10x too slow: something must go: {r}"
        );
        assert_eq!(r.lost, r.noticed, "no silent loss: {r}");
        // The bound the chapter states: capacity x payload (1000 x 1 KiB, about 1 MB) plus
        // 20 MB for what the client holds in flight. Measured: about 2 MB.
        assert!(number(r, "rss_growth_mb") < 1.0 + 20.0, "{r}");
        // Redis never held a backlog for us: the reader drains the connection promptly.
        assert!(number(r, "max_omem_kb") < 512.0, "{r}");
        assert!(number(r, "max_queue") <= 1000.0, "{r}");
        if scenario.ends_with("-disconnect") {
            // Each overflow is one reconnect-and-resync round.
            assert!(number(r, "resyncs") >= 1.0, "{r}");
        } else {
            // Drop policies: the connection is never lost, and the queue's counter is the loss.
            assert_eq!(number(r, "disconnects"), 0.0, "{r}");
            assert_eq!(number(r, "resyncs"), 0.0, "{r}");
            assert_eq!(number(r, "dropped"), r.lost as f64, "{r}");
        }
    }
    Ok(())
}

/// Drop-oldest keeps the newest messages: the last `capacity` (1000) published all arrive.
/// Drop-newest keeps the oldest: the first 1000 published all arrive, and most of the last
/// 1000 were dropped.
#[test]
fn drop_oldest_keeps_the_newest_and_drop_newest_the_oldest() -> Result<()> {
    let results = run("queue-drop-oldest,queue-drop-newest", "1")?;
    let oldest = find(&results, "queue-drop-oldest", lab::REDIS_CURRENT)?;
    let newest = find(&results, "queue-drop-newest", lab::REDIS_CURRENT)?;
    assert!(oldest.lost > 0 && newest.lost > 0, "{oldest}\n{newest}");
    assert_eq!(number(oldest, "newest_kept"), 1000.0, "{oldest}");
    assert!(number(oldest, "oldest_kept") < 500.0, "{oldest}");
    assert_eq!(number(newest, "oldest_kept"), 1000.0, "{newest}");
    assert!(number(newest, "newest_kept") < 500.0, "{newest}");
    Ok(())
}

/// Current release, slow async handler, and it keeps going: under a memory limit (as in a
/// container), the subscriber process dies, and every message it had received but not
/// handled dies with it. Nothing in the process noticed anything.
#[test]
fn unbounded_growth_under_a_memory_limit_kills_the_subscriber() -> Result<()> {
    let output = lab::example::run(
        "ch05_backpressure",
        &[
            "--scenario",
            "unbounded-capped",
            "--seconds",
            "10",
            "--memory-cap-mb",
            "32",
        ],
    )?;
    let results = output.results()?;
    let r = find(&results, "unbounded-capped", lab::REDIS_CURRENT)?;
    assert!(
        r.get("crashed")
            .is_some_and(|how| how.starts_with("signal")),
        "{r}"
    );
    assert!(r.lost > r.received, "{r}");
    assert_eq!(r.noticed, 0, "{r}");
    Ok(())
}

/// A connection killed from outside (an operator, a failover, a network fault) in the middle
/// of the run: the RESP3 design hears the library's `Disconnection` push, the reader design
/// sees its stream end; both resubscribe at once, every lost message is noticed, and the loss
/// is exactly the policy's drops plus what never reached the reader.
#[test]
fn a_killed_connection_is_noticed_by_the_bounded_designs() -> Result<()> {
    let output = lab::example::run(
        "ch05_backpressure",
        &[
            "--scenario",
            "resp3-drop-oldest,queue-drop-oldest",
            "--seconds",
            "2",
            "--kill-subscriber-at",
            "1",
        ],
    )?;
    let results = output.results()?;
    let resp3 = find(&results, "resp3-drop-oldest", lab::REDIS_CURRENT)?;
    let queue = find(&results, "queue-drop-oldest", lab::REDIS_CURRENT)?;
    for r in [resp3, queue] {
        assert!(number(r, "resyncs") >= 1.0, "{r}");
        assert_eq!(r.lost, r.noticed, "no silent loss: {r}");
        // Exact accounting of where the loss went: what the policy dropped, plus what never
        // reached the reader (in flight on the killed connection, or published while nobody
        // was subscribed: PUBLISH replied 0 to those).
        let never_read = r.sent - number(r, "read") as u64;
        assert_eq!(r.lost, number(r, "dropped") as u64 + never_read, "{r}");
        assert!(number(r, "unheard") as u64 <= never_read, "{r}");
    }
    Ok(())
}

/// Design 4 (the RESP3 push sender) under a burst of 1,000,000 messages of 128 B, pipelined
/// as fast as Redis takes them, with Redis's default output buffer limit, on both runtimes:
/// memory grows by at most the queue (1,000 x the measured bytes of a queued message) plus
/// 30 MB, every message read is handled or dropped by the policy, and every loss is noticed.
/// The counter-example (the same queue behind the stream of `get_async_pubsub()`) runs beside
/// it for the chapter's numbers, but is not compared here: under this burst its growth
/// depends on which task runs when (2.7 to 28 MB in our runs, and in two clean CI runs 3.4
/// and 3.6 MB, below the 3x this test once asked for). Chapter 7's backlog test
/// (`bounded_designs_stay_within_their_memory_bound_under_a_backlog`) compares the two where
/// the difference does not depend on scheduling: a socket full before the reader starts.
#[test]
fn the_push_sender_design_stays_bounded_under_a_burst_on_both_runtimes() -> Result<()> {
    let bound_mb = 1000.0 * lab::mem::queued_msg_bytes(128)? / 1_048_576.0 + 30.0;
    for runtime in ["current-thread", "multi-thread"] {
        let output = lab::example::run(
            "ch05_backpressure",
            &[
                "--scenario",
                "resp3-drop-newest,resp3-drop-oldest,resp3-disconnect,queue-drop-oldest",
                "--burst",
                "--payload",
                "128",
                "--seconds",
                "100",
                "--buffer-limit",
                "32mb 8mb 60",
                "--runtime",
                runtime,
            ],
        )?;
        let results = output.results()?;
        for scenario in ["resp3-drop-newest", "resp3-drop-oldest", "resp3-disconnect"] {
            let r = find(&results, scenario, lab::REDIS_CURRENT)?;
            assert_eq!(r.sent, 1_000_000, "{r}");
            assert!(
                r.lost > 0,
                "a handler this slow must lose most of a burst: {r}"
            );
            assert_eq!(r.lost, r.noticed, "no silent loss: {r}");
            assert!(
                number(r, "rss_growth_mb") <= bound_mb,
                "{runtime}, bound {bound_mb}: {r}"
            );
            assert!(number(r, "max_queue") <= 1000.0, "{r}");
            // Exact accounting: whatever the reader took, the handler handled or the policy
            // dropped (and counted).
            assert_eq!(
                number(r, "read"),
                r.received as f64 + number(r, "dropped"),
                "{runtime}: {r}"
            );
        }
        // The counter-example loses nothing silently either; its memory is chapter 7's test.
        let counter = find(&results, "queue-drop-oldest", lab::REDIS_CURRENT)?;
        assert_eq!(counter.lost, counter.noticed, "{counter}");
    }
    Ok(())
}

/// The default output buffer limit for Pub/Sub clients that chapter 5's numbers assume,
/// `client-output-buffer-limit pubsub 32mb 8mb 60`, is the same on Redis 7.0.15 and Valkey
/// 8.0.1: read from a lab server of whichever kind `LAB_SERVER` starts, never assumed.
#[test]
fn the_pubsub_output_buffer_limit_defaults_to_32mb_8mb_60_on_redis_and_valkey() -> Result<()> {
    let server = lab::RedisServer::start()?;
    let version = server.server_version()?;
    let mut con = server.client()?.get_connection()?;
    let (_, limits): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("client-output-buffer-limit")
        .query(&mut con)?;
    let pubsub = limits.split("pubsub ").nth(1).map(|rest| {
        let words: Vec<&str> = rest.split_whitespace().take(3).collect();
        words.join(" ")
    });
    let expected = match version.kind {
        lab::ServerKind::Redis | lab::ServerKind::Valkey => "33554432 8388608 60",
    };
    assert_eq!(pubsub.as_deref(), Some(expected), "{version}: {limits}");
    Ok(())
}
