//! What the integration tests share: running the real xtask binary, the real Docker engine,
//! containers that remove themselves, and plain HTTP against published ports.
#![allow(dead_code)]

pub mod copy;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root: every path the suites use is from here, as the xtask's are.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The xtask binary, built once per test process. The suites are a package of their own
/// (cargo offers `CARGO_BIN_EXE_*` only to a binary's own package), so they ask cargo to build it:
/// a no-op when `cargo test --workspace` has just built the workspace, and the same profile as
/// the tests.
pub fn xtask_bin() -> &'static std::path::Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "--package", "xtask", "--bin", "xtask"]);
        if profile == "release" {
            build.arg("--release");
        }
        let status = build.current_dir(root()).status().expect("run cargo build");
        assert!(status.success(), "cargo could not build the xtask");
        // CARGO_TARGET_TMPDIR is `<target dir>/tmp`, so the binary is beside it, whatever
        // CARGO_TARGET_DIR says.
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("a target folder")
            .join(profile)
            .join("xtask")
    })
}

/// Runs the xtask binary from the repository root.
pub fn xtask(args: &[&str]) -> Output {
    Command::new(xtask_bin())
        .args(args)
        .current_dir(root())
        .output()
        .expect("run xtask")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A failed xtask run's stderr for a panic message, the line that says why it stopped first. A
/// release prints the smoke checks' long table before that line, and CI's report of a failing
/// test keeps only the start and the end of what the tests printed, so the reason would be cut.
pub fn error_first(stderr: &str) -> String {
    match stderr.rfind("\nerror: ") {
        Some(at) => format!("{}\n--- all it printed ---\n{stderr}", &stderr[at + 1..]),
        None => stderr.to_string(),
    }
}

/// Runs `docker ARGS` and returns its trimmed stdout; panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_string()
}

/// The report of one `cargo xtask build --json` of the real project, shared by every test of a
/// test binary so the images are built once (a no-op when the cache holds them).
pub fn built() -> &'static serde_json::Value {
    static REPORT: OnceLock<serde_json::Value> = OnceLock::new();
    REPORT.get_or_init(|| {
        let out = xtask(&["build", "--json", "--progress", "quiet"]);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "build failed:\n{stdout}\n{}",
            text(&out.stderr)
        );
        serde_json::from_str(&stdout).expect("build --json prints one JSON object")
    })
}

/// The id of the image that the shared build made for a service.
pub fn built_id(service: &str) -> String {
    built()["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["service"] == service)
        .and_then(|i| i["id"].as_str())
        .expect("service in the build report")
        .to_string()
}

/// The row of a smoke report (`smoke --json`) for one check of one service.
pub fn row<'a>(report: &'a serde_json::Value, check: &str, service: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == check && r["service"] == service)
        .unwrap_or_else(|| panic!("no row {check} for {service} in {report:#}"))
}

/// A valid environment for the backend: what a test deployment would set. Values are made up
/// for the tests and reach only containers the tests start.
pub fn backend_env() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "DATABASE_URL",
            "postgresql://todo:test-password@127.0.0.1:5432/todo",
        ),
        (
            "BETTER_AUTH_SECRET",
            "test-secret-0123456789abcdefghijklmnopqrstuvwxyz",
        ),
        ("OPENAI_API_KEY", "sk-test-0000000000000000000000000000"),
        ("AGENT_MODEL", "gpt-4o"),
        ("FRONTEND_URL", "http://frontend:3000"),
    ]
}

/// A container that is removed when the test ends, however it ends.
pub struct Container {
    pub id: String,
}

impl Container {
    pub fn run(image: &str, port: u16, env: &[(&str, &str)]) -> Container {
        let mut args: Vec<String> = ["run", "-d", "--label", "todo-chatbot.test=1", "-p"]
            .map(String::from)
            .to_vec();
        args.push(format!("127.0.0.1::{port}"));
        for (k, v) in env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push(image.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Container { id: docker(&args) }
    }

    /// The host port that the container's `port` is published on.
    pub fn host_port(&self, port: u16) -> u16 {
        let out = docker(&["port", &self.id, &format!("{port}/tcp")]);
        out.lines()
            .next()
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("published port")
    }

    pub fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "--format", format, &self.id])
    }

    /// Waits until Docker reports the container healthy; returns how long that took.
    pub fn wait_healthy(&self, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let status = self.inspect("{{.State.Health.Status}}");
            if status == "healthy" {
                return start.elapsed();
            }
            let running = self.inspect("{{.State.Running}}");
            if running != "true" || start.elapsed() > timeout {
                let logs = Command::new("docker")
                    .args(["logs", &self.id])
                    .output()
                    .unwrap();
                panic!(
                    "container not healthy (status {status}, running {running}) after {:?}:\n{}{}",
                    start.elapsed(),
                    text(&logs.stdout),
                    text(&logs.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.id])
            .output();
    }
}

