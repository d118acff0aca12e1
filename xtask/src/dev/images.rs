//! The images the stacks run: the development images (`todo-*:dev`, built from each
//! `Dockerfile.dev` by the same engine as `cargo xtask build`), what in the sources makes them
//! stale, and the production images `up` needs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::bases;
use crate::build::{self, Progress};
use crate::config::{BaseMode, Config, Image};
use crate::docker::docker;
use crate::git::GitInfo;
use crate::interrupt;
use crate::plan::{self, BuildPlan};

/// Where the dev builds keep their logs (the production builds use `build::OUT_DIR`).
pub const OUT_DIR: &str = "target/xtask/dev";

/// The dev tag of an image.
pub fn dev_tag(image: &Image) -> String {
    format!("{}:dev", image.image)
}

/// The Dockerfile.dev of an image, or the error that says how to declare it.
pub fn dev_dockerfile(image: &Image) -> Result<&Path> {
    image.dev_dockerfile.as_deref().with_context(|| {
        format!(
            "service `{}` has no dev_dockerfile in project.toml: add `dev_dockerfile = \"{}/Dockerfile.dev\"` to its [[image]] table",
            image.service,
            image.context.display()
        )
    })
}

/// The plan of the dev images: the production plan of the same images (labels, bases, proxy CA,
/// log files), with each Dockerfile.dev, the single tag `:dev`, and only the build arguments that
/// the Dockerfile.dev declares (it uses the BUILD bases only: it needs a shell and the toolchain).
pub fn dev_plan(
    config: &Config,
    images: &[&Image],
    inputs: &plan::PlanInputs,
    root: &Path,
) -> Result<BuildPlan> {
    let mut plan = plan::build_plan(config, images, inputs);
    for (planned, image) in plan.images.iter_mut().zip(images) {
        let dockerfile = dev_dockerfile(image)?;
        let text = std::fs::read_to_string(root.join(dockerfile))
            .with_context(|| format!("cannot read {}", dockerfile.display()))?;
        let declared = declared_args(&text);
        planned.dockerfile = dockerfile.to_path_buf();
        planned.tags = vec![dev_tag(image)];
        planned.build_args.retain(|arg, _| declared.contains(arg));
        // The size budgets are the production images'; a dev image holds the whole toolchain.
        planned.budget_bytes = u64::MAX;
    }
    Ok(plan)
}

/// Builds the dev images of `images` at once, with `build`'s live progress. Returns the services
/// whose build failed, each with its error and last lines; an interrupted build is an error.
pub fn build_dev(
    sh: &Shell,
    config: &Config,
    images: &[&Image],
    mode: BaseMode,
    progress: Progress,
) -> Result<Vec<(String, String)>> {
    let resolved = bases::resolve(sh, config, images, mode)?;
    let git = GitInfo::read(sh)?;
    let inputs =
        crate::plan::PlanInputs::now(&config.project.version, &git, &resolved.args, OUT_DIR);
    let plan = dev_plan(config, images, &inputs, &sh.current_dir())?;
    sh.create_dir(OUT_DIR)?;
    let report = build::execute(sh, &plan, progress)?;
    if report.interrupted {
        return Err(interrupt::Interrupted.into());
    }
    Ok(report
        .images
        .iter()
        .filter(|i| !i.ok)
        .map(|i| {
            let mut text = i.error.clone().unwrap_or_else(|| "failed".into());
            for line in &i.last_lines {
                text.push_str(&format!("\n  | {line}"));
            }
            text.push_str(&format!("\n  full log: {}", i.log_file.display()));
            (i.service.clone(), text)
        })
        .collect())
}

