//! The engine the xtask talks to is the one the Docker CLI would: a second real engine, chosen
//! with `docker context use` and with DOCKER_HOST, gets the build and every look-up, and the first
//! engine sees nothing of it.

#[path = "support/second_engine.rs"]
mod second_engine;
mod support;

use std::process::{Command, Output};

use second_engine::SecondEngine;
use support::{root, text};

const PROJECT: &str = "tests/fixtures/context/tiny.toml";
const IMAGE: &str = "todo-fixture-tiny:latest";

/// The xtask with extra environment variables.
fn xtask_with(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(support::xtask_bin());
    command.args(args).current_dir(root());
    for (k, v) in env {
        command.env(k, v);
    }
    command.env_remove("DOCKER_CONTEXT");
    command.output().expect("run xtask")
}

/// Whether the first engine, on its default socket, holds IMAGE.
fn first_engine_has_image() -> bool {
    Command::new("docker")
        .args([
            "-H",
            "unix:///var/run/docker.sock",
            "image",
            "inspect",
            IMAGE,
        ])
        .output()
        .unwrap()
        .status
        .success()
}

fn assert_built_on_second(engine: &SecondEngine, how: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{how}: build failed:\n{}\n{}",
        support::error_first(&text(&out.stderr)),
        text(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = report["images"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let inspect = engine.docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]);
    assert!(
        inspect.status.success(),
        "{how}: the second engine has no {IMAGE}"
    );
    assert_eq!(
        text(&inspect.stdout).trim(),
        id,
        "{how}: the report's id is another engine's"
    );
    assert!(
        !first_engine_has_image(),
        "{how}: the first engine got {IMAGE} too"
    );
    assert!(engine.docker(&["image", "rm", IMAGE]).status.success());
}

#[test]
fn a_chosen_context_and_docker_host_reach_the_second_engine_only() {
    let _ = Command::new("docker")
        .args(["-H", "unix:///var/run/docker.sock", "image", "rm", IMAGE])
        .output();
    let engine = SecondEngine::start("context");
    let config = engine.dir().join("cli");
    std::fs::create_dir_all(&config).unwrap();
    let config = config.to_str().unwrap().to_string();
    let cli = |args: &[&str]| {
        let out = Command::new("docker")
            .env("DOCKER_CONFIG", &config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            text(&out.stderr)
        );
    };
    cli(&[
        "context",
        "create",
        "second",
        "--docker",
        &format!("host={}", engine.host()),
    ]);
    cli(&["context", "use", "second"]);

    let by_context = [("DOCKER_CONFIG", config.as_str())];
    let doctor = text(&xtask_with(&by_context, &["doctor"]).stdout);
    assert!(
        doctor.contains("context `second` (`docker context use`)")
            && doctor.contains(&engine.host()),
        "doctor does not name the chosen context:\n{doctor}"
    );
    let build = [
        "--config",
        PROJECT,
        "build",
        "--json",
        "--progress",
        "quiet",
    ];
    assert_built_on_second(
        &engine,
        "docker context use",
        &xtask_with(&by_context, &build),
    );

    let host = engine.host();
    let by_host = [("DOCKER_HOST", host.as_str())];
    assert_built_on_second(&engine, "DOCKER_HOST", &xtask_with(&by_host, &build));
}
