//! The reading side: the push sender's `accept`, which runs in redis-rs's read loop for every
//! message, checks it, counts gaps and pushes it into the owning worker's bounded queue.

use super::*;

/// The intake is only ever locked by one read loop at a time, for a few instructions; a
/// panic while it was held cannot leave it inconsistent, so carry on.
pub(super) fn lock(intake: &Mutex<Intake>) -> MutexGuard<'_, Intake> {
    intake.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the reader knows about one channel.
pub(super) struct ChannelState {
    /// The worker that owns this channel.
    pub(super) worker: usize,
    /// What its numbered publishers sent and what arrived (`lab::gaps`).
    pub(super) tracker: Tracker,
}

/// Every channel seen so far.
pub(super) struct Channels {
    /// Every channel's name and state, in the order they were first seen.
    pub(super) states: Vec<(String, ChannelState)>,
    /// Name -> position in `states`.
    pub(super) index: HashMap<String, usize>,
    /// The channel of the previous message: a burst usually comes on one channel, and
    /// comparing two short strings is cheaper than hashing one.
    pub(super) last: usize,
    pub(super) hasher: RandomState,
    pub(super) workers: u64,
    pub(super) first_seq: Option<u64>,
}

impl Channels {
    pub(super) fn new(workers: usize, first_seq: Option<u64>) -> Self {
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
    pub(super) fn state(&mut self, channel: &str) -> &mut ChannelState {
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
pub(super) struct Intake {
    pub(super) config: Config,
    pub(super) queues: Queues,
    pub(super) shared: Arc<Shared>,
    pub(super) channels: Channels,
    /// A message without a number arrived: a reconnection's loss cannot be counted.
    pub(super) saw_unnumbered: bool,
}

impl Intake {
    pub(super) fn new(config: &Config, queues: &Queues, shared: &Arc<Shared>) -> Self {
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
    pub(super) fn accept(&mut self, msg: Msg) -> bool {
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
