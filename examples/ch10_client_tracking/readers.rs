//! The five readers: redis-rs's cache on two connection types, and `TrackingCache`.

use anyhow::Result;
use lab::ResultLine;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, MultiplexedConnection};

use crate::cache::{Tracking, TrackingCache};
use crate::library::{library_manager, library_multiplexed};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReaderKind {
    LibraryMultiplexed,
    LibraryManager,
    TrackingNaive,
    TrackingCorrect,
    TrackingBcast,
}

impl ReaderKind {
    pub const ALL: [ReaderKind; 5] = [
        ReaderKind::LibraryMultiplexed,
        ReaderKind::LibraryManager,
        ReaderKind::TrackingNaive,
        ReaderKind::TrackingCorrect,
        ReaderKind::TrackingBcast,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ReaderKind::LibraryMultiplexed => "library-multiplexed",
            ReaderKind::LibraryManager => "library-manager",
            ReaderKind::TrackingNaive => "tracking-naive",
            ReaderKind::TrackingCorrect => "tracking-correct",
            ReaderKind::TrackingBcast => "tracking-bcast",
        }
    }
}

/// One reader: the library's cache on either connection type, or `TrackingCache`.
pub enum Reader {
    Multiplexed(MultiplexedConnection),
    Manager(ConnectionManager),
    Own(ReaderKind, Box<TrackingCache>),
}

impl Reader {
    pub async fn open(kind: ReaderKind, client: &redis::Client, prefix: &str) -> Result<Self> {
        Ok(match kind {
            ReaderKind::LibraryMultiplexed => {
                Reader::Multiplexed(library_multiplexed(client).await?)
            }
            ReaderKind::LibraryManager => Reader::Manager(library_manager(client).await?),
            ReaderKind::TrackingNaive => Reader::Own(
                kind,
                Box::new(TrackingCache::open(client, Tracking::Default, false).await?),
            ),
            ReaderKind::TrackingCorrect => Reader::Own(
                kind,
                Box::new(TrackingCache::open(client, Tracking::Default, true).await?),
            ),
            ReaderKind::TrackingBcast => Reader::Own(
                kind,
                Box::new(
                    TrackingCache::open(client, Tracking::Bcast(prefix.to_string()), true).await?,
                ),
            ),
        })
    }

    pub fn kind(&self) -> ReaderKind {
        match self {
            Reader::Multiplexed(_) => ReaderKind::LibraryMultiplexed,
            Reader::Manager(_) => ReaderKind::LibraryManager,
            Reader::Own(kind, _) => *kind,
        }
    }

    pub async fn ping(&mut self) -> Result<()> {
        match self {
            Reader::Multiplexed(con) => redis::cmd("PING").exec_async(con).await?,
            Reader::Manager(con) => redis::cmd("PING").exec_async(con).await?,
            Reader::Own(_, cache) => cache.ping().await?,
        }
        Ok(())
    }

    pub async fn get(&mut self, key: &str) -> Result<Option<u64>> {
        Ok(match self {
            Reader::Multiplexed(con) => con.get(key).await?,
            Reader::Manager(con) => con.get(key).await?,
            Reader::Own(_, cache) => cache.get(key).await?,
        })
    }

    /// Cache hits, and for `TrackingCache` its flushes and reconnections.
    pub fn with_counts(&self, line: ResultLine) -> ResultLine {
        let library_hits = |stats: Option<redis::caching::CacheStatistics>| {
            stats.map_or(0, |stats| stats.hit as u64)
        };
        match self {
            Reader::Multiplexed(con) => line.with("hits", library_hits(con.get_cache_statistics())),
            Reader::Manager(con) => line.with("hits", library_hits(con.get_cache_statistics())),
            Reader::Own(_, cache) => line
                .with("hits", cache.hits)
                .with("flushes", cache.flushes)
                .with("reconnects", cache.reconnects),
        }
    }
}
