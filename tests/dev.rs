//! `cargo xtask dev`, `up` and `down` on the real engine, each on a copy of the project (they edit
//! sources and start stacks named after their root, so a copy never touches the checkout's own).
//! Outcomes are checked with HTTP, `docker inspect` and `docker compose config`, not by what the
//! command prints.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::copy::{Copy, Dev, TEST_ENV};
use support::{docker, http_get, root, text};

/// `docker inspect` of the project's containers: service -> (id, created, image, inspect JSON).
fn containers(project: &str) -> Vec<(String, String, String, String, serde_json::Value)> {
    let ids = docker(&[
        "ps",
        "--all",
        "--quiet",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ]);
    ids.lines()
        .map(|id| {
            let json: serde_json::Value = serde_json::from_str(&docker(&["inspect", id])).unwrap();
            let c = json[0].clone();
            (
                c["Config"]["Labels"]["com.docker.compose.service"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                c["Id"].as_str().unwrap().to_string(),
                c["Created"].as_str().unwrap().to_string(),
                c["Image"].as_str().unwrap().to_string(),
                c,
            )
        })
        .collect()
}

fn container<'a>(
    all: &'a [(String, String, String, String, serde_json::Value)],
    service: &str,
) -> &'a (String, String, String, String, serde_json::Value) {
    all.iter()
        .find(|c| c.0 == service)
        .unwrap_or_else(|| panic!("no {service} container"))
}

