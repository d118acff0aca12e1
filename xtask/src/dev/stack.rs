//! One compose project of the stack: which files, which project name, which environment, and the
//! few `docker compose` commands `dev`, `up` and `down` run on it.
//!
//! The project name is derived from the project root, so that a copy of the project (as the tests
//! make) never touches the stack of the checkout it was copied from. Every container, network and
//! volume also carries the `todo-chatbot.owner` label (set through TODO_OWNER), and compose's own
//! `com.docker.compose.project` label, by which leftovers are found and removed
//! ([`crate::owned`]: the project is the run's identity there, as no per-run label may enter the
//! compose configuration).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::docker::inspect::Container;
use crate::docker::run::{docker, Output, Run};
use anyhow::{bail, Context, Result};

/// The compose files, relative to the project root.
pub const BASE_FILE: &str = "compose/compose.yml";
pub const DEV_FILE: &str = "compose/dev.yml";
pub const DB_FILE: &str = "compose/db.yml";
/// Every file above: the combinations the commands use are base, base+db, base+dev, base+dev+db.
#[cfg(test)]
pub const FILES: [&str; 3] = [BASE_FILE, DEV_FILE, DB_FILE];

/// The local database's fixed user and name (compose/db.yml); only the password changes per run.
pub const DB_USER: &str = "todo";
pub const DB_NAME: &str = "todo";
/// The named volume of the local database (compose/db.yml); compose prefixes it with the project.
pub const DB_VOLUME: &str = "db-data";

/// The engine's name of a project's database volume.
pub fn db_volume(project: &str) -> String {
    format!("{project}_{DB_VOLUME}")
}

/// Which stack: the development one (`dev`) or the production one (`up`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dev,
    Prod,
}

impl Kind {
    /// The stack's kind of run in the model of what runs own.
    pub fn owned(self) -> crate::owned::Kind {
        match self {
            Kind::Dev => crate::owned::Kind::Dev,
            Kind::Prod => crate::owned::Kind::Up,
        }
    }

    /// The value of the `todo-chatbot.owner` label.
    pub fn owner(self) -> &'static str {
        self.owned().owner()
    }
}

/// The compose project name of a stack: the project's name, the kind, and a hash of the root.
pub fn project_name(name: &str, kind: Kind, root: &Path) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    root.hash(&mut hasher);
    let hash = hasher.finish() & 0xffff_ffff;
    let name: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    match kind {
        Kind::Dev => format!("{name}-dev-{hash:08x}"),
        Kind::Prod => format!("{name}-{hash:08x}"),
    }
}

/// A compose project ready to be driven. Holds secrets (the local database's password, and the
/// DATABASE_URL made from it) in `vars`: it has no `Debug`, and `vars` is never printed.
pub struct Stack {
    pub root: PathBuf,
    pub project: String,
    /// The compose files, relative to the root, in order.
    pub files: Vec<&'static str>,
    pub env_file: PathBuf,
    /// Variables set for every `docker compose` this stack runs; every other variable the compose
    /// files interpolate is removed from its environment, so that `.env` is their only source.
    vars: BTreeMap<String, String>,
    /// The services in start order (db, backend, frontend).
    pub services: Vec<String>,
}

impl Stack {
    pub fn new(
        root: &Path,
        project: String,
        kind: Kind,
        env_file: PathBuf,
        local_db: bool,
        services: Vec<String>,
    ) -> Stack {
        let mut files = vec![BASE_FILE];
        if kind == Kind::Dev {
            files.push(DEV_FILE);
        }
        if local_db {
            files.push(DB_FILE);
        }
        let mut all = Vec::new();
        if local_db {
            all.push("db".to_string());
        }
        all.extend(services);
        Stack {
            root: root.to_path_buf(),
            project,
            files,
            env_file,
            vars: BTreeMap::new(),
            services: all,
        }
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.vars.insert(name.to_string(), value.into());
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// `docker compose -p PROJECT --env-file FILE -f ... ARGS` with the stack's environment.
    pub fn compose<I, S>(&self, args: I) -> Result<Run>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut run =
            docker(["compose", "--project-name", &self.project, "--env-file"]).arg(&self.env_file);
        for file in &self.files {
            run = run.arg("--file").arg(self.root.join(file));
        }
        for file in &self.files {
            let text = std::fs::read_to_string(self.root.join(file))
                .with_context(|| format!("cannot read {file}"))?;
            for name in interpolated_vars(&text) {
                run = run.env_remove(name);
            }
        }
        for (name, value) in &self.vars {
            run = run.env(name, value);
        }
        Ok(run.args(args).dir(&self.root))
    }

