//! `cargo xtask smoke`: the built images proven to work, and proven safe.
//!
//! One run starts the production stack from the images (PostgreSQL, then every service of
//! project.toml after the ones it calls, on a bridge network of its own, with a generated test
//! environment), measures it (time to healthy, health latency, each call of one service to
//! another by DNS, database, graceful stop, idle memory), then
//! checks the images themselves (structure against the spec, secrets in every layer, hadolint and
//! trivy on the Dockerfiles) and reports every check as a row: PASS, FAIL or NOT CHECKED.
//!
//! The parts: [`stack`] starts and always removes the containers, [`probe`] measures them,
//! [`structure`], [`secrets`] and [`lint`] check the images, [`report`] gathers the rows, and
//! `expect.toml` holds every limit the spec sets. What is per service (its variables, its calls,
//! its interpreter, its slow route) is project.toml's: no service is named here.

pub(crate) mod expect;
mod gate;
pub(crate) mod lint;
/// The HTTP probe and timing statistics; `dev` asks its services through the same probe.
pub mod probe;
mod report;
mod secrets;
mod stack;
mod structure;

pub use lint::{ensure_packages, tools_dir};
pub use report::SmokeReport;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use xshell::Shell;

use crate::config::{BaseMode, Config, Image};
use crate::docker::docker;
use crate::docker::inspect::Image as Inspected;
use crate::{bases, engine, env, interrupt, owned};
use expect::Expect;
use report::{Row, RowBuilder};
use secrets::Needle;
use stack::{Stack, Started};

#[derive(Debug, Args)]
pub struct SmokeCmd {
    /// Check this image for a service instead of `<image>:latest` (repeatable).
    #[arg(long = "image", value_name = "SERVICE=REF")]
    images: Vec<String>,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Leave the stack running afterwards and print how to reach and remove it.
    #[arg(long)]
    keep: bool,
    /// Where the PostgreSQL image comes from (default: project.toml's `bases.mode`, or
    /// TODO_BASES).
    #[arg(long, value_enum)]
    bases: Option<BaseMode>,
    /// Remove every stack that earlier runs left (kept ones too), then exit.
    #[arg(long, conflicts_with_all = ["images", "json", "keep"])]
    clean: bool,
}

impl SmokeCmd {
    pub fn run(self, sh: &Shell, config: &Config) -> Result<()> {
        interrupt::install();
        engine::ensure(sh)?;
        if self.clean {
            let reaped = owned::reap(owned::Kind::Smoke, &sh.current_dir(), None)?;
            if reaped.is_empty() {
                eprintln!("no smoke stack left behind");
            } else {
                eprintln!("removed the smoke runs {}", reaped.join(", "));
            }
            return Ok(());
        }
        let images = image_refs(config, &self.images)?;
        let mode = crate::build::base_mode(self.bases, config)?;
        let report = interruptible(run_smoke(sh, config, &images, mode, self.keep))?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("{}", report.table());
        }
        if !report.ok {
            bail!(
                "{} of {} smoke checks failed:\n  {}",
                report.failed,
                report.checks.len(),
                report.failure_summary()
            );
        }
        Ok(())
    }
}

/// Runs every smoke check on exactly these images (service -> image reference or id; a service
/// left out is checked at `<image>:latest`) and succeeds only when none fails; `release` calls it
/// before pushing anything. The report table goes to stderr.
pub fn verify(sh: &Shell, config: &Config, images: &BTreeMap<String, String>) -> Result<()> {
    interrupt::install();
    let mut refs = image_refs(config, &[])?;
    for (service, reference) in images {
        if config.image(service).is_none() {
            bail!("smoke: unknown service `{service}`");
        }
        refs.insert(service.clone(), reference.clone());
    }
    let mode = crate::build::base_mode(None, config)?;
    let report = interruptible(run_smoke(sh, config, &refs, mode, false))?;
    eprintln!("{}", report.table());
    if !report.ok {
        bail!(
            "{} smoke check(s) failed:\n  {}",
            report.failed,
            report.failure_summary()
        );
    }
    Ok(())
}

/// After Ctrl-C, whatever failed failed because of it (a `docker` child gets the terminal's
/// SIGINT too): the run ends as interrupted, which `main` turns into exit 130.
fn interruptible<T>(result: Result<T>) -> Result<T> {
    if interrupt::interrupted() {
        bail!(interrupt::Interrupted);
    }
    result
}

/// Service -> image reference: `<image>:latest` for each image of the project, replaced by every
/// `SERVICE=REF` given.
pub fn image_refs(config: &Config, overrides: &[String]) -> Result<BTreeMap<String, String>> {
    let mut refs: BTreeMap<String, String> = config
        .images
        .iter()
        .map(|i| (i.service.clone(), format!("{}:latest", i.image)))
        .collect();
    for pair in overrides {
        let Some((service, reference)) = pair.split_once('=').filter(|(_, r)| !r.is_empty()) else {
            bail!("--image {pair}: write SERVICE=REF, e.g. --image backend=todo-backend:v1.0.0");
        };
        config.select(&[service.to_string()])?;
        refs.insert(service.to_string(), reference.to_string());
    }
    Ok(refs)
}

