//! Chapter 10's claims: keyspace notifications lose what changed while a subscriber was
//! disconnected, and a reconciliation pass after every subscribe finds all of it; a
//! client-side cache whose invalidation stream had a gap serves stale reads unless it is
//! flushed. Each test runs the chapter's example and reads its RESULT lines, so the book's
//! numbers and these assertions come from the same code.

use lab::report::find;
use lab::{REDIS_CURRENT, ResultLine};

fn run(example: &str, args: &[&str]) -> Vec<ResultLine> {
    let run = lab::example::run_with_env(example, args, &[("LAB_QUICK", "1")]).unwrap();
    println!("{}", run.stdout());
    run.results().unwrap()
}

fn extra(result: &ResultLine, key: &str) -> u64 {
    result.get_f64(key).unwrap() as u64
}

/// Without faults both subscribers' copies match the server. Across three `CLIENT KILL`s the
/// naive one (reconnects and resubscribes, loaded the key space once) ends with keys wrong
/// in its copy; the one that reconciles after every subscribe ends with none, and its passes
/// repaired keys.
#[test]
fn keyspace_reconciling_subscriber_misses_no_key_across_client_kill() {
    let results = run("ch10_keyspace", &[]);
    for name in ["steady-naive", "steady-reconciling"] {
        let steady = find(&results, name, REDIS_CURRENT).unwrap();
        assert_eq!(extra(steady, "missed_keys"), 0, "{steady}");
        assert_eq!(extra(steady, "subscribes"), 1, "{steady}");
        assert!(extra(steady, "events") > 0, "{steady}");
    }
    let naive = find(&results, "client-kill-naive", REDIS_CURRENT).unwrap();
    let reconciling = find(&results, "client-kill-reconciling", REDIS_CURRENT).unwrap();
    for r in [naive, reconciling] {
        // Three kills, each disconnecting both subscribers; each came back every time.
        assert_eq!(extra(r, "kills"), 6, "{r}");
        assert_eq!(extra(r, "subscribes"), 4, "{r}");
    }
    // The writer changes a key about every millisecond and each gap lasts at least the 250 ms
    // backoff: a handful of missed keys is the least a loaded machine could give.
    assert!(extra(naive, "missed_keys") >= 5, "{naive}");
    assert_eq!(naive.lost, extra(naive, "missed_keys"), "{naive}");
    assert_eq!(extra(reconciling, "missed_keys"), 0, "{reconciling}");
    assert_eq!(reconciling.lost, 0, "{reconciling}");
    assert!(extra(reconciling, "repaired") >= 5, "{reconciling}");
}

