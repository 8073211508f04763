//! The lab itself, against real redis-servers: each test starts its own, so they run in
//! parallel.

use std::time::Duration;

use futures::StreamExt;
use lab::{Publisher, RedisServer, Tally};

async fn ping(server: &RedisServer) -> anyhow::Result<String> {
    let mut con = server.client()?.get_multiplexed_async_connection().await?;
    Ok(redis::cmd("PING").query_async(&mut con).await?)
}

#[tokio::test]
async fn server_starts_answers_and_stops_on_drop() {
    let server = RedisServer::start().unwrap();
    assert!(server.is_owned());
    let port = server.port().unwrap();
    assert_eq!(ping(&server).await.unwrap(), "PONG");
    drop(server);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test]
async fn kill_then_restart_on_the_same_port() {
    let mut server = RedisServer::start().unwrap();
    let port = server.port();
    server.kill().unwrap();
    assert!(!server.is_running());
    assert!(ping(&server).await.is_err());
    server.restart().unwrap();
    assert_eq!(server.port(), port);
    assert!(server.is_running());
    assert_eq!(ping(&server).await.unwrap(), "PONG");
}

#[tokio::test]
async fn pause_stops_answers_until_resume() {
    let mut server = RedisServer::start().unwrap();
    let mut con = server
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    server.pause().unwrap();
    let paused = tokio::time::timeout(
        Duration::from_millis(300),
        redis::cmd("PING").query_async::<String>(&mut con),
    )
    .await;
    assert!(paused.is_err(), "a stopped server must not answer");
    server.resume().unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn config_set_on_an_owned_server() {
    let mut server = RedisServer::builder()
        .config("client-output-buffer-limit", "pubsub 1mb 256kb 1")
        .start()
        .unwrap();
    let mut con = server.client().unwrap().get_connection().unwrap();
    let limit: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("client-output-buffer-limit")
        .query(&mut con)
        .unwrap();
    assert!(limit[1].contains("pubsub 1048576 262144 1"), "{limit:?}");
    server.config_set("hz", "20").unwrap();
    server.flushall().unwrap();
}

#[tokio::test]
async fn a_server_from_redis_url_is_never_changed() {
    let owned = RedisServer::builder().password("s3cret").start().unwrap();
    let mut external = RedisServer::external(owned.url().to_string()).unwrap();
    assert!(!external.is_owned());
    for error in [
        external.config_set("maxmemory", "1mb").unwrap_err(),
        external.flushall().unwrap_err(),
        external.kill().unwrap_err(),
        external.restart().unwrap_err(),
        external.pause().unwrap_err(),
        external.kill_pubsub_clients().unwrap_err(),
    ] {
        let message = format!("{error:#}");
        assert!(message.contains("refusing to"), "{message}");
        assert!(message.contains("REDIS_URL"), "{message}");
        assert!(!message.contains("s3cret"), "password printed: {message}");
    }
    assert_eq!(ping(&external).await.unwrap(), "PONG");
}

#[tokio::test]
async fn a_burst_of_10000_is_tallied_exactly() {
    let server = RedisServer::start().unwrap();
    let client = server.client().unwrap();
    let channel = lab::unique_channel("lab-test");
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&channel).await.unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let report = Publisher::new(&channel)
        .payload_size(64)
        .send(&mut con, 0..10_000)
        .await
        .unwrap();
    assert_eq!(
        (report.sent, report.queued_for, report.unheard),
        (10_000, 10_000, 0)
    );

    let mut tally = Tally::new(10_000);
    let mut messages = pubsub.on_message();
    while tally.received() < 10_000 {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("messages stopped arriving")
            .expect("stream ended");
        assert_eq!(msg.get_payload_bytes().len(), 64);
        tally.record(lab::seq_of(msg.get_payload_bytes()).unwrap());
    }
    assert_eq!(tally.lost(), 0);
    assert_eq!(tally.out_of_order(), 0);
    assert_eq!(tally.duplicates(), 0);
    assert!(tally.missing().is_empty());
}

