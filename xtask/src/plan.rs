//! The build plan: everything a build will do, computed as plain data before anything runs, so
//! that `--print` can show it and unit tests can check it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::{Config, Image};
use crate::git::GitInfo;

#[derive(Debug, Clone, Serialize)]
pub struct BuildPlan {
    pub version: String,
    pub revision: String,
    pub created: String,
    pub images: Vec<ImagePlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImagePlan {
    pub service: String,
    pub image: String,
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub build_args: BTreeMap<String, String>,
    /// The file passed as the BuildKit secret `ca`, when the host has a proxy CA.
    pub ca_secret: Option<PathBuf>,
    /// The file passed as the BuildKit secret `build_seed` (see `PlanInputs::with_build_seed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed_secret: Option<PathBuf>,
    pub no_cache: bool,
    /// The registry cache this image imports (`type=registry,ref=...`).
    pub cache_from: Option<String>,
    /// The registry cache this image exports, every layer (`mode=max`).
    pub cache_to: Option<String>,
    /// The buildx builder the build runs on; None for buildx's own choice.
    pub builder: Option<String>,
    pub budget_bytes: u64,
    pub log_file: PathBuf,
    pub metadata_file: PathBuf,
    /// The platforms of a multi-platform build; empty for the host's alone (no `--platform`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<crate::platform::Platform>,
}

/// What the plan depends on besides the project file and git.
#[derive(Debug, Clone)]
pub struct PlanInputs<'a> {
    pub version: &'a semver::Version,
    pub git: &'a GitInfo,
    pub created: String,
    /// Build argument -> base image reference, as resolved for this host.
    pub bases: &'a BTreeMap<String, String>,
    pub ca_secret: Option<PathBuf>,
    pub seed_secret: Option<PathBuf>,
    /// A one-way digest of the seed, passed as the build argument BUILD_SEED_ID: a secret's
    /// content is not part of BuildKit's cache key, so without it a build would reuse a step
    /// that another checkout ran with another seed.
    pub seed_id: Option<String>,
    pub no_cache: bool,
    /// The registry caches and the builder (see `build::remote`).
    pub remote: crate::build::remote::Remote,
    /// Where logs and metadata files go.
    pub out_dir: PathBuf,
    /// Context folder -> the revision that last changed it (`GitInfo::context_revision`); an
    /// image whose context is missing here gets the revision of HEAD.
    pub context_revisions: BTreeMap<PathBuf, String>,
    /// The platforms of a multi-platform build; empty for the host's alone.
    pub platforms: Vec<crate::platform::Platform>,
}

impl<'a> PlanInputs<'a> {
    /// The inputs of a build on this host now: created at the commit's time (so that building
    /// the same commit again gives the same image), the host's proxy CA (if any) passed as the
    /// secret `ca`, the layer cache used.
    pub fn now(
        version: &'a semver::Version,
        git: &'a GitInfo,
        bases: &'a BTreeMap<String, String>,
        out_dir: impl Into<PathBuf>,
    ) -> PlanInputs<'a> {
        PlanInputs {
            version,
            git,
            created: rfc3339(git.commit_time),
            bases,
            ca_secret: crate::engine::ca_bundle(),
            seed_secret: None,
            seed_id: None,
            no_cache: false,
            remote: Default::default(),
            out_dir: out_dir.into(),
            context_revisions: BTreeMap::new(),
            platforms: vec![],
        }
    }

    /// Adds the build seed: 32 random bytes kept in `target/xtask/build-seed` (made on first use,
    /// readable by its owner only) and passed as the BuildKit secret `build_seed`. Next.js makes
    /// its preview-mode and server-action keys at random on every build in a container; the
    /// frontend's Dockerfile derives them from this seed instead, so that the same commit gives
    /// the same image on this machine (and on any machine given the same file), while the keys
    /// stay unknown to whoever has only the sources.
    pub fn with_build_seed(mut self, sh: &xshell::Shell) -> Result<Self> {
        let path = sh.current_dir().join(SEED_FILE);
        let seed = build_seed(&path)?;
        let digest = sha1_smol::Sha1::from(&seed).digest().to_string();
        self.seed_id = Some(digest[..16].to_string());
        self.seed_secret = Some(path);
        Ok(self)
    }

    /// Adds the revision of each image's context, read from git.
    pub fn with_context_revisions(mut self, sh: &xshell::Shell, images: &[&Image]) -> Result<Self> {
        let contexts: Vec<&std::path::Path> = images.iter().map(|i| i.context.as_path()).collect();
        let revisions = self.git.context_revisions(sh, &contexts)?;
        for (context, revision) in contexts.into_iter().zip(revisions) {
            self.context_revisions
                .insert(context.to_path_buf(), revision);
        }
        Ok(self)
    }
}

