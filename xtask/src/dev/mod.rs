//! `cargo xtask dev`, `up` and `down`: the stack in containers.
//!
//! `dev` checks the environment, builds the development images (`todo-*:dev`, from each
//! Dockerfile.dev, in parallel, with `build`'s progress), starts `compose/compose.yml` +
//! `compose/dev.yml` (+ `compose/db.yml` for the local PostgreSQL), shows one status line per
//! service until all are healthy, then streams their logs and watches the sources: an edit is
//! served by the containers' hot reload and measured; a dependency file, a Dockerfile.dev or a
//! compose file rebuilds or recreates only the service it concerns. Ctrl-C removes the stack
//! (containers, network, volumes) and exits 130. `up` starts the production stack detached and
//! waits until it is healthy; `up` again on an unchanged stack changes nothing, and its local
//! database keeps its data in a named volume across `up`, `down` and `up`; `down` removes the
//! stack and keeps that volume unless told `--volumes`.
//!
//! Each stack is a compose project named after the project root, so that a copy of the project
//! never touches the stack of another checkout; a run's leftovers (after a crash or a kill) are
//! removed by the next run.

mod bench;
mod images;
mod ports;
mod session;
pub mod stack;
mod status;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use xshell::Shell;

use crate::bases;
use crate::build::{self, Progress};
use crate::config::{BaseMode, Config};
use crate::docker::docker;
use crate::docker::inspect::Container;
use crate::env;
use crate::interrupt;
use crate::lock::{self, FileLock};
use crate::owned;
use stack::{Kind, Stack};
use status::{Board, Status};

/// Where the database of the stack comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DbMode {
    /// External when the env file holds a valid DATABASE_URL that does not name the `db`
    /// service, else local.
    Auto,
    /// A PostgreSQL container on the stack's network (compose/db.yml), with a new password per
    /// run; the env file's DATABASE_URL is not used.
    Local,
    /// The env file's DATABASE_URL (Neon, or any PostgreSQL the containers reach).
    External,
}

/// What `dev` and `up` share.
#[derive(Debug, Args)]
pub struct StackArgs {
    /// The dotenv file the containers read, relative to the repository root (default: `.env`).
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
    /// Where the database comes from.
    #[arg(long, value_enum, default_value_t = DbMode::Auto)]
    db: DbMode,
    /// A service's port on the host, e.g. `--port frontend=0` (repeatable; default: the
    /// variable `<SERVICE>_PORT`, else its port in project.toml; 0 picks a free one).
    #[arg(long = "port", value_name = "SERVICE=PORT")]
    ports: Vec<String>,
    /// Where base images come from (default: project.toml's `bases.mode`, or TODO_BASES).
    #[arg(long, value_enum)]
    bases: Option<BaseMode>,
    /// How long the stack may take to become healthy, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    timeout: u64,
}

#[derive(Debug, Args)]
pub struct DevCmd {
    #[command(flatten)]
    stack: StackArgs,
    /// Find changes by looking at every watched folder twice a second, for file systems that send
    /// no change events (network shares, some VM mounts); the servers in the containers poll too.
    #[arg(long)]
    poll: bool,
    /// Measure instead of watching: on a copy of the project, edit a backend and a frontend source
    /// and the backend's dependency file, and print how long each took to be served (medians).
    #[arg(long)]
    bench_reload: bool,
    /// With --bench-reload: how many edits of each source to time.
    #[arg(long, default_value_t = 5, requires = "bench_reload")]
    rounds: usize,
    /// With --bench-reload: how many dependency changes to time.
    #[arg(long, default_value_t = 2, requires = "bench_reload")]
    dep_rounds: usize,
}

impl DevCmd {
    pub fn run(self, sh: &Shell, config: &Config) -> Result<()> {
        interrupt::install();
        if self.bench_reload {
            return bench::run(sh, self.rounds, self.dep_rounds, self.poll);
        }
        match run_dev(sh, config, &self.stack, self.poll, None)? {
            session::End::Interrupted => Err(interrupt::Interrupted.into()),
            session::End::Done => Ok(()),
            session::End::StackGone => bail!(
                "the development stack was removed while dev watched it (by `cargo xtask down \
                 --dev --force`, or by docker); dev stops"
            ),
        }
    }
}

#[derive(Debug, Args)]
pub struct UpCmd {
    #[command(flatten)]
    stack: StackArgs,
}

impl UpCmd {
    pub fn run(self, sh: &Shell, config: &Config) -> Result<()> {
        interrupt::install();
        run_up(sh, config, &self.stack)
    }
}

#[derive(Debug, Args)]
pub struct DownCmd {
    /// Also remove the local database's volume, and with it every user and todo the production
    /// stack stored; without it the data waits for the next `up`.
    #[arg(long)]
    volumes: bool,
    /// Also remove the development stack of this checkout (what a killed `dev` left behind).
    /// Refused while a `dev` runs for this checkout, unless --force.
    #[arg(long)]
    dev: bool,
    /// With --dev: remove the development stack even while a `dev` watches it; that `dev` then
    /// notices and stops.
    #[arg(long, requires = "dev")]
    force: bool,
    /// Only remove what killed runs of `smoke` and of the browser test left behind (runs whose
    /// process is gone; a kept one stays: `smoke --clean` removes those); no stack is stopped.
    #[arg(long, conflicts_with_all = ["volumes", "dev", "force"])]
    leftovers: bool,
}

