//! Counters that belong to one process, so that each design's CPU time and memory are its own.
//!
//! Every subscriber under test runs in a process of its own. A Rust subscriber reads its own
//! counters (`getrusage`, all threads, microsecond resolution); for `redis-cli` the benchmark
//! reads Linux's `/proc/<pid>/...` files from outside. Off Linux, the `/proc` readers return
//! `None` and the table shows `-`.

use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeVal;

/// CPU time (user + system, every thread) this process has used so far.
pub fn own_cpu() -> Duration {
    fn duration(tv: TimeVal) -> Duration {
        Duration::from_secs(tv.tv_sec().max(0) as u64)
            + Duration::from_micros(tv.tv_usec().max(0) as u64)
    }
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => duration(usage.user_time()) + duration(usage.system_time()),
        Err(_) => Duration::ZERO,
    }
}

/// Voluntary context switches of this process so far (every thread): how often a thread
/// went to sleep waiting for something, and so had to be woken again.
pub fn own_sleeps() -> u64 {
    getrusage(UsageWho::RUSAGE_SELF).map_or(0, |usage| usage.voluntary_context_switches() as u64)
}

/// The same for another process, summed over its threads (`/proc/<pid>/task/*/status`).
pub fn sleeps_of(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let status = std::fs::read_to_string(task.ok()?.path().join("status")).ok()?;
        let line = status
            .lines()
            .find(|line| line.starts_with("voluntary_ctxt_switches:"))?;
        total += line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// CPU time of another process, summed over its threads: the first field of
/// `/proc/<pid>/task/<tid>/schedstat` is nanoseconds spent running.
pub fn cpu_of(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// Bytes a process has passed to `write(2)` (`wchar` in `/proc/<pid>/io`). `redis-cli
/// subscribe` writes each message to its stdout as soon as it has parsed it (and flushes), so
/// with stdout on `/dev/null` this says exactly how many messages it has handled. (Its socket
/// reads go through `recv(2)`, which `rchar` does not count.)
pub fn bytes_written(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let line = io.lines().find(|line| line.starts_with("wchar:"))?;
    line["wchar:".len()..].trim().parse().ok()
}

/// The highest resident set size a process has had, in MiB (`VmHWM`).
pub fn peak_rss_mb_of(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line["VmHWM:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// What `redis-cli subscribe` prints for one message when its stdout is not a terminal:
/// `message\n<channel>\n<payload>\n`.
pub fn cli_output_len(channel: &str, payload_len: usize) -> u64 {
    ("message\n".len() + channel.len() + 1 + payload_len + 1) as u64
}

/// Where the numbers were taken: CPU model, cores, kernel, load average.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| format!("Linux {}", release.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_string());
    format!("{model}, {cores} cores available, {kernel}")
}

/// Today's date (UTC), `YYYY-MM-DD`, from the system clock.
pub fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    // Howard Hinnant's days-to-civil algorithm.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Wall-clock time in nanoseconds since the Unix epoch: the one clock a publisher process and
/// a subscriber process on the same machine share, for latency.
pub fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_output_length() {
        assert_eq!(
            super::cli_output_len("ch", 3),
            b"message\nch\nabc\n".len() as u64
        );
    }
}
