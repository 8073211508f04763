//! Chapter 2: the old `PubSub` lost messages in two more places, even with a long-lived stream.
//!
//! - subscribe-reply: messages that reach the socket together with the `subscribe()`
//!   confirmation. The confirmation is read by the connection's own parser; `on_message()`
//!   then builds a new reader and never looks at what that parser had read ahead.
//! - resubscribe: subscribing to a second channel while messages keep arriving on the first
//!   one. You must drop the stream to call `subscribe()` (it borrows the `PubSub`), and with it
//!   its read buffer; `subscribe()` then reads whatever comes next as its reply.
//!
//! The same code runs on redis 0.25.5 and 1.8.1 (`get_async_pubsub()` exists in both; in 0.25.5
//! it is `get_async_connection()` + `into_pubsub()`).
//!
//! cargo run --example ch02_other_losses

use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use lab::{Pace, Publisher, RedisServer, ResultLine};

#[derive(Parser, Debug)]
#[command(about = "Chapter 2: losses around subscribe() in the old PubSub")]
struct Args {
    /// Run small experiments (CI runs every example this way).
    #[arg(long)]
    quick: bool,
    /// Runs per scenario and version (default: 10; 3 in quick mode).
    #[arg(long)]
    runs: Option<u64>,
}

/// Sum of several runs of one scenario.
#[derive(Debug, Default)]
struct Totals {
    runs: u64,
    /// Messages the server queued for our subscriber (the PUBLISH replies).
    queued: u64,
    received: u64,
    runs_with_loss: u64,
    streams_ended: u64,
    subscribe_errors: u64,
    first_error: Option<String>,
}

impl Totals {
    fn add(&mut self, queued: u64, received: u64, stream_ended: bool, error: Option<String>) {
        self.runs += 1;
        self.queued += queued;
        self.received += received;
        self.runs_with_loss += u64::from(received < queued);
        self.streams_ended += u64::from(stream_ended);
        if let Some(error) = error {
            self.subscribe_errors += 1;
            self.first_error.get_or_insert(error);
        }
    }

    fn result(&self, scenario: &str, client: &str) -> ResultLine {
        ResultLine::new(scenario, client, self.queued, self.received, 0)
            .with("runs", self.runs)
            .with("runs_with_loss", self.runs_with_loss)
            .with("streams_ended", self.streams_ended)
            .with("subscribe_errors", self.subscribe_errors)
    }
}

/// Stop reading when nothing arrived for this long (after the publisher is done).
const QUIET: Duration = Duration::from_millis(300);

/// The two scenarios, for one version of the crate (`$redis` is `redis_0_25` or `redis`).
macro_rules! scenarios_for {
    ($module:ident, $redis:ident) => {
        mod $module {
            use super::*;
            use futures::StreamExt;
            use tokio::time::timeout;

            /// Subscribe while a publisher is already sending pipelined bursts: the first
            /// messages can arrive in the same socket read as the confirmation. Returns (queued, received, ended).
            pub async fn subscribe_reply(
                url: &str,
                publisher_con: &mut redis::aio::MultiplexedConnection,
            ) -> Result<(u64, u64, bool)> {
                let channel = lab::unique_channel("ch02:reply");
                let publisher = Publisher::new(&channel).pace(Pace::Burst);
                let mut con = publisher_con.clone();
                let publishing =
                    tokio::spawn(async move { publisher.send(&mut con, 0..20_000).await });
                tokio::time::sleep(Duration::from_millis(10)).await;

                // ANCHOR: subscribe_reply
                let mut pubsub = $redis::Client::open(url)?.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                let mut messages = pubsub.on_message(); // long-lived
                // ANCHOR_END: subscribe_reply
                let (mut received, mut ended) = (0, false);
                loop {
                    match timeout(QUIET, messages.next()).await {
                        Ok(Some(_msg)) => received += 1,
                        Ok(None) => {
                            ended = true;
                            break;
                        }
                        Err(_quiet) if publishing.is_finished() => break,
                        Err(_quiet) => {}
                    }
                }
                let report = publishing.await??;
                Ok((report.queued_for, received, ended))
            }

            /// Subscribe to a second channel after 1000 messages of a 5000-message run on the
            /// first. Returns (queued, received, ended, the subscribe error if any).
            pub async fn resubscribe(
                url: &str,
                publisher_con: &mut redis::aio::MultiplexedConnection,
            ) -> Result<(u64, u64, bool, Option<String>)> {
                let (first, second) = (
                    lab::unique_channel("ch02:first"),
                    lab::unique_channel("ch02:second"),
                );
                let mut pubsub = $redis::Client::open(url)?.get_async_pubsub().await?;
                pubsub.subscribe(&first).await?;
                let publisher = Publisher::new(&first).pace(Pace::Rate(10_000.0));
                let mut con = publisher_con.clone();
                let publishing =
                    tokio::spawn(async move { publisher.send(&mut con, 0..5_000).await });

                let (mut received, mut ended, mut error) = (0u64, false, None);
                // ANCHOR: resubscribe
                let mut messages = pubsub.on_message();
                while received < 1000 {
                    match timeout(QUIET, messages.next()).await {
                        Ok(Some(_msg)) => received += 1,
                        _ => break,
                    }
                }
                drop(messages); // `subscribe` needs `&mut pubsub`: the stream must go first
                if let Err(e) = pubsub.subscribe(&second).await {
                    error = Some(
                        e.to_string()
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" "),
                    );
                }
                let mut messages = pubsub.on_message();
                // ANCHOR_END: resubscribe
                loop {
                    match timeout(QUIET, messages.next()).await {
                        Ok(Some(msg)) if msg.get_channel_name() == first => received += 1,
                        Ok(Some(_other)) => {}
                        Ok(None) => {
                            ended = true;
                            break;
                        }
                        Err(_quiet) if publishing.is_finished() => break,
                        Err(_quiet) => {}
                    }
                }
                let report = publishing.await??;
                Ok((report.queued_for, received, ended, error))
            }
        }
    };
}

scenarios_for!(old, redis_0_25);
scenarios_for!(current, redis);

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let quick = args.quick || lab::quick();
    let runs = args.runs.unwrap_or(if quick { 3 } else { 10 });
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let mut publisher_con = client.get_multiplexed_async_connection().await?;
    let url = server.url();

    let mut results = Vec::new();
    for (client_name, is_old) in [(lab::REDIS_0_25, true), (lab::REDIS_CURRENT, false)] {
        let mut reply = Totals::default();
        let mut resub = Totals::default();
        for _ in 0..runs {
            let (queued, received, ended) = if is_old {
                old::subscribe_reply(url, &mut publisher_con).await?
            } else {
                current::subscribe_reply(url, &mut publisher_con).await?
            };
            reply.add(queued, received, ended, None);
            let (queued, received, ended, error) = if is_old {
                old::resubscribe(url, &mut publisher_con).await?
            } else {
                current::resubscribe(url, &mut publisher_con).await?
            };
            resub.add(queued, received, ended, error);
        }
        for (name, totals) in [("subscribe-reply", &reply), ("resubscribe", &resub)] {
            println!(
                "{name:<16} {client_name:<13} {} runs: lost {:>6} of {:>7} queued, runs with loss {}, streams ended {}, subscribe errors {}{}",
                totals.runs,
                totals.queued - totals.received.min(totals.queued),
                totals.queued,
                totals.runs_with_loss,
                totals.streams_ended,
                totals.subscribe_errors,
                totals
                    .first_error
                    .as_ref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            );
            results.push(totals.result(name, client_name));
        }
    }
    println!();
    for result in &results {
        result.print();
    }
    Ok(())
}
