//! Chapter 1's claims, checked by running `examples/ch01_lost_messages.rs` and
//! `examples/ch01_version_matrix.rs` against a real redis-server and reading their RESULT lines,
//! then the same claims, on 1.8.1 and on 2.0.0-rc.2, from one shared body (`ch01_claims!`).

#[macro_use]
mod releases;

use lab::report::find;
use lab::{REDIS_0_25, REDIS_0_29, REDIS_CURRENT, ResultLine};

/// Runs the chapter's example with these arguments (its own server, quick sizes).
fn run(args: &[&str]) -> Vec<ResultLine> {
    let run = lab::example::run_with_env("ch01_lost_messages", args, &[("LAB_QUICK", "1")])
        .expect("could not build or start the example");
    run.results().expect("the example failed")
}

#[test]
fn old_release_loop_pattern_loses_most_of_a_burst_and_the_stream_ends() {
    let results = run(&[
        "--client",
        REDIS_0_25,
        "--only",
        "loop-burst-0ms",
        "--only",
        "loop-burst-1ms",
        "--messages",
        "1000",
    ]);
    for scenario in ["loop-burst-0ms", "loop-burst-1ms"] {
        let result = find(&results, scenario, REDIS_0_25).unwrap();
        assert_eq!(result.sent, 1000);
        // Measured: 1 of 1000 in every run. "Most" with a wide margin:
        assert!(result.lost >= 900, "{result}");
        assert_eq!(result.get("stream_ended"), Some("true"), "{result}");
        // Nobody noticed: the loop saw the stream end, not the loss.
        assert_eq!(result.silent_loss(), result.lost, "{result}");
    }
}

#[test]
fn old_release_long_lived_stream_loses_nothing_of_100k() {
    let results = run(&[
        "--client",
        REDIS_0_25,
        "--only",
        "long-lived-burst-0ms",
        "--messages",
        "100000",
    ]);
    let result = find(&results, "long-lived-burst-0ms", REDIS_0_25).unwrap();
    assert_eq!((result.sent, result.lost), (100_000, 0), "{result}");
}

#[test]
fn current_release_loop_pattern_loses_nothing_of_100k() {
    let results = run(&[
        "--client",
        REDIS_CURRENT,
        "--only",
        "loop-burst-0ms",
        "--messages",
        "100000",
    ]);
    let result = find(&results, "loop-burst-0ms", REDIS_CURRENT).unwrap();
    assert_eq!((result.sent, result.lost), (100_000, 0), "{result}");
}

#[test]
fn current_release_long_lived_stream_loses_nothing_of_100k() {
    let results = run(&[
        "--client",
        REDIS_CURRENT,
        "--only",
        "long-lived-burst-0ms",
        "--messages",
        "100000",
    ]);
    let result = find(&results, "long-lived-burst-0ms", REDIS_CURRENT).unwrap();
    assert_eq!((result.sent, result.lost), (100_000, 0), "{result}");
}

#[test]
fn current_release_loses_nothing_with_a_slow_handler_or_a_paced_publisher() {
    let results = run(&["--client", REDIS_CURRENT]);
    assert_eq!(results.len(), 8);
    for result in &results {
        assert_eq!(result.lost, 0, "{result}");
    }
}

#[test]
fn old_release_loop_pattern_loses_silently_with_a_paced_publisher() {
    let results = run(&[
        "--client",
        REDIS_0_25,
        "--only",
        "loop-paced-1ms",
        "--only",
        "long-lived-paced-1ms",
    ]);
    let looped = find(&results, "loop-paced-1ms", REDIS_0_25).unwrap();
    let long_lived = find(&results, "long-lived-paced-1ms", REDIS_0_25).unwrap();
    assert!(looped.lost > 0, "{looped}");
    assert_eq!(long_lived.lost, 0, "{long_lived}");
}

/// The `client=` names of the releases the lab has no constant for (as the matrix prints them).
const REDIS_0_26: &str = "redis-0.26.1";
const REDIS_0_27: &str = "redis-0.27.2";
const REDIS_2_0: &str = "redis-2.0.0-rc.2";

