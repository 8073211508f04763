//! Chapter 10: the recommended subscriber (`lab::production`) inside an HTTP service.
//!
//! cargo run --example ch10_axum_service -- --url redis://127.0.0.1:6379/ -c orders --listen 127.0.0.1:8080
//!
//! `/healthz` answers 200 while subscribed and 503 once the subscription has been down for
//! longer than `--unhealthy-after-ms`, or while shutting down; `/metrics` serves the
//! counters in the Prometheus text format. SIGTERM or Ctrl-C: stop accepting requests,
//! unsubscribe, drain within `--drain-ms`, log the final counters. Exit code 0, or 3
//! ([`service::EXIT_ABANDONED`]) when messages were still queued at the drain deadline.
//!
//! Without `--url` it runs a demo on a throwaway redis-server: it publishes numbered
//! messages, reads `/healthz` and `/metrics` over HTTP, shuts itself down and prints a
//! RESULT line. The lesson is `service.rs`; this file is the command line and the demo.

mod health;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use lab::production::{Config, Event, Rejected};
use lab::{Publisher, RedisServer, ResultLine};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A Redis Pub/Sub subscriber with a health check, metrics and a graceful shutdown.
#[derive(Parser, Debug)]
struct Args {
    /// Redis URL; never logged with its password. Without it: a demo on a throwaway server.
    #[arg(long)]
    url: Option<String>,
    /// A channel to subscribe to (repeat for more).
    #[arg(short, long = "channel")]
    channels: Vec<String>,
    /// The HTTP address for /healthz and /metrics.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// /healthz says 503 once the subscription has been down this long, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    unhealthy_after_ms: u64,
    /// At shutdown, how long the workers may take to drain their queues, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    drain_ms: u64,
    /// Simulated work per message, in milliseconds.
    #[arg(long, default_value_t = 0)]
    work_ms: u64,
    /// Demo mode: messages to publish (default 20,000; 2,000 with --quick).
    #[arg(long)]
    demo_messages: Option<u64>,
    /// Small demo (also LAB_QUICK=1).
    #[arg(long)]
    quick: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let report = match args.url.clone() {
        Some(url) => serve(&args, &url).await?,
        None => demo(&args).await?,
    };
    if report.abandoned > 0 {
        tracing::error!(
            abandoned = report.abandoned,
            "messages abandoned at the drain deadline"
        );
        std::process::exit(service::EXIT_ABANDONED);
    }
    Ok(())
}

fn config(args: &Args, url: &str, channels: Vec<String>) -> Config {
    let mut config = Config::new(url, channels);
    config.numbered = true;
    config.drain_deadline = Duration::from_millis(args.drain_ms);
    config.on_event = Some(Arc::new(
        |event: &Event| tracing::info!(%event, "subscriber"),
    ));
    config
}

async fn handle(msg: redis::Msg, work: Duration) -> Result<(), Rejected> {
    std::str::from_utf8(msg.get_payload_bytes()).map_err(|_| Rejected::BadPayload)?;
    if !work.is_zero() {
        tokio::time::sleep(work).await;
    }
    Ok(())
}

/// Cancel `token` on Ctrl-C or SIGTERM.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C"),
            _ = term.recv() => tracing::info!("SIGTERM"),
        }
        token.cancel();
    });
}

async fn serve(args: &Args, url: &str) -> Result<lab::production::Report> {
    anyhow::ensure!(!args.channels.is_empty(), "give at least one --channel");
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(redis = %lab::redact::redact_url(url), http = %args.listen, channels = ?args.channels, "starting");
    let token = CancellationToken::new();
    cancel_on_signal(token.clone());
    let work = Duration::from_millis(args.work_ms);
    let config = config(args, url, args.channels.clone());
    let unhealthy_after = Duration::from_millis(args.unhealthy_after_ms);
    service::run(
        config,
        move |msg| handle(msg, work),
        listener,
        unhealthy_after,
        token,
    )
    .await
}

/// Demo mode: publish numbered messages to the service, read its routes, stop it.
async fn demo(args: &Args) -> Result<lab::production::Report> {
    let server = RedisServer::from_env()?;
    let channel = lab::unique_channel("ch10:service");
    let sent = args.demo_messages.unwrap_or(lab::scaled(20_000, 2_000));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a port")?;
    let base = format!("http://{}", listener.local_addr()?);
    let token = CancellationToken::new();
    let work = Duration::from_millis(args.work_ms);
    let config = config(args, server.url(), vec![channel.clone()]);
    let unhealthy_after = Duration::from_millis(args.unhealthy_after_ms);
    let service = tokio::spawn(service::run(
        config,
        move |msg| handle(msg, work),
        listener,
        unhealthy_after,
        token.clone(),
    ));

    let http = reqwest::Client::new();
    let health = wait_for_health(&http, &base).await?;
    println!("GET /healthz -> {health}");
    let mut con = server.client()?.get_multiplexed_async_connection().await?;
    Publisher::new(&channel).send(&mut con, 0..sent).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        if metric(&text, "pubsub_processed_total") >= sent || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("GET /metrics ->");
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        println!("  {line}");
    }
    token.cancel();
    let report = service.await.context("the service task")??;
    println!("final: {report}");
    ResultLine::new(
        "axum-service",
        lab::REDIS_CURRENT,
        sent,
        report.processed,
        report.noticed(),
    )
    .with("reconnects", report.reconnects)
    .with("abandoned", report.abandoned)
    .print();
    Ok(report)
}

/// The first answer of `/healthz` once the server accepts connections.
async fn wait_for_health(http: &reqwest::Client, base: &str) -> Result<String> {
    for _ in 0..100 {
        if let Ok(response) = http.get(format!("{base}/healthz")).send().await {
            let status = response.status();
            return Ok(format!(
                "{} {}",
                status.as_u16(),
                response.text().await?.trim()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the HTTP server never answered")
}

/// The value of one sample in a Prometheus text exposition (0 when absent).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}