impl DownCmd {
    pub fn run(self, sh: &Shell, config: &Config) -> Result<()> {
        let root = sh.current_dir();
        if self.leftovers {
            for kind in [owned::Kind::Smoke, owned::Kind::E2e] {
                let reaped = owned::reap(kind, &root, Some(owned::now_seconds()))?;
                match reaped.is_empty() {
                    true => eprintln!("nothing left by killed {} runs", kind.owner()),
                    false => eprintln!(
                        "removed what killed {} runs left: {}",
                        kind.owner(),
                        reaped.join(", ")
                    ),
                }
            }
            return Ok(());
        }
        let mut kinds = vec![Kind::Prod];
        if self.dev {
            let project = stack::project_name(&config.project.name, Kind::Dev, &root);
            // Refused before anything is removed: a `dev` whose stack vanished under it would
            // watch nothing, silently.
            if let Some(pid) = live_dev(&root, &project) {
                if !self.force {
                    bail!(
                        "`cargo xtask dev` runs for this checkout (pid {pid}) and watches the \
                         stack {project}: stop it with Ctrl-C in its terminal (or `kill -INT \
                         {pid}`), which removes its stack; `cargo xtask down --dev --force` \
                         removes the stack anyway, and that dev then stops"
                    );
                }
                eprintln!(
                    "down: removing the stack of the running dev (pid {pid}), as --force asks; \
                     it will stop"
                );
            }
            kinds.push(Kind::Dev);
        }
        for kind in kinds {
            let project = stack::project_name(&config.project.name, kind, &root);
            // A dev stack's volumes belong to its run; the production database's only go when
            // asked.
            let volumes = kind == Kind::Dev || self.volumes;
            let mut left = owned::leftovers(&project)?;
            let kept = match volumes {
                true => vec![],
                false => std::mem::take(&mut left.volumes),
            };
            if left.is_empty() {
                eprintln!(
                    "nothing to stop: no {} stack of this checkout runs ({project})",
                    kind_name(kind)
                );
            } else {
                let what = match left.containers.is_empty() && left.networks.is_empty() {
                    true => "removing what is left of",
                    false => "stopping",
                };
                eprintln!("{what} the {} stack {project}", kind_name(kind));
                owned::remove_project(&project, 10, volumes)?;
                eprintln!("removed {}", left.describe());
            }
            if kind == Kind::Prod {
                if volumes {
                    let _ = std::fs::remove_file(db_password_file(&root, &project));
                }
                for volume in &kept {
                    eprintln!(
                        "kept the volume {volume}: the local database's users and todos, for \
                         the next `up`; `cargo xtask down --volumes` removes it"
                    );
                }
            }
        }
        Ok(())
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Dev => "development",
        Kind::Prod => "production",
    }
}

/// A hook the bench gives `dev`: called once the stack is healthy, with the session's channel and
/// the services' host ports; it runs its script in a thread and ends the session with `Done`.
pub type Script =
    Box<dyn FnOnce(std::sync::mpsc::Sender<session::Msg>, BTreeMap<String, u16>, String)>;

