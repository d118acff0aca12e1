//! The stack a smoke run starts: a bridge network of its own, PostgreSQL, the backend and the
//! frontend, each labelled with the run, and removed on every way out: success, failure, Ctrl-C
//! and panic through the run's guard, a crash through the next run, which reaps what dead runs
//! left ([`crate::owned`] is the model of both).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::docker::docker;
use crate::docker::inspect::Container;
use crate::interrupt;
use crate::owned::{self, Guard, Kind, Run};

/// Settings every container of a smoke run gets besides its test environment: the backend
/// serves `/ops/slow`, which the graceful-stop check keeps in flight, only when told to.
const RUN_SETTINGS: &[(&str, &str)] = &[("OPS_SLOW_ENABLED", "1")];

/// A container the run started.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: String,
    /// The loopback port the container's service port is published on.
    pub host_port: Option<u16>,
}

pub struct Stack {
    pub run_id: String,
    pub network: String,
    run: Run,
    /// Removes what the run made when the stack is dropped, unless `--keep`; its folder always.
    _guard: Guard,
    /// Where the run's environment files live (mode 0600) until the run ends.
    pub dir: PathBuf,
}

impl Stack {
    /// Reaps what crashed runs left, then makes the run's network. `base_network` is the spec's
    /// network name; the run id is appended so that parallel runs never share one.
    pub fn create(root: &Path, base_network: &str, keep: bool) -> Result<Stack> {
        let run = Run::new(Kind::Smoke, keep);
        let reaped = owned::reap(Kind::Smoke, root, Some(run.started))?;
        if !reaped.is_empty() {
            eprintln!(
                "removed what earlier smoke runs left behind: {}",
                reaped.join(", ")
            );
        }
        let dir = run.dir(root);
        let guard = Guard::run(run.clone(), root);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let stack = Stack {
            network: format!("{base_network}-{}", run.id),
            run_id: run.id.clone(),
            run,
            _guard: guard,
            dir,
        };
        let mut args = vec!["network", "create", "--driver", "bridge"];
        let labels = stack.run.label_args();
        args.extend(labels.iter().map(String::as_str));
        args.push(&stack.network);
        docker(&args)
            .finish_on_interrupt()
            .read()
            .context("cannot create the run's network")?;
        Ok(stack)
    }

