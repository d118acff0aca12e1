//! The release plan: what a release will build, push, record and tag, and every reason to refuse
//! it, computed as plain data from the command line, git, the release records and the
//! environment. Nothing here touches the disk, git, the engine or a registry, so unit tests feed
//! it made-up facts and `--dry-run` prints exactly what a real run would do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use semver::Version;
use serde::Serialize;

use crate::config::Config;
use crate::git::GitInfo;
use crate::platform::Platform;
use crate::store::Store;

/// One reason not to release, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// A short stable name (`version`, `newer`, `git-tag`...) that scripts and tests match on.
    pub check: &'static str,
    pub message: String,
    pub fix: String,
}

impl Refusal {
    fn new(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Refusal {
        Refusal {
            check,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused[{}]: {}\n    fix: {}",
            self.check, self.message, self.fix
        )
    }
}

/// Where the images go: a Docker Hub namespace (`myuser`) or `HOST[:PORT][/NAMESPACE]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registry {
    /// The value as configured.
    pub value: String,
    /// The registry host `docker login` takes: `docker.io` for Docker Hub.
    pub host: String,
    /// The prefix of every repository: `docker.io/myuser` or `localhost:5000/todo`.
    pub prefix: String,
}

impl Registry {
    /// Follows Docker's reference rule: the first part names a host when it holds a `.` or a `:`
    /// or is `localhost`; otherwise the whole value is a Docker Hub namespace. The spelling of
    /// each part is the env rules' business (`DOCKER_REGISTRY` is checked there).
    pub fn parse(value: &str) -> Result<Registry, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("DOCKER_REGISTRY is empty".into());
        }
        if value.contains("://") {
            return Err(format!(
                "DOCKER_REGISTRY `{value}` has a scheme; write it without http:// or https://"
            ));
        }
        let value = value.trim_end_matches('/');
        let first = value.split('/').next().unwrap_or_default();
        let is_host = first.contains(['.', ':']) || first == "localhost";
        let (host, prefix) = if is_host {
            (first.to_string(), value.to_string())
        } else {
            ("docker.io".to_string(), format!("docker.io/{value}"))
        };
        Ok(Registry {
            value: value.to_string(),
            host,
            prefix,
        })
    }

    pub fn is_docker_hub(&self) -> bool {
        self.host == "docker.io"
    }

    /// The repository of an image in this registry.
    pub fn repository(&self, image: &str) -> String {
        format!("{}/{image}", self.prefix)
    }

    /// The command that stores credentials for this registry in Docker's own store.
    pub fn login_command(&self) -> String {
        if self.is_docker_hub() {
            "docker login".into()
        } else {
            format!("docker login {}", self.host)
        }
    }
}

/// The name Docker shows for a repository: Docker Hub's `docker.io/` and `library/` dropped, as
/// in `docker image inspect`'s RepoDigests.
pub fn familiar(repository: &str) -> &str {
    let short = repository.strip_prefix("docker.io/").unwrap_or(repository);
    short.strip_prefix("library/").unwrap_or(short)
}

/// Parses `v<semver>`, the one spelling of a version tag the project takes (release arguments,
/// git tags, the VERSION variable). Build metadata (`+…`) is refused because a Docker tag cannot
/// hold `+`.
pub fn parse_version(arg: &str) -> Result<Version, String> {
    let rest = match arg.strip_prefix('v') {
        Some(rest) => rest,
        None if arg.starts_with('V') => {
            return Err(format!(
                "`{arg}` starts with a capital V; write a lowercase v"
            ))
        }
        None => return Err(format!("`{arg}` has no leading v; write v{arg}")),
    };
    let version = Version::parse(rest)
        .map_err(|err| format!("`{arg}` is not semantic versioning after the v ({err})"))?;
    if !version.build.is_empty() {
        return Err(format!(
            "`{arg}` has +build metadata, which a Docker tag cannot hold"
        ));
    }
    Ok(version)
}

/// The newest version among git tags (`v*`, others ignored) and recorded releases.
pub fn newest_released(git_tags: &[String], recorded: &[Version]) -> Option<Version> {
    git_tags
        .iter()
        .filter_map(|t| parse_version(t).ok())
        .chain(recorded.iter().cloned())
        .max()
}

