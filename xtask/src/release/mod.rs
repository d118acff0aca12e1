//! `cargo xtask release v1.0.1`: a checked, all-or-nothing release to a registry.
//!
//! The command first gathers facts without changing anything (git, the release records, the
//! environment file, what the registry holds) and turns them into a plan and a list of refusals
//! ([`plan`], pure). Any refusal stops it there, all of them reported at once. Otherwise it builds
//! both images with the release's version in their tags and labels, runs the smoke checks on
//! exactly those images, and only then pushes: every `sha-` tag, then every version tag, then
//! `latest`. It reads each pushed manifest back, compares digests and config with the local
//! images, pulls one back by digest, writes the release record and makes the annotated git tag.
//!
//! A run that stops halfway (a registry gone, Ctrl-C) says what the registry holds now. Running
//! the same command again completes the release: an image of this version and revision found in
//! the registry is reused rather than rebuilt, so every tag of the release names one digest.

pub(crate) mod plan;
mod record;
pub(crate) mod registry;
mod sign;

pub use plan::parse_version;
pub use sign::KeygenCmd;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

use crate::bases;
use crate::build::{self, short_id, Progress};
use crate::config::{BaseMode, Config};
use crate::deploy::overlay;
use crate::env;
use crate::git::GitInfo;
use crate::interrupt;
use crate::platform::Platform;
use plan::{Push, ReleasePlan, Remote, Source};
use record::{Record, RecordImage};
use registry::Failure;

/// The SBOM format of a release: what syft writes beside the record and cosign attests.
const SBOM_FORMAT: crate::sbom::Format = crate::sbom::Format::SpdxJson;

/// Where the release's build keeps its logs, apart from `cargo xtask build`'s.
const BUILD_DIR: &str = "target/xtask/release";

/// A test hook, `N:PATH`: after its Nth push the release creates PATH and waits until it is
/// removed, so that a test can take the registry away at a known point of the push phase.
const PAUSE_HOOK: &str = "TODO_RELEASE_PAUSE";

#[derive(Debug, Args)]
pub struct ReleaseCmd {
    /// The version to release: v<MAJOR>.<MINOR>.<PATCH>[-PRERELEASE], e.g. v1.0.1 or v1.1.0-rc.1.
    version: String,
    /// Print the whole plan and the result of every check that changes nothing; build, push,
    /// write and tag nothing.
    #[arg(long)]
    dry_run: bool,
    /// Release even when the version is not greater than the newest release.
    #[arg(long)]
    force: bool,
    /// Release a working tree with uncommitted changes (the sha- tag ends in -dirty).
    #[arg(long)]
    allow_dirty: bool,
    /// Make no annotated git tag at the end.
    #[arg(long)]
    no_git_tag: bool,
    /// The environment file to check, relative to the repository root (default: `.env`).
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
    /// The platforms to release, comma-separated (`linux/amd64,linux/arm64`; default:
    /// project.toml's `build.platforms`, else this host's alone). More than the host's needs
    /// the engine's containerd image store; each image is then one image index in the registry.
    #[arg(long, value_name = "LIST")]
    platform: Option<String>,
    /// Where base images come from (default: project.toml's `bases.mode`, or TODO_BASES).
    #[arg(long, value_enum)]
    bases: Option<BaseMode>,
    /// How to show the build's progress.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    progress: Progress,
    /// Print JSON on stdout: the plan with `--dry-run`, else the release record.
    #[arg(long)]
    json: bool,
    /// Release without signing: no cosign signature or SBOM attestation (the record says so).
    #[arg(long)]
    no_sign: bool,
}

impl ReleaseCmd {
    pub fn run(self, sh: &Shell, config: &Config) -> Result<()> {
        interrupt::install();
        let root = sh.current_dir();
        let git = GitInfo::read(sh)?;
        let git_tags = git_tags(sh)?;
        let records_dir = PathBuf::from(record::RECORDS_DIR);
        let recorded = record::recorded_versions(&root.join(&records_dir));
        let env_file = self
            .env_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(".env"));
        let report = env::check_file(&root.join(&env_file));
        let env_problems = (!report.is_ok()).then(|| report.render_text());
        let setting = registry_setting(&report, &env_file);
        // The platforms as `build` takes them; the store is asked only when more than the
        // host's are wanted (a dry run does not start the engine, so it may not answer).
        let platforms =
            build::platforms(self.platform.as_deref(), config).map_err(|e| format!("{e:#}"));
        let store = match &platforms {
            Ok(list) if list != &[Platform::host()] => crate::store::answered_store(),
            _ => None,
        };
        let inputs = plan::Inputs {
            version: &self.version,
            git: &git,
            git_tags: &git_tags,
            recorded: &recorded,
            registry: setting.value.as_deref(),
            registry_source: &setting.source,
            registry_error: setting.error.as_deref(),
            env_problems: env_problems.as_deref(),
            env_file: &env_file,
            platforms,
            host_platform: Platform::host(),
            store,
            force: self.force,
            allow_dirty: self.allow_dirty,
            git_tag: !self.no_git_tag,
            git_identity: self.no_git_tag || git_identity(sh),
            records_dir: &records_dir,
        };
        let planned = plan::plan(config, &inputs);
        let mut refusals = planned.refusals;
        let Some(mut plan) = planned.plan else {
            return refuse(&refusals, self.dry_run, None);
        };
        // Two places name a version besides the release; neither blocks it, both deserve a word.
        if let Some(value) = report.plain_value("VERSION") {
            if value != plan.tag {
                plan.notes.push(format!(
                    "{} sets VERSION={value}: compose runs that tag until it says {}",
                    env_file.display(),
                    plan.tag
                ));
            }
        }
        if config.project.version.to_string() != plan.version {
            plan.notes.push(format!(
                "project.toml says version {}: `cargo xtask build` tags local images with it \
                 until it says {}",
                config.project.version, plan.version
            ));
        }

