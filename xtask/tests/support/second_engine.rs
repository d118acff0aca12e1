//! A second, real Docker engine for the tests that must tell two engines apart (contexts,
//! `DOCKER_HOST`): an empty data root, its own sockets and pid file, and its own network namespace,
//! so that its bridge never touches the first engine's `docker0` (sharing the host's namespace once
//! left the first engine with no bridge at all). It has no route out: it builds what needs no
//! download.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SecondEngine {
    dir: PathBuf,
    child: Child,
}

impl SecondEngine {
    pub fn start(name: &str) -> SecondEngine {
        let dir = std::env::temp_dir().join(format!("todo-engine-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let script = format!(
            "ip link set lo up && exec dockerd --data-root {d}/data --exec-root {d}/exec \
             --pidfile {d}/docker.pid -H unix://{d}/docker.sock",
            d = dir.display()
        );
        let child = Command::new("unshare")
            .args([
                "--net",
                "--fork",
                "--kill-child=SIGTERM",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start a second dockerd");
        let engine = SecondEngine { dir, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "the second engine did not answer within 60 s: {}",
                std::fs::read_to_string(engine.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        engine
    }

    /// The engine's address, as DOCKER_HOST or a context's `host=` takes it.
    pub fn host(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.display())
    }

    /// A folder of the test's own, for a Docker CLI configuration (contexts) that leaves the
    /// user's untouched.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// `docker ARGS` against this engine.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(["-H", &self.host()])
            .args(args)
            .output()
            .expect("run docker")
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        // dockerd stops its containers and unmounts its layers on SIGTERM; the namespace goes with
        // the last process in it.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("docker.pid")) {
            let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
