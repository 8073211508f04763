//! Chapter 6: the subscriber to copy (`examples/ch06_minimal_subscriber.rs`, included here as
//! a module) on a throwaway server, through what it must survive: a burst far bigger than its
//! queue, a killed connection, bad payloads, and a SIGTERM.
//!
//! cargo run --example ch06_minimal_demo                  # 4 publishers x 250,000
//! cargo run --example ch06_minimal_demo -- --quick       # 4 x 50,000
//! cargo run --example ch06_minimal_demo -- --multi-thread
//!
//! The subscriber runs on a thread of its own with a current-thread runtime (`--multi-thread`:
//! a multi-thread one), as a small service would, and handles messages slowly (1 ms every 10
//! messages) into a queue of 1,000. Two named publishers per channel, on two channels, send a
//! burst, then a paced stream during which `CLIENT KILL TYPE pubsub` cuts the subscriber off;
//! then 5 bad payloads, the publishers' goodbye heartbeats, and a real SIGTERM to this
//! process. The handler records every message it gets in a `lab::Tally` per publisher, so
//! `lost` is counted here, independently of what the subscriber believes (`noticed` =
//! `dropped + missing`, its own counters).

#[allow(dead_code)] // its `main`: the demo calls `run` and `shutdown_signal` instead
#[path = "ch06_minimal_subscriber.rs"]
mod subscriber;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lab::message::{Identity, Mark, mark_of};
use lab::{Pace, Publisher, RedisServer, ResultLine, Tally};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The subscriber's queue: far smaller than the burst.
const CAPACITY: usize = 1_000;
const PAYLOAD: usize = 128;

/// What the handler saw, per `<channel> <publisher>`, and anything it should never have seen.
#[derive(Default)]
struct Seen {
    tallies: HashMap<String, Tally>,
    not_a_message: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    // CLIENT KILL: only ever on a server the lab started, never on REDIS_URL's.
    let mut server = RedisServer::start()?;
    println!("Redis at {}", server.display_url());
    let multi_thread = std::env::args().any(|arg| arg == "--multi-thread");
    let runtime = if multi_thread {
        "multi-thread"
    } else {
        "current-thread"
    };
    let channels = vec![
        lab::unique_channel("ch06:minimal:a"),
        lab::unique_channel("ch06:minimal:b"),
    ];
    let burst = lab::scaled(250_000, 50_000);
    let publishers: Vec<Publisher> = channels
        .iter()
        .flat_map(|channel| {
            ["alpha", "beta"].map(|name| {
                Publisher::new(channel)
                    .named(Identity::new(name))
                    .payload_size(PAYLOAD)
            })
        })
        .collect();
    let seen = Arc::new(Mutex::new(Seen::default()));
    for publisher in &publishers {
        let key = key(publisher.channel(), publisher.identity().context("named")?);
        let tally = Tally::new(burst);
        seen.lock().unwrap().tallies.insert(key, tally);
    }

