//! The Debian archives the local bases come from: the suite, `<suite>-updates` and
//! `<suite>-security`, their package indexes fetched through the project's mirrors and cached
//! with their date, and Debian's own version order.
//!
//! The indexes are fetched by `apt-get update` on a private sources list and lists folder, so
//! that apt checks their signatures against Debian's archive keyring (a vulnerability verdict
//! read from an unsigned index would prove nothing), and no hand-written downloader or
//! decompressor is needed. They live in the tools folder next to hadolint and trivy, shared by
//! every copy of the project that the same xtask binary runs.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::mirror::Mirrors;

/// One of the three archives of a suite, in the order the bases take them from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pocket {
    Suite,
    Updates,
    Security,
}

impl Pocket {
    pub const ALL: [Pocket; 3] = [Pocket::Suite, Pocket::Updates, Pocket::Security];

    /// The archive's name: `bookworm`, `bookworm-updates`, `bookworm-security`.
    pub fn name(self, suite: &str) -> String {
        match self {
            Pocket::Suite => suite.to_string(),
            Pocket::Updates => format!("{suite}-updates"),
            Pocket::Security => format!("{suite}-security"),
        }
    }
}

/// The one-line sources of the three archives, as apt and mmdebstrap read them.
pub fn source_lines(mirrors: &Mirrors, suite: &str) -> Vec<String> {
    Pocket::ALL
        .iter()
        .map(|&pocket| {
            let mirror = match pocket {
                Pocket::Security => &mirrors.security,
                _ => &mirrors.main,
            };
            format!("deb {mirror} {} main", pocket.name(suite))
        })
        .collect()
}

/// A package as an index or an image lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// The source package (the package's own name when the record names none).
    pub source: String,
}

/// Reads deb822 records (an index, a dpkg status file, a `status.d` file): every record with a
/// Package and a Version; records whose Status says they are not installed are left out.
pub fn parse_records(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for record in text.split("\n\n") {
        let (mut name, mut version, mut source, mut installed) = (None, None, None, true);
        for line in record.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Source: ") {
                // `Source: glibc (2.36-9)` names the source's version when it differs.
                source = v.split_whitespace().next();
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if let (Some(name), Some(version), true) = (name, version, installed) {
            out.push(Package {
                name: name.to_string(),
                version: version.to_string(),
                source: source.unwrap_or(name).to_string(),
            });
        }
    }
    out
}

/// True when Debian orders version `a` after `b`. dpkg itself decides: Debian's version order
/// (epochs, `~`, letters before non-letters) is dpkg's to define, and the host has it wherever
/// the archives can be read at all.
pub fn newer(a: &str, b: &str) -> Result<bool> {
    if a == b {
        return Ok(false);
    }
    let status = Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .context("cannot run dpkg to compare Debian versions")?;
    Ok(status.success())
}

/// The cached indexes of one suite's three archives, for one architecture.
pub struct Archive {
    dir: PathBuf,
    pub suite: String,
    /// Debian's name of the architecture whose package indexes these are (`amd64`, `arm64`).
    pub arch: String,
    sources: Vec<String>,
}

/// How fresh the indexes are after [`Archive::ensure_fresh`].
#[derive(Debug, Clone, Serialize)]
pub struct Freshness {
    /// Seconds since the indexes were fetched; None when there are none.
    pub age_seconds: Option<u64>,
    /// True when this call fetched them.
    pub refreshed: bool,
    /// Why they could not be fetched, when that was tried and failed.
    pub offline: Option<String>,
}

impl Freshness {
    /// `3 h old`, `fetched now`, `none`.
    pub fn describe(&self) -> String {
        match self.age_seconds {
            None => "no index".into(),
            Some(_) if self.refreshed => "index fetched now".into(),
            Some(s) => format!("index {} old", age(s)),
        }
    }
}

/// A duration in the largest unit that fits: `40 s`, `12 min`, `5 h`, `3 days`.
pub fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