/// Builds the production images that are missing (`up` runs `:latest`), with `cargo xtask build`
/// itself, so that tags, labels, budgets and the history are the same as a build by hand.
pub fn ensure_prod(
    sh: &Shell,
    config: &Config,
    images: &[&Image],
    bases: Option<BaseMode>,
) -> Result<()> {
    let missing: Vec<&str> = images
        .iter()
        .filter(|i| {
            docker(["image", "inspect", &format!("{}:latest", i.image)])
                .read()
                .is_err()
        })
        .map(|i| i.service.as_str())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "building the missing production image{} of {}",
        if missing.len() == 1 { "" } else { "s" },
        missing.join(" and ")
    );
    build::BuildCmd {
        only: missing.iter().map(|s| s.to_string()).collect(),
        bases,
        ..Default::default()
    }
    .run(sh, config)
}

/// The build arguments a Dockerfile declares (`ARG NAME` or `ARG NAME=default`).
pub fn declared_args(text: &str) -> BTreeSet<String> {
    instructions(text)
        .into_iter()
        .filter(|(_, keyword, _)| keyword == "ARG")
        .filter_map(|(_, _, rest)| {
            let name = rest.split(['=', ' ']).next()?.trim();
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// The sources of the build context that a Dockerfile's COPY and ADD instructions take in: a
/// change to one of them changes the image. Copies from another stage (`--from`) and heredocs
/// take nothing from the context.
pub fn copy_sources(text: &str) -> Vec<String> {
    let mut sources = Vec::new();
    for (_, keyword, rest) in instructions(text) {
        if keyword != "COPY" && keyword != "ADD" {
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.iter().any(|w| w.starts_with("--from")) || rest.contains("<<") {
            continue;
        }
        let args: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
        if let Some((_, srcs)) = args.split_last() {
            for src in srcs {
                let src = src.trim_matches(|c| c == '"' || c == '[' || c == ']' || c == ',');
                if !src.is_empty() && !sources.iter().any(|s| s == src) {
                    sources.push(src.to_string());
                }
            }
        }
    }
    sources
}

/// The instructions of a Dockerfile: (1-based line, upper-case keyword, the rest), with
/// continuation lines joined, comments dropped and heredoc bodies skipped.
pub fn instructions(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut joined = trimmed.to_string();
        while joined.ends_with('\\') {
            joined.pop();
            match lines.next() {
                Some((_, next)) if next.trim_start().starts_with('#') => joined.push(' '),
                Some((_, next)) => {
                    joined.push(' ');
                    joined.push_str(next.trim());
                }
                None => break,
            }
        }
        let (keyword, rest) = joined
            .split_once(char::is_whitespace)
            .unwrap_or((joined.as_str(), ""));
        // A heredoc (`<<EOF`, `<<'EOF'`, `<<-"EOF"`) runs until a line holding only its word.
        if let Some(at) = rest.find("<<") {
            let word: String = rest[at + 2..]
                .trim_start_matches('-')
                .trim_start_matches(['\'', '"'])
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !word.is_empty() {
                for (_, body) in lines.by_ref() {
                    if body.trim() == word {
                        break;
                    }
                }
            }
        }
        out.push((
            index + 1,
            keyword.to_ascii_uppercase(),
            rest.trim().to_string(),
        ));
    }
    out
}

/// The files (relative to the project root) whose change makes a service's dev image stale: its
/// Dockerfile.dev and everything that file copies from the build context.
pub fn rebuild_inputs(root: &Path, image: &Image) -> Result<Vec<PathBuf>> {
    let dockerfile = dev_dockerfile(image)?;
    let text = std::fs::read_to_string(root.join(dockerfile))
        .with_context(|| format!("cannot read {}", dockerfile.display()))?;
    let mut inputs = vec![dockerfile.to_path_buf()];
    for source in copy_sources(&text) {
        let path = image.context.join(source.trim_start_matches("./"));
        if source.contains('*') {
            bail!(
                "{}: COPY {source} uses a wildcard, which `dev` cannot watch: name the files",
                dockerfile.display()
            );
        }
        inputs.push(path);
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_FILE;

    const DOCKERFILE: &str = r#"# a comment
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG WATCH_VERSION
COPY requirements.txt \
     constraints.txt /tmp/
COPY --chown=1001:1001 ["package.json", "package-lock.json", "./"]
COPY --from=builder /opt/venv /opt/venv
COPY <<'EOF' /opt/dev/server.py
COPY not-an-instruction /x
ARG NOT_AN_ARG
EOF
run echo done
"#;

    #[test]
    fn instructions_join_continuations_and_skip_heredocs() {
        let keywords: Vec<(usize, String)> = instructions(DOCKERFILE)
            .into_iter()
            .map(|(line, k, _)| (line, k))
            .collect();
        assert_eq!(
            keywords,
            [
                (2, "ARG".to_string()),
                (3, "FROM".to_string()),
                (4, "ARG".to_string()),
                (5, "COPY".to_string()),
                (7, "COPY".to_string()),
                (8, "COPY".to_string()),
                (9, "COPY".to_string()),
                (13, "RUN".to_string()),
            ]
        );
    }

    #[test]
    fn declared_args_and_copied_sources() {
        let args: Vec<String> = declared_args(DOCKERFILE).into_iter().collect();
        assert_eq!(args, ["BASE", "WATCH_VERSION"]);
        assert_eq!(
            copy_sources(DOCKERFILE),
            [
                "requirements.txt",
                "constraints.txt",
                "package.json",
                "package-lock.json"
            ]
        );
    }

    #[test]
    fn the_dev_images_rebuild_on_their_dependency_files_only() {
        let config = Config::load(&crate::source_root().join(DEFAULT_FILE)).unwrap();
        let inputs = |service: &str| {
            rebuild_inputs(&crate::source_root(), config.image(service).unwrap())
                .unwrap()
                .into_iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            inputs("backend"),
            ["backend/Dockerfile.dev", "backend/requirements.txt"]
        );
        assert_eq!(
            inputs("frontend"),
            [
                "frontend/Dockerfile.dev",
                "frontend/package.json",
                "frontend/package-lock.json"
            ]
        );
    }

    #[test]
    fn the_dev_plan_tags_dev_and_passes_only_the_build_bases() {
        let config = Config::load(&crate::source_root().join(DEFAULT_FILE)).unwrap();
        let images: Vec<&Image> = config.images.iter().collect();
        let git = GitInfo {
            revision: "abcdef0123456789abcdef0123456789abcdef01".into(),
            dirty: false,
            origin: None,
            ..Default::default()
        };
        let bases = bases::base_args(&images, BaseMode::Local, "h");
        let inputs = plan::PlanInputs {
            version: &config.project.version,
            git: &git,
            created: "2026-11-25T18:00:00Z".into(),
            bases: &bases,
            ca_secret: None,
            seed_secret: None,
            seed_id: None,
            no_cache: false,
            remote: Default::default(),
            out_dir: PathBuf::from(OUT_DIR),
            context_revisions: Default::default(),
            platforms: vec![],
        };
        let plan = dev_plan(&config, &images, &inputs, &crate::source_root()).unwrap();
        let frontend = &plan.images[0];
        assert_eq!(frontend.tags, ["todo-frontend:dev"]);
        assert_eq!(
            frontend.dockerfile,
            PathBuf::from("frontend/Dockerfile.dev")
        );
        let args: Vec<&String> = frontend.build_args.keys().collect();
        assert_eq!(args, ["NODE_BUILD_IMAGE"]);
        assert_eq!(
            plan.images[1].build_args["PYTHON_BUILD_IMAGE"],
            "todo-base/python-build:h"
        );
        assert!(frontend.log_file.starts_with(OUT_DIR));
        let buildx = plan.images[1].buildx_args();
        assert!(buildx.contains(&"--file=backend/Dockerfile.dev".to_string()));
        assert!(buildx.contains(&"--tag=todo-backend:dev".to_string()));
    }

    #[test]
    fn a_missing_dev_dockerfile_says_what_to_add() {
        let mut config = Config::load(&crate::source_root().join(DEFAULT_FILE)).unwrap();
        config.images[1].dev_dockerfile = None;
        let err = dev_dockerfile(&config.images[1]).unwrap_err().to_string();
        assert!(
            err.contains("dev_dockerfile = \"backend/Dockerfile.dev\""),
            "{err}"
        );
    }
}
