//! Chapter 7 exercise: the same consumer, in the body of `#[tokio::main]` and as a spawned
//! task, on the multi-thread runtime. The program prints what each cost (CPU time and sleeps
//! per message). Make `measure(.., spawned: true)` run the consumer as a spawned task, run it,
//! and compare the two lines.
//!
//! The starter, examples/ch07_exercise.rs, is the solution, examples/ch07_solution.rs, with
//! `todo!()` where you write the code.
//!
//! cargo run --release --example ch07_exercise
//! cargo test --example ch07_exercise -- --include-ignored   (the solution's test, on your code)
//! cargo run --release --example ch07_solution

use anyhow::Result;
use futures::StreamExt;
use lab::{Publisher, RedisServer, ResultLine, Tally};
use nix::sys::resource::{UsageWho, getrusage};

/// What one way of consuming cost this process: CPU time and voluntary context switches
/// ("sleeps"), both from `getrusage`, while `count` messages were published and consumed.
struct Cost {
    tally: Tally,
    cpu_ns_per_msg: f64,
    sleeps_per_1k: f64,
}

// ANCHOR: solution
// ANCHOR: exercise
#[tokio::main]
async fn main() -> Result<()> {
    let server = RedisServer::from_env()?;
    let client = lab::connect::open(server.url()).await?;
    let count = lab::scaled(200_000, 10_000);
    let in_main = measure(&client, count, false).await?;
    let in_task = measure(&client, count, true).await?;
    for (name, cost) in [("in-main", in_main), ("in-task", in_task)] {
        println!(
            "{name}: received {} of {count}, {:.0} ns of CPU and {:.1} sleeps per message x1000",
            cost.tally.received(),
            cost.cpu_ns_per_msg,
            cost.sleeps_per_1k
        );
        ResultLine::from_tally(name, lab::REDIS_CURRENT, &cost.tally, 0)
            .with("cpu_ns_per_msg", format!("{:.0}", cost.cpu_ns_per_msg))
            .with("sleeps_per_1k", format!("{:.1}", cost.sleeps_per_1k))
            .print();
    }
    Ok(())
}

/// Subscribe, publish `count` numbered messages, consume them in `main` or in a task.
async fn measure(client: &redis::Client, count: u64, spawned: bool) -> Result<Cost> {
    let channel = lab::unique_channel("ch07:exercise");
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;
    let messages = pubsub.into_on_message();
    let (cpu, sleeps) = usage();
    let mut con = client.get_multiplexed_async_connection().await?;
    let publisher = Publisher::new(&channel).payload_size(16);
    let publishing = tokio::spawn(async move { publisher.send(&mut con, 0..count).await });
    let tally = if spawned {
        // Run `consume(messages, count)` as a task on the runtime's worker threads, and wait
        // for its result.
        // ANCHOR: todo!("spawn the consumer")
        // The loop is a task now: it runs on a worker thread, next to redis-rs's reader task.
        tokio::spawn(consume(messages, count)).await?
        // ANCHOR_END: todo
    } else {
        consume(messages, count).await
    };
    publishing.await??;
    let (cpu_after, sleeps_after) = usage();
    Ok(Cost {
        tally,
        cpu_ns_per_msg: (cpu_after - cpu) * 1e9 / count as f64,
        sleeps_per_1k: (sleeps_after - sleeps) as f64 * 1000.0 / count as f64,
    })
}
// ANCHOR_END: exercise
// ANCHOR_END: solution

/// Read `count` messages (or until the stream is quiet for 2 s) into a tally.
async fn consume(mut messages: redis::aio::PubSubStream, count: u64) -> Tally {
    let mut tally = Tally::new(count);
    while tally.received() < count {
        let next = tokio::time::timeout(std::time::Duration::from_secs(2), messages.next());
        match next.await {
            Ok(Some(msg)) => {
                if let Ok(seq) = lab::seq_of(msg.get_payload_bytes()) {
                    tally.record(seq);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    tally
}

/// CPU seconds and voluntary context switches of this process so far (every thread).
fn usage() -> (f64, u64) {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let seconds =
                |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            (
                seconds(usage.user_time()) + seconds(usage.system_time()),
                usage.voluntary_context_switches() as u64,
            )
        }
        Err(_) => (0.0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn the_spawned_consumer_gets_everything_and_sleeps_less() {
        let server = RedisServer::start().unwrap();
        let client = lab::connect::open(server.url()).await.unwrap();
        let in_main = measure(&client, 20_000, false).await.unwrap();
        let in_task = measure(&client, 20_000, true).await.unwrap();
        assert_eq!(in_main.tally.lost(), 0);
        assert_eq!(in_task.tally.lost(), 0);
        assert!(
            in_task.sleeps_per_1k < in_main.sleeps_per_1k,
            "sleeps per 1k: in main {}, in a task {}",
            in_main.sleeps_per_1k,
            in_task.sleeps_per_1k
        );
    }
}
