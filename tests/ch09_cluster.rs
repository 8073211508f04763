//! Chapter 9's claims, checked on a local Redis Cluster (redis-server 7.0, redis 1.8.1).
//!
//! Each test starts its own 6-node cluster (about 7 s to settle). The example tests run the
//! chapter's programs in quick mode and read their RESULT lines, so the numbers the chapter
//! shows and the numbers checked here come from the same code.
//!
//! Every test that starts a cluster or a Sentinel deployment holds [`one_at_a_time`] first:
//! a failover measured while another one runs on the same 2 cores measures the machine.

use std::net::TcpStream;
use std::sync::{Mutex, MutexGuard, PoisonError};

use lab::cluster::RedisCluster;
use lab::report::{ResultLine, find};
use redis::ProtocolVersion;
use redis::cluster::ClusterClientBuilder;

fn run_example(name: &str) -> Vec<ResultLine> {
    let run = lab::example::run_with_env(name, &[], &[("LAB_QUICK", "1")]).unwrap();
    let results = run.results().unwrap();
    println!("{}", run.stdout());
    results
}

/// Serialises this file's cluster and Sentinel tests (cargo runs a file's tests in parallel).
/// A test that panicked poisons the lock; the next one still runs.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn extra_u64(result: &ResultLine, key: &str) -> u64 {
    result.get_f64(key).unwrap() as u64
}

#[test]
fn the_lab_cluster_settles_with_every_replica_linked_and_stops_on_drop() {
    let _serial = one_at_a_time();
    let mut cluster = RedisCluster::start(3, 1).unwrap();
    let nodes = cluster.nodes().unwrap();
    assert_eq!(nodes.len(), 6);
    let masters: Vec<_> = nodes.iter().filter(|node| node.is_master).collect();
    assert_eq!(masters.len(), 3);
    let slots: u32 = masters
        .iter()
        .flat_map(|master| &master.slots)
        .map(|&(first, last)| u32::from(last - first) + 1)
        .sum();
    assert_eq!(slots, 16384);
    for master in &masters {
        // Every master has its replica: `start` waited for master_link_status:up.
        let replica = cluster.replica_of(master.port).unwrap();
        assert_ne!(replica, master.port);
    }
    // Channel names land where CLUSTER KEYSLOT says, spread over every shard.
    let shards = cluster.channels_per_shard("ch09:test", 2).unwrap();
    assert_eq!(shards.len(), 3);
    for (names, &master) in shards.iter().zip(&cluster.master_ports().unwrap()) {
        for name in names {
            assert_eq!(cluster.master_of(name).unwrap(), master);
        }
    }

    // The two first-try failures the chapter lists, on the same cluster.
    let (a, b) = (shards[0][0].clone(), shards[1][0].clone());
    let urls = cluster.urls();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // RESP2 with a push sender: build() succeeds, SSUBSCRIBE fails.
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel::<redis::PushInfo>();
        let client = ClusterClientBuilder::new(urls.clone())
            .push_sender(tx)
            .build()
            .unwrap();
        let mut con = client.get_async_connection().await.unwrap();
        let error = con.ssubscribe(&a).await.unwrap_err();
        println!("RESP2 + push sender, SSUBSCRIBE: {error}");
        assert!(error.to_string().contains("RESP3"), "{error}");

        // One SSUBSCRIBE over channels of two shards: CROSSSLOT.
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel::<redis::PushInfo>();
        let client = ClusterClientBuilder::new(urls)
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(tx)
            .build()
            .unwrap();
        let mut con = client.get_async_connection().await.unwrap();
        let error = con.ssubscribe(&[&a, &b]).await.unwrap_err();
        println!("SSUBSCRIBE over two shards: {error}");
        assert!(
            error.to_string().contains("CrossSlot") || error.to_string().contains("CROSSSLOT"),
            "{error}"
        );
        con.ssubscribe(&a).await.unwrap();
        con.ssubscribe(&b).await.unwrap();
    });

    let ports = cluster.ports();
    drop(cluster);
    for port in ports {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "node on port {port} still answers after the cluster was dropped"
        );
    }
}

