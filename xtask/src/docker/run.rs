//! The one way the commands run `docker`, `docker buildx` and `docker compose`: stdin closed so
//! nothing can prompt, both pipes captured, an optional timeout, Ctrl-C handled the same way
//! everywhere, and one error shape (the command line, how it ended, the last lines of its
//! stderr).
//!
//! Ctrl-C: every child runs in a process group of its own, so a terminal's Ctrl-C (sent to the
//! xtask's whole group) does not kill a `docker ps` half-way through a clean-up. Instead, when the
//! interrupt arrives while a call runs, the runner forwards SIGINT to the child's group, waits
//! for it to end (killing it after a grace period) and returns [`interrupt::Interrupted`], not
//! docker's error; a call marked [`Run::finish_on_interrupt`] is let run to its end first. A call
//! started after the interrupt is part of the command's clean-up, and so is a call marked
//! [`Run::cleanup`]: those run to the end and return what docker said.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::interrupt;

/// How often a waiting call looks at the interrupt flag. duct's wait wakes the moment the child
/// exits, so this delays only the reaction to Ctrl-C.
const SLICE: Duration = Duration::from_millis(100);
/// How long a child has to end after the forwarded SIGINT before it is killed.
const GRACE: Duration = Duration::from_secs(10);
/// How many of the last lines of stderr an error carries.
const TAIL_LINES: usize = 10;

/// One call of the Docker CLI, built up and then run with [`Run::read`], [`Run::output`] or
/// [`Run::start`].
#[derive(Debug, Clone)]
pub struct Run {
    args: Vec<OsString>,
    /// Variables set (`Some`) or removed (`None`) for the child.
    env: Vec<(OsString, Option<OsString>)>,
    dir: Option<PathBuf>,
    timeout: Option<Duration>,
    cleanup: bool,
    finish: bool,
}

/// `docker ARGS`.
pub fn docker<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Run {
        args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
        env: Vec::new(),
        dir: None,
        timeout: None,
        cleanup: false,
        finish: false,
    }
}

/// What a finished call printed, and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// How a failed call ended.
#[derive(Debug, Clone)]
pub enum Ended {
    Status(ExitStatus),
    /// Killed after running this long.
    TimedOut(Duration),
}

/// The one error of a docker call that ran and failed.
#[derive(Debug, Clone)]
pub struct Failed {
    /// The command line, as a person would type it.
    pub command: String,
    pub ended: Ended,
    /// All of its stderr (the message shows only the last lines).
    pub stderr: String,
}

impl Failed {
    pub fn timed_out(&self) -> bool {
        matches!(self.ended, Ended::TimedOut(_))
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ended {
            Ended::Status(status) => write!(f, "`{}` failed ({status})", self.command)?,
            Ended::TimedOut(after) => write!(
                f,
                "`{}` did not finish within {} s and was stopped",
                self.command,
                after.as_secs()
            )?,
        }
        let tail = tail(&self.stderr, TAIL_LINES);
        match tail.lines().count() {
            0 => Ok(()),
            1 => write!(f, ": {tail}"),
            _ => write!(f, ":\n{tail}"),
        }
    }
}

impl std::error::Error for Failed {}

