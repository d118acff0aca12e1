//! `cargo xtask build`: both images at once with BuildKit, tagged, labelled, measured against
//! their budgets, and reported.

mod context;
mod explain;
pub mod remote;
mod report;
pub use report::short_id;
mod sizes;
pub mod stream;

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use xshell::Shell;

use crate::bases::{self, ResolvedBases};
use crate::config::{BaseMode, Config};
use crate::git::GitInfo;
use crate::interrupt;
use crate::plan::{self, BuildPlan, ImagePlan};
use crate::platform::Platform;
pub use report::{BuildReport, ImageResult, HISTORY};
use stream::{BuildStream, Update};

pub const OUT_DIR: &str = "target/xtask/build";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// Live bars on a terminal, one line per step otherwise.
    #[default]
    Auto,
    /// Every line of both builds, prefixed by its service.
    Plain,
    /// Nothing but the report.
    Quiet,
}

/// The options of a build: what `cargo xtask build` parses from its command line, and what other
/// commands (`up` builds missing images) fill in directly, starting from `Default` (the
/// defaults of the flags), and run with [`BuildCmd::run`].
#[derive(Debug, Default, Args)]
pub struct BuildCmd {
    /// Build only this service (repeatable).
    #[arg(long, value_name = "SERVICE")]
    pub only: Vec<String>,
    /// Build every step again, ignoring BuildKit's layer cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// Where base images come from (default: project.toml's `bases.mode`, or TODO_BASES).
    #[arg(long, value_enum)]
    pub bases: Option<BaseMode>,
    /// Print the plan (tags, labels, build arguments, commands) as JSON and build nothing.
    #[arg(long)]
    pub print: bool,
    /// After a successful build, write one SBOM per image with syft (as `cargo xtask sbom`).
    #[arg(long)]
    pub sbom: bool,
    /// After the build, say for each image which steps missed the cache and why (with --json, as
    /// the report's `explain` key).
    #[arg(long)]
    pub explain: bool,
    /// After the build, show each image's size by step (with the change per step since the
    /// previous build) and its biggest layers by top-level path.
    #[arg(long)]
    pub sizes: bool,
    /// Build with this version instead of project.toml's (semver, without the leading `v`).
    #[arg(long, value_name = "SEMVER")]
    pub set_version: Option<semver::Version>,
    /// Import BuildKit's registry cache from REF/IMAGE:buildcache (default: TODO_CACHE, else
    /// project.toml's `build.cache_from`, else the --cache-to prefix).
    #[arg(long, value_name = "REF")]
    pub cache_from: Option<String>,
    /// Export every layer's cache (mode=max) to REF/IMAGE:buildcache (default: TODO_CACHE_TO,
    /// else project.toml's `build.cache_to`).
    #[arg(long, value_name = "REF")]
    pub cache_to: Option<String>,
    /// Build on this buildx builder (default: project.toml's `build.builder`, else buildx's
    /// current one).
    #[arg(long, value_name = "NAME")]
    pub builder: Option<String>,
    /// After a successful build, push each image's `sha-<hash>` tag to DOCKER_REGISTRY (what a
    /// CI job does); only a clean commit's images are pushed.
    #[arg(long)]
    pub push: bool,
    /// The platforms to build each image for, comma-separated (`linux/amd64,linux/arm64`;
    /// default: project.toml's `build.platforms`, else this host's alone). More than the host's
    /// needs the engine's containerd image store.
    #[arg(long, value_name = "LIST")]
    pub platform: Option<String>,
}

/// The platforms of a build: the flag, else project.toml's `build.platforms`, else the host's.
pub fn platforms(flag: Option<&str>, config: &Config) -> Result<Vec<Platform>> {
    match (flag, &config.build.platforms) {
        (Some(list), _) => Platform::parse_list(list),
        (None, Some(list)) => Platform::parse_list(&list.join(",")),
        (None, None) => Ok(vec![Platform::host()]),
    }
}

/// Refuses a build for other platforms than the host's on the classic image store, which
/// holds one platform per image.
pub fn check_store(platforms: &[Platform]) -> Result<()> {
    if platforms == [Platform::host()] || crate::store::store() == crate::store::Store::Containerd {
        return Ok(());
    }
    anyhow::bail!(
        "building for {} needs the engine's containerd image store, and this engine uses the \
         classic one: set {{\"features\": {{\"containerd-snapshotter\": true}}}} in its \
         daemon.json and restart it, or build for {} alone. Nothing was built",
        platforms
            .iter()
            .map(|p| p.docker())
            .collect::<Vec<_>>()
            .join(","),
        Platform::host().docker()
    )
}

