//! Build and smoke on an engine with the containerd image store (the default of new Docker 29
//! installs): a second real engine, online through a network namespace of its own. Its `docker
//! save` writes compressed layers, which the secret scan must read, and it reports image sizes
//! differently, while the budgets must mean the same bytes as on the classic store; and the same
//! commit built there makes the same layers, labels and times as on the first engine.

#[path = "support/second_engine.rs"]
mod second_engine;
mod support;

use std::process::Command;

use second_engine::{Options, SecondEngine};
use support::{built, root, text, xtask};

#[test]
fn build_and_smoke_work_on_the_containerd_image_store_with_the_same_sizes() {
    let classic = built();
    let engine = SecondEngine::start_with(
        "containerd",
        Options {
            containerd_store: true,
            online: true,
            ..Options::default()
        },
    );
    // The local bases of this recipe, as the first engine holds them: making them again would
    // only repeat the bases' own tests at the cost of minutes.
    let plan: serde_json::Value =
        serde_json::from_slice(&xtask(&["build", "--print"]).stdout).expect("build --print");
    let base = plan["bases"]["args"]["PYTHON_BUILD_IMAGE"]
        .as_str()
        .unwrap();
    let hash = base.rsplit(':').next().unwrap();
    let filter = format!("reference=todo-base/*:{hash}");
    let bases = support::docker(&[
        "images",
        "--filter",
        &filter,
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    let bases: Vec<&str> = bases.lines().collect();
    assert!(
        bases.len() >= 4,
        "the first engine lacks the bases: {bases:?}"
    );
    engine.load_from_first(&bases);

    let host = engine.host();
    // The xtask runs in the engine's network namespace, where the ports its containers publish
    // are on loopback.
    let on_second = |args: &[&str]| {
        Command::new("nsenter")
            .arg(format!("--net={}", engine.netns_path()))
            .arg(support::xtask_bin())
            .args(args)
            .current_dir(root())
            .env("DOCKER_HOST", &host)
            .output()
            .expect("run xtask in the engine's namespace")
    };

    let out = on_second(&["build", "--json", "--progress", "quiet"]);
    assert!(
        out.status.success(),
        "build failed:\n{}\n{}",
        support::error_first(&text(&out.stderr)),
        text(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["image_store"], "containerd");
    assert_eq!(classic["image_store"], "classic");
    for image in report["images"].as_array().unwrap() {
        let service = image["service"].as_str().unwrap();
        let first = classic["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["service"] == service)
            .unwrap();
        // Same commit, same image, on another engine and store: the same bytes of files (the
        // engine's own figure would be 40% off: compressed), the same uncompressed layers (their
        // diff ids), and the same labels, environment and creation time. The ids differ by
        // design: the classic store names an image by its config, the containerd store by its
        // manifest, whose layers are compressed.
        assert_eq!(
            image["size_bytes"], first["size_bytes"],
            "{service}: bytes on the containerd store, then on the classic one"
        );
        let id = image["id"].as_str().unwrap();
        let first_id = first["id"].as_str().unwrap();
        for format in [
            "{{json .RootFS.Layers}}",
            "{{json .Config.Labels}}",
            "{{json .Config.Env}}",
            "{{.Created}}",
        ] {
            let here = engine.docker(&["image", "inspect", "--format", format, id]);
            assert!(
                here.status.success(),
                "{service} is not on the second engine"
            );
            let there = support::docker(&["image", "inspect", "--format", format, first_id]);
            assert_eq!(
                text(&here.stdout).trim(),
                there,
                "{service}: {format} differs between the two engines"
            );
        }
    }

    let out = on_second(&["smoke", "--json"]);
    let smoke: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "smoke printed no JSON:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    let checks = smoke["checks"].as_array().unwrap();
    let failed: Vec<_> = checks.iter().filter(|c| c["result"] == "FAIL").collect();
    assert!(
        failed.is_empty() && out.status.success(),
        "smoke failed on the containerd store: {failed:#?}"
    );
    for check in checks.iter().filter(|c| c["check"] == "secrets") {
        assert_eq!(check["result"], "PASS", "{check}");
        assert!(
            check["figure"].as_str().unwrap().contains("files"),
            "{check}"
        );
    }
    // syft describes images of this store too (its `docker:` source cannot read their saved
    // layers), so the Debian packages are checked against the security archive's fixes.
    let debian: Vec<_> = checks
        .iter()
        .filter(|c| c["check"] == "vulns-debian")
        .collect();
    assert_eq!(debian.len(), 2, "{checks:#?}");
    for check in debian {
        assert_eq!(check["result"], "PASS", "{check}");
    }
}
