//! `cargo xtask smoke` on the real engine: the real images pass every check; throwaway images
//! with a wrong user, a planted secret or a broken health endpoint fail with the cause named; and
//! no run leaves a container or a network behind, whether it passes, fails, is kept and cleaned,
//! is interrupted with Ctrl-C, or crashes.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{built, built_id, docker, root, row, text, xtask};

/// Runs `smoke --json` with these `SERVICE=REF` images (the rest: the shared build's own).
fn smoke(images: &[(&str, &str)], extra: &[&str]) -> (Output, Value) {
    let mut args: Vec<String> = vec!["smoke".into(), "--json".into()];
    for service in ["frontend", "backend"] {
        let reference = images
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, r)| r.to_string())
            .unwrap_or_else(|| built_id(service));
        args.push("--image".into());
        args.push(format!("{service}={reference}"));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = xtask(&args);
    let report = serde_json::from_str(&text(&out.stdout)).unwrap_or_else(|e| {
        panic!(
            "smoke --json printed no report ({e}):\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out, report)
}

fn detail(report: &Value, check: &str, service: &str) -> String {
    row(report, check, service)["detail"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The containers and networks that carry a label, as `docker ps -a` and `docker network ls`
/// list them.
fn labelled(label: &str) -> (Vec<String>, Vec<String>) {
    let filter = format!("label={label}");
    let lines = |s: String| -> Vec<String> {
        s.lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    (
        lines(docker(&["ps", "--all", "--quiet", "--filter", &filter])),
        lines(docker(&["network", "ls", "--quiet", "--filter", &filter])),
    )
}

fn assert_nothing_left(run_id: &str) {
    let (containers, networks) = labelled(&format!("todo-chatbot.run={run_id}"));
    assert!(
        containers.is_empty() && networks.is_empty(),
        "run {run_id} left containers {containers:?} and networks {networks:?}"
    );
}

/// Throwaway images built for one test and removed when it ends, however it ends.
struct Fixtures(Vec<String>);

impl Fixtures {
    /// Builds `fixtures/smoke/<name>` (or `context`, when given) on `base` as `tag`.
    fn build(&mut self, name: &str, context: Option<&Path>, base: &str) -> String {
        let tag = format!("todo-fixture-smoke-{name}:{}", std::process::id());
        let dir = root().join("tests/fixtures/smoke").join(name);
        let context = context.unwrap_or(&dir);
        // BuildKit's FROM takes a name, not an image id: the base gets a throwaway tag too.
        let base_tag = format!("todo-fixture-smoke-base-{name}:{}", std::process::id());
        docker(&["tag", base, &base_tag]);
        self.0.push(base_tag.clone());
        let base = base_tag.as_str();
        let out = Command::new("docker")
            .args(["buildx", "build", "--load", "--quiet"])
            .arg(format!("--tag={tag}"))
            .arg(format!("--build-arg=BASE={base}"))
            .arg("--label=todo-chatbot.test=smoke")
            .arg(format!("--file={}", dir.join("Dockerfile").display()))
            .arg(context)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fixture {name} did not build: {}",
            text(&out.stderr)
        );
        self.0.push(tag.clone());
        tag
    }
}

impl Drop for Fixtures {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = Command::new("docker")
                .args(["rmi", "--force", tag])
                .output();
        }
    }
}

/// Removes a kept run's containers and network when the test ends, however it ends.
struct RemoveRun(String);

impl Drop for RemoveRun {
    fn drop(&mut self) {
        let (containers, networks) = labelled(&format!("todo-chatbot.run={}", self.0));
        for id in containers {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", &id])
                .output();
        }
        for id in networks {
            let _ = Command::new("docker").args(["network", "rm", &id]).output();
        }
    }
}

/// A fresh API-key-shaped canary: random, so that none is ever committed.
fn canary() -> String {
    let mut bytes = [0u8; 48];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let body: String = bytes
        .iter()
        .map(|b| alphabet[(*b as usize) % 62] as char)
        .collect();
    // Mixed case and digits for certain, as real keys have.
    format!("sk-canary-Aa1{body}")
}

#[test]
fn the_built_images_pass_every_check_and_leave_nothing_behind() {
    let (out, report) = smoke(&[], &[]);
    assert!(
        out.status.success(),
        "smoke failed on the built images:\n{}\n{report:#}",
        text(&out.stderr)
    );
    assert_eq!(report["ok"], true);
    assert_eq!(report["failed"], 0);
    for service in ["frontend", "backend"] {
        assert_eq!(
            report["image_ids"][service].as_str().unwrap(),
            built_id(service)
        );
        for check in [
            "start-to-healthy",
            "health-latency",
            "idle-memory",
            "graceful-stop",
            "user",
            "workdir",
            "port",
            "cmd",
            "labels",
            "healthcheck",
            "env",
            "size",
            "secrets",
            "hadolint",
            "trivy-config",
            "trivy-secret",
        ] {
            assert_eq!(
                row(&report, check, service)["result"],
                "PASS",
                "{check} {service}"
            );
        }
        // The Debian packages of the patched bases have no fix pending in the archives.
        assert_eq!(
            row(&report, "vulns-debian", service)["result"],
            "PASS",
            "{service}"
        );
        // No vulnerability database for Python and npm reaches this host: the scan says so and
        // never passes.
        let libraries = row(&report, "vulns-libraries", service);
        assert_ne!(libraries["result"], "FAIL");
        if libraries["result"] == "NOT CHECKED" {
            assert!(
                detail(&report, "vulns-libraries", service).contains("no vulnerability database")
            );
        }
    }
    assert_eq!(row(&report, "database", "backend")["result"], "PASS");
    assert_eq!(
        row(&report, "frontend-to-backend", "frontend")["result"],
        "PASS"
    );
    // The figures are measurements, not placeholders.
    let healthy = row(&report, "start-to-healthy", "backend")["measure"]["value"]
        .as_f64()
        .unwrap();
    assert!(healthy > 0.0 && healthy < 30.0, "{healthy}");
    assert!(row(&report, "graceful-stop", "backend")["figure"]
        .as_str()
        .unwrap()
        .contains("in-flight request answered 200"));
    let network = report["network"].as_str().unwrap();
    assert!(network.starts_with("todo-network-"), "{network}");
    assert_nothing_left(report["run_id"].as_str().unwrap());
}

#[test]
fn a_root_user_and_a_planted_secret_fail_with_their_causes_named() {
    let mut fixtures = Fixtures(Vec::new());
    let root_user = fixtures.build("wrong-user", None, &built_id("backend"));
    // The canary files go into a temporary build context beside the fixture's Dockerfile.
    let key = canary();
    let context = std::env::temp_dir().join(format!("todo-smoke-canary-{}", std::process::id()));
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("canary.env"),
        format!("OPENAI_API_KEY={key}\n"),
    )
    .unwrap();
    std::fs::write(
        context.join("canary.js"),
        format!("export const key = \"{key}\";\n"),
    )
    .unwrap();
    let leaky = fixtures.build("planted-secret", Some(&context), &built_id("frontend"));
    std::fs::remove_dir_all(&context).unwrap();

    let (out, report) = smoke(&[("backend", &root_user), ("frontend", &leaky)], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(report["ok"], false);

    let user = detail(&report, "user", "backend");
    assert!(user.contains("runs as uid 0 (root)"), "{user}");
    assert!(text(&out.stderr).contains("backend user: the container runs as uid 0 (root)"));
    // The other image's user, and this image's secrets, are fine: each row is about its cause.
    assert_eq!(row(&report, "user", "frontend")["result"], "PASS");
    assert_eq!(row(&report, "secrets", "backend")["result"], "PASS");

    let secrets = detail(&report, "secrets", "frontend");
    assert_eq!(row(&report, "secrets", "frontend")["result"], "FAIL");
    assert!(
        secrets.contains("/app/.env.local: a file named like .env"),
        "{secrets}"
    );
    assert!(
        secrets.contains("/app/.env.local: an API key (sk-...)"),
        "{secrets}"
    );
    assert!(
        secrets.contains("/app/public/canary.js: an API key (sk-...)"),
        "{secrets}"
    );
    // The layer is named by the instruction that made it.
    assert!(
        secrets.contains("(COPY … canary.env) /app/.env.local"),
        "{secrets}"
    );
    // The scan names the place, never the secret.
    assert!(!text(&out.stdout).contains(&key) && !text(&out.stderr).contains(&key));
    assert_nothing_left(report["run_id"].as_str().unwrap());
}

#[test]
fn a_broken_health_endpoint_fails_and_keep_then_clean_removes_the_stack() {
    let mut fixtures = Fixtures(Vec::new());
    let broken = fixtures.build("broken-health", None, &built_id("backend"));
    let (out, report) = smoke(&[("backend", &broken)], &["--keep"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let cause = detail(&report, "start-to-healthy", "backend");
    assert!(cause.contains("not healthy within 30 s"), "{cause}");
    assert!(cause.contains("GET /health answered 500"), "{cause}");
    assert!(detail(&report, "health-latency", "backend").contains("answered 500"));
    assert_eq!(row(&report, "database", "backend")["result"], "NOT CHECKED");
    assert_eq!(
        row(&report, "frontend-to-backend", "frontend")["result"],
        "NOT CHECKED"
    );
    assert_eq!(
        row(&report, "start-to-healthy", "frontend")["result"],
        "PASS"
    );

    // --keep left the stack running and said where it answers and how to remove it.
    let run_id = report["run_id"].as_str().unwrap();
    let _removed_even_if_this_test_fails = RemoveRun(run_id.to_string());
    assert_eq!(report["kept"], true);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("cargo xtask smoke --clean"), "{stderr}");
    let (containers, networks) = labelled(&format!("todo-chatbot.run={run_id}"));
    assert_eq!(
        containers.len(),
        3,
        "db, backend and frontend stay: {containers:?}"
    );
    assert_eq!(networks.len(), 1);
    let url = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("frontend")
                .map(str::trim)
                .filter(|rest| rest.starts_with("http://127.0.0.1:"))
        })
        .map(String::from)
        .expect("the frontend's address");
    let port: u16 = url
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (status, _) = support::http_get(port, "/api/health").unwrap();
    assert_eq!(status, 200, "{url}");

    let clean = xtask(&["smoke", "--clean"]);
    assert!(clean.status.success(), "{}", text(&clean.stderr));
    assert!(text(&clean.stderr).contains(run_id));
    assert_nothing_left(run_id);
}

#[test]
fn an_exited_container_is_never_passed_and_lint_says_what_it_checked() {
    let mut fixtures = Fixtures(Vec::new());
    let exits = fixtures.build("exits", None, &built_id("backend"));
    let (out, report) = smoke(&[("backend", &exits)], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    // Nothing that is not running is measured, let alone passed.
    let memory = row(&report, "idle-memory", "backend");
    assert_eq!(memory["result"], "NOT CHECKED", "{memory}");
    assert!(
        detail(&report, "idle-memory", "backend").contains("and ends here"),
        "{memory}"
    );
    let stop = row(&report, "graceful-stop", "backend");
    assert_eq!(stop["result"], "NOT CHECKED", "{stop}");
    assert!(
        detail(&report, "graceful-stop", "backend").contains("exited with code 0"),
        "{stop}"
    );
    for check in ["health-latency", "database"] {
        assert_ne!(row(&report, check, "backend")["result"], "PASS", "{check}");
    }

    // The cause names how it ended and what it printed last.
    let start = row(&report, "start-to-healthy", "backend");
    assert_eq!(start["result"], "FAIL");
    let cause = detail(&report, "start-to-healthy", "backend");
    assert!(
        cause.contains(
            "exited with code 0; its last log lines: the exits fixture starts | and ends here"
        ),
        "{cause}"
    );

    // Lint checks the project's files: not applicable to an image the project did not build...
    for check in ["hadolint", "trivy-config", "trivy-secret"] {
        let lint = row(&report, check, "backend");
        assert_eq!(lint["result"], "NOT CHECKED", "{lint}");
        assert!(
            detail(&report, check, "backend").starts_with("not applicable to a foreign image"),
            "{lint}"
        );
    }
    // ...and it says which file, at which revision, for the image the project built.
    let frontend = row(&report, "hadolint", "frontend");
    assert_eq!(frontend["result"], "PASS", "{frontend}");
    let figure = frontend["figure"].as_str().unwrap();
    assert!(
        figure.starts_with("clean: frontend/Dockerfile as at ")
            && figure.contains("which built the image"),
        "{figure}"
    );
    assert_eq!(row(&report, "idle-memory", "frontend")["result"], "PASS");
    assert_nothing_left(report["run_id"].as_str().unwrap());
}

/// Starts `smoke` in the background and waits until its containers exist. The caller signals
/// and waits for the child it gets back, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn start_and_wait_for_containers() -> (Child, String) {
    let mut child = Command::new(support::xtask_bin())
        .args(["smoke", "--json"])
        .args(["--image", &format!("frontend={}", built_id("frontend"))])
        .args(["--image", &format!("backend={}", built_id("backend"))])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid_label = format!("todo-chatbot.pid={}", child.id());
    let start = Instant::now();
    loop {
        let filter = format!("label={pid_label}");
        let format = "{{.Label \"todo-chatbot.run\"}}";
        let runs = docker(&["ps", "--all", "--filter", &filter, "--format", format]);
        if let Some(run) = runs.lines().next() {
            return (child, run.to_string());
        }
        if start.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("smoke started no container within 180 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_crashed_run_is_reaped_by_the_next_and_ctrl_c_cleans_up_and_exits_130() {
    built();
    // A run killed outright cleans nothing: its containers stay...
    let (mut crashed, crashed_run) = start_and_wait_for_containers();
    signal(&crashed, "KILL");
    crashed.wait().unwrap();
    let (left, _) = labelled(&format!("todo-chatbot.run={crashed_run}"));
    assert!(
        !left.is_empty(),
        "a killed run cannot clean up after itself"
    );

    // ...until the next run starts, which reaps them before it makes its own.
    let (mut interrupted, run) = start_and_wait_for_containers();
    assert_ne!(run, crashed_run);
    assert_nothing_left(&crashed_run);
    let crashed_dir = root().join("target/xtask/smoke").join(&crashed_run);
    assert!(!crashed_dir.exists(), "{} is left", crashed_dir.display());

    // Ctrl-C: the run removes what it started and exits with 130.
    signal(&interrupted, "INT");
    let status = interrupted.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_nothing_left(&run);
    // Nothing of the run's secrets stays on disk either.
    let dir: PathBuf = root().join("target/xtask/smoke").join(&run);
    assert!(!dir.exists(), "{} is left", dir.display());
}
