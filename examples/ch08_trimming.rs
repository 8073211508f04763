//! Chapter 8: capping a stream with `XADD MAXLEN`, and what trimming does to a consumer
//! group that has fallen behind.
//!
//! - `MAXLEN = cap` keeps exactly `cap` entries; `MAXLEN ~ cap` keeps at least `cap`, trimming
//!   only whole internal nodes (cheaper, and a little longer).
//! - Trimming does not look at consumer groups: entries a consumer has been given but not
//!   acknowledged are deleted too. XAUTOCLAIM then reports their ids as deleted: the loss is
//!   noticed, but the messages are gone.
//!
//! cargo run --example ch08_trimming

use anyhow::Result;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamMaxlen, StreamReadOptions, StreamReadReply,
};

const CAP: usize = 1_000;

#[tokio::main]
async fn main() -> Result<()> {
    let server = lab::RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let sent = lab::scaled(100_000u64, 10_000);

    // ANCHOR: cap
    for (name, maxlen) in [
        ("exact", StreamMaxlen::Equals(CAP)),
        ("approx", StreamMaxlen::Approx(CAP)),
    ] {
        let stream = lab::unique_channel(&format!("ch08:trim-{name}"));
        let started = std::time::Instant::now();
        add(&mut con, &stream, maxlen, 0..sent).await?;
        let elapsed = started.elapsed();
        let len: usize = con.xlen(&stream).await?;
        println!("MAXLEN {name:>6} {CAP}: {sent} added, XLEN {len}, in {elapsed:.1?}");
        // What is left is "received"; what the cap removed is lost on purpose, and known.
        let trimmed = sent - len as u64;
        lab::ResultLine::new(
            &format!("maxlen-{name}"),
            lab::REDIS_CURRENT,
            sent,
            len as u64,
            trimmed,
        )
        .with("cap", CAP)
        .with("xlen", len)
        .with(
            "msg_per_s",
            format!("{:.0}", sent as f64 / elapsed.as_secs_f64()),
        )
        .print();
    }
    // ANCHOR_END: cap

    // ANCHOR: behind
    // A consumer takes 500 messages and stalls before acknowledging them; the producer
    // goes on with MAXLEN ~ 1000.
    let stream = lab::unique_channel("ch08:trim-behind");
    let () = con.xgroup_create_mkstream(&stream, "g", "$").await?;
    add(&mut con, &stream, StreamMaxlen::Approx(CAP), 0..500).await?;
    let options = StreamReadOptions::default()
        .group("g", "stalled")
        .count(500);
    let reply: Option<StreamReadReply> = con.xread_options(&[&stream], &[">"], &options).await?;
    let given = reply.map_or(0, |r| r.keys.iter().map(|k| k.ids.len()).sum::<usize>());
    add(&mut con, &stream, StreamMaxlen::Approx(CAP), 500..5_000).await?;

    // Another consumer tries to take the stalled one's messages over.
    let claim: StreamAutoClaimReply = con
        .xautoclaim_options(
            &stream,
            "g",
            "rescuer",
            0,
            "0-0",
            StreamAutoClaimOptions::default().count(1_000),
        )
        .await?;
    println!(
        "a consumer was given {given} messages and stalled; after 4,500 more XADDs with \
         MAXLEN ~ {CAP}, XAUTOCLAIM recovered {} and reported {} as deleted",
        claim.claimed.len(),
        claim.deleted_ids.len()
    );
    // ANCHOR_END: behind
    lab::ResultLine::new(
        "trimmed-while-pending",
        lab::REDIS_CURRENT,
        given as u64,
        claim.claimed.len() as u64,
        claim.deleted_ids.len() as u64,
    )
    .print();
    Ok(())
}

/// XADD the messages `seqs` with this cap, 1000 per pipeline.
async fn add(
    con: &mut MultiplexedConnection,
    stream: &str,
    maxlen: StreamMaxlen,
    seqs: std::ops::Range<u64>,
) -> Result<()> {
    let seqs: Vec<u64> = seqs.collect();
    for chunk in seqs.chunks(1000) {
        let mut pipe = redis::pipe();
        for &seq in chunk {
            pipe.xadd_maxlen(stream, maxlen, "*", &[("payload", lab::numbered(seq, 32))])
                .ignore();
        }
        pipe.exec_async(&mut *con).await?;
    }
    Ok(())
}