#[test]
fn cluster_examples_fail_clearly_with_redis_url_or_without_redis_cli() {
    let clear_failure = |name: &str, env: &[(&str, &str)], expected: &str| {
        let mut env = env.to_vec();
        env.push(("LAB_QUICK", "1"));
        let run = lab::example::run_with_env(name, &[], &env).unwrap();
        let stderr = run.stderr();
        assert!(
            !run.output.status.success(),
            "{name} succeeded with {env:?}"
        );
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        stderr
    };
    for name in ["ch09_sharded", "ch09_failover", "ch09_solution"] {
        let stderr = clear_failure(
            name,
            &[("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/")],
            "Redis Cluster of its own",
        );
        assert!(!stderr.contains("hunter2"), "{name} printed the password");
    }
    clear_failure(
        "ch09_sharded",
        &[("LAB_REDIS_CLI", "/nonexistent/redis-cli")],
        "`/nonexistent/redis-cli` was not found",
    );
    clear_failure(
        "ch09_sharded",
        &[("LAB_REDIS_SERVER", "/nonexistent/redis-server")],
        "`/nonexistent/redis-server` was not found",
    );
}

#[test]
fn sharded_pubsub_delivers_every_message_and_classic_publish_is_broadcast() {
    let _serial = one_at_a_time();
    let results = run_example("ch09_sharded");

    // 10,000 messages over 12 channels, 4 on each of the 3 shards: every one arrives.
    let all = find(&results, "sharded-all-shards", lab::REDIS_CURRENT).unwrap();
    assert_eq!((all.sent, all.received, all.lost), (10_000, 10_000, 0));
    assert_eq!(all.get("shards"), Some("3"));
    assert_eq!(all.get("disconnects"), Some("0"));

    // Same load in one slot, then spread over three shards: nothing lost either way, and
    // the busiest node works less when the channels are spread.
    let one = find(&results, "throughput-1-shard", lab::REDIS_CURRENT).unwrap();
    let three = find(&results, "throughput-3-shards", lab::REDIS_CURRENT).unwrap();
    assert_eq!((one.lost, three.lost), (0, 0));
    assert!(one.get_f64("msg_per_s").unwrap() > 0.0 && three.get_f64("msg_per_s").unwrap() > 0.0);
    let busiest_one = one.get_f64("busiest_node_cpu_ms").unwrap();
    let busiest_three = three.get_f64("busiest_node_cpu_ms").unwrap();
    assert!(
        busiest_three < busiest_one,
        "busiest node: {busiest_three} ms with 3 shards, {busiest_one} ms with 1"
    );

    // Classic PUBLISH is forwarded over the cluster bus to the 5 other nodes; SPUBLISH only
    // to the shard's replica. It shows in the nodes' CPU too.
    let publish = find(&results, "broadcast-publish", lab::REDIS_CURRENT).unwrap();
    let spublish = find(&results, "broadcast-spublish", lab::REDIS_CURRENT).unwrap();
    assert_eq!((publish.lost, spublish.lost), (0, 0));
    let bus_publish = publish.get_f64("bus_msgs_per_publish").unwrap();
    let bus_spublish = spublish.get_f64("bus_msgs_per_publish").unwrap();
    assert!(
        (4.5..=5.5).contains(&bus_publish),
        "PUBLISH: {bus_publish} bus messages each"
    );
    assert!(
        (0.5..=1.5).contains(&bus_spublish),
        "SPUBLISH: {bus_spublish} bus messages each"
    );
    assert!(
        publish.get_f64("cluster_cpu_us_per_msg").unwrap()
            > spublish.get_f64("cluster_cpu_us_per_msg").unwrap()
    );

    // SPUBLISH's reply counts the subscribers of the node that ran it: a subscriber on the
    // replica got every message while every reply said 0.
    let reply = find(
        &results,
        "spublish-reply-replica-subscriber",
        lab::REDIS_CURRENT,
    )
    .unwrap();
    assert_eq!(reply.lost, 0);
    assert_eq!(extra_u64(reply, "replied_0"), reply.sent);
}

