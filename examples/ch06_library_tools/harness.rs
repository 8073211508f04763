//! The harness: each design (`lab::production`, and the two library-tools subscribers of
//! `tools.rs`) runs on its own thread and current-thread runtime, as a service would, with
//! the same handler: it records every message in a per-channel, per-publisher `Tally` and
//! misbehaves on request. The library designs get chapter 3's `Tracker` too (what any
//! subscriber must add to notice a loss), so that `noticed` means the same for all three.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use clap::ValueEnum;
use lab::Tally;
use lab::gaps::Tracker;
use lab::message::Mark;
use lab::overflow::{Overflow, Pushed, bounded};
use lab::production::{Config, Event, Rejected};
use redis::Msg;

use crate::CHANNELS;
pub use crate::misbehave::{Misbehave, channel_index, misbehave_on};
use crate::tools::{self, Told};

#[path = "runs.rs"]
mod runs;
use runs::*;

/// The subscriber designs compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum Design {
    /// `lab::production`: the book's hand-written subscriber.
    Production,
    /// `ConnectionManager` + automatic resubscription + a `broadcast::Sender<PushInfo>`.
    ManagerBroadcast,
    /// `ConnectionManager` + automatic resubscription + `lab::push::to_queue` into a bounded
    /// queue (drop-oldest).
    ManagerQueue,
    /// `manager-broadcast` as well as the library's tools allow without a supervisor of our
    /// own: retrying for ever, at most ~1 s apart (`tools::retry_forever`), and a PING through
    /// the manager every second.
    ManagerTuned,
}

impl Design {
    pub const ALL: [Design; 4] = [
        Design::Production,
        Design::ManagerBroadcast,
        Design::ManagerQueue,
        Design::ManagerTuned,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Design::Production => "production",
            Design::ManagerBroadcast => "manager-broadcast",
            Design::ManagerQueue => "manager-queue",
            Design::ManagerTuned => "manager-tuned",
        }
    }
}

/// What every design is given.
#[derive(Clone)]
pub struct Setup {
    pub url: String,
    /// The data channels; each design also subscribes its own probe channel
    /// ([`probe_channel`]), by which the harness sees from the server when it is subscribed.
    pub channels: Vec<String>,
    pub probe_base: String,
    /// Messages each queue (production: per worker) or the broadcast channel holds.
    pub capacity: usize,
    pub misbehave: Misbehave,
    /// At shutdown, how long the handler may take to finish what is queued.
    pub drain: Duration,
    /// The publishers number their messages, from 0, after the subscribers are up.
    pub numbered: bool,
    /// The most messages one publisher run sends on one channel (the tallies' size).
    pub room: u64,
    /// Larger payloads are counted as oversized by `lab::production` (the others have no
    /// such limit: the handler sees them).
    pub max_payload: usize,
}

/// The channel by which the server says whether `design` is subscribed.
pub fn probe_channel(base: &str, design: Design) -> String {
    format!("{base}:probe:{}", design.name())
}

/// Who sent a message: its channel, and its publisher's name (`None`: a bare number).
type Source = (usize, Option<String>);

/// What the harness sees of one subscriber: filled by its handler and its events.
#[derive(Default)]
struct Observed {
    tallies: HashMap<Source, Tally>,
    room: u64,
    /// Messages the handler took, good ones (duplicates included).
    handled: u64,
    /// Messages the handler rejected (bad payloads).
    rejected: u64,
    /// The highest sequence number the handler saw, per channel.
    last_seq: Vec<Option<u64>>,
    /// What the application was told, and when.
    events: Vec<(Instant, String)>,
    told_disconnected: u64,
    told_resubscribed: u64,
}

type Shared = Arc<Mutex<Observed>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Observed {
    fn told(&mut self, what: impl Into<String>) {
        self.events.push((Instant::now(), what.into()));
    }
}

/// The handler every design runs: decode, validate, record, misbehave. Bad input is
/// rejected (counted), never unwrapped.
async fn handle(
    shared: Shared,
    misbehave: Misbehave,
    numbered: bool,
    msg: Msg,
) -> Result<(), Rejected> {
    let result = check_and_record(&shared, numbered, &msg);
    match &result {
        Ok(Some((channel, seq))) => misbehave_on(misbehave, *channel, *seq).await,
        Ok(None) => misbehave_on(misbehave, 0, u64::MAX).await,
        Err(_) => lock(&shared).rejected += 1,
    }
    result.map(|_| ())
}

fn check_and_record(
    shared: &Shared,
    numbered: bool,
    msg: &Msg,
) -> Result<Option<(usize, u64)>, Rejected> {
    let text = std::str::from_utf8(msg.get_payload_bytes()).map_err(|_| Rejected::BadPayload)?;
    if !numbered {
        lock(shared).handled += 1;
        return Ok(None);
    }
    let Ok(Mark::Message { origin, seq }) = lab::mark_of(text.as_bytes()) else {
        return Err(Rejected::BadPayload);
    };
    let channel = channel_index(msg.get_channel_name()).ok_or(Rejected::BadPayload)?;
    let mut observed = lock(shared);
    let room = observed.room;
    observed
        .tallies
        .entry((channel, origin.map(|o| o.publisher.to_string())))
        .or_insert_with(|| Tally::new(room))
        .record(seq);
    observed.handled += 1;
    let last = &mut observed.last_seq[channel];
    *last = (*last).max(Some(seq));
    Ok(Some((channel, seq)))
}

/// Chapter 3's loss detection, per channel, for the library designs (`lab::production` has
/// its own, the same `Tracker`).
#[derive(Default)]
struct Gaps {
    channels: HashMap<String, Tracker>,
    /// The highest bare number seen per channel (the shutdown scenario's publishers).
    max_bare: HashMap<String, u64>,
}

