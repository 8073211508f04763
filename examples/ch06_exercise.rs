//! Chapter 6 exercise: the reconnection delay.
//!
//! A subscriber that lost its server must try again, but not in a tight loop (a dead server
//! would be hammered) and not at the same moment as every other subscriber that lost it
//! (they would all come back in the same millisecond). Write `delay(attempt)`:
//!
//! - attempt 0 waits about `initial`, each further attempt about twice as long as the one
//!   before, never more than `max`;
//! - the actual wait is random, between half and all of that value ("equal jitter").
//!
//! Then make `reconnect` use it. Check your work with
//! `cargo test --example ch06_solution` after comparing with the solution.
//!
//! cargo run --example ch06_exercise

use std::time::Duration;

// ANCHOR: exercise
/// How long to wait before reconnection attempt `attempt` (0 for the first retry).
fn delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    // Hints: `Duration::saturating_mul`, `u32::saturating_pow`, `Duration::min`,
    // `Duration::mul_f64`, and `fastrand::f64()` for a random number in [0, 1).
    let _ = (attempt, initial, max);
    todo!("exponential backoff, capped at max, with equal jitter")
}

/// Try `connect` until it succeeds, waiting `delay(attempt)` between failures; give up
/// after `max_attempts` failures in a row.
async fn reconnect<T, E: std::fmt::Display>(
    mut connect: impl AsyncFnMut() -> Result<T, E>,
    max_attempts: u32,
) -> anyhow::Result<T> {
    let _ = (&mut connect, max_attempts);
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
