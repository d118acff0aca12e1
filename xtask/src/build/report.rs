//! The build's results: one structure that the table, `--json` and the history all read.

use std::path::PathBuf;

use std::io::Write;

use anyhow::Result;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Color, Table};
use serde::{Deserialize, Serialize};
use xshell::Shell;

pub const HISTORY: &str = "target/xtask/history.jsonl";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildReport {
    pub version: String,
    pub revision: String,
    pub wall_seconds: f64,
    /// When the build ended (RFC 3339); absent in histories written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub interrupted: bool,
    /// The engine's image store (`classic` or `containerd`): sizes are the bytes of the files in
    /// the layers on both, but the engine reports them differently (see `store`).
    #[serde(default)]
    pub image_store: String,
    /// The buildx builder named for the build, if any.
    #[serde(default)]
    pub builder: Option<String>,
    pub images: Vec<ImageResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageResult {
    pub service: String,
    pub image: String,
    pub tags: Vec<String>,
    pub id: Option<String>,
    pub seconds: f64,
    pub size_bytes: Option<u64>,
    pub budget_bytes: u64,
    pub ok: bool,
    pub error: Option<String>,
    #[serde(default)]
    pub steps: usize,
    #[serde(default)]
    pub cached_steps: usize,
    /// The registry cache the build imported, and the one it exported.
    #[serde(default)]
    pub cache_from: Option<String>,
    #[serde(default)]
    pub cache_to: Option<String>,
    /// `REPOSITORY:sha-<hash>@DIGEST`, when `--push` pushed the image.
    #[serde(default)]
    pub pushed: Option<String>,
    #[serde(default)]
    pub slowest_steps: Vec<(String, f64)>,
    #[serde(default)]
    pub log_file: PathBuf,
    /// The failing build's last log lines; not kept in the history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_lines: Vec<String>,
    /// Every Dockerfile instruction as BuildKit ran it, in its order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_list: Vec<StepRecord>,
    /// What went into the build, for the next build's `--explain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<super::explain::BuildInputs>,
    /// The image's history: one entry per instruction, with the size of the layer it made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerRecord>,
    /// Each platform's manifest and size, for a build of several platforms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<crate::store::PlatformImage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    pub name: String,
    pub cached: bool,
    pub seconds: Option<f64>,
}

/// One entry of an image's history (`docker image history`): the instruction and its layer's size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerRecord {
    pub created_by: String,
    pub size_bytes: u64,
}

/// An image id as `docker images` shows it: 12 hex digits, without `sha256:`.
pub fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// Megabytes as `docker images` counts them (10^6 bytes), one decimal.
pub fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

/// How many of the latest builds the comparison reads: the history file only grows, and a no-op
/// build should not spend its time parsing all of it.
const HISTORY_READ: usize = 50;

/// The latest previous builds, oldest first, back to the last successful build of each of
/// `services` and no further than [`HISTORY_READ`] builds: each line holds every context file's
/// digest, and parsing only what the comparison needs keeps a no-op build quick. A damaged line
/// is skipped rather than failing the build.
pub fn load_history(sh: &Shell, services: &[&str]) -> Vec<BuildReport> {
    let text = sh.read_file(HISTORY).unwrap_or_default();
    let mut found: Vec<BuildReport> = Vec::new();
    for line in text.lines().rev().take(HISTORY_READ) {
        let Ok(report) = serde_json::from_str::<BuildReport>(line) else {
            continue;
        };
        found.push(report);
        let known = |service: &&str| {
            found
                .iter()
                .any(|r| r.images.iter().any(|i| i.service == *service && i.ok))
        };
        if services.iter().all(known) {
            break;
        }
    }
    found.reverse();
    found
}

pub fn append_history(sh: &Shell, report: &BuildReport) -> Result<()> {
    let mut kept = report.clone();
    for image in &mut kept.images {
        image.last_lines.clear();
    }
    // One write in append mode, so that two builds finishing together both keep their line.
    let path = sh.current_dir().join(HISTORY);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    file.write_all(format!("{}\n", serde_json::to_string(&kept)?).as_bytes())?;
    Ok(())
}

/// The last successful result of a service before this build.
pub fn previous<'a>(history: &'a [BuildReport], service: &str) -> Option<&'a ImageResult> {
    history
        .iter()
        .rev()
        .flat_map(|r| r.images.iter())
        .find(|i| i.service == service && i.ok)
}

/// How size and time moved since the previous successful build of the same service.
pub fn change(now: &ImageResult, before: Option<&ImageResult>) -> String {
    let Some(before) = before else {
        return "first build".into();
    };
    let size = match (now.size_bytes, before.size_bytes) {
        (Some(a), Some(b)) => {
            let d = a as i64 - b as i64;
            if d.unsigned_abs() < 50_000 {
                "size =".to_string()
            } else {
                format!(
                    "size {}{} MB",
                    if d > 0 { "+" } else { "-" },
                    mb(d.unsigned_abs())
                )
            }
        }
        _ => "size ?".to_string(),
    };
    format!("{size}, time {:+.1}s", now.seconds - before.seconds)
}

