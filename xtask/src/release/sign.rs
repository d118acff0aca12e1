//! Signed releases: cosign (Debian's package, from trixie on bookworm) signs each pushed image
//! digest with the project's key pair, attaches the image's SBOM as an attestation, and verifies
//! both against the public key before the release is called done.
//!
//! The key pair is `COSIGN_KEY` (the private key's path; the public key sits beside it as
//! `<name>.pub`) and `COSIGN_PASSWORD`, from the environment or the env file. The password only
//! ever reaches cosign's own environment: it is never an argument, never printed, never written.
//! There is no transparency-log upload (the public log cannot be reached from here), so the
//! signatures are verified with `--insecure-ignore-tlog` against the key alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use xshell::Shell;

use super::registry;
use crate::engine;
use crate::sbom::Format;

/// The signing key pair. Its Debug form never shows the password.
pub struct Key {
    pub private: PathBuf,
    pub public: PathBuf,
    password: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("private", &self.private)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// What `keygen` says to run; also the fix of the refusal without a key.
pub const KEYGEN_HINT: &str = "make a key pair with `COSIGN_PASSWORD=... cargo xtask keygen` \
(it writes ~/.config/todo-chatbot/cosign.key and .pub, outside the repository), then set \
COSIGN_KEY to the .key path and COSIGN_PASSWORD in the environment or the env file; or release \
unsigned with --no-sign";

/// A variable from the process environment, else from the env file; empty counts as unset.
fn setting(name: &str, env_file: &Path) -> Option<String> {
    if let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Some(value);
    }
    let bytes = std::fs::read(env_file).ok()?;
    let (entries, _) = crate::env::parse(&bytes);
    entries
        .into_iter()
        .rev()
        .find(|e| e.key == name)
        .map(|e| e.value)
        .filter(|v| !v.is_empty())
}

/// The key pair, or why there is none (a refusal's message). Checks only what needs no cosign:
/// see [`check_password`] for the rest.
pub fn find_key(root: &Path, env_file: &Path) -> Result<Key, String> {
    let Some(private) = setting("COSIGN_KEY", &root.join(env_file)) else {
        return Err(format!(
            "no signing key: COSIGN_KEY is not set (environment or {})",
            env_file.display()
        ));
    };
    let private = PathBuf::from(private);
    let private = if private.is_absolute() {
        private
    } else {
        root.join(private)
    };
    if !private.is_file() {
        return Err(format!(
            "COSIGN_KEY names {}, which is not a file",
            private.display()
        ));
    }
    let inside = private
        .canonicalize()
        .ok()
        .zip(root.canonicalize().ok())
        .is_some_and(|(key, root)| key.starts_with(root));
    if inside {
        return Err(format!(
            "COSIGN_KEY names {}, inside the repository: a private key must live outside it",
            private.display()
        ));
    }
    let public = private.with_extension("pub");
    if !public.is_file() {
        return Err(format!(
            "no public key {} beside COSIGN_KEY: cosign writes both; verification needs it",
            public.display()
        ));
    }
    Ok(Key {
        private,
        public,
        // cosign reads an empty password when none is set: a key made without one opens.
        password: setting("COSIGN_PASSWORD", &root.join(env_file)).unwrap_or_default(),
    })
}

/// Installs cosign when missing (Debian's package; from trixie on bookworm, by name only).
pub fn ensure_cosign(sh: &Shell) -> Result<()> {
    engine::ensure_program(sh, "cosign", "cosign/trixie")
}

/// A cosign command with the key's password in its environment and nothing of it elsewhere.
fn cosign(key: &Key) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("cosign");
    command
        .env("COSIGN_PASSWORD", &key.password)
        .env("COSIGN_YES", "true")
        .stdin(std::process::Stdio::null())
        // Signing follows the push of the release's tags, which a Ctrl-C no longer stops (see
        // `push_all`): in a process group of its own, cosign does not get the terminal's SIGINT.
        .process_group(0);
    command
}

/// Runs cosign; on failure, its last words (cosign never prints the password or the key).
fn run(command: &mut Command, what: &str) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("cannot run cosign to {what}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "cosign could not {what}: {}",
            stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Opens the private key with the password, before anything is built: a wrong password is a
/// refusal, not a failure after the push.
pub fn check_password(key: &Key) -> Result<(), String> {
    run(
        cosign(key).arg("public-key").arg("--key").arg(&key.private),
        "open the private key with COSIGN_PASSWORD",
    )
    .map(|_| ())
    .map_err(|e| format!("{e:#}"))
}

/// What the record says of one image's signature and attestation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Signed {
    /// The signature's manifest in the registry, pinned by digest.
    pub signature: String,
    /// The attestation's manifest in the registry, pinned by digest; none for an image index,
    /// whose platforms each carry their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
    /// The predicate type: `spdxjson` or `cyclonedx`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_type: Option<String>,
    /// The SBOM attached as the attestation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<PathBuf>,
    /// The public key both were verified with.
    pub public_key: PathBuf,
    /// True when this run signed; false when an earlier run of this release had.
    pub signed_now: bool,
}

