//! What the build needs from git: the revision, whether the tree has changes, and where the
//! repository lives.

use anyhow::{bail, Context, Result};
use xshell::Shell;

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
    /// Asks git for HEAD, the changed paths and the origin at once: the three questions are
    /// independent, and a no-op build, which asks them every time, then waits for the slowest of
    /// them instead of their sum.
    pub fn read(sh: &Shell) -> Result<GitInfo> {
        let root = sh.current_dir();
        // One command for both the hash and the time.
        let head = git(&root, &["log", "-1", "--format=%H %ct"])?;
        let status = git(&root, &["status", "--porcelain"])?;
        let origin = git(&root, &["config", "--get", "remote.origin.url"])?;
        let head = head.wait_with_output()?;
        let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
        if head.is_empty() {
            bail!("git has no HEAD here: run inside a clone of the project with one commit");
        }
        let (revision, time) = head
            .split_once(' ')
            .context("unexpected `git log` output")?;
        let status = status.wait_with_output()?;
        if !status.status.success() {
            bail!(
                "`git status` failed: {}",
                String::from_utf8_lossy(&status.stderr).trim()
            );
        }
        let dirty_paths: Vec<String> = String::from_utf8_lossy(&status.stdout)
            .lines()
            .filter_map(status_path)
            .collect();
        let origin = origin.wait_with_output()?;
        let origin = https_url(String::from_utf8_lossy(&origin.stdout).trim());
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

    /// For each context (a folder of the repository), the newest commit that changed it, as 12
    /// hex digits, with `-dirty` when git reports changes inside it: what the image built from
    /// that folder calls its source revision (the Next.js build id). A commit elsewhere leaves
    /// it, and so the steps that use it, unchanged. The folders are asked about at once.
    pub fn context_revisions(
        &self,
        sh: &Shell,
        contexts: &[&std::path::Path],
    ) -> Result<Vec<String>> {
        let root = sh.current_dir();
        let folders: Vec<String> = contexts
            .iter()
            .map(|c| c.to_string_lossy().trim_end_matches('/').to_string())
            .collect();
        let children = folders
            .iter()
            .map(|folder| git(&root, &["log", "-1", "--format=%H", "--", folder]))
            .collect::<Result<Vec<_>>>()?;
        let mut revisions = Vec::new();
        for (folder, child) in folders.iter().zip(children) {
            let out = child.wait_with_output()?;
            let revision = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let revision = if revision.is_empty() {
                self.revision.clone()
            } else {
                revision
            };
            let short: String = revision.chars().take(12).collect();
            let prefix = format!("{folder}/");
            let dirty = self
                .dirty_paths
                .iter()
                .any(|p| p.starts_with(&prefix) || p == folder);
            revisions.push(if dirty {
                format!("{short}-dirty")
            } else {
                short
            });
        }
        Ok(revisions)
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

/// Starts `git ARGS` in `root` with its output piped; the caller waits for it.
fn git(root: &std::path::Path, args: &[&str]) -> Result<std::process::Child> {
    use std::process::{Command, Stdio};
    Command::new("git")
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run git: install it, and run inside a clone of the project")
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
