//! One cluster node: starting it, an admin connection, and parsing `CLUSTER INFO` / `CLUSTER NODES`.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::*;

/// One cluster node: a lab-owned redis-server with cluster mode on. Its bus port is chosen
/// explicitly (`cluster-port`) because the default, port + 10000, may be above 65535 for a
/// port the kernel hands out.
pub(super) fn start_node(kind: ServerKind) -> Result<RedisServer> {
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

pub(super) fn admin(port: u16) -> Result<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .with_context(|| format!("connecting to cluster node 127.0.0.1:{port}"))?;
    con.set_read_timeout(Some(Duration::from_secs(2)))?;
    Ok(con)
}

pub(super) fn cluster_info(port: u16) -> Result<String> {
    let mut con = admin(port)?;
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut con)
        .context("CLUSTER INFO")
}

pub(super) fn cluster_nodes(port: u16) -> Result<Vec<NodeInfo>> {
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
pub(super) fn parse_node_line(line: &str) -> Result<NodeInfo> {
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

pub(super) fn field_of(text: &str, field: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (key, value) = line.trim().split_once(':')?;
        (key == field).then(|| value.trim().parse().ok())?
    })
}

pub(super) fn is_master(con: &mut redis::Connection) -> bool {
    let role: Option<Vec<redis::Value>> = redis::cmd("ROLE").query(con).ok();
    role.is_some_and(|role| role.first() == Some(&redis::Value::BulkString(b"master".to_vec())))
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
