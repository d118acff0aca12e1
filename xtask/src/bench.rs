//! `cargo xtask bench`: cold, warm and no-op builds of both images by this tool, by
//! `docker buildx bake` and by two sequential `docker buildx build`s, all with the same tags,
//! labels, build arguments and secret, measured in one run; the medians go to
//! `docs/benchmarks.md`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

use crate::build::base_mode;
use crate::config::Config;
use crate::git::GitInfo;
use crate::plan::{self, BuildPlan};
use crate::{bases, engine};

const DOC: &str = "docs/benchmarks.md";
const OUT_DIR: &str = "target/xtask/bench";
const START: &str = "<!-- build-bench:start -->";
const END: &str = "<!-- build-bench:end -->";

#[derive(Debug, Args)]
pub struct BenchCmd {
    /// Rounds of the no-op scenario.
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Rounds of the warm scenario.
    #[arg(long, default_value_t = 3)]
    warm_runs: usize,
    /// Rounds of the cold scenario (each builds both images from scratch three times).
    #[arg(long, default_value_t = 1)]
    cold_runs: usize,
    /// Print the figures without rewriting docs/benchmarks.md.
    #[arg(long)]
    no_write: bool,
    /// Instead: a cold build of both images on a fresh engine (an empty CI runner) without and
    /// with a registry cache; see `bench_runner`.
    #[arg(long)]
    fresh_runner: bool,
    /// Instead: both platforms against the host's alone (`--rounds` rounds), and cross against
    /// fully emulated arm64 builds of each image, on a second engine with the containerd image
    /// store; see `bench_platforms`.
    #[arg(long, conflicts_with = "fresh_runner")]
    platforms: bool,
    /// Rounds of `--platforms`' comparison of both platforms with the host's alone.
    #[arg(long, default_value_t = 3, requires = "platforms")]
    rounds: usize,
    /// Minutes after which `--platforms` stops an emulated build and reports it unfinished.
    #[arg(long, default_value_t = 30, requires = "platforms")]
    emulated_limit: u64,
    /// `--platforms` without the cross-against-emulated builds (the rounds alone).
    #[arg(long, requires = "platforms")]
    no_emulated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tool {
    Xtask,
    Bake,
    Sequential,
}

const TOOLS: [Tool; 3] = [Tool::Xtask, Tool::Bake, Tool::Sequential];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scenario {
    /// `--no-cache`: every layer rebuilt (BuildKit's package cache mounts stay warm for all).
    Cold,
    /// A source file of each image changed: the layers after its COPY rebuild.
    Warm,
    /// Nothing changed.
    NoOp,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Cold => "cold (--no-cache)",
            Scenario::Warm => "warm (one source file changed per image)",
            Scenario::NoOp => "no-op (nothing changed)",
        }
    }
}

/// The median of the samples; the mean of the middle two for an even count.
pub fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

