//! The smoke run's results: one row per check and service, read by the table, `--json` and
//! `verify`.

use std::collections::BTreeMap;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Color, Table};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "FAIL")]
    Fail,
    /// Worth acting on, but not a failure (a Debian fix published in `-updates` only).
    #[serde(rename = "WARN")]
    Warn,
    /// The check could not run (a tool or a database is missing, or what it needs failed first).
    /// It never counts as passed, and it does not fail the run by itself.
    #[serde(rename = "NOT CHECKED")]
    NotChecked,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Warn => "WARN",
            Outcome::NotChecked => "NOT CHECKED",
        }
    }
}

/// A measured figure, for scripts that read `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measure {
    pub value: f64,
    pub unit: &'static str,
    /// The spec's limit, in the same unit, when it has one.
    pub limit: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// `stack`, `image` or `lint`.
    pub group: &'static str,
    /// A short stable name: `start-to-healthy`, `user`, `secrets`...
    pub check: std::borrow::Cow<'static, str>,
    pub service: String,
    pub result: Outcome,
    /// What was seen, in a few words (`1.4 s`, `uid 1001 (appuser)`).
    pub figure: String,
    /// On a failure, the cause and the fix; on NOT CHECKED, why it could not run.
    pub detail: Option<String>,
    pub measure: Option<Measure>,
    /// Every finding of the check as data (the vulnerability gate's packages), for `--json`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<serde_json::Value>,
}

impl Row {
    /// `check` is a fixed name, or one made of service names (`frontend-to-backend`).
    pub fn named(
        group: &'static str,
        check: impl Into<std::borrow::Cow<'static, str>>,
        service: &str,
    ) -> RowBuilder {
        RowBuilder(Row {
            group,
            check: check.into(),
            service: service.to_string(),
            result: Outcome::Pass,
            figure: String::new(),
            detail: None,
            measure: None,
            findings: Vec::new(),
        })
    }
}

/// Builds a row in one expression: `Row::named(..).figure(..).pass()`.
pub struct RowBuilder(Row);

impl RowBuilder {
    pub fn figure(mut self, figure: impl Into<String>) -> Self {
        self.0.figure = figure.into();
        self
    }

    pub fn measure(mut self, value: f64, unit: &'static str, limit: Option<f64>) -> Self {
        self.0.measure = Some(Measure { value, unit, limit });
        self
    }

    pub fn pass(self) -> Row {
        self.0
    }

    pub fn fail(mut self, cause: impl Into<String>) -> Row {
        self.0.result = Outcome::Fail;
        self.0.detail = Some(cause.into());
        self.0
    }

    pub fn findings(mut self, findings: Vec<serde_json::Value>) -> Self {
        self.0.findings = findings;
        self
    }

    pub fn warn(mut self, note: impl Into<String>) -> Row {
        self.0.result = Outcome::Warn;
        self.0.detail = Some(note.into());
        self.0
    }

    pub fn not_checked(mut self, why: impl Into<String>) -> Row {
        self.0.result = Outcome::NotChecked;
        self.0.detail = Some(why.into());
        self.0
    }

