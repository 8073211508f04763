//! Chapter 8: Pub/Sub is at-most-once. A subscriber that is away for a moment loses what was
//! published meanwhile, and nothing on the client can get it back; a Streams consumer that
//! is away for the same moment picks up where it left off.
//!
//! The same publisher pace, the same 200 ms absence, side by side:
//!
//! cargo run --release --example ch08_at_most_once

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use lab::{Pace, Publisher, ResultLine, Tally};
use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::time::{Instant, sleep, timeout};

/// Messages per second, for both transports.
const RATE: f64 = 10_000.0;
/// How long the consumer is away.
const AWAY: Duration = Duration::from_millis(200);

#[tokio::main]
async fn main() -> Result<()> {
    let server = lab::RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let sent = lab::scaled(30_000, 10_000);
    println!(
        "{sent} messages at {RATE} msg/s; the consumer goes away for {AWAY:?} after a third \
         of them"
    );
    pubsub_away(&client, sent).await?;
    streams_away(&client, sent).await?;
    Ok(())
}

/// A Pub/Sub subscriber drops its connection for `AWAY`, then subscribes again.
async fn pubsub_away(client: &redis::Client, sent: u64) -> Result<()> {
    let channel = lab::unique_channel("ch08:away");
    let mut tally = Tally::new(sent);
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;

    let mut con = client.get_multiplexed_async_connection().await?;
    let publisher = Publisher::new(&channel).pace(Pace::Rate(RATE));
    let publishing = tokio::spawn(async move { publisher.send(&mut con, 0..sent).await });

    // ANCHOR: pubsub
    let mut last_seen = None;
    let mut noticed = 0;
    let mut away_once = false;
    loop {
        let mut messages = pubsub.on_message();
        while let Ok(Some(msg)) = timeout(Duration::from_secs(1), messages.next()).await {
            let seq = lab::seq_of(msg.get_payload_bytes())?;
            // The numbers jump over what was published while we were away: we can
            // notice the loss (chapter 3), but nobody can send those messages again.
            noticed += seq - last_seen.map_or(0, |last| last + 1);
            last_seen = Some(seq);
            tally.record(seq);
            if !away_once && seq >= sent / 3 {
                break;
            }
        }
        drop(messages);
        if away_once {
            break;
        }
        // Gone for a moment: a deploy, a network blip, a reconnect after an error.
        away_once = true;
        drop(pubsub);
        sleep(AWAY).await;
        pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
    }
    // ANCHOR_END: pubsub
    let report = publishing.await??;
    println!(
        "pubsub:  received {} of {sent}, missing {}; {} PUBLISH replies said \"0 \
         subscribers\"",
        tally.received(),
        tally.missing_summary(3),
        report.unheard
    );
    ResultLine::from_tally("pubsub-away-200ms", lab::REDIS_CURRENT, &tally, noticed)
        .with("unheard", report.unheard)
        // Queued for us (PUBLISH counted us) but still in flight when we dropped the
        // connection: lost too.
        .with(
            "queued_but_lost",
            tally.lost().saturating_sub(report.unheard),
        )
        .with("recovered", 0)
        .print();
    Ok(())
}

/// A Streams consumer drops its connection for `AWAY`, then reads on: the messages added
/// meanwhile wait in the stream, and `>` starts after the last one its group was given.
async fn streams_away(client: &redis::Client, sent: u64) -> Result<()> {
    let stream = lab::unique_channel("ch08:away-stream");
    let mut con = client.get_multiplexed_async_connection().await?;
    let () = con.xgroup_create_mkstream(&stream, "readers", "$").await?;

    let mut producer_con = client.get_multiplexed_async_connection().await?;
    let producer_stream = stream.clone();
    let producing =
        tokio::spawn(
            async move { produce_at_rate(&mut producer_con, &producer_stream, sent).await },
        );

    let mut tally = Tally::new(sent);
    let mut away_once = false;
    // ANCHOR: streams
    let options = StreamReadOptions::default()
        .group("readers", "reader-1")
        .count(500)
        .block(100);
    let mut quiet_since = Instant::now();
    while tally.received() < sent && quiet_since.elapsed() < Duration::from_secs(2) {
        let reply: Option<StreamReadReply> =
            con.xread_options(&[&stream], &[">"], &options).await?;
        let mut ids = Vec::new();
        for message in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            let payload: Vec<u8> = message.get("payload").context("no payload field")?;
            tally.record(lab::seq_of(&payload)?);
            ids.push(message.id);
            quiet_since = Instant::now();
        }
        if !ids.is_empty() {
            let _: usize = con.xack(&stream, "readers", &ids).await?;
        }
        if !away_once && tally.received() > sent / 3 {
            away_once = true;
            drop(con); // the same absence as the subscriber's
            sleep(AWAY).await;
            con = client.get_multiplexed_async_connection().await?;
        }
    }
    // ANCHOR_END: streams
    producing.await??;
    println!(
        "streams: received {} of {sent}, missing {}",
        tally.received(),
        tally.missing_summary(3)
    );
    ResultLine::from_tally("streams-away-200ms", lab::REDIS_CURRENT, &tally, 0).print();
    Ok(())
}

/// XADD `0..sent` at `RATE`, in small pipelines every millisecond.
async fn produce_at_rate(
    con: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    sent: u64,
) -> Result<()> {
    ensure!(sent > 0, "nothing to send");
    let started = Instant::now();
    let mut next = 0;
    while next < sent {
        let due = ((started.elapsed().as_secs_f64() * RATE) as u64 + 1).min(sent);
        if due > next {
            let mut pipe = redis::pipe();
            for seq in next..due {
                pipe.xadd(stream, "*", &[("payload", lab::numbered(seq, 32))])
                    .ignore();
            }
            pipe.exec_async(&mut *con).await?;
            next = due;
        }
        sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}
