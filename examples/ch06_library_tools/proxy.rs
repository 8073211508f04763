//! A TCP proxy in front of Redis that can make the connections open through it go silent
//! without closing them: what a network partition, a dead middlebox (a load balancer, a NAT
//! that forgot the flow) or a frozen VM leaves a client with. Nothing is read or written any
//! more, no FIN, no RST; new connections are forwarded as usual.
//!
//! (`SIGSTOP` of the server is not this fault: when the server resumes, the connection works
//! again. Here it never does.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub struct Proxy {
    port: u16,
    connections: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forward connections on a free loopback port to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy")?;
        let port = listener.local_addr()?.port();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let registered = Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            // Dropped (aborted) with the accept task: every forwarding task ends with it.
            let mut forwarding = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let frozen = Arc::new(AtomicBool::new(false));
                registered
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Arc::clone(&frozen));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                forwarding.spawn(pipe(client_read, server_write, Arc::clone(&frozen)));
                forwarding.spawn(pipe(server_read, client_write, frozen));
            }
        });
        Ok(Self {
            port,
            connections,
            accept,
        })
    }

    /// The URL of the proxied server (no password: the lab's servers have none).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Every connection open now goes silent, for good, in both directions, and stays open.
    /// Returns how many.
    pub fn freeze_open_connections(&self) -> usize {
        let connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for frozen in connections.iter() {
            frozen.store(true, Ordering::Relaxed);
        }
        connections.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copy `from` to `to` until either end closes; once frozen, read nothing more and hold both
/// ends open.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, frozen: Arc<AtomicBool>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if frozen.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen.load(Ordering::Relaxed) {
            // Lost in the partition: never delivered, never refused.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
