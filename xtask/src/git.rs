//! What the build needs from git: the revision, whether the tree has changes, and where the
//! repository lives.

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GitInfo {
    /// The full hash of HEAD.
    pub revision: String,
    /// HEAD's committer time in seconds since the Unix epoch: the build's SOURCE_DATE_EPOCH and
    /// `created` label. A dirty tree uses it too, so that rebuilding unchanged work in progress
    /// keeps its image id; the `-dirty` tag marks such a build.
    pub commit_time: i64,
    /// The paths `git status` reports as changed or untracked, relative to the repository root.
    pub dirty_paths: Vec<String>,
    /// True when tracked or untracked (not ignored) files differ from HEAD.
    pub dirty: bool,
    /// The `origin` remote as an https URL, when there is one and it is on a web host (a clone
    /// of a local folder has none).
    pub origin: Option<String>,
}

impl GitInfo {
    pub fn read(sh: &Shell) -> Result<GitInfo> {
        // One command for both the hash and the time: a no-op build counts its git calls.
        let format = "--format=%H %ct";
        let head = cmd!(sh, "git log -1 {format}")
            .quiet()
            .ignore_stderr()
            .read()
            .ok()
            .filter(|s| !s.is_empty())
            .context("git has no HEAD here: run inside a clone of the project with one commit")?;
        let (revision, time) = head
            .split_once(' ')
            .context("unexpected `git log` output")?;
        let status = cmd!(sh, "git status --porcelain").quiet().read()?;
        let dirty_paths: Vec<String> = status.lines().filter_map(status_path).collect();
        let origin = cmd!(sh, "git config --get remote.origin.url")
            .quiet()
            .ignore_status()
            .ignore_stderr()
            .read()
            .ok()
            .and_then(|s| https_url(s.trim()));
        Ok(GitInfo {
            revision: revision.to_string(),
            commit_time: time
                .trim()
                .parse()
                .context("unexpected commit time from git")?,
            dirty: !dirty_paths.is_empty(),
            dirty_paths,
            origin,
        })
    }

    /// The newest commit that changed `context` (a folder of the repository), as 12 hex digits,
    /// with `-dirty` when git reports changes inside it: what the image built from that folder
    /// calls its source revision (the Next.js build id). A commit elsewhere leaves it, and so the
    /// steps that use it, unchanged.
    pub fn context_revision(&self, sh: &Shell, context: &std::path::Path) -> String {
        let folder = context.to_string_lossy().trim_end_matches('/').to_string();
        let revision = cmd!(sh, "git log -1 --format=%H -- {folder}")
            .quiet()
            .ignore_stderr()
            .read()
            .ok()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| self.revision.clone());
        let short: String = revision.chars().take(12).collect();
        let prefix = format!("{folder}/");
        if self
            .dirty_paths
            .iter()
            .any(|p| p.starts_with(&prefix) || *p == folder)
        {
            format!("{short}-dirty")
        } else {
            short
        }
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

/// The path of one `git status --porcelain` line; for a rename, the new path.
fn status_path(line: &str) -> Option<String> {
    let path = line.get(3..)?;
    let path = path.rsplit(" -> ").next().unwrap_or(path);
    Some(path.trim_matches('"').to_string())
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
            commit_time: 0,
            dirty_paths: vec![],
            dirty: false,
            origin: None,
        };
        assert_eq!(info.short(), "0123456");
        info.dirty = true;
        assert_eq!(info.short(), "0123456-dirty");
    }

    #[test]
    fn status_lines_give_their_paths() {
        assert_eq!(
            status_path(" M frontend/app/page.tsx").unwrap(),
            "frontend/app/page.tsx"
        );
        assert_eq!(status_path("?? backend/new.py").unwrap(), "backend/new.py");
        assert_eq!(
            status_path("R  a.txt -> frontend/b.txt").unwrap(),
            "frontend/b.txt"
        );
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