/// The requested base mode: the flag, else TODO_BASES, else the project file.
pub fn base_mode(flag: Option<BaseMode>, config: &Config) -> Result<BaseMode> {
    if let Some(mode) = flag {
        return Ok(mode);
    }
    match std::env::var("TODO_BASES") {
        Ok(v) if !v.is_empty() => BaseMode::from_str(&v, true).map_err(|_| {
            anyhow::anyhow!("TODO_BASES={v} is not a base mode: use auto, public or local")
        }),
        _ => Ok(config.bases.mode),
    }
}

impl BuildCmd {
    pub fn run(self, sh: &Shell, config: &Config) -> Result<()> {
        // From the start: a Ctrl-C while the plan is made (bases, engine, git) stops the build
        // with 130 like one during the builds, instead of killing the process outright.
        interrupt::install();
        let images = config.select(&self.only)?;
        let git = GitInfo::read(sh)?;
        let version = self
            .set_version
            .clone()
            .unwrap_or_else(|| config.project.version.clone());
        let mode = base_mode(self.bases, config)?;
        let platforms = platforms(self.platform.as_deref(), config)?;
        let multi = platforms != [Platform::host()];
        let remote = remote::Remote::resolve(
            self.cache_from.clone(),
            self.cache_to.clone(),
            self.builder.clone(),
            config,
        )?;
        let push_to = if self.push && !self.print {
            Some(push_target(&git)?)
        } else {
            None
        };
        if !self.print {
            // The builder first: when it is another engine's own BuildKit, that engine is the
            // one to start, inspect and measure.
            let builder = match (&remote.builder, &remote.cache_to) {
                (None, None) => None,
                (name, _) => Some(remote::Builder::inspect(name.as_deref())?),
            };
            if let Some(builder) = &builder {
                remote::follow_builder(builder);
            }
            crate::engine::ensure(sh)?;
            check_store(&platforms)?;
            if let (Some(builder), Some(_)) = (&builder, &remote.cache_to) {
                remote::check_export(builder, crate::store::store())?;
            }
        }
        let resolved = if self.print {
            let mode = if mode == BaseMode::Auto {
                BaseMode::Local
            } else {
                mode
            };
            // Public bases have no recipe, and so need no Debian mirror.
            let hash = match mode {
                BaseMode::Local => bases::identity_or_recipe(config, &sh.current_dir())?,
                _ => String::new(),
            };
            ResolvedBases {
                mode: if mode == BaseMode::Local {
                    "local"
                } else {
                    "public"
                },
                args: bases::base_args(&images, mode, &hash),
                ..Default::default()
            }
        } else if multi {
            bases::resolve_platforms(sh, config, &images, mode, &platforms)?
        } else {
            bases::resolve(sh, config, &images, mode)?
        };
        let mut inputs = crate::plan::PlanInputs::now(&version, &git, &resolved.args, OUT_DIR)
            .with_context_revisions(sh, &images)?
            .with_build_seed(sh)?;
        inputs.no_cache = self.no_cache;
        inputs.remote = remote.clone();
        if multi {
            inputs.platforms = platforms.clone();
        }
        let plan = plan::build_plan(config, &images, &inputs);
        if self.print {
            let commands: Vec<Vec<String>> = plan
                .images
                .iter()
                .map(|i| {
                    std::iter::once("docker".to_string())
                        .chain(i.buildx_args())
                        .collect()
                })
                .collect();
            let out = serde_json::json!({"bases": resolved, "plan": plan, "commands": commands});
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        if !self.json {
            eprintln!(
                "building {} at v{} ({}) on {} bases{}",
                images
                    .iter()
                    .map(|i| i.service.as_str())
                    .collect::<Vec<_>>()
                    .join(" and "),
                version,
                git.short(),
                resolved.mode,
                if resolved.built.is_empty() {
                    String::new()
                } else {
                    format!(" (built now: {})", resolved.built.join(", "))
                }
            );
            if let Some(builder) = &remote.builder {
                eprintln!("builder: {builder}");
            }
            match (&remote.cache_from, &remote.cache_to) {
                (Some(from), Some(to)) if from == to => {
                    eprintln!("registry cache: {from} (imported and exported)")
                }
                (from, to) => {
                    if let Some(from) = from {
                        eprintln!("registry cache: imported from {from}");
                    }
                    if let Some(to) = to {
                        eprintln!("registry cache: exported to {to}");
                    }
                }
            }
        }
        // What goes into each image, read as the build starts (when BuildKit reads the contexts
        // too), on a thread of its own so that the build does not wait for it: the next build's
        // --explain compares with it. Its cost is the cost of --explain, which --json reports.
        let root = sh.current_dir();
        let ((inputs, mut explain_seconds), report) = std::thread::scope(|scope| {
            let reading = scope.spawn(|| {
                let start = Instant::now();
                let inputs: Vec<Option<explain::BuildInputs>> = plan
                    .images
                    .iter()
                    .zip(&images)
                    .map(|(image, config)| {
                        let base_args: Vec<String> = config.bases.keys().cloned().collect();
                        explain::inputs(&root, image, &base_args, |reference| {
                            crate::engine::api_image(reference)
                                .flatten()
                                .map(|(id, _)| id)
                        })
                        .ok()
                    })
                    .collect();
                (inputs, start.elapsed().as_secs_f64())
            });
            let report = execute(sh, &plan, self.progress);
            (reading.join().unwrap_or_default(), report)
        });
        let mut report = report?;
        for (image, inputs) in report.images.iter_mut().zip(inputs) {
            image.inputs = inputs;
            if let Some(id) = &image.id {
                image.layers = sizes::layers(id);
            }
        }
        let all_ok = !report.interrupted && report.images.iter().all(|i| i.ok);
        let push_error = match &push_to {
            Some(registry) if all_ok => push_images(&mut report, registry, &git).err(),
            _ => None,
        };
        let services: Vec<&str> = report.images.iter().map(|i| i.service.as_str()).collect();
        let previous = report::load_history(sh, &services);
        report::append_history(sh, &report)?;
        let explain_start = Instant::now();
        let explanations: Vec<explain::Explanation> = report
            .images
            .iter()
            .map(|i| explain::explain(i, report::previous(&previous, &i.service)))
            .collect();
        explain_seconds += explain_start.elapsed().as_secs_f64();
        if self.json {
            let mut value = serde_json::to_value(&report)?;
            if self.explain {
                value["explain"] = serde_json::to_value(&explanations)?;
                value["explain_seconds"] = explain_seconds.into();
            }
            println!("{value}");
        } else {
            println!("{}", report::table(&report, &previous));
            if self.explain {
                print!("\n{}", explain::render(&explanations));
            }
            if self.sizes {
                for image in &report.images {
                    print!(
                        "\n{}",
                        sizes::render(image, report::previous(&previous, &image.service))
                    );
                }
            }
            for image in report.images.iter().filter(|i| !i.ok) {
                eprintln!(
                    "\n{} failed: {}",
                    image.service,
                    image.error.as_deref().unwrap_or("unknown error")
                );
                for line in &image.last_lines {
                    eprintln!("  | {line}");
                }
                eprintln!("  full log: {}", image.log_file.display());
            }
        }
        for (image, config) in report.images.iter().zip(&images) {
            let before = report::previous(&previous, &image.service);
            if let Some(warning) = config
                .warn_growth_mb
                .and_then(|limit| sizes::growth_warning(image, before, limit))
            {
                eprintln!("{warning}");
            }
        }
        if report.interrupted {
            return Err(interrupt::Interrupted.into());
        }
        if let Some(err) = push_error {
            return Err(err);
        }
        let failed: Vec<&str> = report
            .images
            .iter()
            .filter(|i| !i.ok)
            .map(|i| i.service.as_str())
            .collect();
        if !failed.is_empty() {
            anyhow::bail!(
                "{} of {} images failed: {}",
                failed.len(),
                report.images.len(),
                failed.join(", ")
            );
        }
        if self.sbom {
            let refs = report
                .images
                .iter()
                .filter_map(|i| Some((i.service.clone(), i.id.clone()?)))
                .collect();
            let root = sh.current_dir();
            let format = crate::sbom::Format::SpdxJson;
            let sboms =
                crate::sbom::make_all(&root, &refs, format, &root.join(crate::sbom::OUT_DIR))?;
            eprintln!("{}", crate::sbom::table(&sboms));
        }
        Ok(())
    }
}

/// The registry `build --push` pushes to, checked before anything is built: DOCKER_REGISTRY
/// from the environment (as a CI job sets it), and a clean commit, since a `-dirty` image is no
/// revision anyone can build again.
fn push_target(git: &GitInfo) -> Result<crate::release::plan::Registry> {
    if git.dirty {
        anyhow::bail!(
            "refusing to push: the working tree has uncommitted changes, and an image of \
             `sha-{}` is no commit anyone can build again; commit or stash them and run again. \
             Nothing was built",
            git.short()
        );
    }
    let value = std::env::var("DOCKER_REGISTRY").unwrap_or_default();
    if value.trim().is_empty() {
        anyhow::bail!(
            "--push needs DOCKER_REGISTRY in the environment (e.g. DOCKER_REGISTRY=localhost:5000/todo \
             or a Docker Hub namespace). Nothing was built"
        );
    }
    crate::release::plan::Registry::parse(&value)
        .map_err(|e| anyhow::anyhow!("{e}. Nothing was built"))
}

/// Tags each built image `REGISTRY/IMAGE:sha-<hash>` and pushes it; each result records the
/// reference and the digest the registry stored.
fn push_images(
    report: &mut BuildReport,
    registry: &crate::release::plan::Registry,
    git: &GitInfo,
) -> Result<()> {
    use crate::release::registry;
    for image in &mut report.images {
        let id = image.id.clone().context("a built image without an id")?;
        let reference = format!("{}:sha-{}", registry.repository(&image.image), git.short());
        registry::tag(&id, &reference)?;
        let digest = registry::push(&reference, registry::OnCtrlC::Stop).with_context(|| {
            format!(
                "the push of {reference} failed (the images are built; run the same command \
                 again to push them)"
            )
        })?;
        if !image.platforms.is_empty() {
            verify_platforms(&reference, &digest, &image.platforms)?;
        }
        eprintln!("pushed {reference} {digest}");
        image.pushed = Some(format!("{reference}@{digest}"));
    }
    Ok(())
}

/// Reads a pushed image index back from the registry and checks that it lists each platform
/// with the manifest digest the build made.
pub fn verify_platforms(
    reference: &str,
    digest: &str,
    platforms: &[crate::store::PlatformImage],
) -> Result<()> {
    let repository = reference.rsplit_once(':').map_or(reference, |(r, _)| r);
    let index = crate::release::registry::raw_manifest(&format!("{repository}@{digest}"))?;
    let listed: Vec<(String, String)> = index
        .manifests
        .into_iter()
        .map(|m| {
            let platform = m.platform.unwrap_or_default();
            (
                format!("{}/{}", platform.os, platform.architecture),
                m.digest,
            )
        })
        .collect();
    for p in platforms {
        if !listed.contains(&(p.platform.clone(), p.manifest.clone())) {
            anyhow::bail!(
                "the registry's index {reference}@{digest} does not list {} as {} (it lists {:?})",
                p.platform,
                p.manifest,
                listed
            );
        }
    }
    Ok(())
}

/// What a job sends to the printing thread.
enum Msg {
    Update(usize, Update),
    Finished(usize, BuildStream),
}

/// Runs every image of the plan at once and gathers the results. Only this thread prints;
/// a failing build does not stop the others, and Ctrl-C stops them all.
pub fn execute(sh: &Shell, plan: &BuildPlan, progress: Progress) -> Result<BuildReport> {
    interrupt::install();
    sh.create_dir(OUT_DIR)?;
    let _lock = lock_out_dirs(sh, plan)?;
    // What each tag names before the builds: a build that dies can then say whether it moved any.
    let all_tags: Vec<&str> = plan
        .images
        .iter()
        .flat_map(|i| i.tags.iter().map(String::as_str))
        .collect();
    let tags_before = inspect_tags(&all_tags);
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    let mut children: Vec<Option<Child>> = Vec::new();
    let mut logs = Vec::new();
    for (index, image) in plan.images.iter().enumerate() {
        // buildx writes a new one only when the build succeeds: an old one must not name an image.
        let _ = std::fs::remove_file(sh.current_dir().join(&image.metadata_file));
        // Its own child, not the runner's (crate::docker::run): the build's stderr is a stream
        // of progress events read line by line while it runs, and `engine::buildx` may run the
        // buildx plugin directly, without the `docker` front end the runner calls.
        let mut child = crate::engine::buildx()
            .args(&image.buildx_args()[1..])
            // buildx would otherwise run about a dozen git commands per build to describe the
            // context for provenance, most of a no-op build's time; the plan's OCI labels
            // already carry the revision and source.
            .env("BUILDX_GIT_INFO", "0")
            .current_dir(sh.current_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run `docker buildx build`")?;
        let stderr = child.stderr.take().context("no stderr from docker")?;
        let mut log = std::fs::File::create(sh.current_dir().join(&image.log_file))
            .with_context(|| format!("cannot write {}", image.log_file.display()))?;
        writeln!(log, "$ docker {}", image.buildx_args().join(" "))?;
        logs.push(log);
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut stream = BuildStream::default();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                for update in stream.feed(&line) {
                    let _ = tx.send(Msg::Update(index, update));
                }
            }
            let _ = tx.send(Msg::Finished(index, stream));
        });
        children.push(Some(child));
    }
    drop(tx);

    let mut display = Display::new(plan, progress);
    let mut results: Vec<Option<(BuildStream, Option<ExitStatus>, f64)>> =
        plan.images.iter().map(|_| None).collect();
    let mut killed = false;
    while results.iter().any(Option::is_none) {
        if interrupt::interrupted() && !killed {
            killed = true;
            for child in children.iter_mut().flatten() {
                let _ = child.kill();
            }
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Msg::Update(i, update)) => {
                let (Update::Line(line) | Update::Step { name: line, .. }) = &update;
                let _ = writeln!(logs[i], "{line}");
                display.update(i, &update);
            }
            Ok(Msg::Finished(i, stream)) => {
                let status = children[i].take().map(|mut c| c.wait()).transpose()?;
                let ok = status.map(|s| s.success()).unwrap_or(false);
                let seconds = start.elapsed().as_secs_f64();
                display.finish(i, ok, seconds);
                results[i] = Some((stream, status, seconds));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => display.tick(),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    display.clear();
    let wall_seconds = start.elapsed().as_secs_f64();
    let results: Vec<(BuildStream, Option<ExitStatus>, f64)> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| (BuildStream::default(), None, wall_seconds)))
        .collect();
    let ok = |status: &Option<ExitStatus>| status.is_some_and(|s| s.success());
    let built: Vec<String> = plan
        .images
        .iter()
        .zip(&results)
        .filter(|(_, r)| ok(&r.1))
        .map(|(i, _)| built_reference(sh, i))
        .collect();
    let built: Vec<&str> = built.iter().map(String::as_str).collect();
    let mut inspected = inspect_tags(&built).into_iter();
    let mut before = tags_before.into_iter();
    let images = plan
        .images
        .iter()
        .zip(results)
        .map(|(image, (stream, status, seconds))| {
            let before: Vec<Option<String>> = before
                .by_ref()
                .take(image.tags.len())
                .map(|t| t.map(|(id, _)| id))
                .collect();
            if ok(&status) {
                let found = inspected.next().flatten();
                return image_result(sh, image, &stream, None, seconds, found);
            }
            let tags: Vec<&str> = image.tags.iter().map(String::as_str).collect();
            let after: Vec<Option<String>> = inspect_tags(&tags)
                .into_iter()
                .map(|t| t.map(|(id, _)| id))
                .collect();
            let cause = format!(
                "{}; {}",
                stopped_cause(&stream, status, interrupt::interrupted()),
                tags_note(&image.tags, &before, &after)
            );
            image_result(sh, image, &stream, Some(cause), seconds, None)
        })
        .collect();
    Ok(BuildReport {
        version: plan.version.clone(),
        revision: plan.revision.clone(),
        wall_seconds,
        finished_at: Some(
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        ),
        interrupted: interrupt::interrupted(),
        image_store: crate::store::store().name().to_string(),
        builder: plan.images.first().and_then(|i| i.builder.clone()),
        images,
    })
}

