//! What the workers left in Redis, read by the parent: progress to poll, who holds what,
//! the outcome of a run, and the crash test's report.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamPendingCountReply, StreamPendingReply};

use crate::{BATCH, Keys};

/// Make the stream and its consumer group (reading from the start).
pub async fn create_group(con: &mut MultiplexedConnection, keys: &Keys) -> Result<()> {
    let () = con
        .xgroup_create_mkstream(&keys.stream, &keys.group, "0")
        .await
        .context("XGROUP CREATE")?;
    Ok(())
}

/// What the workers left in Redis, read by the parent.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Jobs whose work happened at least once.
    pub handled: u64,
    /// Jobs whose work happened more than once (must be 0).
    pub twice: u64,
    /// Handler calls in total (first deliveries and redeliveries).
    pub handler_calls: u64,
    /// Jobs delivered to the handler more than once.
    pub redelivered: u64,
    /// Deliveries the dedup marker turned into no-ops.
    pub deduplicated: u64,
    /// Entries in the dead-letter stream.
    pub dead_lettered: u64,
    /// Messages still pending (delivered, not acknowledged) in the group.
    pub pending: u64,
}

pub async fn outcome(con: &mut MultiplexedConnection, keys: &Keys) -> Result<Outcome> {
    let effects: HashMap<u64, u64> = con.hgetall(&keys.effects).await?;
    let attempts: HashMap<u64, u64> = con.hgetall(&keys.attempts).await?;
    let deduplicated: Option<u64> = con.get(&keys.deduplicated).await?;
    let dead_lettered: u64 = con.xlen(&keys.dead_letter).await?;
    let pending: StreamPendingReply = con.xpending(&keys.stream, &keys.group).await?;
    Ok(Outcome {
        handled: effects.len() as u64,
        twice: effects.values().filter(|&&n| n > 1).count() as u64,
        handler_calls: attempts.values().sum(),
        redelivered: attempts.values().filter(|&&n| n > 1).count() as u64,
        deduplicated: deduplicated.unwrap_or(0),
        dead_lettered,
        pending: pending.count() as u64,
    })
}

/// Progress, cheap enough to poll: jobs handled, parked, and messages pending.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub handled: u64,
    pub dead_lettered: u64,
    pub pending: u64,
}

pub async fn progress(con: &mut MultiplexedConnection, keys: &Keys) -> Result<Progress> {
    let (handled, dead_lettered, pending): (u64, u64, StreamPendingReply) = redis::pipe()
        .hlen(&keys.effects)
        .xlen(&keys.dead_letter)
        .xpending(&keys.stream, &keys.group)
        .query_async(con)
        .await?;
    Ok(Progress {
        handled,
        dead_lettered,
        pending: pending.count() as u64,
    })
}

/// Poll until `done(progress)` holds and nothing is pending, or `limit` passes.
pub async fn wait_until(
    con: &mut MultiplexedConnection,
    keys: &Keys,
    limit: Duration,
    done: impl Fn(&Progress) -> bool,
) -> Result<Progress> {
    let deadline = Instant::now() + limit;
    loop {
        let now = progress(con, keys).await?;
        if (done(&now) && now.pending == 0) || Instant::now() > deadline {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many messages `consumer` holds: delivered to it, not acknowledged.
pub async fn pending_of(
    con: &mut MultiplexedConnection,
    keys: &Keys,
    consumer: &str,
) -> Result<usize> {
    let pending: StreamPendingReply = con.xpending(&keys.stream, &keys.group).await?;
    Ok(match pending {
        StreamPendingReply::Data(data) => data
            .consumers
            .iter()
            .find(|c| c.name == consumer)
            .map_or(0, |c| c.pending),
        _ => 0, // Empty (and any future variant): nothing pending
    })
}

/// What a killed worker held: messages delivered to it and not acknowledged, and how many
/// of those it had already handled (their dedup marker exists).
pub async fn held_by(
    con: &mut MultiplexedConnection,
    keys: &Keys,
    consumer: &str,
) -> Result<(u64, u64)> {
    let pending: StreamPendingCountReply = con
        .xpending_consumer_count(&keys.stream, &keys.group, "-", "+", 10 * BATCH, consumer)
        .await?;
    let mut handled = 0;
    for entry in &pending.ids {
        let exists: bool = con.exists(keys.dedup_marker(&entry.id)).await?;
        handled += u64::from(exists);
    }
    Ok((pending.ids.len() as u64, handled))
}

/// What the crash test prints once every job is done: a summary, and its RESULT line.
pub fn report_crash(
    messages: u64,
    kills: usize,
    restarts: u32,
    kill_reports: &[(u64, u64)],
    elapsed: Duration,
    result: &Outcome,
) {
    // Killed with part of its batch handled: the hardest case for "exactly once".
    let partly_handled = kill_reports
        .iter()
        .filter(|&&(held, handled)| handled > 0 && handled < held)
        .count();
    println!(
        "  {} of {messages} jobs handled in {elapsed:.1?}; {} handler calls; {} jobs \
         delivered more than once; {} redeliveries deduplicated; {} jobs whose work ran twice",
        result.handled, result.handler_calls, result.redelivered, result.deduplicated, result.twice
    );
    lab::ResultLine::new(
        &format!("crash-{kills}-kills"),
        lab::REDIS_CURRENT,
        messages,
        result.handled,
        0,
    )
    .with("kills", kill_reports.len())
    .with("mid_batch_kills", kill_reports.len())
    .with("partly_handled_kills", partly_handled)
    .with("kill_signals", restarts)
    .with(
        "held_at_kill",
        kill_reports.iter().map(|r| r.0).sum::<u64>(),
    )
    .with(
        "handled_unacked_at_kill",
        kill_reports.iter().map(|r| r.1).sum::<u64>(),
    )
    .with("redelivered", result.redelivered)
    .with("deduplicated", result.deduplicated)
    .with("twice", result.twice)
    .with("dead_lettered", result.dead_lettered)
    .with("pending", result.pending)
    .with(
        "msg_per_s",
        format!("{:.0}", messages as f64 / elapsed.as_secs_f64()),
    )
    .print();
}
