//! The process's resident memory (Linux `/proc/self/status`), for showing where a backlog
//! goes. On other systems the functions return `None`.

use std::time::{Duration, Instant};

/// Resident set size now, in MiB.
pub fn rss_mb() -> Option<f64> {
    status_kib("VmRSS:").map(|kib| kib as f64 / 1024.0)
}

/// The highest resident set size this process has had, in MiB.
pub fn peak_rss_mb() -> Option<f64> {
    status_kib("VmHWM:").map(|kib| kib as f64 / 1024.0)
}

/// The 1-minute load average, if the system says: printed next to a measurement, so that a
/// reader can tell a quiet machine's numbers from a busy one's.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Samples RSS in the background every `period` until dropped or [`finish`](Self::finish)ed:
/// `(seconds since start, MiB)` pairs for a chart.
pub struct RssSampler {
    handle: tokio::task::JoinHandle<Vec<(f64, f64)>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl RssSampler {
    /// Start sampling on the current Tokio runtime.
    pub fn start(period: Duration) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(async move {
            let started = Instant::now();
            let mut samples = Vec::new();
            let mut ticks = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {
                        if let Some(mb) = rss_mb() {
                            samples.push((started.elapsed().as_secs_f64(), mb));
                        }
                    }
                    _ = stopped.changed() => break,
                }
            }
            samples
        });
        Self { handle, stop }
    }

    /// Stop sampling and return the samples.
    pub async fn finish(self) -> Vec<(f64, f64)> {
        let _ = self.stop.send(true);
        self.handle.await.unwrap_or_default()
    }
}

/// How much memory one queued message holds, in bytes: a `redis::Msg` with a `payload`-byte
/// payload, as a push sender makes it, sitting in a [`crate::overflow`] queue (its slot in
/// the queue included: a queue's slots become resident as they are first used). Measured, not
/// computed: 100,000 messages fill a queue, and the RSS growth is divided by 100,000.
///
/// The result is only right in a process that has not freed much memory yet (the allocator
/// would reuse it): run it in a fresh one, as `ch06_production_subscriber
/// --measure-queued-bytes PAYLOAD` does.
pub fn measure_queued_msg_bytes(payload: usize) -> Option<f64> {
    const COUNT: usize = 100_000;
    let (queue, receiver) = crate::overflow::bounded(COUNT, crate::overflow::Overflow::DropNewest);
    let before = status_kib("VmRSS:")?;
    for seq in 0..COUNT {
        let push = redis::PushInfo {
            kind: redis::PushKind::Message,
            data: vec![
                redis::Value::BulkString(b"a-channel".to_vec()),
                redis::Value::BulkString(crate::numbered(seq as u64, payload)),
            ],
        };
        let msg = redis::Msg::from_push_info(push)?;
        let _ = queue.push(msg);
    }
    let after = status_kib("VmRSS:")?;
    drop((queue, receiver));
    Some((after.saturating_sub(before) * 1024) as f64 / COUNT as f64)
}

/// [`measure_queued_msg_bytes`] for `payload`, measured in a fresh process (the chapter 6
/// subscriber's `--measure-queued-bytes`): what the memory bounds of chapters 5 and 6 are
/// built from.
pub fn queued_msg_bytes(payload: usize) -> anyhow::Result<f64> {
    let run = crate::example::run(
        "ch06_production_subscriber",
        &["--measure-queued-bytes", &payload.to_string()],
    )?;
    let out = run.stdout();
    let bytes: f64 = out
        .split_whitespace()
        .find_map(|pair| pair.strip_prefix("queued_bytes_per_msg="))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no queued_bytes_per_msg= in {out:?}"))?;
    // A message holds at least its payload; far more would mean the measurement broke.
    anyhow::ensure!(
        bytes > payload as f64 && bytes < 20.0 * payload as f64 + 2000.0,
        "implausible: {out}"
    );
    Ok(bytes)
}
