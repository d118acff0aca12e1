//! `cargo xtask test`: every test of the project in one command, on a fresh machine too. It
//! starts what the tests need (the Docker engine), then runs the Rust tests (unit tests and the
//! integration tests that drive the real engine) and the backend's pytest suite.

use anyhow::{Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

use crate::engine;

/// Where the backend's test virtual environment lives; rebuilt when its requirements change.
const VENV: &str = "target/venvs/backend";

#[derive(Debug, Args)]
pub struct TestCmd {
    /// Run only the Rust tests.
    #[arg(long, conflicts_with = "python_only")]
    rust_only: bool,
    /// Run only the backend's pytest suite.
    #[arg(long)]
    python_only: bool,
    /// Passed to `cargo test` (e.g. a test name filter).
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

impl TestCmd {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let mut failed = Vec::new();
        if !self.python_only {
            let version = engine::ensure(sh)?;
            eprintln!("Docker Engine {version} is up; running the Rust tests");
            // The release tests push to a real registry, Debian's distribution registry.
            engine::ensure_program(sh, "docker-registry", "docker-registry")?;
            let args = &self.cargo_args;
            if cmd!(sh, "cargo test --workspace --locked {args...}")
                .run()
                .is_err()
            {
                failed.push("Rust tests");
            }
        }
        if !self.rust_only {
            backend_venv(sh)?;
            let python = format!("{VENV}/bin/python");
            let _dir = sh.push_dir("backend");
            if cmd!(sh, "../{python} -m pytest -q").run().is_err() {
                failed.push("backend tests (pytest)");
            }
        }
        if !failed.is_empty() {
            anyhow::bail!("failed: {}", failed.join(", "));
        }
        Ok(())
    }
}

/// Creates the backend's test venv, or refreshes it when the pinned requirements changed.
fn backend_venv(sh: &Shell) -> Result<()> {
    let requirements = sh.read_file("backend/requirements-dev.txt")?;
    let stamp = format!("{VENV}/requirements-dev.txt");
    if sh.read_file(&stamp).ok().as_deref() == Some(requirements.as_str()) {
        return Ok(());
    }
    eprintln!("preparing the backend test environment in {VENV}");
    cmd!(sh, "python3 -m venv --clear {VENV}")
        .run()
        .context("python3 -m venv failed")?;
    let pip = format!("{VENV}/bin/pip");
    cmd!(
        sh,
        "{pip} install --quiet --disable-pip-version-check -r backend/requirements-dev.txt"
    )
    .run()
    .context("pip could not install the backend's test requirements")?;
    sh.write_file(&stamp, requirements)?;
    Ok(())
}
