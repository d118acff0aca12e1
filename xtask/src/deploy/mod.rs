//! `cargo xtask deploy render|check|apply [vX.Y.Z]`: the Kubernetes manifests of a release.
//!
//! A release writes an overlay beside its record ([`overlay`]): `deploy/base` with each image
//! pinned by the digest the registry holds. Every command here renders that overlay with
//! kustomize (Debian's package) together with a Secret and a ConfigMap generated from an env file
//! that `env check` passed; the generated kustomization lives in a private folder under
//! `target/xtask/deploy/` only while the command runs. `render` prints the result with the
//! Secret's values redacted; `check` validates every object offline against the Kubernetes
//! schemas (PyPI `kubernetes-validate`) and the project's policy ([`check`], rules and fixes in
//! `deploy/policy.toml`); `apply` checks, then applies exactly what it checked to the current
//! kube context, after a server-side dry run, and refuses a context that is absent or does not
//! answer before it applies anything.

mod check;
pub mod overlay;

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{json, Value};
use xshell::Shell;

use crate::config::Config;
use crate::engine;
use crate::env;
use crate::interrupt;
use crate::smoke::expect::Expect;
use crate::smoke::lint;
use check::{Finding, Policy};

/// The policy `check` applies, relative to the project root.
const POLICY_FILE: &str = "deploy/policy.toml";
/// Where each run keeps its generated kustomization while it runs.
const WORK_DIR: &str = "target/xtask/deploy";
/// Where releases keep their records and overlays.
const RELEASES_DIR: &str = "target/releases";
/// The schema validator, pinned; installed into the smoke checkers' venv on first use.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
const VALIDATE_PY: &str = include_str!("validate.py");
/// How long a kube context may take to answer before `apply` calls it unreachable.
const REQUEST_TIMEOUT: &str = "--request-timeout=10s";

#[derive(Debug, Args)]
pub struct DeployCmd {
    #[command(subcommand)]
    cmd: DeploySub,
}

#[derive(Debug, Subcommand)]
enum DeploySub {
    /// Print a release's manifests (kustomize), with the Secret's values redacted.
    Render(Target),
    /// Check a release's manifests offline: Kubernetes schemas and the project's policy.
    Check {
        #[command(flatten)]
        target: Target,
        /// Check this file of rendered manifests (YAML) instead of a release.
        #[arg(long, value_name = "FILE", conflicts_with = "version")]
        manifests: Option<PathBuf>,
    },
    /// Check a release's manifests, then apply them to the current kube context.
    Apply(Target),
}

#[derive(Debug, Args)]
struct Target {
    /// The release, vX.Y.Z (default: the newest release in target/releases with an overlay).
    version: Option<String>,
    /// The env file the Secret and ConfigMap are generated from, relative to the repository
    /// root (default: `.env`); `env check` must pass on it.
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
}

impl DeployCmd {
    pub fn run(self, sh: &Shell, config: &Config) -> Result<()> {
        interrupt::install();
        let root = sh.current_dir();
        let policy = load_policy(&root)?;
        let expect = Expect::load()?;
        let inputs = check::Inputs {
            config,
            expect: &expect,
            policy: &policy,
        };
        match self.cmd {
            DeploySub::Render(target) => {
                let rendered = render(sh, &root, &inputs, &target)?;
                print!("{}", rendered.shown);
                eprintln!(
                    "rendered {} objects of {} (Secret values redacted; `deploy apply` applies \
                     the real ones)",
                    rendered.objects.len(),
                    rendered.tag
                );
                Ok(())
            }
            DeploySub::Check { target, manifests } => {
                let (what, objects, shown) = match manifests {
                    Some(file) => {
                        let path = root.join(&file);
                        let text = std::fs::read_to_string(&path)
                            .with_context(|| format!("cannot read {}", path.display()))?;
                        let objects = parse(&text)
                            .with_context(|| format!("{} is not YAML", path.display()))?;
                        (file.display().to_string(), objects, None)
                    }
                    None => {
                        let rendered = render(sh, &root, &inputs, &target)?;
                        let what = rendered.tag.clone();
                        (what, rendered.objects, Some(rendered.shown))
                    }
                };
                let findings = check_all(&root, &objects, shown.as_deref(), &inputs)?;
                report(&what, &objects, &findings, &policy)
            }
            DeploySub::Apply(target) => apply(sh, &root, &inputs, &target),
        }
    }
}

