//! A second, real Docker engine for the tests that must tell two engines apart (contexts,
//! `DOCKER_HOST`) or need another kind of engine (the containerd image store): an empty data root,
//! its own sockets and pid file, and its own network namespace, so that its bridge never touches
//! the first engine's `docker0` (sharing the host's namespace once left the first engine with no
//! bridge at all).
//!
//! Without `online` the namespace has only loopback: the engine builds what needs no download.
//! With it, the namespace gets a veth pair to the host on a /30 of its own and a masquerade rule,
//! so that build steps reach the package registries the host reaches; everything it added to the
//! host (the link, the two firewall rules) is removed when the engine is dropped.

#![allow(dead_code)] // Each test binary uses a part of it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Options {
    /// `"containerd-snapshotter": true`: the image store of new Docker 29 installs.
    pub containerd_store: bool,
    /// A route out through the host, for build steps that download.
    pub online: bool,
    /// Keep the engine's images and build cache in this folder, outside the clone, from one
    /// run to the next (e.g. `/var/lib/todo-test-engines/multi`), so that a second run builds
    /// warm; None: an empty data root, removed with the engine.
    pub data_root: Option<PathBuf>,
}

pub struct SecondEngine {
    dir: PathBuf,
    /// The data root, when it outlives the engine.
    data_root: Option<PathBuf>,
    netns: String,
    child: Child,
    online: Option<Online>,
}

/// What `online` added to the host, to be removed again.
struct Online {
    host_link: String,
    rules: Vec<Vec<String>>,
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl SecondEngine {
    pub fn start(name: &str) -> SecondEngine {
        SecondEngine::start_with(name, Options::default())
    }

    pub fn start_with(name: &str, options: Options) -> SecondEngine {
        reap_orphans();
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("todo-engine-{name}-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A network namespace of our own, named so that `nsenter --net` can join it.
        let netns = format!("todo-{name}-{pid}");
        run("ip", &["netns", "add", &netns]).unwrap();
        run("ip", &["-n", &netns, "link", "set", "lo", "up"]).unwrap();
        let online = options.online.then(|| connect(&netns, pid));
        let config = dir.join("daemon.json");
        let features = serde_json::json!({
            "features": {"containerd-snapshotter": options.containerd_store}
        });
        std::fs::write(&config, features.to_string()).unwrap();
        // A data root is one engine's at a time: when another engine runs on it (another run
        // of the same test), this one starts empty instead.
        let data_root = options.data_root.clone().filter(|root| {
            let busy = engine_on(root);
            if busy {
                eprintln!(
                    "{} is in use by another engine: starting on an empty data root",
                    root.display()
                );
            }
            !busy
        });
        if let Some(root) = &data_root {
            std::fs::create_dir_all(root).unwrap();
        }
        let child = spawn(&dir, &netns, data_root.as_deref());
        let engine = SecondEngine {
            data_root,
            dir,
            netns,
            child,
            online,
        };
        engine.wait_ready();
        engine
    }

    /// Stops the engine and starts it again with an empty data root, in the same namespace: a
    /// fresh runner that still reaches what the namespace holds (a registry started there).
    pub fn restart_empty(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
        let _ = std::fs::remove_dir_all(self.dir.join("exec"));
        self.child = spawn(&self.dir, &self.netns, None);
        self.data_root = None;
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "the second engine did not answer within 60 s: {}",
                std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// SIGTERM to dockerd, which stops its containers and unmounts its layers, then waits.
    fn stop(&mut self) {
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
    }

    /// The engine's address, as DOCKER_HOST or a context's `host=` takes it.
    pub fn host(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.display())
    }

    /// The namespace file that `nsenter --net=` takes: a process there sees the ports the
    /// engine's containers publish on its loopback.
    pub fn netns_path(&self) -> String {
        format!("/var/run/netns/{}", self.netns)
    }

    /// A folder of the test's own, for a Docker CLI configuration (contexts) that leaves the
    /// user's untouched.
    pub fn dir(&self) -> &Path {
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

    /// Copies images from the first engine into this one (`docker save | docker load`), for the
    /// base images that only a download could otherwise make.
    pub fn load_from_first(&self, references: &[&str]) {
        let mut save = Command::new("docker")
            .args(["-H", "unix:///var/run/docker.sock", "save"])
            .args(references)
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker save");
        let load = Command::new("docker")
            .args(["-H", &self.host(), "load", "--quiet"])
            .stdin(save.stdout.take().unwrap())
            .output()
            .expect("docker load");
        assert!(
            save.wait().unwrap().success(),
            "docker save {references:?} failed"
        );
        assert!(
            load.status.success(),
            "docker load failed: {}",
            String::from_utf8_lossy(&load.stderr)
        );
    }
}

/// Removes what earlier engines left whose process is gone: a test binary killed outright
/// (SIGKILL, or SIGINT to a `cargo test` process group, as when a CI run is stopped) runs no
/// destructor, so its engine, its registry, its namespace, link and firewall rules stay. Each
/// is named after the process that started it (`todo-NAME-PID`, `todo-vPID`), which is how an
/// orphan is told from another live run's engine.
fn reap_orphans() {
    let gone = |pid: u32| !Path::new(&format!("/proc/{pid}")).exists();
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(netns) = line.split_whitespace().next() else {
            continue;
        };
        let Some((prefix, pid)) = netns.rsplit_once('-') else {
            continue;
        };
        let Some(name) = prefix.strip_prefix("todo-") else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if !gone(pid) {
            continue;
        }
        eprintln!("removing the engine {netns} that a killed test run left");
        // Every process in the namespace (dockerd, its containerd and containers' shims, a
        // registry): SIGTERM first, so that dockerd stops its containers and unmounts.
        let members = |signal: &str| {
            let out = Command::new("ip").args(["netns", "pids", netns]).output();
            let pids: Vec<String> = out
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            if !pids.is_empty() {
                let _ = Command::new("kill").arg(signal).args(&pids).output();
            }
            pids.len()
        };
        members("-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while members("-0") > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(300));
        }
        members("-KILL");
        let _ = run("ip", &["netns", "del", netns]);
        let dir = std::env::temp_dir().join(format!("todo-engine-{name}-{pid}"));
        let _ = std::fs::remove_dir_all(dir);
    }
    // The host's side of `online`: the firewall rules and the link name `todo-vPID` (a
    // namespace removed by hand leaves them too).
    let dead = |word: &str| {
        word.strip_prefix("todo-v")
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(gone)
    };
    for (table, chain) in [("nat", "POSTROUTING"), ("filter", "DOCKER-USER")] {
        let Ok(out) = Command::new("iptables")
            .args(["-t", table, "-S", chain])
            .output()
        else {
            continue;
        };
        for rule in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(spec) = rule.strip_prefix("-A ") else {
                continue;
            };
            if spec.split_whitespace().any(dead) {
                let mut args = vec!["-t", table, "-D"];
                args.extend(spec.split_whitespace());
                let _ = run("iptables", &args);
            }
        }
    }
    if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "7: todo-v123@if2: <...>"
            let Some(name) = line.split_whitespace().nth(1) else {
                continue;
            };
            let name = name.trim_end_matches(':');
            let name = name.split('@').next().unwrap_or(name);
            if dead(name) {
                let _ = run("ip", &["link", "del", name]);
            }
        }
    }
}