/// The generated test environment of one run: random secrets, DNS names of the run's network.
struct TestEnv {
    database: Vec<(String, String)>,
    /// Each service's variables: its `env` of project.toml, and the URL of each service it calls.
    services: BTreeMap<String, Vec<(String, String)>>,
    /// The values the run plants, searched for in the images afterwards.
    needles: Vec<Needle>,
}

/// Random letters and digits from the kernel's generator.
fn random_token(len: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len * 2];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    // 248 is the largest multiple of 62 under 256: dropping the rest keeps the choice uniform.
    let token: String = bytes
        .iter()
        .filter(|&&b| b < 248)
        .take(len)
        .map(|&b| ALPHABET[(b % 62) as usize] as char)
        .collect();
    if token.len() < len {
        return random_token(len);
    }
    Ok(token)
}

/// A service's address on the run's network: its name, as in compose.
fn service_url(image: &Image) -> String {
    format!("http://{}:{}", image.service, image.port)
}

fn test_env(config: &Config, expect: &Expect) -> Result<TestEnv> {
    let rt = &expect.runtime;
    let password = random_token(32)?;
    let auth_secret = random_token(48)?;
    let api_key = format!("sk-smoke-{}", random_token(40)?);
    // Every value a service may ask for; each takes the ones its `env` names.
    let mut values: BTreeMap<String, String> = [
        (
            "DATABASE_URL",
            format!(
                "postgresql://todo:{password}@{}:5432/todo",
                rt.database_alias
            ),
        ),
        ("BETTER_AUTH_SECRET", auth_secret.clone()),
        ("OPENAI_API_KEY", api_key.clone()),
        ("AGENT_MODEL", "gpt-4o".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for image in &config.images {
        for var in &image.url_vars {
            values.insert(var.clone(), service_url(image));
        }
    }
    let mut services = BTreeMap::new();
    for image in &config.images {
        let mut vars = Vec::new();
        for var in &image.env {
            let value =
                values.get(var).with_context(|| {
                    format!(
                    "project.toml: [[image]] {:?}: env names {var}, which smoke has no test value \
                     for: it makes {} and the url_vars of every image",
                    image.service,
                    ["DATABASE_URL", "BETTER_AUTH_SECRET", "OPENAI_API_KEY", "AGENT_MODEL"]
                        .join(", ")
                )
                })?;
            vars.push((var.clone(), value.clone()));
        }
        for callee in image.calls.iter().filter_map(|c| config.image(c)) {
            vars.push((callee.var("URL"), service_url(callee)));
        }
        services.insert(image.service.clone(), vars);
    }
    // The same rules as every other command: the generated values must pass them.
    let mut all: BTreeMap<String, String> = services.values().flatten().cloned().collect();
    all.insert("VERSION".into(), format!("v{}", config.project.version));
    env::check_vars(all)
        .into_result()
        .context("the generated test environment breaks the env rules")?;
    let needle = |name: &str, value: &str| Needle {
        label: format!("the test environment's {name}"),
        bytes: value.as_bytes().to_vec(),
    };
    let vars = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };
    Ok(TestEnv {
        database: vars(&[
            ("POSTGRES_USER", "todo".into()),
            ("POSTGRES_PASSWORD", password.clone()),
            ("POSTGRES_DB", "todo".into()),
        ]),
        services,
        needles: vec![
            needle("database password", &password),
            needle("BETTER_AUTH_SECRET", &auth_secret),
            needle("OPENAI_API_KEY", &api_key),
        ],
    })
}

fn inspect_image(reference: &str) -> Result<Inspected> {
    let out = docker(["image", "inspect", reference])
        .read()
        .with_context(|| {
            format!(
            "there is no image {reference}: build it with `cargo xtask build`, or name another \
             with --image SERVICE=REF"
        )
        })?;
    let all: Vec<Inspected> = serde_json::from_str(&out)?;
    all.into_iter()
        .next()
        .with_context(|| format!("docker image inspect printed nothing for {reference}"))
}

fn check_interrupt() -> Result<()> {
    if interrupt::interrupted() {
        bail!(interrupt::Interrupted);
    }
    Ok(())
}

/// Everything one run does; the stack is removed when this returns, however it returns, unless
/// `keep`.
fn run_smoke(
    sh: &Shell,
    config: &Config,
    images: &BTreeMap<String, String>,
    mode: BaseMode,
    keep: bool,
) -> Result<SmokeReport> {
    let start = Instant::now();
    let expect = Expect::load()?;
    let root = sh.current_dir();
    // Every check is planned before anything starts: unknown images and a bad environment stop
    // the run here, with nothing to clean up.
    let mut inspected = BTreeMap::new();
    for (service, reference) in images {
        inspected.insert(service.clone(), inspect_image(reference)?);
    }
    let image_ids: BTreeMap<String, String> = inspected
        .iter()
        .map(|(s, i)| (s.clone(), i.id.clone()))
        .collect();
    let test_env = test_env(config, &expect)?;
    let database_image = bases::database_image(sh, config, mode)?;
    inspect_image(&database_image)?;

    let stack = Stack::create(&root, &expect.runtime.network, keep)?;
    eprintln!("smoke run {} on network {}", stack.run_id, stack.network);
    let mut rows = run_stack(&stack, config, &expect, images, &test_env, &database_image)?;
    check_interrupt()?;

    eprintln!("checking the images: structure, secrets in every layer, lint");
    rows.extend(check_images(
        &root, config, &expect, images, &inspected, &test_env,
    )?);
    check_interrupt()?;

    let mut report = SmokeReport::new(
        stack.run_id.clone(),
        images.clone(),
        image_ids,
        stack.network.clone(),
        rows,
    );
    report.kept = stack.keep();
    report.seconds = start.elapsed().as_secs_f64();
    if keep {
        print_kept(&stack, config);
    }
    Ok(report)
}

/// The running part: start, measure, stop. Returns the stack rows.
fn run_stack(
    stack: &Stack,
    config: &Config,
    expect: &Expect,
    images: &BTreeMap<String, String>,
    test_env: &TestEnv,
    database_image: &str,
) -> Result<Vec<Row>> {
    let rt = &expect.runtime;
    let limit = Duration::from_secs_f64(rt.start_to_healthy_seconds);
    let mut rows = Vec::new();
    let order = config.start_order().map_err(|e| anyhow::anyhow!(e))?;

    // PostgreSQL first: Docker Hub's image has no HEALTHCHECK, so one is added when missing.
    eprintln!("starting PostgreSQL ({database_image})");
    let db_env = stack.env_file("db", &test_env.database)?;
    let has_check = inspect_image(database_image)?
        .config
        .healthcheck
        .is_some_and(|h| !h.test.is_empty());
    let db_check: &[&str] = if has_check {
        &[]
    } else {
        &[
            "--health-cmd=pg_isready -U todo -d todo",
            "--health-interval=2s",
            "--health-retries=30",
        ]
    };
    let db = stack.run(
        "db",
        database_image,
        Some(&rt.database_alias),
        Some(&db_env),
        None,
        db_check,
    )?;
    let db_ready = stack::wait_healthy(&db.id, Duration::from_secs(90), || None)?;

    // Then each service after the ones it calls (the spec's compose order: the backend, then
    // the frontend, which depends on it).
    let mut started: BTreeMap<&str, (Started, std::result::Result<f64, String>)> = BTreeMap::new();
    for image in &order {
        let service = image.service.as_str();
        eprintln!("starting {service} ({})", images[service]);
        let file = stack.env_file(service, &test_env.services[service])?;
        let container = stack.run(
            service,
            &images[service],
            Some(service),
            Some(&file),
            Some(image.port),
            &[],
        )?;
        let port = container.host_port.unwrap_or(0);
        let path = image.health_path.clone();
        let healthy = stack::wait_healthy(&container.id, limit, || {
            Some(match probe::http_get(port, &path, Duration::from_secs(2)) {
                Ok(a) => format!(
                    "GET {path} answered {}: {}",
                    a.status,
                    shorten(a.body.trim(), 120)
                ),
                Err(e) => format!("GET {path} got no answer: {e}"),
            })
        })?;
        match &healthy {
            Ok(s) => eprintln!("{service} healthy after {s:.1} s"),
            Err(cause) => eprintln!("{service} is not healthy: {cause}"),
        }
        started.insert(service, (container, healthy));
    }
    let is_healthy = |s: &str| started.get(s).is_some_and(|(_, h)| h.is_ok());

    for image in &order {
        let (container, healthy) = &started[image.service.as_str()];
        let row = Row::named("stack", "start-to-healthy", &image.service);
        rows.push(match healthy {
            Ok(s) => {
                let row = row
                    .figure(format!(
                        "{s:.1} s (limit {:.0} s)",
                        rt.start_to_healthy_seconds
                    ))
                    .measure(*s, "s", Some(rt.start_to_healthy_seconds));
                if *s < rt.start_to_healthy_seconds {
                    row.pass()
                } else {
                    row.fail(format!(
                        "took {s:.1} s, over the spec's {:.0} s",
                        rt.start_to_healthy_seconds
                    ))
                }
            }
            Err(cause) => row.figure("never").fail(cause.clone()),
        });
        rows.push(health_latency(image, container, expect));
    }
    check_interrupt()?;

    for image in order.iter().filter(|i| i.uses_database()) {
        let service = image.service.as_str();
        rows.push(database_row(
            image,
            &started[service].0,
            is_healthy(service),
            &db_ready,
            expect,
        ));
    }
    for caller in &order {
        for callee in caller.calls.iter().filter_map(|c| config.image(c)) {
            rows.push(call_row(
                caller,
                callee,
                &started[caller.service.as_str()].0,
                is_healthy(&caller.service) && is_healthy(&callee.service),
                expect,
            ));
        }
    }
    check_interrupt()?;

    // Idle: a moment after the last request, every container measured at once.
    std::thread::sleep(Duration::from_secs(1));
    rows.extend(idle_memory(&order, &started, expect));
    check_interrupt()?;

    // A graceful stop is tried on a second container of each image, on the same network with the
    // same environment, so that the stack itself stays whole (for `--keep`) and the measurements
    // above saw one container per service.
    for image in &order {
        let service = image.service.as_str();
        let vars = &test_env.services[service];
        rows.push(graceful_stop(stack, image, &images[service], vars, expect)?);
        check_interrupt()?;
    }
    Ok(rows)
}

fn shorten(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(n).collect::<String>())
    }
}

