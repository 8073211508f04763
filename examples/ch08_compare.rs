//! Chapter 8: Pub/Sub, Streams and a list with BLMOVE, measured side by side in one run.
//!
//! For each transport, on one server:
//! - late consumer: N messages are sent while no consumer is there, then one comes: how many
//!   does it get, and how much server memory did the waiting messages take (INFO memory,
//!   `used_memory_dataset`)?
//! - fan-out: two consumers (two subscribers, two consumer groups, two BLMOVE workers): how
//!   many copies of each message are delivered?
//! - throughput: one producer, one consumer running, N messages end to end. Both consumers
//!   that read by command read in batches of up to `BATCH`: XREADGROUP COUNT, and BLMOVE plus
//!   LMOVEs in one pipeline. Pub/Sub is pushed: its figure is how fast redis-rs drains the
//!   socket into its unbounded client-side buffer and the consumer counts what comes out.
//!
//! cargo run --release --example ch08_compare

use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use lab::{Publisher, ResultLine, Tally};
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Direction};
use tokio::time::{Instant, timeout};

const PAYLOAD: usize = 64;
/// Stop waiting for more when nothing arrived for this long.
const QUIET: Duration = Duration::from_millis(300);
/// How long a consumer started before the producer waits for the first message.
const FIRST_WAIT: Duration = Duration::from_secs(5);
/// Messages a consumer takes per read: XREADGROUP COUNT, and the list consumer's pipeline.
const BATCH: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    PubSub,
    Streams,
    List,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::PubSub => "pubsub",
            Transport::Streams => "streams",
            Transport::List => "list-blmove",
        }
    }
}

/// One transport's measurements.
struct Row {
    transport: Transport,
    late_received: u64,
    waiting_bytes: i64,
    retained_bytes: i64,
    fanout_copies: u64,
    msg_per_s: f64,
    /// Read round trips of the throughput consumer (0 for Pub/Sub: the server pushes).
    reads: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let server = lab::RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let n = lab::scaled(100_000, 5_000);
    println!("{n} messages of {PAYLOAD} bytes per measurement\n");

    // Warm-up: the server's first commands allocate a little memory of their own, which
    // would otherwise show up in the first measurement.
    {
        let mut con = client.get_multiplexed_async_connection().await?;
        for transport in [Transport::PubSub, Transport::Streams, Transport::List] {
            let key = lab::unique_channel("ch08:cmp:warm-up");
            consume(&client, transport, &key, "g", 0, QUIET).await?;
            send(&mut con, transport, &key, 0..100).await?;
            let _: () = con.del(&key).await?;
        }
    }

    let mut rows = Vec::new();
    for transport in [Transport::PubSub, Transport::Streams, Transport::List] {
        let row = measure(&client, transport, n)
            .await
            .with_context(|| format!("measuring {}", transport.name()))?;
        ResultLine::new(
            &format!("compare-{}", transport.name()),
            lab::REDIS_CURRENT,
            n,
            row.late_received,
            0,
        )
        .with("fanout_copies", row.fanout_copies)
        .with("msg_per_s", format!("{:.0}", row.msg_per_s))
        .with("reads", row.reads)
        .with("waiting_kb", row.waiting_bytes / 1024)
        .with("retained_kb", row.retained_bytes / 1024)
        .print();
        rows.push(row);
    }
    print_table(&rows, n);
    Ok(())
}

