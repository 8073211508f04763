//! A production Pub/Sub subscriber: every practice of chapters 3-5 in one place (chapter 6).
//!
//! ```text
//!                  redis-rs read loop (RESP3)
//!  Redis ──TCP──▶  decode ─▶ push sender: accept ──hash(channel)──▶ queue 0 ──▶ worker 0
//!                              (size, gaps, counters)          └──▶ queue 1 ──▶ worker 1
//!  supervisor: (p)subscribe, PING, reconnect + resubscribe          (handler, timeout)
//! ```
//!
//! - **Bounded by construction**: the connection speaks RESP3, and redis-rs hands every
//!   message to our push sender synchronously, in its own read loop, before it decodes the
//!   next one. The push sender checks it (size, sequence number) and pushes it into the
//!   bounded queue of the worker that owns its channel ([`crate::overflow`], the policy of
//!   chapter 5). No unbounded buffer stands in front of the queues, so a burst cannot grow
//!   memory, on any runtime.
//! - **Parallel across channels, in order within one**: a channel always hashes to the same
//!   worker, and a worker handles its messages one after the other.
//! - **A timeout per message**: a handler that hangs is counted and abandoned; a handler that
//!   panics is counted, and its worker lives on.
//! - **Reconnection**: when the connection ends, a PING goes unanswered or a subscribe fails,
//!   the supervisor reconnects with exponential backoff and jitter, subscribes every channel and
//!   pattern again, and reports the gap: exactly, from per-channel sequence numbers, when the
//!   publisher numbers its messages ([`Config::numbered`]), or as an "unknown gap" otherwise.
//! - **Clean shutdown**: stop reading, unsubscribe, hand what already arrived to the workers,
//!   let them drain within a deadline, and count what they could not finish.
//! - **Counters** ([`Report`]) readable at any time, without slowing the hot path down.
//!
//! ```no_run
//! use lab::production::{Config, Rejected};
//!
//! # async fn demo(url: &str) -> anyhow::Result<()> {
//! let config = Config::new(url, ["orders"]);
//! let handler = |msg: redis::Msg| async move {
//!     let text = std::str::from_utf8(msg.get_payload_bytes()).map_err(|_| Rejected::BadPayload)?;
//!     println!("{text}");
//!     Ok(())
//! };
//! let report = lab::production::run(config, handler, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! println!("{report}");
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use futures::FutureExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Msg};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::gaps::Tracker;
use crate::message::{Mark, mark_of};
use crate::overflow::{Overflow, Pushed, QueueReceiver, QueueSender, bounded};
use crate::push::{self, ConnectionWatch, Lost};
use crate::redact::redact_url;

// ANCHOR: config
/// Everything the subscriber can be told. [`Config::new`] fills in defaults that suit a
/// service; the example's command line sets each field.
#[derive(Clone)]
pub struct Config {
    /// The server, password included (it is never printed).
    pub url: String,
    /// Channels to SUBSCRIBE.
    pub channels: Vec<String>,
    /// Patterns to PSUBSCRIBE.
    pub patterns: Vec<String>,
    /// How many workers handle messages; a channel always goes to the same one.
    pub workers: usize,
    /// Messages each worker's queue holds before the overflow policy applies.
    pub queue_capacity: usize,
    /// What a full queue does (chapter 5).
    pub overflow: Overflow,
    /// How long one message may take in the handler before it is counted as timed out.
    pub handler_timeout: Duration,
    /// Larger payloads are counted as oversized and never reach the handler.
    pub max_payload: usize,
    /// The publishers number their messages (`lab::message`: bare `<seq>#`, or named with
    /// heartbeats): count lost messages exactly, per publisher. Heartbeats are read here and
    /// never reach the handler.
    pub numbered: bool,
    /// The number the publisher gives its first message, when it starts after we subscribe
    /// (a test, or a publisher started with the service). Then even a channel that lost
    /// everything before its first message shows a gap. `None`: learn it from the first
    /// message.
    pub first_seq: Option<u64>,
    /// Reconnection delays.
    pub backoff: Backoff,
    /// Give up after this many failed reconnection attempts in a row (`None`: never).
    pub max_reconnect_attempts: Option<u32>,
    /// Also retry the very first connection (otherwise a bad URL, a wrong password or a
    /// server that is down fails at once, with a clear error).
    pub retry_at_start: bool,
    /// How long one connect + subscribe attempt may take.
    pub connect_timeout: Duration,
    /// PING the connection this often, to notice a server that stopped answering.
    pub ping_every: Duration,
    /// A PING unanswered for this long means the connection is dead: reconnect.
    pub ping_timeout: Duration,
    /// At shutdown, how long the workers may take to finish what is queued.
    pub drain_deadline: Duration,
    /// Called for every connection-level event (connected, gap, ...): log them.
    pub on_event: Option<OnEvent>,
}
// ANCHOR_END: config