/// Why a build ended without an image: the step that failed, or how its process ended when
/// it printed no error (a signal from outside, Ctrl-C here, a crash).
fn stopped_cause(stream: &BuildStream, status: Option<ExitStatus>, interrupted: bool) -> String {
    use std::os::unix::process::ExitStatusExt;
    if interrupted {
        return "stopped by Ctrl-C".into();
    }
    if let Some(signal) = status.and_then(|s| s.signal()) {
        return format!(
            "the builder process (docker buildx build) was killed by {}",
            signal_name(signal)
        );
    }
    stream.error_summary().unwrap_or_else(|| match status {
        Some(status) => format!(
            "the build stopped without a message (exit code {})",
            status.code().unwrap_or(-1)
        ),
        None => "the build stopped without a message".into(),
    })
}

/// The usual names of the signals that end a process; others by number.
fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        9 => "SIGKILL (sent by `kill -9` or the kernel's out-of-memory killer)",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// Whether a failed build moved any of its tags: each tag as it was before the build and now
/// (the image id, or None when the tag named nothing).
fn tags_note(tags: &[String], before: &[Option<String>], after: &[Option<String>]) -> String {
    let moved: Vec<String> = tags
        .iter()
        .zip(before.iter().zip(after))
        .filter(|(_, (b, a))| b != a)
        .map(|(tag, (_, a))| match a {
            Some(id) => format!("{tag} now names {}", short_id(id)),
            None => format!("{tag} is gone"),
        })
        .collect();
    if moved.is_empty() && before.len() == tags.len() && after.len() == tags.len() {
        let names: Vec<&str> = tags
            .iter()
            .map(|t| t.rsplit(':').next().unwrap_or(t))
            .collect();
        format!("the tags were left as they were ({})", names.join(", "))
    } else if moved.is_empty() {
        "the tags could not be read back to check them".into()
    } else {
        format!("tags moved: {}", moved.join(", "))
    }
}

