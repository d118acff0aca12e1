//! The running `dev` stack: service logs streamed with a prefix, sources watched, and each change
//! answered with what it needs (a measure of the hot reload, a rebuild of one service, or the
//! recreation of the services whose compose configuration changed).
//!
//! Threads only read (log lines, watcher events, HTTP probes) and send messages; this thread alone
//! prints and runs commands, as in `build`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use xshell::Shell;

use super::images;
use super::stack::{PsEntry, Stack};
use super::status::{status_of, Status};
use super::watch::{Batch, Change, Rules, Watcher};
use crate::build::Progress;
use crate::config::{BaseMode, Config, Image, ReloadLog};
use crate::docker::docker;
use crate::interrupt;

/// How long a service may take to be healthy again after a recreation.
const RECREATE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the tool waits for a service to answer after a source change before it says so.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// A reloading server that has not reacted this long after a change will not: the file is not
/// one it serves.
const REACTION_TIMEOUT: Duration = Duration::from_secs(3);

/// How the tool knows that a service serves a source change: which path to ask, and for servers
/// that restart, the log lines that say a restart began and ended (project.toml's `reload_path`
/// and `reload_log`).
#[derive(Debug, Clone)]
pub struct ReloadProbe {
    pub path: String,
    pub markers: Option<ReloadLog>,
}

pub fn reload_probe(image: &Image) -> ReloadProbe {
    ReloadProbe {
        path: image
            .reload_path
            .clone()
            .unwrap_or_else(|| image.health_path.clone()),
        markers: image.reload_log.clone(),
    }
}

pub enum Msg {
    Log {
        service: String,
        line: String,
        at: Instant,
    },
    Files(Batch),
    Answered {
        service: String,
        /// Which probe of the service: only the latest one's answer is reported.
        probe: u64,
        since_change: Option<Duration>,
        files: Vec<PathBuf>,
    },
    /// A probe got a server error (a page that does not compile): said once per probe.
    Failing {
        service: String,
        probe: u64,
        status: u16,
        files: Vec<PathBuf>,
    },
    /// A line for the bench's script or another helper to print.
    Note(String),
    /// The bench's script is done; the session ends as after Ctrl-C, but exits 0.
    Done,
}

/// A source change whose service has not answered yet.
struct Pending {
    at: Instant,
    files: Vec<PathBuf>,
    /// For restarting servers: when the restart was seen to begin.
    reacted: Option<Instant>,
}

/// Marker lines recently seen per service, so that a restart logged before the watcher's burst
/// arrives (the server's own watcher can be faster than the debouncer) still counts.
#[derive(Default, Clone, Copy)]
struct Seen {
    began: Option<Instant>,
    ended: Option<Instant>,
}

pub struct Session<'a> {
    pub sh: &'a Shell,
    pub config: &'a Config,
    pub stack: &'a Stack,
    pub mode: BaseMode,
    pub rules: Rules,
    pub probes: BTreeMap<String, ReloadProbe>,
    /// Host port of each service's container port.
    pub ports: BTreeMap<String, u16>,
    pub tx: Sender<Msg>,
    pub rx: Receiver<Msg>,
    /// Print the services' logs (the bench keeps them quiet).
    pub show_logs: bool,
    followers: BTreeMap<String, (String, Vec<Child>)>,
    pending: BTreeMap<String, Pending>,
    seen: BTreeMap<String, Seen>,
    services_config: serde_json::Value,
    last_status: BTreeMap<String, Status>,
    /// The number of the latest probe of each service.
    probes_started: BTreeMap<String, u64>,
    /// Services whose latest probe got a server error: the changed files, and until when the
    /// session waits for a log line naming the failing file.
    failing: BTreeMap<String, Failing>,
    /// Each service's latest log lines, to find the file a compile error names.
    recent: BTreeMap<String, std::collections::VecDeque<(Instant, String)>>,
    /// How many health checks in a row found no container of the stack.
    checks_without_stack: u32,
}

/// A service whose latest probe got a server error.
struct Failing {
    files: Vec<PathBuf>,
    status: u16,
    since: Instant,
    /// Whether the `dev:` line naming the failing file has been printed.
    said: bool,
}

