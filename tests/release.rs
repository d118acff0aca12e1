//! `cargo xtask release` against a real registry: Debian's `docker-registry`, started by each
//! test on a free loopback port with its own storage, and killed at the end. Every test runs on a
//! copy of the project (HEAD, `git init` and one commit), because a release makes git tags and
//! some tests need a dirty tree. What the registry holds is read back over its v2 HTTP API, not
//! taken from what the command says.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use support::{docker, root, text};

const FIXTURES: &str = "tests/fixtures/release";
/// The user and password that `fixtures/release/htpasswd` holds (a bcrypt hash of the password).
const USER: &str = "tester";
const PASSWORD: &str = "right-password";

/// Full releases run one at a time: each builds, runs the smoke checks and pushes hundreds of
/// megabytes, on a machine of two cores shared with the other test binaries.
static FULL_RELEASE: Mutex<()> = Mutex::new(());

fn fixture(name: &str) -> PathBuf {
    support::root().join(FIXTURES).join(name)
}

/// A folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("xtask-release-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A real registry on 127.0.0.1 (which the engine treats as insecure, so plain HTTP works).
struct Registry {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Registry {
    fn start(auth: bool) -> Registry {
        assert!(
            which("docker-registry"),
            "docker-registry is missing: `cargo xtask test` installs it (Debian package \
             docker-registry)"
        );
        let dir = TempDir::new("registry");
        let port = free_port();
        let auth = if auth {
            format!(
                "auth:\n  htpasswd:\n    realm: release-tests\n    path: {}\n",
                fixture("htpasswd").display()
            )
        } else {
            String::new()
        };
        std::fs::write(
            dir.0.join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: \
                 127.0.0.1:{port}\n{auth}",
                dir.0.join("storage").display()
            ),
        )
        .unwrap();
        let mut registry = Registry {
            port,
            dir,
            child: None,
        };
        registry.run();
        registry
    }

