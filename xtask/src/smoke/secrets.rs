//! Secrets in an image: every layer of `docker save`, the history, and the config's environment
//! and labels are searched for files named like `.env*`, for the secret values of the run's test
//! environment, and for key-shaped strings (`sk-...` API keys with enough entropy, PEM private
//! keys). The search works on bytes and never prints what it found: a finding names the place and
//! the kind, and shows a key only as its prefix and length.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{bail, Context, Result};

use tar::{Archive, EntryType};

/// A value that must not appear anywhere in an image.
#[derive(Clone)]
pub struct Needle {
    /// What to call it in a finding, e.g. "the test environment's OPENAI_API_KEY".
    pub label: String,
    pub bytes: Vec<u8>,
}

// Written by hand so that `{:?}` cannot print a secret.
impl std::fmt::Debug for Needle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Needle({})", self.label)
    }
}

/// Every offset of `needle` in `haystack`, overlapping ones included. An image is a few hundred
/// megabytes: memchr's SIMD search, compiled with optimisations even in the xtask's debug build
/// (see the workspace Cargo.toml), reads it at several GB/s where a byte loop would take minutes.
pub fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() {
        return Vec::new();
    }
    let finder = memchr::memmem::Finder::new(needle);
    let mut found = Vec::new();
    let mut start = 0;
    while let Some(hit) = finder.find(&haystack[start..]) {
        found.push(start + hit);
        start += hit + 1;
    }
    found
}

/// Shannon entropy in bits per character: about 5.95 for random base62, under 3.5 for words.
pub fn entropy(text: &[u8]) -> f64 {
    if text.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for &b in text {
        counts[b as usize] += 1;
    }
    let n = text.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// A key-shaped string: `(kind, shown)`, where `shown` never holds more than the key's prefix.
pub fn key_shaped(haystack: &[u8]) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for offset in find_all(haystack, b"sk-") {
        if offset > 0
            && (haystack[offset - 1].is_ascii_alphanumeric() || haystack[offset - 1] == b'_')
        {
            continue;
        }
        let body_start = offset + 3;
        let len = haystack[body_start..]
            .iter()
            .take(256)
            .take_while(|&&b| is_token_byte(b))
            .count();
        let body = &haystack[body_start..body_start + len];
        // An API key is long, mixes cases and digits, and looks random; `sk-ecdsa-sha2-nistp256`
        // (an SSH key type in OpenSSH's code) and identifiers are none of these.
        let mixed = body.iter().any(u8::is_ascii_uppercase)
            && body.iter().any(u8::is_ascii_lowercase)
            && body.iter().any(u8::is_ascii_digit);
        if len >= 20 && mixed && entropy(body) >= 3.5 {
            found.push(("an API key (sk-...)", format!("sk-… ({} chars)", len + 3)));
        }
    }
    for offset in find_all(haystack, b"PRIVATE KEY-----") {
        let line_start = haystack[..offset]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
            .max(offset.saturating_sub(48));
        let Some(begin) = find_all(&haystack[line_start..offset], b"-----BEGIN ")
            .last()
            .copied()
        else {
            continue;
        };
        let kind_text = &haystack[line_start + begin + 11..offset];
        if !kind_text
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b == b' ')
        {
            continue;
        }
        // A real key has base64 right after its first line (a newline, or `\n` inside a string
        // literal); a pattern that only matches the header, as JWT libraries carry, has not.
        let mut body = &haystack[offset + 16..];
        for newline in [&b"\r\n"[..], b"\n", b"\\n"] {
            if let Some(rest) = body.strip_prefix(newline) {
                body = rest;
                break;
            }
        }
        let base64 = body
            .iter()
            .take(64)
            .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
            .count();
        if base64 >= 40 {
            found.push((
                "a PEM private key",
                "-----BEGIN … PRIVATE KEY-----".to_string(),
            ));
        }
    }
    found
}

/// What one search of some bytes found: the planted values, then the key-shaped strings.
pub fn search(haystack: &[u8], needles: &[Needle]) -> Vec<String> {
    let mut found: Vec<String> = needles
        .iter()
        .filter(|n| !find_all(haystack, &n.bytes).is_empty())
        .map(|n| n.label.clone())
        .collect();
    let mut keys = key_shaped(haystack);
    keys.dedup();
    found.extend(
        keys.into_iter()
            .map(|(kind, shown)| format!("{kind} {shown}")),
    );
    found
}

