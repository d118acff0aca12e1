//! `cargo xtask bench --fresh-runner`: what a shared registry cache is worth to a CI runner that
//! starts empty. A second engine with an empty data root and the containerd image store, in a
//! network namespace of its own with a route out (the packages are downloaded as on a real
//! runner), and a real `docker-registry` on that namespace's loopback, where the engine's BuildKit
//! reaches it. In one run:
//!
//! 1. a cold build of both images with no cache at all (no layers, empty npm and pip cache mounts);
//! 2. the export of that build's cache to the registry (`--cache-to`, what the CI job that ran
//!    before would have left);
//! 3. the engine stopped, its data root removed and the engine started again in the same
//!    namespace (the registry stays): a runner as fresh as before step 1;
//! 4. the same cold build importing the registry cache (`--cache-from`).
//!
//! The local bases are copied in from the first engine before step 1, as a runner's bases would be
//! pulled from the team's registry: making them is the bases' own benchmark. The export comes from
//! this engine rather than the first because the first uses the classic image store, whose own
//! BuildKit cannot export a cache.

use std::process::Command;

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::second_engine::{Options, SecondEngine};

const DOC: &str = "docs/benchmarks.md";
const START: &str = "<!-- fresh-runner-bench:start -->";
const END: &str = "<!-- fresh-runner-bench:end -->";
const REGISTRY_PORT: u16 = 5000;

/// One measured build: wall time, steps cached and all steps over both images.
struct Measured {
    seconds: f64,
    cached: u64,
    steps: u64,
}

pub fn run(sh: &Shell, config_file: &std::path::Path, write: bool) -> Result<()> {
    crate::engine::ensure(sh)?;
    let root = sh.current_dir();
    let xtask = std::env::current_exe().context("cannot find the xtask binary")?;
    let plan = Command::new(&xtask)
        .arg("--config")
        .arg(config_file)
        .args(["build", "--print"])
        .current_dir(&root)
        .output()?;
    let plan: serde_json::Value =
        serde_json::from_slice(&plan.stdout).context("`build --print` printed no plan")?;
    let bases: Vec<String> = plan["bases"]["args"]
        .as_object()
        .map(|a| {
            a.values()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if plan["bases"]["mode"] != "local" || bases.is_empty() {
        bail!("the fresh-runner benchmark needs local bases: run `cargo xtask build` first");
    }
    for base in &bases {
        if crate::engine::api_image(base).flatten().is_none() {
            bail!("the first engine lacks the base {base}: run `cargo xtask build` first");
        }
    }
    let revision = crate::git::GitInfo::read(sh)?;

    eprintln!("starting a fresh engine (containerd image store, empty data root, own network)");
    let mut engine = SecondEngine::start_with(
        "bench",
        Options {
            containerd_store: true,
            online: true,
            ..Options::default()
        },
    );
    let registry = engine.start_registry(REGISTRY_PORT);
    let bases: Vec<&str> = bases.iter().map(String::as_str).collect();
    engine.load_from_first(&bases);
    let base_count = bases.len();
    let prefix = format!("{}/todo-cache", registry.address());

    let build = |extra: &[&str]| measure(&xtask, config_file, &root, &engine, extra);
    eprintln!("1/4 cold build, no cache");
    let (uncached, _) = build(&[])?;
    eprintln!("    {:.1} s", uncached.seconds);
    eprintln!("2/4 exporting the cache to the registry");
    let (exported, _) = build(&["--cache-to", &prefix])?;
    eprintln!("    {:.1} s", exported.seconds);
    eprintln!("3/4 a fresh engine again: stopped, data root removed, started, bases loaded");
    engine.restart_empty();
    engine.load_from_first(&bases);
    let images = engine.docker(&["images", "--quiet", "--all"]);
    let held = String::from_utf8_lossy(&images.stdout).lines().count();
    if !images.status.success() || held > base_count {
        bail!("the restarted engine holds {held} images where only the {base_count} bases belong");
    }
    let build = |extra: &[&str]| measure(&xtask, config_file, &root, &engine, extra);
    eprintln!("4/4 cold build, importing the registry cache");
    let (cached, _) = build(&["--cache-from", &prefix])?;
    eprintln!("    {:.1} s", cached.seconds);
    drop(registry);
    drop(engine);

    let text = render(&uncached, &exported, &cached, &revision.short());
    println!("{text}");
    if write {
        let old = sh
            .read_file(DOC)
            .unwrap_or_else(|_| "# Benchmarks\n".into());
        let block = format!("{START}\n{text}{END}");
        let new = match (old.find(START), old.find(END)) {
            (Some(a), Some(b)) if a < b => {
                format!("{}{block}{}", &old[..a], &old[b + END.len()..])
            }
            _ => format!("{}\n\n## A fresh CI runner\n\n{block}\n", old.trim_end()),
        };
        sh.write_file(DOC, new)?;
        eprintln!("wrote {DOC}");
    }
    Ok(())
}

/// One `build --json` on the fresh engine.
fn measure(
    xtask: &std::path::Path,
    config_file: &std::path::Path,
    root: &std::path::Path,
    engine: &SecondEngine,
    extra: &[&str],
) -> Result<(Measured, serde_json::Value)> {
    let out = Command::new(xtask)
        .arg("--config")
        .arg(config_file)
        .args(["build", "--json", "--progress", "quiet"])
        .args(extra)
        .current_dir(root)
        .env("DOCKER_HOST", engine.host())
        .env_remove("DOCKER_CONTEXT")
        .env_remove("TODO_CACHE")
        .env_remove("TODO_CACHE_TO")
        .output()?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "the build on the fresh engine printed no report: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if !out.status.success() {
        bail!(
            "the build on the fresh engine failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let images = report["images"].as_array().cloned().unwrap_or_default();
    let sum = |key: &str| images.iter().filter_map(|i| i[key].as_u64()).sum();
    Ok((
        Measured {
            seconds: report["wall_seconds"].as_f64().unwrap_or(f64::NAN),
            cached: sum("cached_steps"),
            steps: sum("steps"),
        },
        report,
    ))
}

fn render(uncached: &Measured, exported: &Measured, cached: &Measured, revision: &str) -> String {
    let ratio = cached.seconds / uncached.seconds;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let row = |name: &str, m: &Measured| {
        format!(
            "| {name} | {:.1} s | {} / {} |\n",
            m.seconds, m.cached, m.steps
        )
    };
    format!(
        "Measured {now} at revision {revision} by `cargo xtask bench --fresh-runner`, on a fresh \
         engine with the containerd image store (both images built at once).\n\n\
         | build | wall time | steps cached / all |\n|---|---|---|\n{}{}{}\n\
         Cached / uncached: **{ratio:.2}** (goal: at most 0.25){}.\n",
        row("cold, no cache", uncached),
        row(
            "cache export to the registry (after the cold build)",
            exported
        ),
        row("cold, importing the registry cache", cached),
        if ratio <= 0.25 { ", met" } else { ", NOT met" }
    )
}
