//! Chapter 10 exercise: the reconciliation pass. A subscriber keeps a copy of every key under a
//! prefix from keyspace notifications; after each (re)subscribe it must read the key space
//! itself, because nothing tells it what changed while it was away. Write `reconcile`.
//!
//! The starter, examples/ch10_exercise.rs, is the solution, examples/ch10_solution.rs, with
//! `todo!()` where you write the code.
//!
//! cargo test --example ch10_exercise -- --include-ignored   (the solution's tests, on your code)
//! cargo run --example ch10_solution
//! cargo test --example ch10_solution

use std::collections::BTreeMap;

use anyhow::Result;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

/// A subscriber's copy of the key space: key -> value. A key it believes absent is not in the
/// map.
pub type Mirror = BTreeMap<String, String>;

// ANCHOR: solution
// ANCHOR: starter
/// Make `mirror` match what the server holds under `prefix` now, and return how many keys
/// were wrong: a different value, a key missing from the copy, or a key the copy still has
/// and the server no longer does (deleted, expired).
///
/// Hints: `con.scan_match(pattern)` walks the key space with SCAN (`next_item()` until
/// `None`) and may return a key twice; `con.mget(keys)` reads many keys in one round trip,
/// nil for a key deleted since SCAN saw it. Read in chunks: a huge MGET blocks the server.
pub async fn reconcile(
    con: &mut MultiplexedConnection,
    prefix: &str,
    mirror: &mut Mirror,
) -> Result<u64> {
    // ANCHOR: todo!("SCAN the keys under prefix, MGET them in chunks, count what differs, replace the copy")
    let mut keys: Vec<String> = Vec::new();
    let mut scan = con.scan_match::<_, String>(format!("{prefix}*")).await?;
    while let Some(key) = scan.next_item().await {
        keys.push(key?);
    }
    drop(scan);
    keys.sort();
    keys.dedup(); // SCAN may return a key more than once
    let mut server = Mirror::new();
    for chunk in keys.chunks(500) {
        let values: Vec<Option<String>> = con.mget(chunk).await?;
        for (key, value) in chunk.iter().zip(values) {
            if let Some(value) = value {
                server.insert(key.clone(), value);
            }
        }
    }
    let wrong_or_missing = server
        .iter()
        .filter(|(key, value)| mirror.get(*key) != Some(value))
        .count();
    let vanished = mirror
        .keys()
        .filter(|key| !server.contains_key(*key))
        .count();
    *mirror = server;
    Ok((wrong_or_missing + vanished) as u64)
    // ANCHOR_END: todo
}
// ANCHOR_END: starter
// ANCHOR_END: solution

/// A copy made once, then changes behind its back, then one pass.
#[tokio::main]
async fn main() -> Result<()> {
    let server = lab::RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let prefix = format!("{}:", lab::unique_channel("ch10:exercise"));
    let mut pipe = redis::pipe();
    for i in 0..1_000 {
        pipe.set(format!("{prefix}{i}"), "v0").ignore();
    }
    pipe.exec_async(&mut con).await?;
    let mut mirror = Mirror::new();
    let loaded = reconcile(&mut con, &prefix, &mut mirror).await?;
    println!("first pass: {loaded} keys loaded");

    // While the subscriber was away: 10 changed, 5 deleted, 3 created.
    let mut pipe = redis::pipe();
    for i in 0..10 {
        pipe.set(format!("{prefix}{i}"), "v1").ignore();
    }
    for i in 100..105 {
        pipe.del(format!("{prefix}{i}")).ignore();
    }
    for i in 1_000..1_003 {
        pipe.set(format!("{prefix}{i}"), "v1").ignore();
    }
    pipe.exec_async(&mut con).await?;
    let repaired = reconcile(&mut con, &prefix, &mut mirror).await?;
    println!("after 10 changes, 5 deletions, 3 new keys: {repaired} keys repaired");
    let again = reconcile(&mut con, &prefix, &mut mirror).await?;
    println!("a second pass with nothing changed: {again} keys repaired");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn setup(keys: u64) -> (lab::RedisServer, MultiplexedConnection, String) {
        let server = lab::RedisServer::start().unwrap();
        let client = server.client().unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let prefix = format!("{}:", lab::unique_channel("ch10:exercise-test"));
        let mut pipe = redis::pipe();
        for i in 0..keys {
            pipe.set(format!("{prefix}{i}"), format!("v{i}")).ignore();
        }
        pipe.exec_async(&mut con).await.unwrap();
        (server, con, prefix)
    }

    async fn server_copy(con: &mut MultiplexedConnection, prefix: &str, keys: u64) -> Mirror {
        let mut copy = Mirror::new();
        for i in 0..keys + 10 {
            let key = format!("{prefix}{i}");
            if let Some(value) = con.get::<_, Option<String>>(&key).await.unwrap() {
                copy.insert(key, value);
            }
        }
        copy
    }

    #[tokio::test]
    async fn repairs_changed_created_and_deleted_keys_and_counts_each_once() {
        let (_server, mut con, prefix) = setup(50).await;
        let mut mirror = Mirror::new();
        assert_eq!(reconcile(&mut con, &prefix, &mut mirror).await.unwrap(), 50);
        let () = con.set(format!("{prefix}1"), "changed").await.unwrap();
        let () = con.del(format!("{prefix}2")).await.unwrap();
        let () = con.set(format!("{prefix}50"), "new").await.unwrap();
        // And one the copy got wrong by itself.
        mirror.insert(format!("{prefix}3"), "wrong".into());
        assert_eq!(reconcile(&mut con, &prefix, &mut mirror).await.unwrap(), 4);
        assert_eq!(mirror, server_copy(&mut con, &prefix, 50).await);
        // Nothing changed since: nothing to repair.
        assert_eq!(reconcile(&mut con, &prefix, &mut mirror).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn reads_many_scan_batches_and_only_keys_under_the_prefix() {
        let (_server, mut con, prefix) = setup(2_500).await;
        // Keys that share the start of the prefix but are not under it.
        let other = prefix.trim_end_matches(':');
        let () = con.set(format!("{other}-other"), "x").await.unwrap();
        let () = con.set(other, "x").await.unwrap();
        let mut mirror = Mirror::new();
        mirror.insert(format!("{other}-mine"), "stale".into());
        let repaired = reconcile(&mut con, &prefix, &mut mirror).await.unwrap();
        assert_eq!(repaired, 2_501);
        assert_eq!(mirror.len(), 2_500);
        assert_eq!(mirror, server_copy(&mut con, &prefix, 2_500).await);
    }

    #[tokio::test]
    async fn an_expired_key_leaves_the_copy() {
        let (_server, mut con, prefix) = setup(10).await;
        let mut mirror = Mirror::new();
        reconcile(&mut con, &prefix, &mut mirror).await.unwrap();
        let () = con
            .pset_ex(format!("{prefix}4"), "short-lived", 50)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(reconcile(&mut con, &prefix, &mut mirror).await.unwrap(), 1);
        assert!(!mirror.contains_key(&format!("{prefix}4")));
        assert_eq!(mirror.len(), 9);
    }
}