    // The subscriber, on its own thread and runtime, with a slow handler that records what
    // it gets.
    let subscriber = {
        let (url, channels, seen) = (server.url().to_string(), channels.clone(), seen.clone());
        std::thread::spawn(move || -> Result<subscriber::Counters> {
            let runtime = if multi_thread {
                tokio::runtime::Builder::new_multi_thread()
            } else {
                tokio::runtime::Builder::new_current_thread()
            }
            .enable_all()
            .build()?;
            runtime.block_on(async {
                let mut handled = 0u64;
                let handler = move |msg: redis::Msg| {
                    handled += 1;
                    let (seen, slow) = (seen.clone(), handled.is_multiple_of(10));
                    async move {
                        record(&seen, &msg);
                        if slow {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                };
                let shutdown = subscriber::shutdown_signal()?;
                subscriber::run(&url, &channels, CAPACITY, handler, shutdown).await
            })
        })
    };
    let first = wait_subscribed(&server, &channels, &subscriber, None).await?;
    let rss_idle_mb = lab::mem::rss_mb().unwrap_or(0.0);

    // 1. A burst from every publisher at once, as fast as Redis takes it. In the middle of it
    // (once Redis holds output for the subscriber), Redis closes the subscriber's connection.
    let client = server.client()?;
    let started = Instant::now();
    let publishing = {
        let (client, publishers) = (client.clone(), publishers.clone());
        tokio::spawn(async move { publish_all(&client, &publishers, 0..burst, Pace::Burst).await })
    };
    let pending = wait_for_output(&server, &publishing).await?;
    let killed = server.kill_pubsub_clients()?;
    let killed_ms = started.elapsed().as_millis();
    wait_subscribed(&server, &channels, &subscriber, Some(first)).await?;
    let resubscribed_ms = started.elapsed().as_millis() - killed_ms;
    publishing.await??;
    println!(
        "burst: {} messages in {} ms; CLIENT KILL at {killed_ms} ms ({pending} bytes queued for \
         the subscriber); subscribed again {resubscribed_ms} ms later",
        burst * publishers.len() as u64,
        started.elapsed().as_millis()
    );

    // 2. Bad payloads: not UTF-8, no number, a broken heartbeat, a bare number, a bad epoch.
    let bad: [&[u8]; 5] = [
        b"\xff\xfe#",
        b"hello",
        b"~hb:alpha:1",
        b"42#",
        b"alpha:x:1#",
    ];
    let mut con = client.get_multiplexed_async_connection().await?;
    for payload in bad {
        redis::cmd("PUBLISH")
            .arg(&channels[0])
            .arg(payload)
            .exec_async(&mut con)
            .await?;
    }

    // 3. Goodbyes: every publisher says how many messages it sent, so that no loss at the
    // end of a run can hide.
    for publisher in &publishers {
        publisher.goodbye(&mut con, burst).await?;
    }

    // ANCHOR: sigterm
    // 4. SIGTERM, as `docker stop` sends it: the subscriber unsubscribes, handles what is
    // queued, and returns its counters.
    kill(Pid::this(), Signal::SIGTERM)?;
    let counts = tokio::task::spawn_blocking(move || subscriber.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the subscriber thread panicked"))??;
    println!("final: {counts:?}");
    // ANCHOR_END: sigterm
    let rss_peak_mb = lab::mem::peak_rss_mb().unwrap_or(0.0);
    // A subscriber that reads more slowly than four publishers write (a debug build, a busy
    // machine) can also be disconnected by Redis itself: each time is a line of its log.
    let buffer_limit = server.log_lines("output buffer limits").len();

    let seen = seen.lock().unwrap();
    let (mut sent, mut received, mut duplicates, mut out_of_order) = (0, 0, 0, 0);
    for tally in seen.tallies.values() {
        sent += tally.sent();
        received += tally.received();
        duplicates += tally.duplicates();
        out_of_order += tally.out_of_order();
    }
    let noticed = counts.dropped + counts.missing;
    ResultLine::new("minimal", lab::REDIS_CURRENT, sent, received, noticed)
        .with("runtime", runtime)
        .with("processed", counts.processed)
        .with("dropped", counts.dropped)
        .with("missing", counts.missing)
        .with("bad", counts.bad)
        .with("bad_sent", bad.len())
        .with("received_by_subscriber", counts.received)
        .with("unknown_gaps", counts.unknown_gaps)
        .with("reconnects", counts.reconnects)
        .with("killed", killed)
        .with("buffer_limit_disconnects", buffer_limit)
        .with("duplicates", duplicates)
        .with("out_of_order", out_of_order)
        .with("handler_saw_non_messages", seen.not_a_message)
        .with("queue", CAPACITY)
        .with("resubscribed_ms", resubscribed_ms)
        .with("rss_idle_mb", format!("{rss_idle_mb:.1}"))
        .with("rss_peak_mb", format!("{rss_peak_mb:.1}"))
        .print();
    Ok(())
}

fn key(channel: &str, identity: &Identity) -> String {
    format!("{channel} {}", identity.publisher())
}

/// The handler's record: which message of which publisher arrived.
fn record(seen: &Mutex<Seen>, msg: &redis::Msg) {
    let mut seen = seen.lock().unwrap();
    match mark_of(msg.get_payload_bytes()) {
        Ok(Mark::Message {
            origin: Some(origin),
            seq,
        }) => {
            match seen
                .tallies
                .get_mut(&format!("{} {}", msg.get_channel_name(), origin.publisher))
            {
                Some(tally) => tally.record(seq),
                None => seen.not_a_message += 1,
            }
        }
        _ => seen.not_a_message += 1,
    }
}

/// Every publisher sends `seqs` on its own connection, all at once; then a heartbeat.
async fn publish_all(
    client: &redis::Client,
    publishers: &[Publisher],
    seqs: std::ops::Range<u64>,
    pace: Pace,
) -> Result<()> {
    let mut tasks = Vec::new();
    for publisher in publishers {
        let publisher = publisher.clone().pace(pace);
        let (client, seqs) = (client.clone(), seqs.clone());
        tasks.push(tokio::spawn(async move {
            let mut con = client.get_multiplexed_async_connection().await?;
            publisher.send(&mut con, seqs.clone()).await?;
            publisher.heartbeat(&mut con, seqs.end).await?;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Until Redis holds output for the subscriber (its `omem`, in bytes), or publishing is over.
async fn wait_for_output(
    server: &RedisServer,
    publishing: &tokio::task::JoinHandle<Result<()>>,
) -> Result<u64> {
    let mut con = server.client()?.get_multiplexed_async_connection().await?;
    while !publishing.is_finished() {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut con)
            .await?;
        let omem = list
            .split_whitespace()
            .find_map(|field| field.strip_prefix("omem=")?.parse().ok())
            .unwrap_or(0);
        if omem > 0 {
            return Ok(omem);
        }
    }
    Ok(0)
}

/// Until a subscriber connection other than `previous` has every channel subscribed (its
/// SUBSCRIBE was confirmed); its client id. An error if the subscriber stopped instead.
async fn wait_subscribed(
    server: &RedisServer,
    channels: &[String],
    subscriber: &std::thread::JoinHandle<Result<subscriber::Counters>>,
    previous: Option<u64>,
) -> Result<u64> {
    let mut con = server.client()?.get_multiplexed_async_connection().await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let subscribed = format!(" sub={} ", channels.len());
    loop {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut con)
            .await?;
        let id = list
            .lines()
            .filter(|client| client.contains(&subscribed))
            .filter_map(|client| client.strip_prefix("id=")?.split(' ').next()?.parse().ok())
            .find(|id| Some(*id) != previous);
        if let Some(id) = id {
            return Ok(id);
        }
        if subscriber.is_finished() {
            bail!("the subscriber stopped before it subscribed (see its error above)");
        }
        if Instant::now() > deadline {
            bail!("the subscriber did not subscribe within 20 s: {list}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