pub fn table(report: &BuildReport, history: &[BuildReport]) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "image",
        "tags",
        "time",
        "cached",
        "slowest steps",
        "size",
        "budget",
        "change",
    ]);
    for image in &report.images {
        let tags: Vec<&str> = image
            .tags
            .iter()
            .map(|t| t.rsplit(':').next().unwrap_or(t))
            .collect();
        let slowest: Vec<String> = image
            .slowest_steps
            .iter()
            .map(|(name, s)| format!("{s:.1}s {}", shorten(name, 40)))
            .collect();
        let size = image
            .size_bytes
            .map(|s| format!("{} MB", mb(s)))
            .unwrap_or_else(|| "-".into());
        let status = if image.ok {
            Cell::new(size).fg(Color::Green)
        } else {
            Cell::new(size).fg(Color::Red)
        };
        table.add_row(vec![
            Cell::new(&image.image),
            Cell::new(tags.join("\n")),
            Cell::new(format!("{:.1}s", image.seconds)),
            Cell::new(format!("{}/{}", image.cached_steps, image.steps)),
            Cell::new(if !slowest.is_empty() {
                slowest.join("\n")
            } else if image.ok && image.steps > 0 && image.cached_steps == image.steps {
                "all cached".to_string()
            } else {
                // A build that failed before any step ran has nothing cached to speak of.
                "-".to_string()
            }),
            status,
            Cell::new(format!("< {} MB", mb(image.budget_bytes))),
            Cell::new(if image.ok {
                change(image, previous(history, &image.service))
            } else {
                "FAILED".into()
            }),
        ]);
    }
    format!(
        "{table}\nwall time {:.1}s, v{}, {}, {} image store",
        report.wall_seconds,
        report.version,
        &report.revision[..report.revision.len().min(12)],
        report.image_store
    )
}

/// The first `n` characters of `s`, ending in `…` when cut; the build's tables, `--sizes` and
/// `--explain` all cut their texts this way.
pub fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(size: u64, seconds: f64) -> ImageResult {
        ImageResult {
            service: "backend".into(),
            image: "todo-backend".into(),
            tags: vec!["todo-backend:latest".into()],
            id: Some("sha256:1".into()),
            seconds,
            size_bytes: Some(size),
            budget_bytes: 150_000_000,
            ok: true,
            error: None,
            steps: 10,
            cached_steps: 10,
            cache_from: None,
            cache_to: None,
            pushed: None,
            slowest_steps: vec![],
            log_file: "x.log".into(),
            last_lines: vec![],
            step_list: vec![],
            inputs: None,
            layers: vec![],
            platforms: vec![],
        }
    }

    #[test]
    fn change_compares_with_the_previous_successful_build() {
        assert_eq!(change(&result(120_000_000, 3.0), None), "first build");
        assert_eq!(
            change(&result(120_000_000, 3.0), Some(&result(110_000_000, 13.0))),
            "size +10.0 MB, time -10.0s"
        );
        assert_eq!(
            change(&result(120_000_000, 1.0), Some(&result(120_010_000, 1.0))),
            "size =, time +0.0s"
        );
    }

    /// A report of one build of these images at version 1.0.0.
    fn report_of(images: Vec<ImageResult>) -> BuildReport {
        BuildReport {
            version: "1.0.0".into(),
            revision: "abc".into(),
            wall_seconds: 1.0,
            image_store: "classic".into(),
            builder: None,
            finished_at: None,
            interrupted: false,
            images,
        }
    }

    #[test]
    fn a_failed_build_is_never_called_all_cached() {
        let mut failed = result(1, 1.0);
        (failed.ok, failed.steps, failed.cached_steps) = (false, 0, 0);
        failed.size_bytes = None;
        let report = report_of(vec![failed, result(1, 1.0)]);
        let table = table(&report, &[]);
        assert_eq!(table.matches("all cached").count(), 1, "{table}");
    }

    #[test]
    fn json_has_the_documented_keys() {
        let report = report_of(vec![result(1, 1.0)]);
        let value = serde_json::to_value(&report).unwrap();
        for key in ["version", "revision", "wall_seconds", "images"] {
            assert!(value.get(key).is_some(), "{key}");
        }
        for key in [
            "service",
            "image",
            "tags",
            "id",
            "seconds",
            "size_bytes",
            "budget_bytes",
            "ok",
            "error",
        ] {
            assert!(value["images"][0].get(key).is_some(), "{key}");
        }
    }
}
