//! Chapter 6: a `broadcast` push sender and a receiver that falls behind. The channel keeps
//! the newest pushes and tells the receiver how many it missed, `Lagged(n)`, on its next
//! `recv()`. A loop that counts it turns the loss into a number; the common
//! `while let Ok(push) = rx.recv().await` ends on the first `Lagged` instead, and everything
//! after it is lost without a word.
//!
//! cargo run --example ch06_broadcast_lagged             # 20,000 messages
//! cargo run --example ch06_broadcast_lagged -- --quick  # 5,000
//! cargo run --example ch06_broadcast_lagged -- --write  # and src/generated/ch06-broadcast-lagged.txt

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lab::gaps::Tracker;
use lab::{Publisher, RedisServer, ResultLine};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Msg, PushInfo, PushKind};
use tokio::sync::broadcast::{self, Receiver, error::RecvError};

/// Pushes the broadcast channel holds.
const CAPACITY: usize = 1_000;

#[tokio::main]
async fn main() -> Result<()> {
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let n = lab::scaled(20_000, 5_000);
    let mut output = format!("Redis at {}\n", server.display_url());
    for counting in [true, false] {
        let (said, line) = run(&server, n, counting).await?;
        println!("{said}");
        line.print();
        output.push_str(&format!("{said}\n{line}\n"));
    }
    if std::env::args().any(|arg| arg == "--write") {
        // The book's convention for a program's output (`ci/outputs.py`): the command as
        // the reader types it on the first line, then what it printed.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/generated/ch06-broadcast-lagged.txt"
        );
        let text = format!("$ cargo run --example ch06_broadcast_lagged\n{output}");
        std::fs::write(path, text).with_context(|| format!("writing {path}"))?;
        println!("wrote {path}");
    }
    Ok(())
}

/// The handler: slower than the burst (a millisecond every 10 messages).
async fn handle(seq: u64) {
    if seq.is_multiple_of(10) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

// ANCHOR: counting
/// Every `Lagged(n)` counted; the loop goes on. Ends when nothing came for `quiet`.
async fn counting_loop(mut rx: Receiver<PushInfo>, quiet: Duration) -> (u64, u64, Tracker) {
    let (mut received, mut lagged) = (0, 0);
    let mut tracker = Tracker::starting_at(0);
    loop {
        match tokio::time::timeout(quiet, rx.recv()).await {
            Ok(Ok(push)) => {
                let Some(msg) = Msg::from_push_info(push) else {
                    continue; // not a message: a confirmation, a Disconnection
                };
                let Ok(mark) = lab::mark_of(msg.get_payload_bytes()) else {
                    continue;
                };
                tracker.observe(mark);
                received += 1;
                handle(lab::seq_of(msg.get_payload_bytes()).unwrap_or(0)).await;
            }
            // The channel overwrote `n` pushes this receiver had not read yet: lost, counted.
            Ok(Err(RecvError::Lagged(n))) => lagged += n,
            Ok(Err(RecvError::Closed)) | Err(_) => return (received, lagged, tracker),
        }
    }
}
// ANCHOR_END: counting

// ANCHOR: while_let
/// The loop everyone writes first. `recv()` returns `Err(Lagged(n))` once the receiver is
/// behind: the loop ends there, and nothing says so.
async fn while_let_ok_loop(mut rx: Receiver<PushInfo>) -> u64 {
    let mut received = 0;
    while let Ok(push) = rx.recv().await {
        if let Some(msg) = Msg::from_push_info(push) {
            received += 1;
            handle(lab::seq_of(msg.get_payload_bytes()).unwrap_or(0)).await;
        }
    }
    received
}
// ANCHOR_END: while_let

async fn run(server: &RedisServer, n: u64, counting: bool) -> Result<(String, ResultLine)> {
    let channel = lab::unique_channel("ch06:lagged");
    let client = lab::push::resp3(&server.client()?)?;
    let (pushes, mut rx) = broadcast::channel::<PushInfo>(CAPACITY);
    let config = ConnectionManagerConfig::new()
        .set_automatic_resubscription()
        .set_push_sender(pushes);
    let mut manager = ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|error| lab::connect::describe(&error, server.url()))?;
    manager.subscribe(&channel).await?;
    // The subscribe confirmation is the first push: take it, so that every push after it
    // is a message.
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .context("no subscribe confirmation within 5 s")??;
    ensure!(first.kind == PushKind::Subscribe, "first push: {first:?}");
    let loop_task = tokio::spawn(async move {
        match counting {
            true => counting_loop(rx, Duration::from_secs(1)).await,
            false => (while_let_ok_loop(rx).await, 0, Tracker::new()),
        }
    });
    let mut con = server.client()?.get_multiplexed_async_connection().await?;
    let sent = Publisher::new(&channel).send(&mut con, 0..n).await?.sent;
    let (received, lagged, tracker) = if counting {
        loop_task.await?
    } else {
        // The loop has ended by itself (or would run until the manager is dropped).
        let ended = tokio::time::timeout(Duration::from_secs(5), loop_task).await;
        ended.context("the while-let loop did not end")??
    };
    drop(manager);
    let missing = tracker.stats().missing;
    let (scenario, noticed) = match counting {
        true => ("lagged-counted", lagged),
        false => ("lagged-while-let-ok", 0),
    };
    let said = match counting {
        true => format!(
            "counting loop: {received} handled; Lagged(n) said {lagged} were skipped; the \
             sequence numbers say {missing} are missing"
        ),
        false => format!(
            "while let Ok(..): {received} handled, then the loop ended on the first Lagged; \
             nothing said so"
        ),
    };
    let line = ResultLine::new(scenario, lab::REDIS_CURRENT, sent, received, noticed)
        .with("lagged", lagged)
        .with("gaps_missing", missing)
        .with("capacity", CAPACITY);
    Ok((said, line))
}
