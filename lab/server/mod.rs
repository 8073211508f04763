//! Throwaway Redis servers.
//!
//! [`RedisServer::start`] runs `redis-server` on a free 127.0.0.1 port, with no persistence,
//! and stops it when the value is dropped. With `LAB_SERVER=valkey` (or
//! [`ServerBuilder::kind`]) it runs `valkey-server` instead, through the same API: see
//! [`ServerKind`]; [`RedisServer::server_version`] tells a test which server it runs on. Fault tests can [`kill`](RedisServer::kill) it
//! (SIGKILL), [`pause`](RedisServer::pause) and [`resume`](RedisServer::resume) it
//! (SIGSTOP/SIGCONT), and [`restart`](RedisServer::restart) it on the same port.
//!
//! With `REDIS_URL` set, [`RedisServer::from_env`] uses that server instead, and every helper
//! that would change it (CONFIG SET, FLUSHALL, kill, restart, killing clients) returns an
//! error: the lab never tunes, empties or stops a server it did not start.

mod builder;
mod kind;
mod process;

use std::fs;
use std::process::Child;

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::Signal;

use crate::redact::redact_url;

pub use builder::ServerBuilder;
pub use kind::{ServerKind, ServerVersion};
use process::OwnedServer;

/// A Redis server for one experiment: lab-owned (started here, stopped on drop) or the
/// user's (`REDIS_URL`, never changed).
#[derive(Debug)]
pub struct RedisServer {
    url: String,
    owned: Option<OwnedServer>,
}

impl RedisServer {
    /// A new lab-owned server with the default configuration.
    pub fn start() -> Result<Self> {
        ServerBuilder::default().start()
    }

    /// Configure a lab-owned server before starting it.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The server in `REDIS_URL` when it is set, else a new lab-owned one.
    pub fn from_env() -> Result<Self> {
        ServerBuilder::default().start_or_env()
    }

    /// Use a server somebody else runs. Nothing that changes it will be allowed.
    pub fn external(url: String) -> Result<Self> {
        redis::Client::open(url.as_str())
            .with_context(|| format!("REDIS_URL is not a valid Redis URL: {}", redact_url(&url)))?;
        Ok(Self { url, owned: None })
    }

    fn from_owned(owned: OwnedServer) -> Self {
        let url = owned.url();
        Self {
            url,
            owned: Some(owned),
        }
    }

