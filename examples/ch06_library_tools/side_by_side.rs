//! The designs of one scenario side by side: starting them, the recovery each shows, and
//! their RESULT lines.

use super::*;

/// The three subscribers of one scenario, and what the server says about them.
pub(crate) struct SideBySide {
    pub(crate) subscribers: Vec<Subscriber>,
    pub(crate) probes: Probes,
    pub(crate) started: Instant,
}

impl SideBySide {
    pub(crate) fn start(designs: &[Design], setup: &Setup, admin_url: &str) -> Result<Self> {
        let probes = Probes::start(admin_url, &setup.probe_base, designs)?;
        let subscribers = designs
            .iter()
            .map(|design| Subscriber::start(*design, setup))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            subscribers,
            probes,
            started: Instant::now(),
        })
    }

    /// The fewest distinct messages any design has handled.
    pub(crate) fn least_received(&self) -> u64 {
        self.subscribers
            .iter()
            .map(|s| s.tally().0)
            .min()
            .unwrap_or(0)
    }

    /// The most distinct messages any design has handled.
    pub(crate) fn most_received(&self) -> u64 {
        self.subscribers
            .iter()
            .map(|s| s.tally().0)
            .max()
            .unwrap_or(0)
    }

    /// Wait until every design saw message `last` on every channel, or nothing new came
    /// for `quiet`.
    pub(crate) async fn settle(&self, last: u64, quiet: Duration) {
        let total = || -> u64 { self.subscribers.iter().map(|s| s.handled().0).sum() };
        let mut progress = (total(), Instant::now());
        loop {
            if self.subscribers.iter().all(|s| s.saw_everywhere(last)) {
                return;
            }
            let now = total();
            if now != progress.0 {
                progress = (now, Instant::now());
            } else if progress.1.elapsed() > quiet {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stop every design at once, then collect each one's counters.
    pub(crate) fn finish(mut self) -> Result<Vec<(Subscriber, Outcome)>> {
        for subscriber in &mut self.subscribers {
            subscriber.stop();
        }
        let mut finished = Vec::new();
        for mut subscriber in self.subscribers.drain(..) {
            let outcome = subscriber.finish()?;
            finished.push((subscriber, outcome));
        }
        Ok(finished)
    }
}

/// How a fault went for one design, beyond the counts.
#[derive(Clone, Copy, Default)]
pub(crate) struct Recovery {
    /// A reconnection was needed (the server dropped or lost the subscription).
    pub(crate) needed: bool,
    /// How long until the server had the subscription again, if it did.
    pub(crate) resubscribed: Option<Duration>,
}

/// The RESULT line of one design in a scenario where `sent` messages were published.
pub(crate) fn result(
    scenario: Scenario,
    subscriber: &Subscriber,
    outcome: &Outcome,
    sent: u64,
    recovery: Recovery,
    since: Instant,
) -> ResultLine {
    let (received, out_of_order) = subscriber.tally();
    let (told_disconnected, told_resubscribed) = subscriber.told();
    println!("  {}:", subscriber.design.name());
    subscriber.print_events(since);
    let mut line = ResultLine::new(
        &format!("{}/{}", scenario.name(), subscriber.design.name()),
        lab::REDIS_CURRENT,
        sent,
        received,
        outcome.noticed,
    )
    .with("out_of_order", out_of_order)
    .with("missing", outcome.missing)
    .with("dropped", outcome.dropped)
    .with("lagged", outcome.lagged)
    .with("abandoned", outcome.abandoned)
    .with("unknown_gaps", outcome.unknown_gaps)
    .with("heartbeats", outcome.heartbeats)
    .with("told_disconnected", told_disconnected)
    .with("told_resubscribed", told_resubscribed);
    if recovery.needed {
        line = match recovery.resubscribed {
            Some(after) => line
                .with("resubscribed", "yes")
                .with("resubscribed_ms", after.as_millis()),
            None => line.with("resubscribed", "no"),
        };
    }
    if let Some(reconnects) = outcome.reconnects {
        line = line.with("reconnects", reconnects);
    }
    if subscriber.design == Design::ManagerTuned {
        line = line.with("pings_failed", outcome.pings_failed);
    }
    line
}

pub(crate) fn base_setup(url: &str, base: &str, room: u64) -> Setup {
    Setup {
        url: url.to_string(),
        channels: channels(base),
        probe_base: base.to_string(),
        capacity: 10_000,
        misbehave: Misbehave::Nothing,
        drain: Duration::from_secs(1),
        numbered: true,
        room,
        max_payload: 1 << 20,
    }
}

/// From when a design's resubscription is timed.
#[derive(Clone, Copy)]
pub(crate) enum Since {
    /// From this moment, once the server holds more than `stale` subscriptions of it (the
    /// ones it still keeps for connections that went silent).
    At { at: Instant, stale: u64 },
    /// From the moment the server dropped the design's subscription, after `at`.
    OwnDrop { at: Instant },
}

/// A fault scenario in progress: the subscribers, side by side, and their publishers (named,
/// one per channel, numbering from 0 with heartbeats).
pub(crate) struct Run {
    pub(crate) scenario: Scenario,
    pub(crate) side: SideBySide,
    pub(crate) publishers: Vec<Publisher>,
    /// Where the publishers and the probes connect (the server itself, never a proxy).
    pub(crate) url: String,
}

impl Run {
    pub(crate) fn start(
        scenario: Scenario,
        designs: &[Design],
        server_url: &str,
        setup: &Setup,
        payload: usize,
    ) -> Result<Self> {
        Ok(Self {
            scenario,
            side: SideBySide::start(designs, setup, server_url)?,
            publishers: publishers(&setup.channels)
                .into_iter()
                .map(|p| p.payload_size(payload))
                .collect(),
            url: server_url.to_string(),
        })
    }

    pub(crate) async fn publish(&self, seqs: std::ops::Range<u64>) -> Result<u64> {
        publish(&self.url, &self.publishers, seqs, false).await
    }

    /// After the fault: wait up to `limit` for every design to be subscribed again, publish
    /// the fence (`n..n + FENCE`) and the goodbyes, and read every design's counts.
    pub(crate) async fn end(
        self,
        since: Since,
        limit: Duration,
        n: u64,
    ) -> Result<Vec<ResultLine>> {
        let resubscribed: HashMap<Design, Option<Duration>> = match since {
            Since::At { at, stale } => self.side.probes.wait_resubscribed(at, stale, limit).await,
            Since::OwnDrop { at } => {
                let deadline = Instant::now() + limit;
                loop {
                    let found: HashMap<Design, Option<Duration>> = self
                        .side
                        .subscribers
                        .iter()
                        .map(|s| {
                            let probes = &self.side.probes;
                            let back = probes.first_zero(s.design, at).and_then(|dropped| {
                                probes
                                    .first_above(s.design, dropped, 0)
                                    .map(|back| back - dropped)
                            });
                            (s.design, back)
                        })
                        .collect();
                    if found.values().all(Option::is_some) || Instant::now() > deadline {
                        break found;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        publish(&self.url, &self.publishers, n..n + FENCE, true).await?;
        self.side
            .settle(n + FENCE - 1, Duration::from_secs(2))
            .await;
        let started = self.side.started;
        let finished = self.side.finish()?;
        let sent = (n + FENCE) * CHANNELS as u64;
        Ok(finished
            .iter()
            .map(|(subscriber, outcome)| {
                let recovery = Recovery {
                    needed: true,
                    resubscribed: resubscribed.get(&subscriber.design).copied().flatten(),
                };
                result(self.scenario, subscriber, outcome, sent, recovery, started)
            })
            .collect())
    }
}
