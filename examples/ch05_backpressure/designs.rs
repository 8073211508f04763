//! Chapter 5's designs, in the chapter's order: the old release's stream (design 1), the
//! current release's stream (designs 2 and 3), the RESP3 push sender into a bounded queue
//! (design 4) with its supervisor and handler, the same queue behind the library's stream
//! (the counter-example), and the watcher of what Redis buffers for a subscriber. `main.rs`
//! runs them; `harness.rs` and `publisher.rs` hold the rest of the experiment.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::{Stream, StreamExt};
use lab::gaps::{DetectGaps, Tracker};
use lab::message::Mark;
use lab::overflow::{Pushed, QueueReceiver, QueueSender};
use lab::push::Lost;
use lab::{PublishReport, RedisServer, Tally};
use redis::Msg;
use tokio::sync::oneshot;

use crate::harness::{Outcome, report_progress};
use crate::publisher::start_publisher;
use crate::{Plan, quiet};

// ---------------------------------------------------------------------------------------
// Design 1: the old release (0.25.5), one long-lived stream, a slow handler. The client reads
// the socket only when the stream is polled, so the backlog stays in Redis, and Redis
// disconnects us at the output buffer limit.

pub async fn old_slow_stream(server: &RedisServer, channel: &str, plan: Plan) -> Result<Outcome> {
    // ANCHOR: old_stream
    let client = redis_0_25::Client::open(server.url())?;
    #[allow(deprecated)] // the old API, on purpose: this is how 0.25 subscribed
    let mut pubsub = client.get_async_connection().await?.into_pubsub();
    pubsub.subscribe(channel).await?;
    let messages = pubsub.on_message(); // one stream for the whole run, as it should be
    // ANCHOR_END: old_stream
    let publishing = start_publisher(server.url(), channel, plan);
    pub fn payload(msg: &redis_0_25::Msg) -> &[u8] {
        msg.get_payload_bytes()
    }
    consume(messages, payload, publishing, plan, false).await
}

/// Read `stream` with a handler, until it ends or is quiet after the publisher stopped.
/// `blocking`: the handler blocks the thread instead of awaiting.
pub async fn consume<S, M>(
    stream: S,
    payload: for<'a> fn(&'a M) -> &'a [u8],
    publishing: oneshot::Receiver<Result<PublishReport>>,
    plan: Plan,
    blocking: bool,
) -> Result<Outcome>
where
    S: Stream<Item = M> + Unpin,
{
    let mut tally = Tally::new(plan.messages);
    let mut outcome = Outcome::default();
    // Chapter 3's detector: gaps between messages, and what heartbeats say (it swallows them).
    let mut checked =
        DetectGaps::new(stream, |msg: &M| lab::mark_of(payload(msg)).ok()).starting_at(0);
    let mut publishing = Some(publishing);
    let mut last_progress = std::time::Instant::now();
    loop {
        if let Some(done) = publishing.as_mut().and_then(|rx| rx.try_recv().ok()) {
            outcome.publish = done?;
            outcome.backlog_at_end = plan.messages.saturating_sub(tally.received());
            publishing = None;
        }
        report_progress(&mut last_progress, &tally);
        let next = match tokio::time::timeout(quiet(), checked.next()).await {
            Ok(next) => next,
            Err(_quiet) if publishing.is_none() => break,
            Err(_quiet) => continue,
        };
        match next {
            Some(Ok(msg)) => {
                if let Ok(seq) = lab::seq_of(payload(&msg)) {
                    tally.record(seq);
                }
                if blocking && publishing.is_some() {
                    std::thread::sleep(plan.handler); // a synchronous call: the thread is busy
                } else {
                    handle(plan, publishing.is_some()).await;
                }
            }
            // ANCHOR: stream_end
            None => {
                // The stream's item is a message, not a Result: a disconnect looks exactly
                // like the end of the stream. Nothing says how many messages went with it.
                outcome.disconnects += 1;
                break;
            }
            // ANCHOR_END: stream_end
            // A gap: chapter 3's detector counted it (`checked.stats()` below).
            Some(Err(_gap)) => {}
        }
    }
    if let Some(rx) = publishing {
        outcome.publish = rx.await.context("publisher thread")??;
    }
    outcome.gaps_missing = checked.stats().missing;
    // What the subscriber noticed: the holes between messages that arrived, and what the
    // heartbeats it still heard said. After a disconnect it hears nothing more.
    outcome.noticed = outcome.gaps_missing;
    outcome.tally = Some(tally);
    Ok(outcome)
}

/// The handler: takes `plan.handler` per message while the publisher runs. To keep each run
/// short, it becomes instant once the publisher has stopped, so what is left drains quickly
/// and we can count it.
pub async fn handle(plan: Plan, publishing: bool) {
    if publishing && !plan.handler.is_zero() {
        tokio::time::sleep(plan.handler).await;
    }
}