/// `dev` from the environment check to the end of the session; the stack is removed on every
/// way out.
fn run_dev(
    sh: &Shell,
    config: &Config,
    args: &StackArgs,
    poll: bool,
    script: Option<Script>,
) -> Result<session::End> {
    let started = Instant::now();
    crate::engine::ensure(sh)?;
    let run = owned::Run::new(owned::Kind::Dev, false);
    let (mut stack, report) = prepare(sh, config, Kind::Dev, args)?;
    stack.set("DEV_POLL", if poll { "true" } else { "false" });
    let _lock = RunLock::acquire(&stack)?;
    let left = owned::leftovers(&stack.project)?;
    if !left.is_empty() {
        eprintln!(
            "dev: removing what an earlier run left ({})",
            left.describe()
        );
        owned::remove_project(&stack.project, 5, true)?;
    }
    settle_ports(&mut stack, config, &BTreeMap::new())?;
    check_ports(&stack, config, &BTreeMap::new())?;
    follow_urls(&mut stack, config, &report, "dev");
    let mode = build::base_mode(args.bases, config)?;
    let images: Vec<&crate::config::Image> = config.images.iter().collect();
    if stack.files.contains(&stack::DB_FILE) {
        let image = bases::database_image(sh, config, mode)?;
        stack.set("DB_IMAGE", image);
    }
    // Validate the compose files with this environment before anything is built.
    check_compose(&stack, config)?;
    eprintln!("dev: compose project {} (run {})", stack.project, run.id);
    // From here on, whatever happens, the stack is removed, volumes and all: they belong to
    // this run.
    let _owned = owned::Guard::project(&stack.project, true)?;
    let failures = images::build_dev(sh, config, &images, mode, Progress::Auto)?;
    if !failures.is_empty() {
        for (service, error) in &failures {
            eprintln!("\n{service} failed: {error}");
        }
        bail!(
            "the dev image of {} did not build",
            failures
                .iter()
                .map(|(s, _)| s.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        );
    }
    start(&stack, Duration::from_secs(args.timeout))?;
    let containers = stack.ps()?;
    let ports = published_ports(config, &containers);
    eprintln!(
        "dev: ready in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        urls(config, &ports)
    );
    let (tx, rx) = session::channel();
    let mut session = session::Session::new(
        sh,
        config,
        &stack,
        mode,
        watch_rules(&stack.root, config)?,
        ports.clone(),
        tx.clone(),
        rx,
        script.is_none(),
    )?;
    if let Some(script) = script {
        script(tx, ports, stack.project.clone());
    }
    session.run(poll)
}

/// `up`: the production stack, detached, healthy, with its URLs. On a stack that runs, only what
/// changed is recreated (compose compares each service's configuration and image), and that is
/// said before it happens.
fn run_up(sh: &Shell, config: &Config, args: &StackArgs) -> Result<()> {
    let started = Instant::now();
    crate::engine::ensure(sh)?;
    let (mut stack, report) = prepare(sh, config, Kind::Prod, args)?;
    let before = stack.ps()?;
    // A port of the running stack is kept where 0 asks for any free one: a new port would be a
    // new configuration, and compose would recreate every service to publish it.
    let running = published_ports(config, &before);
    settle_ports(&mut stack, config, &running)?;
    check_ports(&stack, config, &running)?;
    follow_urls(&mut stack, config, &report, "up");
    let mode = build::base_mode(args.bases, config)?;
    let images: Vec<&crate::config::Image> = config.images.iter().collect();
    if stack.files.contains(&stack::DB_FILE) {
        let image = bases::database_image(sh, config, mode)?;
        stack.set("DB_IMAGE", image);
        let password = up_db_password(&stack, &before)?;
        stack.set("DB_PASSWORD", &password);
        stack.set("DATABASE_URL", local_database_url(&password));
    }
    check_compose(&stack, config)?;
    images::ensure_prod(sh, config, &images, args.bases)?;
    eprintln!("up: compose project {}", stack.project);
    if !before.is_empty() {
        announce_changes(&stack, &before)?;
    }
    // A failed `up` removes the stack, but never the database's volume: its data may be older
    // than this run.
    let mut guard = owned::Guard::project(&stack.project, false)?;
    let timeout = args.timeout.to_string();
    let up = [&COMPOSE_UP[..], &["--wait", "--wait-timeout", &timeout]].concat();
    // Waited for through Ctrl-C: what a stopped `up` wrote names the creates it left.
    let up = stack.compose(&up)?;
    let (mut out, mut stopped) = up.start()?.wait_or_stop()?;
    if let Some((name, id)) =
        stack::conflicting_container(&stack.project, &stack.services, &out.stderr)
            .filter(|_| !stopped)
    {
        stack::remove_late_container(
            &stack.project,
            &name,
            &id,
            Duration::from_secs(args.timeout),
        )?;
        (out, stopped) = up.start()?.wait_or_stop()?;
    }
    owned::note_unanswered(&out.stderr);
    if stopped || interrupt::interrupted() {
        return Err(interrupt::Interrupted.into());
    }
    if !out.status.success() {
        let stderr = out.stderr.trim().to_string();
        if let Some(why) = explain_bind_error(&stderr) {
            bail!("{why}; the production stack did not start and has been removed");
        }
        let containers = stack.ps().unwrap_or_default();
        for c in &containers {
            let status = status::status_of(Some(c));
            if status != Status::Healthy {
                eprintln!("{}: {status:?}\n{}", c.service, last_logs(&c.id, 20));
            }
        }
        bail!("the production stack did not become healthy: {stderr}; it has been removed");
    }
    guard.disarm();
    let containers = stack.ps()?;
    let ports = published_ports(config, &containers);
    eprintln!(
        "up: healthy in {:.1} s; `cargo xtask down` stops it",
        started.elapsed().as_secs_f64()
    );
    println!("{}", urls(config, &ports));
    Ok(())
}

/// Refuses compose files that do not accept this environment, or that leave out a service of
/// project.toml (the stack would wait for it in vain), before anything is built.
fn check_compose(stack: &Stack, config: &Config) -> Result<()> {
    let services = session::services_config(stack)
        .context("the compose files do not accept this environment")?;
    let missing: Vec<&str> = config
        .images
        .iter()
        .map(|i| i.service.as_str())
        .filter(|s| services.get(s).is_none())
        .collect();
    if !missing.is_empty() {
        bail!(
            "project.toml has the service{} {}, which the compose files ({}) do not: add {} to \
             {} (and its development image to {})",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            stack
                .files
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if missing.len() == 1 { "it" } else { "them" },
            stack::BASE_FILE,
            stack::DEV_FILE
        );
    }
    Ok(())
}

/// How every stack is started: detached, with the images built beforehand, never pulled, and
/// without containers of services no longer in the files. `up`, its dry run (which says what `up`
/// would recreate) and `dev` all start it so, so that the dry run asks about the real start.
const COMPOSE_UP: [&str; 6] = [
    "up",
    "--detach",
    "--no-build",
    "--pull",
    "never",
    "--remove-orphans",
];

/// Says, before `up` runs, which services of the running stack it will recreate and why, and
/// that a service with a named volume (the database) keeps its data there. Compose itself
/// decides, in a dry run of the same `up` (its `config --hash` does not match the hashes it
/// labels containers with when a service has a build section, so it cannot be asked instead).
fn announce_changes(stack: &Stack, containers: &[stack::PsEntry]) -> Result<()> {
    let out = stack.output(&[&["--dry-run"][..], &COMPOSE_UP].concat())?;
    if !out.status.success() {
        // The real `up` reports the same failure, in full.
        return Ok(());
    }
    let mut printed = out.stdout.clone();
    printed.push_str(&out.stderr);
    let recreated: Vec<&String> = stack
        .services
        .iter()
        .filter(|service| {
            let name = format!("{}-{service}-", stack.project);
            printed.lines().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words
                    .windows(3)
                    .any(|w| w[0] == "Container" && w[1].starts_with(&name) && w[2] == "Recreate")
            })
        })
        .collect();
    if recreated.is_empty() {
        eprintln!("up: the stack runs with this configuration already: nothing to recreate");
        return Ok(());
    }
    let services = session::services_config(stack)?;
    let mut changes = Vec::new();
    for service in &recreated {
        let Some(c) = containers.iter().find(|c| &c.service == *service) else {
            continue;
        };
        let image = services[service.as_str()]["image"]
            .as_str()
            .unwrap_or_default();
        let image_id = docker(["image", "inspect", "--format", "{{.Id}}", image])
            .read()
            .map(|id| id.trim().to_string())
            .unwrap_or_default();
        let depends: Vec<&str> = services[service.as_str()]["depends_on"]
            .as_object()
            .map(|d| {
                d.keys()
                    .filter(|k| recreated.iter().any(|r| r == k))
                    .map(String::as_str)
                    .collect()
            })
            .unwrap_or_default();
        let why = if !image_id.is_empty() && image_id != c.image {
            "its image changed".to_string()
        } else if !depends.is_empty() {
            format!("it depends on {}", depends.join(" and "))
        } else {
            "its configuration changed".to_string()
        };
        let kept: Vec<&str> = c
            .volumes
            .iter()
            .filter(|v| !is_anonymous(v))
            .map(String::as_str)
            .collect();
        // The named volumes the new configuration mounts: a container made before the database
        // had its volume (an older checkout's `up`) holds its data itself, and loses it.
        let wanted: Vec<&str> = services[service.as_str()]["volumes"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter(|m| m["type"] == "volume")
                    .filter_map(|m| m["source"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let data = match (kept.is_empty(), wanted.is_empty()) {
            (false, _) => format!("; its data stays in the volume {}", kept.join(", ")),
            (true, false) => {
                "; its data lives in that container and is lost with it (from now on it is kept in \
                 a volume)"
                    .to_string()
            }
            (true, true) => String::new(),
        };
        changes.push(format!("{service} ({why}{data})"));
    }
    eprintln!("up: recreating {}", changes.join(", "));
    Ok(())
}

/// Anonymous volumes are named by the engine with 64 hex digits; named ones never are here.
fn is_anonymous(volume: &str) -> bool {
    volume.len() == 64 && volume.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Where `up` keeps the local database's password: PostgreSQL keeps the password it was
/// initialised with in its volume, so the password lives as long as the volume does.
fn db_password_file(root: &Path, project: &str) -> PathBuf {
    root.join("target/xtask/up")
        .join(format!("{project}.db-password"))
}

/// The local database's password for `up`: the one kept beside the volume, else the one the
/// running database was started with, else (no volume yet) a new one, kept in a file only its
/// owner reads.
fn up_db_password(stack: &Stack, containers: &[stack::PsEntry]) -> Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let file = db_password_file(&stack.root, &stack.project);
    if let Ok(text) = std::fs::read_to_string(&file) {
        if !text.trim().is_empty() {
            return Ok(text.trim().to_string());
        }
    }
    let volume = stack::db_volume(&stack.project);
    let password = match running_db_password(containers) {
        Some(password) => password,
        None if docker(["volume", "inspect", &volume]).read().is_ok() => bail!(
            "the local database's volume {volume} exists, but its password ({}) is gone, so its \
             data cannot be reached: restore that file, or remove the database with `cargo \
             xtask down --volumes` (its users and todos are lost) and run `up` again",
            file.display()
        ),
        None => random_hex(16)?,
    };
    let dir = file.parent().context("no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&file)
        .and_then(|mut f| f.write_all(password.as_bytes()))
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(password)
}

/// The stack of a command, with its environment checked and its variables set (but not
/// DB_IMAGE, which may need a build).
fn prepare(
    sh: &Shell,
    config: &Config,
    kind: Kind,
    args: &StackArgs,
) -> Result<(Stack, env::Report)> {
    let root = sh.current_dir();
    let env_file = match &args.env_file {
        Some(file) => root.join(file),
        None => env::default_file(sh),
    };
    let (local, report) = check_env(&env_file, args.db, kind)?;
    let project = stack::project_name(&config.project.name, kind, &root);
    let services = config.images.iter().map(|i| i.service.clone()).collect();
    let mut stack = Stack::new(&root, project, kind, env_file.clone(), local, services);
    stack.set("TODO_OWNER", kind.owner());
    stack.set("TODO_ENV_FILE", env_file.display().to_string());
    let flags = port_flags(config, args)?;
    for image in &config.images {
        let port = port_for(&flags, image)?;
        stack.set(&image.var("PORT"), port.to_string());
    }
    let owner = std::fs::metadata(&root).context("cannot read the project folder")?;
    use std::os::unix::fs::MetadataExt;
    stack.set("DEV_UID", owner.uid().to_string());
    stack.set("DEV_GID", owner.gid().to_string());
    if local {
        let password = random_hex(16)?;
        stack.set("DB_PASSWORD", &password);
        stack.set("DATABASE_URL", local_database_url(&password));
        stack.set(
            "DB_RESTART",
            if kind == Kind::Dev {
                "no"
            } else {
                "unless-stopped"
            },
        );
    }
    Ok((stack, report))
}

/// How a URL of the env file fits a published port.
#[derive(Debug, PartialEq, Eq)]
enum UrlFit {
    /// It names this machine on that port already.
    Same,
    /// It names this machine on another port: this is the URL with the published one.
    Moved(String),
    /// It names another host (a proxy in front, a domain): the port is not this machine's.
    Elsewhere,
}

fn fit_url(value: &str, port: u16) -> UrlFit {
    let Ok(mut url) = url::Url::parse(value) else {
        return UrlFit::Elsewhere;
    };
    let local = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !local {
        return UrlFit::Elsewhere;
    }
    if url.port_or_known_default() == Some(port) {
        return UrlFit::Same;
    }
    if url.set_port(Some(port)).is_err() {
        return UrlFit::Elsewhere;
    }
    let mut moved = url.to_string();
    // The url crate writes `http://localhost:3000` as `http://localhost:3000/`; keep the form
    // of the file.
    if url.path() == "/" && url.query().is_none() && !value.ends_with('/') {
        moved.pop();
    }
    UrlFit::Moved(moved)
}

/// Makes the URLs the services are configured with name the ports they are published on: a URL
/// of this machine on another port (the env file's `:3000` under `--port frontend=0`) in a
/// service's `url_vars` follows the published port, and the line says which variables moved. A
/// URL of another host is left as it is, with a note: a proxy may sit in front. (The frontend's
/// server accepts sign-ups only from its own origin, the backend allows only that origin, and
/// the spec's "Backend API URL" must not name a wrong port.)
fn follow_urls(stack: &mut Stack, config: &Config, report: &env::Report, prefix: &str) {
    let mut moved: BTreeMap<(&str, u16), Vec<&str>> = BTreeMap::new();
    let url_vars = config
        .images
        .iter()
        .flat_map(|i| i.url_vars.iter().map(move |v| (v.as_str(), i)));
    for (var, image) in url_vars {
        let service = image.service.as_str();
        let Some(port) = stack
            .var(&image.var("PORT"))
            .and_then(|p| p.parse::<u16>().ok())
        else {
            continue;
        };
        let Some(value) = report.plain_value(var) else {
            continue;
        };
        match fit_url(value, port) {
            UrlFit::Same => {}
            UrlFit::Moved(url) => {
                stack.set(var, url);
                moved.entry((service, port)).or_default().push(var);
            }
            UrlFit::Elsewhere => eprintln!(
                "note: {var} is {value}, not this machine: left as it is, so the browser must \
                 reach the {service} there (the {service} is published on port {port})"
            ),
        }
    }
    for ((service, port), vars) in moved {
        eprintln!(
            "{prefix}: {} follow{} the {service}'s port {port}",
            vars.join(" and "),
            if vars.len() == 1 { "s" } else { "" }
        );
    }
}

/// Each `--port SERVICE=PORT`, checked: a known service, a port number.
fn port_flags(config: &Config, args: &StackArgs) -> Result<BTreeMap<String, u16>> {
    let mut ports = BTreeMap::new();
    for pair in &args.ports {
        let Some((service, port)) = pair.split_once('=') else {
            bail!(
                "--port {pair}: write SERVICE=PORT, e.g. --port frontend=0 (0 picks a free port)"
            );
        };
        config.select(&[service.to_string()])?;
        let port = port
            .trim()
            .parse()
            .with_context(|| format!("--port {pair}: {port} is not a port number (0 to 65535)"))?;
        ports.insert(service.to_string(), port);
    }
    Ok(ports)
}

/// A service's host port: the flag, else `<SERVICE>_PORT`, else the project file's port.
fn port_for(flags: &BTreeMap<String, u16>, image: &crate::config::Image) -> Result<u16> {
    if let Some(port) = flags.get(&image.service) {
        return Ok(*port);
    }
    let var = image.var("PORT");
    match std::env::var(&var) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .with_context(|| format!("{var}={v} is not a port number (0 to 65535)")),
        _ => Ok(image.port),
    }
}

/// Settles each service's host port before anything starts: where 0 asks for any free port, the
/// port the running stack publishes is kept, else a free port is chosen now, so that the URLs
/// the services are configured with can name it.
fn settle_ports(stack: &mut Stack, config: &Config, running: &BTreeMap<String, u16>) -> Result<()> {
    // Held until every port is chosen, so that two services never get the same one.
    let mut held = Vec::new();
    for image in &config.images {
        let var = image.var("PORT");
        if stack.var(&var) != Some("0") {
            continue;
        }
        let port = match running.get(&image.service) {
            Some(port) => *port,
            None => {
                // [::] takes the port on IPv6 and (dual-stack) on IPv4, as the engine publishes
                // it; a host without IPv6 falls back to IPv4.
                let listener = std::net::TcpListener::bind(("::", 0))
                    .or_else(|_| std::net::TcpListener::bind(("0.0.0.0", 0)))
                    .context("cannot find a free port")?;
                let port = listener.local_addr()?.port();
                held.push(listener);
                port
            }
        };
        stack.set(&var, port.to_string());
    }
    Ok(())
}

/// Refuses to start when a host port is taken, on IPv4 or IPv6 (the engine publishes on both),
/// before anything is built or started; ports the running stack itself holds are not checked.
fn check_ports(stack: &Stack, config: &Config, running: &BTreeMap<String, u16>) -> Result<()> {
    let mut taken = Vec::new();
    for image in &config.images {
        let service = &image.service;
        let var = image.var("PORT");
        let Some(port) = stack.var(&var).and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        if port == 0 || running.get(service) == Some(&port) {
            continue;
        }
        if let Some(holder) = ports::taken(port) {
            taken.push(format!(
                "port {port} of the {service} is taken ({holder}): pass --port {service}=N or \
                 set {var}=N (0 picks a free port)"
            ));
        }
    }
    if !taken.is_empty() {
        bail!("{}", taken.join("; "));
    }
    Ok(())
}

/// Compose's error when the engine could not publish a port (`... listen tcp6 [::]:8000: bind:
/// address already in use`), said as which port is taken and by what.
fn explain_bind_error(stderr: &str) -> Option<String> {
    let line = stderr
        .lines()
        .find(|l| l.contains("address already in use"))?;
    let before = line.split(": bind").next()?;
    let port: u16 = before.rsplit(':').next()?.trim().parse().ok()?;
    let holder = ports::holder(port).unwrap_or_else(|| "by a process this user cannot see".into());
    Some(format!(
        "port {port} is taken {holder}: the engine could not publish it ({})",
        line.trim()
    ))
}

/// Checks the env file; returns whether the local database is used, and the report. Refuses on
/// any error, except an unusable DATABASE_URL when the local database replaces it.
fn check_env(path: &Path, db: DbMode, kind: Kind) -> Result<(bool, env::Report)> {
    let prefix = match kind {
        Kind::Dev => "dev",
        Kind::Prod => "up",
    };
    let Ok(bytes) = std::fs::read(path) else {
        // Missing, a folder, unreadable: the report says which, and how to fix it.
        env::check_file(path).into_result()?;
        bail!("cannot read {}", path.display());
    };
    let report = env::check_bytes(Some(path), &bytes);
    let (entries, _) = env::parse(&bytes);
    let urls: Vec<_> = entries.iter().filter(|e| e.key == "DATABASE_URL").collect();
    let value = urls.last().map(|e| e.value.as_str());
    let lines: Vec<usize> = urls.iter().filter_map(|e| e.line).collect();
    let url_problem = report
        .errors()
        .find(|p| p.variable.as_deref() == Some("DATABASE_URL"))
        .map(|p| p.rule);
    let decision = decide_db(value, url_problem, db);
    eprintln!("{prefix}: database: {}", decision.reason);
    if !decision.local {
        return Ok((false, report.into_result()?));
    }
    let adjusted = with_local_database_url(&bytes, &lines);
    let report = env::check_bytes(Some(path), &adjusted).into_result()?;
    Ok((true, report))
}

/// The database decision and the sentence that explains it.
#[derive(Debug, PartialEq, Eq)]
pub struct DbDecision {
    pub local: bool,
    pub reason: String,
}

/// Decides between the local and the external database from the env file's DATABASE_URL (the
/// last one set) and the rule it breaks, if any.
pub fn decide_db(value: Option<&str>, url_problem: Option<&str>, db: DbMode) -> DbDecision {
    let local = |why: &str| DbDecision {
        local: true,
        reason: format!("the local PostgreSQL (service db){why}"),
    };
    let host = value
        .and_then(|v| url::Url::parse(v).ok())
        .and_then(|u| u.host_str().map(String::from));
    match db {
        DbMode::Local => local(" (--db local)"),
        DbMode::External => DbDecision {
            local: false,
            reason: format!(
                "external, DATABASE_URL of the env file{} (--db external)",
                host.map(|h| format!(", host {h}")).unwrap_or_default()
            ),
        },
        DbMode::Auto => match (value, url_problem, host.as_deref()) {
            (None, _, _) | (Some(""), _, _) => {
                local(": the env file sets no DATABASE_URL (--db external insists on one)")
            }
            (_, Some(rule), _) => local(&format!(
                ": the env file's DATABASE_URL is not usable (rule {rule}); --db external \
                 insists on it"
            )),
            (_, None, Some("db")) => local(": the env file's DATABASE_URL names the db service"),
            (_, None, host) => DbDecision {
                local: false,
                reason: format!(
                    "external, DATABASE_URL of the env file{} (--db local uses a local PostgreSQL)",
                    host.map(|h| format!(", host {h}")).unwrap_or_default()
                ),
            },
        },
    }
}

/// The env file as the containers see it with the local database: the DATABASE_URL lines (1-based
/// `lines`) are replaced, line numbers unchanged, or one is added. The password is a stand-in:
/// only the check reads this text.
pub fn with_local_database_url(bytes: &[u8], lines: &[usize]) -> Vec<u8> {
    let line = local_database_url("local-password").into_bytes();
    let replace = lines;
    let mut out = Vec::with_capacity(bytes.len() + 64);
    for (index, text) in bytes.split(|b| *b == b'\n').enumerate() {
        if index > 0 {
            out.push(b'\n');
        }
        if replace.contains(&(index + 1)) {
            out.extend_from_slice(b"DATABASE_URL=");
            out.extend_from_slice(&line);
        } else {
            out.extend_from_slice(text);
        }
    }
    if replace.is_empty() {
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.extend_from_slice(b"DATABASE_URL=");
        out.extend_from_slice(&line);
        out.push(b'\n');
    }
    out
}

/// The URL of the local database (compose/db.yml) with a password.
fn local_database_url(password: &str) -> String {
    format!(
        "postgresql://{}:{password}@db:5432/{}",
        stack::DB_USER,
        stack::DB_NAME
    )
}

/// The password of the local database of a stack that runs, from its container's environment.
fn running_db_password(containers: &[stack::PsEntry]) -> Option<String> {
    let db = containers.iter().find(|c| c.service == "db")?;
    let out = docker(["inspect", &db.id]).read().ok()?;
    let containers: Vec<Container> = serde_json::from_str(&out).ok()?;
    containers
        .into_iter()
        .next()?
        .config
        .env
        .iter()
        .find_map(|l| l.strip_prefix("POSTGRES_PASSWORD="))
        .map(String::from)
}

/// Starts the stack detached and shows one status line per service until every one is healthy;
/// a service that fails ends it with that service's last log lines.
fn start(stack: &Stack, timeout: Duration) -> Result<()> {
    let mut board = Board::new(&stack.services);
    // This loop stops it on Ctrl-C, with SIGKILL (see below); the runner only waits.
    let up = stack.compose(COMPOSE_UP)?.finish_on_interrupt();
    let mut child = up.start()?;
    let mut retried = false;
    let begin = Instant::now();
    let mut exited = None;
    let result = loop {
        if interrupt::interrupted() {
            break Err(interrupt::Interrupted.into());
        }
        if exited.is_none() {
            match child.try_wait() {
                Ok(out) => exited = out,
                Err(e) => break Err(e),
            }
        }
        let containers = stack.ps()?;
        board.update(&containers);
        if let Some((service, why)) = board.failed() {
            let logs = containers
                .iter()
                .find(|c| c.service == service)
                .map(|c| last_logs(&c.id, 30))
                .unwrap_or_default();
            break Err(anyhow::anyhow!(
                "{service} {why}; its last log lines:\n{logs}"
            ));
        }
        if let Some(out) = &exited {
            if !out.success() {
                if let Some((name, id)) =
                    stack::conflicting_container(&stack.project, &stack.services, &out.stderr)
                        .filter(|_| !retried)
                {
                    retried = true;
                    stack::remove_late_container(&stack.project, &name, &id, timeout)?;
                    child = up.start()?;
                    exited = None;
                    continue;
                }
                break Err(up.failed(out).into());
            }
            if board.all_healthy() {
                break Ok(());
            }
        }
        if begin.elapsed() > timeout {
            break Err(anyhow::anyhow!(
                "the stack is not healthy after {} s (--timeout)",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(400));
    };
    board.clear();
    if exited.is_none() {
        // What compose said up to its end names the creates it sent and saw no answer to: the
        // stack's removal waits for those to land.
        owned::note_unanswered(&child.kill());
    }
    result
}

/// The last lines a container logged.
fn last_logs(id: &str, lines: usize) -> String {
    let tail = lines.to_string();
    docker(["logs", "--tail", &tail, id])
        .output()
        .map(|o| {
            let mut text = o.stdout;
            text.push_str(&o.stderr);
            text.lines()
                .map(|l| format!("  | {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Each service's host port for its own port, as the running containers publish it.
fn published_ports(config: &Config, containers: &[stack::PsEntry]) -> BTreeMap<String, u16> {
    config
        .images
        .iter()
        .filter_map(|i| {
            let c = containers.iter().find(|c| c.service == i.service)?;
            Some((i.service.clone(), *c.ports.get(&i.port)?))
        })
        .collect()
}

fn urls(config: &Config, ports: &BTreeMap<String, u16>) -> String {
    config
        .images
        .iter()
        .filter_map(|i| {
            let port = ports.get(&i.service)?;
            Some(format!("{} http://localhost:{port}", i.service))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the watcher needs to know about each service.
fn watch_rules(root: &Path, config: &Config) -> Result<watch::Rules> {
    let services = config
        .images
        .iter()
        .map(|image| {
            Ok(watch::ServiceRules {
                service: image.service.clone(),
                dir: image.context.clone(),
                rebuild: images::rebuild_inputs(root, image)?,
                not_served: vec![
                    image.dockerfile.clone(),
                    image.context.join(".dockerignore"),
                ],
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(watch::Rules {
        services,
        compose_dir: PathBuf::from(stack::BASE_FILE)
            .parent()
            .unwrap_or(Path::new("compose"))
            .to_path_buf(),
    })
}

/// Random bytes from the kernel, as hex: the local database's password.
fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// One `dev` per checkout at a time: the second would remove the first one's stack as leftovers.
/// The lock is held for the run (see `crate::lock`).
struct RunLock {
    _lock: FileLock,
}

impl RunLock {
    fn acquire(stack: &Stack) -> Result<RunLock> {
        let dir = stack.root.join(images::OUT_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        RunLock::at(&run_lock_file(&stack.root, &stack.project))
    }

    fn at(path: &Path) -> Result<RunLock> {
        match FileLock::try_at(path)? {
            Some(lock) => Ok(RunLock { _lock: lock }),
            None => {
                let pid = lock::pid_text(lock::holder(path));
                bail!(
                    "`cargo xtask dev` already runs for this checkout (pid {pid}): stop it first \
                     (Ctrl-C in its terminal, or `kill -INT {pid}`)"
                );
            }
        }
    }
}

/// The file a running `dev` holds locked.
fn run_lock_file(root: &Path, project: &str) -> PathBuf {
    root.join(images::OUT_DIR).join(format!("{project}.lock"))
}

/// The process id of a `dev` that runs for this checkout's stack: whoever holds its lock.
fn live_dev(root: &Path, project: &str) -> Option<u32> {
    lock::holder(&run_lock_file(root, project))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dev_holds_the_lock_and_its_end_releases_it() {
        let path = std::env::temp_dir().join(format!("xtask-lock-{}.lock", std::process::id()));
        let held = RunLock::at(&path).unwrap();
        assert_eq!(lock::holder(&path), Some(std::process::id()));
        let err = RunLock::at(&path)
            .err()
            .expect("a second dev is refused")
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        assert_eq!(lock::holder(&path), None);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn auto_takes_a_valid_external_url_and_falls_back_to_local() {
        let neon = Some("postgresql://u:secret-pw@ep-x.neon.tech/neondb");
        let decision = decide_db(neon, None, DbMode::Auto);
        assert!(!decision.local);
        assert!(decision.reason.contains("host ep-x.neon.tech"));
        assert!(!decision.reason.contains("secret-pw"));
        assert!(decide_db(None, None, DbMode::Auto).local);
        let bad = decide_db(neon, Some("placeholder"), DbMode::Auto);
        assert!(
            bad.local && bad.reason.contains("rule placeholder"),
            "{bad:?}"
        );
        let db = Some("postgresql://todo:pw@db:5432/todo");
        assert!(decide_db(db, None, DbMode::Auto).local);
        assert!(!decide_db(db, None, DbMode::External).local);
        assert!(decide_db(neon, None, DbMode::Local).local);
    }

    #[test]
    fn the_local_url_replaces_the_line_in_place_or_is_added() {
        let text = "A=1\nDATABASE_URL=REPLACE_ME\nB=2\n";
        let out = with_local_database_url(text.as_bytes(), &[2]);
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "A=1");
        assert!(lines[1].starts_with("DATABASE_URL=postgresql://todo:"));
        assert!(lines[1].ends_with("@db:5432/todo"));
        assert_eq!(lines[2], "B=2");
        let text = "A=1";
        let out = String::from_utf8(with_local_database_url(text.as_bytes(), &[])).unwrap();
        assert_eq!(out.lines().count(), 2);
        assert!(out.lines().nth(1).unwrap().starts_with("DATABASE_URL="));
    }

    #[test]
    fn an_env_file_with_only_a_bad_database_url_passes_with_the_local_database() {
        let dir = std::env::temp_dir().join(format!("xtask-dev-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".env");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let template = std::fs::read_to_string(root.join("env/.env.example")).unwrap();
        let filled = template
            .replace(
                "BETTER_AUTH_SECRET=REPLACE_ME",
                "BETTER_AUTH_SECRET=0123456789abcdefghijklmnopqrstuvwxyz",
            )
            .replace("OPENAI_API_KEY=REPLACE_ME", "OPENAI_API_KEY=sk-test-0000");
        std::fs::write(&path, &filled).unwrap();
        let (local, report) = check_env(&path, DbMode::Auto, Kind::Dev).unwrap();
        assert!(local && report.is_ok());
        let err = check_env(&path, DbMode::External, Kind::Dev)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DATABASE_URL") && err.contains("refusing to start"),
            "{err}"
        );
        // Another error still stops the local database too, with its line.
        std::fs::write(&path, filled.replace("AGENT_MODEL=gpt-4o", "AGENT_MODEL=")).unwrap();
        let err = check_env(&path, DbMode::Local, Kind::Dev)
            .unwrap_err()
            .to_string();
        assert!(err.contains("AGENT_MODEL"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn urls_of_this_machine_follow_the_published_port() {
        assert_eq!(fit_url("http://localhost:3000", 3000), UrlFit::Same);
        assert_eq!(
            fit_url("http://localhost:3000", 32769),
            UrlFit::Moved("http://localhost:32769".into())
        );
        assert_eq!(
            fit_url("http://127.0.0.1:8000/", 32768),
            UrlFit::Moved("http://127.0.0.1:32768/".into())
        );
        assert_eq!(
            fit_url("http://[::1]:8000", 9000),
            UrlFit::Moved("http://[::1]:9000".into())
        );
        assert_eq!(fit_url("https://todo.example.com", 3000), UrlFit::Elsewhere);
        assert_eq!(fit_url("not a url", 3000), UrlFit::Elsewhere);
    }

    #[test]
    fn a_bind_error_of_compose_names_the_port() {
        let stderr = "Error response from daemon: driver failed programming external \
                      connectivity on endpoint x-backend-1 (abc): Error starting userland proxy: \
                      listen tcp6 [::]:65531: bind: address already in use";
        let why = explain_bind_error(stderr).unwrap();
        assert!(why.starts_with("port 65531 is taken"), "{why}");
        assert_eq!(explain_bind_error("no such image"), None);
    }

    #[test]
    fn ports_come_from_the_flag_then_the_default() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let config = Config::load(&root.join(crate::config::DEFAULT_FILE)).unwrap();
        let args = |ports: &[&str]| StackArgs {
            env_file: None,
            db: DbMode::Auto,
            ports: ports.iter().map(|p| p.to_string()).collect(),
            bases: None,
            timeout: 1,
        };
        let flags = port_flags(&config, &args(&["frontend=0"])).unwrap();
        let frontend = config.image("frontend").unwrap();
        assert_eq!(port_for(&flags, frontend).unwrap(), 0);
        let backend = config.image("backend").unwrap();
        assert_eq!(backend.var("PORT"), "BACKEND_PORT");
        let err = port_flags(&config, &args(&["web=1"])).unwrap_err();
        assert!(err.to_string().contains("unknown service `web`"), "{err}");
        let err = port_flags(&config, &args(&["frontend"])).unwrap_err();
        assert!(err.to_string().contains("SERVICE=PORT"), "{err}");
    }
}
