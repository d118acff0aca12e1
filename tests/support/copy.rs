//! A copy of the project for the tests that change it or start stacks named after its root
//! (dev, up, a third service), and a running `cargo xtask dev` in such a copy.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{root, text};

/// A copy of the project in a temporary folder: the files git knows of, one commit, and a `.env`
/// of made-up values with no DATABASE_URL (so the stacks use their local PostgreSQL).
pub struct Copy {
    pub dir: PathBuf,
}

impl Copy {
    pub fn new(name: &str) -> Copy {
        let dir = std::env::temp_dir().join(format!("xtask-dev-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = Command::new("git")
            .args([
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ])
            .current_dir(root())
            .output()
            .expect("git ls-files");
        for file in text(&files.stdout).split('\0').filter(|f| !f.is_empty()) {
            let from = root().join(file);
            if !from.is_file() {
                continue;
            }
            let to = dir.join(file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&from, &to).unwrap();
        }
        let ok = Command::new("git")
            .args(["init", "--quiet"])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(ok.success(), "git init");
        super::share_build_seed(&dir);
        let copy = Copy { dir };
        copy.commit("copy");
        std::fs::write(copy.path(".env"), TEST_ENV).unwrap();
        copy
    }

    /// Commits every file of the copy (`.env` is ignored), as a developer would.
    pub fn commit(&self, message: &str) {
        for args in [
            &["add", "--all"][..],
            &[
                "-c",
                "user.name=test",
                "-c",
                "user.email=test@localhost",
                "commit",
                "--quiet",
                "--message",
                message,
            ],
        ] {
            let ok = Command::new("git")
                .args(args)
                .current_dir(&self.dir)
                .status()
                .unwrap();
            assert!(ok.success(), "git {args:?}");
        }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn xtask(&self, args: &[&str]) -> std::process::Output {
        Command::new(super::xtask_bin())
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run xtask")
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Made-up values that reach only the containers of these tests.
pub const TEST_ENV: &str = "\
BETTER_AUTH_SECRET=test-secret-0123456789abcdefghijklmnopqrstuvwxyz
BETTER_AUTH_URL=http://localhost:3000
OPENAI_API_KEY=sk-test-0000000000000000000000000000
AGENT_MODEL=gpt-4o
NEXT_PUBLIC_API_URL=http://localhost:8000
FRONTEND_URL=http://localhost:3000
VERSION=v1.0.0
";

/// A running `cargo xtask dev`, its stderr gathered line by line. Dropping it kills the process;
/// its reaper then removes the stack.
pub struct Dev {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Dev {
    pub fn start(copy: &Copy) -> Dev {
        Dev::start_with(
            copy,
            &["dev", "--port", "frontend=0", "--port", "backend=0"],
        )
    }

    /// `cargo xtask ARGS` in the copy, e.g. `dev` with other ports.
    pub fn start_with(copy: &Copy, args: &[&str]) -> Dev {
        let mut child = Command::new(super::xtask_bin())
            .args(args)
            .current_dir(&copy.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start xtask dev");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Dev { child, lines }
    }

    /// Waits for a line of stderr containing `needle`, after the first `skip` lines.
    pub fn wait_line(&mut self, needle: &str, skip: usize, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .skip(skip)
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "dev exited ({status}) before printing `{needle}`:\n{}",
                    self.output()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "no `{needle}` after {timeout:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until `dev` exits; fails, saying `what` and its output, after `limit`.
    pub fn wait_exit(&mut self, limit: Duration, what: &str) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < limit, "{what}:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
