//! The Docker engine and the host programs the commands need: found, started, or installed.
//!
//! On a Debian host where we are root, a missing engine is installed from Debian trixie (Engine 26
//! with buildx and compose; bookworm's own engine is too old for `HEALTHCHECK --start-interval`)
//! and started detached; anywhere else the command stops with the exact commands to run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

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

/// A GET on the engine's API socket: (HTTP status, body). It takes about a millisecond where a
/// `docker` command takes tens, which a no-op build notices. None when the engine is not on the
/// default local socket or a `unix://` DOCKER_HOST (another context, a remote engine): callers
/// then ask the `docker` CLI instead.
pub fn api_get(path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    if std::env::var_os("DOCKER_CONTEXT").is_some() {
        return None;
    }
    let socket = match std::env::var("DOCKER_HOST") {
        Ok(host) => host.strip_prefix("unix://")?.to_string(),
        Err(_) => "/var/run/docker.sock".to_string(),
    };
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
    let image: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(Some((
        image["Id"].as_str()?.to_string(),
        image["Size"].as_u64()?,
    )))
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

fn install_engine(sh: &Shell) -> Result<()> {
    if !can_apt(sh) {
        bail!("no Docker engine here: {INSTALL_HINT}");
    }
    let mut from_trixie = false;
    if codename().as_deref() == Some("bookworm") {
        eprintln!("adding Debian trixie at a low pin priority, for its Docker Engine 26 only");
        std::fs::write(
            TRIXIE_SOURCE,
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        )?;
        std::fs::write(
            TRIXIE_PIN,
            "# Only what is asked for by name comes from trixie; nothing else is upgraded.\n\
             Package: *\nPin: release n=trixie\nPin-Priority: 100\n",
        )?;
        from_trixie = true;
    }
    eprintln!("installing Docker Engine with buildx and compose (about a minute)");
    // Each package is named with `/trixie` and no `-t trixie` is given: `-t` would make trixie the
    // target release of every dependency and upgrade libc6, dpkg and base-files with them, while a
    // per-package release takes only these and what bookworm cannot satisfy (containerd).
    let packages: Vec<String> = ["docker.io", "docker-buildx", "docker-compose"]
        .iter()
        .map(|p| {
            if from_trixie {
                format!("{p}/trixie")
            } else {
                p.to_string()
            }
        })
        .collect();
    let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
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

/// Makes sure a host program is on PATH, installing its Debian package where we may.
pub fn ensure_program(sh: &Shell, program: &str, package: &str) -> Result<()> {
    if which::which(program).is_ok() {
        return Ok(());
    }
    if !can_apt(sh) {
        bail!("`{program}` is missing: install the Debian package `{package}` (or its equal) and run again");
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
/// spend beyond `docker buildx bake`.
pub fn buildx() -> std::process::Command {
    let direct = std::env::var_os("DOCKER_CONTEXT")
        .is_none()
        .then(buildx_plugin)
        .flatten();
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
    let config = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")));
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
}
