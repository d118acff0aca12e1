//! The release record: what was released, written as JSON to `target/releases/v<version>.json`,
//! summed up in the annotated git tag's message and printed as a table.
//!
//! The record lives under `target/`, which git ignores, so writing it never dirties the tree and
//! the next release's clean-tree check still holds; the durable copy of its essentials (every
//! image reference pinned by digest) is the annotated tag, which travels with the repository.

use std::path::Path;

use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde::{Deserialize, Serialize};

/// Where release records are kept, relative to the project root.
pub const RECORDS_DIR: &str = "target/releases";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub version: String,
    pub tag: String,
    pub prerelease: bool,
    pub previous: Option<String>,
    pub revision: String,
    pub dirty: bool,
    /// When the release finished (RFC 3339).
    pub created: String,
    pub registry: String,
    /// True when this run reused images the registry already held for this revision and version:
    /// a CI job's `build --push`, or an earlier run of this release that stopped.
    pub resumed: bool,
    pub latest: bool,
    pub git_tag: Option<String>,
    pub images: Vec<RecordImage>,
    /// True when every image is signed and its SBOM attested, both verified.
    #[serde(default)]
    pub signed: bool,
    /// Why the release is not signed, when it is not.
    #[serde(default)]
    pub unsigned: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordImage {
    pub service: String,
    pub repository: String,
    /// The manifest digest every tag below names.
    pub digest: String,
    /// `repository@digest`: the reference to deploy.
    pub pinned: String,
    /// `repository:tag` for every tag pushed.
    pub references: Vec<String>,
    /// The local image id, which is the digest of the image's config.
    pub id: String,
    /// The image as `docker images` counts it (uncompressed).
    pub size_bytes: u64,
    /// The layers and config as stored in the registry (compressed).
    pub pushed_bytes: u64,
    /// How long this run's build took; `None` when the image came from an earlier run.
    pub build_seconds: Option<f64>,
    /// The image's OCI labels (version, created, revision, source, title).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Promoted from the registry or built, and why (see `plan::provenance`).
    #[serde(default)]
    pub source: Option<String>,
    /// The image's SBOM, written beside the record.
    #[serde(default)]
    pub sbom: Option<std::path::PathBuf>,
    /// The cosign signature and SBOM attestation, each pinned by digest, when signed. For an
    /// image index: the index's signature (its platforms' are under `platforms`).
    #[serde(default)]
    pub signature: Option<super::sign::Signed>,
    /// For an image index (a release for several platforms): each platform's manifest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<RecordPlatform>,
}

/// One platform of a released image index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordPlatform {
    /// `linux/arm64`.
    pub platform: String,
    /// The platform's manifest digest, as the build made it and the registry's index lists it.
    pub manifest: String,
    /// `repository@manifest`.
    pub pinned: String,
    /// The bytes of the files in its layers (what the size budget is measured against).
    pub size_bytes: u64,
    /// Its layers and config as stored in the registry (compressed).
    pub pushed_bytes: u64,
    /// This platform's SBOM, written beside the record.
    #[serde(default)]
    pub sbom: Option<std::path::PathBuf>,
    /// Its cosign signature and SBOM attestation, each pinned by digest, when signed.
    #[serde(default)]
    pub signature: Option<super::sign::Signed>,
}

/// Writes the record, creating its folder.
pub fn write(root: &Path, file: &Path, record: &Record) -> Result<()> {
    let path = root.join(file);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(record)? + "\n";
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The versions of every record in the folder; files that are not records are skipped.
pub fn recorded_versions(dir: &Path) -> Vec<semver::Version> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .filter_map(|v| {
            v["version"]
                .as_str()
                .and_then(|s| semver::Version::parse(s).ok())
        })
        .collect()
}

/// Megabytes as `docker images` counts them (10^6 bytes), one decimal, like the build's table.
fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

