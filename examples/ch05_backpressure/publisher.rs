//! Chapter 5's publisher: a named publisher with heartbeats (chapter 3) on its own thread
//! and runtime, paced at `--rate` or in one `--burst`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use lab::message::Identity;
use lab::{PublishReport, Publisher};
use tokio::sync::oneshot;

use crate::Plan;
use crate::harness::PUBLISHED;

// ---------------------------------------------------------------------------------------
// The publisher: its own thread and runtime, so that nothing the subscriber does (not even a
// handler that blocks its only thread) slows it down. Pub/Sub never slows a publisher down.

pub fn start_publisher(
    url: &str,
    channel: &str,
    plan: Plan,
) -> oneshot::Receiver<Result<PublishReport>> {
    let (done, report) = oneshot::channel();
    let url = url.to_string();
    // A named publisher with heartbeats (chapter 3): what it says on the channel is all a
    // subscriber can know about what was sent.
    let publisher = Publisher::new(channel)
        .named(Identity::new("ch05"))
        .payload_size(plan.payload)
        .pipeline_len(PUBLISH_BATCH as usize);
    std::thread::spawn(move || {
        let result = (|| -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = redis::Client::open(url.as_str())?;
                let mut con = client.get_multiplexed_async_connection().await?;
                let report = publish_paced(&publisher, &mut con, plan).await;
                let sent = report.as_ref().map_or(0, |report| report.sent);
                let _ = done.send(report);
                // A long-lived publisher keeps saying how much it sent, until the process
                // ends: a subscriber that lost the tail, or reconnected late, learns it so.
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    publisher.heartbeat(&mut con, sent).await?;
                }
            })
        })();
        if let Err(error) = result {
            eprintln!("publisher: {error:#}");
        }
    });
    report
}

/// At most this many PUBLISH commands in one pipeline: when the publisher falls behind its
/// rate (a busy machine), it catches up in small batches, so that its own memory stays
/// small and does not blur the subscriber's.
pub const PUBLISH_BATCH: u64 = 100;

/// Publish `0..plan.messages` at `plan.rate` per second (or all at once, with `--burst`).
pub async fn publish_paced(
    publisher: &Publisher,
    con: &mut redis::aio::MultiplexedConnection,
    plan: Plan,
) -> Result<PublishReport> {
    if plan.burst {
        let report = publisher.send(con, 0..plan.messages).await?;
        PUBLISHED.store(report.sent, Ordering::Relaxed);
        return Ok(report);
    }
    let started = std::time::Instant::now();
    let mut total = PublishReport::default();
    let mut next = 0;
    while next < plan.messages {
        let due = ((started.elapsed().as_secs_f64() * plan.rate) as u64 + 1).min(plan.messages);
        if due > next {
            let end = due.min(next + PUBLISH_BATCH);
            let report = publisher.send(con, next..end).await?;
            total.sent += report.sent;
            PUBLISHED.store(total.sent, Ordering::Relaxed);
            total.queued_for += report.queued_for;
            total.unheard += report.unheard;
            next = end;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    total.elapsed = started.elapsed();
    Ok(total)
}
