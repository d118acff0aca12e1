//! The services are data: a third image added to a copy of the project (its `[[image]]` table,
//! its Dockerfiles and its entries in `compose/`, from `fixtures/services/`), with no change to
//! the code, is built, smoke-checked and served by `dev` like the frontend and the backend.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::copy::{Copy, Dev};
use support::{built_id, docker, http_get, root, row, text};

/// The images the test builds (its own name), removed when it ends, however it ends.
struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        for tag in ["latest", "dev"] {
            let _ = Command::new("docker")
                .args(["rmi", "--force", &format!("{}:{tag}", self.0)])
                .output();
        }
        // The build's own tags (`sha-…`, the version) carry the same name.
        let tags = Command::new("docker")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}", &self.0])
            .output()
            .map(|o| text(&o.stdout))
            .unwrap_or_default();
        for tag in tags.lines().filter(|l| !l.is_empty()) {
            let _ = Command::new("docker")
                .args(["rmi", "--force", tag])
                .output();
        }
    }
}

/// Inserts `entry` right under the top-level `services:` line of a compose file.
fn add_service(file: &Path, entry: &str) {
    let compose = std::fs::read_to_string(file).unwrap();
    let (head, tail) = compose
        .split_once("\nservices:\n")
        .expect("a top-level services: key");
    std::fs::write(file, format!("{head}\nservices:\n{entry}{tail}")).unwrap();
}

/// The containers of a compose project, one line each: `service id`.
fn project_containers(project: &str) -> Vec<(String, String)> {
    docker(&[
        "ps",
        "--all",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--format",
        "{{.Label \"com.docker.compose.service\"}} {{.ID}}",
    ])
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(s, id)| (s.to_string(), id.to_string()))
    .collect()
}

#[test]
fn a_third_image_is_built_smoked_and_served_by_dev_with_no_code_change() {
    let (frontend, backend) = (built_id("frontend"), built_id("backend"));
    let copy = Copy::new("services");
    let image = format!("todo-fixture-echo-{}", std::process::id());
    let _remove = RemoveImage(image.clone());
    let fixture = root().join("tests/fixtures/services");
    let read = |name: &str| {
        std::fs::read_to_string(fixture.join(name))
            .unwrap()
            .replace("{IMAGE}", &image)
    };
    std::fs::create_dir_all(copy.path("echo")).unwrap();
    for file in [
        "Dockerfile",
        "Dockerfile.dev",
        "server.py",
        "passwd",
        "group",
    ] {
        std::fs::copy(
            fixture.join("echo").join(file),
            copy.path("echo").join(file),
        )
        .unwrap();
    }
    let mut project = std::fs::read_to_string(copy.path("project.toml")).unwrap();
    project.push_str(&read("image.toml"));
    std::fs::write(copy.path("project.toml"), project).unwrap();
    add_service(&copy.path("compose/compose.yml"), &read("compose.yml"));
    add_service(&copy.path("compose/dev.yml"), &read("dev.yml"));
    // Committed, as a developer would: the build labels the image with a clean revision.
    copy.commit("a third service");

    // build: the new image only; the frontend and backend of the shared build stay as they are
    // (a build in the copy would label them with the copy's revision).
    let out = copy.xtask(&["build", "--only", "echo", "--progress", "quiet"]);
    assert!(out.status.success(), "build:\n{}", text(&out.stderr));
    let labels: Value = serde_json::from_str(&docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &format!("{image}:latest"),
    ]))
    .unwrap();
    assert_eq!(
        labels["org.opencontainers.image.title"],
        "Third service fixture"
    );
    assert_eq!(labels["org.opencontainers.image.version"], "1.0.0");
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&copy.dir)
        .output()
        .unwrap();
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        text(&head.stdout).trim()
    );

    // smoke: the third service started after the backend it calls, with its own rows.
    let out = copy.xtask(&[
        "smoke",
        "--json",
        "--image",
        &format!("frontend={frontend}"),
        "--image",
        &format!("backend={backend}"),
    ]);
    let report: Value = serde_json::from_str(&text(&out.stdout)).unwrap_or_else(|e| {
        panic!(
            "smoke --json printed no report ({e}):\n{}",
            text(&out.stderr)
        )
    });
    for check in [
        "start-to-healthy",
        "health-latency",
        "echo-to-backend",
        "graceful-stop",
        "user",
        "workdir",
        "port",
        "labels",
        "healthcheck",
        "size",
        "secrets",
    ] {
        assert_eq!(
            row(&report, check, "echo")["result"],
            "PASS",
            "{check}: {:#}",
            row(&report, check, "echo")
        );
    }
    // The spec describes no memory nor command for it: said, never passed.
    assert_eq!(row(&report, "idle-memory", "echo")["result"], "NOT CHECKED");
    // The calls of project.toml's own services are still checked, by the same code.
    assert_eq!(
        row(&report, "frontend-to-backend", "frontend")["result"],
        "PASS"
    );
    assert_eq!(row(&report, "database", "backend")["result"], "PASS");
    let run = report["run_id"].as_str().unwrap();
    assert_eq!(
        docker(&[
            "ps",
            "--all",
            "--quiet",
            "--filter",
            &format!("label=todo-chatbot.run={run}")
        ]),
        ""
    );

    // dev: the third service's dev image, its container healthy, answering on its own port.
    let mut dev = Dev::start_with(
        &copy,
        &[
            "dev",
            "--port",
            "frontend=0",
            "--port",
            "backend=0",
            "--port",
            "echo=0",
        ],
    );
    let line = dev.wait_line("dev: compose project", 0, Duration::from_secs(600));
    let project = line.split_whitespace().nth(3).unwrap().to_string();
    let ready = dev.wait_line("dev: ready", 0, Duration::from_secs(1500));
    assert!(ready.contains("echo http://localhost:"), "{ready}");
    dev.wait_line("dev: watching", 0, Duration::from_secs(60));
    let (_, id) = project_containers(&project)
        .into_iter()
        .find(|(s, _)| s == "echo")
        .expect("an echo container");
    let inspect: Value = serde_json::from_str(&docker(&["inspect", &id])).unwrap();
    assert_eq!(inspect[0]["State"]["Health"]["Status"], "healthy");
    assert_eq!(inspect[0]["Config"]["Image"], format!("{image}:dev"));
    let port: u16 = inspect[0]["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (status, body) = http_get(port, "/healthz").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains(r#""backend": "ok""#), "{body}");

    // Ctrl-C: 130, and nothing of the stack is left.
    Command::new("kill")
        .args(["-INT", &dev.child.id().to_string()])
        .status()
        .unwrap();
    let status = dev.wait_exit(Duration::from_secs(120), "dev did not stop after Ctrl-C");
    assert_eq!(status.code(), Some(130), "{}", dev.output());
    assert_eq!(project_containers(&project), vec![]);
}
