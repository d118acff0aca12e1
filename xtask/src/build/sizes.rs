//! Where the megabytes are: each image's size by step (its history), with the change against the
//! previous build per step, and the biggest layers by top-level path.

use std::collections::BTreeMap;
use std::path::Path;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

use super::report::{mb, shorten, ImageResult, LayerRecord};

/// The image's own steps (those above its base), newest last, from the engine's history.
pub fn layers(id: &str) -> Vec<LayerRecord> {
    let Some(history) = crate::engine::api_history(id) else {
        return vec![];
    };
    history
        .into_iter()
        .rev()
        .map(|(created_by, size_bytes)| LayerRecord {
            created_by: clean(&created_by),
            size_bytes,
        })
        .collect()
}

/// BuildKit's history text without its `# buildkit` tail and `|N ARG=...` prefix.
fn clean(created_by: &str) -> String {
    let text = created_by.trim_end_matches(" # buildkit").trim();
    let (run, text) = match text.strip_prefix("RUN ") {
        Some(rest) => ("RUN ", rest),
        None => ("", text),
    };
    // `|2 A=1 B=2 /bin/sh -c ...`: the build arguments a RUN saw, then its command.
    let text = match text.strip_prefix('|') {
        Some(rest) => rest.find("/bin/sh -c ").map(|i| &rest[i..]).unwrap_or(rest),
        None => text,
    };
    let text = text.strip_prefix("/bin/sh -c ").unwrap_or(text);
    let words: Vec<&str> = text.split_whitespace().collect();
    format!("{run}{}", words.join(" "))
}

/// The growth warning of one image, when it grew by more than `limit_mb` since `before`.
pub fn growth_warning(
    now: &ImageResult,
    before: Option<&ImageResult>,
    limit_mb: f64,
) -> Option<String> {
    let (a, b) = (now.size_bytes?, before?.size_bytes?);
    let grown = a as f64 - b as f64;
    (grown > limit_mb * 1e6).then(|| {
        format!(
            "warning: {} grew by {} MB since the previous build (to {} MB of its {} MB budget; \
             the warning starts at {limit_mb} MB): `cargo xtask build --sizes` shows where",
            now.image,
            mb(grown as u64),
            mb(a),
            mb(now.budget_bytes)
        )
    })
}

/// Size by step, biggest first, with each step's change against the previous build (a step
/// whose instruction is new shows `new`). Steps of 0 bytes are left out.
pub fn by_step(now: &ImageResult, before: Option<&ImageResult>) -> Table {
    let mut previous: BTreeMap<&str, u64> = BTreeMap::new();
    for layer in before.map(|b| b.layers.as_slice()).unwrap_or_default() {
        *previous.entry(layer.created_by.as_str()).or_default() += layer.size_bytes;
    }
    let mut rows: Vec<&LayerRecord> = now.layers.iter().filter(|l| l.size_bytes > 0).collect();
    rows.sort_by_key(|l| std::cmp::Reverse(l.size_bytes));
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["step", "size", "change"]);
    for layer in rows {
        let change = match (
            before.filter(|_| !previous.is_empty()),
            previous.get(layer.created_by.as_str()),
        ) {
            (None, _) => "first build".to_string(),
            (Some(_), None) => "new".to_string(),
            (Some(_), Some(&old)) => signed_mb(layer.size_bytes as i64 - old as i64),
        };
        table.add_row(vec![
            shorten(&layer.created_by, 70),
            format!("{} MB", mb(layer.size_bytes)),
            change,
        ]);
    }
    table
}

fn signed_mb(delta: i64) -> String {
    if delta.unsigned_abs() < 50_000 {
        "=".into()
    } else {
        format!(
            "{}{} MB",
            if delta > 0 { "+" } else { "-" },
            mb(delta.unsigned_abs())
        )
    }
}

