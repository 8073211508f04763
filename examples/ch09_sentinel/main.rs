//! Chapter 9: a subscriber in a Sentinel deployment (a primary, a replica, three Sentinels)
//! when the primary dies, on redis 1.8.1.
//!
//! Each scenario starts its own deployment (`lab::sentinel`), subscribes one of the chapter's
//! subscribers (`subscribers.rs`), publishes numbered messages with heartbeats to whichever
//! server says it is the primary, SIGKILLs a server mid-run, and reports:
//! - `promoted_after_ms`: from the kill until the replica says `ROLE` master;
//! - `switch_master_after_ms`: until a Sentinel announced `+switch-master`;
//! - `resumed_after_ms`: until the subscriber heard a message published after the kill
//!   (`never`: not before the run ended, `followed=no`);
//! - `deaf_ms`: how long messages were being published again (after the kill) before the
//!   subscriber heard one (to the end of the run if it never did);
//! - `lost` and `noticed` (gaps and heartbeats, `lab::gaps::Tracker`).
//!
//! cargo run --example ch09_sentinel               (about a minute)
//! cargo run --example ch09_sentinel -- --quick    (shorter runs, the same scenarios)
//! cargo run --example ch09_sentinel -- --only failover-switch-master

mod subscribers;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use lab::gaps::Tracker;
use lab::message::Identity;
use lab::sentinel::SentinelDeployment;
use lab::{Pace, Publisher, ResultLine, Tally};
use tokio::sync::mpsc;

type Subscriber = fn(
    Vec<String>,
    String,
    mpsc::UnboundedSender<Vec<u8>>,
) -> Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// Which server the scenario kills.
#[derive(Clone, Copy, PartialEq)]
enum Victim {
    Primary,
    Replica,
}

struct Scenario {
    name: &'static str,
    subscriber: Subscriber,
    victim: Victim,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "failover-library-only",
            subscriber: |s, c, o| Box::pin(subscribers::library_only(s, c, o)),
            victim: Victim::Primary,
        },
        Scenario {
            name: "failover-switch-master",
            subscriber: |s, c, o| Box::pin(subscribers::follow_switch_master(s, c, o)),
            victim: Victim::Primary,
        },
        Scenario {
            name: "failover-replica-pubsub",
            subscriber: |s, c, o| Box::pin(subscribers::replica_pubsub(s, c, o)),
            victim: Victim::Primary,
        },
        Scenario {
            name: "failover-replica-manager",
            subscriber: |s, c, o| Box::pin(subscribers::replica_manager(s, c, o)),
            victim: Victim::Primary,
        },
        Scenario {
            name: "replica-killed-manager",
            subscriber: |s, c, o| Box::pin(subscribers::replica_manager(s, c, o)),
            victim: Victim::Replica,
        },
    ]
}

#[tokio::main]
async fn main() -> Result<()> {
    SentinelDeployment::refuse_redis_url()?;
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|arg| arg == "--only")
        .and_then(|i| args.get(i + 1));
    let mut results = Vec::new();
    for scenario in scenarios() {
        if only.is_some_and(|name| name != scenario.name) {
            continue;
        }
        results.push(run(&scenario).await?);
    }
    if results.is_empty() {
        bail!("no scenario is named {only:?}");
    }
    for result in results {
        result.print();
    }
    Ok(())
}

/// When each message was published, by number (`sent` = how many).
#[derive(Default)]
struct Published {
    at: Vec<Instant>,
}

