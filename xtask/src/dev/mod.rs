//! `cargo xtask dev`, `up` and `down`: the stack in containers.
//!
//! `dev` checks the environment, builds the development images (`todo-*:dev`, from each
//! Dockerfile.dev, in parallel, with `build`'s progress), starts `compose/compose.yml` +
//! `compose/dev.yml` (+ `compose/db.yml` for the local PostgreSQL), shows one status line per
//! service until all are healthy, then streams their logs and watches the sources: an edit is
//! served by the containers' hot reload and measured; a dependency file, a Dockerfile.dev or a
//! compose file rebuilds or recreates only the service it concerns. Ctrl-C removes the stack
//! (containers, network, anonymous volumes) and exits 130. `up` starts the production stack
//! detached and waits until it is healthy; `down` removes it.
//!
//! Each stack is a compose project named after the project root, so that a copy of the project
//! never touches the stack of another checkout; a run's leftovers (after a crash or a kill) are
//! removed by the next run.

mod bench;
mod images;
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
use crate::env;
use crate::interrupt;
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
    /// The frontend's port on the host (default: FRONTEND_PORT, else 3000; 0 picks a free one).
    #[arg(long, value_name = "PORT")]
    frontend_port: Option<u16>,
    /// The backend's port on the host (default: BACKEND_PORT, else 8000; 0 picks a free one).
    #[arg(long, value_name = "PORT")]
    backend_port: Option<u16>,
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
    /// Also remove what a `dev` of this checkout left behind (after a crash or a kill).
    #[arg(long)]
    dev: bool,
}

