//! Creating the cluster (`redis-cli --cluster create`) and waiting until it has settled.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::*;

impl RedisCluster {
    /// `redis-cli --cluster create`: assign the slots, pair replicas with masters.
    pub(super) fn create(&mut self, replicas: usize) -> Result<()> {
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
    pub(super) fn wait_settled(&mut self, expected: usize, timeout: Duration) -> Result<()> {
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

    pub(super) fn settled(&mut self, expected: usize) -> Result<bool> {
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