impl Config {
    /// A configuration with sensible defaults for `channels` on `url`.
    pub fn new<S: Into<String>>(url: &str, channels: impl IntoIterator<Item = S>) -> Self {
        Self {
            url: url.to_string(),
            channels: channels.into_iter().map(Into::into).collect(),
            patterns: Vec::new(),
            workers: 2,
            queue_capacity: 10_000,
            overflow: Overflow::DropOldest,
            handler_timeout: Duration::from_secs(1),
            max_payload: 1 << 20,
            numbered: false,
            first_seq: None,
            backoff: Backoff::default(),
            max_reconnect_attempts: None,
            retry_at_start: false,
            connect_timeout: Duration::from_secs(5),
            ping_every: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(5),
            drain_deadline: Duration::from_secs(5),
            on_event: None,
        }
    }

    fn event(&self, event: Event) {
        if let Some(on_event) = &self.on_event {
            on_event(&event);
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password: a Debug print of the config ends up in logs.
        f.debug_struct("Config")
            .field("url", &redact_url(&self.url))
            .field("channels", &self.channels)
            .field("patterns", &self.patterns)
            .field("workers", &self.workers)
            .field("queue_capacity", &self.queue_capacity)
            .field("overflow", &self.overflow)
            .field("handler_timeout", &self.handler_timeout)
            .finish_non_exhaustive()
    }
}

/// A function called with each [`Event`].
pub type OnEvent = Arc<dyn Fn(&Event) + Send + Sync>;

// ANCHOR: backoff
/// Exponential backoff with jitter: attempt `n` waits a random time between half and all of
/// `min(initial * 2^n, max)`. The doubling stops a dead server from being hammered; the
/// randomness stops a thousand subscribers that lost the same server from coming back in
/// the same millisecond.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// How long to wait before attempt `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(31)))
            .min(self.max);
        ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
    }
}
// ANCHOR_END: backoff

/// Why a handler did not process a message.
#[derive(Debug)]
pub enum Rejected {
    /// The payload is not what the handler expects (not UTF-8, not parseable): counted as
    /// `bad_payload`. Retrying would not help.
    BadPayload,
    /// Anything else went wrong: counted as `failed`.
    Failed(anyhow::Error),
}

/// What happened to the connection; given to [`Config::on_event`].
#[derive(Debug)]
pub enum Event {
    /// Subscribed to every channel and pattern (`attempt` 0 is the first connection).
    Subscribed {
        reconnects: u64,
        channels: usize,
        patterns: usize,
    },
    /// The connection was lost; the supervisor reconnects.
    Disconnected { reason: String },
    /// A reconnection attempt failed; the next one comes after `retry_in`.
    ConnectFailed { error: String, retry_in: Duration },
    /// Messages `first..=last` of `channel` never arrived (numbered publishers only).
    Gap {
        channel: String,
        first: u64,
        last: u64,
    },
    /// Messages may be lost, and nobody can count them: whatever was published while we were
    /// reconnecting, for this long, when the publishers do not number their messages.
    UnknownGap { down_for: Duration },
    /// A publisher on `channel` restarted without saying goodbye, or its numbers went
    /// backwards: the end of its previous run may be lost, uncounted.
    PublisherRestarted { channel: String },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Subscribed {
                reconnects,
                channels,
                patterns,
            } => write!(
                f,
                "subscribed to {channels} channel(s), {patterns} pattern(s) (reconnects so \
                 far: {reconnects})"
            ),
            Event::Disconnected { reason } => write!(f, "disconnected: {reason}; reconnecting"),
            Event::ConnectFailed { error, retry_in } => {
                write!(
                    f,
                    "connecting failed: {error}; next attempt in {retry_in:.0?}"
                )
            }
            Event::Gap {
                channel,
                first,
                last,
            } => write!(
                f,
                "gap on {channel}: messages {first}..={last} ({} messages) were lost",
                last - first + 1
            ),
            Event::UnknownGap { down_for } => write!(
                f,
                "unknown gap: messages published during the last {down_for:.1?} may be lost \
                 (the publisher does not number them)"
            ),
            Event::PublisherRestarted { channel } => write!(
                f,
                "unknown gap on {channel}: a publisher restarted without saying goodbye (or \
                 its numbers went backwards); the end of its last run may be lost"
            ),
        }
    }
}

