//! The engine's image store, and image sizes that mean the same in both stores.
//!
//! The classic store reports an image's `Size` as the bytes of the files in its layers, which is
//! what the size budgets are about. The containerd image store (the default of new Docker 29
//! installs) reports the compressed content instead (71.9 MB for a backend image whose files hold
//! 122.6 MB), and its history the block-rounded disk use of the unpacked layers (142.8 MB). On
//! that store the size is counted from the layers themselves, as `docker save` writes them: the
//! sum of the sizes of the regular files in every layer, which is exactly the classic store's
//! figure. An image id never changes its content, so each count is kept by id.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};

/// Where the counted sizes are kept, by image id.
const SIZES_FILE: &str = "target/xtask/unpacked-sizes.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Classic,
    Containerd,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Classic => "classic",
            Store::Containerd => "containerd",
        }
    }
}

/// The image store of the engine in force (see `engine::endpoint`), asked once per process;
/// the classic one when the engine does not answer.
pub fn store() -> Store {
    answered_store().unwrap_or(Store::Classic)
}

/// The image store of the engine in force, or None when the engine does not answer (a dry run
/// does not start it).
pub fn answered_store() -> Option<Store> {
    static STORE: OnceLock<Option<Store>> = OnceLock::new();
    *STORE.get_or_init(|| {
        let status = match crate::engine::api_get("/info") {
            Some((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                .map(|info| info["DriverStatus"].to_string())
                .ok()?,
            _ => crate::docker::docker(["info", "--format", "{{json .DriverStatus}}"])
                .read()
                .ok()?,
        };
        Some(if status.contains("io.containerd.snapshotter") {
            Store::Containerd
        } else {
            Store::Classic
        })
    })
}

/// The size a budget is measured against: `reported` (the engine's `Size`) on the classic
/// store; on the containerd store the bytes of the files in the image's layers.
pub fn unpacked_size(id: &str, reported: u64) -> Result<u64> {
    if store() == Store::Classic {
        return Ok(reported);
    }
    let mut known: BTreeMap<String, u64> = std::fs::read_to_string(SIZES_FILE)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if let Some(size) = known.get(id) {
        return Ok(*size);
    }
    let size = host_size(id)?;
    known.insert(id.to_string(), size);
    if let Some(dir) = Path::new(SIZES_FILE).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Losing the file only costs a recount.
    let _ = std::fs::write(SIZES_FILE, serde_json::to_string(&known)?);
    Ok(size)
}

/// The bytes of the files in an image's layers on the containerd store: for an image of
/// several platforms (an index), those of the host's platform, the one `docker run` starts and
/// the smoke checks measure; otherwise every layer's.
fn host_size(id: &str) -> Result<u64> {
    let (json, layers) = read_saved(id, |out| read_layout(out))?;
    let platforms = layout_platforms(id, &json, &layers)?;
    if platforms.len() > 1 {
        let host = crate::platform::Platform::host().docker();
        return platforms
            .into_iter()
            .find(|p| p.platform == host)
            .map(|p| p.size_bytes)
            .with_context(|| format!("the image {id} holds no {host}"));
    }
    Ok(layers.values().sum())
}

/// One platform's image in a multi-platform image (an index) on the containerd store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct PlatformImage {
    /// `linux/arm64`.
    pub platform: String,
    /// The digest of the platform's manifest, as a registry will store it.
    pub manifest: String,
    /// The bytes of the files in its layers (what a budget is measured against).
    pub size_bytes: u64,
}

/// Each platform's manifest digest and size in a multi-platform image, read from one `docker
/// save` of it (an OCI layout: the index, then each platform's manifest and layers). Attestation
/// manifests (platform `unknown/unknown`) are left out.
pub fn platform_images(id: &str) -> Result<Vec<PlatformImage>> {
    let (json, layers) = read_saved(id, |out| read_layout(out))?;
    layout_platforms(id, &json, &layers)
}

/// [`platform_images`] of a `docker save` archive read with [`read_layout`].
fn layout_platforms(
    id: &str,
    json: &BTreeMap<String, String>,
    layers: &BTreeMap<String, u64>,
) -> Result<Vec<PlatformImage>> {
    let blob = |digest: &str| -> Result<serde_json::Value> {
        let text = json
            .get(digest.trim_start_matches("sha256:"))
            .with_context(|| format!("docker save of {id} holds no {digest}"))?;
        Ok(serde_json::from_str(text)?)
    };
    let index: serde_json::Value = serde_json::from_str(
        json.get("index.json")
            .with_context(|| format!("docker save of {id} holds no index.json"))?,
    )?;
    // index.json names the image's own index (or one manifest, for a single platform).
    let mut manifests: Vec<serde_json::Value> = Vec::new();
    for top in index["manifests"].as_array().into_iter().flatten() {
        let digest = top["digest"].as_str().unwrap_or_default();
        let inner = blob(digest)?;
        match inner["manifests"].as_array() {
            Some(list) => manifests.extend(list.iter().cloned()),
            None => manifests.push(top.clone()),
        }
    }
    let mut out = Vec::new();
    for m in manifests {
        let os = m["platform"]["os"].as_str().unwrap_or("unknown");
        let arch = m["platform"]["architecture"].as_str().unwrap_or("unknown");
        if os == "unknown" || arch == "unknown" {
            continue;
        }
        let digest = m["digest"].as_str().unwrap_or_default().to_string();
        let manifest = blob(&digest)?;
        let size_bytes = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                let d = l["digest"].as_str().unwrap_or_default();
                layers.get(d.trim_start_matches("sha256:")).copied()
            })
            .sum::<Option<u64>>()
            .with_context(|| format!("docker save of {id} lacks a layer of {os}/{arch}"))?;
        out.push(PlatformImage {
            platform: format!("{os}/{arch}"),
            manifest: digest,
            size_bytes,
        });
    }
    out.sort_by(|a, b| a.platform.cmp(&b.platform));
    Ok(out)
}

