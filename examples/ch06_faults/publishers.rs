//! Real publishers, not one friendly one per channel: several on one channel, one that
//! restarts, tools nobody here wrote, a server that stops answering while they publish.
//! The loss counts must stay honest: `noticed == lost` where publishers are named, and never
//! `missing > lost` where they are not.

use std::time::Duration;

use anyhow::{Context, Result};
use lab::message::Identity;
use lab::overflow::Overflow;
use lab::{Pace, Publisher, RedisServer, ResultLine};

use crate::harness::{Misbehave, Subscriber};
use crate::{base_config, channels};

/// Messages each publisher run sends (quick mode: fewer).
fn per_publisher() -> u64 {
    lab::scaled(30_000, 10_000)
}

/// The RESULT line of a scenario whose publishers sent `sent` messages in all, from the
/// harness's tallies (distinct messages per publisher run).
fn result(name: &str, sub: &Subscriber, report: &lab::production::Report, sent: u64) -> ResultLine {
    let (received, out_of_order) = sub.tally();
    sub.print_events();
    println!("  final: {report}");
    ResultLine::new(name, lab::REDIS_CURRENT, sent, received, report.noticed())
        .with("reconnects", report.reconnects)
        .with("gaps", report.gaps)
        .with("missing", report.missing)
        .with("dropped", report.dropped)
        .with("unknown_gaps", report.unknown_gaps)
        .with("heartbeats", report.heartbeats)
        .with("out_of_order", out_of_order)
        .with("processed", report.processed)
}

// ANCHOR: many_publishers
/// Three named publishers on one channel, bursting at once; the third restarts halfway
/// (a crash: no goodbye, a new epoch, numbers from 0 again). A small queue and a slow handler
/// force drops. Every loss must be noticed, and the restart must not look like one.
pub async fn many_publishers() -> Result<ResultLine> {
    let server = RedisServer::start()?;
    let channels = channels();
    let n = per_publisher();
    let mut config = base_config(&server, &channels);
    config.queue_capacity = 1_000;
    config.overflow = Overflow::DropOldest;
    let mut sub = Subscriber::start(config, n, Misbehave::Slow { every: 100 })?;
    let client = server.client()?;
    let channel = &channels[0];
    let run = |name: &str, seqs: std::ops::Range<u64>, goodbye: bool| {
        let (client, publisher) = (client.clone(), Publisher::new(channel));
        let publisher = publisher.named(Identity::new(name));
        async move {
            let mut con = client.get_multiplexed_async_connection().await?;
            let end = seqs.end;
            let sent = publisher.send(&mut con, seqs).await?.sent;
            if goodbye {
                publisher.goodbye(&mut con, end).await?;
            }
            anyhow::Ok(sent)
        }
    };
    let restarted = async {
        let before = run("third", 0..n / 2, false).await?;
        let after = run("third", 0..n, true).await?;
        anyhow::Ok(before + after)
    };
    let (first, second, third) = tokio::try_join!(
        run("first", 0..n, true),
        run("second", 0..n, true),
        restarted
    )?;
    let sent = first + second + third;
    sub.settle_count(sent, Duration::from_secs(2)).await;
    let report = sub.finish()?;
    Ok(result("many-publishers", &sub, &report, sent))
}
// ANCHOR_END: many_publishers

/// Two publishers that number with bare `<seq>#`, both from 0, on one channel: two
/// `redis-cli --pipe` processes (a tool nobody here wrote) writing raw RESP. Nobody can
/// tell their messages apart, so nobody can count exactly; the subscriber must not
/// invent losses (`missing <= lost`). `received` counts every message handled here.
pub async fn bare_publishers() -> Result<ResultLine> {
    let server = RedisServer::start()?;
    let channels = channels();
    let n = per_publisher();
    let mut config = base_config(&server, &channels);
    config.queue_capacity = 1_000;
    let mut sub = Subscriber::start(config, n, Misbehave::Slow { every: 50 })?;
    let port = server.port().context("needs a lab-owned server")?;
    let commands = tempfile::NamedTempFile::new()?;
    std::fs::write(commands.path(), resp_publishes(&channels[0], 0..n))?;
    let pipe = |_| {
        let file = std::fs::File::open(commands.path())?;
        std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "--pipe"])
            .stdin(file)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("running redis-cli (apt install redis-tools)")
    };
    let children: Vec<_> = (0..2).map(pipe).collect::<Result<_>>()?;
    for mut child in children {
        let status = tokio::task::spawn_blocking(move || child.wait()).await??;
        anyhow::ensure!(status.success(), "redis-cli --pipe failed: {status}");
    }
    let sent = 2 * n;
    sub.settle_count(sent, Duration::from_secs(2)).await;
    let report = sub.finish()?;
    let handled = sub.handled();
    sub.print_events();
    println!("  final: {report}");
    Ok(ResultLine::new(
        "bare-publishers",
        lab::REDIS_CURRENT,
        sent,
        handled,
        report.noticed(),
    )
    .with("missing", report.missing)
    .with("dropped", report.dropped)
    .with("unknown_gaps", report.unknown_gaps)
    .with("reconnects", report.reconnects))
}

