//! [`ServerBuilder`]: configuration for a lab-owned server, and starting it.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};

use super::process::{OwnedServer, free_port};
use super::{RedisServer, ServerKind, redis_url_from_env};
use crate::redact::redact_url;

/// Builds a lab-owned server: extra configuration, a password, another binary.
#[derive(Clone, Debug, Default)]
pub struct ServerBuilder {
    /// None: `LAB_SERVER` decides when the server starts.
    pub(super) kind: Option<ServerKind>,
    /// None: the kind's program ([`ServerKind::server_binary`]).
    pub(super) binary: Option<String>,
    pub(super) config: Vec<(String, String)>,
    pub(super) password: Option<String>,
    pub(super) die_with_parent: bool,
    pub(super) config_file: Option<PathBuf>,
}

impl ServerBuilder {
    /// A configuration directive, as on the redis-server command line:
    /// `.config("client-output-buffer-limit", "pubsub 1mb 256kb 1")`.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.push((key.to_string(), value.to_string()));
        self
    }

    /// Require this password (`requirepass`); the server's URL then carries it.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }

    /// Start Redis or Valkey, whatever `LAB_SERVER` says.
    pub fn kind(mut self, kind: ServerKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Run another program than the kind's server from PATH (`LAB_REDIS_SERVER` sets the
    /// default); the lab still checks that it is the kind asked for.
    pub fn binary(mut self, path: &str) -> Self {
        self.binary = Some(path.to_string());
        self
    }

    /// Start with this configuration file (the first argument, before the command-line
    /// directives). `redis-sentinel` needs one: it rewrites it to save its state.
    pub fn config_file(mut self, path: &std::path::Path) -> Self {
        self.config_file = Some(path.to_path_buf());
        self
    }

    /// Linux: have the kernel SIGKILL the server when the thread that starts it exits
    /// (`PR_SET_PDEATHSIG`), so that a program that is itself killed or aborts (and so never
    /// runs `Drop`) leaves no server behind. Only for a server started on a thread that
    /// outlives it, such as `main`: not from `spawn_blocking`, whose threads come and go.
    pub fn die_with_parent(mut self) -> Self {
        self.die_with_parent = true;
        self
    }

    /// Start a lab-owned server with this configuration.
    pub fn start(mut self) -> Result<RedisServer> {
        let kind = match self.kind {
            Some(kind) => kind,
            None => ServerKind::from_env()?,
        };
        self.kind = Some(kind);
        if self.binary.is_none() {
            self.binary = Some(kind.server_binary());
        }
        // Another process may take the free port between our probe and redis-server's bind:
        // try a few ports before giving up.
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            match OwnedServer::spawn(self.clone(), port) {
                Ok(owned) => {
                    let server = RedisServer::from_owned(owned);
                    server.expect_kind(kind)?;
                    return Ok(server);
                }
                Err(error) if format!("{error:#}").contains("Address already in use") => {
                    last_error = Some(error)
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no free port found")))
    }

    /// The server in `REDIS_URL` if it is set and this builder asks for nothing special;
    /// otherwise a lab-owned server. A scenario that needs its own configuration refuses to
    /// run against the user's server instead of silently measuring something else.
    pub fn start_or_env(self) -> Result<RedisServer> {
        match redis_url_from_env() {
            None => self.start(),
            Some(url) if self.config.is_empty() && self.password.is_none() => {
                RedisServer::external(url)
            }
            Some(url) => bail!(
                "this scenario needs a server configured with {:?}, and REDIS_URL points at {}: \
                 the lab never reconfigures a server it did not start. Unset REDIS_URL to let \
                 the lab start its own redis-server.",
                self.config
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
                redact_url(&url)
            ),
        }
    }
}
