//! What a run owns in the engine, one model for every command that starts containers: `smoke`
//! (and `release`, which runs the smoke checks on its images), `dev`, `up` and the browser test
//! (`tests/e2e/run.mjs`, whose `tests/e2e/owned.mjs` writes the same labels as [`Run::labels`]).
//!
//! - A run has an id, `<start, hex>-<pid>`, and every container, network and volume it makes
//!   carries the labels [`OWNER`] (its kind), [`RUN`], [`PID`], [`STARTED`] and [`KEEP`].
//! - A [`Guard`] removes what the run owns when it is dropped: on success, on an error, after a
//!   panic and on the first Ctrl-C, all of which unwind to it.
//! - A second Ctrl-C (which exits at once) and a kill run no destructor. What such a run left is
//!   reaped ([`reap`]) by the next run of its kind, by `cargo xtask test` for the browser test, or
//!   on request (`down --leftovers`; `smoke --clean` takes kept runs too): everything of runs whose
//!   process is gone, never a live run's, and a kept run's only when asked.
//!
//! `release` owns no container of its own: its smoke checks are a smoke run, and what else it
//! makes (local tags, pushed images, the record, the SBOMs under target/xtask/release) is its
//! result, not something to remove.
//!
//! The compose stacks of `dev` and `up` are the exception in how they are labelled, not in what
//! happens to them: compose recreates a container whose configuration changed, so a per-run
//! label in the compose files would make every `up` recreate the database. Their identity is the
//! compose project (its `com.docker.compose.project` label, with [`OWNER`] saying `dev` or `up`),
//! one per checkout and kind; whether a run of it still lives is known by its run lock (`dev`), and
//! the run's guard also starts a watcher process that removes the project the moment the run's
//! process ends without disarming it, however it ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::dev::stack::inspect_containers;
use crate::docker::docker;
use crate::interrupt;

/// The label every container, network and volume a run makes carries, valued with its kind...
pub const OWNER: &str = "todo-chatbot.owner";
/// ...and these, which say which run made it, from which process, when, and whether it asked to
/// stay (`smoke --keep`, an e2e run kept for a look).
pub const RUN: &str = "todo-chatbot.run";
pub const PID: &str = "todo-chatbot.pid";
pub const STARTED: &str = "todo-chatbot.started";
pub const KEEP: &str = "todo-chatbot.keep";

/// A run whose process still lives is left alone, unless it is older than this: no run of a
/// labelled kind lasts that long, so its process id now belongs to something else.
const MAX_RUN_AGE_SECONDS: u64 = 2 * 3600;

/// Which command a run belongs to: the value of its [`OWNER`] label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `cargo xtask smoke`, and the smoke checks of `release`.
    Smoke,
    /// `cargo xtask dev`: a compose project.
    Dev,
    /// `cargo xtask up`: a compose project.
    Up,
    /// The browser test, `tests/e2e/run.mjs`.
    E2e,
}

impl Kind {
    pub fn owner(self) -> &'static str {
        match self {
            Kind::Smoke => "smoke",
            Kind::Dev => "dev",
            Kind::Up => "up",
            Kind::E2e => "e2e",
        }
    }

    /// The folder of this kind's run folders (files a run keeps while it lasts, such as its
    /// environment files with their secrets), under the project root.
    fn runs_dir(self, root: &Path) -> PathBuf {
        root.join("target/xtask").join(self.owner())
    }
}

pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One run of a labelled kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub kind: Kind,
    pub id: String,
    pub pid: u32,
    pub started: u64,
    pub keep: bool,
}

impl Run {
    /// This process's run of `kind`, starting now.
    pub fn new(kind: Kind, keep: bool) -> Run {
        let started = now_seconds();
        let pid = std::process::id();
        Run {
            kind,
            id: format!("{started:x}-{pid}"),
            pid,
            started,
            keep,
        }
    }

    /// `NAME=VALUE` for each label of the run.
    pub fn labels(&self) -> Vec<String> {
        vec![
            format!("{OWNER}={}", self.kind.owner()),
            format!("{RUN}={}", self.id),
            format!("{PID}={}", self.pid),
            format!("{STARTED}={}", self.started),
            format!("{KEEP}={}", u8::from(self.keep)),
        ]
    }

    /// The labels as `docker run`/`network create` arguments.
    pub fn label_args(&self) -> Vec<String> {
        self.labels()
            .into_iter()
            .flat_map(|l| ["--label".to_string(), l])
            .collect()
    }

