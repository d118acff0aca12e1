//! The registry as the release sees it, through Docker's own programs: `docker buildx imagetools
//! inspect` reads manifests (it answers for an insecure loopback registry too), `docker push` and
//! `docker pull` move images. Both take credentials from Docker's login/credential store, so this
//! code never sees, holds or prints one.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::plan::Remote;
use crate::docker::inspect;
use crate::docker::run::Output;

/// How long one registry question may take before the registry counts as unreachable.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// A push uploads hundreds of megabytes to a remote registry at worst.
const PUSH_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Why the registry did not answer a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing answers at that address.
    Unreachable(String),
    /// It answers, but refuses us: no credentials, or wrong ones.
    Credentials(String),
    /// Anything else, with docker's message.
    Other(String),
}

impl Failure {
    pub fn detail(&self) -> &str {
        match self {
            Failure::Unreachable(m) | Failure::Credentials(m) | Failure::Other(m) => m,
        }
    }
}

/// Sorts docker's error text into what the user must do about it. The texts are those of
/// buildx 0.13 and Engine 26, seen against Debian's `docker-registry`.
pub fn classify(stderr: &str) -> Option<Failure> {
    let text = stderr.trim();
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .trim_start_matches("ERROR: ")
        .to_string();
    let lower = text.to_lowercase();
    if lower.ends_with(": not found")
        || lower.contains("manifest unknown")
        || lower.contains("no such manifest")
    {
        return None;
    }
    let unreachable = [
        "connection refused",
        "no such host",
        "i/o timeout",
        "network is unreachable",
        "connection reset",
        "eof",
        "server gave http response to https client",
        "tls: ",
        "x509:",
    ];
    let refused = [
        "401 unauthorized",
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "denied",
        "403 forbidden",
    ];
    if refused.iter().any(|s| lower.contains(s)) {
        Some(Failure::Credentials(line))
    } else if unreachable.iter().any(|s| lower.contains(s)) {
        Some(Failure::Unreachable(line))
    } else {
        Some(Failure::Other(line))
    }
}

/// Whether a docker call ends when Ctrl-C is pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCtrlC {
    /// It is stopped, and the call reports Ctrl-C (an upload the release may drop).
    Stop,
    /// It runs to its end (a question, or a push that must not be cut off halfway): the
    /// release decides what stops, and a push it lets finish is not cut off after the registry
    /// stored it but before we knew.
    Finish,
}

/// Runs `docker ARGS`, stopped after `timeout`; its output whatever its exit status.
fn docker(args: &[&str], timeout: Duration) -> Result<Output> {
    docker_until(args, timeout, OnCtrlC::Finish)
}

/// [`docker`], stopped on Ctrl-C with [`OnCtrlC::Stop`] (the runner then reports it as
/// `interrupt::Interrupted`). Each call runs in a process group of its own (see
/// `crate::docker::run`), so a terminal's Ctrl-C never kills it halfway by itself.
fn docker_until(args: &[&str], timeout: Duration, on_ctrl_c: OnCtrlC) -> Result<Output> {
    let run = crate::docker::docker(args).timeout(timeout);
    match on_ctrl_c {
        OnCtrlC::Stop => run.output(),
        OnCtrlC::Finish => run.cleanup().output(),
    }
}

/// What the registry holds under `reference`: absent, or the manifest's digest and the image's
/// revision and version labels.
pub fn inspect(reference: &str) -> Result<Remote, Failure> {
    let format = "--format={{json .}}";
    let out = docker(
        &["buildx", "imagetools", "inspect", format, reference],
        QUERY_TIMEOUT,
    )
    .map_err(|e| match e.downcast_ref::<crate::docker::Failed>() {
        // A registry that takes this long to answer one question counts as unreachable.
        Some(failed) if failed.timed_out() => Failure::Unreachable(failed.to_string()),
        _ => Failure::Other(format!("{e:#}")),
    })?;
    if !out.success() {
        return match classify(&out.stderr) {
            None => Ok(Remote::Absent),
            Some(failure) => Err(failure),
        };
    }
    let remote: inspect::Remote = serde_json::from_str(&out.stdout)
        .map_err(|e| Failure::Other(format!("unexpected answer for {reference}: {e}")))?;
    // A single-platform image has its config under `image`; an index (several platforms) has
    // one per platform, whose labels count when they all agree.
    let label = |name: &str| remote.label(name).map(str::to_string);
    Ok(Remote::Present {
        digest: remote.manifest.digest.clone(),
        revision: label("org.opencontainers.image.revision"),
        version: label("org.opencontainers.image.version"),
        platforms: remote.platforms(),
    })
}

/// The manifest stored under `reference`, byte for byte as the registry serves it.
pub fn raw_manifest(reference: &str) -> Result<inspect::Manifest> {
    let out = docker(
        &["buildx", "imagetools", "inspect", "--raw", reference],
        QUERY_TIMEOUT,
    )?;
    if !out.success() {
        bail!("cannot read {reference} back: {}", out.stderr.trim());
    }
    serde_json::from_str(&out.stdout).with_context(|| format!("the manifest of {reference}"))
}

