//! # The lab
//!
//! A small library shared by the book's examples and tests. It does the chores that every
//! experiment needs, so that each example file can show only the pattern its chapter teaches:
//!
//! - [`server`]: start a throwaway `redis-server` on a free loopback port (or use the one in
//!   `REDIS_URL`), and kill, pause or restart it for fault tests; `LAB_SERVER=valkey` makes
//!   it, the cluster and the Sentinels Valkey's ([`ServerKind`]);
//! - [`message`]: numbered payloads (`<seq>#`, or `<publisher>:<epoch>:<seq>#` from a named
//!   publisher) and heartbeats, padded to a chosen size;
//! - [`publish`]: a publisher that sends numbered messages as a burst, one per round trip, or
//!   paced at a rate, named with heartbeats if asked;
//! - [`tally`]: what arrived: received, duplicates, out of order, and which numbers are missing;
//! - [`report`]: the `RESULT ...` line every message-moving example prints, and its parser;
//! - [`redact`] and [`connect`]: clear errors for bad URLs, unreachable servers and wrong
//!   passwords, without ever printing a password;
//! - [`gaps`]: noticing loss: a tracker per channel (per publisher and run, heartbeats
//!   included) and a `Stream` adapter around it (built in chapter 3);
//! - [`mem`]: the process's resident memory, for the backpressure chapter;
//! - [`push`]: a RESP3 push sender that feeds a bounded queue (chapter 5);
//! - [`overflow`]: a bounded queue with an explicit overflow policy (chapter 5);
//! - [`example`]: run an example program from a test and read its RESULT lines;
//! - [`cluster`]: start a throwaway Redis cluster, and kill or restart its nodes (chapter 9);
//! - [`sentinel`]: start a throwaway primary, replica and three Sentinels, and kill or pause
//!   the primary (chapter 9);
//! - [`production`]: the recommended subscriber (chapter 6).
//!
//! Three modules are chapter code that several programs share, and the chapters show them
//! by name: [`overflow`] and [`push`] (the bounded reader, chapter 5), and [`production`]
//! (the recommended subscriber, chapter 6). Everything else that consumes Pub/Sub lives in
//! `examples/`.

pub mod cluster;
pub mod connect;
pub mod example;
pub mod gaps;
pub mod mem;
pub mod message;
pub mod overflow;
pub mod production;
pub mod publish;
pub mod push;
pub mod redact;
pub mod report;
pub mod sentinel;
pub mod server;
pub mod tally;

pub use message::{mark_of, numbered, seq_of};
pub use publish::{Pace, PublishReport, Publisher};
pub use report::{ResultLine, parse_results};
pub use server::{RedisServer, ServerBuilder, ServerKind, ServerVersion};
pub use tally::Tally;

/// The `client=` value for the redis crate every recommended pattern uses.
pub const REDIS_CURRENT: &str = "redis-1.8.1";
/// The `client=` value for the pinned old release with the loop bug (dev-dependency `redis_0_25`).
pub const REDIS_0_25: &str = "redis-0.25.5";
/// The `client=` value for the pinned 0.29 release (dev-dependency `redis_0_29`): it has both the
/// old `get_async_connection().into_pubsub()` path and the new `get_async_pubsub()`.
pub const REDIS_0_29: &str = "redis-0.29.5";

/// True when the program should run a small, fast version of its experiment: when `--quick` is
/// on its command line or `LAB_QUICK=1` is set. CI runs every example this way.
pub fn quick() -> bool {
    std::env::args().any(|arg| arg == "--quick")
        || std::env::var("LAB_QUICK").is_ok_and(|value| value == "1")
}

/// A channel name no other run uses: `prefix:<pid>:<n>`. Experiments against a shared
/// server (`REDIS_URL`) must not hear each other's messages.
pub fn unique_channel(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}:{}:{n}", std::process::id())
}

/// `full` normally, `quick` when [`quick()`] is true: `let n = lab::scaled(100_000, 2_000);`.
pub fn scaled<T>(full: T, quick: T) -> T {
    if self::quick() { quick } else { full }
}
