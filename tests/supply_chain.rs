//! What the images show scanners, on the real engine: the local bases and their Debian packages
//! (`cargo xtask bases`), the SBOMs syft makes of both images (`cargo xtask sbom`), and the
//! vulnerability gate, which passes the real images and fails an image holding a Debian package
//! that `-security` supersedes.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{built, docker, root, text, xtask};

/// A folder of its own for each test's SBOMs, so that tests running at once never write the
/// same file.
fn out_dir(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("xtask-sbom-{name}-{}", std::process::id()))
        .display()
        .to_string()
}

fn json(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = xtask(args);
    let stderr = text(&out.stderr);
    let value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}):\n{stderr}"));
    (out.status.success(), value, stderr)
}

/// The names syft found in one image, from its own JSON.
fn names(sbom: &serde_json::Value) -> Vec<String> {
    let native = PathBuf::from(sbom["native"].as_str().unwrap());
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(native).unwrap()).unwrap();
    doc["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

fn gate_row<'a>(report: &'a serde_json::Value, service: &str) -> &'a serde_json::Value {
    report["gate"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == "vulns-debian" && r["service"] == service)
        .unwrap_or_else(|| panic!("no vulns-debian row for {service}: {report}"))
}

#[test]
fn the_images_show_their_packages_and_pass_the_gate() {
    // The images of this tree, by id: `latest` may name another checkout's build.
    let images: Vec<String> = built()["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}={}",
                i["service"].as_str().unwrap(),
                i["id"].as_str().unwrap()
            )
        })
        .collect();
    let dir = out_dir("images");
    let mut args = vec!["sbom", "--gate", "--json", "--out", &dir];
    for image in &images {
        args.extend(["--image", image.as_str()]);
    }
    let (ok, report, stderr) = json(&args);
    assert!(ok, "the real images fail the gate:\n{stderr}\n{report}");
    for sbom in report["sboms"].as_array().unwrap() {
        let service = sbom["service"].as_str().unwrap();
        assert!(
            sbom["distro"].as_str().unwrap_or("").contains("bookworm"),
            "{service}: no distro: {sbom}"
        );
        assert!(std::path::Path::new(sbom["file"].as_str().unwrap()).is_file());
        let names = names(sbom);
        let has = |n: &str| names.iter().any(|x| x == n);
        assert!(has("libc6"), "{service}: {names:?}");
        if service == "backend" {
            for expected in ["libssl3", "fastapi"] {
                assert!(has(expected), "{service} lacks {expected}: {names:?}");
            }
            assert!(
                names.iter().any(|n| n.starts_with("python3.11")),
                "{service}: {names:?}"
            );
        } else {
            assert!(has("next"), "{service}: {names:?}");
        }
        let row = gate_row(&report, service);
        assert_eq!(row["result"], "PASS", "{row}");
    }
    std::fs::remove_dir_all(&dir).unwrap();

    // The bases hold what their records say, and say how old they are.
    let (ok, bases, stderr) = json(&["bases", "--json"]);
    assert!(ok, "{stderr}");
    let runtime = bases["bases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["target"] == "python-runtime")
        .expect("a python-runtime base");
    let packages: Vec<&str> = runtime["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        packages.contains(&"libssl3") && packages.contains(&"libc6"),
        "{packages:?}"
    );
    assert!(
        bases["archive"].as_str().unwrap().contains("-security"),
        "{bases}"
    );
}

#[test]
fn an_outdated_debian_package_fails_the_gate() {
    let (ok, bases, stderr) = json(&["bases", "--json"]);
    assert!(ok, "{stderr}");
    let base = format!(
        "todo-base/python-runtime:{}",
        bases["identity"].as_str().unwrap()
    );
    let tag = format!("todo-fixture-outdated:{}", std::process::id());
    let context = root().join("tests/fixtures/supply");
    let out = Command::new("docker")
        .args(["build", "--quiet", "--build-arg"])
        .arg(format!("BASE={base}"))
        .args(["--tag", &tag])
        .arg(&context)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = out_dir("outdated");
    let (ok, report, stderr) = json(&[
        "sbom",
        "--gate",
        "--json",
        "--out",
        &dir,
        "--only",
        "backend",
        "--image",
        &format!("backend={tag}"),
    ]);
    docker(&["image", "rm", &tag]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!ok, "the gate passed an outdated libssl3:\n{stderr}");
    let row = gate_row(&report, "backend");
    assert_eq!(row["result"], "FAIL", "{row}");
    let finding = row["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["package"] == "libssl3")
        .unwrap_or_else(|| panic!("libssl3 not named: {row}"));
    assert_eq!(finding["installed"], "3.0.20-1~deb12u2");
    assert_eq!(finding["archive"], "bookworm-security");
    assert_eq!(finding["source"], "openssl");
    let fixed = finding["fixed"].as_str().unwrap();
    let detail = row["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("libssl3 3.0.20-1~deb12u2 -> {fixed}")),
        "{detail}"
    );
    assert!(stderr.contains("libssl3"), "{stderr}");
}
