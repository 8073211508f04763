//! The parent's side of chapter 8's crash test: the producer, the worker processes it
//! starts and stops, and the test itself (three workers, one of them SIGKILLed mid-batch
//! and restarted under a new name, as a supervisor would).

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use redis::aio::MultiplexedConnection;
use redis::streams::StreamMaxlen;
use tokio::process::{Child, Command};

use crate::judge::{held_by, outcome, pending_of, progress, report_crash, wait_until};
use crate::{Keys, URL_VAR, create_group, patient_connection};

// ANCHOR: produce
/// Add jobs `seqs` to the stream, 1000 XADDs per pipeline. `MAXLEN ~ cap` keeps the stream
/// from growing without bound; `~` lets Redis trim whole internal nodes, which is much
/// cheaper than trimming to the exact length. Trimming ignores consumer groups: the cap
/// must stay above the largest backlog, or unread and pending messages are deleted.
pub async fn produce(
    mut con: MultiplexedConnection,
    keys: Keys,
    seqs: std::ops::Range<u64>,
    cap: usize,
    is_poison: impl Fn(u64) -> bool,
) -> Result<()> {
    let seqs: Vec<u64> = seqs.collect();
    for chunk in seqs.chunks(1000) {
        let mut pipe = redis::pipe();
        for &seq in chunk {
            let mut fields = vec![("payload", lab::numbered(seq, 32))];
            if is_poison(seq) {
                fields.push(("poison", b"1".to_vec()));
            }
            pipe.xadd_maxlen(&keys.stream, StreamMaxlen::Approx(cap), "*", &fields)
                .ignore();
        }
        pipe.exec_async(&mut con).await.context("XADD")?;
    }
    Ok(())
}
// ANCHOR_END: produce

pub async fn crash_scenario(
    server: &lab::RedisServer,
    client: &redis::Client,
    messages: u64,
    kills: usize,
    claim_idle: Duration,
) -> Result<()> {
    let mut con = patient_connection(client).await?;
    let keys = Keys::new(&lab::unique_channel("ch08:jobs"), "workers");
    create_group(&mut con, &keys).await?;
    println!(
        "crash test: {messages} jobs, 3 workers, worker 3 killed {kills} times \
         (claim idle {claim_idle:?})"
    );

    // ANCHOR: crash
    let mut workers = vec![
        spawn_worker(server.url(), &keys, "worker-1", claim_idle)?,
        spawn_worker(server.url(), &keys, "worker-2", claim_idle)?,
        spawn_worker(server.url(), &keys, "worker-3.0", claim_idle)?,
    ];
    let started = Instant::now();
    let producer = tokio::spawn(produce(
        patient_connection(client).await?,
        keys.clone(),
        0..messages,
        messages as usize,
        |_| false,
    ));

    let mut kill_reports = Vec::new();
    let mut restarts = 0;
    'kills: for kill in 1..=kills {
        // Let the work get along: kill k comes after k / (kills + 1) of the jobs are done...
        let target = messages * kill as u64 / (kills as u64 + 1);
        while progress(&mut con, &keys).await?.handled < target {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        loop {
            // ...while the victim holds delivered, unacknowledged messages: mid-batch.
            let mut victim = workers.pop().context("no worker to kill")?;
            while pending_of(&mut con, &keys, &victim.name).await? == 0 {
                if progress(&mut con, &keys).await?.handled >= messages {
                    // Too few jobs left to catch the victim holding any: stop killing.
                    workers.push(victim);
                    break 'kills;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            victim.child.kill().await?; // SIGKILL: no cleanup, no XACK, no goodbye
            let (held, already_handled) = held_by(&mut con, &keys, &victim.name).await?;
            println!(
                "  kill {kill}: SIGKILL {} at {:.1?}, holding {held} unacknowledged messages, \
                 {already_handled} of them already handled{}",
                victim.name,
                started.elapsed(),
                if held == 0 {
                    " (between batches: again)"
                } else {
                    ""
                }
            );
            // The supervisor starts a replacement under a new name; the old name's pending
            // messages are taken over by XAUTOCLAIM, by whichever worker gets there first.
            restarts += 1;
            workers.push(spawn_worker(
                server.url(),
                &keys,
                &format!("worker-3.{restarts}"),
                claim_idle,
            )?);
            if held > 0 {
                kill_reports.push((held, already_handled));
                break;
            }
            // The worker acknowledged its batch between our look and the signal: that kill
            // was between batches, which tests nothing. Kill its successor instead.
        }
    }
    producer.await??;
    let limit = Duration::from_secs(120);
    wait_until(&mut con, &keys, limit, |p| p.handled >= messages).await?;
    let elapsed = started.elapsed();
    stop_workers(workers).await?;
    let result = outcome(&mut con, &keys).await?;
    // ANCHOR_END: crash
    report_crash(messages, kills, restarts, &kill_reports, elapsed, &result);
    Ok(())
}

/// A worker process and the pipe whose closing tells it to stop.
pub struct WorkerProcess {
    pub name: String,
    pub child: Child,
}

pub fn spawn_worker(
    url: &str,
    keys: &Keys,
    name: &str,
    claim_idle: Duration,
) -> Result<WorkerProcess> {
    let exe = std::env::current_exe().context("finding this program to start a worker")?;
    let child = Command::new(exe)
        .args([
            "--consumer",
            name,
            "--stream",
            &keys.stream,
            "--group",
            &keys.group,
        ])
        .args(["--claim-idle-ms", &claim_idle.as_millis().to_string()])
        .env(URL_VAR, url)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting worker {name}"))?;
    Ok(WorkerProcess {
        name: name.to_string(),
        child,
    })
}

/// Close every worker's stdin and wait for it to finish its batch and exit.
pub async fn stop_workers(workers: Vec<WorkerProcess>) -> Result<()> {
    for mut worker in workers {
        drop(worker.child.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(10), worker.child.wait())
            .await
            .with_context(|| format!("worker {} did not stop within 10 s", worker.name))??;
        ensure!(status.success(), "worker {} failed ({status})", worker.name);
    }
    Ok(())
}
