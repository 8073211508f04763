//! A worker of chapter 8's consumer group: it reads new messages and claims those a dead
//! consumer left pending, handles each one once (the work and its dedup marker in one Lua
//! script), acknowledges it, and moves a message delivered too often to a dead-letter
//! stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamPendingCountReply,
    StreamReadOptions, StreamReadReply,
};

use crate::{BATCH, DEDUP_TTL_SECS, Keys, MAX_DELIVERIES};

// ANCHOR: handle_once
/// The work and its dedup marker, in one atomic step. `SET NX` succeeds only the first time
/// a message id is seen; only then does the work run. A worker killed after this script
/// but before its XACK gets the message redelivered, and the second run returns 0.
///
/// KEYS: 1 the message's dedup marker, 2 the effects hash, 3 the attempts hash,
/// 4 the dedup counter. ARGV: 1 the job's number, 2 the marker's TTL in seconds.
pub const HANDLE_ONCE: &str = r"
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  -- The work. In this lab it counts itself, so that the parent can check afterwards
  -- how many times each job's work happened.
  redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
  return 1
end
redis.call('INCR', KEYS[4])
return 0
";
// ANCHOR_END: handle_once

pub struct Worker {
    pub con: MultiplexedConnection,
    pub keys: Keys,
    pub name: String,
    pub claim_idle: Duration,
    /// The SHA1 of HANDLE_ONCE, loaded once with SCRIPT LOAD, run with EVALSHA.
    pub handle_once: String,
}

/// Why a handler refused a message. Left pending, the message comes back later.
#[derive(Debug)]
struct HandlerFailed(String);

impl Worker {
    // ANCHOR: worker_loop
    /// Read, handle, acknowledge, until `stop` is set. Each round first takes over messages
    /// that another consumer has held for longer than `claim_idle` (it probably died), then
    /// reads new ones.
    pub async fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        let keys = self.keys.clone();
        let mut claim_cursor = "0-0".to_string();
        let read_new = StreamReadOptions::default()
            .group(&keys.group, &self.name)
            .count(BATCH)
            // Well under the connection's response timeout: a blocked read is a reply too.
            .block(100);
        while !stop.load(Ordering::Relaxed) {
            // 1. Messages idle in someone's pending list for longer than claim_idle become
            //    ours; Redis counts this as another delivery. The cursor walks the pending
            //    list; "0-0" means it wrapped around.
            let claimed: StreamAutoClaimReply = self
                .con
                .xautoclaim_options(
                    &keys.stream,
                    &keys.group,
                    &self.name,
                    self.claim_idle.as_millis() as u64,
                    &claim_cursor,
                    StreamAutoClaimOptions::default().count(BATCH),
                )
                .await?;
            claim_cursor = claimed.next_stream_id;
            if !claimed.claimed.is_empty() {
                let deliveries = self.delivery_counts(&claimed.claimed).await?;
                self.process(claimed.claimed, &deliveries).await?;
            }

            // 2. Messages never delivered to anyone in the group (">").
            let reply: Option<StreamReadReply> = self
                .con
                .xread_options(&[&keys.stream], &[">"], &read_new)
                .await?;
            for stream in reply.map(|r| r.keys).unwrap_or_default() {
                // First delivery: no need to ask for the counter.
                self.process(stream.ids, &HashMap::new()).await?;
            }
        }
        Ok(())
    }
    // ANCHOR_END: worker_loop

    // ANCHOR: process
    /// Handle a batch, then acknowledge what was handled. A message over its delivery
    /// budget goes to the dead-letter stream; one whose handler failed stays pending and
    /// comes back after `claim_idle`.
    async fn process(
        &mut self,
        batch: Vec<StreamId>,
        deliveries: &HashMap<String, usize>,
    ) -> Result<()> {
        let mut handled = Vec::with_capacity(batch.len());
        for message in &batch {
            let delivered = deliveries.get(&message.id).copied().unwrap_or(1);
            if delivered > MAX_DELIVERIES {
                self.dead_letter(message, delivered).await?;
                continue;
            }
            match self.handle(message).await? {
                Ok(()) => handled.push(message.id.as_str()),
                Err(HandlerFailed(_why)) => {} // no XACK: it will be redelivered
            }
        }
        // XACK only after the work. Killed before this line, the whole batch is
        // redelivered: at-least-once, never at-most-once.
        if !handled.is_empty() {
            let _acked: usize = self
                .con
                .xack(&self.keys.stream, &self.keys.group, &handled)
                .await?;
        }
        Ok(())
    }
    // ANCHOR_END: process

    /// Run the handler on one message. The outer `Result` is a Redis error (stop the
    /// worker); the inner one is the handler's verdict.
    async fn handle(&mut self, message: &StreamId) -> Result<Result<(), HandlerFailed>> {
        let payload: Vec<u8> = message
            .get("payload")
            .with_context(|| format!("message {} has no payload field", message.id))?;
        let seq = lab::seq_of(&payload)
            .map_err(|error| anyhow::anyhow!("message {}: {error:?}", message.id))?;
        if message.contains_key("poison") {
            // A job this handler can never complete (bad data, a bug). Counted, then refused.
            let _: u64 = self.con.hincr(&self.keys.attempts, seq, 1).await?;
            return Ok(Err(HandlerFailed(format!("job {seq} is poison"))));
        }
        let _first_time: u64 = redis::cmd("EVALSHA")
            .arg(&self.handle_once)
            .arg(4)
            .arg(self.keys.dedup_marker(&message.id))
            .arg(&self.keys.effects)
            .arg(&self.keys.attempts)
            .arg(&self.keys.deduplicated)
            .arg(seq)
            .arg(DEDUP_TTL_SECS)
            .query_async(&mut self.con)
            .await?;
        Ok(Ok(()))
    }

    // ANCHOR: delivery_counts
    /// How many times each claimed message has been delivered, from the group's pending
    /// entries list (XPENDING's fourth field). XAUTOCLAIM has just added one.
    async fn delivery_counts(&mut self, batch: &[StreamId]) -> Result<HashMap<String, usize>> {
        let mut pipe = redis::pipe();
        for message in batch {
            pipe.xpending_count(
                &self.keys.stream,
                &self.keys.group,
                &message.id,
                &message.id,
                1,
            );
        }
        let replies: Vec<StreamPendingCountReply> = pipe.query_async(&mut self.con).await?;
        Ok(replies
            .into_iter()
            .flat_map(|reply| reply.ids)
            .map(|pending| (pending.id, pending.times_delivered))
            .collect())
    }
    // ANCHOR_END: delivery_counts

    // ANCHOR: dead_letter
    /// Park a message that failed too often: copy it to the dead-letter stream with why,
    /// and acknowledge it, in one MULTI/EXEC so that it is never in both places or neither.
    async fn dead_letter(&mut self, message: &StreamId, delivered: usize) -> Result<()> {
        let payload: Vec<u8> = message.get("payload").unwrap_or_default();
        let fields: [(&str, Vec<u8>); 4] = [
            ("id", message.id.clone().into_bytes()),
            ("payload", payload),
            ("deliveries", delivered.to_string().into_bytes()),
            ("consumer", self.name.clone().into_bytes()),
        ];
        redis::pipe()
            .atomic()
            .xadd(&self.keys.dead_letter, "*", &fields)
            .ignore()
            .xack(&self.keys.stream, &self.keys.group, &[&message.id])
            .ignore()
            .exec_async(&mut self.con)
            .await?;
        Ok(())
    }
    // ANCHOR_END: dead_letter
}
