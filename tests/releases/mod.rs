//! What the claims tests of chapters 1 to 4 need to run their scenarios on a release the lab
//! is not built against (the lab compiles against redis 1.8.1's types).
//!
//! `release_helpers!()` expands, inside a module that says which crate `redis` is
//! (`use redis_2_0 as redis;`), into helpers written against that crate only: a client, a
//! pipelined publisher of numbered payloads, and readers for the two patterns of chapter 1.
//! From the lab they use only what touches no redis type: servers, numbered payloads, tallies
//! and RESULT lines. Each test file then expands its chapter's claims into the same module, so
//! one body runs on 1.8.1 and on 2.0.0-rc.2 (`ci/canary.sh` moves both to the newest 1.x
//! and 2.x).

/// The helpers, for the `redis` crate in scope where it is expanded.
macro_rules! release_helpers {
    () => {
        #[allow(unused_imports)]
        use futures::{Stream, StreamExt};
        #[allow(unused_imports)]
        use lab::{ResultLine, Tally};
        #[allow(unused_imports)]
        use std::time::Duration;

        /// Stop reading when nothing has arrived for this long.
        #[allow(dead_code)]
        const QUIET: Duration = Duration::from_millis(1500);

        #[allow(dead_code)]
        fn client(url: &str) -> redis::Client {
            redis::Client::open(url).expect("a client for the lab's server")
        }

        /// PUBLISH the numbered messages `seqs` on `channel`, `batch` per pipeline, sleeping
        /// `pause` between pipelines (none: one burst). Returns the deliveries the server
        /// counted (PUBLISH's replies, summed).
        #[allow(dead_code)]
        async fn publish(
            url: String,
            channel: String,
            seqs: std::ops::Range<u64>,
            batch: u64,
            pause: Option<Duration>,
        ) -> u64 {
            let mut con = client(&url)
                .get_multiplexed_async_connection()
                .await
                .expect("a publisher connection");
            let (mut heard, mut seq) = (0, seqs.start);
            while seq < seqs.end {
                let end = (seq + batch).min(seqs.end);
                let mut pipe = redis::pipe();
                for s in seq..end {
                    pipe.cmd("PUBLISH").arg(&channel).arg(lab::numbered(s, 32));
                }
                let counts: Vec<u64> = pipe.query_async(&mut con).await.expect("PUBLISH");
                heard += counts.iter().sum::<u64>();
                seq = end;
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
            }
            heard
        }

        /// A subscriber made with `get_async_pubsub()`, subscribed (confirmed) to `channel`.
        #[allow(dead_code)]
        async fn subscriber(url: &str, channel: &str) -> redis::aio::PubSub {
            let mut pubsub = client(url)
                .get_async_pubsub()
                .await
                .expect("get_async_pubsub");
            pubsub.subscribe(channel).await.expect("subscribe");
            pubsub
        }

        /// Read `messages` into `tally` until all arrived, the stream ends (true) or goes quiet.
        #[allow(dead_code)]
        async fn read_stream<S: Stream<Item = redis::Msg> + Unpin>(
            messages: &mut S,
            tally: &mut Tally,
            handler: Duration,
        ) -> bool {
            while tally.received() < tally.sent() {
                match tokio::time::timeout(QUIET, messages.next()).await {
                    Ok(Some(msg)) => {
                        tally.record(lab::seq_of(msg.get_payload_bytes()).expect("numbered"));
                        if !handler.is_zero() {
                            tokio::time::sleep(handler).await;
                        }
                    }
                    Ok(None) => return true,
                    Err(_quiet) => return false,
                }
            }
            false
        }

        /// Chapter 1's loop pattern: a new `on_message()` stream for every message.
        #[allow(dead_code)]
        async fn read_loop_pattern(
            pubsub: &mut redis::aio::PubSub,
            tally: &mut Tally,
            handler: Duration,
        ) -> bool {
            while tally.received() < tally.sent() {
                match tokio::time::timeout(QUIET, pubsub.on_message().next()).await {
                    Ok(Some(msg)) => {
                        tally.record(lab::seq_of(msg.get_payload_bytes()).expect("numbered"));
                        if !handler.is_zero() {
                            tokio::time::sleep(handler).await;
                        }
                    }
                    Ok(None) => return true,
                    Err(_quiet) => return false,
                }
            }
            false
        }
    };
}
