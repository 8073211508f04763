//! Chapter 2's claims, checked by running `examples/ch02_dropped_buffer.rs` (the library-free
//! model) and `examples/ch02_other_losses.rs` against a real redis-server.

use lab::report::find;
use lab::{REDIS_0_25, REDIS_CURRENT, ResultLine};

fn run(name: &str, args: &[&str]) -> Vec<ResultLine> {
    let run = lab::example::run_with_env(name, args, &[("LAB_QUICK", "1")])
        .expect("could not build or start the example");
    run.results().expect("the example failed")
}

#[test]
fn model_fresh_reader_per_message_loses_and_long_lived_reader_does_not() {
    let results = run("ch02_dropped_buffer", &["--messages", "100000"]);
    let long_lived = find(&results, "long-lived-burst", "resp-model").unwrap();
    assert_eq!(
        (long_lived.sent, long_lived.lost),
        (100_000, 0),
        "{long_lived}"
    );
    let fresh = find(&results, "fresh-reader-burst", "resp-model").unwrap();
    // Measured: 1 received, then the next reader starts mid-frame. Margin: most lost.
    assert!(fresh.lost >= fresh.sent * 9 / 10, "{fresh}");
    assert_eq!(fresh.get("ended_by"), Some("error"), "{fresh}");
    assert!(fresh.get_f64("dropped_bytes").unwrap() > 0.0, "{fresh}");
    let paced = find(&results, "long-lived-paced", "resp-model").unwrap();
    assert_eq!(paced.lost, 0, "{paced}");
}

#[test]
fn current_release_loses_nothing_around_subscribe_or_resubscribe() {
    let results = run("ch02_other_losses", &[]);
    for scenario in ["subscribe-reply", "resubscribe"] {
        let result = find(&results, scenario, REDIS_CURRENT).unwrap();
        assert!(result.sent > 0, "{result}");
        assert_eq!(result.lost, 0, "{result}");
    }
    // The old release is run by the same program; what it loses is measured in the chapter.
    find(&results, "resubscribe", REDIS_0_25).unwrap();
}