/// The annotated tag's message: the release's images pinned by digest.
pub fn tag_message(record: &Record, record_file: &Path) -> String {
    let mut text = format!("Release {}\n\n", record.tag);
    for image in &record.images {
        text.push_str(&format!("{}: {}\n", image.service, image.pinned));
        for p in &image.platforms {
            text.push_str(&format!("  {}: {}\n", p.platform, p.pinned));
        }
    }
    let tags: Vec<&str> = record.images[0]
        .references
        .iter()
        .filter_map(|r| r.rsplit_once(':').map(|(_, t)| t))
        .collect();
    text.push_str(&format!(
        "\nTags: {}\nRevision: {}\nRecord: {}\n",
        tags.join(", "),
        record.revision,
        record_file.display()
    ));
    match &record.unsigned {
        None if record.signed => {
            text.push_str("Signed: cosign signature and SBOM attestation, both verified\n")
        }
        Some(why) => text.push_str(&format!("Unsigned: {why}\n")),
        None => {}
    }
    text
}

/// The summary printed at the end.
pub fn table(record: &Record) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "service",
        "pinned reference",
        "size MB",
        "pushed MB",
        "build",
    ]);
    for image in &record.images {
        table.add_row([
            image.service.clone(),
            image.pinned.clone(),
            mb(image.size_bytes),
            mb(image.pushed_bytes),
            image
                .build_seconds
                .map(|s| format!("{s:.1}s"))
                .unwrap_or_else(|| "earlier run".into()),
        ]);
        for p in &image.platforms {
            table.add_row([
                format!("  {}", p.platform),
                p.pinned.clone(),
                mb(p.size_bytes),
                mb(p.pushed_bytes),
                String::new(),
            ]);
        }
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        let image = |service: &str| RecordImage {
            service: service.into(),
            repository: format!("localhost:5000/todo/todo-{service}"),
            digest: "sha256:aa".into(),
            pinned: format!("localhost:5000/todo/todo-{service}@sha256:aa"),
            references: ["sha-abcdef0", "v1.0.1", "latest"]
                .map(|t| format!("localhost:5000/todo/todo-{service}:{t}"))
                .to_vec(),
            id: "sha256:bb".into(),
            size_bytes: 123_400_000,
            pushed_bytes: 45_600_000,
            build_seconds: Some(3.25),
            labels: Default::default(),
            source: None,
            sbom: None,
            signature: None,
            platforms: vec![],
        };
        Record {
            version: "1.0.1".into(),
            tag: "v1.0.1".into(),
            prerelease: false,
            previous: Some("1.0.0".into()),
            revision: "abcdef0123".into(),
            dirty: false,
            created: "2026-11-25T18:00:00Z".into(),
            registry: "localhost:5000/todo".into(),
            resumed: false,
            latest: true,
            git_tag: Some("v1.0.1".into()),
            images: vec![image("frontend"), image("backend")],
            signed: false,
            unsigned: Some("released with --no-sign".into()),
        }
    }

    #[test]
    fn the_tag_message_pins_every_image() {
        let text = tag_message(&record(), Path::new("target/releases/v1.0.1.json"));
        assert!(text.starts_with("Release v1.0.1\n\n"));
        assert!(text.contains("backend: localhost:5000/todo/todo-backend@sha256:aa\n"));
        assert!(text.contains("Tags: sha-abcdef0, v1.0.1, latest\n"));
        assert!(
            text.ends_with("Unsigned: released with --no-sign\n"),
            "{text}"
        );
    }

    #[test]
    fn records_round_trip_and_give_their_versions() {
        let dir =
            std::env::temp_dir().join(format!("xtask-release-records-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write(&dir, Path::new("v1.0.1.json"), &record()).unwrap();
        std::fs::write(dir.join("notes.json"), "not json").unwrap();
        assert_eq!(recorded_versions(&dir), [semver::Version::new(1, 0, 1)]);
        assert!(table(&record()).contains("123.4"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(recorded_versions(&dir).is_empty());
    }
}