#[test]
fn after_a_failover_only_the_application_resubscribe_brings_the_shard_back() {
    let _serial = one_at_a_time();
    let results = run_example("ch09_failover");

    // The same master back on its address: the library reconnects and resubscribes by itself.
    let restart = find(&results, "restart-library-only", lab::REDIS_CURRENT).unwrap();
    assert_ne!(restart.get("resumed_after_ms"), Some("never"), "{restart}");
    assert_eq!(extra_u64(restart, "silent_channels"), 0, "{restart}");

    // A replica takes over and the application does nothing: the library documents that it
    // resubscribes, but on redis 1.8.1 the failed shard's channel stays silent to the end.
    let alone = find(&results, "failover-library-only", lab::REDIS_CURRENT).unwrap();
    assert_eq!(alone.get("resumed_after_ms"), Some("never"), "{alone}");
    assert!(extra_u64(alone, "lost_victim_shard") >= 200, "{alone}");
    assert_eq!(extra_u64(alone, "lost_other_shards"), 0, "{alone}");
    // The gap detector cannot see a loss nothing follows; the subscriber still has two
    // signals: the Disconnection push, and a channel gone quiet.
    assert_eq!(alone.noticed, 0, "{alone}");
    assert!(extra_u64(alone, "disconnect_pushes") >= 1, "{alone}");
    assert_eq!(extra_u64(alone, "silent_channels"), 1, "{alone}");

    // Not even an ordinary command for the failed slot, sent on the subscriber's connection
    // after the promotion, makes the library move the subscription.
    let command = find(
        &results,
        "failover-library-after-command",
        lab::REDIS_CURRENT,
    )
    .unwrap();
    assert_ne!(command.get("command_after_ms"), Some("none"), "{command}");
    assert_eq!(command.get("resumed_after_ms"), Some("never"), "{command}");
    assert_eq!(extra_u64(command, "silent_channels"), 1, "{command}");

    // Resubscribing when the Disconnection push arrives: the channel comes back within
    // seconds, the gap is small, and the gap detector noticed all of it.
    let app = find(&results, "failover-app-resubscribe", lab::REDIS_CURRENT).unwrap();
    let resumed: f64 = app
        .get("resumed_after_ms")
        .unwrap()
        .parse()
        .unwrap_or(f64::MAX);
    assert!(resumed < 3_000.0, "{app}");
    assert_eq!(app.silent_loss(), 0, "{app}");
    assert!(app.lost <= app.sent / 20, "{app}");
    assert_eq!(extra_u64(app, "silent_channels"), 0, "{app}");
    assert_eq!(extra_u64(app, "lost_other_shards"), 0, "{app}");

    // During the failover, SPUBLISH mostly did not fail: it replied 0 (executed by the
    // replica, which had no subscriber), and those messages were lost.
    assert!(
        extra_u64(alone, "replied_0") >= extra_u64(alone, "lost_victim_shard") / 2,
        "{alone}"
    );
}

/// The `client=` name of redis 2.0.0-rc.2 (the lab names only the releases it is built with).
const REDIS_2_0: &str = "redis-2.0.0-rc.2";

// Issue 20, the root cause. After a master dies, redis-rs's cluster connection retries its
// address (the reconnect loop) and never re-reads the slot map by itself: a connection that
// only listens sends no command that could fail and ask for a refresh. So its resubscription
// follows the address, not the slot: nothing during the failover, and a resubscription on
// the old address once that node is back, whatever it is now. Checked on the pinned 1.8.1
// and on 2.0.0-rc.2 (ci/canary.sh moves both): a release that fixes it fails this test.
#[test]
fn after_a_failover_the_library_retries_the_dead_address_and_never_rereads_the_slot_map() {
    let _serial = one_at_a_time();
    let results = run_example("ch09_failover_root_cause");
    for client in [lab::REDIS_CURRENT, REDIS_2_0] {
        let run = find(&results, "failover-library-only", client).unwrap();
        // During the failover: subscribed on no node, nothing heard, not one slot refresh,
        // while the reconnect attempts to the dead address went on (backoff up to 1 s).
        assert_eq!(extra_u64(run, "subscribed_during_failover"), 0, "{run}");
        assert_eq!(extra_u64(run, "heard_during_failover"), 0, "{run}");
        assert_eq!(extra_u64(run, "slot_refreshes"), 0, "{run}");
        assert!(extra_u64(run, "reconnect_attempts") >= 5, "{run}");
        // The dead master's address answers again, as a replica: resubscribed there.
        assert_ne!(run.get("resumed_after_return_ms"), Some("never"), "{run}");
    }
}

