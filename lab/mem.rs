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
