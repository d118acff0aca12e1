//! The Debian mirror that the local bases, the archives' indexes of the vulnerability gate and the
//! engine's trixie source come from: the one the host's apt is configured with, read from its
//! sources (one-line `sources.list` entries and deb822 `.sources` files alike), unless the
//! project file's `[bases]` names another. No mirror host is written into the repository, so a
//! host with a mirror of its own works unchanged.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::config::Bases;

const SOURCES_LIST: &str = "/etc/apt/sources.list";
const SOURCES_DIR: &str = "/etc/apt/sources.list.d";

/// The fix named whenever no mirror can be found.
const FIX: &str = "set `debian_mirror` (and, when its security archive lives elsewhere, \
`debian_security_mirror`) under [bases] in project.toml, e.g. debian_mirror = \
\"http://<your mirror>/debian\"";

/// One enabled `deb` entry of the host's apt sources: where it fetches which suites from.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub uri: String,
    pub suites: Vec<String>,
    /// The file it was read from, which `doctor` names.
    pub file: PathBuf,
}

impl Entry {
    fn serves(&self, suite: &str) -> bool {
        self.suites.iter().any(|s| s == suite)
    }
}

/// What the host tells about its apt: whether it is Debian, its release, and its sources.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// True on Debian itself, whose mirrors carry every release (not on a derivative such as
    /// Ubuntu, whose archive holds no Debian suite).
    pub debian: bool,
    pub codename: Option<String>,
    pub entries: Vec<Entry>,
}

/// The mirrors of one suite and where each was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirrors {
    /// The suite and `<suite>-updates`.
    pub main: String,
    /// `<suite>-security`.
    pub security: String,
    /// Where `main` was found: `project.toml` or a file of the host's apt sources.
    pub main_from: String,
    pub security_from: String,
}

/// Reads the entries of a one-line sources file (`deb [options] URI SUITE COMPONENT...`):
/// `deb-src` lines, comments and options (`[arch=amd64 signed-by=...]`) are passed over.
pub fn parse_one_line(text: &str, file: &Path) -> Vec<Entry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        // apt reads everything after a `#` as a comment, on any line.
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let mut words = words.peekable();
        // Options may hold spaces inside their brackets: `[ arch=amd64 ]`.
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            for word in words.by_ref() {
                if word.ends_with(']') {
                    break;
                }
            }
        }
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            entries.push(Entry {
                uri: normalise(uri),
                suites: vec![suite.to_string()],
                file: file.to_path_buf(),
            });
        }
    }
    entries
}

