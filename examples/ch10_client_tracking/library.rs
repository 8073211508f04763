//! redis-rs's own client-side cache (`cache-aio`), on the two connection types.

use anyhow::Result;
use redis::AsyncConnectionConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::caching::CacheConfig;

// ANCHOR: library
/// A `MultiplexedConnection` with the library's cache: `CLIENT TRACKING on` when it
/// connects, an LRU of 10,000 keys, entries kept up to 30 minutes unless invalidated.
pub async fn library_multiplexed(client: &redis::Client) -> Result<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new().set_cache_config(CacheConfig::new());
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// The same cache on a `ConnectionManager`, which reconnects.
pub async fn library_manager(client: &redis::Client) -> Result<ConnectionManager> {
    let config = ConnectionManagerConfig::new().set_cache_config(CacheConfig::new());
    Ok(ConnectionManager::new_with_config(client.clone(), config).await?)
}
// ANCHOR_END: library