/// True when a running dockerd has `root` as its data root.
fn engine_on(root: &Path) -> bool {
    let wanted = format!("--data-root={}", root.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.filter_map(|e| e.ok()).any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|bytes| bytes.split(|b| *b == 0).any(|arg| arg == wanted.as_bytes()))
    })
}

/// Starts dockerd on `dir` (its config, data root, exec root, pid file and socket) in `netns`.
fn spawn(dir: &Path, netns: &str, data_root: Option<&Path>) -> Child {
    let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
    // `nsenter --net` changes the network namespace only: `ip netns exec` would also remount
    // /sys, and dockerd then finds no cgroups.
    let d = dir.display();
    let data = data_root
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("data"));
    Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{netns}"))
        .args(["dockerd", "--config-file"])
        .arg(dir.join("daemon.json"))
        .args([
            format!("--data-root={}", data.display()),
            format!("--exec-root={d}/exec"),
            format!("--pidfile={d}/docker.pid"),
            format!("--host=unix://{d}/docker.sock"),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("start a second dockerd")
}

/// A Debian `docker-registry` on the loopback of a second engine's namespace: the only place
/// that engine's BuildKit reaches it (a registry on the host's loopback is another namespace's).
pub struct Registry {
    dir: PathBuf,
    netns_path: String,
    pub port: u16,
    child: Child,
}

impl SecondEngine {
    /// Starts a registry at 127.0.0.1:`port` in this engine's namespace and waits until it answers.
    pub fn start_registry(&self, port: u16) -> Registry {
        let dir = self.dir.with_extension(format!("registry-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    \
             enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.netns_path()))
            .args(["docker-registry", "serve"])
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry (Debian package docker-registry)");
        let registry = Registry {
            dir,
            netns_path: self.netns_path(),
            port,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while registry.get("/v2/").is_none() {
            assert!(
                Instant::now() < deadline,
                "the registry did not answer within 20 s: {}",
                std::fs::read_to_string(registry.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }
}

impl Registry {
    /// `localhost:PORT`, as the engine names it (loopback registries need no TLS).
    pub fn address(&self) -> String {
        format!("localhost:{}", self.port)
    }

    /// The digest and body of the manifest or image index stored under `name:reference`, as
    /// the registry serves them (asked from inside its namespace); None when it has none.
    pub fn manifest(&self, name: &str, reference: &str) -> Option<(String, serde_json::Value)> {
        let url = format!(
            "http://127.0.0.1:{}/v2/{name}/manifests/{reference}",
            self.port
        );
        let accept = "Accept: application/vnd.oci.image.index.v1+json, \
                      application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json, \
                      application/vnd.docker.distribution.manifest.v2+json";
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.netns_path))
            .args(["curl", "-sf", "--max-time", "5", "-D", "-", "-H", accept])
            .arg(&url)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let all = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = all.split_once("\r\n\r\n")?;
        let digest = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("docker-content-digest")
                .then(|| v.trim().to_string())
        })?;
        Some((digest, serde_json::from_str(body).ok()?))
    }

    /// The body of a GET on the registry's API, asked from inside its namespace; None unless 200.
    pub fn get(&self, path: &str) -> Option<String> {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.netns_path))
            .args(["curl", "-sf", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The config blob that an image manifest of repository `name` names, parsed.
    pub fn config(&self, name: &str, manifest: &serde_json::Value) -> serde_json::Value {
        let digest = manifest["config"]["digest"]
            .as_str()
            .expect("an image manifest names its config");
        let config = self
            .get(&format!("/v2/{name}/blobs/{digest}"))
            .expect("the config blob");
        serde_json::from_str(&config).unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A veth pair between the host and `netns` on 10.213.N.0/30 (N from the pid, so that runs in
/// parallel do not collide), the namespace's default route through the host, and the two rules
/// the host needs to forward for it: a masquerade, and an accept in DOCKER-USER (the chain the
/// first engine leaves to users; its FORWARD policy is DROP).
fn connect(netns: &str, pid: u32) -> Online {
    let n = 16 + pid % 200;
    let host_link = format!("todo-v{pid}");
    let (host_ip, ns_ip, net) = (
        format!("10.213.{n}.1/30"),
        format!("10.213.{n}.2/30"),
        format!("10.213.{n}.0/30"),
    );
    run(
        "ip",
        &[
            "link", "add", &host_link, "type", "veth", "peer", "name", "eth0", "netns", netns,
        ],
    )
    .unwrap();
    run("ip", &["addr", "add", &host_ip, "dev", &host_link]).unwrap();
    run("ip", &["link", "set", &host_link, "up"]).unwrap();
    run("ip", &["-n", netns, "addr", "add", &ns_ip, "dev", "eth0"]).unwrap();
    run("ip", &["-n", netns, "link", "set", "eth0", "up"]).unwrap();
    let gateway = format!("10.213.{n}.1");
    run(
        "ip",
        &["-n", netns, "route", "add", "default", "via", &gateway],
    )
    .unwrap();
    let rules: Vec<Vec<String>> = [
        vec![
            "-t",
            "nat",
            "POSTROUTING",
            "-s",
            &net,
            "!",
            "-o",
            &host_link,
            "-j",
            "MASQUERADE",
        ],
        vec![
            "-t",
            "filter",
            "DOCKER-USER",
            "-i",
            &host_link,
            "-j",
            "ACCEPT",
        ],
        vec![
            "-t",
            "filter",
            "DOCKER-USER",
            "-o",
            &host_link,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
    ]
    .into_iter()
    .map(|r| r.into_iter().map(String::from).collect())
    .collect();
    for rule in &rules {
        let mut args: Vec<&str> = rule.iter().map(String::as_str).collect();
        args.insert(2, "-I");
        run("iptables", &args).unwrap();
    }
    Online { host_link, rules }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        self.stop();
        if let Some(online) = &self.online {
            for rule in &online.rules {
                let mut args: Vec<&str> = rule.iter().map(String::as_str).collect();
                args.insert(2, "-D");
                let _ = run("iptables", &args);
            }
            let _ = run("ip", &["link", "del", &online.host_link]);
        }
        let _ = run("ip", &["netns", "del", &self.netns]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
