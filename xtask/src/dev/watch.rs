//! Watching the sources: which changes matter and what each one asks for (a pure classification),
//! and the watcher itself (notify, debounced; native events or polling).
//!
//! Every folder is watched on its own, not recursively: a recursive watch of `frontend/` would
//! also cover `node_modules`, tens of thousands of folders the tool must ignore anyway. New
//! folders are added as they appear.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use notify_debouncer_full::notify::{self, PollWatcher, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{
    new_debouncer, new_debouncer_opt, DebounceEventResult, Debouncer, NoCache, RecommendedCache,
};

/// Folders never watched, wherever they are.
const IGNORED_DIRS: &[&str] = &[
    ".git",
    "node_modules",
    ".next",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".venv",
    "venv",
    ".turbo",
    ".idea",
    ".vscode",
    "target",
];

/// How long the debouncer gathers the events of one burst (a save, a checkout, a formatter run).
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// How often `--poll` looks at every watched folder.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// True for paths no one edits by hand: tool folders, editor swap and backup files, bytecode.
pub fn is_ignored(path: &Path) -> bool {
    if path.components().any(|c| match c {
        Component::Normal(name) => IGNORED_DIRS.iter().any(|d| name == *d),
        _ => false,
    }) {
        return true;
    }
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return true;
    };
    name.ends_with('~')
        || name.starts_with(".#")
        || (name.starts_with('#') && name.ends_with('#'))
        || name == "4913" // vim's probe of whether it may write the folder
        || name == ".DS_Store"
        || name.ends_with(".tmp")
        || name.ends_with(".bak")
        || name.ends_with(".pyc")
        || name.ends_with(".log")
        || name.ends_with(".tsbuildinfo")
        || name.starts_with(".goutputstream")
        || is_vim_swap(name)
}

/// vim's swap files: `.name.swp`, then `.name.swo`, `.name.swn`... down to `.name.swa`.
fn is_vim_swap(name: &str) -> bool {
    let ext = name.rsplit('.').next().unwrap_or("");
    name.starts_with('.') && name.len() > ext.len() + 2 && ext.len() == 3 && ext.starts_with("sw")
}

/// What a changed file asks of `dev`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// A source the service serves with hot reload: nothing to do but measure it.
    Source(String),
    /// A dependency manifest or lock, or the Dockerfile.dev: rebuild the image, recreate the
    /// service.
    Rebuild(String),
    /// A compose file: recreate the services whose configuration changed.
    Compose,
}

/// What decides the classification, per service.
#[derive(Debug, Clone)]
pub struct ServiceRules {
    pub service: String,
    /// The folder mounted into the container (the build context), relative to the root.
    pub dir: PathBuf,
    /// Files (relative to the root) whose change makes the dev image stale.
    pub rebuild: Vec<PathBuf>,
    /// Files of the folder that do not reach the dev server (the production Dockerfile...).
    pub not_served: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Rules {
    pub services: Vec<ServiceRules>,
    /// The folder of the compose files, relative to the root.
    pub compose_dir: PathBuf,
}

impl Rules {
    /// The folders to watch, relative to the root.
    pub fn roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = self.services.iter().map(|s| s.dir.clone()).collect();
        roots.push(self.compose_dir.clone());
        roots
    }

