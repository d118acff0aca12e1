//! `cargo xtask bench --platforms`: what the second platform costs, and what building it cross
//! rather than emulated saves. On a second engine with the containerd image store (the shared
//! engine's classic store holds one platform per image), holding the local bases of both
//! platforms copied from the first engine, in one run:
//!
//! 1. a warm-up build of both images for both platforms, so that every measured build starts with
//!    the same warm npm and pip cache mounts;
//! 2. per image, `build --no-cache --platform linux/arm64` as the Dockerfiles are (cross: the build
//!    stages on the build platform), then the same with the Dockerfiles' `--platform=$BUILDPLATFORM`
//!    taken out, so that every build step runs on arm64 under QEMU's user emulation (the usual
//!    way). An emulated build still running after the limit is stopped and reported as such;
//! 3. rounds of `build --no-cache` for the host's platform alone and for both platforms, the order
//!    swapped every round so that neither always runs first on a machine whose load moves.
//!
//! Every build is the xtask's own, on a checkout of HEAD (so that edits in progress are not
//! measured and the images carry the commit's tags); the emulated variant edits that checkout's
//! Dockerfiles only.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::bench::median;
use crate::config::Config;
use crate::platform::{Emulation, Platform};
use crate::second_engine::{Options, SecondEngine};

const DOC: &str = "docs/benchmarks.md";
/// The rounds' block and the cross-against-emulated block of the doc: each is rewritten only by
/// a run that measured it.
const ROUNDS_BLOCK: (&str, &str) = (
    "<!-- platforms-bench:start -->",
    "<!-- platforms-bench:end -->",
);
const EMULATED_BLOCK: (&str, &str) = (
    "<!-- emulated-bench:start -->",
    "<!-- emulated-bench:end -->",
);
const TREE: &str = "target/xtask/bench/platforms-tree";
const BOTH: &str = "linux/amd64,linux/arm64";
/// What the Dockerfiles say to run a stage on the build platform; the emulated variant drops it.
const CROSS_MARK: &str = "--platform=$BUILDPLATFORM ";

/// One build's outcome: its wall time, or how long it ran before the limit stopped it.
#[derive(Debug, Clone, Copy)]
enum Timed {
    Done(f64),
    Stopped(f64),
}

pub fn run(
    sh: &Shell,
    config: &Config,
    rounds: usize,
    emulated_limit: Option<Duration>,
    write: bool,
) -> Result<()> {
    if rounds == 0 && emulated_limit.is_none() {
        bail!("nothing to measure: --rounds 0 and --no-emulated");
    }
    crate::engine::ensure(sh)?;
    let root = sh.current_dir();
    let host = Platform::host();
    let other = Platform::ALL
        .into_iter()
        .find(|p| *p != host)
        .context("no second platform")?;
    // Both platforms' local bases must be on the first engine: the foreign ones take about 20
    // minutes under emulation, which is the bases' own figure, not this benchmark's.
    let mut references = Vec::new();
    for platform in [host, other] {
        let recipe = crate::bases::recipe_hash_for(config, &root, platform)?;
        let current = crate::bases::current(&root, &recipe, platform)?.with_context(|| {
            format!(
                "no local bases for {} on this engine: make them first with `cargo xtask bases \
                 --refresh --platform {}`",
                platform.docker(),
                platform.docker()
            )
        })?;
        for base in crate::bases::local_bases(&current.identity, false)? {
            references.push(base.reference);
        }
    }

    // The checkout of HEAD that every build runs in.
    let tree = root.join(TREE);
    crate::bench::check_out_head(sh, &tree)?;
    let revision = crate::git::GitInfo::read(sh)?.short();
    let result = measure_all(sh, config, &tree, &references, rounds, emulated_limit, host);
    crate::bench::remove_checkout(sh, &tree);
    let (pairs, cross, emulated) = result?;

    let mut blocks = Vec::new();
    if !pairs.is_empty() {
        blocks.push((ROUNDS_BLOCK, render_rounds(&pairs, &revision, host)));
    }
    if let Some(limit) = emulated_limit {
        blocks.push((
            EMULATED_BLOCK,
            render_emulated(&cross, &emulated, limit, &revision),
        ));
    }
    for (_, text) in &blocks {
        println!("{text}");
    }
    if write {
        let mut doc = sh
            .read_file(DOC)
            .unwrap_or_else(|_| "# Benchmarks\n".into());
        for ((start, end), text) in &blocks {
            let block = format!("{start}\n{text}{end}");
            doc = match (doc.find(start), doc.find(end)) {
                (Some(a), Some(b)) if a < b => {
                    format!("{}{block}{}", &doc[..a], &doc[b + end.len()..])
                }
                _ => format!(
                    "{}\n\n## Both platforms, cross and emulated\n\n{block}\n",
                    doc.trim_end()
                ),
            };
        }
        sh.write_file(DOC, doc)?;
        eprintln!("wrote {DOC}");
    }
    Ok(())
}

