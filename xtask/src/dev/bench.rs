//! `cargo xtask dev --bench-reload`: how long a change takes to be served, measured the way a
//! developer meets it. On a copy of the project (so no one's sources are touched), it starts the
//! dev stack with a generated environment and the local database, then, while the session runs
//! as usual:
//!
//! - backend: adds a route with a new marker to `backend/app/main.py`, and times the edit until
//!   `GET` on that route returns the marker;
//! - frontend: writes a page `app/dev-bench/page.tsx` with a new marker, and times the edit until
//!   the page shows it (the first write, which compiles a new route, is not counted);
//! - dependency: appends a comment to `backend/requirements.txt`, and times the edit until a new
//!   backend container answers its health check (rebuild, recreation, start).
//!
//! Each figure is the median of its rounds; the table is printed on stdout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use super::session::Msg;
use super::stack;
use super::{run_dev, DbMode, StackArgs};
use crate::config::{Config, DEFAULT_FILE};
use crate::docker::docker;
use crate::smoke::probe::http_get;

/// One measured figure: what, every round's seconds.
#[derive(Debug, Clone)]
pub struct Figure {
    pub what: &'static str,
    pub seconds: Vec<f64>,
    pub budget: &'static str,
}

/// Runs the bench on a copy of the project at `sh`'s root; the copy's own project file is used.
pub fn run(sh: &Shell, rounds: usize, dep_rounds: usize, poll: bool) -> Result<()> {
    let copy = std::env::temp_dir().join(format!("todo-dev-bench-{}", std::process::id()));
    eprintln!("bench: copying the project to {}", copy.display());
    copy_project(sh, &copy)?;
    let _cleanup = RemoveDir(copy.clone());
    std::fs::write(copy.join(".env.bench"), bench_env()?)?;
    let sh = Shell::new()?;
    sh.change_dir(&copy);
    let config = Config::load(&copy.join(DEFAULT_FILE))?;
    let args = StackArgs {
        env_file: Some(PathBuf::from(".env.bench")),
        db: DbMode::Local,
        // Every service on a free port: the bench never takes the developer's.
        ports: config
            .images
            .iter()
            .map(|i| format!("{}=0", i.service))
            .collect(),
        bases: None,
        timeout: 600,
    };
    let figures: Arc<Mutex<Result<Vec<Figure>>>> = Arc::new(Mutex::new(Ok(vec![])));
    let out = figures.clone();
    let root = copy.clone();
    let script: super::Script = Box::new(move |tx, ports, project| {
        std::thread::spawn(move || {
            let result = script(&root, &ports, &project, rounds, dep_rounds, &tx);
            *out.lock().unwrap() = result;
            let _ = tx.send(Msg::Done);
        });
    });
    let end = run_dev(&sh, &config, &args, poll, Some(script))?;
    match end {
        super::session::End::Interrupted => return Err(crate::interrupt::Interrupted.into()),
        super::session::End::StackGone => anyhow::bail!("the bench's stack was removed under it"),
        super::session::End::Done => {}
    }
    let figures = std::mem::replace(&mut *figures.lock().unwrap(), Ok(vec![]))?;
    println!("{}", table(&figures, poll));
    Ok(())
}

/// The figures as a Markdown table, with medians.
pub fn table(figures: &[Figure], poll: bool) -> String {
    let mut out = format!(
        "| `cargo xtask dev --bench-reload{}` | median | min | max | rounds | spec |\n|---|---|---|---|---|---|\n",
        if poll { " --poll" } else { "" }
    );
    for f in figures {
        let mut sorted = f.seconds.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let (Some(min), Some(max)) = (sorted.first(), sorted.last()) else {
            continue;
        };
        out.push_str(&format!(
            "| {} | {:.2} s | {min:.2} s | {max:.2} s | {} | {} |\n",
            f.what,
            crate::bench::median(&sorted),
            sorted.len(),
            f.budget
        ));
    }
    out
}