impl Gaps {
    /// Count one message; false if it was a heartbeat (read here, never handled).
    fn observe(&mut self, msg: &Msg, numbered: bool) -> bool {
        let channel = msg.get_channel_name();
        let tracker = match self.channels.get_mut(channel) {
            Some(tracker) => tracker,
            None => self
                .channels
                .entry(channel.to_string())
                .or_insert_with(|| Tracker::starting_at(0)),
        };
        let mark = match numbered {
            true => lab::mark_of(msg.get_payload_bytes()).ok(),
            false => None,
        };
        match mark {
            Some(mark) => {
                tracker.observe(mark);
                if let Mark::Message { origin: None, seq } = mark {
                    let max = self.max_bare.entry(channel.to_string()).or_default();
                    *max = (*max).max(seq);
                }
                !matches!(mark, Mark::Heartbeat { .. })
            }
            None => {
                tracker.unnumbered();
                true
            }
        }
    }

    fn sum(&self, stat: impl Fn(&lab::gaps::GapStats) -> u64) -> u64 {
        self.channels.values().map(|t| stat(&t.stats())).sum()
    }

    /// Messages that reached the subscriber, from bare numbers counted from 0.
    fn reached_bare(&self) -> u64 {
        self.max_bare.values().map(|max| max + 1).sum()
    }
}

/// A design's counters at the end.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Messages the subscriber knows it lost.
    pub noticed: u64,
    pub missing: u64,
    pub dropped: u64,
    pub lagged: u64,
    pub abandoned: u64,
    pub unknown_gaps: u64,
    pub heartbeats: u64,
    pub oversized: u64,
    /// Messages that reached the subscriber (the shutdown scenario's `sent`).
    pub reached: u64,
    pub reconnects: Option<u64>,
    /// PINGs through the manager that failed (`manager-tuned`).
    pub pings_failed: u64,
    pub rss_idle_mb: f64,
}

/// One design under test, on its own thread and runtime.
pub struct Subscriber {
    pub design: Design,
    shared: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<Outcome>>>,
}

impl Subscriber {
    /// Start `design` on a current-thread runtime of its own; returns once it is subscribed
    /// (or failed).
    pub fn start(design: Design, setup: &Setup) -> Result<Self> {
        Self::start_on(design, setup, false)
    }

    /// Like [`start`](Self::start), on a multi-thread runtime if `multi_thread`.
    pub fn start_on(design: Design, setup: &Setup, multi_thread: bool) -> Result<Self> {
        let shared: Shared = Arc::new(Mutex::new(Observed {
            room: setup.room,
            last_seq: vec![None; CHANNELS],
            ..Observed::default()
        }));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let (setup, observed) = (setup.clone(), Arc::clone(&shared));
        let thread = std::thread::spawn(move || -> Result<Outcome> {
            let runtime = match multi_thread {
                true => tokio::runtime::Builder::new_multi_thread(),
                false => tokio::runtime::Builder::new_current_thread(),
            }
            .enable_all()
            .build()?;
            runtime.block_on(async move {
                match design {
                    Design::Production => run_production(setup, observed, ready_tx, stop_rx).await,
                    Design::ManagerBroadcast | Design::ManagerTuned => {
                        run_broadcast(design, setup, observed, ready_tx, stop_rx).await
                    }
                    Design::ManagerQueue => run_queue(setup, observed, ready_tx, stop_rx).await,
                }
            })
        });
        let ready = ready_rx.recv();
        let mut subscriber = Self {
            design,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready {
            Ok(Ok(())) => Ok(subscriber),
            Ok(Err(error)) => {
                let _ = subscriber.finish();
                Err(error.context(format!("starting {}", design.name())))
            }
            Err(_) => match subscriber.finish() {
                Err(error) => Err(error.context(format!("starting {}", design.name()))),
                Ok(_) => bail!("{} stopped before it subscribed", design.name()),
            },
        }
    }

    /// Distinct messages the handler saw, and how many came out of order.
    pub fn tally(&self) -> (u64, u64) {
        let observed = lock(&self.shared);
        let received = observed.tallies.values().map(Tally::received).sum();
        let out_of_order = observed.tallies.values().map(Tally::out_of_order).sum();
        (received, out_of_order)
    }

    /// Messages the handler took (good ones, duplicates included) and rejected.
    pub fn handled(&self) -> (u64, u64) {
        let observed = lock(&self.shared);
        (observed.handled, observed.rejected)
    }

    /// True once the handler saw message `last` on every channel.
    pub fn saw_everywhere(&self, last: u64) -> bool {
        lock(&self.shared)
            .last_seq
            .iter()
            .all(|seen| *seen >= Some(last))
    }

    /// How often the application was told the connection was lost, and subscribed again.
    pub fn told(&self) -> (u64, u64) {
        let observed = lock(&self.shared);
        (observed.told_disconnected, observed.told_resubscribed)
    }

    /// Ask it to stop (without waiting): unsubscribe, drain within the deadline.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stop and wait; the final counters.
    pub fn finish(&mut self) -> Result<Outcome> {
        self.stop();
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => bail!("the {} thread panicked", self.design.name()),
            None => bail!("already finished"),
        }
    }

    pub fn print_events(&self, since: Instant) {
        let observed = lock(&self.shared);
        for (at, event) in observed.events.iter().take(8) {
            let at = at.saturating_duration_since(since).as_secs_f64();
            println!("    [{at:>7.3}s] {event}");
        }
        if observed.events.len() > 8 {
            println!("    ... {} events in all", observed.events.len());
        }
    }
}

fn subscriptions(setup: &Setup, design: Design) -> Vec<String> {
    let mut channels = setup.channels.clone();
    channels.push(probe_channel(&setup.probe_base, design));
    channels
}
