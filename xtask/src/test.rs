//! `cargo xtask test`: every test of the project in one command, on a fresh machine too. It
//! starts what the tests need (the Docker engine), then runs the Rust tests (unit tests and the
//! integration tests that drive the real engine), the backend's pytest suite, and the end-to-end
//! test of the running stack in headless Chromium (`tests/e2e/`).

use anyhow::{Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

use crate::config::{self, Config};
use crate::{bases, build, engine, interrupt, owned};

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
    /// Run only the end-to-end test (the built images in headless Chromium).
    #[arg(long, conflicts_with_all = ["rust_only", "python_only"])]
    e2e_only: bool,
    /// Passed to `cargo test` (e.g. a test name filter).
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

impl TestCmd {
    pub fn run(self, sh: &Shell) -> Result<()> {
        // A terminal's Ctrl-C reaches every child too: each stops on its own (the end-to-end
        // run removes its stack), and this run then exits 130 instead of reporting them failed.
        interrupt::install();
        let mut failed = Vec::new();
        if !self.python_only && !self.e2e_only {
            let version = engine::ensure(sh)?;
            eprintln!("Docker Engine {version} is up; running the Rust tests");
            // The release tests push to a real registry, Debian's distribution registry.
            engine::ensure_program(sh, "docker-registry", "docker-registry")?;
            // `deploy` installs these itself; installed here, before the tests run in parallel,
            // so that two test binaries never run apt-get at once.
            engine::ensure_program(sh, "kustomize", "kustomize/trixie")?;
            engine::ensure_program(sh, "kubectl", "kubernetes-client/trixie")?;
            let args = &self.cargo_args;
            if cmd!(
                sh,
                "cargo test --workspace --locked --no-fail-fast {args...}"
            )
            .run()
            .is_err()
            {
                failed.push("Rust tests");
            }
        }
        if !self.rust_only && !self.e2e_only {
            backend_venv(sh)?;
            let python = format!("{VENV}/bin/python");
            let _dir = sh.push_dir("backend");
            if cmd!(sh, "../{python} -m pytest -q").run().is_err() {
                failed.push("backend tests (pytest)");
            }
        }
        if !self.rust_only && !self.python_only {
            if let Err(err) = e2e(sh) {
                if interrupt::interrupted() {
                    eprintln!("end-to-end test stopped by Ctrl-C: {err:#}");
                } else {
                    eprintln!("error: end-to-end test: {err:#}");
                }
                failed.push("end-to-end test (tests/e2e/run.mjs)");
            }
        }
        if interrupt::interrupted() {
            return Err(interrupt::Interrupted.into());
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

/// Where the end-to-end test leaves its screenshots (`todos.png`, `chat.png`).
const E2E_SCREENSHOTS: &str = "target/xtask/e2e";

/// The end-to-end test: `tests/e2e/run.mjs` starts the built images, a PostgreSQL and a fake model on
/// a network of its own and drives the frontend in Debian's Chromium; it cleans up after itself.
fn e2e(sh: &Shell) -> Result<()> {
    engine::ensure(sh)?;
    let config = Config::load(&sh.current_dir().join(config::DEFAULT_FILE))?;
    let database = bases::database_image(sh, &config, build::base_mode(None, &config)?)?;
    engine::ensure_program(sh, "chromium", "chromium")?;
    // A no-op when the Rust tests have just built the images; otherwise it builds them.
    let xtask = std::env::current_exe()?;
    cmd!(sh, "{xtask} build --progress quiet").run()?;
    let lock = sh.read_file("tests/e2e/package-lock.json")?;
    let stamp = "tests/e2e/node_modules/.installed-lock.json";
    if sh.read_file(stamp).ok().as_deref() != Some(lock.as_str()) {
        {
            let _dir = sh.push_dir("tests/e2e");
            cmd!(sh, "npm ci --no-audit --no-fund --loglevel=error")
                .run()
                .context("npm could not install the end-to-end test's packages")?;
        }
        sh.write_file(stamp, lock)?;
    }
    sh.create_dir(E2E_SCREENSHOTS)?;
    // The browser test removes its stack on every way out it sees; what a killed run of it left
    // (labelled as every run is, see owned.rs) goes here, before this run and after it, so that a
    // run killed outright leaves nothing once `cargo xtask test` ends.
    let root = sh.current_dir();
    owned::reap_finished(owned::Kind::E2e, &root)?;
    let mut run = cmd!(sh, "node tests/e2e/run.mjs")
        .env("E2E_DATABASE_IMAGE", database)
        .env("E2E_SCREENSHOTS", E2E_SCREENSHOTS);
    // E2E_FRONTEND_IMAGE, E2E_BACKEND_IMAGE: each service's image, for the test to start.
    for image in &config.images {
        run = run.env(
            format!("E2E_{}", image.var("IMAGE")),
            format!("{}:latest", image.image),
        );
    }
    let result = run.run();
    match (&result, crate::interrupt::interrupted()) {
        (Ok(()), false) => owned::reap_finished(owned::Kind::E2e, &root)?,
        _ => owned::reap_until_quiet(
            owned::Kind::E2e,
            &root,
            std::time::Duration::from_secs(3),
            std::time::Duration::from_secs(20),
        )?,
    }
    result?;
    Ok(())
}
