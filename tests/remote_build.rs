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

const PROJECT: &str = "tests/fixtures/context/tiny.toml";
const IMAGE: &str = "todo-fixture-tiny:latest";

fn report(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "build failed:\n{}\n{}",
        support::error_first(&text(&out.stderr)),
        text(&out.stdout)
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
    let out = Command::new(support::xtask_bin())
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
            ..Options::default()
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
        Command::new(support::xtask_bin())
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
    let doctor = Command::new(support::xtask_bin())
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

/// A registry on the host's loopback, which the first engine reaches (127.0.0.0/8 needs no TLS).
struct HostRegistry {
    child: std::process::Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl HostRegistry {
    fn start() -> HostRegistry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("todo-push-registry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = HostRegistry { child, dir, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while registry.digest("/v2/").is_none() {
            assert!(std::time::Instant::now() < deadline, "no registry");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        registry
    }

    /// The Docker-Content-Digest of a GET (manifests asked as OCI or Docker v2), or "" for a
    /// 200 without one; None unless 200.
    fn digest(&self, path: &str) -> Option<String> {
        let out = Command::new("curl")
            .args(["-sf", "-D", "-", "-o", "/dev/null", "--max-time", "5"])
            .args(["-H", "Accept: application/vnd.oci.image.index.v1+json"])
            .args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
            .args([
                "-H",
                "Accept: application/vnd.docker.distribution.manifest.v2+json",
            ])
            .args([
                "-H",
                "Accept: application/vnd.docker.distribution.manifest.list.v2+json",
            ])
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .ok()?;
        out.status.success().then(|| {
            text(&out.stdout)
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("docker-content-digest")
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_default()
        })
    }
}

impl Drop for HostRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn push_sends_a_clean_commits_sha_images_and_refuses_a_dirty_tree() {
    // A project of its own in a git repository of its own, so that the tree is clean whatever
    // the checkout's state, with an image name no other test uses.
    let project = std::env::temp_dir().join(format!("todo-push-project-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&project);
    std::fs::create_dir_all(project.join("tiny")).unwrap();
    std::fs::create_dir_all(project.join("docker/bases")).unwrap();
    let fixture = root().join("tests/fixtures/context");
    let toml = std::fs::read_to_string(fixture.join("tiny.toml"))
        .unwrap()
        .replace("tests/fixtures/context/tiny", "tiny")
        .replace("todo-fixture-tiny", "todo-fixture-push");
    std::fs::write(project.join("project.toml"), toml).unwrap();
    for file in ["Dockerfile", "hello.txt"] {
        std::fs::copy(
            fixture.join("tiny").join(file),
            project.join("tiny").join(file),
        )
        .unwrap();
    }
    for entry in std::fs::read_dir(root().join("docker/bases")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            project.join("docker/bases").join(entry.file_name()),
        )
        .unwrap();
    }
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&project)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "fixture"]);
    let short = &git(&["rev-parse", "HEAD"])[..7];
    let registry = HostRegistry::start();
    let prefix = format!("127.0.0.1:{}/todo", registry.port);
    let build = || {
        Command::new(support::xtask_bin())
            .args(["build", "--push", "--json", "--progress", "quiet"])
            .current_dir(&project)
            .env("DOCKER_REGISTRY", &prefix)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .output()
            .unwrap()
    };

    let pushed = report(&build());
    let image = &pushed["images"][0];
    let reference = format!("{prefix}/todo-fixture-push:sha-{short}");
    let (name, digest) = image["pushed"]
        .as_str()
        .expect("no pushed reference")
        .split_once('@')
        .unwrap();
    assert_eq!(name, reference);
    let stored = registry.digest(&format!("/v2/todo/todo-fixture-push/manifests/sha-{short}"));
    assert_eq!(
        stored.as_deref(),
        Some(digest),
        "the registry's digest differs"
    );

    // A changed tree: refused before building, with the reason.
    std::fs::write(project.join("tiny/hello.txt"), "changed\n").unwrap();
    let out = build();
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a dirty tree was pushed: {stderr}");
    assert!(stderr.contains("uncommitted changes"), "{stderr}");
    assert!(stderr.contains("Nothing was built"), "{stderr}");
    assert!(registry
        .digest(&format!(
            "/v2/todo/todo-fixture-push/manifests/sha-{short}-dirty"
        ))
        .is_none());

    for tag in ["latest", "v1.0.0", &format!("sha-{short}")] {
        let _ = Command::new("docker")
            .args(["image", "rm", &format!("todo-fixture-push:{tag}")])
            .output();
    }
    let _ = Command::new("docker")
        .args(["image", "rm", &reference])
        .output();
    let _ = std::fs::remove_dir_all(&project);
}
