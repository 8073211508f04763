//! Chapter 9: what the application-level workarounds for redis-rs's failover bug cost (the
//! bug itself: `ch09_failover_root_cause`). One cluster; one subscriber per workaround, one
//! channel each, all on the shard whose master dies. What a subscriber does when the library
//! hands it a `Disconnection` push:
//!
//! - `library-only`: nothing, the baseline;
//! - `resubscribe`: SSUBSCRIBE its channel again (chapter 9's `failover-app-resubscribe`),
//!   on redis 1.8.1 and on 2.0.0-rc.2;
//! - `refresh`: one command that only the slot's master may answer, to make the library
//!   re-read the slot map (what it never does by itself) and resubscribe from it.
//!
//! Two faults: `failover` (SIGKILL; the replica is promoted; then the dead master comes back,
//! as a replica of the new one) and `restart` (SIGKILL, back on its address at once). The
//! restart has one more subscriber, `library-only-two-slots`: subscribed to a second channel
//! on the same shard, in another slot (nobody publishes there). The publisher sends one
//! numbered message per channel every 5 ms (`lab::cluster::spublish_paced`).
//!
//! cargo run --example ch09_failover_workarounds [-- --quick]

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use lab::cluster::RedisCluster;
use lab::{ResultLine, Tally};

const CLIENTS: [&str; 2] = [lab::REDIS_CURRENT, "redis-2.0.0-rc.2"];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fix {
    LibraryOnly,
    Resubscribe,
    Refresh,
}

// ANCHOR: workaround
/// On a `Disconnection` push. `Resubscribe`: SSUBSCRIBE again, until it succeeds; the
/// replica of a dead master takes it at once (it serves its master's slots). `Refresh`: one
/// `EXISTS` routed to the slot's master: while the library's slot map names a dead one, the
/// command fails and makes the library re-read the map (`CLUSTER SLOTS`); a re-read after the
/// promotion resubscribes the channels the library tracks, on the new master.
macro_rules! on_disconnection {
    ($redis:ident, $con:expr, $channel:expr, $fix:expr) => {{
        let (mut con, channel) = ($con.clone(), $channel.clone());
        tokio::spawn(async move {
            if $fix == Fix::Resubscribe {
                while con.ssubscribe(&channel).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            } else {
                use $redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo};
                let master = Route::with_key(&channel, $redis::cluster_routing::SlotAddr::Master);
                let to_master =
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(master));
                let mut exists = $redis::cmd("EXISTS");
                exists.arg(&channel);
                let _ = con.route_command(exists, to_master).await;
            }
        });
    }};
}
// ANCHOR_END: workaround

/// A cluster subscriber (RESP3, push sender) on `$channel`, and on `$quiet` (a channel nobody
/// publishes on) if it is `Some`, that applies `$fix`; returns the messages it receives,
/// `(number, arrival)`, and its task.
macro_rules! subscriber {
    ($redis:ident, $urls:expr, $channel:expr, $quiet:expr, $fix:expr) => {{
        let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
        let client = $redis::cluster::ClusterClientBuilder::new($urls)
            .use_protocol($redis::ProtocolVersion::RESP3)
            .push_sender(tx)
            .build()?;
        let mut con = client.get_async_connection().await?;
        con.ssubscribe(&$channel).await?;
        if let Some(quiet) = $quiet {
            con.ssubscribe(quiet).await?;
        }
        let (arrivals, channel, fix) = (Arc::new(Mutex::new(Vec::new())), $channel.clone(), $fix);
        let seen = arrivals.clone();
        let task = tokio::spawn(async move {
            while let Some(push) = pushes.recv().await {
                match (push.kind, push.data.as_slice()) {
                    ($redis::PushKind::SMessage, [_, $redis::Value::BulkString(payload)]) => {
                        let seq = lab::seq_of(payload).unwrap_or(u64::MAX);
                        seen.lock().unwrap().push((seq, Instant::now()));
                    }
                    ($redis::PushKind::Disconnection, _) if fix != Fix::LibraryOnly => {
                        on_disconnection!($redis, con, channel, fix)
                    }
                    _ => {}
                }
            }
        });
        (arrivals, task)
    }};
}

type Arrivals = Mutex<Vec<(u64, Instant)>>;

fn heard_since(arrivals: &Arrivals, since: Instant) -> bool {
    arrivals.lock().unwrap().iter().any(|(_, at)| *at > since)
}

#[tokio::main]
async fn main() -> Result<()> {
    RedisCluster::refuse_redis_url()?;
    let mut cluster = tokio::task::spawn_blocking(|| -> Result<RedisCluster> {
        let mut cluster = RedisCluster::start(3, 1)?;
        cluster.wait_replicas_listed(Duration::from_secs(30))?; // so that clients know them
        Ok(cluster)
    })
    .await??;
    println!("cluster of 6 nodes settled, every replica listed in CLUSTER SLOTS");
    // (release, workaround, also subscribed to a channel of another slot on the same shard)
    let failover = [
        (0, Fix::LibraryOnly, false),
        (0, Fix::Resubscribe, false),
        (0, Fix::Refresh, false),
        (1, Fix::Resubscribe, false),
    ];
    let promoted = run(&mut cluster, "failover", &failover, None).await?;
    let mut restart = failover[..3].to_vec();
    restart.push((0, Fix::LibraryOnly, true));
    run(&mut cluster, "restart", &restart, Some(promoted)).await?;
    Ok(())
}