/// The platforms (`linux/arm64`) and manifest digests of an image of several platforms (an
/// index), sorted, without attestation manifests; empty for a single image. Reads only the
/// small JSON files of one `docker save` of it, not the layers.
pub fn index_platforms(id: &str) -> Result<Vec<(String, String)>> {
    let json = read_saved(id, |out| {
        let mut outer = tar::Archive::new(out);
        let mut json = BTreeMap::new();
        for entry in outer.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            if !entry.header().entry_type().is_file() || entry.size() > 1 << 20 {
                continue;
            }
            let mut head = Vec::new();
            entry.read_to_end(&mut head)?;
            if head.first() == Some(&b'{') {
                let name = path.rsplit('/').next().unwrap_or_default().to_string();
                json.insert(name, String::from_utf8_lossy(&head).into_owned());
            }
        }
        Ok(json)
    })?;
    let parse = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_str(json.get(name.trim_start_matches("sha256:"))?).ok()
    };
    let mut out = Vec::new();
    for top in parse("index.json")
        .into_iter()
        .flat_map(|i| i["manifests"].as_array().cloned().unwrap_or_default())
    {
        let Some(inner) = top["digest"].as_str().and_then(parse) else {
            continue;
        };
        for m in inner["manifests"].as_array().into_iter().flatten() {
            let os = m["platform"]["os"].as_str().unwrap_or("unknown");
            let arch = m["platform"]["architecture"].as_str().unwrap_or("unknown");
            if os != "unknown" && arch != "unknown" {
                out.push((
                    format!("{os}/{arch}"),
                    m["digest"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The small JSON files of a `docker save` archive (by blob digest, and `index.json`) and the
/// bytes of the files in each layer blob.
type Layout = (BTreeMap<String, String>, BTreeMap<String, u64>);

fn read_layout(reader: impl Read) -> Result<Layout> {
    let mut outer = tar::Archive::new(reader);
    let (mut json, mut layers) = (BTreeMap::new(), BTreeMap::new());
    for entry in outer.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        let mut head = Vec::with_capacity(512);
        (&mut entry).take(512).read_to_end(&mut head)?;
        if head.first() == Some(&b'{') {
            entry.read_to_end(&mut head)?;
            json.insert(name, String::from_utf8_lossy(&head).into_owned());
            continue;
        }
        if !path.starts_with("blobs/") {
            continue;
        }
        layers.insert(name, layer_file_bytes(head, &mut entry)?);
    }
    Ok((json, layers))
}

/// Runs `docker save ID` and reads its archive with `read`.
fn read_saved<T>(
    id: &str,
    read: impl FnOnce(&mut std::process::ChildStdout) -> Result<T>,
) -> Result<T> {
    use std::os::unix::process::CommandExt;
    // In a process group of its own, so that a terminal's Ctrl-C does not cut off a count that
    // a release, past the push of its tags, needs to finish (see `release::push_all`).
    let mut save = std::process::Command::new("docker")
        .args(["save", id])
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot run docker save")?;
    let mut stdout = save.stdout.take().expect("piped");
    let read = read(&mut stdout);
    // The archive may go on past the end the reader stopped at (the tar end blocks and
    // padding): read it to its end, or `docker save` dies of SIGPIPE writing it.
    let _ = io::copy(&mut stdout, &mut io::sink());
    let status = save.wait()?;
    let value = read.with_context(|| format!("cannot count the layers of {id}"))?;
    if !status.success() {
        bail!("docker save {id} failed ({status})");
    }
    Ok(value)
}

/// The bytes of the regular files in one layer blob, given its first bytes and the rest.
fn layer_file_bytes(head: Vec<u8>, rest: impl Read) -> Result<u64> {
    let mut layer = tar::Archive::new(decode(head, rest)?);
    let mut total = 0;
    for file in layer.entries()? {
        let file = file?;
        if matches!(
            file.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        ) {
            total += file.size();
        }
    }
    Ok(total)
}

/// A layer blob as a plain tar stream, given its first bytes and the rest: the classic store
/// saves plain tar, the containerd store what the registry holds, gzip or zstd.
pub fn decode<'a>(head: Vec<u8>, rest: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let zstd = head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    let whole = io::Cursor::new(head).chain(rest);
    Ok(if gzip {
        Box::new(flate2::read::GzDecoder::new(whole))
    } else if zstd {
        Box::new(
            ruzstd::decoding::StreamingDecoder::new(whole)
                .map_err(|e| anyhow!("a layer is not valid zstd: {e}"))?,
        )
    } else {
        Box::new(whole)
    })
}
