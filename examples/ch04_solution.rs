//! Chapter 4 exercise: a subscriber whose channels other tasks can change at runtime.
//!
//! `start` returns a `Control` that can be cloned into any task (a web handler, a config
//! watcher) and the stream of messages. `Control::follow` returns only when the server has
//! confirmed the subscription, so a caller can safely tell its publisher to start then.
//!
//! The starter, examples/ch04_exercise.rs, is the solution, examples/ch04_solution.rs, with
//! `todo!()` where you write the code: three of them, and what a `Control` holds.
//!
//! cargo run --example ch04_exercise
//! cargo test --example ch04_exercise -- --include-ignored   (the solution's test, on your code)
//! cargo test --example ch04_solution

use std::time::Duration;

use futures::StreamExt;
use lab::{Publisher, RedisServer, ResultLine, Tally};

// ANCHOR: solution
// ANCHOR: exercise
/// Changes the subscriptions of a running subscriber; cheap to clone.
#[derive(Clone)]
pub struct Control {
    // What does a `Control` hold? It must be `Clone` and usable from another task while the
    // stream is being read.
    // ANCHOR: todo
    sink: redis::aio::PubSubSink,
    // ANCHOR_END: todo
}

impl Control {
    /// Subscribe to `channel`; returns once the server confirmed it.
    pub async fn follow(&mut self, channel: &str) -> redis::RedisResult<()> {
        // ANCHOR: todo!("subscribe; return once the server confirmed it")
        self.sink.subscribe(channel).await
        // ANCHOR_END: todo
    }

    /// Unsubscribe from `channel`; returns once the server confirmed it.
    pub async fn unfollow(&mut self, channel: &str) -> redis::RedisResult<()> {
        // ANCHOR: todo!("unsubscribe; return once the server confirmed it")
        self.sink.unsubscribe(channel).await
        // ANCHOR_END: todo
    }
}

/// A subscriber with no channels yet: the control half and the message stream.
pub async fn start(
    client: &redis::Client,
) -> redis::RedisResult<(Control, redis::aio::PubSubStream)> {
    // Which of `on_message`, `into_on_message` and `split` fits here, and why?
    // ANCHOR: todo!("a Control and the stream of messages, from one Pub/Sub connection")
    // `split` keeps both halves: the sink to change subscriptions, the stream to read.
    // (`on_message` would borrow the PubSub; `into_on_message` would give up the sink.)
    let (sink, stream) = client.get_async_pubsub().await?.split();
    Ok((Control { sink }, stream))
    // ANCHOR_END: todo
}
// ANCHOR_END: exercise
// ANCHOR_END: solution

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn follow_from_another_task_then_unfollow() {
        let server = RedisServer::start().unwrap();
        let client = server.client().unwrap();
        let (control, mut messages) = start(&client).await.unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let mut remote = control.clone();
        tokio::spawn(async move { remote.follow("news").await })
            .await
            .unwrap()
            .unwrap();
        let heard: u64 = redis::cmd("PUBLISH")
            .arg("news")
            .arg("0#")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(
            heard, 1,
            "follow must return only after the server subscribed us"
        );
        let msg = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.get_channel_name(), "news");
        let mut control = control;
        control.unfollow("news").await.unwrap();
        let heard: u64 = redis::cmd("PUBLISH")
            .arg("news")
            .arg("1#")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(heard, 0);
    }
}
