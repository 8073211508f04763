//! A Redis Pub/Sub subscriber to copy into a service (chapter 6): redis 1.8.1 and Tokio only.
//!
//!     cargo run --example ch06_minimal_subscriber -- redis://127.0.0.1:6379/ orders billing
//!
//! - Bounded under any burst: redis-rs hands every push to our push sender, in its own read
//!   loop, and the push sender moves it into a bounded queue without waiting (a full queue
//!   drops it and counts it). Nothing unbounded stands in front of the queue.
//! - Notices loss: publishers send `<publisher>:<epoch>:<seq>#...`, a heartbeat
//!   `~hb:<publisher>:<epoch>:<next>` now and then and `~end:<publisher>:<epoch>:<next>` when
//!   they stop. Anything else is a bad payload, counted and never handled.
//! - Reconnects (backoff with jitter) and resubscribes when the connection closes or a PING
//!   goes unanswered.
//! - On SIGTERM or Ctrl-C: unsubscribes, handles what is queued, prints its counters.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use redis::{AsyncConnectionConfig, IntoConnectionInfo, Msg, ProtocolVersion::RESP3, PushInfo};
use tokio::{sync::Notify, sync::mpsc, time::Duration, time::sleep};

/// The limit for each command (SUBSCRIBE, PING, UNSUBSCRIBE); a PING goes out this often too.
const TIMEOUT: Duration = Duration::from_secs(5);

// ANCHOR: counters
/// Every message read is `processed`, `dropped` (the queue was full) or `bad`. The loss the
/// subscriber noticed is `dropped + missing`; an unknown gap is one nobody can count.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub received: u64,
    pub processed: u64,
    pub dropped: u64,
    pub bad: u64,
    pub missing: u64,
    pub unknown_gaps: u64,
    pub reconnects: u64,
}
// ANCHOR_END: counters

// ANCHOR: reader
/// What the push sender keeps, across connections.
#[derive(Default)]
struct Reader {
    queue: Option<mpsc::Sender<Msg>>,        // `None`: shutting down
    connection: u64,                         // the one whose pushes count
    runs: HashMap<String, (u64, u64, bool)>, // "channel publisher": (epoch, next, goodbye)
    counts: Counters,
}

/// One message from redis-rs's read loop: count it, check its number, queue it or drop it.
/// Never waits.
fn take(reader: &mut Reader, msg: Msg, id: u64) {
    let Some(queue) = reader.queue.as_ref().filter(|_| id == reader.connection) else {
        return; // shutting down, or a connection we gave up on: what it delivers is not ours
    };
    let Some((publisher, epoch, n, kind)) = parse(msg.get_payload_bytes()) else {
        reader.counts.received += 1;
        reader.counts.bad += 1;
        return;
    };
    let key = format!("{} {publisher}", msg.get_channel_name());
    let seen = reader.runs.entry(key).or_insert((epoch, n, false));
    let (seen_epoch, expected, said_goodbye) = *seen;
    // Message `n`: `..n` came before it, `n + 1` is next. Heartbeat `n`: `..n` was sent.
    let next = n.saturating_add((kind == "#").into());
    *seen = (epoch, next, kind == "~end");
    if seen_epoch == epoch && n >= expected {
        reader.counts.missing += n - expected; // 0 unless messages were lost
    } else if seen_epoch == epoch || !said_goodbye {
        reader.counts.unknown_gaps += 1; // went back, or restarted without goodbye
    }
    if kind == "#" {
        reader.counts.received += 1;
        reader.counts.dropped += u64::from(queue.try_send(msg).is_err());
    }
}

/// `(publisher, epoch, seq or next, "#" | "~hb" | "~end")`, or `None` for a bad payload.
fn parse(payload: &[u8]) -> Option<(&str, u64, u64, &str)> {
    let hash = payload.iter().position(|&byte| byte == b'#');
    let head = std::str::from_utf8(&payload[..hash.unwrap_or(payload.len())]).ok()?;
    let mut fields = head.split(':');
    let kind = if hash.is_some() { "#" } else { fields.next()? };
    let publisher = fields.next().filter(|name| !name.is_empty())?;
    let (epoch, n) = (fields.next()?.parse().ok()?, fields.next()?.parse().ok()?);
    let known = matches!(kind, "#" | "~hb" | "~end") && fields.next().is_none();
    known.then_some((publisher, epoch, n, kind))
}
// ANCHOR_END: reader

