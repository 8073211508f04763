//! Connecting with clear errors.
//!
//! A reader's first run often fails for a boring reason: no server, a typo in the URL, a
//! wrong password. [`open`] turns each into one sentence that says what to do, and never
//! prints the password.

use std::time::Duration;

use anyhow::{Result, anyhow};
use redis::{ErrorKind, RedisError};

use crate::redact::redact_url;

/// How long [`open`] waits for a server to answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for `url`, checked with one PING so that a bad URL, an unreachable server or a
/// wrong password fail here, with a message a reader can act on.
pub async fn open(url: &str) -> Result<redis::Client> {
    let client = redis::Client::open(url).map_err(|error| {
        anyhow!(
            "not a valid Redis URL: {} ({}); expected redis://[user:password@]host:port[/db]",
            redact_url(url),
            scrub(&error.to_string(), url)
        )
    })?;
    let ping = async {
        let mut con = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut con).await
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, ping).await {
        Ok(Ok(_pong)) => Ok(client),
        Ok(Err(error)) => Err(describe(&error, url)),
        Err(_elapsed) => Err(anyhow!(
            "no answer from Redis at {} within {CONNECT_TIMEOUT:?}: is the host right, and is \
             the server paused or overloaded?",
            redact_url(url)
        )),
    }
}

/// One sentence for a connection or command error, naming the server without its password.
pub fn describe(error: &RedisError, url: &str) -> anyhow::Error {
    let shown = redact_url(url);
    let detail = scrub(&error.to_string(), url);
    let code = error.code().unwrap_or_default();
    if error.is_connection_refusal() {
        anyhow!(
            "connection refused by {shown}: is redis-server running there? (ci/setup.sh \
             installs it; the examples start their own server unless REDIS_URL is set)"
        )
    } else if error.kind() == ErrorKind::AuthenticationFailed || code == "WRONGPASS" {
        anyhow!(
            "Redis at {shown} rejected the credentials: wrong user name or password? ({detail})"
        )
    } else if code == "NOAUTH" {
        anyhow!(
            "Redis at {shown} requires a password: put it in the URL, redis://:PASSWORD@host:port"
        )
    } else if error.is_connection_dropped() || error.is_io_error() {
        anyhow!("the connection to Redis at {shown} failed: {detail}")
    } else {
        anyhow!("Redis at {shown} answered with an error: {detail}")
    }
}

/// `text` with the URL's password (if any) replaced, in case a library echoed it.
fn scrub(text: &str, url: &str) -> String {
    match redis::parse_redis_url(url).and_then(|parsed| parsed.password().map(str::to_string)) {
        Some(password) if !password.is_empty() => text.replace(&password, "***"),
        _ => text.to_string(),
    }
}
