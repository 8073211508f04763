//! Chapter 4: when does `subscribe` return? One SUBSCRIBE naming many channels is answered
//! with one confirmation per channel. Since redis 1.8.0 (PR #2475) the async `PubSub` waits
//! for all of them; before, it returned at the first, and the rest could be taken as the
//! answers to whatever was asked next. This program sends a SUBSCRIBE naming 1,000 channels
//! with a PING right behind it and looks at what the PING gets back, on redis 0.29.5 and on
//! 1.8.1; then it checks that a message published right after `subscribe` returns arrives.
//!
//! cargo run --example ch04_confirmations
//! cargo run --example ch04_confirmations -- --quick

use std::time::Duration;

use futures::StreamExt;
use lab::{RedisServer, ResultLine};

/// How long to wait for the message on the last channel.
const WAIT: Duration = Duration::from_secs(2);

/// What one round saw.
#[derive(Default)]
struct Round {
    /// PUBLISH on one more channel, right after its `subscribe` returned, reached a subscriber.
    heard_by_server: bool,
    /// The message arrived on the stream.
    received: bool,
    /// `PING` got its own answer (`["pong", ""]`), not a confirmation meant for the SUBSCRIBE.
    ping_ok: bool,
    /// What PING got instead.
    ping_reply: String,
}

macro_rules! round {
    ($pubsub:expr, $con:expr, $many:expr, $last:expr) => {{
        let mut round = Round::default();
        let (many, last, con) = ($many, $last, $con);
        let (mut sink, mut stream) = $pubsub.split();
        let mut other = sink.clone();
        // ANCHOR: round
        // Two requests in flight on one connection: a SUBSCRIBE naming many channels (one
        // confirmation each), and a PING sent right behind it from a clone of the sink.
        let (subscribed, pong) = tokio::join!(sink.subscribe(many), other.ping::<Vec<String>>());
        subscribed?;
        // On a subscribed RESP2 connection, PING is answered with ["pong", ""].
        round.ping_reply = format!("{pong:?}");
        round.ping_ok = round.ping_reply.contains("pong");
        // ANCHOR_END: round
        sink.subscribe(last).await?;
        let receivers: u64 = redis::cmd("PUBLISH")
            .arg(last)
            .arg("0#")
            .query_async(con)
            .await?;
        round.heard_by_server = receivers == 1;
        round.received = matches!(tokio::time::timeout(WAIT, stream.next()).await, Ok(Some(_)));
        round
    }};
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;
    let old_client = redis_0_29::Client::open(server.url())
        .map_err(|error| anyhow::anyhow!("redis 0.29.5 cannot use this URL: {error}"))?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let rounds = lab::scaled(20u64, 5);
    let channels = 1_000;

    for (client_name, old) in [(lab::REDIS_0_29, true), (lab::REDIS_CURRENT, false)] {
        let (mut heard, mut received, mut pings) = (0, 0, 0);
        let mut first_bad = String::new();
        for _ in 0..rounds {
            let prefix = lab::unique_channel("ch04:confirm");
            let many: Vec<String> = (0..channels).map(|i| format!("{prefix}:{i}")).collect();
            let last = format!("{prefix}:last");
            let round = if old {
                let pubsub = old_client.get_async_pubsub().await?;
                round!(pubsub, &mut con, &many, &last)
            } else {
                let pubsub = client.get_async_pubsub().await?;
                round!(pubsub, &mut con, &many, &last)
            };
            heard += u64::from(round.heard_by_server);
            received += u64::from(round.received);
            pings += u64::from(round.ping_ok);
            if !round.ping_ok && first_bad.is_empty() {
                first_bad = round.ping_reply.chars().take(160).collect();
            }
        }
        println!(
            "{client_name}: SUBSCRIBE to {channels} channels with a PING right behind it: PING got \
             its own answer in {pings} of {rounds} rounds; a later subscribe, then PUBLISH: the \
             server had us subscribed in {heard}, the message arrived in {received}"
        );
        if !first_bad.is_empty() {
            println!("  what PING got instead: {first_bad}");
        }
        ResultLine::new("subscribe-many-then-ping", client_name, rounds, received, 0)
            .with("heard_by_server", heard)
            .with("ping_answered", pings)
            .with("ping_misattributed", rounds - pings)
            .print();
    }
    Ok(())
}
