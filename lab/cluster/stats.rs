//! What the nodes report (subscribers per shard, INFO fields, CPU), and a paced sharded publisher.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use super::*;

impl RedisCluster {
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

    pub(super) fn info_sum(&mut self, field: &str, read: fn(u16) -> Result<String>) -> Result<u64> {
        let mut total = 0.0;
        for port in self.running_ports() {
            total += field_of(&read(port)?, field).unwrap_or(0.0);
        }
        Ok(total as u64)
    }

    pub(super) fn running_ports(&mut self) -> Vec<u16> {
        self.nodes
            .iter_mut()
            .filter_map(|(&port, node)| node.is_running().then_some(port))
            .collect()
    }

    pub(super) fn any_running_port(&mut self) -> Result<u16> {
        self.running_ports()
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no cluster node is running"))
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