fn load_policy(root: &Path) -> Result<Policy> {
    let path = root.join(POLICY_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {POLICY_FILE}"))?;
    toml::from_str(&text).with_context(|| format!("{POLICY_FILE} is not valid"))
}

/// A release's manifests, rendered.
struct Rendered {
    tag: String,
    /// Every object, Secret values included: what `check` reads and `apply` applies.
    objects: Vec<Value>,
    /// The YAML that `apply` hands to kubectl.
    full: String,
    /// The YAML shown to people: the Secret's values redacted.
    shown: String,
    /// The folder of this run's generated kustomization, removed on drop.
    work: WorkDir,
}

/// A folder only the owner may read, removed when dropped (every way out of the command but a
/// second Ctrl-C or a kill; it lies under `target/`, which git ignores).
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(root: &Path, tag: &str) -> Result<WorkDir> {
        let dir = root
            .join(WORK_DIR)
            .join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.parent().unwrap())?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(WorkDir(dir))
    }

    /// Writes a file only the owner may read.
    fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.0.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The release to deploy: (tag, overlay folder relative to the root).
fn find_release(root: &Path, version: Option<&str>) -> Result<(String, PathBuf)> {
    let releases = Path::new(RELEASES_DIR);
    let has_overlay = |tag: &str| {
        root.join(releases)
            .join(tag)
            .join(overlay::KUSTOMIZATION)
            .is_file()
    };
    if let Some(version) = version {
        let tag = format!("v{}", version.trim_start_matches('v'));
        if crate::release::parse_version(&tag).is_err() {
            bail!("`{version}` is not a release version: give it as vX.Y.Z, e.g. v1.0.1");
        }
        if !has_overlay(&tag) {
            bail!(
                "no overlay for {tag} in {}: release it with `cargo xtask release {tag}` (a \
                 release writes its overlay beside its record; releases made before `deploy` \
                 existed have none)",
                releases.join(&tag).display()
            );
        }
        return Ok((tag.clone(), releases.join(tag)));
    }
    let newest = std::fs::read_dir(root.join(releases))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| has_overlay(name))
        .filter_map(|name| {
            let version = crate::release::parse_version(&name).ok()?;
            Some((version, name))
        })
        .max();
    match newest {
        Some((_, tag)) => Ok((tag.clone(), releases.join(tag))),
        None => bail!(
            "no release to deploy: {RELEASES_DIR} holds no release overlay; run `cargo xtask \
             release vX.Y.Z` first, or name a release"
        ),
    }
}

/// Renders a release's overlay with the Secret and ConfigMap of the env file.
fn render(sh: &Shell, root: &Path, inputs: &check::Inputs, target: &Target) -> Result<Rendered> {
    let policy = inputs.policy;
    let project = &inputs.config.project.name;
    let (tag, overlay_dir) = find_release(root, target.version.as_deref())?;
    let env_file = target
        .env_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(".env"));
    let report = env::check_file(&root.join(&env_file)).into_result()?;
    engine::ensure_program(sh, "kustomize", "kustomize/trixie")?;

    let mut secrets = Vec::new();
    let mut secret_literals = Vec::new();
    let mut config_literals = Vec::new();
    for (name, value, secret) in report.deployable_values() {
        if value.is_empty() || policy.env.not_deployed.iter().any(|n| n == name) {
            continue;
        }
        if secret {
            secrets.push(value.to_string());
            secret_literals.push(format!("{name}={value}"));
        } else {
            config_literals.push(format!("{name}={value}"));
        }
    }
    let work = WorkDir::new(root, &tag)?;
    let relative = work.0.strip_prefix(root).unwrap_or(&work.0).to_path_buf();
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [overlay::relative_to(&relative, &overlay_dir)],
        "secretGenerator": [{ "name": policy.env.secret, "literals": secret_literals }],
        "configMapGenerator": [{ "name": policy.env.config_map, "literals": config_literals }],
        "generatorOptions": { "labels": { "app.kubernetes.io/part-of": project } },
    });
    work.write(
        overlay::KUSTOMIZATION,
        &serde_yaml::to_string(&kustomization)?,
    )?;
    let out = Command::new("kustomize")
        .arg("build")
        .arg(&work.0)
        .stdin(Stdio::null())
        .output()
        .context("cannot run kustomize")?;
    if interrupt::interrupted() {
        return Err(interrupt::Interrupted.into());
    }
    if !out.status.success() {
        let stderr = scrub(&String::from_utf8_lossy(&out.stderr), &secrets);
        bail!(
            "kustomize could not render {tag} ({}): {}",
            overlay_dir.display(),
            stderr.trim()
        );
    }
    let full = String::from_utf8(out.stdout).context("kustomize printed something not UTF-8")?;
    let objects = parse(&full).context("kustomize's output is not YAML")?;
    let shown = format!(
        "# {tag}: {} with the Secret and ConfigMap from {}; the Secret's values are redacted.\n{}",
        overlay_dir.display(),
        env_file.display(),
        to_yaml(&objects.iter().map(redact).collect::<Vec<_>>())?
    );
    // The second lock on the door: nothing shown may hold a secret of the env file.
    if secrets
        .iter()
        .any(|s| s.len() >= 8 && shown.contains(s.as_str()))
    {
        bail!("the rendered manifests of {tag} would show a secret of {}: run `cargo xtask deploy check {tag}` to see where", env_file.display());
    }
    Ok(Rendered {
        tag,
        objects,
        full,
        shown,
        work,
    })
}