fn health_latency(image: &Image, container: &Started, expect: &Expect) -> Row {
    let limit = expect.runtime.health_latency_seconds;
    let row = Row::named("stack", "health-latency", &image.service);
    let port = container.host_port.unwrap_or(0);
    let path = &image.health_path;
    let mut samples = Vec::new();
    for _ in 0..5 {
        match probe::http_get(port, path, Duration::from_secs(5)) {
            Ok(a) if a.status == 200 => samples.push(a.seconds),
            Ok(a) => {
                return row.figure(format!("HTTP {}", a.status)).fail(format!(
                    "GET {path} answered {}: {}",
                    a.status,
                    shorten(a.body.trim(), 120)
                ))
            }
            Err(e) => {
                return row
                    .figure("no answer")
                    .fail(format!("GET {path} got no answer: {e}"))
            }
        }
    }
    let t = probe::timings(&samples);
    let figure = format!(
        "max {}, median {} (limit {})",
        probe::ms(t.max),
        probe::ms(t.median),
        probe::ms(limit)
    );
    latency_verdict(row, figure, t.max, limit, &format!("GET {path}"))
}

/// Passes the row when the slowest sample is under the limit, and records it as the measure.
fn latency_verdict(row: RowBuilder, figure: String, max: f64, limit: f64, what: &str) -> Row {
    let row = row.figure(figure).measure(max, "s", Some(limit));
    if max < limit {
        row.pass()
    } else {
        row.fail(format!(
            "{what} took {}, over the spec's {}",
            probe::ms(max),
            probe::ms(limit)
        ))
    }
}

