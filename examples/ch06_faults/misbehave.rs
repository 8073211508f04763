//! The test handler's misbehaviour, and which channel a message is on: shared by chapter 6's
//! two fault harnesses (`ch06_faults`, and `ch06_library_tools` through `#[path]`).

use std::time::{Duration, Instant};

use crate::CHANNELS;

/// How the test handler misbehaves. (Each harness uses some of these.)
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
pub enum Misbehave {
    Nothing,
    /// Never return for every `every`-th message of channel 0.
    Hang {
        every: u64,
    },
    /// Block the thread (not just the task) for `for_ms` at message `at` of channel 0.
    Block {
        at: u64,
        for_ms: u64,
    },
    /// Sleep 1 ms every `every` messages: a consumer slower than the burst.
    Slow {
        every: u64,
    },
    /// `us` microseconds of CPU per message, on a blocking thread (chapter 6's `--work-us`).
    Work {
        us: u64,
    },
}

/// Misbehave as told, for message `seq` of channel `channel`.
pub async fn misbehave_on(misbehave: Misbehave, channel: usize, seq: u64) {
    match misbehave {
        Misbehave::Hang { every } if channel == 0 && seq % every == every - 1 => {
            std::future::pending::<()>().await
        }
        Misbehave::Block { at, for_ms } if channel == 0 && seq == at => {
            // Deliberately wrong: blocking the runtime's only thread stops the reader too.
            std::thread::sleep(Duration::from_millis(for_ms))
        }
        Misbehave::Slow { every } if seq.is_multiple_of(every) => {
            tokio::time::sleep(Duration::from_millis(1)).await
        }
        Misbehave::Work { us } => {
            let busy = move || {
                let until = Instant::now() + Duration::from_micros(us);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            };
            let _ = tokio::task::spawn_blocking(busy).await;
        }
        _ => {}
    }
}

/// Data channel names end in `:<index>`.
pub fn channel_index(name: &str) -> Option<usize> {
    name.rsplit(':')
        .next()?
        .parse()
        .ok()
        .filter(|i| *i < CHANNELS)
}
