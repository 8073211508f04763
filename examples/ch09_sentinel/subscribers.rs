//! The subscribers chapter 9 shows: each subscribes to `channel` in a Sentinel deployment and
//! hands every payload to `out`, until the harness stops it. `main.rs` measures them.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{ProtocolVersion, PushKind, RedisConnectionInfo, Value};
use tokio::sync::mpsc::UnboundedSender;

/// The name the Sentinels monitor the primary under.
const SERVICE: &str = lab::sentinel::SERVICE;

// ANCHOR: library_only
/// redis-rs's own Sentinel support: ask the Sentinels for the primary, subscribe there.
pub async fn library_only(
    sentinels: Vec<String>,
    channel: String,
    out: UnboundedSender<Vec<u8>>,
) -> Result<()> {
    let mut sentinel =
        SentinelClient::build(sentinels, SERVICE.into(), None, SentinelServerType::Master)?;
    let primary = sentinel.async_get_client().await?; // a Client for the primary's address
    let mut pubsub = primary.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        out.send(message.get_payload_bytes().to_vec())?;
    }
    Ok(()) // the stream ended: the connection to that address is gone
}
// ANCHOR_END: library_only

// ANCHOR: follow
/// The fix: listen to a Sentinel's `+switch-master` announcements, and subscribe again on
/// the primary each one names.
pub async fn follow_switch_master(
    sentinels: Vec<String>,
    channel: String,
    out: UnboundedSender<Vec<u8>>,
) -> Result<()> {
    let mut sentinel =
        SentinelClient::build(sentinels, SERVICE.into(), None, SentinelServerType::Master)?;
    // First the announcements, so that no switch can happen unheard after the lookup below.
    let mut events = sentinel
        .async_get_sentinel_client()
        .await?
        .get_async_pubsub()
        .await?;
    events.subscribe("+switch-master").await?;
    let mut events = events.into_on_message();
    let mut primary = sentinel.async_get_client().await?;
    loop {
        let mut messages = subscribe_on(&primary, &channel).await.into_on_message();
        // Deliver until a switch is announced. A dead primary's stream just ends (None
        // disables its branch), and the loop waits for the announcement.
        let new_primary = loop {
            tokio::select! {
                Some(message) = messages.next() => out.send(message.get_payload_bytes().to_vec())?,
                event = events.next() => {
                    let event: String = event.context("the Sentinel closed")?.get_payload()?;
                    // "<name> <old-ip> <old-port> <new-ip> <new-port>"
                    if let [name, _, _, ip, port] = event.split(' ').collect::<Vec<_>>()[..]
                        && name == SERVICE
                    {
                        break format!("redis://{ip}:{port}/");
                    }
                }
            }
        };
        primary = redis::Client::open(new_primary)?;
    }
}
// ANCHOR_END: follow

/// SUBSCRIBE on `client`'s server, retrying every 100 ms until it answers.
async fn subscribe_on(client: &redis::Client, channel: &str) -> redis::aio::PubSub {
    loop {
        if let Ok(mut pubsub) = client.get_async_pubsub().await
            && pubsub.subscribe(channel).await.is_ok()
        {
            return pubsub;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ANCHOR: replica_pubsub
/// Subscribe on a replica instead: PUBLISH on the primary reaches the replica's subscribers
/// too, through replication.
pub async fn replica_pubsub(
    sentinels: Vec<String>,
    channel: String,
    out: UnboundedSender<Vec<u8>>,
) -> Result<()> {
    let mut sentinel =
        SentinelClient::build(sentinels, SERVICE.into(), None, SentinelServerType::Replica)?;
    let replica = sentinel.async_get_client().await?;
    let mut pubsub = replica.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        out.send(message.get_payload_bytes().to_vec())?;
    }
    Ok(())
}
// ANCHOR_END: replica_pubsub

// ANCHOR: replica_manager
/// On a replica, with the library's `ConnectionManager`: it reconnects to the same address
/// and subscribes again by itself (RESP3, a push sender).
pub async fn replica_manager(
    sentinels: Vec<String>,
    channel: String,
    out: UnboundedSender<Vec<u8>>,
) -> Result<()> {
    let resp3 = RedisConnectionInfo::default().set_protocol(ProtocolVersion::RESP3);
    let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(resp3);
    let mut sentinel = SentinelClient::build(
        sentinels,
        SERVICE.into(),
        Some(node),
        SentinelServerType::Replica,
    )?;
    let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
    let config = ConnectionManagerConfig::new()
        .set_automatic_resubscription()
        .set_push_sender(tx);
    let replica = sentinel.async_get_client().await?;
    let mut manager = ConnectionManager::new_with_config(replica, config).await?;
    manager.subscribe(&channel).await?;
    while let Some(push) = pushes.recv().await {
        if let (PushKind::Message, [_, Value::BulkString(payload)]) = (push.kind, &push.data[..]) {
            out.send(payload.clone())?;
        }
    }
    Ok(())
}
// ANCHOR_END: replica_manager