    /// The run's folder under the project root; made by whoever needs it, removed with the run.
    pub fn dir(&self, root: &Path) -> PathBuf {
        self.kind.runs_dir(root).join(&self.id)
    }

    /// A run id is `<start, hex>-<pid>`: what a leftover folder says about its run. A kept run's
    /// folder goes when its process ends, so a folder left is never a kept run's.
    fn from_id(kind: Kind, id: &str) -> Option<Run> {
        let (started, pid) = id.split_once('-')?;
        Some(Run {
            kind,
            id: id.to_string(),
            pid: pid.parse().ok()?,
            started: u64::from_str_radix(started, 16).ok()?,
            keep: false,
        })
    }

    /// The run as a leftover's labels describe it (`ID|run|pid|started|keep`).
    fn from_labels(kind: Kind, line: &str) -> Option<Run> {
        let fields: Vec<&str> = line.split('|').collect();
        Some(Run {
            kind,
            id: fields.get(1).filter(|s| !s.is_empty())?.to_string(),
            pid: fields.get(2)?.parse().ok()?,
            started: fields.get(3)?.parse().ok()?,
            keep: fields.get(4) == Some(&"1"),
        })
    }
}

/// Whether a run's leftovers go. `before` is the start of the run that asks (only older runs are
/// reaped, so two runs starting together never touch each other), or None to take every run that
/// is over, kept ones included (`smoke --clean`).
pub fn should_reap(run: &Run, before: Option<u64>, now: u64, alive: bool) -> bool {
    let ancient = now.saturating_sub(run.started) > MAX_RUN_AGE_SECONDS;
    if alive && !ancient {
        return false;
    }
    match before {
        Some(start) => run.started <= start && !run.keep,
        None => true,
    }
}

fn alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// Removes every container (with its anonymous volumes), network and volume labelled with the
/// run `id`, in that order (a network or volume in use cannot go).
pub fn remove_run(id: &str) {
    let filter = format!("label={RUN}={id}");
    if let Ok(ids) = docker(["ps", "--all", "--quiet", "--filter", &filter])
        .cleanup()
        .read()
    {
        let ids: Vec<&str> = lines(&ids).collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "--force", "--volumes"];
            args.extend(ids);
            let _ = docker(&args).cleanup().read();
        }
    }
    for (what, quiet) in [("network", "--quiet"), ("volume", "--quiet")] {
        if let Ok(ids) = docker([what, "ls", quiet, "--filter", &filter])
            .cleanup()
            .read()
        {
            for id in lines(&ids) {
                let _ = docker([what, "rm", id]).cleanup().read();
            }
        }
    }
}

/// Removes the containers, networks, volumes and run folders of `kind`'s runs that are over (see
/// [`should_reap`]); returns the run ids removed. `root` is the project root, where the run
/// folders are.
pub fn reap(kind: Kind, root: &Path, before: Option<u64>) -> Result<Vec<String>> {
    // No `.ID` first: volumes have none, and a template that names it fails on the first volume.
    let format = format!(
        "-|{{{{.Label \"{RUN}\"}}}}|{{{{.Label \"{PID}\"}}}}|{{{{.Label \"{STARTED}\"}}}}|{{{{.Label \"{KEEP}\"}}}}"
    );
    let filter = format!("label={OWNER}={}", kind.owner());
    let mut found = String::new();
    for list in [
        &["ps", "--all"][..],
        &["network", "ls"][..],
        &["volume", "ls"][..],
    ] {
        let args = [list, &["--filter", &filter, "--format", &format]].concat();
        found.push_str(&docker(&args).cleanup().read()?);
        found.push('\n');
    }
    let now = now_seconds();
    let mut runs: Vec<Run> = lines(&found)
        .filter_map(|l| Run::from_labels(kind, l))
        .collect();
    runs.sort_by(|a, b| a.id.cmp(&b.id));
    runs.dedup_by(|a, b| a.id == b.id);
    let mut reaped = Vec::new();
    for run in runs {
        if should_reap(&run, before, now, alive(run.pid)) {
            remove_run(&run.id);
            let _ = std::fs::remove_dir_all(run.dir(root));
            reaped.push(run.id);
        }
    }
    // A run killed before it made anything in the engine left only its folder, with its secrets.
    let folders = std::fs::read_dir(kind.runs_dir(root)).into_iter().flatten();
    for entry in folders.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(run) = Run::from_id(kind, &name) {
            if should_reap(&run, before, now, alive(run.pid)) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(reaped)
}

/// Reaps `kind`'s runs that are over (their process gone, not kept), saying what went.
pub fn reap_finished(kind: Kind, root: &Path) -> Result<()> {
    let reaped = reap(kind, root, Some(now_seconds()))?;
    if !reaped.is_empty() {
        eprintln!(
            "removed what killed {} runs left behind: {}",
            kind.owner(),
            reaped.join(", ")
        );
    }
    Ok(())
}

/// Reaps the finished runs of `kind` until nothing of them has shown for `quiet`, at most for
/// `limit`: after a run stopped by Ctrl-C, a docker call it cut off may still have a create in the
/// engine, which lands after the run removed its things.
pub fn reap_until_quiet(kind: Kind, root: &Path, quiet: Duration, limit: Duration) -> Result<()> {
    let begin = std::time::Instant::now();
    let mut last_found = begin;
    reap_finished(kind, root)?;
    while last_found.elapsed() < quiet && begin.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(500));
        if !reap(kind, root, Some(now_seconds()))?.is_empty() {
            eprintln!(
                "removed what a stopped {} run's late docker call made",
                kind.owner()
            );
            last_found = std::time::Instant::now();
        }
    }
    Ok(())
}