// ---------------------------------------------------------------------------------------
// Designs 2 and 3: the current release. A background task reads the socket into an
// unbounded channel. With a slow *async* handler the reader keeps up, Redis never sees a
// backlog, and the client's memory grows instead. With a *blocking* handler on a
// current-thread runtime, the reader task never runs, and Redis disconnects us again.

pub async fn current_stream(
    server: &RedisServer,
    channel: &str,
    plan: Plan,
    blocking: bool,
) -> Result<Outcome> {
    let client = lab::connect::open(server.url()).await?;
    // ANCHOR: current_stream
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let messages = pubsub.into_on_message(); // drained by redis-rs's own task, unbounded
    // ANCHOR_END: current_stream
    let publishing = start_publisher(server.url(), channel, plan);
    consume(messages, payload, publishing, plan, blocking).await
}

pub fn payload(msg: &Msg) -> &[u8] {
    msg.get_payload_bytes()
}

// ---------------------------------------------------------------------------------------
// Design 4, bounded by construction: RESP3, and no stream at all. The connection hands every
// push to a sender we give it, synchronously, from its read loop, before it reads the next
// one; ours puts it in the bounded queue (`lab::push`). Nothing can pile up in front of the
// queue, whatever the runtime and however large the burst.

// ANCHOR: resp3
/// Subscribe on a RESP3 connection whose push sender moves every message into `queue`.
/// Returns when the connection is lost, or when the queue refuses a message under policy
/// `Disconnect` (then dropping the connection, so that Redis stops buffering for us).
pub async fn subscribe_into_queue(
    client: &redis::Client,
    channel: &str,
    queue: &QueueSender<Msg>,
    tracker: &Arc<Mutex<Tracker>>,
) -> Result<Lost> {
    let (queue, tracker) = (queue.clone(), tracker.clone());
    let (sender, mut connection) = lab::push::to_queue(move |msg| {
        // Counted and queued, or dropped by the policy and counted by the queue: keep
        // reading. Only a full queue under `Disconnect` gives the connection up.
        !matches!(take_in(&tracker, &queue, msg), Some(Pushed::Overflowed(_)))
    });
    let config = redis::AsyncConnectionConfig::new().set_push_sender(sender);
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    con.subscribe(channel).await?;
    let lost = connection.lost().await;
    connection.close();
    Ok(lost)
}
// ANCHOR_END: resp3

// ANCHOR: take_in
/// What every reader does with a message before the queue: count it with chapter 3's
/// tracker (a heartbeat stops here: no queue policy may drop it), then queue it. The tracker
/// outlives connections, so a gap across a reconnect is counted too. `None`: a heartbeat.
pub fn take_in(
    tracker: &Mutex<Tracker>,
    queue: &QueueSender<Msg>,
    msg: Msg,
) -> Option<Pushed<Msg>> {
    let mut tracker = tracker.lock().unwrap_or_else(PoisonError::into_inner);
    match lab::mark_of(msg.get_payload_bytes()) {
        Ok(mark @ Mark::Heartbeat { .. }) => {
            tracker.observe(mark);
            return None;
        }
        Ok(mark) => {
            tracker.observe(mark);
        }
        Err(_) => tracker.unnumbered(),
    }
    drop(tracker);
    Some(queue.push(msg))
}
// ANCHOR_END: take_in

/// How a design reads the subscription into the queue.
#[derive(Clone, Copy)]
pub enum Design {
    /// RESP3 push sender (design 4).
    PushSender,
    /// The stream of `get_async_pubsub()`, read by a task (the counter-example).
    Stream,
}