/// One build at a time writes a folder of logs and metadata files. Their names are per service,
/// so a second build in the same checkout (another engine's, say) would remove this one's
/// metadata file or write its own there, and this build would then read the other engine's
/// image id as its own. The second waits, as cargo waits for its build directory, and says for
/// whom.
fn lock_out_dirs(sh: &Shell, plan: &BuildPlan) -> Result<Vec<crate::lock::FileLock>> {
    let mut dirs: Vec<std::path::PathBuf> = plan
        .images
        .iter()
        .filter_map(|i| i.metadata_file.parent().map(|d| sh.current_dir().join(d)))
        .collect();
    dirs.sort();
    dirs.dedup();
    let mut locks = Vec::new();
    for dir in dirs {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        locks.push(crate::lock::FileLock::wait_at(&dir.join(".lock"), |pid| {
            eprintln!(
                "waiting for another build of this checkout (pid {}) to finish: both write {}",
                crate::lock::pid_text(pid),
                dir.display()
            );
        })?);
    }
    Ok(locks)
}

/// What names the image a build made: its id from buildx's metadata file, else its first tag.
/// The id is exact where the tag is not: another build on the same engine (another checkout of
/// the project) may move the tag between this build's end and the look-up.
fn built_reference(sh: &Shell, image: &ImagePlan) -> String {
    std::fs::read_to_string(sh.current_dir().join(&image.metadata_file))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|m| {
            m["containerimage.config.digest"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| image.tags[0].clone())
}

/// The result of one image: built (then `found` is what its first tag names now) or failed
/// with `failure`, the cause.
fn image_result(
    sh: &Shell,
    image: &ImagePlan,
    stream: &BuildStream,
    failure: Option<String>,
    seconds: f64,
    found: Option<(String, u64)>,
) -> ImageResult {
    let (steps, cached_steps) = stream.counts();
    let mut result = ImageResult {
        platforms: vec![],
        service: image.service.clone(),
        image: image.image.clone(),
        tags: image.tags.clone(),
        id: None,
        seconds,
        size_bytes: None,
        budget_bytes: image.budget_bytes,
        ok: false,
        error: None,
        steps,
        cached_steps,
        cache_from: image.cache_from.clone(),
        cache_to: image.cache_to.clone(),
        pushed: None,
        slowest_steps: stream.slowest(3),
        log_file: image.log_file.clone(),
        last_lines: vec![],
        step_list: stream
            .instructions()
            .into_iter()
            .map(|(name, cached, seconds)| report::StepRecord {
                name,
                cached,
                seconds,
            })
            .collect(),
        inputs: None,
        layers: vec![],
    };
    if let Some(cause) = failure {
        result.error = Some(cause);
        result.last_lines = last_lines(sh, &image.log_file, 12);
        return result;
    }
    match found {
        Some((id, _)) if !image.platforms.is_empty() => {
            return platform_results(result, image, id);
        }
        Some((id, reported)) => {
            let size = match crate::store::unpacked_size(&id, reported) {
                Ok(size) => size,
                Err(err) => {
                    result.error = Some(format!("cannot measure the image's size: {err:#}"));
                    return result;
                }
            };
            result.id = Some(id);
            result.size_bytes = Some(size);
            if size > image.budget_bytes {
                result.error = Some(format!(
                    "image is {} MB, over its budget of {} MB",
                    report::mb(size),
                    report::mb(image.budget_bytes)
                ));
            } else {
                result.ok = true;
            }
        }
        None => {
            result.error = Some(format!(
                "built, but `docker image inspect {}` found no image{}",
                image.tags[0],
                match &image.builder {
                    Some(builder) => format!(
                        " on {}: builder {builder:?} loaded it into another engine, or (a \
                         remote BuildKit) into none, so it could not be inspected here",
                        crate::engine::endpoint()
                            .host
                            .as_deref()
                            .unwrap_or("the engine")
                    ),
                    None => String::new(),
                }
            ))
        }
    }
    result
}

/// The result of a multi-platform image: each platform's manifest and size, each measured
/// against the budget alone; the image's size is its biggest platform's.
fn platform_results(mut result: ImageResult, image: &ImagePlan, id: String) -> ImageResult {
    let found = match crate::store::platform_images(&id) {
        Ok(found) => found,
        Err(err) => {
            result.error = Some(format!("cannot measure the platforms' sizes: {err:#}"));
            return result;
        }
    };
    let missing: Vec<&str> = image
        .platforms
        .iter()
        .map(|p| p.docker())
        .filter(|p| !found.iter().any(|f| f.platform == *p))
        .collect();
    let over: Vec<String> = found
        .iter()
        .filter(|f| f.size_bytes > image.budget_bytes)
        .map(|f| format!("{} is {} MB", f.platform, report::mb(f.size_bytes)))
        .collect();
    result.id = Some(id);
    result.size_bytes = found.iter().map(|f| f.size_bytes).max();
    result.platforms = found;
    if !missing.is_empty() {
        result.error = Some(format!("the image holds no {}", missing.join(", ")));
    } else if !over.is_empty() {
        result.error = Some(format!(
            "{}, over the budget of {} MB",
            over.join(", "),
            report::mb(image.budget_bytes)
        ));
    } else {
        result.ok = true;
    }
    result
}

/// The id and size of each tag, in order: from the engine's API socket, else one `docker image
/// inspect` for all of them (a no-op build is short enough that a call per image shows), else one
/// call each to find which failed.
fn inspect_tags(tags: &[&str]) -> Vec<Option<(String, u64)>> {
    let format = "--format={{.Id}}\t{{.Size}}";
    let parse = |line: &str| {
        let (id, size) = line.split_once('\t')?;
        Some((id.to_string(), size.trim().parse().ok()?))
    };
    if tags.is_empty() {
        return vec![];
    }
    let answers: Option<Vec<Option<(String, u64)>>> = tags
        .iter()
        .map(|tag| crate::engine::api_image(tag))
        .collect();
    if let Some(answers) = answers {
        return answers;
    }
    if let Ok(out) = crate::docker::docker(["image", "inspect", format])
        .args(tags)
        .read()
    {
        let parsed: Vec<Option<(String, u64)>> = out.lines().map(parse).collect();
        if parsed.len() == tags.len() {
            return parsed;
        }
    }
    tags.iter()
        .map(|tag| {
            let out = crate::docker::docker(["image", "inspect", format, tag])
                .read()
                .ok()?;
            parse(&out)
        })
        .collect()
}

fn last_lines(sh: &Shell, path: &std::path::Path, n: usize) -> Vec<String> {
    let text = sh.read_file(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// One spinner line per name, names aligned, each with its elapsed time and a message: the live
/// view of every command that runs several services at once.
pub fn spinner_bars(names: &[String]) -> (MultiProgress, Vec<ProgressBar>) {
    let width = names.iter().map(String::len).max().unwrap_or(0);
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template(&format!(
        "{{spinner}} {{prefix:{width}}} {{elapsed:>4}} {{wide_msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bars = names
        .iter()
        .map(|name| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_prefix(name.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        })
        .collect();
    (multi, bars)
}

/// The live view: a bar per image on a terminal, plain lines elsewhere.
struct Display {
    services: Vec<String>,
    bars: Option<(MultiProgress, Vec<ProgressBar>)>,
    progress: Progress,
}

impl Display {
    fn new(plan: &BuildPlan, progress: Progress) -> Display {
        let services: Vec<String> = plan.images.iter().map(|i| i.service.clone()).collect();
        let bars = (progress == Progress::Auto && std::io::stderr().is_terminal()).then(|| {
            let (multi, bars) = spinner_bars(&services);
            bars.iter().for_each(|b| b.set_message("starting"));
            (multi, bars)
        });
        Display {
            services,
            bars,
            progress,
        }
    }

    fn update(&mut self, i: usize, update: &Update) {
        match (&self.bars, update, self.progress) {
            (Some((_, bars)), Update::Step { name, cached }, _) => {
                bars[i].set_message(format!("{}{name}", if *cached { "CACHED " } else { "" }));
            }
            (None, Update::Step { name, cached }, Progress::Auto) => {
                eprintln!(
                    "{}: {}{name}",
                    self.services[i],
                    if *cached { "CACHED " } else { "" }
                );
            }
            (None, Update::Step { name, cached }, Progress::Plain) => {
                eprintln!(
                    "{} | {}{name}",
                    self.services[i],
                    if *cached { "CACHED " } else { "" }
                );
            }
            (None, Update::Line(line), Progress::Plain) => {
                eprintln!("{} | {line}", self.services[i])
            }
            _ => {}
        }
    }

    fn finish(&mut self, i: usize, ok: bool, seconds: f64) {
        let text = format!("{} in {seconds:.1}s", if ok { "built" } else { "FAILED" });
        match &self.bars {
            Some((_, bars)) => bars[i].finish_with_message(text),
            None if self.progress != Progress::Quiet => eprintln!("{}: {text}", self.services[i]),
            None => {}
        }
    }

    fn tick(&self) {}

    fn clear(&self) {
        if let Some((multi, _)) = &self.bars {
            let _ = multi.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn a_killed_builder_is_named_with_its_signal() {
        let quiet = BuildStream::default();
        let killed = ExitStatus::from_raw(9);
        assert!(stopped_cause(&quiet, Some(killed), false)
            .starts_with("the builder process (docker buildx build) was killed by SIGKILL"));
        assert_eq!(
            stopped_cause(&quiet, Some(ExitStatus::from_raw(15)), false),
            "the builder process (docker buildx build) was killed by SIGTERM"
        );
        assert_eq!(
            stopped_cause(&quiet, Some(killed), true),
            "stopped by Ctrl-C"
        );
        // Exit code 1, nothing printed: the code is said.
        assert_eq!(
            stopped_cause(&quiet, Some(ExitStatus::from_raw(1 << 8)), false),
            "the build stopped without a message (exit code 1)"
        );
        assert_eq!(signal_name(64), "signal 64");
    }

    #[test]
    fn a_failed_build_says_whether_its_tags_moved() {
        let tags = ["todo-x:latest".to_string(), "todo-x:v1.0.0".to_string()];
        let old = Some("sha256:0123456789abcdef0123".to_string());
        let new = Some("sha256:fedcba9876543210fedc".to_string());
        assert_eq!(
            tags_note(&tags, &[old.clone(), None], &[old.clone(), None]),
            "the tags were left as they were (latest, v1.0.0)"
        );
        assert_eq!(
            tags_note(&tags, &[old.clone(), None], &[new, old]),
            "tags moved: todo-x:latest now names fedcba987654, todo-x:v1.0.0 now names 0123456789ab"
        );
        assert_eq!(
            tags_note(&tags, &[], &[]),
            "the tags could not be read back to check them"
        );
    }
}