/// The documents of a YAML stream, empty ones skipped.
fn parse(text: &str) -> Result<Vec<Value>> {
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(doc)?;
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

fn to_yaml(objects: &[Value]) -> Result<String> {
    let docs: Vec<String> = objects
        .iter()
        .map(serde_yaml::to_string)
        .collect::<Result<_, _>>()?;
    Ok(docs.join("---\n"))
}

/// A Secret with every value replaced by its length; other objects as they are.
fn redact(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if obj["kind"] == "Secret" {
        for field in ["data", "stringData"] {
            let Some(map) = obj.get_mut(field).and_then(Value::as_object_mut) else {
                continue;
            };
            for value in map.values_mut() {
                let text = value.as_str().unwrap_or("");
                // `data` holds base64: the length shown is the value's own.
                let len = match field {
                    "data" => base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_or(text.len(), |bytes| bytes.len()),
                    _ => text.len(),
                };
                *value = Value::String(format!("<redacted: {len} bytes>"));
            }
        }
    }
    obj
}

/// `text` with every secret of at least 8 characters replaced by `****`.
fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 8)
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "****"))
}

/// The schema findings and the policy's, with every secret of the objects scrubbed from them.
fn check_all(
    root: &Path,
    objects: &[Value],
    shown: Option<&str>,
    inputs: &check::Inputs,
) -> Result<Vec<Finding>> {
    let mut findings = schema_findings(root, objects, &inputs.policy.kubernetes)?;
    findings.extend(check::check(objects, inputs));
    let secrets = check::secret_values(objects);
    if let Some(shown) = shown {
        if secrets.iter().any(|s| shown.contains(s.as_str())) {
            findings.push(Finding {
                rule: "secret-shown".into(),
                object: "rendered output".into(),
                field: "-".into(),
                problem: "shows the value of a Secret".into(),
            });
        }
    }
    for finding in &mut findings {
        finding.problem = scrub(&finding.problem, &secrets);
    }
    Ok(findings)
}

/// Every object against the Kubernetes schemas, through kubernetes-validate in the tools venv.
fn schema_findings(root: &Path, objects: &[Value], version: &str) -> Result<Vec<Finding>> {
    let venv = lint::ensure_packages(root, &[KUBERNETES_VALIDATE])
        .context("cannot install the schema validator")?;
    let mut child = Command::new(venv.join("bin/python"))
        .args(["-c", VALIDATE_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run kubernetes-validate")?;
    let request = json!({ "version": version, "objects": objects });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if interrupt::interrupted() {
        return Err(interrupt::Interrupted.into());
    }
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).with_context(|| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        format!(
            "kubernetes-validate failed: {}",
            stderr.lines().last().unwrap_or("no output")
        )
    })?;
    Ok(results
        .iter()
        .map(|r| {
            let index = r["index"].as_u64().unwrap_or(0) as usize;
            Finding {
                rule: "schema".into(),
                object: objects
                    .get(index)
                    .map(check::object_name)
                    .unwrap_or_default(),
                field: r["path"].as_str().unwrap_or("").to_string(),
                problem: format!(
                    "does not match the Kubernetes {version} schema: {}",
                    r["message"].as_str().unwrap_or("")
                ),
            }
        })
        .collect())
}