#[test]
fn version_matrix_only_the_old_paths_lose() {
    let run =
        lab::example::run_with_env("ch01_version_matrix", &[], &[("LAB_QUICK", "1")]).unwrap();
    let results = run.results().unwrap();
    // Every aio::Connection path, and get_async_pubsub() before 0.27 (0.26.1 is the last).
    let old_paths = [
        REDIS_0_25.to_string(),
        format!("{REDIS_0_25}-get_async_pubsub"),
        REDIS_0_26.to_string(),
        format!("{REDIS_0_27}-into_pubsub"),
        format!("{REDIS_0_29}-into_pubsub"),
    ];
    for client in &old_paths {
        let looped = find(&results, "loop-burst-0ms", client).unwrap();
        assert!(looped.lost >= looped.sent * 9 / 10, "{looped}");
        let long_lived = find(&results, "long-lived-burst-0ms", client).unwrap();
        assert_eq!(long_lived.lost, 0, "{long_lived}");
    }
    // get_async_pubsub() from 0.27.2 (the first 0.27 that resolves) on, 2.0.0-rc.2 included.
    for client in [REDIS_0_27, REDIS_0_29, REDIS_CURRENT, REDIS_2_0] {
        for scenario in ["loop-burst-0ms", "long-lived-burst-0ms"] {
            let result = find(&results, scenario, client).unwrap();
            assert_eq!(result.lost, 0, "{result}");
        }
    }
}

/// Chapter 1's claims about the current release, as one body for any release of the crate:
/// expanded where `redis` is that release, with `$client` its `client=` name.
macro_rules! ch01_claims {
    ($client:expr) => {
        release_helpers!();
        const CLIENT: &str = $client;

        /// Subscribe (confirmed), then publish `sent` messages (a pipelined burst, or about
        /// one per millisecond, 4 at a time) and read them with the loop pattern or one
        /// long-lived stream, with a handler of `handler_ms`.
        async fn scenario(looped: bool, paced: bool, handler_ms: u64, sent: u64) -> ResultLine {
            let server = lab::RedisServer::start().unwrap();
            let channel = lab::unique_channel("ch01:release");
            let mut pubsub = subscriber(server.url(), &channel).await;
            let (batch, pause) = match paced {
                true => (4, Some(Duration::from_millis(4))),
                false => (1000, None),
            };
            let url = server.url().to_string();
            let publishing = tokio::spawn(publish(url, channel, 0..sent, batch, pause));
            let mut tally = Tally::new(sent);
            let handler = Duration::from_millis(handler_ms);
            let ended = if looped {
                read_loop_pattern(&mut pubsub, &mut tally, handler).await
            } else {
                read_stream(&mut pubsub.on_message(), &mut tally, handler).await
            };
            publishing.await.unwrap();
            let pattern = if looped { "loop" } else { "long-lived" };
            let publisher = if paced { "paced" } else { "burst" };
            let scenario = format!("{pattern}-{publisher}-{handler_ms}ms");
            let result =
                ResultLine::from_tally(&scenario, CLIENT, &tally, 0).with("stream_ended", ended);
            result.print();
            result
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_loop_pattern_loses_nothing_of_a_100k_burst() {
            let result = scenario(true, false, 0, 100_000).await;
            assert_eq!((result.sent, result.lost), (100_000, 0), "{result}");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_long_lived_stream_loses_nothing_of_a_100k_burst() {
            let result = scenario(false, false, 0, 100_000).await;
            assert_eq!((result.sent, result.lost), (100_000, 0), "{result}");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn neither_pattern_loses_with_a_1ms_handler_or_a_paced_publisher() {
            for looped in [true, false] {
                for (paced, handler_ms) in [(false, 1), (true, 0), (true, 1)] {
                    let result = scenario(looped, paced, handler_ms, 500).await;
                    assert_eq!((result.sent, result.lost), (500, 0), "{result}");
                    assert_eq!(result.get("stream_ended"), Some("false"), "{result}");
                }
            }
        }
    };
}

/// The shared body on the release the lab is built with (the examples above check it too).
mod redis_1_8_1 {
    ch01_claims!(lab::REDIS_CURRENT);
}

/// The shared body on the next major release.
mod redis_2_0_0_rc_2 {
    use redis_2_0 as redis;
    ch01_claims!(super::REDIS_2_0);
}
