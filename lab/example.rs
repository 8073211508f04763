//! Running an example program from a test.
//!
//! The numbers a chapter shows come from an example's RESULT lines; the test that checks the
//! chapter's claim runs the same example and reads the same lines:
//!
//! ```no_run
//! let run = lab::example::run("ch01_lost_messages", &["--quick"]).unwrap();
//! let results = run.results().unwrap();
//! ```

use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

use crate::report::{ResultLine, parse_results};

/// A finished example run.
#[derive(Debug)]
pub struct ExampleRun {
    pub name: String,
    pub output: Output,
}

impl ExampleRun {
    /// What the example printed on stdout.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// What the example printed on stderr.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// The RESULT lines on stdout; an error if the example failed or printed a bad one.
    pub fn results(&self) -> Result<Vec<ResultLine>> {
        if !self.output.status.success() {
            bail!(
                "example {} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
                self.name,
                self.output.status,
                self.stdout(),
                self.stderr()
            );
        }
        parse_results(&self.stdout())
    }
}

/// Build (if needed) and run `examples/<name>.rs` with `args`, waiting for it to finish.
/// The environment is passed on, so `REDIS_URL` applies to the example too.
pub fn run(name: &str, args: &[&str]) -> Result<ExampleRun> {
    run_with_env(name, args, &[])
}

/// Like [`run`], with extra environment variables (`("REDIS_URL", "...")`).
pub fn run_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Result<ExampleRun> {
    let binary = build(name)?;
    let output = Command::new(&binary)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    Ok(ExampleRun {
        name: name.to_string(),
        output,
    })
}

/// Build `examples/<name>.rs` with the profile this test was built with; return its path.
pub fn build(name: &str) -> Result<PathBuf> {
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(manifest_dir)
        .args(["build", "--quiet", "--example", name]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let status = command
        .status()
        .with_context(|| format!("building example {name}"))?;
    if !status.success() {
        bail!("cargo build --example {name} failed ({status})");
    }
    let target_dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(manifest_dir).join("target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let binary = target_dir.join(profile).join("examples").join(name);
    if !binary.exists() {
        bail!(
            "built example {name}, but {} is not there",
            binary.display()
        );
    }
    Ok(binary)
}
