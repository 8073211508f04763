//! Running a scenario, and the scenarios chapter 6 does not show: bad payloads, a shutdown
//! mid-burst and the burst (one process per design, for its peak RSS).

use super::*;

use faults::*;

pub(crate) async fn run_scenario(
    scenario: Scenario,
    designs: &[Design],
) -> Result<Vec<ResultLine>> {
    let base = lab::unique_channel("ch06:tools");
    match scenario {
        // ANCHOR: client_kill
        Scenario::ClientKill => {
            let mut server = RedisServer::start()?;
            let n = lab::scaled(100_000, 20_000);
            let setup = base_setup(server.url(), &base, n + FENCE);
            let run = Run::start(scenario, designs, server.url(), &setup, 32)?;
            let killed_at = {
                let publishing = run.publish(0..n);
                tokio::pin!(publishing);
                // Kill every subscriber's connection once the fastest has read a fifth of
                // the burst: the rest is on its way (in Redis's output buffers, if the
                // publishers are done).
                let (mut done, deadline) = (false, Instant::now() + Duration::from_secs(10));
                while run.side.most_received() < n * CHANNELS as u64 / 5
                    && Instant::now() < deadline
                {
                    tokio::select! {
                        sent = &mut publishing, if !done => { sent?; done = true; }
                        () = tokio::time::sleep(Duration::from_millis(1)) => {}
                    }
                }
                let killed_at = Instant::now();
                server.kill_pubsub_clients()?;
                if !done {
                    publishing.await?;
                }
                killed_at
            };
            let since = Since::At {
                at: killed_at,
                stale: 0,
            };
            run.end(since, Duration::from_secs(10), n).await
        }
        // ANCHOR_END: client_kill
        Scenario::Restart => {
            let mut server = RedisServer::start()?;
            let n = lab::scaled(100_000, 20_000);
            let setup = base_setup(server.url(), &base, n + FENCE);
            let run = Run::start(scenario, designs, server.url(), &setup, 32)?;
            run.publish(0..n).await?;
            server.kill()?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            server.restart()?;
            let since = Since::At {
                at: Instant::now(),
                stale: 0,
            };
            run.end(since, Duration::from_secs(10), n).await
        }
        // ANCHOR: long_outage
        Scenario::LongOutage => {
            // The ConnectionManager's defaults: 6 retries, 100 ms doubling, each delay
            // stretched by up to 100 % (jitter): it gives up after 6.3 to 12.6 s.
            let mut server = RedisServer::start()?;
            let n = lab::scaled(20_000, 5_000);
            let setup = base_setup(server.url(), &base, n + FENCE);
            let run = Run::start(scenario, designs, server.url(), &setup, 32)?;
            run.publish(0..n).await?;
            server.kill()?;
            tokio::time::sleep(Duration::from_secs(14)).await;
            server.restart()?;
            let since = Since::At {
                at: Instant::now(),
                stale: 0,
            };
            run.end(since, Duration::from_secs(3), n).await
        }
        // ANCHOR_END: long_outage
        Scenario::Pause => {
            let mut server = RedisServer::start()?;
            let n = lab::scaled(50_000, 10_000);
            let setup = base_setup(server.url(), &base, n + FENCE);
            let side = SideBySide::start(designs, &setup, server.url())?;
            let publishers = publishers(&setup.channels);
            publish(server.url(), &publishers, 0..n / 2, false).await?;
            server.pause()?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            server.resume()?;
            publish(server.url(), &publishers, n / 2..n + FENCE, true).await?;
            side.settle(n + FENCE - 1, Duration::from_secs(2)).await;
            no_fault_needed(scenario, side, (n + FENCE) * CHANNELS as u64)
        }
        Scenario::SilentServer => silent_server(designs, &base).await,
        Scenario::HalfOpen => half_open(designs, &base).await,
        // ANCHOR: buffer_limit
        Scenario::BufferLimit => {
            // A small limit, and a handler that blocks its subscriber's only thread for
            // 500 ms: nobody reads the socket, Redis's buffer passes 256 KiB, and Redis
            // closes the connection.
            let server = RedisServer::builder()
                .config("client-output-buffer-limit", "pubsub 256kb 128kb 1")
                .start()?;
            let n = lab::scaled(5_000, 2_000);
            let mut setup = base_setup(server.url(), &base, n + FENCE);
            setup.misbehave = Misbehave::Block {
                at: 100,
                for_ms: 500,
            };
            let run = Run::start(scenario, designs, server.url(), &setup, 4096)?;
            let started = Instant::now();
            run.publish(0..n).await?;
            run.end(Since::OwnDrop { at: started }, Duration::from_secs(10), n)
                .await
        }
        // ANCHOR_END: buffer_limit
        Scenario::AclRevoked => acl_revoked(designs, &base).await,
        Scenario::BadPayloads => bad_payloads(designs, &base).await,
        Scenario::Shutdown => shutdown_mid_burst(designs, &base).await,
        Scenario::Burst => bail!("the burst runs in processes of its own"),
    }
}

