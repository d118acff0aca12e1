//! Builds past one machine, against real parts: BuildKit's registry cache exported to a real
//! `docker-registry` and imported by an engine whose own build cache is empty, and `--builder`
//! naming a builder bound to a second real engine. The second engine uses the containerd image
//! store (the one whose own BuildKit exports a cache); the fixture image is built FROM scratch,
//! so nothing is downloaded and no base image is needed.

#[path = "support/second_engine.rs"]
mod second_engine;
mod support;

use std::process::{Command, Output};

use second_engine::{Options, SecondEngine};
use support::{root, text};

const PROJECT: &str = "xtask/tests/fixtures/context/tiny.toml";
const IMAGE: &str = "todo-fixture-tiny:latest";

fn report(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "build failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("build --json prints one JSON object")
}

/// The image id on the first engine, if the tag names one.
fn first_engine_id(reference: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| text(&out.stdout).trim().to_string())
}

#[test]
fn the_classic_store_refuses_a_cache_export_before_building_and_says_the_fix() {
    let before = first_engine_id(IMAGE);
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "--config",
            PROJECT,
            "build",
            "--json",
            "--progress",
            "quiet",
        ])
        .args(["--cache-to", "localhost:5999/todo-cache"])
        .current_dir(root())
        .env_remove("TODO_CACHE")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "the export was not refused: {stderr}"
    );
    for needed in [
        "cannot export the build cache",
        "classic image store",
        "containerd-snapshotter",
        "--builder",
        "Nothing was built",
    ] {
        assert!(stderr.contains(needed), "{needed:?} not in: {stderr}");
    }
    assert_eq!(first_engine_id(IMAGE), before, "the tag moved");
}

#[test]
fn a_cache_exported_to_a_registry_is_imported_and_builder_builds_on_its_engine() {
    let engine = SecondEngine::start_with(
        "remote",
        Options {
            containerd_store: true,
            online: false,
        },
    );
    let registry = engine.start_registry(5000);
    let prefix = format!("{}/todo-cache", registry.address());
    // A Docker CLI configuration of the test's own, holding a context for the second engine:
    // buildx lists every context as a builder (the engine's own BuildKit).
    let config = engine.dir().join("cli");
    std::fs::create_dir_all(&config).unwrap();
    let context = Command::new("docker")
        .args(["context", "create", "second", "--docker"])
        .arg(format!("host={}", engine.host()))
        .env("DOCKER_CONFIG", &config)
        .output()
        .unwrap();
    assert!(context.status.success(), "{}", text(&context.stderr));
    let xtask = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args([
                "--config",
                PROJECT,
                "build",
                "--json",
                "--progress",
                "quiet",
            ])
            .args(["--builder", "second"])
            .args(args)
            .current_dir(root())
            .env("DOCKER_CONFIG", &config)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("TODO_CACHE")
            .env_remove("TODO_CACHE_TO")
            .output()
            .unwrap()
    };
    // Forgets everything the engine built: its images and its whole build cache.
    let forget = || {
        let _ = engine.docker(&["image", "rm", "--force", IMAGE]);
        let prune = engine.docker(&["builder", "prune", "--all", "--force"]);
        assert!(prune.status.success(), "{}", text(&prune.stderr));
    };

    // doctor lists the context's builder, and which builder a build would use.
    let doctor = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["--config", PROJECT, "doctor"])
        .current_dir(root())
        .env("DOCKER_CONFIG", &config)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("BUILDX_BUILDER")
        .output()
        .unwrap();
    let doctor = text(&doctor.stdout);
    assert!(doctor.contains("second (docker)"), "{doctor}");
    assert!(
        doctor.contains("build builder  default (driver docker"),
        "{doctor}"
    );

    // --builder: built on the second engine, and only there.
    let exported = report(&xtask(&["--cache-to", &prefix]));
    assert_eq!(exported["builder"], "second");
    assert_eq!(exported["image_store"], "containerd");
    let image = &exported["images"][0];
    let id = image["id"].as_str().unwrap();
    let on_second = engine.docker(&["image", "inspect", "--format", "{{.Id}}", id]);
    assert_eq!(
        text(&on_second.stdout).trim(),
        id,
        "not on the second engine"
    );
    assert_eq!(
        first_engine_id(id),
        None,
        "the image is on the first engine"
    );
    let cache_ref = format!("{prefix}/todo-fixture-tiny:buildcache");
    assert_eq!(image["cache_to"], cache_ref.as_str());

    // The registry holds the cache under the image's own reference.
    let tags = registry
        .get("/v2/todo-cache/todo-fixture-tiny/tags/list")
        .expect("no cache repository in the registry");
    assert!(tags.contains("buildcache"), "{tags}");

    // With nothing left on the engine, a build without the cache runs every step...
    forget();
    let cold = report(&xtask(&[]));
    let cold = &cold["images"][0];
    assert!(cold["steps"].as_u64().unwrap() > 0, "{cold}");
    assert_eq!(cold["cached_steps"], 0, "{cold}");

    // ...and one that imports it finds its steps cached.
    forget();
    let warm = report(&xtask(&["--cache-from", &prefix]));
    let warm = &warm["images"][0];
    assert_eq!(warm["cache_from"], cache_ref.as_str());
    assert!(
        warm["cached_steps"].as_u64().unwrap() > 0,
        "nothing imported: {warm}"
    );
    assert_eq!(warm["cached_steps"], warm["steps"], "{warm}");
    drop(registry);
}