fn json_field(body: &str, field: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v[field].as_str().map(String::from))
}

/// The database row of a service given DATABASE_URL (`backend` names it as the spec's one).
fn database_row(
    backend: &Image,
    container: &Started,
    healthy: bool,
    db_ready: &std::result::Result<f64, String>,
    expect: &Expect,
) -> Row {
    let limit = expect.runtime.database_connect_seconds;
    let row = Row::named("stack", "database", &backend.service);
    if let Err(cause) = db_ready {
        return row
            .figure("db down")
            .fail(format!("PostgreSQL did not start: {cause}"));
    }
    if !healthy {
        return row.not_checked(format!("the {} is not healthy", backend.service));
    }
    let port = container.host_port.unwrap_or(0);
    let path = &backend.health_path;
    // The backend caches its database probe for two seconds: poll until it reports.
    let said = engine::poll(Duration::from_secs(10), || {
        let answer = probe::http_get(port, path, Duration::from_secs(5))?;
        match json_field(&answer.body, "database") {
            Some(state) if state == "ok" => Ok(state),
            other => bail!("{}", other.unwrap_or_else(|| "no `database` field".into())),
        }
    });
    if let Err(e) = said {
        return row.figure("unreachable").fail(format!(
            "GET {path} says database: {e} (DATABASE_URL points at the run's PostgreSQL as `{}`)",
            expect.runtime.database_alias
        ));
    }
    if backend.runtime != Some(crate::config::Runtime::Python) {
        return row.figure("health ok").not_checked(format!(
            "smoke times a connection with the image's Python and psycopg; the {} declares no \
             `runtime = \"python\"` in project.toml",
            backend.service
        ));
    }
    match probe::database_connect(&container.id) {
        Ok(seconds) => {
            let row = row
                .figure(format!("ok; connect + SELECT 1 in {}", probe::ms(seconds)))
                .measure(seconds, "s", Some(limit));
            if seconds < limit {
                row.pass()
            } else {
                row.fail(format!(
                    "a connection took {}, over the spec's {}",
                    probe::ms(seconds),
                    probe::ms(limit)
                ))
            }
        }
        Err(e) => row.figure("health ok").fail(format!(
            "connecting from the {} container failed: {e:#}",
            backend.service
        )),
    }
}