/// RESULT lines of a scenario in which no design had to reconnect.
pub(crate) fn no_fault_needed(
    scenario: Scenario,
    side: SideBySide,
    sent: u64,
) -> Result<Vec<ResultLine>> {
    let started = side.started;
    let finished = side.finish()?;
    Ok(finished
        .iter()
        .map(|(s, o)| result(scenario, s, o, sent, Recovery::default(), started))
        .collect())
}

/// 100,000 good messages and 1,000 bad ones in between: a third not UTF-8, a third not
/// numbered, a third larger than lab::production's `max_payload` (8 KiB).
pub(crate) async fn bad_payloads(designs: &[Design], base: &str) -> Result<Vec<ResultLine>> {
    let server = RedisServer::start()?;
    let (good, bad) = (100_000u64, 1_000u64);
    let per_channel = good / CHANNELS as u64;
    let mut setup = base_setup(server.url(), base, per_channel);
    setup.max_payload = 8 * 1024;
    // Room for the whole burst: this scenario is about payloads, not the queue.
    setup.capacity = (good + bad) as usize;
    let side = SideBySide::start(designs, &setup, server.url())?;
    let mut con = server.client()?.get_multiplexed_async_connection().await?;
    let bad_sent =
        lab::publish::with_bad_payloads(&mut con, &setup.channels, per_channel, bad).await?;
    side.settle(per_channel - 1, Duration::from_secs(2)).await;
    let started = side.started;
    let finished = side.finish()?;
    Ok(finished
        .iter()
        .map(|(s, o)| {
            let (_, rejected) = s.handled();
            result(
                Scenario::BadPayloads,
                s,
                o,
                good,
                Recovery::default(),
                started,
            )
            .with("bad_sent", bad_sent)
            .with("bad_counted", rejected + o.oversized)
        })
        .collect())
}

/// Shutdown while a paced burst arrives and the handler is behind: everything that reached
/// a subscriber must be handled or counted (dropped, lagged, abandoned).
pub(crate) async fn shutdown_mid_burst(designs: &[Design], base: &str) -> Result<Vec<ResultLine>> {
    let server = RedisServer::start()?;
    let n = lab::scaled(100_000, 25_000);
    let mut setup = base_setup(server.url(), base, n);
    setup.drain = Duration::from_millis(200);
    setup.capacity = 5_000;
    setup.misbehave = Misbehave::Slow { every: 10 };
    let side = SideBySide::start(designs, &setup, server.url())?;
    const RATE: f64 = 25_000.0; // per channel
    let publishing = {
        let (url, channels) = (server.url().to_string(), setup.channels.clone());
        tokio::spawn(async move {
            // Bare numbers from 0, no heartbeats: what reached a subscriber is its highest
            // number + 1 on each channel.
            let bare: Vec<Publisher> = channels
                .iter()
                .map(|c| Publisher::new(c).pace(Pace::Rate(RATE)))
                .collect();
            publish(&url, &bare, 0..n, false).await
        })
    };
    // A quarter of the way into the burst, for every design: waiting for each to have
    // handled 2,000 (as chapter 6's own scenario does) waited for the slowest, and a design
    // that lags behind a broadcast channel could reach it only after the burst was over.
    while side.least_received() == 0 && !publishing.is_finished() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(n as f64 / RATE / 4.0)).await;
    let started = side.started;
    let finished = side.finish()?;
    publishing.await??;
    Ok(finished
        .iter()
        .map(|(s, o)| {
            result(
                Scenario::Shutdown,
                s,
                o,
                o.reached,
                Recovery::default(),
                started,
            )
            .with("published", n * CHANNELS as u64)
        })
        .collect())
}

