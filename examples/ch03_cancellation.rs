//! Chapter 3: cancellation safety, measured.
//!
//! A subscriber that also has periodic work to do (a heartbeat, a metrics flush) often waits
//! with `tokio::time::timeout` or `tokio::select!` around `pubsub.on_message().next()`. When
//! the timer wins, the future that was waiting for a message is dropped: it is *cancelled*.
//! This program runs the same three loops on the old release (redis 0.25.5) and the current
//! one (redis 1.8.1), on a burst of numbered messages, and counts what arrived.
//!
//! cargo run --example ch03_cancellation            # 100,000 messages per scenario
//! cargo run --example ch03_cancellation -- --quick # 5,000

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use lab::{Pace, Publisher, RedisServer, ResultLine, Tally};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// How often the periodic work runs: the timeout of each wait, the period of the ticker.
const TICK: Duration = Duration::from_millis(1);
/// The publisher's pace: 100,000 messages a second, in small batches every millisecond,
/// so that the subscriber often waits between batches and the timer often wins mid-stream.
const PACE: Pace = Pace::Rate(100_000.0);
/// The loops stop when the publisher has finished and nothing arrived for this long.
const QUIET: Duration = Duration::from_millis(500);

// ANCHOR: on_message_trait
/// The one method the loops below need, on both releases: `on_message(&mut self)`. The old
/// and the current `PubSub` are different types, so the loops are written once, generic over
/// this trait, and run unchanged on both. (Both streams happen to be `Unpin`; saying so here
/// lets the loops call `.next()` on them without pinning them first.)
trait OnMessage {
    type Msg;
    fn on_message(&mut self) -> impl Stream<Item = Self::Msg> + Unpin + '_;
    fn payload(msg: &Self::Msg) -> &[u8];
}

impl OnMessage for redis::aio::PubSub {
    type Msg = redis::Msg;
    fn on_message(&mut self) -> impl Stream<Item = redis::Msg> + Unpin + '_ {
        redis::aio::PubSub::on_message(self)
    }
    fn payload(msg: &redis::Msg) -> &[u8] {
        msg.get_payload_bytes()
    }
}

impl OnMessage for redis_0_25::aio::PubSub {
    type Msg = redis_0_25::Msg;
    fn on_message(&mut self) -> impl Stream<Item = redis_0_25::Msg> + Unpin + '_ {
        redis_0_25::aio::PubSub::on_message(self)
    }
    fn payload(msg: &redis_0_25::Msg) -> &[u8] {
        msg.get_payload_bytes()
    }
}
// ANCHOR_END: on_message_trait

/// What one subscriber loop saw.
struct Outcome {
    tally: Tally,
    /// How many times the timer won the race and the wait for a message was cancelled.
    cancelled: u64,
    /// How many of those happened before the last message arrived (not in the final quiet).
    cancelled_before_last: u64,
    /// The stream returned `None`: the loop took it for a closed connection and stopped.
    stream_ended: bool,
    /// Messages whose payload was not one of ours.
    garbled: u64,
}

impl Outcome {
    fn new(sent: u64) -> Self {
        Self {
            tally: Tally::new(sent),
            cancelled: 0,
            cancelled_before_last: 0,
            stream_ended: false,
            garbled: 0,
        }
    }

    fn record(&mut self, payload: &[u8]) {
        self.cancelled_before_last = self.cancelled;
        match lab::seq_of(payload) {
            Ok(seq) => self.tally.record(seq),
            Err(_) => self.garbled += 1,
        }
    }
}

/// True when the publisher is done and the subscriber has heard nothing for a while.
fn finished(publishing: &JoinHandle<anyhow::Result<lab::PublishReport>>, last: Instant) -> bool {
    publishing.is_finished() && last.elapsed() > QUIET
}

// ANCHOR: timeout_recreated
/// `timeout` around `on_message().next()`, with a new stream each time round the loop.
async fn timeout_recreated<P: OnMessage>(
    pubsub: &mut P,
    publishing: &JoinHandle<anyhow::Result<lab::PublishReport>>,
    sent: u64,
) -> Outcome {
    let mut out = Outcome::new(sent);
    let mut last = Instant::now();
    loop {
        match tokio::time::timeout(TICK, pubsub.on_message().next()).await {
            Ok(Some(msg)) => {
                out.record(P::payload(&msg));
                last = Instant::now();
            }
            // The stream says there is nothing more: the loop takes it for a closed connection.
            Ok(None) => {
                out.stream_ended = true;
                break;
            }
            // The timer won: the `next()` future (and here, the stream) is dropped.
            Err(_elapsed) => {
                out.cancelled += 1;
                if finished(publishing, last) {
                    break;
                }
            }
        }
    }
    out
}
// ANCHOR_END: timeout_recreated

// ANCHOR: select_recreated
/// `select!` between the next message and a ticker, with a new stream each time round.
async fn select_recreated<P: OnMessage>(
    pubsub: &mut P,
    publishing: &JoinHandle<anyhow::Result<lab::PublishReport>>,
    sent: u64,
) -> Outcome {
    let mut out = Outcome::new(sent);
    let mut last = Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // select! keeps its futures in a `let`, so the stream needs a name to outlive them;
        // inside the loop, it is a new stream each time round.
        let mut messages = pubsub.on_message();
        tokio::select! {
            msg = messages.next() => match msg {
                Some(msg) => {
                    out.record(P::payload(&msg));
                    last = Instant::now();
                }
                None => {
                    out.stream_ended = true;
                    break;
                }
            },
            // The ticker won: select! drops the other branch's future, and the stream with it.
            _ = ticker.tick() => {
                out.cancelled += 1;
                if finished(publishing, last) {
                    break;
                }
            }
        }
    }
    out
}
// ANCHOR_END: select_recreated