        // The signing key, before anything is built: a release that could not be signed at
        // the end must not start.
        let key = if self.no_sign {
            None
        } else {
            match sign::find_key(&root, &env_file) {
                Ok(key) => Some(key),
                Err(message) => {
                    refusals.push(plan::Refusal {
                        check: "signing",
                        message,
                        fix: sign::KEYGEN_HINT.into(),
                    });
                    None
                }
            }
        };
        if let (Some(key), false) = (&key, self.dry_run) {
            let opened = sign::ensure_cosign(sh)
                .map_err(|e| format!("{e:#}"))
                .and_then(|()| sign::check_password(key));
            if let Err(message) = opened {
                refusals.push(plan::Refusal {
                    check: "signing",
                    message,
                    fix: "set COSIGN_PASSWORD to the key's password (environment or env file)"
                        .into(),
                });
            }
        }

        // What the registry holds decides between refusing, building and resuming. Asking needs
        // the docker CLI only; a real release needs the engine anyway, a dry run does not start it.
        if !self.dry_run {
            crate::engine::ensure(sh)?;
        }
        let remote = if which::which("docker").is_ok() {
            match query(&plan) {
                Ok(remote) => Some(remote),
                Err(refusal) => {
                    refusals.push(refusal);
                    None
                }
            }
        } else {
            refusals.push(plan::Refusal {
                check: "registry",
                message: "the docker CLI is missing, so the registry cannot be asked".into(),
                fix: crate::engine::INSTALL_HINT.into(),
            });
            None
        };
        let sources = match &remote {
            Some(remote) => match plan::assess(&plan, remote) {
                Ok(sources) => Some(sources),
                Err(found) => {
                    refusals.extend(found);
                    None
                }
            },
            None => None,
        };
        if self.dry_run {
            return dry_run(
                &plan,
                remote.as_ref(),
                sources.as_ref(),
                &refusals,
                self.json,
            );
        }
        let (Some(remote), Some(sources), true) = (remote, sources, refusals.is_empty()) else {
            return refuse(&refusals, false, Some(&plan));
        };
        self.release(sh, config, &plan, &remote, &sources, key.as_ref())
    }

    /// Everything after the checks: build, smoke, push, verify, record, tag.
    fn release(
        &self,
        sh: &Shell,
        config: &Config,
        plan: &ReleasePlan,
        remote: &BTreeMap<String, Remote>,
        sources: &BTreeMap<String, Source>,
        key: Option<&sign::Key>,
    ) -> Result<()> {
        let resumed = sources.values().any(|s| matches!(s, Source::Resume { .. }));
        let multi = plan.platforms.len() > 1;
        for note in &plan.notes {
            eprintln!("note: {note}");
        }
        eprintln!(
            "releasing {} of {} ({}) for {} to {}{}",
            plan.tag,
            config.project.name,
            plan.sha_tag,
            plan::platform_list(&plan.platforms),
            plan.registry.prefix,
            if resumed {
                ": reusing images the registry holds for this revision and version (resuming a \
                 release this revision started earlier, or promoting a CI job's `build --push`)"
            } else {
                ""
            }
        );
        let provenance = plan::provenance(plan, sources, remote);
        for (service, how) in &provenance {
            eprintln!("{service}: {how}");
        }
        let mut images: BTreeMap<String, Candidate> = BTreeMap::new();
        for image in &plan.images {
            if let Some(Source::Resume { digest, tag }) = sources.get(&image.service) {
                let pinned = format!("{}@{digest}", image.repository);
                let id = match registry::image_id(&pinned) {
                    Ok(id) if !multi || platforms_held(&id, &plan.platforms) => id,
                    _ if multi => {
                        // `docker pull` fetches one platform: each in turn, so that the
                        // engine holds the whole index, which the SBOMs and pushes read.
                        eprintln!("pulling {pinned}, pushed earlier as {tag}, to reuse it");
                        for platform in &plan.platforms {
                            registry::pull_platform(&pinned, platform.docker())?;
                        }
                        let id = registry::image_id(&pinned)?;
                        if !platforms_held(&id, &plan.platforms) {
                            bail!(
                                "{pinned} was pulled for {}, but the engine does not hold \
                                 every platform of it, so it cannot be reused: nothing was \
                                 pushed",
                                plan::platform_list(&plan.platforms)
                            );
                        }
                        id
                    }
                    _ => {
                        eprintln!("pulling {pinned}, pushed earlier as {tag}, to reuse it");
                        registry::pull(&pinned, registry::OnCtrlC::Stop)?
                    }
                };
                eprintln!(
                    "{}: reusing {} (already in the registry as {}:{tag})",
                    image.service,
                    short_id(&id),
                    image.repository
                );
                images.insert(
                    image.service.clone(),
                    Candidate {
                        platforms: if multi {
                            crate::store::platform_images(&id)?
                        } else {
                            vec![]
                        },
                        id,
                        build_seconds: None,
                        expected: Some(digest.clone()),
                    },
                );
            }
        }
        let to_build: Vec<&str> = plan
            .images
            .iter()
            .filter(|i| sources.get(&i.service) == Some(&Source::Build))
            .map(|i| i.service.as_str())
            .collect();
        if !to_build.is_empty() {
            let built = self.build(sh, config, plan, &to_build)?;
            images.extend(built);
        }

        let ids: BTreeMap<String, String> = images
            .iter()
            .map(|(service, c)| (service.clone(), c.id.clone()))
            .collect();
        eprintln!("running the smoke checks on {}", describe(&ids));
        crate::smoke::verify(sh, config, &ids).context(
            "the smoke checks failed on the release images: nothing was pushed; fix the \
             problem and run the same command again",
        )?;
        if interrupt::interrupted() {
            eprintln!("interrupted before any push: nothing was pushed");
            return Err(interrupt::Interrupted.into());
        }

        // Every release describes its images: the SBOMs are made with the build's files, are
        // attested when the release is signed, and go beside the record once it is written
        // (until then nothing under target/releases says that a release happened).
        let root = sh.current_dir();
        let sbom_dir = root.join(BUILD_DIR).join("sbom");
        eprintln!("writing the SBOMs of {} with syft", describe(&ids));
        let sboms = if multi {
            // One per platform, each describing exactly that platform's manifest.
            let syft = crate::sbom::ensure_syft(&root)?;
            let mut all = Vec::new();
            for (service, candidate) in &images {
                all.extend(
                    crate::sbom::make_platforms(
                        &syft,
                        service,
                        &candidate.id,
                        &candidate.platforms,
                        SBOM_FORMAT,
                        &sbom_dir,
                    )
                    .context("the SBOMs could not be made: nothing was pushed")?,
                );
            }
            all
        } else {
            crate::sbom::make_all(&root, &ids, SBOM_FORMAT, &sbom_dir)
                .context("the SBOMs could not be made: nothing was pushed")?
        };

        // Every reference is pointed at its image here, so that a reused image's missing tags
        // are pushed from the right image whatever the local tags said before.
        for image in &plan.images {
            for reference in image.references() {
                registry::tag(&images[&image.service].id, &reference)?;
            }
        }
        let digests = push_all(plan, sources, remote, &mut images)?;
        let mut record = verify(plan, &images, &digests, resumed)?;
        for image in &mut record.images {
            image.source = provenance.get(&image.service).cloned();
        }
        let record_sbom = |sbom: &crate::sbom::Sbom| {
            plan.record_file
                .with_extension("sbom")
                .join(sbom.file.file_name().unwrap_or_default())
        };
        for image in &mut record.images {
            if multi {
                sign_platforms(plan, key, image, &sboms, &record_sbom)?;
                continue;
            }
            let sbom = sboms
                .iter()
                .find(|s| s.service == image.service)
                .context("an image without its SBOM")?;
            let file = record_sbom(sbom);
            image.sbom = Some(file.clone());
            if let Some(key) = key {
                let signed = sign::sign_image(
                    key,
                    &plan.registry.host,
                    &image.repository,
                    &image.digest,
                    &sbom.file,
                    SBOM_FORMAT,
                )
                .with_context(|| not_signed(&image.pinned))?;
                image.signature = Some(sign::Signed {
                    sbom: Some(file.clone()),
                    ..signed
                });
            }
        }
        for sbom in &sboms {
            let to = root
                .join(plan.record_file.with_extension("sbom"))
                .join(sbom.file.file_name().unwrap_or_default());
            std::fs::create_dir_all(to.parent().context("an SBOM path without a folder")?)?;
            std::fs::copy(&sbom.file, &to).with_context(|| {
                format!("cannot copy {} to {}", sbom.file.display(), to.display())
            })?;
        }
        record.signed = key.is_some();
        if key.is_none() {
            record.unsigned = Some("released with --no-sign".into());
        }

        record::write(&root, &plan.record_file, &record)?;
        // The Kubernetes overlay beside the record: deploy/base pinned to these digests.
        let pinned = record
            .images
            .iter()
            .map(|i| (&*i.service, &*i.repository, &*i.digest));
        overlay::write(&root, &plan.record_file, &plan.tag, config, pinned)?;
        if let Some(tag) = &plan.git_tag {
            let message = record::tag_message(&record, &plan.record_file);
            cmd!(sh, "git tag -a {tag} -m {message}")
                .quiet()
                .run()
                .with_context(|| {
                    format!(
                        "the images are pushed and verified and {} is written, but the git tag \
                         {tag} could not be made: make it with `git tag -a {tag}`",
                        plan.record_file.display()
                    )
                })?;
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&record)?);
        } else {
            println!("{}", record::table(&record));
            println!(
                "released {}: {} tags pushed and verified, {}{}, record {}{}",
                plan.tag,
                plan.pushes.len(),
                if record.signed {
                    "signed and SBOM-attested with cosign"
                } else {
                    "unsigned (--no-sign)"
                },
                if plan.latest {
                    ""
                } else {
                    " (latest unchanged)"
                },
                plan.record_file.display(),
                match &plan.git_tag {
                    Some(tag) => format!(", git tag {tag} (push it with `git push origin {tag}`)"),
                    None => ", no git tag (--no-git-tag)".into(),
                }
            );
        }
        if interrupt::interrupted() {
            eprintln!(
                "Ctrl-C came after the release's tags were on their way to the registry: the \
                 release was completed rather than left half-published"
            );
            return Err(interrupt::Interrupted.into());
        }
        Ok(())
    }

    /// Builds the given services in parallel, tagged with their registry references only, so
    /// that a release never moves the local `todo-*:latest` that `build` and `up` use.
    fn build(
        &self,
        sh: &Shell,
        config: &Config,
        plan: &ReleasePlan,
        services: &[&str],
    ) -> Result<BTreeMap<String, Candidate>> {
        let selected: Vec<String> = services.iter().map(|s| s.to_string()).collect();
        let images = config.select(&selected)?;
        let mode = build::base_mode(self.bases, config)?;
        let multi = plan.platforms.len() > 1;
        let resolved = if multi {
            bases::resolve_platforms(sh, config, &images, mode, &plan.platforms)?
        } else {
            bases::resolve(sh, config, &images, mode)?
        };
        let git = GitInfo::read(sh)?;
        let version = semver::Version::parse(&plan.version)?;
        let mut inputs = crate::plan::PlanInputs::now(&version, &git, &resolved.args, BUILD_DIR)
            .with_context_revisions(sh, &images)?
            .with_build_seed(sh)?;
        if multi {
            inputs.platforms = plan.platforms.clone();
        }
        let mut build_plan = crate::plan::build_plan(config, &images, &inputs);
        for image in &mut build_plan.images {
            let release = plan
                .images
                .iter()
                .find(|i| i.service == image.service)
                .context("a built service missing from the release plan")?;
            image.tags = release.references();
        }
        sh.create_dir(BUILD_DIR)?;
        eprintln!(
            "building {} at {} for {} on {} bases",
            services.join(" and "),
            plan.tag,
            plan::platform_list(&plan.platforms),
            resolved.mode
        );
        let report = build::execute(sh, &build_plan, self.progress)?;
        if report.interrupted {
            eprintln!("interrupted during the build: nothing was pushed");
            return Err(interrupt::Interrupted.into());
        }
        let failed: Vec<String> = report
            .images
            .iter()
            .filter(|i| !i.ok)
            .map(|i| {
                format!(
                    "{}: {} (log: {})",
                    i.service,
                    i.error.as_deref().unwrap_or("failed"),
                    i.log_file.display()
                )
            })
            .collect();
        if !failed.is_empty() {
            bail!(
                "the release build failed, so nothing was pushed:\n  {}",
                failed.join("\n  ")
            );
        }
        report
            .images
            .iter()
            .map(|i| {
                let id = i.id.clone().context("a built image without an id")?;
                eprintln!(
                    "{}: built {} in {:.1}s",
                    i.service,
                    short_id(&id),
                    i.seconds
                );
                Ok((
                    i.service.clone(),
                    Candidate {
                        id,
                        build_seconds: Some(i.seconds),
                        expected: None,
                        platforms: i.platforms.clone(),
                    },
                ))
            })
            .collect()
    }
}