    /// Runs `docker compose ARGS` to the end and returns its output, whatever its status.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        self.compose(args)?.output()
    }

    /// Runs `docker compose ARGS`; on failure the error is compose's own message (which names
    /// variables, never their values).
    pub fn run(&self, args: &[&str]) -> Result<String> {
        self.compose(args)?.read()
    }

    /// The state of every container of the project.
    pub fn ps(&self) -> Result<Vec<PsEntry>> {
        let out = docker([
            "ps",
            "--all",
            "--quiet",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
        ])
        .read()?;
        let ids: Vec<String> = out.split_whitespace().map(String::from).collect();
        inspect_containers(&ids)
    }
}

/// What `docker inspect` says about one container of a compose project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsEntry {
    pub id: String,
    pub service: String,
    /// created, running, exited, ...
    pub state: String,
    /// healthy, starting, unhealthy, or empty when the container has no health check.
    pub health: String,
    pub exit_code: i64,
    pub created: String,
    pub image: String,
    /// Container port -> host port.
    pub ports: BTreeMap<u16, u16>,
    /// Names of the volumes mounted (anonymous ones included).
    pub volumes: Vec<String>,
}

/// Reads `docker inspect` of containers into [`PsEntry`]s; containers gone meanwhile are skipped.
pub fn inspect_containers(ids: &[String]) -> Result<Vec<PsEntry>> {
    inspect_with(ids, false)
}

/// [`inspect_containers`], as a clean-up's call when `cleanup` (see `Run::cleanup`).
fn inspect_with(ids: &[String], cleanup: bool) -> Result<Vec<PsEntry>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let mut run = docker(["inspect"]).args(ids);
    if cleanup {
        run = run.cleanup();
    }
    // A container removed between `ps` and `inspect` makes inspect fail for it only; the others
    // are still printed.
    let out = run.output()?;
    let parsed: Vec<Container> = serde_json::from_str(&out.stdout).unwrap_or_default();
    Ok(parsed.into_iter().map(PsEntry::from).collect())
}

impl From<Container> for PsEntry {
    fn from(c: Container) -> PsEntry {
        let mut labels = c.config.labels;
        let ports = c
            .network_settings
            .ports
            .into_iter()
            .filter_map(|(key, bindings)| {
                let container: u16 = key.split('/').next()?.parse().ok()?;
                let host: u16 = bindings?.first()?.host_port.parse().ok()?;
                Some((container, host))
            })
            .collect();
        PsEntry {
            id: c.id,
            service: labels
                .remove("com.docker.compose.service")
                .unwrap_or_default(),
            state: c.state.status,
            health: c.state.health.map(|h| h.status).unwrap_or_default(),
            exit_code: c.state.exit_code,
            created: c.created,
            image: c.image,
            ports,
            volumes: c
                .mounts
                .into_iter()
                .filter(|m| m.kind == "volume")
                .filter_map(|m| m.name)
                .collect(),
        }
    }
}