/// `text` with every needle's value replaced by `****`.
pub fn scrub(text: &str, needles: &[Needle]) -> String {
    let mut text = text.to_string();
    for needle in needles {
        if let Ok(value) = std::str::from_utf8(&needle.bytes) {
            if !value.is_empty() && text.contains(value) {
                text = text.replace(value, "****");
            }
        }
    }
    text
}

/// A variable whose name says it holds a secret; such a value belongs in the run-time
/// environment, never in the image.
pub fn secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "TOKEN",
        "API_KEY",
        "PRIVATE_KEY",
        "DATABASE_URL",
    ]
    .iter()
    .any(|word| upper.contains(word))
}

/// Where a finding is, before layer digests are turned into layer numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Layer { blob: String, path: String },
    Config(String),
}

/// The outcome of reading a saved image.
#[derive(Debug, Default)]
pub struct ImageScan {
    /// Each finding, with its place: "layer 3/9 (COPY . .) /app/.env: a file named like .env".
    pub findings: Vec<String>,
    /// The image's `/etc/passwd` as its top layer holding one has it.
    pub passwd: Option<String>,
    pub layers: usize,
    pub files: u64,
    pub bytes: u64,
}

/// Reads the output of `docker save` for one image and searches all of it. `interrupted` is
/// polled between files so that Ctrl-C stops a long read.
pub fn scan_saved<R: Read>(
    reader: R,
    needles: &[Needle],
    interrupted: &dyn Fn() -> bool,
) -> Result<ImageScan> {
    let mut outer = Archive::new(reader);
    let mut raw: Vec<(Place, String)> = Vec::new();
    let mut json_blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut passwd_by_blob: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut manifest: Option<serde_json::Value> = None;
    let mut scan = ImageScan::default();
    let mut buffer = Vec::new();
    let entries = outer
        .entries()
        .context("cannot read the docker save archive")?;
    for entry in entries {
        let mut entry = entry.context("cannot read the docker save archive")?;
        if interrupted() {
            bail!(crate::interrupt::Interrupted);
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry_path(&entry)?;
        if path == "manifest.json" {
            let mut text = Vec::new();
            (&mut entry).take(16 << 20).read_to_end(&mut text)?;
            manifest = Some(serde_json::from_slice(&text).context("manifest.json is not JSON")?);
            continue;
        }
        // Engine 25 and later write an OCI layout (`blobs/sha256/...`); older engines wrote
        // `<id>/layer.tar` and the config as `<id>.json`.
        let wanted = path.starts_with("blobs/")
            || path.ends_with("layer.tar")
            || (path.ends_with(".json") && !path.contains('/'));
        if !wanted {
            continue;
        }
        let mut head = Vec::with_capacity(512);
        (&mut entry).take(512).read_to_end(&mut head)?;
        let blob = path;
        if head.first() == Some(&b'{') {
            // The config, manifests and index: JSON, small.
            let mut text = head;
            (&mut entry).take(16 << 20).read_to_end(&mut text)?;
            json_blobs.insert(blob, text);
            continue;
        }
        // Anything else is a layer: read as tar, so that nothing is skipped unread (a blob that
        // is not a tar fails the check rather than passing it). The classic image store saves
        // plain tar layers; the containerd image store saves them as they sit in the registry,
        // gzip or zstd compressed.
        let layer =
            crate::store::decode(head, &mut entry).with_context(|| format!("layer {blob}"))?;
        let passwd = scan_layer(
            Archive::new(layer),
            &blob,
            needles,
            &mut raw,
            &mut scan,
            &mut buffer,
            interrupted,
        )?;
        passwd_by_blob.insert(blob, passwd);
    }
    let manifest = manifest.context("the docker save archive holds no manifest.json")?;
    let entry = &manifest[0];
    let layers: Vec<String> = entry["Layers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let config_path = entry["Config"].as_str().unwrap_or_default().to_string();
    let config: serde_json::Value = json_blobs
        .get(&config_path)
        .and_then(|b| serde_json::from_slice(b).ok())
        .with_context(|| format!("the image config {config_path} is missing from the archive"))?;
    scan.layers = layers.len();
    scan_config(&config, needles, &mut raw);

    // The history names the instruction that made each layer: entries marked `empty_layer`
    // made none.
    let steps: Vec<String> = config["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter(|e| !e["empty_layer"].as_bool().unwrap_or(false))
                .map(|e| short_step(e["created_by"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    let describe = |blob: &str| match layers.iter().position(|l| l == blob) {
        Some(i) => match steps.get(i) {
            Some(step) if !step.is_empty() => format!("layer {}/{} ({step})", i + 1, layers.len()),
            _ => format!("layer {}/{}", i + 1, layers.len()),
        },
        None => format!("blob {blob}"),
    };
    scan.findings = raw
        .into_iter()
        .map(|(place, what)| match place {
            Place::Layer { blob, path } => format!("{} /{path}: {what}", describe(&blob)),
            Place::Config(place) => format!("{place}: {what}"),
        })
        .collect();
    // The places are built from paths and build steps, which a careless build could have
    // filled with a secret: the last lock on the door.
    for finding in &mut scan.findings {
        *finding = scrub(finding, needles);
    }
    scan.passwd = layers
        .iter()
        .rev()
        .find_map(|l| passwd_by_blob.get(l).cloned().flatten());
    Ok(scan)
}

/// An entry's path as stored, without a leading `./` or `/` (GNU long names and PAX paths
/// included).
fn entry_path<R: Read>(entry: &tar::Entry<'_, R>) -> Result<String> {
    let path = entry.path().context("a tar entry has no readable path")?;
    let path = path.to_string_lossy();
    Ok(path
        .trim_start_matches("./")
        .trim_start_matches('/')
        .to_string())
}

/// Searches every file of one layer; returns its `/etc/passwd`, when it holds one.
fn scan_layer<R: Read>(
    mut archive: Archive<R>,
    blob: &str,
    needles: &[Needle],
    raw: &mut Vec<(Place, String)>,
    scan: &mut ImageScan,
    buffer: &mut Vec<u8>,
    interrupted: &dyn Fn() -> bool,
) -> Result<Option<String>> {
    let mut passwd = None;
    let place = |path: &str| Place::Layer {
        blob: blob.to_string(),
        path: path.to_string(),
    };
    let unreadable = || format!("cannot read layer {blob}");
    for entry in archive.entries().with_context(unreadable)? {
        let mut entry = entry.with_context(unreadable)?;
        if interrupted() {
            bail!(crate::interrupt::Interrupted);
        }
        let path = entry_path(&entry)?;
        let name = path.rsplit('/').next().unwrap_or("");
        // A whiteout (`.wh.NAME`) records a deletion: the file it deletes is still in a lower
        // layer, where it is found.
        if name.starts_with(".env") {
            raw.push((place(&path), "a file named like .env".to_string()));
        }
        if !matches!(
            entry.header().entry_type(),
            EntryType::Regular | EntryType::Continuous
        ) {
            continue;
        }
        scan.files += 1;
        scan.bytes += entry.size();
        buffer.clear();
        entry.read_to_end(buffer).with_context(unreadable)?;
        if path == "etc/passwd" {
            passwd = Some(String::from_utf8_lossy(buffer).into_owned());
        }
        for what in search(buffer, needles) {
            raw.push((place(&path), what));
        }
    }
    Ok(passwd)
}

/// The config's environment, labels and history (the build commands, with their arguments).
fn scan_config(config: &serde_json::Value, needles: &[Needle], raw: &mut Vec<(Place, String)>) {
    let inner = &config["config"];
    for var in inner["Env"].as_array().into_iter().flatten() {
        let var = var.as_str().unwrap_or("");
        let (name, value) = var.split_once('=').unwrap_or((var, ""));
        let place = Place::Config(format!("ENV {name}"));
        if secret_name(name) && !value.is_empty() {
            raw.push((
                place.clone(),
                "a secret-named variable with a value baked into the image (pass it at run time)"
                    .to_string(),
            ));
        }
        for what in search(value.as_bytes(), needles) {
            raw.push((place.clone(), what));
        }
    }
    if let Some(labels) = inner["Labels"].as_object() {
        for (name, value) in labels {
            for what in search(value.as_str().unwrap_or("").as_bytes(), needles) {
                raw.push((Place::Config(format!("LABEL {name}")), what));
            }
        }
    }
    for (i, step) in config["history"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let created_by = step["created_by"].as_str().unwrap_or("");
        for what in search(created_by.as_bytes(), needles) {
            raw.push((
                Place::Config(format!(
                    "history step {} ({})",
                    i + 1,
                    short_step(created_by)
                )),
                what,
            ));
        }
    }
}

/// A history entry short enough for a table cell, and free of what a finding would reveal: only
/// the instruction and its first words.
fn short_step(created_by: &str) -> String {
    let text = created_by
        .trim_start_matches("/bin/sh -c #(nop) ")
        .trim_start_matches("/bin/sh -c ")
        .trim();
    // A word that assigns or looks random may be a secret: it is shown as `…`.
    let words: Vec<&str> = text
        .split_whitespace()
        .take(3)
        .map(|w| {
            if w.contains('=') || (w.len() >= 16 && entropy(w.as_bytes()) >= 3.5) {
                "…"
            } else {
                w
            }
        })
        .collect();
    let mut short = words.join(" ");
    if short.chars().count() > 40 {
        short = short.chars().take(39).collect::<String>() + "…";
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar archive of these entries (a path ending in `/` is a folder), as `docker save` and
    /// the layers in it are written.
    fn build(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            if path.ends_with('/') {
                header.set_entry_type(EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, path, &[][..]).unwrap();
            } else {
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, *data).unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    const KEY: &str = "sk-proj-Zx81QmK2vLp09TgHr4WnBc7YdE5sFa3J";

    fn needles() -> Vec<Needle> {
        vec![Needle {
            label: "the test environment's BETTER_AUTH_SECRET".into(),
            bytes: b"planted-Value-123456".to_vec(),
        }]
    }

    #[test]
    fn finds_every_occurrence() {
        assert_eq!(find_all(b"abcabcab", b"ab"), [0, 3, 6]);
        assert_eq!(find_all(b"ab", b"abc"), Vec::<usize>::new());
        assert_eq!(find_all(b"", b"a"), Vec::<usize>::new());
    }

    #[test]
    fn api_keys_are_told_from_words() {
        let found = key_shaped(format!("const k = \"{KEY}\";").as_bytes());
        assert_eq!(found.len(), 1);
        assert!(
            !found[0].1.contains("Zx81"),
            "the key is never shown: {found:?}"
        );
        // OpenSSH's key type names, identifiers and short values are not keys.
        for text in [
            "sk-ecdsa-sha2-nistp256@openssh.com",
            "task-0123456789abcdefghijklmnopqrstuv",
            "sk-short1A",
            "sk-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(key_shaped(text.as_bytes()).is_empty(), "{text}");
        }
    }

    #[test]
    fn pem_private_keys_are_found_but_not_header_patterns() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1c3YbX9Qp2Lk8v7Jw0Rz5mN4tH6gF3sD2aB1cE0fG9hI8jK7\n";
        assert_eq!(key_shaped(key.as_bytes()).len(), 1);
        let escaped =
            "\"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC\"";
        assert_eq!(key_shaped(escaped.as_bytes()).len(), 1);
        let pattern = "const _=/^-----BEGIN(?: (RSA|EC|ENCRYPTED))? PRIVATE KEY-----/;";
        assert!(key_shaped(pattern.as_bytes()).is_empty());
    }

    #[test]
    fn secret_names_are_recognised() {
        assert!(secret_name("BETTER_AUTH_SECRET"));
        assert!(secret_name("OPENAI_API_KEY"));
        assert!(secret_name("DATABASE_URL"));
        assert!(!secret_name("NODE_ENV"));
        assert!(!secret_name("PATH"));
    }

    /// A saved image as `docker save` writes it: layer blobs, the config blob, manifest.json.
    fn saved(layers: &[Vec<u8>], config: serde_json::Value) -> Vec<u8> {
        let config = serde_json::to_vec(&config).unwrap();
        let names: Vec<String> = (0..layers.len())
            .map(|i| format!("blobs/sha256/l{i}"))
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!([
            {"Config": "blobs/sha256/cfg", "Layers": names}
        ]))
        .unwrap();
        let mut entries: Vec<(&str, &[u8])> = vec![("blobs/", b""), ("blobs/sha256/", b"")];
        // Blobs come in digest order, not layer order: the scanner must not rely on it.
        for (name, layer) in names.iter().zip(layers).rev() {
            entries.push((name, layer));
        }
        entries.push(("blobs/sha256/cfg", &config));
        entries.push(("manifest.json", &manifest));
        build(&entries)
    }

    fn config(env: &[&str], history: &[&str]) -> serde_json::Value {
        serde_json::json!({
            "config": {"Env": env, "Labels": {"org.opencontainers.image.title": "t"}},
            "history": history.iter().map(|h| serde_json::json!({"created_by": h})).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn a_clean_image_has_no_findings_and_its_passwd_is_the_top_one() {
        let base = build(&[
            ("etc/", b""),
            ("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        ]);
        let app = build(&[
            (
                "etc/passwd",
                b"root:x:0:0::/root:/bin/sh\nappuser:x:1001:1001::/app:/sbin/nologin\n",
            ),
            ("app/main.py", b"print('hello')"),
        ]);
        let bytes = saved(
            &[base, app],
            config(&["PATH=/usr/bin"], &["ADD rootfs", "COPY . ."]),
        );
        let scan = scan_saved(&bytes[..], &needles(), &|| false).unwrap();
        assert!(scan.findings.is_empty(), "{:?}", scan.findings);
        assert!(scan.passwd.unwrap().contains("appuser"));
        assert_eq!(scan.layers, 2);
        assert_eq!(scan.files, 3);
    }

    #[test]
    fn every_kind_of_leak_is_found_with_its_place() {
        let base = build(&[("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")]);
        let leaky = build(&[
            ("app/.env.production", b"X=1"),
            ("app/config.js", format!("key = '{KEY}'").as_bytes()),
            ("app/notes.txt", b"the value planted-Value-123456 leaked"),
        ]);
        let bytes = saved(
            &[base, leaky],
            config(
                &["PATH=/usr/bin", "OPENAI_API_KEY=sk-anything"],
                &["ADD rootfs", "COPY . . # buildkit"],
            ),
        );
        let scan = scan_saved(&bytes[..], &needles(), &|| false).unwrap();
        let all = scan.findings.join("\n");
        assert!(
            all.contains("layer 2/2 (COPY . .) /app/.env.production: a file named like .env"),
            "{all}"
        );
        assert!(
            all.contains("/app/config.js: an API key (sk-...) sk-… (40 chars)"),
            "{all}"
        );
        assert!(
            all.contains("/app/notes.txt: the test environment's BETTER_AUTH_SECRET"),
            "{all}"
        );
        assert!(
            all.contains("ENV OPENAI_API_KEY: a secret-named variable"),
            "{all}"
        );
        assert!(
            !all.contains("planted-Value") && !all.contains("Zx81"),
            "{all}"
        );
        assert_eq!(scan.findings.len(), 4, "{all}");
    }

    #[test]
    fn secrets_in_the_history_are_found() {
        let layer = build(&[("a", b"b")]);
        let bytes = saved(
            &[layer],
            config(
                &[],
                &["RUN /bin/sh -c echo planted-Value-123456 > /dev/null"],
            ),
        );
        let scan = scan_saved(&bytes[..], &needles(), &|| false).unwrap();
        assert_eq!(scan.findings.len(), 1);
        assert!(
            scan.findings[0].starts_with("history step 1 (RUN"),
            "{:?}",
            scan.findings
        );
        assert!(!scan.findings[0].contains("planted"));
    }

    #[test]
    fn a_truncated_archive_is_an_error() {
        let layer = build(&[("a", &[1u8; 5000])]);
        let bytes = saved(&[layer], config(&[], &[]));
        assert!(scan_saved(&bytes[..3000], &needles(), &|| false).is_err());
    }

    #[test]
    fn gzip_and_zstd_layers_of_the_containerd_store_are_read() {
        use std::io::Write;
        let leaky = build(&[
            ("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
            ("app/notes.txt", b"the value planted-Value-123456 leaked"),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&leaky).unwrap();
        let gz = gz.finish().unwrap();
        let zst = ruzstd::encoding::compress_to_vec(
            &leaky[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        for (kind, layer) in [("gzip", gz), ("zstd", zst)] {
            let bytes = saved(&[layer], config(&[], &["COPY . ."]));
            let scan = scan_saved(&bytes[..], &needles(), &|| false).unwrap();
            assert_eq!(scan.files, 2, "{kind}");
            assert!(scan.passwd.is_some(), "{kind}");
            assert!(
                scan.findings.iter().any(|f| f.contains("/app/notes.txt")),
                "{kind}: {:?}",
                scan.findings
            );
        }
    }

    #[test]
    fn long_paths_are_read_whole() {
        let long = format!("app/{}/.env.local", "d".repeat(120));
        let layer = build(&[(long.as_str(), b"X=1")]);
        let scan = scan_saved(&saved(&[layer], config(&[], &[]))[..], &needles(), &|| {
            false
        })
        .unwrap();
        assert!(
            scan.findings[0].contains(&format!("/{long}:")),
            "{:?}",
            scan.findings
        );
    }
}
