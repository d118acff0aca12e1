//! `cargo xtask deploy check` on rendered manifests, and `deploy apply` where no cluster answers.
//! The manifests of a real release are checked by the release test (`tests/release.rs`); here a
//! fixture rendered the same way (`fixtures/deploy/release.yaml`, made-up digests and values)
//! must pass, and copies of it with one rule broken each must fail, naming the object, the field
//! and the fix. Nothing here needs the engine; the checks run offline.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{root, text};

/// The fixture's secret values, which no output may show.
const SECRETS: &[&str] = &[
    "test-secret-0123456789abcdefghijklmnopqrstuvwxyz",
    "sk-test-0000000000000000000000000000",
    "test-password",
];

fn fixture() -> String {
    let path = support::root().join("tests/fixtures/deploy/release.yaml");
    std::fs::read_to_string(path).unwrap()
}

/// A folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("xtask-deploy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn xtask(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(support::xtask_bin());
    command.args(args).current_dir(root());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

/// `deploy check --manifests` on `manifests`: (exit code, stdout + stderr), with no secret in it.
fn check(dir: &TempDir, name: &str, manifests: &str) -> (Option<i32>, String) {
    let file = dir.0.join(format!("{name}.yaml"));
    std::fs::write(&file, manifests).unwrap();
    let out = xtask(
        &["deploy", "check", "--manifests", file.to_str().unwrap()],
        &[],
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    for secret in SECRETS {
        assert!(!all.contains(secret), "{name}: a secret is shown:\n{all}");
    }
    (out.status.code(), all)
}

/// `text` with `from` replaced by `to` once; panics when `from` is not there, so that a fixture
/// change cannot make a case pass unbroken.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the fixture has no {from:?}");
    text.replacen(from, to, 1)
}

#[test]
fn check_passes_on_rendered_manifests_and_names_each_broken_rule() {
    let dir = TempDir::new("check");
    let good = fixture();
    let (code, all) = check(&dir, "good", &good);
    assert_eq!(code, Some(0), "{all}");
    assert!(
        all.contains("7 objects pass the Kubernetes 1.32 schemas"),
        "{all}"
    );

    let digest = format!("@sha256:{}", "a".repeat(64));
    let cases = [
        (
            "tag-only",
            replace_once(&good, &format!("todo-frontend{digest}"), "todo-frontend:v1.0.1"),
            "FAIL [digest] Deployment/frontend spec.template.spec.containers[frontend].image: \
             `localhost:5000/todo/todo-frontend:v1.0.1` names the tag `v1.0.1` without a digest",
            "pin newName and digest",
        ),
        (
            "root-user",
            replace_once(&good, "runAsUser: 1001", "runAsUser: 0"),
            "FAIL [non-root] Deployment/backend spec.template.spec.securityContext.runAsUser: \
             is 0: the container runs as root",
            "runAsUser: 1001",
        ),
        (
            "missing-probe",
            replace_once(
                &good,
                "        livenessProbe:\n          failureThreshold: 3\n          httpGet:\n            \
                 path: /health\n            port: http\n          periodSeconds: 30\n          \
                 timeoutSeconds: 10\n",
                "",
            ),
            "FAIL [probes] Deployment/backend spec.template.spec.containers[backend].livenessProbe: \
             is missing",
            "startupProbe, readinessProbe and livenessProbe",
        ),
        (
            "secret-in-configmap",
            replace_once(
                &good,
                "  AGENT_MODEL: gpt-4o\n",
                "  AGENT_MODEL: gpt-4o\n  OPENAI_API_KEY: sk-test-0000000000000000000000000000\n",
            ),
            "FAIL [secret-in-configmap] ConfigMap/todo-chatbot-config-hk9ck6776f \
             data.OPENAI_API_KEY: holds OPENAI_API_KEY, which is a secret",
            "never the ConfigMap",
        ),
    ];
    for (name, manifests, finding, fix) in cases {
        let (code, all) = check(&dir, name, &manifests);
        assert_eq!(code, Some(1), "{name} passed:\n{all}");
        assert!(all.contains(finding), "{name}: no {finding:?} in:\n{all}");
        assert!(all.contains(fix), "{name}: no fix {fix:?} in:\n{all}");
        assert!(all.contains("deploy check "), "{all}");
    }
}

#[test]
fn apply_without_a_reachable_cluster_is_refused_before_anything_is_applied() {
    let dir = TempDir::new("apply");
    let work = root().join("target/xtask/deploy");
    let before = std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(0);

    // No kube config at all: no current context.
    let out = xtask(&["deploy", "apply"], &[("KUBECONFIG", &dir.0.join("none"))]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused: there is no current kube context"),
        "{stderr}"
    );
    assert!(stderr.contains("kubectl config use-context"), "{stderr}");
    assert!(stderr.contains("nothing was applied"), "{stderr}");

    // A context whose API server does not answer: a loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.0.join("kubeconfig");
    std::fs::write(
        &config,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: \
             https://127.0.0.1:{port}\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    \
             user: nobody\nusers:\n- name: nobody\n  user:\n    token: not-a-token\n\
             current-context: gone\n"
        ),
    )
    .unwrap();
    let out = xtask(&["deploy", "apply"], &[("KUBECONFIG", &config)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "refused: the kube context `gone` (https://127.0.0.1:{port}) does not answer"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was applied"), "{stderr}");
    assert!(!stderr.contains("not-a-token"), "{stderr}");
    // Nothing was rendered either: no generated kustomization is left behind.
    let after = std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(0);
    assert!(after <= before, "{} holds a new run", work.display());
}