// ANCHOR: supervise
/// Keep a reader running until the application aborts it: subscribe again after a lost
/// connection at once, and after an overflow once the handler has emptied the queue (at
/// once, it would overflow again). Messages published in between are lost; the tracker
/// notices them as a sequence gap at the next message or heartbeat (and a real application
/// reloads its state from the source of truth).
pub async fn supervise(
    design: Design,
    client: redis::Client,
    channel: String,
    queue: QueueSender<Msg>,
    tracker: Arc<Mutex<Tracker>>,
    resyncs: Arc<AtomicU64>,
) {
    loop {
        let read = match design {
            Design::PushSender => subscribe_into_queue(&client, &channel, &queue, &tracker).await,
            Design::Stream => read_into_queue(&client, &channel, &queue, &tracker).await,
        };
        if queue.is_closed() {
            return;
        }
        match read {
            Ok(Lost::Closed) => {}
            Ok(Lost::Overflow) => {
                while !queue.is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            // Could not even subscribe: wait a little before trying again.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        resyncs.fetch_add(1, Ordering::Relaxed);
    }
}
// ANCHOR_END: supervise

/// The handler side, shared by the queue designs: take messages from the queue, handle each
/// one. (The reader counted them on the way in.)
pub async fn handle_from_queue(
    mut queue: QueueReceiver<Msg>,
    publishing: oneshot::Receiver<Result<PublishReport>>,
    plan: Plan,
) -> Result<Outcome> {
    let mut tally = Tally::new(plan.messages);
    let mut outcome = Outcome::default();
    let mut publishing = Some(publishing);
    loop {
        if let Some(done) = publishing.as_mut().and_then(|rx| rx.try_recv().ok()) {
            outcome.publish = done?;
            outcome.backlog_at_end = plan.messages.saturating_sub(tally.received());
            publishing = None;
        }
        // ANCHOR: handler
        match tokio::time::timeout(quiet(), queue.recv()).await {
            Ok(Some(msg)) => {
                if let Ok(seq) = lab::seq_of(msg.get_payload_bytes()) {
                    tally.record(seq); // the harness's count
                }
                handle(plan, publishing.is_some()).await;
            }
            // The queue was closed: the connection behind it is gone.
            Ok(None) => {
                outcome.disconnects += 1;
                break;
            }
            // Quiet for a while after the publisher stopped: the run is over.
            Err(_quiet) if publishing.is_none() => break,
            Err(_quiet) => {}
        }
        // ANCHOR_END: handler
    }
    if let Some(rx) = publishing {
        outcome.publish = rx.await.context("publisher thread")??;
    }
    outcome.tally = Some(tally);
    Ok(outcome)
}

// ANCHOR: noticed
/// What a queue design noticed: the tracker's gaps (lost in Redis or on the way, found
/// between two messages or by a heartbeat), and, added by the caller, what its own queue
/// dropped. Each lost message is in exactly one of the two: the tracker saw every message the
/// queue dropped arrive.
pub async fn count_noticed(outcome: &mut Outcome, tracker: &Mutex<Tracker>) {
    let stats = || {
        tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stats()
    };
    // The handler went quiet; the publisher's next heartbeat (every 100 ms) brings the last
    // word on what was sent, even if the reader resubscribed after the publisher finished.
    let heard = stats().heartbeats;
    for _ in 0..200 {
        if stats().heartbeats > heard {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    outcome.gaps_missing = stats().missing;
    outcome.noticed = outcome.gaps_missing;
}
// ANCHOR_END: noticed

// ---------------------------------------------------------------------------------------
// The counter-example: the same bounded queue, behind the stream of `get_async_pubsub()`. A
// reader task moves each message from the stream into the queue and never waits. Under a
// paced publisher it looks bounded. But redis-rs's own task decodes the socket into an
// unbounded channel *in front of* the stream, and under a burst, on a current-thread runtime,
// that task runs far more often than our reader: the burst lands in the unbounded channel.

// ANCHOR: reader
/// Subscribe and move every message of the stream into `queue`. Returns when the queue
/// refuses a message under policy `Disconnect` (dropping the subscription, so that Redis stops
/// buffering for us), when the queue is closed, or when the connection ends.
pub async fn read_into_queue(
    client: &redis::Client,
    channel: &str,
    queue: &QueueSender<Msg>,
    tracker: &Mutex<Tracker>,
) -> Result<Lost> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let mut messages = pubsub.into_on_message();
    while let Some(msg) = messages.next().await {
        match take_in(tracker, queue, msg) {
            // A heartbeat, or a full queue under a drop policy: the queue dropped one message
            // and counted it.
            None | Some(Pushed::Queued | Pushed::DroppedNewest(_) | Pushed::DroppedOldest(_)) => {}
            // A full queue under `Disconnect`: stop reading, the caller resyncs.
            Some(Pushed::Overflowed(_)) => return Ok(Lost::Overflow),
            Some(Pushed::Closed(_)) => break,
        }
    }
    Ok(Lost::Closed)
}
// ANCHOR_END: reader

// ANCHOR: omem
/// Watches what Redis holds for subscribers: `CLIENT LIST TYPE pubsub` every 20 ms, the
/// largest `omem=` (output buffer bytes) seen. A thread with a blocking connection of its own,
/// so that it keeps watching even when the subscriber's runtime is blocked.
pub struct OmemWatcher {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl OmemWatcher {
    pub fn start(server: &RedisServer) -> Result<Self> {
        let mut con = server.client()?.get_connection()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut max = 0;
            while !stopped.load(Ordering::Relaxed) {
                let list: String = redis::cmd("CLIENT")
                    .arg("LIST")
                    .arg("TYPE")
                    .arg("pubsub")
                    .query(&mut con)
                    .unwrap_or_default();
                let omem = list
                    .split_whitespace()
                    .filter_map(|field| field.strip_prefix("omem=")?.parse::<u64>().ok());
                max = omem.fold(max, u64::max);
                std::thread::sleep(Duration::from_millis(20));
            }
            max
        });
        Ok(Self { stop, thread })
    }

    /// Stop watching; the largest output buffer seen, in bytes.
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}
// ANCHOR_END: omem
