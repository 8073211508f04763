//! Moving to redis 2.0 (appendix): a push sender of your own. `aio::SendError` is
//! `#[non_exhaustive]` and carries a message (redis-rs #2268; #2394 logs it), and `PushInfo` is
//! `#[non_exhaustive]` (#2334): code that wrote `Err(SendError)`, built a `PushInfo { .. }`
//! literal or destructured one without `..` no longer compiles.
//!
//! cargo run --example ch04_redis2_push_sender            # a 100,000-message burst
//! cargo run --example ch04_redis2_push_sender -- --quick # 10,000
//!
//! A RESP3 connection on redis 2.0.0-rc.2 hands its pushes to a bounded queue that drops the
//! newest push when full and counts it; a slow reader falls behind on purpose. Every drop is
//! counted, so `lost == noticed`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use lab::{RedisServer, ResultLine, Tally};
use redis::aio::{AsyncPushSender, SendError};
use redis::{PushInfo, PushKind, Value};
use redis_2_0 as redis;
use tokio::sync::mpsc;

/// The `client=` name of redis 2.0.0-rc.2 (the lab names only the releases it is built with).
const REDIS_2_0: &str = "redis-2.0.0-rc.2";

// ANCHOR: sender
/// A push sender into a bounded queue: when the queue is full the push is dropped and counted.
struct Bounded {
    queue: mpsc::Sender<PushInfo>,
    dropped: Arc<AtomicU64>,
}

impl AsyncPushSender for Bounded {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match self.queue.try_send(info) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            // 1.8: `Err(SendError)`. 2.0: SendError is #[non_exhaustive], so build it.
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::new()),
        }
    }
}
// ANCHOR_END: sender

// ANCHOR: push_info
/// The sequence number of a message push. 1.8 code could write `PushInfo { kind, data }`;
/// 2.0's `PushInfo` is #[non_exhaustive]: the pattern needs `..`.
fn seq_of_push(push: &PushInfo) -> Option<u64> {
    let PushInfo { kind, data, .. } = push;
    match (kind, data.as_slice()) {
        (PushKind::Message, [_channel, Value::BulkString(payload)]) => lab::seq_of(payload).ok(),
        _ => None,
    }
}

/// And a `PushInfo` made by hand (in a test double, say) comes from its builder, not a literal.
fn fake_message(seq: u64) -> PushInfo {
    PushInfo::new(PushKind::Message).data(vec![
        Value::BulkString(b"fake".to_vec()),
        Value::BulkString(lab::numbered(seq, 16)),
    ])
}
// ANCHOR_END: push_info

#[tokio::main]
async fn main() -> Result<()> {
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let sent = lab::scaled(100_000, 10_000);
    let capacity = 1_000;
    let channel = lab::unique_channel("ch04:redis2:push");
    assert_eq!(seq_of_push(&fake_message(7)), Some(7));

    let (queue, mut pushes) = mpsc::channel(capacity);
    let dropped = Arc::new(AtomicU64::new(0));
    let sender = Bounded {
        queue,
        dropped: dropped.clone(),
    };
    let config = redis::AsyncConnectionConfig::new().set_push_sender(sender);
    let client = redis::Client::open(format!("{}?protocol=resp3", server.url()))?;
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    con.subscribe(&channel).await?;

    let mut publisher = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    let mut pipe = redis::pipe();
    for seq in 0..sent {
        pipe.cmd("PUBLISH")
            .arg(&channel)
            .arg(lab::numbered(seq, 32))
            .ignore();
    }
    pipe.exec_async(&mut publisher).await?;

    // A slow reader: 1 ms per 100 messages, until nothing has come for a second.
    let mut tally = Tally::new(sent);
    while let Ok(Some(push)) = tokio::time::timeout(Duration::from_secs(1), pushes.recv()).await {
        if let Some(seq) = seq_of_push(&push) {
            tally.record(seq);
            if tally.received().is_multiple_of(100) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    let noticed = dropped.load(Ordering::Relaxed);

    // With the queue's receiver gone, the sender returns the error the connection logs.
    drop(pushes);
    let error = SendError::new();
    println!("SendError in 2.0 says: {error}");
    let _: () = redis::cmd("PING")
        .query_async(&mut con)
        .await
        .context("the connection still answers after its push queue is gone")?;

    println!(
        "burst of {sent}, queue of {capacity}: received {}, dropped and counted {noticed}",
        tally.received()
    );
    ResultLine::from_tally("bounded-push-sender", REDIS_2_0, &tally, noticed)
        .with("capacity", capacity)
        .print();
    Ok(())
}
