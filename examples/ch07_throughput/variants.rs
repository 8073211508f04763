//! The subscribers under test, each run in a process of its own (`--variant NAME`).
//!
//! Every design does the same work per message: read the sequence number from the payload and
//! record it in a [`Tally`] (the "handler"). What differs is how the message gets from the
//! socket to that handler: which runtime, whether it crosses a thread, a queue or a batch. The names, the child's
//! arguments and the [`Bench`] that counts and reports are in `bench.rs`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use lab::overflow::{Overflow, bounded};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::Notify;

use crate::bench::{Bench, ChildArgs, Idle, Variant};
/// Run one design in this process, on the runtime it is measured on.
pub fn run_child(args: ChildArgs) -> Result<()> {
    // ANCHOR: runtime
    // The runtime is part of the design being measured, so each process builds its own:
    // `#[tokio::main]` would give every design the multi-thread runtime.
    let runtime = if args.variant.multi_thread() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
    .enable_all()
    .build()?;
    // ANCHOR_END: runtime
    runtime.block_on(async move {
        let client = redis::Client::open(args.url.as_str()).context("child: bad URL")?;
        let bench = Bench::new(args.count, args.latency);
        let channel = args.channel.as_str();
        match args.variant {
            Variant::Cli => bail!("redis-cli is not a Rust variant"),
            Variant::Raw => raw_socket(&client, channel, args.size, bench).await,
            Variant::StreamMt | Variant::StreamCt => plain_stream(&client, channel, bench).await,
            // ANCHOR: spawned
            Variant::StreamMtTask => {
                // The same loop, but as a task: it runs on a worker thread, like the task
                // that reads the socket, instead of on the thread that called `block_on`.
                let channel = channel.to_string();
                tokio::spawn(async move { plain_stream(&client, &channel, bench).await }).await?
            }
            // ANCHOR_END: spawned
            Variant::ChunksCt => chunks(&client, channel, bench).await,
            Variant::PushQueueMt | Variant::PushQueueCt => {
                push_queue(&client, channel, bench).await
            }
            Variant::QueueMt | Variant::QueueCt => queue(&client, channel, bench).await,
            Variant::Resp3Ct => resp3(&client, channel, bench).await,
            Variant::ProductionMt | Variant::ProductionCt => {
                production(&args.url, channel, bench).await
            }
        }
    })
}

// ANCHOR: plain
/// Chapter 4's subscriber: one long-lived stream, the handler called on each message.
async fn plain_stream(client: &redis::Client, channel: &str, mut bench: Bench) -> Result<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let mut messages = pubsub.on_message();
    bench.ready();
    while !bench.finished(0) {
        let Some(msg) = bench.next(&mut messages).await else {
            break; // the stream ended or went quiet
        };
        bench.handle(msg.get_payload_bytes());
    }
    bench.done(0)
}
// ANCHOR_END: plain

// ANCHOR: chunks
/// The same stream, taking whatever messages are ready at once (up to 256) as one batch.
async fn chunks(client: &redis::Client, channel: &str, mut bench: Bench) -> Result<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let mut batches = pubsub.on_message().ready_chunks(256);
    bench.ready();
    while !bench.finished(0) {
        let Some(batch) = bench.next(&mut batches).await else {
            break;
        };
        for msg in &batch {
            bench.handle(msg.get_payload_bytes());
        }
    }
    bench.done(0)
}
// ANCHOR_END: chunks

// ANCHOR: push_queue
/// Chapter 5's design 4: the connection's push sender puts each message into a bounded queue
/// that drops (and counts) when full, from inside the read loop; a worker task runs the
/// handler.
async fn push_queue(client: &redis::Client, channel: &str, mut bench: Bench) -> Result<()> {
    let (tx, rx) = bounded(QUEUE_CAPACITY, Overflow::DropNewest);
    let queue = tx.clone();
    let (sender, _connection) = lab::push::to_queue(move |msg| {
        let _dropped_and_counted = queue.push(msg);
        true
    });
    let config = redis::AsyncConnectionConfig::new().set_push_sender(sender);
    let mut con = lab::push::resp3(client)?
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    con.subscribe(channel).await?;
    let mut messages = futures::stream::unfold(rx, |mut rx| async move {
        let msg = rx.recv().await?;
        Some((msg, rx))
    })
    .boxed();
    bench.ready();
    while !bench.finished(tx.stats().dropped()) {
        let Some(msg) = bench.next(&mut messages).await else {
            break;
        };
        bench.handle(msg.get_payload_bytes());
    }
    bench.done(tx.stats().dropped())
}
// ANCHOR_END: push_queue

// ANCHOR: queue
/// Chapter 5's counter-example: a reader task drains the stream into a bounded queue that
/// drops (and counts) when full; a worker task runs the handler. In front of the queue sits
/// redis-rs's unbounded channel.
async fn queue(client: &redis::Client, channel: &str, mut bench: Bench) -> Result<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let mut messages = pubsub.into_on_message();
    let (tx, mut rx) = bounded(QUEUE_CAPACITY, Overflow::DropNewest);
    let count = bench.count;
    let mut idle = Idle::default();
    bench.ready();
    let reader = tokio::spawn(async move {
        // The reader never waits for the handler: `push` returns at once, queued or dropped.
        for _ in 0..count {
            let Some(msg) = idle.next(&mut messages).await else {
                break;
            };
            let _dropped_and_counted = tx.push(msg);
        }
        tx.close(); // the worker drains what is queued, then sees `None`
        tx.stats().dropped()
    });
    while let Some(msg) = rx.recv().await {
        bench.handle(msg.get_payload_bytes());
    }
    let dropped = reader.await?;
    bench.done(dropped)
}
// ANCHOR_END: queue