// Issue 20, the workarounds, measured side by side on one failover and one restart.
#[test]
fn resubscribing_on_disconnection_hears_within_a_second_and_duplicates_once_the_old_master_is_back()
{
    let _serial = one_at_a_time();
    let results = run_example("ch09_failover_workarounds");
    let ms = |run: &ResultLine, key: &str| run.get(key).unwrap().parse::<u64>().ok();

    // The baseline: silent until the dead master's address answers again.
    let alone = find(&results, "failover-library-only", lab::REDIS_CURRENT).unwrap();
    assert_eq!(alone.get("resumed_after_ms"), Some("never"), "{alone}");
    assert_eq!(alone.get("subscribed_on"), Some("none"), "{alone}");
    assert!(extra_u64(alone, "heard_after_return") > 0, "{alone}");

    // Resubscribing (chapter 9's workaround), on both releases: heard again long before the
    // promotion (the replica takes the subscription), every loss noticed. When the old
    // master is back as a replica, the library resubscribes there too: every message twice.
    for client in [lab::REDIS_CURRENT, REDIS_2_0] {
        let run = find(&results, "failover-resubscribe", client).unwrap();
        let resumed = ms(run, "resumed_after_ms").unwrap_or(u64::MAX);
        assert!(
            resumed < 1_000 && resumed < extra_u64(run, "back_after_ms"),
            "{run}"
        );
        assert_eq!(run.silent_loss(), 0, "{run}");
        assert_ne!(run.get("subscribed_on"), Some("none"), "{run}");
        assert!(extra_u64(run, "duplicates") > 0, "{run}");
    }

    // One command routed to the slot's master makes the library re-read the slot map, but
    // only a re-read after the promotion helps: never before it (and in some runs not at all).
    let refresh = find(&results, "failover-refresh", lab::REDIS_CURRENT).unwrap();
    if let Some(resumed) = ms(refresh, "resumed_after_ms") {
        assert!(resumed >= extra_u64(refresh, "back_after_ms"), "{refresh}");
    }
    assert_eq!(extra_u64(refresh, "duplicates"), 0, "{refresh}");

    // A master back on its address at once: the library alone resubscribes it; resubscribing
    // from the application as well leaves the channel subscribed on the master and on its
    // replica, and every message arrives twice.
    let alone = find(&results, "restart-library-only", lab::REDIS_CURRENT).unwrap();
    assert_ne!(alone.get("resumed_after_ms"), Some("never"), "{alone}");
    assert_eq!(extra_u64(alone, "duplicates"), 0, "{alone}");
    let both = find(&results, "restart-resubscribe", lab::REDIS_CURRENT).unwrap();
    assert_eq!(both.lost, 0, "{both}");
    assert!(both.get("subscribed_on").unwrap().contains('+'), "{both}");
    assert!(extra_u64(both, "duplicates") > 0, "{both}");

    // The library's own resubscription sends a node's channels in one SSUBSCRIBE: with two
    // slots on the node, the server refuses it (CROSSSLOT), the library drops the error, and
    // neither channel comes back, even though the master is back on its address.
    let two = find(
        &results,
        "restart-library-only-two-slots",
        lab::REDIS_CURRENT,
    )
    .unwrap();
    assert_eq!(two.get("resumed_after_ms"), Some("never"), "{two}");
    assert_eq!(two.get("subscribed_on"), Some("none"), "{two}");
}

