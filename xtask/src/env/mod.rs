//! `cargo xtask env check`: validates a dotenv file against the spec's rules.
//!
//! Every container reads its configuration from the environment, so a wrong value is caught here,
//! before anything starts, with the line to change and how. Other commands (`dev`, `up`, `smoke`,
//! `release`) call [`check_file`] and refuse to start unless the [`Report`] is ok, typically with
//! `env::check_file(&path).into_result()?`.
//!
//! The work is split into pure parts that unit tests feed raw strings: [`parse`] turns bytes into
//! assignments and syntax problems, [`rules::validate`] applies the rules table, and [`Report`]
//! gathers the result and renders it as text or JSON. Only [`check_file`] touches the disk.

mod parse;
mod report;

pub use report::plural;
mod rules;

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

pub use parse::parse;
#[allow(unused_imports)] // Part of the API for the commands that will call it.
pub use report::{Problem, Report, Severity};

#[derive(Debug, Args)]
pub struct EnvCmd {
    #[command(subcommand)]
    pub cmd: EnvSub,
}

#[derive(Debug, Subcommand)]
pub enum EnvSub {
    /// Check a dotenv file against the spec's rules and report every problem at once.
    Check {
        /// The dotenv file to check, relative to the repository root (default: `.env`).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Print one JSON object instead of the text report.
        #[arg(long)]
        json: bool,
    },
}

impl EnvCmd {
    pub fn run(self, sh: &xshell::Shell) -> anyhow::Result<()> {
        match self.cmd {
            EnvSub::Check { file, json } => {
                // Relative to the repository root, like `--config`, so the same command works
                // from any directory.
                let path = match file {
                    Some(file) => sh.current_dir().join(file),
                    None => default_file(sh),
                };
                let report = check_file(&path);
                let text = if json {
                    report.render_json()
                } else {
                    report.render_text()
                };
                print_stdout(&text)?;
                if !report.is_ok() {
                    anyhow::bail!(
                        "{} is not valid: {}",
                        path.display(),
                        report::plural(report.errors().count(), "error")
                    );
                }
                Ok(())
            }
        }
    }
}

/// Prints without panicking when the reader has gone away, as `| head` does.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(err).context("cannot print the report"))
        }
        _ => Ok(()),
    }
}

/// The file docker compose reads by default: `.env` at the repository root.
pub fn default_file(sh: &xshell::Shell) -> PathBuf {
    sh.current_dir().join(".env")
}

/// A dotenv file is a few hundred bytes; anything past this is not one, and is not read whole.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads and checks a dotenv file. Never fails: a file that is missing, a directory, unreadable
/// or too big gives a report with one error saying so and how to fix it.
pub fn check_file(path: &Path) -> Report {
    match read_limited(path) {
        Ok(bytes) => check_bytes(Some(path), &bytes),
        Err(problem) => Report::unreadable(path, problem),
    }
}

/// Checks the contents of a dotenv file; `file` only names it in the report.
pub fn check_bytes(file: Option<&Path>, bytes: &[u8]) -> Report {
    let (entries, mut problems) = parse(bytes);
    let validated = rules::validate(&entries);
    problems.extend(validated.problems);
    Report::new(
        file.map(Path::to_path_buf),
        problems,
        validated.vars,
        &validated.secrets,
    )
}

/// Checks values that did not come from a file, such as the variables of the process; problems
/// have no line. Every name given is checked, so pass only the ones meant for the containers (an
/// unknown name gets a warning).
// For the commands that take values from their own environment.
pub fn check_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Report
where
    K: Into<String>,
    V: Into<String>,
{
    let entries: Vec<parse::Entry> = vars
        .into_iter()
        .map(|(key, value)| parse::Entry {
            line: None,
            key: key.into(),
            value: value.into(),
            quote: parse::Quote::None,
        })
        .collect();
    let validated = rules::validate(&entries);
    Report::new(None, validated.problems, validated.vars, &validated.secrets)
}

/// True when `value`, set as `name`, holds something env/rules.rs keeps secret (the whole value,
/// or a connection URL's password): such a variable belongs in a Secret, never a ConfigMap.
pub fn is_secret_value(name: &str, value: &str) -> bool {
    rules::rule_for(name).is_some_and(|rule| {
        rule.secrecy != rules::Secrecy::Plain
            && !rules::secret_parts(rule.secrecy, value).is_empty()
    })
}