// ANCHOR: report
/// The subscriber's counters. `noticed()` is every message it knows it lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Messages read from the connection.
    pub received: u64,
    /// Handled successfully.
    pub processed: u64,
    /// Dropped by a full queue (policy drop-newest / drop-oldest / disconnect).
    pub dropped: u64,
    /// The handler took longer than the timeout.
    pub timed_out: u64,
    /// The handler said the payload was bad (not UTF-8, not parseable).
    pub bad_payload: u64,
    /// Larger than `max_payload`: never handed to a handler.
    pub oversized: u64,
    /// The handler failed or panicked.
    pub failed: u64,
    /// Queued but not handled when the shutdown deadline passed.
    pub abandoned: u64,
    /// Connections lost and re-established.
    pub reconnects: u64,
    /// Sequence gaps seen (numbered publishers).
    pub gaps: u64,
    /// Messages inside those gaps.
    pub missing: u64,
    /// Losses that may have happened but cannot be counted: reconnections when publishers do
    /// not number their messages, and publishers that restarted without a goodbye.
    pub unknown_gaps: u64,
    /// Heartbeats read (named publishers); not messages, not in `received`.
    pub heartbeats: u64,
    /// The longest any worker queue has been.
    pub max_queue: u64,
}

impl Report {
    /// Messages the subscriber knows it lost: sequence gaps, queue drops, shutdown leftovers.
    pub fn noticed(&self) -> u64 {
        self.missing + self.dropped + self.abandoned
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} processed={} dropped={} timed_out={} bad_payload={} oversized={} \
             failed={} abandoned={} reconnects={} gaps={} missing={} unknown_gaps={} \
             heartbeats={} max_queue={}",
            self.received,
            self.processed,
            self.dropped,
            self.timed_out,
            self.bad_payload,
            self.oversized,
            self.failed,
            self.abandoned,
            self.reconnects,
            self.gaps,
            self.missing,
            self.unknown_gaps,
            self.heartbeats,
            self.max_queue
        )
    }
}
// ANCHOR_END: report

/// A counter with exactly one writer (one task) and any number of readers. The writer
/// loads and stores instead of using `fetch_add`: no locked instruction on the hot path, and
/// readers still see a value that is at most a moment old.
#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self, n: u64) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The reading side's counters. `received`, `oversized`, `gaps`, `missing`, `restarts` and
/// `heartbeats` are written only under the intake's lock (so by one read loop at a time),
/// `reconnects` and `unknown_gaps` only by the supervisor: each counter has one writer at a
/// time.
#[derive(Default)]
struct ReaderCounters {
    received: Counter,
    oversized: Counter,
    reconnects: Counter,
    gaps: Counter,
    missing: Counter,
    /// Publishers restarted without a goodbye: unknown gaps found in the numbers.
    restarts: Counter,
    heartbeats: Counter,
    /// Reconnections that nothing numbered can account for.
    unknown_gaps: Counter,
}

/// One worker's counters, on their own cache line so workers on different threads do not
/// slow each other down.
#[derive(Default)]
#[repr(align(64))]
struct WorkerCounters {
    processed: Counter,
    timed_out: Counter,
    bad_payload: Counter,
    failed: Counter,
}

struct Shared {
    reader: ReaderCounters,
    workers: Vec<WorkerCounters>,
    abandoned: Counter,
    subscribed: AtomicBool,
}

/// The sending side of the worker queues, kept to read their counters.
type Queues = Arc<Vec<QueueSender<Msg>>>;

fn snapshot(shared: &Shared, queues: &Queues) -> Report {
    let mut report = Report {
        received: shared.reader.received.get(),
        oversized: shared.reader.oversized.get(),
        reconnects: shared.reader.reconnects.get(),
        gaps: shared.reader.gaps.get(),
        missing: shared.reader.missing.get(),
        unknown_gaps: shared.reader.unknown_gaps.get() + shared.reader.restarts.get(),
        heartbeats: shared.reader.heartbeats.get(),
        abandoned: shared.abandoned.get(),
        ..Report::default()
    };
    for worker in &shared.workers {
        report.processed += worker.processed.get();
        report.timed_out += worker.timed_out.get();
        report.bad_payload += worker.bad_payload.get();
        report.failed += worker.failed.get();
    }
    for queue in queues.iter() {
        let stats = queue.stats();
        report.dropped += stats.dropped();
        report.max_queue = report.max_queue.max(stats.max_len as u64);
    }
    report
}

