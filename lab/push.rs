//! A RESP3 push sender that hands every message to a function that never waits: the reader
//! that is bounded by construction (chapters 5 and 6).
//!
//! With RESP3, redis-rs calls the connection's push sender for every push it decodes,
//! synchronously, inside its own read loop, before it decodes the next one. A sender that
//! puts the message into a bounded queue (and drops by policy when it is full) therefore
//! leaves nothing in front of the queue to grow: however large the burst, and whichever Tokio
//! runtime runs the connection, the socket is read only as fast as messages are queued or
//! dropped. Compare the stream of `get_async_pubsub()`, whose read task decodes into an
//! *unbounded* channel first (chapter 5's counter-example).
//!
//! ```no_run
//! use lab::overflow::{bounded, Overflow, Pushed};
//!
//! # async fn demo(client: redis::Client) -> anyhow::Result<()> {
//! let (queue, mut received) = bounded(1000, Overflow::DropOldest);
//! let (sender, mut connection) =
//!     lab::push::to_queue(move |msg| !matches!(queue.push(msg), Pushed::Overflowed(_)));
//! let config = redis::AsyncConnectionConfig::new().set_push_sender(sender);
//! let mut con = client.get_multiplexed_async_connection_with_config(&config).await?;
//! con.subscribe("orders").await?;
//! let why = connection.lost().await; // the connection closed, or the queue overflowed
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::aio::{AsyncPushSender, SendError};
use redis::{Msg, PushInfo, PushKind};
use tokio::sync::watch;

/// Why a connection's push sender gave up on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lost {
    /// redis-rs reported the connection closed: the server restarted, killed us, or hit the
    /// output buffer limit; or the network failed.
    Closed,
    /// The function refused a message (a full queue under the `disconnect` policy): drop
    /// this connection and resynchronise.
    Overflow,
}

/// A push sender for one connection, made by [`to_queue`].
pub struct ToQueue<F> {
    accept: F,
    open: Arc<AtomicBool>,
    lost: watch::Sender<Option<Lost>>,
}

/// The other end: tells when and why the connection was lost, and stops counting it.
pub struct ConnectionWatch {
    open: Arc<AtomicBool>,
    lost: watch::Receiver<Option<Lost>>,
}

/// A push sender that gives every message to `accept`, and a watch on its connection.
/// `accept` runs inside redis-rs's read loop, so it must never wait (push into a bounded
/// queue, count, return). It returns `false` to give the connection up (a full queue under
/// the `disconnect` policy); from then on the connection's messages are not offered to it.
pub fn to_queue<F>(accept: F) -> (ToQueue<F>, ConnectionWatch)
where
    F: Fn(Msg) -> bool + Send + Sync + 'static,
{
    let open = Arc::new(AtomicBool::new(true));
    let (lost_tx, lost_rx) = watch::channel(None);
    (
        ToQueue {
            accept,
            open: Arc::clone(&open),
            lost: lost_tx,
        },
        ConnectionWatch {
            open,
            lost: lost_rx,
        },
    )
}

// ANCHOR: send
impl<F> AsyncPushSender for ToQueue<F>
where
    F: Fn(Msg) -> bool + Send + Sync + 'static,
{
    fn send(&self, push: PushInfo) -> Result<(), SendError> {
        if push.kind == PushKind::Disconnection {
            // Made by redis-rs when the connection ends. Never dropped, whatever the policy:
            // it is how the application learns that messages are being lost.
            self.report(Lost::Closed);
            return Ok(());
        }
        if !self.open.load(Ordering::Relaxed) {
            // A connection we gave up on: what it still delivers is lost with it, and a
            // sequence gap (or an unknown gap) says so after the reconnect.
            return Err(SendError);
        }
        // Subscribe confirmations and other pushes are not messages.
        let Some(msg) = Msg::from_push_info(push) else {
            return Ok(());
        };
        if !(self.accept)(msg) {
            self.open.store(false, Ordering::Relaxed);
            self.report(Lost::Overflow);
        }
        Ok(())
    }
}
// ANCHOR_END: send

impl<F> ToQueue<F> {
    /// The first reason wins: an overflow followed by the disconnection it causes is an
    /// overflow.
    fn report(&self, why: Lost) {
        self.lost.send_if_modified(|lost| {
            let first = lost.is_none();
            if first {
                *lost = Some(why);
            }
            first
        });
    }
}

impl ConnectionWatch {
    /// Wait until the connection is lost or overflows.
    pub async fn lost(&mut self) -> Lost {
        match self.lost.wait_for(Option::is_some).await {
            Ok(lost) => lost.unwrap_or(Lost::Closed),
            // The sender is gone: the connection (which owned it) is gone too.
            Err(_) => Lost::Closed,
        }
    }

    /// Give the connection up: its messages are no longer offered to `accept`, even before
    /// its socket closes.
    pub fn close(&self) {
        self.open.store(false, Ordering::Relaxed);
    }
}

/// A client for the same server, credentials and database as `client`, speaking RESP3 (a
/// push sender needs it; Redis 6 and later).
pub fn resp3(client: &redis::Client) -> redis::RedisResult<redis::Client> {
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    redis::Client::open(info.set_redis_settings(settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn message(payload: &str) -> PushInfo {
        PushInfo {
            kind: PushKind::Message,
            data: vec![
                Value::BulkString(b"ch".to_vec()),
                Value::BulkString(payload.as_bytes().to_vec()),
            ],
        }
    }

    #[tokio::test]
    async fn refusal_closes_the_connection_and_disconnection_is_never_lost() {
        let taken = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&taken);
        let (sender, mut watch) = to_queue(move |msg: Msg| {
            let mut seen = seen.lock().unwrap();
            seen.push(msg.get_payload_bytes().to_vec());
            seen.len() < 2
        });
        assert!(sender.send(message("a")).is_ok());
        let confirmation = PushInfo {
            kind: PushKind::Subscribe,
            data: vec![Value::BulkString(b"ch".to_vec()), Value::Int(1)],
        };
        assert!(sender.send(confirmation).is_ok());
        assert!(sender.send(message("b")).is_ok()); // refused: the connection is given up
        assert!(sender.send(message("c")).is_err()); // no longer offered
        assert_eq!(watch.lost().await, Lost::Overflow);
        assert_eq!(*taken.lock().unwrap(), [b"a".to_vec(), b"b".to_vec()]);

        let (sender, mut watch) = to_queue(|_msg: Msg| true);
        watch.close();
        assert!(sender.send(message("late")).is_err());
        let disconnection = PushInfo {
            kind: PushKind::Disconnection,
            data: vec![],
        };
        assert!(sender.send(disconnection).is_ok());
        assert_eq!(watch.lost().await, Lost::Closed);
    }
}