/// The image a service releases, and the digest every one of its tags must name once known.
struct Candidate {
    id: String,
    build_seconds: Option<f64>,
    expected: Option<String>,
    /// Each platform's manifest digest and size, for an image of several platforms (the
    /// local image id is then the index's digest).
    platforms: Vec<crate::store::PlatformImage>,
}

/// True when the local image `id` holds an image for every platform.
fn platforms_held(id: &str, platforms: &[Platform]) -> bool {
    crate::store::platform_images(id).is_ok_and(|found| {
        platforms
            .iter()
            .all(|p| found.iter().any(|f| f.platform == p.docker()))
    })
}

fn not_signed(pinned: &str) -> String {
    format!(
        "the images are pushed, but {pinned} could not be signed: nothing was recorded and no \
         git tag was made; run the same command again to sign what is not signed yet"
    )
}

/// Signs an image index with cosign `--recursive` (the index and each manifest it lists),
/// attests each platform's SBOM to that platform's manifest digest, and verifies the index's
/// and every platform's signature and every attestation with the public key.
fn sign_platforms(
    plan: &ReleasePlan,
    key: Option<&sign::Key>,
    image: &mut RecordImage,
    sboms: &[crate::sbom::Sbom],
    record_sbom: &dyn Fn(&crate::sbom::Sbom) -> PathBuf,
) -> Result<()> {
    let arch_sbom = |platform: &str| {
        let arch = platform.rsplit('/').next().unwrap_or_default();
        let name = format!("{}-{arch}.{}", image.service, SBOM_FORMAT.extension());
        sboms
            .iter()
            .find(|s| s.service == image.service && s.file.file_name().is_some_and(|f| *f == *name))
            .with_context(|| format!("{} {platform} has no SBOM", image.service))
    };
    let host = Platform::host().docker();
    let host_sbom = arch_sbom(host)?;
    image.sbom = Some(record_sbom(host_sbom));
    let Some(key) = key else {
        for p in &mut image.platforms {
            p.sbom = Some(record_sbom(arch_sbom(&p.platform)?));
        }
        return Ok(());
    };
    let manifests: Vec<(String, PathBuf)> = image
        .platforms
        .iter()
        .map(|p| Ok((p.manifest.clone(), arch_sbom(&p.platform)?.file.clone())))
        .collect::<Result<_>>()?;
    let (index, platforms) = sign::sign_index(
        key,
        &plan.registry.host,
        &image.repository,
        &image.digest,
        &manifests,
        SBOM_FORMAT,
    )
    .with_context(|| not_signed(&image.pinned))?;
    image.signature = Some(index);
    for (p, signed) in image.platforms.iter_mut().zip(platforms) {
        let file = record_sbom(arch_sbom(&p.platform)?);
        p.sbom = Some(file.clone());
        p.signature = Some(sign::Signed {
            sbom: Some(file),
            ..signed
        });
    }
    Ok(())
}