impl Archive {
    /// The cache of the given suite for this host's architecture, in the tools folder of this
    /// xtask binary, fetched from the given mirrors.
    pub fn new(root: &Path, mirrors: &Mirrors, suite: &str) -> Archive {
        Archive::for_arch(
            root,
            mirrors,
            suite,
            crate::platform::Platform::host().arch(),
        )
    }

    /// The cache of the given suite for one architecture. Versions can differ between
    /// architectures (a binary-only rebuild, a fix built for one first), so the bases of each
    /// platform are compared with their own architecture's indexes; the host's keep the folder
    /// they always had.
    pub fn for_arch(root: &Path, mirrors: &Mirrors, suite: &str, arch: &str) -> Archive {
        let folder = if arch == crate::platform::Platform::host().arch() {
            suite.to_string()
        } else {
            format!("{suite}-{arch}")
        };
        Archive {
            dir: crate::smoke::tools_dir(root)
                .join("debian-index")
                .join(folder),
            suite: suite.to_string(),
            arch: arch.to_string(),
            sources: source_lines(mirrors, suite),
        }
    }

    /// The cache folder of this suite.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lists(&self) -> PathBuf {
        self.dir.join("lists")
    }

    /// Written after every successful fetch: its time is the indexes' age.
    fn stamp(&self) -> PathBuf {
        self.dir.join("fetched")
    }

    /// Seconds since the indexes were last fetched, if ever.
    pub fn age_seconds(&self) -> Option<u64> {
        let modified = std::fs::metadata(self.stamp()).ok()?.modified().ok()?;
        Some(
            SystemTime::now()
                .duration_since(modified)
                .unwrap_or_default()
                .as_secs(),
        )
    }

    /// Fetches the indexes when they are older than `max_age` (or absent); offline, keeps what
    /// the cache holds and says why.
    pub fn ensure_fresh(&self, max_age: Duration) -> Freshness {
        let before = self.age_seconds();
        if before.is_some_and(|s| s < max_age.as_secs()) {
            return Freshness {
                age_seconds: before,
                refreshed: false,
                offline: None,
            };
        }
        match self.fetch() {
            Ok(()) => Freshness {
                age_seconds: Some(0),
                refreshed: true,
                offline: None,
            },
            Err(e) => Freshness {
                age_seconds: self.age_seconds(),
                refreshed: false,
                offline: Some(format!("{e:#}")),
            },
        }
    }

    /// `apt-get update` on the project's sources only, into the cache. A lock keeps two runs
    /// from fetching over each other.
    pub fn fetch(&self) -> Result<()> {
        let lists = self.lists();
        std::fs::create_dir_all(lists.join("partial"))?;
        std::fs::create_dir_all(self.dir.join("cache/archives/partial"))?;
        let lock_path = self.dir.join("fetch.lock");
        let lock = File::create(&lock_path)?;
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
        if !Path::new(keyring).is_file() {
            bail!("{keyring} is missing: install the Debian package debian-archive-keyring");
        }
        let list = self.dir.join("sources.list");
        let text: String = self
            .sources
            .iter()
            .map(|l| l.replacen("deb ", &format!("deb [signed-by={keyring}] "), 1) + "\n")
            .collect();
        std::fs::write(&list, text)?;
        let opt = |k: &str, v: &Path| format!("-o{k}={}", v.display());
        let out = Command::new("apt-get")
            .arg("update")
            .arg("-qq")
            .arg(opt("Dir::Etc::SourceList", &list))
            .arg("-oDir::Etc::SourceParts=/nonexistent")
            .arg(opt("Dir::State::Lists", &lists))
            .arg(opt("Dir::Cache", &self.dir.join("cache")))
            // The indexes of this archive's architecture alone, whatever the host's is.
            .arg(format!("-oAPT::Architecture={}", self.arch))
            .arg(format!("-oAPT::Architectures={}", self.arch))
            // Only the package indexes, uncompressed so that they are read as they are.
            .args(["-oAcquire::Languages=none", "-oAcquire::GzipIndexes=false"])
            .args([
                "-oAPT::Update::Post-Invoke-Success=",
                "-oAPT::Update::Post-Invoke=",
            ])
            .args(["-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"])
            .args(["-oAcquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"])
            .args(["-oAcquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"])
            .args(["-oAcquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false"])
            .args(["-oAcquire::http::Timeout=10", "-oAcquire::Retries=0"])
            .output()
            .context("cannot run apt-get (the Debian archives are read with apt)")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // apt-get exits 0 even when an index could not be fetched; its warnings say so.
        let failed: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("W:") || l.starts_with("E:") || l.starts_with("Err"))
            .collect();
        if !out.status.success() || !failed.is_empty() {
            bail!(
                "apt-get update through {} failed: {}",
                self.sources.join(", "),
                failed.first().copied().unwrap_or(stderr.trim())
            );
        }
        File::create(self.stamp())?;
        Ok(())
    }

    fn file(&self, pocket: Pocket, ending: &str) -> Result<PathBuf> {
        let marker = format!("_dists_{}_", pocket.name(&self.suite));
        let found = std::fs::read_dir(self.lists())
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                name.contains(&marker) && name.ends_with(ending)
            });
        found.with_context(|| {
            format!(
                "no cached {} index of {} in {}",
                ending.trim_start_matches('_'),
                pocket.name(&self.suite),
                self.lists().display()
            )
        })
    }

    /// The package index of one archive for this architecture: name -> (version, source).
    pub fn index(&self, pocket: Pocket) -> Result<HashMap<String, Package>> {
        let path = self.file(pocket, &format!("_binary-{}_Packages", self.arch))?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(parse_records(&text)
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect())
    }

    /// The `Date:` of an archive's signed Release file: the state of that archive.
    pub fn date(&self, pocket: Pocket) -> Result<String> {
        let path = self.file(pocket, "_InRelease")?;
        let text = std::fs::read_to_string(&path)?;
        text.lines()
            .find_map(|l| l.strip_prefix("Date: "))
            .map(|d| d.trim().to_string())
            .with_context(|| format!("{} names no Date", path.display()))
    }
}

