//! Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group, so the xtask and
//! every docker, buildx and compose child it runs get it at the same moment. Each command is
//! interrupted at several moments spread over its run (the moments are printed, so a failure can
//! be replayed) and must exit 130 and leave nothing behind, every time.

mod support;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{docker, root};

/// Runs the xtask in a process group of its own, as a shell runs a foreground job, sends SIGINT
/// to that group after `delay`, and returns the exit code (None: killed by a signal) and stderr.
fn interrupt_after(args: &[&str], delay: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run xtask");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        all
    });
    std::thread::sleep(delay);
    let group = format!("-{}", child.id());
    let sent = Command::new("kill")
        .args(["-INT", "--", &group])
        .status()
        .unwrap();
    assert!(sent.success() || child.try_wait().unwrap().is_some());
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            panic!("{args:?} did not stop within 120 s of Ctrl-C at {delay:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status.code(), reader.join().unwrap())
}

/// `n` moments spread over `span`, shifted by a seed from the clock so that runs try different
/// moments; the seed is printed with every failure.
fn moments(n: u32, span: Duration) -> (u64, Vec<Duration>) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let step = span / n;
    let jitter = |i: u32| {
        let x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(i as u64 * 1442695040888963407);
        (x >> 33) as f64 / (1u64 << 31) as f64
    };
    let at = (0..n).map(|i| step * i + step.mul_f64(jitter(i))).collect();
    (seed, at)
}

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
        let (code, stderr) = interrupt_after(&args, delay);
        assert_eq!(
            code,
            Some(130),
            "seed {seed}, Ctrl-C at {delay:?}:\n{stderr}"
        );
        assert!(
            !stderr.contains("error:"),
            "seed {seed}, at {delay:?}:\n{stderr}"
        );
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
    // A smoke run takes 30 to 70 s here: every moment falls inside it, from the first container
    // to the image checks.
    let (seed, at) = moments(6, Duration::from_secs(30));
    for delay in at {
        let (code, stderr) = interrupt_after(&["smoke"], delay);
        assert_eq!(
            code,
            Some(130),
            "seed {seed}, Ctrl-C at {delay:?}:\n{stderr}"
        );
        assert!(
            !stderr.contains("error:"),
            "seed {seed}, at {delay:?}:\n{stderr}"
        );
        // The run's own label, so that smoke runs of other checkouts on this engine do not
        // count; a run stopped before it printed its id had started nothing.
        let Some(run) = stderr
            .lines()
            .find_map(|l| l.strip_prefix("smoke run "))
            .and_then(|l| l.split_whitespace().next())
        else {
            continue;
        };
        let filter = format!("label=todo-chatbot.smoke.run={run}");
        let left = (
            docker(&["ps", "--all", "--quiet", "--filter", &filter]),
            docker(&["network", "ls", "--quiet", "--filter", &filter]),
            docker(&["volume", "ls", "--quiet", "--filter", &filter]),
        );
        assert_eq!(
            left,
            (String::new(), String::new(), String::new()),
            "seed {seed}, Ctrl-C at {delay:?} left containers, networks or volumes:\n{stderr}"
        );
    }
}