// ANCHOR: production
/// Chapter 6's subscriber, as a service would run it: its default configuration, told that
/// the publisher numbers messages from 0 (so it counts gaps), with our handler.
async fn production(url: &str, channel: &str, bench: Bench) -> Result<()> {
    let mut config = lab::production::Config::new(url, [channel]);
    config.numbered = true;
    config.first_seq = Some(0);
    // The handler is cloned into each worker; with one channel, one worker gets everything,
    // so this lock is never contended.
    let bench = Arc::new(Mutex::new(bench));
    let all_handled = Arc::new(Notify::new());
    let handler = {
        let (bench, all_handled) = (Arc::clone(&bench), Arc::clone(&all_handled));
        move |msg: redis::Msg| {
            let mut bench = bench.lock().unwrap_or_else(PoisonError::into_inner);
            bench.handle(msg.get_payload_bytes());
            if bench.finished(0) {
                all_handled.notify_one();
            }
            std::future::ready(Ok(()))
        }
    };
    let running = lab::production::start(config, handler).await?;
    lock(&bench).ready();
    // Done when every message was handled or is counted as lost (dropped, in a gap), or
    // when nothing moved for a while after the first message.
    let mut progress = (0, Instant::now());
    loop {
        let report = running.snapshot();
        let seen = report.received + report.noticed();
        if lock(&bench).finished(report.noticed()) || running.is_finished() {
            break;
        }
        if seen != progress.0 {
            progress = (seen, Instant::now());
        } else if seen > 0 && progress.1.elapsed() > Idle::QUIET {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(5), all_handled.notified()).await;
    }
    let report = running.shutdown().await?;
    let bench = std::mem::replace(&mut *lock(&bench), Bench::new(0, false));
    bench.done(report.noticed())
}
// ANCHOR_END: production

fn lock(bench: &Mutex<Bench>) -> std::sync::MutexGuard<'_, Bench> {
    bench.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Room for a burst: 64k messages (a few MB at these payload sizes).
pub const QUEUE_CAPACITY: usize = 65_536;

// ANCHOR: resp3
/// RESP3: no dedicated Pub/Sub connection; the multiplexed connection hands every push
/// (messages, subscribe confirmations, a disconnection notice) to a sender we give it.
async fn resp3(client: &redis::Client, channel: &str, mut bench: Bench) -> Result<()> {
    let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel::<PushInfo>();
    let config = redis::AsyncConnectionConfig::new().set_push_sender(tx);
    let resp3 = redis::Client::open(with_resp3(client))?;
    let mut con = resp3
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    con.subscribe(channel).await?;
    bench.ready();
    while !bench.finished(0) {
        let Some(push) = bench.next_push(&mut pushes).await else {
            break;
        };
        match (push.kind, push.data.get(1)) {
            (PushKind::Message, Some(Value::BulkString(payload))) => bench.handle(payload),
            (PushKind::Disconnection, _) => break,
            _ => {} // subscribe confirmations
        }
    }
    bench.done(0)
}
// ANCHOR_END: resp3

// ANCHOR: raw
/// The ceiling: SUBSCRIBE by hand, then read the socket into a large buffer and only count
/// bytes. Every message is the same size, so bytes tell how many messages came.
async fn raw_socket(
    client: &redis::Client,
    channel: &str,
    size: usize,
    mut bench: Bench,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket =
        tokio::net::TcpStream::connect(client.get_connection_info().addr().to_string()).await?;
    let subscribe = redis::cmd("SUBSCRIBE").arg(channel).get_packed_command();
    socket.write_all(&subscribe).await?;
    // The confirmation, `["subscribe", channel, 1]`, has a known length: read exactly that.
    let confirmation = format!(
        "*3\r\n$9\r\nsubscribe\r\n${}\r\n{channel}\r\n:1\r\n",
        channel.len()
    );
    let mut reply = vec![0; confirmation.len()];
    socket.read_exact(&mut reply).await?;
    ensure!(
        reply == confirmation.as_bytes(),
        "unexpected reply to SUBSCRIBE"
    );
    bench.ready();
    let expected = bench.count * resp2_message_len(channel, size);
    let (mut buffer, mut total) = (vec![0u8; 256 * 1024], 0u64);
    while total < expected {
        let Some(read) = bench
            .idle
            .wait(async { socket.read(&mut buffer).await.ok() })
            .await
        else {
            break;
        };
        if read == 0 {
            break;
        }
        total += read as u64;
    }
    bench.counted = Some((total / resp2_message_len(channel, size)).min(bench.count));
    bench.done(0)
}
// ANCHOR_END: raw

/// The bytes Redis sends a RESP2 subscriber for one message: `["message", channel, payload]`.
fn resp2_message_len(channel: &str, payload: usize) -> u64 {
    let bulk = |len: usize| 1 + len.to_string().len() + 2 + len + 2;
    ("*3\r\n".len() + bulk("message".len()) + bulk(channel.len()) + bulk(payload)) as u64
}

/// The client's URL with `protocol=resp3`.
fn with_resp3(client: &redis::Client) -> String {
    let info = client.get_connection_info();
    format!("redis://{}/?protocol=resp3", info.addr())
}