/// How long a compile error's log lines may trail the error response before the line names the
/// changed files instead.
const FAILING_LOG_WAIT: Duration = Duration::from_secs(3);
/// How many log lines of each service are kept to find the failing file in.
const RECENT_LINES: usize = 200;

/// How a session ended.
pub enum End {
    Interrupted,
    Done,
    /// Every container of the stack went away under the session (`down --dev --force`).
    StackGone,
}

impl<'a> Session<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sh: &'a Shell,
        config: &'a Config,
        stack: &'a Stack,
        mode: BaseMode,
        rules: Rules,
        ports: BTreeMap<String, u16>,
        tx: Sender<Msg>,
        rx: Receiver<Msg>,
        show_logs: bool,
    ) -> Result<Session<'a>> {
        let probes = config
            .images
            .iter()
            .map(|i| (i.service.clone(), reload_probe(i)))
            .collect();
        let services_config = services_config(stack)?;
        Ok(Session {
            sh,
            config,
            stack,
            mode,
            rules,
            probes,
            ports,
            tx,
            rx,
            show_logs,
            followers: BTreeMap::new(),
            pending: BTreeMap::new(),
            seen: BTreeMap::new(),
            services_config,
            last_status: BTreeMap::new(),
            probes_started: BTreeMap::new(),
            failing: BTreeMap::new(),
            recent: BTreeMap::new(),
            checks_without_stack: 0,
        })
    }

    /// Follows the logs and the sources until Ctrl-C (or the bench's end).
    pub fn run(&mut self, poll: bool) -> Result<End> {
        let root = self.stack.root.clone();
        let roots: Vec<PathBuf> = self.rules.roots().iter().map(|r| root.join(r)).collect();
        let tx = self.tx.clone();
        let mut watcher = Watcher::start(&roots, poll, move |batch| {
            let _ = tx.send(Msg::Files(batch));
        })?;
        eprintln!(
            "dev: watching {} ({} folders{}); Ctrl-C stops the stack",
            self.rules
                .roots()
                .iter()
                .map(|r| format!("{}/", r.display()))
                .collect::<Vec<_>>()
                .join(", "),
            watcher.count(),
            if poll { ", polling" } else { "" }
        );
        self.follow_all()?;
        let mut last_check = Instant::now();
        loop {
            if interrupt::interrupted() {
                return Ok(End::Interrupted);
            }
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Msg::Log { service, line, at }) => self.log_line(&service, &line, at),
                Ok(Msg::Files(Ok(events))) => {
                    watcher.follow(&events)?;
                    let relative: Vec<(PathBuf, Instant)> = events
                        .into_iter()
                        .filter_map(|(p, at)| {
                            p.strip_prefix(&root).ok().map(|r| (r.to_path_buf(), at))
                        })
                        .collect();
                    for (change, files, at) in self.rules.reduce(&relative) {
                        self.on_change(change, files, at)?;
                    }
                }
                Ok(Msg::Files(Err(error))) => eprintln!("dev: the file watcher failed: {error}"),
                Ok(Msg::Answered {
                    service,
                    probe,
                    since_change,
                    files,
                }) => self.answered(&service, probe, since_change, &files),
                Ok(Msg::Failing {
                    service,
                    probe,
                    status,
                    files,
                }) => {
                    if self.probes_started.get(&service) == Some(&probe) {
                        self.failing.insert(
                            service.clone(),
                            Failing {
                                files,
                                status,
                                since: Instant::now(),
                                said: false,
                            },
                        );
                        self.name_failing_file(&service);
                    }
                }
                Ok(Msg::Note(text)) => eprintln!("{text}"),
                Ok(Msg::Done) => return Ok(End::Done),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(End::Interrupted),
            }
            self.expire_pending();
            self.expire_failing();
            if last_check.elapsed() > Duration::from_secs(2) {
                last_check = Instant::now();
                if self.check_health() {
                    eprintln!(
                        "dev: every container of the stack {} is gone; stopping",
                        self.stack.project
                    );
                    return Ok(End::StackGone);
                }
            }
        }
    }

    /// The latest probe of a service answered (or gave up): the time is measured from the change
    /// that probe was started for, so after a broken edit and its fix, from the fix.
    fn answered(
        &mut self,
        service: &str,
        probe: u64,
        since_change: Option<Duration>,
        files: &[PathBuf],
    ) {
        if self.probes_started.get(service) != Some(&probe) {
            return;
        }
        let failing = self.failing.remove(service);
        let files = show_files(files);
        match (since_change, failing) {
            (Some(d), Some(_)) => eprintln!(
                "dev: {service}: {files} changed; it works again, answering after {:.2} s",
                d.as_secs_f64()
            ),
            (Some(d), None) => eprintln!(
                "dev: {service}: {files} changed; answering again after {:.2} s",
                d.as_secs_f64()
            ),
            // Said already, with the failing file: the next edit starts a new probe.
            (None, Some(failing)) => {
                self.failing.insert(service.to_string(), failing);
            }
            (None, None) => eprintln!(
                "dev: {service}: {files} changed; no answer within {} s: see its log",
                ANSWER_TIMEOUT.as_secs()
            ),
        }
    }

    /// Says which file a failing service's log names (the compiler's `./app/page.tsx:12:3`), once;
    /// without such a line within [`FAILING_LOG_WAIT`], names the changed files.
    fn name_failing_file(&mut self, service: &str) {
        let Some(failing) = self.failing.get(service) else {
            return;
        };
        if failing.said {
            return;
        }
        let dir = self
            .config
            .image(service)
            .map(|i| i.context.clone())
            .unwrap_or_default();
        let recent = self.recent.get(service);
        // The error's lines come from the compile the change started: look at lines logged
        // since shortly before the failing answer.
        let since = failing.since.checked_sub(Duration::from_secs(30));
        let lines: Vec<&String> = recent
            .map(|r| {
                r.iter()
                    .filter(|(at, _)| since.is_none_or(|s| *at >= s))
                    .map(|(_, l)| l)
                    .collect()
            })
            .unwrap_or_default();
        let found = lines
            .iter()
            .enumerate()
            .find_map(|(i, line)| failing_file(line).map(|file| (i, file)));
        let message = match found {
            // The compiler's message follows the line with the file (`Error: Expected '</'...`):
            // wait a moment for it when it has not arrived yet.
            Some((i, _)) if i + 1 == lines.len() && failing.since.elapsed() < FAILING_LOG_WAIT => {
                return
            }
            Some((i, file)) => {
                let at = clean(lines[i]);
                let at = at.trim_start_matches(|c: char| !c.is_ascii_alphanumeric() && c != '.');
                let detail = lines
                    .get(i + 1)
                    .map(|l| clean(l))
                    .filter(|l| !l.is_empty() && !is_code_frame(l))
                    .map(|l| format!("{at}: {l}"))
                    .unwrap_or_else(|| at.to_string());
                format!(
                    "dev: {service}: {} does not compile ({detail}); it answers {} until the \
                     file is fixed",
                    dir.join(&file).display(),
                    failing.status
                )
            }
            None if failing.since.elapsed() >= FAILING_LOG_WAIT => format!(
                "dev: {service}: {} changed; it answers {}: see its log",
                show_files(&failing.files),
                failing.status
            ),
            None => return,
        };
        eprintln!("{message}");
        if let Some(failing) = self.failing.get_mut(service) {
            failing.said = true;
        }
    }

    fn expire_failing(&mut self) {
        let waiting: Vec<String> = self
            .failing
            .iter()
            .filter(|(_, f)| !f.said)
            .map(|(s, _)| s.clone())
            .collect();
        for service in waiting {
            self.name_failing_file(&service);
        }
    }

    fn log_line(&mut self, service: &str, line: &str, at: Instant) {
        let recent = self.recent.entry(service.to_string()).or_default();
        recent.push_back((at, line.to_string()));
        if recent.len() > RECENT_LINES {
            recent.pop_front();
        }
        if self.failing.contains_key(service) {
            self.name_failing_file(service);
        }
        if self.show_logs {
            let width = self
                .stack
                .services
                .iter()
                .map(String::len)
                .max()
                .unwrap_or(0);
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{service:>width$} | {line}");
        }
        let Some(log) = self.probes.get(service).and_then(|p| p.markers.as_ref()) else {
            return;
        };
        let seen = self.seen.entry(service.to_string()).or_default();
        if line.contains(&log.began) {
            seen.began = Some(at);
        } else if line.contains(&log.ended) {
            seen.ended = Some(at);
        } else if log.failed.as_ref().is_some_and(|f| line.contains(f)) {
            if let Some(p) = self.pending.remove(service) {
                eprintln!(
                    "dev: {service}: {} changed; the new code does not start (see its log above)",
                    show_files(&p.files)
                );
            }
            return;
        }
        self.advance(service);
    }

    /// Moves a pending reload on when its marker lines have been seen.
    fn advance(&mut self, service: &str) {
        let seen = self.seen.get(service).copied().unwrap_or_default();
        let Some(pending) = self.pending.get_mut(service) else {
            return;
        };
        if pending.reacted.is_none() {
            match seen.began {
                Some(began) if began >= pending.at => pending.reacted = Some(began),
                _ => return,
            }
        }
        let reacted = pending.reacted.unwrap_or(pending.at);
        if matches!(seen.ended, Some(ended) if ended >= reacted) {
            let pending = self.pending.remove(service).expect("pending");
            self.probe(service, pending.at, pending.files);
        }
    }

    fn expire_pending(&mut self) {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.reacted.is_none() && p.at.elapsed() > REACTION_TIMEOUT)
            .map(|(s, _)| s.clone())
            .collect();
        for service in expired {
            // The server did not restart: the files are not among those it serves (tests, docs),
            // or it is slow to say so (a loaded machine). A failing service is asked anyway: the
            // edit may be its fix, and without a probe nothing would say that it works again.
            let Some(pending) = self.pending.remove(&service) else {
                continue;
            };
            if self.failing.contains_key(&service) {
                self.probe(&service, pending.at, pending.files);
            }
        }
    }

    fn on_change(&mut self, change: Change, files: Vec<PathBuf>, at: Instant) -> Result<()> {
        match change {
            Change::Source(service) => {
                if self
                    .probes
                    .get(&service)
                    .is_some_and(|p| p.markers.is_some())
                {
                    self.pending.insert(
                        service.clone(),
                        Pending {
                            at,
                            files,
                            reacted: None,
                        },
                    );
                    self.advance(&service);
                } else {
                    self.probe(&service, at, files);
                }
            }
            Change::Rebuild(service) => {
                self.rebuild(&service, &files, at)?;
            }
            Change::Compose => self.compose_changed(&files, at)?,
        }
        Ok(())
    }

    /// Asks the service's probe path until it answers, in a thread; the answer comes back as a
    /// message with the time since the change, and a server error meanwhile (a page that does not
    /// compile) as a message of its own. A newer probe of the same service supersedes this one.
    fn probe(&mut self, service: &str, at: Instant, files: Vec<PathBuf>) {
        let (Some(probe), Some(&port)) = (self.probes.get(service), self.ports.get(service)) else {
            return;
        };
        let path = probe.path.clone();
        let tx = self.tx.clone();
        let number = self.probes_started.get(service).copied().unwrap_or(0) + 1;
        self.probes_started.insert(service.to_string(), number);
        let service = service.to_string();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut said_failing = false;
            let mut answered = false;
            while start.elapsed() < ANSWER_TIMEOUT {
                let answer = crate::smoke::probe::http_get(port, &path, Duration::from_secs(30));
                match answer.map(|a| a.status) {
                    Ok(status) if (200..400).contains(&status) => {
                        answered = true;
                        break;
                    }
                    Ok(status) if status >= 500 && !said_failing => {
                        said_failing = true;
                        let msg = Msg::Failing {
                            service: service.clone(),
                            probe: number,
                            status,
                            files: files.clone(),
                        };
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    _ => {}
                }
                // A failing page is rendered anew for every request: ask it less often.
                let pause = if said_failing { 500 } else { 50 };
                std::thread::sleep(Duration::from_millis(pause));
            }
            let _ = tx.send(Msg::Answered {
                service,
                probe: number,
                since_change: answered.then(|| at.elapsed()),
                files,
            });
        });
    }

    /// A dependency file or the Dockerfile.dev changed: rebuild that service's dev image and
    /// recreate that service alone, with the same environment. A failed build leaves the running
    /// container as it was.
    pub fn rebuild(&mut self, service: &str, files: &[PathBuf], at: Instant) -> Result<bool> {
        let image = self
            .config
            .image(service)
            .with_context(|| format!("no image for service {service}"))?;
        eprintln!(
            "dev: {service}: {} changed; rebuilding {}",
            show_files(files),
            images::dev_tag(image)
        );
        let failures =
            images::build_dev(self.sh, self.config, &[image], self.mode, Progress::Auto)?;
        if let Some((_, error)) = failures.first() {
            eprintln!(
                "dev: {service}: the rebuild failed; the running container is left as it was\n{error}"
            );
            return Ok(false);
        }
        self.recreate(&[service.to_string()], at, "rebuilt and recreated")
    }

    /// The compose files changed: recreate the services whose configuration changed, alone.
    fn compose_changed(&mut self, files: &[PathBuf], at: Instant) -> Result<()> {
        let new = match services_config(self.stack) {
            Ok(config) => config,
            Err(err) => {
                eprintln!(
                    "dev: {} changed, but compose rejects it; the stack runs on as it was: {err:#}",
                    show_files(files)
                );
                return Ok(());
            }
        };
        let mut changed: Vec<String> = Vec::new();
        if let Some(services) = new.as_object() {
            for (service, config) in services {
                if self.services_config.get(service) != Some(config) {
                    changed.push(service.clone());
                }
            }
        }
        self.services_config = new;
        if changed.is_empty() {
            eprintln!(
                "dev: {} changed; no service's configuration changed",
                show_files(files)
            );
            return Ok(());
        }
        eprintln!(
            "dev: {} changed the configuration of {}; recreating {}",
            show_files(files),
            changed.join(" and "),
            if changed.len() == 1 { "it" } else { "them" }
        );
        self.recreate(&changed, at, "recreated")?;
        Ok(())
    }

    /// `up --no-deps --force-recreate` of the given services, then waits until they are healthy
    /// and follows their new logs.
    fn recreate(&mut self, services: &[String], at: Instant, done: &str) -> Result<bool> {
        let mut args = vec![
            "up",
            "--detach",
            "--no-deps",
            "--no-build",
            "--pull",
            "never",
            "--force-recreate",
            // A new image brings new dependencies (node_modules): the anonymous volumes must start
            // from it, not be carried over from the old container.
            "--renew-anon-volumes",
        ];
        args.extend(services.iter().map(String::as_str));
        // Compose removes the old containers but keeps their anonymous volumes, which nothing
        // would name again: they are removed here once the new containers are created.
        let old_volumes: Vec<String> = self
            .stack
            .ps()?
            .into_iter()
            .filter(|c| services.contains(&c.service))
            .flat_map(|c| c.volumes)
            .filter(|v| is_anonymous(v))
            .collect();
        let recreated = self.stack.run(&args);
        let in_use: Vec<String> = self
            .stack
            .ps()?
            .into_iter()
            .flat_map(|c| c.volumes)
            .collect();
        for volume in old_volumes.iter().filter(|v| !in_use.contains(v)) {
            let _ = docker(["volume", "rm", volume]).read();
        }
        if let Err(err) = recreated {
            eprintln!("dev: recreating {} failed: {err:#}", services.join(" and "));
            return Ok(false);
        }
        let deadline = Instant::now() + RECREATE_TIMEOUT;
        loop {
            if interrupt::interrupted() {
                return Err(interrupt::Interrupted.into());
            }
            let containers = self.stack.ps()?;
            let statuses: Vec<Status> = services
                .iter()
                .map(|s| status_of(containers.iter().find(|c| &c.service == s)))
                .collect();
            if let Some((service, Status::Failed(why))) = services
                .iter()
                .zip(&statuses)
                .find(|(_, s)| matches!(s, Status::Failed(_)))
            {
                eprintln!("dev: {service}: recreated, but {why}: see its log");
                self.follow(service, &containers)?;
                return Ok(false);
            }
            if statuses.iter().all(|s| *s == Status::Healthy) {
                for service in services {
                    self.follow(service, &containers)?;
                    self.last_status.insert(service.clone(), Status::Healthy);
                }
                self.refresh_ports(&containers);
                eprintln!(
                    "dev: {}: {done}; healthy {:.1} s after the change",
                    services.join(" and "),
                    at.elapsed().as_secs_f64()
                );
                return Ok(true);
            }
            if Instant::now() > deadline {
                eprintln!(
                    "dev: {} not healthy {} s after recreation: see the log",
                    services.join(" and "),
                    RECREATE_TIMEOUT.as_secs()
                );
                return Ok(false);
            }
            // Keep the other services' logs flowing while this one starts.
            while let Ok(msg) = self.rx.try_recv() {
                match msg {
                    Msg::Log { service, line, at } => self.log_line(&service, &line, at),
                    other => {
                        let _ = self.tx.send(other);
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn refresh_ports(&mut self, containers: &[PsEntry]) {
        for image in &self.config.images {
            if let Some(port) = containers
                .iter()
                .find(|c| c.service == image.service)
                .and_then(|c| c.ports.get(&image.port))
            {
                self.ports.insert(image.service.clone(), *port);
            }
        }
    }

    /// Says when a service stops being healthy (or becomes healthy again). Returns true when the
    /// stack has had no container at all for two checks in a row: it was removed from outside.
    fn check_health(&mut self) -> bool {
        let Ok(containers) = self.stack.ps() else {
            return false;
        };
        if containers.is_empty() {
            self.checks_without_stack += 1;
            return self.checks_without_stack >= 2;
        }
        self.checks_without_stack = 0;
        for service in self.stack.services.clone() {
            let status = status_of(containers.iter().find(|c| c.service == service));
            let before = self.last_status.insert(service.clone(), status.clone());
            if before.is_some() && before.as_ref() != Some(&status) {
                match &status {
                    Status::Failed(why) => eprintln!("dev: {service}: {why}"),
                    Status::Healthy => eprintln!("dev: {service}: healthy again"),
                    _ => {}
                }
            }
        }
        false
    }

    fn follow_all(&mut self) -> Result<()> {
        let containers = self.stack.ps()?;
        for service in self.stack.services.clone() {
            self.follow(&service, &containers)?;
            let status = status_of(containers.iter().find(|c| c.service == service));
            self.last_status.insert(service, status);
        }
        Ok(())
    }

    /// Streams the logs of a service's current container (again, after a recreation).
    fn follow(&mut self, service: &str, containers: &[PsEntry]) -> Result<()> {
        let Some(container) = containers.iter().find(|c| c.service == service) else {
            return Ok(());
        };
        if let Some((id, _)) = self.followers.get(service) {
            if *id == container.id {
                return Ok(());
            }
        }
        if let Some((_, children)) = self.followers.remove(service) {
            stop(children);
        }
        // Its own child, not the runner's: both of its outputs are read line by line, as they
        // come, for as long as the container runs, and it ends when the follower is stopped.
        let mut child = Command::new("docker")
            .args(["logs", "--follow", &container.id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run `docker logs`")?;
        let outputs: Vec<Box<dyn std::io::Read + Send>> = vec![
            Box::new(child.stdout.take().context("no stdout")?),
            Box::new(child.stderr.take().context("no stderr")?),
        ];
        for output in outputs {
            let tx = self.tx.clone();
            let service = service.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines() {
                    let Ok(line) = line else { break };
                    let msg = Msg::Log {
                        service: service.clone(),
                        line,
                        at: Instant::now(),
                    };
                    if tx.send(msg).is_err() {
                        break;
                    }
                }
            });
        }
        self.followers
            .insert(service.to_string(), (container.id.clone(), vec![child]));
        Ok(())
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        for (_, (_, children)) in std::mem::take(&mut self.followers) {
            stop(children);
        }
    }
}

fn stop(children: Vec<Child>) {
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The configuration compose computes for each service, to tell which ones a compose edit
/// changed. It holds the environment's secrets: it stays in memory and is never printed.
pub(super) fn services_config(stack: &Stack) -> Result<serde_json::Value> {
    let out = stack.output(&["config", "--format", "json"])?;
    if !out.status.success() {
        anyhow::bail!("{}", out.stderr.trim());
    }
    let config: serde_json::Value =
        serde_json::from_str(&out.stdout).context("`docker compose config` printed no JSON")?;
    Ok(config["services"].clone())
}

/// The source file a compiler's error line names, relative to the service's folder: Next's
/// `./app/page.tsx:12:3` (also `app/page.tsx`, or `/app/app/page.tsx` inside the container, whose
/// sources are mounted on /app); never a dependency's file.
pub fn failing_file(line: &str) -> Option<String> {
    const EXTENSIONS: [&str; 8] = ["tsx", "ts", "jsx", "js", "mjs", "cjs", "css", "scss"];
    let line = clean(line);
    line.split(|c: char| c.is_whitespace() || "()[]'\"`,".contains(c))
        .filter_map(|token| {
            // Drop a trailing `:line:col` (or `:line`).
            let mut path = token.trim_end_matches(':');
            while let Some((head, tail)) = path.rsplit_once(':') {
                match !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
                    true => path = head,
                    false => break,
                }
            }
            let path = path
                .strip_prefix("/app/")
                .or_else(|| path.strip_prefix("./"))
                .unwrap_or(path);
            let (_, extension) = path.rsplit_once('.')?;
            let source = EXTENSIONS.contains(&extension)
                && path.contains('/')
                && !path.starts_with('/')
                && !path.contains("node_modules")
                && !path.starts_with(".next")
                && !path.contains("://")
                && !path.starts_with("..");
            source.then(|| path.to_string())
        })
        .next()
}

/// A line of a compiler's code frame (`  32 | code`, `> 33 |`, `     | ^`), not its message.
fn is_code_frame(line: &str) -> bool {
    let line = line.trim_start_matches('>').trim_start();
    let head = line.split('|').next().unwrap_or("");
    line.contains('|') && head.trim().bytes().all(|b| b.is_ascii_digit())
}

/// A log line without terminal colour codes, trimmed.
fn clean(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out.trim().to_string()
}

/// Anonymous volumes are named by the engine with 64 hex digits; named ones never are here.
fn is_anonymous(volume: &str) -> bool {
    volume.len() == 64 && volume.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The files of a change as a person reads them: up to three names, then how many more.
pub fn show_files(files: &[PathBuf]) -> String {
    let mut names: Vec<String> = files
        .iter()
        .take(3)
        .map(|f| f.display().to_string())
        .collect();
    if files.len() > 3 {
        names.push(format!("{} more", files.len() - 3));
    }
    names.join(", ")
}

/// A channel for a session's messages.
pub fn channel() -> (Sender<Msg>, Receiver<Msg>) {
    mpsc::channel()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_shown_three_at_most() {
        let files: Vec<PathBuf> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(show_files(&files[..1]), "a");
        assert_eq!(show_files(&files), "a, b, c, 2 more");
    }

    #[test]
    fn code_frames_are_told_from_messages() {
        assert!(is_code_frame("32 | export const broken = <div>;"));
        assert!(is_code_frame("> 33 |"));
        assert!(is_code_frame("| ^"));
        assert!(!is_code_frame("Error: Expected '</', got '<eof>'"));
        assert!(!is_code_frame("Parsing ecmascript source code failed"));
    }

    #[test]
    fn the_failing_file_is_read_from_compiler_lines() {
        for (line, file) in [
            (
                " \u{1b}[31m⨯\u{1b}[39m ./app/page.tsx:12:3",
                Some("app/page.tsx"),
            ),
            ("Error: Turbopack build failed with 1 errors:", None),
            (
                "./components/todo-list.tsx (4:7)",
                Some("components/todo-list.tsx"),
            ),
            (
                "  at /app/app/todos/page.tsx:3:1",
                Some("app/todos/page.tsx"),
            ),
            ("./node_modules/next/dist/x.js:1:1", None),
            (" GET / 500 in 120ms", None),
            ("see https://nextjs.org/docs/messages/x.js", None),
        ] {
            assert_eq!(failing_file(line).as_deref(), file, "{line}");
        }
    }
}