/// Prints the findings, one per line with its fix; an error when there is any.
fn report(what: &str, objects: &[Value], findings: &[Finding], policy: &Policy) -> Result<()> {
    if findings.is_empty() {
        println!(
            "deploy check {what}: {} objects pass the Kubernetes {} schemas and the policy of \
             {POLICY_FILE}",
            objects.len(),
            policy.kubernetes
        );
        return Ok(());
    }
    let mut text = String::new();
    for f in findings {
        let field = if f.field.is_empty() { "-" } else { &f.field };
        let fix = policy.fix.get(&f.rule).map(String::as_str).unwrap_or("");
        text.push_str(&format!(
            "FAIL [{}] {} {field}: {}\n     fix: {fix}\n",
            f.rule, f.object, f.problem
        ));
    }
    print!("{text}");
    bail!(
        "deploy check {what}: {} {}",
        findings.len(),
        if findings.len() == 1 {
            "problem"
        } else {
            "problems"
        }
    )
}

/// The current kube context and its server, or why there is none to use.
fn current_context() -> Result<(String, String)> {
    let out = Command::new("kubectl")
        .args(["config", "current-context"])
        .stdin(Stdio::null())
        .output()
        .context("cannot run kubectl")?;
    let context = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || context.is_empty() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        bail!(
            "refused: there is no current kube context ({}): choose one with `kubectl config \
             use-context NAME` or point KUBECONFIG at a cluster's config; nothing was applied",
            if why.is_empty() { "none is set" } else { &why }
        );
    }
    let out = Command::new("kubectl")
        .args(["config", "view", "--minify", "-o"])
        .arg("jsonpath={.clusters[0].cluster.server}")
        .stdin(Stdio::null())
        .output()
        .context("cannot run kubectl")?;
    let server = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok((context, server))
}

/// `kubectl --context CONTEXT ARGS...`, with what it printed.
fn kubectl(context: &str, args: &[&str]) -> Result<std::process::Output> {
    Command::new("kubectl")
        .arg("--context")
        .arg(context)
        .arg(REQUEST_TIMEOUT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run kubectl")
}

fn apply(sh: &Shell, root: &Path, inputs: &check::Inputs, target: &Target) -> Result<()> {
    engine::ensure_program(sh, "kubectl", "kubernetes-client/trixie")?;
    // The cluster first: a context that is absent or does not answer is refused before anything
    // is rendered, and nothing is sent anywhere.
    let (context, server) = current_context()?;
    let out = kubectl(&context, &["get", "--raw", "/version"])?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        bail!(
            "refused: the kube context `{context}` ({server}) does not answer: {}; start the \
             cluster or choose another context with `kubectl config use-context NAME`; nothing \
             was applied",
            why.trim().lines().last().unwrap_or("no reason given")
        );
    }
    let rendered = render(sh, root, inputs, target)?;
    let findings = check_all(root, &rendered.objects, Some(&rendered.shown), inputs)?;
    if !findings.is_empty() {
        let _ = report(&rendered.tag, &rendered.objects, &findings, inputs.policy);
        bail!(
            "refused: the manifests of {} fail `deploy check` (above); nothing was applied",
            rendered.tag
        );
    }
    let file = rendered.work.write("manifests.yaml", &rendered.full)?;
    let file = file.to_string_lossy().into_owned();
    // A server-side dry run first: what the cluster would refuse (a missing namespace, a
    // forbidden kind, an admission policy) stops the apply before any object is changed.
    let out = kubectl(&context, &["apply", "--dry-run=server", "-f", &file])?;
    if !out.status.success() {
        bail!(
            "refused: the cluster `{context}` rejects the manifests of {} in a dry run: {}; \
             nothing was applied",
            rendered.tag,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if interrupt::interrupted() {
        return Err(interrupt::Interrupted.into());
    }
    let out = kubectl(&context, &["apply", "-f", &file])?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        bail!(
            "kubectl apply of {} on `{context}` failed: {}",
            rendered.tag,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    eprintln!(
        "applied {} ({} objects) to the kube context `{context}` ({server})",
        rendered.tag,
        rendered.objects.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_other_objects_kept() {
        let secret = json!({"kind": "Secret", "data": {"K": "c2VjcmV0LXZhbHVl"}});
        assert_eq!(redact(&secret)["data"]["K"], "<redacted: 12 bytes>");
        let config = json!({"kind": "ConfigMap", "data": {"K": "v"}});
        assert_eq!(redact(&config), config);
    }

    #[test]
    fn a_stream_parses_into_its_objects() {
        let objects = parse("a: 1\n---\n---\nb: x\n").unwrap();
        assert_eq!(objects, [json!({"a": 1}), json!({"b": "x"})]);
    }
}