/// The container a failed `compose up` names in an engine's "Conflict. The container name
/// \"/NAME\" is already in use by container \"ID\"", when NAME is one compose gives a container
/// of this project (`PROJECT-SERVICE-N`). A `compose up` stopped by Ctrl-C can leave such a create request in the
/// engine, which holds the name until it lands; under load that can be after the clean-up's
/// second look, so the next start of the same project meets it.
pub fn conflicting_container(
    project: &str,
    services: &[String],
    stderr: &str,
) -> Option<(String, String)> {
    let rest = stderr.split("The container name \"/").nth(1)?;
    let (name, rest) = rest.split_once('"')?;
    let id = rest.split("by container \"").nth(1)?.split('"').next()?;
    let ours = name
        .strip_prefix(project)
        .and_then(|n| n.strip_prefix('-'))
        .and_then(|n| n.rsplit_once('-'))
        .is_some_and(|(service, n)| {
            services.iter().any(|s| s == service) && n.parse::<u32>().is_ok()
        });
    (ours && !id.is_empty()).then(|| (name.to_string(), id.to_string()))
}

/// Removes a container of this project that a stopped run's late create request left (see
/// `conflicting_container`): waits up to `wait` for the request to land, checks the container is
/// labelled with this project, and removes it. Says what it removed.
pub fn remove_late_container(
    project: &str,
    name: &str,
    id: &str,
    wait: std::time::Duration,
) -> Result<()> {
    let begin = std::time::Instant::now();
    let label = loop {
        match docker([
            "container",
            "inspect",
            "--format",
            "{{index .Config.Labels \"com.docker.compose.project\"}}",
            id,
        ])
        .read()
        {
            Ok(label) => break label.trim().to_string(),
            Err(e) if begin.elapsed() > wait => {
                return Err(e).context(format!("container {name} holds a name of this stack"))
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(250)),
        }
    };
    if label != project {
        bail!(
            "container {name} is not of compose project {project} (its label says {label:?}): \
             remove or rename it"
        );
    }
    docker(["rm", "--force", id]).read()?;
    eprintln!("removed container {name}, which a stopped run of this stack created late");
    Ok(())
}

/// The names of the variables a compose file interpolates (`$NAME`, `${NAME}`, `${NAME:-x}`,
/// `${NAME:?msg}`...), in order of first use. `$$` is compose's escaped dollar.
pub fn interpolated_vars(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (_, name, _) in interpolations(text) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Every interpolation in a compose file: (1-based line, variable, what follows the name inside
/// the braces, e.g. `:-3000` or `:?message`). Comments are skipped.
pub fn interpolations(text: &str) -> Vec<(usize, String, String)> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let code = match line.trim_start().starts_with('#') {
            true => continue,
            false => line,
        };
        let bytes = code.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                i += 1;
                continue;
            }
            if bytes.get(i + 1) == Some(&b'$') {
                i += 2;
                continue;
            }
            let braced = bytes.get(i + 1) == Some(&b'{');
            let start = if braced { i + 2 } else { i + 1 };
            let end = start
                + code[start..]
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    .count();
            if end == start {
                i += 1;
                continue;
            }
            let name = code[start..end].to_string();
            let rest = if braced {
                let close = code[end..].find('}').map(|c| end + c).unwrap_or(code.len());
                let rest = code[end..close].to_string();
                i = close + 1;
                rest
            } else {
                i = end;
                String::new()
            };
            found.push((index + 1, name, rest));
        }
    }
    found
}

/// The variables whose value is a secret: none of them may have a default in a compose file.
#[cfg(test)]
pub const SECRET_VARS: &[&str] = &[
    "DATABASE_URL",
    "BETTER_AUTH_SECRET",
    "OPENAI_API_KEY",
    "DB_PASSWORD",
];

