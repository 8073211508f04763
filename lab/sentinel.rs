//! A throwaway Sentinel deployment on loopback ports, for chapter 9.
//!
//! [`SentinelDeployment::start`] starts a primary and one replica (lab-owned `redis-server`s,
//! [`RedisServer`]) and three `redis-sentinel` processes (each a [`RedisServer`] started with
//! its own configuration file, which Sentinel rewrites to save its state). The Sentinels
//! monitor the primary under the name [`SERVICE`] with fast failover settings:
//! `down-after-milliseconds 1000`, `failover-timeout 3000`, quorum 2. `start` returns only when
//! every Sentinel names the same primary, knows the replica with its link up, and knows the two
//! other Sentinels: a failover test that kills the primary earlier measures a deployment that
//! could not fail over yet (a Sentinel only learns of a replica from the primary's `INFO`,
//! every 10 s, unless its configuration names it, which the lab's does). With
//! `LAB_SERVER=valkey` every process is Valkey's (`valkey-server`, `valkey-sentinel`).
//!
//! ```no_run
//! let mut deployment = lab::sentinel::SentinelDeployment::start()?;
//! let sentinels = deployment.sentinel_urls(); // give these to redis::sentinel
//! let primary = deployment.primary_port()?;
//! deployment.kill(primary)?; // SIGKILL; `pause` is SIGSTOP
//! let (new_primary, took) =
//!     deployment.wait_for_failover(primary, std::time::Duration::from_secs(15))?;
//! # anyhow::Ok(())
//! ```
//!
//! Every process is stopped when the value is dropped (also when a test panics), and each is
//! started with [`die_with_parent`](crate::ServerBuilder::die_with_parent), so that a program
//! killed before it can drop anything leaves none behind: start a deployment on a thread that
//! outlives it (`main`, a test's thread), never from `spawn_blocking`. A deployment is never
//! taken from `REDIS_URL`: [`SentinelDeployment::refuse_redis_url`] explains why.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::redact::redact_url;
use crate::server::{RedisServer, ServerKind, redis_url_from_env};

/// The name the Sentinels monitor the primary under (`SENTINEL GET-MASTER-ADDR-BY-NAME lab`).
pub const SERVICE: &str = "lab";
/// `down-after-milliseconds`: how long a server may not answer before a Sentinel thinks it down.
pub const DOWN_AFTER_MS: u64 = 1000;
/// `failover-timeout`: how long a failover may take before another Sentinel tries again.
pub const FAILOVER_TIMEOUT_MS: u64 = 3000;
/// How many Sentinels must agree that the primary is down before a failover starts.
pub const QUORUM: usize = 2;
/// How many Sentinels the lab starts.
pub const SENTINELS: usize = 3;

/// How long the deployment may take to settle after its processes answer PING.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A lab-owned primary, replica and three Sentinels: every process stopped when dropped.
#[derive(Debug)]
pub struct SentinelDeployment {
    // The data servers by port; a killed one stays here (stopped) so that its port is not reused.
    servers: BTreeMap<u16, RedisServer>,
    sentinels: Vec<RedisServer>,
    settled_in: Duration,
    // Holds the Sentinels' configuration files; removed on drop (after the processes stop,
    // because fields drop in order).
    _config_dir: tempfile::TempDir,
}

