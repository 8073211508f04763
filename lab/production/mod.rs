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
//! One job per file: `config.rs` (what it is told: [`Config`], [`Backoff`], [`Rejected`],
//! [`Event`]), `reconnect.rs` (a RESP3 connection whose push sender is the reader, with
//! backoff), `reader.rs` (the push sender's `accept`: checks, gaps, the queues),
//! `workers.rs` (one worker per queue), `supervisor.rs` (subscribe, PING, reconnect and
//! resubscribe, shut down), `report.rs` (the counters), and here [`start`] and [`run`], which
//! put them together.
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

mod config;
mod reader;
mod reconnect;
mod report;
mod supervisor;
mod workers;

pub use config::*;
use reader::*;
use reconnect::*;
use report::*;
pub use report::{OUTCOMES, Report};
use supervisor::*;
use workers::*;

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
