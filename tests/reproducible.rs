//! Same commit, same image: `cargo xtask build` on the real engine, checked with `docker image
//! inspect`. A build that changes nothing keeps the image ids (so no tag moves and no image is left
//! dangling), and a build without the layer cache makes the very same images again.

mod support;

use std::collections::BTreeMap;

use support::{built, docker, text, xtask};

/// service -> image id, from a `build --json` report.
fn ids(report: &serde_json::Value) -> BTreeMap<String, String> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["service"].as_str().unwrap().to_string(),
                i["id"].as_str().expect("an image id").to_string(),
            )
        })
        .collect()
}

fn build(extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["build", "--json", "--progress", "quiet"];
    args.extend_from_slice(extra);
    let out = xtask(&args);
    assert!(
        out.status.success(),
        "build {extra:?} failed:\n{}\n{}",
        support::error_first(&text(&out.stderr)),
        text(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("build --json prints one JSON object")
}

/// The layers of two images side by side, for a failure message that says where they part.
fn layer_diff(a: &str, b: &str) -> String {
    let layers = |id: &str| {
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            id,
        ])
    };
    let history = |id: &str| {
        docker(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedAt}} {{.CreatedBy}}",
            id,
        ])
    };
    format!(
        "layers {a}:\n{}\nlayers {b}:\n{}\nhistory {a}:\n{}\nhistory {b}:\n{}",
        layers(a),
        layers(b),
        history(a),
        history(b)
    )
}

#[test]
fn the_created_time_is_the_commits() {
    let commit_time = std::process::Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(support::root())
        .output()
        .unwrap();
    let seconds: u64 = text(&commit_time.stdout).trim().parse().unwrap();
    let expected = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds),
    )
    .to_string();
    for (service, id) in ids(built()) {
        let label = docker(&[
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"org.opencontainers.image.created\"}}",
            &id,
        ]);
        assert_eq!(label, expected, "{service}: created label");
        let created = docker(&["image", "inspect", "--format", "{{.Created}}", &id]);
        assert_eq!(created, expected, "{service}: image created time");
    }
}

/// One test, two builds in this order: after a `--no-cache` build BuildKit may run some steps
/// once more, so the no-op comes first.
#[test]
fn same_commit_same_image_with_and_without_the_cache() {
    a_no_op_build_keeps_the_image_ids_and_leaves_nothing_dangling();
    a_build_without_the_layer_cache_makes_the_same_images();
}

fn a_no_op_build_keeps_the_image_ids_and_leaves_nothing_dangling() {
    let before = ids(built());
    let again = build(&["--explain"]);
    let after = ids(&again);
    // --explain agrees: no step ran, so there is no cause to name.
    for e in again["explain"].as_array().expect("an explain key") {
        assert_eq!(e["missed"].as_array().unwrap().len(), 0, "{e}");
        assert_eq!(e["causes"].as_array().unwrap().len(), 0, "{e}");
    }
    for (service, id) in &before {
        assert_eq!(
            &after[service],
            id,
            "{service}: a build with nothing changed made a new image\n{}",
            layer_diff(id, &after[service])
        );
        // The image the tags named before still carries them: nothing was left dangling.
        let tags = docker(&["image", "inspect", "--format", "{{json .RepoTags}}", id]);
        let image = again["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["service"] == service.as_str())
            .unwrap();
        for tag in image["tags"].as_array().unwrap() {
            assert!(
                tags.contains(tag.as_str().unwrap()),
                "{service}: {tag} left image {id} (its tags now: {tags})"
            );
        }
    }
}

fn a_build_without_the_layer_cache_makes_the_same_images() {
    let cached = ids(built());
    let report = build(&["--no-cache", "--explain"]);
    for e in report["explain"].as_array().expect("an explain key") {
        assert_eq!(e["causes"][0]["kind"], "no-cache", "{e}");
    }
    let rebuilt = ids(&report);
    let differing: Vec<String> = cached
        .iter()
        .filter(|(service, id)| rebuilt[*service] != **id)
        .map(|(service, id)| {
            format!(
                "{service}: {id} then {}\n{}",
                rebuilt[service],
                layer_diff(id, &rebuilt[service])
            )
        })
        .collect();
    assert!(
        differing.is_empty(),
        "a --no-cache build of the same tree made other images:\n{}",
        differing.join("\n")
    );
}