// ANCHOR: connect
/// A new RESP3 connection whose push sender is the reader, every channel subscribed; from
/// now on only its pushes count. `Notify` says when it is lost.
async fn connect(
    client: &redis::Client,
    channels: &[String],
    reader: &Arc<Mutex<Reader>>,
) -> redis::RedisResult<(redis::aio::MultiplexedConnection, Arc<Notify>)> {
    let (lost, reader) = (Arc::new(Notify::new()), Arc::clone(reader));
    reader.lock().unwrap().connection += 1; // (a panic with the lock held is a bug: unwrap)
    let (notify, id) = (Arc::clone(&lost), reader.lock().unwrap().connection);
    let pushes = move |push: PushInfo| {
        if push.kind == redis::PushKind::Disconnection {
            notify.notify_one();
        } else if let Some(msg) = Msg::from_push_info(push) {
            take(&mut reader.lock().unwrap(), msg, id);
        }
        Ok::<(), ()>(())
    };
    // The library's connection timeout (1 s), and our own for commands: its default (500 ms)
    // is short for a PING that waits behind a burst.
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(TIMEOUT));
    let config = config.set_push_sender(pushes);
    let mut con =
        redis::Client::get_multiplexed_async_connection_with_config(client, &config).await?;
    con.subscribe(channels).await?; // confirmed: nothing published from now on passes us by
    Ok((con, lost))
}
// ANCHOR_END: connect

// ANCHOR: run
/// Subscribe to `channels` and hand each message to `handle`, in order, until `shutdown`.
pub async fn run<F: Future<Output = ()>>(
    url: &str,
    channels: &[String],
    capacity: usize,
    mut handle: impl FnMut(Msg) -> F,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Counters> {
    let info = url.into_connection_info()?;
    let resp3 = info.redis_settings().clone().set_protocol(RESP3);
    let client = redis::Client::open(info.set_redis_settings(resp3))?;
    let (queue, mut queued) = mpsc::channel(capacity);
    let reader = Arc::new(Mutex::new(Reader::default()));
    reader.lock().unwrap().queue = Some(queue);
    // The first connection fails fast: a wrong URL or password is an error, not a retry loop.
    let (mut con, mut lost) = connect(&client, channels, &reader).await?;
    let work = async {
        while let Some(msg) = queued.recv().await {
            handle(msg).await;
            reader.lock().unwrap().counts.processed += 1;
        }
    };
    let supervise = async {
        // Watch the connection (its messages flow meanwhile, through the push sender); when
        // it closes or a PING fails, connect again, with exponential backoff and jitter.
        let keep_subscribed = async {
            loop {
                tokio::select! {
                    () = lost.notified() => eprintln!("connection lost; reconnecting"),
                    () = sleep(TIMEOUT) => match redis::cmd("PING").exec_async(&mut con).await {
                        Ok(()) => continue,
                        Err(error) => eprintln!("PING: {error}; reconnecting"),
                    },
                }
                let mut tries = 0;
                (con, lost) = loop {
                    match connect(&client, channels, &reader).await {
                        Ok(connected) => break connected,
                        Err(error) => eprintln!("reconnecting failed: {error}"),
                    }
                    // 50 ms doubling up to 1.6 s, each wait a random 50-100% of it.
                    let ms = (50 << tries.min(5)) * (50 + RandomState::new().hash_one(tries) % 51);
                    sleep(Duration::from_micros(ms * 10)).await;
                    tries += 1;
                };
                let counts = &mut reader.lock().unwrap().counts;
                counts.reconnects += 1;
                // Numbered publishers show what we missed as `missing`; one that came and
                // went while we were away is invisible: an unknown gap.
                counts.unknown_gaps += 1;
            }
        };
        tokio::select! { () = shutdown => {} _ = keep_subscribed => {} }
        // Confirmed: every message that came before it has passed through the push sender.
        let _ = con.unsubscribe(channels).await;
        reader.lock().unwrap().queue = None; // the only sender: `work` empties the queue, ends
    };
    tokio::join!(work, supervise);
    Ok(reader.lock().unwrap().counts)
}
// ANCHOR_END: run

// ANCHOR: main
/// SIGTERM (`docker stop`, systemd, Kubernetes) or Ctrl-C. Listening starts now.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        tokio::select! { _ = term.recv() => {} _ = tokio::signal::ctrl_c() => {} }
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((url, channels)) = args.split_first() else {
        println!("usage: ch06_minimal_subscriber REDIS_URL CHANNEL...");
        return Ok(());
    };
    // Your work here: the payload after the `#` is yours.
    let handle = |msg: Msg| async move { println!("{}", msg.get_channel_name()) };
    let counts = run(url, channels, 10_000, handle, shutdown_signal()?).await?;
    println!("final: {counts:?}");
    Ok(())
}
// ANCHOR_END: main