async fn measure(client: &redis::Client, transport: Transport, n: u64) -> Result<Row> {
    let mut con = client.get_multiplexed_async_connection().await?;

    // 1. Late consumer: send while nobody listens, then come and read.
    let key = lab::unique_channel(&format!("ch08:cmp:{}", transport.name()));
    if transport == Transport::Streams {
        let () = con.xgroup_create_mkstream(&key, "g1", "$").await?;
    }
    let before = used_memory(&mut con).await?;
    send(&mut con, transport, &key, 0..n).await?;
    let waiting = used_memory(&mut con).await? - before;
    // Nothing more will come: a short first wait is enough.
    let (late, _) = consume(client, transport, &key, "g1", n, QUIET).await?;
    let retained = used_memory(&mut con).await? - before;
    let _: () = con.del(&key).await?;

    // 2. Fan-out: two consumers at once, count copies delivered.
    let key = lab::unique_channel(&format!("ch08:cmp:{}", transport.name()));
    if transport == Transport::Streams {
        let () = con.xgroup_create_mkstream(&key, "g1", "$").await?;
        let () = con.xgroup_create(&key, "g2", "$").await?;
    }
    let fanout = n.min(10_000);
    let groups = ["g1", "g2"];
    let consumers: Vec<_> = groups
        .iter()
        .map(|group| {
            let (client, key, group) = (client.clone(), key.clone(), group.to_string());
            tokio::spawn(async move {
                consume(&client, transport, &key, &group, fanout, FIRST_WAIT).await
            })
        })
        .collect();
    // Give subscribers time to subscribe (Pub/Sub keeps nothing for latecomers).
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&mut con, transport, &key, 0..fanout).await?;
    let mut copies = 0;
    for consumer in consumers {
        copies += consumer.await??.0.received();
    }
    let _: () = con.del(&key).await?;

    // 3. Throughput: consumer running, producer sends n, time until the consumer has all.
    let key = lab::unique_channel(&format!("ch08:cmp:{}", transport.name()));
    if transport == Transport::Streams {
        let () = con.xgroup_create_mkstream(&key, "g1", "$").await?;
    }
    let consumer = {
        let (client, key) = (client.clone(), key.clone());
        tokio::spawn(async move { consume(&client, transport, &key, "g1", n, FIRST_WAIT).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    send(&mut con, transport, &key, 0..n).await?;
    let (tally, reads) = consumer.await??;
    // The consumer stops QUIET after the last message when some are missing.
    let elapsed = started.elapsed();
    let _: () = con.del(&key).await?;

    Ok(Row {
        transport,
        late_received: late.received(),
        waiting_bytes: waiting,
        retained_bytes: retained,
        fanout_copies: copies,
        msg_per_s: tally.received() as f64 / elapsed.as_secs_f64(),
        reads,
    })
}

// ANCHOR: send
/// Send `seqs` the way each transport is fed, 1000 commands per pipeline.
async fn send(
    con: &mut MultiplexedConnection,
    transport: Transport,
    key: &str,
    seqs: std::ops::Range<u64>,
) -> Result<()> {
    if transport == Transport::PubSub {
        Publisher::new(key)
            .payload_size(PAYLOAD)
            .send(con, seqs)
            .await?;
        return Ok(());
    }
    let seqs: Vec<u64> = seqs.collect();
    for chunk in seqs.chunks(1000) {
        let mut pipe = redis::pipe();
        for &seq in chunk {
            let payload = lab::numbered(seq, PAYLOAD);
            match transport {
                Transport::Streams => pipe.xadd(key, "*", &[("payload", payload)]),
                _ => pipe.lpush(key, payload),
            }
            .ignore();
        }
        pipe.exec_async(&mut *con).await?;
    }
    Ok(())
}
// ANCHOR_END: send

/// Receive up to `n` messages as one consumer: wait up to `first_wait` for the first, then
/// stop when `QUIET` passes without any. Returns the tally and the number of read round trips.
async fn consume(
    client: &redis::Client,
    transport: Transport,
    key: &str,
    group: &str,
    n: u64,
    first_wait: Duration,
) -> Result<(Tally, u64)> {
    let mut tally = Tally::new(n);
    let mut reads = 0;
    let patience = |tally: &Tally| {
        if tally.received() == 0 {
            first_wait
        } else {
            QUIET
        }
    };
    match transport {
        Transport::PubSub => {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(key).await?;
            let mut messages = pubsub.on_message();
            while tally.received() < n {
                match timeout(patience(&tally), messages.next()).await {
                    Ok(Some(msg)) => tally.record(lab::seq_of(msg.get_payload_bytes())?),
                    _ => break,
                }
            }
        }
        Transport::Streams => {
            let mut con = client.get_multiplexed_async_connection().await?;
            let options = StreamReadOptions::default()
                .group(group, "c1")
                .count(BATCH)
                .block(100);
            let mut last = Instant::now();
            while tally.received() < n && last.elapsed() < patience(&tally) {
                let reply: Option<StreamReadReply> =
                    con.xread_options(&[key], &[">"], &options).await?;
                reads += 1;
                let mut ids = Vec::new();
                for message in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                    let payload: Vec<u8> = message.get("payload").context("no payload")?;
                    tally.record(lab::seq_of(&payload)?);
                    ids.push(message.id);
                }
                if !ids.is_empty() {
                    let _: usize = con.xack(key, group, &ids).await?;
                    last = Instant::now();
                }
            }
        }
        Transport::List => {
            // ANCHOR: blmove
            // The reliable-queue pattern, in batches like XREADGROUP COUNT: BLMOVE waits for
            // a first message and moves it to a processing list, and the LMOVEs behind it in
            // the same pipeline move up to BATCH - 1 more without waiting. After the work, one
            // pipeline of LREMs removes them. A consumer that dies in between leaves them in
            // `processing`, where a janitor can find them. (BLMPOP ... COUNT would take a batch
            // in one command, but it pops: a consumer that dies holding the batch loses it.)
            let mut con = client.get_multiplexed_async_connection().await?;
            let processing = format!("{key}:processing:{group}");
            let mut last = Instant::now();
            while tally.received() < n && last.elapsed() < patience(&tally) {
                let mut take = redis::pipe();
                take.blmove(key, &processing, Direction::Right, Direction::Left, 0.1);
                for _ in 1..BATCH {
                    take.lmove(key, &processing, Direction::Right, Direction::Left);
                }
                let moved: Vec<Option<Vec<u8>>> = take.query_async(&mut con).await?;
                reads += 1;
                let batch: Vec<Vec<u8>> = moved.into_iter().flatten().collect();
                if batch.is_empty() {
                    continue;
                }
                let mut done = redis::pipe();
                for payload in &batch {
                    tally.record(lab::seq_of(payload)?);
                    // From the tail, where the oldest of the batch is: each LREM stops at once.
                    done.lrem(&processing, -1, payload).ignore();
                }
                done.exec_async(&mut con).await?;
                last = Instant::now();
            }
            // ANCHOR_END: blmove
        }
    }
    Ok((tally, reads))
}

/// `used_memory_dataset` from INFO memory, in bytes: `used_memory` minus the server's
/// overhead (client buffers among it), so that connections opened and closed by the
/// measurement do not blur what the messages themselves take.
async fn used_memory(con: &mut MultiplexedConnection) -> Result<i64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(con).await?;
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory_dataset:"))
        .and_then(|value| value.trim().parse().ok())
        .context("INFO memory has no used_memory_dataset line")
}