    /// Starts the registry process on this registry's port and storage, and waits until it
    /// answers.
    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.0.join("registry.log"))
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.0.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let start = Instant::now();
        while self.get("/v2/", None).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the registry did not answer within 20 s: {}",
                std::fs::read_to_string(self.dir.0.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the registry process: the registry goes away at once, as a crash would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn prefix(&self) -> String {
        format!("127.0.0.1:{}/todo", self.port)
    }

    /// One HTTP/1.0 request to the registry: (status, headers, body).
    fn get(&self, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String, Vec<u8>)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let accept = accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n{accept}\r\n",
            self.port
        )?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(response.len());
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let body = response.get(split + 4..).unwrap_or_default().to_vec();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((status, head, body))
    }

    fn json(&self, path: &str, accept: Option<&str>) -> Option<serde_json::Value> {
        let (status, _, body) = self.get(path, accept).expect("registry answers");
        (status == 200).then(|| serde_json::from_slice(&body).expect("registry JSON"))
    }

    /// Every repository the registry holds.
    fn catalog(&self) -> Vec<String> {
        let catalog = self.json("/v2/_catalog", None).expect("catalog");
        strings(&catalog["repositories"])
    }

    /// The digest and manifest stored under `name:reference`, as the registry serves them.
    fn manifest(&self, name: &str, reference: &str) -> Option<(String, serde_json::Value)> {
        let accept = "application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.oci.image.manifest.v1+json";
        let (status, head, body) = self
            .get(&format!("/v2/{name}/manifests/{reference}"), Some(accept))
            .expect("registry answers");
        if status != 200 {
            return None;
        }
        let digest = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("docker-content-digest")
                    .then(|| v.trim().to_string())
            })
            .expect("Docker-Content-Digest header");
        Some((digest, serde_json::from_slice(&body).unwrap()))
    }

    /// The image config (with its labels) that a manifest names.
    fn config(&self, name: &str, manifest: &serde_json::Value) -> serde_json::Value {
        let digest = manifest["config"]["digest"].as_str().unwrap();
        self.json(&format!("/v2/{name}/blobs/{digest}"), None)
            .expect("config blob")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
        // The images the release built or tagged for this registry exist only under its
        // references; removing those references removes exactly what the tests made.
        let prefix = format!("127.0.0.1:{}/", self.port);
        let listing = Command::new("docker")
            .args([
                "image",
                "ls",
                "--digests",
                "--format",
                "{{.Repository}}\t{{.Tag}}\t{{.Digest}}",
            ])
            .output()
            .map(|o| text(&o.stdout))
            .unwrap_or_default();
        let mut references = Vec::new();
        for line in listing.lines().filter(|l| l.starts_with(&prefix)) {
            let mut parts = line.split('\t');
            let (repo, tag, digest) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            if tag != "<none>" {
                references.push(format!("{repo}:{tag}"));
            }
            if digest.starts_with("sha256:") {
                references.push(format!("{repo}@{digest}"));
            }
        }
        references.sort();
        references.dedup();
        if !references.is_empty() {
            let _ = Command::new("docker").arg("rmi").args(&references).output();
        }
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A copy of the project at HEAD in a git repository of its own: one commit, the annotated tag
/// v1.0.0 standing for the previous release, and a valid `.env` (ignored by git).
struct Project {
    dir: TempDir,
    /// The release signing key pair, made by `cargo xtask keygen` outside the project.
    key: TempDir,
}

/// The password of every test key: made up for the tests, and searched for in their output.
const KEY_PASSWORD: &str = "test-key-password-3b9f1c";

impl Project {
    fn new() -> Project {
        let dir = TempDir::new("project");
        let scratch = TempDir::new("archive");
        support::project_at_head(&dir.0, &scratch.0);
        let key = TempDir::new("key");
        let project = Project { dir, key };
        project.keygen(&project.key.0);
        // The main tree's base-image decision, so the copy builds on the same bases (and hits
        // the same layer cache) without asking Docker Hub again.
        std::fs::create_dir_all(project.path("target/xtask")).unwrap();
        let memo = root().join("target/xtask/bases-auto");
        if memo.is_file() {
            std::fs::copy(memo, project.path("target/xtask/bases-auto")).unwrap();
        }
        support::share_build_seed(&project.dir.0);
        // The smoke checks' tools (hadolint, trivy) live in a venv under target/tools/, installed
        // from PyPI on first use: the copy shares the main tree's instead of installing its own
        // on every release. The smoke run locks that folder while it installs.
        let tools = root().join("target/tools");
        std::fs::create_dir_all(&tools).unwrap();
        std::os::unix::fs::symlink(&tools, project.path("target/tools")).unwrap();
        project.write_env(None);
        project
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.0.join(relative)
    }

    /// `cargo xtask keygen --dir DIR`, run in the project.
    fn keygen(&self, dir: &std::path::Path) {
        let out = Command::new(support::xtask_bin())
            .args(["keygen", "--dir"])
            .arg(dir)
            .env("COSIGN_PASSWORD", KEY_PASSWORD)
            .current_dir(&self.dir.0)
            .output()
            .unwrap();
        assert!(out.status.success(), "keygen: {}", text(&out.stderr));
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            !all.contains(KEY_PASSWORD) && !all.contains("PRIVATE KEY"),
            "{all}"
        );
    }

    fn private_key(&self) -> PathBuf {
        self.key.0.join("cosign.key")
    }

    /// Writes `.env` from the valid fixture, with `DOCKER_REGISTRY` when given.
    fn write_env(&self, registry: Option<&str>) {
        let mut env = std::fs::read_to_string(fixture("valid.env")).unwrap();
        env.push_str(&format!("DOCKER_REGISTRY={}\n", registry.unwrap_or("")));
        std::fs::write(self.path(".env"), env).unwrap();
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(&self.dir.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {}: {}",
            args.join(" "),
            text(&out.stderr)
        );
        text(&out.stdout).trim().to_string()
    }

    fn tags(&self) -> Vec<String> {
        self.git(&["tag", "--list"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `cargo xtask release ARGS` in the copy, with `DOCKER_REGISTRY` from `registry` (None:
    /// unset, so that `.env` decides) and any other variables given.
    fn command(&self, args: &[&str], registry: Option<&str>, env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(support::xtask_bin());
        command
            .arg("release")
            .args(args)
            .current_dir(&self.dir.0)
            .env_remove("DOCKER_REGISTRY")
            .env_remove("TODO_RELEASE_PAUSE")
            .env("COSIGN_KEY", self.private_key())
            .env("COSIGN_PASSWORD", KEY_PASSWORD);
        if let Some(registry) = registry {
            command.env("DOCKER_REGISTRY", registry);
        }
        for (k, v) in env {
            if v.is_empty() {
                command.env_remove(k);
            } else {
                command.env(k, v);
            }
        }
        command
    }

    /// `cargo xtask ARGS` in the copy.
    fn xtask(&self, args: &[&str]) -> Output {
        Command::new(support::xtask_bin())
            .args(args)
            .current_dir(&self.dir.0)
            .output()
            .unwrap()
    }

    fn release(&self, args: &[&str], registry: Option<&str>, env: &[(&str, &str)]) -> Output {
        self.command(args, registry, env).output().unwrap()
    }

    /// Asserts that the release was refused for `check` and left everything as it was.
    fn refused(
        &self,
        args: &[&str],
        registry: Option<&str>,
        env: &[(&str, &str)],
        check: &str,
    ) -> String {
        let out = self.release(args, registry, env);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} was not refused:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("refused[{check}]")),
            "{args:?}: no refused[{check}] in:\n{stderr}"
        );
        assert!(
            stderr.contains("nothing was built, pushed, written or tagged"),
            "{stderr}"
        );
        self.assert_untouched();
        stderr
    }

    /// No tag but the previous release's, no release record, no build started.
    fn assert_untouched(&self) {
        assert_eq!(self.tags(), ["v1.0.0"]);
        assert!(
            !self.path("target/releases").exists(),
            "a release record was written"
        );
        assert!(
            !self.path("target/xtask/release").exists(),
            "a release build was started"
        );
    }

    fn record(&self, tag: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path(&format!("target/releases/{tag}.json")))
            .expect("release record");
        serde_json::from_str(&text).unwrap()
    }
}