/// One fault under one subscriber per `plan` entry (release, fix, two slots), on a master other than
/// `avoid` (whose replica is new). Returns the replica that took over.
async fn run(
    cluster: &mut RedisCluster,
    fault: &str,
    plan: &[(usize, Fix, bool)],
    avoid: Option<u16>,
) -> Result<u16> {
    let (urls, masters) = (cluster.urls(), cluster.master_ports()?);
    let victim = *masters
        .iter()
        .find(|&&port| Some(port) != avoid)
        .ok_or(anyhow!("no master"))?;
    let replica = cluster.replica_of(victim)?;
    let mut channels: Vec<String> = Vec::new(); // each in a slot of its own, on the victim
    while channels.len() < plan.len() + 1 {
        let name = lab::unique_channel("ch09:wa");
        let slot = cluster.slot_of(&name)?;
        if cluster.master_of(&name)? == victim
            && channels
                .iter()
                .all(|c| cluster.slot_of(c).is_ok_and(|s| s != slot))
        {
            channels.push(name);
        }
    }
    let quiet = channels.pop();
    let mut subscribers = Vec::new();
    for (&(release, fix, two_slots), channel) in plan.iter().zip(&channels) {
        let quiet = quiet.as_ref().filter(|_| two_slots);
        subscribers.push(match release {
            0 => subscriber!(redis, urls.clone(), channel, quiet, fix),
            _ => subscriber!(redis_2_0, urls.clone(), channel, quiet, fix),
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = std::thread::spawn({
        let (channels, stop, every) = (channels.clone(), stop.clone(), Duration::from_millis(5));
        move || lab::cluster::spublish_paced([victim, replica], &channels, every, &stop)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    cluster.kill(victim)?;
    let back_after = tokio::task::block_in_place(|| match fault {
        "restart" => cluster.restart(victim).map(|()| killed.elapsed()),
        _ => cluster.wait_promoted(replica, Duration::from_secs(30)),
    })?;
    // Until every workaround has resumed, for a few seconds at most, then a little more.
    let deadline = Instant::now() + Duration::from_secs(lab::scaled(5, 3));
    let fixed = || {
        plan.iter()
            .zip(&subscribers)
            .filter(|((_, fix, _), _)| *fix != Fix::LibraryOnly)
    };
    while Instant::now() < deadline && !fixed().all(|(_, s)| heard_since(&s.0, killed)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(lab::scaled(2_000, 500))).await;
    let mut holders = Vec::new();
    for channel in &channels {
        let nodes = tokio::task::block_in_place(|| cluster.shard_subscribers(channel))?;
        let ports: Vec<String> = nodes.iter().map(|(port, _)| port.to_string()).collect();
        holders.push(if ports.is_empty() {
            "none".into()
        } else {
            ports.join("+")
        });
    }
    let returned = Instant::now();
    if fault == "failover" {
        // The dead master comes back, as a replica of the node that replaced it. Until the
        // library-only subscriber hears again (it resubscribes there), then a little more.
        tokio::task::block_in_place(|| cluster.restart(victim))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !heard_since(&subscribers[0].0, returned) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(lab::scaled(2_000, 500))).await;
        println!(
            "failover: master :{victim} killed, :{replica} promoted after {back_after:.1?}, :{victim} back as its replica"
        );
    } else {
        println!("restart: master :{victim} killed and back on its address after {back_after:.1?}");
    }
    stop.store(true, Relaxed);
    let sent = publisher.join().expect("the publisher does not panic");
    tokio::time::sleep(Duration::from_millis(300)).await; // the last messages
    for (i, (arrivals, task)) in subscribers.into_iter().enumerate() {
        task.abort();
        let arrivals = arrivals.lock().unwrap().clone();
        let ((release, fix, two_slots), mut tally) = (plan[i], Tally::new(sent[i]));
        arrivals.iter().for_each(|&(seq, _)| tally.record(seq));
        // noticed: the holes a gap detector reports, because later messages arrived.
        let highest = arrivals.iter().map(|&(seq, _)| seq).max().unwrap_or(0);
        let holes = tally
            .missing()
            .into_iter()
            .filter(|hole| *hole.end() < highest);
        let noticed = holes.map(|hole| hole.end() - hole.start() + 1).sum();
        // Deaf time: from the kill to the first message after it (before the old master's
        // return, after a failover). What arrives in the first 50 ms was written before the
        // SIGKILL (a CI run counted one such message as resumed_after_ms=0, as the root-cause
        // reproducer once did): the fault window starts after it.
        let in_fault = |at: &Instant| {
            *at > killed + Duration::from_millis(50) && (fault == "restart" || *at < returned)
        };
        let resumed = match arrivals.iter().find(|(_, at)| in_fault(at)) {
            Some((_, at)) => (*at - killed).as_millis().to_string(),
            None => "never".into(),
        };
        let after_return = match fault {
            "failover" => arrivals
                .iter()
                .filter(|(_, at)| *at > returned)
                .count()
                .to_string(),
            _ => "-".into(),
        };
        let fix = match fix {
            Fix::LibraryOnly => "library-only",
            Fix::Resubscribe => "resubscribe",
            Fix::Refresh => "refresh",
        };
        let two_slots = if two_slots { "-two-slots" } else { "" };
        let scenario = format!("{fault}-{fix}{two_slots}");
        ResultLine::from_tally(&scenario, CLIENTS[release], &tally, noticed)
            .with("back_after_ms", back_after.as_millis())
            .with("resumed_after_ms", resumed)
            .with("subscribed_on", &holders[i])
            .with("duplicates", tally.duplicates())
            .with("heard_after_return", after_return)
            .print();
    }
    Ok(replica)
}