/// The row of one call of `caller` to `callee` (the spec's frontend to backend): the caller's
/// health answer says whether it reached the callee by its name, and requests from inside the
/// caller's container, with its own interpreter, measure the way there.
fn call_row(
    caller: &Image,
    callee: &Image,
    container: &Started,
    both_healthy: bool,
    expect: &Expect,
) -> Row {
    let limit = expect.runtime.service_call_seconds;
    let (from, to) = (caller.service.as_str(), callee.service.as_str());
    let row = Row::named("stack", format!("{from}-to-{to}"), from);
    if !both_healthy {
        return row.not_checked(format!("the {from} or the {to} is not healthy"));
    }
    let port = container.host_port.unwrap_or(0);
    let app_says = probe::http_get(port, &caller.health_path, Duration::from_secs(5))
        .ok()
        .and_then(|a| json_field(&a.body, to));
    if app_says.as_deref() != Some("ok") {
        return row.figure("unreachable").fail(format!(
            "GET {} says {to}: {} ({} is {})",
            caller.health_path,
            app_says.unwrap_or_else(|| "nothing".into()),
            callee.var("URL"),
            service_url(callee)
        ));
    }
    let Some(runtime) = caller.runtime else {
        return row.figure("health ok").not_checked(format!(
            "no `runtime` for the {from} in project.toml: smoke has nothing to send requests \
             from inside its container with"
        ));
    };
    let url = format!("{}{}", service_url(callee), callee.health_path);
    match probe::fetch_from(&container.id, runtime, &url, 5) {
        Ok(results) => {
            if let Some((status, _)) = results.iter().find(|(s, _)| s != "200") {
                return row
                    .figure(status.clone())
                    .fail(format!("GET {url} from the {from} container: {status}"));
            }
            let samples: Vec<f64> = results.iter().map(|r| r.1).collect();
            let t = probe::timings(&samples);
            let figure = format!(
                "first {} (with DNS), median {} (limit {})",
                probe::ms(t.first),
                probe::ms(t.median),
                probe::ms(limit)
            );
            latency_verdict(row, figure, t.max, limit, &format!("GET {url}"))
        }
        Err(e) => row.fail(format!(
            "cannot request {url} from the {from} container: {e:#}"
        )),
    }
}

fn idle_memory(
    images: &[&Image],
    started: &BTreeMap<&str, (Started, std::result::Result<f64, String>)>,
    expect: &Expect,
) -> Vec<Row> {
    let ids: Vec<&str> = images
        .iter()
        .map(|i| started[i.service.as_str()].0.id.as_str())
        .collect();
    let usage = probe::idle_usage(&ids);
    images
        .iter()
        .map(|image| {
            let service = image.service.as_str();
            let row = Row::named("stack", "idle-memory", service);
            let Some(rules) = expect.service(service) else {
                return row.not_checked(format!("the spec names no memory for `{service}`"));
            };
            let (container, healthy) = &started[service];
            // `docker stats` reads 0 B for a container that has stopped: what is not running
            // is never measured, so the state is asked first.
            let exited = match stack::state(&container.id) {
                Ok(state) if state.running => None,
                Ok(state) => Some(stack::exited_cause(
                    &state,
                    &stack::last_logs(&container.id, 5),
                )),
                Err(e) => return row.not_checked(format!("docker inspect failed: {e:#}")),
            };
            let usage = match &usage {
                Ok(usage) => usage
                    .iter()
                    .find(|(short, _, _)| container.id.starts_with(short.as_str()))
                    .map(|(_, bytes, cpu)| (*bytes, *cpu)),
                Err(e) => return row.not_checked(format!("docker stats failed: {e:#}")),
            };
            // What the check weighs is the container's own memory, from the stats API: docker
            // stats also counts the page cache of the image files the container was the first
            // on this engine to read (the Node runtime's program, about 45 MB on an engine whose
            // image files nobody had read yet, and nothing on a used one).
            let usage = usage.map(|(bytes, cpu)| {
                let memory = probe::own_memory(&container.id);
                (bytes, cpu, memory)
            });
            idle_verdict(
                row,
                rules.idle_memory_mb,
                healthy.is_ok(),
                exited.as_deref(),
                usage,
            )
        })
        .collect()
}

/// The idle-memory row from what was seen: a container that is not running is never passed
/// (it fails when it had been healthy, since it stopped during the run; else its start already
/// failed and there is nothing to measure), nor is a reading of no memory at all.
fn idle_verdict(
    row: RowBuilder,
    limit_mb: f64,
    was_healthy: bool,
    exited: Option<&str>,
    usage: Option<(u64, f64, Option<probe::Memory>)>,
) -> Row {
    match (exited, usage) {
        (Some(cause), _) if was_healthy => row
            .figure("not running")
            .fail(format!("stopped after it was healthy: {cause}")),
        (Some(cause), _) => row
            .figure("not running")
            .not_checked(format!("nothing to measure: {cause}")),
        (None, None) => row.not_checked("docker stats did not list the container"),
        (None, Some((0, _, _))) => row.not_checked("docker stats read 0 B: nothing was measured"),
        (None, Some((bytes, cpu, memory))) => {
            let (mb, figure) = match memory {
                Some(m) => {
                    let mb = m.own as f64 / 1e6;
                    (
                        mb,
                        format!(
                            "{mb:.0} MB, {cpu:.1}% CPU (spec: about {limit_mb:.0} MB; docker \
                             stats {:.0} MB with {:.0} MB of cached files)",
                            bytes as f64 / 1e6,
                            m.file_cache as f64 / 1e6
                        ),
                    )
                }
                None => {
                    let mb = bytes as f64 / 1e6;
                    (
                        mb,
                        format!("{mb:.0} MB, {cpu:.1}% CPU (spec: about {limit_mb:.0} MB)"),
                    )
                }
            };
            let row = row.figure(figure).measure(mb, "MB", Some(limit_mb));
            if mb <= limit_mb {
                row.pass()
            } else {
                row.fail(format!(
                    "{mb:.0} MB at idle, over the spec's {limit_mb:.0} MB"
                ))
            }
        }
    }
}