/// Everything the plan depends on, gathered beforehand by the command.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The version as typed: `v1.0.1`.
    pub version: &'a str,
    pub git: &'a GitInfo,
    /// Every git tag of the repository.
    pub git_tags: &'a [String],
    /// The versions of the release records already written.
    pub recorded: &'a [Version],
    /// `DOCKER_REGISTRY`, when set and not empty.
    pub registry: Option<&'a str>,
    /// Where `registry` came from, for messages: `DOCKER_REGISTRY in .env`.
    pub registry_source: &'a str,
    /// Why `registry` breaks the env rules, when it came from the process environment (a value
    /// from the file is checked with the rest of the file).
    pub registry_error: Option<&'a str>,
    /// The environment check's problems, as its text report, when it found errors.
    pub env_problems: Option<&'a str>,
    /// The environment file checked, for messages.
    pub env_file: &'a Path,
    /// The platforms to release (`--platform`, else project.toml's `build.platforms`, else
    /// the host's; see `build::platforms`), or why the list was refused.
    pub platforms: Result<Vec<Platform>, String>,
    pub host_platform: Platform,
    /// The engine's image store; None when the engine did not answer (a dry run does not start
    /// it).
    pub store: Option<Store>,
    pub force: bool,
    pub allow_dirty: bool,
    /// False with `--no-git-tag`.
    pub git_tag: bool,
    /// True when git knows who would sign the annotated tag.
    pub git_identity: bool,
    /// Where release records are written.
    pub records_dir: &'a Path,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReleasePlan {
    /// Without the leading `v`: `1.0.1`.
    pub version: String,
    /// The git tag and image tag: `v1.0.1`.
    pub tag: String,
    pub prerelease: bool,
    /// The newest version released before this one.
    pub previous: Option<String>,
    pub revision: String,
    /// `sha-<7 hex digits>[-dirty]`.
    pub sha_tag: String,
    pub dirty: bool,
    pub registry: Registry,
    pub registry_source: String,
    /// Whether `latest` moves to this release, and why not when it does not.
    pub latest: bool,
    pub latest_note: Option<String>,
    pub images: Vec<ImageRelease>,
    /// The platforms each image is built for: the host's alone, or several, when each image
    /// is one image index in the registry.
    pub platforms: Vec<Platform>,
    /// Every push, in order: all `sha-` tags, then the version tags, then `latest`, so that
    /// `latest` moves only once every image of the release is in the registry.
    pub pushes: Vec<Push>,
    pub record_file: PathBuf,
    /// The annotated git tag made last, unless `--no-git-tag`.
    pub git_tag: Option<String>,
    /// What is checked, in order; refusals stop the release before anything is built.
    pub checks: Vec<String>,
    /// Things worth knowing that do not stop the release.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageRelease {
    pub service: String,
    /// The local image name (`todo-frontend`).
    pub image: String,
    /// `localhost:5000/todo/todo-frontend`.
    pub repository: String,
    /// `[sha-…, v1.0.1, latest]`, in push order.
    pub tags: Vec<String>,
}

impl ImageRelease {
    pub fn reference(&self, tag: &str) -> String {
        format!("{}:{tag}", self.repository)
    }

