//! The Docker engine and the host programs the commands need: found, started, or installed.
//!
//! On a Debian host where we are root, a missing engine is installed from Debian trixie (Engine 26
//! with buildx and compose; bookworm's own engine is too old for `HEALTHCHECK --start-interval`)
//! and started detached; anywhere else the command stops with the exact commands to run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::docker::inspect::{HistoryEntry, Image};

/// The oldest engine whose BuildKit knows every Dockerfile feature the images use.
const MIN_ENGINE_MAJOR: u64 = 25;
const TRIXIE_SOURCE: &str = "/etc/apt/sources.list.d/todo-trixie.sources";
const TRIXIE_PIN: &str = "/etc/apt/preferences.d/todo-trixie";
const DAEMON_LOG: &str = "/var/log/todo-dockerd.log";

/// The exact commands a person runs where the xtask may not install the engine itself.
pub const INSTALL_HINT: &str = "install Docker Engine 25 or newer with the buildx and compose \
plugins (on Debian bookworm as root: add trixie at pin priority 100, then `apt-get install \
docker.io/trixie docker-buildx/trixie docker-compose/trixie`), start it with `dockerd &`, and run again";

/// Returns the engine's version, starting or installing the engine first when needed.
pub fn ensure(sh: &Shell) -> Result<String> {
    if let Some(version) = server_version(sh) {
        return check_version(version);
    }
    if which::which("dockerd").is_err() || which::which("docker").is_err() {
        install_engine(sh)?;
    }
    start_daemon(sh)?;
    let version = server_version(sh).context("the Docker engine started but does not answer")?;
    check_version(version)
}

fn check_version(version: String) -> Result<String> {
    let major: u64 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < MIN_ENGINE_MAJOR {
        bail!("Docker Engine {version} is too old (BuildKit lacks HEALTHCHECK --start-interval): {INSTALL_HINT}");
    }
    Ok(version)
}

/// The engine's version, or None when no engine answers.
pub fn server_version(sh: &Shell) -> Option<String> {
    socket_version().or_else(|| cli_version(sh))
}

/// The engine's version asked straight on its API socket.
fn socket_version() -> Option<String> {
    let (status, body) = api_get("/version")?;
    let version: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200).then(|| version["Version"].as_str().map(str::to_string))?
}

/// The engine the xtask talks to, found the way the Docker CLI finds it, so that the API socket,
/// `docker` and buildx all reach the same engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The CLI context in force (`default` when none is chosen).
    pub context: String,
    /// Where that choice came from, for `doctor`.
    pub chosen_by: &'static str,
    /// The engine's address (`unix:///var/run/docker.sock`, `tcp://...`, `ssh://...`), or None
    /// when the context could not be read.
    pub host: Option<String>,
}

impl Endpoint {
    /// The local socket of the engine, where it has one; a remote engine is asked through the CLI.
    pub fn socket(&self) -> Option<&str> {
        self.host.as_deref()?.strip_prefix("unix://")
    }

    fn is_default(&self) -> bool {
        self.context == "default"
    }
}

const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The endpoint of this process, resolved once.
pub fn endpoint() -> &'static Endpoint {
    static ENDPOINT: std::sync::OnceLock<Endpoint> = std::sync::OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        resolve_endpoint(
            var("DOCKER_HOST"),
            var("DOCKER_CONTEXT"),
            current_context(),
            context_host,
        )
    })
}

/// The Docker CLI's order: DOCKER_HOST (with the default context), then DOCKER_CONTEXT, then the
/// `currentContext` that `docker context use` writes into the CLI's config, then the default.
fn resolve_endpoint(
    docker_host: Option<String>,
    docker_context: Option<String>,
    current: Option<String>,
    context_host: impl Fn(&str) -> Option<String>,
) -> Endpoint {
    if let Some(host) = docker_host {
        return Endpoint {
            context: "default".into(),
            chosen_by: "DOCKER_HOST",
            host: Some(host),
        };
    }
    let (context, chosen_by) = match (docker_context, current) {
        (Some(c), _) => (c, "DOCKER_CONTEXT"),
        (None, Some(c)) => (c, "`docker context use`"),
        (None, None) => ("default".to_string(), "no context chosen"),
    };
    let host = if context == "default" {
        Some(DEFAULT_HOST.to_string())
    } else {
        context_host(&context)
    };
    Endpoint {
        context,
        chosen_by,
        host,
    }
}

