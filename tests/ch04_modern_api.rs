//! Chapter 4's claims, checked by running its examples against real redis-servers (each
//! example starts its own) and reading their RESULT lines.

use lab::ResultLine;
use lab::report::find;

/// Run an example; `full` runs the full-size experiment even if LAB_QUICK is set around us.
fn results(example: &str, full: bool) -> Vec<ResultLine> {
    let quick = if full { "0" } else { "1" };
    let run = lab::example::run_with_env(example, &[], &[("LAB_QUICK", quick)]).unwrap();
    run.results().unwrap()
}

#[test]
fn into_on_message_in_a_spawned_task_loses_nothing_of_100000() {
    let results = results("ch04_into_on_message", true);
    let owned = find(&results, "into-on-message", lab::REDIS_CURRENT).unwrap();
    assert_eq!(
        (owned.sent, owned.lost, owned.noticed),
        (100_000, 0, 0),
        "{owned}"
    );
    assert_eq!(owned.get("out_of_order"), Some("0"), "{owned}");
}

#[test]
fn split_with_10_resubscriptions_during_a_100000_burst_loses_nothing() {
    let results = results("ch04_split", true);
    let split = find(&results, "split-resubscribe", lab::REDIS_CURRENT).unwrap();
    assert_eq!(
        (split.sent, split.lost, split.noticed),
        (100_000, 0, 0),
        "{split}"
    );
    assert_eq!(split.get("resubscriptions"), Some("10"), "{split}");
    // Every marker published right after its subscribe returned arrived.
    assert_eq!(split.get("markers"), Some("10"), "{split}");
    // At least some rounds overlapped the burst (usually all of them do).
    assert!(split.get_f64("during_burst").unwrap() >= 1.0, "{split}");
    // Once the stream is dropped, the sink's requests fail (with an error, not a hang).
    assert_eq!(
        split.get("sink_after_stream_drop"),
        Some("error"),
        "{split}"
    );
}

#[test]
fn psubscribe_hears_every_matching_channel_and_name_plus_pattern_delivers_twice() {
    let results = results("ch04_patterns", false);
    for room in ["kitchen", "hall", "attic"] {
        let by_pattern = find(&results, &format!("psubscribe-{room}"), lab::REDIS_CURRENT).unwrap();
        assert_eq!(by_pattern.lost, 0, "{by_pattern}");
    }
    let both = find(&results, "subscribe-and-psubscribe", lab::REDIS_CURRENT).unwrap();
    assert_eq!(both.lost, 0, "{both}");
    assert_eq!(
        both.get_f64("kitchen_deliveries").unwrap(),
        2.0 * both.sent as f64,
        "{both}"
    );
}

#[test]
fn resp3_push_sender_loses_nothing_and_carries_confirmations_and_the_disconnection() {
    let results = results("ch04_resp3", true);
    let resp3 = find(&results, "resp3-push-sender", lab::REDIS_CURRENT).unwrap();
    assert_eq!((resp3.sent, resp3.lost), (100_000, 0), "{resp3}");
    assert_eq!(resp3.get("subscribe_pushes"), Some("1"), "{resp3}");
    assert_eq!(resp3.get("unsubscribe_pushes"), Some("1"), "{resp3}");
    assert_eq!(resp3.get("disconnection_pushes"), Some("1"), "{resp3}");
    // Without a push sender the server delivers, and the application gets nothing.
    let deaf = find(&results, "resp3-no-push-sender", lab::REDIS_CURRENT).unwrap();
    assert_eq!(deaf.received, 0, "{deaf}");
    assert_eq!(
        deaf.get_f64("queued_for").unwrap(),
        deaf.sent as f64,
        "{deaf}"
    );
}

#[test]
fn an_early_publisher_loses_a_prefix_and_subscribe_confirm_signal_loses_nothing() {
    let results = results("ch04_race", false);
    let early = find(&results, "early-publisher", lab::REDIS_CURRENT).unwrap();
    assert!(early.lost > 0, "the race did not happen: {early}");
    // What is missing is exactly what the server said nobody heard, and it is the start.
    assert_eq!(
        early.get_f64("unheard").unwrap(),
        early.lost as f64,
        "{early}"
    );
    assert_eq!(early.get("missing_is_prefix"), Some("true"), "{early}");
    let ordered = find(&results, "subscribe-then-signal", lab::REDIS_CURRENT).unwrap();
    assert_eq!((ordered.lost, ordered.sent), (0, 500), "{ordered}");
    assert_eq!(ordered.get("unheard"), Some("0"), "{ordered}");
}

#[test]
fn since_1_8_subscribe_waits_for_every_confirmation_and_before_a_ping_got_one() {
    let results = results("ch04_confirmations", false);
    let old = find(&results, "subscribe-many-then-ping", lab::REDIS_0_29).unwrap();
    // 0.29.5 returned at the first confirmation; the PING behind it got the second.
    assert!(old.get_f64("ping_misattributed").unwrap() >= 1.0, "{old}");
    let current = find(&results, "subscribe-many-then-ping", lab::REDIS_CURRENT).unwrap();
    assert_eq!(current.get("ping_misattributed"), Some("0"), "{current}");
    assert_eq!(current.lost, 0, "{current}");
}
