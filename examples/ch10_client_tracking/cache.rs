//! A client-side cache over `CLIENT TRACKING` on RESP3 pushes.

use std::collections::HashMap;

use anyhow::Result;
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::mpsc::{self, UnboundedReceiver, error::TryRecvError};

#[derive(Clone, Debug)]
pub enum Tracking {
    /// The keys this connection has read (the server remembers them per client).
    Default,
    /// Every key under a prefix, read or not.
    Bcast(String),
}

// ANCHOR: cache
/// A client-side cache over `CLIENT TRACKING on` on one RESP3 connection: the invalidations
/// arrive on the same connection as the replies, and are handled before every lookup.
pub struct TrackingCache {
    client: redis::Client,
    tracking: Tracking,
    /// Forget everything when the invalidation stream may have had a gap.
    flush_on_gap: bool,
    con: Option<(MultiplexedConnection, UnboundedReceiver<PushInfo>)>,
    entries: HashMap<String, u64>,
    /// How many invalidations each key has had: a reply read while one arrived is not cached.
    invalidated: HashMap<String, u64>,
    /// Bumped by every flush, for the same reason.
    epoch: u64,
    pub flushes: u64,
    pub reconnects: u64,
    pub hits: u64,
}
// ANCHOR_END: cache

// ANCHOR: flush
impl TrackingCache {
    /// The invalidation stream has (or may have) a gap: drop the connection, and the cache
    /// with it when `flush_on_gap`.
    fn gap(&mut self) {
        self.con = None;
        if self.flush_on_gap {
            self.entries.clear();
            self.epoch += 1;
            self.flushes += 1;
        }
    }

    /// Handle every push that has arrived: invalidations, and the library's `Disconnection`.
    fn drain(&mut self) {
        let Some((_, pushes)) = &mut self.con else {
            return;
        };
        let mut gap = false;
        loop {
            match pushes.try_recv() {
                Ok(push) if push.kind == PushKind::Invalidate => match push.data.first() {
                    Some(Value::Array(keys)) => {
                        for key in keys {
                            if let Ok(key) = redis::from_redis_value_ref::<String>(key) {
                                self.entries.remove(&key);
                                *self.invalidated.entry(key).or_default() += 1;
                            }
                        }
                    }
                    // FLUSHALL / FLUSHDB: every key.
                    _ => {
                        self.entries.clear();
                        self.epoch += 1;
                    }
                },
                Ok(push) if push.kind == PushKind::Disconnection => gap = true,
                Ok(_) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    gap = true;
                    break;
                }
            }
        }
        if gap {
            self.gap();
        }
    }
}
// ANCHOR_END: flush

// ANCHOR: get
impl TrackingCache {
    pub async fn get(&mut self, key: &str) -> Result<Option<u64>> {
        self.drain();
        if let Some(value) = self.entries.get(key) {
            self.hits += 1;
            return Ok(Some(*value));
        }
        let seen = (self.invalidated.get(key).copied(), self.epoch);
        let con = self.connection().await?;
        let value: Option<u64> = match con.get(key).await {
            Ok(value) => value,
            Err(error) => {
                self.gap();
                return Err(error.into());
            }
        };
        // An invalidation read while the GET was in flight may be for a write after it:
        // then the reply may already be old, and caching it would keep it for good.
        self.drain();
        if let Some(value) = value
            && self.con.is_some()
            && (self.invalidated.get(key).copied(), self.epoch) == seen
        {
            self.entries.insert(key.to_string(), value);
        }
        Ok(value)
    }

    /// The connection, after handling what arrived on it; a new one after a gap.
    async fn connection(&mut self) -> Result<&mut MultiplexedConnection> {
        self.drain();
        if self.con.is_none() {
            self.reconnects += 1;
            self.connect().await?;
        }
        Ok(&mut self.con.as_mut().expect("connected").0)
    }
}
// ANCHOR_END: get

// ANCHOR: connect
impl TrackingCache {
    /// A new connection with tracking on. The previous one, if any, is gone: anything it
    /// did not tell us about is a gap.
    async fn connect(&mut self) -> Result<()> {
        let (tx, rx) = mpsc::unbounded_channel();
        let config = AsyncConnectionConfig::new().set_push_sender(tx);
        let mut con = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut on = redis::cmd("CLIENT");
        on.arg("TRACKING").arg("ON");
        if let Tracking::Bcast(prefix) = &self.tracking {
            on.arg("BCAST").arg("PREFIX").arg(prefix);
        }
        on.exec_async(&mut con).await?;
        self.con = Some((con, rx));
        Ok(())
    }
}
// ANCHOR_END: connect

impl TrackingCache {
    pub async fn open(
        client: &redis::Client,
        tracking: Tracking,
        flush_on_gap: bool,
    ) -> Result<Self> {
        let mut cache = Self {
            client: client.clone(),
            tracking,
            flush_on_gap,
            con: None,
            entries: HashMap::new(),
            invalidated: HashMap::new(),
            epoch: 0,
            flushes: 0,
            reconnects: 0,
            hits: 0,
        };
        cache.connect().await?;
        Ok(cache)
    }

    /// A round trip on the connection that carries the invalidations (the measurement's
    /// barrier): a failure is a gap like any other.
    pub async fn ping(&mut self) -> Result<()> {
        let con = self.connection().await?;
        if let Err(error) = redis::cmd("PING").exec_async(con).await {
            self.gap(); // a failed command: the connection, and its invalidations, may be gone
            return Err(error.into());
        }
        self.drain();
        Ok(())
    }
}
