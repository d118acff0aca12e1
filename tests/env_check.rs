//! Runs the real `cargo xtask env check` on the fixture files in `tests/fixtures/env/` and checks
//! its exit code, that every planted problem is reported on its line, the JSON shape, and that no
//! secret value appears in anything it prints.
//!
//! The binary works from the repository root, so every path given to it is absolute.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    support::root().join("tests/fixtures/env").join(name)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}):\n{}", self.stdout))
    }
}

fn check(file: &Path, json: bool) -> Run {
    let mut command = Command::new(support::xtask_bin());
    command.args(["env", "check", "--file"]).arg(file);
    if json {
        command.arg("--json");
    }
    let output = command.output().expect("the xtask binary runs");
    Run {
        code: output
            .status
            .code()
            .expect("the xtask exits by itself, not by a signal"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// One problem as (line, severity, rule, variable), the form the fixtures' comments declare.
type Expected = (Option<u64>, String, String, Option<String>);

/// The problems a fixture declares: each `# expect: SEVERITY RULE VARIABLE|-` comment applies to
/// the next line that is not itself an `# expect:` comment; `# expect-missing: SEVERITY RULE
/// VARIABLE` is a problem with no line.
fn declared(bytes: &[u8]) -> Vec<Expected> {
    let text = String::from_utf8_lossy(bytes);
    let mut expected = Vec::new();
    let mut pending = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index as u64 + 1;
        let parse = |rest: &str| -> (String, String, Option<String>) {
            let words: Vec<&str> = rest.split_whitespace().collect();
            assert_eq!(
                words.len(),
                3,
                "bad expect comment on line {number}: {line}"
            );
            let variable = (words[2] != "-").then(|| words[2].to_string());
            (words[0].to_string(), words[1].to_string(), variable)
        };
        if let Some(rest) = line.strip_prefix("# expect-missing:") {
            let (severity, rule, variable) = parse(rest);
            expected.push((None, severity, rule, variable));
        } else if let Some(rest) = line.strip_prefix("# expect:") {
            pending.push(parse(rest));
        } else {
            for (severity, rule, variable) in pending.drain(..) {
                expected.push((Some(number), severity, rule, variable));
            }
        }
    }
    assert!(pending.is_empty(), "an `# expect:` comment ends the file");
    expected.sort();
    expected
}

/// The problems a JSON report lists, in the same form.
fn reported(json: &Value) -> Vec<Expected> {
    let mut found = Vec::new();
    for (key, severity) in [("errors", "error"), ("warnings", "warning")] {
        for problem in json[key]
            .as_array()
            .unwrap_or_else(|| panic!("`{key}` is not a list"))
        {
            found.push((
                problem["line"].as_u64(),
                severity.to_string(),
                problem["rule"]
                    .as_str()
                    .expect("rule is a string")
                    .to_string(),
                problem["variable"].as_str().map(str::to_string),
            ));
        }
    }
    found.sort();
    found
}

/// The shape documented on `Report`: every key present with its type.
fn assert_shape(json: &Value) {
    assert!(json["file"].is_string(), "file: {json}");
    assert!(json["ok"].is_boolean(), "ok: {json}");
    assert!(json["variables"].is_object(), "variables: {json}");
    assert!(json["variables"]
        .as_object()
        .unwrap()
        .values()
        .all(Value::is_string));
    for key in ["errors", "warnings"] {
        for problem in json[key].as_array().unwrap() {
            assert!(
                problem["line"].is_u64() || problem["line"].is_null(),
                "{problem}"
            );
            assert!(
                problem["variable"].is_string() || problem["variable"].is_null(),
                "{problem}"
            );
            for field in ["rule", "message", "fix"] {
                let text = problem[field]
                    .as_str()
                    .unwrap_or_else(|| panic!("{field}: {problem}"));
                assert!(!text.is_empty(), "{field} is empty: {problem}");
            }
        }
    }
}

/// The raw value of every secret variable in a fixture, and the password of `DATABASE_URL`, as
/// they appear in the file (quotes removed): none may be printed.
fn secrets_in(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut secrets = Vec::new();
    for line in text.lines() {
        let line = line.trim().trim_start_matches("export").trim();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        match key.trim() {
            "BETTER_AUTH_SECRET" | "OPENAI_API_KEY" => {
                secrets.push(value.to_string());
                secrets.push(value.replace("\\\"", "\""));
            }
            "DATABASE_URL" => {
                let userinfo = value
                    .split_once("://")
                    .and_then(|(_, rest)| rest.split_once('@'));
                if let Some((_, password)) = userinfo.and_then(|(info, _)| info.split_once(':')) {
                    secrets.push(password.to_string());
                    secrets.push(password.replace("%40", "@"));
                }
            }
            _ => {}
        }
    }
    secrets
}

fn assert_no_secret(file: &Path, runs: &[&Run]) {
    let secrets = secrets_in(&std::fs::read(file).unwrap());
    assert!(
        !secrets.is_empty(),
        "{} should plant secrets",
        file.display()
    );
    for run in runs {
        for secret in &secrets {
            assert!(
                !run.all().contains(secret.as_str()),
                "secret {secret:?} printed:\n{}",
                run.all()
            );
        }
    }
}

#[test]
fn clean_file_passes_with_no_problem() {
    let file = fixture("clean.env");
    let text = check(&file, false);
    assert_eq!(text.code, 0, "{}", text.all());
    assert!(
        text.stdout.contains("ok, 9 variables set, 0 warnings"),
        "{}",
        text.stdout
    );
    let json = check(&file, true);
    assert_eq!(json.code, 0, "{}", json.all());
    let value = json.json();
    assert_shape(&value);
    assert_eq!(value["ok"], true);
    assert_eq!(reported(&value), []);
    assert_eq!(value["variables"]["VERSION"], "v1.0.0");
    assert_eq!(value["variables"]["DOCKER_REGISTRY"], "localhost:5000/todo");
    assert_eq!(
        value["variables"]["DATABASE_URL"],
        "postgresql://todo_owner:****@ep-fixture-000000.us-east-2.aws.neon.tech/neondb?sslmode=require"
    );
    assert_eq!(value["variables"]["OPENAI_API_KEY"], "**** (32 chars)");
    assert_no_secret(&file, &[&text, &json]);
}

#[test]
fn many_problems_are_all_reported_at_once_on_their_lines() {
    let file = fixture("many-problems.env");
    let expected = declared(&std::fs::read(&file).unwrap());
    assert!(
        expected.len() >= 20,
        "the fixture's expect comments were not read: {expected:?}"
    );

    let json = check(&file, true);
    assert_eq!(json.code, 1, "{}", json.all());
    let value = json.json();
    assert_shape(&value);
    assert_eq!(value["ok"], false);
    assert_eq!(reported(&value), expected);

    // The text report names file, line, rule and fix for each of them.
    let text = check(&file, false);
    assert_eq!(text.code, 1, "{}", text.all());
    let shown = file.display().to_string();
    for (line, severity, rule, _) in &expected {
        let place = match line {
            Some(line) => format!("{shown}:{line}: {severity}[{rule}]: "),
            None => format!("{shown}: {severity}[{rule}]: "),
        };
        assert!(
            text.stdout.contains(&place),
            "{place} missing from:\n{}",
            text.stdout
        );
    }
    let errors = expected.iter().filter(|e| e.1 == "error").count();
    assert_eq!(
        text.stdout.matches("    fix: ").count(),
        expected.len(),
        "{}",
        text.stdout
    );
    assert!(
        text.stderr
            .contains(&format!("is not valid: {errors} errors")),
        "{}",
        text.stderr
    );
    assert_no_secret(&file, &[&text, &json]);
}

#[test]
fn crlf_bom_export_quotes_and_comments_are_read_right() {
    let file = fixture("sloppy.env");
    let bytes = std::fs::read(&file).unwrap();
    assert!(
        bytes.starts_with(b"\xEF\xBB\xBF") && bytes.windows(2).any(|w| w == b"\r\n"),
        "fixture lost its BOM or CRLF"
    );

    let json = check(&file, true);
    assert_eq!(json.code, 0, "{}", json.all());
    let value = json.json();
    assert_shape(&value);
    assert_eq!(
        reported(&value),
        [(Some(1), "warning".into(), "bom".into(), None)]
    );
    let variables = &value["variables"];
    assert_eq!(variables["AGENT_MODEL"], "gpt-4o-mini#not-a-comment");
    assert_eq!(variables["BETTER_AUTH_URL"], "http://localhost:3000");
    assert_eq!(variables["FRONTEND_URL"], "http://localhost:3000");
    assert_eq!(variables["NEXT_PUBLIC_API_URL"], "http://localhost:8000");
    assert_eq!(variables["DOCKER_REGISTRY"], "");
    assert_eq!(variables["VERSION"], "v1.2.3-rc.1");
    // Single quotes keep `\n` as two characters; double quotes turn `\"` into one.
    assert_eq!(variables["BETTER_AUTH_SECRET"], "**** (42 chars)");
    assert_eq!(variables["OPENAI_API_KEY"], "**** (36 chars)");
    assert!(variables["DATABASE_URL"]
        .as_str()
        .unwrap()
        .starts_with("postgresql+psycopg://todo_owner:****@"));

    let text = check(&file, false);
    assert_eq!(text.code, 0, "{}", text.all());
    assert_no_secret(&file, &[&text, &json]);
}

#[test]
fn empty_file_is_an_error_listing_every_required_variable() {
    let json = check(&fixture("empty.env"), true);
    assert_eq!(json.code, 1, "{}", json.all());
    let value = json.json();
    assert_shape(&value);
    let found = reported(&value);
    assert_eq!(found[0], (None, "error".into(), "empty-file".into(), None));
    let missing: Vec<_> = found
        .iter()
        .filter(|p| p.2 == "required")
        .map(|p| p.3.clone().unwrap())
        .collect();
    assert_eq!(missing.len(), 8, "{found:?}");
    assert!(!missing.contains(&"DOCKER_REGISTRY".to_string()));
}

#[test]
fn missing_file_says_how_to_create_it() {
    let file = fixture("no-such-file.env");
    let text = check(&file, false);
    assert_eq!(text.code, 1, "{}", text.all());
    assert!(
        text.stdout.contains("error[file-missing]"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("does not exist"), "{}", text.stdout);
    assert!(
        text.stdout.contains("cp env/.env.example .env"),
        "{}",
        text.stdout
    );
    let value = check(&file, true).json();
    assert_eq!(
        reported(&value),
        [(None, "error".into(), "file-missing".into(), None)]
    );
}

#[test]
fn directory_is_not_a_file() {
    let text = check(&fixture(""), false);
    assert_eq!(text.code, 1, "{}", text.all());
    assert!(text.stdout.contains("error[not-a-file]"), "{}", text.stdout);
    assert!(text.stdout.contains("is a directory"), "{}", text.stdout);
}

/// The decision for `env/.env.example`: copied as is, only its three secrets fail, as
/// placeholders; once they are filled in, the file passes.
#[test]
fn example_fails_only_on_its_placeholders_until_they_are_filled_in() {
    let example = support::root().join("env/.env.example");
    let value = check(&example, true).json();
    assert_eq!(
        reported(&value),
        [
            (
                Some(17),
                "error".into(),
                "placeholder".into(),
                Some("DATABASE_URL".into())
            ),
            (
                Some(22),
                "error".into(),
                "placeholder".into(),
                Some("BETTER_AUTH_SECRET".into())
            ),
            (
                Some(28),
                "error".into(),
                "placeholder".into(),
                Some("OPENAI_API_KEY".into())
            ),
        ]
    );

    let filled = std::fs::read_to_string(&example)
        .unwrap()
        .replace(
            "BETTER_AUTH_SECRET=REPLACE_ME",
            "BETTER_AUTH_SECRET=filled-in-secret-0123456789abcdef",
        )
        .replace("OPENAI_API_KEY=REPLACE_ME", "OPENAI_API_KEY=sk-filled-in")
        .replace("REPLACE_ME", "filled-in-password");
    let dir = std::env::temp_dir().join(format!("xtask-env-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(".env");
    std::fs::write(&copy, filled).unwrap();
    let run = check(&copy, false);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!run.all().contains("filled-in"), "{}", run.all());
}

#[test]
fn relative_file_is_read_from_the_repository_root() {
    let output = Command::new(support::xtask_bin())
        .args(["env", "check", "--json", "--file", "env/.env.example"])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("the xtask binary runs");
    let value: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert!(
        value["file"]
            .as_str()
            .unwrap()
            .ends_with("env/.env.example"),
        "{value}"
    );
    assert_eq!(value["errors"][0]["rule"], "placeholder", "{value}");
}