fn graceful_stop(
    stack: &Stack,
    image: &Image,
    reference: &str,
    vars: &[(String, String)],
    expect: &Expect,
) -> Result<Row> {
    let rt = &expect.runtime;
    let service = image.service.as_str();
    let row = Row::named("stack", "graceful-stop", service);
    let file = stack.env_file(&format!("{service}-stop"), vars)?;
    let replica = stack.run(
        &format!("{service}-stop"),
        reference,
        None,
        Some(&file),
        Some(image.port),
        &[],
    )?;
    let port = replica.host_port.unwrap_or(0);
    if let Err(e) = probe::wait_ok(
        &replica.id,
        port,
        &image.health_path,
        Duration::from_secs_f64(rt.start_to_healthy_seconds),
    ) {
        let _ = docker(["rm", "--force", &replica.id]).read();
        return Ok(row.not_checked(format!(
            "a second {service} container did not answer: {e:#}"
        )));
    }
    check_interrupt()?;
    let grace = Duration::from_secs(rt.stop_grace_seconds);
    let slow = image.slow_path.as_deref();
    let stop = probe::graceful_stop(&replica.id, port, slow, grace);
    let _ = docker(["rm", "--force", &replica.id]).read();
    let stop = stop?;
    let mut problems = Vec::new();
    if stop.seconds >= grace.as_secs_f64() - 0.5 {
        problems.push(format!(
            "`docker stop` took {:.1} s, the whole grace period of {} s: the process ignores SIGTERM and was killed",
            stop.seconds,
            grace.as_secs()
        ));
    }
    if !rt.stop_exit_codes.contains(&stop.exit_code) {
        problems.push(format!(
            "exit code {} (a graceful stop ends with {:?})",
            stop.exit_code, rt.stop_exit_codes
        ));
    }
    let request = match &stop.in_flight {
        None => String::new(),
        Some(Ok(a)) if a.status == 200 => {
            format!(", in-flight request answered 200 after {:.1} s", a.seconds)
        }
        Some(Ok(a)) => {
            problems.push(format!(
                "the in-flight GET {} answered {} instead of 200 ({})",
                slow.unwrap_or_default(),
                a.status,
                shorten(a.body.trim(), 80)
            ));
            String::new()
        }
        Some(Err(e)) => {
            problems.push(format!(
                "the in-flight GET {} was cut off: {e}",
                slow.unwrap_or_default()
            ));
            String::new()
        }
    };
    Ok(row
        .figure(format!(
            "stopped in {:.1} s, exit {}{request}",
            stop.seconds, stop.exit_code
        ))
        .measure(stop.seconds, "s", Some(grace.as_secs_f64()))
        .problems(problems))
}

/// The image part: the structure and secrets of each image, and the lint of each Dockerfile,
/// each in a thread of its own, all at once.
fn check_images(
    root: &Path,
    config: &Config,
    expect: &Expect,
    images: &BTreeMap<String, String>,
    inspected: &BTreeMap<String, Inspected>,
    test_env: &TestEnv,
) -> Result<Vec<Row>> {
    let tools = lint::ensure_tools(root).map_err(|e| format!("{e:#}"));
    let syft = crate::sbom::ensure_syft(root).map_err(|e| format!("{e:#}"));
    let sbom_dir = std::env::temp_dir().join(format!("xtask-smoke-sbom-{}", std::process::id()));
    let needles = &test_env.needles;
    let (tools, syft, sbom_dir) = (&tools, &syft, &sbom_dir);
    std::thread::scope(|scope| {
        let mut jobs = Vec::new();
        for image in &config.images {
            let reference = images[&image.service].as_str();
            let inspect = &inspected[&image.service];
            jobs.push(scope.spawn(move || -> Result<Vec<Row>> {
                let (secrets_row, passwd) = secrets_row(image, reference, needles)?;
                let mut rows = structure::check(inspect, image, expect, passwd.as_deref());
                rows.push(secrets_row);
                Ok(rows)
            }));
        }
        for image in &config.images {
            let reference = images[&image.service].as_str();
            let inspect = &inspected[&image.service];
            jobs.push(scope.spawn(move || -> Result<Vec<Row>> {
                let mut rows = lint::check(root, tools, image, inspect);
                rows.extend(vulnerability_rows(
                    root, config, tools, syft, sbom_dir, image, reference,
                ));
                Ok(rows)
            }));
        }
        let mut rows = Vec::new();
        for job in jobs {
            rows.extend(
                job.join()
                    .map_err(|_| anyhow::anyhow!("an image check panicked"))??,
            );
        }
        let _ = std::fs::remove_dir_all(sbom_dir);
        Ok(rows)
    })
}