impl DownCmd {
    pub fn run(self, sh: &Shell, config: &Config) -> Result<()> {
        let root = sh.current_dir();
        let mut kinds = vec![Kind::Prod];
        if self.dev {
            kinds.push(Kind::Dev);
        }
        for kind in kinds {
            let project = stack::project_name(&config.project.name, kind, &root);
            let left = stack::leftovers(&project)?;
            if left.is_empty() {
                eprintln!(
                    "nothing to stop: no {} stack of this checkout runs ({project})",
                    kind_name(kind)
                );
                continue;
            }
            eprintln!("stopping the {} stack {project}", kind_name(kind));
            stack::remove_project(&project, 10)?;
            eprintln!("removed {}", left.describe());
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
    let run = run_id();
    let mut stack = prepare(sh, config, Kind::Dev, args, &run)?;
    stack.set("DEV_POLL", if poll { "true" } else { "false" });
    let _lock = RunLock::acquire(&stack)?;
    let left = stack::leftovers(&stack.project)?;
    if !left.is_empty() {
        eprintln!(
            "dev: removing what an earlier run left ({})",
            left.describe()
        );
        stack::remove_project(&stack.project, 5)?;
    }
    check_ports(&stack)?;
    let mode = build::base_mode(args.bases, config)?;
    let images: Vec<&crate::config::Image> = config.images.iter().collect();
    if stack.files.contains(&stack::DB_FILE) {
        let image = bases::database_image(sh, config, mode)?;
        stack.set("DB_IMAGE", image);
    }
    // Validate the compose files with this environment before anything is built.
    stack
        .run(&["config", "--quiet"])
        .context("the compose files do not accept this environment")?;
    eprintln!("dev: compose project {} (run {run})", stack.project);
    // From here on, whatever happens, the stack is removed.
    let _teardown = Teardown::new(&stack.project);
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

/// `up`: the production stack, detached, healthy, with its URLs.
fn run_up(sh: &Shell, config: &Config, args: &StackArgs) -> Result<()> {
    let started = Instant::now();
    crate::engine::ensure(sh)?;
    let run = run_id();
    let mut stack = prepare(sh, config, Kind::Prod, args, &run)?;
    let running = !stack::leftovers(&stack.project)?.is_empty();
    if !running {
        check_ports(&stack)?;
    }
    let mode = build::base_mode(args.bases, config)?;
    let images: Vec<&crate::config::Image> = config.images.iter().collect();
    if stack.files.contains(&stack::DB_FILE) {
        let image = bases::database_image(sh, config, mode)?;
        stack.set("DB_IMAGE", image);
        // A stack that is up keeps its database password, so that `up` again does not recreate
        // the database and lose its data.
        if let Some(password) = running_db_password(&stack) {
            stack.set("DB_PASSWORD", &password);
            stack.set("DATABASE_URL", local_database_url(&password));
        }
    }
    stack
        .run(&["config", "--quiet"])
        .context("the compose files do not accept this environment")?;
    images::ensure_prod(sh, config, &images, args.bases)?;
    eprintln!("up: compose project {}", stack.project);
    let mut teardown = Teardown::new(&stack.project);
    let timeout = args.timeout.to_string();
    let out = stack.output(&[
        "up",
        "--detach",
        "--wait",
        "--wait-timeout",
        &timeout,
        "--no-build",
        "--pull",
        "never",
        "--remove-orphans",
    ])?;
    if interrupt::interrupted() {
        return Err(interrupt::Interrupted.into());
    }
    if !out.status.success() {
        let containers = stack.ps().unwrap_or_default();
        for c in &containers {
            let status = status::status_of(Some(c));
            if status != Status::Healthy {
                eprintln!("{}: {status:?}\n{}", c.service, last_logs(&c.id, 20));
            }
        }
        bail!(
            "the production stack did not become healthy: {}; it has been removed",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    teardown.disarm();
    let containers = stack.ps()?;
    let ports = published_ports(config, &containers);
    eprintln!(
        "up: healthy in {:.1} s; `cargo xtask down` stops it",
        started.elapsed().as_secs_f64()
    );
    println!("{}", urls(config, &ports));
    Ok(())
}

/// The stack of a command, with its environment checked and its variables set (but not
/// DB_IMAGE, which may need a build).
fn prepare(sh: &Shell, config: &Config, kind: Kind, args: &StackArgs, run: &str) -> Result<Stack> {
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
    stack.set("TODO_RUN", run);
    stack.set("TODO_ENV_FILE", env_file.display().to_string());
    for image in &config.images {
        let port = port_for(args, &image.service, image.port)?;
        stack.set(&port_var(&image.service), port.to_string());
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
    if let Some(api) = report.plain_value("NEXT_PUBLIC_API_URL") {
        let backend_port = stack.var(&port_var("backend")).unwrap_or("8000");
        let api_port = url::Url::parse(api)
            .ok()
            .and_then(|u| u.port_or_known_default());
        if backend_port != "0" && api_port.map(|p| p.to_string()).as_deref() != Some(backend_port) {
            eprintln!(
                "note: NEXT_PUBLIC_API_URL is {api} but the backend is published on port \
                 {backend_port}: the browser will call the wrong port"
            );
        }
    }
    Ok(stack)
}

/// The variable of the compose files that holds a service's host port.
fn port_var(service: &str) -> String {
    format!("{}_PORT", service.to_ascii_uppercase())
}

/// A service's host port: the flag, else `<SERVICE>_PORT`, else the project file's port.
fn port_for(args: &StackArgs, service: &str, default: u16) -> Result<u16> {
    let flag = match service {
        "frontend" => args.frontend_port,
        "backend" => args.backend_port,
        _ => None,
    };
    if let Some(port) = flag {
        return Ok(port);
    }
    let var = port_var(service);
    match std::env::var(&var) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .with_context(|| format!("{var}={v} is not a port number (0 to 65535)")),
        _ => Ok(default),
    }
}

/// Refuses to start when a host port is taken, before anything is built or started.
fn check_ports(stack: &Stack) -> Result<()> {
    let mut taken = Vec::new();
    for service in &stack.services {
        let var = port_var(service);
        let Some(port) = stack.var(&var).and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        if port != 0 && std::net::TcpListener::bind(("0.0.0.0", port)).is_err() {
            taken.push(format!(
                "port {port} of the {service} is taken: pass --{service}-port N or set {var}=N (0 picks a free port)"
            ));
        }
    }
    if !taken.is_empty() {
        bail!("{}", taken.join("; "));
    }
    Ok(())
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
fn running_db_password(stack: &Stack) -> Option<String> {
    let db = stack.ps().ok()?.into_iter().find(|c| c.service == "db")?;
    let env = stack::docker(&[
        "inspect",
        "--format",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &db.id,
    ])
    .ok()?;
    env.lines()
        .find_map(|l| l.strip_prefix("POSTGRES_PASSWORD="))
        .map(String::from)
}

/// Starts the stack detached and shows one status line per service until every one is healthy;
/// a service that fails ends it with that service's last log lines.
fn start(stack: &Stack, timeout: Duration) -> Result<()> {
    use std::io::Read;
    let mut board = Board::new(&stack.services);
    let mut child = stack
        .command()?
        .args([
            "up",
            "--detach",
            "--no-build",
            "--pull",
            "never",
            "--remove-orphans",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot run `docker compose up`")?;
    let mut stderr = child.stderr.take().context("no stderr")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let begin = Instant::now();
    let mut exited = None;
    let result = loop {
        if interrupt::interrupted() {
            break Err(interrupt::Interrupted.into());
        }
        if exited.is_none() {
            exited = child.try_wait()?;
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
        if let Some(status) = exited {
            if !status.success() {
                let _ = child.wait();
                let text = reader.join().unwrap_or_default();
                break Err(anyhow::anyhow!(
                    "`docker compose up` failed: {}",
                    text.trim()
                ));
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
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

/// The last lines a container logged.
fn last_logs(id: &str, lines: usize) -> String {
    let tail = lines.to_string();
    std::process::Command::new("docker")
        .args(["logs", "--tail", &tail, id])
        .output()
        .map(|o| {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
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

/// A run's id: its start time and process id, in the labels of what it creates.
fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", now.as_secs(), std::process::id())
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

/// Removes the stack when dropped: on Ctrl-C, on an error, after a panic. For the ways out that
/// run no destructor (a second Ctrl-C, which exits at once; a kill), a reaper process waits in a
/// process group of its own for this one to end, and then removes the project unless told that
/// it is already gone.
struct Teardown {
    project: String,
    armed: bool,
    reaper: Option<(std::process::Child, std::process::ChildStdin)>,
}

impl Teardown {
    fn new(project: &str) -> Teardown {
        Teardown {
            project: project.to_string(),
            armed: true,
            reaper: start_reaper(project),
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
        self.release_reaper();
    }

    /// Tells the reaper that there is nothing left to do.
    fn release_reaper(&mut self) {
        use std::io::Write;
        if let Some((mut child, mut stdin)) = self.reaper.take() {
            let _ = stdin.write_all(b"done\n");
            drop(stdin);
            let _ = child.wait();
        }
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let start = Instant::now();
        eprintln!(
            "stopping the stack {} (a second Ctrl-C exits at once; the removal goes on)",
            self.project
        );
        match stack::remove_project(&self.project, 5) {
            Ok(()) => {
                self.release_reaper();
                eprintln!(
                    "stack removed in {:.1} s: no container, network or volume of it is left",
                    start.elapsed().as_secs_f64()
                )
            }
            Err(err) => eprintln!("error: {err:#}"),
        }
    }
}

/// A shell that reads one line from a pipe whose other end only this process holds: at this
/// process's end, however it ends, the read returns, and unless the line was `done` the shell
/// runs `docker compose down` for the project. It is in a process group of its own, so that the
/// terminal's Ctrl-C does not reach it.
fn start_reaper(project: &str) -> Option<(std::process::Child, std::process::ChildStdin)> {
    use std::os::unix::process::CommandExt;
    let script =
        "IFS= read -r line; [ \"$line\" = done ] || exec docker compose --project-name \"$0\" \
                  down --volumes --remove-orphans --timeout 5";
    let mut child = std::process::Command::new("sh")
        .args(["-c", script, project])
        .current_dir("/")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .ok()?;
    let stdin = child.stdin.take()?;
    Some((child, stdin))
}

/// One `dev` per checkout at a time: the second would remove the first one's stack as leftovers.
struct RunLock {
    path: PathBuf,
}

impl RunLock {
    fn acquire(stack: &Stack) -> Result<RunLock> {
        let dir = stack.root.join(images::OUT_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{}.pid", stack.project));
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(pid) = text.trim().parse::<u32>() {
                if pid != std::process::id() && is_xtask(pid) {
                    bail!(
                        "`cargo xtask dev` already runs for this checkout (pid {pid}): stop it \
                         first (Ctrl-C in its terminal, or `kill -INT {pid}`)"
                    );
                }
            }
        }
        std::fs::write(&path, std::process::id().to_string())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(RunLock { path })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn is_xtask(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("xtask"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn ports_come_from_the_flag_then_the_default() {
        let args = StackArgs {
            env_file: None,
            db: DbMode::Auto,
            frontend_port: Some(0),
            backend_port: None,
            bases: None,
            timeout: 1,
        };
        assert_eq!(port_for(&args, "frontend", 3000).unwrap(), 0);
        assert_eq!(port_var("backend"), "BACKEND_PORT");
    }
}