fn ms(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

async fn run(scenario: &Scenario) -> Result<ResultLine> {
    let before = lab::scaled(Duration::from_secs(2), Duration::from_millis(700));
    let after = lab::scaled(Duration::from_secs(4), Duration::from_millis(1500));
    // Started on main's thread, which outlives it (the servers die with it).
    let mut deployment = SentinelDeployment::start()?;
    let channel = lab::unique_channel("ch09:sentinel");
    let servers = deployment.server_ports();
    let primary = deployment.primary_port()?;
    let replica = deployment.replica_port()?;
    println!(
        "{}: primary on port {primary}, replica on {replica}, 3 Sentinels (settled in {:.1?})",
        scenario.name,
        deployment.settled_in()
    );

    // The harness hears +switch-master itself, to time it.
    let switch_heard = Arc::new(Mutex::new(None::<Instant>));
    let watcher = {
        let client = redis::Client::open(deployment.sentinel_urls()[0].as_str())?;
        let mut events = client.get_async_pubsub().await?;
        events.subscribe("+switch-master").await?;
        let switch_heard = switch_heard.clone();
        tokio::spawn(async move {
            if events.into_on_message().next().await.is_some() {
                *switch_heard.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
            }
        })
    };

    // The subscriber, and a task that timestamps what it hands over.
    let (out, mut delivered) = mpsc::unbounded_channel::<Vec<u8>>();
    let subscriber = tokio::spawn((scenario.subscriber)(
        deployment.sentinel_urls(),
        channel.clone(),
        out,
    ));
    let heard = Arc::new(Mutex::new(Vec::<(Instant, Vec<u8>)>::new()));
    let collector = {
        let heard = heard.clone();
        tokio::spawn(async move {
            while let Some(payload) = delivered.recv().await {
                let now = Instant::now();
                heard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((now, payload));
            }
        })
    };
    wait_subscribed(&servers, &channel, &subscriber).await?;

    // The publisher: numbered messages to whichever server says it is the primary.
    let published = Arc::new(Mutex::new(Published::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let publishing = tokio::spawn(publish(
        servers.clone(),
        channel.clone(),
        published.clone(),
        stop_rx,
    ));

    tokio::time::sleep(before).await;
    let victim = match scenario.victim {
        Victim::Primary => primary,
        Victim::Replica => replica,
    };
    deployment.kill(victim)?;
    let killed = Instant::now();
    let (promoted, agreed) = if scenario.victim == Victim::Primary {
        let promoted = tokio::task::block_in_place(|| {
            deployment.wait_role(replica, "master", Duration::from_secs(15))
        })
        .context("the replica was not promoted within 15 s")?;
        let (_, agreed) = tokio::task::block_in_place(|| {
            deployment.wait_for_failover(primary, Duration::from_secs(15))
        })?;
        (Some(promoted), Some(killed.elapsed().max(agreed)))
    } else {
        (None, None)
    };
    tokio::time::sleep(after).await;
    let _ = stop_tx.send(true);
    let sent = publishing.await??;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ran = killed.elapsed();
    subscriber.abort();
    watcher.abort();
    let _ = collector.await;
    let switch_heard = *switch_heard.lock().unwrap_or_else(PoisonError::into_inner);
    drop(deployment);

    // What arrived, what was noticed, and when the subscriber heard again.
    let published = published.lock().unwrap_or_else(PoisonError::into_inner);
    let first_after_kill = published.at.iter().position(|&at| at > killed);
    let heard = heard.lock().unwrap_or_else(PoisonError::into_inner);
    let mut tally = Tally::new(sent);
    let mut tracker = Tracker::starting_at(0);
    let mut resumed = None;
    for (at, payload) in heard.iter() {
        let mark = lab::mark_of(payload).context("a payload that is not the lab's")?;
        tracker.observe(mark);
        if let Ok(seq) = lab::seq_of(payload) {
            tally.record(seq);
            if resumed.is_none() && first_after_kill.is_some_and(|first| seq as usize >= first) {
                resumed = Some(*at);
            }
        }
    }
    let publishing_again = first_after_kill.map(|first| published.at[first]);
    let deaf = match (publishing_again, resumed) {
        (Some(again), Some(resumed)) => resumed.saturating_duration_since(again),
        (Some(again), None) => (killed + ran).saturating_duration_since(again),
        (None, _) => Duration::ZERO,
    };
    let since_kill = |at: Option<Instant>| match at {
        Some(at) => ms(at.saturating_duration_since(killed)).to_string(),
        None => "never".to_string(),
    };
    let noticed = tracker.stats().missing;
    println!(
        "{}: killed the {} on port {victim}; missing: {}",
        scenario.name,
        if victim == primary {
            "primary"
        } else {
            "replica"
        },
        tally.missing_summary(4)
    );
    Ok(
        ResultLine::from_tally(scenario.name, lab::REDIS_CURRENT, &tally, noticed)
            .with("followed", if resumed.is_some() { "yes" } else { "no" })
            .with(
                "promoted_after_ms",
                promoted.map_or("none".into(), |d| ms(d).to_string()),
            )
            .with("switch_master_after_ms", since_kill(switch_heard))
            .with(
                "sentinels_agree_after_ms",
                agreed.map_or("none".into(), |d| ms(d).to_string()),
            )
            .with("publishing_again_after_ms", since_kill(publishing_again))
            .with("resumed_after_ms", since_kill(resumed))
            .with("deaf_ms", ms(deaf))
            .with("duplicates", tally.duplicates()),
    )
}

/// Wait until some data server counts a subscriber on `channel` (PUBSUB NUMSUB).
async fn wait_subscribed(
    servers: &[u16],
    channel: &str,
    subscriber: &tokio::task::JoinHandle<Result<()>>,
) -> Result<()> {
    let started = Instant::now();
    loop {
        for &port in servers {
            let client = redis::Client::open(SentinelDeployment::url_of(port))?;
            let Ok(mut con) = client.get_multiplexed_async_connection().await else {
                continue;
            };
            let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query_async(&mut con)
                .await?;
            if counts.iter().any(|(_, n)| *n > 0) {
                return Ok(());
            }
        }
        if subscriber.is_finished() {
            bail!("the subscriber stopped before it subscribed");
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("the subscriber did not subscribe within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publish numbered messages, one per round trip every 2 ms, with heartbeats, to whichever
/// server says `ROLE` master; a message no server accepted is sent again. Returns how many
/// were published (numbers `0..sent`), after a goodbye heartbeat.
async fn publish(
    servers: Vec<u16>,
    channel: String,
    published: Arc<Mutex<Published>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<u64> {
    let publisher = Publisher::new(&channel)
        .named(Identity::new("ch09-sentinel"))
        .pace(Pace::RoundTrip);
    let mut con = None;
    let mut seq = 0u64;
    while !*stop.borrow() {
        if con.is_none() {
            con = primary_connection(&servers).await;
        }
        let Some(connection) = con.as_mut() else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        match tokio::time::timeout(
            Duration::from_millis(500),
            publisher.send(connection, seq..seq + 1),
        )
        .await
        {
            Ok(Ok(_)) => {
                published
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .at
                    .push(Instant::now());
                seq += 1;
            }
            _ => con = None,
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if let Some(connection) = con.as_mut() {
        let _ = publisher.goodbye(connection, seq).await;
    }
    Ok(seq)
}

/// A connection to the data server that says `ROLE` master, if one does.
async fn primary_connection(servers: &[u16]) -> Option<redis::aio::MultiplexedConnection> {
    for &port in servers {
        let client = redis::Client::open(SentinelDeployment::url_of(port)).ok()?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(200)))
            .set_response_timeout(Some(Duration::from_millis(500)));
        let Ok(mut con) = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        else {
            continue;
        };
        let role: redis::RedisResult<Vec<redis::Value>> =
            redis::cmd("ROLE").query_async(&mut con).await;
        if let Ok(role) = role
            && role.first() == Some(&redis::Value::BulkString(b"master".to_vec()))
        {
            return Some(con);
        }
    }
    None
}
