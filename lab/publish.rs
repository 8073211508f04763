//! A publisher of numbered messages: bare numbers, or named with heartbeats
//! ([`Publisher::named`], the format of `lab::message`).
//!
//! ```no_run
//! # async fn demo(server: &lab::RedisServer) -> anyhow::Result<()> {
//! let mut con = server.client()?.get_multiplexed_async_connection().await?;
//! let report = lab::Publisher::new("news").payload_size(64).send(&mut con, 0..1000).await?;
//! assert_eq!(report.sent, 1000);
//!
//! // A named publisher: heartbeats while it sends, and a goodbye when it is done.
//! let billing = lab::Publisher::new("news").named(lab::message::Identity::new("billing"));
//! billing.send(&mut con, 0..1000).await?;
//! billing.goodbye(&mut con, 1000).await?;
//! # Ok(()) }
//! ```

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::RedisResult;
use redis::aio::ConnectionLike;

use crate::message::{Identity, numbered};

/// How fast the publisher sends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// Pipelined: up to [`Publisher::pipeline_len`] PUBLISH commands written at once, the
    /// next batch as soon as the replies of the previous one are in. Messages reach the
    /// subscriber back to back, many per socket read.
    Burst,
    /// One PUBLISH, wait for its reply, then the next.
    RoundTrip,
    /// About this many messages per second, sent in small pipelined batches every millisecond
    /// (after a stall, in batches of at most [`Publisher::pipeline_len`]).
    Rate(f64),
}

/// What the server replied to the PUBLISH commands.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PublishReport {
    /// Messages published.
    pub sent: u64,
    /// The sum of the PUBLISH replies: in how many subscribers' output buffers the messages
    /// were queued. Queued is not delivered: a subscriber that is disconnected later loses
    /// what was queued for it.
    pub queued_for: u64,
    /// Messages whose PUBLISH replied 0: nobody was subscribed when they arrived.
    pub unheard: u64,
    /// How long publishing took.
    pub elapsed: Duration,
}

/// Publishes numbered messages ([`crate::numbered`]) on one channel.
#[derive(Clone, Debug)]
pub struct Publisher {
    channel: String,
    payload_size: usize,
    pace: Pace,
    pipeline_len: usize,
    command: &'static str,
    /// Named publishers number `<name>:<epoch>:<seq>#` and send heartbeats.
    identity: Option<Identity>,
    heartbeat_every: Duration,
    /// When the last heartbeat went out, shared by clones (they are the same publisher).
    last_heartbeat: Arc<Mutex<Instant>>,
}