    /// Which server this is and its version, as it says (`INFO server`): for a lab-owned
    /// server, what `LAB_SERVER` asked for; for `REDIS_URL`'s, whatever runs there.
    pub fn server_version(&self) -> Result<ServerVersion> {
        let mut con = self.client()?.get_connection()?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut con)
            .context("INFO server")?;
        ServerVersion::from_info(&info)
    }

    /// After a start: an error when the program that answers is not the kind asked for (a
    /// `redis-server` that is a link to `valkey-server`, say).
    fn expect_kind(&self, kind: ServerKind) -> Result<()> {
        let binary = self
            .owned
            .as_ref()
            .and_then(|owned| owned.builder.binary.clone())
            .unwrap_or_default();
        let found = self
            .server_version()
            .with_context(|| format!("asking `{binary}` which server it is"))?;
        if found.kind != kind {
            bail!(
                "`{binary}` started {found}, not {}: the lab runs the server LAB_SERVER names \
                 (unset: redis). Point LAB_REDIS_SERVER (or LAB_REDIS_SENTINEL) at the real \
                 {}-server, or set LAB_SERVER={}",
                kind.name(),
                kind.name(),
                found.kind.name()
            );
        }
        Ok(())
    }

    /// The URL to connect to, password included: pass it to a client, never print it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL as it may be printed: without its password.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The lines of a lab-owned server's log that contain `text` (none for a `REDIS_URL`
    /// server: its log is not ours to read).
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        let Some(owned) = &self.owned else {
            return Vec::new();
        };
        fs::read_to_string(owned.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(text))
            .map(str::to_string)
            .collect()
    }

    /// A redis 1.x client for this server.
    pub fn client(&self) -> Result<redis::Client> {
        redis::Client::open(self.url.as_str())
            .with_context(|| format!("not a valid Redis URL: {}", self.display_url()))
    }

    /// True when the lab started this server and may change it.
    pub fn is_owned(&self) -> bool {
        self.owned.is_some()
    }

    /// The TCP port of a lab-owned server.
    pub fn port(&self) -> Option<u16> {
        self.owned.as_ref().map(|owned| owned.port)
    }

    /// The process id of a lab-owned server, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.owned.as_ref()?.child.as_ref().map(Child::id)
    }

    fn owned_mut(&mut self, action: &str) -> Result<&mut OwnedServer> {
        let url = self.display_url();
        self.owned.as_mut().ok_or_else(|| {
            anyhow!(
                "refusing to {action} on {url} (from REDIS_URL): the lab never changes a server it \
                 did not start. Unset REDIS_URL to let the lab start its own redis-server."
            )
        })
    }

    /// `CONFIG SET key value` on a lab-owned server.
    pub fn config_set(&mut self, key: &str, value: &str) -> Result<()> {
        self.owned_mut("run CONFIG SET")?;
        let mut con = self.client()?.get_connection()?;
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(key)
            .arg(value)
            .query::<()>(&mut con)
            .with_context(|| format!("CONFIG SET {key} {value}"))
    }

    /// `FLUSHALL` on a lab-owned server.
    pub fn flushall(&mut self) -> Result<()> {
        self.owned_mut("run FLUSHALL")?;
        let mut con = self.client()?.get_connection()?;
        redis::cmd("FLUSHALL")
            .query::<()>(&mut con)
            .context("FLUSHALL")
    }

    /// `CLIENT KILL TYPE pubsub` on a lab-owned server: every subscriber is disconnected.
    /// Returns how many clients were killed.
    pub fn kill_pubsub_clients(&mut self) -> Result<u64> {
        self.owned_mut("kill the subscribers")?;
        let mut con = self.client()?.get_connection()?;
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut con)
            .context("CLIENT KILL TYPE pubsub")
    }

    /// SIGKILL the server: it dies at once, with every client connection.
    pub fn kill(&mut self) -> Result<()> {
        self.owned_mut("kill the server")?.kill()
    }

    /// SIGSTOP the server: connections stay open, nothing is answered until [`resume`](Self::resume).
    pub fn pause(&mut self) -> Result<()> {
        self.owned_mut("pause the server")?.signal(Signal::SIGSTOP)
    }

    /// SIGCONT a paused server.
    pub fn resume(&mut self) -> Result<()> {
        self.owned_mut("resume the server")?.signal(Signal::SIGCONT)
    }

    /// Start the server again on the same port (killing it first if it still runs).
    pub fn restart(&mut self) -> Result<()> {
        self.owned_mut("restart the server")?.restart()
    }

    /// True while the lab-owned server process is alive (false after [`kill`](Self::kill)).
    pub fn is_running(&mut self) -> bool {
        match self.owned.as_mut().and_then(|owned| owned.child.as_mut()) {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => self.owned.is_none(),
        }
    }
}

/// `REDIS_URL`, when it is set and not empty.
pub fn redis_url_from_env() -> Option<String> {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_server_tells_redis_from_valkey() {
        let redis =
            ServerVersion::from_info("# Server\r\nredis_version:7.0.15\r\nredis_mode:x\r\n");
        let redis = redis.unwrap();
        assert_eq!(
            (redis.kind, redis.version.as_str()),
            (ServerKind::Redis, "7.0.15")
        );
        let valkey =
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n";
        let valkey = ServerVersion::from_info(valkey).unwrap();
        assert_eq!((valkey.kind, valkey.major()), (ServerKind::Valkey, 8));
        assert_eq!(valkey.to_string(), "valkey 8.0.1");
        assert!(ServerVersion::from_info("# Server\r\n").is_err());
    }
}
