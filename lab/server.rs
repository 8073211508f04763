//! Throwaway Redis servers.
//!
//! [`RedisServer::start`] runs `redis-server` on a free 127.0.0.1 port, with no persistence,
//! and stops it when the value is dropped. With `LAB_SERVER=valkey` (or
//! [`ServerBuilder::kind`]) it runs `valkey-server` instead, through the same API: see
//! [`ServerKind`]; [`RedisServer::server_version`] tells a test which server it runs on. Fault tests can [`kill`](RedisServer::kill) it
//! (SIGKILL), [`pause`](RedisServer::pause) and [`resume`](RedisServer::resume) it
//! (SIGSTOP/SIGCONT), and [`restart`](RedisServer::restart) it on the same port.
//!
//! With `REDIS_URL` set, [`RedisServer::from_env`] uses that server instead, and every helper
//! that would change it (CONFIG SET, FLUSHALL, kill, restart, killing clients) returns an
//! error: the lab never tunes, empties or stops a server it did not start.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::redact::redact_url;

/// How long a server may take to answer PING after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Builds a lab-owned server: extra configuration, a password, another binary.
#[derive(Clone, Debug, Default)]
pub struct ServerBuilder {
    /// None: `LAB_SERVER` decides when the server starts.
    kind: Option<ServerKind>,
    /// None: the kind's program ([`ServerKind::server_binary`]).
    binary: Option<String>,
    config: Vec<(String, String)>,
    password: Option<String>,
    die_with_parent: bool,
    config_file: Option<PathBuf>,
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

/// A Redis server for one experiment: lab-owned (started here, stopped on drop) or the
/// user's (`REDIS_URL`, never changed).
#[derive(Debug)]
pub struct RedisServer {
    url: String,
    owned: Option<OwnedServer>,
}

impl RedisServer {
    /// A new lab-owned server with the default configuration.
    pub fn start() -> Result<Self> {
        ServerBuilder::default().start()
    }

    /// Configure a lab-owned server before starting it.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The server in `REDIS_URL` when it is set, else a new lab-owned one.
    pub fn from_env() -> Result<Self> {
        ServerBuilder::default().start_or_env()
    }

    /// Use a server somebody else runs. Nothing that changes it will be allowed.
    pub fn external(url: String) -> Result<Self> {
        redis::Client::open(url.as_str())
            .with_context(|| format!("REDIS_URL is not a valid Redis URL: {}", redact_url(&url)))?;
        Ok(Self { url, owned: None })
    }

    fn from_owned(owned: OwnedServer) -> Self {
        let url = owned.url();
        Self {
            url,
            owned: Some(owned),
        }
    }

    /// Which server this is and its version, as it says (`INFO server`): for a lab-owned
    /// server, what `LAB_SERVER` asked for; for `REDIS_URL`'s, whatever runs there.
    pub fn server_version(&self) -> Result<ServerVersion> {
        let mut con = self.client()?.get_connection()?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut con)
            .context("INFO server")?;
        ServerVersion::from_info(&info)
    }

    /// After a start: an error when the program that answers is not the kind asked for (a
    /// `redis-server` that is a link to `valkey-server`, say).
    fn expect_kind(&self, kind: ServerKind) -> Result<()> {
        let binary = self
            .owned
            .as_ref()
            .and_then(|owned| owned.builder.binary.clone())
            .unwrap_or_default();
        let found = self
            .server_version()
            .with_context(|| format!("asking `{binary}` which server it is"))?;
        if found.kind != kind {
            bail!(
                "`{binary}` started {found}, not {}: the lab runs the server LAB_SERVER names \
                 (unset: redis). Point LAB_REDIS_SERVER (or LAB_REDIS_SENTINEL) at the real \
                 {}-server, or set LAB_SERVER={}",
                kind.name(),
                kind.name(),
                found.kind.name()
            );
        }
        Ok(())
    }