#[tokio::test]
async fn paced_and_round_trip_publishers_send_everything() {
    let server = RedisServer::start().unwrap();
    let mut con = server
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let round_trip = Publisher::new("nobody")
        .pace(lab::Pace::RoundTrip)
        .send(&mut con, 0..200)
        .await
        .unwrap();
    assert_eq!((round_trip.sent, round_trip.unheard), (200, 200));
    let paced = Publisher::new("nobody")
        .pace(lab::Pace::Rate(2_000.0))
        .send(&mut con, 0..400)
        .await
        .unwrap();
    assert_eq!(paced.sent, 400);
    // 400 messages at 2,000/s take about 200 ms; a loaded machine may take longer, never much less.
    assert!(
        paced.elapsed >= Duration::from_millis(150),
        "{:?}",
        paced.elapsed
    );
}

#[test]
fn a_missing_redis_server_binary_is_a_clear_error() {
    let error = RedisServer::builder()
        .binary("redis-server-that-is-not-installed")
        .start()
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("not found on PATH"), "{message}");
    assert!(message.contains("ci/setup.sh"), "{message}");
    assert!(message.contains("REDIS_URL"), "{message}");
}

#[tokio::test]
async fn unreachable_bad_and_unauthorised_urls_are_clear_errors() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = lab::connect::open(&format!("redis://:topsecret@127.0.0.1:{port}"))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("connection refused"), "{refused}");
    assert!(!refused.contains("topsecret"), "{refused}");

    let bad = lab::connect::open("redis//:topsecret@host")
        .await
        .unwrap_err()
        .to_string();
    assert!(bad.contains("not a valid Redis URL"), "{bad}");
    assert!(!bad.contains("topsecret"), "{bad}");

    let server = RedisServer::builder()
        .password("right-one")
        .start()
        .unwrap();
    let port = server.port().unwrap();
    let wrong = lab::connect::open(&format!("redis://:wrong-one@127.0.0.1:{port}"))
        .await
        .unwrap_err()
        .to_string();
    assert!(wrong.contains("rejected the credentials"), "{wrong}");
    assert!(!wrong.contains("wrong-one"), "{wrong}");
    let missing = lab::connect::open(&format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("requires a password"), "{missing}");
    lab::connect::open(server.url()).await.unwrap();
}

#[test]
fn the_first_example_prints_a_result_that_parses() {
    let run = lab::example::run("ch00_first_result", &["--quick"]).unwrap();
    let results = run.results().unwrap();
    let first = lab::report::find(&results, "first-run", lab::REDIS_CURRENT).unwrap();
    assert_eq!((first.sent, first.received, first.lost), (1_000, 1_000, 0));
    assert_eq!(first.get("out_of_order"), Some("0"));
    // Printed, parsed, printed again: the same line.
    let line = run
        .stdout()
        .lines()
        .find(|l| l.starts_with("RESULT"))
        .unwrap()
        .to_string();
    assert_eq!(first.to_string(), line);
}

#[test]
fn an_example_with_an_unreachable_redis_url_exits_with_a_clear_error() {
    let run = lab::example::run_with_env(
        "ch00_first_result",
        &["--quick"],
        &[("REDIS_URL", "redis://:hunter2@127.0.0.1:1")],
    )
    .unwrap();
    assert!(!run.output.status.success());
    let stderr = run.stderr();
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("hunter2") && !run.stdout().contains("hunter2"));
}

#[test]
fn client_names_match_the_locked_versions() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    for client in [lab::REDIS_CURRENT, lab::REDIS_0_25, lab::REDIS_0_29] {
        let version = client.strip_prefix("redis-").unwrap();
        let entry = format!("name = \"redis\"\nversion = \"{version}\"");
        assert!(lock.contains(&entry), "Cargo.lock does not pin {client}");
    }
}

#[test]
fn a_server_that_dies_with_its_parent_outlives_no_one() {
    // Start on a thread that then ends without running Drop (as when a program aborts):
    // the kernel kills the server with the thread.
    let port = std::thread::spawn(|| {
        let server = RedisServer::builder().die_with_parent().start().unwrap();
        let port = server.port().unwrap();
        std::mem::forget(server);
        port
    })
    .join()
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server outlived its parent thread"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
