//! Builds past one machine: BuildKit's registry cache, shared by every engine that reaches the
//! registry, and buildx builders other than the engine's own.
//!
//! A cache setting names a repository prefix; each image gets its own reference under it
//! (`PREFIX/todo-frontend:buildcache`), because one reference holds one build's cache and the two
//! images are built at once. The cache is imported on every build where one is configured and
//! exported only where asked (`--cache-to`: what a CI runner sets; a laptop only imports).

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::config::{Config, Image};

/// The registry caches and the builder of one build, as resolved from the flags, the
/// environment and the project file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Remote {
    pub cache_from: Option<String>,
    pub cache_to: Option<String>,
    pub builder: Option<String>,
}

/// The tag every image's cache is stored under.
pub const CACHE_TAG: &str = "buildcache";

impl Remote {
    /// Each setting from its flag, else the environment (`TODO_CACHE` imports, `TODO_CACHE_TO`
    /// exports), else `[build]` in the project file. A build that exports also imports from the
    /// same place unless told otherwise: a CI runner starts from the previous run's cache.
    pub fn resolve(
        cache_from: Option<String>,
        cache_to: Option<String>,
        builder: Option<String>,
        config: &Config,
    ) -> Result<Remote> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        fn pick(
            flag: Option<String>,
            var: Option<(&'static str, String)>,
            file: &Option<String>,
        ) -> Option<(&'static str, String)> {
            flag.map(|v| ("the flag", v))
                .or(var)
                .or(file.clone().map(|v| ("project.toml's [build]", v)))
        }
        let from = pick(
            cache_from,
            env("TODO_CACHE").map(|v| ("TODO_CACHE", v)),
            &config.build.cache_from,
        );
        let to = pick(
            cache_to,
            env("TODO_CACHE_TO").map(|v| ("TODO_CACHE_TO", v)),
            &config.build.cache_to,
        );
        for (what, (source, value)) in [("cache-from", &from), ("cache-to", &to)]
            .into_iter()
            .filter_map(|(w, v)| v.as_ref().map(|v| (w, v)))
        {
            check_prefix(value)
                .with_context(|| format!("{what} {value:?} (from {source}) is not usable"))?;
        }
        let builder = builder.or_else(|| config.build.builder.clone());
        if let Some(name) = &builder {
            if name.is_empty() || name.contains(char::is_whitespace) {
                bail!("--builder {name:?} is not a builder name: `docker buildx ls` lists them");
            }
        }
        let cache_to = to.map(|(_, v)| v);
        Ok(Remote {
            cache_from: from.map(|(_, v)| v).or_else(|| cache_to.clone()),
            cache_to,
            builder,
        })
    }

    /// The cache reference of one image under `prefix`.
    pub fn cache_ref(&self, prefix: Option<&str>, image: &Image) -> Option<String> {
        let name = image.image.rsplit('/').next().unwrap_or(&image.image);
        let name = name.split(':').next().unwrap_or(name);
        prefix.map(|p| format!("{}/{name}:{CACHE_TAG}", p.trim_end_matches('/')))
    }
}

/// A repository prefix as a registry reference takes it: `HOST[:PORT]/PATH`, lowercase, no tag.
fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.contains("://") {
        bail!("give the registry without a scheme, e.g. localhost:5000/todo-cache");
    }
    let Some((host, path)) = prefix.trim_end_matches('/').split_once('/') else {
        bail!("name a registry and a repository, e.g. localhost:5000/todo-cache");
    };
    if host.is_empty() || path.is_empty() {
        bail!("name a registry and a repository, e.g. localhost:5000/todo-cache");
    }
    if path.contains(':') || path.contains('@') {
        bail!("leave out the tag: each image's cache is stored as PREFIX/IMAGE:{CACHE_TAG}");
    }
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
    if !path.chars().all(valid) {
        bail!("a repository path has only lowercase letters, digits and . _ - /");
    }
    Ok(())
}

/// A buildx builder as `docker buildx inspect` describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Builder {
    pub name: String,
    pub driver: String,
    /// The endpoint of its first node: a Docker context name for the `docker` driver, an
    /// address for the others.
    pub endpoint: String,
}