/// Reads the entries of a deb822 sources file: paragraphs with `Types`, `URIs`, `Suites` and
/// `Enabled` fields; comment lines and continuation lines (a `Signed-By` key block) are passed
/// over, and every URI of a paragraph serves every suite of it.
pub fn parse_deb822(text: &str, file: &Path) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut paragraph: Vec<(String, String)> = Vec::new();
    let lines = text.lines().map(Some).chain([None]);
    for line in lines {
        let blank = line.is_none_or(|l| l.trim().is_empty());
        if blank {
            entries.extend(paragraph_entries(&paragraph, file));
            paragraph.clear();
            continue;
        }
        let line = line.unwrap_or_default();
        if line.starts_with('#') || line.starts_with([' ', '\t']) {
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            paragraph.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    entries
}

fn paragraph_entries(fields: &[(String, String)], file: &Path) -> Vec<Entry> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let words = |name: &str| -> Vec<String> {
        field(name)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let is_deb = words("types").iter().any(|t| t == "deb");
    let enabled = field("enabled").is_none_or(|e| !e.eq_ignore_ascii_case("no"));
    if !is_deb || !enabled {
        return Vec::new();
    }
    let suites = words("suites");
    words("uris")
        .iter()
        .map(|uri| Entry {
            uri: normalise(uri),
            suites: suites.clone(),
            file: file.to_path_buf(),
        })
        .collect()
}

fn normalise(uri: &str) -> String {
    uri.trim_end_matches('/').to_string()
}

/// The host's apt sources in the order apt reads them: `sources.list`, then the files of
/// `sources.list.d` by name (`.list` one-line, `.sources` deb822; others, such as
/// `.disabled` ones, apt ignores and so do we), leaving out the given file (the engine's own
/// trixie source, which was written from this very lookup).
pub fn host(leave_out: Option<&Path>) -> Host {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let value = |key: &str| {
        os.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
    };
    let mut entries = Vec::new();
    if let Ok(text) = std::fs::read_to_string(SOURCES_LIST) {
        entries.extend(parse_one_line(&text, Path::new(SOURCES_LIST)));
    }
    if let Ok(dir) = std::fs::read_dir(SOURCES_DIR) {
        let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths.iter().filter(|p| Some(p.as_path()) != leave_out) {
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            match path.extension().and_then(|e| e.to_str()) {
                Some("list") => entries.extend(parse_one_line(&text, path)),
                Some("sources") => entries.extend(parse_deb822(&text, path)),
                _ => {}
            }
        }
    }
    Host {
        debian: value("ID").as_deref() == Some("debian"),
        codename: value("VERSION_CODENAME"),
        entries,
    }
}

impl Host {
    /// The first entry serving `suite`; on Debian, failing that, the first serving the host's
    /// own release (with `tail`, e.g. `-security`), since a Debian mirror carries every release.
    fn find(&self, suite: &str, tail: &str) -> Option<&Entry> {
        let exact = format!("{suite}{tail}");
        self.entries.iter().find(|e| e.serves(&exact)).or_else(|| {
            let own = format!(
                "{}{tail}",
                self.codename.as_deref().filter(|_| self.debian)?
            );
            self.entries.iter().find(|e| e.serves(&own))
        })
    }

    /// The mirror of `suite`, or the error that names the fix.
    pub fn mirror_of(&self, suite: &str) -> Result<&Entry> {
        match self.find(suite, "") {
            Some(entry) => Ok(entry),
            None => bail!(
                "no Debian mirror found: this host's apt sources ({SOURCES_LIST}, \
                 {SOURCES_DIR}/*.list and *.sources) have no enabled `deb` entry for {suite}{}; \
                 {FIX}",
                match (&self.codename, self.debian) {
                    (Some(own), true) if own != suite => format!(" or {own}"),
                    _ => String::new(),
                }
            ),
        }
    }
}

/// The mirrors of `suite` for this project on this host.
pub fn resolve(bases: &Bases, suite: &str) -> Result<Mirrors> {
    let project = (
        bases.debian_mirror.as_deref(),
        bases.debian_security_mirror.as_deref(),
    );
    // The host is read only when the project file leaves a mirror to it.
    let host = match project {
        (Some(_), Some(_)) => Host::default(),
        _ => host(None),
    };
    choose(project, suite, &host)
}

/// The choice itself, given the project's settings and what the host has: the project's main
/// mirror wins, its security mirror defaulting to the `debian-security` folder beside `debian`
/// as Debian's own mirrors lay it out; else the host's entry for the suite, and its entry for
/// `<suite>-security` (often another host or path), beside the main one when it has none.
pub fn choose(project: (Option<&str>, Option<&str>), suite: &str, host: &Host) -> Result<Mirrors> {
    const PROJECT: &str = "project.toml";
    let (main, main_from) = match project.0 {
        Some(main) => (normalise(main), PROJECT.to_string()),
        None => {
            let entry = host.mirror_of(suite)?;
            (entry.uri.clone(), entry.file.display().to_string())
        }
    };
    let (security, security_from) = match (project.1, project.0) {
        (Some(security), _) => (normalise(security), PROJECT.to_string()),
        (None, None) => match host.find(suite, "-security") {
            Some(entry) => (entry.uri.clone(), entry.file.display().to_string()),
            None => (beside(&main), main_from.clone()),
        },
        (None, Some(_)) => (beside(&main), main_from.clone()),
    };
    Ok(Mirrors {
        main,
        security,
        main_from,
        security_from,
    })
}

/// The security archive beside a main one: `.../debian` -> `.../debian-security`.
fn beside(main: &str) -> String {
    match main.strip_suffix("/debian") {
        Some(host) => format!("{host}/debian-security"),
        None => format!("{main}-security"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(debian: bool, codename: &str, one_line: &str, deb822: &str) -> Host {
        let mut entries = parse_one_line(one_line, Path::new("/a.list"));
        entries.extend(parse_deb822(deb822, Path::new("/b.sources")));
        Host {
            debian,
            codename: Some(codename.to_string()),
            entries,
        }
    }

    #[test]
    fn one_line_entries_pass_over_options_comments_and_deb_src() {
        let text = "# deb http://commented/debian bookworm main\n\
                    deb-src http://src/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://m1/debian/ bookworm main\n\
                    deb [ arch=amd64 ] http://m2/debian bookworm-updates main # a comment\n\
                    \n\
                    deb http://m3/debian-security bookworm-security main contrib\n";
        let entries = parse_one_line(text, Path::new("/etc/apt/sources.list"));
        let pairs: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| (e.uri.as_str(), e.suites[0].as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("http://m1/debian", "bookworm"),
                ("http://m2/debian", "bookworm-updates"),
                ("http://m3/debian-security", "bookworm-security"),
            ]
        );
        assert_eq!(entries[0].file, Path::new("/etc/apt/sources.list"));
    }

    #[test]
    fn deb822_paragraphs_give_every_uri_every_suite_and_skip_disabled_ones() {
        // Debian's own layout on a fresh bookworm (with the comment lines its image carries).
        let text = "Types: deb\n\
                    # http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
                    URIs: http://deb.example/debian\n\
                    Suites: bookworm bookworm-updates\n\
                    Components: main\n\
                    Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
                    \n\
                    Types: deb-src\n\
                    URIs: http://src.example/debian\n\
                    Suites: bookworm\n\
                    \n  \n\
                    types: deb deb-src\n\
                    uris: http://a.example/debian http://b.example/debian/\n\
                    suites: trixie\n\
                    Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n Suites: sid\n .\n\
                    \n\
                    Types: deb\n\
                    URIs: http://off.example/debian\n\
                    Suites: bookworm\n\
                    Enabled: no\n";
        let entries = parse_deb822(text, Path::new("/x.sources"));
        let seen: Vec<(&str, Vec<&str>)> = entries
            .iter()
            .map(|e| {
                (
                    e.uri.as_str(),
                    e.suites.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "http://deb.example/debian",
                    vec!["bookworm", "bookworm-updates"]
                ),
                ("http://a.example/debian", vec!["trixie"]),
                ("http://b.example/debian", vec!["trixie"]),
            ]
        );
    }

    #[test]
    fn the_host_mirror_and_its_security_archive_are_found_apart() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\n\
                      Suites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://security.example/debian-security\n\
                      Suites: bookworm-security\nComponents: main\n";
        let h = host(true, "bookworm", "", deb822);
        let m = choose((None, None), "bookworm", &h).unwrap();
        assert_eq!(m.main, "http://mirror.example/debian");
        assert_eq!(m.security, "http://security.example/debian-security");
        assert_eq!(m.main_from, "/b.sources");
        // A Debian host of another release: its mirror carries bookworm too.
        let trixie = "deb http://m.example/debian trixie main\n\
                      deb http://s.example/debian-security trixie-security main\n";
        let m = choose((None, None), "bookworm", &host(true, "trixie", trixie, "")).unwrap();
        assert_eq!(
            (m.main.as_str(), m.security.as_str()),
            (
                "http://m.example/debian",
                "http://s.example/debian-security"
            )
        );
        // No security entry: the folder beside the main one.
        let only = "deb http://m.example/debian bookworm main\n";
        let m = choose((None, None), "bookworm", &host(true, "bookworm", only, "")).unwrap();
        assert_eq!(m.security, "http://m.example/debian-security");
    }

    #[test]
    fn the_project_file_wins_over_the_host() {
        let h = host(
            true,
            "bookworm",
            "deb http://host/debian bookworm main\n",
            "",
        );
        let m = choose((Some("http://proj/debian/"), None), "bookworm", &h).unwrap();
        assert_eq!(
            (m.main.as_str(), m.security.as_str(), m.main_from.as_str()),
            (
                "http://proj/debian",
                "http://proj/debian-security",
                "project.toml"
            )
        );
        let m = choose((Some("http://p/d"), Some("http://s/ds")), "bookworm", &h).unwrap();
        assert_eq!(
            (m.main.as_str(), m.security.as_str()),
            ("http://p/d", "http://s/ds")
        );
    }

    #[test]
    fn no_mirror_on_the_host_names_the_fix() {
        // Ubuntu's archive serves no Debian suite, and disabled entries do not count.
        let ubuntu = host(
            false,
            "noble",
            "deb http://archive.ubuntu.com/ubuntu noble main\n",
            "Types: deb\nURIs: http://off/debian\nSuites: bookworm\nEnabled: no\n",
        );
        let err = choose((None, None), "bookworm", &ubuntu)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("no Debian mirror found"), "{err}");
        assert!(
            err.contains("no enabled `deb` entry for bookworm;"),
            "{err}"
        );
        assert!(err.contains("set `debian_mirror`"), "{err}");
        assert!(err.contains("in project.toml"), "{err}");
        let empty = Host::default();
        assert!(choose((None, None), "bookworm", &empty).is_err());
        assert!(choose((Some("http://p/debian"), None), "bookworm", &empty).is_ok());
    }
}
