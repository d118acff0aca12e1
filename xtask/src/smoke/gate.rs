//! The vulnerability gate, before any release push.
//!
//! Debian packages: each one in the image's SBOM is compared with the `-security` and `-updates`
//! indexes of its suite, fetched through the project's mirror and cached with their date ([`debian`]).
//! A newer version in `-security` fails the image; one in `-updates` only warns. Offline, the
//! cached indexes serve and the row says how old they are; with none at all it is NOT CHECKED.
//!
//! Python and npm packages: Trivy, when a vulnerability database is at hand (this host cannot
//! download one); otherwise NOT CHECKED with the reason, never passed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use super::lint::Tools;
use super::report::Row;
use crate::config::Config;
use crate::debian::{self, Archive, Pocket};
use crate::sbom::Sbom;

/// How old the cached indexes may be before the gate fetches them again.
const INDEX_MAX_AGE: Duration = Duration::from_secs(3600);

/// The Debian row of one image, from its SBOM.
pub fn debian_row(root: &Path, config: &Config, sbom: &Sbom) -> Row {
    let row = Row::named("lint", "vulns-debian", &sbom.service);
    if sbom.debian.is_empty() {
        return row.figure("no Debian package seen").not_checked(
            "syft found no Debian package record in the image (no /var/lib/dpkg/status, no \
             status.d): there is nothing to compare with the archives",
        );
    }
    let suite = sbom
        .codename
        .clone()
        .unwrap_or_else(|| config.bases.debian_suite.clone());
    let mirrors = match crate::mirror::resolve(&config.bases, &suite) {
        Ok(mirrors) => mirrors,
        Err(err) => return row.figure("no mirror").not_checked(format!("{err:#}")),
    };
    let archive = Archive::new(root, &mirrors, &suite);
    let freshness = archive.ensure_fresh(INDEX_MAX_AGE);
    let offline = match (&freshness.offline, freshness.age_seconds) {
        (Some(why), None) => {
            return row.figure("no index").not_checked(format!(
                "no cached index of {suite}-security and the archives cannot be reached: {why}"
            ))
        }
        (Some(_), Some(_)) => " (offline: the cached one)",
        _ => "",
    };
    let indexes = [Pocket::Security, Pocket::Updates]
        .map(|pocket| archive.index(pocket).map(|index| (pocket, index)));
    let [Ok(security), Ok(updates)] = indexes else {
        let why = indexes
            .into_iter()
            .find_map(|i| i.err())
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        return row.figure("no index").not_checked(why);
    };
    let fails = match debian::pending(&sbom.debian, &[(security.0, &security.1)]) {
        Ok(found) => found,
        Err(e) => return row.not_checked(format!("{e:#}")),
    };
    let warns: Vec<debian::Pending> =
        match debian::pending(&sbom.debian, &[(updates.0, &updates.1)]) {
            Ok(found) => found
                .into_iter()
                .filter(|w| !fails.iter().any(|f| f.package == w.package))
                .collect(),
            Err(e) => return row.not_checked(format!("{e:#}")),
        };
    let describe = |found: &[debian::Pending]| -> String {
        found
            .iter()
            .map(|p| {
                format!(
                    "{} {} -> {} (source {}, {})",
                    p.package,
                    p.installed,
                    p.fixed,
                    p.source,
                    p.pocket.name(&suite)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let findings = fails
        .iter()
        .chain(&warns)
        .map(|p| {
            json!({
                "package": p.package, "installed": p.installed, "fixed": p.fixed,
                "source": p.source, "archive": p.pocket.name(&suite),
                "severity": if p.pocket == Pocket::Security { "FAIL" } else { "WARN" },
            })
        })
        .collect();
    let row = row
        .figure(format!(
            "{} packages, {} security fixes pending, {} updates pending; {}{offline}",
            sbom.debian.len(),
            fails.len(),
            warns.len(),
            freshness.describe()
        ))
        .findings(findings);
    let fix = "rebuild on patched bases: `cargo xtask bases --refresh`, then `cargo xtask build`";
    if !fails.is_empty() {
        row.fail(format!(
            "fixed in {suite}-security: {}; {fix}",
            describe(&fails)
        ))
    } else if !warns.is_empty() {
        row.warn(format!(
            "fixed in {suite}-updates: {}; {fix}",
            describe(&warns)
        ))
    } else {
        row.pass()
    }
}

/// The Trivy database folder: TODO_TRIVY_DB, else `vulnerabilities.trivy_db`, else the tools
/// folder's own cache; only when it holds `db/trivy.db`.
fn trivy_db(root: &Path, config: &Config, tools: &Tools) -> Result<PathBuf, String> {
    let named = std::env::var_os("TODO_TRIVY_DB")
        .map(PathBuf::from)
        .or_else(|| {
            config
                .vulnerabilities
                .trivy_db
                .as_ref()
                .map(|p| root.join(p))
        });
    let dir = named.clone().unwrap_or_else(|| tools.cache.clone());
    if dir.join("db/trivy.db").is_file() {
        return Ok(dir);
    }
    Err(match named {
        Some(dir) => format!("{} holds no db/trivy.db", dir.display()),
        None => format!(
            "no vulnerability database for Python and npm packages: Trivy downloads its own from \
             a registry this host cannot reach, and docker scout needs Docker Hub; name a Trivy \
             cache folder made elsewhere (`trivy image --download-db-only`) in TODO_TRIVY_DB or \
             vulnerabilities.trivy_db (default place: {})",
            tools.cache.display()
        ),
    })
}

/// The Python and npm row of one image: Trivy's library scan with the project's threshold.
pub fn libraries_row(
    root: &Path,
    config: &Config,
    tools: &Result<Tools, String>,
    service: &str,
    reference: &str,
) -> Row {
    let row = Row::named("lint", "vulns-libraries", service);
    let tools = match tools {
        Ok(tools) => tools,
        Err(why) => return row.not_checked(format!("trivy could not be installed: {why}")),
    };
    let db = match trivy_db(root, config, tools) {
        Ok(db) => db,
        Err(why) => return row.figure("no database").not_checked(why),
    };
    let v = &config.vulnerabilities;
    let mut command = Command::new(&tools.trivy);
    command
        .args(["image", "--image-src", "docker", "--scanners", "vuln"])
        .args([
            "--pkg-types",
            "library",
            "--skip-db-update",
            "--offline-scan",
        ])
        .arg("--severity")
        .arg(v.fail_on.join(","))
        .args(super::lint::TRIVY_OFFLINE)
        .arg("--cache-dir")
        .arg(&db)
        .arg(reference);
    if v.fixed_only {
        command.arg("--ignore-unfixed");
    }
    let report = match super::lint::json_of(&mut command) {
        Ok(report) => report,
        Err(e) => return row.not_checked(format!("trivy could not scan: {e:#}")),
    };
    let found: Vec<serde_json::Value> = report["Results"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["Vulnerabilities"].as_array().cloned().unwrap_or_default())
        .map(|v| {
            json!({
                "id": v["VulnerabilityID"], "severity": v["Severity"], "package": v["PkgName"],
                "installed": v["InstalledVersion"], "fixed": v["FixedVersion"],
            })
        })
        .collect();
    let problems: Vec<String> = found
        .iter()
        .map(|f| {
            format!(
                "{} {} in {} {} (fixed in {})",
                f["id"].as_str().unwrap_or("?"),
                f["severity"].as_str().unwrap_or("?"),
                f["package"].as_str().unwrap_or("?"),
                f["installed"].as_str().unwrap_or("?"),
                f["fixed"].as_str().unwrap_or("no release")
            )
        })
        .collect();
    row.figure(format!(
        "{} at {}{}",
        found.len(),
        v.fail_on.join("/"),
        if v.fixed_only { " with a fix" } else { "" }
    ))
    .findings(found)
    .problems(problems)
}
