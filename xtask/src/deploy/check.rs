//! The project's own policy for rendered manifests, as a pure function of the objects and the
//! data it is checked against (project.toml, expect.toml, deploy/policy.toml): every finding names
//! the object, the field and the rule, whose fix `deploy/policy.toml` holds.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;
use crate::env;
use crate::smoke::expect::Expect;

/// `deploy/policy.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub kubernetes: String,
    pub name_label: String,
    pub env: EnvPolicy,
    pub network: BTreeMap<String, Vec<String>>,
    pub fix: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvPolicy {
    pub secret: String,
    pub config_map: String,
    pub not_deployed: Vec<String>,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: String,
    /// `Kind/name`.
    pub object: String,
    /// The field's path in the object, e.g. `spec.template.spec.containers[frontend].image`.
    pub field: String,
    pub problem: String,
}

impl Finding {
    fn new(rule: &str, object: &str, field: impl Into<String>, problem: impl Into<String>) -> Self {
        Finding {
            rule: rule.into(),
            object: object.into(),
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Secret values shorter than this are not searched for elsewhere: they would match by chance.
const MIN_SECRET_LEN: usize = 8;

pub struct Inputs<'a> {
    pub config: &'a Config,
    pub expect: &'a Expect,
    pub policy: &'a Policy,
}

/// `Kind/name` of an object.
pub fn object_name(obj: &Value) -> String {
    format!(
        "{}/{}",
        obj["kind"].as_str().unwrap_or("?"),
        obj["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Every rule on every object; an empty list means the manifests pass.
pub fn check(objects: &[Value], inputs: &Inputs) -> Vec<Finding> {
    let mut found = Vec::new();
    for obj in objects {
        let name = object_name(obj);
        if let Some((prefix, pod)) = pod_spec(obj) {
            check_pod(&name, &prefix, pod, inputs, &mut found);
        }
    }
    check_services(objects, inputs, &mut found);
    check_network(objects, inputs, &mut found);
    check_secrets(objects, &mut found);
    found
}

/// The pod spec of a workload and the path that leads to it.
fn pod_spec(obj: &Value) -> Option<(String, &Value)> {
    match obj["kind"].as_str()? {
        "Pod" => Some(("spec".into(), &obj["spec"])),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => Some((
            "spec.template.spec".into(),
            &obj["spec"]["template"]["spec"],
        )),
        "CronJob" => Some((
            "spec.jobTemplate.spec.template.spec".into(),
            &obj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        )),
        _ => None,
    }
}

fn containers(pod: &Value) -> impl Iterator<Item = (&'static str, &Value)> {
    ["initContainers", "containers"]
        .into_iter()
        .flat_map(move |list| {
            pod[list]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |c| (list, c))
        })
}

fn check_pod(name: &str, prefix: &str, pod: &Value, inputs: &Inputs, found: &mut Vec<Finding>) {
    let uid = u64::from(inputs.expect.image.uid);
    let pod_security = &pod["securityContext"];
    for (list, c) in containers(pod) {
        let cname = c["name"].as_str().unwrap_or("?");
        let at = format!("{prefix}.{list}[{cname}]");
        let mut push = |rule: &str, field: String, problem: String| {
            found.push(Finding::new(rule, name, field, problem));
        };

        let image = c["image"].as_str().unwrap_or("");
        if let Some(problem) = digest_problem(image) {
            push("digest", format!("{at}.image"), problem);
        }

        let security = &c["securityContext"];
        let effective = |key: &str| -> (&Value, String) {
            if !security[key].is_null() {
                (&security[key], format!("{at}.securityContext.{key}"))
            } else {
                (
                    &pod_security[key],
                    format!("{prefix}.securityContext.{key}"),
                )
            }
        };
        let (non_root, field) = effective("runAsNonRoot");
        if non_root.as_bool() != Some(true) {
            push("non-root", field, format!("is {non_root}, not true"));
        }
        for key in ["runAsUser", "runAsGroup"] {
            let (value, field) = effective(key);
            if value.as_u64() != Some(uid) {
                let problem = match value.as_u64() {
                    Some(0) => "is 0: the container runs as root".to_string(),
                    _ => format!("is {value}, not the spec's {uid}"),
                };
                push("non-root", field, problem);
            }
        }
        if security["allowPrivilegeEscalation"].as_bool() != Some(false) {
            push(
                "no-escalation",
                format!("{at}.securityContext.allowPrivilegeEscalation"),
                format!("is {}, not false", security["allowPrivilegeEscalation"]),
            );
        }
        let drop = strings(&security["capabilities"]["drop"]);
        if !drop.iter().any(|d| d == "ALL") {
            push(
                "capabilities",
                format!("{at}.securityContext.capabilities.drop"),
                format!("is {drop:?}, which does not drop ALL"),
            );
        }
        let add = strings(&security["capabilities"]["add"]);
        if !add.is_empty() {
            push(
                "capabilities",
                format!("{at}.securityContext.capabilities.add"),
                format!("adds {add:?}"),
            );
        }
        if security["readOnlyRootFilesystem"].as_bool() != Some(true) {
            push(
                "read-only-root",
                format!("{at}.securityContext.readOnlyRootFilesystem"),
                format!("is {}, not true", security["readOnlyRootFilesystem"]),
            );
        }
        for kind in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                if c["resources"][kind][resource].is_null() {
                    push(
                        "resources",
                        format!("{at}.resources.{kind}.{resource}"),
                        "is not set".into(),
                    );
                }
            }
        }
        if list == "containers" {
            check_probes(name, &at, c, inputs, found);
        }
    }
}

/// Why an image reference is not pinned by digest, or None when it is.
fn digest_problem(image: &str) -> Option<String> {
    if let Some((_, digest)) = image.split_once('@') {
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        return Some(format!("`{image}` has a malformed digest"));
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    Some(match last.split_once(':') {
        Some((_, tag)) => format!("`{image}` names the tag `{tag}` without a digest"),
        None => format!("`{image}` names neither a tag nor a digest"),
    })
}

fn check_probes(name: &str, at: &str, c: &Value, inputs: &Inputs, found: &mut Vec<Finding>) {
    let health = &inputs.expect.image.healthcheck;
    let cname = c["name"].as_str().unwrap_or("");
    let image = inputs.config.images.iter().find(|i| i.service == cname);
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let p = &c[probe];
        let field = format!("{at}.{probe}");
        if p.is_null() {
            found.push(Finding::new("probes", name, field, "is missing"));
            continue;
        }
        if let Some(image) = image {
            let path = p["httpGet"]["path"].as_str();
            if path != Some(image.health_path.as_str()) {
                found.push(Finding::new(
                    "probes",
                    name,
                    format!("{field}.httpGet.path"),
                    format!(
                        "is {}, not the health path {} (project.toml)",
                        p["httpGet"]["path"], image.health_path
                    ),
                ));
            }
            if port_number(c, &p["httpGet"]["port"]) != Some(u64::from(image.port)) {
                found.push(Finding::new(
                    "probes",
                    name,
                    format!("{field}.httpGet.port"),
                    format!(
                        "is {}, not the port {} (project.toml)",
                        p["httpGet"]["port"], image.port
                    ),
                ));
            }
        }
        let timeout = p["timeoutSeconds"].as_u64().unwrap_or(1);
        let period = p["periodSeconds"].as_u64().unwrap_or(10);
        let failures = p["failureThreshold"].as_u64().unwrap_or(3);
        let mut wrong = Vec::new();
        if timeout != health.timeout_seconds {
            wrong.push(format!(
                "timeoutSeconds {timeout} (the image's is {})",
                health.timeout_seconds
            ));
        }
        if probe == "startupProbe" {
            if period * failures < health.start_period_seconds {
                wrong.push(format!(
                    "periodSeconds × failureThreshold = {} s, shorter than the image's start \
                     period of {} s",
                    period * failures,
                    health.start_period_seconds
                ));
            }
        } else {
            if period != health.interval_seconds {
                wrong.push(format!(
                    "periodSeconds {period} (the image's interval is {})",
                    health.interval_seconds
                ));
            }
            if failures != health.retries {
                wrong.push(format!(
                    "failureThreshold {failures} (the image's retries are {})",
                    health.retries
                ));
            }
        }
        if !wrong.is_empty() {
            found.push(Finding::new(
                "probes",
                name,
                field,
                format!("has {}", wrong.join(", ")),
            ));
        }
    }
}

/// A probe's port: a number, or the name of one of the container's ports.
fn port_number(container: &Value, port: &Value) -> Option<u64> {
    if let Some(n) = port.as_u64() {
        return Some(n);
    }
    let wanted = port.as_str()?;
    container["ports"]
        .as_array()?
        .iter()
        .find(|p| p["name"].as_str() == Some(wanted))
        .and_then(|p| p["containerPort"].as_u64())
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

/// Each service of project.toml has its Deployment, container, image and Service.
fn check_services(objects: &[Value], inputs: &Inputs, found: &mut Vec<Finding>) {
    for image in &inputs.config.images {
        let service = image.service.as_str();
        let deployment = format!("Deployment/{service}");
        let Some(obj) = find(objects, "Deployment", service) else {
            found.push(Finding::new(
                "service",
                &deployment,
                "metadata.name",
                format!("no Deployment named {service} (project.toml has the service)"),
            ));
            continue;
        };
        let pod = &obj["spec"]["template"]["spec"];
        let at = format!("spec.template.spec.containers[{service}]");
        let Some(c) = pod["containers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == service))
        else {
            found.push(Finding::new(
                "service",
                &deployment,
                "spec.template.spec.containers",
                format!("no container named {service}"),
            ));
            continue;
        };
        let reference = c["image"].as_str().unwrap_or("");
        let repository = reference.split('@').next().unwrap_or("");
        let last = repository.rsplit('/').next().unwrap_or("");
        let last = last.split(':').next().unwrap_or("");
        if last != image.image {
            found.push(Finding::new(
                "service",
                &deployment,
                format!("{at}.image"),
                format!("is `{reference}`, not an image named {}", image.image),
            ));
        }
        let ports = c["ports"].as_array().into_iter().flatten();
        if !ports
            .into_iter()
            .any(|p| p["containerPort"].as_u64() == Some(u64::from(image.port)))
        {
            found.push(Finding::new(
                "service",
                &deployment,
                format!("{at}.ports"),
                format!("has no containerPort {}", image.port),
            ));
        }
        let service_name = format!("Service/{service}");
        match find(objects, "Service", service) {
            None => found.push(Finding::new(
                "service",
                &service_name,
                "metadata.name",
                format!("no Service named {service}"),
            )),
            Some(svc) => {
                let ports = svc["spec"]["ports"].as_array().into_iter().flatten();
                if !ports
                    .into_iter()
                    .any(|p| p["port"].as_u64() == Some(u64::from(image.port)))
                {
                    found.push(Finding::new(
                        "service",
                        &service_name,
                        "spec.ports",
                        format!("has no port {}", image.port),
                    ));
                }
            }
        }
    }
}

/// Each service of `[network]` is reachable only from the services listed for it.
fn check_network(objects: &[Value], inputs: &Inputs, found: &mut Vec<Finding>) {
    let label = inputs.policy.name_label.as_str();
    for (target, allowed) in &inputs.policy.network {
        let policies: Vec<&Value> = objects
            .iter()
            .filter(|o| {
                o["kind"] == "NetworkPolicy"
                    && o["spec"]["podSelector"]["matchLabels"][label] == target.as_str()
            })
            .collect();
        if policies.is_empty() {
            found.push(Finding::new(
                "network",
                "NetworkPolicy/?",
                format!("spec.podSelector.matchLabels.{label}"),
                format!("no NetworkPolicy selects the pods of {target}"),
            ));
        }
        for policy in policies {
            let name = object_name(policy);
            if !strings(&policy["spec"]["policyTypes"]).contains(&"Ingress".to_string()) {
                found.push(Finding::new(
                    "network",
                    &name,
                    "spec.policyTypes",
                    "does not name Ingress",
                ));
            }
            for (i, rule) in policy["spec"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let peers = rule["from"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                if peers.is_empty() {
                    found.push(Finding::new(
                        "network",
                        &name,
                        format!("spec.ingress[{i}].from"),
                        "is empty, which admits every source",
                    ));
                }
                for (j, peer) in peers.iter().enumerate() {
                    let from = peer["podSelector"]["matchLabels"][label].as_str();
                    let only_pods =
                        peer["namespaceSelector"].is_null() && peer["ipBlock"].is_null();
                    if !only_pods || !from.is_some_and(|f| allowed.iter().any(|a| a == f)) {
                        found.push(Finding::new(
                            "network",
                            &name,
                            format!("spec.ingress[{i}].from[{j}]"),
                            format!("admits {peer}, not only the pods of {allowed:?}"),
                        ));
                    }
                }
            }
        }
    }
}

/// No variable that env/rules.rs calls secret in a ConfigMap, and no Secret's value anywhere
/// outside the Secret.
fn check_secrets(objects: &[Value], found: &mut Vec<Finding>) {
    let secrets = secret_values(objects);
    for obj in objects.iter().filter(|o| o["kind"] != "Secret") {
        let name = object_name(obj);
        let is_config_map = obj["kind"] == "ConfigMap";
        if is_config_map {
            for (key, value) in obj["data"].as_object().into_iter().flatten() {
                let value = value.as_str().unwrap_or("");
                if env::is_secret_value(key, value) {
                    found.push(Finding::new(
                        "secret-in-configmap",
                        &name,
                        format!("data.{key}"),
                        format!("holds {key}, which is a secret"),
                    ));
                }
            }
        }
        let mut leaves = Vec::new();
        string_leaves(obj, String::new(), &mut leaves);
        for (field, text) in leaves {
            if secrets.iter().any(|s| text.contains(s.as_str())) {
                let rule = if is_config_map {
                    "secret-in-configmap"
                } else {
                    "secret-shown"
                };
                let already = found
                    .iter()
                    .any(|f| f.object == name && f.field == field && f.rule == rule);
                if !already {
                    found.push(Finding::new(
                        rule,
                        &name,
                        field,
                        "holds the value of a Secret",
                    ));
                }
            }
        }
    }
}

/// The values of every Secret among the objects (decoded), those long enough to search for.
pub fn secret_values(objects: &[Value]) -> Vec<String> {
    let mut secrets: BTreeSet<String> = BTreeSet::new();
    for obj in objects.iter().filter(|o| o["kind"] == "Secret") {
        for (_, v) in obj["data"].as_object().into_iter().flatten() {
            let decoded = v
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
            if let Some(text) = decoded.and_then(|d| String::from_utf8(d).ok()) {
                secrets.insert(text);
            }
        }
        for (_, v) in obj["stringData"].as_object().into_iter().flatten() {
            secrets.extend(v.as_str().map(str::to_string));
        }
    }
    secrets.retain(|s| s.len() >= MIN_SECRET_LEN);
    secrets.into_iter().collect()
}

/// Every string in a JSON value with its path (`a.b[2].c`).
fn string_leaves(value: &Value, path: String, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => out.push((path, s.clone())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_leaves(item, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let next = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                string_leaves(v, next, out);
            }
        }
        _ => {}
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_digest_pins_an_image() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(digest_problem(&format!("r/todo-backend@{digest}")), None);
        assert_eq!(digest_problem(&format!("r/todo-backend:v1@{digest}")), None);
        assert!(digest_problem("localhost:5000/todo-backend:v1.0.1")
            .unwrap()
            .contains("the tag `v1.0.1` without a digest"));
        assert!(digest_problem("localhost:5000/todo-backend")
            .unwrap()
            .contains("neither a tag nor a digest"));
        assert!(digest_problem("todo-backend@sha256:abc")
            .unwrap()
            .contains("malformed"));
    }

    #[test]
    fn string_leaves_name_their_paths() {
        let mut out = Vec::new();
        let value = serde_json::json!({"a": {"b": ["x", {"c": "y"}]}, "n": 1});
        string_leaves(&value, String::new(), &mut out);
        assert_eq!(
            out,
            [
                ("a.b[0]".to_string(), "x".to_string()),
                ("a.b[1].c".to_string(), "y".to_string())
            ]
        );
    }
}