impl Builder {
    /// The builder named `name`, or buildx's current one (which `BUILDX_BUILDER` and `docker
    /// buildx use` choose).
    pub fn inspect(name: Option<&str>) -> Result<Builder> {
        let out = crate::docker::docker(["buildx", "inspect"])
            .args(name)
            .output()?;
        if !out.success() {
            let err = out.stderr.trim();
            match name {
                Some(name) => bail!(
                    "no buildx builder {name:?} ({err}): `docker buildx ls` lists the builders; a \
                     Docker context's name is one too (its engine's own BuildKit), `docker buildx \
                     create --name {name} --driver remote tcp://HOST:1234` makes one"
                ),
                None => bail!("buildx has no current builder: {err}"),
            }
        }
        Ok(parse_inspect(&out.stdout))
    }

    /// Whether the builder is an engine's own BuildKit (the `docker` driver).
    pub fn is_engine(&self) -> bool {
        self.driver == "docker"
    }
}

/// Every builder buildx knows, as (name, driver); Docker contexts are among them.
pub fn builders() -> Result<Vec<(String, String)>> {
    let out = crate::docker::docker(["buildx", "ls", "--format", "json"]).read()?;
    Ok(parse_ls(&out))
}

/// `docker buildx ls --format json` prints one JSON object per builder and line (buildx 0.13
/// prints a context's builder twice: once as a builder, once as a context).
fn parse_ls(text: &str) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = Vec::new();
    for builder in text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
    {
        let field = |k: &str| builder[k].as_str().unwrap_or("?").to_string();
        let entry = (field("Name"), field("Driver"));
        if !all.contains(&entry) {
            all.push(entry);
        }
    }
    all
}

fn parse_inspect(text: &str) -> Builder {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    Builder {
        name: field("Name:"),
        driver: field("Driver:"),
        endpoint: field("Endpoint:"),
    }
}

/// When `builder` is the own BuildKit of an engine other than the one in force (a builder named
/// after a Docker context), that engine is the one this process talks to from now on, so that the
/// image is inspected, measured and smoked where it was built. Must run before anything asks
/// `engine::endpoint`.
pub fn follow_builder(builder: &Builder) {
    if !builder.is_engine() {
        return;
    }
    // The `default` context is DOCKER_HOST's engine when that is set, and it already wins.
    if builder.endpoint == "default" && std::env::var_os("DOCKER_HOST").is_some() {
        return;
    }
    std::env::remove_var("DOCKER_HOST");
    std::env::set_var("DOCKER_CONTEXT", &builder.endpoint);
}

/// Refuses, before anything is built, an export the builder cannot do: the `docker` driver on the
/// classic image store has no cache exporter (buildx would fail each build only after starting).
pub fn check_export(builder: &Builder, store: crate::store::Store) -> Result<()> {
    if builder.is_engine() && store == crate::store::Store::Classic {
        bail!(
            "cannot export the build cache: builder {:?} is the engine's own BuildKit (driver \
             `docker`) on the classic image store, which has no cache exporter. Fix: turn on the \
             containerd image store (`\"features\": {{\"containerd-snapshotter\": true}}` in \
             /etc/docker/daemon.json, then restart the engine; its images are then built again), \
             or build with `--builder NAME` on a builder of another driver (`remote`, \
             `docker-container`, `kubernetes`). Importing works here: use --cache-from alone. \
             Nothing was built",
            builder.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_prefix_is_a_registry_and_a_repository_without_a_tag() {
        assert!(check_prefix("localhost:5000/todo-cache").is_ok());
        assert!(check_prefix("registry.example.com/team/todo/").is_ok());
        for bad in [
            "http://localhost:5000/x",
            "localhost:5000",
            "localhost:5000/x:latest",
            "localhost:5000/Todo",
            "/x",
        ] {
            assert!(check_prefix(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn buildx_ls_gives_each_builder_and_its_driver() {
        let text = "{\"Name\":\"default\",\"Driver\":\"docker\",\"Nodes\":[]}\n\
                    {\"Name\":\"ci\",\"Driver\":\"remote\",\"Nodes\":[]}\n\
                    {\"Name\":\"default\",\"Driver\":\"docker\",\"Nodes\":[]}\n";
        assert_eq!(
            parse_ls(text),
            [
                ("default".to_string(), "docker".to_string()),
                ("ci".to_string(), "remote".to_string())
            ]
        );
    }

    #[test]
    fn buildx_inspect_gives_name_driver_and_endpoint() {
        let text = "Name:          second\nDriver:        docker\nLast Activity: 2026-12-01\n\n\
                    Nodes:\nName:             second\nEndpoint:         second\nStatus: running\n";
        assert_eq!(
            parse_inspect(text),
            Builder {
                name: "second".into(),
                driver: "docker".into(),
                endpoint: "second".into()
            }
        );
    }
}
