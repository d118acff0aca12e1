//! The kustomize overlay a release writes beside its record: `target/releases/vX.Y.Z/` holds a
//! kustomization that takes `deploy/base`, points each image at the registry's repository and
//! the digest that was pushed and verified (never a tag), and labels every object and pod with the
//! version.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;

use crate::config::Config;

/// The base every overlay builds on, relative to the project root.
pub const BASE_DIR: &str = "deploy/base";
/// The file kustomize reads in a folder.
pub const KUSTOMIZATION: &str = "kustomization.yaml";

/// The overlay folder of a release record: `target/releases/v1.0.1.json` → `target/releases/v1.0.1`.
pub fn dir_of(record_file: &Path) -> PathBuf {
    record_file.with_extension("")
}

/// Writes the overlay of release `tag` (`v1.0.1`) beside its record (`record_file`, relative to
/// `root`). `images` are (service, repository, digest) of every image pushed.
pub fn write<'a>(
    root: &Path,
    record_file: &Path,
    tag: &str,
    config: &Config,
    images: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) -> Result<()> {
    let dir = dir_of(record_file);
    let images: Vec<_> = images.into_iter().collect();
    let text = kustomization(&dir, tag.trim_start_matches('v'), config, &images)?;
    let path = root.join(&dir).join(KUSTOMIZATION);
    std::fs::create_dir_all(root.join(&dir))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "wrote the deploy overlay {}/ (`cargo xtask deploy check {tag}`)",
        dir.display()
    );
    Ok(())
}

/// The overlay's kustomization, for an overlay in `dir` (relative to the project root).
fn kustomization(
    dir: &Path,
    version: &str,
    config: &Config,
    images: &[(&str, &str, &str)],
) -> Result<String> {
    let images: Vec<serde_json::Value> = images
        .iter()
        .map(|&(service, repository, digest)| {
            let image = config
                .images
                .iter()
                .find(|i| i.service == service)
                .with_context(|| format!("project.toml has no service {service}"))?;
            Ok(json!({
                "name": image.image,
                "newName": repository,
                "digest": digest,
            }))
        })
        .collect::<Result<_>>()?;
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [relative_to(dir, Path::new(BASE_DIR))],
        // Selectors are immutable in a Deployment: the version labels objects and pod templates
        // only, so that the next release's apply updates the same Deployments.
        "labels": [{
            "pairs": { "app.kubernetes.io/version": version },
            "includeTemplates": true,
        }],
        "images": images,
    });
    Ok(format!(
        "# Written by `cargo xtask release` for v{version}: deploy/base with every image pinned \
         by the\n# digest the registry holds. Render, check and apply it with `cargo xtask deploy \
         render|check|apply v{version}`.\n{}",
        serde_yaml::to_string(&kustomization)?
    ))
}

/// `to` as seen from `from`, both relative to the same root.
pub fn relative_to(from: &Path, to: &Path) -> String {
    let up = "../".repeat(from.components().count());
    format!("{up}{}", to.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlay_pins_digests_and_labels_the_version() {
        let config =
            Config::load(&crate::project_root().join(crate::config::DEFAULT_FILE)).unwrap();
        let digest = format!("sha256:{}", "b".repeat(64));
        let images: Vec<_> = config
            .images
            .iter()
            .map(|i| (i.service.as_str(), "localhost:5000/todo/x", digest.as_str()))
            .collect();
        let dir = dir_of(Path::new("target/releases/v1.0.1.json"));
        assert_eq!(dir, Path::new("target/releases/v1.0.1"));
        let text = kustomization(&dir, "1.0.1", &config, &images).unwrap();
        assert!(text.contains("- ../../../deploy/base\n"), "{text}");
        assert!(text.contains("app.kubernetes.io/version: 1.0.1"), "{text}");
        assert!(text.contains(&format!("digest: {digest}")), "{text}");
        assert!(text.contains("name: todo-frontend"), "{text}");
        assert!(!text.contains("newTag"), "{text}");
    }
}
