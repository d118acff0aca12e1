//! The outcome of a check: every problem found, and the variables with their secrets masked.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Errors make a file unusable; warnings are printed but do not stop anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One thing wrong with the configuration. Its text never contains a secret value: the parser and
/// the rules are written so, and [`Report::new`] scrubs any that slipped through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// The 1-based line in the file, or `None` for the whole file or a variable that is missing.
    pub line: Option<usize>,
    pub variable: Option<String>,
    /// A short stable name of the rule broken (`postgres-url`, `required`, `no-equals`...), which
    /// scripts and tests can match on.
    pub rule: &'static str,
    /// What is wrong, in a sentence that names the variable.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl Problem {
    pub fn error(rule: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(Severity::Error, rule, message.into(), fix.into())
    }

    pub fn warning(rule: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(Severity::Warning, rule, message.into(), fix.into())
    }

    fn new(severity: Severity, rule: &'static str, message: String, fix: String) -> Self {
        Problem {
            severity,
            line: None,
            variable: None,
            rule,
            message,
            fix,
        }
    }

    pub fn at(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }

    pub fn var(mut self, name: &str) -> Self {
        self.variable = Some(name.to_string());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A variable as it will reach the containers: the raw value (kept private, so that only
/// [`Report::plain_value`] hands out values, and only non-secret ones) and the form safe to show.
#[derive(Clone, PartialEq, Eq)]
pub struct Var {
    pub line: Option<usize>,
    value: String,
    shown: String,
    secret: bool,
}

impl Var {
    pub fn new(line: Option<usize>, value: String, shown: String, secret: bool) -> Self {
        Var {
            line,
            value,
            shown,
            secret,
        }
    }
}

// Written by hand so that `{:?}` on a report, in a panic or a log, cannot print a secret.
impl fmt::Debug for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Var")
            .field("line", &self.line)
            .field("shown", &self.shown)
            .finish()
    }
}

/// Everything a check found. Other commands call [`super::check_file`], then refuse to start
/// unless [`Report::is_ok`].
///
/// The JSON form ([`Report::to_json`], printed by `cargo xtask env check --json`) is one object:
///
/// ```json
/// {
///   "file": "/repo/.env",            // null when the values came from `check_vars`
///   "ok": false,                     // true when there is no error (warnings allowed)
///   "errors": [
///     {"line": 4, "variable": "DATABASE_URL", "rule": "postgres-url",
///      "message": "DATABASE_URL must be ...", "fix": "write it as ..."}
///   ],
///   "warnings": [],                  // same shape as errors
///   "variables": {"AGENT_MODEL": "gpt-4o", "OPENAI_API_KEY": "**** (51 chars)"}
/// }
/// ```
///
/// `line` is null for a problem with the whole file (missing, unreadable) or with a required
/// variable that is not set at all; `variable` is null for a problem that concerns no one
/// variable (a byte order mark, a line that is not UTF-8). Problems are in file order: problems
/// with the whole file first, then by line, then missing variables. `variables` holds the value
/// that wins for every name set, secrets masked (see [`super::rules::Secrecy`]).
#[derive(Debug, Clone)]
pub struct Report {
    file: Option<PathBuf>,
    problems: Vec<Problem>,
    vars: BTreeMap<String, Var>,
}

impl Report {
    /// Orders the problems and removes from their text every string in `secrets` (the raw secret
    /// values seen, including ones a later duplicate overrode). Rules never put a secret into a
    /// message; this is the second lock on the same door.
    pub fn new(
        file: Option<PathBuf>,
        mut problems: Vec<Problem>,
        vars: BTreeMap<String, Var>,
        secrets: &[String],
    ) -> Self {
        // Short secrets are left out: replacing every "ab" in a sentence would garble it, and a
        // value that short already fails its rule, whose message does not contain it.
        let secrets: Vec<&str> = secrets
            .iter()
            .map(String::as_str)
            .filter(|s| s.chars().count() >= 6)
            .collect();
        for problem in &mut problems {
            for secret in &secrets {
                if problem.message.contains(secret) {
                    problem.message = problem.message.replace(secret, "****");
                }
                if problem.fix.contains(secret) {
                    problem.fix = problem.fix.replace(secret, "****");
                }
            }
        }
        problems.sort_by_key(|p| match (p.line, &p.variable) {
            (None, None) => (0, 0),
            (Some(line), _) => (1, line),
            (None, Some(_)) => (2, 0),
        });
        Report {
            file,
            problems,
            vars,
        }
    }

