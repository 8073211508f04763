//! The `redis-server` (or `valkey-server`) child process: spawning it, waiting until it answers,
//! signals (kill, pause, resume) and restarting it on the same port.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{ServerBuilder, ServerKind};

/// How long a server may take to answer PING after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child process and what is needed to start it again.
#[derive(Debug)]
pub(super) struct OwnedServer {
    pub(super) builder: ServerBuilder,
    pub(super) port: u16,
    pub(super) child: Option<Child>,
    pub(super) paused: bool,
    // Holds the working directory and log file; removed on drop.
    pub(super) dir: tempfile::TempDir,
}

impl OwnedServer {
    pub(super) fn spawn(builder: ServerBuilder, port: u16) -> Result<Self> {
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

    pub(super) fn url(&self) -> String {
        match &self.builder.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    pub(super) fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    pub(super) fn launch(&mut self) -> Result<()> {
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
    pub(super) fn wait_ready(&mut self) -> Result<()> {
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

    pub(super) fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    pub(super) fn signal(&mut self, signal: Signal) -> Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("redis-server on port {} is not running", self.port))?;
        kill(Pid::from_raw(child.id() as i32), signal)
            .with_context(|| format!("sending {signal} to redis-server"))?;
        self.paused = signal == Signal::SIGSTOP;
        Ok(())
    }

    pub(super) fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("killing redis-server")?;
            child.wait().context("reaping redis-server")?;
        }
        self.paused = false;
        Ok(())
    }

    pub(super) fn restart(&mut self) -> Result<()> {
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
pub(super) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// True when something on the port answers PING like Redis (also when it wants a password).
pub(super) fn raw_ping(port: u16) -> bool {
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