fn print_table(rows: &[Row], n: u64) {
    let cell = |t: Transport, f: &dyn Fn(&Row) -> String| {
        rows.iter()
            .find(|r| r.transport == t)
            .map(f)
            .unwrap_or_default()
    };
    let line = |label: &str, f: &dyn Fn(&Row) -> String| {
        println!(
            "| {label} | {} | {} | {} |",
            cell(Transport::PubSub, f),
            cell(Transport::Streams, f),
            cell(Transport::List, f)
        );
    };
    println!();
    println!("| | Pub/Sub | Streams + consumer group | list + BLMOVE |");
    println!("|---|---|---|---|");
    line("delivery guarantee", &|r: &Row| {
        match r.transport {
            Transport::PubSub => "at-most-once",
            Transport::Streams => "at-least-once (XACK, XAUTOCLAIM)",
            Transport::List => "at-least-once (processing list)",
        }
        .to_string()
    });
    line(
        &format!("consumer absent while {n} sent: received later"),
        &|r: &Row| r.late_received.to_string(),
    );
    line("history after consumption", &|r: &Row| {
        match r.transport {
            Transport::PubSub => "none",
            Transport::Streams => "kept until trimmed",
            Transport::List => "none (removed)",
        }
        .to_string()
    });
    line(
        "fan-out: copies delivered to 2 consumers, per message",
        &|r: &Row| format!("{:.1}", r.fanout_copies as f64 / n.min(10_000) as f64),
    );
    line("throughput, 1 producer + 1 consumer (msg/s)", &|r: &Row| {
        format!("{:.0}", r.msg_per_s)
    });
    line(
        "read round trips of that consumer",
        &|r: &Row| match r.transport {
            Transport::PubSub => "none (pushed)".to_string(),
            _ => r.reads.to_string(),
        },
    );
    line(
        &format!("server memory while {n} wait (INFO used_memory_dataset delta)"),
        &|r: &Row| format_bytes(r.waiting_bytes, n),
    );
    line("server memory after consumption", &|r: &Row| {
        format_bytes(r.retained_bytes, n)
    });
}

fn format_bytes(bytes: i64, n: u64) -> String {
    if bytes.abs() < 64 * 1024 {
        // Below what the server allocates for its own bookkeeping between two INFO calls.
        format!("~0 ({} KB)", bytes / 1024)
    } else {
        format!(
            "{:.1} MB ({} B/msg)",
            bytes as f64 / 1_048_576.0,
            bytes / n as i64
        )
    }
}