/// A running subscriber: read its counters, stop it.
pub struct Running {
    shared: Arc<Shared>,
    queues: Queues,
    stop: watch::Sender<bool>,
    supervisor: JoinHandle<Result<Report>>,
}

impl Running {
    /// The counters right now.
    pub fn snapshot(&self) -> Report {
        snapshot(&self.shared, &self.queues)
    }

    /// True while the subscriptions are confirmed on a live connection.
    pub fn is_subscribed(&self) -> bool {
        self.shared.subscribed.load(Ordering::Relaxed)
    }

    /// True once the subscriber stopped by itself (it gave up reconnecting).
    pub fn is_finished(&self) -> bool {
        self.supervisor.is_finished()
    }

    /// Stop reading, unsubscribe, drain the queues within the deadline; the final report.
    pub async fn shutdown(self) -> Result<Report> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Wait until the subscriber stops (after [`shutdown`](Self::shutdown) or on a fatal
    /// error such as giving up reconnecting).
    pub async fn wait(self) -> Result<Report> {
        match self.supervisor.await {
            Ok(result) => result,
            Err(error) => Err(anyhow!("the subscriber task failed: {error}")),
        }
    }
}

// ANCHOR: run
/// Run the subscriber until `shutdown` completes (Ctrl-C, SIGTERM, ...) or it gives up;
/// returns the final counters. Connection problems at start are an error right away unless
/// [`Config::retry_at_start`] is set.
pub async fn run<H, Fut>(
    config: Config,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> Result<Report>
where
    H: FnMut(Msg) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), Rejected>> + Send + 'static,
{
    let running = start(config, handler).await?;
    tokio::pin!(shutdown);
    let stop = running.stop.clone();
    let mut supervisor = running.supervisor;
    tokio::select! {
        result = &mut supervisor => return result.map_err(|e| anyhow!("subscriber task: {e}"))?,
        () = &mut shutdown => {}
    }
    let _ = stop.send(true);
    supervisor
        .await
        .map_err(|e| anyhow!("subscriber task: {e}"))?
}
// ANCHOR_END: run

// ANCHOR: start
/// Connect, subscribe, and start the supervisor and the workers. Returns once the
/// subscriptions are confirmed, so that nothing published after this returns can pass the
/// subscriber by.
pub async fn start<H, Fut>(config: Config, handler: H) -> Result<Running>
where
    H: FnMut(Msg) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), Rejected>> + Send + 'static,
{
    if config.channels.is_empty() && config.patterns.is_empty() {
        bail!("nothing to subscribe to: give at least one channel or pattern");
    }
    if config.workers == 0 || config.queue_capacity == 0 {
        bail!("workers and queue capacity must be at least 1");
    }
    let client = resp3_client(&config.url)?;
    let shared = Arc::new(Shared {
        reader: ReaderCounters::default(),
        workers: (0..config.workers)
            .map(|_| WorkerCounters::default())
            .collect(),
        abandoned: Counter::default(),
        subscribed: AtomicBool::new(true),
    });
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..config.workers)
        .map(|_| bounded(config.queue_capacity, config.overflow))
        .unzip();
    let queues: Queues = Arc::new(senders);
    let intake = Arc::new(Mutex::new(Intake::new(&config, &queues, &shared)));

    // The first connection: fail fast with a clear reason, unless asked to wait for Redis.
    let first = if config.retry_at_start {
        // Nobody can ask us to stop yet: keep the sender alive so the wait never ends early.
        let (_never, mut not_stopped) = watch::channel(false);
        connect_with_backoff(&client, &config, &intake, &mut not_stopped)
            .await?
            .ok_or_else(|| anyhow!("stopped before the first connection"))?
    } else {
        connect(&client, &config, &intake)
            .await
            .map_err(|error| error.describe(&config.url))?
    };

    let workers = receivers
        .into_iter()
        .enumerate()
        .map(|(index, receiver)| {
            tokio::spawn(worker(
                receiver,
                handler.clone(),
                config.handler_timeout,
                Arc::clone(&shared),
                index,
            ))
        })
        .collect();
    config.event(Event::Subscribed {
        reconnects: 0,
        channels: config.channels.len(),
        patterns: config.patterns.len(),
    });
    // `true` asks for shutdown; dropping the sender (the `Running` handle) does too.
    let (stop, stop_rx) = watch::channel(false);
    let supervisor = Supervisor {
        config,
        client,
        queues: Arc::clone(&queues),
        shared: Arc::clone(&shared),
        intake,
        lost_connection_at: None,
    };
    let supervisor = tokio::spawn(supervisor.run(first, stop_rx, workers));
    Ok(Running {
        shared,
        queues,
        stop,
        supervisor,
    })
}
// ANCHOR_END: start