impl BenchCmd {
    pub fn run(self, sh: &Shell, config_file: &std::path::Path) -> Result<()> {
        if self.fresh_runner {
            return crate::bench_runner::run(sh, config_file, !self.no_write);
        }
        if self.platforms {
            let config = Config::load(config_file)?;
            return crate::bench_platforms::run(
                sh,
                &config,
                self.rounds,
                (!self.no_emulated)
                    .then(|| std::time::Duration::from_secs(self.emulated_limit * 60)),
                !self.no_write,
            );
        }
        if self.runs == 0 {
            bail!("--runs must be at least 1");
        }
        engine::ensure(sh)?;
        // The benchmark builds a checkout of HEAD, not the working tree: edits in progress
        // would otherwise turn a no-op round into a real build. Content-addressed layer caching
        // makes the checkout's builds share the working tree's cache.
        let tree = sh.current_dir().join("target/xtask/bench/tree");
        check_out_head(sh, &tree)?;
        let dir = sh.push_dir(&tree);
        let config = &Config::load(&tree.join(crate::config::DEFAULT_FILE))?;
        let images: Vec<_> = config.images.iter().collect();
        let resolved = bases::resolve(sh, config, &images, base_mode(None, config)?)?;
        let git = GitInfo::read(sh)?;
        let inputs = plan::PlanInputs::now(&config.project.version, &git, &resolved.args, OUT_DIR)
            .with_context_revisions(sh, &images)?
            .with_build_seed(sh)?;
        sh.create_dir(OUT_DIR)?;
        let plan = plan::build_plan(config, &images, &inputs);
        let mut cold_plan = plan.clone();
        cold_plan.images.iter_mut().for_each(|i| i.no_cache = true);
        let bake = write_bake_file(sh, &plan, "bake.json")?;
        let cold_bake = write_bake_file(sh, &cold_plan, "bake-cold.json")?;

        // One build first, so that every scenario starts from the same, fully built state.
        run_tool(sh, Tool::Xtask, &plan, &bake, false)?;
        let mut rows = Vec::new();
        for (scenario, rounds) in [
            (Scenario::NoOp, self.runs),
            (Scenario::Warm, self.warm_runs),
            (Scenario::Cold, self.cold_runs),
        ] {
            if rounds == 0 {
                continue;
            }
            let mut samples: Vec<Vec<f64>> = vec![vec![]; TOOLS.len()];
            for round in 0..rounds {
                // The order rotates each round, so no tool always runs first or last.
                for k in 0..TOOLS.len() {
                    let t = (round + k) % TOOLS.len();
                    if scenario == Scenario::Warm {
                        touch_sources(sh, config, round, t)?;
                    }
                    let (p, b) = if scenario == Scenario::Cold {
                        (&cold_plan, &cold_bake)
                    } else {
                        (&plan, &bake)
                    };
                    let seconds = run_tool(sh, TOOLS[t], p, b, scenario == Scenario::Cold)?;
                    eprintln!(
                        "{:<42} {:<11} {seconds:7.2}s",
                        scenario.name(),
                        label(TOOLS[t])
                    );
                    samples[t].push(seconds);
                }
            }
            rows.push((
                scenario,
                samples.iter().map(|s| median(s)).collect::<Vec<_>>(),
                rounds,
            ));
        }
        for image in &config.images {
            if let Some(touch) = &image.bench_touch {
                let _ = sh.remove_path(image.context.join(touch));
            }
        }
        let sizes = sizes(sh, &plan);
        let text = render(&rows, &sizes, &git, resolved.mode);
        println!("{text}");
        drop(dir);
        remove_checkout(sh, &tree);
        if !self.no_write {
            write_doc(sh, &text)?;
            eprintln!("wrote {DOC}");
        }
        Ok(())
    }
}

/// Checks out HEAD into `tree` (a detached git worktree, replacing one a killed run left).
pub fn check_out_head(sh: &Shell, tree: &std::path::Path) -> Result<()> {
    remove_checkout(sh, tree);
    cmd!(sh, "git worktree add --detach --force {tree} HEAD")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .context("cannot check out HEAD for the benchmark")
}

/// Removes a checkout made by [`check_out_head`], if there is one.
pub fn remove_checkout(sh: &Shell, tree: &std::path::Path) {
    let _ = cmd!(sh, "git worktree remove --force {tree}")
        .quiet()
        .ignore_stderr()
        .run();
    let _ = sh.remove_path(tree);
}

fn label(tool: Tool) -> &'static str {
    match tool {
        Tool::Xtask => "xtask",
        Tool::Bake => "bake",
        Tool::Sequential => "sequential",
    }
}

/// Writes a new value into each image's bench file, so the next build sees a changed source.
fn touch_sources(sh: &Shell, config: &Config, round: usize, tool: usize) -> Result<()> {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_nanos();
    for image in &config.images {
        let touch = image.bench_touch.as_ref().with_context(|| {
            format!(
                "service `{}` has no bench_touch in project.toml: the warm scenario needs one",
                image.service
            )
        })?;
        sh.write_file(
            image.context.join(touch),
            format!("bench round {round} tool {tool} at {nanos}\n"),
        )?;
    }
    Ok(())
}

/// The bake definition that builds exactly what the plan builds.
fn write_bake_file(sh: &Shell, plan: &BuildPlan, name: &str) -> Result<PathBuf> {
    let targets: serde_json::Map<String, serde_json::Value> = plan
        .images
        .iter()
        .map(|i| {
            let mut def = serde_json::json!({
                "context": i.context,
                "dockerfile": i.dockerfile.strip_prefix(&i.context).unwrap_or(&i.dockerfile),
                "tags": i.tags,
                "labels": i.labels,
                "args": i.build_args,
                "output": ["type=docker"],
                "no-cache": i.no_cache,
            });
            let secrets: Vec<String> = i
                .ca_secret
                .iter()
                .map(|ca| format!("id=ca,src={}", ca.display()))
                .chain(
                    i.seed_secret
                        .iter()
                        .map(|seed| format!("id=build_seed,src={}", seed.display())),
                )
                .collect();
            if !secrets.is_empty() {
                def["secret"] = serde_json::json!(secrets);
            }
            (i.service.clone(), def)
        })
        .collect();
    let names: Vec<&String> = targets.keys().collect();
    let bake = serde_json::json!({"group": {"default": {"targets": names}}, "target": targets});
    let path = PathBuf::from(OUT_DIR).join(name);
    sh.write_file(&path, serde_json::to_string_pretty(&bake)?)?;
    Ok(path)
}

