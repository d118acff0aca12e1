//! What a build context holds after `.dockerignore`: one content digest per file, kept in the
//! history so that the next build can say which files changed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use glob::{MatchOptions, Pattern};

/// The rules of one `.dockerignore`, in order; the last rule that matches a path decides.
#[derive(Debug, Default)]
pub struct Ignore {
    rules: Vec<(Pattern, bool)>,
}

const OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl Ignore {
    /// Parses `.dockerignore` text the way Docker does: comments and blank lines skipped, a
    /// leading `!` re-admits, patterns are relative to the context root (a leading `/` and
    /// a trailing `/` mean nothing), and a pattern that matches a folder matches what it holds.
    pub fn parse(text: &str) -> Result<Ignore> {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (admit, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
            let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
            if pattern.is_empty() {
                continue;
            }
            let compiled = Pattern::new(pattern)
                .with_context(|| format!(".dockerignore: `{line}` is not a valid pattern"))?;
            rules.push((compiled, admit));
        }
        Ok(Ignore { rules })
    }

    /// True when the build does not see `path` (relative, `/`-separated).
    pub fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for (pattern, admit) in &self.rules {
            if matches_or_parent(pattern, path) {
                excluded = !admit;
            }
        }
        excluded
    }

    /// True when an excluded folder may still hold an admitted path, so its walk must go on.
    fn may_admit_inside(&self, dir: &str) -> bool {
        self.rules.iter().any(|(pattern, admit)| {
            if !admit {
                return false;
            }
            let text = pattern.as_str();
            let literal: String = text
                .chars()
                .take_while(|c| !matches!(c, '*' | '?' | '['))
                .collect();
            // The pattern's fixed beginning leads into this folder, or the folder into it.
            literal.starts_with(&format!("{dir}/"))
                || format!("{dir}/").starts_with(&literal)
                || literal.is_empty()
        })
    }
}

/// Docker's rule: a pattern matches a path when it matches the path or one of its parents.
fn matches_or_parent(pattern: &Pattern, path: &str) -> bool {
    let mut end = path.len();
    loop {
        if pattern.matches_with(&path[..end], OPTIONS) {
            return true;
        }
        match path[..end].rfind('/') {
            Some(i) => end = i,
            None => return false,
        }
    }
}

/// Git's blob id of some content: SHA-1 of `blob <length>\0<content>`.
pub fn blob_id(content: &[u8]) -> String {
    let mut hash = sha1_smol::Sha1::new();
    hash.update(format!("blob {}\0", content.len()).as_bytes());
    hash.update(content);
    hash.digest().to_string()
}

/// Every file of the context the build sees, relative path -> git blob id. Symbolic links count
/// by their target's text, as a tar of the context would hold them.
pub fn digests(context: &Path) -> Result<BTreeMap<String, String>> {
    let ignore = match std::fs::read_to_string(context.join(".dockerignore")) {
        Ok(text) => Ignore::parse(&text)?,
        Err(_) => Ignore::default(),
    };
    let mut files = BTreeMap::new();
    let mut walk = walkdir::WalkDir::new(context)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.with_context(|| format!("cannot read {}", context.display()))?;
        let Ok(relative) = entry.path().strip_prefix(context) else {
            continue;
        };
        let relative = relative.to_string_lossy().replace('\\', "/");
        if relative.is_empty() {
            continue;
        }
        let excluded = ignore.excludes(&relative);
        if entry.file_type().is_dir() {
            if excluded && !ignore.may_admit_inside(&relative) {
                walk.skip_current_dir();
            }
            continue;
        }
        if excluded {
            continue;
        }
        let content = if entry.file_type().is_symlink() {
            std::fs::read_link(entry.path())?
                .to_string_lossy()
                .into_owned()
                .into_bytes()
        } else {
            std::fs::read(entry.path())
                .with_context(|| format!("cannot read {}", entry.path().display()))?
        };
        files.insert(relative, blob_id(&content));
    }
    Ok(files)
}

/// How the files of a context moved between two builds: (path, what happened), sorted by path.
pub fn changes(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = after
        .iter()
        .filter_map(|(path, digest)| match before.get(path) {
            None => Some((path.clone(), "added")),
            Some(old) if old != digest => Some((path.clone(), "changed")),
            _ => None,
        })
        .chain(
            before
                .keys()
                .filter(|p| !after.contains_key(*p))
                .map(|p| (p.clone(), "removed")),
        )
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_are_gits() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            blob_id(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }

    #[test]
    fn an_allow_list_admits_only_its_folders_and_still_drops_caches() {
        let ignore = Ignore::parse(
            "# comment\n*\n!requirements.txt\n!app/\n**/__pycache__\n**/.env\n**/tests\n",
        )
        .unwrap();
        assert!(!ignore.excludes("requirements.txt"));
        assert!(!ignore.excludes("app/main.py"));
        assert!(ignore.excludes("app/__pycache__/main.cpython-311.pyc"));
        assert!(ignore.excludes("app/tests/test_x.py"));
        assert!(ignore.excludes(".env"));
        assert!(ignore.excludes("README.md"));
        assert!(ignore.excludes(".venv/bin/python"));
        assert!(ignore.may_admit_inside("app"));
        assert!(!ignore.may_admit_inside(".venv"));
    }

    #[test]
    fn patterns_are_rooted_and_match_what_a_folder_holds() {
        let ignore = Ignore::parse("node_modules\n/.next\n*.md\n.env*\nDockerfile*\n").unwrap();
        assert!(ignore.excludes("node_modules/next/package.json"));
        assert!(ignore.excludes(".next/cache/x"));
        assert!(ignore.excludes("README.md"));
        // Rooted: `*.md` does not reach into folders, as in Docker.
        assert!(!ignore.excludes("app/notes.md"));
        assert!(ignore.excludes(".env.local"));
        assert!(!ignore.excludes("app/page.tsx"));
        assert!(!ignore.may_admit_inside("node_modules"));
    }

    #[test]
    fn changes_name_added_changed_and_removed_files() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let before = map(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let after = map(&[("a", "1"), ("b", "9"), ("d", "4")]);
        assert_eq!(
            changes(&before, &after),
            [
                ("b".to_string(), "changed"),
                ("c".to_string(), "removed"),
                ("d".to_string(), "added")
            ]
        );
    }
}