fn script(
    root: &Path,
    ports: &BTreeMap<String, u16>,
    project: &str,
    rounds: usize,
    dep_rounds: usize,
    tx: &Sender<Msg>,
) -> Result<Vec<Figure>> {
    let note = |text: String| {
        let _ = tx.send(Msg::Note(format!("bench: {text}")));
    };
    let backend = *ports.get("backend").context("no backend port")?;
    let frontend = *ports.get("frontend").context("no frontend port")?;
    // The backend's reloader imports the third-party modules after its first worker started; a
    // reload before it is done is slower, and not what a developer meets.
    let warm = wait(Duration::from_secs(180), || {
        let id = container(project, "backend")?;
        Some(
            docker(["logs", &id])
                .output()
                .ok()
                .filter(|o| o.stdout.contains("reloads are warm"))
                .is_some(),
        )
        .filter(|w| *w)
    });
    if warm.is_none() {
        note("the backend's reloader never said it is warm; measuring anyway".into());
    }
    let mut figures = Vec::new();

    let main_py = root.join("backend/app/main.py");
    let original = std::fs::read_to_string(&main_py)?;
    let mut seconds = Vec::new();
    for round in 0..rounds {
        let marker = format!("bench-{round}-{}", std::process::id());
        let route = format!(
            "\n\n@app.get(\"/__dev_bench\")\ndef _dev_bench() -> dict:\n    return {{\"marker\": \"{marker}\"}}\n"
        );
        std::fs::write(&main_py, format!("{original}{route}"))?;
        let took = wait_body(backend, "/__dev_bench", &marker, Duration::from_secs(60))
            .with_context(|| format!("the backend never served round {round}'s edit"))?;
        note(format!("backend edit {round}: {:.2} s", took.as_secs_f64()));
        seconds.push(took.as_secs_f64());
        std::thread::sleep(Duration::from_millis(1500));
    }
    std::fs::write(&main_py, &original)?;
    figures.push(Figure {
        what: "backend source edit → new response",
        seconds,
        budget: "< 3 s (aim < 1.5 s)",
    });

    let page_dir = root.join("frontend/app/dev-bench");
    std::fs::create_dir_all(&page_dir)?;
    let page = page_dir.join("page.tsx");
    let write_page = |marker: &str| {
        std::fs::write(
            &page,
            format!("export default function Page() {{\n  return <p>{marker}</p>;\n}}\n"),
        )
    };
    write_page("bench-first")?;
    let first = wait_body(
        frontend,
        "/dev-bench",
        "bench-first",
        Duration::from_secs(120),
    )
    .context("the frontend never served the new page")?;
    note(format!(
        "frontend: a new page served after {:.2} s (not counted)",
        first.as_secs_f64()
    ));
    let mut seconds = Vec::new();
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(1500));
        let marker = format!("bench-{round}-{}", std::process::id());
        write_page(&marker)?;
        let took = wait_body(frontend, "/dev-bench", &marker, Duration::from_secs(60))
            .with_context(|| format!("the frontend never served round {round}'s edit"))?;
        note(format!(
            "frontend edit {round}: {:.2} s",
            took.as_secs_f64()
        ));
        seconds.push(took.as_secs_f64());
    }
    figures.push(Figure {
        what: "frontend page edit → new page",
        seconds,
        budget: "< 3 s",
    });

    let requirements = root.join("backend/requirements.txt");
    let mut seconds = Vec::new();
    for round in 0..dep_rounds {
        let before = container(project, "backend").context("no backend container")?;
        let mut text = std::fs::read_to_string(&requirements)?;
        text.push_str(&format!(
            "# dev --bench-reload {round} {}\n",
            std::process::id()
        ));
        let start = Instant::now();
        std::fs::write(&requirements, text)?;
        wait(Duration::from_secs(900), || {
            let now = container(project, "backend")?;
            let port = port_of(&now, 8000)?;
            (now != before
                && http_get(port, "/health", Duration::from_secs(5)).is_ok_and(|a| a.status == 200))
            .then_some(())
        })
        .context("the backend was not rebuilt and serving within 15 minutes")?;
        let took = start.elapsed().as_secs_f64();
        note(format!("backend dependency change {round}: {took:.1} s"));
        seconds.push(took);
    }
    if !seconds.is_empty() {
        figures.push(Figure {
            what: "backend dependency change → rebuilt, recreated, answering",
            seconds,
            budget: "-",
        });
    }
    Ok(figures)
}

/// The id of a service's running container.
fn container(project: &str, service: &str) -> Option<String> {
    let out = docker([
        "ps",
        "--quiet",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
    ])
    .read()
    .ok()?;
    out.lines().next().map(String::from)
}

fn port_of(id: &str, port: u16) -> Option<u16> {
    let entry = stack::inspect_containers(&[id.to_string()]).ok()?;
    entry.first()?.ports.get(&port).copied()
}

/// Asks until the body holds `marker`; returns how long that took.
fn wait_body(port: u16, path: &str, marker: &str, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    wait(timeout, || {
        http_get(port, path, Duration::from_secs(30))
            .ok()
            .filter(|a| a.status == 200 && a.body.contains(marker))
            .map(|_| ())
    })
    .context("timed out")?;
    Ok(start.elapsed())
}

fn wait<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(v) = f() {
            return Some(v);
        }
        if crate::interrupt::interrupted() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Copies the files git knows of (tracked, and untracked but not ignored: the tree as it is),
/// into a new repository with one commit.
pub fn copy_project(sh: &Shell, to: &Path) -> Result<()> {
    let files = cmd!(sh, "git ls-files -z --cached --others --exclude-standard")
        .quiet()
        .read()
        .context("git cannot list the project's files")?;
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    for file in files.split('\0').filter(|f| !f.is_empty()) {
        let from = sh.current_dir().join(file);
        if !from.is_file() {
            continue;
        }
        let dest = to.join(file);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&from, &dest).with_context(|| format!("cannot copy {file}"))?;
    }
    let copy = Shell::new()?;
    copy.change_dir(to);
    cmd!(copy, "git init --quiet").run()?;
    cmd!(copy, "git add --all").quiet().run()?;
    cmd!(
        copy,
        "git -c user.name=bench -c user.email=bench@localhost commit --quiet --message copy"
    )
    .quiet()
    .run()?;
    Ok(())
}

/// An environment for the bench: made-up values that reach only its own containers.
fn bench_env() -> Result<String> {
    let secret = super::random_hex(24)?;
    Ok(format!(
        "BETTER_AUTH_SECRET={secret}\nBETTER_AUTH_URL=http://localhost:3000\n\
         OPENAI_API_KEY=sk-bench-{}\nAGENT_MODEL=gpt-4o\n\
         NEXT_PUBLIC_API_URL=http://localhost:8000\nFRONTEND_URL=http://localhost:3000\n\
         VERSION=v1.0.0\n",
        super::random_hex(12)?
    ))
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        if self.0.starts_with(std::env::temp_dir()) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let table = table(
            &[Figure {
                what: "backend source edit → new response",
                seconds: vec![0.9, 0.5, 0.7],
                budget: "< 3 s",
            }],
            false,
        );
        assert!(
            table.contains(
                "| backend source edit → new response | 0.70 s | 0.50 s | 0.90 s | 3 | < 3 s |"
            ),
            "{table}"
        );
    }
}
