//! Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group, so the xtask and
//! every docker, buildx and compose child it runs get it at the same moment. Each command is
//! interrupted at several moments spread over its run (the moments are printed, so a failure can
//! be replayed) and must exit 130 and leave nothing behind, every time.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{assert_stopped_by_ctrl_c, interrupt_after, left_behind, moments, root, run_id};

#[test]
fn ctrl_c_to_the_process_group_stops_a_build_with_130_and_tags_nothing() {
    let args = [
        "--config",
        "xtask/tests/fixtures/build/slow.toml",
        "build",
        "--no-cache",
        "--progress",
        "plain",
    ];
    // From before the builder starts to well inside the fixture's two-minute step.
    let (seed, at) = moments(10, Duration::from_secs(8));
    for delay in at {
        let (sent, code, stderr) = interrupt_after(&root(), &args, delay);
        assert!(
            sent,
            "seed {seed}: the build ended before {delay:?}:\n{stderr}"
        );
        assert_stopped_by_ctrl_c("build", seed, delay, code, &stderr);
        let tagged = Command::new("docker")
            .args(["image", "inspect", "todo-fixture-slow:latest"])
            .output()
            .unwrap();
        assert!(
            !tagged.status.success(),
            "seed {seed}, at {delay:?}: an image was tagged"
        );
    }
}

#[test]
fn ctrl_c_to_the_process_group_stops_smoke_with_130_and_leaves_nothing() {
    support::built();
    // A smoke run takes 27 to 70 s here: the moments fall inside it, from the first container
    // to the image checks.
    let (seed, at) = moments(6, Duration::from_secs(26));
    for delay in at {
        // A run that ended before its moment got no Ctrl-C, and other tests check such runs.
        let (sent, code, stderr) = interrupt_after(&root(), &["smoke"], delay);
        if !sent {
            continue;
        }
        assert_stopped_by_ctrl_c("smoke", seed, delay, code, &stderr);
        // The run's own label, so that smoke runs of other checkouts on this engine do not
        // count; a run stopped before it printed its id had started nothing.
        let Some(run) = run_id(&stderr, "smoke run ") else {
            continue;
        };
        let left = left_behind(&format!("todo-chatbot.smoke.run={run}"));
        assert_eq!(
            left, "",
            "seed {seed}, Ctrl-C at {delay:?} left containers, networks or volumes:\n{stderr}"
        );
    }
}

#[test]
fn ctrl_c_to_the_process_group_stops_the_e2e_run_with_130_and_leaves_nothing() {
    support::built();
    // One run takes about 20 s here (a no-op build, the stack healthy in about 5 s, the browser
    // scenario in about 10 s): the moments fall from the build to the last scenario step.
    let (seed, at) = moments(10, Duration::from_secs(18));
    for delay in at {
        let (sent, code, stderr) = interrupt_after(&root(), &["test", "--e2e-only"], delay);
        if !sent {
            continue;
        }
        assert_stopped_by_ctrl_c("e2e", seed, delay, code, &stderr);
        // A run stopped before it printed its id had started no stack.
        let Some(run) = run_id(&stderr, "e2e run ") else {
            continue;
        };
        let left = left_behind(&format!("todo-chatbot.run={run}"));
        assert_eq!(
            left, "",
            "seed {seed}, Ctrl-C at {delay:?} left containers, networks or volumes:\n{stderr}"
        );
    }
}