fn local_images_under(prefix: &str) -> Vec<String> {
    docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn dry_run_prints_the_whole_plan_and_changes_nothing() {
    let registry = Registry::start(false);
    let project = Project::new();
    let prefix = registry.prefix();
    let out = project.release(&["v1.0.1", "--dry-run", "--json"], Some(&prefix), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dry["ok"], true);
    let plan = &dry["plan"];
    assert_eq!(plan["tag"], "v1.0.1");
    assert_eq!(plan["previous"], "1.0.0");
    let short = &project.git(&["rev-parse", "HEAD"])[..7];
    let pushes: Vec<String> = plan["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["reference"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = [
        ("frontend", format!("sha-{short}")),
        ("backend", format!("sha-{short}")),
        ("frontend", "v1.0.1".into()),
        ("backend", "v1.0.1".into()),
        ("frontend", "latest".into()),
        ("backend", "latest".into()),
    ]
    .iter()
    .map(|(s, t)| format!("{prefix}/todo-{s}:{t}"))
    .collect();
    assert_eq!(pushes, expected);
    assert_eq!(dry["sources"]["frontend"], "Build");
    assert!(strings(&plan["checks"]).iter().any(|c| c.contains("smoke")));

    // A pre-release leaves `latest` alone.
    let out = project.release(&["v1.1.0-rc.1", "--dry-run", "--json"], Some(&prefix), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tags: Vec<&str> = dry["plan"]["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["tag"].as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        [
            &format!("sha-{short}"),
            &format!("sha-{short}"),
            "v1.1.0-rc.1",
            "v1.1.0-rc.1"
        ]
    );

    // --no-git-tag leaves the tag out of the plan.
    let out = project.release(
        &["v1.0.1", "--no-git-tag", "--dry-run", "--json"],
        Some(&prefix),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(dry["plan"]["git_tag"].is_null(), "{dry}");

    // The text form names every reference and says that nothing happened.
    let out = project.release(&["v1.0.1", "--dry-run"], Some(&prefix), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for reference in &expected {
        assert!(
            stdout.contains(reference.as_str()),
            "{reference} missing:\n{stdout}"
        );
    }
    assert!(text(&out.stderr).contains("dry run: nothing was built, pushed, written or tagged"));

    project.assert_untouched();
    assert!(registry.catalog().is_empty(), "{:?}", registry.catalog());
    assert!(local_images_under(&format!("{prefix}/")).is_empty());
    assert_eq!(project.git(&["status", "--porcelain"]), "");
}

#[test]
fn versions_that_are_malformed_old_or_already_tagged_are_refused() {
    let registry = Registry::start(false);
    let project = Project::new();
    let prefix = registry.prefix();
    let reg = Some(prefix.as_str());
    for (version, says) in [
        ("1.0.1", "`1.0.1` has no leading v"),
        ("V1.0.1", "capital V"),
        ("v1.0", "not semantic versioning"),
        ("v1.0.1+build.7", "+build metadata"),
    ] {
        let stderr = project.refused(&[version], reg, &[], "version");
        assert!(stderr.contains(says), "{version}: {stderr}");
    }
    // v1.0.0 is tagged: both the tag and the order forbid it, and both are reported at once.
    let stderr = project.refused(&["v1.0.0"], reg, &[], "git-tag");
    assert!(stderr.contains("refused[newer]"), "{stderr}");
    let stderr = project.refused(&["v0.9.0"], reg, &[], "newer");
    assert!(
        stderr.contains("newest released version v1.0.0"),
        "{stderr}"
    );
    assert!(stderr.contains("--force"), "{stderr}");
    // --force lifts only the order.
    let out = project.release(&["v0.9.0", "--force", "--dry-run"], reg, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("`latest` stays where it is"));

    // A release record counts as much as a tag.
    std::fs::create_dir_all(project.path("target/releases")).unwrap();
    std::fs::write(
        project.path("target/releases/v2.0.0.json"),
        r#"{"version": "2.0.0", "tag": "v2.0.0"}"#,
    )
    .unwrap();
    let out = project.release(&["v1.5.0"], reg, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused[newer]") && stderr.contains("v2.0.0"),
        "{stderr}"
    );
    std::fs::remove_dir_all(project.path("target/releases")).unwrap();

    project.assert_untouched();
    assert!(registry.catalog().is_empty());
}

#[test]
fn a_dirty_tree_is_refused_unless_allowed() {
    let registry = Registry::start(false);
    let project = Project::new();
    let prefix = registry.prefix();
    std::fs::write(project.path("frontend/untracked.txt"), "work in progress\n").unwrap();
    let stderr = project.refused(&["v1.0.1"], Some(&prefix), &[], "clean-tree");
    assert!(stderr.contains("--allow-dirty"), "{stderr}");
    let out = project.release(
        &["v1.0.1", "--allow-dirty", "--dry-run", "--json"],
        Some(&prefix),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(dry["plan"]["sha_tag"].as_str().unwrap().ends_with("-dirty"));
    project.assert_untouched();
}

#[test]
fn an_invalid_environment_is_refused_without_printing_secrets() {
    let registry = Registry::start(false);
    let project = Project::new();
    let prefix = registry.prefix();
    std::fs::copy(fixture("invalid.env"), project.path("broken.env")).unwrap();
    project.git(&["add", "broken.env"]);
    project.git(&["commit", "-q", "-m", "a broken environment file"]);
    let stderr = project.refused(
        &["v1.0.1", "--env-file", "broken.env"],
        Some(&prefix),
        &[],
        "environment",
    );
    assert!(
        stderr.contains("BETTER_AUTH_SECRET must be at least 32"),
        "{stderr}"
    );
    assert!(stderr.contains("BETTER_AUTH_URL"), "{stderr}");
    for secret in ["short-secret-xyz", "test-password", "sk-test-0000"] {
        assert!(!stderr.contains(secret), "{secret} printed:\n{stderr}");
    }
    // No .env at all is an invalid environment too, with the way to create one.
    std::fs::remove_file(project.path(".env")).unwrap();
    let stderr = project.refused(&["v1.0.1"], Some(&prefix), &[], "environment");
    assert!(stderr.contains("cp env/.env.example .env"), "{stderr}");
    // A registry name that breaks the rules is refused like a bad file.
    project.write_env(None);
    let stderr = project.refused(&["v1.0.1"], Some("Bad_Registry/x"), &[], "registry");
    assert!(
        stderr.contains("DOCKER_REGISTRY in the environment"),
        "{stderr}"
    );
}

/// On the first engine (the classic image store, one platform per image) a release for more
/// than the host's platform is refused before anything is built, and so is an unknown platform
/// or a list without the host's; `--dry-run` shows the same refusals.
#[test]
fn platforms_the_engine_cannot_hold_or_unknown_ones_are_refused_before_anything_is_built() {
    let project = Project::new();
    let registry = Some("127.0.0.1:1/todo");
    let stderr = project.refused(
        &["v1.0.1", "--platform", "linux/amd64,linux/arm64"],
        registry,
        &[],
        "platform",
    );
    assert!(
        stderr.contains(
            "releasing for linux/amd64,linux/arm64 needs the engine's containerd image store"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("\"containerd-snapshotter\": true"),
        "{stderr}"
    );
    let stderr = project.refused(
        &["v1.0.1", "--platform", "linux/amd64,linux/s390x"],
        registry,
        &[],
        "platform",
    );
    assert!(
        stderr.contains("unsupported platform `linux/s390x`"),
        "{stderr}"
    );
    assert!(stderr.contains("linux/amd64, linux/arm64"), "{stderr}");
    let stderr = project.refused(
        &["v1.0.1", "--platform", "linux/arm64"],
        registry,
        &[],
        "platform",
    );
    assert!(stderr.contains("smoke checks"), "{stderr}");
    // project.toml's build.platforms is the default, as for `build`.
    let toml = std::fs::read_to_string(project.path("project.toml")).unwrap();
    let toml = toml.replacen(
        "\n[bases]\n",
        "\n[build]\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\n[bases]\n",
        1,
    );
    assert!(
        toml.contains("platforms = ["),
        "project.toml has no [bases] table"
    );
    std::fs::write(project.path("project.toml"), toml).unwrap();
    let stderr = project.refused(
        &["v1.0.1", "--dry-run", "--allow-dirty"],
        registry,
        &[],
        "platform",
    );
    assert!(stderr.contains("containerd image store"), "{stderr}");
    assert!(stderr.contains("dry run"), "{stderr}");
    // The flag wins over project.toml: the host's platform alone passes that check.
    let out = project.release(
        &[
            "v1.0.1",
            "--dry-run",
            "--allow-dirty",
            "--platform",
            "linux/amd64",
        ],
        registry,
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("refused[platform]"), "{stderr}");
    project.assert_untouched();
}

#[test]
fn a_missing_unreachable_or_refusing_registry_is_refused() {
    let project = Project::new();
    // No DOCKER_REGISTRY anywhere.
    let stderr = project.refused(&["v1.0.1"], None, &[], "registry");
    assert!(
        stderr.contains("DOCKER_REGISTRY is empty or unset"),
        "{stderr}"
    );

    // Nothing listens on the port.
    let closed = format!("127.0.0.1:{}/todo", free_port());
    let stderr = project.refused(&["v1.0.1"], Some(&closed), &[], "registry");
    assert!(stderr.contains("is unreachable"), "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");

    // A registry that wants a login: no credentials, then wrong ones, are refused; the right
    // ones, from Docker's own config, pass. The password is never printed.
    let registry = Registry::start(true);
    let host = format!("127.0.0.1:{}", registry.port);
    let prefix = registry.prefix();
    let config = TempDir::new("docker-config");
    let login = |password: Option<&str>| {
        let auths = match password {
            Some(p) => {
                let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{p}"));
                serde_json::json!({ "auths": { host.as_str(): { "auth": auth } } })
            }
            None => serde_json::json!({ "auths": {} }),
        };
        std::fs::write(config.0.join("config.json"), auths.to_string()).unwrap();
    };
    let docker_config = config.0.to_str().unwrap();
    let env = [("DOCKER_CONFIG", docker_config)];
    login(None);
    let stderr = project.refused(&["v1.0.1"], Some(&prefix), &env, "credentials");
    assert!(stderr.contains(&format!("docker login {host}")), "{stderr}");
    login(Some("wrong-password"));
    let stderr = project.refused(&["v1.0.1"], Some(&prefix), &env, "credentials");
    assert!(!stderr.contains("wrong-password"), "{stderr}");
    login(Some(PASSWORD));
    let out = project.release(&["v1.0.1", "--dry-run"], Some(&prefix), &env);
    let stderr = text(&out.stderr) + &text(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    project.assert_untouched();
}

#[test]
fn a_version_the_registry_holds_from_another_revision_is_refused() {
    let registry = Registry::start(false);
    let project = Project::new();
    let prefix = registry.prefix();
    // A tiny image, labelled as v1.5.0 of another revision, pushed as todo-backend:v1.5.0.
    let foreign = format!("{prefix}/todo-backend:v1.5.0");
    let context = fixture("foreign");
    docker(&[
        "buildx",
        "build",
        "--load",
        "--quiet",
        "--tag",
        &foreign,
        context.to_str().unwrap(),
    ]);
    docker(&["push", "--quiet", &foreign]);
    let (digest, _) = registry.manifest("todo/todo-backend", "v1.5.0").unwrap();

    let stderr = project.refused(&["v1.5.0"], Some(&prefix), &[], "registry-holds");
    assert!(stderr.contains(&foreign), "{stderr}");
    assert!(
        stderr.contains("revision 0000000000000000000000000000000000000000"),
        "{stderr}"
    );
    assert!(stderr.contains("e.g. v1.5.1"), "{stderr}");
    // The registry still holds exactly what it held.
    assert_eq!(registry.catalog(), ["todo/todo-backend"]);
    assert_eq!(
        registry.manifest("todo/todo-backend", "v1.5.0").unwrap().0,
        digest
    );
}

/// Checks the finished release against the registry and the engine: every tag of each image
/// names one digest, whose config is the local image and whose labels are the release's.
fn assert_released(project: &Project, registry: &Registry, record: &serde_json::Value) {
    let revision = project.git(&["rev-parse", "HEAD"]);
    let short = &revision[..7];
    assert_eq!(record["revision"], revision.as_str());
    let images = record["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    for image in images {
        let service = image["service"].as_str().unwrap();
        let name = format!("todo/todo-{service}");
        let digest = image["digest"].as_str().unwrap();
        for tag in [format!("sha-{short}"), "v1.0.1".into(), "latest".into()] {
            let (remote, manifest) = registry
                .manifest(&name, &tag)
                .unwrap_or_else(|| panic!("{name}:{tag} is not in the registry"));
            assert_eq!(remote, digest, "{name}:{tag}");
            // The manifest's config is the local image: its id is the config's digest.
            let local = docker(&[
                "image",
                "inspect",
                "--format",
                "{{.Id}}",
                &format!("127.0.0.1:{}/{name}:{tag}", registry.port),
            ]);
            assert_eq!(manifest["config"]["digest"], local.as_str(), "{name}:{tag}");
            assert_eq!(image["id"], local.as_str());
        }
        let pinned = format!("127.0.0.1:{}/{name}@{digest}", registry.port);
        assert_eq!(image["pinned"], pinned.as_str());
        let repo_digests = docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            image["id"].as_str().unwrap(),
        ]);
        assert!(repo_digests.contains(&pinned), "{repo_digests}");
        // The labels, read from the config blob the registry serves.
        let (_, manifest) = registry.manifest(&name, "v1.0.1").unwrap();
        let config = registry.config(&name, &manifest);
        let labels = &config["config"]["Labels"];
        assert_eq!(labels["org.opencontainers.image.version"], "1.0.1");
        assert_eq!(
            labels["org.opencontainers.image.revision"],
            revision.as_str()
        );
        assert!(labels["org.opencontainers.image.title"]
            .as_str()
            .unwrap()
            .contains(service));
        let created = labels["org.opencontainers.image.created"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(created).is_ok(), "{created}");
        assert!(image["size_bytes"].as_u64().unwrap() > 1_000_000);
        assert!(image["pushed_bytes"].as_u64().unwrap() > 1_000_000);
    }
    // The annotated tag names HEAD and pins both images.
    assert_eq!(project.git(&["cat-file", "-t", "v1.0.1"]), "tag");
    assert_eq!(project.git(&["rev-list", "-n", "1", "v1.0.1"]), revision);
    let message = project.git(&["tag", "-l", "--format=%(contents)", "v1.0.1"]);
    for image in images {
        assert!(
            message.contains(image["pinned"].as_str().unwrap()),
            "{message}"
        );
    }
    assert_eq!(project.git(&["status", "--porcelain"]), "");
}

/// The release's Kubernetes overlay pins exactly the digests the registry holds for its version
/// tag, never a tag; `deploy render` shows them without the env file's secrets, and `deploy
/// check` passes on the manifests.
fn assert_deployable(project: &Project, registry: &Registry, record: &serde_json::Value) {
    let overlay = project.path("target/releases/v1.0.1/kustomization.yaml");
    let written = std::fs::read_to_string(&overlay).expect("the release wrote no overlay");
    let overlay: serde_json::Value = serde_yaml::from_str(&written).unwrap();
    assert_eq!(
        overlay["labels"][0]["pairs"]["app.kubernetes.io/version"],
        "1.0.1"
    );
    let images = overlay["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{written}");
    for image in record["images"].as_array().unwrap() {
        let service = image["service"].as_str().unwrap();
        let name = format!("todo/todo-{service}");
        let (digest, _) = registry.manifest(&name, "v1.0.1").unwrap();
        let entry = images
            .iter()
            .find(|i| i["name"] == format!("todo-{service}").as_str())
            .unwrap_or_else(|| panic!("no images: entry for todo-{service}:\n{written}"));
        let repository = format!("127.0.0.1:{}/{name}", registry.port);
        assert_eq!(entry["newName"], repository.as_str(), "{written}");
        assert_eq!(entry["digest"], digest.as_str(), "{written}");
        assert!(entry.get("newTag").is_none(), "{written}");
    }

    let out = project.xtask(&["deploy", "render", "v1.0.1"]);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for image in record["images"].as_array().unwrap() {
        let pinned = image["pinned"].as_str().unwrap();
        assert!(shown.contains(&format!("image: {pinned}\n")), "{shown}");
    }
    let env = std::fs::read_to_string(fixture("valid.env")).unwrap();
    for secret in ["BETTER_AUTH_SECRET", "OPENAI_API_KEY", "DATABASE_URL"] {
        let value = env
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{secret}=")))
            .unwrap();
        assert!(!shown.contains(value), "render shows {secret}:\n{shown}");
        assert!(
            shown.contains(&format!("  {secret}: '<redacted: ")),
            "{shown}"
        );
    }

    let out = project.xtask(&["deploy", "check", "v1.0.1"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("deploy check v1.0.1: 7 objects pass"));
}

/// cosign with the test registry's flags (plain HTTP on loopback, no transparency log).
fn cosign(args: &[&str], key: &std::path::Path) -> Output {
    Command::new("cosign")
        .args(args)
        .arg("--key")
        .arg(key)
        .args([
            "--insecure-ignore-tlog",
            "--allow-http-registry",
            "--allow-insecure-registry",
        ])
        .output()
        .expect("run cosign (the release installs Debian's cosign)")
}

/// Every image of the record is signed and attested in the registry: `cosign verify` passes
/// with the release's public key and fails with another one; the attestation holds the image's
/// SBOM; no key material reached the output.
fn assert_signed(project: &Project, registry: &Registry, record: &serde_json::Value, out: &Output) {
    assert_eq!(record["signed"], true, "{record}");
    let public = project.key.0.join("cosign.pub");
    let other = TempDir::new("other-key");
    project.keygen(&other.0);
    let other_public = other.0.join("cosign.pub");
    for image in record["images"].as_array().unwrap() {
        let pinned = image["pinned"].as_str().unwrap();
        let signature = &image["signature"];
        for kind in ["signature", "attestation"] {
            let stored = signature[kind].as_str().unwrap();
            let (name, digest) = stored.split_once('@').unwrap();
            let name = name.split_once('/').unwrap().1;
            let (remote, _) = registry
                .manifest(name, digest)
                .unwrap_or_else(|| panic!("{stored} is not in the registry"));
            assert_eq!(remote, digest);
        }
        let verified = cosign(&["verify", pinned], &public);
        assert!(verified.status.success(), "{}", text(&verified.stderr));
        let refused = cosign(&["verify", pinned], &other_public);
        assert!(!refused.status.success(), "another key verified {pinned}");
        let attested = cosign(
            &["verify-attestation", "--type", "spdxjson", pinned],
            &public,
        );
        assert!(attested.status.success(), "{}", text(&attested.stderr));
        let envelope: serde_json::Value =
            serde_json::from_str(text(&attested.stdout).lines().next().unwrap()).unwrap();
        let statement = base64::engine::general_purpose::STANDARD
            .decode(envelope["payload"].as_str().unwrap())
            .unwrap();
        let statement: serde_json::Value = serde_json::from_slice(&statement).unwrap();
        let sbom: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(image["sbom"].as_str().map(|p| project.path(p)).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(statement["predicate"]["packages"], sbom["packages"]);
        let names: Vec<&str> = sbom["packages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        let expected = if image["service"] == "backend" {
            "fastapi"
        } else {
            "next"
        };
        assert!(
            names.contains(&expected),
            "{expected} not in the SBOM of {pinned}"
        );
        assert!(
            names.contains(&"libc6"),
            "libc6 not in the SBOM of {pinned}"
        );
    }
    let key = std::fs::read_to_string(project.private_key()).unwrap();
    let secret_line = key.lines().nth(1).unwrap();
    for output in [
        text(&out.stdout),
        text(&out.stderr),
        std::fs::read_to_string(project.path("target/releases/v1.0.1.json")).unwrap(),
    ] {
        assert!(
            !output.contains(KEY_PASSWORD),
            "the key's password was printed"
        );
        assert!(!output.contains("PRIVATE KEY") && !output.contains(secret_line));
    }
}

#[test]
fn a_release_without_a_key_is_refused_before_anything_is_built() {
    let registry = Registry::start(false);
    let project = Project::new();
    let prefix = registry.prefix();
    let stderr = project.refused(
        &["v1.0.1"],
        Some(&prefix),
        &[("COSIGN_KEY", ""), ("COSIGN_PASSWORD", "")],
        "signing",
    );
    assert!(
        stderr.contains("cargo xtask keygen") && stderr.contains("--no-sign"),
        "{stderr}"
    );
    assert!(registry.catalog().is_empty(), "{:?}", registry.catalog());
    // A key inside the repository is refused too, and a wrong password.
    std::fs::copy(project.private_key(), project.path("cosign.key")).unwrap();
    std::fs::copy(project.key.0.join("cosign.pub"), project.path("cosign.pub")).unwrap();
    let key = project.path("cosign.key").display().to_string();
    let stderr = project.refused(
        &["v1.0.1", "--allow-dirty"],
        Some(&prefix),
        &[("COSIGN_KEY", &key)],
        "signing",
    );
    assert!(stderr.contains("inside the repository"), "{stderr}");
    let stderr = project.refused(
        &["v1.0.1"],
        Some(&prefix),
        &[("COSIGN_PASSWORD", "not-the-password")],
        "signing",
    );
    assert!(
        !stderr.contains(KEY_PASSWORD) && !stderr.contains("not-the-password"),
        "{stderr}"
    );
    assert!(registry.catalog().is_empty(), "{:?}", registry.catalog());
}

#[test]
fn a_release_builds_checks_pushes_verifies_records_and_tags() {
    let _one = FULL_RELEASE.lock().unwrap_or_else(|e| e.into_inner());
    let registry = Registry::start(false);
    let project = Project::new();
    // The registry comes from `.env` this time, as a team would set it.
    project.write_env(Some(&registry.prefix()));
    let out = project.release(&["v1.0.1", "--json", "--progress", "quiet"], None, &[]);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "release failed:\n{}",
        support::error_first(&stderr)
    );
    assert!(stderr.contains("running the smoke checks on"), "{stderr}");
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record, project.record("v1.0.1"));
    assert_eq!(record["resumed"], false);
    assert_eq!(record["latest"], true);
    assert_eq!(project.tags(), ["v1.0.0", "v1.0.1"]);
    assert_released(&project, &registry, &record);
    for image in record["images"].as_array().unwrap() {
        assert!(image["build_seconds"].as_f64().is_some());
    }
    assert_deployable(&project, &registry, &record);
    assert_signed(&project, &registry, &record, &out);

    // Done is done: the same release again is refused and changes nothing.
    let out = project.release(&["v1.0.1"], None, &[]);
    let again = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{again}");
    assert!(again.contains("refused[git-tag]"), "{again}");
    assert_eq!(project.tags(), ["v1.0.0", "v1.0.1"]);
}

#[test]
fn a_registry_that_dies_mid_push_leaves_a_release_the_same_command_completes() {
    let _one = FULL_RELEASE.lock().unwrap_or_else(|e| e.into_inner());
    let mut registry = Registry::start(false);
    let project = Project::new();
    let prefix = registry.prefix();
    let hooks = TempDir::new("hook");
    let pause = hooks.0.join("paused-after-first-push");
    let hook = format!("1:{}", pause.display());
    let mut child = project
        .command(
            &["v1.0.1", "--progress", "quiet"],
            Some(&prefix),
            &[("TODO_RELEASE_PAUSE", &hook)],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read stderr as it comes, so the child never blocks on a full pipe while it waits.
    let mut child_stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = child_stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    while !pause.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the release ended ({status}) before its first push:\n{}",
                reader.join().unwrap()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "no push within 15 min"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The first push (frontend's sha- tag) is done: the registry goes away now.
    registry.kill();
    std::fs::remove_file(&pause).unwrap();
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let short = &project.git(&["rev-parse", "HEAD"])[..7];
    let first = format!("{prefix}/todo-frontend:sha-{short}");
    assert!(
        stderr.contains("the registry does not answer now"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "confirmed these pushes, which it holds unless it lost them:\n  {first}  sha256:"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("`latest` was not moved"), "{stderr}");
    assert!(
        stderr.contains("Run the same command again to complete the release: `cargo xtask release v1.0.1 --progress quiet`"),
        "{stderr}"
    );
    assert_eq!(project.tags(), ["v1.0.0"]);
    assert!(!project.path("target/releases").exists());

    // Back up on the same storage, the registry holds exactly what the message said.
    registry.run();
    assert_eq!(registry.catalog(), ["todo/todo-frontend"]);
    let (first_digest, _) = registry
        .manifest("todo/todo-frontend", &format!("sha-{short}"))
        .unwrap();
    assert!(
        stderr.contains(&format!("{first}  {first_digest}")),
        "{stderr}"
    );
    assert!(registry.manifest("todo/todo-frontend", "v1.0.1").is_none());

    // A dry run now shows the resumption; the same command then completes the release, reusing
    // the frontend image already pushed.
    let out = project.release(&["v1.0.1", "--dry-run"], Some(&prefix), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("reuse {first_digest}")));
    let out = project.release(
        &["v1.0.1", "--json", "--progress", "quiet"],
        Some(&prefix),
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "the re-run failed:\n{}",
        support::error_first(&stderr)
    );
    assert!(
        stderr.contains("resuming a release this revision started earlier"),
        "{stderr}"
    );
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["resumed"], true);
    let frontend = &record["images"][0];
    assert_eq!(frontend["service"], "frontend");
    assert_eq!(frontend["digest"], first_digest.as_str());
    assert!(frontend["build_seconds"].is_null());
    assert_eq!(project.tags(), ["v1.0.0", "v1.0.1"]);
    assert_released(&project, &registry, &record);
}

#[test]
fn a_release_promotes_the_images_ci_pushed_and_builds_when_they_do_not_match() {
    let _one = FULL_RELEASE.lock().unwrap_or_else(|e| e.into_inner());
    let registry = Registry::start(false);
    let project = Project::new();
    let prefix = registry.prefix();
    project.write_env(Some(&prefix));
    // What a CI job runs on each commit: build, then push the commit's sha- images.
    let ci_push = |extra: &[&str]| -> serde_json::Value {
        let out = Command::new(support::xtask_bin())
            .args(["build", "--push", "--json", "--progress", "quiet"])
            .args(extra)
            .current_dir(&project.dir.0)
            .env("DOCKER_REGISTRY", &prefix)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "build --push failed: {}",
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };

    // CI pushed this commit as version 1.0.0 (project.toml's): a release of v1.0.1 cannot use
    // those images, builds its own and says why.
    ci_push(&[]);
    let short = project.git(&["rev-parse", "HEAD"])[..7].to_string();
    let out = project.release(&["v1.0.1", "--json", "--progress", "quiet"], None, &[]);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "release failed:\n{}",
        support::error_first(&stderr)
    );
    let expected = format!(
        "frontend: built: {prefix}/todo-frontend:sha-{short} in the registry was made from \
         revision"
    );
    assert!(stderr.contains(&expected), "{expected:?} not in:\n{stderr}");
    assert!(stderr.contains("as version 1.0.0, not from"), "{stderr}");
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for image in record["images"].as_array().unwrap() {
        assert!(
            image["source"].as_str().unwrap().starts_with("built: "),
            "{image}"
        );
        assert!(image["build_seconds"].as_f64().is_some(), "{image}");
    }

    // The next commit, pushed by CI as 1.0.2: the release promotes exactly those images.
    std::fs::write(project.path("NOTES.md"), "a change after v1.0.1\n").unwrap();
    project.git(&["add", "NOTES.md"]);
    project.git(&["commit", "-q", "-m", "after v1.0.1"]);
    let short = project.git(&["rev-parse", "HEAD"])[..7].to_string();
    let pushed = ci_push(&["--set-version", "1.0.2"]);
    let out = project.release(&["v1.0.2", "--json", "--progress", "quiet"], None, &[]);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "release failed:\n{}",
        support::error_first(&stderr)
    );
    assert!(stderr.contains("running the smoke checks on"), "{stderr}");
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for image in record["images"].as_array().unwrap() {
        let service = image["service"].as_str().unwrap();
        let source = image["source"].as_str().unwrap();
        assert!(source.starts_with("promoted: "), "{source}");
        assert!(image["build_seconds"].is_null(), "{image}");
        let ci = pushed["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["service"] == service)
            .unwrap();
        let (_, ci_digest) = ci["pushed"].as_str().unwrap().split_once('@').unwrap();
        assert_eq!(image["digest"], ci_digest, "{service}");
        let name = format!("todo/todo-{service}");
        let (sha, _) = registry.manifest(&name, &format!("sha-{short}")).unwrap();
        let (version, _) = registry.manifest(&name, "v1.0.2").unwrap();
        assert_eq!(version, sha, "{service}: v1.0.2 and sha-{short} differ");
        assert_eq!(sha, ci_digest, "{service}");
    }
}

/// Ctrl-C as a terminal sends it (SIGINT to the whole process group), at a random moment of a
/// release, then twice at a random moment of its pushes: exit 130 every time, no smoke container
/// or network left, and never a half-published release. The version and `latest` name this
/// release's images for both services or for neither; a release whose tags are in the registry
/// is complete (recorded and tagged in git), one whose tags are not left no record and no tag.
/// Each run releases a new version of one project copy on one registry, so its pushes are real
/// ones and its build, after the first, comes from the cache.
#[test]
fn ctrl_c_to_the_process_group_stops_a_release_with_130_and_never_half_published() {
    let _one = FULL_RELEASE.lock().unwrap_or_else(|e| e.into_inner());
    let registry = Registry::start(false);
    let prefix = registry.prefix();
    let hooks = TempDir::new("ctrl-c");
    // The first moment falls in the build, the smoke checks or the SBOMs (a release takes a
    // minute or more to its first push here); the others within 0.6 s of the end of a push
    // chosen at random, while the next pushes run: with the layers in the registry already,
    // each of the six takes a fraction of a second, and with two seconds (tried first) the
    // pushes left were often all over before the Ctrl-C came.
    let (seed, whole) = support::moments(1, Duration::from_secs(50));
    let (_, pushes) = support::moments(2, Duration::from_millis(600));
    let runs = [(None, whole[0])]
        .into_iter()
        .chain(pushes.iter().enumerate().map(|(i, d)| {
            let after = 1 + (seed as usize / 7 + i * 2) % 5;
            (Some(after), *d)
        }));
    let project = Project::new();
    let mut tags = project.tags();
    for (i, (after, delay)) in runs.enumerate() {
        let version = format!("v1.0.{}", i + 1);
        let pause = hooks.0.join(format!("paused-{i}"));
        let hook = after.map(|n| format!("{n}:{}", pause.display()));
        let env: Vec<(&str, &str)> = hook
            .iter()
            .map(|h| ("TODO_RELEASE_PAUSE", h.as_str()))
            .collect();
        let command = project.command(&[&version, "--progress", "quiet"], Some(&prefix), &env);
        let moment = |child: &mut Child| {
            if after.is_some() {
                let start = Instant::now();
                while !pause.exists() {
                    if child.try_wait().unwrap().is_some() {
                        return;
                    }
                    assert!(
                        start.elapsed() < Duration::from_secs(900),
                        "no push in 15 min"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::fs::remove_file(&pause).unwrap();
            }
            std::thread::sleep(delay);
        };
        let (sent, code, stderr) = support::interrupt_when(command, moment);
        let when = format!("seed {seed}, Ctrl-C {delay:?} after push {after:?}");
        assert!(sent, "{when}: the release ended first:\n{stderr}");
        support::assert_stopped_by_ctrl_c("release", seed, delay, code, &stderr);
        if let Some(run) = support::run_id(&stderr, "smoke run ") {
            let left = support::left_behind(&format!("todo-chatbot.run={run}"));
            assert_eq!(left, "", "{when}: the smoke run left:\n{stderr}");
        }
        // What the registry holds, read over its API: each service's version tag, and the
        // version that each service's `latest` names.
        let services = ["frontend", "backend"];
        let published = services.map(|s| {
            registry
                .manifest(&format!("todo/todo-{s}"), &version)
                .is_some()
        });
        let latest = services.map(|s| {
            let name = format!("todo/todo-{s}");
            registry.manifest(&name, "latest").map(|(_, manifest)| {
                registry.config(&name, &manifest)["config"]["Labels"]
                    ["org.opencontainers.image.version"]
                    .clone()
            })
        });
        assert_eq!(
            published[0], published[1],
            "{when}: {version} is in the registry for one image only:\n{stderr}"
        );
        assert_eq!(
            latest[0], latest[1],
            "{when}: `latest` names two releases:\n{stderr}"
        );
        let record = project.path(&format!("target/releases/{version}.json"));
        if published[0] {
            let number = serde_json::json!(version.trim_start_matches('v'));
            assert_eq!(latest[0], Some(number), "{when}: `latest` was not moved");
            tags.push(version.clone());
            assert_eq!(
                project.tags(),
                tags,
                "{when}: published but not tagged:\n{stderr}"
            );
            assert!(record.is_file(), "{when}: published but not recorded");
        } else {
            assert_eq!(
                project.tags(),
                tags,
                "{when}: a git tag without the release:\n{stderr}"
            );
            assert!(!record.exists(), "{when}: a record without the release");
        }
    }
}