/// The vulnerability gate's rows of one image: its Debian packages, from the SBOM that syft
/// makes of it, and its Python and npm packages.
fn vulnerability_rows(
    root: &Path,
    config: &Config,
    tools: &Result<lint::Tools, String>,
    syft: &Result<std::path::PathBuf, String>,
    sbom_dir: &Path,
    image: &Image,
    reference: &str,
) -> Vec<Row> {
    let service = image.service.as_str();
    let sbom = syft.clone().and_then(|syft| {
        std::fs::create_dir_all(sbom_dir).map_err(|e| e.to_string())?;
        crate::sbom::make(
            &syft,
            service,
            reference,
            crate::sbom::Format::SpdxJson,
            sbom_dir,
        )
        .map_err(|e| format!("{e:#}"))
    });
    let debian = match &sbom {
        Ok(sbom) => gate::debian_row(root, config, sbom),
        Err(why) => Row::named("lint", "vulns-debian", service)
            .not_checked(format!("no SBOM of the image: {why}")),
    };
    vec![
        debian,
        gate::libraries_row(root, config, tools, service, reference),
    ]
}

/// The vulnerability gate alone, on SBOMs made already (`cargo xtask sbom --gate`).
pub fn gate(
    root: &Path,
    config: &Config,
    images: &BTreeMap<String, String>,
    sboms: &[crate::sbom::Sbom],
) -> SmokeReport {
    let start = Instant::now();
    let tools = lint::ensure_tools(root).map_err(|e| format!("{e:#}"));
    let mut rows = Vec::new();
    for sbom in sboms {
        rows.push(gate::debian_row(root, config, sbom));
        rows.push(gate::libraries_row(
            root,
            config,
            &tools,
            &sbom.service,
            &sbom.reference,
        ));
    }
    let ids = sboms
        .iter()
        .map(|s| (s.service.clone(), s.image_id.clone()))
        .collect();
    let mut report = SmokeReport::new("gate".into(), images.clone(), ids, String::new(), rows);
    report.seconds = start.elapsed().as_secs_f64();
    report
}

/// Streams `docker save` of the image through the scanner; returns the row and the image's
/// `/etc/passwd`.
fn secrets_row(
    image: &Image,
    reference: &str,
    needles: &[Needle],
) -> Result<(Row, Option<String>)> {
    let row = Row::named("image", "secrets", &image.service);
    let mut reader = docker(["save", reference]).reader()?;
    let scanned = secrets::scan_saved(
        std::io::BufReader::with_capacity(1 << 20, &mut reader),
        needles,
        &interrupt::interrupted,
    );
    if scanned.is_err() {
        reader.kill();
    }
    let out = reader.finish()?;
    if interrupt::interrupted() {
        bail!(interrupt::Interrupted);
    }
    let scan = match scanned {
        Ok(scan) if out.success() => scan,
        Ok(_) | Err(_) => {
            let cause = match scanned {
                Err(e) => format!("{e:#}"),
                Ok(_) => out.stderr.trim().to_string(),
            };
            return Ok((
                row.fail(format!("the image could not be read: {cause}")),
                None,
            ));
        }
    };
    let figure = format!(
        "{} layers, {} files, {:.0} MB searched",
        scan.layers,
        scan.files,
        scan.bytes as f64 / 1e6
    );
    let row = row.figure(figure);
    let row = if scan.findings.is_empty() {
        row.pass()
    } else {
        let total = scan.findings.len();
        let mut shown: Vec<String> = scan.findings.iter().take(8).cloned().collect();
        if total > shown.len() {
            shown.push(format!("and {} more", total - shown.len()));
        }
        row.fail(format!("{total} finding(s): {}", shown.join("; ")))
    };
    Ok((row, scan.passwd))
}

