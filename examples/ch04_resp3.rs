//! Chapter 4: RESP3, one connection for commands and Pub/Sub. With RESP3 the server marks
//! Pub/Sub traffic as *push* frames, so a `MultiplexedConnection` can carry both: replies go
//! to the command that asked, pushes go to the push sender you configured. This program
//! counts everything that arrives there: messages, confirmations, and the `Disconnection`
//! the library adds when the connection dies.
//!
//! cargo run --example ch04_resp3            # 100,000 messages
//! cargo run --example ch04_resp3 -- --quick # 5,000

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use lab::{Publisher, RedisServer, ResultLine, Tally};
use redis::{AsyncConnectionConfig, PushInfo, PushKind};
use tokio::sync::{mpsc, oneshot};

// ANCHOR: resp3_client
/// The same server and credentials as `client`, speaking RESP3.
fn resp3(client: &redis::Client) -> redis::RedisResult<redis::Client> {
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    // (With a URL of your own, `?protocol=resp3` does the same.)
    redis::Client::open(info.set_redis_settings(settings))
}
// ANCHOR_END: resp3_client

/// What arrived on the push channel.
struct Pushes {
    tally: Tally,
    kinds: BTreeMap<String, u64>,
}

// ANCHOR: pushes
/// Read the push channel until the library reports a disconnection.
async fn read_pushes(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    sent: u64,
    all_in: oneshot::Sender<()>,
) -> anyhow::Result<Pushes> {
    let mut out = Pushes {
        tally: Tally::new(sent),
        kinds: BTreeMap::new(),
    };
    let mut all_in = Some(all_in);
    while let Some(push) = pushes.recv().await {
        *out.kinds.entry(format!("{:?}", push.kind)).or_default() += 1;
        if push.kind == PushKind::Disconnection {
            // Made by the library, not the server: the connection is gone, and with it the
            // subscriptions. (A real subscriber reconnects and resubscribes: chapter 6.)
            break;
        }
        if push.kind == PushKind::Message {
            // A `message` push is [channel, payload]; `Msg` knows how to read it.
            let msg = redis::Msg::from_push_info(push).context("a malformed message push")?;
            out.tally.record(lab::seq_of(msg.get_payload_bytes())?);
            if out.tally.received() == sent {
                all_in.take().map(|tx| tx.send(()));
            }
        }
    }
    Ok(out)
}
// ANCHOR_END: pushes

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let sent = lab::scaled(100_000, 5_000);
    let channel = lab::unique_channel("ch04:resp3");

    // ANCHOR: connect
    let (tx, rx) = mpsc::unbounded_channel();
    let config = AsyncConnectionConfig::new().set_push_sender(tx);
    let mut con = resp3(&client)?
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    con.subscribe(&channel).await?; // confirmed by the server when it returns
    // ANCHOR_END: connect
    let (all_in_tx, all_in) = oneshot::channel();
    let reader = tokio::spawn(read_pushes(rx, sent, all_in_tx));

    // ANCHOR: commands
    // The subscribed connection still runs ordinary commands, and here it even publishes
    // the burst to itself: one connection for everything.
    let _: () = redis::cmd("SET")
        .arg("ch04:resp3:key")
        .arg("still a normal connection")
        .query_async(&mut con)
        .await?;
    let value: String = redis::cmd("GET")
        .arg("ch04:resp3:key")
        .query_async(&mut con)
        .await?;
    let published = Publisher::new(&channel).send(&mut con, 0..sent).await?;
    // ANCHOR_END: commands
    println!("GET on the subscribed connection: {value:?}");
    tokio::time::timeout(Duration::from_secs(30), all_in)
        .await
        .context("the burst did not arrive within 30 s")?
        .context("the push reader ended before the burst arrived")?;

    // ANCHOR: disconnect
    // Leave the channel, then have the server close the connection: both show up as pushes.
    con.unsubscribe(&channel).await?;
    let id: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut con).await?;
    let mut admin = client.get_multiplexed_async_connection().await?;
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut admin)
        .await?;
    // ANCHOR_END: disconnect
    let pushes = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .context("no Disconnection push within 10 s of the disconnection")???;

    println!(
        "published {} in {:.1?} on the subscribed connection; received {}, missing: {}",
        published.sent,
        published.elapsed,
        pushes.tally.received(),
        pushes.tally.missing_summary(3)
    );
    println!("on the push channel: {:?}", pushes.kinds);
    let count = |kind: &str| pushes.kinds.get(kind).copied().unwrap_or(0);
    let resp3_line =
        ResultLine::from_tally("resp3-push-sender", lab::REDIS_CURRENT, &pushes.tally, 0)
            .with("subscribe_pushes", count("Subscribe"))
            .with("unsubscribe_pushes", count("Unsubscribe"))
            .with("disconnection_pushes", count("Disconnection"))
            .with("message_pushes", count("Message"));

    // ANCHOR: no_sender
    // Without a push sender, RESP3 `subscribe` still succeeds, and the server still
    // delivers (PUBLISH counts a receiver), but the library has nowhere to put the messages.
    let mut deaf = resp3(&client)?.get_multiplexed_async_connection().await?;
    let deaf_channel = lab::unique_channel("ch04:resp3:deaf");
    deaf.subscribe(&deaf_channel).await?;
    let small = lab::scaled(1_000, 100);
    let mut publisher_con = client.get_multiplexed_async_connection().await?;
    let unheard = Publisher::new(&deaf_channel)
        .send(&mut publisher_con, 0..small)
        .await?;
    // ANCHOR_END: no_sender
    println!(
        "RESP3 without a push sender: subscribe succeeded, PUBLISH counted {} deliveries, \
         the application received nothing",
        unheard.queued_for
    );
    let no_sender = ResultLine::new("resp3-no-push-sender", lab::REDIS_CURRENT, small, 0, 0)
        .with("queued_for", unheard.queued_for);

    // ANCHOR: resp2_sender
    // And a push sender on a RESP2 connection is refused when connecting.
    let (tx, _rx) = mpsc::unbounded_channel();
    let refused = client
        .get_multiplexed_async_connection_with_config(
            &AsyncConnectionConfig::new().set_push_sender(tx),
        )
        .await;
    // ANCHOR_END: resp2_sender
    match refused {
        Ok(_) => println!("RESP2 with a push sender: accepted (unexpected)"),
        Err(error) => println!("RESP2 with a push sender: refused: {error}"),
    }

    resp3_line.print();
    no_sender.print();
    Ok(())
}
