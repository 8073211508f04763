//! Chapter 2's claims, checked by running `examples/ch02_dropped_buffer.rs` (the library-free
//! model) and `examples/ch02_other_losses.rs` against a real redis-server, then the current
//! release's claims on 1.8.1 and 2.0.0-rc.2 from one shared body (`ch02_claims!`).

#[macro_use]
mod releases;

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
fn old_release_loses_around_subscribe_and_current_release_does_not() {
    // 10 runs per case: the subscribe-reply loss is a race (measured: 7 or 8 runs of 10 lost
    // messages on 0.25.5), so the test asks for at least one run of ten.
    let results = run("ch02_other_losses", &["--runs", "10"]);
    let reply = find(&results, "subscribe-reply", REDIS_0_25).unwrap();
    assert!(reply.get_f64("runs_with_loss").unwrap() >= 1.0, "{reply}");
    let resubscribe = find(&results, "resubscribe", REDIS_0_25).unwrap();
    // Measured: 9 or 10 runs of 10 lost messages. How many varies by two orders of
    // magnitude with the machine's load: 92 of 50,000 in one CI run, 20,044 in another.
    // What holds is that nearly every run loses some.
    let losing_runs = resubscribe.get_f64("runs_with_loss").unwrap();
    assert!(losing_runs >= 3.0, "{resubscribe}");
    assert!(resubscribe.lost as f64 >= losing_runs, "{resubscribe}");
    for scenario in ["subscribe-reply", "resubscribe"] {
        let result = find(&results, scenario, REDIS_CURRENT).unwrap();
        assert!(result.sent > 0, "{result}");
        assert_eq!(result.lost, 0, "{result}");
    }
}

/// The `client=` name of redis 2.0.0-rc.2 (the lab names only the releases it is built with).
const REDIS_2_0: &str = "redis-2.0.0-rc.2";

/// Chapter 2's claims about the current release (nothing lost around `subscribe()`), as one
/// body for any release: expanded where `redis` is that release, `$client` its `client=` name.
macro_rules! ch02_claims {
    ($client:expr) => {
        release_helpers!();
        const CLIENT: &str = $client;

        /// Read until every delivery the publisher was told about arrived, or the stream is
        /// quiet after the publisher finished. Counts only messages on `channel`.
        async fn read_channel<S: Stream<Item = redis::Msg> + Unpin>(
            messages: &mut S,
            channel: &str,
            publishing: &tokio::task::JoinHandle<u64>,
        ) -> (u64, bool) {
            let mut received = 0;
            loop {
                match tokio::time::timeout(Duration::from_millis(300), messages.next()).await {
                    Ok(Some(msg)) if msg.get_channel_name() == channel => received += 1,
                    Ok(Some(_other)) => {}
                    Ok(None) => return (received, true),
                    Err(_quiet) if publishing.is_finished() => return (received, false),
                    Err(_quiet) => {}
                }
            }
        }

        /// Messages arriving with the `subscribe()` reply: a burst already under way when the
        /// subscriber subscribes. Every delivery the server counted must arrive.
        async fn subscribe_reply(url: &str) -> ResultLine {
            let channel = lab::unique_channel("ch02:reply");
            let publishing =
                tokio::spawn(publish(url.into(), channel.clone(), 0..20_000, 1000, None));
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut pubsub = subscriber(url, &channel).await;
            let (received, ended) =
                read_channel(&mut pubsub.on_message(), &channel, &publishing).await;
            let heard = publishing.await.unwrap();
            ResultLine::new("subscribe-reply", CLIENT, heard, received, 0)
                .with("stream_ended", ended)
        }

        /// Messages arriving while re-subscribing: 1000 read, the stream dropped, a second
        /// channel subscribed, the rest read from a new stream.
        async fn resubscribe(url: &str) -> ResultLine {
            let first = lab::unique_channel("ch02:first");
            let second = lab::unique_channel("ch02:second");
            let mut pubsub = subscriber(url, &first).await;
            let pause = Some(Duration::from_millis(1)); // about 10,000 a second
            let publishing = tokio::spawn(publish(url.into(), first.clone(), 0..5_000, 10, pause));
            let mut received = 0u64;
            {
                let mut messages = pubsub.on_message();
                while received < 1000 {
                    match tokio::time::timeout(QUIET, messages.next()).await {
                        Ok(Some(_msg)) => received += 1,
                        _ => break,
                    }
                }
            }
            pubsub
                .subscribe(&second)
                .await
                .expect("subscribe mid-stream");
            let (rest, ended) = read_channel(&mut pubsub.on_message(), &first, &publishing).await;
            let heard = publishing.await.unwrap();
            ResultLine::new("resubscribe", CLIENT, heard, received + rest, 0)
                .with("stream_ended", ended)
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn nothing_is_lost_with_the_subscribe_reply_or_while_resubscribing() {
            let server = lab::RedisServer::start().unwrap();
            for _ in 0..3 {
                for result in [
                    subscribe_reply(server.url()).await,
                    resubscribe(server.url()).await,
                ] {
                    result.print();
                    assert!(result.sent > 0, "{result}");
                    assert_eq!(result.lost, 0, "{result}");
                    assert_eq!(result.get("stream_ended"), Some("false"), "{result}");
                }
            }
        }
    };
}

/// The shared body on the release the lab is built with (the example above checks it too).
mod redis_1_8_1 {
    ch02_claims!(lab::REDIS_CURRENT);
}

/// The shared body on the next major release.
mod redis_2_0_0_rc_2 {
    use redis_2_0 as redis;
    ch02_claims!(super::REDIS_2_0);
}