    /// A report for a file that could not be read at all.
    pub fn unreadable(file: &Path, problem: Problem) -> Self {
        Report::new(
            Some(file.to_path_buf()),
            vec![problem],
            BTreeMap::new(),
            &[],
        )
    }

    /// True when nothing stops the containers from starting: no errors, warnings allowed.
    pub fn is_ok(&self) -> bool {
        !self.problems.iter().any(Problem::is_error)
    }

    /// Every problem, errors and warnings, in file order.
    // Like `into_result` and `plain_value`, for the commands that are still being written.
    #[cfg(test)]
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| !p.is_error())
    }

    /// The value of a variable that is not a secret (`VERSION`, `DOCKER_REGISTRY`...), for
    /// commands that need it, such as release naming its tags. Secrets are never handed out:
    /// docker compose reads them from the file itself.
    pub fn plain_value(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .filter(|v| !v.secret)
            .map(|v| v.value.as_str())
    }

    /// Every variable with its value and whether it is secret, for `deploy`, which generates a
    /// Kubernetes Secret from the secret ones and a ConfigMap from the rest. The caller holds
    /// secret values only to hand them to kustomize, never to print them.
    pub fn deployable_values(&self) -> impl Iterator<Item = (&str, &str, bool)> {
        self.vars
            .iter()
            .map(|(name, var)| (name.as_str(), var.value.as_str(), var.secret))
    }

    /// The name the text report uses for where the values came from.
    fn source(&self) -> String {
        match &self.file {
            Some(path) => path.display().to_string(),
            None => "environment".to_string(),
        }
    }

    /// The report for a person: one block per problem, `FILE:LINE: error[rule]: message`, then the
    /// fix indented below it, then one summary line.
    pub fn render_text(&self) -> String {
        let source = self.source();
        let mut out = String::new();
        for problem in &self.problems {
            let place = match problem.line {
                Some(line) => format!("{source}:{line}"),
                None => source.clone(),
            };
            let kind = if problem.is_error() {
                "error"
            } else {
                "warning"
            };
            out.push_str(&format!(
                "{place}: {kind}[{}]: {}\n",
                problem.rule, problem.message
            ));
            out.push_str(&format!("    fix: {}\n", problem.fix));
        }
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        if errors == 0 {
            out.push_str(&format!(
                "{source}: ok, {} variables set, {}\n",
                self.vars.len(),
                plural(warnings, "warning")
            ));
        } else {
            out.push_str(&format!(
                "{source}: {}, {}\n",
                plural(errors, "error"),
                plural(warnings, "warning")
            ));
        }
        out
    }

    /// The report as one JSON object; the shape is documented on [`Report`].
    // The report as one JSON value; the tests check its shape through it.
    #[cfg(test)]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.json_view()).unwrap_or_default()
    }

    /// The JSON text `--json` prints, keys in the documented order (a `Value` would sort them).
    pub fn render_json(&self) -> String {
        serde_json::to_string_pretty(&self.json_view()).unwrap_or_default() + "\n"
    }

    fn json_view(&self) -> JsonReport<'_> {
        let list = |errors: bool| {
            self.problems
                .iter()
                .filter(|p| p.is_error() == errors)
                .map(|p| JsonProblem {
                    line: p.line,
                    variable: p.variable.as_deref(),
                    rule: p.rule,
                    message: &p.message,
                    fix: &p.fix,
                })
                .collect()
        };
        JsonReport {
            file: self.file.as_ref().map(|f| f.display().to_string()),
            ok: self.is_ok(),
            errors: list(true),
            warnings: list(false),
            variables: self
                .vars
                .iter()
                .map(|(k, v)| (k.as_str(), v.shown.as_str()))
                .collect(),
        }
    }

    /// For commands that must not start on a bad configuration: `Ok` (warnings allowed) or an
    /// error whose text is the whole report followed by what to do.
    // `dev`, `up`, `smoke` and `release` call this before they start anything; until they are
    // written nothing in the binary does.
    pub fn into_result(self) -> anyhow::Result<Report> {
        if self.is_ok() {
            return Ok(self);
        }
        anyhow::bail!(
            "{}refusing to start: fix the {} above, then run `cargo xtask env check`",
            self.render_text(),
            plural(self.errors().count(), "error"),
        )
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    file: Option<String>,
    ok: bool,
    errors: Vec<JsonProblem<'a>>,
    warnings: Vec<JsonProblem<'a>>,
    variables: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
struct JsonProblem<'a> {
    line: Option<usize>,
    variable: Option<&'a str>,
    rule: &'a str,
    message: &'a str,
    fix: &'a str,
}

