//! `cargo xtask build` on the real engine: the images it makes are checked with `docker inspect`
//! and `docker run`, not by what the command says about them.

mod support;

use std::time::Duration;

use support::{built, built_id, docker, text, xtask, Container};

fn image<'a>(service: &str) -> &'a serde_json::Value {
    built()["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["service"] == service)
        .expect("service in report")
}

fn inspect(reference: &str, format: &str) -> String {
    docker(&["image", "inspect", "--format", format, reference])
}

#[test]
fn every_tag_names_the_built_image() {
    let revision = built()["revision"].as_str().unwrap();
    let version = built()["version"].as_str().unwrap();
    for service in ["frontend", "backend"] {
        let image = image(service);
        let tags: Vec<&str> = image["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let name = image["image"].as_str().unwrap();
        assert_eq!(tags[0], format!("{name}:latest"));
        assert_eq!(tags[1], format!("{name}:v{version}"));
        assert!(
            tags[2].starts_with(&format!("{name}:sha-{}", &revision[..7])),
            "{tags:?}"
        );
        for tag in tags {
            assert_eq!(
                inspect(tag, "{{.Id}}"),
                image["id"].as_str().unwrap(),
                "{tag}"
            );
        }
    }
}

#[test]
fn labels_carry_version_time_revision_source_and_title() {
    for service in ["frontend", "backend"] {
        let reference = image(service)["id"].as_str().unwrap();
        let labels: serde_json::Value =
            serde_json::from_str(&inspect(reference, "{{json .Config.Labels}}")).unwrap();
        assert_eq!(
            labels["org.opencontainers.image.version"],
            built()["version"]
        );
        assert_eq!(
            labels["org.opencontainers.image.revision"],
            built()["revision"]
        );
        let created = labels["org.opencontainers.image.created"].as_str().unwrap();
        assert!(
            humantime::parse_rfc3339(created).is_ok(),
            "created {created} is not RFC 3339"
        );
        assert!(labels["org.opencontainers.image.source"]
            .as_str()
            .unwrap()
            .starts_with("http"));
        assert!(labels["org.opencontainers.image.title"]
            .as_str()
            .unwrap()
            .contains(service));
    }
}

#[test]
fn images_follow_the_spec() {
    // (service, port, CMD) as the spec gives them.
    let expected = [
        ("frontend", "3000/tcp", r#"["node","server.js"]"#),
        (
            "backend",
            "8000/tcp",
            r#"["uvicorn","app.main:app","--host","0.0.0.0","--port","8000"]"#,
        ),
    ];
    for (service, port, command) in expected {
        let reference = image(service)["id"].as_str().unwrap();
        assert_eq!(
            inspect(reference, "{{.Config.User}}"),
            "1001:1001",
            "{service} user"
        );
        assert_eq!(
            inspect(reference, "{{.Config.WorkingDir}}"),
            "/app",
            "{service} workdir"
        );
        let ports = inspect(reference, "{{json .Config.ExposedPorts}}");
        assert_eq!(ports, format!(r#"{{"{port}":{{}}}}"#), "{service} ports");
        assert_eq!(
            inspect(reference, "{{json .Config.Cmd}}"),
            command,
            "{service} CMD"
        );
        let health: serde_json::Value =
            serde_json::from_str(&inspect(reference, "{{json .Config.Healthcheck}}")).unwrap();
        assert_eq!(health["Interval"], 30_000_000_000u64, "{service} interval");
        assert_eq!(health["Timeout"], 10_000_000_000u64, "{service} timeout");
        assert_eq!(
            health["StartPeriod"], 40_000_000_000u64,
            "{service} start period"
        );
        assert_eq!(
            health["StartInterval"], 1_000_000_000u64,
            "{service} start interval"
        );
        assert_eq!(health["Retries"], 3, "{service} retries");
        assert_eq!(
            health["Test"][0], "CMD",
            "{service} health check must be exec form"
        );
        let size: u64 = inspect(reference, "{{.Size}}").parse().unwrap();
        let budget = image(service)["budget_bytes"].as_u64().unwrap();
        assert!(size < budget, "{service} is {size} bytes, budget {budget}");
        assert_eq!(image(service)["size_bytes"].as_u64(), Some(size));
    }
    let env = inspect(
        image("frontend")["id"].as_str().unwrap(),
        "{{json .Config.Env}}",
    );
    for var in [
        "NODE_ENV=production",
        "NEXT_TELEMETRY_DISABLED=1",
        "PORT=3000",
        "HOSTNAME=0.0.0.0",
    ] {
        assert!(env.contains(var), "frontend env lacks {var}: {env}");
    }
    let env = inspect(
        image("backend")["id"].as_str().unwrap(),
        "{{json .Config.Env}}",
    );
    assert!(
        env.contains("PATH=/opt/venv/bin:"),
        "backend PATH must start with the venv: {env}"
    );
}

#[test]
fn the_frontend_answers_its_health_check() {
    let container = Container::run(image("frontend")["id"].as_str().unwrap(), 3000, &[]);
    container.wait_healthy(Duration::from_secs(60));
    let (status, body) = support::http_get(container.host_port(3000), "/api/health").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\""), "{body}");
}

#[test]
fn the_backend_answers_its_health_check() {
    let container = Container::run(
        image("backend")["id"].as_str().unwrap(),
        8000,
        &support::backend_env(),
    );
    container.wait_healthy(Duration::from_secs(60));
    let (status, body) = support::http_get(container.host_port(8000), "/health").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(built()["version"].as_str().unwrap()),
        "health names the version: {body}"
    );
}

#[test]
fn a_failing_build_is_reported_and_the_other_still_builds() {
    let out = xtask(&[
        "--config",
        "tests/fixtures/build/failing.toml",
        "build",
        "--json",
        "--progress",
        "quiet",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON on stdout ({e}), which a failed build prints too:\n{}",
            support::error_first(&text(&out.stderr))
        )
    });
    let by = |s: &str| {
        report["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["service"] == s)
            .unwrap()
            .clone()
    };
    let (good, broken) = (by("good"), by("broken"));
    assert_eq!(good["ok"], true, "{good}");
    assert!(good["id"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(broken["ok"], false);
    let error = broken["error"].as_str().unwrap();
    assert!(
        error.contains("exit code: 3"),
        "the error names the failing step: {error}"
    );
    assert!(
        text(&out.stderr).contains("1 of 2 images failed: broken"),
        "{}",
        text(&out.stderr)
    );
    // The full log is kept and holds the step's own output.
    let log =
        std::fs::read_to_string(support::root().join("target/xtask/build/broken.log")).unwrap();
    assert!(log.contains("the broken fixture fails on purpose"), "{log}");

    // Without --json, the table lists both and the failure shows its last log lines. This runs
    // after the first build, not beside it, since both write the same log files.
    let out = xtask(&[
        "--config",
        "tests/fixtures/build/failing.toml",
        "build",
        "--progress",
        "quiet",
    ]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("broken failed:"), "{stderr}");
    assert!(
        stderr.contains("the broken fixture fails on purpose"),
        "last log lines shown: {stderr}"
    );
    assert!(
        text(&out.stdout).contains("todo-fixture-good"),
        "table lists both images"
    );
}

#[test]
fn an_image_over_budget_fails() {
    let out = xtask(&[
        "--config",
        "tests/fixtures/build/over-budget.toml",
        "build",
        "--json",
        "--progress",
        "quiet",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = report["images"][0]["error"].as_str().unwrap();
    assert!(error.contains("over its budget of 1.0 MB"), "{error}");
}

#[test]
fn fixtures_use_the_projects_own_bases() {
    // The fixtures copy the [bases] table; if it drifted they would build a second set of bases.
    let bases = |file: &str| {
        let text = std::fs::read_to_string(support::root().join(file)).unwrap();
        let value: toml::Value = toml::from_str(&text).unwrap();
        value["bases"].clone()
    };
    let own = bases("project.toml");
    for fixture in [
        "tests/fixtures/build/failing.toml",
        "tests/fixtures/build/over-budget.toml",
        "tests/fixtures/build/killed.toml",
        "tests/fixtures/build/slow.toml",
    ] {
        assert_eq!(
            bases(fixture),
            own,
            "{fixture}: copy [bases] from project.toml"
        );
    }
}

#[test]
fn bad_project_files_are_refused_at_load_naming_file_line_and_field() {
    // Each fixture holds one mistake; the expected line names where its value is.
    for (fixture, expected) in [
        (
            "duplicate-image",
            r#"duplicate-image.toml:36: [[image]] "two": image = "todo-fixture-same": is also the image of service "one" (line 23)"#,
        ),
        (
            "duplicate-service",
            r#"duplicate-service.toml:35: [[image]] service = "one": appears twice (first at line 22)"#,
        ),
        (
            "missing-dockerfile",
            r#"missing-dockerfile.toml:26: [[image]] "one": dockerfile = "tests/fixtures/build/good/Dockerfile.gone": no such file"#,
        ),
        (
            "missing-context",
            r#"missing-context.toml:25: [[image]] "one": context = "tests/fixtures/build/gone": no such folder"#,
        ),
    ] {
        let file = format!("tests/fixtures/project/{fixture}.toml");
        // `--print` builds nothing and is refused all the same, before printing any plan.
        for args in [&["build", "--print"][..], &["build", "--json"][..]] {
            let out = xtask(&[&["--config", file.as_str()][..], args].concat());
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{fixture} {args:?}: {stderr}");
            assert!(
                out.stdout.is_empty(),
                "{fixture} {args:?}: {}",
                text(&out.stdout)
            );
            assert!(
                stderr.contains(&format!("invalid project file {file} (1 problem)")),
                "{fixture}: {stderr}"
            );
            assert!(
                stderr.contains(&format!("tests/fixtures/project/{expected}")),
                "{fixture}: {expected}\nnot in: {stderr}"
            );
        }
    }
}

#[test]
fn unknown_services_are_refused_with_the_known_ones() {
    let out = xtask(&["build", "--only", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown service `web`: choose among frontend, backend"));
}

#[test]
fn ctrl_c_stops_the_builds_and_exits_130() {
    // A tag that a run cut off from its test (its test binary killed) left would read as this
    // run's: the test starts without one.
    let _ = std::process::Command::new("docker")
        .args(["image", "rm", "--force", "todo-fixture-slow:latest"])
        .output();
    let mut child = std::process::Command::new(support::xtask_bin())
        .args([
            "--config",
            "tests/fixtures/build/slow.toml",
            "build",
            "--no-cache",
            "--progress",
            "plain",
        ])
        .current_dir(support::root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the slow step runs, so the interrupt lands mid-build.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let started = std::time::Instant::now();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the build printed its slow step");
        if line.contains("the slow fixture starts") {
            break;
        }
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    // The build was stopped, not waited out: the step sleeps for two minutes.
    assert!(
        started.elapsed() < Duration::from_secs(110),
        "took {:?}",
        started.elapsed()
    );
    let tagged = std::process::Command::new("docker")
        .args(["image", "inspect", "todo-fixture-slow:latest"])
        .output()
        .unwrap();
    assert!(
        !tagged.status.success(),
        "an interrupted build must not tag an image"
    );
}

/// The pid of the running child of `parent` whose command is `name`, from /proc.
fn child_named(parent: u32, name: &str) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{parent}/task")).ok()?;
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == name)
        })
}

#[test]
fn a_killed_builder_is_reported_with_its_signal_and_the_tags_stay() {
    // The image's `latest` names an image made for the test (an empty import, no build), which
    // the killed build must leave in place.
    let latest = "todo-fixture-killed:latest";
    let empty_tar = std::env::temp_dir().join(format!("todo-killed-{}.tar", std::process::id()));
    let made = std::process::Command::new("tar")
        .args(["-cf"])
        .arg(&empty_tar)
        .args(["--files-from", "/dev/null"])
        .status()
        .unwrap();
    assert!(made.success());
    let before = docker(&[
        "import",
        "--change",
        "LABEL todo-chatbot.test=build",
        empty_tar.to_str().unwrap(),
        latest,
    ]);
    let _ = std::fs::remove_file(&empty_tar);
    struct Untag;
    impl Drop for Untag {
        fn drop(&mut self) {
            for tag in ["latest", "v1.0.0"] {
                let _ = std::process::Command::new("docker")
                    .args(["rmi", "--force", &format!("todo-fixture-killed:{tag}")])
                    .output();
            }
        }
    }
    let _untag = Untag;

    let mut child = std::process::Command::new(support::xtask_bin())
        .args([
            "--config",
            "tests/fixtures/build/killed.toml",
            "build",
            "--no-cache",
            "--progress",
            "plain",
        ])
        .current_dir(support::root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("the build never printed its slow step:\n{seen:#?}"));
        let started = line.contains("the killed fixture starts");
        seen.push(line);
        if started {
            break;
        }
    }
    // Killed from outside, as the kernel's out-of-memory killer or a `kill -9` would.
    let builder = child_named(child.id(), "docker-buildx").expect("the builder runs");
    let kill = std::process::Command::new("kill")
        .args(["-KILL", &builder.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    seen.extend(rx.iter());
    let stderr = seen.join("\n");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "killed failed: the builder process (docker buildx build) was killed by SIGKILL"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("the tags were left as they were (latest, v1.0.0, sha-"),
        "{stderr}"
    );
    assert!(!stderr.contains("without a message"), "{stderr}");
    assert_eq!(inspect(latest, "{{.Id}}"), before);
    let version = std::process::Command::new("docker")
        .args(["image", "inspect", "todo-fixture-killed:v1.0.0"])
        .output()
        .unwrap();
    assert!(!version.status.success(), "a killed build tagged v1.0.0");
}

// Two builds of one checkout write the same logs and metadata files: CI's second lane built this
// checkout on another engine while the first lane built it here, and a build read the other
// engine's image id as its own. The second build waits for the first; here the test holds the
// folder's lock as a running build would.
#[test]
fn a_second_build_of_the_checkout_waits_for_the_first_and_reports_its_own_image() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let frontend = built_id("frontend");
    let path = support::root().join("target/xtask/build/.lock");
    let mut held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    // Other tests of this binary may be building; the lock is taken after them.
    held.lock().unwrap();
    held.set_len(0).unwrap();
    write!(held, "{}", std::process::id()).unwrap();

    let mut child = Command::new(support::xtask_bin())
        .args([
            "build",
            "--only",
            "frontend",
            "--json",
            "--progress",
            "quiet",
        ])
        .current_dir(support::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let expected = format!(
        "waiting for another build of this checkout (pid {})",
        std::process::id()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut seen = false;
    while !seen && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
            seen = line.contains(&expected);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
    }
    assert!(seen, "the second build did not say it waits ({expected})");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the second build went on while the lock was held"
    );
    drop(held);
    let out = child.wait_with_output().unwrap();
    let stderr = reader.join().unwrap();
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["images"][0]["id"].as_str().unwrap(),
        frontend,
        "{stderr}"
    );
}
