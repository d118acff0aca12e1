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
            if args.is_empty() {
                failed.extend(rust_lanes(sh)?);
            } else if cmd!(
                sh,
                "cargo test --workspace --locked --no-fail-fast {args...}"
            )
            .run()
            .is_err()
            {
                failed.push("Rust tests");
            }
        }
        // A Ctrl-C during one part ends the run there: the parts after it do not start.
        if !self.rust_only && !self.e2e_only && !interrupt::interrupted() {
            backend_venv(sh)?;
            let python = format!("{VENV}/bin/python");
            let _dir = sh.push_dir("backend");
            if cmd!(sh, "../{python} -m pytest -q").run().is_err() {
                failed.push("backend tests (pytest)");
            }
        }
        if !self.rust_only && !self.python_only && !interrupt::interrupted() {
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

/// Where the suites that ran beside the others leave their output.
const LANE_LOG: &str = "target/xtask/test/second-engines.log";

/// Every Rust test, in two lanes at once. The suites that bring up second engines of their own
/// (they include `tests/support/second_engine.rs`) spend most of their time in those engines'
/// builds and waits, and share nothing with the first engine's suites but a read of its bases;
/// `cargo test` alone would run every suite after the other. Their lane's output goes to a log
/// and is printed whole when both lanes are done, so that the terminal never interleaves two
/// suites; a line says when that lane ends. Returns what failed.
fn rust_lanes(sh: &Shell) -> Result<Vec<&'static str>> {
    use std::process::{Command, Stdio};
    let (second, first) = suites(sh)?;
    // One build first, so that the lanes do not wait for each other's compile and a compile
    // error shows once.
    cmd!(sh, "cargo test --workspace --locked --no-run")
        .quiet()
        .run()
        .context("the Rust tests do not compile")?;
    let mut failed = Vec::new();
    let log_path = sh.current_dir().join(LANE_LOG);
    sh.create_dir(log_path.parent().context("a log path without a folder")?)?;
    let log = std::fs::File::create(&log_path)?;
    let second_args: Vec<String> = second
        .iter()
        .flat_map(|s| ["--test".to_string(), s.clone()])
        .collect();
    eprintln!(
        "running the suites on second engines ({}) beside the others; their output follows the \
         others' (and stays in {LANE_LOG})",
        second.join(", ")
    );
    let mut lane = Command::new("cargo")
        .args([
            "test",
            "--locked",
            "--no-fail-fast",
            "-p",
            "integration-tests",
        ])
        .args(&second_args)
        .current_dir(sh.current_dir())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot run cargo test")?;
    let lane_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = lane_done.clone();
        std::thread::spawn(move || {
            let status = lane.wait();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            let ok = status.as_ref().is_ok_and(|s| s.success());
            eprintln!(
                "the suites on second engines are done: {}",
                if ok { "all passed" } else { "some FAILED" }
            );
            ok
        })
    };
    if cmd!(
        sh,
        "cargo test --workspace --locked --no-fail-fast --exclude integration-tests"
    )
    .run()
    .is_err()
    {
        failed.push("Rust unit tests");
    }
    let first_args: Vec<String> = first
        .iter()
        .flat_map(|s| ["--test".to_string(), s.clone()])
        .collect();
    if !interrupt::interrupted()
        && cmd!(
            sh,
            "cargo test --locked --no-fail-fast -p integration-tests {first_args...}"
        )
        .run()
        .is_err()
    {
        failed.push("Rust integration tests on the first engine");
    }
    if !lane_done.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!("waiting for the suites on second engines");
    }
    let lane_ok = watcher.join().unwrap_or(false);
    eprintln!("\n==== the suites on second engines ({LANE_LOG}) ====");
    eprint!("{}", sh.read_file(&log_path).unwrap_or_default());
    if !lane_ok {
        failed.push("Rust integration tests on second engines");
    }
    Ok(failed)
}

/// The integration suites of tests/Cargo.toml: those that start second engines of their own,
/// and the others.
fn suites(sh: &Shell) -> Result<(Vec<String>, Vec<String>)> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        test: Vec<Target>,
    }
    #[derive(serde::Deserialize)]
    struct Target {
        name: String,
        path: String,
    }
    let manifest: Manifest = toml::from_str(&sh.read_file("tests/Cargo.toml")?)
        .context("tests/Cargo.toml lists no [[test]]")?;
    let mut second = Vec::new();
    let mut first = Vec::new();
    for target in manifest.test {
        let source = sh.read_file(format!("tests/{}", target.path))?;
        if source.contains("support/second_engine.rs") {
            second.push(target.name);
        } else {
            first.push(target.name);
        }
    }
    Ok((second, first))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suites_with_second_engines_run_in_their_own_lane() {
        let sh = Shell::new().unwrap();
        sh.change_dir(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap(),
        );
        let (second, first) = suites(&sh).unwrap();
        assert!(
            second.contains(&"containerd_store".to_string()),
            "{second:?}"
        );
        assert!(second.contains(&"remote_build".to_string()), "{second:?}");
        assert!(first.contains(&"release".to_string()), "{first:?}");
        assert!(first.contains(&"build".to_string()), "{first:?}");
        assert!(!first.iter().any(|f| second.contains(f)));
    }
}
