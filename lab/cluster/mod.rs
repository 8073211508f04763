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

mod node;
mod start;
mod stats;
mod waits;

use node::{admin, cluster_info, cluster_nodes, field_of, is_master, start_node};
pub use stats::spublish_paced;

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
}