// Issue 19: Sentinel. The lab's deployment: a primary, a replica, three Sentinels that agree
// before `start` returns; a SIGKILLed primary is replaced within the 15 s every failover test
// allows, and so is a SIGSTOPped one; nothing is left running after a drop.
#[test]
fn sentinel_lab_settles_fails_over_and_stops_every_process_on_drop() {
    use lab::sentinel::SentinelDeployment;
    use std::time::Duration;
    let _serial = one_at_a_time();
    for signal in ["SIGKILL", "SIGSTOP"] {
        let mut deployment = SentinelDeployment::start().unwrap();
        println!("settled in {:?}", deployment.settled_in());
        let primary = deployment.primary_port().unwrap();
        let replica = deployment.replica_port().unwrap();
        assert_ne!(primary, replica);
        assert_eq!(SentinelDeployment::role_of(primary).unwrap(), "master");
        assert_eq!(SentinelDeployment::role_of(replica).unwrap(), "slave");
        assert_eq!(deployment.pids().len(), 5);

        // The replica is promoted and every Sentinel names it.
        if signal == "SIGKILL" {
            deployment.kill(primary).unwrap();
        } else {
            deployment.pause(primary).unwrap();
        }
        let (new, took) = deployment
            .wait_for_failover(primary, Duration::from_secs(15))
            .unwrap();
        println!("{signal}: {new} promoted after {took:?}");
        assert_eq!(new, replica);

        // Dropped with the old primary still paused: SIGCONT, then SIGKILL, like the rest.
        let pids = deployment.pids();
        assert_eq!(pids.len(), if signal == "SIGKILL" { 4 } else { 5 });
        let ports: Vec<u16> = [deployment.server_ports(), deployment.sentinel_ports()].concat();
        drop(deployment);
        for pid in pids {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let alive = nix::sys::signal::kill(pid, None).is_ok();
            assert!(
                !alive,
                "process {pid} still runs after the deployment was dropped"
            );
        }
        for port in ports {
            assert!(
                TcpStream::connect(("127.0.0.1", port)).is_err(),
                "port {port} still answers after the deployment was dropped"
            );
        }
    }
}

// Issue 19: a subscriber in a Sentinel deployment when the primary is SIGKILLed (each
// scenario its own deployment; the promotion allowed 15 s). redis-rs's Sentinel support asks
// for the primary's address once: its subscriber never hears again (a release that follows a
// failover fails this test, and the chapter and the upstream report must change). Listening to
// +switch-master and subscribing again on the new primary follows it, every loss noticed. On a
// replica, the promotion disconnects the subscriber (the Sentinels kill its Pub/Sub clients),
// a ConnectionManager subscribes again at once; and when that replica dies it is deaf.
#[test]
fn sentinel_failover_only_the_switch_master_listener_or_a_replica_manager_follows() {
    let _serial = one_at_a_time();
    let results = run_example("ch09_sentinel");
    let ms = |run: &ResultLine, key: &str| run.get(key).unwrap().parse::<u64>().ok();
    for run in &results {
        if run.scenario.starts_with("failover-") {
            let promoted = ms(run, "promoted_after_ms").unwrap();
            assert!(promoted < 15_000, "{run}");
        }
        // Nothing is counted twice, and nothing is noticed that was not lost.
        assert!(run.noticed <= run.lost, "{run}");
        assert!(run.received > 0, "{run}");
    }

    // The library alone: subscribed on the old primary's address, never heard again, and
    // nothing after the kill arrives for the gap detector to notice it by.
    let alone = find(&results, "failover-library-only", lab::REDIS_CURRENT).unwrap();
    assert_eq!(alone.get("followed"), Some("no"), "{alone}");
    assert_eq!(alone.get("resumed_after_ms"), Some("never"), "{alone}");
    assert!(alone.lost > 0 && alone.noticed == 0, "{alone}");

    // The fix: heard again when +switch-master is announced (well after the promotion), what
    // was published in between lost and every message of it noticed.
    let fix = find(&results, "failover-switch-master", lab::REDIS_CURRENT).unwrap();
    assert_eq!(fix.get("followed"), Some("yes"), "{fix}");
    assert_eq!(fix.silent_loss(), 0, "{fix}");
    let resumed = ms(fix, "resumed_after_ms").unwrap();
    let switch = ms(fix, "switch_master_after_ms").unwrap();
    assert!(resumed + 50 >= switch && resumed < switch + 2_000, "{fix}");
    assert!(ms(fix, "deaf_ms").unwrap() < 5_000, "{fix}");
    assert!(fix.lost < fix.sent / 2, "{fix}");

    // On a replica, the bare PubSub ends at the promotion and is not heard again; the
    // ConnectionManager reconnects to the same address (now the primary) and resubscribes.
    let pubsub = find(&results, "failover-replica-pubsub", lab::REDIS_CURRENT).unwrap();
    assert_eq!(pubsub.get("followed"), Some("no"), "{pubsub}");
    assert_eq!(pubsub.noticed, 0, "{pubsub}");
    let manager = find(&results, "failover-replica-manager", lab::REDIS_CURRENT).unwrap();
    assert_eq!(manager.get("followed"), Some("yes"), "{manager}");
    assert_eq!(manager.silent_loss(), 0, "{manager}");
    assert!(ms(manager, "deaf_ms").unwrap() < 1_000, "{manager}");
    assert!(manager.lost <= manager.sent / 20, "{manager}");

    // Its cost: when that replica dies, the primary goes on and the subscriber is deaf.
    let killed = find(&results, "replica-killed-manager", lab::REDIS_CURRENT).unwrap();
    assert_eq!(killed.get("followed"), Some("no"), "{killed}");
    assert_eq!(killed.get("promoted_after_ms"), Some("none"), "{killed}");
    assert!(killed.lost > 0 && killed.noticed == 0, "{killed}");
}