/// A client for `url` that speaks RESP3, whatever the URL says: messages then arrive as
/// pushes, which redis-rs hands to our push sender as it decodes them.
fn resp3_client(url: &str) -> Result<redis::Client> {
    let client = redis::Client::open(url)
        .map_err(|error| anyhow!("not a valid Redis URL: {} ({error})", redact_url(url)))?;
    crate::push::resp3(&client).map_err(|error| crate::connect::describe(&error, url))
}

/// A live, subscribed connection.
struct Connection {
    /// Sends commands: SUBSCRIBE, PING, UNSUBSCRIBE. Dropping the last clone closes it.
    con: MultiplexedConnection,
    /// Says when the push sender gave the connection up, and why.
    watch: ConnectionWatch,
}

/// Why connecting failed: Redis said no, or it did not answer in time.
enum ConnectError {
    Redis(redis::RedisError),
    Timeout(Duration),
}

impl ConnectError {
    fn describe(&self, url: &str) -> anyhow::Error {
        match self {
            ConnectError::Redis(error) => crate::connect::describe(error, url),
            ConnectError::Timeout(limit) => anyhow!(
                "no answer from Redis at {} within {limit:?} while subscribing: is the host \
                 right, and is the server paused or overloaded?",
                redact_url(url)
            ),
        }
    }
}

// ANCHOR: connect
/// One attempt: a new RESP3 connection whose push sender feeds the workers' queues, every
/// channel and pattern subscribed again.
async fn connect(
    client: &redis::Client,
    config: &Config,
    intake: &Arc<Mutex<Intake>>,
) -> Result<Connection, ConnectError> {
    let intake = Arc::clone(intake);
    let (pushes, watch) = push::to_queue(move |msg| lock(&intake).accept(msg));
    // No response timeout of the library's own: each command below has its own limit.
    let connection_config = AsyncConnectionConfig::new()
        .set_push_sender(pushes)
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(None);
    let attempt = async {
        let mut con = client
            .get_multiplexed_async_connection_with_config(&connection_config)
            .await?;
        // `subscribe` returns once Redis confirmed every channel: from then on nothing
        // published can pass us by.
        if !config.channels.is_empty() {
            con.subscribe(&config.channels).await?;
        }
        if !config.patterns.is_empty() {
            con.psubscribe(&config.patterns).await?;
        }
        Ok(con)
    };
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(Ok(con)) => Ok(Connection { con, watch }),
        Ok(Err(error)) => {
            watch.close();
            Err(ConnectError::Redis(error))
        }
        Err(_elapsed) => {
            watch.close();
            Err(ConnectError::Timeout(config.connect_timeout))
        }
    }
}

