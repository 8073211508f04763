//! Chapter 4 exercise: a subscriber whose channels other tasks can change at runtime.
//!
//! `start` returns a `Control` that can be cloned into any task (a web handler, a config
//! watcher) and the stream of messages. `Control::follow` returns only when the server has
//! confirmed the subscription, so a caller can safely tell its publisher to start then.
//!
//! Fill in the three `todo!()`s; `cargo run --example ch04_exercise` then runs the scenario.
//! (The solution: examples/ch04_solution.rs.)

use std::time::Duration;

use futures::StreamExt;
use lab::{Publisher, RedisServer, ResultLine, Tally};

// ANCHOR: exercise
/// Changes the subscriptions of a running subscriber; cheap to clone.
#[derive(Clone)]
pub struct Control {
    // TODO: what does a `Control` hold? It must be `Clone` and usable from another task
    // while the stream is being read.
}

impl Control {
    /// Subscribe to `channel`; returns once the server confirmed it.
    pub async fn follow(&mut self, channel: &str) -> redis::RedisResult<()> {
        let _ = channel;
        todo!("chapter 4 exercise")
    }

    /// Unsubscribe from `channel`; returns once the server confirmed it.
    pub async fn unfollow(&mut self, channel: &str) -> redis::RedisResult<()> {
        let _ = channel;
        todo!("chapter 4 exercise")
    }
}

/// A subscriber with no channels yet: the control half and the message stream.
pub async fn start(
    client: &redis::Client,
) -> redis::RedisResult<(Control, redis::aio::PubSubStream)> {
    // TODO: which of `on_message`, `into_on_message` and `split` fits here, and why?
    let _ = client;
    todo!("chapter 4 exercise")
}
// ANCHOR_END: exercise

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let sent = lab::scaled(10_000, 1_000);
    let channel = lab::unique_channel("ch04:control");

    let (control, mut messages) = start(&client).await?;
    // Another task follows the channel, then publishes: nothing may be missed.
    let mut remote = control.clone();
    let mut con = client.get_multiplexed_async_connection().await?;
    let task_channel = channel.clone();
    let publishing = tokio::spawn(async move {
        remote.follow(&task_channel).await?;
        let report = Publisher::new(&task_channel)
            .send(&mut con, 0..sent)
            .await?;
        remote.unfollow(&task_channel).await?;
        // After unfollow, nobody hears this one.
        let after: u64 = redis::cmd("PUBLISH")
            .arg(&task_channel)
            .arg("after")
            .query_async(&mut con)
            .await?;
        anyhow::Ok((report, after))
    });
    let mut tally = Tally::new(sent);
    while let Ok(Some(msg)) =
        tokio::time::timeout(Duration::from_millis(500), messages.next()).await
    {
        tally.record(lab::seq_of(msg.get_payload_bytes())?);
    }
    let (report, after) = publishing.await??;
    println!(
        "followed from another task: received {} of {}; after unfollow, PUBLISH reached {after}",
        tally.received(),
        report.sent
    );
    ResultLine::from_tally("control-follow", lab::REDIS_CURRENT, &tally, 0)
        .with("after_unfollow", after)
        .print();
    Ok(())
}