/// Registry flags: plain HTTP and no TLS check only for a registry on this machine (as the
/// engine itself allows), never for a remote one.
fn registry_flags(host: &str) -> Vec<&'static str> {
    let local =
        host.starts_with("localhost") || host.starts_with("127.") || host.starts_with("[::1]");
    if local {
        vec!["--allow-http-registry", "--allow-insecure-registry"]
    } else {
        vec![]
    }
}

fn verify_signature(key: &Key, pinned: &str, flags: &[&str]) -> Result<String> {
    run(
        cosign(key)
            .arg("verify")
            .arg("--key")
            .arg(&key.public)
            .arg("--insecure-ignore-tlog")
            .args(flags)
            .arg(pinned),
        &format!("verify the signature of {pinned}"),
    )
}

fn verify_attestation(key: &Key, pinned: &str, kind: &str, flags: &[&str]) -> Result<String> {
    run(
        cosign(key)
            .arg("verify-attestation")
            .arg("--key")
            .arg(&key.public)
            .arg("--type")
            .arg(kind)
            .arg("--insecure-ignore-tlog")
            .args(flags)
            .arg(pinned),
        &format!("verify the attestation of {pinned}"),
    )
}

/// Signs the image, attests its SBOM, and verifies both with the public key; what an earlier
/// run of the release signed already (it verifies) is not signed again.
pub fn sign_image(
    key: &Key,
    host: &str,
    repository: &str,
    digest: &str,
    sbom: &Path,
    format: Format,
) -> Result<Signed> {
    let pinned = format!("{repository}@{digest}");
    let flags = registry_flags(host);
    let kind = format.attestation_type();
    let mut signed_now = false;
    if verify_signature(key, &pinned, &flags).is_err() {
        eprintln!("signing {pinned}");
        sign(key, &pinned, &flags, false)?;
        signed_now = true;
    }
    if attest(key, &pinned, kind, sbom, &flags, "its SBOM")? {
        signed_now = true;
    }
    let signed = verified(key, repository, digest, kind, sbom, &flags, signed_now)?;
    eprintln!("verified the signature and the SBOM attestation of {pinned}");
    Ok(signed)
}

/// `cosign sign` of one pinned reference; with `recursive`, of an index and every manifest it
/// lists.
fn sign(key: &Key, pinned: &str, flags: &[&str], recursive: bool) -> Result<()> {
    let mut command = cosign(key);
    command.arg("sign").arg("--key").arg(&key.private);
    if recursive {
        command.arg("--recursive");
    }
    command.arg("--tlog-upload=false").args(flags).arg(pinned);
    run(&mut command, &format!("sign {pinned}")).map(|_| ())
}

/// Attests `sbom` to the pinned manifest unless an attestation of that kind verifies already;
/// true when it attested now. `what` names the SBOM in the line it prints.
fn attest(
    key: &Key,
    pinned: &str,
    kind: &str,
    sbom: &Path,
    flags: &[&str],
    what: &str,
) -> Result<bool> {
    if verify_attestation(key, pinned, kind, flags).is_ok() {
        return Ok(false);
    }
    eprintln!("attesting {pinned} with {what} ({kind})");
    run(
        cosign(key)
            .arg("attest")
            .arg("--key")
            .arg(&key.private)
            .arg("--type")
            .arg(kind)
            .arg("--predicate")
            .arg(sbom)
            .arg("--tlog-upload=false")
            .args(flags)
            .arg(pinned),
        &format!("attest {pinned}"),
    )?;
    Ok(true)
}

/// Verifies one manifest's signature and attestation with the public key, and says where the
/// registry keeps both.
fn verified(
    key: &Key,
    repository: &str,
    digest: &str,
    kind: &str,
    sbom: &Path,
    flags: &[&str],
    signed_now: bool,
) -> Result<Signed> {
    let pinned = format!("{repository}@{digest}");
    verify_signature(key, &pinned, flags)?;
    verify_attestation(key, &pinned, kind, flags)?;
    Ok(Signed {
        signature: stored(repository, digest, "sig")?,
        attestation: Some(stored(repository, digest, "att")?),
        attestation_type: Some(kind.to_string()),
        sbom: Some(sbom.to_path_buf()),
        public_key: key.public.clone(),
        signed_now,
    })
}

/// cosign keeps signatures and attestations next to the image, under tags named after its
/// digest (`sha256-….sig`, `.att`): the one of `suffix`, pinned by digest.
fn stored(repository: &str, digest: &str, suffix: &str) -> Result<String> {
    let reference = format!("{repository}:{}.{suffix}", digest.replace(':', "-"));
    match registry::inspect(&reference) {
        Ok(super::plan::Remote::Present { digest, .. }) => Ok(format!("{repository}@{digest}")),
        Ok(super::plan::Remote::Absent) => bail!("{reference} is not in the registry"),
        Err(failure) => bail!("cannot read {reference}: {}", failure.detail()),
    }
}