    /// Writes an environment file for `docker run --env-file`, readable by its owner only, so
    /// that no secret appears on a command line.
    pub fn env_file(&self, name: &str, vars: &[(String, String)]) -> Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join(format!("{name}.env"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        for (k, v) in vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(RUN_SETTINGS.iter().copied())
        {
            writeln!(file, "{k}={v}")?;
        }
        Ok(path)
    }

    /// Starts a container on the run's network. `alias` is its DNS name there; `port` is
    /// published on a free loopback port.
    pub fn run(
        &self,
        role: &str,
        image: &str,
        alias: Option<&str>,
        env_file: Option<&Path>,
        port: Option<u16>,
        extra: &[&str],
    ) -> Result<Started> {
        if interrupt::interrupted() {
            bail!(interrupt::Interrupted);
        }
        let name = format!("todo-smoke-{}-{role}", self.run_id);
        let mut args: Vec<String> = [
            "run",
            "--detach",
            "--name",
            &name,
            "--network",
            &self.network,
        ]
        .map(String::from)
        .to_vec();
        args.extend(self.run.label_args());
        args.push(format!("--label=todo-chatbot.smoke.role={role}"));
        if let Some(alias) = alias {
            args.push(format!("--network-alias={alias}"));
        }
        if let Some(file) = env_file {
            args.push(format!("--env-file={}", file.display()));
        }
        if let Some(port) = port {
            args.push(format!("--publish=127.0.0.1::{port}"));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(image.to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = docker(&args)
            .finish_on_interrupt()
            .read()
            .with_context(|| format!("cannot start the {role} container"))?;
        let host_port = match port {
            Some(port) => match published_port(&id, port) {
                Ok(host_port) => Some(host_port),
                // A container that exited at once has no port left; the checks that wait for
                // it find it exited and say why.
                Err(_) if state(&id).is_ok_and(|s| !s.running) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        Ok(Started { id, host_port })
    }

    pub fn keep(&self) -> bool {
        self.run.keep
    }
}

fn published_port(id: &str, port: u16) -> Result<u16> {
    let out = docker(["port", id, &format!("{port}/tcp")]).read()?;
    out.lines()
        .find(|l| l.starts_with("127.0.0.1:"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("port {port} of {id} is not published on 127.0.0.1: {out}"))
}

/// What `docker inspect` says of a container's state.
#[derive(Debug, Clone)]
pub struct State {
    pub running: bool,
    pub exit_code: i64,
    pub health: Option<String>,
    /// Seconds from the container's start to its first passing health check, by the engine's
    /// own clock.
    pub healthy_after: Option<f64>,
    /// The output of the last health check that failed.
    pub last_check_output: Option<String>,
    /// What the container runs (`Path` and `Args`), for a cause when it printed nothing.
    pub command: Option<String>,
}

pub fn state(id: &str) -> Result<State> {
    let text = docker(["inspect", id]).read()?;
    let all: Vec<Container> = serde_json::from_str(&text)?;
    let container = all
        .into_iter()
        .next()
        .context("docker inspect printed no container")?;
    let state = container.state;
    let command = (!container.path.is_empty()).then(|| {
        std::iter::once(container.path.as_str())
            .chain(container.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    });
    let time = |v: &str| humantime::parse_rfc3339_weak(v).ok();
    let started = time(&state.started_at);
    let log = state
        .health
        .as_ref()
        .map(|h| h.log.as_slice())
        .unwrap_or_default();
    let healthy_after = log
        .iter()
        .find(|e| e.exit_code == 0)
        .and_then(|e| time(&e.end))
        .zip(started)
        .and_then(|(end, start)| end.duration_since(start).ok())
        .map(|d| d.as_secs_f64());
    let last_check_output = log
        .iter()
        .rev()
        .find(|e| e.exit_code != 0)
        .map(|e| e.output.trim().to_string())
        .filter(|s| !s.is_empty());
    Ok(State {
        running: state.running,
        exit_code: state.exit_code,
        health: state.health.map(|h| h.status),
        healthy_after,
        last_check_output,
        command,
    })
}

/// Why a container is not running, in words: its exit code and its last log lines, or that it
/// printed nothing (then its command is the lead).
pub fn exited_cause(state: &State, logs: &str) -> String {
    let code = match state.exit_code {
        137 => "137 (killed: SIGKILL, often the out-of-memory killer)".to_string(),
        143 => "143 (SIGTERM)".to_string(),
        code => code.to_string(),
    };
    if logs.is_empty() {
        format!(
            "the container exited with code {code} and printed nothing (its command: {})",
            state.command.as_deref().unwrap_or("unknown")
        )
    } else {
        format!("the container exited with code {code}; its last log lines: {logs}")
    }
}

/// The last lines a container printed, for a failure's cause.
pub fn last_logs(id: &str, lines: usize) -> String {
    let out = docker(["logs", "--tail", &lines.to_string(), id]).output();
    match out {
        Ok(out) => {
            let text = format!("{}{}", out.stdout, out.stderr);
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" | ")
        }
        Err(_) => String::new(),
    }
}

/// Waits until the engine reports the container healthy. On success returns the seconds from
/// start to healthy; on failure, the cause in words (exited with its logs, or still not healthy
/// at the deadline with what `diagnose` saw).
pub fn wait_healthy(
    id: &str,
    timeout: Duration,
    mut diagnose: impl FnMut() -> Option<String>,
) -> Result<std::result::Result<f64, String>> {
    let start = Instant::now();
    loop {
        if interrupt::interrupted() {
            bail!(interrupt::Interrupted);
        }
        let state = state(id)?;
        if state.health.as_deref() == Some("healthy") {
            let seconds = state
                .healthy_after
                .unwrap_or_else(|| start.elapsed().as_secs_f64());
            return Ok(Ok(seconds));
        }
        if !state.running {
            return Ok(Err(exited_cause(&state, &last_logs(id, 5))));
        }
        if start.elapsed() >= timeout {
            let mut cause = format!(
                "not healthy within {:.0} s (health: {})",
                timeout.as_secs_f64(),
                state.health.as_deref().unwrap_or("no HEALTHCHECK")
            );
            if let Some(seen) = diagnose() {
                cause.push_str(&format!("; {seen}"));
            }
            if let Some(output) = state.last_check_output {
                cause.push_str(&format!("; last check said: {output}"));
            }
            return Ok(Err(cause));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exited_container_is_explained_by_its_logs_or_its_command() {
        let state = State {
            running: false,
            exit_code: 0,
            health: Some("starting".into()),
            healthy_after: None,
            last_check_output: None,
            command: Some("python -c pass".into()),
        };
        assert_eq!(
            exited_cause(&state, "starting | bye"),
            "the container exited with code 0; its last log lines: starting | bye"
        );
        assert_eq!(
            exited_cause(&state, ""),
            "the container exited with code 0 and printed nothing (its command: python -c pass)"
        );
        let killed = State {
            exit_code: 137,
            ..state
        };
        assert!(exited_cause(&killed, "x").contains("137 (killed: SIGKILL"));
    }
}