    /// Passes when `problems` is empty, else fails with all of them at once.
    pub fn problems(self, problems: Vec<String>) -> Row {
        if problems.is_empty() {
            self.pass()
        } else {
            self.fail(problems.join("; "))
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SmokeReport {
    pub run_id: String,
    /// True when no check failed (NOT CHECKED rows are allowed).
    pub ok: bool,
    /// Service -> the image reference checked.
    pub images: BTreeMap<String, String>,
    /// Service -> the image id, so a script knows exactly what was checked.
    pub image_ids: BTreeMap<String, String>,
    pub network: String,
    /// True when `--keep` left the stack running.
    pub kept: bool,
    pub seconds: f64,
    pub passed: usize,
    pub failed: usize,
    pub warned: usize,
    pub not_checked: usize,
    pub checks: Vec<Row>,
}

impl SmokeReport {
    pub fn new(
        run_id: String,
        images: BTreeMap<String, String>,
        image_ids: BTreeMap<String, String>,
        network: String,
        mut checks: Vec<Row>,
    ) -> SmokeReport {
        let order = |g: &str| match g {
            "stack" => 0,
            "image" => 1,
            _ => 2,
        };
        // A stable sort keeps each group in the order its checks ran.
        checks.sort_by_key(|r| order(r.group));
        let count = |o: Outcome| checks.iter().filter(|r| r.result == o).count();
        SmokeReport {
            run_id,
            ok: count(Outcome::Fail) == 0,
            passed: count(Outcome::Pass),
            failed: count(Outcome::Fail),
            warned: count(Outcome::Warn),
            not_checked: count(Outcome::NotChecked),
            images,
            image_ids,
            network,
            kept: false,
            seconds: 0.0,
            checks,
        }
    }

    pub fn failures(&self) -> impl Iterator<Item = &Row> {
        self.checks.iter().filter(|r| r.result == Outcome::Fail)
    }

    /// One line per failure, for the error that ends the run.
    pub fn failure_summary(&self) -> String {
        self.failures()
            .map(|r| {
                format!(
                    "{} {}: {}",
                    r.service,
                    r.check,
                    r.detail.as_deref().unwrap_or(&r.figure)
                )
            })
            .collect::<Vec<_>>()
            .join("\n  ")
    }

    pub fn table(&self) -> String {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(["check", "service", "result", "figure", "cause / note"]);
        for row in &self.checks {
            let color = match row.result {
                Outcome::Pass => Color::Green,
                Outcome::Fail => Color::Red,
                Outcome::Warn => Color::DarkYellow,
                Outcome::NotChecked => Color::Yellow,
            };
            table.add_row(vec![
                Cell::new(format!("{}: {}", row.group, row.check)),
                Cell::new(&row.service),
                Cell::new(row.result.label()).fg(color),
                Cell::new(&row.figure),
                Cell::new(wrap(row.detail.as_deref().unwrap_or(""), 60)),
            ]);
        }
        format!(
            "{table}\n{} passed, {} failed, {} warned, {} not checked in {:.1}s (run {})",
            self.passed, self.failed, self.warned, self.not_checked, self.seconds, self.run_id
        )
    }
}

/// Wraps on spaces so the table stays readable on a terminal and in a CI log alike.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split(' ') {
        if line > 0 && line + 1 + word.chars().count() > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.chars().count();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_ok_follow_the_rows() {
        let rows = vec![
            Row::named("image", "user", "backend")
                .figure("uid 1001")
                .pass(),
            Row::named("stack", "start-to-healthy", "backend")
                .measure(41.0, "s", Some(30.0))
                .fail("not healthy within 30 s"),
            Row::named("lint", "vulnerabilities", "backend").not_checked("no database"),
        ];
        let report = SmokeReport::new(
            "r".into(),
            BTreeMap::new(),
            BTreeMap::new(),
            "n".into(),
            rows,
        );
        assert!(!report.ok);
        assert_eq!(
            (report.passed, report.failed, report.not_checked),
            (1, 1, 1)
        );
        // Stack rows come first whatever order the checks ran in.
        assert_eq!(report.checks[0].check, "start-to-healthy");
        assert_eq!(
            report.failure_summary(),
            "backend start-to-healthy: not healthy within 30 s"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"][2]["result"], "NOT CHECKED");
        assert_eq!(json["checks"][0]["measure"]["limit"], 30.0);
        let table = report.table();
        assert!(
            table.contains("NOT CHECKED") && table.contains("1 failed"),
            "{table}"
        );
    }

    #[test]
    fn an_empty_problem_list_passes() {
        let row = Row::named("image", "env", "frontend").problems(vec![]);
        assert_eq!(row.result, Outcome::Pass);
        let row = Row::named("image", "env", "frontend").problems(vec!["a".into(), "b".into()]);
        assert_eq!(row.detail.as_deref(), Some("a; b"));
    }

    #[test]
    fn wrapping_keeps_words_whole() {
        assert_eq!(wrap("aaa bbb ccc", 7), "aaa bbb\nccc");
        assert_eq!(wrap("", 7), "");
    }
}
