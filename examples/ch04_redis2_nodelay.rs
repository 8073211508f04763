//! Moving to redis 2.0 (appendix): TCP_NODELAY is on by default (redis-rs #2196). This reads
//! the option back from the sockets themselves: a `get_async_pubsub()` connection on 1.8.1,
//! on 2.0.0-rc.2, and on 2.0.0-rc.2 told `set_nodelay(false)`; then it times 2,000 PINGs, one
//! per round trip, on each.
//!
//! cargo run --example ch04_redis2_nodelay            # 2,000 PINGs per connection
//! cargo run --example ch04_redis2_nodelay -- --quick # 200
//! cargo run --example ch04_redis2_nodelay -- --write # 2,000, and rewrite
//!     src/generated/redis2-nodelay.md (the appendix's output)
//!
//! Linux only: it finds each connection's socket in /proc/self/fd.

use std::collections::BTreeMap;
use std::mem::ManuallyDrop;
use std::net::TcpStream;
use std::os::fd::FromRawFd;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use lab::{RedisServer, ResultLine};

/// The `client=` name of redis 2.0.0-rc.2 (the lab names only the releases it is built with).
const REDIS_2_0: &str = "redis-2.0.0-rc.2";

/// This process's TCP sockets to `port`: (local port, TCP_NODELAY) of each.
fn sockets_to(port: u16) -> Result<BTreeMap<u16, bool>> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir("/proc/self/fd").context("this example reads /proc/self/fd")? {
        let Ok(fd) = entry?.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if !std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        {
            continue;
        }
        // Borrow the descriptor without owning it: ManuallyDrop never closes it.
        let socket = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
        if let (Ok(peer), Ok(local)) = (socket.peer_addr(), socket.local_addr())
            && peer.port() == port
        {
            found.insert(local.port(), socket.nodelay()?);
        }
    }
    Ok(found)
}

// ANCHOR: nodelay
/// 2.0 with Nagle's algorithm back on, as 1.8 had it: TCP settings on the connection info.
fn without_nodelay(url: &str) -> redis_2_0::RedisResult<redis_2_0::Client> {
    use redis_2_0::IntoConnectionInfo;
    use redis_2_0::io::tcp::TcpSettings;
    let info = url
        .into_connection_info()?
        .set_tcp_settings(TcpSettings::default().set_nodelay(false));
    redis_2_0::Client::open(info)
}
// ANCHOR_END: nodelay

/// Open a pubsub connection with `$open`, read its socket's option, time `$pings` PINGs.
macro_rules! measure {
    ($open:expr, $port:expr, $pings:expr) => {{
        let before = sockets_to($port)?;
        let mut pubsub = $open.get_async_pubsub().await?;
        let mut new = sockets_to($port)?;
        new.retain(|local, _| !before.contains_key(local));
        let Some((_, &nodelay)) = new.iter().next() else {
            bail!("found no new socket to port {}", $port);
        };
        let started = Instant::now();
        for _ in 0..$pings {
            let _: String = pubsub.ping().await?;
        }
        (nodelay, started.elapsed() / $pings)
    }};
}

#[tokio::main]
async fn main() -> Result<()> {
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let port = server
        .port()
        .or_else(|| url_port(server.url()))
        .context("the server's port")?;
    let pings = lab::scaled(2_000u32, 200);
    let url = server.url();

    let rows = [
        (
            lab::REDIS_CURRENT.to_string(),
            measure!(redis::Client::open(url)?, port, pings),
        ),
        (
            REDIS_2_0.to_string(),
            measure!(redis_2_0::Client::open(url)?, port, pings),
        ),
        (
            format!("{REDIS_2_0}-nodelay_false"),
            measure!(without_nodelay(url)?, port, pings),
        ),
    ];
    let mut out = format!(
        "{:<32} {:>11} {:>16}\n",
        "client", "TCP_NODELAY", "PING round trip"
    );
    for (client, (nodelay, rtt)) in &rows {
        out.push_str(&format!(
            "{client:<32} {nodelay:>11} {:>13.1} µs\n",
            rtt.as_secs_f64() * 1e6
        ));
    }
    out.push('\n');
    for (client, (nodelay, rtt)) in &rows {
        let line = ResultLine::new("tcp-nodelay", client, 0, 0, 0)
            .with("nodelay", nodelay)
            .with("ping_us", format!("{:.1}", rtt.as_secs_f64() * 1e6));
        out.push_str(&format!("{line}\n"));
    }
    print!("\n{out}");
    if std::env::args().any(|arg| arg == "--write") {
        anyhow::ensure!(!lab::quick(), "--write keeps the full run: drop --quick");
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/generated/redis2-nodelay.md"
        );
        let command = "cargo run --example ch04_redis2_nodelay -- --write";
        std::fs::write(
            path,
            format!("<!-- Written by `{command}`; do not edit. -->\n\n```text\n{out}```\n"),
        )?;
        println!("\nwrote src/generated/redis2-nodelay.md");
    }
    Ok(())
}

/// The port of a `redis://host:port/` URL (for a server given by REDIS_URL).
fn url_port(url: &str) -> Option<u16> {
    let rest = url.split("://").nth(1)?;
    let host_port = rest.split('/').next()?.rsplit('@').next()?;
    host_port.rsplit(':').next()?.parse().ok()
}