/// Signs an image index and, with `--recursive`, every manifest it lists; attests each
/// platform's SBOM (`manifests`: each platform's manifest digest and SBOM file) to that
/// platform's manifest; then verifies the index's signature and each platform's signature and
/// attestation with the public key. What an earlier run signed already is not signed again.
pub fn sign_index(
    key: &Key,
    host: &str,
    repository: &str,
    index: &str,
    manifests: &[(String, PathBuf)],
    format: Format,
) -> Result<(Signed, Vec<Signed>)> {
    let pinned = format!("{repository}@{index}");
    let flags = registry_flags(host);
    let kind = format.attestation_type();
    let all_signed = || {
        verify_signature(key, &pinned, &flags).is_ok()
            && manifests.iter().all(|(digest, _)| {
                verify_signature(key, &format!("{repository}@{digest}"), &flags).is_ok()
            })
    };
    let mut index_signed_now = false;
    if !all_signed() {
        eprintln!("signing {pinned} and each platform's manifest (cosign --recursive)");
        sign(key, &pinned, &flags, true)?;
        index_signed_now = true;
    }
    verify_signature(key, &pinned, &flags)?;
    let mut platforms = Vec::new();
    for (digest, sbom) in manifests {
        let manifest = format!("{repository}@{digest}");
        let attested = attest(key, &manifest, kind, sbom, &flags, "its platform's SBOM")?;
        platforms.push(verified(
            key,
            repository,
            digest,
            kind,
            sbom,
            &flags,
            index_signed_now || attested,
        )?);
    }
    eprintln!(
        "verified the signatures of {pinned} and of its {} platforms, and their SBOM attestations",
        manifests.len()
    );
    let index = Signed {
        signature: stored(repository, index, "sig")?,
        attestation: None,
        attestation_type: None,
        sbom: None,
        public_key: key.public.clone(),
        signed_now: index_signed_now,
    };
    Ok((index, platforms))
}

/// `cargo xtask keygen`: a cosign key pair for signing releases, outside the repository.
#[derive(Debug, Args)]
pub struct KeygenCmd {
    /// The folder to write cosign.key and cosign.pub into (default:
    /// ~/.config/todo-chatbot); never inside the repository.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl KeygenCmd {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let root = sh.current_dir();
        let dir = match self.dir {
            Some(dir) if dir.is_absolute() => dir,
            Some(dir) => std::env::current_dir()?.join(dir),
            None => {
                let home = std::env::var_os("HOME").context("HOME is not set: give --dir")?;
                Path::new(&home).join(".config/todo-chatbot")
            }
        };
        // Checked before anything is made, on the path as written and on the real path of its
        // nearest existing folder (a symbolic link may lead into the repository).
        let real = dir
            .ancestors()
            .find_map(|a| a.canonicalize().ok())
            .unwrap_or_default();
        let root_real = root.canonicalize().unwrap_or_else(|_| root.clone());
        if dir.starts_with(&root) || real.starts_with(&root_real) {
            bail!(
                "{} is inside the repository: a private key must live outside it (give --dir \
                 elsewhere)",
                dir.display()
            );
        }
        let private = dir.join("cosign.key");
        if private.exists() {
            bail!(
                "{} exists already: keygen never overwrites a key (move it away first)",
                private.display()
            );
        }
        if std::env::var_os("COSIGN_PASSWORD").is_none() {
            bail!(
                "set COSIGN_PASSWORD to the password that will protect the key (keygen never \
                 asks for it on a terminal nor prints it), e.g. `read -s COSIGN_PASSWORD; export \
                 COSIGN_PASSWORD`"
            );
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        ensure_cosign(sh)?;
        let out = Command::new("cosign")
            .args(["generate-key-pair", "--output-key-prefix", "cosign"])
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .output()
            .context("cannot run cosign")?;
        if !out.status.success() {
            bail!(
                "cosign generate-key-pair failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600))?;
        println!(
            "wrote {} (private, mode 600) and {}\nrelease with it: set COSIGN_KEY={} and \
             COSIGN_PASSWORD (the one you chose) in the environment or the env file",
            private.display(),
            dir.join("cosign.pub").display(),
            private.display()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows_in_debug() {
        let key = Key {
            private: "/k/cosign.key".into(),
            public: "/k/cosign.pub".into(),
            password: "hunter2-password".into(),
        };
        let shown = format!("{key:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("cosign.pub"));
    }

    #[test]
    fn only_a_local_registry_may_be_plain_http() {
        assert_eq!(registry_flags("127.0.0.1:5000").len(), 2);
        assert_eq!(registry_flags("localhost:5000").len(), 2);
        assert!(registry_flags("docker.io").is_empty());
        assert!(registry_flags("registry.example.org:5000").is_empty());
    }
}
