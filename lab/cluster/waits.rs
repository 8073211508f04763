//! Waiting for the cluster: healthy again, a failover done, replicas listed, a node promoted.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::*;

impl RedisCluster {
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

    pub(super) fn healthy(&mut self) -> Result<bool> {
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

    pub(super) fn failed_over(&mut self, dead_port: u16) -> Result<bool> {
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
}