/// A round's pair: (host alone, both platforms, the host's build ran first).
type Pair = (f64, f64, bool);
/// Per image: (service, seconds).
type PerImage = Vec<(String, Timed)>;

fn measure_all(
    sh: &Shell,
    config: &Config,
    tree: &Path,
    references: &[String],
    rounds: usize,
    emulated_limit: Option<Duration>,
    host: Platform,
) -> Result<(Vec<Pair>, PerImage, PerImage)> {
    eprintln!("starting a second engine (containerd image store, own network)");
    let engine = SecondEngine::start_with(
        "platforms",
        Options {
            containerd_store: true,
            online: true,
            ..Options::default()
        },
    );
    let refs: Vec<&str> = references.iter().map(String::as_str).collect();
    engine.load_from_first(&refs);
    // The cross builds run nothing foreign; the emulated ones run every step on arm64.
    let _emulation = Emulation::ensure(sh, Platform::Arm64)?;
    let xtask = std::env::current_exe().context("cannot find the xtask binary")?;
    let build = |args: &[&str], limit: Option<Duration>| -> Result<Timed> {
        let mut command = Command::new(&xtask);
        command
            .args(["build", "--bases", "local", "--progress", "quiet"])
            .args(args)
            .current_dir(tree)
            .env("DOCKER_HOST", engine.host())
            .env_remove("DOCKER_CONTEXT")
            .env_remove("TODO_CACHE")
            .env_remove("TODO_CACHE_TO")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        timed(command, limit, &args.join(" "))
    };

    // One image for linux/arm64 alone, from scratch: the cross and the emulated builds.
    let arm64_alone = |service: &str, limit: Option<Duration>| {
        let args = ["--no-cache", "--platform", "linux/arm64", "--only", service];
        build(&args, limit)
    };

    eprintln!("warm-up: both images for {BOTH}");
    build(&["--platform", BOTH], None)?;
    let mut cross = Vec::new();
    let mut emulated = Vec::new();
    if let Some(limit) = emulated_limit {
        for image in &config.images {
            let seconds = arm64_alone(&image.service, None)?;
            eprintln!(
                "cross    linux/arm64 {:<10} {}",
                image.service,
                describe(seconds)
            );
            cross.push((image.service.clone(), seconds));
        }
        // The emulated variant: the same Dockerfiles without the marks that run the build stages on
        // the build platform. The rounds below build the Dockerfiles as they are again.
        let mut originals = Vec::new();
        for image in &config.images {
            // Only the checkout's copy is edited: a Dockerfile named by an absolute path lies
            // outside it.
            if image.dockerfile.is_absolute() {
                bail!(
                    "{}'s dockerfile {} is an absolute path: the emulated variant edits the \
                     checkout's copy, so name it relative to the repository",
                    image.service,
                    image.dockerfile.display()
                );
            }
            let path = tree.join(&image.dockerfile);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            std::fs::write(&path, text.replace(CROSS_MARK, ""))?;
            originals.push((path, text));
        }
        for image in &config.images {
            let seconds = arm64_alone(&image.service, Some(limit))?;
            eprintln!(
                "emulated linux/arm64 {:<10} {}",
                image.service,
                describe(seconds)
            );
            emulated.push((image.service.clone(), seconds));
        }
        for (path, text) in originals {
            std::fs::write(path, text)?;
        }
    }
    let mut pairs = Vec::new();
    for round in 0..rounds {
        let host_first = round % 2 == 0;
        let mut host_alone = 0.0;
        let mut both = 0.0;
        for step in 0..2 {
            let alone = (step == 0) == host_first;
            let args: &[&str] = if alone {
                &["--no-cache"]
            } else {
                &["--no-cache", "--platform", BOTH]
            };
            // A build that fails (a mirror that does not answer for a moment) is run once more
            // rather than losing the rounds before it; the line says so.
            let outcome = match build(args, None) {
                Ok(outcome) => outcome,
                Err(err) => {
                    eprintln!("round {}: failed, running it again: {err:#}", round + 1);
                    build(args, None)?
                }
            };
            let Timed::Done(seconds) = outcome else {
                unreachable!("no limit")
            };
            eprintln!(
                "round {}: {:<28} {seconds:7.1} s (load {})",
                round + 1,
                if alone { host.docker() } else { BOTH },
                load()
            );
            if alone {
                host_alone = seconds;
            } else {
                both = seconds;
            }
        }
        pairs.push((host_alone, both, host_first));
    }

    drop(engine);
    Ok((pairs, cross, emulated))
}

