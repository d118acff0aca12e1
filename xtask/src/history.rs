//! `cargo xtask history`: build time and size per image over the latest builds, as a table with a
//! sparkline per column, or as one self-contained HTML page of charts.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use plotters::prelude::*;
use xshell::Shell;

use crate::build::{BuildReport, HISTORY};

#[derive(Debug, Args)]
pub struct HistoryCmd {
    /// How many of the latest builds to show.
    #[arg(long, default_value_t = 20)]
    last: usize,
    /// Write one self-contained HTML page with a chart of time and one of size per image.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

/// One column of the table: an image's time or size over the builds (None where that build did
/// not make the image).
struct Series {
    image: String,
    seconds: Vec<Option<f64>>,
    megabytes: Vec<Option<f64>>,
}

impl HistoryCmd {
    pub fn run(self, sh: &Shell) -> Result<()> {
        if self.last == 0 {
            bail!("--last must be at least 1");
        }
        let text = sh.read_file(HISTORY).unwrap_or_default();
        let builds: Vec<BuildReport> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if builds.is_empty() {
            bail!("no build recorded in {HISTORY} yet: run `cargo xtask build` first");
        }
        let builds = &builds[builds.len().saturating_sub(self.last)..];
        let series = series(builds);
        match &self.html {
            Some(file) => {
                let page = html(builds, &series)?;
                std::fs::write(file, page)
                    .with_context(|| format!("cannot write {}", file.display()))?;
                eprintln!("wrote {} ({} builds)", file.display(), builds.len());
            }
            None => println!("{}", table(builds, &series)),
        }
        Ok(())
    }
}

fn series(builds: &[BuildReport]) -> Vec<Series> {
    let mut images: Vec<String> = Vec::new();
    for build in builds {
        for image in &build.images {
            if !images.contains(&image.image) {
                images.push(image.image.clone());
            }
        }
    }
    images
        .into_iter()
        .map(|name| {
            let find = |b: &BuildReport| b.images.iter().find(|i| i.image == name && i.ok).cloned();
            Series {
                seconds: builds.iter().map(|b| find(b).map(|i| i.seconds)).collect(),
                megabytes: builds
                    .iter()
                    .map(|b| find(b).and_then(|i| i.size_bytes).map(|s| s as f64 / 1e6))
                    .collect(),
                image: name,
            }
        })
        .collect()
}

/// A line of block characters, one per value, scaled between the column's lowest and highest;
/// a gap where there is no value.
pub fn sparkline(values: &[Option<f64>]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let known: Vec<f64> = values.iter().flatten().copied().collect();
    let (Some(lo), Some(hi)) = (
        known.iter().copied().reduce(f64::min),
        known.iter().copied().reduce(f64::max),
    ) else {
        return " ".repeat(values.len());
    };
    values
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(_) if (hi - lo).abs() < f64::EPSILON => BARS[3],
            Some(v) => BARS[(((v - lo) / (hi - lo)) * 7.0).round() as usize],
        })
        .collect()
}

fn when(build: &BuildReport) -> String {
    build
        .finished_at
        .as_deref()
        .map(|t| t.replace('T', " ").trim_end_matches('Z').to_string())
        .unwrap_or_else(|| "-".into())
}

fn table(builds: &[BuildReport], series: &[Series]) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["finished".to_string(), "revision".to_string()];
    for s in series {
        header.push(format!("{} time", s.image));
        header.push(format!("{} size", s.image));
    }
    table.set_header(header);
    let cell = |v: Option<f64>, unit: &str| {
        v.map(|v| format!("{v:.1} {unit}"))
            .unwrap_or_else(|| "-".into())
    };
    for (row, build) in builds.iter().enumerate() {
        let mut cells = vec![
            when(build),
            build.revision.chars().take(7).collect::<String>(),
        ];
        for s in series {
            cells.push(cell(s.seconds[row], "s"));
            cells.push(cell(s.megabytes[row], "MB"));
        }
        table.add_row(cells);
    }
    let mut lines = vec![String::new(), "oldest → newest".to_string()];
    for s in series {
        lines.push(sparkline(&s.seconds));
        lines.push(sparkline(&s.megabytes));
    }
    table.add_row(lines);
    format!("{table}\n{} builds from {HISTORY}", builds.len())
}

/// One SVG line chart of a value over the builds.
fn chart(title: &str, unit: &str, values: &[Option<f64>]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 260)).into_drawing_area();
        root.fill(&WHITE)?;
        let known: Vec<f64> = values.iter().flatten().copied().collect();
        let hi = known.iter().copied().fold(0.0, f64::max).max(1.0) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0..values.len().max(2) - 1, 0.0..hi)?;
        chart
            .configure_mesh()
            .x_desc("build (oldest → newest)")
            .y_desc(unit)
            .draw()?;
        let points: Vec<(usize, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i, v)))
            .collect();
        chart.draw_series(LineSeries::new(points, BLUE.stroke_width(2)))?;
        root.present()?;
    }
    Ok(svg)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn html(builds: &[BuildReport], series: &[Series]) -> Result<String> {
    let mut body = String::new();
    for s in series {
        body.push_str(&format!(
            "<h2>{}</h2>\n<div class=\"row\">\n",
            escape(&s.image)
        ));
        body.push_str(&chart(
            &format!("{}: build time", s.image),
            "seconds",
            &s.seconds,
        )?);
        body.push_str(&chart(&format!("{}: size", s.image), "MB", &s.megabytes)?);
        body.push_str("</div>\n");
    }
    let first = builds.first().map(when).unwrap_or_default();
    let last = builds.last().map(when).unwrap_or_default();
    Ok(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Build history</title>\n<style>body{{font-family:sans-serif;margin:2em}}\
         .row{{display:flex;flex-wrap:wrap;gap:1em}}</style></head>\n<body>\n\
         <h1>Build history</h1>\n<p>{} builds, {} to {}, from <code>{HISTORY}</code>.</p>\n\
         {body}</body></html>\n",
        builds.len(),
        escape(&first),
        escape(&last)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_between_lowest_and_highest() {
        assert_eq!(sparkline(&[Some(1.0), Some(8.0), None, Some(4.5)]), "▁█ ▅");
        assert_eq!(sparkline(&[Some(2.0), Some(2.0)]), "▄▄");
        assert_eq!(sparkline(&[None, None]), "  ");
    }

    #[test]
    fn the_page_holds_its_charts_inline() {
        let report: BuildReport = serde_json::from_value(serde_json::json!({
            "version": "1.0.0", "revision": "abcdef0123", "wall_seconds": 3.0,
            "finished_at": "2026-12-01T10:00:00Z",
            "images": [{"service": "backend", "image": "todo-backend", "tags": [],
                        "id": "sha256:1", "seconds": 3.0, "size_bytes": 120000000u64,
                        "budget_bytes": 150000000u64, "ok": true, "error": null}]
        }))
        .unwrap();
        let builds = vec![report.clone(), report];
        let page = html(&builds, &series(&builds)).unwrap();
        assert_eq!(page.matches("<svg").count(), 2, "{page}");
        assert!(!page.contains("<script") && !page.contains("src=\"http"));
        let text = table(&builds, &series(&builds));
        assert!(text.contains("120.0 MB") && text.contains("▄▄"), "{text}");
    }
}
