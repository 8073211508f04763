//! Which server program the lab runs (Redis or Valkey), and what a running one says it is.

use anyhow::{Result, anyhow, bail};

/// Which server program the lab starts: Redis (the default) or Valkey.
///
/// `LAB_SERVER=valkey` makes every lab-owned server, cluster node and Sentinel a Valkey one
/// (`valkey-server`, `valkey-sentinel`, and `valkey-cli` to create clusters);
/// `LAB_SERVER=redis` or no `LAB_SERVER` keeps Redis. `LAB_REDIS_SERVER`, `LAB_REDIS_SENTINEL`
/// and `LAB_REDIS_CLI` still name another program for either. The lab checks what answers
/// (`INFO server`) after starting it, so that a `redis-server` that is really Valkey (a
/// compatibility link) is an error, not a silent change of server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Redis,
    Valkey,
}

impl ServerKind {
    /// `LAB_SERVER`: `redis` (also when unset or empty) or `valkey`; anything else is an error.
    pub fn from_env() -> Result<Self> {
        match std::env::var("LAB_SERVER")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "" | "redis" => Ok(Self::Redis),
            "valkey" => Ok(Self::Valkey),
            other => {
                bail!("LAB_SERVER={other:?}: the lab starts `redis` (the default) or `valkey`")
            }
        }
    }

    /// `redis` or `valkey`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Valkey => "valkey",
        }
    }

    /// The server program: `LAB_REDIS_SERVER`, else `redis-server` or `valkey-server`.
    pub fn server_binary(self) -> String {
        std::env::var("LAB_REDIS_SERVER").unwrap_or_else(|_| format!("{}-server", self.name()))
    }

    /// The Sentinel program: `LAB_REDIS_SENTINEL`, else `redis-sentinel` or `valkey-sentinel`.
    pub fn sentinel_binary(self) -> String {
        std::env::var("LAB_REDIS_SENTINEL").unwrap_or_else(|_| format!("{}-sentinel", self.name()))
    }

    /// The command-line client (clusters are created with it): `LAB_REDIS_CLI`, else
    /// `redis-cli` or `valkey-cli`.
    pub fn cli_binary(self) -> String {
        std::env::var("LAB_REDIS_CLI").unwrap_or_else(|_| format!("{}-cli", self.name()))
    }

    /// How to install this server's programs, for error messages.
    pub fn install_hint(self) -> &'static str {
        match self {
            Self::Redis => {
                "install it with ci/setup.sh (Debian/Ubuntu: apt-get install redis-server; \
                 macOS: brew install redis)"
            }
            Self::Valkey => {
                "install it with LAB_VALKEY=1 ci/setup.sh (Debian 12: valkey-server, \
                 valkey-sentinel and valkey-tools from bookworm-backports; macOS: brew install \
                 valkey), or unset LAB_SERVER to run on Redis"
            }
        }
    }
}

/// What a server says it is (`INFO server`): Valkey names itself in `server_name` and
/// `valkey_version` (its `redis_version` is a fixed compatibility value, 7.2.4 on Valkey 8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerVersion {
    pub kind: ServerKind,
    /// `7.0.15`, `8.0.1`.
    pub version: String,
}

impl ServerVersion {
    /// Read from the `INFO server` text.
    pub fn from_info(info: &str) -> Result<Self> {
        let field = |name: &str| {
            info.lines().find_map(|line| {
                let (key, value) = line.trim().split_once(':')?;
                (key == name).then(|| value.trim().to_string())
            })
        };
        let (kind, version) = match field("server_name").as_deref() {
            Some("valkey") => (ServerKind::Valkey, field("valkey_version")),
            _ => (ServerKind::Redis, field("redis_version")),
        };
        let version = version.ok_or_else(|| anyhow!("INFO server names no version"))?;
        Ok(Self { kind, version })
    }

    /// The major version (`7`, `8`).
    pub fn major(&self) -> u32 {
        self.version
            .split('.')
            .next()
            .and_then(|major| major.parse().ok())
            .unwrap_or(0)
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.version)
    }
}