/// Runs one build in a process group of its own; past the limit, the group gets SIGINT (what
/// Ctrl-C sends, so that the build stops its builder) and the build is reported as stopped.
fn timed(mut command: Command, limit: Option<Duration>, what: &str) -> Result<Timed> {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
    let start = Instant::now();
    let mut child = command.spawn().context("cannot run the xtask")?;
    let mut stderr = child.stderr.take().context("no stderr")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let mut stopped = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if !stopped && limit.is_some_and(|l| start.elapsed() > l) {
            stopped = true;
            let _ = Command::new("kill")
                .args(["-INT", "--", &format!("-{}", child.id())])
                .status();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let seconds = start.elapsed().as_secs_f64();
    let log = reader.join().unwrap_or_default();
    if stopped {
        return Ok(Timed::Stopped(seconds));
    }
    if !status.success() {
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "`build {what}` failed during the benchmark:\n{}",
            tail.join("\n")
        );
    }
    Ok(Timed::Done(seconds))
}

/// The one-minute load average, as the figures' context.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn describe(t: Timed) -> String {
    match t {
        Timed::Done(s) => format!("{s:.1} s"),
        Timed::Stopped(s) => format!("stopped after {s:.0} s (the limit)"),
    }
}

fn render_rounds(pairs: &[Pair], revision: &str, host: Platform) -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let mut out = format!(
        "Measured {now} at revision {revision} by `cargo xtask bench --platforms` (load average \
         at the end: {}), on a second engine with the containerd image store holding both \
         platforms' local bases; every build is `cargo xtask build --no-cache --bases local` of \
         both images at once (the npm and pip cache mounts warm, alike for all).\n\n\
         | round | order | {} alone | both platforms | both / host |\n|---|---|---|---|---|\n",
        load(),
        host.docker()
    );
    for (i, (alone, both, host_first)) in pairs.iter().enumerate() {
        out.push_str(&format!(
            "| {} | {} | {alone:.1} s | {both:.1} s | {:.2} |\n",
            i + 1,
            if *host_first {
                "host first"
            } else {
                "both first"
            },
            both / alone
        ));
    }
    let alone: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let both: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let ratios: Vec<f64> = pairs.iter().map(|p| p.1 / p.0).collect();
    let ratio = median(&ratios);
    out.push_str(&format!(
        "\nMedians: {} alone {:.1} s, both platforms {:.1} s; median of the rounds' ratios \
         **{ratio:.2}** (goal: at most 1.5){}.\n\n",
        host.docker(),
        median(&alone),
        median(&both),
        if ratio <= 1.5 { ", met" } else { ", NOT met" }
    ));
    out
}

fn render_emulated(
    cross: &PerImage,
    emulated: &PerImage,
    limit: Duration,
    revision: &str,
) -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let mut out = String::new();
    out.push_str(&format!(
        "Measured {now} at revision {revision} by `cargo xtask bench --platforms` (load average \
         at the end: {}). **Cross against emulated**, one image at a time for linux/arm64 alone (`build --no-cache \
         --platform linux/arm64 --only SERVICE`): cross as the Dockerfiles are, emulated with \
         their `{}` taken out so that every step runs under QEMU (stopped after {} min):\n\n\
         | image | cross | emulated | emulated / cross |\n|---|---|---|---|\n",
        load(),
        CROSS_MARK.trim_end(),
        limit.as_secs() / 60
    ));
    for (service, c) in cross {
        let e = emulated.iter().find(|(s, _)| s == service).map(|(_, t)| *t);
        let (Timed::Done(c) | Timed::Stopped(c)) = *c;
        let (emulated_text, ratio) = match e {
            Some(Timed::Done(e)) => (format!("{e:.1} s"), format!("{:.1}", e / c)),
            Some(Timed::Stopped(e)) => (
                format!("did not finish in {:.0} s", e),
                format!("more than {:.1}", e / c),
            ),
            None => ("not run".into(), "-".into()),
        };
        out.push_str(&format!(
            "| {service} | {c:.1} s | {emulated_text} | {ratio} |\n"
        ));
    }
    out
}