// ANCHOR: burst
/// The burst: one process per design (this program again, with `--design`), so that each
/// peak RSS belongs to one design.
pub(crate) async fn burst(designs: &[Design], runtime: Runtime) -> Result<Vec<ResultLine>> {
    let runtime_name = runtime
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    if let [design] = designs {
        return Ok(vec![burst_one(*design, runtime, &runtime_name).await?]);
    }
    let me = std::env::current_exe()?;
    // The memory bound of chapter 6: what one queued 128-byte message holds, measured in a
    // fresh process.
    let bytes = lab::mem::queued_msg_bytes(128)?;
    let mut lines = Vec::new();
    for design in designs {
        let output = tokio::process::Command::new(&me)
            .args(["--scenario", "burst", "--design", design.name()])
            .args(["--runtime", &runtime_name])
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success(),
            "the burst of {} failed ({}):\n{stdout}\n{}",
            design.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        for line in stdout.lines().filter(|l| !l.starts_with("RESULT ")) {
            println!("{line}");
        }
        for line in lab::parse_results(&stdout)? {
            // lab::production has two workers' queues; the library designs one queue, or one
            // broadcast channel, of the same capacity.
            let capacity = match design {
                Design::Production => 2.0 * 10_000.0,
                _ => 10_000.0,
            };
            let idle = line.get_f64("rss_idle_mb")?;
            let bound = idle + capacity * bytes / 1_048_576.0 + 30.0;
            lines.push(line.with("bound_mb", format!("{bound:.1}")));
        }
    }
    Ok(lines)
}

/// 2,000,000 PUBLISH from `redis-benchmark` (8 connections, 64 per pipeline, 128 bytes, no
/// numbers) against one design whose handler needs 1 ms of CPU per message.
pub(crate) async fn burst_one(
    design: Design,
    runtime: Runtime,
    runtime_name: &str,
) -> Result<ResultLine> {
    let server = RedisServer::start()?;
    let base = lab::unique_channel("ch06:tools-burst");
    let messages = 2_000_000u64;
    let mut setup = base_setup(server.url(), &base, 1);
    setup.channels.truncate(1);
    setup.numbered = false;
    setup.misbehave = Misbehave::Work { us: 1_000 };
    setup.drain = Duration::from_millis(300);
    let multi_thread = runtime == Runtime::MultiThread;
    let mut subscriber = Subscriber::start_on(design, &setup, multi_thread)?;
    let port = server
        .port()
        .context("needs a lab-owned server")?
        .to_string();
    let benchmark = tokio::process::Command::new("redis-benchmark")
        .args([
            "-p",
            &port,
            "-n",
            &messages.to_string(),
            "-P",
            "64",
            "-c",
            "8",
            "-q",
        ])
        .args(["PUBLISH", &setup.channels[0], &"x".repeat(128)])
        .output()
        .await
        .context("running redis-benchmark (package redis-tools; ci/setup.sh installs it)")?;
    ensure!(
        benchmark.status.success(),
        "redis-benchmark failed: {benchmark:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcome = tokio::task::spawn_blocking(move || {
        let outcome = subscriber.finish();
        (subscriber, outcome)
    });
    let (subscriber, outcome) = outcome.await?;
    let outcome = outcome?;
    let peak = lab::mem::peak_rss_mb().unwrap_or(0.0);
    // What the server says it did: each output-buffer disconnection is a line of its log.
    let server_disconnects = server.log_lines("output buffer limits").len();
    let (handled, _) = subscriber.handled();
    let (told_disconnected, _) = subscriber.told();
    println!("  {} on {runtime_name}: {outcome:?}", design.name());
    let mut line = ResultLine::new(
        &format!("burst-{runtime_name}/{}", design.name()),
        lab::REDIS_CURRENT,
        messages,
        handled.min(messages),
        outcome.noticed,
    )
    .with("rss_idle_mb", format!("{:.1}", outcome.rss_idle_mb))
    .with("rss_peak_mb", format!("{peak:.1}"))
    .with("dropped", outcome.dropped)
    .with("lagged", outcome.lagged)
    .with("abandoned", outcome.abandoned)
    .with("unknown_gaps", outcome.unknown_gaps)
    .with("told_disconnected", told_disconnected)
    .with("server_disconnects", server_disconnects);
    if let Some(reconnects) = outcome.reconnects {
        line = line.with("reconnects", reconnects);
    }
    Ok(line)
}
// ANCHOR_END: burst
