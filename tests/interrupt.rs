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
        "tests/fixtures/build/slow.toml",
        "build",
        "--no-cache",
        "--progress",
        "plain",
    ];
    // A tag that a run cut off from its test (its test binary killed) left would read as this
    // run's: the test starts without one.
    let _ = Command::new("docker")
        .args(["image", "rm", "--force", "todo-fixture-slow:latest"])
        .output();
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

/// Runs `cargo xtask ARGS` `n` times, each interrupted at a moment within `span`, and asserts
/// exit 130 and that nothing labelled `<label>=<run id>` is left, the run id being what the run
/// printed after `id_prefix` on stderr. A run that ended before its moment got no Ctrl-C (other
/// tests check such runs); one stopped before it printed its id had started nothing. The run's
/// own label, so that runs of other checkouts on this engine do not count.
fn ctrl_c_leaves_nothing(
    what: &str,
    args: &[&str],
    n: u32,
    span: Duration,
    id_prefix: &str,
    label: &str,
) {
    support::built();
    let (seed, at) = moments(n, span);
    for delay in at {
        let (sent, code, stderr) = interrupt_after(&root(), args, delay);
        if !sent {
            continue;
        }
        assert_stopped_by_ctrl_c(what, seed, delay, code, &stderr);
        let Some(run) = run_id(&stderr, id_prefix) else {
            continue;
        };
        let left = left_behind(&format!("{label}={run}"));
        assert_eq!(
            left, "",
            "{what}, seed {seed}, Ctrl-C at {delay:?} left containers, networks or volumes:\n{stderr}"
        );
    }
}

#[test]
fn ctrl_c_to_the_process_group_stops_smoke_with_130_and_leaves_nothing() {
    // A smoke run takes 27 to 70 s here: the moments fall inside it, from the first container
    // to the image checks.
    let span = Duration::from_secs(26);
    ctrl_c_leaves_nothing(
        "smoke",
        &["smoke"],
        6,
        span,
        "smoke run ",
        "todo-chatbot.run",
    );
}

#[test]
fn ctrl_c_to_the_process_group_stops_the_e2e_run_with_130_and_leaves_nothing() {
    // One run takes about 20 s here (a no-op build, the stack healthy in about 5 s, the browser
    // scenario in about 10 s): the moments fall from the build to the last scenario step.
    let (args, span) = (["test", "--e2e-only"], Duration::from_secs(18));
    ctrl_c_leaves_nothing("e2e", &args, 10, span, "e2e run ", "todo-chatbot.run");
}