/// The last `n` lines of `text` that are not blank, trimmed.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Run {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Run {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Run {
        self.env
            .push((name.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn env_remove(mut self, name: impl AsRef<OsStr>) -> Run {
        self.env.push((name.as_ref().to_owned(), None));
        self
    }

    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Run {
        self.dir = Some(dir.into());
        self
    }

    /// Stops the call after `timeout`; it then fails with [`Ended::TimedOut`].
    pub fn timeout(mut self, timeout: Duration) -> Run {
        self.timeout = Some(timeout);
        self
    }

    /// Marks the call as part of a clean-up: Ctrl-C neither stops it nor changes its result, so
    /// that what a run started is removed even when the user interrupts the removal.
    pub fn cleanup(mut self) -> Run {
        self.cleanup = true;
        self
    }

    /// Lets the call run to its end when Ctrl-C comes, and only then reports
    /// [`interrupt::Interrupted`]: for a short call that creates something (`docker run
    /// --detach`, `network create`), which stopped half-way may still land in the engine after
    /// the clean-up has looked, where run to its end it is found and removed.
    pub fn finish_on_interrupt(mut self) -> Run {
        self.finish = true;
        self
    }

    /// The command line, as a person would type it (for messages).
    pub fn command_line(&self) -> String {
        std::iter::once("docker".into())
            .chain(self.args.iter().map(|a| a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the call and returns its stdout, trimmed; a failure is a [`Failed`].
    pub fn read(&self) -> Result<String> {
        let out = self.output()?;
        if !out.success() {
            return Err(self.failed(&out).into());
        }
        Ok(out.stdout.trim().to_string())
    }

    /// Runs the call and returns what it printed whatever its exit status; an error only when it
    /// could not start, timed out ([`Failed`]) or was interrupted.
    pub fn output(&self) -> Result<Output> {
        let handle = self.start()?;
        handle.wait()
    }

    /// Starts the call and returns at once; [`Child::wait`] or [`Child::try_wait`] end it.
    pub fn start(&self) -> Result<Child> {
        let handle = self
            .expression()
            .stdout_capture()
            .start()
            .with_context(|| format!("cannot run `{}`", self.command_line()))?;
        Ok(Child {
            run: self.clone(),
            handle,
            begin: Instant::now(),
            watch_interrupt: self.watches_interrupt(),
        })
    }

    /// Starts the call with its stdout to be read as it comes (`docker save` into a scanner);
    /// [`Reader::finish`] ends it. No timeout applies.
    pub fn reader(&self) -> Result<Reader> {
        let handle = self
            .expression()
            .reader()
            .with_context(|| format!("cannot run `{}`", self.command_line()))?;
        Ok(Reader {
            handle,
            watch_interrupt: self.watches_interrupt(),
        })
    }

    /// A call that starts after Ctrl-C is part of the clean-up that follows it.
    fn watches_interrupt(&self) -> bool {
        !self.cleanup && !interrupt::interrupted()
    }

    /// The child with stdin closed, stderr captured, in a process group of its own.
    fn expression(&self) -> duct::Expression {
        let mut expression = duct::cmd("docker", &self.args)
            .stdin_null()
            .stderr_capture()
            .unchecked()
            .before_spawn(|command| {
                use std::os::unix::process::CommandExt;
                command.process_group(0);
                Ok(())
            });
        // duct applies the innermost of nested `env` calls last, the reverse of the order in
        // which they were made: the changes are merged first, so the last one made wins.
        let mut env: Vec<(&OsString, &Option<OsString>)> = Vec::new();
        for (name, value) in &self.env {
            env.retain(|(n, _)| *n != name);
            env.push((name, value));
        }
        for (name, value) in env {
            expression = match value {
                Some(value) => expression.env(name, value),
                None => expression.env_remove(name),
            };
        }
        if let Some(dir) = &self.dir {
            expression = expression.dir(dir);
        }
        expression
    }

    /// The error of this call for an output it ended with.
    pub fn failed(&self, out: &Output) -> Failed {
        self.failure(Ended::Status(out.status), out.stderr.clone())
    }

    fn failure(&self, ended: Ended, stderr: String) -> Failed {
        Failed {
            command: self.command_line(),
            ended,
            stderr,
        }
    }
}

/// A started call.
pub struct Child {
    run: Run,
    handle: duct::Handle,
    begin: Instant,
    watch_interrupt: bool,
}

impl Child {
    /// Waits for the call to end (see [`Run::output`]).
    pub fn wait(&self) -> Result<Output> {
        loop {
            if let Some(out) = self.try_wait_for(SLICE)? {
                return Ok(out);
            }
        }
    }

    /// Waits like [`Child::wait`], but a Ctrl-C meanwhile still gives what the stopped call
    /// wrote, with `true`: for a caller that must read it (the creates a stopped `compose up`
    /// sent and saw no answer to).
    pub fn wait_or_stop(&self) -> Result<(Output, bool)> {
        loop {
            match self.try_wait_for(SLICE) {
                Ok(Some(out)) => return Ok((out, false)),
                Ok(None) => {}
                Err(e) if e.is::<interrupt::Interrupted>() => {
                    // The call has ended: `try_wait_for` stops it before it reports Ctrl-C.
                    let out = self.handle.wait()?;
                    let out = Output {
                        status: out.status,
                        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                    };
                    return Ok((out, true));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The output when the call has ended, else None; applies the timeout and Ctrl-C.
    pub fn try_wait(&self) -> Result<Option<Output>> {
        self.try_wait_for(Duration::ZERO)
    }

    fn try_wait_for(&self, slice: Duration) -> Result<Option<Output>> {
        let mut deadline = Instant::now() + slice;
        if let Some(timeout) = self.run.timeout {
            deadline = deadline.min(self.begin + timeout);
        }
        let ended = self.handle.wait_deadline(deadline)?.cloned();
        if let Some(out) = ended {
            if self.watch_interrupt && interrupt::interrupted() {
                return Err(interrupt::Interrupted.into());
            }
            return Ok(Some(Output {
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }));
        }
        if self.watch_interrupt && !self.run.finish && interrupt::interrupted() {
            self.stop();
            return Err(interrupt::Interrupted.into());
        }
        if let Some(timeout) = self.run.timeout {
            if self.begin.elapsed() >= timeout {
                self.signal(libc::SIGKILL);
                let stderr = match self.handle.wait() {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
                    Err(_) => String::new(),
                };
                return Err(self.run.failure(Ended::TimedOut(timeout), stderr).into());
            }
        }
        Ok(None)
    }

    /// Stops the call the way a terminal's Ctrl-C would have: SIGINT to its process group, then,
    /// after a grace period, SIGKILL. Waits until it has ended, and returns what it wrote on
    /// stderr.
    pub fn stop(&self) -> String {
        self.signal(libc::SIGINT);
        if !matches!(self.handle.wait_timeout(GRACE), Ok(Some(_))) {
            self.signal(libc::SIGKILL);
        }
        match self.handle.wait() {
            Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
            Err(_) => String::new(),
        }
    }

    /// Kills the call at once (SIGKILL to its process group), waits until it has ended, and
    /// returns what it wrote on stderr: what it said last is then what it saw last, which a
    /// SIGINT would let it overwrite with its own cancellation.
    pub fn kill(&self) -> String {
        self.signal(libc::SIGKILL);
        match self.handle.wait() {
            Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
            Err(_) => String::new(),
        }
    }

    /// Sends `signal` to the child's process group, unless the child has been waited for
    /// already, when its id may belong to another process.
    fn signal(&self, signal: libc::c_int) {
        if !matches!(self.handle.try_wait(), Ok(Some(_))) {
            signal_groups(&self.handle.pids(), signal);
        }
    }
}

/// Sends `signal` to the process groups led by `pids`: the CLI and the plugin it runs.
fn signal_groups(pids: &[u32], signal: libc::c_int) {
    for pid in pids {
        // SAFETY: kill(2) with a negative pid signals a process group and touches no memory.
        unsafe {
            libc::kill(-(*pid as libc::pid_t), signal);
        }
    }
}

/// A started call whose stdout is read as it comes.
pub struct Reader {
    handle: duct::ReaderHandle,
    watch_interrupt: bool,
}

impl std::io::Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.handle.read(buf)
    }
}

impl Reader {
    /// Kills the call, when its reader gives up before the end (the scan failed).
    pub fn kill(&self) {
        if !matches!(self.handle.try_wait(), Ok(Some(_))) {
            signal_groups(&self.handle.pids(), libc::SIGKILL);
        }
    }

    /// Ends the call: what its stdout still holds is read and dropped (a tar reader stops at the
    /// archive's end marker, before the padding after it), and the call is waited for. Returns
    /// how it ended (stdout empty: it was read), or [`interrupt::Interrupted`] when Ctrl-C came
    /// meanwhile.
    pub fn finish(mut self) -> Result<Output> {
        // Reading to the end waits for the child (duct's reader does at end of file).
        std::io::copy(&mut self.handle, &mut std::io::sink())?;
        if self.watch_interrupt && interrupt::interrupted() {
            return Err(interrupt::Interrupted.into());
        }
        let out = self
            .handle
            .try_wait()?
            .context("the child has ended, but duct has no status for it")?;
        Ok(Output {
            status: out.status,
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_names_the_command_its_status_and_the_last_lines_of_stderr() {
        let run = docker(["ps", "--all"]);
        let status = {
            use std::os::unix::process::ExitStatusExt;
            ExitStatus::from_raw(1 << 8)
        };
        let stderr: String = (1..=15).map(|i| format!("line {i}\n\n")).collect();
        let text = run.failure(Ended::Status(status), stderr).to_string();
        assert!(
            text.starts_with("`docker ps --all` failed (exit status: 1):\nline 6\n"),
            "{text}"
        );
        assert!(text.ends_with("line 15"), "{text}");
        let one = run.failure(Ended::Status(status), "Error: no such object: x\n".into());
        assert_eq!(
            one.to_string(),
            "`docker ps --all` failed (exit status: 1): Error: no such object: x"
        );
        let slow = run.failure(Ended::TimedOut(Duration::from_secs(30)), String::new());
        assert_eq!(
            slow.to_string(),
            "`docker ps --all` did not finish within 30 s and was stopped"
        );
    }
}