    /// What a change of `path` (relative to the root) asks for, or None when it does not matter.
    pub fn classify(&self, path: &Path) -> Option<Change> {
        if is_ignored(path) {
            return None;
        }
        for service in &self.services {
            if service
                .rebuild
                .iter()
                .any(|input| path == input || path.starts_with(input))
            {
                return Some(Change::Rebuild(service.service.clone()));
            }
        }
        if path.parent() == Some(self.compose_dir.as_path())
            && matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            )
        {
            return Some(Change::Compose);
        }
        let markdown = path.extension().is_some_and(|e| e == "md");
        for service in &self.services {
            if path.starts_with(&service.dir) {
                if markdown || service.not_served.iter().any(|p| p == path) {
                    return None;
                }
                return Some(Change::Source(service.service.clone()));
            }
        }
        None
    }

    /// One burst of changed files, reduced to what it asks for: each change once, with the files
    /// behind it (relative to the root) and the time of the first event.
    pub fn reduce(&self, events: &[(PathBuf, Instant)]) -> Vec<(Change, Vec<PathBuf>, Instant)> {
        let mut out: Vec<(Change, Vec<PathBuf>, Instant)> = Vec::new();
        for (path, at) in events {
            let Some(change) = self.classify(path) else {
                continue;
            };
            match out.iter_mut().find(|(c, _, _)| *c == change) {
                Some((_, files, first)) => {
                    if !files.contains(path) {
                        files.push(path.clone());
                    }
                    *first = (*first).min(*at);
                }
                None => out.push((change, vec![path.clone()], *at)),
            }
        }
        // A rebuild recreates the container, which serves the new sources anyway: a source change
        // of the same burst needs no measure of its own.
        let rebuilt: BTreeSet<String> = out
            .iter()
            .filter_map(|(c, _, _)| match c {
                Change::Rebuild(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        out.retain(|(c, _, _)| !matches!(c, Change::Source(s) if rebuilt.contains(s)));
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// What the watcher hands over: the changed paths (absolute) with the time each was seen, or
/// the watcher's errors as text.
pub type Batch = std::result::Result<Vec<(PathBuf, Instant)>, String>;

enum Inner {
    Native(Debouncer<RecommendedWatcher, RecommendedCache>),
    Poll(Debouncer<PollWatcher, NoCache>),
}

pub struct Watcher {
    inner: Inner,
    watched: BTreeSet<PathBuf>,
}

impl Watcher {
    /// Starts watching every folder under `roots` (absolute), except ignored ones; each burst of
    /// events goes to `send`.
    pub fn start(
        roots: &[PathBuf],
        poll: bool,
        send: impl Fn(Batch) + Send + 'static,
    ) -> Result<Watcher> {
        let handler = move |result: DebounceEventResult| {
            let batch = match result {
                Ok(events) => Ok(events
                    .into_iter()
                    .filter(|e| !e.kind.is_access())
                    .flat_map(|e| {
                        let at = e.time;
                        e.event.paths.into_iter().map(move |p| (p, at))
                    })
                    .collect::<Vec<_>>()),
                Err(errors) => Err(errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")),
            };
            if !matches!(&batch, Ok(events) if events.is_empty()) {
                send(batch);
            }
        };
        let inner = if poll {
            let config = notify::Config::default().with_poll_interval(POLL_INTERVAL);
            Inner::Poll(
                new_debouncer_opt::<_, PollWatcher, NoCache>(
                    DEBOUNCE, None, handler, NoCache, config,
                )
                .context("cannot start the polling watcher")?,
            )
        } else {
            Inner::Native(
                new_debouncer(DEBOUNCE, None, handler)
                    .context("cannot start the file watcher (try --poll)")?,
            )
        };
        let mut watcher = Watcher {
            inner,
            watched: BTreeSet::new(),
        };
        for root in roots {
            watcher.add_tree(root)?;
        }
        Ok(watcher)
    }

    /// Watches `dir` and every folder below it that is not ignored and not watched yet.
    pub fn add_tree(&mut self, dir: &Path) -> Result<()> {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if self.watched.contains(&dir) || is_ignored_dir(&dir) {
                continue;
            }
            let watch = match &mut self.inner {
                Inner::Native(d) => d.watch(&dir, RecursiveMode::NonRecursive),
                Inner::Poll(d) => d.watch(&dir, RecursiveMode::NonRecursive),
            };
            if let Err(err) = watch {
                // A folder removed in the meantime is no error; anything else (the inotify limit)
                // is, with the way out.
                if dir.exists() {
                    return Err(anyhow::Error::new(err).context(format!(
                        "cannot watch {} (raise fs.inotify.max_user_watches, or use --poll)",
                        dir.display()
                    )));
                }
                continue;
            }
            self.watched.insert(dir.clone());
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    let Ok(kind) = entry.file_type() else {
                        continue;
                    };
                    if kind.is_dir() {
                        stack.push(entry.path());
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds the new folders among changed paths (a folder created, or moved in).
    pub fn follow(&mut self, paths: &[(PathBuf, Instant)]) -> Result<()> {
        for (path, _) in paths {
            if path.is_dir() && !self.watched.contains(path) {
                self.add_tree(path)?;
            }
        }
        self.watched.retain(|p| p.exists());
        Ok(())
    }

    pub fn count(&self) -> usize {
        self.watched.len()
    }
}

fn is_ignored_dir(dir: &Path) -> bool {
    dir.components().any(|c| match c {
        Component::Normal(name) => IGNORED_DIRS.iter().any(|d| name == *d),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            services: vec![
                ServiceRules {
                    service: "frontend".into(),
                    dir: "frontend".into(),
                    rebuild: vec![
                        "frontend/Dockerfile.dev".into(),
                        "frontend/package.json".into(),
                        "frontend/package-lock.json".into(),
                    ],
                    not_served: vec!["frontend/Dockerfile".into()],
                },
                ServiceRules {
                    service: "backend".into(),
                    dir: "backend".into(),
                    rebuild: vec![
                        "backend/Dockerfile.dev".into(),
                        "backend/requirements.txt".into(),
                    ],
                    not_served: vec!["backend/Dockerfile".into()],
                },
            ],
            compose_dir: "compose".into(),
        }
    }

    #[test]
    fn tool_folders_and_editor_files_are_ignored() {
        for path in [
            "frontend/node_modules/next/package.json",
            "frontend/.next/server/app.js",
            "backend/app/__pycache__/main.cpython-311.pyc",
            ".git/index",
            "backend/app/main.py~",
            "backend/app/.main.py.swp",
            "backend/app/.main.py.swx",
            "backend/app/.#main.py",
            "backend/app/#main.py#",
            "backend/app/4913",
            "frontend/app/page.tsx.tmp",
        ] {
            assert!(is_ignored(Path::new(path)), "{path}");
        }
        for path in [
            "backend/app/main.py",
            "frontend/app/page.tsx",
            "frontend/app/.swc-config.ts",
            "backend/app/swap.py",
        ] {
            assert!(!is_ignored(Path::new(path)), "{path}");
        }
    }

    #[test]
    fn each_change_asks_for_what_it_needs() {
        let rules = rules();
        let c = |p: &str| rules.classify(Path::new(p));
        assert_eq!(
            c("backend/app/main.py"),
            Some(Change::Source("backend".into()))
        );
        assert_eq!(
            c("frontend/app/page.tsx"),
            Some(Change::Source("frontend".into()))
        );
        assert_eq!(
            c("backend/requirements.txt"),
            Some(Change::Rebuild("backend".into()))
        );
        assert_eq!(
            c("frontend/package-lock.json"),
            Some(Change::Rebuild("frontend".into()))
        );
        assert_eq!(
            c("frontend/Dockerfile.dev"),
            Some(Change::Rebuild("frontend".into()))
        );
        assert_eq!(c("compose/dev.yml"), Some(Change::Compose));
        assert_eq!(c("compose/notes.txt"), None);
        assert_eq!(c("backend/Dockerfile"), None);
        assert_eq!(c("backend/README.md"), None);
        assert_eq!(c("frontend/node_modules/x/package.json"), None);
        assert_eq!(c("xtask/src/main.rs"), None);
    }

    #[test]
    fn a_burst_asks_for_each_thing_once() {
        let rules = rules();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(50);
        let events: Vec<(PathBuf, Instant)> = [
            ("backend/requirements.txt", t1),
            ("backend/requirements.txt", t1),
            ("backend/app/main.py", t0),
            ("frontend/app/page.tsx", t1),
            ("frontend/app/layout.tsx", t0),
            ("frontend/.next/cache/x", t0),
            ("compose/dev.yml", t1),
        ]
        .into_iter()
        .map(|(p, t)| (PathBuf::from(p), t))
        .collect();
        let reduced = rules.reduce(&events);
        let kinds: Vec<&Change> = reduced.iter().map(|(c, _, _)| c).collect();
        // The backend's source change is covered by its rebuild.
        assert_eq!(
            kinds,
            [
                &Change::Source("frontend".into()),
                &Change::Rebuild("backend".into()),
                &Change::Compose
            ]
        );
        assert_eq!(reduced[0].1.len(), 2);
        assert_eq!(reduced[0].2, t0);
        assert_eq!(reduced[1].1, [PathBuf::from("backend/requirements.txt")]);
    }

    #[test]
    fn the_watcher_sees_a_new_file_in_a_new_folder_and_not_node_modules() {
        let dir = std::env::temp_dir().join(format!("xtask-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("node_modules/pkg")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut watcher = Watcher::start(std::slice::from_ref(&dir), false, move |b| {
            let _ = tx.send(b);
        })
        .unwrap();
        assert_eq!(watcher.count(), 1, "node_modules is not watched");
        std::fs::create_dir_all(dir.join("app")).unwrap();
        let first = rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
        watcher.follow(&first).unwrap();
        std::fs::write(dir.join("app/page.tsx"), "x").unwrap();
        std::fs::write(dir.join("node_modules/pkg/index.js"), "x").unwrap();
        let mut seen = Vec::new();
        while let Ok(Ok(batch)) = rx.recv_timeout(Duration::from_secs(2)) {
            seen.extend(batch.into_iter().map(|(p, _)| p));
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(seen.contains(&dir.join("app/page.tsx")), "{seen:?}");
        assert!(!seen.iter().any(|p| p.starts_with(dir.join("node_modules"))));
    }
}