/// What `--keep` prints: where the stack answers and how to remove it.
fn print_kept(stack: &Stack, config: &Config) {
    let filter = format!("label={}={}", owned::RUN, stack.run_id);
    eprintln!(
        "\nthe stack stays up (--keep), on network {}:",
        stack.network
    );
    for image in &config.images {
        let name = format!("todo-smoke-{}-{}", stack.run_id, image.service);
        if let Ok(out) = docker(["port", &name, &format!("{}/tcp", image.port)]).read() {
            if let Some(address) = out.lines().find(|l| l.starts_with("127.0.0.1:")) {
                eprintln!(
                    "  {:<9} http://{address}{}",
                    image.service, image.health_path
                );
            }
        }
    }
    eprintln!(
        "  {:<9} docker exec -it todo-smoke-{}-db psql -U todo todo",
        "db", stack.run_id
    );
    eprintln!("remove it with `cargo xtask smoke --clean`, or:");
    eprintln!(
        "  docker rm --force --volumes $(docker ps --all --quiet --filter {filter}) && docker network rm {}",
        stack.network
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        Config::load(&root.join(crate::config::DEFAULT_FILE)).unwrap()
    }

    #[test]
    fn images_default_to_latest_and_overrides_are_checked() {
        let config = config();
        let refs = image_refs(&config, &[]).unwrap();
        assert_eq!(refs["frontend"], "todo-frontend:latest");
        assert_eq!(refs["backend"], "todo-backend:latest");
        let refs = image_refs(&config, &["backend=todo-fixture-x:1".into()]).unwrap();
        assert_eq!(refs["backend"], "todo-fixture-x:1");
        let err = image_refs(&config, &["web=x".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown service `web`"), "{err}");
        let err = image_refs(&config, &["backend".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("SERVICE=REF"), "{err}");
    }

    #[test]
    fn the_generated_environment_passes_the_rules_and_is_random() {
        let config = config();
        let expect = Expect::load().unwrap();
        let a = test_env(&config, &expect).unwrap();
        let b = test_env(&config, &expect).unwrap();
        let get = |vars: &[(String, String)], k: &str| {
            vars.iter().find(|(n, _)| n == k).unwrap().1.clone()
        };
        let (backend, frontend) = (&a.services["backend"], &a.services["frontend"]);
        assert_ne!(
            get(backend, "BETTER_AUTH_SECRET"),
            get(&b.services["backend"], "BETTER_AUTH_SECRET")
        );
        // A service's URL is its name and port on the run's network, in every variable that
        // project.toml says holds it; a caller gets `<SERVICE>_URL` of each service it calls.
        assert_eq!(get(frontend, "NEXT_PUBLIC_API_URL"), "http://backend:8000");
        assert_eq!(get(frontend, "BACKEND_URL"), "http://backend:8000");
        assert_eq!(get(frontend, "BETTER_AUTH_URL"), "http://frontend:3000");
        assert_eq!(get(backend, "FRONTEND_URL"), "http://frontend:3000");
        assert!(get(backend, "DATABASE_URL").contains("@db:5432/todo"));
        assert_eq!(
            get(frontend, "BETTER_AUTH_SECRET"),
            get(backend, "BETTER_AUTH_SECRET")
        );
        // Each service gets what it names, and nothing else: the frontend no database.
        assert!(!frontend.iter().any(|(k, _)| k == "DATABASE_URL"));
        assert_eq!(a.needles.len(), 3);
        // Every planted value is long enough to be searched for without false hits.
        assert!(a.needles.iter().all(|n| n.bytes.len() >= 32));
    }

    #[test]
    fn idle_memory_is_never_passed_for_what_is_not_running() {
        let row = || Row::named("stack", "idle-memory", "backend");
        let verdict = |healthy, exited, usage| idle_verdict(row(), 200.0, healthy, exited, usage);
        let cause = "the container exited with code 0; its last log lines: bye";
        // The fault injection's case: an exited container, read as 0 B by docker stats.
        let never_started = verdict(false, Some(cause), Some((0, 0.0, None)));
        assert_eq!(never_started.result, report::Outcome::NotChecked);
        assert!(never_started
            .detail
            .unwrap()
            .contains("its last log lines: bye"));
        let stopped = verdict(true, Some(cause), Some((0, 0.0, None)));
        assert_eq!(stopped.result, report::Outcome::Fail);
        assert_eq!(
            verdict(true, None, Some((0, 0.0, None))).result,
            report::Outcome::NotChecked
        );
        assert_eq!(
            verdict(true, None, None).result,
            report::Outcome::NotChecked
        );
        let measured = verdict(true, None, Some((60_000_000, 0.5, None)));
        assert_eq!(measured.result, report::Outcome::Pass);
        assert_eq!(measured.figure, "60 MB, 0.5% CPU (spec: about 200 MB)");
        assert_eq!(
            verdict(true, None, Some((260_000_000, 0.5, None))).result,
            report::Outcome::Fail
        );
        // docker stats over the spec only by the cached image files: the own memory decides.
        let cached = probe::Memory {
            own: 150_000_000,
            file_cache: 110_000_000,
        };
        let own = verdict(true, None, Some((260_000_000, 0.5, Some(cached))));
        assert_eq!(own.result, report::Outcome::Pass);
        assert!(own.figure.starts_with("150 MB"), "{}", own.figure);
        assert!(own.figure.contains("docker stats 260 MB"), "{}", own.figure);
    }

    #[test]
    fn random_tokens_use_the_whole_alphabet() {
        let token = random_token(2000).unwrap();
        assert_eq!(token.len(), 2000);
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(token.chars().any(|c| c.is_ascii_digit()));
        assert!(token.chars().any(|c| c.is_ascii_uppercase()));
    }
}