fn host_port(inspect: &serde_json::Value, port: u16) -> u16 {
    inspect["NetworkSettings"]["Ports"][format!("{port}/tcp")][0]["HostPort"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn env_var(inspect: &serde_json::Value, name: &str) -> Option<String> {
    inspect["Config"]["Env"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str())
        .find_map(|v| v.strip_prefix(&format!("{name}=")).map(String::from))
}

/// Polls `GET path` until the body contains `needle`.
fn wait_body(port: u16, path: &str, needle: &str, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Ok((200, body)) = http_get(port, path) {
            if body.contains(needle) {
                return body;
            }
        }
        assert!(
            start.elapsed() < timeout,
            "GET {path} on port {port} never held `{needle}`"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mounts(inspect: &serde_json::Value) -> Vec<(String, String)> {
    inspect["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["Type"].as_str().unwrap().to_string(),
                m["Destination"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// What is left of a compose project: containers, networks.
fn project_left(project: &str) -> (String, String) {
    let filter = format!("label=com.docker.compose.project={project}");
    (
        docker(&["ps", "--all", "--quiet", "--filter", &filter]),
        docker(&["network", "ls", "--quiet", "--filter", &filter]),
    )
}

/// One HTTP/1.0 request on loopback: (status, headers in lower case, body).
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.0\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or(""));
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = text(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The host ports `up` printed: `frontend http://localhost:P, backend http://localhost:Q`.
fn printed_port(stdout: &str, service: &str) -> u16 {
    let prefix = format!("{service} http://localhost:");
    stdout
        .split(", ")
        .flat_map(|part| part.split('\n'))
        .find_map(|part| part.trim().strip_prefix(prefix.as_str()))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {service} URL in {stdout}"))
}

/// Repeats a request while it answers 503: a healthy frontend may still be preparing its
/// account tables in the database, and says so with 503 (as a user would, the test tries again).
fn until_ready(
    send: impl Fn() -> (u16, Vec<(String, String)>, String),
) -> (u16, Vec<(String, String)>, String) {
    let start = Instant::now();
    loop {
        let response = send();
        if response.0 != 503 || start.elapsed() > Duration::from_secs(60) {
            return response;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Signs a user up through the frontend as a browser on `origin` does; returns the session token
/// the frontend hands the browser for the backend (the session cookie's value).
fn sign_up(frontend: u16, origin: &str, email: &str) -> String {
    let body = format!(r#"{{"email":"{email}","password":"a-long-test-password","name":"Test"}}"#);
    let host = origin.trim_start_matches("http://");
    let (status, headers, text) = until_ready(|| {
        request(
            frontend,
            "POST",
            "/api/auth/sign-up/email",
            &[("Host", host), ("Origin", origin)],
            Some(&body),
        )
    });
    assert_eq!(status, 200, "sign-up from {origin}: {text}");
    headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .find_map(|(_, v)| {
            v.split(';')
                .next()?
                .split_once('=')
                .filter(|(name, _)| name.ends_with("session_token"))
                .map(|(_, value)| value.to_string())
        })
        .unwrap_or_else(|| panic!("no session cookie in {headers:?}"))
}

/// The titles of the user's todos, as the backend lists them.
fn todo_titles(backend: u16, token: &str) -> String {
    let auth = format!("Bearer {token}");
    let (status, _, body) = request(
        backend,
        "GET",
        "/api/todos",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn dev_serves_edits_rebuilds_only_the_changed_service_and_leaves_nothing() {
    let copy = Copy::new("session");
    let mut dev = Dev::start(&copy);
    let project_line = dev.wait_line("dev: compose project", 0, Duration::from_secs(600));
    let project = project_line
        .split_whitespace()
        .nth(3)
        .expect("project name")
        .to_string();
    // Cold, the dev images and the local PostgreSQL image are built first.
    dev.wait_line("dev: ready", 0, Duration::from_secs(1500));
    dev.wait_line("dev: watching", 0, Duration::from_secs(60));

    let before = containers(&project);
    let services: Vec<&str> = before.iter().map(|c| c.0.as_str()).collect();
    for service in ["db", "backend", "frontend"] {
        assert!(services.contains(&service), "{services:?}");
    }
    let backend = container(&before, "backend");
    let frontend = container(&before, "frontend");
    let backend_port = host_port(&backend.4, 8000);
    let frontend_port = host_port(&frontend.4, 3000);
    // The development shape: sources mounted, node_modules and .next in anonymous volumes, no
    // restart policy, the dev images.
    let frontend_mounts = mounts(&frontend.4);
    for mount in [
        ("bind", "/app"),
        ("volume", "/app/node_modules"),
        ("volume", "/app/.next"),
    ] {
        assert!(
            frontend_mounts.contains(&(mount.0.to_string(), mount.1.to_string())),
            "{frontend_mounts:?}"
        );
    }
    assert!(mounts(&backend.4).contains(&("bind".to_string(), "/app".to_string())));
    for c in &before {
        assert_eq!(c.4["HostConfig"]["RestartPolicy"]["Name"], "no", "{}", c.0);
        assert_eq!(
            c.4["Config"]["Labels"]["todo-chatbot.owner"], "dev",
            "{}",
            c.0
        );
    }
    assert_eq!(backend.4["Config"]["Image"], "todo-backend:dev");
    // The URLs the services are configured with name the ports they were published on (0 asked
    // for free ones), not the `.env`'s 3000 and 8000.
    let frontend_origin = format!("http://localhost:{frontend_port}");
    assert_eq!(
        env_var(&frontend.4, "BETTER_AUTH_URL").as_deref(),
        Some(frontend_origin.as_str())
    );
    assert_eq!(
        env_var(&backend.4, "FRONTEND_URL").as_deref(),
        Some(frontend_origin.as_str())
    );
    assert_eq!(
        env_var(&frontend.4, "NEXT_PUBLIC_API_URL"),
        Some(format!("http://localhost:{backend_port}"))
    );
    assert_eq!(frontend.4["Config"]["Image"], "todo-frontend:dev");
    // The backend reaches the local PostgreSQL over the stack's network.
    wait_body(
        backend_port,
        "/health",
        "\"database\":\"ok\"",
        Duration::from_secs(60),
    );
    wait_body(
        frontend_port,
        "/api/health",
        "\"status\":\"ok\"",
        Duration::from_secs(60),
    );

    // A source edit is served by the hot reload, and dev says how long it took.
    let main_py = copy.path("backend/app/main.py");
    let original = std::fs::read_to_string(&main_py).unwrap();
    let mark = dev.count();
    std::fs::write(
        &main_py,
        format!(
            "{original}\n\n@app.get(\"/dev-test\")\ndef _dev_test() -> dict:\n    return {{\"marker\": \"edited-by-the-test\"}}\n"
        ),
    )
    .unwrap();
    wait_body(
        backend_port,
        "/dev-test",
        "edited-by-the-test",
        Duration::from_secs(60),
    );
    dev.wait_line(
        "dev: backend: backend/app/main.py changed; answering again after",
        mark,
        Duration::from_secs(60),
    );
    let edited_database_url = env_var(&backend.4, "DATABASE_URL");

    // `down --dev` while this dev runs: refused, naming its pid, and the stack stays.
    let out = copy.xtask(&["down", "--dev"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", dev.child.id())) && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(containers(&project).len(), before.len(), "the stack stays");

    // A frontend file that does not compile is named by a `dev:` line; once fixed, the reload is
    // timed from the fixing edit.
    let page = copy.path("frontend/app/page.tsx");
    let page_text = std::fs::read_to_string(&page).unwrap();
    let mark = dev.count();
    std::fs::write(
        &page,
        format!("{page_text}\nexport const broken = <div>;\n"),
    )
    .unwrap();
    dev.wait_line(
        "dev: frontend: frontend/app/page.tsx does not compile",
        mark,
        Duration::from_secs(120),
    );
    let mark = dev.count();
    let fixed = Instant::now();
    std::fs::write(&page, &page_text).unwrap();
    let line = dev.wait_line(
        "dev: frontend: frontend/app/page.tsx changed; it works again, answering after",
        mark,
        Duration::from_secs(120),
    );
    let reported: f64 = line
        .rsplit("after ")
        .next()
        .and_then(|t| t.trim_end_matches(" s").parse().ok())
        .unwrap_or_else(|| panic!("no time in {line}"));
    assert!(
        reported <= fixed.elapsed().as_secs_f64(),
        "{reported} s is more than the time since the fix: {line}"
    );

    // A dependency change rebuilds and recreates the backend alone, with the same environment.
    // The same comment every run: after the first, the rebuild is a cache hit.
    let mark = dev.count();
    let requirements = copy.path("backend/requirements.txt");
    let mut deps = std::fs::read_to_string(&requirements).unwrap();
    deps.push_str("# a harmless comment, added by tests/dev.rs\n");
    std::fs::write(&requirements, deps).unwrap();
    dev.wait_line(
        "dev: backend: rebuilt and recreated",
        mark,
        Duration::from_secs(900),
    );
    let after = containers(&project);
    let (new_backend, new_frontend, new_db) = (
        container(&after, "backend"),
        container(&after, "frontend"),
        container(&after, "db"),
    );
    assert_ne!(new_backend.1, backend.1, "the backend was recreated");
    assert_ne!(new_backend.3, backend.3, "from a rebuilt image");
    assert_eq!(
        (&new_frontend.1, &new_frontend.2),
        (&frontend.1, &frontend.2),
        "the frontend was left alone"
    );
    assert_eq!(
        new_db.1,
        container(&before, "db").1,
        "the database was left alone"
    );
    assert_eq!(
        env_var(&new_backend.4, "DATABASE_URL"),
        edited_database_url,
        "the recreated backend keeps its environment"
    );
    let port = host_port(&new_backend.4, 8000);
    wait_body(
        port,
        "/health",
        "\"database\":\"ok\"",
        Duration::from_secs(60),
    );
    wait_body(
        port,
        "/dev-test",
        "edited-by-the-test",
        Duration::from_secs(60),
    );

    // Ctrl-C: a clean stop, exit 130, and nothing of the run left.
    let volumes: Vec<String> = after
        .iter()
        .flat_map(|c| {
            c.4["Mounts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["Type"] == "volume")
                .map(|m| m["Name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        volumes.len() >= 2,
        "the frontend's anonymous volumes: {volumes:?}"
    );
    let pid = dev.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = dev.wait_exit(
        Duration::from_secs(120),
        "dev did not stop within 2 minutes of SIGINT",
    );
    assert_eq!(status.code(), Some(130), "{}", dev.output());
    assert_eq!(project_left(&project), (String::new(), String::new()));
    for volume in &volumes {
        let gone = !Command::new("docker")
            .args(["volume", "inspect", volume])
            .output()
            .unwrap()
            .status
            .success();
        assert!(gone, "volume {volume} is left");
    }
}

#[test]
fn dev_refuses_a_bad_env_naming_the_problem_and_starts_nothing() {
    let copy = Copy::new("badenv");
    let bad = TEST_ENV.replace(
        "OPENAI_API_KEY=sk-test-0000000000000000000000000000",
        "OPENAI_API_KEY=xk-canary-secret-value-0123456789",
    ) + "AGENT_MODEL=\n";
    std::fs::write(copy.path(".env"), bad).unwrap();
    let out = copy.xtask(&["dev", "--port", "frontend=0", "--port", "backend=0"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("OPENAI_API_KEY"), "{stderr}");
    assert!(stderr.contains("AGENT_MODEL"), "{stderr}");
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(
        !stderr.contains("canary-secret-value"),
        "a secret was echoed:\n{stderr}"
    );
    let filter = "label=todo-chatbot.owner=dev".to_string();
    let ours: Vec<String> = docker(&[
        "ps",
        "--all",
        "--filter",
        &filter,
        "--format",
        "{{.Label \"com.docker.compose.project.working_dir\"}}",
    ])
    .lines()
    .filter(|dir| Path::new(dir).starts_with(&copy.dir))
    .map(String::from)
    .collect();
    assert!(ours.is_empty(), "containers were started: {ours:?}");
    // The external database cannot be insisted on without a DATABASE_URL.
    std::fs::write(copy.path(".env"), TEST_ENV).unwrap();
    let out = copy.xtask(&["dev", "--db", "external"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[test]
fn compose_accepts_every_file_combination_and_requires_every_secret() {
    let fixtures = root().join("tests/fixtures/dev");
    let sample = fixtures.join("sample.env");
    let combinations: [&[&str]; 4] = [
        &["compose.yml"],
        &["compose.yml", "db.yml"],
        &["compose.yml", "dev.yml"],
        &["compose.yml", "dev.yml", "db.yml"],
    ];
    let config = |env_file: &Path, files: &[&str], extra: &[(&str, &str)]| {
        let mut cmd = Command::new("docker");
        cmd.arg("compose").arg("--env-file").arg(env_file);
        for file in files {
            cmd.arg("--file").arg(root().join("compose").join(file));
        }
        cmd.args(["config", "--quiet"])
            .env("TODO_ENV_FILE", env_file)
            .current_dir(root());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().expect("docker compose config")
    };
    let db = [
        ("DB_IMAGE", "postgres:15-alpine"),
        ("DB_PASSWORD", "sample"),
    ];
    for files in combinations {
        let out = config(&sample, files, &db);
        assert!(out.status.success(), "{files:?}: {}", text(&out.stderr));
    }
    // Without a secret, every combination refuses, naming the variable and never a value.
    let text_sample = std::fs::read_to_string(&sample).unwrap();
    let dir = std::env::temp_dir().join(format!("xtask-dev-compose-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for secret in ["BETTER_AUTH_SECRET", "OPENAI_API_KEY", "DATABASE_URL"] {
        let without: String = text_sample
            .lines()
            .filter(|l| !l.starts_with(&format!("{secret}=")))
            .map(|l| format!("{l}\n"))
            .collect();
        let env_file = dir.join(format!("{secret}.env"));
        std::fs::write(&env_file, without).unwrap();
        for files in combinations
            .iter()
            .filter(|f| !f.contains(&"db.yml") || secret != "DATABASE_URL")
        {
            let out = config(&env_file, files, &db);
            let stderr = text(&out.stderr);
            assert!(
                !out.status.success(),
                "{files:?} accepted a missing {secret}"
            );
            assert!(stderr.contains(secret), "{files:?}: {stderr}");
            assert!(!stderr.contains("sample-secret"), "{stderr}");
        }
    }
    // The local database needs its password and image; they have no default either.
    let out = config(&sample, &["compose.yml", "db.yml"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("DB_"), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `up` on free ports (0): the URLs the services are configured with follow the published ports,
/// so a user signs up from the printed origin and the backend allows it (CORS); `up` again
/// changes nothing; the local database keeps its users and todos across `up`, `down` and `up`,
/// in a volume only `down --volumes` removes.
#[test]
fn up_keeps_its_data_and_configures_the_published_ports() {
    support::built();
    let copy = Copy::new("up");
    // Whatever happens below, the stack and its volume go.
    struct Down(PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = Command::new(support::xtask_bin())
                .args(["down", "--volumes"])
                .current_dir(&self.0)
                .output();
        }
    }
    let _down = Down(copy.dir.clone());
    let up = || {
        let out = copy.xtask(&["up", "--port", "frontend=0", "--port", "backend=0"]);
        let stdout = text(&out.stdout);
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        (stdout, stderr)
    };
    let (stdout, stderr) = up();
    let project = stderr
        .lines()
        .find_map(|l| l.strip_prefix("up: compose project "))
        .map(|p| p.trim().to_string())
        .expect("up names its compose project");
    let all = containers(&project);
    for (service, path) in [("backend", "/health"), ("frontend", "/api/health")] {
        let c = container(&all, service);
        assert_eq!(c.4["State"]["Health"]["Status"], "healthy", "{service}");
        assert_eq!(
            c.4["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped",
            "{service}"
        );
        // The production shape: no volume of any kind on the services.
        assert_eq!(mounts(&c.4), Vec::<(String, String)>::new(), "{service}");
        let port = host_port(&c.4, if service == "backend" { 8000 } else { 3000 });
        assert_eq!(printed_port(&stdout, service), port, "{stdout}");
        let (status, _) = http_get(port, path).unwrap();
        assert_eq!(status, 200, "{service}");
    }
    assert_eq!(
        container(&all, "backend").4["Config"]["Image"],
        "todo-backend:latest"
    );
    let network = docker(&[
        "network",
        "ls",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--format",
        "{{.Name}} {{.Driver}}",
    ]);
    assert_eq!(network, format!("{project}_todo-network bridge"));
    // The database's data is in a named volume.
    let volume = format!("{project}_db-data");
    assert!(
        mounts(&container(&all, "db").4)
            .contains(&("volume".into(), "/var/lib/postgresql/data".into())),
        "{:?}",
        mounts(&container(&all, "db").4)
    );

    // The printed origin works: sign-up is accepted from it, the backend allows it (CORS), and
    // the backend's address the frontend is configured with names the backend's printed port.
    let (frontend, backend) = (
        printed_port(&stdout, "frontend"),
        printed_port(&stdout, "backend"),
    );
    let origin = format!("http://localhost:{frontend}");
    let token = sign_up(frontend, &origin, "keep@example.com");
    let (status, headers, body) = request(
        backend,
        "OPTIONS",
        "/api/todos",
        &[
            ("Origin", &origin),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type",
            ),
        ],
        None,
    );
    assert_eq!(status, 200, "CORS preflight from {origin}: {body}");
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(origin.as_str())
    );
    assert_eq!(
        env_var(&container(&all, "frontend").4, "NEXT_PUBLIC_API_URL").as_deref(),
        Some(format!("http://localhost:{backend}").as_str())
    );
    let auth = format!("Bearer {token}");
    let (status, _, body) = request(
        backend,
        "POST",
        "/api/todos",
        &[("Authorization", &auth), ("Origin", &origin)],
        Some(r#"{"title":"survive the next up"}"#),
    );
    assert_eq!(status, 201, "{body}");

    // `up` again on the running stack: nothing is recreated, and it says so. (On a machine
    // where something else rebuilds the `:latest` images meanwhile, the services whose image
    // changed are recreated, and that is said instead.)
    let rebuilt: Vec<&str> = all
        .iter()
        .filter(|c| {
            let image = c.4["Config"]["Image"].as_str().unwrap();
            docker(&["image", "inspect", "--format", "{{.Id}}", image]) != c.3
        })
        .map(|c| c.0.as_str())
        .collect();
    let (again, stderr) = up();
    let after = containers(&project);
    if rebuilt.is_empty() {
        assert!(stderr.contains("nothing to recreate"), "{stderr}");
    }
    for c in &all {
        if rebuilt.contains(&c.0.as_str()) {
            assert!(
                stderr.contains(&format!("{} (its image changed", c.0)),
                "{stderr}"
            );
        } else if !stderr.contains(&format!("{} (it depends on", c.0)) {
            assert_eq!(
                (&container(&after, &c.0).1, &container(&after, &c.0).2),
                (&c.1, &c.2),
                "{} was recreated:\n{stderr}",
                c.0
            );
        }
    }
    assert_eq!(again, stdout, "the same ports");
    assert!(todo_titles(backend, &token).contains("survive the next up"));

    // `down` keeps the database's volume and says so; `up` finds the user and the todo again.
    let out = copy.xtask(&["down"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("kept the volume {volume}")),
        "{stderr}"
    );
    assert_eq!(project_left(&project), (String::new(), String::new()));
    docker(&["volume", "inspect", &volume]);
    // Without the password the volume was made with, its data cannot be reached: `up` refuses,
    // naming the file and the way out, and starts nothing.
    let password = copy.path(&format!("target/xtask/up/{project}.db-password"));
    let kept = copy.path("db-password.kept");
    std::fs::rename(&password, &kept).unwrap();
    let out = copy.xtask(&["up", "--port", "frontend=0", "--port", "backend=0"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{project}.db-password")) && stderr.contains("down --volumes"),
        "{stderr}"
    );
    assert_eq!(project_left(&project), (String::new(), String::new()));
    std::fs::rename(&kept, &password).unwrap();
    // A create request that a `compose up` stopped by Ctrl-C left in the engine lands late, with
    // the name compose gives the frontend, where compose's own listing does not see it (here: as a
    // one-off container of the project). `up` removes it, says so, and starts.
    let late = format!("{project}-frontend-1");
    docker(&[
        "container",
        "create",
        "--name",
        &late,
        "--label",
        &format!("com.docker.compose.project={project}"),
        "--label",
        "com.docker.compose.oneoff=True",
        "todo-frontend:latest",
    ]);
    let (stdout, stderr) = up();
    assert!(
        stderr.contains(&format!("removed container {late}, which a stopped run")),
        "{stderr}"
    );
    let (frontend, backend) = (
        printed_port(&stdout, "frontend"),
        printed_port(&stdout, "backend"),
    );
    assert!(todo_titles(backend, &token).contains("survive the next up"));
    // A user of the first run signs in from the new origin.
    let origin = format!("http://localhost:{frontend}");
    let (status, _, body) = until_ready(|| {
        request(
            frontend,
            "POST",
            "/api/auth/sign-in/email",
            &[
                ("Host", origin.trim_start_matches("http://")),
                ("Origin", &origin),
            ],
            Some(r#"{"email":"keep@example.com","password":"a-long-test-password"}"#),
        )
    });
    assert_eq!(status, 200, "{body}");

    // `down --volumes` removes the data too, and then nothing is left.
    let out = copy.xtask(&["down", "--volumes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(project_left(&project), (String::new(), String::new()));
    let gone = !Command::new("docker")
        .args(["volume", "inspect", &volume])
        .output()
        .unwrap()
        .status
        .success();
    assert!(gone, "the volume {volume} is left");
    let out = copy.xtask(&["down"]);
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("nothing to stop"));
}

/// A port held on IPv6 alone (`[::1]:P`) is refused before anything starts, naming the port and
/// the process that holds it.
#[test]
fn up_refuses_a_port_held_on_ipv6_naming_its_holder() {
    let copy = Copy::new("ipv6");
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import socket, sys, time\n\
             s = socket.socket(socket.AF_INET6)\n\
             s.bind(('::1', 0)); s.listen()\n\
             print(s.getsockname()[1], flush=True)\n\
             time.sleep(600)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().to_string();
    let out = copy.xtask(&[
        "up",
        "--port",
        &format!("backend={port}"),
        "--port",
        "frontend=0",
    ]);
    let _ = holder.kill();
    let _ = holder.wait();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("port {port} of the backend is taken"))
            && stderr.contains(&format!("pid {} (python3)", holder.id()))
            && stderr.contains(&format!("[::1]:{port}")),
        "{stderr}"
    );
    assert!(!stderr.contains("Ctrl-C"), "{stderr}");
    let project = stderr
        .lines()
        .find_map(|l| l.strip_prefix("up: compose project "));
    assert_eq!(project, None, "nothing was started:\n{stderr}");
}

/// `down --dev --force` removes the stack of a running `dev`, which notices and stops.
#[test]
fn dev_stops_when_down_dev_force_removes_its_stack() {
    let copy = Copy::new("force");
    let mut dev = Dev::start(&copy);
    let project_line = dev.wait_line("dev: compose project", 0, Duration::from_secs(600));
    let project = project_line
        .split_whitespace()
        .nth(3)
        .expect("project name")
        .to_string();
    dev.wait_line("dev: watching", 0, Duration::from_secs(1500));
    // The frontend's `node_modules` and `.next` are anonymous volumes: nothing could mount them
    // again once the stack is gone, so `down` removes them even without `--volumes`.
    let ids = docker(&[
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    let mut args = vec![
        "inspect",
        "--format",
        "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}} {{end}}{{end}}",
    ];
    args.extend(&ids);
    let mounted = docker(&args);
    let anonymous: Vec<&str> = mounted
        .split_whitespace()
        .filter(|v| v.len() == 64)
        .collect();
    assert!(
        anonymous.len() >= 2,
        "the dev frontend's anonymous volumes were not found: {mounted}"
    );
    let out = copy.xtask(&["down", "--dev", "--force"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", dev.child.id())),
        "{stderr}"
    );
    dev.wait_line("is gone; stopping", 0, Duration::from_secs(60));
    let status = dev.wait_exit(Duration::from_secs(60), "dev still runs");
    assert_eq!(status.code(), Some(1), "{}", dev.output());
    assert_eq!(project_left(&project), (String::new(), String::new()));
    let volumes = docker(&["volume", "ls", "--quiet"]);
    let kept: Vec<&&str> = anonymous
        .iter()
        .filter(|v| volumes.lines().any(|l| l == **v))
        .collect();
    assert!(
        kept.is_empty(),
        "`down --dev` left anonymous volumes: {kept:?}"
    );
}

/// Ctrl-C as a terminal sends it (SIGINT to the whole process group, compose and docker children
/// included) at moments spread over `up` and over `dev`'s start: 130 every time, and no
/// container or network of the stack left. The database's volume of `up` is kept on purpose.
#[test]
fn ctrl_c_to_the_process_group_stops_up_and_dev_with_130_and_leaves_nothing() {
    support::built();
    let copy = Copy::new("ctrlc");
    let compose_dir = copy.dir.join("compose");
    let working_dir = format!(
        "label=com.docker.compose.project.working_dir={}",
        compose_dir.display()
    );
    let check = |what: &str, seed: u64, delay: Duration, code: Option<i32>, stderr: &str| {
        support::assert_stopped_by_ctrl_c(what, seed, delay, code, stderr);
        let left = docker(&["ps", "--all", "--quiet", "--filter", &working_dir]);
        let project = stderr
            .lines()
            .find_map(|l| l.split("compose project ").nth(1))
            .map(|p| p.split_whitespace().next().unwrap_or_default().to_string());
        let networks = project.map(|p| project_left(&p).1).unwrap_or_default();
        assert_eq!(
            (left.as_str(), networks.as_str()),
            ("", ""),
            "{what}, seed {seed}, Ctrl-C at {delay:?} left containers or networks:\n{stderr}"
        );
    };
    let (seed, at) = support::moments(5, Duration::from_secs(15));
    for delay in at {
        let args = ["up", "--port", "frontend=0", "--port", "backend=0"];
        let (sent, code, stderr) = support::interrupt_after(&copy.dir, &args, delay);
        if !sent {
            // `up` was done before its moment: take the stack down for the next round.
            assert_eq!(code, Some(0), "{stderr}");
            let _ = copy.xtask(&["down"]);
            continue;
        }
        check("up", seed, delay, code, &stderr);
    }
    let _ = copy.xtask(&["down", "--volumes"]);
    let (seed, at) = support::moments(4, Duration::from_secs(40));
    for delay in at {
        let args = ["dev", "--port", "frontend=0", "--port", "backend=0"];
        let (sent, code, stderr) = support::interrupt_after(&copy.dir, &args, delay);
        assert!(
            sent,
            "dev ended by itself ({code:?}) before {delay:?}:\n{stderr}"
        );
        check("dev", seed, delay, code, &stderr);
    }
}

/// Runs the xtask in `dir` in a process group of its own until its stderr says `ready` and
/// `also` holds, then kills the whole group with SIGKILL, which no destructor survives. Returns
/// the compose project it named and its stderr.
fn kill_when(
    dir: &Path,
    args: &[&str],
    ready: &str,
    also: impl Fn(&str) -> bool,
) -> (String, String) {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(support::xtask_bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut seen = seen.lock().unwrap();
                seen.push_str(&line);
                seen.push('\n');
            }
        })
    };
    let group = format!("-{}", child.id());
    let start = Instant::now();
    let project = loop {
        let now = seen.lock().unwrap().clone();
        let project = now
            .lines()
            .find_map(|l| l.split("compose project ").nth(1))
            .and_then(|p| p.split_whitespace().next())
            .map(String::from);
        if let Some(project) = project.filter(|p| now.contains(ready) && also(p)) {
            break project;
        }
        if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(600) {
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            panic!("{args:?} ended or was not ready within 600 s:\n{now}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(Command::new("kill")
        .args(["-KILL", "--", &group])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "killed by a signal");
    let _ = reader.join();
    let stderr = seen.lock().unwrap().clone();
    (project, stderr)
}

/// Waits until nothing of the compose project is left.
fn wait_gone(project: &str, what: &str, stderr: &str) {
    let start = Instant::now();
    loop {
        let left = project_left(project);
        if left == (String::new(), String::new()) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{what} killed with SIGKILL left containers or networks 90 s later: {left:?}\n{stderr}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_killed_up_or_dev_leaves_nothing_once_its_process_is_gone() {
    support::built();
    let copy = Copy::new("killed");
    // `up` killed while compose creates the stack: the run's watcher removes what it made (the
    // database's volume stays, as after any failed `up`).
    let ports = ["--port", "frontend=0", "--port", "backend=0"];
    let created = |project: &str| {
        let filter = format!("label=com.docker.compose.project={project}");
        !docker(&["ps", "--all", "--quiet", "--filter", &filter]).is_empty()
    };
    let up = [&["up"][..], &ports].concat();
    let (project, stderr) = kill_when(&copy.dir, &up, "up: compose project", created);
    wait_gone(&project, "up", &stderr);
    // `dev` killed once its stack serves: the same.
    let dev = [&["dev"][..], &ports].concat();
    let (project, stderr) = kill_when(&copy.dir, &dev, "dev: ready in", |_| true);
    wait_gone(&project, "dev", &stderr);
    let _ = copy.xtask(&["down", "--volumes"]);
}

#[test]
fn down_leftovers_reaps_a_killed_browser_test_run_and_never_a_live_one() {
    // A real node process labels a network and a volume as the browser test labels its stack
    // (tests/e2e/owned.mjs), says its run id, and waits.
    let script = format!(
        r#"import {{ runLabels }} from "{}/tests/e2e/owned.mjs";
        import {{ execFileSync }} from "node:child_process";
        const {{ run, args }} = runLabels();
        for (const what of ["network", "volume"]) execFileSync("docker", [what, "create", ...args, `todo-e2e-reaped-${{run}}`]);
        console.log(run);
        setInterval(() => {{}}, 1000);"#,
        root().display()
    );
    let mut node = Command::new("node")
        .args(["--input-type=module", "-e", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = String::new();
    BufReader::new(node.stdout.take().unwrap())
        .read_line(&mut run)
        .unwrap();
    let run = run.trim().to_string();
    assert!(!run.is_empty(), "the node process said no run id");
    let name = format!("todo-e2e-reaped-{run}");
    // On a failure, the node process and what it made go too.
    struct Cleanup(String, u32);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let pid = self.1.to_string();
            let _ = Command::new("kill").args(["-KILL", &pid]).output();
            let _ = Command::new("docker")
                .args(["network", "rm", &self.0])
                .output();
            let _ = Command::new("docker")
                .args(["volume", "rm", &self.0])
                .output();
        }
    }
    let _cleanup = Cleanup(name.clone(), node.id());
    let filter = format!("label=todo-chatbot.run={run}");
    let left = || {
        (
            docker(&["network", "ls", "--quiet", "--filter", &filter])
                .lines()
                .count(),
            docker(&["volume", "ls", "--quiet", "--filter", &filter])
                .lines()
                .count(),
        )
    };
    let down = || {
        let out = Command::new(support::xtask_bin())
            .args(["down", "--leftovers"])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    // A live run's things stay.
    down();
    assert_eq!(
        left(),
        (1, 1),
        "a live run's network and volume were removed"
    );
    // Killed outright, the run cleans nothing...
    node.kill().unwrap();
    node.wait().unwrap();
    assert_eq!(left(), (1, 1));
    // ...until the reaper, which knows it by its labels alone, removes it.
    let said = down();
    assert!(said.contains(&run), "{said}");
    assert_eq!(left(), (0, 0), "{said}");
}