// ANCHOR: timeout_hoisted
/// The same `timeout`, around `next()` on one stream created before the loop.
async fn timeout_hoisted<P: OnMessage>(
    pubsub: &mut P,
    publishing: &JoinHandle<anyhow::Result<lab::PublishReport>>,
    sent: u64,
) -> Outcome {
    let mut out = Outcome::new(sent);
    let mut last = Instant::now();
    // Created once; each `next()` only borrows it, so a cancelled `next()` drops a borrow.
    let mut messages = pubsub.on_message();
    loop {
        match tokio::time::timeout(TICK, messages.next()).await {
            Ok(Some(msg)) => {
                out.record(P::payload(&msg));
                last = Instant::now();
            }
            Ok(None) => {
                out.stream_ended = true;
                break;
            }
            Err(_elapsed) => {
                out.cancelled += 1;
                if finished(publishing, last) {
                    break;
                }
            }
        }
    }
    out
}
// ANCHOR_END: timeout_hoisted

#[derive(Clone, Copy, Debug)]
enum Loop {
    TimeoutRecreated,
    SelectRecreated,
    TimeoutHoisted,
}

impl Loop {
    fn scenario(self) -> &'static str {
        match self {
            Loop::TimeoutRecreated => "timeout-recreated",
            Loop::SelectRecreated => "select-recreated",
            Loop::TimeoutHoisted => "timeout-hoisted",
        }
    }

    async fn run<P: OnMessage>(
        self,
        pubsub: &mut P,
        publishing: &JoinHandle<anyhow::Result<lab::PublishReport>>,
        sent: u64,
    ) -> Outcome {
        match self {
            Loop::TimeoutRecreated => timeout_recreated(pubsub, publishing, sent).await,
            Loop::SelectRecreated => select_recreated(pubsub, publishing, sent).await,
            Loop::TimeoutHoisted => timeout_hoisted(pubsub, publishing, sent).await,
        }
    }
}

/// Publish `0..sent` on `channel` in pipelined bursts, on a connection of its own.
async fn start_publisher(
    client: &redis::Client,
    channel: &str,
    sent: u64,
) -> anyhow::Result<JoinHandle<anyhow::Result<lab::PublishReport>>> {
    let mut con = client.get_multiplexed_async_connection().await?;
    let publisher = Publisher::new(channel).pace(PACE);
    Ok(tokio::spawn(async move {
        Ok(publisher.send(&mut con, 0..sent).await?)
    }))
}

/// Subscribe with `pubsub`, then publish a burst, run the loop, and print the result.
async fn measure<P: OnMessage>(
    mut pubsub: P,
    client: &redis::Client,
    channel: &str,
    how: Loop,
    client_name: &str,
    sent: u64,
) -> anyhow::Result<ResultLine> {
    let publishing = start_publisher(client, channel, sent).await?;
    let out = how.run(&mut pubsub, &publishing, sent).await;
    // Closing the subscriber first lets a publisher that still writes to a full buffer end.
    drop(pubsub);
    let report = publishing.await??;
    println!(
        "{:<18} {client_name}: received {:>6} of {sent}, cancelled waits {:>4} (before the last \
         message), stream ended early: {}, missing: {}",
        how.scenario(),
        out.tally.received(),
        out.cancelled_before_last,
        out.stream_ended,
        out.tally.missing_summary(3)
    );
    anyhow::ensure!(report.sent == sent, "the publisher sent {}", report.sent);
    Ok(
        ResultLine::from_tally(how.scenario(), client_name, &out.tally, 0)
            .with("cancelled", out.cancelled)
            .with("cancelled_before_last", out.cancelled_before_last)
            .with("stream_ended", out.stream_ended)
            .with("garbled", out.garbled),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let old_client = redis_0_25::Client::open(server.url())
        .map_err(|error| anyhow::anyhow!("redis 0.25.5 cannot use this URL: {error}"))?;
    let sent = lab::scaled(100_000, 5_000);

    let mut results = Vec::new();
    for how in [
        Loop::TimeoutRecreated,
        Loop::SelectRecreated,
        Loop::TimeoutHoisted,
    ] {
        // ANCHOR: old_client
        // redis 0.25.5: the deprecated `aio::Connection`, turned into a Pub/Sub connection.
        #[allow(deprecated)]
        let mut old = old_client.get_async_connection().await?.into_pubsub();
        // ANCHOR_END: old_client
        let channel = lab::unique_channel("ch03:cancel");
        old.subscribe(&channel).await?;
        results.push(measure(old, &client, &channel, how, lab::REDIS_0_25, sent).await?);

        let mut current = client.get_async_pubsub().await?;
        let channel = lab::unique_channel("ch03:cancel");
        current.subscribe(&channel).await?;
        results.push(measure(current, &client, &channel, how, lab::REDIS_CURRENT, sent).await?);
    }
    println!();
    for result in &results {
        result.print();
    }
    Ok(())
}