fn read_limited(path: &Path) -> Result<Vec<u8>, Problem> {
    let shown = path.display();
    let template = "create it from the template: `cp env/.env.example .env` (from the repository \
                    root), then replace every REPLACE_ME; or pass --file PATH";
    let metadata = std::fs::metadata(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => {
            Problem::error("file-missing", format!("{shown} does not exist"), template)
        }
        _ => unreadable(path, &err),
    })?;
    if metadata.is_dir() {
        return Err(Problem::error(
            "not-a-file",
            format!("{shown} is a directory, not a dotenv file"),
            format!(
                "pass the file itself, e.g. --file {}",
                path.join(".env").display()
            ),
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|err| unreadable(path, &err))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Problem::error(
            "too-big",
            format!("{shown} is larger than 1 MiB, far more than a dotenv file holds"),
            "check that --file names the dotenv file",
        ));
    }
    Ok(bytes)
}

fn unreadable(path: &Path, err: &std::io::Error) -> Problem {
    let fix = if err.kind() == std::io::ErrorKind::PermissionDenied {
        format!("make it readable: `chmod u+r {}`", path.display())
    } else {
        "check that the path names a readable file".to_string()
    };
    Problem::error(
        "file-unreadable",
        format!("{} cannot be read: {err}", path.display()),
        fix,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: &str = "\
DATABASE_URL=postgresql://owner:pw-hunter2@ep-x.neon.tech/neondb?sslmode=require
BETTER_AUTH_SECRET=abcdefghijklmnopqrstuvwxyz0123456789
BETTER_AUTH_URL=http://localhost:3000
OPENAI_API_KEY=sk-unit-test-key-000000
AGENT_MODEL=gpt-4o
NEXT_PUBLIC_API_URL=http://localhost:8000
FRONTEND_URL=http://localhost:3000
VERSION=v1.0.0
";

    fn rules_of(report: &Report) -> Vec<(Option<usize>, &'static str)> {
        report.problems().iter().map(|p| (p.line, p.rule)).collect()
    }

    #[test]
    fn clean_file_is_ok() {
        let report = check_bytes(None, CLEAN.as_bytes());
        assert!(report.problems().is_empty(), "{:?}", report.problems());
        assert!(report.is_ok());
        assert_eq!(report.plain_value("VERSION"), Some("v1.0.0"));
        assert_eq!(report.plain_value("DATABASE_URL"), None);
    }

    #[test]
    fn syntax_and_rule_problems_come_together_in_line_order() {
        let text = CLEAN.replace("VERSION=v1.0.0", "VERSION=1.0.0") + "oops\nVERSION=v2.0.0\n";
        let report = check_bytes(None, text.as_bytes());
        assert_eq!(
            rules_of(&report),
            [(Some(9), "no-equals"), (Some(10), "duplicate")]
        );
        let mut raw = CLEAN.as_bytes().to_vec();
        raw.extend_from_slice(b"AGENT_MODEL=caf\xE9\n");
        raw.extend_from_slice(b"BETTER_AUTH_URL=nope\n");
        let report = check_bytes(None, &raw);
        assert_eq!(
            rules_of(&report),
            [
                (Some(9), "utf8"),
                (Some(10), "duplicate"),
                (Some(10), "http-url")
            ]
        );
    }

    #[test]
    fn secrets_appear_nowhere_in_text_or_json() {
        let text = CLEAN
            .replace("sk-unit-test-key-000000", "xk-unit-test-key-000000")
            .replace("abcdefghijklmnopqrstuvwxyz0123456789", "abcdefghij");
        let report = check_bytes(Some(Path::new(".env")), text.as_bytes());
        let outputs = [
            report.render_text(),
            report.to_json().to_string(),
            format!("{report:?}"),
        ];
        for output in outputs {
            for secret in ["xk-unit-test-key-000000", "abcdefghij", "pw-hunter2"] {
                assert!(!output.contains(secret), "{secret} leaked in {output}");
            }
        }
    }

    #[test]
    fn check_vars_validates_without_lines() {
        let report = check_vars([("VERSION", "1.0.0"), ("AGENT_MODEL", "gpt-4o")]);
        let errors: Vec<_> = report
            .errors()
            .map(|p| (p.line, p.variable.clone().unwrap(), p.rule))
            .collect();
        assert!(
            errors.contains(&(None, "VERSION".to_string(), "semver")),
            "{errors:?}"
        );
        assert!(
            errors.contains(&(None, "DATABASE_URL".to_string(), "required")),
            "{errors:?}"
        );
        assert!(report.render_text().contains("environment: error[semver]"));
        assert_eq!(report.to_json()["file"], serde_json::Value::Null);
    }

    #[test]
    fn missing_file_says_how_to_create_it() {
        let path = std::env::temp_dir().join("xtask-env-test-does-not-exist/.env");
        let report = check_file(&path);
        assert_eq!(rules_of(&report), [(None, "file-missing")]);
        assert!(report.problems()[0]
            .fix
            .contains("cp env/.env.example .env"));
        assert!(!report.is_ok());
    }

    #[test]
    fn directory_is_reported_as_not_a_file() {
        let report = check_file(&std::env::temp_dir());
        assert_eq!(rules_of(&report), [(None, "not-a-file")]);
    }
}
