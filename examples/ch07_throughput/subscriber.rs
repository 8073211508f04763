//! The subscriber processes the benchmark measures: `redis-cli`, or this program again with
//! `--variant NAME`; started, signalled (SIGSTOP, SIGCONT) and read line by line.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lab::RedisServer;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::Args;
use crate::bench::Variant;

/// A subscriber process being measured.
pub enum Subscriber {
    Cli(std::process::Child),
    Rust {
        child: Child,
        lines: Box<Lines<BufReader<ChildStdout>>>,
    },
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // On an error half-way, never leave a stopped redis-cli behind (the Rust subscribers
        // are killed on drop by Tokio: `kill_on_drop`). SIGKILL also ends a stopped process.
        if let Subscriber::Cli(child) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Subscriber {
    pub fn pid(&self) -> Result<u32> {
        match self {
            Subscriber::Cli(child) => Ok(child.id()),
            Subscriber::Rust { child, .. } => child.id().context("subscriber already exited"),
        }
    }

    pub fn signal(&self, signal: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pid()? as i32), signal)
            .with_context(|| format!("sending {signal} to the subscriber"))
    }
}

/// Start a subscriber process and return once it is subscribed.
pub async fn start_subscriber(
    server: &RedisServer,
    args: &Args,
    variant: Variant,
    channel: &str,
    count: u64,
    size: usize,
    latency: bool,
) -> Result<Subscriber> {
    let port = server
        .port()
        .context("the benchmark needs a lab-owned server")?;
    if variant == Variant::Cli {
        let child = std::process::Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "subscribe",
                channel,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-cli (install it with ci/setup.sh)")?;
        // redis-cli cannot tell us it is subscribed: ask the server.
        let mut con = server.client()?.get_multiplexed_async_connection().await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, subscribers): (String, u64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query_async(&mut con)
                .await?;
            if subscribers == 1 {
                return Ok(Subscriber::Cli(child));
            }
            ensure!(
                Instant::now() < deadline,
                "redis-cli did not subscribe within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let exe = std::env::current_exe()?;
    let mut command = match &args.wrap {
        Some(wrap) => {
            let mut words = wrap.split_whitespace();
            let mut command = Command::new(words.next().context("--wrap is empty")?);
            command.args(words).arg(exe);
            command
        }
        None => Command::new(exe),
    };
    command
        .args(["--variant", variant.name(), "--url", server.url()])
        .args(["--channel", channel, "--count", &count.to_string()])
        .args(["--size", &size.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if latency {
        command.arg("--latency");
    }
    let mut child = command.spawn().context("starting a subscriber process")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    expect_line(&mut lines, "READY", Duration::from_secs(60)).await?;
    Ok(Subscriber::Rust {
        child,
        lines: Box::new(lines),
    })
}

/// Read the child's output until a line starting with `prefix`; return that line.
pub async fn expect_line(
    lines: &mut Lines<BufReader<ChildStdout>>,
    prefix: &str,
    within: Duration,
) -> Result<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.starts_with(prefix) => return Ok(line),
            Ok(Ok(Some(_other))) => continue,
            Ok(Ok(None)) => bail!("the subscriber exited before printing {prefix}"),
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => bail!("the subscriber did not print {prefix} within {within:?}"),
        }
    }
}