/// Attempt after attempt, with backoff, until connected, stopped (`Ok(None)`), or out of
/// attempts.
async fn connect_with_backoff(
    client: &redis::Client,
    config: &Config,
    intake: &Arc<Mutex<Intake>>,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<Connection>> {
    let mut failed = 0u32;
    loop {
        match connect(client, config, intake).await {
            Ok(connection) => return Ok(Some(connection)),
            Err(error) => {
                let error = error.describe(&config.url);
                failed += 1;
                if config
                    .max_reconnect_attempts
                    .is_some_and(|max| failed >= max)
                {
                    bail!("gave up after {failed} failed connection attempts; last: {error:#}");
                }
                let retry_in = config.backoff.delay(failed - 1);
                config.event(Event::ConnectFailed {
                    error: format!("{error:#}"),
                    retry_in,
                });
                tokio::select! {
                    () = tokio::time::sleep(retry_in) => {}
                    _ = stop.wait_for(|stopped| *stopped) => return Ok(None),
                }
            }
        }
    }
}
// ANCHOR_END: connect

/// The intake is only ever locked by one read loop at a time, for a few instructions; a
/// panic while it was held cannot leave it inconsistent, so carry on.
fn lock(intake: &Mutex<Intake>) -> MutexGuard<'_, Intake> {
    intake.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the reader knows about one channel.
struct ChannelState {
    /// The worker that owns this channel.
    worker: usize,
    /// What its numbered publishers sent and what arrived (`lab::gaps`).
    tracker: Tracker,
}

/// Every channel seen so far.
struct Channels {
    /// Every channel's name and state, in the order they were first seen.
    states: Vec<(String, ChannelState)>,
    /// Name -> position in `states`.
    index: HashMap<String, usize>,
    /// The channel of the previous message: a burst usually comes on one channel, and
    /// comparing two short strings is cheaper than hashing one.
    last: usize,
    hasher: RandomState,
    workers: u64,
    first_seq: Option<u64>,
}

impl Channels {
    fn new(workers: usize, first_seq: Option<u64>) -> Self {
        Self {
            states: Vec::new(),
            index: HashMap::new(),
            last: 0,
            hasher: RandomState::new(),
            workers: workers as u64,
            first_seq,
        }
    }

    /// What we know about `channel`. The name is copied only the first time a channel is
    /// seen (a pattern can match new channels at any time).
    fn state(&mut self, channel: &str) -> &mut ChannelState {
        let same_as_last = self
            .states
            .get(self.last)
            .is_some_and(|(name, _)| name == channel);
        if !same_as_last {
            self.last = match self.index.get(channel) {
                Some(&position) => position,
                None => {
                    let state = ChannelState {
                        worker: (self.hasher.hash_one(channel) % self.workers) as usize,
                        tracker: match self.first_seq {
                            Some(first) => Tracker::starting_at(first),
                            None => Tracker::new(),
                        },
                    };
                    self.states.push((channel.to_string(), state));
                    self.index
                        .insert(channel.to_string(), self.states.len() - 1);
                    self.states.len() - 1
                }
            };
        }
        &mut self.states[self.last].1
    }
}

/// The reading side that runs inside the connection's read loop: checks each message and
/// routes it to its channel's worker. It outlives connections, so sequence numbers are
/// checked across a reconnect.
struct Intake {
    config: Config,
    queues: Queues,
    shared: Arc<Shared>,
    channels: Channels,
    /// A message without a number arrived: a reconnection's loss cannot be counted.
    saw_unnumbered: bool,
}

impl Intake {
    fn new(config: &Config, queues: &Queues, shared: &Arc<Shared>) -> Self {
        let mut channels = Channels::new(queues.len(), config.first_seq);
        for channel in &config.channels {
            channels.state(channel);
        }
        Self {
            config: config.clone(),
            queues: Arc::clone(queues),
            shared: Arc::clone(shared),
            channels,
            saw_unnumbered: false,
        }
    }

    // ANCHOR: accept
    /// Check one message and hand it to its channel's worker. Never waits. Returns false when
    /// the queue overflowed under the `disconnect` policy.
    fn accept(&mut self, msg: Msg) -> bool {
        let counters = &self.shared.reader;
        let payload = msg.get_payload_bytes();
        if payload.len() > self.config.max_payload {
            // Not tracked either: if it was numbered, the next message or heartbeat shows it
            // as a gap, and its loss is noticed.
            counters.received.add(1);
            counters.oversized.add(1);
            return true;
        }
        let channel = msg.get_channel_name();
        let state = self.channels.state(channel);
        // Numbers and heartbeats, per publisher (chapter 3). A heartbeat stops here: it is
        // not a message, and no queue policy may drop it.
        let mark = if self.config.numbered {
            mark_of(payload).ok()
        } else {
            None
        };
        let unknown_before = state.tracker.stats().unknown_gaps;
        let gap = match mark {
            Some(mark) => state.tracker.observe(mark),
            None => {
                state.tracker.unnumbered();
                self.saw_unnumbered = true;
                None
            }
        };
        if let Some(gap) = gap {
            counters.gaps.add(1);
            counters.missing.add(gap.len());
            self.config.event(Event::Gap {
                channel: channel.to_string(),
                first: gap.first,
                last: gap.last,
            });
        }
        if state.tracker.stats().unknown_gaps > unknown_before {
            counters.restarts.add(1);
            self.config.event(Event::PublisherRestarted {
                channel: channel.to_string(),
            });
        }
        if let Some(Mark::Heartbeat { .. }) = mark {
            counters.heartbeats.add(1);
            return true;
        }
        counters.received.add(1);
        // The queue counts what it drops; only `disconnect` needs an answer from us.
        let worker = state.worker;
        !matches!(
            self.queues[worker].push(msg),
            Pushed::Overflowed(_) | Pushed::Closed(_)
        )
    }
    // ANCHOR_END: accept
}

/// How one connection ended.
enum Ended {
    /// Shutdown was asked for; the connection is still up.
    Shutdown(Connection),
    /// The connection was lost, or overflowed.
    Lost(Lost),
    /// A PING went unanswered.
    Unresponsive,
}

/// Watches connections, reconnects, and shuts down. The messages themselves never pass
/// through it: they go from the connection's push sender straight into the queues.
struct Supervisor {
    config: Config,
    client: redis::Client,
    queues: Queues,
    shared: Arc<Shared>,
    intake: Arc<Mutex<Intake>>,
    lost_connection_at: Option<Instant>,
}

impl Supervisor {
    // ANCHOR: reconnect
    /// Watch connection after connection until shutdown; then drain and report.
    async fn run(
        mut self,
        first: Connection,
        mut stop: watch::Receiver<bool>,
        workers: Vec<JoinHandle<()>>,
    ) -> Result<Report> {
        let mut connection = first;
        let result = loop {
            let ended = self.watch(connection, &mut stop).await;
            let reason = match ended {
                Ended::Shutdown(connection) => break self.unsubscribe(connection).await,
                Ended::Lost(Lost::Closed) => {
                    "the connection closed (server restarted, killed us, or the output buffer \
                     limit was hit)"
                }
                Ended::Lost(Lost::Overflow) => {
                    "a worker queue is full and the policy is disconnect"
                }
                Ended::Unresponsive => "PING unanswered: the server stopped responding",
            };
            self.shared.subscribed.store(false, Ordering::Relaxed);
            self.lost_connection_at = Some(Instant::now());
            self.config.event(Event::Disconnected {
                reason: reason.to_string(),
            });
            if matches!(ended, Ended::Lost(Lost::Overflow)) {
                // Reconnecting at once would overflow again: let the workers catch up first.
                self.wait_for_empty_queues(&mut stop).await;
            }
            match connect_with_backoff(&self.client, &self.config, &self.intake, &mut stop).await {
                Ok(Some(next)) => {
                    self.shared.reader.reconnects.add(1);
                    self.shared.subscribed.store(true, Ordering::Relaxed);
                    self.config.event(Event::Subscribed {
                        reconnects: self.shared.reader.reconnects.get(),
                        channels: self.config.channels.len(),
                        patterns: self.config.patterns.len(),
                    });
                    // Numbered publishers show the loss as a gap (their next message or
                    // heartbeat); anything unnumbered cannot be counted.
                    if !self.config.numbered || lock(&self.intake).saw_unnumbered {
                        self.shared.reader.unknown_gaps.add(1);
                        let down_for = self.lost_connection_at.map(|at| at.elapsed());
                        self.config.event(Event::UnknownGap {
                            down_for: down_for.unwrap_or_default(),
                        });
                    }
                    connection = next;
                }
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        self.shared.subscribed.store(false, Ordering::Relaxed);
        // No more pushes: each worker handles what is queued, then stops.
        for queue in self.queues.iter() {
            queue.close();
        }
        let deadline = tokio::time::sleep(self.config.drain_deadline);
        tokio::pin!(deadline);
        for mut worker in workers {
            tokio::select! {
                _ = &mut worker => {}
                () = &mut deadline => worker.abort(),
            }
        }
        // Whatever entered a queue and was neither handled nor dropped was abandoned.
        let report = snapshot(&self.shared, &self.queues);
        let queued: u64 = self
            .queues
            .iter()
            .map(|q| {
                let stats = q.stats();
                stats.queued - stats.dropped_oldest
            })
            .sum();
        let handled = report.processed + report.timed_out + report.bad_payload + report.failed;
        self.shared.abandoned.add(queued.saturating_sub(handled));
        result.map(|()| snapshot(&self.shared, &self.queues))
    }
    // ANCHOR_END: reconnect

    // ANCHOR: read
    /// Watch one connection until it is lost, shutdown is asked for, or a PING goes
    /// unanswered. (Its messages flow meanwhile, through the push sender.)
    async fn watch(
        &mut self,
        mut connection: Connection,
        stop: &mut watch::Receiver<bool>,
    ) -> Ended {
        let ended = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => None,
            lost = connection.watch.lost() => Some(Ended::Lost(lost)),
            () = ping_until_unanswered(
                connection.con.clone(),
                self.config.ping_every,
                self.config.ping_timeout,
            ) => Some(Ended::Unresponsive),
        };
        match ended {
            None => Ended::Shutdown(connection),
            Some(ended) => {
                connection.watch.close();
                ended
            }
        }
    }
    // ANCHOR_END: read

    // ANCHOR: shutdown
    /// Shutdown: unsubscribe. Every message that arrived before Redis confirmed has passed
    /// through the push sender into a queue by then; the workers drain them.
    async fn unsubscribe(&mut self, mut connection: Connection) -> Result<()> {
        let unsubscribe = async {
            if !self.config.channels.is_empty() {
                connection.con.unsubscribe(&self.config.channels).await?;
            }
            if !self.config.patterns.is_empty() {
                connection.con.punsubscribe(&self.config.patterns).await?;
            }
            Ok::<_, redis::RedisError>(())
        };
        // A server that does not answer must not hold the shutdown up: what already arrived
        // is queued either way.
        let _ = tokio::time::timeout(Duration::from_secs(1), unsubscribe).await;
        connection.watch.close();
        Ok(())
    }
    // ANCHOR_END: shutdown

    async fn wait_for_empty_queues(&self, stop: &mut watch::Receiver<bool>) {
        while self.queues.iter().any(|q| !q.is_empty()) && !*stop.borrow() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// PING every `every`; returns when one is not answered within `timeout`.
async fn ping_until_unanswered(mut con: MultiplexedConnection, every: Duration, timeout: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let ping = redis::cmd("PING");
        let pong = tokio::time::timeout(timeout, ping.query_async::<redis::Value>(&mut con));
        if !matches!(pong.await, Ok(Ok(_))) {
            return;
        }
    }
}

// ANCHOR: worker
/// One worker: its channels' messages, in order, each with a time limit.
async fn worker<H, Fut>(
    mut queue: QueueReceiver<Msg>,
    mut handler: H,
    limit: Duration,
    shared: Arc<Shared>,
    index: usize,
) where
    H: FnMut(Msg) -> Fut,
    Fut: Future<Output = Result<(), Rejected>>,
{
    let counters = &shared.workers[index];
    let mut batch = Vec::with_capacity(64);
    // One lock per batch, not per message; `0` means closed and drained.
    while queue.recv_many(&mut batch, 64).await > 0 {
        for msg in batch.drain(..) {
            // A panicking handler must not take the worker (and its channels) down with it.
            let mut handled = pin!(AssertUnwindSafe(handler(msg)).catch_unwind());
            // Most handlers finish without waiting: poll once, and start the clock (a timer
            // in the runtime) only for those that wait.
            let outcome = match futures::poll!(handled.as_mut()) {
                Poll::Ready(outcome) => Some(outcome),
                Poll::Pending => tokio::time::timeout(limit, handled).await.ok(),
            };
            match outcome {
                Some(Ok(Ok(()))) => counters.processed.add(1),
                Some(Ok(Err(Rejected::BadPayload))) => counters.bad_payload.add(1),
                // A handler error, or a panic caught above.
                Some(Ok(Err(Rejected::Failed(_))) | Err(_)) => counters.failed.add(1),
                // The handler's future is dropped here: a hung handler is abandoned, not
                // waited on. (A handler that *blocks the thread* cannot be stopped this way:
                // run blocking work with `spawn_blocking`.)
                None => counters.timed_out.add(1),
            }
        }
    }
}
// ANCHOR_END: worker

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let first = backoff.delay(0);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = backoff.delay(2);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = backoff.delay(40);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_secs(1));
        }
    }

    #[test]
    fn a_channel_keeps_its_worker_and_its_own_sequence_state() {
        let mut channels = Channels::new(4, Some(0));
        let names = ["a", "b", "a", "a", "c", "b", "a"];
        let mut workers = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            let state = channels.state(name);
            assert_eq!(*workers.entry(*name).or_insert(state.worker), state.worker);
            state.tracker.observe(Mark::bare(i as u64));
        }
        assert_eq!(channels.states.len(), 3);
        // Each channel saw its own numbers: a's 0, 2, 3, 6 miss 1, 4 and 5.
        let missing = |channels: &mut Channels, name| channels.state(name).tracker.stats().missing;
        assert_eq!(missing(&mut channels, "a"), 3);
        assert_eq!(missing(&mut channels, "b"), 1 + 3);
        assert_eq!(missing(&mut channels, "c"), 4);
        assert_eq!(channels.state("new").tracker.stats().items, 0);
    }

    #[test]
    fn report_counts_what_was_noticed() {
        let report = Report {
            missing: 3,
            dropped: 4,
            abandoned: 5,
            ..Report::default()
        };
        assert_eq!(report.noticed(), 12);
        assert!(
            report
                .to_string()
                .starts_with("received=0 processed=0 dropped=4")
        );
    }
}
