//! A throwaway Redis Cluster on loopback ports, for chapter 9.
//!
//! [`RedisCluster::start`] starts `masters × (1 + replicas)` lab-owned `redis-server`s (each a
//! [`RedisServer`] with `cluster-enabled yes`, its own temporary directory and its own
//! `nodes.conf`), joins them with `redis-cli --cluster create`, and returns only when the
//! cluster has settled: every node says `cluster_state:ok`, knows every other node, and every
//! replica's link to its master is up. That takes several seconds; a failover test that kills
//! a master before the replica links are up measures a cluster that could not fail over yet.
//!
//! ```no_run
//! let mut cluster = lab::cluster::RedisCluster::start(3, 1)?; // 3 shards, 1 replica each
//! let urls = cluster.urls(); // give these to redis::cluster::ClusterClientBuilder
//! let port = cluster.master_of("news")?; // the master serving the slot of "news"
//! cluster.kill(port)?;
//! let took = cluster.wait_for_failover(port, std::time::Duration::from_secs(20))?;
//! # anyhow::Ok(())
//! ```
//!
//! With `LAB_SERVER=valkey` the nodes are `valkey-server`s joined by `valkey-cli`.
//!
//! Everything stops when the value is dropped. A cluster is never taken from `REDIS_URL`:
//! [`RedisCluster::refuse_redis_url`] explains why to a reader who set it.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::redact::redact_url;
use crate::server::{RedisServer, ServerKind, ServerVersion, redis_url_from_env};

/// How long the cluster may take to settle after `redis-cli --cluster create`.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One node as `CLUSTER NODES` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub port: u16,
    pub is_master: bool,
    /// The node id of its master, for a replica.
    pub master_id: Option<String>,
    /// Flags such as `fail`, `fail?`, `handshake`, `noaddr`.
    pub flags: Vec<String>,
    /// Slot ranges served (masters only), inclusive.
    pub slots: Vec<(u16, u16)>,
}

impl NodeInfo {
    fn is_failing(&self) -> bool {
        self.flags
            .iter()
            .any(|flag| matches!(flag.as_str(), "fail" | "fail?" | "handshake" | "noaddr"))
    }
}

/// A lab-owned Redis Cluster: stopped (every node killed) when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    // Keyed by port; a killed node stays here (stopped) so that its port is not reused.
    nodes: BTreeMap<u16, RedisServer>,
    kind: ServerKind,
    settled_in: Duration,
}

impl RedisCluster {
    /// Start `masters` shards (at least 3, as `redis-cli --cluster create` requires), each with
    /// `replicas` replicas, and wait until the cluster has settled.
    pub fn start(masters: usize, replicas: usize) -> Result<Self> {
        if masters < 3 {
            bail!("a Redis Cluster made by redis-cli needs at least 3 masters, not {masters}");
        }
        Self::refuse_redis_url()?;
        let kind = ServerKind::from_env()?;
        let started = Instant::now();
        let mut nodes = BTreeMap::new();
        for _ in 0..masters * (1 + replicas) {
            let node = start_node(kind)?;
            let port = node.port().expect("a lab-owned node has a port");
            nodes.insert(port, node);
        }
        let mut cluster = Self {
            nodes,
            kind,
            settled_in: Duration::ZERO,
        };
        cluster.create(replicas)?;
        cluster.wait_settled(masters * (1 + replicas), SETTLE_TIMEOUT)?;
        cluster.settled_in = started.elapsed();
        Ok(cluster)
    }

    /// An error when `REDIS_URL` is set: cluster scenarios start, reshape and kill their own
    /// cluster, which the lab never does to a server it did not start.
    pub fn refuse_redis_url() -> Result<()> {
        if let Some(url) = redis_url_from_env() {
            bail!(
                "REDIS_URL points at {}, but this scenario needs a Redis Cluster of its own: it \
                 starts 6 redis-servers on loopback ports, kills a master and watches a replica \
                 take over, which the lab never does to a server it did not start. Unset \
                 REDIS_URL (redis-server and redis-cli must be on PATH).",
                redact_url(&url)
            );
        }
        Ok(())
    }

    /// How long starting and settling took.
    pub fn settled_in(&self) -> Duration {
        self.settled_in
    }

