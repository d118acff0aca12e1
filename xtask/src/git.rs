//! What the build needs from git: the revision, whether the tree has changes, and where the
//! repository lives.

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GitInfo {
    /// The full hash of HEAD.
    pub revision: String,
    /// True when tracked or untracked (not ignored) files differ from HEAD.
    pub dirty: bool,
    /// The `origin` remote as an https URL, when there is one and it is on a web host (a clone
    /// of a local folder has none).
    pub origin: Option<String>,
}

impl GitInfo {
    pub fn read(sh: &Shell) -> Result<GitInfo> {
        let revision = cmd!(sh, "git rev-parse --verify HEAD")
            .quiet()
            .ignore_stderr()
            .read()
            .context("git has no HEAD here: run inside a clone of the project with one commit")?;
        let status = cmd!(sh, "git status --porcelain").quiet().read()?;
        let origin = cmd!(sh, "git config --get remote.origin.url")
            .quiet()
            .ignore_status()
            .ignore_stderr()
            .read()
            .ok()
            .and_then(|s| https_url(s.trim()));
        Ok(GitInfo {
            revision,
            dirty: !status.trim().is_empty(),
            origin,
        })
    }

    /// The short hash the image tags carry: seven hex digits, and `-dirty` for a changed tree.
    pub fn short(&self) -> String {
        let short: String = self.revision.chars().take(7).collect();
        if self.dirty {
            format!("{short}-dirty")
        } else {
            short
        }
    }
}

/// Turns an scp-like remote (`git@host:owner/repo.git`) into the https URL that the OCI source
/// label expects; https remotes lose their `.git` suffix and any credentials. A remote that is a
/// local path or another scheme has no such URL.
pub fn https_url(remote: &str) -> Option<String> {
    let trimmed = remote.trim_end_matches(".git");
    if let Some(rest) = trimmed.strip_prefix("git@") {
        let (host, path) = rest.split_once(':')?;
        return Some(format!("https://{host}/{path}"));
    }
    let mut url = url::Url::parse(trimmed).ok()?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return None;
    }
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hash_marks_a_dirty_tree() {
        let mut info = GitInfo {
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            dirty: false,
            origin: None,
        };
        assert_eq!(info.short(), "0123456");
        info.dirty = true;
        assert_eq!(info.short(), "0123456-dirty");
    }

    #[test]
    fn remotes_become_https_urls_without_credentials() {
        assert_eq!(
            https_url("git@github.com:acme/todo.git").as_deref(),
            Some("https://github.com/acme/todo")
        );
        assert_eq!(
            https_url("https://user:token@github.com/acme/todo.git").as_deref(),
            Some("https://github.com/acme/todo")
        );
        assert_eq!(https_url("/srv/git/todo"), None);
        assert_eq!(https_url("file:///srv/git/todo"), None);
    }
}
