//! The faults chapter 6 shows: a silent server, a half-open connection, a revoked ACL.

use super::*;

// ANCHOR: silent_server
/// The server stops (SIGSTOP) for 8 s, longer than lab::production's PING timeout (5 s),
/// while a named publisher sends 2,000 messages a second on channel 0; its PUBLISH commands
/// wait in the stopped server's socket. Does anybody notice the silence?
pub(crate) async fn silent_server(designs: &[Design], base: &str) -> Result<Vec<ResultLine>> {
    let mut server = RedisServer::start()?;
    let silence = Duration::from_secs(8);
    let rate = 2_000.0;
    let n = (rate * (3.0 + silence.as_secs_f64() + 2.0)) as u64;
    let setup = base_setup(server.url(), base, n);
    let side = SideBySide::start(designs, &setup, server.url())?;
    let publisher = Publisher::new(&setup.channels[0])
        .named(Identity::new("steady"))
        .pace(Pace::Rate(rate));
    let publishing = lab::publish::spawn_patient(publisher, &server.client()?, n).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped_at = Instant::now();
    server.pause()?;
    tokio::time::sleep(silence).await;
    server.resume()?;
    let sent = publishing.await??;
    let deadline = Instant::now() + Duration::from_secs(5);
    while side.subscribers.iter().any(|s| s.tally().0 < sent) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stopped_at;
    let started = side.started;
    let finished = side.finish()?;
    Ok(finished
        .iter()
        .map(|(s, o)| {
            // A reconnection: lab::production counts it; redis-rs pushes a `Disconnection`
            // to the library designs' sender whenever a connection ends.
            let reconnected = o.reconnects.unwrap_or(0) + s.told().0 > 0;
            result(
                Scenario::SilentServer,
                s,
                o,
                sent,
                Recovery::default(),
                started,
            )
            .with("reconnected", if reconnected { "yes" } else { "no" })
            .with("silence_s", silence.as_secs())
        })
        .collect())
}
// ANCHOR_END: silent_server

// ANCHOR: half_open
/// The subscribers' connections go silent for good, without closing: a proxy between them
/// and Redis stops forwarding what is open through it (new connections pass).
pub(crate) async fn half_open(designs: &[Design], base: &str) -> Result<Vec<ResultLine>> {
    let server = RedisServer::start()?;
    let port = server.port().context("needs a lab-owned server")?;
    let proxy = proxy::Proxy::start(port).await?;
    let n = lab::scaled(20_000, 5_000);
    let setup = base_setup(&proxy.url(), base, n + FENCE);
    let run = Run::start(Scenario::HalfOpen, designs, server.url(), &setup, 32)?;
    run.publish(0..n / 2).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen_at = Instant::now();
    proxy.freeze_open_connections();
    run.publish(n / 2..n).await?;
    // The server still counts each frozen connection as a subscriber: one stale each.
    let since = Since::At {
        at: frozen_at,
        stale: 1,
    };
    run.end(since, Duration::from_secs(8), n).await
}
// ANCHOR_END: half_open

// ANCHOR: acl_revoked
/// The subscribers' user loses its channel permissions: Redis disconnects them, and every
/// SUBSCRIBE is refused (NOPERM) until the permissions come back, 1 s later.
pub(crate) async fn acl_revoked(designs: &[Design], base: &str) -> Result<Vec<ResultLine>> {
    let server = RedisServer::start()?;
    let port = server.port().context("needs a lab-owned server")?;
    let mut admin = server.client()?.get_multiplexed_async_connection().await?;
    let acl = |rules: &[&str]| {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg("subscriber").arg(rules);
        cmd
    };
    acl(&["on", ">s3cret", "~*", "&*", "+@all"])
        .exec_async(&mut admin)
        .await?;
    let url = format!("redis://subscriber:s3cret@127.0.0.1:{port}/");
    let n = lab::scaled(20_000, 5_000);
    let setup = base_setup(&url, base, n + FENCE);
    let run = Run::start(Scenario::AclRevoked, designs, server.url(), &setup, 32)?;
    run.publish(0..n).await?;
    acl(&["resetchannels"]).exec_async(&mut admin).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    acl(&["allchannels"]).exec_async(&mut admin).await?;
    let since = Since::At {
        at: Instant::now(),
        stale: 0,
    };
    run.end(since, Duration::from_secs(3), n).await
}
// ANCHOR_END: acl_revoked