impl SentinelDeployment {
    /// Start a primary, one replica and three Sentinels, and wait until they agree.
    pub fn start() -> Result<Self> {
        Self::refuse_redis_url()?;
        let kind = ServerKind::from_env()?;
        let started = Instant::now();
        let primary = RedisServer::builder()
            .kind(kind)
            .die_with_parent()
            .start()
            .context("starting the primary")?;
        let primary_port = primary.port().expect("a lab-owned server has a port");
        let replica = RedisServer::builder()
            .kind(kind)
            .config("replicaof", &format!("127.0.0.1 {primary_port}"))
            .die_with_parent()
            .start()
            .context("starting the replica")?;
        let replica_port = replica.port().expect("a lab-owned server has a port");

        let config_dir = tempfile::Builder::new()
            .prefix("lab-sentinel-")
            .tempdir()
            .context("creating a temporary directory for the Sentinels' configuration")?;
        let binary = kind.sentinel_binary();
        let mut sentinels = Vec::new();
        for n in 0..SENTINELS {
            let path = config_dir.path().join(format!("sentinel-{n}.conf"));
            std::fs::write(&path, sentinel_config(primary_port, replica_port))
                .with_context(|| format!("writing {}", path.display()))?;
            let sentinel = RedisServer::builder()
                .kind(kind)
                .binary(&binary)
                .config_file(&path)
                .die_with_parent()
                .start()
                .map_err(|error| {
                    let text = format!("{error:#}");
                    if text.contains("was not found on PATH") {
                        match kind {
                            ServerKind::Redis => anyhow!(
                                "`{binary}` was not found on PATH: install it with ci/setup.sh \
                                 (Debian/Ubuntu: apt-get install redis-sentinel; macOS: it \
                                 comes with brew install redis), or set LAB_REDIS_SENTINEL"
                            ),
                            ServerKind::Valkey => anyhow!(
                                "`{binary}` was not found on PATH: {}, or set \
                                 LAB_REDIS_SENTINEL",
                                kind.install_hint()
                            ),
                        }
                    } else {
                        error.context("starting a Sentinel")
                    }
                })?;
            sentinels.push(sentinel);
        }
        let mut deployment = Self {
            servers: BTreeMap::from([(primary_port, primary), (replica_port, replica)]),
            sentinels,
            settled_in: Duration::ZERO,
            _config_dir: config_dir,
        };
        deployment.wait_settled(primary_port, SETTLE_TIMEOUT)?;
        deployment.settled_in = started.elapsed();
        Ok(deployment)
    }

    /// An error when `REDIS_URL` is set: Sentinel scenarios start and kill their own servers,
    /// which the lab never does to a server it did not start.
    pub fn refuse_redis_url() -> Result<()> {
        if let Some(url) = redis_url_from_env() {
            bail!(
                "REDIS_URL points at {}, but this scenario needs a Sentinel deployment of its \
                 own: it starts a primary, a replica and 3 Sentinels on loopback ports, kills \
                 the primary and watches the Sentinels promote the replica, which the lab never \
                 does to a server it did not start. Unset REDIS_URL (redis-server and \
                 redis-sentinel must be on PATH).",
                redact_url(&url)
            );
        }
        Ok(())
    }

    /// How long starting and settling took.
    pub fn settled_in(&self) -> Duration {
        self.settled_in
    }