/// Bytes under each top-level path of a layer folder (a file's own length, as the layer's tar
/// holds it), biggest first.
pub fn top_level(dir: &Path) -> Vec<(String, u64)> {
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        let Ok(relative) = entry.path().strip_prefix(dir) else {
            continue;
        };
        let mut parts = relative.components();
        let (Some(first), second) = (parts.next(), parts.next()) else {
            continue;
        };
        // Two levels: `/opt/venv` says more than `/opt`.
        let key = match second {
            Some(second) if entry.depth() >= 2 => format!(
                "/{}/{}",
                first.as_os_str().to_string_lossy(),
                second.as_os_str().to_string_lossy()
            ),
            _ => format!("/{}", first.as_os_str().to_string_lossy()),
        };
        let len = entry
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .unwrap_or(0);
        *sizes.entry(key).or_default() += len;
    }
    let mut out: Vec<(String, u64)> = sizes.into_iter().filter(|(_, s)| *s > 0).collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// A layer: its position from the bottom, its bytes, and its bytes by top-level path.
type Layer = (usize, u64, Vec<(String, u64)>);

/// The `n` biggest layers of an image (folders lowest first, as `engine::layer_dirs` gives
/// them), each as (position from the bottom, total bytes, top-level paths), biggest first.
pub fn biggest_layers(dirs: &[std::path::PathBuf], n: usize) -> Vec<Layer> {
    let mut layers: Vec<Layer> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let paths = top_level(dir);
            (i + 1, paths.iter().map(|(_, s)| s).sum(), paths)
        })
        .collect();
    layers.sort_by_key(|l| std::cmp::Reverse(l.1));
    layers.truncate(n);
    layers
}

/// The `--sizes` report of one image.
pub fn render(now: &ImageResult, before: Option<&ImageResult>) -> String {
    let mut out = format!(
        "{}: {} MB by step\n{}\n",
        now.image,
        now.size_bytes.map(mb).unwrap_or_else(|| "?".into()),
        by_step(now, before)
    );
    let Some(dirs) = now.id.as_deref().and_then(crate::engine::layer_dirs) else {
        out.push_str("  (the layers' paths need a local overlay2 engine readable by this user)\n");
        return out;
    };
    for (position, total, paths) in biggest_layers(&dirs, 3).into_iter().filter(|l| l.1 > 0) {
        let shown: Vec<String> = paths
            .iter()
            .take(6)
            .map(|(p, s)| format!("{p} {} MB", mb(*s)))
            .collect();
        out.push_str(&format!(
            "  layer {position} of {}, {} MB: {}\n",
            dirs.len(),
            mb(total),
            shown.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_text_loses_buildkit_decoration() {
        assert_eq!(clean("COPY /out/ / # buildkit"), "COPY /out/ /");
        assert_eq!(
            clean("RUN |2 A=1 B=2 /bin/sh -c npm   run build # buildkit"),
            "RUN npm run build"
        );
        assert_eq!(
            clean("/bin/sh -c #(nop)  CMD [\"x\"]"),
            "#(nop) CMD [\"x\"]"
        );
    }

    #[test]
    fn top_level_sums_files_under_two_levels() {
        let dir = std::env::temp_dir().join(format!("xtask-sizes-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("opt/venv/lib")).unwrap();
        std::fs::create_dir_all(dir.join("app")).unwrap();
        std::fs::write(dir.join("opt/venv/lib/a"), vec![0u8; 3000]).unwrap();
        std::fs::write(dir.join("app/x"), vec![0u8; 10]).unwrap();
        std::fs::write(dir.join("top"), vec![0u8; 5]).unwrap();
        let sizes = top_level(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            sizes,
            [
                ("/opt/venv".to_string(), 3000),
                ("/app/x".to_string(), 10),
                ("/top".to_string(), 5)
            ]
        );
    }

    fn result(size: u64) -> ImageResult {
        serde_json::from_value(serde_json::json!({
            "service": "backend", "image": "todo-backend", "tags": [], "id": "sha256:1",
            "seconds": 1.0, "size_bytes": size, "budget_bytes": 150_000_000u64, "ok": true,
            "error": null
        }))
        .unwrap()
    }

    #[test]
    fn growth_over_the_limit_warns() {
        let mut a = result(120_000_000);
        let b = result(110_000_000);
        assert!(growth_warning(&a, Some(&b), 5.0)
            .unwrap()
            .contains("grew by 10.0 MB"));
        assert!(growth_warning(&a, Some(&b), 20.0).is_none());
        a.size_bytes = Some(100_000_000);
        assert!(growth_warning(&a, Some(&b), 5.0).is_none());
        assert!(growth_warning(&a, None, 5.0).is_none());
    }
}
