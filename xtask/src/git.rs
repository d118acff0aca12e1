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
    /// The `origin` remote as an https URL, when there is one.
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
            .filter(|s| !s.trim().is_empty())
            .map(|s| https_url(s.trim()));
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
/// label expects; https remotes lose their `.git` suffix and any credentials.
pub fn https_url(remote: &str) -> String {
    let trimmed = remote.trim_end_matches(".git");
    if let Some(rest) = trimmed.strip_prefix("git@") {
        if let Some((host, path)) = rest.split_once(':') {
            return format!("https://{host}/{path}");
        }
    }
    match url::Url::parse(trimmed) {
        Ok(mut url) if url.scheme() == "https" || url.scheme() == "http" => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        _ => trimmed.to_string(),
    }
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
            https_url("git@github.com:acme/todo.git"),
            "https://github.com/acme/todo"
        );
        assert_eq!(
            https_url("https://user:token@github.com/acme/todo.git"),
            "https://github.com/acme/todo"
        );
        assert_eq!(https_url("/srv/git/todo"), "/srv/git/todo");
    }
}
