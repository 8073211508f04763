//! What the subscriber is told: its configuration, the backoff between reconnections, what a
//! handler may reject, and the events it reports as they happen.

use super::*;

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

    pub(super) fn event(&self, event: Event) {
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