    pub fn references(&self) -> Vec<String> {
        self.tags.iter().map(|t| self.reference(t)).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Push {
    pub service: String,
    pub tag: String,
    pub reference: String,
}

/// The plan when the version and registry allow one, and every refusal found (all of them, so
/// that one round of fixes is enough).
#[derive(Debug, Clone)]
pub struct Planned {
    pub plan: Option<ReleasePlan>,
    pub refusals: Vec<Refusal>,
}

pub fn plan(config: &Config, inputs: &Inputs) -> Planned {
    let mut refusals = Vec::new();
    let mut notes = Vec::new();

    let version = match parse_version(inputs.version) {
        Ok(v) => Some(v),
        Err(message) => {
            refusals.push(Refusal::new(
                "version",
                message,
                "give the version as v<MAJOR>.<MINOR>.<PATCH>[-PRERELEASE], e.g. v1.0.1 or \
                 v1.1.0-rc.1",
            ));
            None
        }
    };
    let previous = newest_released(inputs.git_tags, inputs.recorded);
    if let Some(version) = &version {
        let tag = format!("v{version}");
        if inputs.git_tags.contains(&tag) {
            refusals.push(Refusal::new(
                "git-tag",
                format!("the git tag {tag} already exists: {tag} has been released"),
                "release a new version; `git tag --list 'v*'` shows the released ones",
            ));
        }
        match &previous {
            Some(newest) if version <= newest && !inputs.force => refusals.push(Refusal::new(
                "newer",
                format!(
                    "{tag} is not greater than the newest released version v{newest} (from \
                     git tags and {})",
                    inputs.records_dir.display()
                ),
                format!(
                    "release a version above v{newest}, e.g. v{}; or pass --force to release \
                     an older number on purpose",
                    next_patch(newest)
                ),
            )),
            Some(newest) if version <= newest => notes.push(format!(
                "--force: {tag} is not greater than the newest release v{newest}"
            )),
            _ => {}
        }
    }
    if inputs.git.dirty && !inputs.allow_dirty {
        refusals.push(Refusal::new(
            "clean-tree",
            "the working tree has changes that are not committed: the images would not match \
             any revision",
            "commit or remove the changes (`git status` lists them), or pass --allow-dirty to \
             release them anyway (the sha- tag then ends in -dirty)",
        ));
    }
    if inputs.git.dirty && inputs.allow_dirty {
        notes.push(format!(
            "--allow-dirty: the images hold uncommitted changes on top of {}",
            &inputs.git.revision
        ));
    }
    if let Some(problems) = inputs.env_problems {
        refusals.push(Refusal::new(
            "environment",
            format!(
                "the environment file {} is not valid:\n{}",
                inputs.env_file.display(),
                indent(problems.trim_end())
            ),
            format!(
                "fix it, then check with `cargo xtask env check --file {}`; or pass \
                 --env-file PATH",
                inputs.env_file.display()
            ),
        ));
    }
    let platforms = match &inputs.platforms {
        Ok(list) => list.clone(),
        Err(message) => {
            refusals.push(Refusal::new(
                "platform",
                message.clone(),
                format!(
                    "name platforms from {} (e.g. --platform linux/amd64,linux/arm64), or leave \
                     out --platform to release for {} alone",
                    crate::platform::supported(),
                    inputs.host_platform.docker()
                ),
            ));
            vec![inputs.host_platform]
        }
    };
    if !platforms.contains(&inputs.host_platform) {
        refusals.push(Refusal::new(
            "platform",
            format!(
                "{} leaves out this host's platform {}, on which the smoke checks run before \
                 anything is pushed",
                platform_list(&platforms),
                inputs.host_platform.docker()
            ),
            format!(
                "add {} to the list, e.g. --platform {}",
                inputs.host_platform.docker(),
                platform_list(&Platform::ALL)
            ),
        ));
    } else if platforms != [inputs.host_platform] {
        let list = platform_list(&platforms);
        match inputs.store {
            Some(Store::Containerd) => {}
            Some(Store::Classic) => refusals.push(Refusal::new(
                "platform",
                format!(
                    "releasing for {list} needs the engine's containerd image store, which \
                     holds an image for several platforms; this engine uses the classic one, \
                     which holds one platform per image"
                ),
                format!(
                    "set {{\"features\": {{\"containerd-snapshotter\": true}}}} in the \
                     engine's daemon.json and restart it, or leave out --platform (and \
                     project.toml's build.platforms) to release for {} alone",
                    inputs.host_platform.docker()
                ),
            )),
            None => notes.push(format!(
                "the engine did not answer, so its image store is not known: releasing for \
                 {list} needs the containerd image store"
            )),
        }
    }
    if inputs.git_tag && !inputs.git_identity {
        refusals.push(Refusal::new(
            "git-identity",
            "git does not know who makes the annotated release tag",
            "set `git config user.name NAME` and `git config user.email EMAIL`, or pass \
             --no-git-tag",
        ));
    }
    let registry = match inputs.registry.map(Registry::parse) {
        Some(_) if inputs.registry_error.is_some() => {
            refusals.push(Refusal::new(
                "registry",
                format!(
                    "{} is not a registry: {}",
                    inputs.registry_source,
                    inputs.registry_error.unwrap_or_default()
                ),
                "e.g. DOCKER_REGISTRY=myuser or DOCKER_REGISTRY=localhost:5000/todo",
            ));
            None
        }
        None => {
            refusals.push(Refusal::new(
                "registry",
                format!(
                    "no registry to push to: DOCKER_REGISTRY is empty or unset in the \
                     environment and in {}",
                    inputs.env_file.display()
                ),
                "set DOCKER_REGISTRY in the environment file or the environment: a Docker Hub \
                 user (myuser) or HOST[:PORT]/NAMESPACE (localhost:5000/todo)",
            ));
            None
        }
        Some(Err(message)) => {
            refusals.push(Refusal::new(
                "registry",
                message,
                "e.g. DOCKER_REGISTRY=myuser or DOCKER_REGISTRY=localhost:5000/todo",
            ));
            None
        }
        Some(Ok(registry)) => Some(registry),
    };

    let (Some(version), Some(registry)) = (version, registry) else {
        return Planned {
            plan: None,
            refusals,
        };
    };
    let prerelease = !version.pre.is_empty();
    let (latest, latest_note) = if prerelease {
        (
            false,
            Some(format!(
                "v{version} is a pre-release: `latest` stays where it is"
            )),
        )
    } else {
        match &previous {
            Some(newest) if version <= *newest => (
                false,
                Some(format!(
                    "v{version} is older than v{newest}: `latest` stays where it is"
                )),
            ),
            _ => (true, None),
        }
    };
    let tag = format!("v{version}");
    let sha_tag = format!("sha-{}", inputs.git.short());
    let mut tags = vec![sha_tag.clone(), tag.clone()];
    if latest {
        tags.push("latest".into());
    }
    let images: Vec<ImageRelease> = config
        .images
        .iter()
        .map(|image| ImageRelease {
            service: image.service.clone(),
            image: image.image.clone(),
            repository: registry.repository(&image.image),
            tags: tags.clone(),
        })
        .collect();
    let pushes = tags
        .iter()
        .flat_map(|t| {
            images.iter().map(move |i| Push {
                service: i.service.clone(),
                tag: t.clone(),
                reference: i.reference(t),
            })
        })
        .collect();
    let record_file = inputs.records_dir.join(format!("{tag}.json"));
    let checks = checks(&tag, &previous, inputs, &registry, &platforms);
    Planned {
        plan: Some(ReleasePlan {
            version: version.to_string(),
            tag: tag.clone(),
            prerelease,
            previous: previous.map(|v| v.to_string()),
            revision: inputs.git.revision.clone(),
            sha_tag,
            dirty: inputs.git.dirty,
            registry,
            registry_source: inputs.registry_source.to_string(),
            latest,
            latest_note,
            images,
            platforms,
            pushes,
            record_file,
            git_tag: inputs.git_tag.then_some(tag),
            checks,
            notes,
        }),
        refusals,
    }
}

fn checks(
    tag: &str,
    previous: &Option<Version>,
    inputs: &Inputs,
    registry: &Registry,
    platforms: &[Platform],
) -> Vec<String> {
    let host = inputs.host_platform;
    let mut checks = vec![
        format!("{tag} is semantic versioning with a leading v"),
        match previous {
            Some(v) => format!("{tag} is greater than the newest release v{v}"),
            None => format!("{tag} is the first release (no v* git tag, no release record)"),
        },
        format!("the git tag {tag} does not exist yet"),
        if inputs.allow_dirty {
            "the working tree may have changes (--allow-dirty)".to_string()
        } else {
            "the working tree is clean".to_string()
        },
        format!(
            "{} passes the environment rules (`cargo xtask env check`)",
            inputs.env_file.display()
        ),
        format!(
            "the registry {} answers and accepts Docker's stored credentials for it",
            registry.host
        ),
        format!(
            "the registry holds no {tag} of either image, except a partial release of this \
             revision, which is resumed"
        ),
        if platforms.len() > 1 {
            format!(
                "both images build (in parallel) for {}, each platform within its size budget",
                platform_list(platforms)
            )
        } else {
            "both images build (in parallel) within their size budgets".into()
        },
        if platforms.len() > 1 {
            format!(
                "the smoke checks pass on exactly the images built (run on {})",
                host.docker()
            )
        } else {
            "the smoke checks pass on exactly the images built".into()
        },
        if platforms.len() > 1 {
            "after the pushes: every tag names the image index the build made, which lists each \
             platform with the manifest digest the build made; one image pulled back by digest"
                .into()
        } else {
            "after the pushes: every tag's manifest in the registry has the local image's digest \
             and config; one image pulled back by digest"
                .into()
        },
    ];
    if inputs.git_tag {
        checks.push(format!("git can make the annotated tag {tag}"));
    }
    checks
}

/// `linux/amd64,linux/arm64`.
pub fn platform_list(platforms: &[Platform]) -> String {
    platforms
        .iter()
        .map(|p| p.docker())
        .collect::<Vec<_>>()
        .join(",")
}

fn next_patch(v: &Version) -> Version {
    if v.pre.is_empty() {
        Version::new(v.major, v.minor, v.patch + 1)
    } else {
        Version::new(v.major, v.minor, v.patch)
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the registry holds under one reference, as far as the release cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Remote {
    Absent,
    Present {
        digest: String,
        /// The image's `org.opencontainers.image.revision` label, when it has one.
        revision: Option<String>,
        /// The image's `org.opencontainers.image.version` label, when it has one.
        version: Option<String>,
        /// For an image index, each platform (`linux/arm64`) and its manifest digest, sorted;
        /// empty for a single image. An index's labels are its platforms' when they all agree.
        platforms: Vec<(String, String)>,
    },
}

impl Remote {
    /// The platforms an image of the registry holds, as a plan names them: an index's, or
    /// none for a single image (which the host-only release makes).
    fn platform_names(&self) -> Vec<String> {
        match self {
            Remote::Present { platforms, .. } => platforms.iter().map(|(p, _)| p.clone()).collect(),
            Remote::Absent => vec![],
        }
    }
}

/// The platforms of a plan as the registry would show its images: none for the host-only
/// release (a single image), else every platform of the index.
fn expected_platforms(plan: &ReleasePlan) -> Vec<String> {
    if plan.platforms.len() > 1 {
        plan.platforms
            .iter()
            .map(|p| p.docker().to_string())
            .collect()
    } else {
        vec![]
    }
}

/// `one image` or `an index of linux/amd64,linux/arm64`.
fn shape(platforms: &[String]) -> String {
    if platforms.is_empty() {
        "a single-platform image".into()
    } else {
        format!("an index of {}", platforms.join(","))
    }
}

/// Where a service's release image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Source {
    /// Nothing of this release is in the registry: build it.
    Build,
    /// An earlier run of this same release pushed it under `tag` before stopping: reuse that
    /// image, so every tag of the release names one digest.
    Resume { digest: String, tag: String },
}

/// Decides, from what the registry holds, whether each image is built or resumed; refuses when
/// the registry holds this version of an image made from anything but this revision.
pub fn assess(
    plan: &ReleasePlan,
    remote: &BTreeMap<String, Remote>,
) -> Result<BTreeMap<String, Source>, Vec<Refusal>> {
    let mut sources = BTreeMap::new();
    let mut refusals = Vec::new();
    let ours = |revision: &Option<String>, version: &Option<String>| {
        revision.as_deref() == Some(plan.revision.as_str())
            && version.as_deref() == Some(plan.version.as_str())
    };
    let wanted = expected_platforms(plan);
    for image in &plan.images {
        let at = |tag: &str| remote.get(&image.reference(tag));
        let source = match (at(&plan.tag), at(&plan.sha_tag)) {
            (
                Some(
                    found @ Remote::Present {
                        digest,
                        revision,
                        version,
                        ..
                    },
                ),
                _,
            ) => {
                if ours(revision, version) && found.platform_names() == wanted {
                    Source::Resume {
                        digest: digest.clone(),
                        tag: plan.tag.clone(),
                    }
                } else if ours(revision, version) {
                    refusals.push(Refusal::new(
                        "registry-holds",
                        format!(
                            "the registry already holds {} ({digest}) of this revision and \
                             version as {}, and this release is for {}: a released version is \
                             never overwritten",
                            image.reference(&plan.tag),
                            shape(&found.platform_names()),
                            shape(&wanted),
                        ),
                        format!(
                            "complete that release with the platforms it has (--platform {}), \
                             or release a new version",
                            match found.platform_names() {
                                names if names.is_empty() => Platform::host().docker().to_string(),
                                names => names.join(","),
                            }
                        ),
                    ));
                    continue;
                } else {
                    refusals.push(Refusal::new(
                        "registry-holds",
                        format!(
                            "the registry already holds {} ({digest}, version {}, revision {}): \
                             a released version is never overwritten",
                            image.reference(&plan.tag),
                            version.as_deref().unwrap_or("unknown"),
                            revision.as_deref().unwrap_or("unknown"),
                        ),
                        format!(
                            "release a new version, e.g. v{}",
                            next_patch(
                                &Version::parse(&plan.version).unwrap_or(Version::new(0, 0, 0))
                            )
                        ),
                    ));
                    continue;
                }
            }
            (
                _,
                Some(
                    found @ Remote::Present {
                        digest,
                        revision,
                        version,
                        ..
                    },
                ),
            ) if ours(revision, version) && found.platform_names() == wanted => Source::Resume {
                digest: digest.clone(),
                tag: plan.sha_tag.clone(),
            },
            _ => Source::Build,
        };
        sources.insert(image.service.clone(), source);
    }
    if refusals.is_empty() {
        Ok(sources)
    } else {
        Err(refusals)
    }
}

/// How each image of the release comes about, in a sentence for the log and the record: promoted
/// from the `sha-` image a CI job pushed (`build --push`) or an earlier run left, or built, and
/// then why no image in the registry would do.
pub fn provenance(
    plan: &ReleasePlan,
    sources: &BTreeMap<String, Source>,
    remote: &BTreeMap<String, Remote>,
) -> BTreeMap<String, String> {
    plan.images
        .iter()
        .map(|image| {
            let sha = image.reference(&plan.sha_tag);
            let text = match (sources.get(&image.service), remote.get(&sha)) {
                (Some(Source::Resume { digest, tag }), _) => format!(
                    "promoted: {}:{tag} ({digest}) was pulled, smoke-checked and tagged by \
                     digest, not built",
                    image.repository
                ),
                (
                    _,
                    Some(
                        found @ Remote::Present {
                            revision, version, ..
                        },
                    ),
                ) if revision.as_deref() == Some(plan.revision.as_str())
                    && version.as_deref() == Some(plan.version.as_str()) =>
                {
                    format!(
                        "built: {sha} in the registry is {}, and this release is for {}",
                        shape(&found.platform_names()),
                        shape(&expected_platforms(plan))
                    )
                }
                (
                    _,
                    Some(Remote::Present {
                        revision, version, ..
                    }),
                ) => format!(
                    "built: {sha} in the registry was made from revision {} as version {}, not \
                     from {} as {}",
                    revision.as_deref().unwrap_or("unknown"),
                    version.as_deref().unwrap_or("unknown"),
                    &plan.revision[..plan.revision.len().min(7)],
                    plan.version
                ),
                _ => format!(
                    "built: the registry holds no {sha} (a CI job's `cargo xtask build --push` \
                     of this commit would have let the release promote it)"
                ),
            };
            (image.service.clone(), text)
        })
        .collect()
}

/// The pushes still to make: a resumed image's tags that already name its digest are skipped.
pub fn pending<'a>(
    plan: &'a ReleasePlan,
    sources: &BTreeMap<String, Source>,
    remote: &BTreeMap<String, Remote>,
) -> Vec<(&'a Push, bool)> {
    plan.pushes
        .iter()
        .map(|push| {
            let done = match (sources.get(&push.service), remote.get(&push.reference)) {
                (Some(Source::Resume { digest, .. }), Some(Remote::Present { digest: d, .. })) => {
                    d == digest
                }
                _ => false,
            };
            (push, done)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_FILE;

    const REVISION: &str = "abcdef0123456789abcdef0123456789abcdef01";

    fn config() -> Config {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        Config::load(&root.join(DEFAULT_FILE)).unwrap()
    }

    fn git(dirty: bool) -> GitInfo {
        GitInfo {
            revision: REVISION.into(),
            dirty,
            origin: None,
            ..Default::default()
        }
    }

    struct Facts {
        version: &'static str,
        dirty: bool,
        tags: Vec<String>,
        recorded: Vec<Version>,
        registry: Option<&'static str>,
        env_problems: Option<&'static str>,
        platform: Option<&'static str>,
        store: Option<Store>,
        force: bool,
        allow_dirty: bool,
        git_tag: bool,
        identity: bool,
    }

    impl Default for Facts {
        fn default() -> Self {
            Facts {
                version: "v1.0.1",
                dirty: false,
                tags: vec!["v1.0.0".into(), "not-a-version".into()],
                recorded: vec![],
                registry: Some("localhost:5000/todo"),
                env_problems: None,
                platform: None,
                store: Some(Store::Classic),
                force: false,
                allow_dirty: false,
                git_tag: true,
                identity: true,
            }
        }
    }

    fn run(facts: Facts) -> Planned {
        let git = git(facts.dirty);
        let inputs = Inputs {
            version: facts.version,
            git: &git,
            git_tags: &facts.tags,
            recorded: &facts.recorded,
            registry: facts.registry,
            registry_source: "DOCKER_REGISTRY in .env",
            registry_error: None,
            env_problems: facts.env_problems,
            env_file: Path::new(".env"),
            platforms: match facts.platform {
                Some(list) => Platform::parse_list(list).map_err(|e| e.to_string()),
                None => Ok(vec![Platform::Amd64]),
            },
            host_platform: Platform::Amd64,
            store: facts.store,
            force: facts.force,
            allow_dirty: facts.allow_dirty,
            git_tag: facts.git_tag,
            git_identity: facts.identity,
            records_dir: Path::new("target/releases"),
        };
        plan(&config(), &inputs)
    }

    fn checks(planned: &Planned) -> Vec<&'static str> {
        planned.refusals.iter().map(|r| r.check).collect()
    }

    #[test]
    fn versions_need_a_lowercase_v_and_plain_semver() {
        assert_eq!(parse_version("v1.0.1").unwrap(), Version::new(1, 0, 1));
        assert_eq!(parse_version("v1.1.0-rc.1").unwrap().pre.as_str(), "rc.1");
        for (bad, says) in [
            ("1.0.1", "no leading v"),
            ("V1.0.1", "capital V"),
            ("v1.0", "not semantic versioning"),
            ("v1.0.1+build.5", "+build metadata"),
            ("v01.0.0", "not semantic versioning"),
            ("", "no leading v"),
        ] {
            let err = parse_version(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn the_newest_release_comes_from_tags_and_records() {
        let tags = vec!["v1.0.0".into(), "v1.2.0-rc.1".into(), "junk".into()];
        assert_eq!(
            newest_released(&tags, &[]).unwrap().to_string(),
            "1.2.0-rc.1"
        );
        assert_eq!(
            newest_released(&tags, &[Version::new(1, 2, 0)])
                .unwrap()
                .to_string(),
            "1.2.0"
        );
        assert_eq!(newest_released(&[], &[]), None);
    }

    #[test]
    fn registries_are_hub_namespaces_or_hosts() {
        let hub = Registry::parse("myuser").unwrap();
        assert_eq!(
            hub.repository("todo-frontend"),
            "docker.io/myuser/todo-frontend"
        );
        assert_eq!(hub.login_command(), "docker login");
        let local = Registry::parse("localhost:5000/todo").unwrap();
        assert_eq!(
            local.repository("todo-backend"),
            "localhost:5000/todo/todo-backend"
        );
        assert_eq!(local.host, "localhost:5000");
        assert_eq!(local.login_command(), "docker login localhost:5000");
        let bare = Registry::parse("127.0.0.1:5000").unwrap();
        assert_eq!(
            bare.repository("todo-backend"),
            "127.0.0.1:5000/todo-backend"
        );
        let dotted = Registry::parse("registry.example.com/team/apps").unwrap();
        assert_eq!(dotted.host, "registry.example.com");
        assert!(Registry::parse("https://localhost:5000").is_err());
        assert!(Registry::parse(" ").is_err());
        assert_eq!(
            familiar("docker.io/myuser/todo-frontend"),
            "myuser/todo-frontend"
        );
        assert_eq!(familiar("localhost:5000/todo/x"), "localhost:5000/todo/x");
    }

    #[test]
    fn a_release_pushes_hash_then_version_then_latest_for_both_images() {
        let planned = run(Facts::default());
        assert!(planned.refusals.is_empty(), "{:?}", planned.refusals);
        let plan = planned.plan.unwrap();
        assert_eq!(plan.tag, "v1.0.1");
        assert_eq!(plan.previous.as_deref(), Some("1.0.0"));
        assert!(plan.latest);
        let pushes: Vec<&str> = plan.pushes.iter().map(|p| p.reference.as_str()).collect();
        assert_eq!(
            pushes,
            [
                "localhost:5000/todo/todo-frontend:sha-abcdef0",
                "localhost:5000/todo/todo-backend:sha-abcdef0",
                "localhost:5000/todo/todo-frontend:v1.0.1",
                "localhost:5000/todo/todo-backend:v1.0.1",
                "localhost:5000/todo/todo-frontend:latest",
                "localhost:5000/todo/todo-backend:latest",
            ]
        );
        assert_eq!(plan.git_tag.as_deref(), Some("v1.0.1"));
        assert_eq!(plan.record_file, Path::new("target/releases/v1.0.1.json"));
        assert!(plan.checks.iter().any(|c| c.contains("smoke")));
    }

    #[test]
    fn pre_releases_and_forced_old_versions_leave_latest_alone() {
        let plan = run(Facts {
            version: "v1.1.0-rc.1",
            ..Facts::default()
        })
        .plan
        .unwrap();
        assert!(plan.prerelease && !plan.latest);
        assert!(plan.pushes.iter().all(|p| p.tag != "latest"));
        assert_eq!(plan.pushes.len(), 4);
        assert!(plan.latest_note.unwrap().contains("pre-release"));

        let forced = run(Facts {
            version: "v0.9.0",
            force: true,
            ..Facts::default()
        });
        assert!(forced.refusals.is_empty(), "{:?}", forced.refusals);
        let plan = forced.plan.unwrap();
        assert!(!plan.latest);
        assert!(plan.notes[0].contains("--force"));
    }

    #[test]
    fn every_refusal_is_reported_at_once() {
        let planned = run(Facts {
            version: "v1.0.0",
            dirty: true,
            env_problems: Some(".env:3: error[secret-length]: too short\n"),
            platform: Some("linux/amd64,linux/arm64"),
            identity: false,
            ..Facts::default()
        });
        assert_eq!(
            checks(&planned),
            [
                "git-tag",
                "newer",
                "clean-tree",
                "environment",
                "platform",
                "git-identity"
            ]
        );
        let text = planned
            .refusals
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("e.g. v1.0.1"), "{text}");
        assert!(text.contains("    .env:3: error[secret-length]"), "{text}");
        assert!(text.contains("containerd-snapshotter"), "{text}");
        // The plan is still made, so that --dry-run shows it beside the refusals.
        assert!(planned.plan.is_some());
    }

    #[test]
    fn flags_lift_their_refusals() {
        let planned = run(Facts {
            version: "v1.0.0",
            tags: vec!["v1.0.1".into()],
            dirty: true,
            allow_dirty: true,
            force: true,
            platform: Some("linux/amd64"),
            git_tag: false,
            identity: false,
            ..Facts::default()
        });
        assert!(planned.refusals.is_empty(), "{:?}", planned.refusals);
        let plan = planned.plan.unwrap();
        assert_eq!(plan.sha_tag, "sha-abcdef0-dirty");
        assert_eq!(plan.git_tag, None);
    }

    #[test]
    fn a_bad_version_or_missing_registry_leaves_no_plan() {
        let planned = run(Facts {
            version: "1.0.1",
            registry: None,
            ..Facts::default()
        });
        assert_eq!(checks(&planned), ["version", "registry"]);
        assert!(planned.plan.is_none());
        assert!(planned.refusals[1]
            .message
            .contains("in the environment and in .env"));
    }

    #[test]
    fn newer_compares_with_records_too() {
        let planned = run(Facts {
            version: "v1.5.0",
            recorded: vec![Version::new(2, 0, 0)],
            ..Facts::default()
        });
        assert_eq!(checks(&planned), ["newer"]);
        assert!(planned.refusals[0].message.contains("v2.0.0"));
    }

    fn present(digest: &str, revision: &str, version: &str) -> Remote {
        Remote::Present {
            digest: digest.into(),
            revision: Some(revision.into()),
            version: Some(version.into()),
            platforms: vec![],
        }
    }

    fn index(digest: &str, platforms: &[&str]) -> Remote {
        Remote::Present {
            digest: digest.into(),
            revision: Some(REVISION.into()),
            version: Some("1.0.1".into()),
            platforms: platforms
                .iter()
                .map(|p| (p.to_string(), format!("sha256:{p}")))
                .collect(),
        }
    }

    #[test]
    fn platforms_are_refused_when_unknown_without_the_host_or_on_the_classic_store() {
        let unknown = run(Facts {
            platform: Some("linux/amd64,linux/s390x"),
            ..Facts::default()
        });
        assert_eq!(checks(&unknown), ["platform"]);
        assert!(unknown.refusals[0].message.contains("linux/s390x"));
        assert!(unknown.refusals[0].fix.contains("linux/amd64, linux/arm64"));
        let classic = run(Facts {
            platform: Some("linux/arm64,linux/amd64"),
            ..Facts::default()
        });
        assert_eq!(checks(&classic), ["platform"]);
        assert!(classic.refusals[0]
            .message
            .contains("linux/amd64,linux/arm64"));
        assert!(classic.refusals[0].fix.contains("containerd-snapshotter"));
        let foreign = run(Facts {
            platform: Some("linux/arm64"),
            store: Some(Store::Containerd),
            ..Facts::default()
        });
        assert_eq!(checks(&foreign), ["platform"]);
        assert!(foreign.refusals[0].message.contains("smoke checks"));
        let both = run(Facts {
            platform: Some("linux/arm64,linux/amd64"),
            store: Some(Store::Containerd),
            ..Facts::default()
        });
        assert!(both.refusals.is_empty(), "{:?}", both.refusals);
        let plan = both.plan.unwrap();
        assert_eq!(plan.platforms, [Platform::Amd64, Platform::Arm64]);
        assert!(plan
            .checks
            .iter()
            .any(|c| c.contains("linux/amd64,linux/arm64")));
        // Unknown store (a dry run with no engine): a note, not a refusal.
        let unknown_store = run(Facts {
            platform: Some("linux/arm64,linux/amd64"),
            store: None,
            ..Facts::default()
        });
        assert!(unknown_store.refusals.is_empty());
        assert!(unknown_store.plan.unwrap().notes[0].contains("containerd image store"));
    }

    #[test]
    fn an_index_is_promoted_only_with_the_same_platforms() {
        let multi = run(Facts {
            platform: Some("linux/amd64,linux/arm64"),
            store: Some(Store::Containerd),
            ..Facts::default()
        })
        .plan
        .unwrap();
        let fe = "localhost:5000/todo/todo-frontend:sha-abcdef0".to_string();
        let be = "localhost:5000/todo/todo-backend:sha-abcdef0".to_string();
        let remote = BTreeMap::from([
            (
                fe.clone(),
                index("sha256:fi", &["linux/amd64", "linux/arm64"]),
            ),
            (be.clone(), index("sha256:bi", &["linux/amd64"])),
        ]);
        let sources = assess(&multi, &remote).unwrap();
        assert_eq!(
            sources["frontend"],
            Source::Resume {
                digest: "sha256:fi".into(),
                tag: "sha-abcdef0".into()
            }
        );
        assert_eq!(sources["backend"], Source::Build);
        let how = provenance(&multi, &sources, &remote);
        assert!(
            how["backend"].contains("is an index of linux/amd64, and this release is for an index of linux/amd64,linux/arm64"),
            "{}",
            how["backend"]
        );
        // The host-only release does not promote an index, and says why.
        let single = run(Facts::default()).plan.unwrap();
        let sources = assess(&single, &remote).unwrap();
        assert_eq!(sources["frontend"], Source::Build);
        let how = provenance(&single, &sources, &remote);
        assert!(how["frontend"].contains("this release is for a single-platform image"));
        // The version tag of this revision with other platforms is never overwritten.
        let remote = BTreeMap::from([(
            "localhost:5000/todo/todo-backend:v1.0.1".to_string(),
            present("sha256:b1", REVISION, "1.0.1"),
        )]);
        let refusals = assess(&multi, &remote).unwrap_err();
        assert_eq!(refusals[0].check, "registry-holds");
        assert!(
            refusals[0].fix.contains("--platform linux/amd64"),
            "{}",
            refusals[0].fix
        );
    }

    #[test]
    fn an_empty_registry_means_build_everything() {
        let plan = run(Facts::default()).plan.unwrap();
        let sources = assess(&plan, &BTreeMap::new()).unwrap();
        assert!(sources.values().all(|s| *s == Source::Build));
        assert!(pending(&plan, &sources, &BTreeMap::new())
            .iter()
            .all(|(_, done)| !done));
    }

    #[test]
    fn this_version_from_another_revision_is_refused() {
        let plan = run(Facts::default()).plan.unwrap();
        let remote = BTreeMap::from([(
            "localhost:5000/todo/todo-backend:v1.0.1".to_string(),
            present("sha256:aa", "0000000", "1.0.1"),
        )]);
        let refusals = assess(&plan, &remote).unwrap_err();
        assert_eq!(refusals.len(), 1);
        assert_eq!(refusals[0].check, "registry-holds");
        assert!(refusals[0].message.contains("todo-backend:v1.0.1"));
        assert!(refusals[0].message.contains("revision 0000000"));
    }

    #[test]
    fn a_partial_release_of_this_revision_is_resumed() {
        let plan = run(Facts::default()).plan.unwrap();
        let fe = "localhost:5000/todo/todo-frontend";
        let remote = BTreeMap::from([
            (
                format!("{fe}:sha-abcdef0"),
                present("sha256:f1", REVISION, "1.0.1"),
            ),
            (
                format!("{fe}:v1.0.1"),
                present("sha256:f1", REVISION, "1.0.1"),
            ),
            // An older release of the same revision under the backend's sha- tag is not ours.
            (
                "localhost:5000/todo/todo-backend:sha-abcdef0".to_string(),
                present("sha256:b0", REVISION, "1.0.0"),
            ),
            (
                format!("{fe}:latest"),
                present("sha256:old", "1234567", "1.0.0"),
            ),
        ]);
        let sources = assess(&plan, &remote).unwrap();
        assert_eq!(
            sources["frontend"],
            Source::Resume {
                digest: "sha256:f1".into(),
                tag: "v1.0.1".into()
            }
        );
        assert_eq!(sources["backend"], Source::Build);
        let done: Vec<(&str, bool)> = pending(&plan, &sources, &remote)
            .into_iter()
            .map(|(p, d)| (p.reference.as_str(), d))
            .collect();
        assert_eq!(
            done,
            [
                ("localhost:5000/todo/todo-frontend:sha-abcdef0", true),
                ("localhost:5000/todo/todo-backend:sha-abcdef0", false),
                ("localhost:5000/todo/todo-frontend:v1.0.1", true),
                ("localhost:5000/todo/todo-backend:v1.0.1", false),
                ("localhost:5000/todo/todo-frontend:latest", false),
                ("localhost:5000/todo/todo-backend:latest", false),
            ]
        );
    }

    #[test]
    fn a_hash_tag_alone_is_enough_to_resume() {
        let plan = run(Facts::default()).plan.unwrap();
        let remote = BTreeMap::from([(
            "localhost:5000/todo/todo-backend:sha-abcdef0".to_string(),
            present("sha256:b1", REVISION, "1.0.1"),
        )]);
        let sources = assess(&plan, &remote).unwrap();
        assert_eq!(
            sources["backend"],
            Source::Resume {
                digest: "sha256:b1".into(),
                tag: "sha-abcdef0".into()
            }
        );
    }

    #[test]
    fn each_image_says_whether_it_was_promoted_or_built_and_why() {
        let plan = run(Facts::default()).plan.unwrap();
        let remote = BTreeMap::from([
            (
                "localhost:5000/todo/todo-backend:sha-abcdef0".to_string(),
                present("sha256:b1", REVISION, "1.0.1"),
            ),
            (
                "localhost:5000/todo/todo-frontend:sha-abcdef0".to_string(),
                present("sha256:f0", REVISION, "1.0.0"),
            ),
        ]);
        let sources = assess(&plan, &remote).unwrap();
        let how = provenance(&plan, &sources, &remote);
        assert!(
            how["backend"].starts_with(
                "promoted: localhost:5000/todo/todo-backend:sha-abcdef0 (sha256:b1) was pulled"
            ),
            "{}",
            how["backend"]
        );
        assert!(
            how["frontend"].starts_with("built: localhost:5000/todo/todo-frontend:sha-abcdef0 in the registry was made from revision"),
            "{}",
            how["frontend"]
        );
        assert!(how["frontend"].contains("as version 1.0.0, not from"));
        let none = provenance(
            &plan,
            &assess(&plan, &BTreeMap::new()).unwrap(),
            &BTreeMap::new(),
        );
        assert!(none["backend"].starts_with("built: the registry holds no "));
    }
}
