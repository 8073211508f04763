//! Chapter 6 exercise: the reconnection delay, exponential backoff with jitter, and a
//! reconnect loop that gives up after a number of attempts.
//!
//! A subscriber that lost its server must try again, but not in a tight loop (a dead server
//! would be hammered) and not at the same moment as every other subscriber that lost it
//! (they would all come back in the same millisecond). Write `delay(attempt)`:
//!
//! - attempt 0 waits about `initial`, each further attempt about twice as long as the one
//!   before, never more than `max`;
//! - the actual wait is random, between half and all of that value ("equal jitter").
//!
//! Then make `reconnect` use it. `lab::production::Backoff` is the same idea.
//!
//! The starter, examples/ch06_exercise.rs, is the solution, examples/ch06_solution.rs, with
//! `todo!()` where you write the code.
//!
//! cargo run --example ch06_exercise
//! cargo test --example ch06_exercise -- --include-ignored   (the solution's tests, on your code)
//! cargo test --example ch06_solution

// Made from examples/ch06_solution.rs by `python3 ci/exercises.py generate`: book authors
// edit the solution and rerun it (CI checks that the two agree). Until the todo!()s
// are written, some parameters and imports are unused:
#![allow(unused)]

use std::time::Duration;

// ANCHOR: exercise
/// How long to wait before reconnection attempt `attempt` (0 for the first retry).
fn delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    // Uses `Duration::saturating_mul`, `u32::saturating_pow`, `Duration::min`,
    // `Duration::mul_f64`, and `fastrand::f64()` for a random number in [0, 1).
    todo!("exponential backoff, capped at max, with equal jitter")
}

/// Try `connect` until it succeeds, waiting `delay(attempt)` between failures; give up
/// after `max_attempts` failures in a row.
async fn reconnect<T, E: std::fmt::Display>(
    mut connect: impl AsyncFnMut() -> Result<T, E>,
    max_attempts: u32,
) -> anyhow::Result<T> {
    todo!("loop: connect, on error sleep delay(failed - 1, ...), give up after max_attempts")
}
// ANCHOR_END: exercise

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    for attempt in 0..8 {
        let wait = delay(attempt, Duration::from_millis(50), Duration::from_secs(1));
        println!("attempt {attempt}: wait {wait:?}");
    }
    let mut calls = 0;
    let value = reconnect(
        async || {
            calls += 1;
            if calls < 3 { Err("refused") } else { Ok(calls) }
        },
        5,
    )
    .await?;
    println!("connected on call {value}");
    Ok(())
}

// The solution's tests, each #[ignore]d until your code is written. Run them with
//     cargo test --example ch06_exercise -- --include-ignored
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs your code: cargo test --example ch06_exercise -- --include-ignored"]
    fn grows_doubles_and_stays_under_the_cap() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..200 {
            for (attempt, ceiling_ms) in [
                (0, 100),
                (1, 200),
                (2, 400),
                (3, 800),
                (4, 1000),
                (60, 1000),
            ] {
                let wait = delay(attempt, initial, max);
                let ceiling = Duration::from_millis(ceiling_ms);
                assert!(
                    wait >= ceiling / 2 && wait <= ceiling,
                    "{attempt}: {wait:?}"
                );
            }
        }
    }

    #[test]
    #[ignore = "needs your code: cargo test --example ch06_exercise -- --include-ignored"]
    fn jitter_spreads_the_retries() {
        let waits: std::collections::HashSet<Duration> = (0..50)
            .map(|_| delay(3, Duration::from_millis(100), Duration::from_secs(1)))
            .collect();
        assert!(
            waits.len() > 40,
            "50 subscribers, only {} different waits",
            waits.len()
        );
    }

    #[tokio::test]
    #[ignore = "needs your code: cargo test --example ch06_exercise -- --include-ignored"]
    async fn reconnect_retries_then_gives_up() {
        let mut calls = 0;
        let ok = reconnect(
            async || {
                calls += 1;
                if calls < 3 { Err("refused") } else { Ok(calls) }
            },
            5,
        )
        .await
        .unwrap();
        assert_eq!(ok, 3);
        let never: anyhow::Result<()> = reconnect(async || Err::<(), _>("refused"), 4).await;
        let error = never.unwrap_err().to_string();
        assert!(error.contains("gave up after 4 attempts"), "{error}");
    }
}