/// Where `DOCKER_REGISTRY` came from, as compose reads it: the process environment wins over the
/// environment file.
struct Setting {
    value: Option<String>,
    source: String,
    error: Option<String>,
}

fn registry_setting(report: &env::Report, env_file: &Path) -> Setting {
    if let Some(value) = std::env::var("DOCKER_REGISTRY")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        let checked = env::check_vars([("DOCKER_REGISTRY", value.as_str())]);
        let error = checked
            .errors()
            .filter(|p| p.variable.as_deref() == Some("DOCKER_REGISTRY"))
            .map(|p| format!("{} ({})", p.message, p.fix))
            .next();
        return Setting {
            value: Some(value),
            source: "DOCKER_REGISTRY in the environment".into(),
            error,
        };
    }
    Setting {
        value: report
            .plain_value("DOCKER_REGISTRY")
            .filter(|v| !v.trim().is_empty())
            .map(str::to_string),
        source: format!("DOCKER_REGISTRY in {}", env_file.display()),
        error: None,
    }
}

fn git_tags(sh: &Shell) -> Result<Vec<String>> {
    let out = cmd!(sh, "git tag --list")
        .quiet()
        .read()
        .context("cannot list the git tags")?;
    Ok(out.lines().map(|l| l.trim().to_string()).collect())
}