/// The build seed's file, relative to the project root.
pub const SEED_FILE: &str = "target/xtask/build-seed";

/// The seed in `path`, made first when there is none. A new seed is written to a file of its
/// own and linked into place, which fails when another process got there first: builds that
/// start at once in a fresh checkout (the test suites' do) then all read the one seed that won,
/// where creating the file in place had failed the second ("File exists") or let it read the
/// first's before its bytes were written, and so build with another seed id.
fn build_seed(path: &Path) -> Result<Vec<u8>> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    if !path.is_file() {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let dir = path.parent().unwrap_or(path);
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Named after the process and the seed's first bytes, so that no two writers share it.
        let new = path.with_extension(format!("new-{}-{}", std::process::id(), &hex[..8]));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&new)
            .and_then(|mut file| file.write_all(hex.as_bytes()))
            .with_context(|| format!("cannot write {}", new.display()));
        let linked = written.and_then(|()| match std::fs::hard_link(&new, path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                Err(e).with_context(|| format!("cannot write {}", path.display()))
            }
            _ => Ok(()),
        });
        let _ = std::fs::remove_file(&new);
        linked?;
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Seconds since the Unix epoch as an RFC 3339 time in UTC.
pub fn rfc3339(seconds: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

pub fn build_plan(config: &Config, images: &[&Image], inputs: &PlanInputs) -> BuildPlan {
    let images = images
        .iter()
        .map(|image| {
            let build_args = image
                .bases
                .keys()
                .filter_map(|arg| inputs.bases.get(arg).map(|r| (arg.clone(), r.clone())))
                .chain([
                    ("APP_VERSION".to_string(), inputs.version.to_string()),
                    // BuildKit sets the image's and its history's times from this argument. A
                    // changed value changes only the image config, never a step's cache key
                    // (unless a Dockerfile declares it).
                    (
                        "SOURCE_DATE_EPOCH".to_string(),
                        inputs.git.commit_time.to_string(),
                    ),
                    (
                        "CONTEXT_REVISION".to_string(),
                        inputs
                            .context_revisions
                            .get(&image.context)
                            .cloned()
                            .unwrap_or_else(|| inputs.git.short()),
                    ),
                ])
                .chain(
                    inputs
                        .seed_id
                        .clone()
                        .map(|id| ("BUILD_SEED_ID".to_string(), id)),
                )
                .collect();
            ImagePlan {
                service: image.service.clone(),
                image: image.image.clone(),
                context: image.context.clone(),
                dockerfile: image.dockerfile.clone(),
                tags: tags(&image.image, inputs.version, inputs.git),
                labels: labels(config, image, inputs),
                build_args,
                ca_secret: inputs.ca_secret.clone(),
                seed_secret: inputs.seed_secret.clone(),
                no_cache: inputs.no_cache,
                cache_from: inputs
                    .remote
                    .cache_ref(inputs.remote.cache_from.as_deref(), image),
                cache_to: inputs
                    .remote
                    .cache_ref(inputs.remote.cache_to.as_deref(), image),
                builder: inputs.remote.builder.clone(),
                budget_bytes: image.budget_bytes(),
                log_file: inputs.out_dir.join(format!("{}.log", image.service)),
                metadata_file: inputs
                    .out_dir
                    .join(format!("{}.metadata.json", image.service)),
                platforms: inputs.platforms.clone(),
            }
        })
        .collect();
    BuildPlan {
        version: inputs.version.to_string(),
        revision: inputs.git.revision.clone(),
        created: inputs.created.clone(),
        images,
    }
}

/// `latest`, `v<version>` and `sha-<short hash>`, in that order.
pub fn tags(image: &str, version: &semver::Version, git: &GitInfo) -> Vec<String> {
    vec![
        format!("{image}:latest"),
        format!("{image}:v{version}"),
        format!("{image}:sha-{}", git.short()),
    ]
}

pub fn labels(config: &Config, image: &Image, inputs: &PlanInputs) -> BTreeMap<String, String> {
    let source = inputs
        .git
        .origin
        .clone()
        .unwrap_or_else(|| config.project.source.clone());
    [
        (
            "org.opencontainers.image.version",
            inputs.version.to_string(),
        ),
        ("org.opencontainers.image.created", inputs.created.clone()),
        (
            "org.opencontainers.image.revision",
            inputs.git.revision.clone(),
        ),
        ("org.opencontainers.image.source", source),
        ("org.opencontainers.image.title", image.title.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl ImagePlan {
    /// The arguments after `docker`, for one `docker buildx build` of this image; the first is
    /// always `buildx`.
    pub fn buildx_args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["buildx", "build", "--progress=rawjson", "--load"]
            .map(String::from)
            .to_vec();
        args.push(format!("--file={}", self.dockerfile.display()));
        args.push(format!("--metadata-file={}", self.metadata_file.display()));
        for tag in &self.tags {
            args.push(format!("--tag={tag}"));
        }
        for (k, v) in &self.labels {
            args.push(format!("--label={k}={v}"));
        }
        for (k, v) in &self.build_args {
            args.push(format!("--build-arg={k}={v}"));
        }
        if let Some(ca) = &self.ca_secret {
            args.push(format!("--secret=id=ca,src={}", ca.display()));
        }
        if let Some(seed) = &self.seed_secret {
            args.push(format!("--secret=id=build_seed,src={}", seed.display()));
        }
        if self.no_cache {
            args.push("--no-cache".into());
        }
        if let Some(builder) = &self.builder {
            args.push(format!("--builder={builder}"));
        }
        if !self.platforms.is_empty() {
            let list: Vec<&str> = self.platforms.iter().map(|p| p.docker()).collect();
            args.push(format!("--platform={}", list.join(",")));
        }
        if let Some(cache) = &self.cache_from {
            args.push(format!("--cache-from=type=registry,ref={cache}"));
        }
        if let Some(cache) = &self.cache_to {
            args.push(format!("--cache-to=type=registry,ref={cache},mode=max"));
        }
        args.push(self.context.display().to_string());
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_FILE;

    fn config() -> Config {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap();
        Config::load(&root.join(DEFAULT_FILE)).unwrap()
    }

    #[test]
    fn builds_that_start_at_once_in_a_fresh_checkout_share_one_seed() {
        let dir = std::env::temp_dir().join(format!("xtask-seed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join(SEED_FILE);
        for _ in 0..20 {
            let _ = std::fs::remove_file(&path);
            let start = std::sync::Barrier::new(8);
            let seeds: Vec<Vec<u8>> = std::thread::scope(|s| {
                let runs: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            build_seed(&path)
                        })
                    })
                    .collect();
                runs.into_iter()
                    .map(|r| r.join().unwrap().unwrap())
                    .collect()
            });
            assert_eq!(seeds[0].len(), 64, "a whole seed is read");
            assert!(seeds.iter().all(|s| *s == seeds[0]), "one seed for all");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("build-seed")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn git(dirty: bool) -> GitInfo {
        GitInfo {
            revision: "abcdef0123456789abcdef0123456789abcdef01".into(),
            dirty,
            origin: None,
            ..Default::default()
        }
    }

    fn plan(dirty: bool, ca: Option<PathBuf>) -> BuildPlan {
        let config = config();
        let version = semver::Version::new(1, 0, 1);
        let git = git(dirty);
        let bases: BTreeMap<String, String> = [
            ("NODE_BUILD_IMAGE", "todo-base/node-build:1"),
            ("NODE_RUNTIME_IMAGE", "todo-base/node-runtime:1"),
            ("PYTHON_BUILD_IMAGE", "todo-base/python-build:1"),
            ("PYTHON_RUNTIME_IMAGE", "todo-base/python-runtime:1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let inputs = PlanInputs {
            version: &version,
            git: &git,
            created: "2026-11-25T18:00:00Z".into(),
            bases: &bases,
            ca_secret: ca,
            seed_secret: None,
            seed_id: None,
            no_cache: false,
            remote: Default::default(),
            out_dir: "target/xtask/build".into(),
            context_revisions: BTreeMap::new(),
            platforms: vec![],
        };
        let images: Vec<&Image> = config.images.iter().collect();
        build_plan(&config, &images, &inputs)
    }

    #[test]
    fn only_a_multi_platform_build_names_platforms() {
        let mut plan = plan(false, None);
        let image = &mut plan.images[0];
        assert!(!image
            .buildx_args()
            .iter()
            .any(|a| a.starts_with("--platform")));
        image.platforms = vec![
            crate::platform::Platform::Amd64,
            crate::platform::Platform::Arm64,
        ];
        assert!(image
            .buildx_args()
            .contains(&"--platform=linux/amd64,linux/arm64".to_string()));
    }

    #[test]
    fn tags_carry_latest_version_and_hash() {
        let plan = plan(false, None);
        assert_eq!(
            plan.images[0].tags,
            [
                "todo-frontend:latest",
                "todo-frontend:v1.0.1",
                "todo-frontend:sha-abcdef0"
            ]
        );
        let dirty = plan_dirty_backend_tags();
        assert_eq!(dirty[2], "todo-backend:sha-abcdef0-dirty");
    }

    fn plan_dirty_backend_tags() -> Vec<String> {
        plan(true, None).images[1].tags.clone()
    }

    #[test]
    fn labels_are_the_oci_five() {
        let plan = plan(false, None);
        let labels = &plan.images[1].labels;
        assert_eq!(labels["org.opencontainers.image.version"], "1.0.1");
        assert_eq!(
            labels["org.opencontainers.image.created"],
            "2026-11-25T18:00:00Z"
        );
        assert_eq!(
            labels["org.opencontainers.image.revision"],
            git(false).revision
        );
        assert_eq!(
            labels["org.opencontainers.image.source"],
            "https://github.com/todo-chatbot/todo-chatbot"
        );
        assert_eq!(
            labels["org.opencontainers.image.title"],
            "Todo Chatbot backend"
        );
        assert_eq!(labels.len(), 5);
    }

    #[test]
    fn each_image_gets_only_its_own_bases() {
        let plan = plan(false, None);
        let args: Vec<&String> = plan.images[0].build_args.keys().collect();
        assert_eq!(
            args,
            [
                "APP_VERSION",
                "CONTEXT_REVISION",
                "NODE_BUILD_IMAGE",
                "NODE_RUNTIME_IMAGE",
                "SOURCE_DATE_EPOCH"
            ]
        );
        assert_eq!(
            plan.images[1].build_args["PYTHON_RUNTIME_IMAGE"],
            "todo-base/python-runtime:1"
        );
    }

    #[test]
    fn the_ca_reaches_the_build_only_as_a_secret() {
        let with = plan(false, Some("/etc/ssl/certs/ca-certificates.crt".into()));
        let args = with.images[0].buildx_args();
        assert!(args.contains(&"--secret=id=ca,src=/etc/ssl/certs/ca-certificates.crt".into()));
        assert!(!args
            .iter()
            .any(|a| a.starts_with("--build-arg") && a.contains("ca-cert")));
        let without = plan(false, None);
        assert!(!without.images[0]
            .buildx_args()
            .iter()
            .any(|a| a.starts_with("--secret")));
        assert_eq!(args.last().unwrap(), "frontend");
    }

    #[test]
    fn each_image_has_its_own_cache_reference_and_the_builder() {
        let mut plan = plan(false, None);
        let config = config();
        let remote = crate::build::remote::Remote {
            cache_from: Some("localhost:5000/todo-cache".into()),
            cache_to: Some("localhost:5000/todo-cache".into()),
            builder: Some("ci".into()),
        };
        for (image, config) in plan.images.iter_mut().zip(&config.images) {
            image.cache_from = remote.cache_ref(remote.cache_from.as_deref(), config);
            image.cache_to = remote.cache_ref(remote.cache_to.as_deref(), config);
            image.builder = remote.builder.clone();
        }
        let args = plan.images[0].buildx_args();
        for expected in [
            "--builder=ci",
            "--cache-from=type=registry,ref=localhost:5000/todo-cache/todo-frontend:buildcache",
            "--cache-to=type=registry,ref=localhost:5000/todo-cache/todo-frontend:buildcache,mode=max",
        ] {
            assert!(args.contains(&expected.to_string()), "{expected} not in {args:?}");
        }
        assert!(plan.images[1].buildx_args().contains(
            &"--cache-from=type=registry,ref=localhost:5000/todo-cache/todo-backend:buildcache"
                .to_string()
        ));
        assert!(!plan.images[0].buildx_args().is_empty());
    }
}