    /// The URL to connect to, password included: pass it to a client, never print it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL as it may be printed: without its password.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The lines of a lab-owned server's log that contain `text` (none for a `REDIS_URL`
    /// server: its log is not ours to read).
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        let Some(owned) = &self.owned else {
            return Vec::new();
        };
        fs::read_to_string(owned.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(text))
            .map(str::to_string)
            .collect()
    }

    /// A redis 1.x client for this server.
    pub fn client(&self) -> Result<redis::Client> {
        redis::Client::open(self.url.as_str())
            .with_context(|| format!("not a valid Redis URL: {}", self.display_url()))
    }

    /// True when the lab started this server and may change it.
    pub fn is_owned(&self) -> bool {
        self.owned.is_some()
    }

    /// The TCP port of a lab-owned server.
    pub fn port(&self) -> Option<u16> {
        self.owned.as_ref().map(|owned| owned.port)
    }

    /// The process id of a lab-owned server, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.owned.as_ref()?.child.as_ref().map(Child::id)
    }

    fn owned_mut(&mut self, action: &str) -> Result<&mut OwnedServer> {
        let url = self.display_url();
        self.owned.as_mut().ok_or_else(|| {
            anyhow!(
                "refusing to {action} on {url} (from REDIS_URL): the lab never changes a server it \
                 did not start. Unset REDIS_URL to let the lab start its own redis-server."
            )
        })
    }

    /// `CONFIG SET key value` on a lab-owned server.
    pub fn config_set(&mut self, key: &str, value: &str) -> Result<()> {
        self.owned_mut("run CONFIG SET")?;
        let mut con = self.client()?.get_connection()?;
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(key)
            .arg(value)
            .query::<()>(&mut con)
            .with_context(|| format!("CONFIG SET {key} {value}"))
    }

    /// `FLUSHALL` on a lab-owned server.
    pub fn flushall(&mut self) -> Result<()> {
        self.owned_mut("run FLUSHALL")?;
        let mut con = self.client()?.get_connection()?;
        redis::cmd("FLUSHALL")
            .query::<()>(&mut con)
            .context("FLUSHALL")
    }

    /// `CLIENT KILL TYPE pubsub` on a lab-owned server: every subscriber is disconnected.
    /// Returns how many clients were killed.
    pub fn kill_pubsub_clients(&mut self) -> Result<u64> {
        self.owned_mut("kill the subscribers")?;
        let mut con = self.client()?.get_connection()?;
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut con)
            .context("CLIENT KILL TYPE pubsub")
    }

    /// SIGKILL the server: it dies at once, with every client connection.
    pub fn kill(&mut self) -> Result<()> {
        self.owned_mut("kill the server")?.kill()
    }

    /// SIGSTOP the server: connections stay open, nothing is answered until [`resume`](Self::resume).
    pub fn pause(&mut self) -> Result<()> {
        self.owned_mut("pause the server")?.signal(Signal::SIGSTOP)
    }

    /// SIGCONT a paused server.
    pub fn resume(&mut self) -> Result<()> {
        self.owned_mut("resume the server")?.signal(Signal::SIGCONT)
    }

    /// Start the server again on the same port (killing it first if it still runs).
    pub fn restart(&mut self) -> Result<()> {
        self.owned_mut("restart the server")?.restart()
    }

    /// True while the lab-owned server process is alive (false after [`kill`](Self::kill)).
    pub fn is_running(&mut self) -> bool {
        match self.owned.as_mut().and_then(|owned| owned.child.as_mut()) {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => self.owned.is_none(),
        }
    }
}

/// A `redis-server` child process and what is needed to start it again.
#[derive(Debug)]
struct OwnedServer {
    builder: ServerBuilder,
    port: u16,
    child: Option<Child>,
    paused: bool,
    // Holds the working directory and log file; removed on drop.
    dir: tempfile::TempDir,
}