pub fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(value: &str, shown: &str, secret: bool) -> Var {
        Var::new(Some(1), value.to_string(), shown.to_string(), secret)
    }

    #[test]
    fn problems_are_ordered_file_then_lines_then_missing() {
        let problems = vec![
            Problem::error("required", "A is not set", "add it").var("A"),
            Problem::error("x", "line 9", "f").at(Some(9)).var("B"),
            Problem::warning("bom", "bom", "f").at(Some(1)),
            Problem::error("file", "whole file", "f"),
        ];
        let report = Report::new(None, problems, BTreeMap::new(), &[]);
        let rules: Vec<&str> = report.problems().iter().map(|p| p.rule).collect();
        assert_eq!(rules, ["file", "bom", "x", "required"]);
    }

    #[test]
    fn secrets_that_slip_into_a_message_are_scrubbed() {
        let problems =
            vec![Problem::error("x", "value hunter2-long here", "not hunter2-long").var("A")];
        let report = Report::new(
            None,
            problems,
            BTreeMap::new(),
            &["hunter2-long".to_string()],
        );
        assert_eq!(report.problems()[0].message, "value **** here");
        assert_eq!(report.problems()[0].fix, "not ****");
    }

    #[test]
    fn warnings_alone_leave_the_report_ok() {
        let report = Report::new(
            None,
            vec![Problem::warning("unknown", "FOO is unknown", "remove it")],
            BTreeMap::new(),
            &[],
        );
        assert!(report.is_ok());
        assert!(report.into_result().is_ok());
    }

    #[test]
    fn an_error_makes_into_result_fail_with_the_report() {
        let report = Report::new(
            Some(PathBuf::from("/r/.env")),
            vec![Problem::error("semver", "VERSION bad", "write v1.0.0")
                .at(Some(3))
                .var("VERSION")],
            BTreeMap::new(),
            &[],
        );
        assert!(!report.is_ok());
        let err = report.into_result().unwrap_err().to_string();
        assert!(
            err.contains("/r/.env:3: error[semver]: VERSION bad"),
            "{err}"
        );
        assert!(err.contains("refusing to start"), "{err}");
    }

    #[test]
    fn plain_value_never_hands_out_a_secret() {
        let mut vars = BTreeMap::new();
        vars.insert("VERSION".to_string(), var("v1.0.0", "v1.0.0", false));
        vars.insert(
            "OPENAI_API_KEY".to_string(),
            var("sk-abc", "**** (6 chars)", true),
        );
        let report = Report::new(None, vec![], vars, &[]);
        assert_eq!(report.plain_value("VERSION"), Some("v1.0.0"));
        assert_eq!(report.plain_value("OPENAI_API_KEY"), None);
        let debug = format!("{report:?}");
        assert!(!debug.contains("sk-abc"), "{debug}");
    }

    #[test]
    fn json_has_the_documented_shape() {
        let mut vars = BTreeMap::new();
        vars.insert("VERSION".to_string(), var("v1", "v1", false));
        let report = Report::new(
            Some(PathBuf::from("/r/.env")),
            vec![
                Problem::error("semver", "bad", "fix")
                    .at(Some(2))
                    .var("VERSION"),
                Problem::warning("bom", "bom", "fix").at(Some(1)),
            ],
            vars,
            &[],
        );
        let value = report.to_json();
        assert_eq!(value["file"], "/r/.env");
        assert_eq!(value["ok"], false);
        assert_eq!(value["errors"][0]["line"], 2);
        assert_eq!(value["errors"][0]["variable"], "VERSION");
        assert_eq!(value["errors"][0]["rule"], "semver");
        assert_eq!(value["warnings"][0]["variable"], serde_json::Value::Null);
        assert_eq!(value["variables"]["VERSION"], "v1");
    }

    #[test]
    fn text_report_names_file_line_rule_and_fix() {
        let report = Report::new(
            Some(PathBuf::from(".env")),
            vec![Problem::error("semver", "VERSION bad", "write v1.0.0")
                .at(Some(3))
                .var("VERSION")],
            BTreeMap::new(),
            &[],
        );
        assert_eq!(
            report.render_text(),
            ".env:3: error[semver]: VERSION bad\n    fix: write v1.0.0\n.env: 1 error, 0 warnings\n"
        );
    }
}
