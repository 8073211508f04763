//! Connecting: a RESP3 connection whose push sender is the reader, retried with backoff.

use super::*;

/// A client for `url` that speaks RESP3, whatever the URL says: messages then arrive as
/// pushes, which redis-rs hands to our push sender as it decodes them.
pub(super) fn resp3_client(url: &str) -> Result<redis::Client> {
    let client = redis::Client::open(url)
        .map_err(|error| anyhow!("not a valid Redis URL: {} ({error})", redact_url(url)))?;
    crate::push::resp3(&client).map_err(|error| crate::connect::describe(&error, url))
}

/// A live, subscribed connection.
pub(super) struct Connection {
    /// Sends commands: SUBSCRIBE, PING, UNSUBSCRIBE. Dropping the last clone closes it.
    pub(super) con: MultiplexedConnection,
    /// Says when the push sender gave the connection up, and why.
    pub(super) watch: ConnectionWatch,
}

/// Why connecting failed: Redis said no, or it did not answer in time.
pub(super) enum ConnectError {
    Redis(redis::RedisError),
    Timeout(Duration),
}

impl ConnectError {
    pub(super) fn describe(&self, url: &str) -> anyhow::Error {
        match self {
            ConnectError::Redis(error) => crate::connect::describe(error, url),
            ConnectError::Timeout(limit) => anyhow!(
                "no answer from Redis at {} within {limit:?} while subscribing: is the host \
                 right, and is the server paused or overloaded?",
                redact_url(url)
            ),
        }
    }
}

// ANCHOR: connect
/// One attempt: a new RESP3 connection whose push sender feeds the workers' queues, every
/// channel and pattern subscribed again.
pub(super) async fn connect(
    client: &redis::Client,
    config: &Config,
    intake: &Arc<Mutex<Intake>>,
) -> Result<Connection, ConnectError> {
    let intake = Arc::clone(intake);
    let (pushes, watch) = push::to_queue(move |msg| lock(&intake).accept(msg));
    // No response timeout of the library's own: each command below has its own limit.
    let connection_config = AsyncConnectionConfig::new()
        .set_push_sender(pushes)
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(None);
    let attempt = async {
        let mut con = client
            .get_multiplexed_async_connection_with_config(&connection_config)
            .await?;
        // `subscribe` returns once Redis confirmed every channel: from then on nothing
        // published can pass us by.
        if !config.channels.is_empty() {
            con.subscribe(&config.channels).await?;
        }
        if !config.patterns.is_empty() {
            con.psubscribe(&config.patterns).await?;
        }
        Ok(con)
    };
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(Ok(con)) => Ok(Connection { con, watch }),
        Ok(Err(error)) => {
            watch.close();
            Err(ConnectError::Redis(error))
        }
        Err(_elapsed) => {
            watch.close();
            Err(ConnectError::Timeout(config.connect_timeout))
        }
    }
}

/// Attempt after attempt, with backoff, until connected, stopped (`Ok(None)`), or out of
/// attempts.
pub(super) async fn connect_with_backoff(
    client: &redis::Client,
    config: &Config,
    intake: &Arc<Mutex<Intake>>,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<Connection>> {
    let mut failed = 0u32;
    loop {
        match connect(client, config, intake).await {
            Ok(connection) => return Ok(Some(connection)),
            Err(error) => {
                let error = error.describe(&config.url);
                failed += 1;
                if config
                    .max_reconnect_attempts
                    .is_some_and(|max| failed >= max)
                {
                    bail!("gave up after {failed} failed connection attempts; last: {error:#}");
                }
                let retry_in = config.backoff.delay(failed - 1);
                config.event(Event::ConnectFailed {
                    error: format!("{error:#}"),
                    retry_in,
                });
                tokio::select! {
                    () = tokio::time::sleep(retry_in) => {}
                    _ = stop.wait_for(|stopped| *stopped) => return Ok(None),
                }
            }
        }
    }
}
// ANCHOR_END: connect