/// What a [`Guard`] removes.
enum Owned {
    /// Everything labelled with the run, and its folder.
    Run { run: Run, root: PathBuf },
    /// A compose project: containers, networks, and the volumes when `volumes`.
    Project { name: String, volumes: bool },
}

/// Removes what a run owns when dropped (on success, on an error, after a panic, on the first
/// Ctrl-C), unless disarmed or kept. A kept labelled run keeps its containers, networks and
/// volumes, never its folder: that holds its secrets.
pub struct Guard {
    owned: Owned,
    armed: bool,
    watcher: Option<Watcher>,
    /// A compose project's lock, which its watcher holds too (see [`Guard::project`]).
    _lock: Option<crate::lock::FileLock>,
}

impl Guard {
    /// The guard of a labelled run. Nothing watches it: a killed run's things wait for the next
    /// run of its kind, which reaps them.
    pub fn run(run: Run, root: &Path) -> Guard {
        Guard {
            owned: Owned::Run {
                run,
                root: root.to_path_buf(),
            },
            armed: true,
            watcher: None,
            _lock: None,
        }
    }

    /// The guard of a compose project, with a watcher that removes it if this process ends
    /// without the guard's say (a second Ctrl-C, a kill). Without `volumes` the project's volumes
    /// stay: the local database of `up` keeps its data for the next `up`.
    ///
    /// One run of a project at a time, its clean-up included: the guard locks the project, and
    /// the watcher holds the same lock until it is done, so that a new run of the project waits
    /// for a killed run's watcher instead of having its fresh stack taken down by it.
    pub fn project(name: &str, volumes: bool) -> Result<Guard> {
        let path = std::env::temp_dir().join(format!("todo-stack-{name}.lock"));
        let lock = crate::lock::FileLock::wait_at(&path, |pid| {
            eprintln!(
                "waiting for another run of the stack {name} (pid {}), or for the clean-up \
                 after it was killed (at most {} s), to finish",
                crate::lock::pid_text(pid),
                WATCH_SECONDS + 30
            );
        })?;
        let watcher = Watcher::start(name, volumes, lock.file());
        Ok(Guard {
            owned: Owned::Project {
                name: name.to_string(),
                volumes,
            },
            armed: true,
            watcher,
            _lock: Some(lock),
        })
    }