/// Bytes a process has written (`/proc/PID/io`, `wchar`: every write to a socket counts).
fn bytes_written(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|line| line.strip_prefix("wchar: "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap()
}

/// A classic PUBLISH costs the same cluster-bus messages on Redis 7.0.15 and Valkey 8.0.1,
/// one to every other node (5 in the lab's 6-node cluster: chapter 9's count), but Valkey 8
/// sends each with a light header (valkey-io/valkey PR #654) instead of the full cluster
/// header with its 2 KB slot bitmap. Measured on the node that takes the PUBLISHes: the
/// bytes it writes, less its replies, per bus message.
#[test]
fn publish_costs_the_same_bus_messages_on_both_servers_and_valkey_8_sends_them_lighter() {
    let _serial = one_at_a_time();
    let mut cluster = RedisCluster::start(3, 1).unwrap();
    let version = cluster.server_version().unwrap();
    let port = cluster.master_ports().unwrap()[0];
    let pid = cluster.pid_of(port).unwrap();
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut con = client.get_connection().unwrap();
    let channel = lab::unique_channel("ch09:bus");
    let n: u64 = 2_000;
    let mut pipe = redis::pipe();
    for seq in 0..n {
        pipe.cmd("PUBLISH")
            .arg(&channel)
            .arg(lab::numbered(seq, 16));
    }
    let counter = "cluster_stats_messages_publish_received";
    let messages_before = cluster.cluster_info_sum(counter).unwrap();
    let written_before = bytes_written(pid);
    let _: Vec<u64> = pipe.query(&mut con).unwrap();
    let written = bytes_written(pid) - written_before;
    // Every bus message counted: received counters lag the sender by a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let messages = loop {
        let messages = cluster.cluster_info_sum(counter).unwrap() - messages_before;
        if messages >= 5 * n || std::time::Instant::now() > deadline {
            break messages;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let per_publish = messages as f64 / n as f64;
    // Replies are `:0\r\n` (nobody listens): 4 bytes each.
    let bytes_per_message = (written - 4 * n) as f64 / messages as f64;
    println!("{version}: {per_publish:.2} bus messages per PUBLISH, {bytes_per_message:.0} B each");
    assert!(
        (4.5..=5.5).contains(&per_publish),
        "{version}: {per_publish}"
    );
    match version.kind {
        // The full header (about 2,250 B) plus the channel and the message.
        lab::ServerKind::Redis => assert!(bytes_per_message > 2_000.0, "{bytes_per_message}"),
        // A light header of a few dozen bytes plus the channel and the message.
        lab::ServerKind::Valkey => assert!(bytes_per_message < 200.0, "{bytes_per_message}"),
    }
}