/// A package with a newer version in one of the archives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    pub package: String,
    pub installed: String,
    pub fixed: String,
    pub source: String,
    pub pocket: Pocket,
}

/// Every package of `installed` that one of `indexes` offers in a newer version (the newest
/// one, and the archive that has it).
pub fn pending(
    installed: &[Package],
    indexes: &[(Pocket, &HashMap<String, Package>)],
) -> Result<Vec<Pending>> {
    let mut out = Vec::new();
    for package in installed {
        let mut best: Option<(Pocket, &Package)> = None;
        for (pocket, index) in indexes {
            let Some(offered) = index.get(&package.name) else {
                continue;
            };
            let better = match best {
                None => newer(&offered.version, &package.version)?,
                Some((_, b)) => newer(&offered.version, &b.version)?,
            };
            if better {
                best = Some((*pocket, offered));
            }
        }
        if let Some((pocket, offered)) = best {
            out.push(Pending {
                package: package.name.clone(),
                installed: package.version.clone(),
                fixed: offered.version.clone(),
                source: offered.source.clone(),
                pocket,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_give_name_version_and_source() {
        let text = "Package: libc6\nVersion: 2.36-9+deb12u14\nSource: glibc (2.36-9+deb12u14)\n\
                    Architecture: amd64\n\nPackage: bash\nVersion: 5.2.15-2+b7\nStatus: install ok installed\n\n\
                    Package: gone\nVersion: 1\nStatus: deinstall ok config-files\n";
        let found = parse_records(text);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].source, "glibc");
        assert_eq!(found[1].source, "bash");
    }

    #[test]
    fn versions_follow_debian_order() {
        assert!(newer("3.0.22-1~deb12u2", "3.0.20-1~deb12u2").unwrap());
        assert!(newer("3.11.2-6+deb12u9", "3.11.2-6+deb12u8").unwrap());
        assert!(!newer("1.0~rc1", "1.0").unwrap());
        assert!(newer("1:0.9", "2.0").unwrap());
        assert!(!newer("2.0", "2.0").unwrap());
    }

    #[test]
    fn pending_names_the_newest_fix_and_its_archive() {
        let pkg = |name: &str, version: &str| Package {
            name: name.into(),
            version: version.into(),
            source: "openssl".into(),
        };
        let suite: HashMap<_, _> =
            [("libssl3".to_string(), pkg("libssl3", "3.0.11-1~deb12u2"))].into();
        let security: HashMap<_, _> =
            [("libssl3".to_string(), pkg("libssl3", "3.0.22-1~deb12u2"))].into();
        let installed = [pkg("libssl3", "3.0.20-1~deb12u2"), pkg("zlib1g", "1")];
        let found = pending(
            &installed,
            &[(Pocket::Suite, &suite), (Pocket::Security, &security)],
        )
        .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].fixed, "3.0.22-1~deb12u2");
        assert_eq!(found[0].pocket, Pocket::Security);
        let none = pending(
            &[pkg("libssl3", "3.0.22-1~deb12u2")],
            &[(Pocket::Security, &security)],
        )
        .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn offline_the_cached_indexes_serve_and_say_how_old_they_are() {
        let dir = std::env::temp_dir().join(format!("xtask-debian-offline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Port 9 on loopback: nothing listens, so every fetch fails at once.
        let archive = Archive {
            dir: dir.clone(),
            suite: "bookworm".into(),
            arch: "amd64".into(),
            sources: vec!["deb http://127.0.0.1:9/debian bookworm main".into()],
        };
        let none = archive.ensure_fresh(Duration::from_secs(3600));
        assert!(
            none.offline.is_some() && none.age_seconds.is_none(),
            "{none:?}"
        );
        assert_eq!(none.describe(), "no index");
        // A cache from an earlier fetch stays in use, with its age.
        std::fs::write(
            dir.join("lists/h_debian-security_dists_bookworm-security_main_binary-amd64_Packages"),
            "Package: libssl3\nVersion: 3.0.22-1~deb12u2\nSource: openssl\n",
        )
        .unwrap();
        File::create(archive.stamp()).unwrap();
        let cached = archive.ensure_fresh(Duration::ZERO);
        assert!(
            cached.offline.is_some() && cached.age_seconds.is_some(),
            "{cached:?}"
        );
        assert!(
            cached.describe().starts_with("index "),
            "{}",
            cached.describe()
        );
        let index = archive.index(Pocket::Security).unwrap();
        assert_eq!(index["libssl3"].version, "3.0.22-1~deb12u2");
        assert!(archive.index(Pocket::Updates).is_err());
        // Another architecture's index in the same folder is never read as this one's.
        let arm = Archive {
            arch: "arm64".into(),
            ..archive
        };
        assert!(arm.index(Pocket::Security).is_err());
        std::fs::write(
            dir.join("lists/h_debian-security_dists_bookworm-security_main_binary-arm64_Packages"),
            "Package: libssl3\nVersion: 3.0.22-1~deb12u1\nSource: openssl\n",
        )
        .unwrap();
        let index = arm.index(Pocket::Security).unwrap();
        assert_eq!(index["libssl3"].version, "3.0.22-1~deb12u1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sources_name_the_three_archives() {
        let mirrors = Mirrors {
            main: "http://m/debian".into(),
            security: "http://s/debian-security".into(),
            main_from: String::new(),
            security_from: String::new(),
        };
        assert_eq!(
            source_lines(&mirrors, "bookworm"),
            [
                "deb http://m/debian bookworm main",
                "deb http://m/debian bookworm-updates main",
                "deb http://s/debian-security bookworm-security main",
            ]
        );
        assert_eq!(age(7300), "2 h");
    }
}