    /// What the run made stays: the guard and its watcher let go.
    pub fn disarm(&mut self) {
        self.armed = false;
        if let Some(watcher) = self.watcher.take() {
            watcher.release();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        match &self.owned {
            Owned::Run { run, root } => {
                // The run's folder holds its secrets: it goes even when the run's things stay.
                let _ = std::fs::remove_dir_all(run.dir(root));
                if self.armed && !run.keep {
                    remove_run(&run.id);
                }
            }
            Owned::Project { name, volumes } if self.armed => {
                let start = Instant::now();
                match interrupt::interrupted() {
                    true => eprintln!(
                        "stopping the stack {name} (a second Ctrl-C exits at once; the removal \
                         goes on)"
                    ),
                    false => eprintln!("removing the stack {name}"),
                }
                match remove_project(name, 5, *volumes) {
                    Ok(()) => {
                        if let Some(watcher) = self.watcher.take() {
                            watcher.release();
                        }
                        eprintln!(
                            "stack removed in {:.1} s: {}",
                            start.elapsed().as_secs_f64(),
                            match volumes {
                                true => "no container, network or volume of it is left",
                                false =>
                                    "no container or network of it is left; its volumes are kept",
                            }
                        )
                    }
                    Err(err) => eprintln!("error: {err:#}"),
                }
            }
            Owned::Project { .. } => {}
        }
    }
}

/// How long a killed run's watcher keeps looking for containers of its project after its first
/// `down`.
const WATCH_SECONDS: u32 = 20;

/// A shell that reads one line from a pipe whose other end only this process holds: at this
/// process's end, however it ends, the read returns, and unless the line was `done` the shell
/// runs `docker compose down` for the project, then looks again every 2 s for WATCH_SECONDS and
/// takes down what it finds. A `compose up` killed with the run can leave create requests in
/// the engine that land after the first `down` listed the project: 2 s later was too soon on a
/// loaded machine (a CI run found such a container 90 s on). It is in a process group of its
/// own, so that the terminal's Ctrl-C does not reach it, and its stdout is the project's lock
/// file, so that it holds the lock until it ends.
struct Watcher {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
}

impl Watcher {
    fn start(project: &str, volumes: bool, lock: &std::fs::File) -> Option<Watcher> {
        use std::os::unix::process::CommandExt;
        let script = format!(
            "IFS= read -r line; [ \"$line\" = done ] && exit 0; \
             down() {{ docker compose --project-name \"$0\" down $1 --remove-orphans \
             --timeout 5 >/dev/null 2>&1; }}; \
             left() {{ [ -n \"$(docker ps --all --quiet --filter \
             label=com.docker.compose.project=\"$0\" 2>/dev/null)\" ]; }}; \
             down \"$@\"; i=0; while [ $i -lt {WATCH_SECONDS} ]; do sleep 2; i=$((i+2)); \
             if left; then down \"$@\"; fi; done"
        );
        let flag = if volumes { "--volumes" } else { "" };
        let mut child = Command::new("sh")
            .args(["-c", &script, project, flag])
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(lock.try_clone().ok()?)
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .ok()?;
        let stdin = child.stdin.take()?;
        Some(Watcher { child, stdin })
    }

    /// Tells the watcher that there is nothing left to do.
    fn release(mut self) {
        use std::io::Write;
        let _ = self.stdin.write_all(b"done\n");
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

/// What a compose project has left in the engine: container ids, network names, volume names.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.volumes.is_empty()
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.containers.len(), "container"),
            (self.networks.len(), "network"),
            (self.volumes.len(), "volume"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}{}", if n == 1 { "" } else { "s" }));
            }
        }
        parts.join(", ")
    }
}

/// Everything of a compose project still in the engine, found by compose's project label; the
/// anonymous volumes of its containers are included (compose does not label those).
pub fn leftovers(project: &str) -> Result<Leftovers> {
    let filter = format!("label=com.docker.compose.project={project}");
    let list = |s: String| -> Vec<String> { lines(&s).map(String::from).collect() };
    let containers = list(
        docker(["ps", "--all", "--quiet", "--no-trunc", "--filter", &filter])
            .cleanup()
            .read()?,
    );
    let mut volumes = list(
        docker(["volume", "ls", "--quiet", "--filter", &filter])
            .cleanup()
            .read()?,
    );
    for entry in inspect_containers(&containers)? {
        volumes.extend(entry.volumes);
    }
    volumes.sort();
    volumes.dedup();
    let networks = list(
        docker([
            "network",
            "ls",
            "--filter",
            &filter,
            "--format",
            "{{.Name}}",
        ])
        .cleanup()
        .read()?,
    );
    Ok(Leftovers {
        containers,
        networks,
        volumes,
    })
}