impl Publisher {
    /// A burst publisher of 32-byte messages on `channel`.
    pub fn new(channel: &str) -> Self {
        Self {
            channel: channel.to_string(),
            payload_size: 32,
            pace: Pace::Burst,
            pipeline_len: 1000,
            command: "PUBLISH",
            identity: None,
            heartbeat_every: Duration::from_millis(100),
            last_heartbeat: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// Number messages as `identity` (`<name>:<epoch>:<seq>#`), and send a heartbeat at
    /// least every [`Publisher::heartbeat_every`] while sending. A restarted publisher is a
    /// new `Identity` (a new epoch).
    pub fn named(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// How often a named publisher sends a heartbeat while it sends (default 100 ms).
    pub fn heartbeat_every(mut self, every: Duration) -> Self {
        self.heartbeat_every = every;
        self
    }

    /// Who this publisher is, if named.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Say, on the channel, that messages `..next` were published (named publishers only;
    /// a bare publisher has nobody to speak for). On the same connection as the messages, so
    /// it arrives after them.
    pub async fn heartbeat<C: ConnectionLike>(&self, con: &mut C, next: u64) -> RedisResult<()> {
        self.beat(con, next, false).await
    }

    /// The last heartbeat: messages `..next` were published, and nothing more will come.
    pub async fn goodbye<C: ConnectionLike>(&self, con: &mut C, next: u64) -> RedisResult<()> {
        self.beat(con, next, true).await
    }

    async fn beat<C: ConnectionLike>(&self, con: &mut C, next: u64, last: bool) -> RedisResult<()> {
        let Some(identity) = &self.identity else {
            return Ok(());
        };
        *self
            .last_heartbeat
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        redis::cmd(self.command)
            .arg(&self.channel)
            .arg(identity.heartbeat(next, last))
            .exec_async(con)
            .await
    }

    /// A heartbeat if the last one is older than `heartbeat_every`.
    async fn heartbeat_if_due<C: ConnectionLike>(&self, con: &mut C, next: u64) -> RedisResult<()> {
        let due = self
            .last_heartbeat
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
            >= self.heartbeat_every;
        if due {
            self.heartbeat(con, next).await?;
        }
        Ok(())
    }

    /// Pad every payload to this many bytes.
    pub fn payload_size(mut self, bytes: usize) -> Self {
        self.payload_size = bytes;
        self
    }

    /// Burst, one per round trip, or a rate.
    pub fn pace(mut self, pace: Pace) -> Self {
        self.pace = pace;
        self
    }

    /// How many PUBLISH commands one burst pipeline carries (default 1000).
    pub fn pipeline_len(mut self, len: usize) -> Self {
        self.pipeline_len = len.max(1);
        self
    }

    /// Use SPUBLISH (sharded Pub/Sub, Redis 7) instead of PUBLISH.
    pub fn sharded(mut self) -> Self {
        self.command = "SPUBLISH";
        self
    }

    /// The channel this publisher sends on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Publish the messages numbered `seqs`, in order.
    pub async fn send<C: ConnectionLike>(
        &self,
        con: &mut C,
        seqs: Range<u64>,
    ) -> RedisResult<PublishReport> {
        let started = Instant::now();
        let mut report = PublishReport::default();
        match self.pace {
            Pace::Burst => {
                let mut next = seqs.start;
                while next < seqs.end {
                    let batch_end = (next + self.pipeline_len as u64).min(seqs.end);
                    self.send_batch(con, next..batch_end, &mut report).await?;
                    next = batch_end;
                    self.heartbeat_if_due(con, next).await?;
                }
            }
            Pace::RoundTrip => {
                for seq in seqs {
                    self.send_batch(con, seq..seq + 1, &mut report).await?;
                    self.heartbeat_if_due(con, seq + 1).await?;
                }
            }
            Pace::Rate(per_second) => {
                let mut next = seqs.start;
                while next < seqs.end {
                    // How many messages should be out by now, at this rate. After a stall
                    // (a loaded machine) catch up in pipelines of at most `pipeline_len`,
                    // not in one pipeline of everything overdue.
                    let due = (started.elapsed().as_secs_f64() * per_second) as u64;
                    let batch_end = (seqs.start + due + 1)
                        .min(next + self.pipeline_len as u64)
                        .min(seqs.end);
                    if batch_end > next {
                        self.send_batch(con, next..batch_end, &mut report).await?;
                        next = batch_end;
                    }
                    self.heartbeat_if_due(con, next).await?;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    async fn send_batch<C: ConnectionLike>(
        &self,
        con: &mut C,
        seqs: Range<u64>,
        report: &mut PublishReport,
    ) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        for seq in seqs {
            let payload = match &self.identity {
                Some(identity) => identity.message(seq, self.payload_size),
                None => numbered(seq, self.payload_size),
            };
            pipe.cmd(self.command).arg(&self.channel).arg(payload);
        }
        let replies: Vec<u64> = pipe.query_async(con).await?;
        report.sent += replies.len() as u64;
        report.queued_for += replies.iter().sum::<u64>();
        report.unheard += replies.iter().filter(|&&n| n == 0).count() as u64;
        Ok(())
    }
}

/// Publish `0..per_channel` (32-byte bare-numbered messages) on every channel, with `bad`
/// bad payloads mixed in, one after every hundredth message until they are all out: in
/// turn not UTF-8, not numbered, and one byte over 8 KiB. Chapter 6's bad-payload fault; the
/// number of bad payloads sent.
pub async fn with_bad_payloads<C: ConnectionLike>(
    con: &mut C,
    channels: &[String],
    per_channel: u64,
    bad: u64,
) -> RedisResult<u64> {
    let mut pipe = redis::pipe();
    let mut bad_sent = 0;
    for seq in 0..per_channel {
        for channel in channels {
            pipe.cmd("PUBLISH")
                .arg(channel)
                .arg(numbered(seq, 32))
                .ignore();
            if bad_sent < bad && seq % 100 == 50 {
                let payload = match bad_sent % 3 {
                    0 => vec![0xff, 0xfe, 0xfd, b'#'],
                    1 => b"{\"not\": \"numbered\"}".to_vec(),
                    _ => vec![b'x'; 8 * 1024 + 1],
                };
                pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                bad_sent += 1;
            }
        }
        if seq % 250 == 249 || seq + 1 == per_channel {
            pipe.query_async::<()>(con).await?;
            pipe.clear();
        }
    }
    Ok(bad_sent)
}

/// Send `0..n` and a goodbye in a task of its own, on a connection with no response timeout:
/// while the server is stopped (SIGSTOP), a PUBLISH waits rather than fail and leave us not
/// knowing whether it was executed. The task's result is the number sent.
pub async fn spawn_patient(
    publisher: Publisher,
    client: &redis::Client,
    n: u64,
) -> RedisResult<tokio::task::JoinHandle<RedisResult<u64>>> {
    let patient = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut con = client
        .get_multiplexed_async_connection_with_config(&patient)
        .await?;
    Ok(tokio::spawn(async move {
        let sent = publisher.send(&mut con, 0..n).await?.sent;
        publisher.goodbye(&mut con, n).await?;
        Ok(sent)
    }))
}