/// A plain HTTP/1.0 GET on loopback: (status code, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Runs the xtask in `dir` in a process group of its own, as a shell runs a foreground job, and
/// after `delay` sends SIGINT to that whole group, as a terminal's Ctrl-C does. Returns whether
/// the Ctrl-C was sent (not when the command had ended before its moment), the exit code (None:
/// killed by a signal) and stderr.
pub fn interrupt_after(
    dir: &std::path::Path,
    args: &[&str],
    delay: Duration,
) -> (bool, Option<i32>, String) {
    let mut command = Command::new(xtask_bin());
    command.args(args).current_dir(dir);
    interrupt_when(command, |_| std::thread::sleep(delay))
}

/// Runs `command` (the xtask, set up by the caller) in a process group of its own and, once
/// `moment` returns, sends SIGINT to that whole group, as a terminal's Ctrl-C does; `moment`
/// waits (for a time, or for a sign of the phase to interrupt) and may look at the child. Returns
/// what [`interrupt_after`] returns.
pub fn interrupt_when(
    mut command: Command,
    moment: impl FnOnce(&mut std::process::Child),
) -> (bool, Option<i32>, String) {
    use std::os::unix::process::CommandExt;
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run xtask");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        all
    });
    moment(&mut child);
    let group = format!("-{}", child.id());
    let ended_before = child.try_wait().unwrap().is_some();
    if !ended_before {
        Command::new("kill")
            .args(["-INT", "--", &group])
            .status()
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            panic!("{command:?} did not stop within 180 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (!ended_before, status.code(), reader.join().unwrap())
}

/// `n` moments spread over `span`, each shifted within its share by a seed from the clock, so
/// that every run tries other moments; the seed is returned to be printed with a failure.
pub fn moments(n: u32, span: Duration) -> (u64, Vec<Duration>) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let step = span / n;
    let jitter = |i: u32| {
        let x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(i as u64 * 1442695040888963407);
        (x >> 33) as f64 / (1u64 << 31) as f64
    };
    let at = (0..n).map(|i| step * i + step.mul_f64(jitter(i))).collect();
    (seed, at)
}

/// What every Ctrl-C test asks of a run it interrupted: exit 130, and no error printed on the way
/// out (a child that got the same SIGINT is not a fault).
pub fn assert_stopped_by_ctrl_c(
    what: &str,
    seed: u64,
    delay: Duration,
    code: Option<i32>,
    stderr: &str,
) {
    assert_eq!(
        code,
        Some(130),
        "{what}, seed {seed}, Ctrl-C at {delay:?}:\n{stderr}"
    );
    assert!(
        !stderr.contains("error:"),
        "{what}, seed {seed}, at {delay:?}:\n{stderr}"
    );
}

/// The containers, networks and volumes that carry a label (`KEY=VALUE`), one line each; empty
/// when a run left nothing behind.
pub fn left_behind(label: &str) -> String {
    let filter = format!("label={label}");
    [
        &["ps", "--all", "--quiet", "--filter", &filter][..],
        &["network", "ls", "--quiet", "--filter", &filter][..],
        &["volume", "ls", "--quiet", "--filter", &filter][..],
    ]
    .iter()
    .zip(["container", "network", "volume"])
    .flat_map(|(args, kind)| {
        docker(args)
            .lines()
            .map(|id| format!("{kind} {id}\n"))
            .collect::<Vec<_>>()
    })
    .collect()
}

/// The id a run printed on stderr as `PREFIX<id>` (`smoke run <id> ...`, `e2e run <id>`): what
/// its containers and networks are labelled with. None when it stopped before saying it, and so
/// before it started any.
pub fn run_id<'a>(stderr: &'a str, prefix: &str) -> Option<&'a str> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|l| l.split_whitespace().next())
}

/// Gives a copy of the project the checkout's build seed (`target/xtask/build-seed`, see
/// `PlanInputs::with_build_seed`), when the checkout has one: the frontend's build arguments
/// follow the seed, so a copy with a seed of its own would build the frontend from scratch
/// (about 100 s) where the checkout's layers serve it.
pub fn share_build_seed(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let seed = root().join("target/xtask/build-seed");
    if !seed.is_file() {
        return;
    }
    let to = dir.join("target/xtask/build-seed");
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(&seed, &to).unwrap();
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Writes the project at HEAD into `dir` (created first) as a git repository of its own: one
/// commit and the annotated tag v1.0.0 standing for the previous release, as a release test's
/// copy needs. `scratch` holds the archive on the way.
pub fn project_at_head(dir: &Path, scratch: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let archive = scratch.join("head.tar");
    let out = Command::new("git")
        .args(["archive", "--format=tar", "-o"])
        .arg(&archive)
        .arg("HEAD")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "git archive: {}", text(&out.stderr));
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {}", text(&out.stderr));
    std::fs::remove_file(&archive).unwrap();
    for args in [
        &["init", "-q"][..],
        &["config", "user.name", "Release Test"],
        &["config", "user.email", "release-test@example.org"],
        &["add", "-A"],
        &["commit", "-q", "-m", "the project at HEAD"],
        &["tag", "-a", "v1.0.0", "-m", "the previous release"],
    ] {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    }
}