/// The Docker CLI's configuration folder.
fn docker_config_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))
}

/// The context `docker context use` chose, from the CLI's config.json.
fn current_context() -> Option<String> {
    let text = std::fs::read_to_string(docker_config_dir()?.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    config["currentContext"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// The engine address of a named context, asked of the CLI (only when a context other than the
/// default is in force, so the usual case spends no process on it).
fn context_host(name: &str) -> Option<String> {
    crate::docker::docker([
        "context",
        "inspect",
        name,
        "--format",
        "{{.Endpoints.docker.Host}}",
    ])
    .read()
    .ok()
    .filter(|host| !host.is_empty())
}

/// A GET on the engine's API socket: (HTTP status, body). It takes about a millisecond where a
/// `docker` command takes tens, which a no-op build notices. None when the engine in force (see
/// `endpoint`) has no local socket (a remote engine, an unreadable context): callers then ask
/// the `docker` CLI instead, which reaches the same engine.
pub fn api_get(path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let socket = endpoint().socket()?;
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The id and size of a local image, through the API socket when it answers.
pub fn api_image(reference: &str) -> Option<Option<(String, u64)>> {
    let (status, body) = api_get(&format!("/images/{reference}/json"))?;
    if status != 200 {
        return Some(None);
    }
    let image: Image = serde_json::from_str(&body).ok()?;
    Some(Some((image.id, image.size)))
}

/// An image's history, newest entry first: (instruction, size of the layer it made), through the
/// API socket when it answers.
pub fn api_history(reference: &str) -> Option<Vec<(String, u64)>> {
    let (status, body) = api_get(&format!("/images/{reference}/history"))?;
    if status != 200 {
        return None;
    }
    let entries: Vec<HistoryEntry> = serde_json::from_str(&body).ok()?;
    Some(
        entries
            .into_iter()
            .map(|e| (e.created_by, e.size))
            .collect(),
    )
}

/// The folders that hold an image's layers on this host, lowest first, when the engine stores
/// them with overlay2 on a file system this process can read (a local engine, as root).
pub fn layer_dirs(reference: &str) -> Option<Vec<std::path::PathBuf>> {
    let (status, body) = api_get(&format!("/images/{reference}/json"))?;
    if status != 200 {
        return None;
    }
    let image: Image = serde_json::from_str(&body).ok()?;
    let data = &image.graph_driver.data;
    let mut dirs: Vec<std::path::PathBuf> = data
        .get("LowerDir")
        .map_or("", String::as_str)
        .split(':')
        .filter(|d| !d.is_empty())
        .rev()
        .map(std::path::PathBuf::from)
        .collect();
    dirs.push(data.get("UpperDir")?.into());
    dirs.iter().all(|d| d.is_dir()).then_some(dirs)
}

fn cli_version(sh: &Shell) -> Option<String> {
    which::which("docker").ok()?;
    let format = "--format={{.Server.Version}}";
    cmd!(sh, "docker version {format}")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
        .filter(|v| !v.is_empty())
}

fn start_daemon(sh: &Shell) -> Result<()> {
    let dockerd = which::which("dockerd").context(INSTALL_HINT)?;
    if !is_root(sh) {
        bail!("the Docker engine is not running and starting it needs root: run `sudo dockerd &`, then run again");
    }
    eprintln!("starting the Docker engine (log: {DAEMON_LOG})");
    let log = std::fs::File::create(DAEMON_LOG).context("cannot create the daemon log")?;
    // The daemon must outlive this process and must not receive the terminal's Ctrl-C: it runs
    // in a process group of its own and is never waited for.
    use std::os::unix::process::CommandExt;
    std::process::Command::new(dockerd)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start dockerd")?;
    poll(Duration::from_secs(60), || {
        server_version(sh)
            .map(|_| ())
            .context("the engine does not answer yet")
    })
    .with_context(|| format!("dockerd did not come up within 60 s: see {DAEMON_LOG}"))
}

fn is_root(sh: &Shell) -> bool {
    cmd!(sh, "id -u")
        .quiet()
        .read()
        .map(|u| u == "0")
        .unwrap_or(false)
}

/// True where `apt-get` may install packages: a Debian host and root.
pub fn can_apt(sh: &Shell) -> bool {
    Path::new("/etc/debian_version").exists() && which::which("apt-get").is_ok() && is_root(sh)
}

fn codename() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
}

/// The Debian release whose Docker Engine 26, buildx and compose the xtask installs on bookworm.
const ENGINE_SUITE: &str = "trixie";
const ENGINE_PACKAGES: [&str; 3] = ["docker.io", "docker-buildx", "docker-compose"];

/// What installing the engine does to a Debian host, as data: `install_engine` carries it out,
/// `doctor --install-plan` prints it, and a test simulates it with `apt-get -s` in a bookworm
/// container.
#[derive(Debug, PartialEq)]
pub struct InstallPlan {
    /// Files written before `apt-get update`: (path, content).
    pub files: Vec<(&'static str, String)>,
    /// The arguments of `apt-get install`, each package named with the release it comes from.
    pub packages: Vec<String>,
}

impl InstallPlan {
    /// The plan as the shell commands a person would type; `simulate` asks apt for the plan
    /// (`apt-get -s`) instead of installing.
    pub fn script(&self, simulate: bool) -> String {
        let mut out = String::from("set -e\n");
        for (path, content) in &self.files {
            out.push_str(&format!("cat > {path} <<'EOF'\n{content}EOF\n"));
        }
        let mode = if simulate { "-s" } else { "-y" };
        out.push_str("apt-get update -qq\n");
        out.push_str(&format!(
            "DEBIAN_FRONTEND=noninteractive apt-get install {mode} --no-install-recommends {}\n",
            self.packages.join(" ")
        ));
        out
    }
}

/// The engine's install plan for a host of Debian release `codename` whose apt uses `mirror`.
/// bookworm's own engine is too old, so there trixie is added at pin priority 100 (below the
/// default 500, so nothing moves to it by itself) and each package is named with `/trixie`. No
/// `-t trixie` is given: it would make trixie the target release of every dependency and upgrade
/// libc6, dpkg and base-files with them, while a per-package release takes only the named packages
/// and what bookworm cannot satisfy (containerd).
pub fn install_plan(codename: Option<&str>, mirror: &str) -> InstallPlan {
    if codename != Some("bookworm") {
        return InstallPlan {
            files: Vec::new(),
            packages: ENGINE_PACKAGES.iter().map(|p| p.to_string()).collect(),
        };
    }
    InstallPlan {
        files: engine_suite_files(mirror),
        packages: ENGINE_PACKAGES
            .iter()
            .map(|p| format!("{p}/{ENGINE_SUITE}"))
            .collect(),
    }
}

fn engine_suite_files(mirror: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            TRIXIE_SOURCE,
            format!(
                "Types: deb\nURIs: {mirror}\nSuites: {ENGINE_SUITE}\nComponents: main\n\
                 Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            ),
        ),
        (
            TRIXIE_PIN,
            format!(
                "# Only what is asked for by name comes from {ENGINE_SUITE}; nothing else is upgraded.\n\
                 Package: *\nPin: release n={ENGINE_SUITE}\nPin-Priority: 100\n"
            ),
        ),
    ]
}

/// The plan for this host: its release, and for bookworm the mirror of `engine_mirror`.
pub fn host_install_plan(sh: &Shell) -> Result<InstallPlan> {
    let codename = codename();
    let mirror = match codename.as_deref() {
        Some("bookworm") => engine_mirror(sh)?,
        _ => String::new(),
    };
    Ok(install_plan(codename.as_deref(), &mirror))
}

/// The mirror the trixie source names: project.toml's `debian_mirror` when it sets one, else
/// the host's apt entry for trixie or for its own release (see `mirror.rs`). The engine is the
/// host's and is installed before any command reads its `--config`, so the project file at the
/// root is the one asked.
fn engine_mirror(sh: &Shell) -> Result<String> {
    let file = sh.current_dir().join(crate::config::DEFAULT_FILE);
    let project = std::fs::read_to_string(file)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| {
            t.get("bases")?
                .get("debian_mirror")?
                .as_str()
                .map(str::to_string)
        });
    if let Some(mirror) = project {
        return Ok(mirror.trim_end_matches('/').to_string());
    }
    let host = crate::mirror::host(Some(Path::new(TRIXIE_SOURCE)));
    Ok(host.mirror_of(ENGINE_SUITE)?.uri.clone())
}

fn install_engine(sh: &Shell) -> Result<()> {
    if !can_apt(sh) {
        bail!("no Docker engine here: {INSTALL_HINT}");
    }
    let plan = host_install_plan(sh)?;
    for (path, content) in &plan.files {
        eprintln!("writing {path}: Debian {ENGINE_SUITE} at a low pin priority, for its Docker Engine 26 only");
        std::fs::write(path, content).with_context(|| format!("cannot write {path}"))?;
    }
    eprintln!("installing Docker Engine with buildx and compose (about a minute)");
    let packages: Vec<&str> = plan.packages.iter().map(String::as_str).collect();
    apt_install(sh, &packages)
}

fn apt_install(sh: &Shell, packages: &[&str]) -> Result<()> {
    cmd!(sh, "apt-get update -qq")
        .quiet()
        .run()
        .context("apt-get update failed")?;
    cmd!(
        sh,
        "apt-get install -y -qq --no-install-recommends {packages...}"
    )
    .env("DEBIAN_FRONTEND", "noninteractive")
    .quiet()
    .run()
    .with_context(|| format!("apt-get could not install {}", packages.join(" ")))
}

/// Makes sure a host program is on PATH, installing its Debian package where we may. A package
/// named `NAME/trixie` (cosign, kustomize) comes from trixie, which is added at the same low pin
/// priority as for the engine when it is not there yet; only that package is taken from it.
pub fn ensure_program(sh: &Shell, program: &str, package: &str) -> Result<()> {
    if which::which(program).is_ok() {
        return Ok(());
    }
    if !can_apt(sh) {
        bail!("`{program}` is missing: install the Debian package `{package}` (or its equal) and run again");
    }
    if package.ends_with(&format!("/{ENGINE_SUITE}")) && !Path::new(TRIXIE_SOURCE).exists() {
        for (path, content) in engine_suite_files(&engine_mirror(sh)?) {
            std::fs::write(path, content).with_context(|| format!("cannot write {path}"))?;
        }
    }
    eprintln!("installing the Debian package {package} for `{program}`");
    apt_install(sh, &[package])?;
    which::which(program)
        .map(|_| ())
        .with_context(|| format!("{package} installed no `{program}`"))
}

/// Retries `f` until it succeeds or `timeout` passes; on timeout returns the last error.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() >= timeout => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// A command that runs `docker buildx ARGS...` when given ARGS after `buildx`. Where the buildx
/// plugin sits in one of the Docker CLI's plugin folders and no CLI context is chosen, it runs the
/// plugin itself: the `docker` front end first runs every plugin once more to read its metadata,
/// about 0.05 s per build, which is most of what a no-op build of two images would otherwise
/// spend beyond `docker buildx bake`. With another context in force the front end runs it, so
/// that the plugin is told the context exactly as the CLI resolves it.
pub fn buildx() -> std::process::Command {
    let direct = endpoint().is_default().then(buildx_plugin).flatten();
    match direct {
        Some(plugin) => std::process::Command::new(plugin),
        None => {
            let mut command = std::process::Command::new("docker");
            command.arg("buildx");
            command
        }
    }
}

/// The buildx plugin binary, searched where the Docker CLI searches for plugins.
fn buildx_plugin() -> Option<std::path::PathBuf> {
    let config = docker_config_dir();
    let system = [
        "/usr/local/lib/docker/cli-plugins",
        "/usr/local/libexec/docker/cli-plugins",
        "/usr/lib/docker/cli-plugins",
        "/usr/libexec/docker/cli-plugins",
    ];
    config
        .map(|c| c.join("cli-plugins"))
        .into_iter()
        .chain(system.iter().map(std::path::PathBuf::from))
        .map(|dir| dir.join("docker-buildx"))
        .find(|path| path.is_file())
}

/// The host's proxy CA bundle, when one is named by the usual variables: it reaches builds as
/// the BuildKit secret `ca` and never as a layer or a build argument.
pub fn ca_bundle() -> Option<std::path::PathBuf> {
    [
        "TODO_CA_FILE",
        "SSL_CERT_FILE",
        "NODE_EXTRA_CA_CERTS",
        "PIP_CERT",
        "REQUESTS_CA_BUNDLE",
    ]
    .iter()
    .filter_map(std::env::var_os)
    .map(std::path::PathBuf::from)
    .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_engines_are_refused_with_the_fix() {
        let err = check_version("20.10.24".into()).unwrap_err().to_string();
        assert!(
            err.contains("too old") && err.contains("docker-buildx"),
            "{err}"
        );
        assert_eq!(
            check_version("26.1.5+dfsg1".into()).unwrap(),
            "26.1.5+dfsg1"
        );
    }

    #[test]
    fn poll_returns_the_last_error_on_timeout() {
        let mut n = 0;
        let err = poll(Duration::from_millis(300), || -> Result<()> {
            n += 1;
            bail!("try {n}")
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("try "));
        assert!(n >= 2);
    }

    #[test]
    fn bookworm_takes_only_the_engine_packages_from_trixie_and_no_target_release() {
        let plan = install_plan(Some("bookworm"), "http://mirror.example/debian");
        assert_eq!(
            plan.packages,
            [
                "docker.io/trixie",
                "docker-buildx/trixie",
                "docker-compose/trixie"
            ]
        );
        let script = plan.script(false);
        assert!(!script.contains("-t "), "{script}");
        assert!(script.contains("URIs: http://mirror.example/debian\nSuites: trixie"));
        assert!(script.contains("Pin: release n=trixie\nPin-Priority: 100"));
        assert!(plan.script(true).contains("apt-get install -s "));
        // A release whose own engine is new enough adds no source.
        assert!(install_plan(Some("trixie"), "m").files.is_empty());
    }

    #[test]
    fn the_endpoint_follows_the_cli_order_of_choice() {
        let hosts = |name: &str| (name == "remote").then(|| "unix:///run/other.sock".to_string());
        let e = resolve_endpoint(
            Some("unix:///a.sock".into()),
            Some("remote".into()),
            None,
            hosts,
        );
        assert_eq!(
            (e.context.as_str(), e.socket()),
            ("default", Some("/a.sock"))
        );
        let e = resolve_endpoint(None, Some("remote".into()), Some("x".into()), hosts);
        assert_eq!(
            (e.chosen_by, e.socket()),
            ("DOCKER_CONTEXT", Some("/run/other.sock"))
        );
        let e = resolve_endpoint(None, None, Some("remote".into()), hosts);
        assert_eq!(
            (e.chosen_by, e.socket()),
            ("`docker context use`", Some("/run/other.sock"))
        );
        let e = resolve_endpoint(None, None, None, hosts);
        assert_eq!(e.socket(), Some("/var/run/docker.sock"));
        // A context that cannot be read gives no socket: the CLI is asked instead.
        assert_eq!(
            resolve_endpoint(None, Some("gone".into()), None, hosts).socket(),
            None
        );
        let tcp = resolve_endpoint(Some("tcp://10.0.0.1:2375".into()), None, None, hosts);
        assert_eq!(tcp.socket(), None);
    }
}