/// Every place where a compose file gives a secret a default (`${SECRET:-x}` or `${SECRET-x}`),
/// as `line: message`; empty when there is none.
#[cfg(test)]
pub fn secret_defaults(text: &str) -> Vec<String> {
    interpolations(text)
        .into_iter()
        .filter(|(_, name, rest)| {
            SECRET_VARS.contains(&name.as_str())
                && (rest.starts_with(":-") || rest.starts_with('-'))
        })
        .map(|(line, name, _)| {
            format!(
                "line {line}: {name} has a default; a secret must be required (${{{name}:?...}})"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_differ_per_root_and_kind() {
        let a = project_name("todo-chatbot", Kind::Dev, Path::new("/work/main"));
        let b = project_name("todo-chatbot", Kind::Dev, Path::new("/tmp/copy"));
        let c = project_name("todo-chatbot", Kind::Prod, Path::new("/work/main"));
        assert!(a.starts_with("todo-chatbot-dev-") && a.len() == "todo-chatbot-dev-".len() + 8);
        assert_ne!(a, b);
        assert_ne!(a.trim_start_matches("todo-chatbot-dev-"), "");
        assert!(c.starts_with("todo-chatbot-") && !c.contains("-dev-"));
        assert_eq!(
            project_name("Todo Chat!", Kind::Prod, Path::new("/x"))
                .split('-')
                .next(),
            Some("todochat")
        );
    }

    #[test]
    fn interpolations_are_found_with_their_modifiers() {
        let text =
            "a: ${A:?set A}\n# b: ${COMMENTED}\nc: \"$B and $${NOT} ${C:-3000}\"\nd: ${D-x}\n";
        let found = interpolations(text);
        assert_eq!(
            found,
            [
                (1, "A".to_string(), ":?set A".to_string()),
                (3, "B".to_string(), String::new()),
                (3, "C".to_string(), ":-3000".to_string()),
                (4, "D".to_string(), "-x".to_string()),
            ]
        );
        assert_eq!(interpolated_vars(text), ["A", "B", "C", "D"]);
    }

    #[test]
    fn secret_defaults_are_reported_with_their_lines() {
        let text = "x: ${DATABASE_URL:-postgresql://u:p@h/d}\ny: ${OPENAI_API_KEY:?set it}\nz: ${DB_PASSWORD-pw}\nw: ${FRONTEND_PORT:-3000}\n";
        let found = secret_defaults(text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("line 1: DATABASE_URL"));
        assert!(found[1].starts_with("line 3: DB_PASSWORD"));
    }

    #[test]
    fn no_compose_file_gives_a_secret_a_default() {
        for file in FILES {
            let text = std::fs::read_to_string(crate::source_root().join(file)).unwrap();
            assert_eq!(secret_defaults(&text), Vec::<String>::new(), "{file}");
            // Every secret the file uses is required, with a message saying what to do.
            for (line, name, rest) in interpolations(&text) {
                if SECRET_VARS.contains(&name.as_str()) {
                    assert!(
                        rest.starts_with(":?"),
                        "{file}:{line}: {name} is not required"
                    );
                }
            }
        }
    }

    #[test]
    fn compose_services_match_the_project_file() {
        let config =
            crate::config::Config::load(&crate::source_root().join(crate::config::DEFAULT_FILE))
                .unwrap();
        let base = std::fs::read_to_string(crate::source_root().join(BASE_FILE)).unwrap();
        let dev = std::fs::read_to_string(crate::source_root().join(DEV_FILE)).unwrap();
        for image in &config.images {
            assert!(
                base.contains(&format!("image: {}:latest", image.image)),
                "{BASE_FILE} runs {}:latest",
                image.image
            );
            assert!(
                dev.contains(&format!("image: {}:dev", image.image)),
                "{DEV_FILE} runs {}:dev",
                image.image
            );
            assert!(
                base.contains(&format!(":{}\"", image.port)),
                "{BASE_FILE} publishes port {}",
                image.port
            );
        }
    }

    #[test]
    fn a_conflict_names_only_this_projects_containers() {
        let err =
            "Error response from daemon: Conflict. The container name \"/p-dev-1-frontend-1\" \
                   is already in use by container \"266a8099\". You have to remove (or rename) \
                   that container to be able to reuse that name.";
        let services = ["db".to_string(), "frontend".to_string()];
        assert_eq!(
            conflicting_container("p-dev-1", &services, err),
            Some(("p-dev-1-frontend-1".into(), "266a8099".into()))
        );
        assert_eq!(conflicting_container("p-dev", &services, err), None);
        assert_eq!(conflicting_container("other", &services, err), None);
        assert_eq!(conflicting_container("p-dev-1", &services[..1], err), None);
        assert_eq!(
            conflicting_container("p-dev-1", &services, "no such thing"),
            None
        );
    }
}
