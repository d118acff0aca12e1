//! The engine install plan, asked of apt in a real bookworm container: it must take Docker Engine,
//! buildx, compose and containerd from trixie and upgrade nothing of bookworm (an earlier plan with
//! `-t trixie` moved libc6, dpkg and base-files to trixie on every host it installed on).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{built, text, xtask};

/// The Python build base: a bookworm root file system with apt, made by the project's own recipe.
fn bookworm_image() -> String {
    built();
    let out = xtask(&["build", "--print"]);
    let plan: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("build --print is JSON");
    plan["bases"]["args"]["PYTHON_BUILD_IMAGE"]
        .as_str()
        .expect("the plan names the Python build base")
        .to_string()
}

#[test]
fn the_engine_install_upgrades_nothing_on_bookworm() {
    let out = xtask(&["doctor", "--install-plan", "--simulate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    assert!(script.contains("docker.io/trixie"), "{script}");

    let mut child = Command::new("docker")
        .args([
            "run",
            "--rm",
            "-i",
            "--user",
            "0",
            &bookworm_image(),
            "sh",
            "-s",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run docker");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let plan = text(&out.stdout);
    assert!(
        out.status.success(),
        "apt refused the plan:\n{plan}\n{}",
        text(&out.stderr)
    );

    assert!(
        plan.contains(" 0 upgraded,")
            || plan.starts_with("0 upgraded,")
            || plan.contains("\n0 upgraded,"),
        "{plan}"
    );
    let installs: Vec<&str> = plan.lines().filter(|l| l.starts_with("Inst ")).collect();
    // An upgrade reads `Inst NAME [OLD] (NEW ...)`; a new package has no bracket.
    let upgrades: Vec<&&str> = installs
        .iter()
        .filter(|l| {
            l.split_whitespace()
                .nth(2)
                .is_some_and(|w| w.starts_with('['))
        })
        .collect();
    assert!(
        upgrades.is_empty(),
        "the plan upgrades packages: {upgrades:#?}"
    );
    let allowed = ["docker.io", "docker-buildx", "docker-compose", "containerd"];
    for line in &installs {
        let name = line.split_whitespace().nth(1).unwrap();
        let from_trixie = line.contains("Debian:13") || line.contains("/trixie");
        assert!(
            !from_trixie || allowed.contains(&name),
            "{name} comes from trixie: {line}"
        );
    }
    for name in &allowed[..3] {
        assert!(
            installs
                .iter()
                .any(|l| l.split_whitespace().nth(1) == Some(name)),
            "{name} is not installed:\n{plan}"
        );
    }
}