/// `PUBLISH channel <seq>#...` for every `seq`, as raw RESP for `redis-cli --pipe`.
fn resp_publishes(channel: &str, seqs: std::ops::Range<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    for seq in seqs {
        let payload = lab::numbered(seq, 32);
        out.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n");
        out.extend_from_slice(format!("${}\r\n{channel}\r\n", channel.len()).as_bytes());
        out.extend_from_slice(format!("${}\r\n", payload.len()).as_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(b"\r\n");
    }
    out
}

// ANCHOR: silent_server
/// The server stops answering (SIGSTOP) for longer than the PING timeout while a named
/// publisher keeps publishing at 2,000 messages a second: its PUBLISH commands wait in the
/// stopped server's socket. The subscriber gives the connection up, reconnects once the
/// server is back, and counts what it missed from the numbers and the heartbeats: exactly,
/// and once.
pub async fn silent_server() -> Result<ResultLine> {
    let mut server = RedisServer::start()?;
    let channels = channels();
    let config = base_config(&server, &channels);
    let silence = config.ping_timeout + Duration::from_secs(3);
    let rate = 2_000.0;
    let seconds = 3.0 + silence.as_secs_f64() + 2.0;
    let n = (rate * seconds) as u64;
    let mut sub = Subscriber::start(config, n, Misbehave::Nothing)?;
    let publisher = Publisher::new(&channels[0])
        .named(Identity::new("steady"))
        .pace(Pace::Rate(rate));
    let publishing = lab::publish::spawn_patient(publisher, &server.client()?, n).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.pause()?;
    tokio::time::sleep(silence).await;
    server.resume()?;
    let sent = publishing.await??;
    sub.settle_count(sent, Duration::from_secs(2)).await;
    let report = sub.finish()?;
    Ok(result("silent-server", &sub, &report, sent).with("silence_s", silence.as_secs()))
}
// ANCHOR_END: silent_server

/// `--overflow disconnect` with a publisher that does not number its messages: the
/// subscriber drops the connection, and what was published until it is back cannot be
/// counted. It must say so (an unknown gap per reconnection), not report "0 missing".
pub async fn unnumbered_disconnect() -> Result<ResultLine> {
    let server = RedisServer::start()?;
    let channels = channels();
    let mut config = base_config(&server, &channels);
    config.overflow = Overflow::Disconnect;
    config.queue_capacity = 500;
    let n = per_publisher();
    let mut sub = Subscriber::start(config, n, Misbehave::Nothing)?;
    let mut con = server.client()?.get_multiplexed_async_connection().await?;
    let mut pipe = redis::pipe();
    for _ in 0..n {
        pipe.cmd("PUBLISH")
            .arg(&channels[0])
            .arg("an order, not numbered")
            .ignore();
    }
    pipe.query_async::<()>(&mut con).await?;
    // Nothing numbered arrives: wait for the subscriber to be back.
    sub.wait_subscriptions(2, Duration::from_secs(30)).await?;
    let report = sub.finish()?;
    sub.print_events();
    println!("  final: {report}");
    // The handler rejects every payload (not numbered): `bad_payload` is what reached it.
    Ok(ResultLine::new(
        "unnumbered-disconnect",
        lab::REDIS_CURRENT,
        n,
        report.bad_payload,
        report.noticed(),
    )
    .with("reconnects", report.reconnects)
    .with("dropped", report.dropped)
    .with("unknown_gaps", report.unknown_gaps))
}