fn git_identity(sh: &Shell) -> bool {
    cmd!(sh, "git var GIT_COMMITTER_IDENT")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

/// Asks the registry about every reference of the release; the first question it cannot answer
/// becomes the refusal (unreachable, credentials refused, or docker's own message).
fn query(plan: &ReleasePlan) -> Result<BTreeMap<String, Remote>, plan::Refusal> {
    let mut remote = BTreeMap::new();
    for image in &plan.images {
        for reference in image.references() {
            match registry::inspect(&reference) {
                Ok(state) => {
                    remote.insert(reference, state);
                }
                Err(failure) => return Err(registry_refusal(plan, &failure)),
            }
        }
    }
    Ok(remote)
}

fn registry_refusal(plan: &ReleasePlan, failure: &Failure) -> plan::Refusal {
    let registry = &plan.registry;
    match failure {
        Failure::Unreachable(detail) => plan::Refusal {
            check: "registry",
            message: format!(
                "the registry {} ({}) is unreachable: {detail}",
                registry.host, plan.registry_source
            ),
            fix: format!(
                "start the registry or correct DOCKER_REGISTRY; a plain-HTTP registry must be on \
                 127.0.0.0/8 or in the engine's insecure-registries (now: {})",
                registry.value
            ),
        },
        Failure::Credentials(detail) => plan::Refusal {
            check: "credentials",
            message: format!(
                "the registry {} refuses our credentials: {detail}",
                registry.host
            ),
            fix: format!(
                "log in with `{}` (the credentials stay in Docker's credential store), then run \
                 again",
                registry.login_command()
            ),
        },
        Failure::Other(detail) => plan::Refusal {
            check: "registry",
            message: format!("cannot ask the registry {}: {detail}", registry.host),
            fix: "check DOCKER_REGISTRY and that the registry speaks the v2 API".into(),
        },
    }
}

/// Prints the refusals and fails; nothing has been changed at this point.
fn refuse(refusals: &[plan::Refusal], dry_run: bool, plan: Option<&ReleasePlan>) -> Result<()> {
    for refusal in refusals {
        eprintln!("{refusal}");
    }
    let what = plan.map(|p| p.tag.as_str()).unwrap_or("the release");
    if dry_run {
        bail!(
            "{what} would be refused ({} found); dry run: nothing was built, pushed, written or \
             tagged",
            crate::env::plural(refusals.len(), "problem")
        );
    }
    bail!(
        "refusing to release {what}: {} above; nothing was built, pushed, written or tagged",
        crate::env::plural(refusals.len(), "problem")
    )
}

/// `--dry-run`: the plan, what the registry holds, and the verdict; nothing is changed.
fn dry_run(
    plan: &ReleasePlan,
    remote: Option<&BTreeMap<String, Remote>>,
    sources: Option<&BTreeMap<String, Source>>,
    refusals: &[plan::Refusal],
    json: bool,
) -> Result<()> {
    if json {
        let out = serde_json::json!({
            "plan": plan,
            "registry_now": remote,
            "sources": sources,
            "refusals": refusals,
            "ok": refusals.is_empty(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render_plan(plan, remote, sources));
    }
    if !refusals.is_empty() {
        return refuse(refusals, true, Some(plan));
    }
    eprintln!("dry run: nothing was built, pushed, written or tagged");
    Ok(())
}

fn render_plan(
    plan: &ReleasePlan,
    remote: Option<&BTreeMap<String, Remote>>,
    sources: Option<&BTreeMap<String, Source>>,
) -> String {
    let mut out = format!(
        "release {} (revision {}{}), previous release: {}\n",
        plan.tag,
        plan.revision,
        if plan.dirty {
            ", with uncommitted changes"
        } else {
            ""
        },
        plan.previous
            .as_deref()
            .map(|v| format!("v{v}"))
            .unwrap_or_else(|| "none".into())
    );
    out.push_str(&format!(
        "registry: {} ({}), repositories under {}\n",
        plan.registry.value, plan.registry_source, plan.registry.prefix
    ));
    out.push_str(&format!(
        "platforms: {}{}\n",
        plan::platform_list(&plan.platforms),
        if plan.platforms.len() > 1 {
            " (one image index per image)"
        } else {
            ""
        }
    ));
    if let Some(note) = &plan.latest_note {
        out.push_str(&format!("latest: not moved: {note}\n"));
    }
    for note in &plan.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out.push_str("images:\n");
    for image in &plan.images {
        let source = match sources.and_then(|s| s.get(&image.service)) {
            Some(Source::Build) => "build now".to_string(),
            Some(Source::Resume { digest, tag }) => {
                format!("reuse {digest}, pushed earlier as {tag}")
            }
            None => "not decided (the registry was not asked)".into(),
        };
        out.push_str(&format!(
            "  {}: {} -> {} [{}]\n",
            image.service, image.image, image.repository, source
        ));
    }
    out.push_str("pushes, in order:\n");
    for push in &plan.pushes {
        let now = match remote.and_then(|r| r.get(&push.reference)) {
            Some(Remote::Present { digest, .. }) => format!("registry has {digest}"),
            Some(Remote::Absent) => "registry has none".into(),
            None => "registry not asked".into(),
        };
        out.push_str(&format!("  {}  ({now})\n", push.reference));
    }
    out.push_str(&format!(
        "then: release record {}, {}\n",
        plan.record_file.display(),
        match &plan.git_tag {
            Some(tag) => format!("annotated git tag {tag}"),
            None => "no git tag (--no-git-tag)".into(),
        }
    ));
    out.push_str("checks, in order:\n");
    for check in &plan.checks {
        out.push_str(&format!("  - {check}\n"));
    }
    out
}

/// Pushes what is missing, in the plan's order. Returns each service's digest; on failure says
/// exactly what the registry holds now and how to finish.
fn push_all(
    plan: &ReleasePlan,
    sources: &BTreeMap<String, Source>,
    remote: &BTreeMap<String, Remote>,
    images: &mut BTreeMap<String, Candidate>,
) -> Result<BTreeMap<String, String>> {
    let mut confirmed: Vec<(&Push, String)> = Vec::new();
    let mut pushed = 0;
    // The release's own tags (the version, then `latest`) are published as one: once the first
    // of them is in the registry or on its way, Ctrl-C no longer stops the pushes, so that the
    // registry never holds the version for one image and not for the other. They come after the
    // revision's `sha-` tags, which carry the layers, so what is left then is manifests only: a
    // moment. A `sha-` push is stopped by Ctrl-C; a later run reuses what it stored.
    let mut publishing = false;
    for (push, done) in plan::pending(plan, sources, remote) {
        let candidate = images
            .get_mut(&push.service)
            .context("a pushed service has no image")?;
        let release_tag = push.tag != plan.sha_tag;
        if done {
            let digest = candidate.expected.clone().unwrap_or_default();
            eprintln!("already in the registry: {} ({digest})", push.reference);
            confirmed.push((push, digest));
            publishing |= release_tag;
            continue;
        }
        if interrupt::interrupted() && !publishing {
            report_stop(plan, &confirmed, push, "interrupted");
            return Err(interrupt::Interrupted.into());
        }
        publishing |= release_tag;
        let on_ctrl_c = match publishing {
            true => registry::OnCtrlC::Finish,
            false => registry::OnCtrlC::Stop,
        };
        eprintln!("pushing {}", push.reference);
        let started = std::time::Instant::now();
        let digest = match registry::push(&push.reference, on_ctrl_c) {
            Ok(digest) => digest,
            Err(_) if interrupt::interrupted() && !publishing => {
                report_stop(plan, &confirmed, push, "interrupted");
                return Err(interrupt::Interrupted.into());
            }
            Err(err) => {
                report_stop(plan, &confirmed, push, &format!("{err:#}"));
                bail!(
                    "the push of {} failed: {err:#}; run the same command again to complete \
                     the release",
                    push.reference
                );
            }
        };
        eprintln!(
            "pushed {} {digest} in {:.1}s",
            push.reference,
            started.elapsed().as_secs_f64()
        );
        match &candidate.expected {
            Some(expected) if *expected != digest => {
                report_stop(
                    plan,
                    &confirmed,
                    push,
                    &format!("it was stored as {digest}, not {expected} like its other tags"),
                );
                bail!(
                    "{} was stored as {digest}, but the release's other tags of {} name \
                     {expected}",
                    push.reference,
                    push.service
                );
            }
            Some(_) => {}
            None => candidate.expected = Some(digest.clone()),
        }
        confirmed.push((push, digest));
        pushed += 1;
        pause_hook(pushed);
    }
    Ok(images
        .iter()
        .map(|(s, c)| (s.clone(), c.expected.clone().unwrap_or_default()))
        .collect())
}

/// The test hook [`PAUSE_HOOK`].
fn pause_hook(pushed: usize) {
    let Ok(value) = std::env::var(PAUSE_HOOK) else {
        return;
    };
    let Some((n, path)) = value.split_once(':') else {
        return;
    };
    if n.parse() != Ok(pushed) {
        return;
    }
    let path = Path::new(path);
    if std::fs::write(path, format!("paused after push {pushed}\n")).is_err() {
        return;
    }
    eprintln!(
        "{PAUSE_HOOK}: paused after push {pushed} until {} is removed",
        path.display()
    );
    let start = std::time::Instant::now();
    while path.exists() && !interrupt::interrupted() && start.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Says, after a stop in the push phase, what the registry holds now (asked again when it
/// answers, else what this run confirmed), and that the same command completes the release.
fn report_stop(plan: &ReleasePlan, confirmed: &[(&Push, String)], failed: &Push, why: &str) {
    eprintln!(
        "\nthe release stopped at the push of {}: {why}",
        failed.reference
    );
    let mut now: Vec<String> = Vec::new();
    let mut answered = true;
    for push in &plan.pushes {
        match registry::inspect(&push.reference) {
            Ok(Remote::Present {
                digest, version, ..
            }) => {
                let whose = if version.as_deref() == Some(plan.version.as_str()) {
                    format!("this release, {}", plan.tag)
                } else {
                    format!(
                        "an earlier image, version {}",
                        version.as_deref().unwrap_or("unknown")
                    )
                };
                now.push(format!("  {}  {digest}  ({whose})", push.reference));
            }
            Ok(Remote::Absent) => now.push(format!("  {}  absent", push.reference)),
            Err(_) => {
                answered = false;
                break;
            }
        }
    }
    if answered {
        eprintln!("the registry holds now:");
        for line in now {
            eprintln!("{line}");
        }
    } else {
        eprintln!(
            "the registry does not answer now; this run confirmed these pushes, which it holds \
             unless it lost them:"
        );
        if confirmed.is_empty() {
            eprintln!("  (none)");
        }
        for (push, digest) in confirmed {
            eprintln!("  {}  {digest}", push.reference);
        }
        let done: Vec<&str> = confirmed
            .iter()
            .map(|(p, _)| p.reference.as_str())
            .collect();
        eprintln!("not pushed by this run (the first may be partly uploaded):");
        for push in plan
            .pushes
            .iter()
            .filter(|p| !done.contains(&p.reference.as_str()))
        {
            eprintln!("  {}", push.reference);
        }
    }
    let latest_moved = confirmed.iter().any(|(p, _)| p.tag == "latest");
    if plan.latest && !latest_moved {
        eprintln!("`latest` was not moved: it still names the previous release");
    }
    let args: Vec<String> = std::env::args().skip(1).map(|a| shell_word(&a)).collect();
    eprintln!(
        "nothing was recorded and no git tag was made. Run the same command again to complete \
         the release: `cargo xtask {}`; it reuses the images already pushed (same digests) and \
         pushes only what is missing",
        args.join(" ")
    );
}

fn shell_word(arg: &str) -> String {
    if arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// Reads every pushed tag back: its manifest digest must be the service's digest and its config
/// the local image; then pulls one image back by digest. Returns the release record.
fn verify(
    plan: &ReleasePlan,
    images: &BTreeMap<String, Candidate>,
    digests: &BTreeMap<String, String>,
    resumed: bool,
) -> Result<Record> {
    eprintln!("verifying: reading every pushed manifest back from the registry");
    let mut problems = Vec::new();
    let mut records = Vec::new();
    for image in &plan.images {
        let candidate = &images[&image.service];
        let digest = &digests[&image.service];
        let mut pushed_bytes = 0;
        for reference in image.references() {
            match registry::inspect(&reference) {
                Ok(Remote::Present { digest: d, .. }) if d == *digest => {}
                Ok(Remote::Present { digest: d, .. }) => problems.push(format!(
                    "{reference} names {d} in the registry, not the pushed {digest}"
                )),
                Ok(Remote::Absent) => {
                    problems.push(format!("{reference} is not in the registry after its push"))
                }
                Err(failure) => problems.push(format!(
                    "cannot read {reference} back: {}",
                    failure.detail()
                )),
            }
        }
        let pinned = format!("{}@{digest}", image.repository);
        let mut platforms = Vec::new();
        if !candidate.platforms.is_empty() {
            // An image index: the local image id is the index's digest, and the registry's index
            // lists each platform with exactly the manifest the build made.
            if *digest != candidate.id {
                problems.push(format!(
                    "{pinned} is not the local image index {}",
                    candidate.id
                ));
            }
            if let Err(err) =
                build::verify_platforms(&image.reference(&plan.tag), digest, &candidate.platforms)
            {
                problems.push(format!("{err:#}"));
            }
            for p in &candidate.platforms {
                let manifest_pinned = format!("{}@{}", image.repository, p.manifest);
                let bytes = match registry::raw_manifest(&manifest_pinned) {
                    Ok(m) => m.stored_bytes(),
                    Err(err) => {
                        problems.push(format!("{err:#}"));
                        0
                    }
                };
                pushed_bytes += bytes;
                platforms.push(record::RecordPlatform {
                    platform: p.platform.clone(),
                    manifest: p.manifest.clone(),
                    pinned: manifest_pinned,
                    size_bytes: p.size_bytes,
                    pushed_bytes: bytes,
                    sbom: None,
                    signature: None,
                });
            }
        } else {
            match registry::raw_manifest(&pinned) {
                Ok(index) if index.config.is_none() && !index.manifests.is_empty() => {
                    // The containerd image store pushes a single-platform image as an index
                    // too (its manifest and BuildKit's attestation), whose digest is the local
                    // image id.
                    if *digest != candidate.id {
                        problems.push(format!(
                            "{pinned} is not the local image index {}",
                            candidate.id
                        ));
                    }
                    for listed in &index.manifests {
                        let manifest_pinned = format!("{}@{}", image.repository, listed.digest);
                        match registry::raw_manifest(&manifest_pinned) {
                            Ok(m) => pushed_bytes += m.stored_bytes(),
                            Err(err) => problems.push(format!("{err:#}")),
                        }
                    }
                }
                Ok(manifest) => {
                    let config = manifest.config.clone().unwrap_or_default();
                    if config.digest != candidate.id {
                        problems.push(format!(
                            "{pinned} holds the config {}, not the local image {}",
                            config.digest, candidate.id
                        ));
                    }
                    pushed_bytes = manifest.stored_bytes();
                }
                Err(err) => problems.push(format!("{err:#}")),
            }
        }
        let (size_bytes, labels, repo_digests) = registry::local_image(&candidate.id)?;
        // An index's size is its biggest platform's, each measured alone (as `build` reports).
        let size_bytes = candidate
            .platforms
            .iter()
            .map(|p| p.size_bytes)
            .max()
            .unwrap_or(size_bytes);
        let expected = format!("{}@{digest}", plan::familiar(&image.repository));
        if !repo_digests.iter().any(|d| plan::familiar(d) == expected) {
            problems.push(format!(
                "the local image {} does not know itself as {expected} (RepoDigests: {})",
                candidate.id,
                repo_digests.join(", ")
            ));
        }
        records.push(RecordImage {
            service: image.service.clone(),
            repository: image.repository.clone(),
            digest: digest.clone(),
            pinned,
            references: image.references(),
            id: candidate.id.clone(),
            size_bytes,
            pushed_bytes,
            build_seconds: candidate.build_seconds,
            labels,
            source: None,
            sbom: None,
            signature: None,
            platforms,
        });
    }
    // One image comes back by digest through the engine, as a deployment would fetch it. The
    // smaller one is enough: the read path is the same for both.
    if let Some(smallest) = records.iter().min_by_key(|r| r.pushed_bytes) {
        // The release's tags are in the registry by now: Ctrl-C lets the release finish.
        match registry::pull(&smallest.pinned, registry::OnCtrlC::Finish) {
            Ok(id) if id == smallest.id => {
                eprintln!("pulled {} back: image {}", smallest.pinned, short_id(&id))
            }
            Ok(id) => problems.push(format!(
                "pulling {} gave the image {id}, not {}",
                smallest.pinned, smallest.id
            )),
            Err(err) => problems.push(format!("{err:#}")),
        }
    }
    if !problems.is_empty() {
        bail!(
            "the registry does not hold what was pushed:\n  {}\nnothing was recorded and no git \
             tag was made; run the same command again once the registry is sound",
            problems.join("\n  ")
        );
    }
    Ok(Record {
        version: plan.version.clone(),
        tag: plan.tag.clone(),
        prerelease: plan.prerelease,
        previous: plan.previous.clone(),
        revision: plan.revision.clone(),
        dirty: plan.dirty,
        created: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        registry: plan.registry.value.clone(),
        resumed,
        latest: plan.latest,
        git_tag: plan.git_tag.clone(),
        images: records,
        signed: false,
        unsigned: None,
    })
}

fn describe(ids: &BTreeMap<String, String>) -> String {
    ids.iter()
        .map(|(s, id)| format!("{s} {}", short_id(id)))
        .collect::<Vec<_>>()
        .join(", ")
}