/// Runs one tool once and returns its wall time in seconds; a failed build fails the bench.
fn run_tool(
    sh: &Shell,
    tool: Tool,
    plan: &BuildPlan,
    bake: &PathBuf,
    no_cache: bool,
) -> Result<f64> {
    let start = Instant::now();
    match tool {
        Tool::Xtask => {
            let exe = std::env::current_exe()?;
            let mut command = Command::new(exe);
            command
                .args(["build", "--progress", "quiet"])
                .current_dir(sh.current_dir());
            if no_cache {
                command.arg("--no-cache");
            }
            quiet(command, "cargo xtask build")?;
        }
        Tool::Bake => {
            cmd!(sh, "docker buildx bake --progress=quiet --file {bake}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()
                .context("docker buildx bake failed")?;
        }
        Tool::Sequential => {
            for image in &plan.images {
                let args: Vec<String> = image
                    .buildx_args()
                    .into_iter()
                    .map(|a| {
                        if a == "--progress=rawjson" {
                            "--progress=quiet".into()
                        } else {
                            a
                        }
                    })
                    .collect();
                let mut command = Command::new("docker");
                command.args(args).current_dir(sh.current_dir());
                quiet(command, "docker buildx build")?;
            }
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

fn quiet(mut command: Command, what: &str) -> Result<()> {
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("{what} failed during the benchmark: run it alone to see why");
    }
    Ok(())
}

fn sizes(sh: &Shell, plan: &BuildPlan) -> Vec<(String, u64, u64)> {
    plan.images
        .iter()
        .filter_map(|i| {
            let tag = &i.tags[0];
            let format = "--format={{.Size}}";
            let size = cmd!(sh, "docker image inspect {format} {tag}")
                .quiet()
                .read()
                .ok()?
                .parse()
                .ok()?;
            Some((i.image.clone(), size, i.budget_bytes))
        })
        .collect()
}

fn render(
    rows: &[(Scenario, Vec<f64>, usize)],
    sizes: &[(String, u64, u64)],
    git: &GitInfo,
    mode: &str,
) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Measured {} at revision {} on {} bases, on this project's usual machine (2 cores, 24 GiB), \
         by `cargo xtask bench`. Wall time of building both images; medians of the rounds shown.\n\n",
        humantime::format_rfc3339_seconds(SystemTime::now()),
        git.short(),
        mode
    ));
    out.push_str(
        "| scenario | rounds | xtask | bake | sequential | xtask / bake | xtask / sequential |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|\n");
    for (scenario, m, rounds) in rows {
        out.push_str(&format!(
            "| {} | {rounds} | {:.2} s | {:.2} s | {:.2} s | {:.2} | {:.2} |\n",
            scenario.name(),
            m[0],
            m[1],
            m[2],
            m[0] / m[1],
            m[0] / m[2]
        ));
    }
    out.push_str("\n| image | size | budget |\n|---|---|---|\n");
    for (image, size, budget) in sizes {
        out.push_str(&format!(
            "| {image} | {:.1} MB | < {:.0} MB |\n",
            *size as f64 / 1e6,
            *budget as f64 / 1e6
        ));
    }
    out
}

/// Replaces the build section of docs/benchmarks.md, keeping every other section.
fn write_doc(sh: &Shell, section: &str) -> Result<()> {
    let old = sh
        .read_file(DOC)
        .unwrap_or_else(|_| "# Benchmarks\n".to_string());
    let block = format!("{START}\n{section}{END}");
    let new = match (old.find(START), old.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{block}{}", &old[..a], &old[b + END.len()..]),
        _ => format!("{}\n## Builds\n\n{block}\n", old.trim_end()),
    };
    sh.create_dir("docs")?;
    sh.write_file(DOC, new)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