    /// Which server the nodes run and its version (`INFO server` of a running node).
    pub fn server_version(&mut self) -> Result<ServerVersion> {
        let port = self.any_running_port()?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut admin(port)?)
            .context("INFO server")?;
        ServerVersion::from_info(&info)
    }

    /// `redis://127.0.0.1:PORT/` for every running node: the seed list for a cluster client.
    pub fn urls(&mut self) -> Vec<String> {
        self.nodes
            .values_mut()
            .filter_map(|node| node.is_running().then(|| node.url().to_string()))
            .collect()
    }

    /// The process id of the node on `port`, while it runs.
    pub fn pid_of(&self, port: u16) -> Option<u32> {
        self.nodes.get(&port)?.pid()
    }

    /// Ports of every node started, running or not.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.keys().copied().collect()
    }

    /// The nodes as a running node sees them (`CLUSTER NODES`).
    pub fn nodes(&mut self) -> Result<Vec<NodeInfo>> {
        let port = self.any_running_port()?;
        cluster_nodes(port)
    }

    /// The slot of a key or channel name (`CLUSTER KEYSLOT`, hash tags included).
    pub fn slot_of(&mut self, name: &str) -> Result<u16> {
        let port = self.any_running_port()?;
        let mut con = admin(port)?;
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(name)
            .query(&mut con)
            .context("CLUSTER KEYSLOT")
    }

    /// The port of the master serving `name`'s slot, as the cluster sees it now.
    pub fn master_of(&mut self, name: &str) -> Result<u16> {
        let slot = self.slot_of(name)?;
        self.nodes()?
            .into_iter()
            .find(|node| {
                node.is_master
                    && !node.is_failing()
                    && node.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
            })
            .map(|node| node.port)
            .ok_or_else(|| anyhow!("no healthy master serves slot {slot} of {name:?}"))
    }

    /// Ports of the healthy masters that serve slots, in port order.
    pub fn master_ports(&mut self) -> Result<Vec<u16>> {
        let mut ports: Vec<u16> = self
            .nodes()?
            .into_iter()
            .filter(|node| node.is_master && !node.is_failing() && !node.slots.is_empty())
            .map(|node| node.port)
            .collect();
        ports.sort();
        Ok(ports)
    }

    /// The port of a healthy master that has a healthy replica to take over from it.
    pub fn master_with_replica(&mut self) -> Result<u16> {
        let nodes = self.nodes()?;
        nodes
            .iter()
            .filter(|master| master.is_master && !master.is_failing() && !master.slots.is_empty())
            .find(|master| {
                nodes.iter().any(|replica| {
                    replica.master_id.as_deref() == Some(master.id.as_str())
                        && !replica.is_failing()
                })
            })
            .map(|master| master.port)
            .ok_or_else(|| anyhow!("no master has a healthy replica left"))
    }

    /// The port of a healthy replica of the master on `master_port`.
    pub fn replica_of(&mut self, master_port: u16) -> Result<u16> {
        let nodes = self.nodes()?;
        let master = nodes
            .iter()
            .find(|node| node.port == master_port && node.is_master)
            .ok_or_else(|| anyhow!("no master on port {master_port}"))?;
        nodes
            .iter()
            .find(|node| {
                node.master_id.as_deref() == Some(master.id.as_str()) && !node.is_failing()
            })
            .map(|node| node.port)
            .ok_or_else(|| anyhow!("the master on port {master_port} has no healthy replica"))
    }

    /// `per_shard` channel names `prefix:<shard>:<n>` for each master, grouped by master in
    /// [`master_ports`](Self::master_ports) order: the names are tried until each shard has
    /// its share, so that a run really spreads over every shard.
    pub fn channels_per_shard(
        &mut self,
        prefix: &str,
        per_shard: usize,
    ) -> Result<Vec<Vec<String>>> {
        let masters = self.master_ports()?;
        let mut shards: Vec<Vec<String>> = vec![Vec::new(); masters.len()];
        let mut n = 0;
        while shards.iter().any(|names| names.len() < per_shard) {
            let name = crate::unique_channel(prefix);
            let master = self.master_of(&name)?;
            let index = masters.iter().position(|&port| port == master).unwrap_or(0);
            if shards[index].len() < per_shard {
                shards[index].push(name);
            }
            n += 1;
            if n > 10_000 {
                bail!(
                    "could not spread channel names over {} shards",
                    masters.len()
                );
            }
        }
        Ok(shards)
    }

    /// SIGKILL the node on `port`: it dies with every connection, like a crashed machine.
    pub fn kill(&mut self, port: u16) -> Result<()> {
        self.nodes
            .get_mut(&port)
            .ok_or_else(|| anyhow!("no cluster node on port {port}"))?
            .kill()
    }

    /// Start the node on `port` again (after [`kill`](Self::kill)): same port, same
    /// `nodes.conf`, so it rejoins as the node it was, if no replica has taken over meanwhile.
    pub fn restart(&mut self, port: u16) -> Result<()> {
        self.nodes
            .get_mut(&port)
            .ok_or_else(|| anyhow!("no cluster node on port {port}"))?
            .restart()
    }

    /// Wait until every running node says `cluster_state:ok` and no node sees a running node
    /// as failing. Returns how long that took.
    pub fn wait_healthy(&mut self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            if self.healthy().unwrap_or(false) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!(
                    "the cluster was not healthy within {timeout:?}; it says:\n{}",
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn healthy(&mut self) -> Result<bool> {
        let running = self.running_ports();
        for &port in &running {
            if !cluster_info(port)?.contains("cluster_state:ok") {
                return Ok(false);
            }
            let failing = cluster_nodes(port)?
                .into_iter()
                .any(|node| running.contains(&node.port) && node.is_failing());
            if failing {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// After [`kill`](Self::kill)ing the master on `dead_port`: wait until another node serves
    /// all of its slots and every running node says `cluster_state:ok`. Returns how long that
    /// took from the call.
    pub fn wait_for_failover(&mut self, dead_port: u16, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            if self.failed_over(dead_port).unwrap_or(false) {
                return Ok(started.elapsed());
            }
            if Instant::now() > deadline {
                bail!(
                    "no replica took over from the master on port {dead_port} within \
                     {timeout:?}; the cluster says:\n{}",
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn failed_over(&mut self, dead_port: u16) -> Result<bool> {
        for port in self.running_ports() {
            if !cluster_info(port)?.contains("cluster_state:ok") {
                return Ok(false);
            }
            let nodes = cluster_nodes(port)?;
            let dead_serves_slots = nodes
                .iter()
                .any(|node| node.port == dead_port && node.is_master && !node.slots.is_empty());
            if dead_serves_slots {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Wait until `CLUSTER SLOTS`, on every running node, lists each master's healthy replicas
    /// next to it. A cluster client learns its replicas from that reply, and routes to a
    /// replica only once it is there: Redis 7.0.15 left them out for about 3 s after the
    /// cluster had settled (replica links up) in our runs. Returns how long that took.
    pub fn wait_replicas_listed(&mut self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let nodes = self.nodes()?;
            let expected = |master: u16| {
                let id = nodes
                    .iter()
                    .find(|node| node.port == master)
                    .map(|node| &node.id);
                1 + nodes
                    .iter()
                    .filter(|node| node.master_id.as_ref() == id && !node.is_failing())
                    .count()
            };
            let mut listed = true;
            for port in self.running_ports() {
                let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query(&mut admin(port)?)?;
                listed &= ranges.iter().all(|range| match range.get(2) {
                    Some(redis::Value::Array(master)) => match master.get(1) {
                        Some(&redis::Value::Int(port)) => range.len() - 2 >= expected(port as u16),
                        _ => false,
                    },
                    _ => false,
                });
            }
            if listed {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!("CLUSTER SLOTS did not list every replica within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until the replica on `port` says `ROLE` master: the moment it is promoted.
    pub fn wait_promoted(&mut self, port: u16, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            if is_master(&mut admin(port)?) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!("the node on port {port} was not promoted within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Which running nodes hold a sharded subscription to `channel`: `(port, subscribers)` from
    /// `PUBSUB SHARDNUMSUB` on each node (it counts that node's own clients), non-zero only.
    pub fn shard_subscribers(&mut self, channel: &str) -> Result<Vec<(u16, u64)>> {
        let mut found = Vec::new();
        for port in self.running_ports() {
            let mut con = admin(port)?;
            let (_, count): (String, u64) = redis::cmd("PUBSUB")
                .arg("SHARDNUMSUB")
                .arg(channel)
                .query(&mut con)
                .context("PUBSUB SHARDNUMSUB")?;
            if count > 0 {
                found.push((port, count));
            }
        }
        Ok(found)
    }

    /// `CLUSTER NODES` as one running node sees it, for error messages.
    pub fn describe(&mut self) -> String {
        match self.any_running_port() {
            Ok(port) => admin(port)
                .and_then(|mut con| {
                    redis::cmd("CLUSTER")
                        .arg("NODES")
                        .query::<String>(&mut con)
                        .context("CLUSTER NODES")
                })
                .unwrap_or_else(|error| format!("(CLUSTER NODES failed: {error:#})")),
            Err(error) => format!("({error:#})"),
        }
    }

    /// A value of `CLUSTER INFO` (e.g. `cluster_stats_messages_publish_received`) on every
    /// running node, summed.
    pub fn cluster_info_sum(&mut self, field: &str) -> Result<u64> {
        self.info_sum(field, cluster_info)
    }

    /// A numeric field of `INFO` (e.g. `used_cpu_user`) on every running node: `(port, value)`.
    pub fn info_by_node(&mut self, field: &str) -> Result<Vec<(u16, f64)>> {
        let mut values = Vec::new();
        for port in self.running_ports() {
            let mut con = admin(port)?;
            let info: String = redis::cmd("INFO")
                .arg("everything")
                .query(&mut con)
                .context("INFO")?;
            values.push((port, field_of(&info, field).unwrap_or(0.0)));
        }
        Ok(values)
    }

    /// CPU seconds (user + system) each running node has used so far: `(port, seconds)`.
    pub fn cpu_by_node(&mut self) -> Result<Vec<(u16, f64)>> {
        let user = self.info_by_node("used_cpu_user")?;
        let sys = self.info_by_node("used_cpu_sys")?;
        Ok(user
            .into_iter()
            .zip(sys)
            .map(|((port, user), (_, sys))| (port, user + sys))
            .collect())
    }

    fn info_sum(&mut self, field: &str, read: fn(u16) -> Result<String>) -> Result<u64> {
        let mut total = 0.0;
        for port in self.running_ports() {
            total += field_of(&read(port)?, field).unwrap_or(0.0);
        }
        Ok(total as u64)
    }

    fn running_ports(&mut self) -> Vec<u16> {
        self.nodes
            .iter_mut()
            .filter_map(|(&port, node)| node.is_running().then_some(port))
            .collect()
    }

    fn any_running_port(&mut self) -> Result<u16> {
        self.running_ports()
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no cluster node is running"))
    }

    /// `redis-cli --cluster create`: assign the slots, pair replicas with masters.
    fn create(&mut self, replicas: usize) -> Result<()> {
        let cli = self.kind.cli_binary();
        let addresses: Vec<String> = self
            .nodes
            .keys()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let output = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .map_err(|error| {
                if error.kind() == std::io::ErrorKind::NotFound {
                    let install = match self.kind {
                        ServerKind::Redis => {
                            "Debian/Ubuntu: apt-get install redis-tools or redis-server; macOS: \
                             brew install redis"
                        }
                        ServerKind::Valkey => self.kind.install_hint(),
                    };
                    anyhow!(
                        "`{cli}` was not found on PATH: the cluster chapter needs it to join the \
                         nodes ({install}), or set LAB_REDIS_CLI"
                    )
                } else {
                    anyhow!("could not run `{cli}`: {error}")
                }
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || !stdout.contains("[OK] All 16384 slots covered") {
            bail!(
                "`{cli} --cluster create` failed ({}):\n{}\n{}",
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Poll until every node is `cluster_state:ok`, knows `expected` healthy nodes, and every
    /// replica's `master_link_status` is `up`.
    fn wait_settled(&mut self, expected: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.settled(expected) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(error) if Instant::now() > deadline => return Err(error),
                Err(_) => {}
            }
            if Instant::now() > deadline {
                bail!(
                    "the cluster did not settle within {timeout:?}; it says:\n{}",
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn settled(&mut self, expected: usize) -> Result<bool> {
        for port in self.running_ports() {
            if !cluster_info(port)?.contains("cluster_state:ok") {
                return Ok(false);
            }
            let nodes = cluster_nodes(port)?;
            if nodes.len() != expected || nodes.iter().any(NodeInfo::is_failing) {
                return Ok(false);
            }
            let me = nodes.iter().find(|node| node.port == port);
            if me.is_some_and(|node| !node.is_master) {
                let mut con = admin(port)?;
                let replication: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut con)
                    .context("INFO replication")?;
                if !replication.contains("master_link_status:up") {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

/// A paced sharded publisher for failover experiments, on plain connections (no cluster
/// client, whose own retries would mix with the subscriber's): every `every`, one `SPUBLISH`
/// of the next numbered message (`lab::numbered`) on each channel, to whichever of `ports` (a
/// master and its replica) says `ROLE` master. While neither does, to the replica: a replica
/// accepts `SPUBLISH` for its master's slots and delivers to its own subscribers, so a
/// subscriber that moved there can be heard before the promotion. A message no server
/// accepted is sent again. Runs until `stop`; returns how many messages of each channel were
/// sent (numbers `0..n`).
pub fn spublish_paced(
    ports: [u16; 2],
    channels: &[String],
    every: Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<u64> {
    let mut sent = vec![0; channels.len()];
    let mut con: Option<(redis::Connection, bool)> = None; // (connection, to a master)
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if !con.as_ref().is_some_and(|(_, master)| *master) {
            let nodes = ports.iter().filter_map(|&port| admin(port).ok());
            let roles = nodes.map(|mut con| (is_master(&mut con), con));
            con = roles
                .max_by_key(|(master, _)| *master)
                .map(|(m, c)| (c, m))
                .or(con);
        }
        for (channel, seq) in channels.iter().zip(&mut sent) {
            let mut spublish = redis::cmd("SPUBLISH");
            spublish.arg(channel).arg(crate::numbered(*seq, 16));
            if let Some(Ok(_)) = con.as_mut().map(|(con, _)| spublish.query::<u64>(con)) {
                *seq += 1;
            } else {
                con = None;
                break;
            }
        }
        std::thread::sleep(every);
    }
    sent
}

fn is_master(con: &mut redis::Connection) -> bool {
    let role: Option<Vec<redis::Value>> = redis::cmd("ROLE").query(con).ok();
    role.is_some_and(|role| role.first() == Some(&redis::Value::BulkString(b"master".to_vec())))
}

/// One cluster node: a lab-owned redis-server with cluster mode on. Its bus port is chosen
/// explicitly (`cluster-port`) because the default, port + 10000, may be above 65535 for a
/// port the kernel hands out.
fn start_node(kind: ServerKind) -> Result<RedisServer> {
    let bus_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .context("finding a free loopback port for the cluster bus")?
        .port();
    RedisServer::builder()
        .kind(kind)
        .config("cluster-enabled", "yes")
        .config("cluster-config-file", "nodes.conf")
        // Two seconds without an answer and a node is failing: failovers take seconds, not
        // the default 15 s.
        .config("cluster-node-timeout", "2000")
        .config("cluster-port", &bus_port.to_string())
        .start()
        .context("starting a cluster node")
}

fn admin(port: u16) -> Result<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .with_context(|| format!("connecting to cluster node 127.0.0.1:{port}"))?;
    con.set_read_timeout(Some(Duration::from_secs(2)))?;
    Ok(con)
}

fn cluster_info(port: u16) -> Result<String> {
    let mut con = admin(port)?;
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut con)
        .context("CLUSTER INFO")
}

fn cluster_nodes(port: u16) -> Result<Vec<NodeInfo>> {
    let mut con = admin(port)?;
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut con)
        .context("CLUSTER NODES")?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(parse_node_line)
        .collect()
}

/// `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot> <slot> ...`
fn parse_node_line(line: &str) -> Result<NodeInfo> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        bail!("unexpected CLUSTER NODES line: {line:?}");
    }
    let port = fields[1]
        .split('@')
        .next()
        .and_then(|address| address.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .ok_or_else(|| anyhow!("no port in CLUSTER NODES line: {line:?}"))?;
    let flags: Vec<String> = fields[2].split(',').map(String::from).collect();
    let slots = fields[8..]
        .iter()
        .filter(|slot| !slot.starts_with('['))
        .filter_map(|slot| match slot.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => slot.parse().ok().map(|s| (s, s)),
        })
        .collect();
    Ok(NodeInfo {
        id: fields[0].to_string(),
        port,
        is_master: flags.iter().any(|flag| flag == "master"),
        master_id: (fields[3] != "-").then(|| fields[3].to_string()),
        flags,
        slots,
    })
}

fn field_of(text: &str, field: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (key, value) = line.trim().split_once(':')?;
        (key == field).then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_nodes_lines() {
        let master = parse_node_line(
            "07c3 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 7000 [93->-e7d]",
        )
        .unwrap();
        assert_eq!(master.port, 30001);
        assert!(master.is_master && master.master_id.is_none());
        assert_eq!(master.slots, [(0, 5460), (7000, 7000)]);
        let replica =
            parse_node_line("e7d1 127.0.0.1:30004@40004 slave,fail 07c3 0 0 1 disconnected")
                .unwrap();
        assert!(!replica.is_master && replica.is_failing());
        assert_eq!(replica.master_id.as_deref(), Some("07c3"));
        assert_eq!(
            field_of("a:1\r\nused_cpu_user:2.5\r\n", "used_cpu_user"),
            Some(2.5)
        );
    }
}