impl OwnedServer {
    fn spawn(builder: ServerBuilder, port: u16) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("lab-redis-")
            .tempdir()
            .context("creating a temporary directory for redis-server")?;
        let mut server = Self {
            builder,
            port,
            child: None,
            paused: false,
            dir,
        };
        server.launch()?;
        Ok(server)
    }

    fn url(&self) -> String {
        match &self.builder.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn launch(&mut self) -> Result<()> {
        let port = self.port.to_string();
        let mut args: Vec<String> = [
            "--port",
            port.as_str(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        .map(String::from)
        .to_vec();
        if let Some(file) = &self.builder.config_file {
            args.insert(0, file.display().to_string());
        }
        args.push("--dir".into());
        args.push(self.dir.path().display().to_string());
        args.push("--logfile".into());
        args.push(self.log_path().display().to_string());
        if let Some(password) = &self.builder.password {
            args.push("--requirepass".into());
            args.push(password.clone());
        }
        for (key, value) in &self.builder.config {
            args.push(format!("--{key}"));
            // One argument per word, as redis-server's own command line expects.
            args.extend(value.split_whitespace().map(String::from));
            if value.trim().is_empty() {
                args.push(String::new());
            }
        }

        let binary = self.builder.binary.clone().unwrap_or_default();
        let kind = self.builder.kind.unwrap_or(ServerKind::Redis);
        let mut command = Command::new(&binary);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        #[cfg(target_os = "linux")]
        if self.builder.die_with_parent {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs in the forked child before exec; prctl is an
            // async-signal-safe system call and the closure allocates nothing.
            unsafe {
                command.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
                });
            }
        }
        let child = command.spawn().map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                anyhow!(
                    "`{binary}` was not found on PATH: {}, or set REDIS_URL to a Redis server \
                     you run",
                    kind.install_hint()
                )
            } else {
                anyhow!("could not start `{binary}`: {error}")
            }
        })?;
        self.child = Some(child);
        self.paused = false;
        self.wait_ready()
    }

    /// Poll with a raw PING until the server answers, or explain why it never will.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "redis-server on port {} exited ({status}) before it answered PING; its log \
                     says:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            if raw_ping(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "redis-server on port {} did not answer PING within {READY_TIMEOUT:?}; its \
                     log says:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    fn signal(&mut self, signal: Signal) -> Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("redis-server on port {} is not running", self.port))?;
        kill(Pid::from_raw(child.id() as i32), signal)
            .with_context(|| format!("sending {signal} to redis-server"))?;
        self.paused = signal == Signal::SIGSTOP;
        Ok(())
    }

    fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("killing redis-server")?;
            child.wait().context("reaping redis-server")?;
        }
        self.paused = false;
        Ok(())
    }

    fn restart(&mut self) -> Result<()> {
        self.kill()?;
        // The old process is reaped, so the port is free again (redis-server binds with
        // SO_REUSEADDR). A few retries cover a slow kernel.
        let mut attempts = 0;
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(error) if attempts < 20 => {
                    attempts += 1;
                    if !format!("{error:#}").contains("Address already in use") {
                        return Err(error);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(error) => return Err(error),
            }
        }
    }
}

impl Drop for OwnedServer {
    fn drop(&mut self) {
        if self.paused {
            let _ = self.signal(Signal::SIGCONT);
        }
        let _ = self.kill();
    }
}

/// A port that nothing listens on right now.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// True when something on the port answers PING like Redis (also when it wants a password).
fn raw_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 64];
    match stream.read(&mut reply) {
        Ok(n) => {
            let reply = &reply[..n];
            reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH")
        }
        Err(_) => false,
    }
}

/// `REDIS_URL`, when it is set and not empty.
pub fn redis_url_from_env() -> Option<String> {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_server_tells_redis_from_valkey() {
        let redis =
            ServerVersion::from_info("# Server\r\nredis_version:7.0.15\r\nredis_mode:x\r\n");
        let redis = redis.unwrap();
        assert_eq!(
            (redis.kind, redis.version.as_str()),
            (ServerKind::Redis, "7.0.15")
        );
        let valkey =
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n";
        let valkey = ServerVersion::from_info(valkey).unwrap();
        assert_eq!((valkey.kind, valkey.major()), (ServerKind::Valkey, 8));
        assert_eq!(valkey.to_string(), "valkey 8.0.1");
        assert!(ServerVersion::from_info("# Server\r\n").is_err());
    }
}