    /// `redis://127.0.0.1:PORT/` of every Sentinel: what `redis::sentinel` is built from.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|sentinel| sentinel.url().to_string())
            .collect()
    }

    /// Ports of the Sentinels.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels
            .iter()
            .filter_map(RedisServer::port)
            .collect()
    }

    /// Ports of the data servers started (primary and replica), running or not.
    pub fn server_ports(&self) -> Vec<u16> {
        self.servers.keys().copied().collect()
    }

    /// Process ids of every process that runs now: data servers and Sentinels.
    pub fn pids(&self) -> Vec<u32> {
        let servers = self.servers.values().filter_map(RedisServer::pid);
        servers
            .chain(self.sentinels.iter().filter_map(RedisServer::pid))
            .collect()
    }

    /// `redis://127.0.0.1:PORT/` of a data server.
    pub fn url_of(port: u16) -> String {
        format!("redis://127.0.0.1:{port}/")
    }

    /// The primary's port as the first Sentinel that answers names it.
    pub fn primary_port(&self) -> Result<u16> {
        let mut last_error = anyhow!("no Sentinel answered");
        for port in self.sentinel_ports() {
            match sentinel_primary(port) {
                Ok(primary) => return Ok(primary),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// The port of the data server that is not the primary now.
    pub fn replica_port(&self) -> Result<u16> {
        let primary = self.primary_port()?;
        self.server_ports()
            .into_iter()
            .find(|&port| port != primary)
            .ok_or_else(|| anyhow!("no replica"))
    }

    /// What the server on `port` says it is (`ROLE`'s first field: `master` or `slave`).
    pub fn role_of(port: u16) -> Result<String> {
        role(port)
    }

    fn server_mut(&mut self, port: u16) -> Result<&mut RedisServer> {
        self.servers
            .get_mut(&port)
            .ok_or_else(|| anyhow!("no data server of the deployment on port {port}"))
    }

    /// SIGKILL the data server on `port`: it dies with every connection.
    pub fn kill(&mut self, port: u16) -> Result<()> {
        self.server_mut(port)?.kill()
    }

    /// SIGSTOP the data server on `port`: its connections stay open and nothing is answered.
    pub fn pause(&mut self, port: u16) -> Result<()> {
        self.server_mut(port)?.pause()
    }

    /// SIGCONT a paused data server.
    pub fn resume(&mut self, port: u16) -> Result<()> {
        self.server_mut(port)?.resume()
    }

    /// Start a killed data server again on its port (as a primary, as it was started: the
    /// Sentinels then reconfigure it as a replica of the primary they elected).
    pub fn restart(&mut self, port: u16) -> Result<()> {
        self.server_mut(port)?.restart()
    }

    /// Wait until every Sentinel names a primary other than `old` and that server says `ROLE`
    /// master. Returns the new primary's port and how long the wait took.
    pub fn wait_for_failover(&self, old: u16, timeout: Duration) -> Result<(u16, Duration)> {
        let started = Instant::now();
        loop {
            let named: Vec<Option<u16>> = self
                .sentinel_ports()
                .into_iter()
                .map(|port| sentinel_primary(port).ok())
                .collect();
            if let Some(Some(new)) = named.first()
                && *new != old
                && named.iter().all(|port| *port == Some(*new))
                && role(*new).is_ok_and(|role| role == "master")
            {
                return Ok((*new, started.elapsed()));
            }
            if started.elapsed() > timeout {
                bail!(
                    "no failover away from port {old} within {timeout:?}: the Sentinels name \
                     {named:?}; {}",
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until the server on `port` answers `ROLE` with `master` (promotion seen from the
    /// server, before any Sentinel announces it). Returns how long the wait took.
    pub fn wait_role(&self, port: u16, wanted: &str, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            if role(port).is_ok_and(|role| role == wanted) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!("the server on port {port} did not become {wanted} within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// One line per Sentinel, for error messages: the primary it names and its flags.
    pub fn describe(&self) -> String {
        self.sentinel_ports()
            .into_iter()
            .map(|port| match sentinel_state(port) {
                Ok(state) => format!("sentinel {port}: {state}"),
                Err(error) => format!("sentinel {port}: {error:#}"),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Wait until every Sentinel names the same primary, sees one replica with its link up
    /// and knows the other Sentinels, and the replica says its link is up: the state `start`
    /// returns in, and a failover can happen again (after a killed primary was restarted and
    /// made a replica, say). Returns the primary's port and how long the wait took.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(u16, Duration)> {
        let started = Instant::now();
        loop {
            if let Ok(primary) = self.primary_port()
                && self.ready(primary)
            {
                return Ok((primary, started.elapsed()));
            }
            if started.elapsed() > timeout {
                bail!(
                    "the Sentinel deployment was not ready within {timeout:?}; {}",
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ready(&self, primary: u16) -> bool {
        let sentinels_agree = self.sentinel_ports().into_iter().all(|port| {
            sentinel_primary(port).is_ok_and(|named| named == primary)
                && sentinel_knows(port)
                    .is_ok_and(|(replicas, others)| replicas == 1 && others == SENTINELS - 1)
        });
        let replica = self
            .server_ports()
            .into_iter()
            .find(|&port| port != primary);
        let link_up = replica.is_some_and(|replica| {
            info(replica, "replication").is_ok_and(|info| info.contains("master_link_status:up"))
        });
        sentinels_agree && link_up
    }

    fn wait_settled(&self, primary: u16, timeout: Duration) -> Result<()> {
        let (named, _) = self.wait_ready(timeout)?;
        if named != primary {
            bail!("the Sentinels name port {named} as the primary, not {primary}");
        }
        Ok(())
    }
}

/// A Sentinel's configuration: the primary it monitors (and the replica, so that it need not
/// wait up to 10 s for the primary's `INFO` to name it), with the fast failover settings.
fn sentinel_config(primary: u16, replica: u16) -> String {
    format!(
        "sentinel monitor {SERVICE} 127.0.0.1 {primary} {QUORUM}\n\
         sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n\
         sentinel parallel-syncs {SERVICE} 1\n\
         sentinel known-replica {SERVICE} 127.0.0.1 {replica}\n"
    )
}

fn admin(port: u16) -> Result<redis::Connection> {
    let client = redis::Client::open(SentinelDeployment::url_of(port))?;
    let con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    con.set_read_timeout(Some(Duration::from_secs(2)))?;
    Ok(con)
}

fn role(port: u16) -> Result<String> {
    let mut con = admin(port)?;
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut con).context("ROLE")?;
    match role.first() {
        Some(redis::Value::BulkString(bytes)) => Ok(String::from_utf8_lossy(bytes).into()),
        other => bail!("unexpected ROLE reply: {other:?}"),
    }
}

fn info(port: u16, section: &str) -> Result<String> {
    let mut con = admin(port)?;
    redis::cmd("INFO")
        .arg(section)
        .query(&mut con)
        .context("INFO")
}

/// The primary a Sentinel names (`SENTINEL GET-MASTER-ADDR-BY-NAME`).
fn sentinel_primary(port: u16) -> Result<u16> {
    let mut con = admin(port)?;
    let (_host, primary): (String, u16) = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(SERVICE)
        .query(&mut con)
        .context("SENTINEL GET-MASTER-ADDR-BY-NAME")?;
    Ok(primary)
}

/// A field of `SENTINEL MASTER lab`.
fn sentinel_master_field(port: u16, field: &str) -> Result<String> {
    let mut con = admin(port)?;
    let fields: std::collections::HashMap<String, String> = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(SERVICE)
        .query(&mut con)
        .context("SENTINEL MASTER")?;
    fields
        .get(field)
        .cloned()
        .ok_or_else(|| anyhow!("SENTINEL MASTER has no {field}"))
}

/// How many replicas a Sentinel sees with their link to the primary up, and how many other
/// Sentinels it knows.
fn sentinel_knows(port: u16) -> Result<(usize, usize)> {
    let mut con = admin(port)?;
    let replicas: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg(SERVICE)
        .query(&mut con)
        .context("SENTINEL REPLICAS")?;
    let linked = replicas
        .iter()
        .filter(|replica| {
            replica.get("flags").is_some_and(|flags| flags == "slave")
                && replica.get("master-link-status").map(String::as_str) == Some("ok")
                && replica.get("role-reported").map(String::as_str) == Some("slave")
        })
        .count();
    let others: usize = sentinel_master_field(port, "num-other-sentinels")?.parse()?;
    Ok((linked, others))
}

fn sentinel_state(port: u16) -> Result<String> {
    let primary = sentinel_primary(port)?;
    let flags = sentinel_master_field(port, "flags")?;
    let (replicas, others) = sentinel_knows(port)?;
    Ok(format!(
        "primary {primary} ({flags}), {replicas} linked replica(s), {others} other sentinel(s)"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_configuration_states_the_fast_failover_settings() {
        let config = super::sentinel_config(7000, 7001);
        assert!(config.contains("sentinel monitor lab 127.0.0.1 7000 2\n"));
        assert!(config.contains("down-after-milliseconds lab 1000\n"));
        assert!(config.contains("failover-timeout lab 3000\n"));
        assert!(config.contains("known-replica lab 127.0.0.1 7001\n"));
    }
}