/// The examples that reconfigure the server, kill its clients or restart it refuse a
/// `REDIS_URL` with a clear message and a non-zero exit, without printing its password.
#[test]
fn examples_refuse_to_reconfigure_or_restart_a_server_from_redis_url() {
    for (name, expected) in [
        ("ch10_keyspace", "never reconfigures"),
        (
            "ch10_client_tracking",
            "never does that to a server it did not start",
        ),
    ] {
        let run = lab::example::run_with_env(
            name,
            &[],
            &[
                ("LAB_QUICK", "1"),
                ("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/"),
            ],
        )
        .unwrap();
        let stderr = run.stderr();
        assert!(!run.output.status.success(), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

/// One quick run of `ch10_client_tracking`, shared by the tests below (about 10 s).
fn client_tracking() -> &'static [ResultLine] {
    static RESULTS: std::sync::OnceLock<Vec<ResultLine>> = std::sync::OnceLock::new();
    RESULTS.get_or_init(|| run("ch10_client_tracking", &[]))
}

fn tracking(scenario: &str) -> &'static ResultLine {
    find(client_tracking(), scenario, REDIS_CURRENT).unwrap()
}

const FAULTS: [&str; 3] = ["steady", "client-kill", "restart"];

/// The cache flushed on every possible gap in its invalidation stream (a `Disconnection`
/// push, a failed command, a reconnection), in the default mode and in BCAST mode, serves
/// no stale read: not in the probes, not under load through a `CLIENT KILL` or a server
/// restart, not on a hot key. It flushes once per fault and never without one, and it does
/// cache (hits under steady load).
#[test]
fn tracking_cache_flushed_on_every_gap_serves_no_stale_read() {
    for reader in ["tracking-correct", "tracking-bcast"] {
        for fault in FAULTS {
            for kind in ["probe", "load"] {
                let r = tracking(&format!("{kind}-{fault}-{reader}"));
                assert!(r.sent > 0, "{r}");
                assert_eq!(extra(r, "stale_reads"), 0, "{r}");
                assert_eq!(r.lost, 0, "{r}");
                let flushes = if fault == "steady" { 0 } else { 1 };
                assert_eq!(extra(r, "flushes"), flushes, "{r}");
            }
            let probe = tracking(&format!("probe-{fault}-{reader}"));
            // Every read that returned a value returned the new one.
            assert_eq!(probe.received, probe.sent, "{probe}");
            assert_ne!(probe.get("first_fresh_ms"), Some("never"), "{probe}");
        }
        let steady = tracking(&format!("load-steady-{reader}"));
        assert!(extra(steady, "hits") > steady.sent / 2, "{steady}");
        let hot = tracking(&format!("load-hot-key-{reader}"));
        assert!(hot.sent > 0, "{hot}");
        assert_eq!(extra(hot, "stale_reads"), 0, "{hot}");
        assert_eq!(extra(hot, "flushes"), 0, "{hot}");
    }
}

/// The same cache without the flush reconnects and turns tracking on again, and keeps what
/// it cached: after a `CLIENT KILL` or a restart it serves the old value for good.
#[test]
fn tracking_cache_kept_across_a_reconnection_serves_stale_reads() {
    for fault in ["client-kill", "restart"] {
        let probe = tracking(&format!("probe-{fault}-tracking-naive"));
        assert!(probe.sent > 0, "{probe}");
        assert_eq!(extra(probe, "stale_reads"), probe.sent, "{probe}");
        assert_eq!(probe.get("first_fresh_ms"), Some("never"), "{probe}");
        assert!(extra(probe, "reconnects") >= 1, "{probe}");
        let load = tracking(&format!("load-{fault}-tracking-naive"));
        assert!(extra(load, "stale_reads") > 0, "{load}");
        assert_eq!(extra(load, "flushes"), 0, "{load}");
    }
    for kind in ["probe", "load"] {
        let steady = tracking(&format!("{kind}-steady-tracking-naive"));
        assert_eq!(extra(steady, "stale_reads"), 0, "{steady}");
    }
}

/// redis-rs's cache on a `MultiplexedConnection` keeps answering from the cache after its
/// connection is gone (killed, or the server restarted): the old value for good, while a
/// key it has not cached fails.
#[test]
fn library_cache_on_a_dead_multiplexed_connection_serves_stale_values() {
    let steady = tracking("probe-steady-library-multiplexed");
    assert_eq!(extra(steady, "stale_reads"), 0, "{steady}");
    for fault in ["client-kill", "restart"] {
        let probe = tracking(&format!("probe-{fault}-library-multiplexed"));
        assert!(probe.sent > 0, "{probe}");
        assert_eq!(extra(probe, "stale_reads"), probe.sent, "{probe}");
        assert_eq!(probe.get("first_fresh_ms"), Some("never"), "{probe}");
        let load = tracking(&format!("load-{fault}-library-multiplexed"));
        assert!(extra(load, "stale_reads") > 0, "{load}");
        assert!(extra(load, "errors") > 0, "{load}");
    }
}

/// redis-rs's cache on a `ConnectionManager` starts a new cache epoch with each reconnection
/// (a flush): after a `CLIENT KILL` or a restart the first read after the write is fresh.
#[test]
fn library_cache_on_a_connection_manager_is_flushed_by_its_reconnection() {
    for fault in FAULTS {
        let probe = tracking(&format!("probe-{fault}-library-manager"));
        assert!(probe.sent > 0, "{probe}");
        assert_eq!(extra(probe, "stale_reads"), 0, "{probe}");
        // Every read that returned a value returned the new one.
        assert_eq!(probe.received, probe.sent, "{probe}");
        assert_ne!(probe.get("first_fresh_ms"), Some("never"), "{probe}");
    }
}

/// Without any fault, redis-rs's cache keeps a value whose invalidation raced its reply: the
/// connection's reader task handles the invalidation before the caller stores the reply, and
/// the server, having sent its one invalidation, no longer tracks the key. On a hot key both
/// library readers serve a stale value; the tracking caches, which do not store a reply an
/// invalidation for that key overtook, serve none.
#[test]
fn library_cache_keeps_a_value_whose_invalidation_raced_its_reply() {
    for reader in ["library-multiplexed", "library-manager"] {
        let hot = tracking(&format!("load-hot-key-{reader}"));
        assert!(extra(hot, "stale_reads") > 0, "{hot}");
        assert!(extra(hot, "stale_keys") >= 1, "{hot}");
        assert_eq!(extra(hot, "errors"), 0, "{hot}");
    }
    for reader in ["tracking-naive", "tracking-correct", "tracking-bcast"] {
        let hot = tracking(&format!("load-hot-key-{reader}"));
        assert_eq!(extra(hot, "stale_reads"), 0, "{hot}");
    }
}

/// The service example on `channel`, listening on a free loopback port: the process (killed
/// on drop) and the address it listens on.
fn start_service(server: &lab::RedisServer, channel: &str, extra: &[&str]) -> (Service, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let binary = lab::example::build("ch10_axum_service").unwrap();
    let listen = format!("127.0.0.1:{port}");
    let service = Service(
        std::process::Command::new(binary)
            .args(["--url", server.url(), "-c", channel, "--listen", &listen])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    (service, listen)
}

/// The service of `examples/ch10_axum_service` run as a child process, killed on drop.
struct Service(std::process::Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `url`: the status code (0 when nothing answered) and the body.
async fn get(http: &reqwest::Client, url: &str) -> (u16, String) {
    match http.get(url).send().await {
        Ok(response) => (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    }
}

/// Poll `url` every 50 ms until its status is `want`; how long that took.
async fn until_status(
    http: &reqwest::Client,
    url: &str,
    want: u16,
    limit: std::time::Duration,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    loop {
        let (status, body) = get(http, url).await;
        if status == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{url}: still {status} {body:?} after {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// One sample of a Prometheus text exposition.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// The axum service (threshold 1 s): `/healthz` is 200 while subscribed; with the server
/// killed it stays 200 for the threshold and turns 503 within a margin after it; with the
/// server back it is 200 again once resubscribed. `/metrics` counts the messages published
/// and its `pubsub_reconnects_total` moves after a `CLIENT KILL`. SIGTERM: exit code 0.
#[tokio::test]
async fn axum_service_health_follows_the_subscription_and_sigterm_exits_cleanly() {
    use nix::sys::signal::{Signal, kill};
    if std::env::var_os("REDIS_URL").is_some() {
        println!("skipped: this test kills and restarts its server, never one from REDIS_URL");
        return;
    }
    let mut server = lab::RedisServer::start().unwrap();
    let channel = lab::unique_channel("ch10:service-test");
    let (mut service, listen) = start_service(&server, &channel, &["--unhealthy-after-ms", "1000"]);
    let http = reqwest::Client::new();
    let (healthz, metrics) = (
        format!("http://{listen}/healthz"),
        format!("http://{listen}/metrics"),
    );
    let threshold = std::time::Duration::from_secs(1);
    until_status(&http, &healthz, 200, std::time::Duration::from_secs(10)).await;

    server.kill().unwrap();
    let unhealthy = until_status(&http, &healthz, 503, threshold * 4).await;
    println!("503 after {unhealthy:?} (threshold {threshold:?})");
    assert!(
        unhealthy >= threshold,
        "503 before the threshold: {unhealthy:?}"
    );
    server.restart().unwrap();
    let healthy = until_status(&http, &healthz, 200, std::time::Duration::from_secs(10)).await;
    println!("200 again {healthy:?} after the restart");

    let mut con = server
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    lab::Publisher::new(&channel)
        .send(&mut con, 0..100)
        .await
        .unwrap();
    let (_, before) = get(&http, &metrics).await;
    let reconnects = sample(&before, "pubsub_reconnects_total");
    assert!(reconnects >= 1, "{before}");
    server.kill_pubsub_clients().unwrap();
    let started = std::time::Instant::now();
    let after = loop {
        let (_, text) = get(&http, &metrics).await;
        if sample(&text, "pubsub_reconnects_total") > reconnects {
            break text;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "reconnects never moved: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(sample(&after, "pubsub_received_total"), 100, "{after}");
    assert_eq!(sample(&after, "pubsub_processed_total"), 100, "{after}");
    assert_eq!(sample(&after, "pubsub_abandoned_total"), 0, "{after}");

    let pid = nix::unistd::Pid::from_raw(service.0.id() as i32);
    kill(pid, Signal::SIGTERM).unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = service.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "no exit 10 s after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut logs = String::new();
    std::io::Read::read_to_string(service.0.stderr.as_mut().unwrap(), &mut logs).unwrap();
    println!(
        "exit {status:?} {:?} after SIGTERM\n{logs}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(logs.contains("final counters"), "{logs}");
    assert!(!logs.contains("password"), "{logs}");
}

/// The axum service's exit code when the drain deadline passes with messages still queued:
/// 3, the code the chapter states, after logging how many were abandoned. Each message takes
/// 500 ms to handle and the drain may take 100 ms, so most of the 20 published are abandoned.
#[tokio::test]
async fn axum_service_exits_with_code_3_when_messages_are_abandoned_at_the_deadline() {
    use nix::sys::signal::{Signal, kill};
    if std::env::var_os("REDIS_URL").is_some() {
        println!("skipped: this test runs the service against a server it started");
        return;
    }
    let server = lab::RedisServer::start().unwrap();
    let channel = lab::unique_channel("ch10:service-abandon");
    let (mut service, listen) = start_service(
        &server,
        &channel,
        &["--work-ms", "500", "--drain-ms", "100"],
    );
    let http = reqwest::Client::new();
    let (healthz, metrics) = (
        format!("http://{listen}/healthz"),
        format!("http://{listen}/metrics"),
    );
    until_status(&http, &healthz, 200, std::time::Duration::from_secs(10)).await;
    let mut con = server
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    lab::Publisher::new(&channel)
        .send(&mut con, 0..20)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while sample(&get(&http, &metrics).await.1, "pubsub_received_total") < 20 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "never received 20"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    kill(
        nix::unistd::Pid::from_raw(service.0.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = loop {
        if let Some(status) = service.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut logs = String::new();
    std::io::Read::read_to_string(service.0.stderr.as_mut().unwrap(), &mut logs).unwrap();
    println!("exit {status:?}\n{logs}");
    assert_eq!(status.code(), Some(3), "{logs}");
    assert!(
        logs.contains("messages abandoned at the drain deadline"),
        "{logs}"
    );
}