/// Pushes one local reference and returns the digest the registry stored it under.
pub fn push(reference: &str, on_ctrl_c: OnCtrlC) -> Result<String> {
    let out = docker_until(&["push", reference], PUSH_TIMEOUT, on_ctrl_c)?;
    if !out.success() {
        let detail = out
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("docker push failed without a message")
            .trim()
            .to_string();
        bail!("{detail}");
    }
    pushed_digest(&out.stdout)
        .with_context(|| format!("`docker push {reference}` printed no digest"))
}

/// The digest in `docker push`'s last line: `v1.0.1: digest: sha256:… size: 1777`.
pub fn pushed_digest(stdout: &str) -> Option<String> {
    stdout.lines().rev().find_map(|line| {
        let (_, rest) = line.split_once("digest: ")?;
        let digest = rest.split_whitespace().next()?;
        digest.starts_with("sha256:").then(|| digest.to_string())
    })
}

/// Pulls `repository@digest` and returns the image id it resolves to.
pub fn pull(pinned: &str, on_ctrl_c: OnCtrlC) -> Result<String> {
    let out = docker_until(&["pull", "--quiet", pinned], PUSH_TIMEOUT, on_ctrl_c)?;
    if !out.success() {
        bail!("cannot pull {pinned}: {}", out.stderr.trim());
    }
    image_id(pinned)
}

/// Pulls one platform of `repository@digest` (an index) into the engine; with the
/// containerd image store each pull adds that platform's content to the same image.
pub fn pull_platform(pinned: &str, platform: &str) -> Result<()> {
    let out = docker_until(
        &["pull", "--quiet", "--platform", platform, pinned],
        PUSH_TIMEOUT,
        OnCtrlC::Stop,
    )?;
    if !out.success() {
        bail!("cannot pull {pinned} for {platform}: {}", out.stderr.trim());
    }
    Ok(())
}

/// The id of a local image, or an error when the engine has no such image.
pub fn image_id(reference: &str) -> Result<String> {
    let out = docker(
        &["image", "inspect", "--format={{.Id}}", reference],
        QUERY_TIMEOUT,
    )?;
    if !out.success() {
        bail!("no local image {reference}: {}", out.stderr.trim());
    }
    Ok(out.stdout.trim().to_string())
}

/// A local image's size in bytes, its labels and its RepoDigests (`repository@sha256:…`).
pub fn local_image(id: &str) -> Result<(u64, BTreeMap<String, String>, Vec<String>)> {
    let out = docker(&["image", "inspect", id], QUERY_TIMEOUT)?;
    if !out.success() {
        bail!("cannot inspect the image {id}: {}", out.stderr.trim());
    }
    let all: Vec<inspect::Image> =
        serde_json::from_str(&out.stdout).with_context(|| format!("the inspect of {id}"))?;
    let image = all
        .into_iter()
        .next()
        .context("docker image inspect printed nothing")?;
    let size = crate::store::unpacked_size(id, image.size)?;
    Ok((size, image.config.labels, image.repo_digests))
}

/// Points a local reference at an image.
pub fn tag(id: &str, reference: &str) -> Result<()> {
    let out = docker(&["tag", id, reference], QUERY_TIMEOUT)?;
    if !out.success() {
        bail!("cannot tag {id} as {reference}: {}", out.stderr.trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_errors_sort_into_what_to_do() {
        // Texts seen from buildx 0.13 against Debian's docker-registry 2.8.
        assert_eq!(
            classify("ERROR: 127.0.0.1:45123/exp/todo-backend:nope: not found\n"),
            None
        );
        assert!(matches!(
            classify(
                "ERROR: failed to do request: Head \"http://127.0.0.1:45199/v2/x/manifests/1\": \
                 dial tcp 127.0.0.1:45199: connect: connection refused"
            ),
            Some(Failure::Unreachable(m)) if m.starts_with("failed to do request")
        ));
        assert!(matches!(
            classify(
                "ERROR: unexpected status from HEAD request to http://127.0.0.1:45124/v2/x/\
                 manifests/1: 401 Unauthorized"
            ),
            Some(Failure::Credentials(_))
        ));
        assert!(matches!(
            classify(
                "ERROR: pull access denied, repository does not exist or may require \
                 authorization: authorization failed: no basic auth credentials"
            ),
            Some(Failure::Credentials(_))
        ));
        assert!(matches!(
            classify("ERROR: something new"),
            Some(Failure::Other(m)) if m == "something new"
        ));
    }

    #[test]
    fn the_push_digest_is_read_from_the_last_line() {
        let out = "The push refers to repository [127.0.0.1:45123/exp/todo-backend]\n\
                   b5ee6ab45689: Pushed\n\
                   t1: digest: sha256:d6d6aa1d4402fb59caad91f2715c8b35ad80421c33c9656e7b85c96cb73fd264 size: 1777\n";
        assert_eq!(
            pushed_digest(out).unwrap(),
            "sha256:d6d6aa1d4402fb59caad91f2715c8b35ad80421c33c9656e7b85c96cb73fd264"
        );
        assert_eq!(pushed_digest("e1af09114064: Pushed\n"), None);
    }
}
