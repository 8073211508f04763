//! The harness around the subscriber under test: it runs `lab::production` on its own thread
//! and current-thread runtime, as a service would, with a handler that records what arrived
//! (per channel and publisher) and misbehaves on request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use lab::Tally;
use lab::message::Mark;
use lab::production::{Config, Event, Rejected, Report};

use crate::CHANNELS;
pub use crate::misbehave::{Misbehave, channel_index, misbehave_on};

/// Who sent a message: its channel, and its publisher's name and epoch (`None`: a bare
/// number, anonymous).
pub type Source = (usize, Option<(String, u64)>);

/// What the harness sees of the subscriber: a tally per channel and publisher, filled by the
/// handler, and the subscriber's events with the time they happened.
#[derive(Default)]
struct Observed {
    tallies: HashMap<Source, Tally>,
    /// Room in each tally: the most messages one publisher sends in one run.
    sent_per_source: u64,
    /// Every message handled, duplicates included (bare publishers share numbers).
    handled: u64,
    events: Vec<(Instant, String)>,
    subscribed: Vec<Instant>,
    /// True between a `Subscribed` event and the next `Disconnected`.
    connected: bool,
    /// The highest sequence number the handler saw, per channel.
    last_seq: Vec<Option<u64>>,
}

impl Observed {
    fn record(&mut self, channel: usize, origin: Option<(String, u64)>, seq: u64) {
        let room = self.sent_per_source;
        self.tallies
            .entry((channel, origin))
            .or_insert_with(|| Tally::new(room))
            .record(seq);
        self.handled += 1;
        let last = &mut self.last_seq[channel];
        *last = (*last).max(Some(seq));
    }
}

type Shared = Arc<Mutex<Observed>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Observed> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The subscriber under test, running on its own thread and runtime.
pub struct Subscriber {
    shared: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<Report>>>,
}

impl Subscriber {
    /// Start the subscriber; `sent_per_source` is the most messages any one publisher run
    /// sends on one channel.
    pub fn start(config: Config, sent_per_source: u64, misbehave: Misbehave) -> Result<Self> {
        let shared: Shared = Arc::new(Mutex::new(Observed {
            sent_per_source,
            last_seq: vec![None; CHANNELS],
            ..Observed::default()
        }));
        let mut config = config;
        let events = Arc::clone(&shared);
        config.on_event = Some(Arc::new(move |event: &Event| {
            let mut observed = lock(&events);
            match event {
                Event::Subscribed { .. } => {
                    observed.subscribed.push(Instant::now());
                    observed.connected = true;
                }
                Event::Disconnected { .. } => observed.connected = false,
                _ => {}
            }
            observed.events.push((Instant::now(), event.to_string()));
        }));
        let handler_shared = Arc::clone(&shared);
        // ANCHOR: handler
        // The handler a service would write: decode, validate, then do the work. A payload
        // it cannot use is rejected (counted), never unwrapped.
        let handler = move |msg: redis::Msg| {
            let shared = Arc::clone(&handler_shared);
            async move {
                let text = std::str::from_utf8(msg.get_payload_bytes())
                    .map_err(|_| Rejected::BadPayload)?;
                let Ok(Mark::Message { origin, seq }) = lab::mark_of(text.as_bytes()) else {
                    return Err(Rejected::BadPayload);
                };
                let channel = channel_index(msg.get_channel_name()).ok_or(Rejected::BadPayload)?;
                let origin = origin.map(|o| (o.publisher.to_string(), o.epoch));
                lock(&shared).record(channel, origin, seq);
                misbehave_on(misbehave, channel, seq).await;
                Ok(())
            }
        };
        // ANCHOR_END: handler
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || -> Result<Report> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let running = lab::production::start(config, handler).await;
                let _ = ready_tx.send(());
                let running = running?;
                let _ = stop_rx.await;
                running.shutdown().await
            })
        });
        // Wait until subscribed (or failed): messages published from now on are heard.
        let _ = ready_rx.recv();
        let mut subscriber = Self {
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        if subscriber
            .thread
            .as_ref()
            .is_some_and(|thread| thread.is_finished())
        {
            subscriber.finish()?;
            bail!("the subscriber stopped at once");
        }
        Ok(subscriber)
    }

    pub fn received(&self) -> u64 {
        lock(&self.shared)
            .tallies
            .values()
            .map(Tally::received)
            .sum()
    }

    /// Wait until every channel's handler saw message `last`, or nothing new came for `quiet`.
    pub async fn settle(&self, last: u64, quiet: Duration) {
        let mut progress = (self.received(), Instant::now());
        loop {
            if lock(&self.shared)
                .last_seq
                .iter()
                .all(|seen| *seen >= Some(last))
            {
                return;
            }
            let now = self.received();
            if now != progress.0 {
                progress = (now, Instant::now());
            } else if progress.1.elapsed() > quiet {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Wait until the subscriber is subscribed on a live connection.
    pub async fn wait_connected(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while !lock(&self.shared).connected {
            if Instant::now() > deadline {
                bail!("the subscriber was not connected within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Wait until the subscriber subscribed `count` times in all (first time included).
    pub async fn wait_subscriptions(&self, count: usize, limit: Duration) -> Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = lock(&self.shared).subscribed.get(count - 1) {
                return Ok(*at);
            }
            if Instant::now() > deadline {
                bail!("the subscriber did not subscribe again within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Every message the handler took, duplicates included.
    pub fn handled(&self) -> u64 {
        lock(&self.shared).handled
    }

    /// Wait until the handler took `count` messages, or nothing new came for `quiet`.
    pub async fn settle_count(&self, count: u64, quiet: Duration) {
        let mut progress = (self.handled(), Instant::now());
        while progress.0 < count {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now = self.handled();
            if now != progress.0 {
                progress = (now, Instant::now());
            } else if progress.1.elapsed() > quiet {
                return;
            }
        }
    }

    /// Shut down; the final report.
    pub fn finish(&mut self) -> Result<Report> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(report)) => report,
            Some(Err(_)) => bail!("the subscriber thread panicked"),
            None => bail!("already finished"),
        }
    }

    /// Distinct messages the handler saw, over all channels, and how many came out of order.
    pub fn tally(&self) -> (u64, u64) {
        let observed = lock(&self.shared);
        let received = observed.tallies.values().map(Tally::received).sum();
        let out_of_order = observed.tallies.values().map(Tally::out_of_order).sum();
        (received, out_of_order)
    }

    pub fn print_events(&self) {
        let observed = lock(&self.shared);
        let start = observed.events.first().map(|(at, _)| *at);
        for (at, event) in observed.events.iter().take(12) {
            let since = start.map(|s| at.duration_since(s)).unwrap_or_default();
            println!("  [{:>7.3}s] {event}", since.as_secs_f64());
        }
        if observed.events.len() > 12 {
            println!("  ... {} events in all", observed.events.len());
        }
    }
}