/// Removes a compose project: `docker compose down` (containers, networks, and with `volumes`
/// every volume, named or anonymous), then whatever it missed, by label. Without `volumes` the
/// volumes stay. Runs in a process group of its own, so that a second Ctrl-C on the terminal,
/// which ends the xtask at once, does not stop the clean-up half-way.
pub fn remove_project(project: &str, timeout_seconds: u32, volumes: bool) -> Result<()> {
    use std::os::unix::process::CommandExt;
    // The anonymous volumes of the project's containers (the dev frontend's `node_modules` and
    // `.next`, hundreds of MB) go even when the named ones stay: no later container ever mounts
    // them again, and once the containers are gone nothing names them. So they are listed here,
    // while the containers still say which they are.
    let anonymous: Vec<String> = if volumes {
        vec![]
    } else {
        leftovers(project)?
            .volumes
            .into_iter()
            .filter(|v| is_anonymous(v))
            .collect()
    };
    let timeout = timeout_seconds.to_string();
    let mut args = vec!["compose", "--project-name", project, "down"];
    if volumes {
        args.push("--volumes");
    }
    args.extend(["--remove-orphans", "--timeout", &timeout]);
    // `down` by project name alone needs no compose file and no environment: the containers'
    // labels say what belongs to the project.
    let status = Command::new("docker")
        .args(&args)
        // A folder with no compose file in it or above it, which compose would otherwise load.
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .status()
        .context("cannot run `docker compose down`")?;
    let remaining = || -> Result<Leftovers> {
        let mut left = leftovers(project)?;
        if !volumes {
            left.volumes.retain(|v| is_anonymous(v));
        }
        Ok(left)
    };
    let remove = |left: &Leftovers| {
        for id in &left.containers {
            // `--volumes` removes a container's anonymous volumes only: named ones stay.
            let _ = docker(["rm", "--force", "--volumes", id]).cleanup().read();
        }
        for network in &left.networks {
            let _ = docker(["network", "rm", network]).cleanup().read();
        }
        for volume in &left.volumes {
            let _ = docker(["volume", "rm", "--force", volume]).cleanup().read();
        }
    };
    let left = remaining()?;
    if !status.success() || !left.is_empty() {
        remove(&left);
    }
    // A `compose up` stopped by Ctrl-C may have left create requests in the engine, which land
    // after `down` listed the project (seconds later on a busy machine): wait for each one
    // compose's output names, then look once more after a moment for any it did not name.
    for name in take_unanswered(project) {
        let begin = std::time::Instant::now();
        while begin.elapsed() < LATE_CREATE_WAIT {
            if let Ok(id) = docker(["container", "inspect", "--format", "{{.Id}}", &name])
                .cleanup()
                .read()
            {
                remove(&Leftovers {
                    containers: vec![id.trim().to_string()],
                    ..Default::default()
                });
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
    for volume in &anonymous {
        let _ = docker(["volume", "rm", "--force", volume]).cleanup().read();
    }
    std::thread::sleep(Duration::from_millis(1500));
    let late = remaining()?;
    if !late.is_empty() {
        remove(&late);
    }
    let left = remaining()?;
    if !left.is_empty() {
        bail!(
            "could not remove {} of compose project {project}: remove them with `docker compose \
             --project-name {project} down{}`",
            left.describe(),
            if volumes { " --volumes" } else { "" }
        );
    }
    Ok(())
}

/// True for the name the engine gives an anonymous volume: 64 hexadecimal digits. Compose
/// names its named volumes `<project>_<name>`.
fn is_anonymous(volume: &str) -> bool {
    volume.len() == 64 && volume.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How long the removal of a stack waits for a create request that a stopped `compose up` sent
/// and saw no answer to. The engine finishes such a request whatever became of its client; on
/// an idle machine in well under a second, on a loaded one in seconds.
const LATE_CREATE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The containers of stopped `compose up` runs whose create requests may still be in the engine.
static UNANSWERED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Notes the containers that compose's output (`Container NAME  Creating`, then `Created`,
/// `Starting`, `Error`...) shows as sent to the engine with no answer seen: compose was stopped
/// while their create requests were in the engine.
pub fn note_unanswered(compose_stderr: &str) {
    let mut last: Vec<(String, String)> = Vec::new();
    for line in compose_stderr.lines() {
        let mut words = line.split_whitespace();
        let (Some("Container"), Some(name), Some(state)) =
            (words.next(), words.next(), words.next())
        else {
            continue;
        };
        match last.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = state.to_string(),
            None => last.push((name.to_string(), state.to_string())),
        }
    }
    let mut unanswered = UNANSWERED.lock().unwrap_or_else(|e| e.into_inner());
    for (name, state) in last {
        if state == "Creating" && !unanswered.contains(&name) {
            unanswered.push(name);
        }
    }
}

/// The unanswered creates noted for `project` (compose names its containers `PROJECT-...`),
/// forgotten as they are handed out.
fn take_unanswered(project: &str) -> Vec<String> {
    let prefix = format!("{project}-");
    let mut unanswered = UNANSWERED.lock().unwrap_or_else(|e| e.into_inner());
    let (ours, others): (Vec<String>, Vec<String>) =
        unanswered.drain(..).partition(|n| n.starts_with(&prefix));
    *unanswered = others;
    ours
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(started: u64, keep: bool) -> Run {
        Run {
            kind: Kind::Smoke,
            id: "r".into(),
            pid: 7,
            started,
            keep,
        }
    }

    #[test]
    fn only_older_finished_runs_are_reaped() {
        let now = 10_000;
        // A crashed older run goes; a live one, a newer one and a kept one stay.
        assert!(should_reap(&run(9_000, false), Some(9_500), now, false));
        assert!(!should_reap(&run(9_000, false), Some(9_500), now, true));
        assert!(!should_reap(&run(9_600, false), Some(9_500), now, false));
        assert!(!should_reap(&run(9_000, true), Some(9_500), now, false));
        // `--clean` takes kept runs too, never a live one.
        assert!(should_reap(&run(9_000, true), None, now, false));
        assert!(!should_reap(&run(9_000, false), None, now, true));
        // A process id that lives on after hours belongs to another process by now.
        assert!(should_reap(&run(1_000, false), Some(9_500), now, true));
    }

    #[test]
    fn only_engine_named_volumes_count_as_anonymous() {
        assert!(is_anonymous(
            "d08a6e571045de2728483a5c197ebcf7021993067d2fd0d89a3227817510e7ee"
        ));
        assert!(!is_anonymous("todo-chatbot_db-data"));
        assert!(!is_anonymous(&"g".repeat(64)));
    }

    #[test]
    fn run_ids_say_when_and_by_whom() {
        let run = Run::from_id(Kind::E2e, "6b073145-19209").unwrap();
        assert_eq!(
            (run.started, run.pid, run.keep),
            (0x6b07_3145, 19209, false)
        );
        assert_eq!(Run::from_id(Kind::E2e, "notes"), None);
        assert_eq!(Run::from_id(Kind::E2e, "zz-1"), None);
        // A new run's id reads back as the same run.
        let new = Run::new(Kind::Smoke, true);
        let back = Run::from_id(Kind::Smoke, &new.id).unwrap();
        assert_eq!((back.started, back.pid), (new.started, new.pid));
    }

    #[test]
    fn leftover_labels_are_parsed() {
        assert_eq!(
            Run::from_labels(Kind::Smoke, "abc|r1|42|100|1"),
            Some(Run {
                kind: Kind::Smoke,
                id: "r1".into(),
                pid: 42,
                started: 100,
                keep: true
            })
        );
        assert_eq!(Run::from_labels(Kind::Smoke, "abc||42|100|0"), None);
        assert_eq!(Run::from_labels(Kind::Smoke, "abc|r1|x|100|0"), None);
    }

    #[test]
    fn every_label_of_a_run_is_written_and_read_back() {
        let run = Run::new(Kind::E2e, false);
        let labels = run.labels();
        assert!(labels.contains(&"todo-chatbot.owner=e2e".to_string()));
        let value = |key: &str| {
            labels
                .iter()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap()
                .to_string()
        };
        let line = format!(
            "id|{}|{}|{}|{}",
            value(RUN),
            value(PID),
            value(STARTED),
            value(KEEP)
        );
        assert_eq!(Run::from_labels(Kind::E2e, &line), Some(run));
    }

    #[test]
    fn leftovers_describe_what_remains() {
        let left = Leftovers {
            containers: vec!["a".into(), "b".into()],
            networks: vec![],
            volumes: vec!["v".into()],
        };
        assert_eq!(left.describe(), "2 containers, 1 volume");
        assert!(Leftovers::default().is_empty());
    }

    #[test]
    fn creates_compose_sent_without_an_answer_are_noted_per_project() {
        note_unanswered(
            " Network p_net  Created\n Container p-db-1  Creating\n Container p-db-1  Created\n \
             Container p-backend-1  Creating\n Container q-frontend-1  Creating\n",
        );
        assert_eq!(take_unanswered("p"), vec!["p-backend-1".to_string()]);
        assert_eq!(take_unanswered("p"), Vec::<String>::new());
        assert_eq!(take_unanswered("q"), vec!["q-frontend-1".to_string()]);
    }
}
